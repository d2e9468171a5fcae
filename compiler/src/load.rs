//! Loading a policy: YAML tree to IR, with an error that names file, line,
//! column and key for everything a policy author can get wrong.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::number::parse_exact;
use crate::policy::{
    Approver, CapabilityPattern, CmpOp, Condition, DecisionKind, Expr, Field, FieldType, Policy,
    Risk, RiskSet, Rule, Test,
};
use crate::source::Location;
use crate::suggest::closest;
use crate::token;
use crate::when::{parse_when, string_set};
use crate::yaml::{self, Node, NodeKind, Style};

/// What kind of mistake a [`LoadError`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoadErrorKind {
    /// The file could not be read.
    Io,
    /// The file is not valid YAML, or uses a YAML feature policies may not use.
    Yaml,
    /// The file holds no policy.
    Empty,
    /// A value has the wrong shape (a list where a string belongs, …).
    WrongType,
    /// A top-level key that is not a tier.
    UnknownTier,
    /// A rule key that is not part of the language.
    UnknownKey,
    /// Two rules with the same id.
    DuplicateId,
    /// A malformed capability pattern, or a rule without one.
    BadCapability,
    /// A threshold that is not an exact decimal.
    NotANumber,
    /// A risk level that does not exist.
    BadRisk,
    /// A `when` expression that does not parse or type-check.
    When,
    /// A field tested as a number in one place and as a string in another.
    FieldTypeConflict,
    /// A name or tested string that is not a plain token (whitespace, control,
    /// format or non-ASCII characters), or bad `unicode_fields` text.
    NotAToken,
    /// A bad `approvers:` entry or rule `approvals:`/`approvers:` key: a key
    /// that is not `ed25519:<base64>`, a key listed twice, an unknown
    /// approver, a quorum no set of eligible approvers can meet.
    Approvers,
    /// A `tools:` entry that is not a tool name mapped to `resource.action`.
    Tools,
    /// A velocity condition without a `window`, a bad duration, a `per`
    /// field that cannot group calls.
    Window,
}

impl LoadErrorKind {
    /// Every kind.
    pub const ALL: [LoadErrorKind; 16] = [
        LoadErrorKind::Io,
        LoadErrorKind::Yaml,
        LoadErrorKind::Empty,
        LoadErrorKind::WrongType,
        LoadErrorKind::UnknownTier,
        LoadErrorKind::UnknownKey,
        LoadErrorKind::DuplicateId,
        LoadErrorKind::BadCapability,
        LoadErrorKind::NotANumber,
        LoadErrorKind::BadRisk,
        LoadErrorKind::When,
        LoadErrorKind::FieldTypeConflict,
        LoadErrorKind::NotAToken,
        LoadErrorKind::Approvers,
        LoadErrorKind::Tools,
        LoadErrorKind::Window,
    ];

    /// What the kind means, for a reader of a diagnostic's code.
    pub const fn help(self) -> &'static str {
        match self {
            LoadErrorKind::Io => "The policy file could not be read.",
            LoadErrorKind::Yaml => {
                "The file is not valid YAML, or uses a YAML feature policies may not use."
            }
            LoadErrorKind::Empty => "The policy file is empty.",
            LoadErrorKind::WrongType => "A value has the wrong shape.",
            LoadErrorKind::UnknownTier => "A top-level key that is not a tier.",
            LoadErrorKind::UnknownKey => "A rule key that is not part of the language.",
            LoadErrorKind::DuplicateId => "Two rules share an id.",
            LoadErrorKind::BadCapability => {
                "A malformed capability pattern, or a rule without one."
            }
            LoadErrorKind::NotANumber => "A threshold that is not an exact decimal.",
            LoadErrorKind::BadRisk => "A risk level that does not exist.",
            LoadErrorKind::When => "A `when` expression that does not parse or type-check.",
            LoadErrorKind::FieldTypeConflict => {
                "A field tested as a number in one place and as a string in another."
            }
            LoadErrorKind::NotAToken => {
                "A name or tested string that is not a plain token (whitespace, control, format or non-ASCII characters), or bad `unicode_fields` text."
            }
            LoadErrorKind::Approvers => {
                "A bad `approvers:` entry or rule `approvals:`/`approvers:` key: a key that is not `ed25519:<base64>`, one key under two names, an unknown approver, or a quorum larger than the rule's eligible approvers."
            }
            LoadErrorKind::Tools => {
                "A `tools:` entry that is not a tool name mapped to `resource.action`."
            }
            LoadErrorKind::Window => {
                "A velocity condition without a `window`, a bad duration, or a `per` field that cannot group calls."
            }
        }
    }

    /// A stable code for the kind, used by diagnostics.
    pub const fn code(self) -> &'static str {
        match self {
            LoadErrorKind::Io => "io-error",
            LoadErrorKind::Yaml => "yaml-syntax",
            LoadErrorKind::Empty => "empty-policy",
            LoadErrorKind::WrongType => "wrong-type",
            LoadErrorKind::UnknownTier => "unknown-tier",
            LoadErrorKind::UnknownKey => "unknown-key",
            LoadErrorKind::DuplicateId => "duplicate-id",
            LoadErrorKind::BadCapability => "bad-capability",
            LoadErrorKind::NotANumber => "not-a-number",
            LoadErrorKind::BadRisk => "bad-risk",
            LoadErrorKind::When => "when-syntax",
            LoadErrorKind::FieldTypeConflict => "field-type-conflict",
            LoadErrorKind::NotAToken => "not-a-token",
            LoadErrorKind::Approvers => "bad-approvers",
            LoadErrorKind::Tools => "bad-tools",
            LoadErrorKind::Window => "bad-window",
        }
    }
}

/// A policy that cannot be loaded, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct LoadError {
    /// The file, as given to the loader.
    pub file: String,
    /// Where in it; `None` when the file could not be read at all.
    pub location: Option<Location>,
    /// The key involved, if any (`amount_gt`, `when`, `deny`).
    pub key: Option<String>,
    /// What kind of mistake it is.
    pub kind: LoadErrorKind,
    /// What is wrong.
    pub message: String,
    /// A suggestion (`did you mean `amount_gt`?`).
    pub help: Option<String>,
}

impl LoadError {
    fn render(&self) -> String {
        let mut text = match self.location {
            Some(at) => format!("{}:{}: {}", self.file, at, self.message),
            None => format!("{}: {}", self.file, self.message),
        };
        if let Some(help) = &self.help {
            text.push_str("; ");
            text.push_str(help);
        }
        text
    }
}

