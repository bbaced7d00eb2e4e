//! A node that hears its own probes twice is subscribed to its channel
//! twice on a Redis Cluster: a sharded channel's messages reach its
//! subscribers on every node of the shard, and redis-rs subscribes a
//! channel again on a node it reconnects to — a killed primary that came
//! back as a replica — beside the promoted primary where it subscribed
//! after the failover. Every frame then arrives twice: a copy of a frame
//! with an asker is dropped (`recent`), but the others (`syncfrom`,
//! `byebye`, …) would reach the client twice. See `Inner::prober`.

/// Probes heard twice in a row before the node subscribes afresh: one
/// alone can be the moment a rebuilt listener overlaps the one it
/// replaces.
const TWICE_IN_A_ROW: u32 = 2;

/// What this node heard of its recent probes.
#[derive(Debug, Default)]
pub(super) struct ProbeEchoes {
    /// The last probe heard.
    last: u64,
    /// Whether it was heard twice.
    last_twice: bool,
    /// Probes heard twice in a row, up to the last one.
    in_a_row: u32,
}

impl ProbeEchoes {
    /// Records that the probe `token` arrived; true when the subscription
    /// is found doubled (then the count starts again).
    pub(super) fn heard(&mut self, token: u64) -> bool {
        if token != self.last {
            if !self.last_twice {
                self.in_a_row = 0;
            }
            self.last = token;
            self.last_twice = false;
            return false;
        }
        if self.last_twice {
            // A third copy: still the same probe.
            return false;
        }
        self.last_twice = true;
        self.in_a_row += 1;
        if self.in_a_row < TWICE_IN_A_ROW {
            return false;
        }
        self.in_a_row = 0;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_heard_once_are_fine() {
        let mut echoes = ProbeEchoes::default();
        assert!((1..100).all(|token| !echoes.heard(token)));
    }

    #[test]
    fn two_probes_in_a_row_heard_twice_are_a_doubled_subscription() {
        let mut echoes = ProbeEchoes::default();
        assert!(!echoes.heard(1));
        assert!(!echoes.heard(1));
        assert!(!echoes.heard(2));
        assert!(echoes.heard(2));
        // Counted afresh: it takes two more.
        assert!(!echoes.heard(3));
        assert!(!echoes.heard(3));
        assert!(!echoes.heard(4));
        assert!(echoes.heard(4));
    }

    #[test]
    fn one_probe_heard_twice_alone_is_an_overlap() {
        let mut echoes = ProbeEchoes::default();
        for token in 1..50 {
            assert!(!echoes.heard(token));
            if token % 3 == 0 {
                assert!(!echoes.heard(token), "probe {token}");
            }
        }
    }

    #[test]
    fn a_probe_heard_once_between_breaks_the_row() {
        let mut echoes = ProbeEchoes::default();
        assert!(!echoes.heard(1));
        assert!(!echoes.heard(1));
        assert!(!echoes.heard(2));
        assert!(!echoes.heard(3));
        assert!(!echoes.heard(3));
        assert!(!echoes.heard(3), "a third copy is the same probe");
        assert!(!echoes.heard(4));
        assert!(echoes.heard(4));
    }
}
