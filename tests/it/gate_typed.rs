//! The gate's typed path against the reference evaluator.
//!
//! `#[capfence::gate]` decides from the function's typed arguments with the
//! table of the policy it was checked against, before any event or payload
//! map exists. `capfence::gate_decision!` runs the same generated code without
//! recording anything. For the case-study policy and the fixture policies,
//! every generated call must get the decision, rule and reason the reference
//! evaluator gives the event the call stands for (the event the gate records).
//! Arguments arrive as every type a gated function may take: `Decimal`,
//! integers, `String`, `&str`, `bool` and `Option`.

use std::sync::Arc;

use capfence::store::memory::MemoryStore;
use capfence::{
    ActionRuntime, Blocked, CompiledDecision, Context, Decimal, Event, PayloadValue, Policy, Risk,
    Value,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(2_000, |n: u32| n / 4)
        .max(1)
}

/// A payload value as one of the Rust types a gated function takes.
#[derive(Debug, Clone)]
enum Typed {
    Decimal(Decimal),
    Integer(i64),
    Owned(String),
    Borrowed(&'static str),
    Flag(bool),
    Nothing(Option<Decimal>),
    SomeText(Option<String>),
}

impl Typed {
    /// `value` as a typed argument; `alt` picks between equivalent types.
    /// `None` for values no Rust argument type gives (lists, objects, numbers
    /// that cannot be held exactly).
    fn from_value(value: &Value, alt: bool) -> Option<Typed> {
        Some(match value {
            Value::Number(n) if alt && n.is_integer() => match i64::try_from(*n) {
                Ok(i) => Typed::Integer(i),
                Err(_) => Typed::Decimal(*n),
            },
            Value::Number(n) => Typed::Decimal(*n),
            Value::String(s) if alt => Typed::SomeText(Some(s.clone())),
            Value::String(s) if s.len() < 64 => {
                Typed::Borrowed(Box::leak(s.clone().into_boxed_str()))
            }
            Value::String(s) => Typed::Owned(s.clone()),
            Value::Bool(b) => Typed::Flag(*b),
            Value::Null => Typed::Nothing(None),
            _ => return None,
        })
    }
}

impl PayloadValue for Typed {
    fn to_payload_value(&self) -> Value {
        match self {
            Typed::Decimal(v) => v.to_payload_value(),
            Typed::Integer(v) => v.to_payload_value(),
            Typed::Owned(v) => v.to_payload_value(),
            Typed::Borrowed(v) => v.to_payload_value(),
            Typed::Flag(v) => v.to_payload_value(),
            Typed::Nothing(v) => v.to_payload_value(),
            Typed::SomeText(v) => v.to_payload_value(),
        }
    }

    fn as_arg(&self) -> capfence::__private::Arg<'_> {
        match self {
            Typed::Decimal(v) => v.as_arg(),
            Typed::Integer(v) => v.as_arg(),
            Typed::Owned(v) => v.as_arg(),
            Typed::Borrowed(v) => v.as_arg(),
            Typed::Flag(v) => v.as_arg(),
            Typed::Nothing(v) => v.as_arg(),
            Typed::SomeText(v) => v.as_arg(),
        }
    }
}

/// The payload fields the fixture policies test.
const FIELDS: [&str; 4] = ["amount", "destination", "currency", "beneficiary"];

/// A call: context names and up to four typed arguments.
struct Call {
    actor: String,
    environment: String,
    risk: Risk,
    args: [Typed; 4],
}

type Decider = fn(&Context, &[Typed; 4]) -> Option<&'static CompiledDecision>;

