//! `capfence serve`: the operator console and its API, one process.
//!
//! axum on tokio serves an HTML page (embedded; no build step) and a JSON
//! API. Operators sign in with their own key, in the page: it reads the key
//! file `capfence keys new` wrote, imports it with WebCrypto (not
//! extractable) and signs a one-time challenge; the server checks the
//! signature against the policy's approvers and sets a session cookie. An
//! approve or reject is signed in the page too, over the statement the page
//! builds from the fields it shows; the ledger rebuilds the statement from
//! the chain and refuses a signature over other bytes
//! ([`Presigned`]). The server never holds a
//! secret key.
//!
//! Every API route but the challenge and the login needs a session (401
//! and no payment data otherwise); a request that changes anything must
//! also come from the console's own origin (`Origin` checked, cookies
//! `SameSite=Strict`). TLS is rustls (`--tls-cert`, `--tls-key`); plain HTTP
//! is refused on an address that is not loopback unless asked for.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use crate::ActionRuntime;
use crate::ledger::{OperatorError, Presigned, TicketView};
use crate::signing;

pub mod agents;
mod api;
pub mod mcp_http;
pub mod notify;
mod stream;
mod tls;

/// How the console is served.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The address to listen on (`127.0.0.1:8443`; port 0 picks one).
    pub listen: SocketAddr,
    /// The certificate chain and private key (PEM files) for TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Plain HTTP on an address that is not loopback.
    pub insecure_http: bool,
    /// Who may sign in read-only (the policy's `viewers:`): name and public
    /// key (`ed25519:<base64>`).
    pub viewers: Vec<(String, String)>,
    /// Where to send notifications (none: no notifier runs). Its
    /// `console_url`, when empty, is this server's own address.
    pub notify: Option<notify::NotifyOptions>,
    /// Where checkpoints are kept: the chain page shows the newest, held
    /// to the ledger.
    pub checkpoints: Option<CheckpointDir>,
    /// The agents that may call `POST /v1/decide` (none: every such call
    /// is refused).
    pub agents: agents::Agents,
    /// The MCP servers fronted at `/mcp/NAME` (none: no such endpoint).
    pub mcp: Option<mcp_http::McpOptions>,
}

/// A directory of signed checkpoints and the keys whose signatures count.
#[derive(Debug, Clone)]
pub struct CheckpointDir {
    /// The directory (`checkpoint-<size>` files).
    pub dir: PathBuf,
    /// The policy's approvers and witnesses: name, public key.
    pub keys: Vec<(String, String)>,
}

