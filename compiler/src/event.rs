//! Events: the tool call to decide, as the evaluator sees it.
//!
//! An [`Event`] comes from JSON (`eval`, `decide`, non-Rust callers), from a YAML
//! test case, or is built in code. Intake folds the case-insensitive names
//! (resource, action, environment, risk) to lowercase and keeps every payload
//! number as an exact decimal parsed from its text, or marks it as not a number.
//! Intake is strict: unknown top-level keys, duplicate keys and wrongly shaped
//! top-level fields are errors, and an error is a deny at every caller.

use std::collections::BTreeMap;
use std::fmt;

use rust_decimal::Decimal;
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::number::parse_exact;
use crate::policy::Risk;
use crate::yaml::{Node, NodeKind, Style};

/// A payload value. Lists and objects are kept whole: no policy test reads
/// inside them, but approvals bind to them and the audit log records them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// An exact number.
    Number(Decimal),
    /// A number whose text cannot be held exactly (too many digits, out of
    /// range, `.inf`): kept as written, and "not a number" for every test.
    BadNumber(String),
    /// A string. A string holding a plain decimal (`"2500.00"`) also counts as a number.
    String(String),
    /// `true` or `false`.
    Bool(bool),
    /// `null`.
    Null,
    /// A list.
    List(Vec<Value>),
    /// An object, keys sorted.
    Object(BTreeMap<String, Value>),
}

impl Value {
    /// The value as an exact decimal: a number, or a string holding one.
    pub fn as_number(&self) -> Option<Decimal> {
        match self {
            Value::Number(n) => Some(*n),
            Value::String(s) => parse_exact(s),
            _ => None,
        }
    }

    /// The value as a string (strings only; numbers are not strings).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// What the value is, for messages.
    pub fn describe(&self) -> &'static str {
        match self {
            Value::Number(_) => "a number",
            Value::BadNumber(_) => "a number that cannot be held exactly",
            Value::String(_) => "a string",
            Value::Bool(_) => "a boolean",
            Value::Null => "null",
            Value::List(_) => "a list",
            Value::Object(_) => "an object",
        }
    }

    /// Writes the value as canonical JSON: object keys sorted, no spaces,
    /// exact numbers in their shortest decimal form (`2500.00` → `2500`), a
    /// number that is not exact as written if that is valid JSON, else as a string.
    pub fn write_json(&self, out: &mut String) {
        match self {
            Value::Number(n) => out.push_str(&n.normalize().to_string()),
            Value::BadNumber(text) => {
                let is_json_number =
                    serde_json::from_str::<serde_json::Value>(text).is_ok_and(|v| v.is_number());
                if is_json_number {
                    out.push_str(text);
                } else {
                    out.push_str(&json_string(text));
                }
            }
            Value::Null => out.push_str("null"),
            Value::String(s) => out.push_str(&json_string(s)),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_json(out);
                }
                out.push(']');
            }
            Value::Object(fields) => write_object(fields, out),
        }
    }

    /// Reads a JSON value from its own text: numbers keep the text they were
    /// written with, and a key given twice in any object, at any depth, is an
    /// error naming it (the payment API may read the other copy).
    fn from_raw(raw: &RawValue, path: &str) -> Result<Value, String> {
        let text = raw.get();
        let bad = |e: serde_json::Error| format!("`{path}`: {e}");
        match text.as_bytes().first() {
            Some(b'{') => {
                let fields: UniqueMap<'_> = serde_json::from_str(text).map_err(bad)?;
                let mut out = BTreeMap::new();
                for (key, value) in fields.0 {
                    let inner = format!("{path}.{key}");
                    let value = Value::from_raw(value, &inner)?;
                    out.insert(key, value);
                }
                Ok(Value::Object(out))
            }
            Some(b'[') => {
                let items: Vec<&RawValue> = serde_json::from_str(text).map_err(bad)?;
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, item)| Value::from_raw(item, &format!("{path}[{i}]")))
                    .collect::<Result<_, _>>()
                    .map(Value::List)
            }
            Some(b'"') => serde_json::from_str::<String>(text)
                .map(Value::String)
                .map_err(bad),
            Some(b't') => Ok(Value::Bool(true)),
            Some(b'f') => Ok(Value::Bool(false)),
            Some(b'n') => Ok(Value::Null),
            _ => {
                Ok(parse_exact(text)
                    .map_or_else(|| Value::BadNumber(text.to_owned()), Value::Number))
            }
        }
    }
}