/// Compares, for each capability, the gate's typed decision with the
/// reference's decision of the event the gate would record.
fn check(path: &str, capabilities: &[(&str, &str, Decider)]) {
    let policy = Policy::load(concat!(env!("CARGO_MANIFEST_DIR"), "/").to_owned() + path).unwrap();
    let runtime =
        ActionRuntime::builder(concat!(env!("CARGO_MANIFEST_DIR"), "/").to_owned() + path)
            .store(Arc::new(MemoryStore::new()))
            .build()
            .unwrap();
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        capfence::testing::events(&policy),
        any::<bool>(),
        any::<u8>(),
    );
    let kinds: [std::cell::Cell<u32>; 3] = Default::default();
    runner
        .run(&strategy, |(event, alt, pick)| {
            let Some(call) = to_call(&event, alt, pick) else {
                return Ok(());
            };
            let ctx =
                Context::new(runtime.clone(), &call.actor, &call.environment).with_risk(call.risk);
            for (resource, action, decide) in capabilities {
                let mut reference = Event::new(
                    &call.actor,
                    resource,
                    action,
                    &call.environment,
                    call.risk.name(),
                );
                for (name, arg) in FIELDS.iter().zip(&call.args) {
                    reference
                        .payload
                        .insert((*name).to_owned(), arg.to_payload_value());
                }
                let expected = policy.decide(&reference);
                let typed = decide(&ctx, &call.args)
                    .expect("no velocity window in these policies")
                    .to_decision();
                let seen = &kinds[expected.kind as usize];
                seen.set(seen.get() + 1);
                prop_assert_eq!(&typed, &expected, "{}: {}", path, reference);
            }
            Ok(())
        })
        .unwrap();
    // The generated calls reach every kind of decision the policy makes.
    assert!(kinds.iter().all(|n| n.get() > 0), "{path}: {kinds:?}");
}

/// The call an event stands for, or `None` when no gated call gives it (a
/// risk that is not a level, a value no argument type holds).
fn to_call(event: &Event, alt: bool, pick: u8) -> Option<Call> {
    let risk = match &event.risk {
        Some(risk) => risk.level()?,
        None => Risk::ALL[usize::from(pick) % 4],
    };
    let defaults = [
        Value::Number(Decimal::new(i64::from(pick) * 37, 1)),
        Value::String("vendor-1".into()),
        Value::String("EUR".into()),
        Value::String("José García".into()),
    ];
    let mut args = Vec::new();
    for (name, default) in FIELDS.iter().zip(&defaults) {
        let value = event.payload.get(*name).unwrap_or(default);
        args.push(Typed::from_value(value, alt)?);
    }
    Some(Call {
        actor: event
            .actor
            .clone()
            .unwrap_or_else(|| "treasury-agent".into()),
        environment: event
            .environment
            .clone()
            .unwrap_or_else(|| "production".into()),
        risk,
        args: args.try_into().ok()?,
    })
}

/// A [`Decider`] for one policy and capability: the code `#[capfence::gate]`
/// generates for a function taking the four fields.
macro_rules! decider {
    ($policy:literal, $capability:literal) => {
        |ctx: &Context, a: &[Typed; 4]| {
            let [amount, destination, currency, beneficiary] = a;
            capfence::gate_decision!(
                policy = $policy,
                $capability,
                ctx,
                amount = amount,
                destination = destination,
                currency = currency,
                beneficiary = beneficiary
            )
        }
    };
}

#[test]
fn the_case_study_policy_decides_typed_calls_as_the_reference_does() {
    check(
        "policies/fintech_policy.yaml",
        &[
            (
                "payments",
                "transfer",
                decider!("policies/fintech_policy.yaml", "payments.transfer"),
            ),
            (
                "payments",
                "refund",
                decider!("policies/fintech_policy.yaml", "payments.refund"),
            ),
            (
                "payments",
                "read",
                decider!("policies/fintech_policy.yaml", "payments.read"),
            ),
        ],
    );
}

#[test]
fn the_fixture_policies_decide_typed_calls_as_the_reference_does() {
    check(
        "policies/treasury_agent.yaml",
        &[
            (
                "payments",
                "transfer",
                decider!("policies/treasury_agent.yaml", "payments.transfer"),
            ),
            (
                "vendors",
                "update",
                decider!("policies/treasury_agent.yaml", "vendors.update"),
            ),
        ],
    );
    check(
        "tests/fixtures/policies/lists.yaml",
        &[
            (
                "payments",
                "transfer",
                decider!("tests/fixtures/policies/lists.yaml", "payments.transfer"),
            ),
            (
                "payments",
                "refund",
                decider!("tests/fixtures/policies/lists.yaml", "payments.refund"),
            ),
        ],
    );
    check(
        "tests/fixtures/policies/risk.yaml",
        &[(
            "payments",
            "transfer",
            decider!("tests/fixtures/policies/risk.yaml", "payments.transfer"),
        )],
    );
    check(
        "tests/fixtures/policies/unicode.yaml",
        &[(
            "payments",
            "transfer",
            decider!("tests/fixtures/policies/unicode.yaml", "payments.transfer"),
        )],
    );
    check(
        "tests/fixtures/policies/when.yaml",
        &[
            (
                "payments",
                "transfer",
                decider!("tests/fixtures/policies/when.yaml", "payments.transfer"),
            ),
            (
                "payments",
                "refund",
                decider!("tests/fixtures/policies/when.yaml", "payments.refund"),
            ),
        ],
    );
}

