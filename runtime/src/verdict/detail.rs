//! [`VerdictDetail`]: why a verdict is what it is, in fields a program can
//! act on — the limit and the value against it, a window's total and when
//! its oldest counted call leaves, a held call's ticket and its expiry, a
//! malformed event's field and fault. `reason` says the same in words.

use capfence_compiler::eval::{Cause, Fault};
use capfence_compiler::event::{Event, Value};
use capfence_compiler::facts::RuleFacts;
use capfence_compiler::policy::FieldType;
use capfence_compiler::window::{Window, duration_text};
use serde::Serialize;

/// What decided, as a type: the JSON `detail.cause`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DetailCause {
    /// A rule of the policy decided (`rule` names it).
    Rule,
    /// No rule matched: the default deny.
    #[default]
    DefaultDeny,
    /// The event cannot be decided (`malformed` says which field and why).
    Malformed,
    /// Denied outside the policy's rules: the runtime's policy is not the
    /// ledger's active one, or a gate's arguments differ from its record.
    Refused,
    /// Nothing was recorded (the ledger could not be written): a deny.
    Unrecorded,
}

/// A numeric comparison the deciding rule requires, and the call's value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LimitDetail {
    /// The payload field (`amount`).
    pub field: String,
    /// `>`, `>=`, `<`, `<=`, `==`, `!=`.
    pub op: String,
    /// The policy's bound, an exact decimal as a string.
    pub limit: String,
    /// The call's value, an exact decimal as a string.
    pub value: Option<String>,
}

/// A velocity window the deciding rule tests, as this call saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WindowDetail {
    /// The window's length (`24h`).
    pub window: String,
    /// Its length in seconds.
    pub seconds: u64,
    /// The summed payload field; `null` when the window counts calls.
    pub sum: Option<String>,
    /// The fields a group is keyed by (`actor`, `destination`).
    pub per: Vec<String>,
    /// The total with this call counted, an exact decimal as a string.
    pub total: String,
    /// The comparison the rule makes of the total (`>`), if it makes one
    /// outright.
    pub op: Option<String>,
    /// The cap it compares against.
    pub limit: Option<String>,
    /// When the oldest call the window counted was recorded (RFC 3339 UTC);
    /// `null` when it counted none before this call.
    pub oldest_at: Option<String>,
    /// When that call leaves the window: the first moment the total can
    /// drop (RFC 3339 UTC).
    pub frees_at: Option<String>,
}

/// The fault of a malformed event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MalformedDetail {
    /// The field, as the policy names it (`amount`, `resource`, `event`).
    pub field: String,
    /// `missing`, `wrong_type`, `not_token`, `not_name` or `unreadable`.
    pub fault: &'static str,
    /// What the field must be: `number`, `token`, `text` or `risk`.
    pub expected: Option<&'static str>,
}

/// The approval ticket a `require_approval` rule held the call on, or the
/// one that let it through or refused it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TicketDetail {
    /// `T-…`.
    pub id: String,
    /// `pending`, `approved` (this call used it) or `rejected`.
    pub state: &'static str,
    /// When it expires unapproved (RFC 3339 UTC); `null` when unknown.
    pub expires_at: Option<String>,
    /// How many distinct approvers must sign.
    pub quorum: u32,
    /// Who approved or rejected it, when it is settled.
    pub decided_by: Vec<String>,
}

/// The standing grant that satisfied a `require_approval` rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrantDetail {
    /// `G-…`.
    pub id: String,
    /// The operator who granted it.
    pub granted_by: String,
    /// Uses left after this call; `null` for a grant without a use cap.
    pub uses_left: Option<u32>,
}

/// Why a verdict is what it is, in fields: the same object in the Rust
/// [`Verdict`](crate::Verdict), `capfence decide`'s JSON, Python's
/// `Verdict.detail` and `Blocked.detail`, and an MCP refusal's
/// `structuredContent`. Decimals are strings (exact), times RFC 3339 UTC.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct VerdictDetail {
    /// What decided.
    pub cause: DetailCause,
    /// The deciding rule's id.
    pub rule: Option<String>,
    /// The deciding rule's conditions as written (`amount > 10000.0`).
    pub conditions: Vec<String>,
    /// The numeric comparisons the rule requires, with the call's values.
    pub limits: Vec<LimitDetail>,
    /// The velocity windows the rule tests, with their totals.
    pub windows: Vec<WindowDetail>,
    /// For a malformed event: the field and its fault.
    pub malformed: Option<MalformedDetail>,
    /// For a `require_approval` rule: the ticket.
    pub ticket: Option<TicketDetail>,
    /// For a `require_approval` rule a grant satisfied: the grant.
    pub grant: Option<GrantDetail>,
}