/// Checks that `text` is one JSON value with no object key given twice at
/// any depth (keys compare after unescaping). Parsers disagree on which of
/// two equal keys wins, so a message that carries one is refused rather than
/// read one way here and another way by its receiver.
pub fn check_unique_keys(text: &str) -> Result<(), EventError> {
    let raw: &RawValue =
        serde_json::from_str(text).map_err(|e| EventError::NotJson(e.to_string()))?;
    Value::from_raw(raw, "$")
        .map(|_| ())
        .map_err(EventError::Value)
}

/// A JSON object's entries in order, refusing a key given twice (however it
/// is escaped: keys compare after unescaping).
struct UniqueMap<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for UniqueMap<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct UniqueVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for UniqueVisitor<'a> {
            type Value = UniqueMap<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UniqueMap<'a>, A::Error> {
                let mut seen = std::collections::HashSet::new();
                let mut fields = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let value: &'de RawValue = map.next_value()?;
                    if !seen.insert(key.clone()) {
                        return Err(de::Error::custom(format!(
                            "duplicate key `{}`",
                            key.escape_debug()
                        )));
                    }
                    fields.push((key, value));
                }
                Ok(UniqueMap(fields))
            }
        }
        deserializer.deserialize_map(UniqueVisitor(std::marker::PhantomData))
    }
}

/// Writes an object as canonical JSON (keys in `BTreeMap` order).
pub fn write_object(fields: &BTreeMap<String, Value>, out: &mut String) {
    out.push('{');
    for (i, (name, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&json_string(name));
        out.push(':');
        value.write_json(out);
    }
    out.push('}');
}

impl From<Decimal> for Value {
    fn from(value: Decimal) -> Self {
        Value::Number(value)
    }
}

impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Value::String(value.to_owned())
    }
}

impl From<String> for Value {
    fn from(value: String) -> Self {
        Value::String(value)
    }
}

impl From<bool> for Value {
    fn from(value: bool) -> Self {
        Value::Bool(value)
    }
}

impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Value::Number(Decimal::from(value))
    }
}

/// A tool call to decide.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    /// Who acts (compared exactly).
    pub actor: Option<String>,
    /// The resource, lowercase.
    pub resource: Option<String>,
    /// The action, lowercase.
    pub action: Option<String>,
    /// The environment, lowercase.
    pub environment: Option<String>,
    /// The risk: a level, or (lowercase) text that names none, kept as sent
    /// for the record (a policy that tests risk requires a level).
    pub risk: Option<EventRisk>,
    /// The payload, by field name.
    pub payload: BTreeMap<String, Value>,
}

/// An event's risk: one of the four levels, or text that names none. Text
/// is kept, lowercase, for the audit record; wherever a rule tests risk it is
/// malformed. Built only by [`EventRisk::parse`] and from a [`Risk`], so a
/// level is always held as a level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRisk(RiskRepr);

#[derive(Debug, Clone, PartialEq, Eq)]
enum RiskRepr {
    Level(Risk),
    Other(String),
}

impl EventRisk {
    /// `text`, lowercase, as a level when it names one.
    pub fn parse(text: &str) -> EventRisk {
        let lower = text.to_ascii_lowercase();
        EventRisk(match Risk::parse(&lower) {
            Some(level) => RiskRepr::Level(level),
            None => RiskRepr::Other(lower),
        })
    }

    /// The level, if the risk names one.
    pub fn level(&self) -> Option<Risk> {
        match &self.0 {
            RiskRepr::Level(level) => Some(*level),
            RiskRepr::Other(_) => None,
        }
    }