/// Why the console did not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Plain HTTP on a non-loopback address without `--insecure-http`.
    #[error(
        "refusing plain HTTP on {0}: operators' sessions would cross the network in the clear; \
         give --tls-cert and --tls-key, listen on a loopback address, or pass --insecure-http"
    )]
    PlainHttp(SocketAddr),
    /// The certificate or key cannot be used.
    #[error("{file}: {message}")]
    Tls {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The socket or the runtime.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// How long a login challenge may be answered.
const CHALLENGE_LIFE: Duration = Duration::from_secs(120);
/// How long a session lasts.
const SESSION_LIFE: Duration = Duration::from_secs(8 * 3600);
/// The session cookie's name.
const COOKIE: &str = "capfence_session";

struct Session {
    secret: [u8; 32],
    name: String,
    public_key: String,
    /// An approver (may sign); a viewer only reads.
    can_sign: bool,
    expires: Instant,
}

struct App {
    rt: ActionRuntime,
    secure: bool,
    /// Every key the policy lists as an approver, by public key: its name.
    approvers: HashMap<String, String>,
    /// The policy's viewers, by public key: read-only sessions.
    viewers: HashMap<String, String>,
    challenges: Mutex<HashMap<String, Instant>>,
    sessions: Mutex<HashMap<String, Session>>,
    checkpoints: Option<CheckpointDir>,
    agents: agents::Agents,
    metrics: api::Metrics,
    notify_urls: Vec<String>,
    mcp: Option<mcp_http::Gateways>,
}

/// Serves the console until the process ends; `ready` is told the address
/// bound (with port 0, the one picked) once it accepts connections.
pub fn serve(
    rt: ActionRuntime,
    options: &ServeOptions,
    ready: impl FnOnce(SocketAddr, bool),
) -> Result<(), ServeError> {
    let tls = match &options.tls {
        Some((cert, key)) => Some(tls::acceptor(cert, key)?),
        None if options.listen.ip().is_loopback() || options.insecure_http => None,
        None => return Err(ServeError::PlainHttp(options.listen)),
    };
    let mut approvers = HashMap::new();
    for rule in rt.policy_facts().facts.iter() {
        for a in rule.approvers.iter() {
            approvers.insert(a.key.to_string(), a.name.to_string());
        }
    }
    let notifier_runtime = rt.clone();
    let mcp = options
        .mcp
        .as_ref()
        .map(|m| mcp_http::Gateways::new(rt.clone(), m));
    let viewers = options
        .viewers
        .iter()
        .map(|(name, key)| (key.clone(), name.clone()))
        .collect();
    let app = Arc::new(App {
        rt,
        secure: tls.is_some(),
        approvers,
        viewers,
        challenges: Mutex::new(HashMap::new()),
        sessions: Mutex::new(HashMap::new()),
        checkpoints: options.checkpoints.clone(),
        agents: options.agents.clone(),
        metrics: api::Metrics::new(),
        notify_urls: options
            .notify
            .as_ref()
            .map(|n| n.urls.clone())
            .unwrap_or_default(),
        mcp,
    });
    let commits = app.metrics.commits.clone();
    app.rt
        .ledger()
        .observe_commits(Box::new(move |took, _| commits.observe(took.as_secs_f64())));
    let mut router = Router::new();
    for (path, content_type, body) in ASSETS {
        router = router.route(
            path,
            get(move || async move { respond(StatusCode::OK, content_type, body) }),
        );
    }
    let router = router
        .route("/api/challenge", post(challenge))
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/me", get(me))
        .route("/api/tickets", get(tickets))
        .route("/api/tickets/{id}", get(ticket))
        .route("/api/tickets/{id}/statement", get(statement))
        .route("/api/tickets/{id}/{action}", post(act))
        .route("/api/events", get(events))
        .route("/api/decisions", get(decisions))
        .route("/api/grants", get(grants).post(create_grant))
        .route("/api/grants/statement", post(new_grant_statement))
        .route("/api/grants/{id}/statement", get(grant_statement))
        .route("/api/grants/{id}/revoke", post(revoke))
        .route("/api/chain", get(chain))
        .route(
            "/v1/decide",
            post(api::decide).layer(axum::extract::DefaultBodyLimit::max(api::MAX_BODY)),
        )
        .route(
            "/v1/outcome",
            post(api::outcome).layer(axum::extract::DefaultBodyLimit::max(64 * 1024)),
        )
        .route(
            "/mcp/{name}",
            axum::routing::any(mcp_http::endpoint)
                .layer(axum::extract::DefaultBodyLimit::max(api::MAX_BODY)),
        )
        .route("/v1/openapi.json", get(openapi))
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(api::metrics))
        .with_state(app);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(options.listen).await?;
        let bound = listener.local_addr()?;
        if let Some(mut notify) = options.notify.clone() {
            if notify.console_url.is_empty() {
                let scheme = if tls.is_some() { "https" } else { "http" };
                notify.console_url = format!("{scheme}://{bound}");
            }
            notify::start(notifier_runtime, notify)
                .map_err(|e| std::io::Error::other(format!("notifications: {e}")))?;
        }
        ready(bound, tls.is_some());
        tls::accept_loop(listener, tls, router, tls::stop_signal()).await
    })?;
    Ok(())
}

/// A response with the console's security headers.
fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Body>,
) -> Response<Body> {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    let fixed = [
        (header::CONTENT_TYPE, content_type),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'; \
             form-action 'none'; base-uri 'none'",
        ),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    respond(status, "application/json", value.to_string())
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, &json!({ "error": message }))
}

/// `GET /v1/openapi.json`: the decision API's OpenAPI document.
async fn openapi() -> Response<Body> {
    respond(
        StatusCode::OK,
        "application/json",
        include_str!("serve/openapi.json"),
    )
}

