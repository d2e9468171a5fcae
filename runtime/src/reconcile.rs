//! Reconciliation: the ledger's executed calls against the payment rail's
//! own record of what moved (its CSV export).
//!
//! An executed call is an `allow` record with an `executed` outcome (see
//! [`crate::Outcome`]); its rail reference is the outcome's, its amount the
//! amount the outcome says was sent (else the payload's `amount`), its
//! destination the payload's `destination`. Each rail row is matched to the
//! executed call with the same reference, one to one. Three lists come out:
//! movements on the rail with no executed call (money that went around the
//! firewall, or a call whose outcome was reported `failed` or never), executed
//! calls with no movement, and pairs whose amount or destination differ.

use std::collections::HashMap;

use rust_decimal::Decimal;

use crate::audit::{AuditRecord, RecordKind};
use crate::ledger::{Outcome, decision_of};

/// The rail file's column names for each field (`reference`, `amount`,
/// `destination`, `time` by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns {
    /// The movement's reference.
    pub reference: String,
    /// The amount moved (an exact decimal).
    pub amount: String,
    /// Where it went.
    pub destination: String,
    /// When (kept as written).
    pub time: String,
}

impl Default for Columns {
    fn default() -> Columns {
        Columns {
            reference: "reference".to_owned(),
            amount: "amount".to_owned(),
            destination: "destination".to_owned(),
            time: "time".to_owned(),
        }
    }
}

impl Columns {
    /// Applies `field=column,…` (`--columns reference=txn_id,amount=value`).
    pub fn parse_mapping(mut self, mapping: &str) -> Result<Columns, RailError> {
        for pair in mapping.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, column) = pair
                .split_once('=')
                .ok_or_else(|| RailError::Mapping(pair.to_owned()))?;
            let column = column.trim().to_owned();
            if column.is_empty() {
                return Err(RailError::Mapping(pair.to_owned()));
            }
            match field.trim() {
                "reference" => self.reference = column,
                "amount" => self.amount = column,
                "destination" => self.destination = column,
                "time" => self.time = column,
                _ => return Err(RailError::Mapping(pair.to_owned())),
            }
        }
        Ok(self)
    }
}

/// One movement on the rail.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RailRow {
    /// Its line in the file (the header is line 1).
    pub line: u64,
    /// The rail's reference.
    pub reference: String,
    /// The amount moved, exact.
    #[serde(serialize_with = "decimal_text")]
    pub amount: Decimal,
    /// Where it went.
    pub destination: String,
    /// When, as the rail wrote it.
    pub time: String,
}

/// A rail file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum RailError {
    /// `--columns` is not `field=column,…` over the four fields.
    #[error(
        "--columns: `{0}` is not field=column with field one of reference, amount, destination, \
         time"
    )]
    Mapping(String),
    /// The header lacks a column.
    #[error(
        "{file}: the header has no column `{column}` (for the {field}; --columns maps another)"
    )]
    MissingColumn {
        /// The file.
        file: String,
        /// The field.
        field: &'static str,
        /// The column looked for.
        column: String,
    },
    /// A value that is not what its column needs.
    #[error("{file}:{line}: column `{column}`: {message}")]
    Value {
        /// The file.
        file: String,
        /// Its line.
        line: u64,
        /// The column.
        column: String,
        /// What is wrong.
        message: String,
    },
    /// Not CSV, or unreadable.
    #[error("{file}: {message}")]
    Csv {
        /// The file.
        file: String,
        /// What the reader said.
        message: String,
    },
}

/// Reads a rail export: CSV with a header naming the columns.
pub fn read_rail(
    reader: impl std::io::Read,
    file: &str,
    columns: &Columns,
) -> Result<Vec<RailRow>, RailError> {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(reader);
    let csv_fault = |e: csv::Error| RailError::Csv {
        file: file.to_owned(),
        message: e.to_string(),
    };
    let header = csv.headers().map_err(csv_fault)?.clone();
    let index = |field: &'static str, column: &str| {
        header
            .iter()
            .position(|h| h.trim() == column)
            .ok_or_else(|| RailError::MissingColumn {
                file: file.to_owned(),
                field,
                column: column.to_owned(),
            })
    };
    let at = [
        index("reference", &columns.reference)?,
        index("amount", &columns.amount)?,
        index("destination", &columns.destination)?,
        index("time", &columns.time)?,
    ];
    let mut rows = Vec::new();
    for record in csv.records() {
        let record = record.map_err(csv_fault)?;
        let line = record.position().map_or(0, csv::Position::line);
        let value = |i: usize| {
            at.get(i)
                .and_then(|&column| record.get(column))
                .unwrap_or_default()
                .trim()
        };
        let fault = |column: &str, message: &str| RailError::Value {
            file: file.to_owned(),
            line,
            column: column.to_owned(),
            message: message.to_owned(),
        };
        let reference = value(0);
        if reference.is_empty() {
            return Err(fault(&columns.reference, "empty"));
        }
        let amount = capfence_compiler::number::parse_exact(value(1))
            .ok_or_else(|| fault(&columns.amount, "not an exact decimal number"))?;
        rows.push(RailRow {
            line,
            reference: reference.to_owned(),
            amount,
            destination: value(2).to_owned(),
            time: value(3).to_owned(),
        });
    }
    Ok(rows)
}

/// An executed call as the ledger tells it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Executed {
    /// The `allow` record.
    pub seq: u64,
    /// Its `outcome` record.
    pub outcome_seq: u64,
    /// The rail's reference the outcome gave (`None`: none given, so no
    /// movement can match it).
    pub reference: Option<String>,
    /// The amount sent: the outcome's, else the payload's `amount`.
    #[serde(serialize_with = "optional_decimal_text")]
    pub amount: Option<Decimal>,
    /// The payload's `destination`.
    pub destination: Option<String>,
}

