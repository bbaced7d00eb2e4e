//! Draining a node for a rolling restart: its sessions are handed to the
//! other nodes instead of ended. Each connected session that can resume is
//! told `reconnect` (its resume token, and a wait spread over the drain so
//! that the other nodes are not stampeded) and its connection closed; the
//! session waits, away, for its client to resume it on another node — the
//! cross-node hand-over — so its peer sees `peer_away` then `peer_back`,
//! never `byebye`. A client that cannot resume (a seed Socket.IO client)
//! is closed with `SHUTTING_DOWN` as before.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tracing::info;

use super::Hub;
use crate::core::error::ErrorCode;
use crate::core::event::Event;
use crate::core::session::{Phase, SessionHandle};

/// What [`Hub::drain`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Drained {
    /// Sessions told to reconnect elsewhere.
    pub told_to_reconnect: usize,
    /// Sessions closed for good (their clients cannot resume).
    pub closed: usize,
}

impl Hub {
    /// Whether this node can drain by hand-over: another node can take its
    /// sessions (a shared registry) and sessions can be resumed.
    pub fn can_drain(&self) -> bool {
        self.shared.link.is_some() && self.shared.config.resume.enabled()
    }

    /// Whether another live node answers, to take this node's sessions
    /// (without one a drain would only make the sessions wait).
    pub async fn another_node_answers(&self) -> bool {
        let Some(link) = &self.shared.link else {
            return false;
        };
        match link
            .ask_other_nodes(&crate::core::admin::NodeQuery::Stats)
            .await
        {
            Ok(answers) => answers.iter().any(|(_, answer)| answer.is_some()),
            Err(_) => false,
        }
    }

    /// Starts the drain: not ready, no new sessions, every connected
    /// session told to reconnect within `spread` (or closed when it
    /// cannot). The caller then waits for the sessions to be taken by
    /// other nodes, and shuts down what is left.
    pub fn drain(&self, spread: Duration) -> Drained {
        self.shared.draining.store(true, Ordering::Release);
        let mut sessions: Vec<Arc<SessionHandle>> = Vec::new();
        self.shared
            .registry
            .each_local_session(&mut |_, _, handle| sessions.push(Arc::clone(handle)));
        let mut drained = Drained::default();
        let spread_ms = u64::try_from(spread.as_millis()).unwrap_or(u64::MAX);
        for handle in sessions {
            let (attachment, token) = {
                let state = handle.state();
                match (&state.phase, &state.attachment, &state.resume_token) {
                    (Phase::Open, Some(attachment), Some(token)) => {
                        (Arc::clone(attachment), Arc::clone(token))
                    }
                    _ => continue,
                }
            };
            if attachment.can_resume() {
                let after_ms = rand::random_range(0..=spread_ms);
                let _ = handle.deliver(Event::Reconnect {
                    resume_token: token,
                    after_ms,
                });
                attachment.kill(ErrorCode::Draining);
                drained.told_to_reconnect += 1;
            } else {
                attachment.kill(ErrorCode::ShuttingDown);
                drained.closed += 1;
            }
        }
        info!(
            told_to_reconnect = drained.told_to_reconnect,
            closed = drained.closed,
            spread_ms,
            "draining: sessions told to resume on another node"
        );
        drained
    }
}