/// The page and its files, embedded in the binary.
const ASSETS: [(&str, &str, &str); 4] = [
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("serve/console.html"),
    ),
    (
        "/console.js",
        "text/javascript; charset=utf-8",
        include_str!("serve/console.js"),
    ),
    (
        "/statement.js",
        "text/javascript; charset=utf-8",
        include_str!("serve/statement.js"),
    ),
    (
        "/console.css",
        "text/css; charset=utf-8",
        include_str!("serve/console.css"),
    ),
];

fn random_b64() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    if getrandom::fill(&mut bytes).is_err() {
        // No randomness: no challenge, no session (fail closed).
        return String::new();
    }
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The origin this request was addressed to (`https://host:port`).
fn own_origin(app: &App, headers: &HeaderMap) -> Option<String> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let scheme = if app.secure { "https" } else { "http" };
    Some(format!("{scheme}://{host}"))
}

/// A state-changing request must come from the console's own page.
fn same_origin(app: &App, headers: &HeaderMap) -> bool {
    let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
    match (origin, own_origin(app, headers)) {
        (Some(origin), Some(own)) => origin == own,
        _ => false,
    }
}

/// The statement a login signs: the challenge and the origin it is for.
pub fn login_statement(challenge: &str, origin: &str) -> Vec<u8> {
    signing::statement("login", &[("challenge", challenge), ("origin", origin)])
}

async fn challenge(State(app): State<Arc<App>>, headers: HeaderMap) -> Response<Body> {
    if !same_origin(&app, &headers) {
        return error(StatusCode::FORBIDDEN, "cross-origin request");
    }
    let challenge = random_b64();
    if challenge.is_empty() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "no randomness");
    }
    let Ok(mut open) = app.challenges.lock() else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "state lost");
    };
    let now = Instant::now();
    open.retain(|_, at| now.duration_since(*at) < CHALLENGE_LIFE);
    if open.len() > 10_000 {
        return error(StatusCode::TOO_MANY_REQUESTS, "too many open challenges");
    }
    open.insert(challenge.clone(), now);
    json_response(StatusCode::OK, &json!({ "challenge": challenge }))
}

#[derive(Deserialize)]
struct Login {
    challenge: String,
    public_key: String,
    signature: String,
}

