//! Notifications: a JSON POST to each `--notify` URL when a ticket opens,
//! is signed, approved, rejected or expires, when a grant is made or
//! revoked, and when the chain fails verification.
//!
//! The outbox is the chain itself: every event but an expiry is a record,
//! written in the transaction that made it, so nothing the ledger holds can
//! be missed. Each URL has a cursor (a ledger note: the last record
//! delivered), moved only after the receiver answered 2xx: delivery is at
//! least once, in order, across restarts; a failed POST is retried with
//! backoff (1 s doubling to 60 s) until it succeeds. Expiries have a cursor
//! of their own (the last ticket whose expiry was sent). A first start sends
//! from the chain's head on, not its history.
//!
//! Each POST carries `CapFence-Signature: t=<unix seconds>,v1=<hex
//! HMAC-SHA256(secret, t + "." + body)>` when a secret is given.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hmac::Mac as _;
use serde_json::json;

use crate::ActionRuntime;
use crate::audit::{AuditRecord, RecordKind};
use capfence_compiler::DecisionKind;

/// How a notification's body is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyFormat {
    /// CapFence's JSON object (docs/console.md).
    Json,
    /// A Slack incoming-webhook message: text and a button to the ticket.
    Slack,
}

/// Where notifications go.
#[derive(Debug, Clone)]
pub struct NotifyOptions {
    /// The receivers.
    pub urls: Vec<String>,
    /// The HMAC key signing each body, if any.
    pub secret: Option<Vec<u8>>,
    /// The body's format.
    pub format: NotifyFormat,
    /// The console's address, for links to tickets.
    pub console_url: String,
}

/// One notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// `ticket.opened`, `ticket.signed`, …
    pub event: &'static str,
    /// The ticket or grant.
    pub id: Option<String>,
    /// The record it is about (0 for an expiry or a verify failure).
    pub seq: u64,
    /// The record's actor (the agent, or the operator who acted).
    pub actor: Option<String>,
    /// The capability.
    pub capability: Option<String>,
    /// The deciding rule.
    pub rule: Option<String>,
    /// Why.
    pub reason: String,
}

impl Notice {
    fn body(&self, options: &NotifyOptions) -> String {
        // A ticket links to its own page in the console; a grant to the
        // console (its list).
        let base = options.console_url.trim_end_matches('/');
        let url = match &self.id {
            Some(id) if id.starts_with("T-") => format!("{base}/#ticket/{id}"),
            _ => format!("{base}/"),
        };
        match options.format {
            NotifyFormat::Json => json!({
                "event": self.event,
                "id": self.id,
                "seq": self.seq,
                "actor": self.actor,
                "capability": self.capability,
                "rule": self.rule,
                "reason": self.reason,
                "url": url,
            })
            .to_string(),
            NotifyFormat::Slack => {
                let text = format!(
                    "CapFence {}: {} — {}",
                    self.event,
                    self.id.as_deref().unwrap_or("ledger"),
                    self.reason
                );
                json!({
                    "text": text,
                    "blocks": [
                        {"type": "section", "text": {"type": "plain_text", "text": text}},
                        {"type": "actions", "elements": [{
                            "type": "button",
                            "text": {"type": "plain_text", "text": "Open in the console"},
                            "url": url,
                        }]},
                    ],
                })
                .to_string()
            }
        }
    }
}

