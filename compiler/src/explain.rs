//! `capfence-compile explain`: why a policy decides an event the way it does.

use std::fmt::Write as _;

use crate::eval::{Decision, show_field};
use crate::event::Event;
use crate::policy::Policy;

/// What one rule made of the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// This rule decided.
    Decided,
    /// It matched, but an earlier rule in precedence order decided.
    Outranked,
    /// A condition failed: its text, and the values of the fields it reads.
    Failed {
        /// The condition as written (`amount > 10000.0`).
        condition: String,
        /// The event's values of the fields it tests.
        values: Vec<String>,
    },
}

/// The explanation of one decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The decision.
    pub decision: Decision,
    /// For each rule of the event's capability, in precedence order.
    pub rules: Vec<(String, usize, Verdict)>,
}

/// Explains `policy`'s decision on `event`.
pub fn explain(policy: &Policy, event: &Event) -> Explanation {
    let decision = policy.decide(event);
    let malformed = decision.cause.is_malformed();
    let mut rules = Vec::new();
    for rule in policy.rules.iter().filter(|r| r.applies_to(event)) {
        let verdict = if decision.rule.as_deref() == Some(rule.id.as_str()) {
            Verdict::Decided
        } else if !malformed && rule.matches(event) {
            Verdict::Outranked
        } else {
            match rule
                .conditions
                .iter()
                .find(|c| malformed || !c.holds(event))
            {
                Some(c) => {
                    let mut values = Vec::new();
                    c.expr.for_each_test(&mut |t| {
                        let shown = show_field(event, t.field());
                        if !values.contains(&shown) {
                            values.push(shown);
                        }
                    });
                    Verdict::Failed {
                        condition: c.text.clone(),
                        values,
                    }
                }
                None => Verdict::Outranked,
            }
        };
        rules.push((rule.id.clone(), rule.location.line, verdict));
    }
    Explanation { decision, rules }
}

impl Explanation {
    /// Human text, one line per rule.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let by = self.decision.rule.as_deref().unwrap_or("no rule");
        let _ = writeln!(
            out,
            "decision: {} by {by}: {}",
            self.decision.kind, self.decision.reason
        );
        if self.rules.is_empty() {
            let _ = writeln!(out, "  no rule covers this capability");
        }
        let decider = self.decision.rule.clone().unwrap_or_default();
        for (id, line, verdict) in &self.rules {
            let text = match verdict {
                Verdict::Decided => "decided".to_owned(),
                Verdict::Outranked => format!("matched, but {decider} has precedence"),
                Verdict::Failed { condition, values } => {
                    format!("did not match: `{condition}` fails ({})", values.join(", "))
                }
            };
            let _ = writeln!(out, "  {id} (line {line}): {text}");
        }
        out
    }
}
