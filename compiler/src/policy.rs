//! The policy IR: tiers, rules, conditions and capability patterns.
//!
//! A [`Policy`] is what the loader makes of a YAML file and what every other part
//! consumes: the reference evaluator, the analyses and the code generator. It owns
//! no I/O; [`Policy::load`] reads a file, [`Policy::parse`] takes text.

use std::fmt;

use rust_decimal::Decimal;

use crate::source::Location;

/// What a policy says about an event, and the tier of the rule that says
/// it (a rule's tier is the decision it makes: one type for both): the
/// variants are in precedence order (a matching `deny` rule beats
/// everything), so `Ord` is precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DecisionKind {
    /// Refuse the call.
    Deny,
    /// Hold the call until a human signs off.
    RequireApproval,
    /// Let the call through.
    Allow,
}

impl DecisionKind {
    /// All three, in precedence order.
    pub const ALL: [DecisionKind; 3] = [
        DecisionKind::Deny,
        DecisionKind::RequireApproval,
        DecisionKind::Allow,
    ];

    /// `deny`, `require_approval` or `allow`: the decision's name and the
    /// tier's YAML key.
    pub const fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Allow => "allow",
            DecisionKind::RequireApproval => "require_approval",
            DecisionKind::Deny => "deny",
        }
    }

    /// Parses `allow`, `require_approval` or `deny`.
    pub fn parse(text: &str) -> Option<DecisionKind> {
        match text {
            "allow" => Some(DecisionKind::Allow),
            "require_approval" => Some(DecisionKind::RequireApproval),
            "deny" => Some(DecisionKind::Deny),
            _ => None,
        }
    }
}

