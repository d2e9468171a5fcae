//! `capfence serve --mcp NAME=URL`: an MCP streamable-HTTP endpoint,
//! `/mcp/NAME`, in front of the MCP server at URL.
//!
//! The agent authenticates with its bearer token; its name is the actor of
//! every call. A `tools/call` is decided and recorded before the server
//! sees it (the policy's `tools:` map, as `mcp-proxy` does): refused, the
//! agent gets a tool result with `isError` and the server nothing. What the
//! server receives is this gateway's own serialization of the message it
//! decided, never the agent's bytes, and only the headers the transport
//! needs: the routing headers a modern client mirrors from the body
//! (`Mcp-Method`, `Mcp-Name`, and `Mcp-Param-*` for the arguments a tool's
//! schema marks with `x-mcp-header`, learnt from the server's tool lists)
//! are rebuilt from the decided message and the agent's own dropped: a
//! server reading a header would otherwise read a second copy of the input,
//! not the one decided. The agent's token never reaches the server.
//!
//! Everything else is relayed: other requests, notifications and
//! responses, `GET` event streams and `DELETE`. Answers come back as the
//! server wrote them, event by event for `text/event-stream`; an authorized
//! call's answer is its outcome, recorded before the agent reads it.
//! Session ids the server hands out are bound to the agent that opened the
//! session: another agent presenting one is answered 404, as for an unknown
//! session.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use capfence_compiler::Policy;
use capfence_compiler::policy::Risk;
use serde_json::{Value as Json, json};

use super::{App, api};
use crate::mcp::{self, Caller, ToolGate};
use crate::verdict::Verdict;

/// The largest answer body (not an event stream) read from a server.
const MAX_ANSWER: usize = 16 * 1024 * 1024;
/// The largest server-sent event inspected whole; a longer one is relayed
/// as it comes, unread.
const MAX_EVENT: usize = 4 * 1024 * 1024;

/// One upstream MCP server: `NAME=URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The gateway's name: the endpoint is `/mcp/NAME`.
    pub name: String,
    /// The server's URL as given.
    pub url: String,
    tls: bool,
    host: String,
    port: u16,
    authority: String,
    path: String,
}

impl Upstream {
    /// Reads `NAME=URL` (`http://` or `https://`; NAME of letters, digits,
    /// `-` and `_`).
    pub fn parse(spec: &str) -> Result<Upstream, String> {
        let Some((name, url)) = spec.split_once('=') else {
            return Err(format!("--mcp {spec}: expected NAME=URL"));
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "--mcp {spec}: the name {name:?} is not letters, digits, '-' and '_'"
            ));
        }
        let uri: axum::http::Uri = url
            .parse()
            .map_err(|e| format!("--mcp {spec}: not a URL: {e}"))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(format!("--mcp {spec}: not an http:// or https:// URL")),
        };
        let Some(authority) = uri.authority() else {
            return Err(format!("--mcp {spec}: no host"));
        };
        if authority.as_str().contains('@') {
            return Err(format!(
                "--mcp {spec}: credentials in the URL are not sent; leave them out"
            ));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let path = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        Ok(Upstream {
            name: name.to_owned(),
            url: url.to_owned(),
            tls,
            host,
            port,
            authority: authority.as_str().to_owned(),
            path,
        })
    }
}

/// What `capfence serve --mcp` fronts, and as whom calls are decided.
#[derive(Debug, Clone)]
pub struct McpOptions {
    /// The servers.
    pub upstreams: Vec<Upstream>,
    /// The policy (its `tools:` map names each tool's capability).
    pub policy: Arc<Policy>,
    /// The environment of every call.
    pub environment: String,
    /// The risk of every call.
    pub risk: Risk,
}

/// An argument mirrored into a header: its path through the arguments and
/// the header's token (`Mcp-Param-<token>`).
type Marked = (Vec<String>, String);

/// An awaited call: its gateway, its stream, its JSON-RPC id's text.
type PendingKey = (String, String, String);

