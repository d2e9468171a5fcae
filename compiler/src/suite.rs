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
//! An event that cannot be read is decided `deny` (as `eval` does), so suites can
//! pin intake errors too.

use std::path::Path;

use serde_json::json;

use crate::eval::{Decision, DecisionKind};
use crate::event::Event;
use crate::policy::Policy;
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
}

/// A loaded suite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suite {
    /// The file it came from.
    pub file: String,
    /// Its cases, in file order.
    pub cases: Vec<Case>,
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
}

impl Report {
    /// How many cases passed.
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.passed).count()
    }

    /// How many cases failed.
    pub fn failed(&self) -> usize {
        self.results.len() - self.passed()
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
        json!({ "file": self.file, "cases": cases, "passed": self.passed(), "failed": self.failed() })
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
        for (key, value) in entries {
            match key.as_scalar().map(|(t, _)| t) {
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
                    let hint = closest(other, ["cases"])
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
                    Err(message) => Decision {
                        kind: DecisionKind::Deny,
                        rule: None,
                        reason: format!("invalid event: {message}"),
                    },
                };
                let rule_ok = match &case.rule {
                    ExpectedRule::Any => true,
                    ExpectedRule::NoRule => actual.rule.is_none(),
                    ExpectedRule::Id(id) => actual.rule.as_deref() == Some(id.as_str()),
                };
                CaseResult {
                    name: case.name.clone(),
                    location: case.location,
                    expect: case.expect,
                    expect_rule: case.rule.clone(),
                    passed: actual.kind == case.expect && rule_ok,
                    actual,
                }
            })
            .collect();
        Report {
            file: self.file.clone(),
            results,
        }
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
            "event" => event = Some(Event::from_yaml(value).map_err(|e| e.0)),
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
                let hint = closest(other, ["name", "event", "expect", "rule"])
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
    Ok(Case {
        name: name.ok_or_else(|| missing("name"))?,
        location: node.location,
        event: event.ok_or_else(|| missing("event"))?,
        expect: expect.ok_or_else(|| missing("expect"))?,
        rule,
    })
}
