//! Procedural macros of CapFence. Users reach them through the `capfence`
//! crate (`capfence::policy!`, `#[capfence::gate]`); generated code names only
//! `::capfence` paths.

use proc_macro::TokenStream;

mod attr;
mod gate;
mod policy;

/// The directory relative policy paths are read from: `CAPFENCE_POLICY_ROOT`
/// when set (a test harness such as trybuild builds the user's sources in a
/// crate of its own, inside the target directory, so the crate's own folder
/// is not where its policies are), else the crate's `CARGO_MANIFEST_DIR`.
fn policy_root() -> std::path::PathBuf {
    std::env::var_os("CAPFENCE_POLICY_ROOT")
        .filter(|root| !root.is_empty())
        .or_else(|| std::env::var_os("CARGO_MANIFEST_DIR"))
        .map(std::path::PathBuf::from)
        .unwrap_or_default()
}

/// Gates an agent tool function: every call is decided by the policy and
/// recorded in the audit chain before the body runs; a call that is denied
/// or waits for approval returns `Err(capfence::Blocked { .. }.into())`.
///
/// `#[capfence::gate("payments.transfer", skip(note), rename(sum = "amount"))]`.
/// The function's named arguments become the event payload; a `&capfence::Context`
/// argument gives the runtime, actor and environment (else the ambient
/// context). Checked at compile time against the policy named in
/// `[package.metadata.capfence] policy = "…"` (or `policy = "…"` here): an
/// unknown capability, or a field the policy tests that the function does not
/// take, is a compile error.
#[proc_macro_attribute]
pub fn gate(args: TokenStream, item: TokenStream) -> TokenStream {
    gate::expand(args.into(), item.into()).into()
}

/// Compiles a policy file into a static decision table at build time.
///
/// The path is relative to the invoking crate's `Cargo.toml` (or to
/// `CAPFENCE_POLICY_ROOT` when a test harness sets it). The expression's
/// value is a zero-sized table implementing `capfence::Decide` and
/// `capfence::Compiled`; a policy error is a compile error naming the file,
/// line and column; editing the file rebuilds the crate.
///
/// ```ignore
/// static POLICY: &dyn capfence::Decide = &capfence::policy!("policies/fintech_policy.yaml");
/// ```
#[proc_macro]
pub fn policy(input: TokenStream) -> TokenStream {
    policy::expand(input.into()).into()
}

/// The decision a gate's table makes for one call, without running or
/// recording anything: `Option<capfence::CompiledDecision>`, `None` for a
/// capability a velocity window counts (that needs the ledger).
///
/// `capfence::gate_decision!([policy = "p.yaml",] "payments.transfer", &ctx, amount = dec!(120), destination = "v")`.
/// The same generated code a `#[capfence::gate]` on a function taking those
/// arguments runs first: for regression suites and benchmarks of the gate's
/// typed path.
#[proc_macro]
pub fn gate_decision(input: TokenStream) -> TokenStream {
    gate::expand_decision(input.into()).into()
}