#[test]
fn a_missing_argument_is_malformed_as_a_missing_field_is() {
    let runtime = ActionRuntime::builder(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/policies/treasury_agent.yaml"
    ))
    .store(Arc::new(MemoryStore::new()))
    .build()
    .unwrap();
    let ctx = Context::new(runtime, "treasury-agent", "production");
    let decision =
        capfence::gate_decision!("payments.transfer", &ctx, amount = Decimal::new(12_000, 2))
            .unwrap();
    assert_eq!(decision.kind, capfence::DecisionKind::Deny);
    assert_eq!(
        decision.reason,
        "malformed event: missing field `destination`"
    );
}

#[test]
fn a_velocity_capability_is_left_to_the_ledger() {
    let runtime = ActionRuntime::builder(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/policies/treasury_velocity.yaml"
    ))
    .store(Arc::new(MemoryStore::new()))
    .build()
    .unwrap();
    let ctx = Context::new(runtime, "treasury-agent", "production");
    let decision = capfence::gate_decision!(
        policy = "policies/treasury_velocity.yaml",
        "payments.transfer",
        &ctx,
        amount = Decimal::ONE,
        destination = "vendor-corp-123"
    );
    assert_eq!(decision, None);
}

#[derive(Debug)]
struct ToolError(Blocked);

impl From<Blocked> for ToolError {
    fn from(b: Blocked) -> Self {
        ToolError(b)
    }
}

#[capfence::gate("payments.transfer", policy = "policies/fintech_policy.yaml")]
fn case_study_transfer(ctx: &Context, amount: Decimal, destination: &str) -> Result<(), ToolError> {
    let _ = destination;
    Ok(())
}

/// Through a real gated function on a runtime built from the same table:
/// every call's recorded decision is the reference's.
#[test]
fn gated_calls_record_the_reference_decision() {
    static TABLE: &dyn capfence::Decide = &capfence::policy!("policies/fintech_policy.yaml");
    let runtime = ActionRuntime::compiled_builder(TABLE)
        .store(Arc::new(MemoryStore::new()))
        .build()
        .unwrap();
    let policy = Policy::load(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/policies/fintech_policy.yaml"
    ))
    .unwrap();
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let environments =
        prop::sample::select(vec!["production", "staging", "Staging", "dev", "dev box"]);
    let risks = prop::sample::select(Risk::ALL.to_vec());
    let cents = prop_oneof![
        0i64..2_000_000,
        Just(5_000),
        Just(5_001),
        Just(50_000),
        Just(1_000_000)
    ];
    runner
        .run(
            &(environments, risks, cents),
            |(environment, risk, cents)| {
                let ctx =
                    Context::new(runtime.clone(), "treasury-agent", environment).with_risk(risk);
                let amount = Decimal::new(cents, 2);
                let event = Event::new(
                    "treasury-agent",
                    "payments",
                    "transfer",
                    environment,
                    risk.name(),
                )
                .with("amount", amount)
                .with("destination", "vendor-corp-123");
                let expected = policy.decide(&event);
                let verdict = match case_study_transfer(&ctx, amount, "vendor-corp-123") {
                    Ok(()) => None,
                    Err(ToolError(blocked)) => Some(blocked.verdict().clone()),
                };
                match verdict {
                    None => prop_assert_eq!(expected.kind, capfence::DecisionKind::Allow),
                    Some(v) => {
                        prop_assert_eq!(v.decision, expected.kind, "{}", event);
                        prop_assert_eq!(v.rule, expected.rule);
                    }
                }
                Ok(())
            },
        )
        .unwrap();
}
