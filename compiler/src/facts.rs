//! What the runtime needs of a policy's rules beyond deciding: capability
//! patterns, numerically compared fields (a grant's caps), quorums and
//! eligible approvers. Read from the IR here; generated tables carry the
//! same facts as statics.

use std::borrow::Cow;

use crate::policy::{Approver, CapabilityPattern, DecisionKind, Expr, Field, Policy, Rule, Test};

/// A name held by [`RuleFacts`]: borrowed in generated code, owned when
/// read from a loaded policy.
pub type Name = Cow<'static, str>;

/// An approver eligible to sign for a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eligible {
    /// The approver's name.
    pub name: Name,
    /// The public key, `ed25519:<base64>`.
    pub key: Name,
}

/// A numeric comparison a rule requires of every call it decides
/// (`amount > 10000.0`, or a velocity window's total against its cap): what
/// a verdict reports as the limit and the call's value against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    /// The payload field compared; a window's reserved name (`@sum(amount)/…`)
    /// for a window total.
    pub field: Name,
    /// The comparison, as a symbol: `>`, `>=`, `<`, `<=`, `==`, `!=`.
    pub op: Name,
    /// The bound, as the policy's exact decimal.
    pub value: Name,
}

/// What the runtime needs to know of a rule beyond its decision: its
/// capability pattern and the payload fields it compares as numbers (a
/// grant's caps name such fields), its quorum and who may sign. The loader
/// builds it with owned names; generated tables write it with borrowed ones:
/// one type for both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleFacts {
    /// The rule's id.
    pub id: Name,
    /// Its tier.
    pub tier: DecisionKind,
    /// The resource segment, `None` for `*`.
    pub resource: Option<Name>,
    /// The action segment, `None` for `*`.
    pub action: Option<Name>,
    /// The payload fields it compares as numbers, sorted, distinct.
    pub numbers: Cow<'static, [Name]>,
    /// For `require_approval`: how many distinct approvers must sign.
    pub approvals: u32,
    /// For `require_approval`: who may sign. Empty when the policy lists no
    /// approvers: approvals are then not authenticated.
    pub approvers: Cow<'static, [Eligible]>,
    /// Its conditions as written, rendered (`amount > 10000.0`): all hold
    /// for every call the rule decides.
    pub conditions: Cow<'static, [Name]>,
    /// The numeric comparisons every call it decides satisfies: the tests
    /// its conditions require outright (not those under `any`/`not`).
    pub limits: Cow<'static, [Limit]>,
}

impl RuleFacts {
    /// Whether approvals for this rule must be signed.
    pub fn signed(&self) -> bool {
        !self.approvers.is_empty()
    }

    /// Whether the rule's pattern covers `resource.action`.
    pub fn covers(&self, resource: &str, action: &str) -> bool {
        crate::capability::covers(
            self.resource.as_deref(),
            self.action.as_deref(),
            resource,
            action,
        )
    }
}

/// The facts of a generated table (read on the approval path only, never
/// while deciding).
pub type RuleFactList = Vec<RuleFacts>;

impl Rule {
    /// The rule's [`RuleFacts`], with `approvers` the policy's list (the
    /// rule's eligible approvers are picked from it).
    pub fn facts(&self, approvers: &[Approver]) -> RuleFacts {
        let (resource, action) = match &self.capability {
            CapabilityPattern::Any => (None, None),
            CapabilityPattern::Segments { resource, action } => (
                resource.clone().map(Cow::Owned),
                action.clone().map(Cow::Owned),
            ),
        };
        let mut numbers = Vec::new();
        self.for_each_test(&mut |t| {
            if let (Test::Number { .. }, Field::Payload(name)) = (t, t.field()) {
                numbers.push(Cow::Owned(name.clone()));
            }
        });
        numbers.sort();
        numbers.dedup();
        let eligible = if self.tier == DecisionKind::RequireApproval {
            approvers
                .iter()
                .filter(|a| {
                    self.approvers
                        .as_ref()
                        .is_none_or(|names| names.contains(&a.name))
                })
                .map(|a| Eligible {
                    name: Cow::Owned(a.name.clone()),
                    key: Cow::Owned(a.key.clone()),
                })
                .collect()
        } else {
            Vec::new()
        };
        let mut limits = Vec::new();
        for condition in &self.conditions {
            required_limits(&condition.expr, &mut limits);
        }
        RuleFacts {
            id: Cow::Owned(self.id.clone()),
            tier: self.tier,
            resource,
            action,
            numbers: Cow::Owned(numbers),
            approvals: self.approvals.unwrap_or(1),
            approvers: Cow::Owned(eligible),
            conditions: self
                .conditions
                .iter()
                .map(|c| Cow::Owned(c.text.clone()))
                .collect(),
            limits: Cow::Owned(limits),
        }
    }
}

/// The numeric tests `expr` requires: itself, or those of every part of a
/// conjunction. A test under a disjunction or a negation is not required.
fn required_limits(expr: &Expr, out: &mut Vec<Limit>) {
    match expr {
        Expr::And(items) => items.iter().for_each(|e| required_limits(e, out)),
        Expr::Test(Test::Number {
            field: Field::Payload(name),
            op,
            value,
        }) => out.push(Limit {
            field: Cow::Owned(name.clone()),
            op: Cow::Borrowed(op.symbol()),
            value: Cow::Owned(value.to_string()),
        }),
        Expr::Or(_) | Expr::Not(_) | Expr::Test(_) => {}
    }
}

impl Policy {
    /// Every rule's [`RuleFacts`], in precedence order.
    pub fn rule_facts(&self) -> Vec<RuleFacts> {
        self.rules
            .iter()
            .map(|r| r.facts(&self.approvers))
            .collect()
    }
}
