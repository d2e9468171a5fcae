//! One `tracing` event per decision, with the fields the docs promise;
//! the payload only at TRACE.

use std::cell::RefCell;
use std::sync::Once;

use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

use super::{TempDir, runtime, transfer};

/// One collected event: level, target, fields.
type Seen = (Level, String, Vec<(String, String)>);

/// What a test thread collects: every event at or below `max`.
struct Collector {
    max: Level,
    seen: Vec<Seen>,
}

thread_local! {
    /// This thread's collector, while `collect` runs.
    static COLLECTOR: RefCell<Option<Collector>> = const { RefCell::new(None) };
}

/// The test binary's one subscriber, global: it hands each event to the
/// collector of the thread that emits it, if that thread has one. A
/// subscriber scoped to each test's thread is not enough: `tracing` caches
/// each callsite's interest for every thread, and a callsite first reached
/// by another test's thread while no collector is alive can keep "never"
/// for good. This one answers "sometimes" for every callsite, so each event
/// asks `enabled`, on the thread that emits it.
struct Router;

struct Fields(Vec<(String, String)>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
}

impl Subscriber for Router {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        Interest::sometimes()
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::TRACE)
    }

    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        COLLECTOR.with(|c| {
            c.borrow()
                .as_ref()
                .is_some_and(|c| *metadata.level() <= c.max)
        })
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields(Vec::new());
        event.record(&mut fields);
        COLLECTOR.with(|c| {
            if let Some(c) = c.borrow_mut().as_mut() {
                c.seen.push((
                    *event.metadata().level(),
                    event.metadata().target().to_owned(),
                    fields.0,
                ));
            }
        });
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no field {name} in {fields:?}"))
}

/// Every event at or below `max` that this thread emits while `f` runs.
fn collect(max: Level, f: impl FnOnce()) -> Vec<Seen> {
    static ROUTER: Once = Once::new();
    ROUTER.call_once(|| {
        tracing::subscriber::set_global_default(Router).expect("the only global subscriber");
    });
    COLLECTOR.with(|c| {
        *c.borrow_mut() = Some(Collector {
            max,
            seen: Vec::new(),
        });
    });
    f();
    COLLECTOR.with(|c| c.borrow_mut().take().map(|c| c.seen).unwrap_or_default())
}

#[test]
fn every_decision_is_one_info_event_and_the_payload_waits_for_trace() {
    let dir = TempDir::new("telemetry");
    let rt = runtime(dir.path());
    let events = collect(Level::INFO, || {
        rt.execute(&transfer("120", "vendor-7"));
        rt.execute(&transfer("2500", "vendor-7"));
    });
    let decisions: Vec<_> = events
        .iter()
        .filter(|(_, target, _)| target == "capfence::decision")
        .collect();
    assert_eq!(decisions.len(), 2, "{events:?}");
    let (level, _, first) = decisions[0];
    assert_eq!(*level, Level::INFO);
    assert_eq!(field(first, "capability"), "payments.transfer");
    assert_eq!(field(first, "decision"), "allow");
    assert_eq!(field(first, "rule"), "allow[0]");
    assert_eq!(field(first, "authorized"), "true");
    assert!(field(first, "latency_us").parse::<u64>().is_ok());
    let (_, _, second) = decisions[1];
    assert_eq!(field(second, "decision"), "require_approval");
    assert_eq!(field(second, "approval_id"), "T-1");
    assert!(
        events
            .iter()
            .all(|(_, _, fields)| fields.iter().all(|(_, v)| !v.contains("vendor-7"))),
        "no payload value at INFO"
    );

    let events = collect(Level::TRACE, || {
        rt.execute(&transfer("130", "vendor-8"));
    });
    let payload = events
        .iter()
        .find(|(level, _, _)| *level == Level::TRACE)
        .expect("a TRACE event with the payload");
    assert!(field(&payload.2, "payload").contains("vendor-8"));
}

#[test]
fn input_that_is_no_event_is_traced_like_any_decision() {
    let dir = TempDir::new("telemetry-unreadable");
    let rt = runtime(dir.path());
    let events = collect(Level::INFO, || {
        rt.execute_unreadable("unreadable event: line 1 is not UTF-8");
    });
    let decisions: Vec<_> = events
        .iter()
        .filter(|(_, target, _)| target == "capfence::decision")
        .collect();
    assert_eq!(decisions.len(), 1, "{events:?}");
    assert_eq!(field(&decisions[0].2, "decision"), "deny");
    assert_eq!(field(&decisions[0].2, "authorized"), "false");
}
