//! Policy regression suites: `capfence-compile test POLICY TESTS.yaml`.
//!
//! A suite is a YAML file of cases, each an event with the decision it must get:
//!
//! ```yaml
//! cases:
//!   - name: safe automated transfer
//!     event:
//!       actor: treasury-agent
//!       capability: payments.transfer
//!       environment: production
//!       risk: low
//!       payload: { amount: 120.0, destination: vendor-corp-123 }
//!     expect: allow
//!     rule: allow[0]        # optional; `rule: null` expects no deciding rule
//! ```
//!
//! An event that cannot be read (an unknown field, a wrong type) is a suite
//! error, so a typo such as `enviroment:` can never pass as an expected deny.
//! A case that tests a malformed event says so with `malformed: true`: it then
//! passes only if the event is unreadable or the policy denies it as malformed.

use std::path::Path;

use serde_json::json;

use crate::analysis::region::Region;
use crate::analysis::{Analysis, decision_map};
use crate::eval::{Decision, DecisionKind};
use crate::event::Event;
use crate::load::rule_from_node;
use crate::policy::{Policy, Rule};
use crate::source::Location;
use crate::suggest::closest;
use crate::yaml::{self, Node, NodeKind};

/// A suite file that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{location}: {message}")]
pub struct SuiteError {
    /// The suite file.
    pub file: String,
    /// Where in it.
    pub location: Location,
    /// What is wrong.
    pub message: String,
}

/// What a case expects of the deciding rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectedRule {
    /// Any rule (or none).
    Any,
    /// No rule: default deny or a malformed event.
    NoRule,
    /// This rule id.
    Id(String),
}

/// One case of a suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// The case's name.
    pub name: String,
    /// Where the case starts.
    pub location: Location,
    /// The event, or why it could not be read.
    pub event: Result<Event, String>,
    /// The expected decision.
    pub expect: DecisionKind,
    /// The expected rule.
    pub rule: ExpectedRule,
    /// The case tests a malformed event (`malformed: true`).
    pub malformed: bool,
}

/// A property: every event of a region (written with rule keys) must get
/// one of the allowed decisions. Checked exactly, not by sampling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    /// The property's name.
    pub name: String,
    /// Where it starts.
    pub location: Location,
    /// The `for:` block, read as a rule.
    pub region: Rule,
    /// The decisions every event of the region may get.
    pub allowed: Vec<DecisionKind>,
    /// The expectation as written (`expect_not: allow`).
    pub expectation: String,
}

/// A loaded suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suite {
    /// The file it came from.
    pub file: String,
    /// Its cases, in file order.
    pub cases: Vec<Case>,
    /// Its properties, in file order.
    pub properties: Vec<Property>,
}

/// The outcome of one property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PropertyResult {
    /// The property's name.
    pub name: String,
    /// Where it is.
    pub location: Location,
    /// The expectation as written.
    pub expectation: String,
    /// `None` when it holds; else an event that breaks it.
    pub counterexample: Option<Counterexample>,
    /// Set when the property could not be checked exactly.
    pub unchecked: Option<String>,
}

/// An event that breaks a property, with what it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counterexample {
    /// The event as JSON, ready for `capfence-compile eval`.
    pub event: String,
    /// The decision it gets.
    pub decision: DecisionKind,
    /// The deciding rule (`None`: default deny).
    pub rule: Option<String>,
    /// That rule's line.
    pub line: Option<usize>,
}

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    /// The case's name.
    pub name: String,
    /// Where the case is.
    pub location: Location,
    /// The expected decision.
    pub expect: DecisionKind,
    /// The expected rule.
    pub expect_rule: ExpectedRule,
    /// What the policy decided.
    pub actual: Decision,
    /// Whether the decision (and the rule, if given) matched.
    pub passed: bool,
}

/// The outcome of a suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The suite file.
    pub file: String,
    /// One result per case.
    pub results: Vec<CaseResult>,
    /// One result per property.
    pub properties: Vec<PropertyResult>,
}

