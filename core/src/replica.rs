//! Which genesis replica pushes to which peer.
//!
//! Replicas that share a list ([`crate::registry::Registry::mirror`]) each
//! compute every broadcast round, but a peer is pushed to by one replica
//! only: the one that wins the rendezvous hash of the peer's id over the
//! live replicas (each replica holds a lease in the store; the store's
//! changes tell every replica the same set). When a replica dies, only the
//! peers it owned move, each to the replica that scores next; those peers
//! get the whole list from their new owner, who cannot know what the dead
//! one had sent ([`Replicas::handle_live`]). A replica always counts itself
//! as live, so that when the replicas' views differ for a moment a peer is
//! pushed to twice rather than not at all.

use std::collections::BTreeSet;

use crate::wire::PeerId;

/// The score of `replica` for `peer`: the highest score owns the peer.
/// FNV-1a over both, then a 64-bit finaliser, so that it is the same in
/// every build and on every machine.
pub fn score(replica: &str, peer: PeerId) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in replica.bytes().chain([0xff]).chain(*peer.0.as_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // splitmix64's finaliser spreads FNV's weak low bits.
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// The replica of `replicas` that owns `peer`, if there is any replica.
pub fn owner<'a>(peer: PeerId, replicas: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    replicas
        .into_iter()
        .max_by_key(|replica| (score(replica, peer), *replica))
}

/// The live replicas as one replica sees them.
#[derive(Clone, Debug)]
pub struct Replicas {
    me: String,
    live: BTreeSet<String>,
}

impl Replicas {
    /// Replica `me`, alone until the store says more.
    pub fn new(me: impl Into<String>) -> Self {
        let me = me.into();
        Self {
            live: BTreeSet::from([me.clone()]),
            me,
        }
    }

    /// This replica's id.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// The live replicas (this one included).
    pub fn live(&self) -> &BTreeSet<String> {
        &self.live
    }

    /// Whether this replica pushes to `peer`.
    pub fn owns(&self, peer: PeerId) -> bool {
        owner(peer, self.live.iter().map(String::as_str)) == Some(self.me.as_str())
    }

    /// The store's set of live replicas changed to `live`: returns those of
    /// `peers` that this replica owns now and did not before (taken over
    /// from a replica that died or left): they must get the whole list.
    /// Peers that move to a new replica are not this one's concern: the new
    /// one pushes the whole list to them.
    pub fn handle_live(
        &mut self,
        live: impl IntoIterator<Item = String>,
        peers: impl IntoIterator<Item = PeerId>,
    ) -> Vec<PeerId> {
        let mut next: BTreeSet<String> = live.into_iter().collect();
        next.insert(self.me.clone());
        if next == self.live {
            return Vec::new();
        }
        let before = std::mem::replace(&mut self.live, next);
        peers
            .into_iter()
            .filter(|&peer| {
                self.owns(peer)
                    && owner(peer, before.iter().map(String::as_str)) != Some(self.me.as_str())
            })
            .collect()
    }
}