async fn login(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response<Body> {
    if !same_origin(&app, &headers) {
        return error(StatusCode::FORBIDDEN, "cross-origin request");
    }
    let Ok(request) = serde_json::from_slice::<Login>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "expected {challenge, public_key, signature}",
        );
    };
    let fresh = app.challenges.lock().ok().and_then(|mut open| {
        open.remove(&request.challenge)
            .filter(|at| at.elapsed() < CHALLENGE_LIFE)
    });
    if fresh.is_none() {
        return error(StatusCode::UNAUTHORIZED, "unknown or expired challenge");
    }
    let (name, can_sign) = match (
        app.approvers.get(&request.public_key),
        app.viewers.get(&request.public_key),
    ) {
        (Some(name), _) => (name.clone(), true),
        (None, Some(name)) => (name.clone(), false),
        (None, None) => {
            return error(
                StatusCode::UNAUTHORIZED,
                "this key is not among the policy's approvers or viewers",
            );
        }
    };
    let origin = own_origin(&app, &headers).unwrap_or_default();
    let message = login_statement(&request.challenge, &origin);
    if !signing::verify(&request.public_key, &message, &request.signature) {
        return error(StatusCode::UNAUTHORIZED, "the signature does not verify");
    }
    let id = random_b64();
    let mut secret = [0u8; 32];
    if id.is_empty() || getrandom::fill(&mut secret).is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "no randomness");
    }
    let Ok(mut sessions) = app.sessions.lock() else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "state lost");
    };
    let now = Instant::now();
    sessions.retain(|_, s| s.expires > now);
    sessions.insert(
        id.clone(),
        Session {
            secret,
            name: name.clone(),
            public_key: request.public_key.clone(),
            can_sign,
            expires: now + SESSION_LIFE,
        },
    );
    drop(sessions);
    use base64::Engine as _;
    let token = format!(
        "{id}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    );
    let secure = if app.secure { "; Secure" } else { "" };
    let mut response = json_response(StatusCode::OK, &json!({ "name": name }));
    if let Ok(cookie) = HeaderValue::from_str(&format!(
        "{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/{secure}"
    )) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// Who is signed in.
struct Who {
    name: String,
    public_key: String,
    can_sign: bool,
}

/// The signed-in operator, the token checked in constant time.
fn session(app: &App, headers: &HeaderMap) -> Option<Who> {
    use base64::Engine as _;
    use subtle::ConstantTimeEq as _;
    let token = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .next()?;
    let (id, secret) = token.split_once('.')?;
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(secret)
        .ok()?;
    let sessions = app.sessions.lock().ok()?;
    let s = sessions.get(id)?;
    let matches: bool = s.secret.as_slice().ct_eq(&secret).into();
    (matches && s.expires > Instant::now()).then(|| Who {
        name: s.name.clone(),
        public_key: s.public_key.clone(),
        can_sign: s.can_sign,
    })
}

fn signed_out() -> Response<Body> {
    error(StatusCode::UNAUTHORIZED, "sign in with an approver's key")
}

async fn logout(State(app): State<Arc<App>>, headers: HeaderMap) -> Response<Body> {
    if !same_origin(&app, &headers) {
        return error(StatusCode::FORBIDDEN, "cross-origin request");
    }
    if let Some(who) = session(&app, &headers)
        && let Ok(mut sessions) = app.sessions.lock()
    {
        sessions.retain(|_, s| s.public_key != who.public_key);
    }
    let mut response = json_response(StatusCode::OK, &json!({}));
    if let Ok(cookie) = HeaderValue::from_str(&format!(
        "{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"
    )) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

async fn me(State(app): State<Arc<App>>, headers: HeaderMap) -> Response<Body> {
    let read_only = if app.approvers.is_empty() {
        Some("the policy lists no `approvers:`, so no one can sign an approval here")
    } else {
        None
    };
    match session(&app, &headers) {
        Some(who) => json_response(
            StatusCode::OK,
            &json!({
                "name": who.name,
                "public_key": who.public_key,
                "can_sign": who.can_sign,
                "read_only_because": read_only.or((!who.can_sign).then_some(
                    "this key is a viewer's: it reads, it does not sign",
                )),
            }),
        ),
        None => signed_out(),
    }
}

/// A ticket as the page shows it. The event's fields are the opening
/// record's (what the ticket's key binds); `payload_text` is the payload
/// exactly as recorded (the page shows it and hashes it: a JSON number
/// read by a browser would lose digits).
fn ticket_json(v: &TicketView) -> serde_json::Value {
    let r = &v.opened;
    let payload =
        serde_json::from_str::<serde_json::Value>(&r.payload).unwrap_or_else(|_| json!(r.payload));
    let status = if v.expired {
        "expired"
    } else {
        v.status.as_str()
    };
    json!({
        "id": crate::approvals::TicketId(v.ticket.id).to_string(),
        "status": status,
        "actor": r.actor,
        "capability": r.capability,
        "environment": r.environment,
        "risk": r.risk,
        "payload": payload,
        "payload_text": r.payload,
        "rule": r.rule,
        "policy": r.policy_digest,
        "reason": r.reason,
        "approvals": v.approvals,
        "needed": v.needed,
        "opened_at": crate::clock::rfc3339(v.ticket.created_at),
        "expires_at": crate::clock::rfc3339(v.expires_at),
        "opened_seq": r.seq,
        "opened_hash": r.hash,
    })
}

/// One ticket, with the whole record that opened it.
async fn ticket(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Response<Body> {
    if session(&app, &headers).is_none() {
        return signed_out();
    }
    let Some(id) = crate::approvals::TicketId::parse(&id) else {
        return error(StatusCode::NOT_FOUND, "no such ticket");
    };
    let rt = app.rt.clone();
    let view = tokio::task::spawn_blocking(move || rt.ticket_view(id)).await;
    match view {
        Ok(Ok(Some(v))) => {
            let mut body = ticket_json(&v);
            if let Some(fields) = body.as_object_mut() {
                let record = v.opened.to_json();
                let text = serde_json::to_string_pretty(&record).unwrap_or_default();
                fields.insert("opened_record".to_owned(), record);
                fields.insert("opened_record_text".to_owned(), json!(text));
            }
            json_response(StatusCode::OK, &json!({ "ticket": body }))
        }
        Ok(Ok(None)) => error(StatusCode::NOT_FOUND, "no such ticket"),
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "the read failed"),
    }
}

async fn tickets(State(app): State<Arc<App>>, headers: HeaderMap) -> Response<Body> {
    if session(&app, &headers).is_none() {
        return signed_out();
    }
    let rt = app.rt.clone();
    let views = tokio::task::spawn_blocking(move || rt.ticket_views(200)).await;
    match views {
        Ok(Ok(views)) => {
            let list: Vec<_> = views.iter().map(ticket_json).collect();
            json_response(StatusCode::OK, &json!({ "tickets": list }))
        }
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "the read failed"),
    }
}

#[derive(Deserialize)]
struct StatementQuery {
    action: String,
}

/// The statement's parts, split back out of its bytes (`name:len:value`).
fn parts(statement: &[u8]) -> Option<(String, Vec<(String, String)>)> {
    let text = std::str::from_utf8(statement).ok()?;
    let (domain, mut rest) = text.split_once('\n')?;
    let kind = domain.strip_prefix("capfence-")?.strip_suffix("-v1")?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (name, after) = rest.split_once(':')?;
        let (len, after) = after.split_once(':')?;
        let len: usize = len.parse().ok()?;
        let value = after.get(..len)?;
        rest = after.get(len..)?.strip_prefix('\n')?;
        out.push((name.to_owned(), value.to_owned()));
    }
    Some((kind.to_owned(), out))
}

