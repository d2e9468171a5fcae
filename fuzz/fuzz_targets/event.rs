#![no_main]

#[path = "../targets.rs"]
#[allow(dead_code)]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let table = capfence::policy!("../policies/fintech_policy.yaml");
    targets::event(data, &table);
});