/// The gateways of one server.
pub(super) struct Gateways {
    upstreams: HashMap<String, Upstream>,
    tools: ToolGate,
    environment: String,
    risk: Risk,
    /// Session ids servers handed out, by gateway: the agent it was for.
    sessions: Mutex<HashMap<(String, String), String>>,
    /// Authorized calls forwarded and not yet answered: (gateway, stream,
    /// JSON-RPC id) → the decision's record. The stream is the session
    /// (any of its event streams may carry the answer) or, without one,
    /// the request.
    /// Being decided: `None`.
    pending: Mutex<HashMap<PendingKey, Option<u64>>>,
    /// The arguments each tool's input schema marks for an `Mcp-Param-*`
    /// header (`x-mcp-header`), by gateway and tool, as the server's latest
    /// tool list gave them: their path and the header's name.
    mirrored: Mutex<HashMap<(String, String), Vec<Marked>>>,
}

impl Gateways {
    pub(super) fn new(rt: crate::ActionRuntime, options: &McpOptions) -> Gateways {
        Gateways {
            upstreams: options
                .upstreams
                .iter()
                .map(|u| (u.name.clone(), u.clone()))
                .collect(),
            tools: ToolGate::new(rt, Arc::clone(&options.policy)),
            environment: options.environment.clone(),
            risk: options.risk,
            sessions: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            mirrored: Mutex::new(HashMap::new()),
        }
    }

    fn owner(&self, gateway: &str, session: &str) -> Option<String> {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(gateway.to_owned(), session.to_owned()))
            .cloned()
    }

    /// Keeps, from a tool list the server sent, which arguments of each
    /// tool are mirrored into headers.
    fn learn(&self, gateway: &str, tools: &[Json]) {
        let mut mirrored = self.mirrored.lock().unwrap_or_else(PoisonError::into_inner);
        for tool in tools {
            let Some(name) = tool.get("name").and_then(Json::as_str) else {
                continue;
            };
            let mut marked = Vec::new();
            if let Some(schema) = tool.get("inputSchema") {
                marked_arguments(schema, &mut Vec::new(), &mut marked);
            }
            mirrored.insert((gateway.to_owned(), name.to_owned()), marked);
        }
    }

    /// Holds `key` for a call about to be decided; false when a call with
    /// that id is already being decided or awaited there.
    fn reserve(&self, key: &PendingKey) -> bool {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.contains_key(key) {
            return false;
        }
        pending.insert(key.clone(), None);
        true
    }

    /// The reserved call was decided: awaited with its record when it goes
    /// to the server (`Some`), else let go.
    fn settle(&self, key: &PendingKey, seq: Option<u64>) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        match seq {
            Some(seq) => {
                pending.insert(key.clone(), Some(seq));
            }
            None => {
                pending.remove(key);
            }
        }
    }

    /// The call `id` awaited on `stream` is answered: its record.
    fn close(&self, gateway: &str, stream: &str, id: &str) -> Option<u64> {
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(gateway.to_owned(), stream.to_owned(), id.to_owned()))
            .flatten()
    }
}

/// `GET`, `POST` and `DELETE /mcp/{name}`.
pub(super) async fn endpoint(
    State(app): State<Arc<App>>,
    UrlPath(name): UrlPath<String>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let id = api::request_id();
    let span = tracing::info_span!("capfence_http", request_id = %id, gateway = %name);
    let answer =
        tracing::Instrument::instrument(handle(&app, &name, method, &headers, body, &id), span)
            .await;
    api::with_request_id(answer, &id)
}