/// The signed-in operator if they may sign; the answer otherwise.
fn signer(app: &App, headers: &HeaderMap) -> Result<Who, Response<Body>> {
    match session(app, headers) {
        None => Err(signed_out()),
        Some(who) if !who.can_sign => Err(error(StatusCode::FORBIDDEN, "a viewer does not sign")),
        Some(who) => Ok(who),
    }
}

/// A state-changing request: from the console's own page, by a signed-in
/// approver, with a JSON body of the expected shape (`expected` names it).
fn signed_request<T: serde::de::DeserializeOwned>(
    app: &App,
    headers: &HeaderMap,
    body: &[u8],
    expected: &str,
) -> Result<(Who, T), Response<Body>> {
    if !same_origin(app, headers) {
        return Err(error(StatusCode::FORBIDDEN, "cross-origin request"));
    }
    let who = signer(app, headers)?;
    let request = serde_json::from_slice::<T>(body)
        .map_err(|_| error(StatusCode::BAD_REQUEST, &format!("expected {expected}")))?;
    Ok((who, request))
}

/// A statement's parts, or why there is none.
fn statement_answer(
    made: Result<Result<Vec<u8>, OperatorError>, tokio::task::JoinError>,
) -> Response<Body> {
    match made {
        Ok(Ok(bytes)) => match parts(&bytes) {
            Some((kind, parts)) => {
                json_response(StatusCode::OK, &json!({ "kind": kind, "parts": parts }))
            }
            None => error(StatusCode::INTERNAL_SERVER_ERROR, "unreadable statement"),
        },
        Ok(Err(e)) => refusal(&e),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "the action failed"),
    }
}

/// An operator action's answer: `ok`'s JSON, or the refusal.
fn action_answer<T>(
    done: Result<Result<T, OperatorError>, tokio::task::JoinError>,
    ok: impl FnOnce(T) -> serde_json::Value,
) -> Response<Body> {
    match done {
        Ok(Ok(value)) => json_response(StatusCode::OK, &ok(value)),
        Ok(Err(e)) => refusal(&e),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "the action failed"),
    }
}

fn refusal(e: &OperatorError) -> Response<Body> {
    let status = match e {
        OperatorError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        OperatorError::NotFound { .. } => StatusCode::NOT_FOUND,
        _ => StatusCode::CONFLICT,
    };
    error(status, &e.to_string())
}

async fn statement(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    Query(query): Query<StatementQuery>,
) -> Response<Body> {
    let who = match signer(&app, &headers) {
        Ok(who) => who,
        Err(answer) => return answer,
    };
    let public = who.public_key;
    let approve = match query.action.as_str() {
        "approve" => true,
        "reject" => false,
        _ => return error(StatusCode::BAD_REQUEST, "action is approve or reject"),
    };
    let rt = app.rt.clone();
    let made =
        tokio::task::spawn_blocking(move || rt.ticket_statement(&id, approve, &public)).await;
    statement_answer(made)
}

