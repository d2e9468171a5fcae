//! Diagnostics: data first (code, severity, rule, location, related rules,
//! notes), rendered second — as rustc-like text, JSON or SARIF 2.1.0.

use std::fmt::Write as _;

use serde_json::json;

use crate::load::{LoadError, LoadErrorKind};

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The policy is wrong.
    Error,
    /// The policy probably does not say what its authors think.
    Warning,
    /// Worth knowing.
    Note,
}

impl Severity {
    /// `error`, `warning` or `note` (also the SARIF level).
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        }
    }
}

/// Another rule a diagnostic involves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Related {
    /// Its id.
    pub rule: String,
    /// Its line.
    pub line: usize,
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// What it reports (`shadowed-rule`, `conflict`, `unknown-key`, …).
    pub code: Code,
    /// How serious.
    pub severity: Severity,
    /// The rule it is about.
    pub rule: Option<String>,
    /// The policy file.
    pub file: String,
    /// 1-based line (0 when the file could not be read).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// Other rules involved.
    pub related: Vec<Related>,
    /// Details: regions, witnesses, suggestions.
    pub notes: Vec<String>,
}

impl From<&LoadError> for Diagnostic {
    fn from(e: &LoadError) -> Diagnostic {
        let at = e.location.unwrap_or_default();
        Diagnostic {
            code: Code::Load(e.kind),
            severity: Severity::Error,
            rule: None,
            file: e.file.clone(),
            line: at.line,
            column: at.column,
            message: e.message.clone(),
            related: Vec::new(),
            notes: e.help.iter().map(|h| format!("help: {h}")).collect(),
        }
    }
}

/// What a diagnostic reports: a lint finding, or a policy that does not load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// The rule's conditions can never all hold.
    UnsatisfiableRule,
    /// The rule never decides.
    ShadowedRule,
    /// A higher tier partly overrides the rule.
    Conflict,
    /// An allow rule bounds a number above but not below.
    UnboundedAmount,
    /// Part of a capability falls to default deny.
    DefaultDenyGap,
    /// Held events, but no `approvers:`.
    UnauthenticatedApprovals,
    /// Too many cases to analyse exactly.
    AnalysisSkipped,
    /// A `#[gate]` on a capability the policy never allows.
    GateWithoutRule,
    /// A rule whose capability no `#[gate]` uses.
    RuleWithoutGate,
    /// A source file `lint --src` could not parse.
    UnparsedSource,
    /// The policy does not load.
    Load(LoadErrorKind),
}

impl Code {
    /// The lint codes (every [`Code`] but [`Code::Load`]).
    pub const LINTS: [Code; 10] = [
        Code::UnsatisfiableRule,
        Code::ShadowedRule,
        Code::Conflict,
        Code::UnboundedAmount,
        Code::DefaultDenyGap,
        Code::UnauthenticatedApprovals,
        Code::AnalysisSkipped,
        Code::GateWithoutRule,
        Code::RuleWithoutGate,
        Code::UnparsedSource,
    ];

    /// Every code, lints first.
    pub fn all() -> impl Iterator<Item = Code> {
        Code::LINTS
            .into_iter()
            .chain(LoadErrorKind::ALL.into_iter().map(Code::Load))
    }

