//! The close sequence of every door, written once (docs/PROTOCOL.md,
//! *Closing*), behind a small transport seam as centrifuge's
//! `Transport.Close(Disconnect)`: each door says how it writes its last
//! words, drains what the client still sends, and lets the connection go;
//! [`close_session`] says in which order.

use std::future::Future;
use std::time::Duration;

use futures_util::{Stream, StreamExt};

use crate::core::{EndReason, Session};

/// How long every door gives a session it ends to get its last words out
/// (docs/PROTOCOL.md: queued events, the farewell, the close).
pub(super) const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The one drain after a session's last words, on every door that needs
/// it: reads and drops what the client still sends until `is_last` says the
/// client finished (a WebSocket close frame, a Socket.IO disconnect), until
/// it pauses for `pause` when given, or for [`CLOSE_TIMEOUT`] at most.
///
/// Closing a connection with unread input makes the kernel reset it, and a
/// reset can destroy the last words before the client reads them.
pub(super) async fn drain_input<T>(
    input: impl Stream<Item = T>,
    pause: Option<Duration>,
    is_last: impl Fn(&T) -> bool,
) {
    let mut input = std::pin::pin!(input);
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        loop {
            let next = match pause {
                Some(pause) => match tokio::time::timeout(pause, input.next()).await {
                    Ok(next) => next,
                    Err(_) => return,
                },
                None => input.next().await,
            };
            match next {
                Some(item) if !is_last(&item) => {}
                _ => return,
            }
        }
    })
    .await;
}

/// What the close sequence needs from a door's connection.
pub(crate) trait Transport: Send {
    /// The door's rendering of a session's last words: what it queued, the
    /// farewell or the error that says why, and the door's close (a close
    /// frame, a gRPC status, a Socket.IO disconnect).
    type LastWords: Send;

    /// Writes `words` to the client. Bounded by [`CLOSE_TIMEOUT`] by the
    /// caller; a client that stops reading loses the rest.
    fn write_last_words(&mut self, words: Self::LastWords) -> impl Future<Output = ()> + Send;

    /// Reads and drops what the client still sends after the last words,
    /// until it finishes (bounded by [`CLOSE_TIMEOUT`] too): closing a
    /// connection with unread input makes the kernel reset it, and a reset
    /// can destroy the last words before the client reads them.
    fn drain_input(&mut self) -> impl Future<Output = ()> + Send;

    /// Lets the connection go once the session ended `reason`, with or
    /// without last words: whatever the door still owes the client (the
    /// answer to its close frame) or must release.
    fn release(self, reason: EndReason) -> impl Future<Output = ()> + Send;
}

/// The one close sequence: end the session (its role is freed and its peer
/// told at once, never delayed by a stuck socket), then the last words when
/// the server ended it, then the drain, then the connection goes.
pub(crate) async fn close_session<T: Transport>(
    session: Session,
    reason: EndReason,
    last_words: Option<T::LastWords>,
    mut transport: T,
) {
    session.end(reason).await;
    if let Some(words) = last_words {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, transport.write_last_words(words)).await;
        transport.drain_input().await;
    }
    transport.release(reason).await;
}