impl PropertyResult {
    /// Whether it holds.
    pub fn holds(&self) -> bool {
        self.counterexample.is_none() && self.unchecked.is_none()
    }
}

impl Report {
    /// How many cases and properties passed.
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.passed).count()
            + self.properties.iter().filter(|p| p.holds()).count()
    }

    /// How many cases and properties failed.
    pub fn failed(&self) -> usize {
        self.results.len() + self.properties.len() - self.passed()
    }

    /// A line per failing case and a summary line.
    pub fn render_human(&self) -> String {
        let mut out = String::new();
        for r in self.results.iter().filter(|r| !r.passed) {
            let expected = match &r.expect_rule {
                ExpectedRule::Id(id) => format!("{} by {id}", r.expect),
                ExpectedRule::NoRule => format!("{} by no rule", r.expect),
                ExpectedRule::Any => r.expect.to_string(),
            };
            let by = r.actual.rule.as_deref().unwrap_or("no rule");
            out.push_str(&format!(
                "FAIL {}:{}: {}: expected {expected}, got {} by {by} ({})\n",
                self.file, r.location, r.name, r.actual.kind, r.actual.reason
            ));
        }
        for p in self.properties.iter().filter(|p| !p.holds()) {
            match (&p.counterexample, &p.unchecked) {
                (Some(c), _) => {
                    let by = match (&c.rule, c.line) {
                        (Some(rule), Some(line)) => format!("{rule} (line {line})"),
                        (Some(rule), None) => rule.clone(),
                        _ => "no rule (default deny)".to_owned(),
                    };
                    out.push_str(&format!(
                        "FAIL {}:{}: property `{}` ({}): counterexample {} gets {} by {by}\n",
                        self.file, p.location, p.name, p.expectation, c.event, c.decision
                    ));
                }
                (None, Some(why)) => out.push_str(&format!(
                    "FAIL {}:{}: property `{}` could not be checked: {why}\n",
                    self.file, p.location, p.name
                )),
                (None, None) => {}
            }
        }
        let verdict = if self.failed() == 0 { "ok" } else { "FAILED" };
        out.push_str(&format!(
            "{verdict}: {} passed, {} failed\n",
            self.passed(),
            self.failed()
        ));
        out
    }

    /// The report as JSON: `{"file","cases":[…],"passed":N,"failed":N}`.
    pub fn to_json(&self) -> serde_json::Value {
        let cases: Vec<_> = self
            .results
            .iter()
            .map(|r| {
                json!({
                    "name": r.name,
                    "line": r.location.line,
                    "passed": r.passed,
                    "expected": {
                        "decision": r.expect.as_str(),
                        "rule": match &r.expect_rule {
                            ExpectedRule::Id(id) => json!(id),
                            ExpectedRule::NoRule => json!(null),
                            ExpectedRule::Any => json!("*"),
                        },
                    },
                    "actual": {
                        "decision": r.actual.kind.as_str(),
                        "rule": r.actual.rule,
                        "reason": r.actual.reason,
                    },
                })
            })
            .collect();
        let properties: Vec<_> = self
            .properties
            .iter()
            .map(|p| {
                json!({
                    "name": p.name,
                    "line": p.location.line,
                    "expectation": p.expectation,
                    "holds": p.holds(),
                    "counterexample": p.counterexample.as_ref().map(|c| json!({
                        "event": serde_json::from_str::<serde_json::Value>(&c.event).unwrap_or(serde_json::Value::Null),
                        "decision": c.decision.as_str(),
                        "rule": c.rule,
                        "line": c.line,
                    })),
                    "unchecked": p.unchecked,
                })
            })
            .collect();
        json!({
            "file": self.file,
            "cases": cases,
            "properties": properties,
            "passed": self.passed(),
            "failed": self.failed(),
        })
    }
}

