//! The agents' door: `POST /v1/decide` with a bearer token, and the
//! operations routes (`/healthz`, `/readyz`, `/metrics`).
//!
//! The body is what `capfence decide` reads (one event, or a JSON array of
//! events decided in order) and the answer what it prints (a verdict, or an
//! array of them). The actor is the authenticated agent: an event naming
//! another actor is denied and recorded under the agent's name; one naming
//! none gets it. A request without a valid token is answered 401 and
//! recorded as a refused request, without its body.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use super::{App, error, respond};
use crate::verdict::Verdict;

/// The largest body `/v1/decide` reads (1 MiB).
pub const MAX_BODY: usize = 1024 * 1024;

/// A decision counter's labels: the capability (taken, not copied, from
/// the call) and the decision.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub(super) struct DecisionLabels {
    capability: String,
    decision: &'static str,
}

impl prometheus_client::encoding::EncodeLabelSet for DecisionLabels {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelSetEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeLabel as _;
        ("capability", self.capability.as_str()).encode(encoder.encode_label())?;
        ("decision", self.decision).encode(encoder.encode_label())
    }
}

/// What `/metrics` reports.
pub struct Metrics {
    registry: Registry,
    decisions: Family<DecisionLabels, Counter>,
    latency: Histogram,
    refused: Counter,
    store_errors: Counter,
    pending: Gauge,
    outbox: Gauge,
    /// Group commits' transactions: their durations.
    pub(super) commits: Histogram,
}

impl Metrics {
    pub(super) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("capfence");
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "decisions",
            "Decisions made through this server, by capability and decision",
            decisions.clone(),
        );
        // 100 µs to about 26 s.
        let latency = Histogram::new(exponential_buckets(0.0001, 2.0, 18));
        registry.register(
            "decision_seconds",
            "Time from request to durable verdict (the ledger's commit included)",
            latency.clone(),
        );
        let refused = Counter::default();
        registry.register(
            "unauthenticated_requests",
            "Decision requests refused for a missing or unknown token",
            refused.clone(),
        );
        let store_errors = Counter::default();
        registry.register(
            "store_errors",
            "Decisions denied because the ledger could not be written or read",
            store_errors.clone(),
        );
        let pending = Gauge::default();
        registry.register(
            "pending_tickets",
            "Tickets waiting for a human (of the newest 500)",
            pending.clone(),
        );
        let commits = Histogram::new(exponential_buckets(0.0001, 2.0, 18));
        registry.register(
            "ledger_commit_seconds",
            "Each group commit's transaction, from its first statement to its durable commit",
            commits.clone(),
        );
        let outbox = Gauge::default();
        registry.register(
            "notification_outbox",
            "Chain records not yet delivered to the slowest notification URL",
            outbox.clone(),
        );
        Metrics {
            registry,
            decisions,
            latency,
            refused,
            store_errors,
            pending,
            outbox,
            commits,
        }
    }

    pub(super) fn count(&self, capability: Option<String>, verdict: &Verdict) {
        let labels = DecisionLabels {
            capability: capability.unwrap_or_else(|| "unknown".to_owned()),
            decision: verdict.decision.as_str(),
        };
        self.decisions.get_or_create(&labels).inc();
        if verdict.seq.is_none() {
            self.store_errors.inc();
        }
    }
}

impl Metrics {
    /// One decision's time, request to durable verdict.
    pub(super) fn observe(&self, seconds: f64) {
        self.latency.observe(seconds);
    }
}

/// A request id, 32 hex digits: this process's random prefix (drawn once)
/// and a counter, so ids never repeat within a process and differ across
/// restarts without a system call per request.
pub(super) fn request_id() -> String {
    static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| {
        let mut bytes = [0u8; 8];
        let _ = getrandom::fill(&mut bytes);
        u64::from_le_bytes(bytes)
    });
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix:016x}{n:016x}")
}

