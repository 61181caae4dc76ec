//! The registry's eviction order: every peer by its last contact, oldest
//! first.

use std::collections::{HashMap, VecDeque};

use crate::Timestamp;
use crate::wire::PeerId;

/// Every peer's last contact in ascending order, the earliest first (of
/// peers heard from at the same instant, the one that came first): what a
/// `BTreeSet` of `(contact, id)` gives, for less.
///
/// A contact is nearly always the latest there is (a ping is answered at
/// "now"), so moving a peer goes to the back: a push, where a B-tree paid a
/// search to remove and another to insert (about 1,000 instructions of a
/// ping, BENCHMARKS.md). Its old place stays behind, stale, and is dropped
/// when it reaches the front. A contact earlier than the back's (another
/// replica's, reported late; a clock set back) is put in its place, after
/// those of the same instant.
///
/// A place is live when it is its peer's last contact, which the index
/// keeps in a hash map of its own (a B-tree lookup of the registry's would
/// cost a ping several hundred instructions). After every change the front
/// is live, so [`Contacts::first`] is exact. Stale places are bounded: past
/// [`STALE_FACTOR`] times the peers (plus [`STALE_SLACK`]) the queue is
/// compacted.
#[derive(Debug, Default)]
pub(crate) struct Contacts {
    queue: VecDeque<(Timestamp, PeerId)>,
    last: HashMap<PeerId, Timestamp, foldhash::fast::RandomState>,
}

/// The queue holds at most this many places per peer before it is
/// compacted (a peer silent at the front keeps every later ping's place
/// until it is evicted).
const STALE_FACTOR: usize = 4;
/// ... plus this many.
const STALE_SLACK: usize = 64;

impl Contacts {
    /// The earliest contact and its peer.
    pub(crate) fn first(&self) -> Option<(Timestamp, PeerId)> {
        self.queue.front().copied()
    }

    /// `id` was last heard from at `at`: a new peer, or one whose contact
    /// moved (the registry never moves one back).
    pub(crate) fn set(&mut self, id: PeerId, at: Timestamp) {
        let from = self.last.insert(id, at);
        if from == Some(at) {
            return;
        }
        // Many pings share a millisecond: a tie goes to the back too.
        if self.queue.back().is_none_or(|&(last, _)| last <= at) {
            self.queue.push_back((at, id));
        } else {
            let place = self.queue.partition_point(|&(other, _)| other <= at);
            self.queue.insert(place, (at, id));
        }
        let bound = self.last.len().saturating_mul(STALE_FACTOR) + STALE_SLACK;
        if self.queue.len() > bound {
            let last = &self.last;
            self.queue.retain(|(at, id)| last.get(id) == Some(at));
        }
        if let Some(from) = from {
            self.stale((from, id));
        }
    }

    /// The peer `id` is gone.
    pub(crate) fn remove(&mut self, id: PeerId) {
        if let Some(at) = self.last.remove(&id) {
            self.stale((at, id));
        }
    }

    /// `place` is stale now: when it is the front, it and the stale places
    /// behind it go.
    fn stale(&mut self, place: (Timestamp, PeerId)) {
        if self.queue.front() != Some(&place) {
            return;
        }
        self.queue.pop_front();
        while let Some((at, id)) = self.queue.front() {
            if self.last.get(id) == Some(at) {
                break;
            }
            self.queue.pop_front();
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;

    use super::*;

    /// The peers' contacts, and the index's view of them.
    #[derive(Default)]
    struct Model {
        contacts: BTreeMap<PeerId, Timestamp>,
        index: Contacts,
    }

    impl Model {
        fn set(&mut self, id: PeerId, at: Timestamp) {
            self.contacts.insert(id, at);
            self.index.set(id, at);
        }

        fn remove(&mut self, id: PeerId) {
            self.contacts.remove(&id);
            self.index.remove(id);
        }

        /// The earliest contact, and the peers heard from then.
        fn expected_first(&self) -> Option<(Timestamp, BTreeSet<PeerId>)> {
            let at = *self.contacts.values().min()?;
            let ids = self
                .contacts
                .iter()
                .filter(|&(_, &t)| t == at)
                .map(|(&id, _)| id);
            Some((at, ids.collect()))
        }
    }

    fn id(n: u8) -> PeerId {
        PeerId(uuid::Uuid::from_bytes([n; 16]))
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// A peer is heard from `ms` after the latest contact so far (or
        /// before it: late).
        Heard {
            peer: u8,
            ms: i64,
        },
        Leave {
            peer: u8,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..12, -50i64..200).prop_map(|(peer, ms)| Op::Heard { peer, ms }),
            1 => (0u8..12).prop_map(|peer| Op::Leave { peer }),
        ]
    }

    proptest! {
        /// Under any sequence of contacts, late ones and leaves included,
        /// the first place is a peer's with the earliest contact, and the
        /// queue stays bounded.
        #[test]
        fn the_first_contact_is_the_earliest_and_the_queue_stays_bounded(
            ops in prop::collection::vec(op(), 1..300)
        ) {
            let mut model = Model::default();
            let mut latest = 1_000i64;
            for op in ops {
                match op {
                    Op::Heard { peer, ms } => {
                        latest += ms;
                        let at = Timestamp(u64::try_from(latest.max(0)).unwrap_or(0));
                        // A contact never moves back.
                        let at = model.contacts.get(&id(peer)).map_or(at, |&old| old.max(at));
                        model.set(id(peer), at);
                    }
                    Op::Leave { peer } => model.remove(id(peer)),
                }
                let first = model.index.first();
                let expected = model.expected_first();
                prop_assert_eq!(first.map(|(at, _)| at), expected.as_ref().map(|(at, _)| *at));
                if let (Some((_, id)), Some((_, ids))) = (first, expected) {
                    prop_assert!(ids.contains(&id), "{:?} is not among the earliest", id);
                }
                prop_assert!(
                    model.index.len() <= model.contacts.len() * STALE_FACTOR + STALE_SLACK + 1,
                    "{} places for {} peers", model.index.len(), model.contacts.len()
                );
            }
        }
    }

    /// A peer pinged again and again while another, silent, holds the
    /// front: the pinged one's old places are dropped by compaction, not
    /// kept until the silent one is evicted.
    #[test]
    fn a_silent_peer_at_the_front_does_not_let_places_pile_up() {
        let mut model = Model::default();
        model.set(id(1), Timestamp(0));
        for ms in 1..10_000 {
            model.set(id(2), Timestamp(ms));
        }
        assert!(model.index.len() <= 2 * STALE_FACTOR + STALE_SLACK + 1);
        assert_eq!(model.index.first(), Some((Timestamp(0), id(1))));
        model.remove(id(1));
        assert_eq!(model.index.first(), Some((Timestamp(9_999), id(2))));
    }
}