/// Gathers the executed calls from the chain's records, in order: every
/// `executed` outcome whose call is an earlier `allow`.
#[derive(Debug, Default)]
pub struct ExecutedCalls {
    /// Allowed calls not yet given an outcome: seq → (amount, destination).
    allowed: HashMap<u64, (Option<Decimal>, Option<String>)>,
    /// What was gathered.
    pub calls: Vec<Executed>,
}

impl ExecutedCalls {
    /// Takes one record (in chain order).
    pub fn push(&mut self, record: &AuditRecord) {
        if record.decision == RecordKind::ALLOW {
            let payload: serde_json::Value =
                serde_json::from_str(&record.payload).unwrap_or_default();
            let amount = payload.get("amount").and_then(|a| match a {
                serde_json::Value::Number(n) => {
                    capfence_compiler::number::parse_exact(&n.to_string())
                }
                serde_json::Value::String(s) => capfence_compiler::number::parse_exact(s),
                _ => None,
            });
            let destination = payload
                .get("destination")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned);
            self.allowed.insert(record.seq, (amount, destination));
            return;
        }
        if record.decision != RecordKind::Outcome {
            return;
        }
        let Some(seq) = record.approval_id.as_deref().and_then(decision_of) else {
            return;
        };
        let Some((amount, destination)) = self.allowed.remove(&seq) else {
            return;
        };
        if let Ok(Outcome::Executed {
            reference,
            amount: sent,
        }) = Outcome::of_record(record)
        {
            self.calls.push(Executed {
                seq,
                outcome_seq: record.seq,
                reference,
                amount: sent.or(amount),
                destination,
            });
        }
    }
}

/// A movement and its executed call that disagree.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Mismatch {
    /// The call.
    pub call: Executed,
    /// The movement.
    pub movement: RailRow,
    /// What differs: `amount`, `destination`.
    pub differs: Vec<&'static str>,
}

/// What reconciliation found.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    /// Movements on the rail with no executed call.
    pub unauthorized: Vec<RailRow>,
    /// Executed calls with no movement on the rail.
    pub missing: Vec<Executed>,
    /// Pairs whose amount or destination differ.
    pub mismatched: Vec<Mismatch>,
    /// Rail rows read.
    pub rail_rows: usize,
    /// Executed calls in the ledger.
    pub executed: usize,
    /// Pairs that agree.
    pub matched: usize,
}

impl Report {
    /// Whether every movement and every executed call agree.
    pub fn is_clean(&self) -> bool {
        self.unauthorized.is_empty() && self.missing.is_empty() && self.mismatched.is_empty()
    }
}

/// Matches `rail` against `executed` by reference, one to one (a second
/// movement under one reference has no call; a second call under one
/// reference has no movement).
pub fn reconcile(executed: &[Executed], rail: &[RailRow]) -> Report {
    let mut by_reference: HashMap<&str, Vec<&Executed>> = HashMap::new();
    for call in executed.iter().rev() {
        if let Some(r) = &call.reference {
            by_reference.entry(r.as_str()).or_default().push(call);
        }
    }
    let mut report = Report {
        rail_rows: rail.len(),
        executed: executed.len(),
        ..Report::default()
    };
    let mut used = std::collections::HashSet::new();
    for movement in rail {
        let Some(call) = by_reference
            .get_mut(movement.reference.as_str())
            .and_then(Vec::pop)
        else {
            report.unauthorized.push(movement.clone());
            continue;
        };
        used.insert(call.outcome_seq);
        let mut differs = Vec::new();
        if call.amount != Some(movement.amount) {
            differs.push("amount");
        }
        if call.destination.as_deref() != Some(movement.destination.as_str()) {
            differs.push("destination");
        }
        if differs.is_empty() {
            report.matched += 1;
        } else {
            report.mismatched.push(Mismatch {
                call: call.clone(),
                movement: movement.clone(),
                differs,
            });
        }
    }
    report.missing = executed
        .iter()
        .filter(|c| !used.contains(&c.outcome_seq))
        .cloned()
        .collect();
    report
}

fn decimal_text<S: serde::Serializer>(d: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&d.normalize().to_string())
}

fn optional_decimal_text<S: serde::Serializer>(
    d: &Option<Decimal>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&d.normalize().to_string()),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn quoted_fields_mapped_columns_and_faults_that_name_the_line() {
        let text = "txn,value,to,booked\n\"B-1\",\"1,000.00\",x,t\n";
        let columns = Columns::default()
            .parse_mapping("reference=txn,amount=value,destination=to,time=booked")
            .unwrap();
        let fault = read_rail(text.as_bytes(), "rail.csv", &columns).unwrap_err();
        assert_eq!(
            fault.to_string(),
            "rail.csv:2: column `value`: not an exact decimal number"
        );
        let text = "txn,value,to,booked\n\"B-1\",\"1000.00\",\"acct, 1\",t\n";
        let rows = read_rail(text.as_bytes(), "rail.csv", &columns).unwrap();
        assert_eq!(rows[0].destination, "acct, 1");
        assert_eq!(rows[0].amount, Decimal::new(1000, 0));
        let missing = read_rail(text.as_bytes(), "rail.csv", &Columns::default()).unwrap_err();
        assert!(
            missing.to_string().contains("no column `reference`"),
            "{missing}"
        );
        assert!(Columns::default().parse_mapping("ref=txn").is_err());
    }
}