    /// The risk as text: the level's name, or the text as sent (lowercase).
    pub fn as_str(&self) -> &str {
        match &self.0 {
            RiskRepr::Level(level) => level.name(),
            RiskRepr::Other(text) => text,
        }
    }
}

impl From<Risk> for EventRisk {
    fn from(level: Risk) -> EventRisk {
        EventRisk(RiskRepr::Level(level))
    }
}

impl fmt::Display for EventRisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event that cannot be read, by what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// Not JSON at all.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// JSON, but not an event's: the parser's message, or a value's (a key
    /// given twice, a number that is not exact) with its path.
    #[error("invalid event JSON: {0}")]
    Json(String),
    /// A value (a key given twice, a number that is not exact), with its
    /// path, in a JSON message that is not an event.
    #[error("{0}")]
    Value(String),
    /// Nested deeper than the limit.
    #[error("invalid event JSON: nested deeper than {0} levels")]
    TooDeep(usize),
    /// A `time` on an event that is not a history line.
    #[error("invalid event JSON: unknown field `time` (only history lines carry a time)")]
    UnexpectedTime,
    /// A key an event does not have.
    #[error(
        "unknown event field `{0}` (an event has actor, resource, action, capability, \
         environment, risk, payload)"
    )]
    UnknownField(String),
    /// A suite's event that is not a mapping.
    #[error("an event is a mapping, found {0}")]
    NotAMapping(&'static str),
    /// A name field that is not a string.
    #[error("event field `{0}` must be a string")]
    NotAString(String),
    /// A suite's `payload` that is not a mapping.
    #[error("event `payload` must be a mapping")]
    PayloadNotAMapping,
    /// A `payload` that is not an object.
    #[error("event `payload` must be an object, found {0}")]
    PayloadNotAnObject(&'static str),
    /// A `capability` that is not `resource.action`.
    #[error("event `capability` must be `resource.action`, found `{0}`")]
    BadCapability(String),
    /// A `capability` whose part differs from a `resource` or `action`
    /// given beside it.
    #[error("event `capability` `{capability}` disagrees with `{field}`")]
    CapabilityDisagrees {
        /// The capability as given (lowercased).
        capability: String,
        /// `resource` or `action`.
        field: &'static str,
    },
}

impl Event {
    /// An event for `resource.action` with the given fields.
    ///
    /// ```
    /// use capfence_compiler::event::{Event, Value};
    /// let event = Event::new("treasury-agent", "Payments", "transfer", "production", "low")
    ///     .with("amount", Value::String("120.00".into()));
    /// assert_eq!(event.capability().as_deref(), Some("payments.transfer"));
    /// ```
    pub fn new(actor: &str, resource: &str, action: &str, environment: &str, risk: &str) -> Event {
        Event {
            actor: Some(actor.to_owned()),
            resource: Some(resource.to_ascii_lowercase()),
            action: Some(action.to_ascii_lowercase()),
            environment: Some(environment.to_ascii_lowercase()),
            risk: Some(EventRisk::parse(risk)),
            payload: BTreeMap::new(),
        }
    }

    /// Adds a payload field.
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Event {
        self.payload.insert(name.to_owned(), value.into());
        self
    }

    /// `resource.action`, if both are present.
    pub fn capability(&self) -> Option<String> {
        Some(format!(
            "{}.{}",
            self.resource.as_ref()?,
            self.action.as_ref()?
        ))
    }

    /// Reads an event from JSON (DESIGN §5). Numbers keep their exact text.
    ///
    /// ```
    /// use capfence_compiler::event::{Event, Value};
    /// let event = Event::from_json(
    ///     r#"{"actor":"a","capability":"payments.transfer","payload":{"amount":500.0000000000000001}}"#,
    /// ).unwrap();
    /// assert!(event.payload["amount"].as_number().unwrap() > 500.into());
    /// ```
    pub fn from_json(text: &str) -> Result<Event, EventError> {
        if json_depth(text) > MAX_JSON_DEPTH {
            return Err(EventError::TooDeep(MAX_JSON_DEPTH));
        }
        let (time, event) = Event::from_json_timed(text)?;
        match time {
            Some(_) => Err(EventError::UnexpectedTime),
            None => Ok(event),
        }
    }

    /// [`from_json`](Self::from_json) for a line that may also carry a
    /// top-level `"time"` (history files): the time's text and the event.
    pub fn from_json_timed(text: &str) -> Result<(Option<String>, Event), EventError> {
        if json_depth(text) > MAX_JSON_DEPTH {
            return Err(EventError::TooDeep(MAX_JSON_DEPTH));
        }
        let mut raw: RawEvent =
            serde_json::from_str(text).map_err(|e| EventError::Json(e.to_string()))?;
        let time = raw.time.take();
        Ok((time, raw.into_event()?))
    }

    /// Reads an event from a YAML node (test suites). Plain scalars that read as
    /// numbers are numbers; quoted scalars are strings.
    pub fn from_yaml(node: &Node) -> Result<Event, EventError> {
        let NodeKind::Map(entries) = &node.kind else {
            return Err(EventError::NotAMapping(node.kind_name()));
        };
        let mut raw = RawEvent::default();
        for (key, value) in entries {
            let name = key.as_scalar().map(|(t, _)| t).unwrap_or_default();
            let text = || -> Result<String, EventError> {
                match value.as_scalar() {
                    Some((t, _)) if !value.is_null() => Ok(t.to_owned()),
                    _ => Err(EventError::NotAString(name.to_owned())),
                }
            };
            match name {
                "actor" => raw.actor = Some(text()?),
                "resource" => raw.resource = Some(text()?),
                "action" => raw.action = Some(text()?),
                "capability" => raw.capability = Some(text()?),
                "environment" => raw.environment = Some(text()?),
                "risk" => raw.risk = Some(text()?),
                "payload" => {
                    let NodeKind::Map(fields) = &value.kind else {
                        return Err(EventError::PayloadNotAMapping);
                    };
                    let mut payload = BTreeMap::new();
                    for (k, v) in fields {
                        let k = k.as_scalar().map(|(t, _)| t.to_owned()).unwrap_or_default();
                        payload.insert(k, yaml_value(v));
                    }
                    raw.fields = Some(payload);
                }
                other => return Err(unknown_key(other)),
            }
        }
        raw.into_event()
    }

    /// The event as compact JSON with sorted payload keys and numbers as exact
    /// decimal text: input for `capfence-compile eval`.
    pub fn to_json(&self) -> String {
        let mut out = String::from("{");
        let mut first = true;
        let mut field = |out: &mut String, name: &str, value: &Option<String>| {
            if let Some(v) = value {
                if !first {
                    out.push(',');
                }
                first = false;
                out.push_str(&format!("\"{name}\":{}", json_string(v)));
            }
        };
        field(&mut out, "actor", &self.actor);
        field(&mut out, "resource", &self.resource);
        field(&mut out, "action", &self.action);
        field(&mut out, "environment", &self.environment);
        field(
            &mut out,
            "risk",
            &self.risk.as_ref().map(|r| r.as_str().to_owned()),
        );
        if !first {
            out.push(',');
        }
        out.push_str("\"payload\":");
        write_object(&self.payload, &mut out);
        out.push('}');
        out
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

/// The deepest nesting of objects and lists an event may have.
pub const MAX_JSON_DEPTH: usize = 64;

/// The deepest nesting of `[` and `{` outside strings in JSON text (checked
/// before parsing, so no parser ever recurses past [`MAX_JSON_DEPTH`]).
fn json_depth(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

fn unknown_key(key: &str) -> EventError {
    EventError::UnknownField(key.to_owned())
}

fn yaml_value(node: &Node) -> Value {
    match &node.kind {
        NodeKind::Scalar {
            text,
            style: Style::Plain,
        } => {
            if node.is_null() {
                Value::Null
            } else if matches!(text.as_str(), "true" | "True" | "TRUE") {
                Value::Bool(true)
            } else if matches!(text.as_str(), "false" | "False" | "FALSE") {
                Value::Bool(false)
            } else if let Some(n) = parse_exact(text) {
                Value::Number(n)
            } else if looks_numeric(text) {
                Value::BadNumber(text.clone())
            } else {
                Value::String(text.clone())
            }
        }
        NodeKind::Scalar { text, .. } => Value::String(text.clone()),
        NodeKind::Seq(items) => Value::List(items.iter().map(yaml_value).collect()),
        NodeKind::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_scalar().map(|(t, _)| t.to_owned()).unwrap_or_default(),
                        yaml_value(v),
                    )
                })
                .collect(),
        ),
    }
}

