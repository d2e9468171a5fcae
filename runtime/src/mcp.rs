//! `capfence mcp-proxy`: an MCP stdio proxy that decides every `tools/call`.
//!
//! The agent host starts the proxy as if it were the MCP server; the proxy
//! starts the real server as its child and relays JSON-RPC lines both ways,
//! in order. One kind of message is held: a `tools/call` request from the
//! client is decided and recorded first. Allowed, it goes to the server;
//! denied or held for approval, the server never sees it and the client gets
//! a normal tool result with `isError: true` that states the decision, the
//! reason and the ticket in its text, and carries the verdict with its
//! `detail` as `structuredContent`.
//!
//! What the server reads is what was decided. Every client message is parsed
//! once (one JSON value per line, numbers keeping their JSON text through
//! `arbitrary_precision`, so money is decided exactly) and the server gets
//! this proxy's own serialization of that value ([`wire`]), never the
//! client's bytes. A line holding a character at which some MCP stdio reader
//! ends a line (a bare `\r`: the Python SDK reads with universal newlines;
//! U+2028 and the others `str.splitlines` splits at) is refused
//! ([`hidden_line_end`]): the server could read other messages in it than
//! the one decided. The server's lines reach the client byte for byte.
//!
//! Faults: a client line that is not JSON gets a JSON-RPC parse error; when
//! the server exits, every request still waiting for it is answered with an
//! error and the proxy exits with the server's status; when the client goes
//! away, the server's stdin is closed and the server is stopped; a store fault
//! denies, as everywhere.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use capfence_compiler::Policy;
use capfence_compiler::event::Event;
use capfence_compiler::lines::{Line, Lines};
use capfence_compiler::policy::Risk;
use serde_json::{Value as Json, json};

use crate::runtime::ActionRuntime;
use crate::verdict::Verdict;

/// JSON-RPC: the line is not JSON.
const PARSE_ERROR: i64 = -32700;
/// JSON-RPC: the request could not be completed (here: the server exited).
pub(crate) const INTERNAL_ERROR: i64 = -32603;

/// Why the proxy could not run.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No server command was given.
    #[error("mcp-proxy: no server command after `--`")]
    NoServer,
    /// The server could not be started.
    #[error("cannot start the MCP server {program:?}: {source}")]
    Spawn {
        /// The server's program.
        program: OsString,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server's stdin or stdout could not be opened.
    #[error("the MCP server's stdio could not be opened")]
    Stdio,
}

/// Who the proxied agent is, and what it runs.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// The agent (`actor` of every event).
    pub actor: String,
    /// The environment of every event.
    pub environment: String,
    /// The risk of every event.
    pub risk: Risk,
    /// Drop from `tools/list` results the tools this agent can never call
    /// (the policy denies them for every input: exact analysis).
    pub hide_denied: bool,
    /// The MCP server's command and arguments.
    pub server: Vec<OsString>,
}

/// Lines to the client (stdout), one writer at a time.
type ClientOut = Arc<Mutex<Box<dyn Write + Send>>>;

fn send(out: &ClientOut, line: &str) -> bool {
    let mut out = out.lock().unwrap_or_else(PoisonError::into_inner);
    writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
}

/// Bytes to the client as they are (a server's line, its line end included).
fn send_bytes(out: &ClientOut, bytes: &[u8]) -> bool {
    let mut out = out.lock().unwrap_or_else(PoisonError::into_inner);
    out.write_all(bytes).and_then(|()| out.flush()).is_ok()
}

/// The id of a request (`method` and `id`), as its JSON text.
pub(crate) fn request_id(message: &Json) -> Option<String> {
    let object = message.as_object()?;
    object.get("method")?;
    object.get("id").map(Json::to_string)
}

/// A response's id (`id` with `result` or `error`, no `method`).
pub(crate) fn response_id(message: &Json) -> Option<String> {
    let object = message.as_object()?;
    if object.contains_key("method") {
        return None;
    }
    if !(object.contains_key("result") || object.contains_key("error")) {
        return None;
    }
    object.get("id").map(Json::to_string)
}

/// Who makes a tool call: the actor, environment and risk of its event.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The agent.
    pub actor: String,
    /// The environment.
    pub environment: String,
    /// The risk.
    pub risk: Risk,
}

/// Decides `tools/call` requests: the runtime that decides and the policy's
/// tool map. Shared by the stdio proxy and `capfence serve`'s MCP gateway.
#[derive(Clone)]
pub struct ToolGate {
    runtime: ActionRuntime,
    policy: Arc<Policy>,
}