impl fmt::Display for DecisionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A risk level; ordered `low < medium < high < critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Risk {
    /// Low risk.
    Low,
    /// Medium risk.
    Medium,
    /// High risk.
    High,
    /// Critical risk.
    Critical,
}

impl Risk {
    /// All levels in order.
    pub const ALL: [Risk; 4] = [Risk::Low, Risk::Medium, Risk::High, Risk::Critical];

    /// Parses a level, ASCII case-insensitively.
    pub fn parse(text: &str) -> Option<Risk> {
        Risk::ALL
            .into_iter()
            .find(|r| r.name().eq_ignore_ascii_case(text))
    }

    /// The level's lowercase name.
    pub const fn name(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
            Risk::Critical => "critical",
        }
    }

    /// The level's bit in a [`RiskSet`].
    pub const fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Risk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of risk levels as a bit mask (bit `i` = level `i` of [`Risk::ALL`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RiskSet(u8);

impl RiskSet {
    /// Every level.
    pub const ALL: RiskSet = RiskSet(0b1111);

    /// No level.
    pub const EMPTY: RiskSet = RiskSet(0);

    /// The set of the levels whose bits are set (bit `i` = level `i` of
    /// [`Risk::ALL`]; other bits are dropped).
    pub const fn from_bits(bits: u8) -> RiskSet {
        RiskSet(bits & RiskSet::ALL.0)
    }

    /// The bit mask.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// The set of one level.
    pub const fn of(risk: Risk) -> RiskSet {
        RiskSet(risk.bit())
    }

    /// This set with `risk` added.
    pub const fn with(self, risk: Risk) -> RiskSet {
        RiskSet(self.0 | risk.bit())
    }

    /// The levels not in this set.
    pub const fn complement(self) -> RiskSet {
        RiskSet(RiskSet::ALL.0 & !self.0)
    }

    /// The levels in both sets.
    pub const fn intersect(self, other: RiskSet) -> RiskSet {
        RiskSet(self.0 & other.0)
    }

    /// Whether the set has no level.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether `risk` is in the set.
    pub const fn contains(self, risk: Risk) -> bool {
        self.0 & risk.bit() != 0
    }

    /// The levels of the set, in order.
    pub fn levels(self) -> impl Iterator<Item = Risk> {
        Risk::ALL.into_iter().filter(move |r| self.contains(*r))
    }

    /// The levels `r` with `r <op> level`.
    pub fn compare(op: CmpOp, level: Risk) -> RiskSet {
        RiskSet(
            Risk::ALL
                .into_iter()
                .filter(|r| op.holds(r.cmp(&level)))
                .fold(0, |mask, r| mask | r.bit()),
        )
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl CmpOp {
    /// Whether `ordering` (left compared to right) satisfies the operator.
    pub fn holds(self, ordering: std::cmp::Ordering) -> bool {
        use std::cmp::Ordering::{Equal, Greater, Less};
        match self {
            CmpOp::Eq => ordering == Equal,
            CmpOp::Ne => ordering != Equal,
            CmpOp::Lt => ordering == Less,
            CmpOp::Le => ordering != Greater,
            CmpOp::Gt => ordering == Greater,
            CmpOp::Ge => ordering != Less,
        }
    }

    /// The operator's symbol.
    pub const fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }
}

/// An event field a condition can test.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    /// Who acts; compared exactly.
    Actor,
    /// The resource (`payments`); case-insensitive.
    Resource,
    /// The action (`transfer`); case-insensitive.
    Action,
    /// `resource.action`; case-insensitive.
    Capability,
    /// The environment (`production`); case-insensitive.
    Environment,
    /// The risk level.
    Risk,
    /// A payload field by name.
    Payload(String),
}

impl Field {
    /// Resolves a field name as written in a rule key or a `when` expression:
    /// the built-in event fields, `payload.NAME`, or a bare payload field name.
    pub fn from_name(name: &str) -> Field {
        match name {
            "actor" => Field::Actor,
            "resource" => Field::Resource,
            "action" => Field::Action,
            "capability" => Field::Capability,
            "environment" => Field::Environment,
            "risk" => Field::Risk,
            other => Field::Payload(other.strip_prefix("payload.").unwrap_or(other).to_owned()),
        }
    }

    /// The field's name as the user writes it (`amount`, `environment`).
    pub fn name(&self) -> &str {
        match self {
            Field::Actor => "actor",
            Field::Resource => "resource",
            Field::Action => "action",
            Field::Capability => "capability",
            Field::Environment => "environment",
            Field::Risk => "risk",
            Field::Payload(name) => name,
        }
    }

    /// Whether values of this field are folded to ASCII lowercase.
    pub fn is_case_insensitive(&self) -> bool {
        matches!(
            self,
            Field::Resource | Field::Action | Field::Capability | Field::Environment | Field::Risk
        )
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The type a field must have in an event for the policy's tests to apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    /// An exact decimal (JSON number or decimal string).
    Number,
    /// A string holding a plain ASCII token (see [`crate::token`]).
    Token,
    /// Unicode text, compared after NFKC normalization: a payload field the
    /// policy lists under `unicode_fields`.
    Text,
    /// A risk level.
    Risk,
}

impl FieldType {
    /// How the type is named in messages.
    pub const fn describe(self) -> &'static str {
        match self {
            FieldType::Number => "a number",
            FieldType::Token => "a string",
            FieldType::Text => "a text string",
            FieldType::Risk => "a risk level (low, medium, high, critical)",
        }
    }
}

/// One atomic test on one field.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Test {
    /// `field <op> value` on an exact decimal.
    Number {
        /// The payload field.
        field: Field,
        /// The operator.
        op: CmpOp,
        /// The threshold.
        value: Decimal,
    },
    /// `field in values` (or `not in` when `negated`); values sorted, distinct,
    /// folded to lowercase for case-insensitive fields.
    Strings {
        /// The field.
        field: Field,
        /// The values.
        values: Vec<String>,
        /// `not in` instead of `in`.
        negated: bool,
        /// The field is listed under `unicode_fields`: the values are in NFKC
        /// form and an event's value is normalized before it is compared.
        unicode: bool,
    },
    /// `risk in levels`.
    Risk {
        /// The accepted levels.
        levels: RiskSet,
    },
}

impl Test {
    /// The field the test reads.
    pub fn field(&self) -> &Field {
        match self {
            Test::Number { field, .. } | Test::Strings { field, .. } => field,
            Test::Risk { .. } => &Field::Risk,
        }
    }

    /// The type the field must have.
    pub fn field_type(&self) -> FieldType {
        match self {
            Test::Number { .. } => FieldType::Number,
            Test::Strings { unicode: false, .. } => FieldType::Token,
            Test::Strings { unicode: true, .. } => FieldType::Text,
            Test::Risk { .. } => FieldType::Risk,
        }
    }
}

/// A boolean expression over tests.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Expr {
    /// All must hold (an empty `And` holds).
    And(Vec<Expr>),
    /// One must hold (an empty `Or` does not).
    Or(Vec<Expr>),
    /// Negation.
    Not(Box<Expr>),
    /// An atomic test.
    Test(Test),
}

impl Expr {
    /// Calls `visit` on every atomic test, left to right.
    pub fn for_each_test<'a>(&'a self, visit: &mut dyn FnMut(&'a Test)) {
        match self {
            Expr::And(items) | Expr::Or(items) => {
                items.iter().for_each(|e| e.for_each_test(visit));
            }
            Expr::Not(inner) => inner.for_each_test(visit),
            Expr::Test(test) => visit(test),
        }
    }

    /// Calls `visit` on every atomic test, left to right, mutably.
    pub fn for_each_test_mut(&mut self, visit: &mut dyn FnMut(&mut Test)) {
        match self {
            Expr::And(items) | Expr::Or(items) => {
                items.iter_mut().for_each(|e| e.for_each_test_mut(visit));
            }
            Expr::Not(inner) => inner.for_each_test_mut(visit),
            Expr::Test(test) => visit(test),
        }
    }
}

/// A capability pattern: `*`, or `resource.action` where either segment may be `*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CapabilityPattern {
    /// A lone `*`: every capability.
    Any,
    /// Two segments; `None` is a `*` segment.
    Segments {
        /// The resource, or `None` for `*`.
        resource: Option<String>,
        /// The action, or `None` for `*`.
        action: Option<String>,
    },
}

