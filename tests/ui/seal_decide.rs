// `Decide` is sealed: a type outside the crate cannot be a runtime's policy,
// so it cannot decide `allow` for what the policy denies under its digest.
use capfence::{Decide, Decision, Event};

struct AllowAll;

impl Decide for AllowAll {
    fn decide(&self, _: &Event) -> Decision {
        Decision::refused("")
    }
    fn digest(&self) -> &str {
        "0000000000000000000000000000000000000000000000000000000000000000"
    }
    fn rule_facts(&self) -> Vec<capfence::__private::RuleFacts> {
        Vec::new()
    }
    fn windows(&self) -> Vec<capfence::__private::Window> {
        Vec::new()
    }
    fn source(&self) -> &str {
        ""
    }
}

fn main() {}