impl Suite {
    /// Reads a suite file.
    pub fn load(path: impl AsRef<Path>) -> Result<Suite, SuiteError> {
        let file = path.as_ref().display().to_string();
        let text = std::fs::read_to_string(path.as_ref()).map_err(|e| SuiteError {
            file: file.clone(),
            location: Location::new(1, 1),
            message: format!("cannot read test suite: {e}"),
        })?;
        Suite::parse(&text, &file)
    }

    /// Reads a suite from its text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Suite, SuiteError> {
        let error = |location: Location, message: String| SuiteError {
            file: file.to_owned(),
            location,
            message,
        };
        let root = yaml::parse(text)
            .map_err(|e| error(e.location, e.message))?
            .ok_or_else(|| {
                error(
                    Location::new(1, 1),
                    "the test suite is empty: expected `cases:`".to_owned(),
                )
            })?;
        let NodeKind::Map(entries) = &root.kind else {
            return Err(error(
                root.location,
                "a test suite is a mapping with `cases:`".to_owned(),
            ));
        };
        let mut cases = Vec::new();
        let mut properties = Vec::new();
        for (key, value) in entries {
            match key.as_scalar().map(|(t, _)| t) {
                Some("properties") => {
                    let NodeKind::Seq(items) = &value.kind else {
                        return Err(error(
                            value.location,
                            "`properties` expects a list of properties".to_owned(),
                        ));
                    };
                    for item in items {
                        properties.push(property(item, text, file, &error)?);
                    }
                }
                Some("cases") => {
                    let NodeKind::Seq(items) = &value.kind else {
                        return Err(error(
                            value.location,
                            "`cases` expects a list of cases".to_owned(),
                        ));
                    };
                    for item in items {
                        cases.push(case(item, &error)?);
                    }
                }
                other => {
                    let other = other.unwrap_or_default();
                    let hint = closest(other, ["cases", "properties"])
                        .map(|s| format!("; did you mean `{s}`?"))
                        .unwrap_or_default();
                    return Err(error(
                        key.location,
                        format!("unknown key `{other}` in test suite{hint}"),
                    ));
                }
            }
        }
        Ok(Suite {
            file: file.to_owned(),
            cases,
            properties,
        })
    }

    /// Runs every case against `policy`.
    pub fn run(&self, policy: &Policy) -> Report {
        let results = self
            .cases
            .iter()
            .map(|case| {
                let actual = match &case.event {
                    Ok(event) => policy.decide(event),
                    Err(message) => Decision::unreadable(format!("invalid event: {message}")),
                };
                let rule_ok = match &case.rule {
                    ExpectedRule::Any => true,
                    ExpectedRule::NoRule => actual.rule.is_none(),
                    ExpectedRule::Id(id) => actual.rule.as_deref() == Some(id.as_str()),
                };
                let malformed_ok = !case.malformed || actual.cause.is_malformed();
                CaseResult {
                    name: case.name.clone(),
                    location: case.location,
                    expect: case.expect,
                    expect_rule: case.rule.clone(),
                    passed: actual.kind == case.expect && rule_ok && malformed_ok,
                    actual,
                }
            })
            .collect();
        Report {
            file: self.file.clone(),
            results,
            properties: self.check_properties(policy),
        }
    }

    /// Checks every property exactly against the policy's regions: a property
    /// fails with a witness event when its region meets a region where the
    /// policy decides something the property does not allow. Regions are over
    /// well-formed events (malformed ones are always denied).
    pub fn check_properties(&self, policy: &Policy) -> Vec<PropertyResult> {
        if self.properties.is_empty() {
            return Vec::new();
        }
        let analysis = Analysis::new(policy);
        let map = decision_map(&analysis);
        self.properties
            .iter()
            .map(|p| {
                let mut result = PropertyResult {
                    name: p.name.clone(),
                    location: p.location,
                    expectation: p.expectation.clone(),
                    counterexample: None,
                    unchecked: None,
                };
                let (Some(map), Ok(region)) = (&map, Region::of_rule(&p.region)) else {
                    result.unchecked = Some("too many cases to check exactly".to_owned());
                    return result;
                };
                let mut fields = policy.field_types.clone();
                for f in policy_fields(&p.region) {
                    if !fields.iter().any(|(g, _)| *g == f.0) {
                        fields.push(f);
                    }
                }
                for (decides, kind, rule) in map {
                    if p.allowed.contains(kind) {
                        continue;
                    }
                    let Ok(overlap) = region.intersect(decides) else {
                        result.unchecked = Some("too many cases to check exactly".to_owned());
                        return result;
                    };
                    if let Some(event) = overlap.boxes.first().and_then(|b| b.witness(&fields)) {
                        let line = rule.as_ref().and_then(|id| {
                            policy
                                .rules
                                .iter()
                                .find(|r| &r.id == id)
                                .map(|r| r.location.line)
                        });
                        result.counterexample = Some(Counterexample {
                            event: event.to_json(),
                            decision: *kind,
                            rule: rule.clone(),
                            line,
                        });
                        return result;
                    }
                }
                result
            })
            .collect()
    }

    /// Rules no example case decided, and rules whose region no property's
    /// region touches.
    pub fn coverage(&self, policy: &Policy, report: &Report) -> (Vec<String>, Vec<String>) {
        let decided: Vec<&str> = report
            .results
            .iter()
            .filter_map(|r| r.actual.rule.as_deref())
            .collect();
        let by_example = policy
            .rules
            .iter()
            .filter(|r| !decided.contains(&r.id.as_str()))
            .map(|r| r.id.clone())
            .collect();
        let regions: Vec<Region> = self
            .properties
            .iter()
            .filter_map(|p| Region::of_rule(&p.region).ok())
            .collect();
        let by_property = policy
            .rules
            .iter()
            .filter(|rule| {
                let Ok(mine) = Region::of_rule(rule) else {
                    return true;
                };
                !regions
                    .iter()
                    .any(|r| r.intersect(&mine).is_ok_and(|o| !o.is_empty()))
            })
            .map(|r| r.id.clone())
            .collect();
        (by_example, by_property)
    }
}

