//! A gated tool's result is its call's outcome: `Ok` is recorded as
//! executed (with the reference and amount a `RailReceipt` value gives),
//! `Err` as failed (with the error's text); the result comes back unchanged,
//! whatever `return` or `?` produced it, sync or async.

use std::fmt;

use capfence::{ActionRuntime, Blocked, Context, Decimal, Outcome, RailReceipt, RecordKind};

#[derive(Debug)]
enum PayError {
    Blocked(Box<Blocked>),
    Bank(String),
}

impl From<Blocked> for PayError {
    fn from(b: Blocked) -> Self {
        PayError::Blocked(Box::new(b))
    }
}

impl fmt::Display for PayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PayError::Blocked(b) => write!(f, "blocked: {}", b.reason()),
            PayError::Bank(why) => write!(f, "bank: {why}"),
        }
    }
}

/// What the bank gives back.
#[derive(Debug, PartialEq)]
struct Receipt {
    id: String,
    sent: Decimal,
}

impl RailReceipt for Receipt {
    fn reference(&self) -> Option<String> {
        Some(self.id.clone())
    }
    fn amount_sent(&self) -> Option<Decimal> {
        Some(self.sent)
    }
}

fn bank(fail: bool) -> Result<(), String> {
    if fail {
        Err("insufficient funds".to_owned())
    } else {
        Ok(())
    }
}

#[capfence::gate("payments.transfer", skip(fail))]
fn pay(ctx: &Context, amount: Decimal, destination: &str, fail: bool) -> Result<Receipt, PayError> {
    if destination == "payroll-001" {
        // An early return is the result too.
        return Ok(Receipt {
            id: "PAYROLL-1".to_owned(),
            sent: amount,
        });
    }
    bank(fail).map_err(PayError::Bank)?;
    Ok(Receipt {
        id: format!("BANK-{amount}"),
        sent: amount - Decimal::new(5, 1),
    })
}

/// An error type without `Display`.
#[derive(Debug)]
struct Opaque;

impl From<Blocked> for Opaque {
    fn from(_: Blocked) -> Self {
        Opaque
    }
}

#[capfence::gate("payments.refund")]
fn refund(ctx: &Context, amount: i64) -> Result<String, Opaque> {
    if amount == 13 {
        return Err(Opaque);
    }
    Ok(format!("refunded {amount}"))
}

#[capfence::gate("payments.refund")]
async fn refund_async(ctx: &Context, amount: i64) -> Result<Receipt, PayError> {
    Ok(Receipt {
        id: format!("R-{amount}"),
        sent: Decimal::from(amount),
    })
}

fn runtime(name: &str) -> (ActionRuntime, std::path::PathBuf) {
    let state = std::env::temp_dir().join(format!(
        "capfence-gate-outcome-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&state);
    let policy = concat!(env!("CARGO_MANIFEST_DIR"), "/policies/treasury_agent.yaml");
    (
        ActionRuntime::builder(policy)
            .state_dir(&state)
            .build()
            .unwrap(),
        state,
    )
}

/// The outcome records, each with the seq of the call it follows.
fn outcomes(rt: &ActionRuntime) -> Vec<(u64, Outcome)> {
    rt.ledger()
        .records()
        .unwrap()
        .iter()
        .filter(|r| r.decision == RecordKind::Outcome)
        .map(|r| {
            let seq = capfence::ledger::decision_of(r.approval_id.as_deref().unwrap()).unwrap();
            (seq, Outcome::of_record(r).unwrap())
        })
        .collect()
}

#[test]
fn a_gated_tools_result_is_its_outcome() {
    let (rt, state) = runtime("sync");
    let ctx = Context::new(rt.clone(), "treasury-agent", "production");
    let d = |cents: i64| Decimal::new(cents, 2);

    let paid = pay(&ctx, d(12_000), "vendor-corp-123", false).unwrap();
    assert_eq!(paid.id, "BANK-120.00", "the result comes back unchanged");
    let failed = pay(&ctx, d(30_000), "vendor-corp-123", true).unwrap_err();
    assert_eq!(failed.to_string(), "bank: insufficient funds");
    let early = pay(&ctx, d(5_000), "payroll-001", false).unwrap();
    assert_eq!(early.id, "PAYROLL-1");
    // Blocked calls never ran: no outcome.
    assert!(pay(&ctx, d(90_000), "vendor-corp-123", false).is_err());
    assert!(pay(&ctx, d(100), "attacker-9", false).is_err());
    assert_eq!(refund(&ctx, 20).unwrap(), "refunded 20");
    assert!(refund(&ctx, 13).is_err());

    let got: Vec<Outcome> = outcomes(&rt).into_iter().map(|(_, o)| o).collect();
    assert_eq!(
        got,
        [
            Outcome::Executed {
                reference: Some("BANK-120.00".to_owned()),
                amount: Some(d(11_950)),
            },
            Outcome::Failed {
                error: "bank: insufficient funds".to_owned(),
            },
            Outcome::Executed {
                reference: Some("PAYROLL-1".to_owned()),
                amount: Some(d(5_000)),
            },
            Outcome::Executed {
                reference: None,
                amount: None,
            },
            Outcome::Failed {
                error: format!(
                    "the tool returned an error ({})",
                    std::any::type_name::<Opaque>()
                ),
            },
        ]
    );
    // Each outcome follows its own call.
    let records = rt.ledger().records().unwrap();
    for (seq, _) in outcomes(&rt) {
        let call = &records[usize::try_from(seq).unwrap() - 1];
        assert_eq!(call.decision, RecordKind::ALLOW, "{call:?}");
    }
    rt.verify().unwrap();
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn an_async_gated_tools_result_is_its_outcome() {
    let (rt, state) = runtime("async");
    let ctx = Context::new(rt.clone(), "treasury-agent", "production");
    let receipt = super::gate::block_on(refund_async(&ctx, 40)).unwrap();
    assert_eq!(receipt.id, "R-40");
    assert_eq!(
        outcomes(&rt)
            .into_iter()
            .map(|(_, o)| o)
            .collect::<Vec<_>>(),
        [Outcome::Executed {
            reference: Some("R-40".to_owned()),
            amount: Some(Decimal::from(40)),
        }]
    );
    rt.verify().unwrap();
    let _ = std::fs::remove_dir_all(&state);
}

/// A method whose result borrows from `self`: the body still compiles and
/// runs as written inside the gate.
struct Vault {
    name: String,
}

impl Vault {
    #[capfence::gate("payments.read")]
    fn label(&self, ctx: &Context) -> Result<&str, PayError> {
        Ok(self.name.as_str())
    }
}

#[test]
fn a_borrowed_result_passes_through() {
    let (rt, state) = runtime("borrowed");
    let ctx = Context::new(rt.clone(), "treasury-agent", "production");
    let vault = Vault {
        name: "ops-account".to_owned(),
    };
    assert_eq!(vault.label(&ctx).unwrap(), "ops-account");
    assert_eq!(outcomes(&rt).len(), 1);
    let _ = std::fs::remove_dir_all(&state);
}