#[derive(Deserialize)]
struct Signed {
    signature: String,
}

async fn act(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    UrlPath((id, action)): UrlPath<(String, String)>,
    body: axum::body::Bytes,
) -> Response<Body> {
    let approve = match action.as_str() {
        "approve" => true,
        "reject" => false,
        _ => return error(StatusCode::NOT_FOUND, "no such action"),
    };
    let (who, signed) = match signed_request::<Signed>(&app, &headers, &body, "{signature}") {
        Ok(request) => request,
        Err(answer) => return answer,
    };
    let public = who.public_key;
    let rt = app.rt.clone();
    let done = tokio::task::spawn_blocking(move || {
        let presigned = Presigned {
            public_key: public,
            signature: signed.signature,
        };
        if approve {
            rt.approve(&id, &presigned)
        } else {
            rt.reject(&id, &presigned)
        }
    })
    .await;
    action_answer(done, |outcome| {
        json!({
            "id": crate::approvals::TicketId(outcome.ticket.id).to_string(),
            "status": outcome.ticket.status.as_str(),
            "approvals": outcome.approvals,
            "needed": outcome.needed,
        })
    })
}

async fn events(State(app): State<Arc<App>>, headers: HeaderMap) -> Response<Body> {
    if session(&app, &headers).is_none() {
        return signed_out();
    }
    let mut response = respond(
        StatusCode::OK,
        "text/event-stream",
        Body::from_stream(stream::ledger_changes(app.rt.clone())),
    );
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

#[derive(Deserialize)]
struct DecisionQuery {
    decision: Option<String>,
    actor: Option<String>,
    capability: Option<String>,
}

/// The last 100 decision records matching the filters, newest first, from
/// the newest 2,000 records.
async fn decisions(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(query): Query<DecisionQuery>,
) -> Response<Body> {
    if session(&app, &headers).is_none() {
        return signed_out();
    }
    let rt = app.rt.clone();
    let read = tokio::task::spawn_blocking(move || {
        let head = rt.ledger().head()?.0;
        let mut records = Vec::new();
        rt.ledger()
            .records_after(head.saturating_sub(2000), &mut |r| {
                records.push(r);
                true
            })?;
        Ok::<_, crate::store::StoreError>(records)
    })
    .await;
    let records = match read {
        Ok(Ok(records)) => records,
        Ok(Err(e)) => return error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "the read failed"),
    };
    let wanted = |want: &Option<String>, have: Option<&str>| {
        want.as_deref()
            .filter(|w| !w.is_empty())
            .is_none_or(|w| Some(w) == have)
    };
    let list: Vec<serde_json::Value> = records
        .iter()
        .rev()
        .filter(|r| matches!(r.decision, crate::audit::RecordKind::Decision(_)))
        .filter(|r| wanted(&query.decision, Some(r.decision.as_str())))
        .filter(|r| wanted(&query.actor, r.actor.as_deref()))
        .filter(|r| wanted(&query.capability, r.capability.as_deref()))
        .take(100)
        .map(|r| {
            let mut json = r.to_json();
            if let Some(fields) = json.as_object_mut() {
                // As recorded: a browser reading JSON numbers loses digits.
                fields.insert("payload_text".to_owned(), json!(r.payload));
            }
            json
        })
        .collect();
    json_response(StatusCode::OK, &json!({ "decisions": list }))
}

