//! The reference evaluator: [`Policy::decide`].
//!
//! Deliberately simple and obviously right; it is the oracle the generated
//! decision table is tested against. Order of work:
//! 1. the event's names (resource, action, environment, actor, risk), where
//!    present, must be plain tokens ([`crate::token`]), or the event is denied as
//!    malformed, naming the field;
//! 2. the event's capability selects the rules that apply;
//! 3. every field those rules test must be present, well typed and (for
//!    strings) a token, or the event is denied as malformed (fail closed),
//!    naming the first bad field;
//! 4. the first matching rule in precedence order decides (deny, then
//!    require_approval, then allow; file order inside a tier);
//! 5. nothing matches: deny.

use crate::event::{Event, Value};
use crate::policy::{Expr, Field, FieldType, Policy, Risk, Rule, Test};
use crate::token;
use std::borrow::Cow;

pub use crate::policy::DecisionKind;

/// Why a decision was made, for code to branch on (the reason is for
/// people, and is rendered from this).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Cause {
    /// A rule of the policy decided; the decision's `rule` names it.
    Rule,
    /// No rule matched: the default deny.
    DefaultDeny,
    /// The input cannot be decided: `field` is what is wrong with it (a
    /// built-in name such as `resource`, a payload field such as `amount`,
    /// a window total such as `@daily`, or `event` when the input is not an
    /// event at all), `fault` what is wrong.
    Malformed {
        /// The field, as a policy names it.
        field: Cow<'static, str>,
        /// What is wrong with it.
        fault: Fault,
    },
    /// Denied outside the policy's rules by what runs it: a gate checked
    /// against another policy, a gate whose own decision differs from the
    /// runtime's.
    Refused,
}

/// What is wrong with a malformed event's field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The field is absent (for a window total: the call lacks what groups
    /// or sums it).
    Missing,
    /// Present, but not of this type.
    WrongType(FieldType),
    /// A string that is not a plain ASCII token (for [`FieldType::Text`]:
    /// not acceptable text).
    NotToken(FieldType),
    /// `resource` or `action` that is not a plain ASCII name.
    NotName,
    /// The input is not an event (not UTF-8, not JSON, not an object, too
    /// long, a tool call without a name): the message says how, whole.
    Unreadable(String),
}

impl Cause {
    /// `rule`, `default_deny`, `malformed` or `refused`.
    pub const fn as_str(&self) -> &'static str {
        match self {
            Cause::Rule => "rule",
            Cause::DefaultDeny => "default_deny",
            Cause::Malformed { .. } => "malformed",
            Cause::Refused => "refused",
        }
    }

    /// Whether the input could not be decided.
    pub const fn is_malformed(&self) -> bool {
        matches!(self, Cause::Malformed { .. })
    }

    /// A malformed cause, borrowing a static field name.
    pub const fn malformed(field: &'static str, fault: Fault) -> Cause {
        Cause::Malformed {
            field: Cow::Borrowed(field),
            fault,
        }
    }
}

impl Fault {
    /// The reason of a deny for this fault of `field`.
    pub fn reason(&self, field: &str) -> String {
        match self {
            Fault::Missing if field.starts_with('@') => format!(
                // A velocity aggregate: the call lacks what groups or sums it.
                "malformed event: no window total `{field}` (the call lacks a `per` value that \
                 is a plain token, or the summed number)"
            ),
            Fault::Missing => format!("malformed event: missing field `{field}`"),
            Fault::WrongType(ty) => {
                format!("malformed event: field `{field}` must be {}", ty.describe())
            }
            Fault::NotToken(ty) => {
                let what = if *ty == FieldType::Text {
                    token::TEXT_DESCRIPTION
                } else {
                    token::TOKEN_DESCRIPTION
                };
                format!("malformed event: field `{field}` must be {what}")
            }
            Fault::NotName => format!(
                "malformed event: field `{field}` must be {}",
                token::SEGMENT_DESCRIPTION
            ),
            Fault::Unreadable(message) => message.clone(),
        }
    }
}

