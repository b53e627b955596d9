//! The table of known providers: the newest verified announcement of each peer, bounded in size and
//! expiring with age.
//!
//! An entry's age is `now - timestamp` of its announcement; it is live while that age is at most the
//! TTL. When the table is full, expired entries are dropped first, then the entry with the oldest
//! timestamp (ties broken by the smallest peer id) makes room — unless the newcomer is older still,
//! in which case the newcomer is the one turned away.
//!
//! A provider that cannot be dialled is dropped at once ([`ProviderTable::unreachable`]) instead of
//! lingering until its announcement expires; a tombstone keeps the same (or an older) announcement,
//! relayed by another peer, from bringing it back. Its next announcement, which a live provider
//! publishes every announce interval, lists it again.

use std::collections::{BTreeSet, HashMap};

use libp2p::PeerId;

use super::announce::SignedAvailability;

/// What [`ProviderTable::insert`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// A peer the table did not know.
    New,
    /// A newer announcement replaced the peer's previous one.
    Updated,
    /// Not kept: not newer than the entry held for the peer, or, with the table full, older than
    /// every entry in it.
    Stale,
    /// A peer the table did not know; the table was full and this peer's entry, the oldest, was
    /// evicted to make room.
    Evicted(PeerId),
}

/// Known providers, keyed by peer id, at most `max_entries` of them.
#[derive(Debug)]
pub struct ProviderTable {
    max_entries: usize,
    ttl_secs: u64,
    entries: HashMap<PeerId, SignedAvailability>,
    /// `(timestamp, peer)` of every entry, oldest first.
    by_age: BTreeSet<(u64, PeerId)>,
    /// Peers dropped as unreachable, with the timestamp of the announcement they were dropped at.
    tombstones: HashMap<PeerId, u64>,
}

impl ProviderTable {
    /// An empty table holding at most `max_entries` (at least 1) announcements, each live while it is
    /// at most `ttl_secs` old.
    pub fn new(max_entries: usize, ttl_secs: u64) -> Self {
        ProviderTable {
            max_entries: max_entries.max(1),
            ttl_secs,
            entries: HashMap::new(),
            by_age: BTreeSet::new(),
            tombstones: HashMap::new(),
        }
    }

    /// Records an announcement the caller has verified, keeping the newest timestamp per peer.
    pub fn insert(&mut self, ann: SignedAvailability, now_unix: u64) -> Inserted {
        let peer = ann.body.peer_id;
        let timestamp = ann.body.timestamp;
        match self.tombstones.get(&peer) {
            Some(&dead_at) if timestamp <= dead_at => return Inserted::Stale,
            Some(_) => {
                self.tombstones.remove(&peer);
            }
            None => {}
        }
        if let Some(old) = self.entries.get(&peer) {
            if timestamp <= old.body.timestamp {
                return Inserted::Stale;
            }
            self.by_age.remove(&(old.body.timestamp, peer));
            self.by_age.insert((timestamp, peer));
            self.entries.insert(peer, ann);
            return Inserted::Updated;
        }
        let mut evicted = None;
        if self.entries.len() >= self.max_entries {
            self.expire(now_unix);
        }
        if self.entries.len() >= self.max_entries {
            let Some(&(oldest_ts, oldest)) = self.by_age.first() else { return Inserted::Stale };
            if timestamp < oldest_ts {
                return Inserted::Stale;
            }
            self.remove(&oldest);
            evicted = Some(oldest);
        }
        self.by_age.insert((timestamp, peer));
        self.entries.insert(peer, ann);
        match evicted {
            Some(p) => Inserted::Evicted(p),
            None => Inserted::New,
        }
    }

    /// The announcement held for `peer`, live or not.
    pub fn get(&self, peer: &PeerId) -> Option<&SignedAvailability> {
        self.entries.get(peer)
    }

    /// Forgets `peer`, returning its announcement.
    pub fn remove(&mut self, peer: &PeerId) -> Option<SignedAvailability> {
        let ann = self.entries.remove(peer)?;
        self.by_age.remove(&(ann.body.timestamp, *peer));
        Some(ann)
    }

    /// Drops `peer` because it could not be dialled; only a newer announcement lists it again.
    /// Returns whether it was listed.
    pub fn unreachable(&mut self, peer: &PeerId) -> bool {
        match self.remove(peer) {
            Some(ann) => {
                self.tombstones.insert(*peer, ann.body.timestamp);
                true
            }
            None => false,
        }
    }

    /// Drops every entry more than the TTL old; returns how many were dropped.
    pub fn expire(&mut self, now_unix: u64) -> usize {
        // A tombstone outlives the announcement it buries by the TTL, then has nothing to stop.
        let ttl = self.ttl_secs;
        self.tombstones.retain(|_, ts| now_unix.saturating_sub(*ts) <= ttl);
        let mut dropped = 0;
        while let Some(&(timestamp, peer)) = self.by_age.first() {
            if self.is_live(timestamp, now_unix) {
                break;
            }
            self.remove(&peer);
            dropped += 1;
        }
        dropped
    }

    /// The entries at most the TTL old at `now_unix`, sorted by peer id.
    pub fn live(&self, now_unix: u64) -> Vec<&SignedAvailability> {
        let mut out: Vec<&SignedAvailability> =
            self.entries.values().filter(|a| self.is_live(a.body.timestamp, now_unix)).collect();
        out.sort_by_key(|a| a.body.peer_id);
        out
    }

    /// Entries held, live or not.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table holds no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn is_live(&self, timestamp: u64, now_unix: u64) -> bool {
        now_unix.saturating_sub(timestamp) <= self.ttl_secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::announce::Availability;