async fn handle(
    app: &Arc<App>,
    name: &str,
    method: Method,
    headers: &HeaderMap,
    body: Bytes,
    request: &str,
) -> Response<Body> {
    let Some(gateways) = app.mcp.as_ref() else {
        return super::error(StatusCode::NOT_FOUND, "this server fronts no MCP server");
    };
    let Some(upstream) = gateways.upstreams.get(name) else {
        return super::error(StatusCode::NOT_FOUND, &format!("no MCP gateway {name:?}"));
    };
    let Some(agent) = api::bearer(headers).and_then(|t| app.agents.authenticate(t).cloned()) else {
        return api::unauthenticated(
            app,
            (method == Method::POST).then_some(
                "denied: an MCP request without a valid agent token (its body was not read)",
            ),
        )
        .await;
    };
    let session = header_text(headers, "mcp-session-id");
    if let Some(session) = &session
        && gateways.owner(name, session).as_deref() != Some(agent.name.as_str())
    {
        // Unknown, or another agent's: the same answer.
        return rpc_answer(
            StatusCode::NOT_FOUND,
            &json!({
                "jsonrpc": "2.0",
                "id": null,
                "error": {"code": -32001, "message": "session not found"},
            }),
        );
    }
    let exchange = Exchange {
        app,
        gateways,
        upstream,
        agent: &agent.name,
        stream: session.unwrap_or_else(|| format!("request {request}")),
    };
    match method {
        Method::POST => exchange.post(headers, &body).await,
        Method::GET | Method::DELETE => exchange.forward(method, headers, None, None).await,
        _ => {
            let mut answer = super::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "an MCP endpoint takes GET, POST and DELETE",
            );
            answer
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, POST, DELETE"));
            answer
        }
    }
}

/// One request through a gateway.
struct Exchange<'a> {
    app: &'a Arc<App>,
    gateways: &'a Gateways,
    upstream: &'a Upstream,
    agent: &'a str,
    /// Where the answers of this request's calls are awaited.
    stream: String,
}

/// An authorized call on its way: its JSON-RPC id and its decision.
struct Call {
    id: Json,
    key: String,
    seq: u64,
}