async fn grants(State(app): State<Arc<App>>, headers: HeaderMap) -> Response<Body> {
    if session(&app, &headers).is_none() {
        return signed_out();
    }
    let rt = app.rt.clone();
    let read = tokio::task::spawn_blocking(move || rt.ledger().grant_views()).await;
    let now = crate::clock::Clock::now_micros(&crate::clock::SystemClock);
    match read {
        Ok(Ok(grants)) => {
            let list: Vec<_> = grants
                .iter()
                .map(|g| {
                    let state = if g.revoked_by.is_some() {
                        "revoked"
                    } else if g.expires_at <= now {
                        "expired"
                    } else if g.uses_left == Some(0) {
                        "used up"
                    } else {
                        "active"
                    };
                    json!({
                        "id": crate::approvals::GrantId(g.id).to_string(),
                        "state": state,
                        "actor": g.actor,
                        "capability": g.capability,
                        "environment": g.environment,
                        "granted_by": g.granted_by,
                        "caps": crate::approvals::caps_text(&g.caps),
                        "uses_left": g.uses_left,
                        "expires_at": crate::clock::rfc3339(g.expires_at),
                        "revoked_by": g.revoked_by,
                        "signed": g.signed.is_some(),
                    })
                })
                .collect();
            json_response(StatusCode::OK, &json!({ "grants": list }))
        }
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "the read failed"),
    }
}

async fn grant_statement(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> Response<Body> {
    let who = match signer(&app, &headers) {
        Ok(who) => who,
        Err(answer) => return answer,
    };
    let rt = app.rt.clone();
    let made = tokio::task::spawn_blocking(move || rt.revoke_statement(&id, &who.public_key)).await;
    statement_answer(made)
}

async fn revoke(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    body: axum::body::Bytes,
) -> Response<Body> {
    let (who, signed) = match signed_request::<Signed>(&app, &headers, &body, "{signature}") {
        Ok(request) => request,
        Err(answer) => return answer,
    };
    let rt = app.rt.clone();
    let done = tokio::task::spawn_blocking(move || {
        rt.revoke(
            &id,
            &Presigned {
                public_key: who.public_key,
                signature: signed.signature,
            },
        )
    })
    .await;
    action_answer(done, |g| {
        json!({
            "id": crate::approvals::GrantId(g.id).to_string(),
            "revoked_by": g.revoked_by,
        })
    })
}

/// A grant as the page asks for it: whom, what, until when, within which
/// caps (`field=value;…`, values exact) and how many uses.
#[derive(Deserialize)]
struct GrantRequest {
    actor: String,
    capability: String,
    environment: String,
    /// How long from now (asking for the statement).
    duration_seconds: Option<u64>,
    /// The expiry the statement named (making the grant), RFC 3339.
    expires_at: Option<String>,
    #[serde(default)]
    caps: String,
    uses: Option<u32>,
    /// The signature over the statement (making the grant).
    signature: Option<String>,
}

impl GrantRequest {
    fn scope(&self) -> crate::ledger::GrantScope<'_> {
        crate::ledger::GrantScope {
            actor: &self.actor,
            capability: &self.capability,
            environment: &self.environment,
        }
    }

    fn limits(&self) -> Result<crate::GrantLimits, Response<Body>> {
        let caps = crate::approvals::parse_caps(self.caps.trim()).ok_or_else(|| {
            error(
                StatusCode::BAD_REQUEST,
                "caps are `field=value` separated by `;`, each value an exact number",
            )
        })?;
        Ok(crate::GrantLimits {
            caps,
            uses: self.uses,
        })
    }
}

/// The statement the signed-in approver signs to make a grant now: its id
/// (the next), scope, caps, uses and expiry (whole seconds from now).
async fn new_grant_statement(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response<Body> {
    let (who, request) = match signed_request::<GrantRequest>(
        &app,
        &headers,
        &body,
        "{actor, capability, environment, duration_seconds, caps, uses}",
    ) {
        Ok(request) => request,
        Err(answer) => return answer,
    };
    let limits = match request.limits() {
        Ok(limits) => limits,
        Err(answer) => return answer,
    };
    let seconds = match request.duration_seconds {
        Some(s) if s > 0 && s <= 366 * 24 * 3600 => s,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "duration_seconds: from 1 to 366 days in seconds",
            );
        }
    };
    let now = crate::clock::Clock::now_micros(&crate::clock::SystemClock);
    let whole = now - now.rem_euclid(1_000_000);
    let expires_at = whole.saturating_add(i64::try_from(seconds).unwrap_or(0) * 1_000_000);
    let rt = app.rt.clone();
    let made = tokio::task::spawn_blocking(move || {
        rt.grant_statement(request.scope(), &who.public_key, expires_at, limits)
    })
    .await;
    statement_answer(made)
}