    /// The stable name (`shadowed-rule`, `unknown-key`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            Code::UnsatisfiableRule => "unsatisfiable-rule",
            Code::ShadowedRule => "shadowed-rule",
            Code::Conflict => "conflict",
            Code::UnboundedAmount => "unbounded-amount",
            Code::DefaultDenyGap => "default-deny-gap",
            Code::UnauthenticatedApprovals => "unauthenticated-approvals",
            Code::AnalysisSkipped => "analysis-skipped",
            Code::GateWithoutRule => "gate-without-rule",
            Code::RuleWithoutGate => "rule-without-gate",
            Code::UnparsedSource => "unparsed-source",
            Code::Load(kind) => kind.code(),
        }
    }

    /// What the code means (SARIF `tool.driver.rules`).
    pub const fn help(self) -> &'static str {
        match self {
            Code::UnsatisfiableRule => {
                "The rule's conditions can never all hold, so it never matches. Remove it or fix its conditions."
            }
            Code::ShadowedRule => {
                "Every event the rule matches is decided by a higher-precedence tier or an earlier rule of its own tier: it never decides."
            }
            Code::Conflict => {
                "An allow or require_approval rule is partly overridden by a higher tier; the note gives the overlapping region and an example event."
            }
            Code::UnboundedAmount => {
                "An allow rule bounds a numeric field above but not below: negative amounts pass. Add a lower bound such as `amount_gte: 0.01`."
            }
            Code::DefaultDenyGap => {
                "Part of a capability the policy mentions is covered by no rule and falls to default deny."
            }
            Code::UnauthenticatedApprovals => {
                "The policy holds events for approval but lists no `approvers:`: any process that can write the ledger can approve. List operators' Ed25519 public keys under `approvers:` so approvals must be signed."
            }
            Code::AnalysisSkipped => {
                "The rule's conditions expand to too many cases to analyse exactly; it was not checked."
            }
            Code::GateWithoutRule => "A #[gate] names a capability that the policy never allows.",
            Code::RuleWithoutGate => "A rule's capability has no #[gate] in the source tree.",
            Code::UnparsedSource => {
                "A Rust source file under --src could not be parsed; its gates were not checked."
            }
            Code::Load(kind) => kind.help(),
        }
    }
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for Code {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Counts of errors and warnings.
pub fn counts(diagnostics: &[Diagnostic]) -> (usize, usize) {
    let errors = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .count();
    (errors, warnings)
}

/// rustc-style text: code, severity, `--> file:line:col`, the source line with
/// a caret, notes naming the other rules. `sources` gives each file's text.
pub fn render_human(
    diagnostics: &[Diagnostic],
    source_of: &dyn Fn(&str) -> Option<String>,
) -> String {
    let mut out = String::new();
    for d in diagnostics {
        let _ = writeln!(out, "{}[{}]: {}", d.severity.as_str(), d.code, d.message);
        if d.line == 0 {
            let _ = writeln!(out, " --> {}", d.file);
        } else {
            let gutter = d.line.to_string().len();
            let pad = " ".repeat(gutter);
            let _ = writeln!(out, "{pad}--> {}:{}:{}", d.file, d.line, d.column);
            if let Some(text) =
                source_of(&d.file).and_then(|s| s.lines().nth(d.line - 1).map(str::to_owned))
            {
                let _ = writeln!(out, "{pad} |");
                let _ = writeln!(out, "{} | {}", d.line, text);
                let caret_at: String = text
                    .chars()
                    .take(d.column.saturating_sub(1))
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                let _ = writeln!(out, "{pad} | {caret_at}^");
            }
            for note in &d.notes {
                let _ = writeln!(
                    out,
                    "{pad} = {}",
                    if note.starts_with("help:") {
                        note.clone()
                    } else {
                        format!("note: {note}")
                    }
                );
            }
        }
        out.push('\n');
    }
    let (errors, warnings) = counts(diagnostics);
    let notes = diagnostics.len() - errors - warnings;
    let _ = writeln!(
        out,
        "{errors} error(s), {warnings} warning(s), {notes} note(s)"
    );
    out
}

fn diagnostic_json(d: &Diagnostic) -> serde_json::Value {
    let mut message = d.message.clone();
    for note in &d.notes {
        message.push('\n');
        message.push_str(note);
    }
    json!({
        "code": d.code.as_str(),
        "severity": d.severity.as_str(),
        "rule": d.rule,
        "file": d.file,
        "line": d.line,
        "column": d.column,
        "message": message,
        "related": d.related.iter().map(|r| json!({"rule": r.rule, "line": r.line})).collect::<Vec<_>>(),
    })
}

/// `{"diagnostics":[…],"errors":N,"warnings":N}`.
pub fn render_json(diagnostics: &[Diagnostic]) -> serde_json::Value {
    let (errors, warnings) = counts(diagnostics);
    json!({
        "diagnostics": diagnostics.iter().map(diagnostic_json).collect::<Vec<_>>(),
        "errors": errors,
        "warnings": warnings,
    })
}

/// A SARIF 2.1.0 log, ready for code-scanning upload.
pub fn render_sarif(diagnostics: &[Diagnostic]) -> serde_json::Value {
    let rules: Vec<_> = Code::all()
        .map(|code| {
            let (id, help) = (code.as_str(), code.help());
            json!({
                "id": id,
                "name": id,
                "shortDescription": {"text": id.replace('-', " ")},
                "fullDescription": {"text": help},
                "help": {"text": help},
            })
        })
        .collect();
    let results: Vec<_> = diagnostics
        .iter()
        .map(|d| {
            let mut text = d.message.clone();
            for note in &d.notes {
                text.push('\n');
                text.push_str(note);
            }
            let region = json!({"startLine": d.line.max(1), "startColumn": d.column.max(1)});
            let related: Vec<_> = d
                .related
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    json!({
                        "id": i,
                        "message": {"text": r.rule},
                        "physicalLocation": {"artifactLocation": {"uri": d.file}, "region": {"startLine": r.line.max(1)}},
                    })
                })
                .collect();
            json!({
                "ruleId": d.code.as_str(),
                "ruleIndex": Code::all().position(|c| c == d.code),
                "level": d.severity.as_str(),
                "message": {"text": text},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": d.file}, "region": region}}],
                "relatedLocations": related,
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "capfence-compile",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://example.invalid/capfence",
                "rules": rules,
            }},
            "results": results,
        }],
    })
}