impl Exchange<'_> {
    async fn post(&self, headers: &HeaderMap, body: &[u8]) -> Response<Body> {
        let Ok(text) = std::str::from_utf8(body) else {
            return rpc_text(
                StatusCode::BAD_REQUEST,
                mcp::parse_error("the body is not UTF-8"),
            );
        };
        let message: Json = match serde_json::from_str(text) {
            Ok(message) => message,
            Err(e) => {
                return rpc_text(StatusCode::BAD_REQUEST, mcp::parse_error(&e.to_string()));
            }
        };
        // A key given twice: this gateway and the server could read
        // different methods, tools or arguments.
        if let Err(e) = capfence_compiler::event::check_unique_keys(text) {
            return rpc_text(
                StatusCode::BAD_REQUEST,
                mcp::invalid(message.get("id"), &e.to_string()),
            );
        }
        if let Some(batch) = message.as_array()
            && batch.iter().any(mcp::is_tool_call)
        {
            return rpc_text(
                StatusCode::BAD_REQUEST,
                mcp::invalid(
                    None,
                    "a batch with tools/call is not relayed: send each call alone",
                ),
            );
        }
        let mut call = None;
        if mcp::is_tool_call(&message) {
            // A call whose id is already awaited in this session: the
            // server's one answer would be taken for either (and one call's
            // outcome read from the other's answer).
            let key = message.get("id").map(|id| {
                (
                    self.upstream.name.clone(),
                    self.stream.clone(),
                    id.to_string(),
                )
            });
            if let Some(key) = &key
                && !self.gateways.reserve(key)
                && let Some(id) = message.get("id")
            {
                return rpc_text(
                    StatusCode::BAD_REQUEST,
                    mcp::invalid(
                        Some(id),
                        "a call with this id is already waiting for its answer",
                    ),
                );
            }
            let verdict = self.decide(&message).await;
            if let Some(key) = &key {
                self.gateways
                    .settle(key, verdict.authorized.then_some(verdict.seq).flatten());
            }
            if !verdict.authorized {
                // A call sent as a notification has no id to answer.
                return match message.get("id") {
                    Some(_) => rpc_answer(StatusCode::OK, &mcp::refusal(&message, &verdict)),
                    None => empty(StatusCode::ACCEPTED),
                };
            }
            if let (Some(id), Some(seq)) = (message.get("id"), verdict.seq) {
                call = Some(Call {
                    id: id.clone(),
                    key: id.to_string(),
                    seq,
                });
            }
        }
        self.forward(Method::POST, headers, Some(&message), call)
            .await
    }

    /// Decides a `tools/call` as the agent; counts it.
    async fn decide(&self, message: &Json) -> Verdict {
        let started = std::time::Instant::now();
        let params = message.get("params").cloned();
        let capability = params
            .as_ref()
            .and_then(|p| p.get("name"))
            .and_then(Json::as_str)
            .and_then(|tool| self.gateways.tools.capability(tool));
        let caller = Caller {
            actor: self.agent.to_owned(),
            environment: self.gateways.environment.clone(),
            risk: self.gateways.risk,
        };
        let tools = self.gateways.tools.clone();
        let verdict =
            tokio::task::spawn_blocking(move || tools.decide_call(&caller, params.as_ref()))
                .await
                .unwrap_or_else(|_| Verdict::deny("denied: the decision's thread stopped"));
        self.app.metrics.count(capability, &verdict);
        self.app.metrics.observe(started.elapsed().as_secs_f64());
        verdict
    }

    /// Sends the request on to the server and relays its answer.
    async fn forward(
        &self,
        method: Method,
        headers: &HeaderMap,
        message: Option<&Json>,
        call: Option<Call>,
    ) -> Response<Body> {
        let deleting = method == Method::DELETE;
        let request = match self.upstream_request(method, headers, message) {
            Ok(request) => request,
            Err(e) => return super::error(StatusCode::BAD_REQUEST, &e),
        };
        let answer = match send(self.upstream, request).await {
            Ok(answer) => answer,
            Err(fault) => {
                if let Some(call) = &call {
                    self.gateways
                        .close(&self.upstream.name, &self.stream, &call.key);
                    // Never connected: the server did not get the call.
                    if !fault.sent {
                        self.record(
                            call.seq,
                            crate::ledger::Outcome::Failed {
                                error: format!(
                                    "the MCP server could not be reached: {}",
                                    fault.why
                                ),
                            },
                        )
                        .await;
                    }
                }
                tracing::warn!(target: "capfence::mcp", gateway = %self.upstream.name, error = %fault.why, "the MCP server did not answer");
                let id = call.as_ref().map_or(Json::Null, |c| c.id.clone());
                return rpc_answer(
                    StatusCode::BAD_GATEWAY,
                    &json!({
                        "jsonrpc": "2.0",
                        "id": id,
                        "error": {
                            "code": mcp::INTERNAL_ERROR,
                            "message": format!("the MCP server {} did not answer", self.upstream.name),
                        },
                    }),
                );
            }
        };
        let (parts, incoming) = answer.into_parts();
        let mut response = Response::new(Body::empty());
        *response.status_mut() = parts.status;
        for name in [
            header::CONTENT_TYPE,
            header::CACHE_CONTROL,
            header::HeaderName::from_static("mcp-session-id"),
            header::HeaderName::from_static("mcp-protocol-version"),
        ] {
            if let Some(value) = parts.headers.get(&name) {
                response.headers_mut().insert(name, value.clone());
            }
        }
        let given = header_text(&parts.headers, "mcp-session-id");
        if let Some(session) = &given
            && !self.bind(session)
        {
            return super::error(
                StatusCode::BAD_GATEWAY,
                "the MCP server handed out a session id another agent holds",
            );
        }
        if deleting && parts.status.is_success() {
            self.unbind();
        }
        // The answers to this request's calls wait under the session the
        // server just opened, if it opened one.
        let stream = match (&given, header_text(headers, "mcp-session-id")) {
            (Some(given), None) => {
                if let Some(call) = &call {
                    self.rekey(&call.key, given);
                }
                given.clone()
            }
            _ => self.stream.clone(),
        };
        let event_stream = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
        let watch = Watch {
            app: Arc::clone(self.app),
            gateway: self.upstream.name.clone(),
            stream,
            call: call.map(|c| c.key),
            sessionless: given.is_none() && header_text(headers, "mcp-session-id").is_none(),
        };
        if event_stream {
            let (sender, receiver) = tokio::sync::mpsc::channel(16);
            tokio::spawn(relay_events(incoming, sender, watch));
            *response.body_mut() = Body::from_stream(super::stream::Chunks::new(receiver));
            return response;
        }
        let mut incoming = incoming;
        let mut bytes = Vec::new();
        while let Some(chunk) = next_chunk(&mut incoming).await {
            match chunk {
                Ok(chunk) if bytes.len() + chunk.len() <= MAX_ANSWER => {
                    bytes.extend_from_slice(&chunk)
                }
                _ => {
                    watch.finish(None).await;
                    return super::error(
                        StatusCode::BAD_GATEWAY,
                        "the MCP server's answer broke off or is over 16 MiB",
                    );
                }
            }
        }
        if let Ok(answer) = serde_json::from_slice::<Json>(&bytes) {
            watch.answers(&answer).await;
        }
        watch
            .finish(parts.status.is_client_error().then_some(parts.status))
            .await;
        *response.body_mut() = Body::from(bytes);
        response
    }

    /// The request the server gets: this gateway's serialization of the
    /// decided message and the transport's own headers.
    fn upstream_request(
        &self,
        method: Method,
        headers: &HeaderMap,
        message: Option<&Json>,
    ) -> Result<Request<Body>, String> {
        let mut request = Request::builder()
            .method(method)
            .uri(&self.upstream.path)
            .header(header::HOST, &self.upstream.authority);
        for name in [
            "accept",
            "mcp-session-id",
            "mcp-protocol-version",
            "last-event-id",
        ] {
            if let Some(value) = headers.get(name) {
                request = request.header(name, value);
            }
        }
        let body = match message {
            Some(message) => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                // A client that mirrors the method into a header (MCP
                // 2026-07-28) gets the mirror rebuilt from what was decided.
                if headers.contains_key("mcp-method")
                    && let Some(method) = message.get("method").and_then(Json::as_str)
                {
                    request = request.header("mcp-method", header_value(method));
                    let name_key = match method {
                        "tools/call" | "prompts/get" => Some("name"),
                        "resources/read" => Some("uri"),
                        _ => None,
                    };
                    if let Some(name) = name_key
                        .and_then(|k| message.get("params")?.get(k))
                        .and_then(Json::as_str)
                    {
                        request = request.header("mcp-name", header_value(name));
                    }
                    if method == "tools/call" {
                        for (name, value) in self.mirrored_arguments(message) {
                            request = request.header(name, value);
                        }
                    }
                }
                Body::from(mcp::wire(message))
            }
            None => Body::empty(),
        };
        request
            .body(body)
            .map_err(|e| format!("cannot relay the request: {e}"))
    }

    /// The `Mcp-Param-*` headers of a decided `tools/call`: each argument
    /// the tool's schema marks, from the decided arguments (none for a tool
    /// the server has not listed: a server that wants them refuses).
    fn mirrored_arguments(&self, message: &Json) -> Vec<(String, String)> {
        let params = message.get("params");
        let Some(tool) = params.and_then(|p| p.get("name")).and_then(Json::as_str) else {
            return Vec::new();
        };
        let arguments = params.and_then(|p| p.get("arguments"));
        let mirrored = self
            .gateways
            .mirrored
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(marked) = mirrored.get(&(self.upstream.name.clone(), tool.to_owned())) else {
            return Vec::new();
        };
        marked
            .iter()
            .filter_map(|(path, token)| {
                let value = path
                    .iter()
                    .try_fold(arguments?, |node, key| node.get(key))?;
                let text = match value {
                    Json::Bool(b) => b.to_string(),
                    Json::String(s) => s.clone(),
                    Json::Number(n) => n.to_string(),
                    _ => return None,
                };
                Some((format!("mcp-param-{token}"), header_value(&text)))
            })
            .collect()
    }

    /// Binds a session id the server gave to this agent; false when another
    /// agent holds it.
    fn bind(&self, session: &str) -> bool {
        let mut sessions = self
            .gateways
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let owner = sessions
            .entry((self.upstream.name.clone(), session.to_owned()))
            .or_insert_with(|| self.agent.to_owned());
        owner == self.agent
    }

    fn unbind(&self) {
        self.gateways
            .sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(self.upstream.name.clone(), self.stream.clone()));
        self.gateways
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(gateway, stream, _), _| {
                !(gateway == &self.upstream.name && stream == &self.stream)
            });
    }

    /// Moves a call awaited under this request to the session its answer
    /// opened.
    fn rekey(&self, key: &str, session: &str) {
        let mut pending = self
            .gateways
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(seq) = pending.remove(&(
            self.upstream.name.clone(),
            self.stream.clone(),
            key.to_owned(),
        )) {
            pending.insert(
                (
                    self.upstream.name.clone(),
                    session.to_owned(),
                    key.to_owned(),
                ),
                seq,
            );
        }
    }

    async fn record(&self, seq: u64, outcome: crate::ledger::Outcome) {
        record(self.app.rt.clone(), seq, outcome).await;
    }
}