/// Makes a grant the page signed (see [`new_grant_statement`]).
async fn create_grant(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response<Body> {
    let expected = "{actor, capability, environment, expires_at, caps, uses, signature}";
    let (who, request) = match signed_request::<GrantRequest>(&app, &headers, &body, expected) {
        Ok((who, r)) if r.signature.is_some() && r.expires_at.is_some() => (who, r),
        Ok(_) => return error(StatusCode::BAD_REQUEST, &format!("expected {expected}")),
        Err(answer) => return answer,
    };
    let limits = match request.limits() {
        Ok(limits) => limits,
        Err(answer) => return answer,
    };
    let Some(expires_at) = request
        .expires_at
        .as_deref()
        .and_then(crate::clock::parse_rfc3339)
    else {
        return error(StatusCode::BAD_REQUEST, "expires_at: not an RFC 3339 time");
    };
    let rt = app.rt.clone();
    let done = tokio::task::spawn_blocking(move || {
        let presigned = Presigned {
            public_key: who.public_key,
            signature: request.signature.clone().unwrap_or_default(),
        };
        rt.grant_at(request.scope(), &presigned, expires_at, limits)
    })
    .await;
    action_answer(done, |g| {
        json!({
            "id": crate::approvals::GrantId(g.id).to_string(),
            "granted_by": g.granted_by,
            "expires_at": crate::clock::rfc3339(g.expires_at),
        })
    })
}

/// The chain: verified now, its head, its Merkle tree's size and root
/// (what a checkpoint signs), and the newest checkpoint held to it.
async fn chain(State(app): State<Arc<App>>, headers: HeaderMap) -> Response<Body> {
    if session(&app, &headers).is_none() {
        return signed_out();
    }
    let rt = app.rt.clone();
    let checkpoints = app.checkpoints.clone();
    let read = tokio::task::spawn_blocking(move || {
        let verified = rt.verify().map_err(|e| e.to_string());
        let tree = rt.ledger().tree_head().map_err(|e| e.to_string());
        let checkpoint = checkpoints.map(|c| newest_checkpoint(rt.ledger(), &c));
        (verified, tree, checkpoint)
    })
    .await;
    let Ok((verified, tree, checkpoint)) = read else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "the read failed");
    };
    let (ok, records, head, fault) = match verified {
        Ok((records, head)) => (true, records, head, None),
        Err(e) => (false, 0, String::new(), Some(e)),
    };
    let (size, root) = match tree {
        Ok((size, root)) => (size, hex::encode(root)),
        Err(e) => (0, e),
    };
    json_response(
        StatusCode::OK,
        &json!({
            "verified": ok,
            "records": records,
            "head": head,
            "fault": fault,
            "tree_size": size,
            "tree_root": root,
            "checkpoint": checkpoint,
        }),
    )
}

/// The newest checkpoint in the directory, held to the ledger: its file,
/// size, root and signers, and whether the ledger is consistent with it
/// (`fault` says why not).
fn newest_checkpoint(ledger: &crate::Ledger, c: &CheckpointDir) -> serde_json::Value {
    use crate::checkpoint::{self, Checkpoint};
    let (file, text) = match checkpoint::newest_in(&c.dir) {
        Ok(Some(found)) => found,
        Ok(None) => {
            return json!({ "dir": c.dir.display().to_string(), "file": null,
                "consistent": null, "fault": "no checkpoint written yet" });
        }
        Err(e) => {
            return json!({ "dir": c.dir.display().to_string(), "file": null,
                "consistent": false, "fault": format!("cannot read the directory: {e}") });
        }
    };
    let file_name = file.display().to_string();
    let note = match Checkpoint::parse(&text) {
        Ok(note) => note,
        Err(e) => {
            return json!({ "dir": c.dir.display().to_string(), "file": file_name,
                "consistent": false, "fault": e.to_string() });
        }
    };
    let held = checkpoint::hold(ledger, &note, &c.keys);
    json!({
        "dir": c.dir.display().to_string(),
        "file": file_name,
        "size": note.size,
        "root": note.root_hex(),
        "signed_by": held.as_ref().ok(),
        "consistent": held.is_ok(),
        "fault": held.as_ref().err().map(ToString::to_string),
    })
}