impl VerdictDetail {
    /// The detail of a decision: its cause, and for a rule, the rule's
    /// conditions and required comparisons with `event`'s values (an event
    /// augmented with window totals gives those too, with `keys[i]` the key
    /// of `windows[i]` (made here when missing) and `oldest(window)` the
    /// oldest counted call's time in µs).
    pub(crate) fn of(
        cause: &Cause,
        rule: Option<&RuleFacts>,
        event: &Event,
        windows: &[Window],
        keys: &[String],
        oldest: &dyn Fn(&Window) -> Option<i64>,
    ) -> VerdictDetail {
        let mut detail = VerdictDetail {
            cause: match cause {
                Cause::Rule => DetailCause::Rule,
                Cause::DefaultDeny => DetailCause::DefaultDeny,
                Cause::Malformed { .. } => DetailCause::Malformed,
                Cause::Refused => DetailCause::Refused,
            },
            ..VerdictDetail::default()
        };
        if let Cause::Malformed { field, fault } = cause {
            detail.malformed = Some(MalformedDetail::of(field, fault));
        }
        let Some(rule) = rule.filter(|_| matches!(cause, Cause::Rule)) else {
            return detail;
        };
        detail.rule = Some(rule.id.to_string());
        detail.conditions = rule.conditions.iter().map(|c| c.to_string()).collect();
        for limit in rule.limits.iter() {
            let value = event
                .payload
                .get(limit.field.as_ref())
                .and_then(Value::as_number)
                .map(|n| n.normalize().to_string());
            let window = windows
                .iter()
                .enumerate()
                .find(|(i, w)| match keys.get(*i) {
                    Some(key) => *key == limit.field,
                    None => w.key() == limit.field,
                });
            match window.map(|(_, w)| w) {
                // A `new:` condition is in `conditions` (and the reason says
                // whether the value was new); it has no cap to free up.
                Some(window) if window.is_new() => {}
                Some(window) => {
                    let oldest_at = oldest(window);
                    detail.windows.push(WindowDetail {
                        window: duration_text(window.seconds),
                        seconds: window.seconds,
                        sum: window.field.as_ref().map(|f| f.to_string()),
                        per: window.per.iter().map(|p| p.to_string()).collect(),
                        total: value.unwrap_or_else(|| "0".to_owned()),
                        op: Some(limit.op.to_string()),
                        limit: Some(limit.value.to_string()),
                        oldest_at: oldest_at.map(crate::clock::rfc3339),
                        frees_at: oldest_at
                            .map(|at| crate::clock::rfc3339(at.saturating_add(window.micros()))),
                    });
                }
                None => detail.limits.push(LimitDetail {
                    field: limit.field.to_string(),
                    op: limit.op.to_string(),
                    limit: limit.value.to_string(),
                    value,
                }),
            }
        }
        detail
    }

    /// Adds the rule's part (`rule`, `conditions`, `limits`) built from the
    /// same decision elsewhere, when this detail is that rule's decision
    /// and does not have it yet (a refusal in its place keeps none).
    pub(crate) fn add_rule_part(&mut self, part: VerdictDetail) {
        if self.cause == DetailCause::Rule && self.rule.is_none() && part.cause == DetailCause::Rule
        {
            self.rule = part.rule;
            self.conditions = part.conditions;
            self.limits = part.limits;
        }
    }

    /// A deny with nothing recorded.
    pub(crate) fn unrecorded() -> VerdictDetail {
        VerdictDetail {
            cause: DetailCause::Unrecorded,
            ..VerdictDetail::default()
        }
    }
}

impl MalformedDetail {
    fn of(field: &str, fault: &Fault) -> MalformedDetail {
        let (fault, expected) = match fault {
            Fault::Missing => ("missing", None),
            Fault::WrongType(t) => ("wrong_type", Some(expected(*t))),
            Fault::NotToken(t) => ("not_token", Some(expected(*t))),
            Fault::NotName => ("not_name", Some("token")),
            Fault::Unreadable(_) => ("unreadable", None),
        };
        MalformedDetail {
            field: field.to_owned(),
            fault,
            expected,
        }
    }
}

fn expected(t: FieldType) -> &'static str {
    match t {
        FieldType::Number => "number",
        FieldType::Token => "token",
        FieldType::Text => "text",
        FieldType::Risk => "risk",
    }
}