/// The proxy: the tool gate and the agent's identity.
pub struct Proxy {
    gate: ToolGate,
    options: ProxyOptions,
}

impl Proxy {
    /// A proxy deciding with `runtime` on `policy` (the same file: the tool
    /// map comes from it).
    pub fn new(runtime: ActionRuntime, policy: Policy, options: ProxyOptions) -> Proxy {
        Proxy {
            gate: ToolGate::new(runtime, Arc::new(policy)),
            options,
        }
    }

    /// Decides one `tools/call` request as the proxy's agent
    /// ([`ToolGate::decide_call`]).
    pub fn decide_call(&self, params: Option<&Json>) -> Verdict {
        self.gate.decide_call(&self.caller(), params)
    }

    fn caller(&self) -> Caller {
        Caller {
            actor: self.options.actor.clone(),
            environment: self.options.environment.clone(),
            risk: self.options.risk,
        }
    }
}

impl ToolGate {
    /// A gate deciding with `runtime` on `policy` (the same file: the tool
    /// map comes from it).
    pub fn new(runtime: ActionRuntime, policy: Arc<Policy>) -> ToolGate {
        ToolGate { runtime, policy }
    }

    /// The runtime that decides.
    pub fn runtime(&self) -> &ActionRuntime {
        &self.runtime
    }

    /// The capability a tool's calls exercise, if any.
    pub fn capability(&self, tool: &str) -> Option<String> {
        self.policy.tool_capability(tool)
    }

    /// Decides one `tools/call` request of `who`: the verdict, already on
    /// the record. A call that cannot be decided (no tool name, a tool
    /// without a capability, arguments that are not an exact event) is
    /// denied and recorded with the agent, environment and risk, the
    /// capability when the tool has one, and the tool's name as the payload
    /// field `tool`.
    pub fn decide_call(&self, who: &Caller, params: Option<&Json>) -> Verdict {
        let name = params.and_then(|p| p.get("name"));
        let Some(name) = name.and_then(Json::as_str) else {
            let reason = match name {
                None => "malformed tools/call: no tool name".to_owned(),
                Some(other) => {
                    format!("malformed tools/call: the tool name is not a string ({other})")
                }
            };
            return self.refuse(who, None, None, "params.name", reason);
        };
        let Some(capability) = self.policy.tool_capability(name) else {
            return self.refuse(
                who,
                Some(name),
                None,
                "params.name",
                format!(
                    "malformed tools/call: tool {:?} has no capability (not in the policy's \
                     `tools:`, and `mcp.<tool>` is not a capability)",
                    capfence_compiler::token::escape_for_terminal(name)
                ),
            );
        };
        let arguments = params
            .and_then(|p| p.get("arguments"))
            .cloned()
            .unwrap_or_else(|| json!({}));
        let event = json!({
            "actor": who.actor,
            "capability": capability,
            "environment": who.environment,
            "risk": who.risk.name(),
            "payload": arguments,
        });
        match Event::from_json(&event.to_string()) {
            Ok(event) => self.runtime.execute_event(&event),
            Err(e) => self.refuse(
                who,
                Some(name),
                Some(&capability),
                "params.arguments",
                format!(
                    "malformed tools/call {}: {e}",
                    capfence_compiler::token::escape_for_terminal(name)
                ),
            ),
        }
    }

    /// Records a deny of a call that could not be decided, with who sent it:
    /// `field` of the request is at fault, `reason` says how.
    fn refuse(
        &self,
        who: &Caller,
        tool: Option<&str>,
        capability: Option<&str>,
        field: &'static str,
        reason: String,
    ) -> Verdict {
        let (resource, action) = capability
            .and_then(|c| c.split_once('.'))
            .map_or((None, None), |(r, a)| {
                (Some(r.to_owned()), Some(a.to_owned()))
            });
        let mut event = Event {
            actor: Some(who.actor.clone()),
            resource,
            action,
            environment: Some(who.environment.clone()),
            risk: Some(capfence_compiler::event::EventRisk::from(who.risk)),
            payload: std::collections::BTreeMap::new(),
        };
        if let Some(tool) = tool {
            event.payload.insert(
                "tool".to_owned(),
                capfence_compiler::event::Value::String(tool.to_owned()),
            );
        }
        self.runtime.deny_event(
            event,
            capfence_compiler::Decision::malformed(
                field,
                capfence_compiler::eval::Fault::Unreadable(reason),
            ),
        )
    }
}

