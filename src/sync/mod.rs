//! Synchronization shared by the core and the doors, importing neither:
//!
//! - [`lock`], the one lock helper: every mutex in the gateway guards a few
//!   plain operations per critical section (never an `.await` while held),
//!   so a std mutex serves and a panic elsewhere never leaves one
//!   half-changed;
//! - [`outbox`]: the bounded multi-writer, single-reader queue behind every
//!   session's events (core) and the Socket.IO door's incoming packets;
//! - [`push_back_sparing`], how a per-session queue takes its first items.

pub(crate) mod outbox;

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

/// Slots a per-session queue starts with: an idle session's queues hold
/// about two events (`registered` and `syncfrom`, the outbox's before they
/// are written and the ones kept for a resume), and `VecDeque` would
/// otherwise start at four.
const FIRST_SLOTS: usize = 2;

/// Appends `item`, starting an unallocated queue at [`FIRST_SLOTS`] slots
/// rather than `VecDeque`'s four; it grows as usual from there. Per idle
/// connection this keeps 80 bytes of each ring of 40-byte deliveries.
pub(crate) fn push_back_sparing<T>(queue: &mut VecDeque<T>, item: T) {
    if queue.capacity() == 0 {
        queue.reserve_exact(FIRST_SLOTS);
    }
    queue.push_back(item);
}

/// Locks `mutex`, recovering from poisoning: a panic in another critical
/// section is no reason to stop serving, since none leaves its data
/// inconsistent.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_starts_small_and_grows_as_usual() {
        let mut queue = VecDeque::new();
        push_back_sparing(&mut queue, 1);
        push_back_sparing(&mut queue, 2);
        assert_eq!(queue.capacity(), FIRST_SLOTS);
        push_back_sparing(&mut queue, 3);
        assert!(queue.capacity() >= 3);
        assert_eq!(queue, [1, 2, 3]);
    }
}