/// YAML plain scalars that YAML reads as numbers but that are not exact decimals.
fn looks_numeric(text: &str) -> bool {
    let t = text.trim_start_matches(['+', '-']);
    t.parse::<f64>().is_ok() || matches!(t, ".inf" | ".Inf" | ".INF" | ".nan" | ".NaN" | ".NAN")
}

#[derive(Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent<'a> {
    actor: Option<String>,
    resource: Option<String>,
    action: Option<String>,
    capability: Option<String>,
    environment: Option<String>,
    risk: Option<String>,
    #[serde(borrow)]
    payload: Option<&'a RawValue>,
    /// Only in history lines (`Event::from_json_timed`).
    time: Option<String>,
    #[serde(skip)]
    fields: Option<BTreeMap<String, Value>>,
}

impl RawEvent<'_> {
    fn into_event(self) -> Result<Event, EventError> {
        let payload = match (self.fields, self.payload) {
            (Some(fields), _) => fields,
            (None, None) => BTreeMap::new(),
            (None, Some(raw)) => match Value::from_raw(raw, "payload") {
                Ok(Value::Object(fields)) => fields,
                Ok(other) => {
                    return Err(EventError::PayloadNotAnObject(other.describe()));
                }
                Err(e) => return Err(EventError::Json(e)),
            },
        };
        let lower = |s: Option<String>| s.map(|s| s.to_ascii_lowercase());
        let (mut resource, mut action) = (lower(self.resource), lower(self.action));
        if let Some(capability) = lower(self.capability) {
            let Some((r, a)) = capability
                .split_once('.')
                .filter(|(r, a)| !r.is_empty() && !a.is_empty() && !a.contains('.'))
            else {
                return Err(EventError::BadCapability(capability.clone()));
            };
            for (given, part, name) in [(&resource, r, "resource"), (&action, a, "action")] {
                if given.as_deref().is_some_and(|g| g != part) {
                    return Err(EventError::CapabilityDisagrees {
                        capability: capability.clone(),
                        field: name,
                    });
                }
            }
            resource = Some(r.to_owned());
            action = Some(a.to_owned());
        }
        Ok(Event {
            actor: self.actor,
            resource,
            action,
            environment: lower(self.environment),
            risk: self.risk.as_deref().map(EventRisk::parse),
            payload,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn json_numbers_keep_their_text() {
        let e = Event::from_json(
            r#"{"payload":{"a":500.0000000000000001,"b":5E2,"c":"500.00","d":1e400,"e":true}}"#,
        )
        .unwrap();
        assert!(e.payload["a"].as_number().unwrap() > Decimal::from(500));
        assert_eq!(e.payload["b"].as_number(), Some(Decimal::from(500)));
        assert_eq!(e.payload["c"].as_number(), Some(Decimal::from(500)));
        assert_eq!(e.payload["d"], Value::BadNumber("1e400".into()));
        assert_eq!(e.payload["e"].as_number(), None);
    }

    #[test]
    fn intake_is_strict() {
        assert!(
            Event::from_json(r#"{"payload":{"a":1,"a":2}}"#)
                .unwrap_err()
                .to_string()
                .contains("duplicate")
        );
        assert!(
            Event::from_json(r#"{"actor":"x","actor":"y"}"#)
                .unwrap_err()
                .to_string()
                .contains("duplicate")
        );
        assert!(
            Event::from_json(r#"{"enviroment":"x"}"#)
                .unwrap_err()
                .to_string()
                .contains("unknown field")
        );
        assert_eq!(
            Event::from_json(r#"{"capability":"payments"}"#),
            Err(EventError::BadCapability("payments".to_owned()))
        );
        assert_eq!(
            Event::from_json(r#"{"capability":"a.b","resource":"c"}"#),
            Err(EventError::CapabilityDisagrees {
                capability: "a.b".to_owned(),
                field: "resource"
            })
        );
        assert!(Event::from_json(r#"{"actor":5}"#).is_err());
        assert!(Event::from_json("not json").is_err());
    }

    #[test]
    fn duplicate_keys_at_any_depth_are_refused() {
        for text in [
            r#"{"payload":{"meta":{"to":"attacker","to":"vendor"}}}"#,
            r#"{"payload":{"list":[{"a":1},{"b":1,"b":2}]}}"#,
            r#"{"payload":{"amount":1,"\u0061mount":2}}"#,
            r#"{"payload":{"a":{"b":{"c":{"d":1,"d":1}}}}}"#,
        ] {
            let err = Event::from_json(text).unwrap_err();
            assert!(err.to_string().contains("duplicate key"), "{text}: {err}");
        }
        let err = Event::from_json(r#"{"payload":{"meta":{"to":"a","to":"b"}}}"#).unwrap_err();
        assert!(err.to_string().contains("`payload.meta`"), "{err}");
        let ok = Event::from_json(r#"{"payload":{"meta":{"to":"a"},"to":"b"}}"#).unwrap();
        assert_eq!(ok.payload.len(), 2);
        assert!(Event::from_json(r#"{"payload":[1]}"#).is_err());
    }

    #[test]
    fn nesting_is_bounded() {
        let nested = |n: usize| {
            format!(
                "{{\"payload\":{{\"a\":{}1{}}}}}",
                "[".repeat(n),
                "]".repeat(n)
            )
        };
        assert!(Event::from_json(&nested(MAX_JSON_DEPTH - 2)).is_ok());
        let err = Event::from_json(&nested(MAX_JSON_DEPTH)).unwrap_err();
        assert!(err.to_string().contains("nested deeper"), "{err}");
        // Brackets inside strings do not count.
        let text = format!("{{\"payload\":{{\"a\":\"{}\"}}}}", "[".repeat(1000));
        assert!(Event::from_json(&text).is_ok());
    }

    #[test]
    fn names_fold_to_lowercase_but_actor_does_not() {
        let e = Event::from_json(r#"{"actor":"Bot","capability":"Payments.Transfer","environment":"Staging","risk":"HIGH"}"#).unwrap();
        assert_eq!(e.actor.as_deref(), Some("Bot"));
        assert_eq!(e.capability().as_deref(), Some("payments.transfer"));
        assert_eq!(e.environment.as_deref(), Some("staging"));
        assert_eq!(e.risk.as_ref().map(EventRisk::as_str), Some("high"));
    }

    #[test]
    fn canonical_json_sorts_keys_and_normalizes_numbers() {
        let e = Event::from_json(r#"{"payload":{"z":{"b":2.50,"a":[1e400,"x"]},"a":2500.00}}"#)
            .unwrap();
        assert_eq!(
            e.to_json(),
            r#"{"payload":{"a":2500,"z":{"a":[1e400,"x"],"b":2.5}}}"#
        );
    }

    #[test]
    fn json_round_trip() {
        let e = Event::new("a", "payments", "transfer", "production", "low")
            .with("amount", Decimal::new(5000000000000000001, 16))
            .with("destination", "x\"y");
        assert_eq!(Event::from_json(&e.to_json()).unwrap(), e);
    }
}
