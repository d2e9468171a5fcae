//! `capfence-compile diff` as a report: the changed regions and field
//! requirements of two policies, rendered for people or as JSON.

use super::{Change, FieldChange, diff, diff_fields, region::TooComplex};
use crate::policy::{FieldType, Policy};

/// How two policies differ.
#[derive(Debug, Clone)]
pub struct DiffReport {
    /// Regions of well-formed events decided differently.
    pub changes: Vec<Change>,
    /// Fields required differently (events that change between malformed
    /// and well-formed).
    pub fields: Vec<FieldChange>,
}

impl DiffReport {
    /// Compares `old` with `new` exactly.
    pub fn new(old: &Policy, new: &Policy) -> Result<DiffReport, TooComplex> {
        Ok(DiffReport {
            changes: diff(old, new)?,
            fields: diff_fields(old, new),
        })
    }

    /// Whether the two decide every event alike and require the same fields.
    pub fn equivalent(&self) -> bool {
        self.changes.is_empty() && self.fields.is_empty()
    }

    /// One line per change, then a summary line.
    pub fn render_human(&self) -> String {
        let required = |t: Option<FieldType>| {
            t.map_or_else(
                || "not required".to_owned(),
                |t| format!("required as {}", t.describe()),
            )
        };
        let mut out = String::new();
        for f in &self.fields {
            out.push_str(&format!(
                "{}: `{}` {} -> {} (events lacking it or carrying an ill-typed value change \
                 between malformed and well-formed)\n",
                f.capability,
                f.field,
                required(f.old),
                required(f.new)
            ));
        }
        let rule = |r: &Option<String>| r.clone().unwrap_or_else(|| "default".to_owned());
        for c in &self.changes {
            out.push_str(&format!(
                "{}: {} -> {} ({} -> {})\n",
                c.region,
                c.old.decision,
                c.new.decision,
                rule(&c.old.rule),
                rule(&c.new.rule)
            ));
            if let Some(w) = &c.witness {
                out.push_str(&format!("  e.g. {w}\n"));
            }
        }
        if self.equivalent() {
            out.push_str(
                "no change: the two policies decide every event alike (and require the same \
                 fields)\n",
            );
        } else {
            out.push_str(&format!(
                "{} region(s) of well-formed events decide differently; {} field \
                 requirement(s) changed\n",
                self.changes.len(),
                self.fields.len()
            ));
        }
        out
    }

    /// `{"changes": […], "fields": […], "equivalent": bool}`.
    pub fn to_json(&self) -> serde_json::Value {
        let changes: Vec<_> = self
            .changes
            .iter()
            .map(|c| {
                serde_json::json!({
                    "region": c.region,
                    "old": {"decision": c.old.decision.as_str(), "rule": c.old.rule},
                    "new": {"decision": c.new.decision.as_str(), "rule": c.new.rule},
                    "witness": c.witness,
                })
            })
            .collect();
        let fields: Vec<_> = self
            .fields
            .iter()
            .map(|f| {
                serde_json::json!({
                    "capability": f.capability,
                    "field": f.field,
                    "old": f.old.map(FieldType::describe),
                    "new": f.new.map(FieldType::describe),
                })
            })
            .collect();
        serde_json::json!({"changes": changes, "fields": fields, "equivalent": self.equivalent()})
    }
}