pub(super) fn with_request_id(mut response: Response<Body>, id: &str) -> Response<Body> {
    if let Ok(value) = header::HeaderValue::from_str(id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// The bearer token of a request.
pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// `POST /v1/decide`.
pub(super) async fn decide(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response<Body> {
    let id = request_id();
    let started = Instant::now();
    let agent = bearer(&headers).and_then(|t| app.agents.authenticate(t).cloned());
    let rt = app.rt.clone();
    let Some(agent) = agent else {
        let answer = tracing::Instrument::instrument(
            unauthenticated(
                &app,
                Some(
                    "denied: an HTTP decision request without a valid agent token (its body was \
                     not read)",
                ),
            ),
            tracing::info_span!("capfence_http", request_id = %id),
        )
        .await;
        return with_request_id(answer, &id);
    };
    let text = std::str::from_utf8(&body).map_or("", str::trim);
    let batch = text.starts_with('[');
    let events: Vec<&str> = if batch {
        match serde_json::from_str::<Vec<&serde_json::value::RawValue>>(text) {
            Ok(items) => items.iter().map(|r| r.get()).collect(),
            // Not an array of JSON values: one unreadable request.
            Err(_) => vec![text],
        }
    } else {
        vec![text]
    };
    let span = tracing::info_span!("capfence_http", request_id = %id, agent = %agent.name);
    let mut verdicts = Vec::with_capacity(events.len());
    for text in events {
        let decided =
            tracing::Instrument::instrument(decide_one(&rt, text, &agent.name), span.clone()).await;
        verdicts.push(decided);
    }

    let elapsed = started.elapsed().as_secs_f64();
    // The verdict lines `capfence decide` prints, fields in its order.
    let lines: Vec<String> = verdicts
        .into_iter()
        .map(|(capability, verdict)| {
            app.metrics.count(capability, &verdict);
            app.metrics.latency.observe(elapsed);
            verdict.to_json()
        })
        .collect();
    let answer = if batch {
        format!("[{}]", lines.join(","))
    } else {
        lines.concat()
    };
    with_request_id(verdicts_answer(answer), &id)
}

/// A decision answer: JSON for a program, not a page (none of the console's
/// page headers), never cached.
fn verdicts_answer(body: String) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    response
}

/// The answer to a request without a valid agent token: 401, counted, and
/// recorded as a denied request (`record`, the reason) when it asked for a
/// decision.
pub(super) async fn unauthenticated(app: &App, record: Option<&'static str>) -> Response<Body> {
    app.metrics.refused.inc();
    if let Some(reason) = record {
        let rt = app.rt.clone();
        let span = tracing::Span::current();
        let _ =
            tokio::task::spawn_blocking(move || span.in_scope(|| rt.execute_unreadable(reason)))
                .await;
    }
    let mut answer = error(
        StatusCode::UNAUTHORIZED,
        "a valid agent token is needed: Authorization: Bearer <token>",
    );
    answer.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    answer
}

/// `POST /v1/outcome`'s body.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OutcomeRequest {
    seq: u64,
    outcome: String,
    reference: Option<String>,
    amount: Option<String>,
    error: Option<String>,
}

/// `POST /v1/outcome`: what became of one of the agent's own authorized
/// calls (`{"seq", "outcome": "executed"|"failed", "reference", "amount",
/// "error"}`). A call another agent made is refused (403), as is anything
/// the ledger refuses (409: not authorized, already has its outcome).
pub(super) async fn outcome(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response<Body> {
    let id = request_id();
    let Some(agent) = bearer(&headers).and_then(|t| app.agents.authenticate(t).cloned()) else {
        app.metrics.refused.inc();
        return with_request_id(
            error(StatusCode::UNAUTHORIZED, "a valid agent token is needed"),
            &id,
        );
    };
    let request = match serde_json::from_slice::<OutcomeRequest>(&body) {
        Ok(r) => r,
        Err(e) => {
            return with_request_id(
                error(
                    StatusCode::BAD_REQUEST,
                    &format!("expected {{seq, outcome, reference, amount, error}}: {e}"),
                ),
                &id,
            );
        }
    };
    let outcome = match (request.outcome.as_str(), request.error) {
        ("executed", None) => {
            let amount = match request.amount.as_deref() {
                None => None,
                Some(text) => match capfence_compiler::number::parse_exact(text) {
                    Some(a) => Some(a),
                    None => {
                        return with_request_id(
                            error(StatusCode::BAD_REQUEST, "amount: not an exact decimal"),
                            &id,
                        );
                    }
                },
            };
            crate::ledger::Outcome::Executed {
                reference: request.reference,
                amount,
            }
        }
        ("failed", Some(error_text)) if request.reference.is_none() && request.amount.is_none() => {
            crate::ledger::Outcome::Failed { error: error_text }
        }
        _ => {
            return with_request_id(
                error(
                    StatusCode::BAD_REQUEST,
                    "outcome is \"executed\" (reference, amount) or \"failed\" (error)",
                ),
                &id,
            );
        }
    };
    let rt = app.rt.clone();
    let seq = request.seq;
    let done = tokio::task::spawn_blocking(move || {
        // Only the agent's own calls: read the decision's actor first (the
        // ledger then checks the rest in the outcome's transaction).
        let mut actor = None;
        let read = rt.ledger().records_after(seq.saturating_sub(1), &mut |r| {
            if r.seq == seq {
                actor = Some(r.actor.clone());
            }
            false
        });
        match (read, actor) {
            (Err(e), _) => Err((StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
            (Ok(()), None) => Err((StatusCode::NOT_FOUND, format!("no record {seq}"))),
            (Ok(()), Some(who)) if who.as_deref() != Some(agent.name.as_str()) => Err((
                StatusCode::FORBIDDEN,
                format!("record {seq} is not a call of agent {}", agent.name),
            )),
            (Ok(()), Some(_)) => rt.record_outcome(seq, &outcome).map_err(|e| {
                let status = match e {
                    crate::ledger::OutcomeError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
                    crate::ledger::OutcomeError::Invalid(_) => StatusCode::BAD_REQUEST,
                    _ => StatusCode::CONFLICT,
                };
                (status, e.to_string())
            }),
        }
    })
    .await;
    let answer = match done {
        Ok(Ok(record)) => respond(
            StatusCode::OK,
            "application/json",
            serde_json::json!({"seq": record.seq, "reason": record.reason}).to_string(),
        ),
        Ok(Err((status, message))) => error(status, &message),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "the outcome failed"),
    };
    with_request_id(answer, &id)
}

/// One event's verdict, decided as `agent`; its capability for metrics.
/// The usual call is awaited on the commit queue; the refusals (unreadable,
/// another actor) are recorded on a blocking thread.
async fn decide_one(
    rt: &crate::ActionRuntime,
    text: &str,
    agent: &str,
) -> (Option<String>, Verdict) {
    let mut event = match capfence_compiler::Event::from_json(text) {
        Ok(event) => event,
        Err(e) => {
            let reason = e.to_string();
            let rt = rt.clone();
            let verdict = tokio::task::spawn_blocking(move || rt.execute_unreadable(&reason))
                .await
                .unwrap_or_else(|_| Verdict::deny("denied: the decision's thread stopped"));
            return (None, verdict);
        }
    };
    let capability = event.capability();
    match event.actor.take() {
        Some(claimed) if claimed != agent => {
            // Recorded under the agent that sent it, naming the claim.
            event.actor = Some(agent.to_owned());
            let reason =
                format!("denied: actor {claimed} does not match the authenticated agent {agent}");
            let rt = rt.clone();
            let verdict = tokio::task::spawn_blocking(move || {
                rt.deny_event(event, capfence_compiler::Decision::refused(reason))
            })
            .await
            .unwrap_or_else(|_| Verdict::deny("denied: the decision's thread stopped"));
            (capability, verdict)
        }
        _ => {
            event.actor = Some(agent.to_owned());
            (capability, rt.execute_event_async(event).await)
        }
    }
}

/// `GET /healthz`: the process answers.
pub(super) async fn healthz() -> Response<Body> {
    respond(StatusCode::OK, "text/plain; charset=utf-8", "ok\n")
}

/// `GET /readyz`: the store answers and this server's policy is the
/// ledger's active one (else 503, saying which).
pub(super) async fn readyz(State(app): State<Arc<App>>) -> Response<Body> {
    let rt = app.rt.clone();
    let checked = tokio::task::spawn_blocking(move || {
        let active = rt.ledger().active_policy().map_err(|e| e.to_string())?;
        match active {
            Some(a) if a.digest == rt.policy_digest() => Ok(()),
            Some(a) => Err(format!(
                "this server's policy {} is not the ledger's active policy {}",
                rt.policy_digest(),
                a.digest
            )),
            // A fresh ledger activates the first policy to decide.
            None => Ok(()),
        }
    })
    .await;
    match checked {
        Ok(Ok(())) => respond(StatusCode::OK, "text/plain; charset=utf-8", "ready\n"),
        Ok(Err(why)) => respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            format!("not ready: {why}\n"),
        ),
        Err(_) => respond(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            "not ready: the check failed\n",
        ),
    }
}

/// `GET /metrics`: OpenMetrics text.
pub(super) async fn metrics(State(app): State<Arc<App>>) -> Response<Body> {
    let rt = app.rt.clone();
    let urls = app.notify_urls.clone();
    let gauges = tokio::task::spawn_blocking(move || {
        let pending = rt.ticket_views(500).map(|views| {
            views
                .iter()
                .filter(|v| v.status == crate::TicketStatus::Pending && !v.expired)
                .count()
        });
        let outbox = super::notify::outbox_depth(&rt, &urls);
        (pending, outbox)
    })
    .await;
    if let Ok((pending, outbox)) = gauges {
        if let Ok(n) = pending {
            app.metrics
                .pending
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        if let Some(n) = outbox {
            app.metrics.outbox.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &app.metrics.registry).is_err() {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics could not be encoded",
        );
    }
    respond(
        StatusCode::OK,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
        text,
    )
}