impl Proxy {
    /// Runs the proxy over `client_in` / `client_out` until one side ends.
    /// Returns the server's exit code (1 when it has none, 2 when it could not
    /// be started).
    pub fn run(
        self,
        client_in: impl Read + Send + 'static,
        client_out: Box<dyn Write + Send>,
    ) -> Result<i32, ProxyError> {
        let Some((program, args)) = self.options.server.split_first() else {
            return Err(ProxyError::NoServer);
        };
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|source| ProxyError::Spawn {
                program: program.clone(),
                source,
            })?;
        let (Some(server_in), Some(server_out)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            return Err(ProxyError::Stdio);
        };
        let out: ClientOut = Arc::new(Mutex::new(client_out));
        let pending: Arc<Pending> = Arc::default();
        let (ended, end) = std::sync::mpsc::channel::<End>();

        // Server → client: every line as it comes; when the server ends,
        // answer what it left waiting.
        {
            let out = Arc::clone(&out);
            let pending = Arc::clone(&pending);
            let ended = ended.clone();
            let hide = self.options.hide_denied.then(|| Hide {
                policy: Arc::clone(&self.gate.policy),
                actor: self.options.actor.clone(),
                environment: self.options.environment.clone(),
                risk: self.options.risk,
            });
            let runtime = self.gate.runtime.clone();
            std::thread::spawn(move || {
                relay_server(server_out, &out, &pending, hide.as_ref(), &runtime);
                let _ = ended.send(End::Server);
            });
        }
        // Client → server: decide tools/call, forward the rest.
        std::thread::spawn(move || {
            self.relay_client(client_in, server_in, &out, &pending);
            let _ = ended.send(End::Client);
        });
        // Whichever side ends first ends the proxy: the server's input is
        // closed (when the client left), the server gets a moment, then it
        // is stopped; the proxy exits with its status.
        let _ = end.recv();
        Ok(stop(&mut child, Duration::from_secs(5)))
    }

    fn relay_client(
        &self,
        client_in: impl Read,
        server_in: ChildStdin,
        out: &ClientOut,
        pending: &Pending,
    ) {
        let mut server_in = Some(server_in);
        for line in Lines::new(BufReader::new(client_in)) {
            let Ok(line) = line else { break };
            let text = match line {
                Line::Text(text) => text,
                Line::Unreadable(why) => {
                    send(out, &parse_error(&why));
                    continue;
                }
            };
            // One line end: `\n`, or `\r\n`.
            let text = text.strip_suffix('\r').unwrap_or(&text);
            if text.trim().is_empty() {
                continue;
            }
            let message: Json = match serde_json::from_str(text) {
                Ok(m) => m,
                Err(e) => {
                    send(out, &parse_error(&e.to_string()));
                    continue;
                }
            };
            // serde_json reads a bare `\r` as whitespace; a server reading
            // universal newlines ends a line there and would read other
            // messages than this one. Never forwarded.
            if let Some((at, c)) = hidden_line_end(text) {
                send(
                    out,
                    &invalid(
                        message.get("id"),
                        &format!(
                            "the line holds U+{:04X} at byte {at}, where an MCP server's reader \
                             may end a line and read other messages than this one: not relayed",
                            u32::from(c)
                        ),
                    ),
                );
                continue;
            }
            // A key given twice: this proxy and the server could read
            // different methods, tools or arguments. Never forwarded.
            if let Err(e) = capfence_compiler::event::check_unique_keys(text) {
                send(out, &invalid(message.get("id"), &e.to_string()));
                continue;
            }
            // A batch carrying a tool call would reach the server undecided
            // (MCP no longer has batches): refused whole.
            if let Some(batch) = message.as_array()
                && batch.iter().any(is_tool_call)
            {
                send(
                    out,
                    &invalid(
                        None,
                        "a batch with tools/call is not relayed: send each call alone",
                    ),
                );
                continue;
            }
            // An id already in flight: the server's one answer would be
            // taken for either request (and a call's outcome read from
            // another call's answer). Never forwarded.
            if let Some(id) = request_id(&message)
                && pending.holds(&id)
            {
                send(
                    out,
                    &invalid(
                        message.get("id"),
                        "a request with this id is already waiting for its answer",
                    ),
                );
                continue;
            }
            let mut call = None;
            if is_tool_call(&message) {
                let verdict = self.decide_call(message.get("params"));
                if !verdict.authorized {
                    // A call sent as a notification has no id to answer:
                    // refused and recorded, not forwarded.
                    if message.get("id").is_some() {
                        send(out, &refusal(&message, &verdict).to_string());
                    }
                    continue;
                }
                call = verdict.seq;
            }
            if let Some(id) = request_id(&message) {
                let lists = message.get("method").and_then(Json::as_str) == Some("tools/list");
                pending.open(id, lists, call);
            }
            // The server gets this proxy's own serialization of what it
            // decided, never the client's bytes.
            if !forward(&mut server_in, &wire(&message)) {
                // The server is gone: the server relay answers what is pending.
                break;
            }
        }
    }
}

