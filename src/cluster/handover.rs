//! Hand-over: this node's side of a resume that lands on another node —
//! answering `take`, holding frames for the session until its new node
//! confirms, then forwarding them.

use std::sync::Arc;

use super::bus::{self, Answer, Asker, Frame};
use super::{FORWARD_FOR, HOLD_FOR_NEW_NODE, Inner, MAX_HELD_FRAMES, lock};
use crate::core::{DeliveryError, ErrorCode, Identity, Rejection, SessionId};

/// Where a handed-over session went, and what waits for it.
pub(super) enum Moved {
    /// The new node has not confirmed yet: frames wait here.
    Holding {
        to: String,
        frames: Vec<Frame>,
        since: std::time::Instant,
    },
    /// Bound on the new node: frames go there.
    Forwarding {
        to: String,
        since: std::time::Instant,
    },
}

impl Inner {
    /// Answers another node's `take`: the hub validates the resume and lets
    /// go of the session, which leaves this node's table (its Redis entry
    /// is moved by the taking node).
    pub(super) fn hand_over(
        self: &Arc<Self>,
        resume_token: &str,
        last_seq: u64,
        identity: Option<&Identity>,
        asker: Asker,
    ) {
        let exporter = self.exporter.get().and_then(std::sync::Weak::upgrade);
        let exported = match exporter {
            Some(exporter) => exporter.export(resume_token, last_seq, identity),
            None => Err(Rejection::new(
                ErrorCode::Unavailable,
                "the node is stopping",
            )),
        };
        let answer = match exported.and_then(|export| {
            lock(&self.moved).insert(
                export.session_id,
                Moved::Holding {
                    to: asker.node.clone(),
                    frames: Vec::new(),
                    since: std::time::Instant::now(),
                },
            );
            self.local
                .unbind(&export.uid, export.role, export.session_id);
            bus::encode_export(&export)
                .map_err(|e| Rejection::new(ErrorCode::Internal, e.to_string()))
        }) {
            Ok(wire) => Answer::Exported(wire),
            Err(rejection) => Answer::Refused(rejection),
        };
        let reply = Frame::Reply {
            token: asker.token,
            answer,
        };
        let inner = Arc::clone(self);
        tokio::spawn(async move {
            let _ = inner.publish(&asker.node, reply).await;
        });
    }

    /// A frame for a session this node handed over is held or forwarded
    /// (`None`); any other is returned to be handled here.
    pub(super) fn divert_if_moved(self: &Arc<Self>, frame: Frame) -> Option<Frame> {
        let Some(session) = frame.target().map(|to| to.session) else {
            return Some(frame);
        };
        let mut moved = lock(&self.moved);
        match moved.get_mut(&session) {
            None => Some(frame),
            Some(Moved::Holding { frames, .. }) if frames.len() < MAX_HELD_FRAMES => {
                frames.push(frame);
                None
            }
            Some(Moved::Holding { .. }) => {
                drop(moved);
                self.answer(&frame, Err(DeliveryError::SlowConsumer));
                None
            }
            Some(Moved::Forwarding { to, .. }) => {
                let (to, inner) = (to.clone(), Arc::clone(self));
                tokio::spawn(async move {
                    let _ = inner.publish(&to, frame).await;
                });
                None
            }
        }
    }

    /// The new node bound (or failed to bind) a session this node handed
    /// over: forward what was held, or refuse it.
    pub(super) fn adopted(self: &Arc<Self>, session: SessionId, bound: bool) {
        let held = {
            let mut moved = lock(&self.moved);
            let Some(Moved::Holding { to, frames, .. }) = moved.remove(&session) else {
                return;
            };
            if bound {
                moved.insert(
                    session,
                    Moved::Forwarding {
                        to: to.clone(),
                        since: std::time::Instant::now(),
                    },
                );
            }
            (to, frames)
        };
        let (to, frames) = held;
        if bound {
            let inner = Arc::clone(self);
            tokio::spawn(async move {
                // In order, one after another.
                for frame in frames {
                    let _ = inner.publish(&to, frame).await;
                }
            });
        } else {
            for frame in frames {
                self.answer(&frame, Err(DeliveryError::Gone));
            }
        }
    }

    /// Forgets handed-over sessions after a while; frames held for a new
    /// node that never confirmed are refused.
    pub(super) fn expire_moved(self: &Arc<Self>) {
        let now = std::time::Instant::now();
        let mut refused = Vec::new();
        lock(&self.moved).retain(|_, moved| match moved {
            Moved::Holding { frames, since, .. } => {
                let keep = now.duration_since(*since) < HOLD_FOR_NEW_NODE;
                if !keep {
                    refused.append(frames);
                }
                keep
            }
            Moved::Forwarding { since, .. } => now.duration_since(*since) < FORWARD_FOR,
        });
        for frame in refused {
            self.answer(&frame, Err(DeliveryError::Unreachable));
        }
    }
}
