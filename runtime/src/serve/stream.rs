//! The console's live updates: a server-sent event each time the chain
//! grows (a ticket opened, signed, used; a decision recorded), a comment
//! every 20 s besides so proxies keep the connection open.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;

use crate::ActionRuntime;

/// The stream of one `GET /api/events`.
pub struct Changes {
    receiver: tokio::sync::mpsc::Receiver<Bytes>,
}

impl futures_core::Stream for Changes {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.receiver.poll_recv(cx).map(|b| b.map(Ok))
    }
}

/// A body of chunks sent on a channel (a relayed event stream).
pub struct Chunks {
    receiver: tokio::sync::mpsc::Receiver<Bytes>,
}

impl Chunks {
    /// The body of what `receiver` gets, until its senders are gone.
    pub fn new(receiver: tokio::sync::mpsc::Receiver<Bytes>) -> Chunks {
        Chunks { receiver }
    }
}

impl futures_core::Stream for Chunks {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.receiver.poll_recv(cx).map(|b| b.map(Ok))
    }
}

/// Starts a watcher thread for one connection: it waits on the ledger (no
/// busy loop: [`crate::store::Store::wait_for_records`]) and ends when the
/// connection does.
pub fn ledger_changes(rt: ActionRuntime) -> Changes {
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let spawned = std::thread::Builder::new()
        .name("capfence-serve-events".to_owned())
        .spawn(move || {
            let mut last = rt.ledger().head().map(|(seq, _)| seq).unwrap_or(0);
            if sender
                .blocking_send(Bytes::from(format!("event: ledger\ndata: {last}\n\n")))
                .is_err()
            {
                return;
            }
            loop {
                let message = match rt.ledger().wait_for_records(last, Duration::from_secs(20)) {
                    Ok(true) => {
                        last = rt.ledger().head().map(|(seq, _)| seq).unwrap_or(last);
                        format!("event: ledger\ndata: {last}\n\n")
                    }
                    Ok(false) => ": keepalive\n\n".to_owned(),
                    Err(e) => {
                        std::thread::sleep(Duration::from_secs(1));
                        format!(
                            "event: fault\ndata: {}\n\n",
                            e.to_string().replace('\n', " ")
                        )
                    }
                };
                if sender.blocking_send(Bytes::from(message)).is_err() {
                    return;
                }
            }
        });
    if spawned.is_err() {
        // No thread, no updates: the stream ends and the page polls again.
        return Changes {
            receiver: tokio::sync::mpsc::channel(1).1,
        };
    }
    Changes { receiver }
}