/// A decision with the rule that made it and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allow, require approval, or deny.
    pub kind: DecisionKind,
    /// The deciding rule's id; `None` for default deny and malformed events.
    pub rule: Option<String>,
    /// Why, in words.
    pub reason: String,
    /// Why, as a type.
    pub cause: Cause,
}

impl Decision {
    /// A deny of input that cannot be decided: `fault` of `field`; the
    /// reason is rendered from them.
    pub fn malformed(field: impl Into<Cow<'static, str>>, fault: Fault) -> Decision {
        let field = field.into();
        Decision {
            kind: DecisionKind::Deny,
            rule: None,
            reason: fault.reason(&field),
            cause: Cause::Malformed { field, fault },
        }
    }

    /// A deny of input that is not an event at all; `message` says how,
    /// whole.
    pub fn unreadable(message: impl Into<String>) -> Decision {
        Decision::malformed("event", Fault::Unreadable(message.into()))
    }

    /// A deny outside the policy's rules, for `reason`.
    pub fn refused(reason: impl Into<String>) -> Decision {
        Decision {
            kind: DecisionKind::Deny,
            rule: None,
            reason: reason.into(),
            cause: Cause::Refused,
        }
    }
}

impl Decision {
    /// The decision as one JSON line, keys in this order:
    /// `{"decision":"allow","rule":"allow[0]","reason":"…"}` (`rule` is `null`
    /// when no rule decided).
    pub fn to_json(&self) -> String {
        #[derive(serde::Serialize)]
        struct Line<'a> {
            decision: &'a str,
            rule: Option<&'a str>,
            reason: &'a str,
        }
        let line = Line {
            decision: self.kind.as_str(),
            rule: self.rule.as_deref(),
            reason: &self.reason,
        };
        serde_json::to_string(&line).unwrap_or_else(|_| {
            r#"{"decision":"deny","rule":null,"reason":"cannot encode decision"}"#.to_owned()
        })
    }
}

/// The reason of a default deny.
pub const DEFAULT_DENY_REASON: &str = "no rule matches this event (default deny)";

/// Which of an event's built-in names is present but not a token (the first,
/// in this order), or none. Every event is held to this, whatever the policy
/// tests. One byte, so generated tables carry it in their views.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum NameFault {
    /// Every present name is a token.
    None,
    /// `resource` is not a plain ASCII name.
    Resource,
    /// `action` is not a plain ASCII name.
    Action,
    /// `environment` is not a plain ASCII token.
    Environment,
    /// `actor` is not a plain ASCII token.
    Actor,
    /// `risk` is not a plain ASCII token.
    Risk,
}

impl NameFault {
    /// Why the event is malformed (empty for [`NameFault::None`]).
    pub const fn reason(self) -> &'static str {
        match self {
            NameFault::None => "",
            NameFault::Resource => {
                "malformed event: field `resource` must be a plain ASCII name (letters, digits, _ and -)"
            }
            NameFault::Action => {
                "malformed event: field `action` must be a plain ASCII name (letters, digits, _ and -)"
            }
            NameFault::Environment => {
                "malformed event: field `environment` must be a plain ASCII token (letters, digits and _ - . : @ + /)"
            }
            NameFault::Actor => {
                "malformed event: field `actor` must be a plain ASCII token (letters, digits and _ - . : @ + /)"
            }
            NameFault::Risk => {
                "malformed event: field `risk` must be a plain ASCII token (letters, digits and _ - . : @ + /)"
            }
        }
    }
}

impl NameFault {
    /// The field at fault (empty for [`NameFault::None`]).
    pub const fn field(self) -> &'static str {
        match self {
            NameFault::None => "",
            NameFault::Resource => "resource",
            NameFault::Action => "action",
            NameFault::Environment => "environment",
            NameFault::Actor => "actor",
            NameFault::Risk => "risk",
        }
    }

    /// The fault, as a decision's [`Cause`] carries it.
    pub const fn fault(self) -> Fault {
        match self {
            NameFault::None | NameFault::Resource | NameFault::Action => Fault::NotName,
            NameFault::Environment | NameFault::Actor | NameFault::Risk => {
                Fault::NotToken(FieldType::Token)
            }
        }
    }

    /// The cause of the deny for this fault.
    pub const fn cause(self) -> Cause {
        Cause::malformed(self.field(), self.fault())
    }
}