/// What the relay of one answer looks for: answers to awaited calls.
struct Watch {
    app: Arc<App>,
    gateway: String,
    stream: String,
    /// This request's own call, if it carried one.
    call: Option<String>,
    /// No session: nothing else will carry this call's answer.
    sessionless: bool,
}

impl Watch {
    fn gateways(&self) -> Option<&Gateways> {
        self.app.mcp.as_ref()
    }

    /// Records the outcome of each awaited call `message` answers (one
    /// message or a batch), before it is relayed.
    async fn answers(&self, message: &Json) {
        let Some(gateways) = self.gateways() else {
            return;
        };
        let single = std::slice::from_ref(message);
        let messages = message.as_array().map_or(single, Vec::as_slice);
        for answer in messages {
            if let Some(tools) = answer
                .get("result")
                .and_then(|r| r.get("tools"))
                .and_then(Json::as_array)
            {
                gateways.learn(&self.gateway, tools);
            }
            if let Some(id) = mcp::response_id(answer)
                && let Some(seq) = gateways.close(&self.gateway, &self.stream, &id)
            {
                record(self.app.rt.clone(), seq, mcp::outcome_of_answer(answer)).await;
            }
        }
    }

    /// The answer is over: this request's call, still awaited, failed when
    /// the server refused the request (`refused`: its 4xx status), and is
    /// no longer awaited when no session can carry its answer later.
    async fn finish(&self, refused: Option<StatusCode>) {
        let (Some(gateways), Some(key)) = (self.gateways(), &self.call) else {
            return;
        };
        if refused.is_none() && !self.sessionless {
            return;
        }
        if let Some(seq) = gateways.close(&self.gateway, &self.stream, key)
            && let Some(status) = refused
        {
            record(
                self.app.rt.clone(),
                seq,
                crate::ledger::Outcome::Failed {
                    error: format!("the MCP server refused the request (HTTP {status})"),
                },
            )
            .await;
        }
    }
}