/// The signature header's value for `body` at `t` (unix seconds).
pub fn signature(secret: &[u8], t: u64, body: &str) -> String {
    let mut mac = match hmac::Hmac::<sha2::Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        // HMAC takes keys of any length; this cannot happen.
        Err(_) => return String::new(),
    };
    mac.update(format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The notices one record makes. `citing` reads the records citing an id
/// up to this one (to tell an opening from a retry, a quorum reached from a
/// signature).
fn notices(
    rt: &ActionRuntime,
    record: &AuditRecord,
    citing: &dyn Fn(&str) -> Vec<AuditRecord>,
) -> Vec<Notice> {
    let notice = |event| Notice {
        event,
        id: record.approval_id.clone(),
        seq: record.seq,
        actor: record.actor.clone(),
        capability: record.capability.clone(),
        rule: record.rule.clone(),
        reason: record.reason.clone(),
    };
    let Some(id) = record.approval_id.as_deref() else {
        return Vec::new();
    };
    match record.decision {
        RecordKind::Decision(DecisionKind::RequireApproval) => {
            let opened = citing(id).first().is_some_and(|r| r.seq == record.seq);
            if opened {
                vec![notice("ticket.opened")]
            } else {
                Vec::new()
            }
        }
        RecordKind::Approve => {
            let records: Vec<AuditRecord> = citing(id)
                .into_iter()
                .filter(|r| r.seq <= record.seq)
                .collect();
            let rule = records.first().and_then(|r| r.rule.clone());
            let needed = rule
                .as_deref()
                .and_then(|r| rt.policy_facts().rule(r))
                .map_or(1, |f| f.approvals);
            let mut signers: Vec<&str> = records
                .iter()
                .filter(|r| r.decision == RecordKind::Approve)
                .filter_map(|r| r.actor.as_deref())
                .collect();
            signers.sort_unstable();
            signers.dedup();
            let mut out = vec![notice("ticket.signed")];
            if signers.len() >= usize::try_from(needed).unwrap_or(usize::MAX) {
                out.push(notice("ticket.approved"));
            }
            out
        }
        RecordKind::Reject => vec![notice("ticket.rejected")],
        RecordKind::Grant => vec![notice("grant.created")],
        RecordKind::Revoke => vec![notice("grant.revoked")],
        _ => Vec::new(),
    }
}

/// Starts one delivery thread per URL. A URL new to this ledger gets its
/// cursor at the head first, before this returns: what is recorded after
/// the console says it listens is sent.
pub fn start(rt: ActionRuntime, options: NotifyOptions) -> Result<(), crate::store::StoreError> {
    let ledger = rt.ledger();
    for url in &options.urls {
        let key = cursor_key(url, "records");
        if ledger.note(&key)?.is_none() {
            let head = ledger.head().map(|(seq, _)| seq)?;
            ledger.set_note(&key, &head.to_string())?;
        }
    }
    let options = Arc::new(options);
    for url in options.urls.clone() {
        let rt = rt.clone();
        let options = Arc::clone(&options);
        let _ = std::thread::Builder::new()
            .name("capfence-notify".to_owned())
            .spawn(move || deliver_forever(&rt, &options, &url));
    }
    Ok(())
}

/// How many chain records the slowest of `urls` has yet to be notified
/// of: the head's seq less its cursor. `None` without URLs or when the
/// ledger cannot be read.
pub fn outbox_depth(rt: &ActionRuntime, urls: &[String]) -> Option<u64> {
    let ledger = rt.ledger();
    let head = ledger.head().ok()?.0;
    urls.iter()
        .map(|url| {
            let cursor = ledger
                .note(&cursor_key(url, "records"))
                .ok()
                .flatten()
                .and_then(|c| c.parse::<u64>().ok())
                .unwrap_or(0);
            head.saturating_sub(cursor)
        })
        .max()
}

fn cursor_key(url: &str, what: &str) -> String {
    use sha2::Digest as _;
    let digest = hex::encode(sha2::Sha256::digest(url.as_bytes()));
    format!("notify.{what}.{}", digest.get(..16).unwrap_or(&digest))
}

fn deliver_forever(rt: &ActionRuntime, options: &NotifyOptions, url: &str) {
    let records_key = cursor_key(url, "records");
    let expired_key = cursor_key(url, "expired");
    let ledger = rt.ledger();
    // `start` placed the cursor; a read that fails is retried.
    let mut cursor = loop {
        if let Ok(Some(seq)) = ledger.note(&records_key) {
            break seq.parse().unwrap_or(0);
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let mut last_verify = None::<Instant>;
    let mut verify_failed_sent = None::<String>;
    loop {
        let mut batch = Vec::new();
        let _ = ledger.records_after(cursor, &mut |r| {
            batch.push(r);
            batch.len() < 100
        });
        for record in &batch {
            let citing = |id: &str| ledger.citing(id).unwrap_or_default();
            for notice in notices(rt, record, &citing) {
                send_until_delivered(options, url, &notice);
            }
            cursor = record.seq;
            while ledger.set_note(&records_key, &cursor.to_string()).is_err() {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        expiries(rt, options, url, &expired_key);
        if last_verify.is_none_or(|at| at.elapsed() > Duration::from_secs(600)) {
            last_verify = Some(Instant::now());
            if let Err(e) = rt.verify() {
                let message = e.to_string();
                if verify_failed_sent.as_deref() != Some(message.as_str()) {
                    send_until_delivered(
                        options,
                        url,
                        &Notice {
                            event: "verify.failed",
                            id: None,
                            seq: 0,
                            actor: None,
                            capability: None,
                            rule: None,
                            reason: message.clone(),
                        },
                    );
                    verify_failed_sent = Some(message);
                }
            }
        }
        if batch.is_empty() {
            let _ = ledger.wait_for_records(cursor, Duration::from_secs(5));
        }
    }
}

/// Sends `ticket.expired` for each ticket past its expiry, unapproved,
/// after the last one sent.
fn expiries(rt: &ActionRuntime, options: &NotifyOptions, url: &str, key: &str) {
    let ledger = rt.ledger();
    let Ok(last) = ledger.note(key) else { return };
    let last: u64 = last.and_then(|l| l.parse().ok()).unwrap_or(0);
    let Ok(mut views) = rt.ticket_views(500) else {
        return;
    };
    views.sort_by_key(|v| v.ticket.id);
    for v in views.iter().filter(|v| v.ticket.id > last && v.expired) {
        let id = crate::approvals::TicketId(v.ticket.id).to_string();
        send_until_delivered(
            options,
            url,
            &Notice {
                event: "ticket.expired",
                id: Some(id.clone()),
                seq: v.opened.seq,
                actor: v.ticket.actor.clone(),
                capability: Some(v.ticket.capability.clone()),
                rule: v.ticket.rule.clone(),
                reason: format!("{id} expired unapproved: {}", v.opened.reason),
            },
        );
        while ledger.set_note(key, &v.ticket.id.to_string()).is_err() {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

fn send_until_delivered(options: &NotifyOptions, url: &str, notice: &Notice) {
    let body = notice.body(options);
    let mut backoff = Duration::from_secs(1);
    loop {
        let t = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let signed = options.secret.as_deref().map(|s| signature(s, t, &body));
        match post(url, &body, signed.as_deref()) {
            Ok(status) if (200..300).contains(&status) => return,
            Ok(status) => tracing::warn!(target: "capfence::notify", url, status, "not delivered"),
            Err(e) => tracing::warn!(target: "capfence::notify", url, error = %e, "not delivered"),
        }
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}

/// POSTs `body` to an `http://` or `https://` URL; the response's status.
fn post(url: &str, body: &str, signature: Option<&str>) -> Result<u16, String> {
    let (tls, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(format!("{url}: not an http:// or https:// URL"));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let host = authority
        .rsplit_once(':')
        .filter(|(_, port)| port.parse::<u16>().is_ok())
        .map_or(authority, |(host, _)| host);
    let address = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:{}", if tls { 443 } else { 80 })
    };
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\nUser-Agent: capfence\r\n",
        body.len()
    );
    if let Some(s) = signature {
        request.push_str(&format!("CapFence-Signature: {s}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    let socket = TcpStream::connect(&address).map_err(|e| format!("{address}: {e}"))?;
    let timeout = Some(Duration::from_secs(10));
    socket
        .set_read_timeout(timeout)
        .map_err(|e| e.to_string())?;
    socket
        .set_write_timeout(timeout)
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    if tls {
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| format!("{host}: {e}"))?;
        let connection =
            rustls::ClientConnection::new(client_config()?, name).map_err(|e| e.to_string())?;
        let mut stream = rustls::StreamOwned::new(connection, socket);
        stream
            .write_all(request.as_bytes())
            .map_err(|e| e.to_string())?;
        let _ = stream.read_to_end(&mut response);
    } else {
        let mut socket = socket;
        socket
            .write_all(request.as_bytes())
            .map_err(|e| e.to_string())?;
        let _ = socket.read_to_end(&mut response);
    }
    let head = String::from_utf8_lossy(response.get(..12).unwrap_or_default()).into_owned();
    head.get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{url}: no HTTP status in the answer"))
}

/// A TLS client trusting the platform's roots, certificate and host name
/// verified.
pub(super) fn client_config() -> Result<Arc<rustls::ClientConfig>, String> {
    static CONFIG: std::sync::OnceLock<Result<Arc<rustls::ClientConfig>, String>> =
        std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
                .map_err(|e| format!("cannot set up TLS: {e}"))
        })
        .clone()
}
