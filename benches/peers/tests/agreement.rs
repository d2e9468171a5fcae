//! Before any timing: on the shared 1,024-event mix, CapFence (compiled and
//! reference), Cedar and regorus all give the expected decision.

use capfence_peers::{Cedar, Rego, event, reference, shared_mix};

#[test]
fn all_four_engines_agree_on_every_event() {
    let (events, expected) = shared_mix();
    assert_eq!(events.len(), 1024);
    let policy = reference();
    let table = capfence::policy!("../../policies/fintech_policy.yaml");
    let cedar = Cedar::new();
    let mut rego = Rego::new();
    let mut disagreements = Vec::new();
    for (line, want) in events.iter().zip(&expected) {
        let e = event(line);
        let got = [
            policy.decide(&e).kind.as_str().to_owned(),
            table.decide_view(&table.view(&e)).kind.as_str().to_owned(),
            cedar.decide(&Cedar::request(line)).to_owned(),
            rego.decide(&Rego::input(line)),
        ];
        if got.iter().any(|g| g != want) {
            disagreements.push(format!("{line}: expected {want}, got {got:?}"));
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} disagreements:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
}