impl CapabilityPattern {
    /// Whether the pattern matches `resource.action` (both already lowercase).
    pub fn matches(&self, resource: &str, action: &str) -> bool {
        match self {
            CapabilityPattern::Any => true,
            CapabilityPattern::Segments {
                resource: r,
                action: a,
            } => crate::capability::covers(r.as_deref(), a.as_deref(), resource, action),
        }
    }
}

impl fmt::Display for CapabilityPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CapabilityPattern::Any => f.write_str("*"),
            CapabilityPattern::Segments { resource, action } => write!(
                f,
                "{}.{}",
                resource.as_deref().unwrap_or("*"),
                action.as_deref().unwrap_or("*")
            ),
        }
    }
}

/// One condition of a rule: a key (or the `when` expression) and what it tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// The key as written (`amount_gt`, `environment`, `when`).
    pub key: String,
    /// Where the key is.
    pub location: Location,
    /// The test; a rule holds when all its conditions hold.
    pub expr: Expr,
    /// A short human rendering (`amount > 10000.0`).
    pub text: String,
}

/// A rule: a capability pattern and a conjunction of conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The rule's id: its `id` key, or `<tier>[<index>]`.
    pub id: String,
    /// The tier the rule sits in.
    pub tier: DecisionKind,
    /// Its index within the tier, in file order.
    pub index: usize,
    /// The capability pattern.
    pub capability: CapabilityPattern,
    /// Where the `capability` key is.
    pub capability_location: Location,
    /// The conditions besides the capability.
    pub conditions: Vec<Condition>,
    /// The `reason` key, if given.
    pub reason: Option<String>,
    /// `approvals: N` (require_approval rules only): how many distinct
    /// approvers must sign. `None`: one.
    pub approvals: Option<u32>,
    /// `approvers: [..]` (require_approval rules only): who may sign for the
    /// rule. `None`: every approver the policy lists.
    pub approvers: Option<Vec<String>>,
    /// The velocity aggregates the rule tests (`amount_sum_gt` with
    /// `window`): each is read from the event under [`Window::key`](crate::aggregate::Window::key).
    pub windows: Vec<crate::aggregate::Window>,
    /// Where the rule starts.
    pub location: Location,
}

impl Rule {
    /// The reason a decision by this rule carries: the rule's `reason`, or a
    /// rendering of the rule (`denied by deny[0]: payments.transfer, amount > 10000.0`).
    pub fn decision_reason(&self) -> String {
        if let Some(reason) = &self.reason {
            return reason.clone();
        }
        let verb = match self.tier {
            DecisionKind::Deny => "denied by",
            DecisionKind::RequireApproval => "approval required by",
            DecisionKind::Allow => "allowed by",
        };
        let mut text = format!("{verb} {}: {}", self.id, self.capability);
        for condition in &self.conditions {
            text.push_str(", ");
            text.push_str(&condition.text);
        }
        text
    }

