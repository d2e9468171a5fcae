//! `lint --src DIR`: the `#[gate("…")]` attributes in a source tree against
//! the policy's rules.

use std::path::Path;

use syn::visit::Visit;

use crate::diagnostic::{Code, Diagnostic, Severity};
use crate::policy::{DecisionKind, Policy};

/// One `#[gate("resource.action")]` found in the sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    /// The capability, lowercase.
    pub capability: String,
    /// The function it gates.
    pub function: String,
    /// The file.
    pub file: String,
    /// 1-based line of the attribute.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

struct Finder<'a> {
    file: &'a str,
    found: Vec<Gate>,
}

impl Finder<'_> {
    fn attrs(&mut self, attrs: &[syn::Attribute], function: &syn::Ident) {
        for attr in attrs {
            let is_gate = attr
                .path()
                .segments
                .last()
                .is_some_and(|s| s.ident == "gate");
            if !is_gate {
                continue;
            }
            let Ok(list) = attr.meta.require_list() else {
                continue;
            };
            let Some(proc_macro2::TokenTree::Literal(lit)) = list.tokens.clone().into_iter().next()
            else {
                continue;
            };
            let Ok(lit) = syn::parse_str::<syn::LitStr>(&lit.to_string()) else {
                continue;
            };
            let start = list
                .tokens
                .clone()
                .into_iter()
                .next()
                .map(|t| t.span().start());
            let (line, column) = start.map_or((0, 0), |s| (s.line, s.column + 1));
            self.found.push(Gate {
                capability: lit.value().to_ascii_lowercase(),
                function: function.to_string(),
                file: self.file.to_owned(),
                line,
                column,
            });
        }
    }
}

impl<'ast> Visit<'ast> for Finder<'_> {
    fn visit_item_fn(&mut self, node: &'ast syn::ItemFn) {
        self.attrs(&node.attrs, &node.sig.ident);
        syn::visit::visit_item_fn(self, node);
    }

    fn visit_impl_item_fn(&mut self, node: &'ast syn::ImplItemFn) {
        self.attrs(&node.attrs, &node.sig.ident);
        syn::visit::visit_impl_item_fn(self, node);
    }

    fn visit_trait_item_fn(&mut self, node: &'ast syn::TraitItemFn) {
        self.attrs(&node.attrs, &node.sig.ident);
        syn::visit::visit_trait_item_fn(self, node);
    }
}

/// What `scan` found under a directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// Every gate, in file order.
    pub gates: Vec<Gate>,
    /// Rust files that could not be read or parsed, with why: their gates
    /// were not checked, so `check` reports each one as an error.
    pub unparsed: Vec<(String, String)>,
}

/// Every gate in the `.rs` files under `dir`, in path order, skipping hidden
/// entries and `target`. Symlinks are not followed (a link cannot make the
/// walk loop or leave the tree). `Err` when the tree cannot be walked (a
/// directory that cannot be listed), naming the path.
pub fn scan(dir: &Path) -> std::io::Result<Scan> {
    let mut out = Scan::default();
    let walk = walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            let name = e.file_name().to_string_lossy();
            e.depth() == 0 || !(name.starts_with('.') || name == "target")
        });
    for entry in walk {
        let entry = entry.map_err(|e| {
            let at = e
                .path()
                .map_or_else(|| dir.display().to_string(), |p| p.display().to_string());
            std::io::Error::other(format!("{at}: {e}"))
        })?;
        if !entry.file_type().is_file() || entry.path().extension().is_none_or(|x| x != "rs") {
            continue;
        }
        let path = entry.path();
        let shown = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                out.unparsed.push((shown, format!("cannot be read: {e}")));
                continue;
            }
        };
        let file = match syn::parse_file(&text) {
            Ok(file) => file,
            Err(e) => {
                let at = e.span().start();
                out.unparsed.push((
                    shown,
                    format!(
                        "does not parse as Rust ({}:{}: {e})",
                        at.line,
                        at.column + 1
                    ),
                ));
                continue;
            }
        };
        let mut finder = Finder {
            file: &shown,
            found: Vec::new(),
        };
        finder.visit_file(&file);
        out.gates.extend(finder.found);
    }
    Ok(out)
}

/// `gate-without-rule`: a gate whose capability no allow or require_approval
/// rule covers (every call would be denied); `rule-without-gate`: a rule whose
/// capability pattern no gate matches; `unparsed-source` (an error): a Rust
/// file whose gates could not be checked.
pub fn check(policy: &Policy, scan: &Scan) -> Vec<Diagnostic> {
    let gates = &scan.gates;
    let mut out: Vec<Diagnostic> = scan
        .unparsed
        .iter()
        .map(|(file, why)| Diagnostic {
            code: Code::UnparsedSource,
            severity: Severity::Error,
            rule: None,
            file: file.clone(),
            line: 0,
            column: 0,
            message: format!("{file} {why}: the gates in it were not checked"),
            related: Vec::new(),
            notes: vec!["help: fix the file, or move it out of the --src tree".to_owned()],
        })
        .collect();
    for gate in gates {
        let (resource, action) = gate
            .capability
            .split_once('.')
            .unwrap_or((&gate.capability, ""));
        let passes = policy
            .rules
            .iter()
            .any(|r| r.tier != DecisionKind::Deny && r.capability.matches(resource, action));
        if !passes {
            out.push(Diagnostic {
                code: Code::GateWithoutRule,
                severity: Severity::Warning,
                rule: None,
                file: gate.file.clone(),
                line: gate.line,
                column: gate.column,
                message: format!(
                    "`{}` gates `{}`, which {} never allows: every call is denied",
                    gate.function, gate.capability, policy.file
                ),
                related: Vec::new(),
                notes: vec![format!(
                    "help: add an allow or require_approval rule for `{}`",
                    gate.capability
                )],
            });
        }
    }
    for rule in &policy.rules {
        let gated = gates.iter().any(|g| {
            let (resource, action) = g.capability.split_once('.').unwrap_or((&g.capability, ""));
            rule.capability.matches(resource, action)
        });
        if !gated {
            out.push(Diagnostic {
                code: Code::RuleWithoutGate,
                severity: Severity::Warning,
                rule: Some(rule.id.clone()),
                file: policy.file.clone(),
                line: rule.capability_location.line,
                column: rule.capability_location.column,
                message: format!(
                    "{}: no #[gate] in the sources uses `{}`",
                    rule.id, rule.capability
                ),
                related: Vec::new(),
                notes: Vec::new(),
            });
        }
    }
    out
}