fn case(node: &Node, error: &dyn Fn(Location, String) -> SuiteError) -> Result<Case, SuiteError> {
    let NodeKind::Map(entries) = &node.kind else {
        return Err(error(
            node.location,
            "a case is a mapping with `name`, `event` and `expect`".to_owned(),
        ));
    };
    let mut name = None;
    let mut event = None;
    let mut expect = None;
    let mut rule = ExpectedRule::Any;
    let mut malformed = false;
    let mut event_at = node.location;
    for (key, value) in entries {
        let text = || {
            value
                .as_scalar()
                .filter(|_| !value.is_null())
                .map(|(t, _)| t.to_owned())
        };
        match key.as_scalar().map(|(t, _)| t).unwrap_or_default() {
            "name" => {
                name =
                    Some(text().ok_or_else(|| {
                        error(value.location, "`name` expects a string".to_owned())
                    })?)
            }
            "event" => {
                event_at = value.location;
                event = Some(Event::from_yaml(value).map_err(|e| e.to_string()));
            }
            "malformed" => {
                malformed = match value.as_scalar() {
                    Some(("true", _)) => true,
                    Some(("false", _)) => false,
                    _ => {
                        return Err(error(
                            value.location,
                            "`malformed` expects true or false".to_owned(),
                        ));
                    }
                }
            }
            "expect" => {
                let t = text().unwrap_or_default();
                expect = Some(DecisionKind::parse(&t).ok_or_else(|| {
                    error(
                        value.location,
                        format!("`expect` must be allow, require_approval or deny, found `{t}`"),
                    )
                })?);
            }
            "rule" => rule = text().map_or(ExpectedRule::NoRule, ExpectedRule::Id),
            other => {
                let hint = closest(other, ["name", "event", "expect", "rule", "malformed"])
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                return Err(error(
                    key.location,
                    format!("unknown key `{other}` in test case{hint}"),
                ));
            }
        }
    }
    let missing = |what: &str| error(node.location, format!("test case has no `{what}`"));
    let name = name.ok_or_else(|| missing("name"))?;
    let event = event.ok_or_else(|| missing("event"))?;
    if let (Err(why), false) = (&event, malformed) {
        return Err(error(
            event_at,
            format!(
                "the event of case `{name}` does not read: {why}; a case that tests an \
                 unreadable event says `malformed: true`"
            ),
        ));
    }
    Ok(Case {
        name,
        location: node.location,
        event,
        expect: expect.ok_or_else(|| missing("expect"))?,
        rule,
        malformed,
    })
}