    /// Calls `visit` on every atomic test of the rule's conditions, in order.
    pub fn for_each_test<'a>(&'a self, visit: &mut dyn FnMut(&'a Test)) {
        for condition in &self.conditions {
            condition.expr.for_each_test(visit);
        }
    }
}

/// A loaded policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The file the policy came from, as given to the loader.
    pub file: String,
    /// `policy_name`, if given.
    pub name: Option<String>,
    /// `version`, if given.
    pub version: Option<String>,
    /// The rules in precedence order: every deny rule in file order, then every
    /// require_approval rule, then every allow rule.
    pub rules: Vec<Rule>,
    /// SHA-256 of the file's bytes, lowercase hex.
    pub digest: String,
    /// The file's text, whole: what a ledger records when it activates the
    /// policy.
    pub source: String,
    /// The policy's field types: every field any rule tests, with the type it must have.
    pub field_types: Vec<(Field, FieldType)>,
    /// Payload fields whose strings are Unicode text (`unicode_fields`), sorted.
    pub unicode_fields: Vec<String>,
    /// The operators who may sign approvals (`approvers:`), in file order.
    /// Empty: approvals are not authenticated (any `--by` name is taken).
    pub approvers: Vec<Approver>,
    /// MCP tool names and the capability each one's calls exercise
    /// (`tools:`), in file order: what `capfence mcp-proxy` decides a
    /// `tools/call` as.
    pub tools: Vec<(String, String)>,
    /// Who must sign a change away from this policy while it is the
    /// ledger's active one (`policy_changes:`).
    pub changes: PolicyChanges,
    /// Who may sign and countersign checkpoints besides the approvers
    /// (`witnesses:`): names and Ed25519 public keys, in file order.
    pub witnesses: Vec<Approver>,
    /// Who may sign in to the operator console read-only (`viewers:`):
    /// names and Ed25519 public keys, in file order.
    pub viewers: Vec<Approver>,
}

/// `policy_changes: {approvals: N, approvers: [..], delay: 24h}`: what a
/// change away from this policy needs while it is active. Default: one
/// signature from any listed approver, no delay. A change that only
/// tightens needs one signature from them and no delay.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicyChanges {
    /// Distinct signatures needed (0 in the default: read as 1).
    pub approvals: u32,
    /// Who may sign; empty: any approver the policy lists.
    pub approvers: Vec<String>,
    /// How long after the proposal the change may be activated, seconds.
    pub delay_secs: u64,
}

impl PolicyChanges {
    /// Distinct signatures a loosening change needs.
    pub fn quorum(&self) -> u32 {
        self.approvals.max(1)
    }

    /// Whether `name` may sign changes of `policy` (the policy these
    /// requirements belong to).
    pub fn may_sign(&self, policy: &Policy, name: &str) -> bool {
        policy.approvers.iter().any(|a| a.name == name)
            && (self.approvers.is_empty() || self.approvers.iter().any(|a| a == name))
    }
}

/// An operator listed under `approvers:`: a name and an Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approver {
    /// The operator's name (`ops1`), recorded with each signature.
    pub name: String,
    /// The public key as written: `ed25519:` and the 32 key bytes in
    /// standard base64.
    pub key: String,
    /// Where the entry is.
    pub location: Location,
}

impl Policy {
    /// Every velocity aggregate any rule tests, distinct, sorted.
    pub fn windows(&self) -> Vec<crate::aggregate::Window> {
        let mut all: Vec<crate::aggregate::Window> = self
            .rules
            .iter()
            .flat_map(|r| r.windows.iter().cloned())
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// The rules of one tier, in file order.
    pub fn tier(&self, tier: DecisionKind) -> impl Iterator<Item = &Rule> {
        self.rules.iter().filter(move |r| r.tier == tier)
    }

    /// The type the policy's tests give `field`, if any rule tests it.
    pub fn field_type(&self, field: &Field) -> Option<FieldType> {
        self.field_types
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, t)| *t)
    }
}
