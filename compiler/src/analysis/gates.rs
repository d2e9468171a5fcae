//! `lint --src DIR`: the `#[gate("…")]` attributes in a source tree against
//! the policy's rules.

use std::path::{Path, PathBuf};

use syn::visit::Visit;

use crate::diagnostic::{Diagnostic, Severity};
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

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with('.') || name == "target" {
            continue;
        }
        if path.is_dir() {
            rust_files(&path, out)?;
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// Every gate under `dir`, in file order. A file that does not parse is skipped.
pub fn scan(dir: &Path) -> std::io::Result<Vec<Gate>> {
    let mut files = Vec::new();
    rust_files(dir, &mut files)?;
    let mut gates = Vec::new();
    for path in files {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Ok(file) = syn::parse_file(&text) else {
            continue;
        };
        let shown = path.display().to_string();
        let mut finder = Finder {
            file: &shown,
            found: Vec::new(),
        };
        finder.visit_file(&file);
        gates.extend(finder.found);
    }
    Ok(gates)
}

/// `gate-without-rule`: a gate whose capability no allow or require_approval
/// rule covers (every call would be denied); `rule-without-gate`: a rule whose
/// capability pattern no gate matches.
pub fn check(policy: &Policy, gates: &[Gate]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
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
                code: "gate-without-rule",
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
                code: "rule-without-gate",
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