async fn record(rt: crate::ActionRuntime, seq: u64, outcome: crate::ledger::Outcome) {
    let done = tokio::task::spawn_blocking(move || rt.record_outcome(seq, &outcome)).await;
    if let Ok(Err(e)) = done {
        tracing::warn!(
            target: "capfence::outcome",
            seq,
            error = %e,
            "the tool call's outcome was not recorded"
        );
    }
}

/// The properties of `schema` (reached through `properties` alone) that
/// carry `x-mcp-header`: their path and the header's token.
fn marked_arguments(schema: &Json, path: &mut Vec<String>, out: &mut Vec<Marked>) {
    if !path.is_empty()
        && let Some(token) = schema.get("x-mcp-header").and_then(Json::as_str)
    {
        out.push((path.clone(), token.to_owned()));
    }
    if let Some(properties) = schema.get("properties").and_then(Json::as_object) {
        for (key, property) in properties {
            path.push(key.clone());
            marked_arguments(property, path, out);
            path.pop();
        }
    }
}

/// Relays a server's event stream event by event; an event answering an
/// awaited call has its outcome recorded before it is passed on.
async fn relay_events(
    mut incoming: hyper::body::Incoming,
    sender: tokio::sync::mpsc::Sender<Bytes>,
    watch: Watch,
) {
    let mut pending: Vec<u8> = Vec::new();
    while let Some(Ok(chunk)) = next_chunk(&mut incoming).await {
        pending.extend_from_slice(&chunk);
        while let Some(end) = event_end(&pending) {
            let event: Vec<u8> = pending.drain(..end).collect();
            if let Some(message) = event_data(&event) {
                watch.answers(&message).await;
            }
            if sender.send(Bytes::from(event)).await.is_err() {
                watch.finish(None).await;
                return;
            }
        }
        if pending.len() > MAX_EVENT {
            // Too long to hold: passed on as it comes, unread.
            if sender
                .send(Bytes::from(std::mem::take(&mut pending)))
                .await
                .is_err()
            {
                break;
            }
        }
    }
    if !pending.is_empty() {
        let _ = sender.send(Bytes::from(pending)).await;
    }
    watch.finish(None).await;
}