/// The event's [`NameFault`].
pub fn name_fault(event: &Event) -> NameFault {
    names_fault(
        event.resource.as_deref(),
        event.action.as_deref(),
        event.environment.as_deref(),
        event.actor.as_deref(),
        event.risk.as_ref().map(crate::event::EventRisk::as_str),
    )
}

/// [`name_fault`] of names given one by one (absent names are not faults).
pub fn names_fault(
    resource: Option<&str>,
    action: Option<&str>,
    environment: Option<&str>,
    actor: Option<&str>,
    risk: Option<&str>,
) -> NameFault {
    let bad = |v: Option<&str>, ok: fn(&str) -> bool| v.is_some_and(|v| !ok(v));
    if bad(resource, token::is_segment) {
        NameFault::Resource
    } else if bad(action, token::is_segment) {
        NameFault::Action
    } else if bad(environment, token::is_token) {
        NameFault::Environment
    } else if bad(actor, token::is_token) {
        NameFault::Actor
    } else if bad(risk, token::is_token) {
        NameFault::Risk
    } else {
        NameFault::None
    }
}

/// A field value borrowed from an event.
enum Found<'e> {
    Text(std::borrow::Cow<'e, str>),
    Payload(&'e Value),
}

fn lookup<'e>(event: &'e Event, field: &Field) -> Option<Found<'e>> {
    let text = |s: &'e Option<String>| s.as_deref().map(|s| Found::Text(s.into()));
    match field {
        Field::Actor => text(&event.actor),
        Field::Resource => text(&event.resource),
        Field::Action => text(&event.action),
        Field::Environment => text(&event.environment),
        Field::Risk => event.risk.as_ref().map(|r| Found::Text(r.as_str().into())),
        Field::Capability => event.capability().map(|c| Found::Text(c.into())),
        Field::Payload(name) => event.payload.get(name).map(Found::Payload),
    }
}

fn well_typed(found: &Found<'_>, ty: FieldType) -> bool {
    match (found, ty) {
        (Found::Text(_), FieldType::Token) => true,
        (Found::Text(t), FieldType::Risk) => Risk::parse(t).is_some(),
        (Found::Text(_), FieldType::Number | FieldType::Text) => false,
        (Found::Payload(v), FieldType::Number) => v.as_number().is_some(),
        (Found::Payload(v), FieldType::Token | FieldType::Text) => v.as_str().is_some(),
        (Found::Payload(_), FieldType::Risk) => false,
    }
}

/// Whether a well-typed string is well formed: a token, or acceptable text.
/// Built-in names were checked by [`name_fault`] already.
fn well_formed(found: &Found<'_>, ty: FieldType) -> bool {
    match (found, ty) {
        (Found::Payload(v), FieldType::Token) => v.as_str().is_some_and(token::is_token),
        (Found::Payload(v), FieldType::Text) => v.as_str().is_some_and(token::is_text),
        _ => true,
    }
}

fn holds(expr: &Expr, event: &Event) -> bool {
    match expr {
        Expr::And(items) => items.iter().all(|e| holds(e, event)),
        Expr::Or(items) => items.iter().any(|e| holds(e, event)),
        Expr::Not(inner) => !holds(inner, event),
        Expr::Test(test) => test_holds(test, event),
    }
}

fn test_holds(test: &Test, event: &Event) -> bool {
    match (test, lookup(event, test.field())) {
        (Test::Number { op, value, .. }, Some(Found::Payload(v))) => {
            v.as_number().is_some_and(|n| op.holds(n.cmp(value)))
        }
        (
            Test::Strings {
                values,
                negated,
                unicode,
                ..
            },
            Some(found),
        ) => {
            let text = match &found {
                Found::Text(t) => Some(t.as_ref()),
                Found::Payload(v) => v.as_str(),
            };
            text.is_some_and(|t| {
                let listed = if *unicode {
                    values.iter().any(|v| token::text_eq(t, v))
                } else {
                    values.iter().any(|v| v == t)
                };
                listed != *negated
            })
        }
        (Test::Risk { levels }, Some(Found::Text(t))) => {
            Risk::parse(&t).is_some_and(|r| levels.contains(r))
        }
        _ => false,
    }
}