const TOP_KEYS: [&str; 11] = [
    "policy_name",
    "version",
    "unicode_fields",
    "approvers",
    "viewers",
    "policy_changes",
    "witnesses",
    "tools",
    "deny",
    "require_approval",
    "allow",
];
const RULE_KEYS: [&str; 21] = [
    "id",
    "window",
    "per",
    "new",
    "cooling",
    "calls_gt",
    "calls_gte",
    "approvals",
    "approvers",
    "capability",
    "environment",
    "actor",
    "risk",
    "risk_gt",
    "risk_gte",
    "risk_lt",
    "risk_lte",
    "when",
    "reason",
    "environment_in",
    "actor_in",
];
const NUMERIC_SUFFIXES: [(&str, CmpOp); 6] = [
    ("_gte", CmpOp::Ge),
    ("_gt", CmpOp::Gt),
    ("_lte", CmpOp::Le),
    ("_lt", CmpOp::Lt),
    ("_eq", CmpOp::Eq),
    ("_ne", CmpOp::Ne),
];
const ALL_SUFFIXES: [&str; 8] = ["_gt", "_gte", "_lt", "_lte", "_eq", "_ne", "_in", "_not_in"];

impl Policy {
    /// Reads and loads the policy file at `path`.
    ///
    /// ```
    /// let policy = capfence_compiler::Policy::load(
    ///     concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/fintech_policy.yaml"),
    /// ).unwrap();
    /// assert_eq!(policy.rules.len(), 6);
    /// ```
    pub fn load(path: impl AsRef<Path>) -> Result<Policy, LoadError> {
        let path = path.as_ref();
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| LoadError {
            file: file.clone(),
            location: None,
            key: None,
            kind: LoadErrorKind::Io,
            message: format!("cannot read policy: {e}"),
            help: None,
        })?;
        Policy::parse(&text, &file)
    }

    /// Loads a policy from its text; `file` names it in errors.
    ///
    /// ```
    /// use capfence_compiler::Policy;
    /// let err = Policy::parse("allow:\n  - capability: payments.read\n    enviroment: prod\n", "p.yaml")
    ///     .unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "p.yaml:3:5: unknown key `enviroment` in rule allow[0]; did you mean `environment`?"
    /// );
    /// ```
    pub fn parse(text: &str, file: &str) -> Result<Policy, LoadError> {
        Loader {
            file,
            source: text,
            approvers: Vec::new(),
        }
        .policy()
    }
}

struct Loader<'a> {
    file: &'a str,
    source: &'a str,
    /// The policy's `approvers:`, read before its rules.
    approvers: Vec<Approver>,
}