/// Where the first event of `bytes` ends (after its blank line), if it is
/// whole. Lines end at `\r\n`, `\n` or `\r`.
fn event_end(bytes: &[u8]) -> Option<usize> {
    let mut i = 0;
    let mut line_empty = true;
    while let Some(&byte) = bytes.get(i) {
        let end = match byte {
            b'\r' if bytes.get(i + 1) == Some(&b'\n') => Some(i + 2),
            // A `\r` last in the buffer may be half of `\r\n`: wait.
            b'\r' if i + 1 == bytes.len() => return None,
            b'\r' | b'\n' => Some(i + 1),
            _ => None,
        };
        match end {
            Some(next) if line_empty => return Some(next),
            Some(next) => {
                line_empty = true;
                i = next;
            }
            None => {
                line_empty = false;
                i += 1;
            }
        }
    }
    None
}

/// The JSON of an event's `data:` lines (joined by `\n`), if they hold one
/// JSON value.
fn event_data(event: &[u8]) -> Option<Json> {
    let text = std::str::from_utf8(event).ok()?;
    let mut data = String::new();
    let mut any = false;
    for line in text.split(['\n', '\r']) {
        let value = if line == "data" {
            Some("")
        } else {
            line.strip_prefix("data:")
                .map(|v| v.strip_prefix(' ').unwrap_or(v))
        };
        if let Some(value) = value {
            if any {
                data.push('\n');
            }
            data.push_str(value);
            any = true;
        }
    }
    any.then(|| serde_json::from_str(&data).ok()).flatten()
}

/// Why a request did not get an answer from the server.
struct Fault {
    /// The request may have reached it (connected first).
    sent: bool,
    why: String,
}

