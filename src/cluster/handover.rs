//! Hand-over: this node's side of a resume that lands on another node —
//! answering `take`, holding frames for the session until its new node
//! confirms, then forwarding them.

use std::sync::Arc;

use super::bus::{self, Answer, Asker, ExportWire, Frame};
use super::{FORWARD_FOR, HOLD_FOR_NEW_NODE, Inner, MAX_HELD_FRAMES, lock};
use crate::core::{DeliveryError, ErrorCode, Identity, Rejection, Role, SessionId, Uid};
use crate::telemetry::metrics;

/// Where a handed-over session went, and what waits for it.
pub(super) enum Moved {
    /// The new node has not confirmed yet: frames wait here.
    Holding {
        to: String,
        frames: Vec<Frame>,
        since: std::time::Instant,
        handed: Box<HandedOver>,
    },
    /// Bound on the new node: frames go there.
    Forwarding {
        to: String,
        since: std::time::Instant,
    },
}

/// What a session was handed over as, kept until its new node confirms: a
/// `take` whose answer came too late for its asker (a Redis command that
/// ran late, a reply past `--cluster-reply-timeout`) left the session
/// exported here and adopted nowhere, and the client's retry of the same
/// resume is answered with it again instead of `RESUME_FAILED`.
pub(super) struct HandedOver {
    resume_token: String,
    acknowledged: u64,
    uid: Uid,
    role: Role,
    wire: ExportWire,
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
        let answer = match self.handed_again(resume_token, last_seq, identity, &asker.node) {
            Some(answer) => answer,
            None => self.export(resume_token, last_seq, identity, &asker.node),
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

    /// Exports the session for `to`, holding its frames until `to` confirms.
    fn export(
        self: &Arc<Self>,
        resume_token: &str,
        last_seq: u64,
        identity: Option<&Identity>,
        to: &str,
    ) -> Answer {
        let exporter = self.exporter.get().and_then(std::sync::Weak::upgrade);
        let exported = match exporter {
            Some(exporter) => exporter.export(resume_token, last_seq, identity),
            None => Err(Rejection::new(
                ErrorCode::Unavailable,
                "the node is stopping",
            )),
        };
        let encoded = exported.and_then(|export| {
            let wire = bus::encode_export(&export)
                .map_err(|e| Rejection::new(ErrorCode::Internal, e.to_string()))?;
            let handed = Box::new(HandedOver {
                resume_token: resume_token.to_owned(),
                acknowledged: last_seq,
                uid: export.uid.clone(),
                role: export.role,
                wire: wire.clone(),
            });
            lock(&self.moved).insert(
                export.session_id,
                Moved::Holding {
                    to: to.to_owned(),
                    frames: Vec::new(),
                    since: std::time::Instant::now(),
                    handed,
                },
            );
            self.local
                .unbind(&export.uid, export.role, export.session_id);
            Ok(wire)
        });
        match encoded {
            Ok(wire) => Answer::Exported(wire),
            Err(rejection) => Answer::Refused(rejection),
        }
    }

    /// The answer to a `take` of a session already handed over with this
    /// token and not yet confirmed by any node (its first answer was lost
    /// or late): the same export, now for `to`. `None` when there is none.
    fn handed_again(
        &self,
        resume_token: &str,
        last_seq: u64,
        identity: Option<&Identity>,
        to: &str,
    ) -> Option<Answer> {
        let mut moved = lock(&self.moved);
        let (target, handed) = moved.values_mut().find_map(|moved| match moved {
            Moved::Holding { to, handed, .. } if handed.resume_token == resume_token => {
                Some((to, handed))
            }
            _ => None,
        })?;
        if last_seq != handed.acknowledged {
            return Some(Answer::Refused(Rejection::new(
                ErrorCode::ResumeFailed,
                "the session was handed over for another last_seq",
            )));
        }
        if let Some(identity) = identity
            && let Err(rejection) = identity.permits(&handed.uid, handed.role)
        {
            return Some(Answer::Refused(rejection));
        }
        *target = to.to_owned();
        metrics::cluster_handed_again();
        Some(Answer::Exported(handed.wire.clone()))
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
