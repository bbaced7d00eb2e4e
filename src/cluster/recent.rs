//! The frames a node has already handled, by their asker: a Redis command
//! that is retried across a failover (the first copy was executed but its
//! reply was lost, or it waited in a paused primary's input and ran when
//! the primary woke) can carry one `deliver` to the receiving node twice.
//! Every frame that names an asker carries a token unique to that asker,
//! so a frame seen again is dropped (`signalgate_cluster_frames_duplicate_total`).
//! Bounded: the most recent tokens of each asking node, and a bounded
//! number of asking nodes.

use std::collections::{HashMap, HashSet, VecDeque};

use super::bus::Asker;

/// Tokens remembered per asking node: far more than one node's frames in
/// flight within a reply deadline.
const TOKENS_PER_NODE: usize = 16_384;
/// Asking nodes remembered (node ids change on every restart).
const NODES: usize = 256;

/// Recently handled frames, per asking node.
#[derive(Default)]
pub(super) struct RecentFrames {
    nodes: HashMap<String, Tokens>,
}

#[derive(Default)]
struct Tokens {
    order: VecDeque<u64>,
    seen: HashSet<u64>,
}

impl RecentFrames {
    /// Whether `asker`'s frame is seen here for the first time (and
    /// remembers it).
    pub(super) fn first_time(&mut self, asker: &Asker) -> bool {
        if !self.nodes.contains_key(&asker.node) && self.nodes.len() >= NODES {
            // Node ids of restarted nodes pile up: start over (a duplicate
            // in that instant goes through, as before this check).
            self.nodes.clear();
        }
        let tokens = self.nodes.entry(asker.node.clone()).or_default();
        if !tokens.seen.insert(asker.token) {
            return false;
        }
        tokens.order.push_back(asker.token);
        if tokens.order.len() > TOKENS_PER_NODE
            && let Some(oldest) = tokens.order.pop_front()
        {
            tokens.seen.remove(&oldest);
        }
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
        assert!(recent.first_time(&asker("a", 1)));
        assert!(recent.first_time(&asker("b", 1)));
        assert!(!recent.first_time(&asker("a", 1)));
        assert!(recent.first_time(&asker("a", 2)));
    }

    #[test]
    fn memory_is_bounded_per_node_and_in_nodes() {
        let mut recent = RecentFrames::default();
        for token in 0..(TOKENS_PER_NODE as u64 + 10) {
            assert!(recent.first_time(&asker("a", token)));
        }
        // The oldest tokens are forgotten, the recent ones kept.
        assert!(recent.first_time(&asker("a", 0)));
        assert!(!recent.first_time(&asker("a", TOKENS_PER_NODE as u64 + 9)));
        assert_eq!(recent.nodes["a"].order.len(), TOKENS_PER_NODE);
        for node in 0..(NODES * 2) {
            recent.first_time(&asker(&node.to_string(), 1));
        }
        assert!(recent.nodes.len() <= NODES);
    }
}