/// Connects to the server (TLS verified against the platform's roots for
/// `https`) and exchanges one request on a fresh HTTP/1.1 connection.
async fn send(
    upstream: &Upstream,
    request: Request<Body>,
) -> Result<Response<hyper::body::Incoming>, Fault> {
    let unsent = |why: String| Fault { sent: false, why };
    let connect = tokio::net::TcpStream::connect((upstream.host.as_str(), upstream.port));
    let socket = tokio::time::timeout(std::time::Duration::from_secs(10), connect)
        .await
        .map_err(|_| unsent("connecting timed out".to_owned()))?
        .map_err(|e| unsent(e.to_string()))?;
    let _ = socket.set_nodelay(true);
    if upstream.tls {
        let config = super::notify::client_config().map_err(unsent)?;
        let name = rustls::pki_types::ServerName::try_from(upstream.host.clone())
            .map_err(|e| unsent(e.to_string()))?;
        let stream = tokio_rustls::TlsConnector::from(config)
            .connect(name, socket)
            .await
            .map_err(|e| unsent(format!("TLS: {e}")))?;
        exchange(stream, request).await
    } else {
        exchange(socket, request).await
    }
}

async fn exchange<S>(
    stream: S,
    request: Request<Body>,
) -> Result<Response<hyper::body::Incoming>, Fault>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| Fault {
                sent: false,
                why: e.to_string(),
            })?;
    tokio::spawn(connection);
    sender.send_request(request).await.map_err(|e| Fault {
        sent: true,
        why: e.to_string(),
    })
}

/// The next data chunk of a body (trailers skipped).
async fn next_chunk(body: &mut hyper::body::Incoming) -> Option<Result<Bytes, hyper::Error>> {
    use hyper::body::Body as _;
    loop {
        let frame = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await?;
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    return Some(Ok(data));
                }
            }
            Err(e) => return Some(Err(e)),
        }
    }
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A header value as an MCP client writes it: printable ASCII without edge
/// spaces as it is, anything else in the `=?base64?…?=` form.
fn header_value(value: &str) -> String {
    use base64::Engine as _;
    let plain = value.bytes().all(|b| (0x20..0x7f).contains(&b))
        && value.trim() == value
        && !(value.starts_with("=?base64?") && value.ends_with("?="));
    if plain {
        value.to_owned()
    } else {
        format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(value)
        )
    }
}

fn rpc_answer(status: StatusCode, value: &Json) -> Response<Body> {
    rpc_text(status, value.to_string())
}

fn rpc_text(status: StatusCode, text: String) -> Response<Body> {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn events_end_at_a_blank_line_of_any_line_end() {
        assert_eq!(event_end(b"data: 1\n\ndata: 2"), Some(9));
        assert_eq!(event_end(b"data: 1\r\n\r\nx"), Some(11));
        assert_eq!(event_end(b"data: 1\r\rx"), Some(9));
        assert_eq!(event_end(b"data: 1\r"), None);
        assert_eq!(event_end(b"data: 1\n"), None);
        assert_eq!(event_end(b"\n"), Some(1));
    }

    #[test]
    fn an_events_data_lines_are_one_json_value() {
        let event = b"event: message\nid: 7\ndata: {\"id\":1,\ndata: \"result\":{}}\n\n";
        assert_eq!(event_data(event).unwrap(), json!({"id": 1, "result": {}}));
        assert_eq!(event_data(b": keepalive\n\n"), None);
    }

    #[test]
    fn upstreams_are_name_equals_url() {
        let u = Upstream::parse("bank=http://127.0.0.1:9000/mcp?x=1").unwrap();
        assert_eq!(
            (u.name.as_str(), u.port, u.path.as_str()),
            ("bank", 9000, "/mcp?x=1")
        );
        assert!(!u.tls);
        let u = Upstream::parse("b=https://mcp.example.com").unwrap();
        assert_eq!((u.port, u.path.as_str(), u.tls), (443, "/", true));
        for bad in [
            "bank",
            "ba nk=http://x",
            "bank=ftp://x/",
            "bank=http://u:p@x/",
            "=http://x",
        ] {
            assert!(Upstream::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn header_values_are_mirrored_as_a_client_writes_them() {
        assert_eq!(header_value("pay"), "pay");
        assert_eq!(header_value(" pay"), "=?base64?IHBheQ==?=");
        assert_eq!(header_value("pay\r\nX: 1"), "=?base64?cGF5DQpYOiAx?=");
    }
}