impl Loader<'_> {
    fn error(
        &self,
        kind: LoadErrorKind,
        location: Location,
        key: Option<&str>,
        message: String,
    ) -> LoadError {
        LoadError {
            file: self.file.to_owned(),
            location: Some(location),
            key: key.map(str::to_owned),
            kind,
            message,
            help: None,
        }
    }

    fn policy(&self) -> Result<Policy, LoadError> {
        let root = yaml::parse(self.source)
            .map_err(|e| self.error(LoadErrorKind::Yaml, e.location, None, e.message))?;
        let empty = || {
            self.error(
                LoadErrorKind::Empty,
                Location::new(1, 1),
                None,
                "the policy file is empty: expected a mapping with `deny`, `require_approval` \
                 and/or `allow` lists"
                    .to_owned(),
            )
        };
        let root = root.ok_or_else(empty)?;
        let NodeKind::Map(entries) = &root.kind else {
            if root.is_null() {
                return Err(empty());
            }
            return Err(self.error(
                LoadErrorKind::WrongType,
                root.location,
                None,
                format!(
                    "a policy is a mapping of tiers (`deny`, `require_approval`, `allow`), found {}",
                    root.kind_name()
                ),
            ));
        };
        // Approvers first: rules name them, wherever the map stands.
        let mut approvers = Vec::new();
        for (key_node, value) in entries {
            if self.key_text(key_node)? == "approvers" {
                approvers = self.approvers(value)?;
            }
        }
        let this = Loader {
            file: self.file,
            source: self.source,
            approvers,
        };
        this.policy_body(entries)
    }

    fn policy_body(&self, entries: &[(Node, Node)]) -> Result<Policy, LoadError> {
        let mut name = None;
        let mut version = None;
        let mut unicode_fields: Vec<(String, Location)> = Vec::new();
        let mut tools = Vec::new();
        let mut tiers: [Vec<Rule>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        let mut changes = crate::policy::PolicyChanges::default();
        let mut witnesses = Vec::new();
        let mut viewers = Vec::new();
        for (key_node, value) in entries {
            let key = self.key_text(key_node)?;
            match key {
                "approvers" => {}
                "policy_changes" => changes = self.policy_changes(value)?,
                "witnesses" => witnesses = self.key_list(value, "witnesses", "witness")?,
                "viewers" => viewers = self.key_list(value, "viewers", "viewer")?,
                "tools" => tools = self.tools(value)?,
                "policy_name" => name = Some(self.string(value, key)?),
                "version" => version = Some(self.string(value, key)?),
                "unicode_fields" => unicode_fields = self.unicode_fields(value)?,
                "deny" | "require_approval" | "allow" => {
                    let (slot, tier) = match key {
                        "deny" => (0, DecisionKind::Deny),
                        "require_approval" => (1, DecisionKind::RequireApproval),
                        _ => (2, DecisionKind::Allow),
                    };
                    if let Some(rules) = tiers.get_mut(slot) {
                        *rules = self.tier(tier, value)?;
                    }
                }
                other => {
                    let mut err = self.error(
                        LoadErrorKind::UnknownTier,
                        key_node.location,
                        Some(other),
                        format!(
                            "unknown top-level key `{other}`: a policy has `policy_name`, \
                             `version`, `unicode_fields`, `approvers`, `viewers`, \
                             `policy_changes`, `witnesses`, `tools`, `deny`, \
                             `require_approval` and `allow`"
                        ),
                    );
                    err.help = closest(other, TOP_KEYS).map(|s| format!("did you mean `{s}`?"));
                    return Err(err);
                }
            }
        }
        let mut rules: Vec<Rule> = tiers.into_iter().flatten().collect();
        self.check_ids(&rules)?;
        let unicode: Vec<String> = unicode_fields.into_iter().map(|(f, _)| f).collect();
        for rule in &mut rules {
            self.check_names(rule, &unicode)?;
            for window in &mut rule.windows {
                window.text = window
                    .group_fields()
                    .filter(|f| unicode.iter().any(|u| u == f.as_ref()))
                    .cloned()
                    .collect();
            }
        }
        let field_types = self.field_types(&rules)?;
        let digest = hex::encode(Sha256::digest(self.source.as_bytes()));
        Ok(Policy {
            file: self.file.to_owned(),
            name,
            version,
            rules,
            digest,
            source: self.source.to_owned(),
            field_types,
            unicode_fields: {
                let mut sorted = unicode;
                sorted.sort();
                sorted
            },
            approvers: self.approvers.clone(),
            tools,
            changes,
            witnesses,
            viewers,
        })
    }

    /// `tools: {transfer_funds: payments.transfer, …}`: MCP tool names
    /// (tokens) mapped to the capability their calls exercise.
    fn tools(&self, node: &Node) -> Result<Vec<(String, String)>, LoadError> {
        let err = |location: Location, message: String| {
            self.error(LoadErrorKind::Tools, location, Some("tools"), message)
        };
        let NodeKind::Map(entries) = &node.kind else {
            return Err(err(
                node.location,
                format!(
                    "`tools` maps MCP tool names to capabilities (`transfer_funds: payments.transfer`), found {}",
                    node.kind_name()
                ),
            ));
        };
        let mut tools: Vec<(String, String)> = Vec::new();
        for (name_node, value) in entries {
            let name = self.key_text(name_node)?.to_owned();
            if !token::is_token(&name) {
                return Err(err(
                    name_node.location,
                    format!(
                        "tool name {} is not a plain token (letters, digits, `_-.:@+/`)",
                        token::escape_for_terminal(&format!("{name:?}"))
                    ),
                ));
            }
            let capability = self.string(value, "tools")?;
            let lower = capability.to_ascii_lowercase();
            let valid = lower
                .split_once('.')
                .is_some_and(|(r, a)| token::is_segment(r) && token::is_segment(a));
            if !valid {
                return Err(err(
                    value.location,
                    format!(
                        "tool `{name}`: {} is not a capability `resource.action` (e.g. `payments.transfer`)",
                        token::escape_for_terminal(&format!("{capability:?}"))
                    ),
                ));
            }
            tools.push((name, lower));
        }
        Ok(tools)
    }

    /// `approvers: {ops1: "ed25519:<base64>", …}`: token names, each key a
    /// 32-byte Ed25519 public key, no key listed under two names (one
    /// person would count twice towards a quorum).
    fn approvers(&self, node: &Node) -> Result<Vec<Approver>, LoadError> {
        self.key_list(node, "approvers", "approver")
    }

    /// A map of names to Ed25519 public keys under `key` (`approvers`,
    /// `witnesses`), each a `noun`.
    fn key_list(
        &self,
        node: &Node,
        key: &'static str,
        noun: &str,
    ) -> Result<Vec<Approver>, LoadError> {
        let NodeKind::Map(entries) = &node.kind else {
            return Err(self.error(
                LoadErrorKind::Approvers,
                node.location,
                Some(key),
                format!(
                    "`{key}` maps operator names to public keys (`ops1: ed25519:…`), found {}",
                    node.kind_name()
                ),
            ));
        };
        let mut list: Vec<Approver> = Vec::new();
        for (name_node, key_node) in entries {
            let name = self.key_text(name_node)?.to_owned();
            if !token::is_token(&name) {
                return Err(self.error(
                    LoadErrorKind::Approvers,
                    name_node.location,
                    Some(key),
                    format!(
                        "{noun} name {} is not a plain token (letters, digits, `_-.@:+`)",
                        token::escape_for_terminal(&format!("{name:?}"))
                    ),
                ));
            }
            let public = self.string(key_node, key)?;
            if crate::keys::public_key_bytes(&public).is_none() {
                return Err(self.error(
                    LoadErrorKind::Approvers,
                    key_node.location,
                    Some(key),
                    format!(
                        "{noun} `{name}`: the key is not `ed25519:` followed by 32 bytes in \
                         base64 (`capfence keys new` prints one)"
                    ),
                ));
            }
            if let Some(other) = list.iter().find(|a| a.key == public) {
                return Err(self.error(
                    LoadErrorKind::Approvers,
                    key_node.location,
                    Some(key),
                    format!(
                        "{key} `{}` and `{name}` have the same key: one person would count \
                         twice towards a quorum",
                        other.name
                    ),
                ));
            }
            list.push(Approver {
                name,
                key: public,
                location: name_node.location,
            });
        }
        Ok(list)
    }

    /// A threshold: an exact decimal scalar, and its text as written.
    fn threshold<'n>(
        &self,
        key: &str,
        value: &'n Node,
    ) -> Result<(rust_decimal::Decimal, &'n str), LoadError> {
        let text = value
            .as_scalar()
            .filter(|_| !value.is_null())
            .map(|(t, _)| t)
            .ok_or_else(|| {
                self.error(
                    LoadErrorKind::NotANumber,
                    value.location,
                    Some(key),
                    format!("`{key}` expects a number, found {}", value.kind_name()),
                )
            })?;
        let number = parse_exact(text).ok_or_else(|| {
            self.error(
                LoadErrorKind::NotANumber,
                value.location,
                Some(key),
                format!(
                    "`{key}` expects an exact decimal number, found `{text}`{}",
                    if text.chars().any(|c| c.is_ascii_digit()) {
                        " (it cannot be held exactly in 28 digits)"
                    } else {
                        ""
                    }
                ),
            )
        })?;
        Ok((number, text))
    }

    /// `window: 24h`: a whole number and one unit (s, m, h, d), at most 366 days.
    fn window_length(&self, node: &Node) -> Result<u64, LoadError> {
        let text = self.string(node, "window")?;
        crate::aggregate::parse_duration(&text).ok_or_else(|| {
            self.error(
                LoadErrorKind::Window,
                node.location,
                Some("window"),
                format!(
                    "`window: {text}` is not a duration: a whole number and one unit, s, m, h \
                     or d (`30m`, `24h`, `7d`), at most 366d"
                ),
            )
        })
    }

    /// `new: destination` or `new: [destination, memo]`: payload field
    /// names, each once.
    fn new_fields(&self, node: &Node) -> Result<Vec<String>, LoadError> {
        let names = self.strings(node, "new")?;
        let mut out: Vec<String> = Vec::new();
        for name in names {
            let ok = matches!(Field::from_name(&name), Field::Payload(ref base)
                if is_field_name(base) && !base.contains('.'));
            if !ok || out.contains(&name) {
                return Err(self.error(
                    LoadErrorKind::Window,
                    node.location,
                    Some("new"),
                    if ok {
                        format!("`new` lists `{name}` twice")
                    } else {
                        format!("`new`: `{name}` is not a payload field name (`new: destination`)")
                    },
                ));
            }
            out.push(name);
        }
        if out.is_empty() {
            return Err(self.error(
                LoadErrorKind::Window,
                node.location,
                Some("new"),
                "`new` names no field (`new: destination`)".to_owned(),
            ));
        }
        Ok(out)
    }

    /// `cooling: 72h`, as a window's length.
    fn cooling_length(&self, node: &Node) -> Result<u64, LoadError> {
        let text = self.string(node, "cooling")?;
        crate::aggregate::parse_duration(&text).ok_or_else(|| {
            self.error(
                LoadErrorKind::Window,
                node.location,
                Some("cooling"),
                format!(
                    "`cooling: {text}` is not a duration: a whole number and one unit, s, m, h \
                     or d (`72h`, `3d`), at most 366d"
                ),
            )
        })
    }

    /// `per: [actor, destination]`: `actor`, `environment` or payload fields,
    /// each once.
    fn per_fields(&self, node: &Node) -> Result<Vec<String>, LoadError> {
        let names = self.strings(node, "per")?;
        let mut out: Vec<String> = Vec::new();
        for name in names {
            let field = Field::from_name(&name);
            let ok = match &field {
                Field::Actor | Field::Environment => true,
                Field::Payload(base) => is_field_name(base) && !base.contains('.'),
                _ => false,
            };
            if !ok {
                return Err(self.error(
                    LoadErrorKind::Window,
                    node.location,
                    Some("per"),
                    format!(
                        "`per`: `{name}` cannot group calls; use `actor`, `environment` or a \
                         payload field name"
                    ),
                ));
            }
            let name = field.name().to_owned();
            if out.contains(&name) {
                return Err(self.error(
                    LoadErrorKind::Window,
                    node.location,
                    Some("per"),
                    format!("`per` lists `{name}` twice"),
                ));
            }
            out.push(name);
        }
        Ok(out)
    }

    /// `policy_changes: {approvals: N, approvers: [..], delay: 24h}`: names
    /// from the policy's `approvers:` (which must exist), a quorum they can
    /// meet, a duration.
    fn policy_changes(&self, node: &Node) -> Result<crate::policy::PolicyChanges, LoadError> {
        let key = "policy_changes";
        let bad = |location, message: String| {
            self.error(LoadErrorKind::Approvers, location, Some(key), message)
        };
        let NodeKind::Map(entries) = &node.kind else {
            return Err(bad(
                node.location,
                format!(
                    "`policy_changes` is a mapping (`approvals`, `approvers`, `delay`), found {}",
                    node.kind_name()
                ),
            ));
        };
        if self.approvers.is_empty() {
            return Err(bad(
                node.location,
                "`policy_changes` needs a top-level `approvers:` list: without keys a policy \
                 change cannot be signed"
                    .to_owned(),
            ));
        }
        let mut changes = crate::policy::PolicyChanges::default();
        for (name_node, value) in entries {
            match self.key_text(name_node)? {
                "approvals" => {
                    changes.approvals = value
                        .as_scalar()
                        .filter(|_| !value.is_null())
                        .and_then(|(text, _)| text.parse::<u32>().ok())
                        .filter(|n| *n >= 1)
                        .ok_or_else(|| {
                            bad(
                                value.location,
                                "`policy_changes.approvals` expects a whole number, 1 or more"
                                    .to_owned(),
                            )
                        })?;
                }
                "approvers" => {
                    changes.approvers =
                        self.rule_approvers(DecisionKind::RequireApproval, "approvers", value)?;
                }
                "delay" => {
                    let text = self.string(value, "delay")?;
                    changes.delay_secs =
                        crate::aggregate::parse_duration(&text).ok_or_else(|| {
                            bad(
                                value.location,
                                format!(
                                    "`delay: {text}` is not a duration: a whole number and one \
                                     unit, s, m, h or d (`24h`), at most 366d"
                                ),
                            )
                        })?;
                }
                other => {
                    return Err(bad(
                        name_node.location,
                        format!(
                            "unknown `policy_changes` key `{other}` (it has `approvals`, \
                             `approvers`, `delay`)"
                        ),
                    ));
                }
            }
        }
        let eligible = if changes.approvers.is_empty() {
            self.approvers.len()
        } else {
            changes.approvers.len()
        };
        if changes.quorum() as usize > eligible {
            return Err(bad(
                node.location,
                format!(
                    "`policy_changes` needs {} signatures, but only {eligible} approvers may sign",
                    changes.quorum()
                ),
            ));
        }
        Ok(changes)
    }

    /// `approvals: N` on a require_approval rule: a whole number from 1 up.
    fn approvals(&self, tier: DecisionKind, key: &str, value: &Node) -> Result<u32, LoadError> {
        self.approval_key_tier(tier, key, value)?;
        let n = value
            .as_scalar()
            .filter(|_| !value.is_null())
            .and_then(|(text, _)| text.parse::<u32>().ok())
            .filter(|n| *n >= 1)
            .ok_or_else(|| {
                self.error(
                    LoadErrorKind::Approvers,
                    value.location,
                    Some(key),
                    "`approvals` expects a whole number of approvers, 1 or more".to_owned(),
                )
            })?;
        let eligible = self.approvers.len();
        if eligible == 0 && n > 1 {
            return Err(self.error(
                LoadErrorKind::Approvers,
                value.location,
                Some(key),
                format!(
                    "`approvals: {n}` needs a top-level `approvers:` list: unsigned approvals \
                     cannot tell {n} people apart"
                ),
            ));
        }
        Ok(n)
    }

    /// `approvers: [ops1, ops2]` on a require_approval rule: names from the
    /// policy's `approvers:`, each once.
    fn rule_approvers(
        &self,
        tier: DecisionKind,
        key: &str,
        value: &Node,
    ) -> Result<Vec<String>, LoadError> {
        self.approval_key_tier(tier, key, value)?;
        let names = self.strings(value, key)?;
        let mut seen: Vec<String> = Vec::new();
        for name in names {
            if self.approvers.is_empty() {
                return Err(self.error(
                    LoadErrorKind::Approvers,
                    value.location,
                    Some(key),
                    "the rule names approvers, but the policy has no top-level `approvers:` list"
                        .to_owned(),
                ));
            }
            if !self.approvers.iter().any(|a| a.name == name) {
                let mut err = self.error(
                    LoadErrorKind::Approvers,
                    value.location,
                    Some(key),
                    format!(
                        "unknown approver `{name}` (the policy lists: {})",
                        self.approvers
                            .iter()
                            .map(|a| a.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                err.help = closest(&name, self.approvers.iter().map(|a| a.name.as_str()))
                    .map(|s| format!("did you mean `{s}`?"));
                return Err(err);
            }
            if seen.contains(&name) {
                return Err(self.error(
                    LoadErrorKind::Approvers,
                    value.location,
                    Some(key),
                    format!("`approvers` lists `{name}` twice"),
                ));
            }
            seen.push(name);
        }
        Ok(seen)
    }

    fn approval_key_tier(
        &self,
        tier: DecisionKind,
        key: &str,
        value: &Node,
    ) -> Result<(), LoadError> {
        if tier == DecisionKind::RequireApproval {
            return Ok(());
        }
        Err(self.error(
            LoadErrorKind::Approvers,
            value.location,
            Some(key),
            format!(
                "`{key}` belongs to require_approval rules, not to {} rules",
                tier.as_str()
            ),
        ))
    }

    /// `unicode_fields: [memo, beneficiary_name]`: payload fields only, each once.
    fn unicode_fields(&self, node: &Node) -> Result<Vec<(String, Location)>, LoadError> {
        let items: Vec<&Node> = match &node.kind {
            NodeKind::Seq(items) => items.iter().collect(),
            _ if node.is_null() => Vec::new(),
            _ => vec![node],
        };
        let mut fields: Vec<(String, Location)> = Vec::new();
        for item in items {
            let name = self.string(item, "unicode_fields")?;
            self.check_list_scalar(&name, item, "unicode_fields")?;
            let field = Field::from_name(&name);
            let Field::Payload(base) = &field else {
                return Err(self.error(
                    LoadErrorKind::NotAToken,
                    item.location,
                    Some("unicode_fields"),
                    format!(
                        "`unicode_fields`: `{name}` is a built-in field; only payload fields may \
                         hold Unicode text"
                    ),
                ));
            };
            if !is_field_name(base) {
                return Err(self.error(
                    LoadErrorKind::NotAToken,
                    item.location,
                    Some("unicode_fields"),
                    format!(
                        "`unicode_fields`: `{}` is not a field name",
                        name.escape_debug()
                    ),
                ));
            }
            if let Some((_, first)) = fields.iter().find(|(f, _)| f == base) {
                return Err(self.error(
                    LoadErrorKind::NotAToken,
                    item.location,
                    Some("unicode_fields"),
                    format!(
                        "`unicode_fields` lists `{base}` twice (first at line {})",
                        first.line
                    ),
                ));
            }
            fields.push((base.clone(), item.location));
        }
        Ok(fields)
    }

    /// Holds every tested string of `rule` to the token rules (see
    /// [`crate::token`]); a field listed in `unicode` takes NFKC text instead,
    /// and its values are normalized here.
    fn check_names(&self, rule: &mut Rule, unicode: &[String]) -> Result<(), LoadError> {
        for condition in &mut rule.conditions {
            let mut fault: Option<String> = None;
            condition.expr.for_each_test_mut(&mut |test| {
                let Test::Strings {
                    field,
                    values,
                    unicode: text,
                    ..
                } = test
                else {
                    return;
                };
                if fault.is_some() {
                    return;
                }
                let is_text = matches!(field, Field::Payload(name) if unicode.contains(name));
                for value in values.iter_mut() {
                    let ok = match field {
                        _ if is_text => token::is_text(value),
                        Field::Resource | Field::Action => token::is_segment(value),
                        Field::Capability => value
                            .split_once('.')
                            .is_some_and(|(r, a)| token::is_segment(r) && token::is_segment(a)),
                        _ => token::is_token(value),
                    };
                    if !ok {
                        let what = match field {
                            _ if is_text => token::TEXT_DESCRIPTION,
                            Field::Resource | Field::Action => token::SEGMENT_DESCRIPTION,
                            Field::Capability => "`resource.action` of plain ASCII names",
                            _ => token::TOKEN_DESCRIPTION,
                        };
                        fault = Some(format!(
                            "`{field}` is tested against \"{}\", which is not {what}",
                            value.escape_default()
                        ));
                        return;
                    }
                    if is_text {
                        *value = token::nfkc(value);
                    }
                }
                if is_text {
                    *text = true;
                    values.sort();
                    values.dedup();
                }
            });
            if let Some(message) = fault {
                let mut err = self.error(
                    LoadErrorKind::NotAToken,
                    condition.location,
                    Some(&condition.key),
                    format!("rule {}: {message}", rule.id),
                );
                err.help = Some(
                    "names are compared exactly and never trimmed; a payload field that holds \
                     Unicode text can be listed under `unicode_fields`"
                        .to_owned(),
                );
                return Err(err);
            }
        }
        Ok(())
    }

    /// A plain scalar where a name or a list of names belongs must not hold a
    /// comma or whitespace: `staging, sandbox` is one string, not a list.
    fn check_list_scalar(&self, text: &str, node: &Node, key: &str) -> Result<(), LoadError> {
        if !matches!(node.as_scalar(), Some((_, Style::Plain))) {
            return Ok(());
        }
        if text.contains(',') || text.chars().any(char::is_whitespace) {
            let parts: Vec<&str> = text
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|p| !p.is_empty())
                .collect();
            let mut err = self.error(
                LoadErrorKind::WrongType,
                node.location,
                Some(key),
                format!(
                    "`{key}`: `{}` is one string holding a comma or a space, not a list",
                    text.escape_debug()
                ),
            );
            err.help = Some(format!(
                "write [{}] for a list, or quote the value if it is one string",
                parts.join(", ")
            ));
            return Err(err);
        }
        Ok(())
    }

    fn key_text<'n>(&self, key: &'n Node) -> Result<&'n str, LoadError> {
        match key.as_scalar() {
            Some((text, _)) => Ok(text),
            None => Err(self.error(
                LoadErrorKind::WrongType,
                key.location,
                None,
                "keys must be plain words".to_owned(),
            )),
        }
    }

    fn string(&self, node: &Node, key: &str) -> Result<String, LoadError> {
        match node.as_scalar() {
            Some((text, _)) if !node.is_null() => Ok(text.to_owned()),
            _ => Err(self.error(
                LoadErrorKind::WrongType,
                node.location,
                Some(key),
                format!("`{key}` expects a string, found {}", node.kind_name()),
            )),
        }
    }

    fn strings(&self, node: &Node, key: &str) -> Result<Vec<String>, LoadError> {
        let wrong = |found: &Node| {
            self.error(
                LoadErrorKind::WrongType,
                found.location,
                Some(key),
                format!(
                    "`{key}` expects a string or a list of strings, found {}",
                    found.kind_name()
                ),
            )
        };
        match &node.kind {
            NodeKind::Scalar { text, .. } if !node.is_null() => {
                self.check_list_scalar(text, node, key)?;
                Ok(vec![text.clone()])
            }
            NodeKind::Seq(items) => {
                if items.is_empty() {
                    return Err(self.error(
                        LoadErrorKind::WrongType,
                        node.location,
                        Some(key),
                        format!("`{key}` is an empty list, which matches nothing"),
                    ));
                }
                items
                    .iter()
                    .map(|item| match item.as_scalar() {
                        Some((text, _)) if !item.is_null() => {
                            self.check_list_scalar(text, item, key)?;
                            Ok(text.to_owned())
                        }
                        _ => Err(wrong(item)),
                    })
                    .collect()
            }
            _ => Err(wrong(node)),
        }
    }

    fn tier(&self, tier: DecisionKind, node: &Node) -> Result<Vec<Rule>, LoadError> {
        match &node.kind {
            _ if node.is_null() => Ok(Vec::new()),
            NodeKind::Seq(items) => items
                .iter()
                .enumerate()
                .map(|(index, item)| self.rule(tier, index, item))
                .collect(),
            _ => Err(self.error(
                LoadErrorKind::WrongType,
                node.location,
                Some(tier.as_str()),
                format!(
                    "`{}` expects a list of rules, found {}",
                    tier.as_str(),
                    node.kind_name()
                ),
            )),
        }
    }

    fn rule(&self, tier: DecisionKind, index: usize, node: &Node) -> Result<Rule, LoadError> {
        self.rule_named(tier, index, node, None)
    }

    fn rule_named(
        &self,
        tier: DecisionKind,
        index: usize,
        node: &Node,
        name: Option<&str>,
    ) -> Result<Rule, LoadError> {
        let default_id = name.map_or_else(|| format!("{}[{index}]", tier.as_str()), str::to_owned);
        let NodeKind::Map(entries) = &node.kind else {
            return Err(self.error(
                LoadErrorKind::WrongType,
                node.location,
                Some(tier.as_str()),
                format!(
                    "rule {default_id} must be a mapping of conditions (`capability: …`), found {}",
                    node.kind_name()
                ),
            ));
        };
        let mut id = None;
        let mut window_node = None;
        let mut per_node = None;
        let mut new_node = None;
        let mut cooling_node = None;
        for (key, value) in entries {
            match self.key_text(key)? {
                "window" => window_node = Some((key.location, value)),
                "per" => per_node = Some(value),
                "new" => new_node = Some(value),
                "cooling" => cooling_node = Some((key.location, value)),
                _ => {}
            }
            if self.key_text(key)? == "id" {
                let text = self.string(value, "id")?;
                if text.trim().is_empty() {
                    return Err(self.error(
                        LoadErrorKind::WrongType,
                        value.location,
                        Some("id"),
                        "`id` must not be empty".to_owned(),
                    ));
                }
                id = Some(text);
            }
        }
        let id = id.unwrap_or(default_id);
        let mut capability = None;
        let mut conditions = Vec::new();
        let mut reason = None;
        let mut approvals = None;
        let mut approvers = None;
        let mut velocity = Vec::new();
        for (key_node, value) in entries {
            let key = self.key_text(key_node)?;
            let at = key_node.location;
            if let Some((field, op)) = velocity_key(key) {
                velocity.push((key, at, field, op, value));
                continue;
            }
            match key {
                "id" | "window" | "per" | "new" | "cooling" => {}
                "approvals" => {
                    approvals = Some((self.approvals(tier, key, value)?, value.location))
                }
                "approvers" => approvers = Some(self.rule_approvers(tier, key, value)?),
                "capability" => {
                    let text = self.string(value, key)?;
                    capability = Some((self.capability(&text, value.location)?, at));
                }
                "reason" => reason = Some(self.string(value, key)?),
                "when" => conditions.push(self.when(value, at)?),
                "risk" | "risk_in" | "risk_not_in" => {
                    let mut set = RiskSet::default();
                    let names = self.strings(value, key)?;
                    for name in &names {
                        set = set.with(self.risk(name, value, key)?);
                    }
                    if key == "risk_not_in" {
                        set = set.complement();
                    }
                    let text = format!(
                        "risk in [{}]",
                        set.levels().map(Risk::name).collect::<Vec<_>>().join(", ")
                    );
                    conditions.push(condition(
                        key,
                        at,
                        Expr::Test(Test::Risk { levels: set }),
                        text,
                    ));
                }
                "risk_gt" | "risk_gte" | "risk_lt" | "risk_lte" | "risk_eq" | "risk_ne" => {
                    let op = numeric_suffix(key).map(|(_, op)| op).unwrap_or(CmpOp::Eq);
                    let name = self.string(value, key)?;
                    let level = self.risk(&name, value, key)?;
                    let levels = RiskSet::compare(op, level);
                    let text = format!("risk {} {level}", op.symbol());
                    conditions.push(condition(key, at, Expr::Test(Test::Risk { levels }), text));
                }
                _ => conditions.push(self.keyed_condition(key, at, value, &id)?),
            }
        }
        let Some((capability, capability_location)) = capability else {
            return Err(self.error(
                LoadErrorKind::BadCapability,
                node.location,
                Some("capability"),
                format!("rule {id} has no `capability` (e.g. `capability: payments.transfer`)"),
            ));
        };
        let mut windows = Vec::new();
        let new_fields = new_node.map(|n| self.new_fields(n)).transpose()?;
        let cooling = match (cooling_node, &new_fields) {
            (Some((_, value)), Some(_)) => self.cooling_length(value)?,
            (Some((at, _)), None) => {
                return Err(self.error(
                    LoadErrorKind::Window,
                    at,
                    Some("cooling"),
                    format!("rule {id} has `cooling` but no `new` for it to apply to"),
                ));
            }
            (None, _) => 0,
        };
        let (resource, action) = match &capability {
            CapabilityPattern::Segments { resource, action } => (resource.clone(), action.clone()),
            CapabilityPattern::Any => (None, None),
        };
        if let Some(fields) = new_fields {
            let seconds = match window_node {
                Some((_, value)) => self.window_length(value)?,
                None => crate::aggregate::ALL_HISTORY,
            };
            let per = match per_node {
                Some(node) => self.per_fields(node)?,
                None => vec!["actor".to_owned()],
            };
            let window = crate::aggregate::Window {
                field: None,
                seconds,
                per: per.iter().map(|p| p.clone().into()).collect(),
                resource: resource.clone().map(Into::into),
                action: action.clone().map(Into::into),
                new: fields.into_iter().map(Into::into).collect(),
                cooling,
                text: std::borrow::Cow::Borrowed(&[]),
            };
            // The aggregate counts earlier calls that carried these values:
            // none (less than one) is new.
            let test = Test::Number {
                field: Field::Payload(window.key()),
                op: CmpOp::Lt,
                value: rust_decimal::Decimal::ONE,
            };
            let at = new_node.map_or(node.location, |n| n.location);
            conditions.push(condition("new", at, Expr::Test(test), window.describe()));
            windows.push(window);
        }
        if velocity.is_empty() {
            // With `new`, `window` and `per` are its own.
            let for_new = !windows.is_empty();
            if let Some((at, _)) = window_node.filter(|_| !for_new) {
                return Err(self.error(
                    LoadErrorKind::Window,
                    at,
                    Some("window"),
                    format!(
                        "rule {id} has a `window` but no `<field>_sum_gt`/`calls_gt`-style \
                         condition (or `new`) for it to apply to"
                    ),
                ));
            }
            if let Some(value) = per_node.filter(|_| !for_new) {
                return Err(self.error(
                    LoadErrorKind::Window,
                    value.location,
                    Some("per"),
                    format!("rule {id} has `per` but no window condition"),
                ));
            }
        } else {
            let Some((_, window_value)) = window_node else {
                let (key, at) = velocity
                    .first()
                    .map_or(("window", node.location), |v| (v.0, v.1));
                return Err(self.error(
                    LoadErrorKind::Window,
                    at,
                    Some(key),
                    format!(
                        "`{key}` needs a `window` in the same rule (`window: 24h`; units s, m, h, d)"
                    ),
                ));
            };
            let seconds = self.window_length(window_value)?;
            let per = match per_node {
                Some(node) => self.per_fields(node)?,
                None => vec!["actor".to_owned()],
            };
            for (key, at, field, op, value) in velocity {
                let window = crate::aggregate::Window {
                    field: field.map(|f| f.to_owned().into()),
                    seconds,
                    per: per.iter().map(|p| p.clone().into()).collect(),
                    resource: resource.clone().map(Into::into),
                    action: action.clone().map(Into::into),
                    new: std::borrow::Cow::Borrowed(&[]),
                    cooling: 0,
                    text: std::borrow::Cow::Borrowed(&[]),
                };
                let (number, written) = self.threshold(key, value)?;
                let text = format!("{} {} {written}", window.describe(), op.symbol());
                let test = Test::Number {
                    field: Field::Payload(window.key()),
                    op,
                    value: number,
                };
                conditions.push(condition(key, at, Expr::Test(test), text));
                if !windows.contains(&window) {
                    windows.push(window);
                }
            }
        }
        if let Some((n, at)) = approvals {
            let eligible = approvers.as_ref().map_or(self.approvers.len(), Vec::len);
            if usize::try_from(n).unwrap_or(usize::MAX) > eligible {
                return Err(self.error(
                    LoadErrorKind::Approvers,
                    at,
                    Some("approvals"),
                    format!(
                        "rule {id} needs {n} approvals, but only {eligible} approver{} may sign \
                         for it: no approval could ever let it through",
                        if eligible == 1 { "" } else { "s" }
                    ),
                ));
            }
        }
        Ok(Rule {
            id,
            tier,
            index,
            capability,
            capability_location,
            conditions,
            reason,
            approvals: approvals.map(|(n, _)| n),
            approvers,
            windows,
            location: node.location,
        })
    }

    /// A key of the `<field>…` family: `environment`, `actor`, `<field>_gt`, `<field>_in`, ….
    fn keyed_condition(
        &self,
        key: &str,
        at: Location,
        value: &Node,
        rule_id: &str,
    ) -> Result<Condition, LoadError> {
        if matches!(key, "environment" | "actor") {
            let field = Field::from_name(key);
            let values = self.strings(value, key)?;
            let text = set_text(&field, "in", &values);
            return Ok(condition(
                key,
                at,
                Expr::Test(string_set(&field, values, false)),
                text,
            ));
        }
        if let Some(base) = key
            .strip_suffix("_not_in")
            .or_else(|| key.strip_suffix("_in"))
            && is_field_name(base)
        {
            let negated = key.ends_with("_not_in");
            let field = Field::from_name(base);
            let values = self.strings(value, key)?;
            let text = set_text(&field, if negated { "not in" } else { "in" }, &values);
            let test = string_set(&field, values, negated);
            return Ok(condition(key, at, Expr::Test(test), text));
        }
        if let Some((base, op)) = numeric_suffix(key)
            && is_field_name(base)
        {
            let field = Field::from_name(base);
            if !matches!(field, Field::Payload(_)) {
                return Err(self.error(
                    LoadErrorKind::UnknownKey,
                    at,
                    Some(key),
                    format!("`{key}`: `{base}` is not a numeric field"),
                ));
            }
            let (number, text) = self.threshold(key, value)?;
            let rendered = format!("{base} {} {text}", op.symbol());
            let test = Test::Number {
                field,
                op,
                value: number,
            };
            return Ok(condition(key, at, Expr::Test(test), rendered));
        }
        let mut err = self.error(
            LoadErrorKind::UnknownKey,
            at,
            Some(key),
            format!("unknown key `{key}` in rule {rule_id}"),
        );
        err.help = suggest_key(key)
            .map(|s| format!("did you mean `{s}`?"))
            .or_else(|| {
                is_field_name(key).then(|| {
                    format!(
                        "a payload field needs an operator suffix: {}",
                        ALL_SUFFIXES.map(|s| format!("`{key}{s}`")).join(", ")
                    )
                })
            });
        Err(err)
    }

    fn risk(&self, name: &str, node: &Node, key: &str) -> Result<Risk, LoadError> {
        Risk::parse(name).ok_or_else(|| {
            let mut err = self.error(
                LoadErrorKind::BadRisk,
                node.location,
                Some(key),
                format!("`{key}`: unknown risk level `{name}` (low, medium, high, critical)"),
            );
            err.help = closest(&name.to_ascii_lowercase(), Risk::ALL.map(Risk::name))
                .map(|s| format!("did you mean `{s}`?"));
            err
        })
    }

    fn capability(&self, text: &str, at: Location) -> Result<CapabilityPattern, LoadError> {
        let lower = text.to_ascii_lowercase();
        if lower == "*" {
            return Ok(CapabilityPattern::Any);
        }
        let segment = |s: &str| -> Option<Option<String>> {
            if s == "*" {
                Some(None)
            } else if !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                Some(Some(s.to_owned()))
            } else {
                None
            }
        };
        let mut parts = lower.split('.');
        let parsed = match (parts.next(), parts.next(), parts.next()) {
            (Some(r), Some(a), None) => segment(r).zip(segment(a)),
            _ => None,
        };
        let (resource, action) = parsed.ok_or_else(|| {
            self.error(
                LoadErrorKind::BadCapability,
                at,
                Some("capability"),
                format!(
                    "bad capability pattern `{text}`: expected `resource.action` (letters, digits, \
                     `_`, `-`), where a segment may be `*`, or a lone `*`"
                ),
            )
        })?;
        Ok(CapabilityPattern::Segments { resource, action })
    }

    fn when(&self, node: &Node, at: Location) -> Result<Condition, LoadError> {
        let Some((text, style)) = node.as_scalar().filter(|_| !node.is_null()) else {
            return Err(self.error(
                LoadErrorKind::WrongType,
                node.location,
                Some("when"),
                format!(
                    "`when` expects an expression string, found {}",
                    node.kind_name()
                ),
            ));
        };
        let expr = parse_when(text).map_err(|e| {
            let location = self.when_location(node.location, style, e.line, e.column);
            self.error(
                LoadErrorKind::When,
                location,
                Some("when"),
                format!("`when`: {}", e.message),
            )
        })?;
        Ok(condition("when", at, expr, text.trim().to_owned()))
    }

    /// Maps a position inside a `when` expression to the file.
    fn when_location(&self, start: Location, style: Style, line: usize, column: usize) -> Location {
        match style {
            Style::Plain if line == 1 => Location::new(start.line, start.column + column - 1),
            Style::Quoted if line == 1 => Location::new(start.line, start.column + column),
            // A block scalar's location is its first content line and column.
            Style::Block => Location::new(start.line + line - 1, start.column + column - 1),
            _ => Location::new(start.line + line - 1, column),
        }
    }

    fn check_ids(&self, rules: &[Rule]) -> Result<(), LoadError> {
        for (i, rule) in rules.iter().enumerate() {
            if let Some(first) = rules.iter().take(i).find(|r| r.id == rule.id) {
                return Err(self.error(
                    LoadErrorKind::DuplicateId,
                    rule.location,
                    Some("id"),
                    format!(
                        "duplicate rule id `{}` (also used by the rule at line {})",
                        rule.id, first.location.line
                    ),
                ));
            }
        }
        Ok(())
    }

    fn field_types(&self, rules: &[Rule]) -> Result<Vec<(Field, FieldType)>, LoadError> {
        let mut types: Vec<(Field, FieldType, Location)> = Vec::new();
        for rule in rules {
            for condition in &rule.conditions {
                let mut conflict = None;
                condition.expr.for_each_test(&mut |test| {
                    let (field, ty) = (test.field(), test.field_type());
                    match types.iter().find(|(f, _, _)| f == field) {
                        Some((_, seen, first)) if *seen != ty && conflict.is_none() => {
                            conflict = Some((field.clone(), *seen, *first, ty));
                        }
                        Some(_) => {}
                        None => types.push((field.clone(), ty, condition.location)),
                    }
                });
                if let Some((field, seen, first, ty)) = conflict {
                    return Err(self.error(
                        LoadErrorKind::FieldTypeConflict,
                        condition.location,
                        Some(&condition.key),
                        format!(
                            "`{field}` is tested as {} here but as {} at line {}; a field has one type",
                            ty.describe(),
                            seen.describe(),
                            first.line
                        ),
                    ));
                }
            }
        }
        Ok(types.into_iter().map(|(f, t, _)| (f, t)).collect())
    }
}