/// Which side ended first.
enum End {
    Client,
    Server,
}

/// Requests forwarded to the server and not yet answered; the `tools/list`
/// ones among them, and the authorized tool calls with their decision's
/// record (whose outcome the answer tells).
#[derive(Default)]
struct Pending {
    ids: Mutex<PendingIds>,
}

#[derive(Default)]
struct PendingIds {
    all: HashSet<String>,
    lists: HashSet<String>,
    calls: HashMap<String, u64>,
}

/// What a closed request was.
struct Closed {
    lists_tools: bool,
    call: Option<u64>,
}

impl Pending {
    fn open(&self, id: String, lists_tools: bool, call: Option<u64>) {
        let mut ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        if lists_tools {
            ids.lists.insert(id.clone());
        }
        if let Some(seq) = call {
            ids.calls.insert(id.clone(), seq);
        }
        ids.all.insert(id);
    }

    fn holds(&self, id: &str) -> bool {
        self.ids
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .all
            .contains(id)
    }

    /// Closes `id`; `None` when it was not pending.
    fn close(&self, id: &str) -> Option<Closed> {
        let mut ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        if !ids.all.remove(id) {
            return None;
        }
        Some(Closed {
            lists_tools: ids.lists.remove(id),
            call: ids.calls.remove(id),
        })
    }

    fn drain(&self) -> Vec<String> {
        let mut ids = self.ids.lock().unwrap_or_else(PoisonError::into_inner);
        ids.lists.clear();
        ids.calls.clear();
        ids.all.drain().collect()
    }
}

/// What a tool call's answer says became of it: a JSON-RPC error or a
/// result with `isError` is `failed` (with the error's message or the
/// result's text); any other result is `executed`, with the rail's
/// reference and the amount sent when the result's `structuredContent`
/// carries `reference` (a string) and `amount_sent` (an exact number or
/// numeric string).
pub(crate) fn outcome_of_answer(message: &Json) -> crate::ledger::Outcome {
    use crate::ledger::Outcome;
    let text = |value: Option<&Json>| -> Option<String> {
        let fitted: String = value?
            .as_str()?
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(2000)
            .collect();
        (!fitted.trim().is_empty()).then_some(fitted)
    };
    if let Some(error) = message.get("error") {
        return Outcome::Failed {
            error: text(error.get("message"))
                .unwrap_or_else(|| "the MCP server answered with an error".to_owned()),
        };
    }
    let result = message.get("result");
    // The server asks for more input first (MCP 2026-07-28): the tool has
    // not run; the client's retry is another call, decided anew.
    if result
        .and_then(|r| r.get("resultType"))
        .and_then(Json::as_str)
        == Some("input_required")
    {
        return Outcome::Failed {
            error: "the MCP server asked for more input (input_required): the tool did not run; \
                    its retry is decided anew"
                .to_owned(),
        };
    }
    if result
        .and_then(|r| r.get("isError"))
        .and_then(Json::as_bool)
        == Some(true)
    {
        let said = result
            .and_then(|r| r.get("content"))
            .and_then(Json::as_array)
            .and_then(|c| c.iter().find_map(|part| text(part.get("text"))));
        return Outcome::Failed {
            error: said.unwrap_or_else(|| "the tool reported an error".to_owned()),
        };
    }
    let structured = result.and_then(|r| r.get("structuredContent"));
    let amount = structured
        .and_then(|s| s.get("amount_sent"))
        .and_then(|a| match a {
            Json::Number(n) => capfence_compiler::number::parse_exact(&n.to_string()),
            Json::String(s) => capfence_compiler::number::parse_exact(s),
            _ => None,
        })
        .filter(|a| !a.is_sign_negative() || a.is_zero());
    Outcome::Executed {
        reference: text(structured.and_then(|s| s.get("reference"))),
        amount,
    }
}