    /// An unsigned announcement: the table trusts its caller to have verified it.
    fn ann(peer: PeerId, timestamp: u64) -> SignedAvailability {
        SignedAvailability {
            body: Availability {
                peer_id: peer,
                address: "0x0000000000000000000000000000000000000000".into(),
                listen_addrs: vec![],
                free_bytes: timestamp,
                stored_bytes: 0,
                gpus: vec![],
                price_per_gib_month: 0,
                version: "test".into(),
                timestamp,
            },
            chain_signature: [0; 65],
            peer_signature: vec![],
        }
    }

    #[test]
    fn keeps_the_newest_per_peer_and_ignores_stale_updates() {
        let mut t = ProviderTable::new(10, 100);
        let p = PeerId::random();
        assert_eq!(t.insert(ann(p, 1000), 1000), Inserted::New);
        assert_eq!(t.insert(ann(p, 1010), 1010), Inserted::Updated);
        assert_eq!(t.get(&p).unwrap().body.timestamp, 1010);
        assert_eq!(t.insert(ann(p, 1010), 1010), Inserted::Stale);
        assert_eq!(t.insert(ann(p, 1005), 1010), Inserted::Stale);
        assert_eq!(t.get(&p).unwrap().body.timestamp, 1010);
        assert_eq!(t.len(), 1);
        // The age index follows updates: expiry uses the new timestamp.
        assert_eq!(t.expire(1105), 0);
        assert_eq!(t.expire(1111), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn unreachable_peers_go_at_once_and_come_back_only_with_a_newer_announcement() {
        let mut t = ProviderTable::new(10, 100);
        let (p, q) = (PeerId::random(), PeerId::random());
        t.insert(ann(p, 1000), 1000);
        t.insert(ann(q, 1000), 1000);
        assert!(t.unreachable(&p));
        assert!(!t.unreachable(&p), "already gone");
        assert_eq!(t.live(1001).len(), 1);
        // The same announcement, or an older one, relayed by someone else, does not revive it.
        assert_eq!(t.insert(ann(p, 1000), 1001), Inserted::Stale);
        assert_eq!(t.insert(ann(p, 990), 1001), Inserted::Stale);
        assert!(t.get(&p).is_none());
        // Its next own announcement does, and then the tombstone is gone.
        assert_eq!(t.insert(ann(p, 1030), 1030), Inserted::New);
        assert!(t.unreachable(&p));
        // Tombstones expire with the TTL, like the announcements they bury.
        t.expire(1131);
        assert_eq!(t.insert(ann(p, 1030), 1131), Inserted::New);
    }

    #[test]
    fn bounded_and_evicts_the_oldest() {
        let mut t = ProviderTable::new(3, 1000);
        let peers: Vec<PeerId> = (0..5).map(|_| PeerId::random()).collect();
        assert_eq!(t.insert(ann(peers[0], 103), 110), Inserted::New);
        assert_eq!(t.insert(ann(peers[1], 101), 110), Inserted::New);
        assert_eq!(t.insert(ann(peers[2], 102), 110), Inserted::New);
        assert_eq!(t.insert(ann(peers[3], 104), 110), Inserted::Evicted(peers[1]));
        assert_eq!(t.len(), 3);
        assert!(t.get(&peers[1]).is_none());
        // An update of a known peer evicts nobody.
        assert_eq!(t.insert(ann(peers[2], 105), 110), Inserted::Updated);
        assert_eq!(t.insert(ann(peers[4], 106), 110), Inserted::Evicted(peers[0]));
        // A newcomer older than everything held is turned away rather than evicting a newer entry.
        assert_eq!(t.insert(ann(peers[1], 100), 110), Inserted::Stale);
        assert!(t.get(&peers[1]).is_none());
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn full_table_drops_expired_entries_before_evicting() {
        let mut t = ProviderTable::new(2, 50);
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        t.insert(ann(a, 100), 100);
        t.insert(ann(b, 140), 140);
        // At 160, a is 60 s old (expired), b 20 s: a goes quietly and c is simply new.
        assert_eq!(t.insert(ann(c, 160), 160), Inserted::New);
        assert!(t.get(&a).is_none());
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn expiry_and_live_view() {
        let mut t = ProviderTable::new(10, 60);
        let peers: Vec<PeerId> = (0..4).map(|_| PeerId::random()).collect();
        for (i, p) in peers.iter().enumerate() {
            t.insert(ann(*p, 1000 + 20 * i as u64), 1000);
        }
        // At 1080: ages 80, 60, 40, 20 — the first is expired, the second exactly at the TTL is live.
        let live = t.live(1080);
        assert_eq!(live.len(), 3);
        assert!(live.windows(2).all(|w| w[0].body.peer_id < w[1].body.peer_id));
        assert!(live.iter().all(|a| a.body.peer_id != peers[0]));
        assert_eq!(t.len(), 4, "live() does not mutate");
        assert_eq!(t.expire(1080), 1);
        assert_eq!(t.len(), 3);
        assert_eq!(t.expire(1080), 0);
        assert_eq!(t.expire(10_000), 3);
        assert!(t.is_empty());
        assert!(t.live(10_000).is_empty());
        // Announcements from slightly in the future are live.
        t.insert(ann(peers[0], 2000), 1990);
        assert_eq!(t.live(1990).len(), 1);
    }

    #[test]
    fn remove_forgets_the_peer() {
        let mut t = ProviderTable::new(1, 60);
        let (a, b) = (PeerId::random(), PeerId::random());
        t.insert(ann(a, 10), 10);
        assert_eq!(t.remove(&a).unwrap().body.peer_id, a);
        assert!(t.remove(&a).is_none());
        assert_eq!(t.insert(ann(b, 5), 10), Inserted::New, "the removed entry no longer blocks");
        assert_eq!(ProviderTable::new(0, 1).max_entries, 1);
    }
}