fn condition(key: &str, location: Location, expr: Expr, text: String) -> Condition {
    Condition {
        key: key.to_owned(),
        location,
        expr,
        text,
    }
}

fn set_text(field: &Field, op: &str, values: &[String]) -> String {
    match values {
        [one] if op == "in" => format!("{field} = {one}"),
        [one] => format!("{field} != {one}"),
        _ => format!("{field} {op} [{}]", values.join(", ")),
    }
}

/// A velocity key: `calls_gt` … `calls_lte` (field `None`), or
/// `<field>_sum_gt` … `<field>_sum_lte`.
fn velocity_key(key: &str) -> Option<(Option<&str>, CmpOp)> {
    const OPS: [(&str, CmpOp); 4] = [
        ("_gte", CmpOp::Ge),
        ("_gt", CmpOp::Gt),
        ("_lte", CmpOp::Le),
        ("_lt", CmpOp::Lt),
    ];
    let (base, op) = OPS
        .iter()
        .find_map(|(suffix, op)| key.strip_suffix(suffix).map(|b| (b, *op)))?;
    if base == "calls" {
        return Some((None, op));
    }
    let field = base.strip_suffix("_sum")?;
    is_field_name(field).then_some((Some(field), op))
}

fn numeric_suffix(key: &str) -> Option<(&str, CmpOp)> {
    NUMERIC_SUFFIXES
        .iter()
        .find_map(|(suffix, op)| key.strip_suffix(suffix).map(|base| (base, *op)))
}