/// What `--hide-denied` needs to judge a tool.
struct Hide {
    policy: Arc<Policy>,
    actor: String,
    environment: String,
    risk: Risk,
}

impl Hide {
    /// `message` (a `tools/list` result) without the tools this agent can
    /// never call; `None` when it has no tool list to filter.
    fn filter(&self, mut message: Json) -> Option<Json> {
        let analysis = capfence_compiler::analysis::Analysis::new(&self.policy);
        let tools = message
            .get_mut("result")?
            .get_mut("tools")?
            .as_array_mut()?;
        tools.retain(|tool| {
            let Some(name) = tool.get("name").and_then(Json::as_str) else {
                return false;
            };
            let Some(capability) = self.policy.tool_capability(name) else {
                return false;
            };
            let (resource, action) = capability.split_once('.').unwrap_or((&capability, ""));
            analysis.can_pass(resource, action, &self.actor, &self.environment, self.risk)
        });
        Some(message)
    }
}

fn relay_server(
    server_out: impl Read,
    out: &ClientOut,
    pending: &Pending,
    hide: Option<&Hide>,
    runtime: &ActionRuntime,
) {
    let mut reader = BufReader::new(server_out);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let mut filtered = None;
        if let Ok(message) = serde_json::from_slice::<Json>(&line)
            && let Some(id) = response_id(&message)
            && let Some(closed) = pending.close(&id)
        {
            // An authorized call's answer is its outcome, recorded before
            // the agent sees it (its next call then counts what moved).
            if let Some(seq) = closed.call
                && let Err(e) = runtime.record_outcome(seq, &outcome_of_answer(&message))
            {
                tracing::warn!(
                    target: "capfence::outcome",
                    seq,
                    error = %e,
                    "the tool call's outcome was not recorded"
                );
            }
            if closed.lists_tools
                && let Some(hide) = hide
            {
                filtered = hide.filter(message).map(|m| {
                    let mut text = m.to_string().into_bytes();
                    text.push(b'\n');
                    text
                });
            }
        }
        // The server's bytes pass unchanged, line end included.
        if !send_bytes(out, filtered.as_deref().unwrap_or(&line)) {
            break;
        }
    }
    for id in pending.drain() {
        let id: Json = serde_json::from_str(&id).unwrap_or(Json::Null);
        let error = json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {"code": INTERNAL_ERROR, "message": "the MCP server exited before answering"},
        });
        send(out, &error.to_string());
    }
}

/// Characters a mainstream MCP stdio reader may end a line at, besides the
/// `\n` (or `\r\n`) this proxy splits at: a bare `\r` (universal newlines,
/// the Python SDK's reader), and what `str.splitlines` also splits at.
const LINE_ENDS: [char; 9] = [
    '\r', '\u{0B}', '\u{0C}', '\u{1C}', '\u{1D}', '\u{1E}', '\u{85}', '\u{2028}', '\u{2029}',
];

/// The first character of `line` (its `\n` or `\r\n` removed) at which some
/// MCP stdio reader could end a line, with its byte offset.
pub fn hidden_line_end(line: &str) -> Option<(usize, char)> {
    line.char_indices().find(|(_, c)| LINE_ENDS.contains(c))
}

/// The line the server gets for a message this proxy decided: its own
/// serialization (one JSON value, numbers as their JSON text), with every
/// character some reader ends a line at escaped. serde_json already escapes
/// the control characters; U+0085, U+2028 and U+2029 can only occur inside
/// strings, where `\uXXXX` is the same string.
pub fn wire(message: &Json) -> String {
    let text = message.to_string();
    if !text.contains(LINE_ENDS) {
        return text;
    }
    let mut escaped = String::with_capacity(text.len() + 12);
    for c in text.chars() {
        if LINE_ENDS.contains(&c) {
            escaped.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            escaped.push(c);
        }
    }
    escaped
}

fn forward(server_in: &mut Option<ChildStdin>, text: &str) -> bool {
    let Some(stdin) = server_in.as_mut() else {
        return false;
    };
    let ok = writeln!(stdin, "{text}")
        .and_then(|()| stdin.flush())
        .is_ok();
    if !ok {
        *server_in = None;
    }
    ok
}

/// Waits up to `grace` for the server to exit, then kills it; its exit code.
fn stop(child: &mut Child, grace: Duration) -> i32 {
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.code().unwrap_or(1),
            Ok(None) if started.elapsed() < grace => {
                std::thread::sleep(Duration::from_millis(20));
            }
            _ => {
                let _ = child.kill();
                return child.wait().ok().and_then(|s| s.code()).unwrap_or(1);
            }
        }
    }
}

