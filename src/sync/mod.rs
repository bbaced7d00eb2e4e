//! Synchronization shared by the core and the doors, importing neither:
//!
//! - [`lock`], the one lock helper: every mutex in the gateway guards a few
//!   plain operations per critical section (never an `.await` while held),
//!   so a std mutex serves and a panic elsewhere never leaves one
//!   half-changed;
//! - [`outbox`]: the bounded multi-writer, single-reader queue behind every
//!   session's events (core) and the Socket.IO door's incoming packets.

pub(crate) mod outbox;

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, recovering from poisoning: a panic in another critical
/// section is no reason to stop serving, since none leaves its data
/// inconsistent.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