impl crate::policy::Condition {
    /// Whether the condition holds for a well-formed event.
    pub fn holds(&self, event: &Event) -> bool {
        holds(&self.expr, event)
    }
}

/// A field's value in an event, for messages (`amount = 2500`, `environment` missing).
pub fn show_field(event: &Event, field: &Field) -> String {
    match lookup(event, field) {
        None => format!("`{field}` is missing"),
        Some(Found::Text(t)) => format!("{field} = {t}"),
        Some(Found::Payload(v)) => {
            let mut text = String::new();
            v.write_json(&mut text);
            format!("{field} = {text}")
        }
    }
}

impl Rule {
    /// Whether the rule's capability pattern covers the event's capability.
    pub fn applies_to(&self, event: &Event) -> bool {
        match (&event.resource, &event.action) {
            (Some(r), Some(a)) => self.capability.matches(r, a),
            _ => false,
        }
    }

    /// Whether every condition holds for a well-formed event.
    pub fn matches(&self, event: &Event) -> bool {
        self.applies_to(event) && self.conditions.iter().all(|c| holds(&c.expr, event))
    }
}

impl Policy {
    /// Decides `event`: tier precedence, first match in file order, default deny,
    /// malformed events denied.
    ///
    /// ```
    /// use capfence_compiler::{Policy, event::Event, eval::DecisionKind};
    /// let policy = Policy::parse(
    ///     "deny:\n  - capability: payments.transfer\n    amount_gt: 10000\n\
    ///      allow:\n  - capability: payments.transfer\n",
    ///     "p.yaml",
    /// ).unwrap();
    /// let event = Event::new("bot", "payments", "transfer", "production", "low")
    ///     .with("amount", "15000.00");
    /// let decision = policy.decide(&event);
    /// assert_eq!(decision.kind, DecisionKind::Deny);
    /// assert_eq!(decision.rule.as_deref(), Some("deny[0]"));
    /// ```
    pub fn decide(&self, event: &Event) -> Decision {
        let fault = name_fault(event);
        if fault != NameFault::None {
            return Decision::malformed(fault.field(), fault.fault());
        }
        let applicable: Vec<&Rule> = self.rules.iter().filter(|r| r.applies_to(event)).collect();
        if let Some((field, fault)) = malformed(&applicable, event) {
            return Decision::malformed(field.to_string(), fault);
        }
        match applicable
            .iter()
            .find(|r| r.conditions.iter().all(|c| holds(&c.expr, event)))
        {
            Some(rule) => Decision {
                kind: rule.tier,
                rule: Some(rule.id.clone()),
                reason: rule.decision_reason(),
                cause: Cause::Rule,
            },
            None => Decision {
                kind: DecisionKind::Deny,
                rule: None,
                reason: DEFAULT_DENY_REASON.to_owned(),
                cause: Cause::DefaultDeny,
            },
        }
    }
}

/// What makes the event malformed for these rules, if anything: the first
/// tested field (in precedence order) that is missing or of the wrong type.
fn malformed<'r>(rules: &[&'r Rule], event: &Event) -> Option<(&'r Field, Fault)> {
    let mut reason = None;
    for rule in rules {
        rule.for_each_test(&mut |test| {
            if reason.is_some() {
                return;
            }
            let field = test.field();
            let fault = match lookup(event, field) {
                None => Some(Fault::Missing),
                Some(found) if !well_typed(&found, test.field_type()) => {
                    Some(Fault::WrongType(test.field_type()))
                }
                Some(found) if !well_formed(&found, test.field_type()) => {
                    Some(Fault::NotToken(test.field_type()))
                }
                Some(_) => None,
            };
            reason = fault.map(|fault| (field, fault));
        });
        if reason.is_some() {
            break;
        }
    }
    reason
}