/// Whether `name` is a field name: an ASCII letter or `_`, then letters,
/// digits and `_`.
pub fn is_field_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A plausible intended key for a misspelled `key`.
fn suggest_key(key: &str) -> Option<String> {
    let mut candidates: Vec<String> = RULE_KEYS.iter().map(|k| (*k).to_owned()).collect();
    // `amount_gtt` → `amount_gt`; `amount` → `amount_eq`.
    let bases = key
        .char_indices()
        .filter(|(_, c)| *c == '_' || *c == '-')
        .map(|(i, _)| key.get(..i).unwrap_or_default())
        .chain(std::iter::once(key));
    for base in bases.filter(|b| is_field_name(b)) {
        for suffix in ALL_SUFFIXES {
            candidates.push(format!("{base}{suffix}"));
        }
    }
    closest(key, candidates.iter().map(String::as_str)).map(str::to_owned)
}

/// Reads a mapping of rule condition keys (a property's `for:` block, say)
/// with the very code that reads rules; `id` names it in messages. `source`
/// is the whole file's text, for error positions.
pub fn rule_from_node(node: &Node, source: &str, file: &str, id: &str) -> Result<Rule, LoadError> {
    let loader = Loader {
        file,
        source,
        approvers: Vec::new(),
    };
    let mut rule = loader.rule_named(DecisionKind::Allow, 0, node, Some(id))?;
    rule.id = id.to_owned();
    Ok(rule)
}