fn policy_fields(rule: &Rule) -> Vec<(crate::policy::Field, crate::policy::FieldType)> {
    let mut out = Vec::new();
    rule.for_each_test(&mut |t| {
        if !out.iter().any(|(f, _)| f == t.field()) {
            out.push((t.field().clone(), t.field_type()));
        }
    });
    out
}

fn property(
    node: &Node,
    source: &str,
    file: &str,
    error: &dyn Fn(Location, String) -> SuiteError,
) -> Result<Property, SuiteError> {
    let NodeKind::Map(entries) = &node.kind else {
        return Err(error(
            node.location,
            "a property is a mapping with `name`, `for` and an expectation".to_owned(),
        ));
    };
    let mut name = None;
    let mut region = None;
    let mut allowed: Option<(Vec<DecisionKind>, String)> = None;
    let kinds = [
        DecisionKind::Allow,
        DecisionKind::RequireApproval,
        DecisionKind::Deny,
    ];
    for (key, value) in entries {
        let key_text = key.as_scalar().map(|(t, _)| t).unwrap_or_default();
        let one = |v: &Node| -> Result<DecisionKind, SuiteError> {
            let t = v.as_scalar().map(|(t, _)| t).unwrap_or_default();
            DecisionKind::parse(t).ok_or_else(|| {
                error(
                    v.location,
                    format!("`{key_text}` takes allow, require_approval or deny, found `{t}`"),
                )
            })
        };
        match key_text {
            "name" => {
                name = value
                    .as_scalar()
                    .filter(|_| !value.is_null())
                    .map(|(t, _)| t.to_owned())
            }
            "for" => {
                let id = format!("`for` of the property at line {}", node.location.line);
                region = Some(rule_from_node(value, source, file, &id).map_err(|e| {
                    error(
                        e.location.unwrap_or(value.location),
                        format!("`for`: {}", e.message),
                    )
                })?);
            }
            "expect" => {
                let k = one(value)?;
                allowed = Some((vec![k], format!("expect: {k}")));
            }
            "expect_not" => {
                let k = one(value)?;
                allowed = Some((
                    kinds.into_iter().filter(|x| *x != k).collect(),
                    format!("expect_not: {k}"),
                ));
            }
            "expect_one_of" => {
                let NodeKind::Seq(items) = &value.kind else {
                    return Err(error(
                        value.location,
                        "`expect_one_of` takes a list of decisions".to_owned(),
                    ));
                };
                let list = items.iter().map(one).collect::<Result<Vec<_>, _>>()?;
                let text = list
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ");
                allowed = Some((list, format!("expect_one_of: [{text}]")));
            }
            other => {
                let hint = closest(
                    other,
                    ["name", "for", "expect", "expect_not", "expect_one_of"],
                )
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
                return Err(error(
                    key.location,
                    format!("unknown key `{other}` in property{hint}"),
                ));
            }
        }
    }
    let missing = |what: &str| error(node.location, format!("property has no `{what}`"));
    let (allowed, expectation) =
        allowed.ok_or_else(|| missing("expect, expect_not or expect_one_of"))?;
    Ok(Property {
        name: name.ok_or_else(|| missing("name"))?,
        location: node.location,
        region: region.ok_or_else(|| missing("for"))?,
        allowed,
        expectation,
    })
}
