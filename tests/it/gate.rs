//! `#[capfence::gate]` through its public interface: gated tools run their
//! body only when allowed, return `Blocked` otherwise, record every call.

use std::future::Future;
use std::sync::Arc;
use std::task::{Poll, Wake, Waker};

use capfence::{ActionRuntime, Blocked, Context, Decimal, DecisionKind, Risk};

#[derive(Debug)]
enum ToolError {
    Blocked(Blocked),
}

impl From<Blocked> for ToolError {
    fn from(b: Blocked) -> Self {
        ToolError::Blocked(b)
    }
}

impl ToolError {
    fn blocked(&self) -> &Blocked {
        let ToolError::Blocked(b) = self;
        b
    }
}

#[capfence::gate("payments.transfer")]
fn transfer(ctx: &Context, amount: Decimal, destination: &str) -> Result<String, ToolError> {
    Ok(format!("sent {amount} to {destination}"))
}

#[capfence::gate("payments.transfer", rename(sum = "amount", to = "destination"))]
fn transfer_renamed(sum: Decimal, to: String) -> Result<String, ToolError> {
    Ok(format!("sent {sum} to {to}"))
}

#[capfence::gate("payments.refund", skip(memo))]
async fn refund(ctx: &Context, amount: i64, memo: String) -> Result<i64, ToolError> {
    assert!(!memo.is_empty());
    Ok(amount)
}

struct Ledger {
    ran: std::cell::Cell<u32>,
}

impl Ledger {
    #[capfence::gate("payments.read")]
    fn read_balance(&self, ctx: &Context) -> Result<u32, ToolError> {
        self.ran.set(self.ran.get() + 1);
        Ok(self.ran.get())
    }
}

