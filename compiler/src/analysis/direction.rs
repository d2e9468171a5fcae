//! Which way a policy change moves: what a change from `old` to `new`
//! loosens. A change that loosens nothing only tightens (no region of
//! events moves toward allow, no field stops being required, no approver
//! is added, no quorum is lowered, no signer or delay of policy changes is
//! relaxed), and needs less to be activated.

use crate::policy::{DecisionKind, Policy, PolicyChanges, Rule};

use super::DiffReport;

/// Deny below require_approval below allow.
fn rank(kind: DecisionKind) -> u8 {
    match kind {
        DecisionKind::Deny => 0,
        DecisionKind::RequireApproval => 1,
        DecisionKind::Allow => 2,
    }
}

/// The names that may sign for `rule` under `policy`.
fn eligible(policy: &Policy, rule: &Rule) -> Vec<String> {
    match &rule.approvers {
        Some(names) => names.clone(),
        None => policy.approvers.iter().map(|a| a.name.clone()).collect(),
    }
}

/// The names that may sign changes of `policy`.
fn change_signers(policy: &Policy, changes: &PolicyChanges) -> Vec<String> {
    policy
        .approvers
        .iter()
        .map(|a| a.name.clone())
        .filter(|n| changes.may_sign(policy, n))
        .collect()
}

/// Every way `new` is looser than `old`, in words; empty when the change
/// only tightens. `report` is the exact diff of the two (`None` when they
/// could not be compared exactly, which counts as loosening).
pub fn loosenings(old: &Policy, new: &Policy, report: Option<&DiffReport>) -> Vec<String> {
    let mut found = Vec::new();
    let Some(report) = report else {
        found.push("the policies are too complex to compare exactly".to_owned());
        return found;
    };
    for c in &report.changes {
        if rank(c.new.decision) > rank(c.old.decision) {
            found.push(format!(
                "{}: {} -> {} (toward allow)",
                c.region, c.old.decision, c.new.decision
            ));
        } else if c.new.decision == DecisionKind::RequireApproval
            && c.old.decision == DecisionKind::RequireApproval
        {
            found.push(format!(
                "{}: held by another rule ({} -> {}), whose approvals may differ",
                c.region,
                c.old.rule.as_deref().unwrap_or("default"),
                c.new.rule.as_deref().unwrap_or("default")
            ));
        }
    }
    for f in &report.fields {
        if f.new != f.old && f.new.is_none_or(|_| f.old.is_some()) {
            found.push(format!(
                "{}: `{}` is required differently (events once malformed may now be decided)",
                f.capability, f.field
            ));
        }
    }
    for a in &new.approvers {
        if !old
            .approvers
            .iter()
            .any(|o| o.name == a.name && o.key == a.key)
        {
            found.push(format!(
                "approver `{}` is added (or its key changed)",
                a.name
            ));
        }
    }
    for rule in new
        .rules
        .iter()
        .filter(|r| r.tier == DecisionKind::RequireApproval)
    {
        let Some(before) = old
            .rules
            .iter()
            .find(|r| r.id == rule.id && r.tier == DecisionKind::RequireApproval)
        else {
            continue;
        };
        if rule.approvals.unwrap_or(1) < before.approvals.unwrap_or(1) {
            found.push(format!("rule {}: its quorum is lowered", rule.id));
        }
        let was = eligible(old, before);
        if eligible(new, rule).iter().any(|n| !was.contains(n)) {
            found.push(format!("rule {}: more approvers may sign", rule.id));
        }
    }
    if new.changes.quorum() < old.changes.quorum() {
        found.push("policy_changes: fewer signatures are needed".to_owned());
    }
    let was = change_signers(old, &old.changes);
    if change_signers(new, &new.changes)
        .iter()
        .any(|n| !was.contains(n))
    {
        found.push("policy_changes: more approvers may sign".to_owned());
    }
    if new.changes.delay_secs < old.changes.delay_secs {
        found.push("policy_changes: the delay is shorter".to_owned());
    }
    found
}
