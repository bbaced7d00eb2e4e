//! The frames a node has already handled, by their asker: a Redis command
//! that is retried across a failover (the first copy was executed but its
//! reply was lost, or it waited in a paused primary's input and ran when
//! the primary woke, or redis-rs held it for a dead primary and sent it
//! when the node came back seconds later) can carry one `deliver` to the
//! receiving node twice. Every frame that names an asker carries a token
//! unique to that asker, so a frame seen again is dropped
//! (`signalgate_cluster_frames_duplicate_total`).
//!
//! Remembered by time, not by count: a copy can come [`WINDOW`] after the
//! first (measured: 9 s after a primary's `kill -9`, when it restarted),
//! and at thousands of relays a second a count-bounded memory forgets too
//! soon. Bounded all the same: at most [`MAX_REMEMBERED`] frames in all
//! (about 16 MiB), the oldest forgotten first.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use super::bus::Asker;

/// How long a handled frame is remembered.
const WINDOW: Duration = Duration::from_secs(60);
/// Frames remembered at most, over every asking node.
const MAX_REMEMBERED: usize = 262_144;

/// Recently handled frames, by asker and token.
#[derive(Default)]
pub(super) struct RecentFrames {
    order: VecDeque<(Instant, u128)>,
    seen: HashSet<u128>,
}

/// A frame's key: its asker's node id (16 hex digits, else a hash of the
/// name) and its token.
fn key(asker: &Asker) -> u128 {
    let node = u64::from_str_radix(&asker.node, 16).unwrap_or_else(|_| {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        asker.node.hash(&mut hasher);
        hasher.finish()
    });
    (u128::from(node) << 64) | u128::from(asker.token)
}

impl RecentFrames {
    /// Whether `asker`'s frame is seen here for the first time (and
    /// remembers it), at `now`.
    pub(super) fn first_time(&mut self, asker: &Asker, now: Instant) -> bool {
        while let Some(&(at, oldest)) = self.order.front() {
            if self.order.len() < MAX_REMEMBERED && now.duration_since(at) < WINDOW {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&oldest);
        }
        let key = key(asker);
        if !self.seen.insert(key) {
            return false;
        }
        self.order.push_back((now, key));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asker(node: &str, token: u64) -> Asker {
        Asker {
            node: node.to_owned(),
            token,
        }
    }

    #[test]
    fn a_frame_seen_again_is_not_the_first_time() {
        let mut recent = RecentFrames::default();
        let now = Instant::now();
        assert!(recent.first_time(&asker("00000000000000aa", 1), now));
        assert!(recent.first_time(&asker("00000000000000bb", 1), now));
        assert!(!recent.first_time(&asker("00000000000000aa", 1), now));
        assert!(recent.first_time(&asker("00000000000000aa", 2), now));
        // A name that is not a node id works too.
        assert!(recent.first_time(&asker("node-a", 1), now));
        assert!(!recent.first_time(&asker("node-a", 1), now));
    }

    #[test]
    fn a_copy_within_the_window_is_caught_however_many_frames_came_between() {
        let mut recent = RecentFrames::default();
        let start = Instant::now();
        assert!(recent.first_time(&asker("00000000000000aa", 7), start));
        // 100,000 other frames over 30 s (a busy node), then the copy.
        for token in 0..100_000u64 {
            let at = start + Duration::from_micros(token * 300);
            assert!(recent.first_time(&asker("00000000000000bb", token), at));
        }
        let later = start + Duration::from_secs(30);
        assert!(!recent.first_time(&asker("00000000000000aa", 7), later));
    }

    #[test]
    fn memory_is_bounded_in_time_and_in_frames() {
        let mut recent = RecentFrames::default();
        let start = Instant::now();
        assert!(recent.first_time(&asker("00000000000000aa", 1), start));
        // Past the window, the frame is forgotten.
        let later = start + WINDOW + Duration::from_secs(1);
        assert!(recent.first_time(&asker("00000000000000aa", 1), later));
        // Never more than MAX_REMEMBERED, however fast frames come.
        for token in 0..(MAX_REMEMBERED as u64 + 10) {
            recent.first_time(&asker("00000000000000cc", token), later);
        }
        assert!(recent.order.len() <= MAX_REMEMBERED);
        assert_eq!(recent.order.len(), recent.seen.len());
    }
}