/// Whether a message is a `tools/call` (request or notification).
pub(crate) fn is_tool_call(message: &Json) -> bool {
    message.get("method").and_then(Json::as_str) == Some("tools/call")
}

/// JSON-RPC: the message is not a valid request.
const INVALID_REQUEST: i64 = -32600;

pub(crate) fn invalid(id: Option<&Json>, why: &str) -> String {
    json!({
        "jsonrpc": "2.0",
        "id": id.cloned().unwrap_or(Json::Null),
        "error": {"code": INVALID_REQUEST, "message": format!("invalid request: {why}")},
    })
    .to_string()
}

pub(crate) fn parse_error(why: &str) -> String {
    json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {"code": PARSE_ERROR, "message": format!("parse error: {why}")},
    })
    .to_string()
}

/// Whether a request is of MCP 2026-07-28 or later: it carries the
/// protocol version in its `_meta` envelope, and its results must say
/// `resultType`.
pub(crate) fn is_modern(message: &Json) -> bool {
    message
        .get("params")
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get("io.modelcontextprotocol/protocolVersion"))
        .is_some()
}

/// The tool result the client gets for a call (`request`) that did not go
/// through.
pub(crate) fn refusal(request: &Json, verdict: &Verdict) -> Json {
    let id = request.get("id").cloned().unwrap_or(Json::Null);
    let mut text = format!("CapFence {}: {}", verdict.decision.as_str(), verdict.reason);
    if let Some(ticket) = &verdict.approval_id {
        text.push_str(&format!(
            "; an operator approves it with `capfence approvals approve {ticket}`, then the same \
             call goes through once"
        ));
    }
    let mut answer = json!({
        "jsonrpc": "2.0",
        "id": id,
        "result": {
            "content": [{"type": "text", "text": text}],
            // The verdict in fields, as `capfence decide` prints it
            // (docs/cli.md's schema): what an agent acts on.
            "structuredContent": verdict.to_value(),
            "isError": true,
        },
    });
    if is_modern(request)
        && let Some(result) = answer.get_mut("result").and_then(Json::as_object_mut)
    {
        result.insert("resultType".to_owned(), json!("complete"));
    }
    answer
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_form_has_no_character_a_reader_ends_a_line_at() {
        let line =
            "{\"a\":\"x\u{2028}y\u{85}z\u{2029}\",\"n\":500.000000000000000001,\"c\":\"\\r\"}";
        let message: Json = serde_json::from_str(line).unwrap();
        let wire = wire(&message);
        assert_eq!(hidden_line_end(&wire), None, "{wire}");
        assert!(!wire.contains('\n'));
        // The same value, numbers as their text.
        assert_eq!(serde_json::from_str::<Json>(&wire).unwrap(), message);
        assert!(wire.contains("500.000000000000000001"));
        assert!(wire.contains("\\u2028"));
    }

    #[test]
    fn an_answer_tells_the_calls_outcome() {
        use crate::ledger::Outcome;
        let answer = |text: &str| outcome_of_answer(&serde_json::from_str(text).unwrap());
        assert!(matches!(
            answer(r#"{"id":1,"result":{"resultType":"input_required","requestState":"s"}}"#),
            Outcome::Failed { error } if error.contains("input_required")
        ));
        assert!(matches!(
            answer(r#"{"id":1,"result":{"isError":true,"content":[{"type":"text","text":"no"}]}}"#),
            Outcome::Failed { error } if error == "no"
        ));
        assert!(matches!(
            answer(r#"{"id":1,"error":{"code":-1,"message":"down"}}"#),
            Outcome::Failed { error } if error == "down"
        ));
        let executed = answer(
            r#"{"id":1,"result":{"resultType":"complete","structuredContent":{"reference":"R-1","amount_sent":"99.50"}}}"#,
        );
        assert!(matches!(
            executed,
            Outcome::Executed { reference: Some(r), amount: Some(a) }
                if r == "R-1" && Some(a) == capfence_compiler::number::parse_exact("99.5")
        ));
    }

    #[test]
    fn hidden_line_ends_are_found_with_their_offset() {
        assert_eq!(hidden_line_end("{\"a\":\r1}"), Some((5, '\r')));
        assert_eq!(
            hidden_line_end("{\"a\":\"\u{2028}\"}"),
            Some((6, '\u{2028}'))
        );
        assert_eq!(hidden_line_end("{\"a\":1}"), None);
    }
}
