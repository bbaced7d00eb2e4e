//! How many sessions the hub holds, and how many of them are away: the one
//! place these counts change (`/metrics`, `/readyz` and shutdown read them).

use std::sync::atomic::{AtomicUsize, Ordering};

/// The hub's session counts.
#[derive(Debug, Default)]
pub(super) struct SessionCounts {
    open: AtomicUsize,
    away: AtomicUsize,
}

impl SessionCounts {
    /// A connection opened a session.
    pub(super) fn opened(&self) {
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    /// A registered session's connection dropped: it is held away.
    pub(super) fn went_away(&self) {
        self.away.fetch_add(1, Ordering::Relaxed);
    }

    /// An away session is away no longer: resumed, handed over or ended.
    pub(super) fn no_longer_away(&self) {
        self.away.fetch_sub(1, Ordering::Relaxed);
    }

    /// A session ended, was handed to another node, or was a resuming
    /// connection's own session, merged into the one it resumed.
    pub(super) fn ended(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Sessions not ended.
    pub(super) fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Sessions held away.
    pub(super) fn away(&self) -> usize {
        self.away.load(Ordering::Relaxed)
    }
}