fn runtime(name: &str) -> (ActionRuntime, std::path::PathBuf) {
    let state = std::env::temp_dir().join(format!("capfence-gate-{name}-{}", std::process::id()));
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

pub fn block_on<F: Future>(future: F) -> F::Output {
    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }
    let waker = Waker::from(Arc::new(Noop));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

#[test]
fn the_three_case_study_amounts() {
    let (rt, state) = runtime("three");
    let ctx = Context::new(rt.clone(), "treasury-agent", "production").with_risk(Risk::High);
    let d = |cents| Decimal::new(cents, 2);
    assert_eq!(
        transfer(&ctx, d(12_000), "vendor-corp-123").unwrap(),
        "sent 120.00 to vendor-corp-123"
    );
    let denied = transfer(&ctx, d(1_500_000), "vendor-corp-123").unwrap_err();
    assert_eq!(denied.blocked().decision(), DecisionKind::Deny);
    assert_eq!(denied.blocked().approval_id(), None);
    let held = transfer(&ctx, d(250_000), "strategic-partner-456").unwrap_err();
    assert_eq!(held.blocked().decision(), DecisionKind::RequireApproval);
    assert_eq!(held.blocked().approval_id(), Some("T-1"));
    let injected = transfer(&ctx, d(30_000), "attacker-acct-999").unwrap_err();
    assert!(
        injected
            .blocked()
            .reason()
            .contains("not an approved counterparty")
    );
    // Every call is on the record, with the argument values as the payload.
    let records = super::calls(&rt);
    assert_eq!(records.len(), 4);
    assert_eq!(
        records[0].payload,
        r#"{"amount":120,"destination":"vendor-corp-123"}"#
    );
    assert_eq!(records[0].actor.as_deref(), Some("treasury-agent"));
    std::fs::remove_dir_all(&state).unwrap();
}

#[test]
fn rename_skip_async_method_and_ambient_context() {
    let (rt, state) = runtime("forms");
    let ctx = Context::new(rt.clone(), "treasury-agent", "production");
    // No context argument: the ambient one.
    let sent = ctx.scope(|| transfer_renamed(Decimal::from(99), "payroll-001".to_owned()));
    assert_eq!(sent.unwrap(), "sent 99 to payroll-001");
    // Without any context the call is refused and the body does not run.
    let refused = transfer_renamed(Decimal::from(99), "payroll-001".to_owned()).unwrap_err();
    assert!(refused.blocked().reason().contains("no CapFence context"));
    // async, with a skipped argument: only `amount` reaches the payload.
    assert_eq!(block_on(refund(&ctx, 40, "note".to_owned())).unwrap(), 40);
    let held = block_on(refund(&ctx, 400, "note".to_owned())).unwrap_err();
    assert_eq!(held.blocked().decision(), DecisionKind::RequireApproval);
    // async with the ambient context, task-local across polls.
    let scoped = block_on(
        ctx.scope_async(async { transfer_renamed(Decimal::from(5), "payroll-001".into()) }),
    );
    assert!(scoped.is_ok());
    // A method.
    let ledger = Ledger {
        ran: std::cell::Cell::new(0),
    };
    assert_eq!(ledger.read_balance(&ctx).unwrap(), 1);
    let payloads: Vec<String> = super::calls(&rt).into_iter().map(|r| r.payload).collect();
    assert_eq!(
        payloads[0], r#"{"amount":99,"destination":"payroll-001"}"#,
        "renamed fields"
    );
    assert_eq!(payloads[1], r#"{"amount":40}"#, "memo skipped");
    std::fs::remove_dir_all(&state).unwrap();
}

#[test]
fn the_agent_tools_example_runs() {
    let exe = std::env::current_exe().unwrap();
    let example = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("agent_tools");
    let out = std::process::Command::new(example).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for line in [
        "1. pay invoice #4411 ($120.00): ALLOWED -> [BANK GATEWAY] sent $120.00 to vendor-corp-123",
        "2. over-limit transfer ($15,000.00): DENY -> over the absolute limit",
        "3. prompt-injected transfer ($300.00): DENY -> the destination is not an approved counterparty",
        "6. change vendor bank details: REQUIRE_APPROVAL",
        "7. strategic partner payment ($2,500.00): REQUIRE_APPROVAL",
        "8. retry after approval: ALLOWED -> [BANK GATEWAY] sent $2500.00 to strategic-partner-456",
        "9. replay of the same approval: REQUIRE_APPROVAL",
        // 11 decisions and operator records, and the outcomes of the 4 calls
        // that ran.
        "audit chain verified: 15 records",
    ] {
        assert!(text.contains(line), "missing `{line}` in\n{text}");
    }
}

#[test]
fn the_documented_example_is_the_agent_example() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/");
    let doc = std::fs::read_to_string(format!("{root}docs/gate.md")).unwrap();
    let example = std::fs::read_to_string(format!("{root}examples/agent_tools.rs")).unwrap();
    let start = doc.find("```rust\n").unwrap() + "```rust\n".len();
    let block = &doc[start..start + doc[start..].find("```").unwrap()];
    assert!(block.len() > 100);
    assert!(
        example.contains(block),
        "docs/gate.md's example is no longer in examples/agent_tools.rs"
    );
}

#[test]
fn generated_code_names_only_private_paths() {
    // Everything the gate, `policy!` and `build` emit reaches the runtime
    // through `::capfence::__private`, so the public API can change freely.
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/");
    for file in [
        "macros/src/gate.rs",
        "macros/src/lib.rs",
        "macros/src/policy.rs",
        "compiler/src/codegen.rs",
    ] {
        let text = std::fs::read_to_string(format!("{root}{file}")).unwrap();
        for (at, _) in text.match_indices("::capfence::") {
            let rest = &text[at + "::capfence::".len()..];
            assert!(
                rest.starts_with("__private"),
                "{file}: generated code names ::capfence::{}",
                rest.split(|c: char| !c.is_alphanumeric() && c != '_')
                    .next()
                    .unwrap_or("")
            );
        }
    }
}

#[test]
fn a_gate_refuses_a_runtime_on_another_policy() {
    let state = std::env::temp_dir().join(format!("capfence-gate-drift-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    // The gates of this file were checked against policies/treasury_agent.yaml;
    // this runtime runs the case-study policy, which allows the same transfer.
    let other = concat!(env!("CARGO_MANIFEST_DIR"), "/policies/fintech_policy.yaml");
    let rt = ActionRuntime::builder(other)
        .state_dir(&state)
        .build()
        .unwrap();
    let checked = capfence::Policy::load(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/policies/treasury_agent.yaml"
    ))
    .unwrap();
    let ctx = Context::new(rt.clone(), "treasury-agent", "production");
    let err = transfer(&ctx, Decimal::new(120, 0), "vendor-corp-123").unwrap_err();
    let reason = &err.blocked().verdict().reason;
    assert_eq!(err.blocked().decision(), DecisionKind::Deny);
    assert!(reason.contains(&checked.digest), "{reason}");
    assert!(reason.contains(rt.policy_digest()), "{reason}");
    // The refusal is on the record.
    let records = super::calls(&rt);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].decision.as_str(), "deny");
    assert!(records[0].reason.contains("checked against policy"));
    // The same policy as a compiled table: the gate runs.
    static TABLE: &dyn capfence::Decide = &capfence::policy!("policies/treasury_agent.yaml");
    let state2 = state.with_extension("table");
    let _ = std::fs::remove_dir_all(&state2);
    let rt = ActionRuntime::compiled_builder(TABLE)
        .state_dir(&state2)
        .build()
        .unwrap();
    let ctx = Context::new(rt, "treasury-agent", "production");
    assert!(transfer(&ctx, Decimal::new(120, 0), "vendor-corp-123").is_ok());
    std::fs::remove_dir_all(&state).unwrap();
    std::fs::remove_dir_all(&state2).unwrap();
}

/// An async gate's durable commit runs off the executor's thread: on one
/// thread polling two tasks, the other task keeps running while the gated
/// call's commit waits for another writer that holds the ledger.
#[test]
fn a_slow_commit_does_not_block_other_tasks() {
    let (rt, state) = runtime("slow-commit");
    let ctx = Context::new(rt.clone(), "treasury-agent", "production");
    assert_eq!(block_on(refund(&ctx, 1, "first".to_owned())).unwrap(), 1);
    let db = state.join("ledger.db");
    let (locked, is_locked) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        locked.send(()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(400));
        conn.execute_batch("COMMIT").unwrap();
    });
    is_locked.recv().unwrap();
    struct Noop;
    impl Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }
    let waker = Waker::from(Arc::new(Noop));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut gated = std::pin::pin!(refund(&ctx, 2, "second".to_owned()));
    let mut other_task_ran = 0u64;
    let result = loop {
        if let Poll::Ready(out) = gated.as_mut().poll(&mut cx) {
            break out;
        }
        other_task_ran += 1;
        std::thread::yield_now();
    };
    holder.join().unwrap();
    assert_eq!(result.unwrap(), 2);
    assert!(
        other_task_ran > 100,
        "the other task ran {other_task_ran} times while the commit waited 400 ms"
    );
    assert_eq!(super::calls(&rt).len(), 2);
    rt.verify().unwrap();
    let _ = std::fs::remove_dir_all(&state);
}
