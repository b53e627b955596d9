//! Choosing providers for the `k + m` shards of an object: weighted random, without replacement,
//! preferring cheap providers with room to spare, spread over distinct network groups.
//!
//! # Rules
//!
//! A candidate is *eligible* if it is not excluded and has `free_bytes >= need_bytes`. Candidates are
//! deduplicated by peer id (first occurrence wins) and ordered by peer id, so the result depends only
//! on the candidate set and the rng. `n` distinct peers are drawn one at a time; each draw picks an
//! eligible, not yet chosen candidate with probability proportional to its current weight.
//!
//! # Weight
//!
//! ```text
//! space     = 1 + ln(1 + free_bytes / 2^30)                   in [1, ~24.6]: grows with free GiB, slowly
//! reference = max(1, lower median of the eligible prices)
//! price     = max(1e-6, reference / (reference + price_per_gib_month))   in [1e-6, 1]; price 0 gives 1
//! weight    = space × price / 8^min(picked_in_group, 64)
//! ```
//!
//! A provider asking the median price gets half the price factor of a free one, one asking ten times the
//! median about a tenth. `picked_in_group` counts the providers already chosen from the candidate's
//! diversity [group](Candidate::group), so distinct groups are strongly preferred while same-group
//! providers stay usable when there are not enough groups.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

use super::announce::Availability;

/// Factor by which each earlier pick from a group divides the weight of that group's candidates.
pub const GROUP_PENALTY: f64 = 8.0;
/// Smallest price factor, so that no eligible candidate's weight reaches zero.
const MIN_PRICE_FACTOR: f64 = 1e-6;
/// Most group penalties applied to one candidate (keeps weights far from underflow).
const MAX_PENALTIES: i32 = 64;

/// What selection needs to know about one provider.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// The provider.
    pub peer: PeerId,
    /// Bytes it can still accept.
    pub free_bytes: u64,
    /// Its asking price per GiB and month, BIG base units.
    pub price_per_gib_month: u128,
    /// Its diversity group: `ip4:A.B.C.0/24`, `ip6:X:Y:Z::/48`, or `peer:<peer id>` when it announces
    /// no routable IP address (a loopback-only local cluster is not penalised).
    pub group: String,
}

impl Candidate {
    /// The candidate an announcement describes; the group comes from the first listen address that
    /// starts with an IP address that is neither loopback nor unspecified.
    pub fn from_announcement(a: &Availability) -> Self {
        let group =
            a.listen_addrs.iter().find_map(network_group).unwrap_or_else(|| format!("peer:{}", a.peer_id));
        Candidate {
            peer: a.peer_id,
            free_bytes: a.free_bytes,
            price_per_gib_month: a.price_per_gib_month,
            group,
        }
    }
}

/// The IPv4 /24 or IPv6 /48 of a multiaddr's leading IP component, if routable-looking.
fn network_group(addr: &Multiaddr) -> Option<String> {
    let ip = match addr.iter().next()? {
        Protocol::Ip4(ip) => IpAddr::V4(ip),
        Protocol::Ip6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(ip),
        },
        _ => return None,
    };
    if ip.is_loopback() || ip.is_unspecified() {
        return None;
    }
    Some(match ip {
        IpAddr::V4(v4) => format!("ip4:{}/24", Ipv4Addr::from(u32::from(v4) & 0xffff_ff00)),
        IpAddr::V6(v6) => format!("ip6:{}/48", Ipv6Addr::from(u128::from(v6) & !((1u128 << 80) - 1))),
    })
}

/// Why providers could not be selected.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    /// Fewer eligible providers than shards to place.
    #[error(
        "need {need} distinct providers with at least {need_bytes} bytes free, but only {eligible} of \
         {total} known providers qualify ({too_small} have too little free space, {excluded} excluded)"
    )]
    NotEnough {
        /// Providers needed.
        need: usize,
        /// Free bytes each needs.
        need_bytes: u64,
        /// Eligible providers.
        eligible: usize,
        /// Distinct providers considered.
        total: usize,
        /// Providers with too little free space (and not excluded).
        too_small: usize,
        /// Providers excluded by the caller.
        excluded: usize,
    },
}

/// Picks `n` distinct providers, each with at least `need_bytes` free and none in `exclude` (see the
/// module docs for the weights). Deterministic for a given candidate set and rng state.
pub fn select(
    cands: &[Candidate],
    n: usize,
    need_bytes: u64,
    exclude: &HashSet<PeerId>,
    rng: &mut impl rand::Rng,
) -> Result<Vec<PeerId>, SelectError> {
    let mut distinct: Vec<&Candidate> = Vec::with_capacity(cands.len());
    let mut seen = HashSet::with_capacity(cands.len());
    for c in cands {
        if seen.insert(c.peer) {
            distinct.push(c);
        }
    }
    distinct.sort_by_key(|c| c.peer);
    let total = distinct.len();
    let excluded = distinct.iter().filter(|c| exclude.contains(&c.peer)).count();
    let eligible: Vec<&Candidate> =
        distinct.into_iter().filter(|c| !exclude.contains(&c.peer) && c.free_bytes >= need_bytes).collect();
    if eligible.len() < n {
        return Err(SelectError::NotEnough {
            need: n,
            need_bytes,
            eligible: eligible.len(),
            total,
            too_small: total - excluded - eligible.len(),
            excluded,
        });
    }
    if n == 0 {
        return Ok(Vec::new());
    }
    let mut prices: Vec<u128> = eligible.iter().map(|c| c.price_per_gib_month).collect();
    prices.sort_unstable();
    let reference = prices[(prices.len() - 1) / 2].max(1) as f64;
    let mut pool: Vec<(&Candidate, f64)> = eligible.iter().map(|c| (*c, base_weight(c, reference))).collect();
    let mut picked_in_group: HashMap<&str, i32> = HashMap::new();
    let mut chosen = Vec::with_capacity(n);
    while chosen.len() < n {
        let weight = |c: &Candidate, base: f64| {
            let picks = picked_in_group.get(c.group.as_str()).copied().unwrap_or(0).min(MAX_PENALTIES);
            base / GROUP_PENALTY.powi(picks)
        };
        let weights: Vec<f64> = pool.iter().map(|(c, base)| weight(c, *base)).collect();
        let total_weight: f64 = weights.iter().sum();
        let target = rng.r#gen::<f64>() * total_weight;
        let mut acc = 0.0;
        // Rounding can leave `target` just past the last running sum: the last candidate takes it.
        let mut pick = pool.len() - 1;
        for (i, w) in weights.iter().enumerate() {
            acc += w;
            if target < acc {
                pick = i;
                break;
            }
        }
        let (c, _) = pool.remove(pick);
        *picked_in_group.entry(c.group.as_str()).or_insert(0) += 1;
        chosen.push(c.peer);
    }
    Ok(chosen)
}

/// `space × price` of the module docs, before group penalties.
fn base_weight(c: &Candidate, reference: f64) -> f64 {
    let free_gib = c.free_bytes as f64 / (1u64 << 30) as f64;
    let space = 1.0 + free_gib.ln_1p();
    let price = (reference / (reference + c.price_per_gib_month as f64)).max(MIN_PRICE_FACTOR);
    space * price
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    const GIB: u64 = 1 << 30;

    fn cand(group: &str, free_bytes: u64, price: u128) -> Candidate {
        Candidate { peer: PeerId::random(), free_bytes, price_per_gib_month: price, group: group.into() }
    }

    fn none() -> HashSet<PeerId> {
        HashSet::new()
    }

    #[test]
    fn always_distinct_and_eligible() {
        let cands: Vec<Candidate> =
            (0..20).map(|i| cand(&format!("g{}", i % 4), (i as u64 + 1) * GIB, i as u128 * 1000)).collect();
        let eligible: HashSet<PeerId> =
            cands.iter().filter(|c| c.free_bytes >= 3 * GIB).map(|c| c.peer).collect();
        for seed in 0..500 {
            let got = select(&cands, 14, 3 * GIB, &none(), &mut StdRng::seed_from_u64(seed)).unwrap();
            assert_eq!(got.len(), 14);
            assert_eq!(got.iter().collect::<HashSet<_>>().len(), 14, "seed {seed}: {got:?}");
            assert!(got.iter().all(|p| eligible.contains(p)));
        }
        // Asking for every eligible provider returns exactly them.
        let got = select(&cands, eligible.len(), 3 * GIB, &none(), &mut StdRng::seed_from_u64(1)).unwrap();
        assert_eq!(got.into_iter().collect::<HashSet<_>>(), eligible);
    }

    #[test]
    fn duplicate_candidates_count_once() {
        let c = cand("g", GIB, 1);
        let cands = vec![c.clone(), c.clone(), c];
        let err = select(&cands, 2, 1, &none(), &mut StdRng::seed_from_u64(0)).unwrap_err();
        assert!(matches!(err, SelectError::NotEnough { eligible: 1, total: 1, .. }));
    }

    #[test]
    fn small_and_excluded_providers_are_never_chosen() {
        let cands: Vec<Candidate> = (0..10).map(|i| cand(&format!("g{i}"), i as u64 * GIB, 1)).collect();
        let exclude: HashSet<PeerId> = [cands[7].peer, cands[9].peer].into();
        for seed in 0..200 {
            let got = select(&cands, 3, 5 * GIB, &exclude, &mut StdRng::seed_from_u64(seed)).unwrap();
            let mut want = vec![cands[5].peer, cands[6].peer, cands[8].peer];
            let mut got_sorted = got.clone();
            want.sort();
            got_sorted.sort();
            assert_eq!(got_sorted, want);
        }
    }

    #[test]
    fn not_enough_says_why() {
        let cands: Vec<Candidate> = (0..9).map(|i| cand(&format!("g{i}"), i as u64 * GIB, 1)).collect();
        let exclude: HashSet<PeerId> = [cands[8].peer, cands[0].peer].into();
        let err = select(&cands, 6, 4 * GIB, &exclude, &mut StdRng::seed_from_u64(0)).unwrap_err();
        assert!(matches!(
            err,
            SelectError::NotEnough { need: 6, eligible: 4, total: 9, too_small: 3, excluded: 2, .. }
        ));
        assert_eq!(
            err.to_string(),
            "need 6 distinct providers with at least 4294967296 bytes free, but only 4 of 9 known providers \
             qualify (3 have too little free space, 2 excluded)"
        );
        assert!(select(&[], 1, 0, &none(), &mut StdRng::seed_from_u64(0)).is_err());
        assert_eq!(select(&[], 0, 0, &none(), &mut StdRng::seed_from_u64(0)).unwrap(), vec![]);
    }

    #[test]
    fn single_candidate_is_chosen() {
        let c = cand("g", 0, u128::MAX);
        let got = select(std::slice::from_ref(&c), 1, 0, &none(), &mut StdRng::seed_from_u64(3)).unwrap();
        assert_eq!(got, vec![c.peer]);
    }

    #[test]
    fn cheaper_providers_win_more_often() {
        let cheap = cand("a", 100 * GIB, 1_000_000_000_000_000);
        let dear = cand("b", 100 * GIB, 10_000_000_000_000_000);
        let cands = vec![dear.clone(), cheap.clone()];
        let mut rng = StdRng::seed_from_u64(42);
        let mut cheap_wins = 0;
        for _ in 0..2000 {
            if select(&cands, 1, GIB, &none(), &mut rng).unwrap()[0] == cheap.peer {
                cheap_wins += 1;
            }
        }
        // Expected share 0.5 / (0.5 + 1/11) ≈ 0.85.
        assert!(cheap_wins > 1550, "cheap chosen {cheap_wins} of 2000");
        // Free providers are allowed and preferred.
        let free = cand("c", 100 * GIB, 0);
        let cands = vec![free.clone(), cheap.clone(), dear];
        let mut free_wins = 0;
        for _ in 0..2000 {
            if select(&cands, 1, GIB, &none(), &mut rng).unwrap()[0] == free.peer {
                free_wins += 1;
            }
        }
        assert!(free_wins > 1000, "free chosen {free_wins} of 2000");
    }

    #[test]
    fn more_free_space_wins_more_often() {
        let roomy = cand("a", 1000 * GIB, 5);
        let tight = cand("b", 2 * GIB, 5);
        let cands = vec![roomy.clone(), tight];
        let mut rng = StdRng::seed_from_u64(7);
        let roomy_wins =
            (0..2000).filter(|_| select(&cands, 1, GIB, &none(), &mut rng).unwrap()[0] == roomy.peer).count();
        // Expected share (1 + ln 1001) / (2 + ln 1001 + ln 3) ≈ 0.77.
        assert!(roomy_wins > 1400, "roomy chosen {roomy_wins} of 2000");
    }

    #[test]
    fn distinct_groups_are_preferred() {
        let mut cands: Vec<Candidate> = (0..5).map(|_| cand("ip4:10.0.0.0/24", 10 * GIB, 1)).collect();
        cands.extend((0..5).map(|_| cand("ip4:10.0.1.0/24", 10 * GIB, 1)));
        let group_of: HashMap<PeerId, String> = cands.iter().map(|c| (c.peer, c.group.clone())).collect();
        let mut rng = StdRng::seed_from_u64(9);
        let mut both = 0;
        for _ in 0..2000 {
            let got = select(&cands, 2, GIB, &none(), &mut rng).unwrap();
            if group_of[&got[0]] != group_of[&got[1]] {
                both += 1;
            }
        }
        // Without the penalty the share would be 5/9 ≈ 0.56; with it 5 / 5.5 ≈ 0.91.
        assert!(both > 1700, "both groups in {both} of 2000 draws");
        // Same-group providers remain usable when there are not enough groups.
        let got = select(&cands, 10, GIB, &none(), &mut rng).unwrap();
        assert_eq!(got.len(), 10);
    }

    #[test]
    fn deterministic_for_a_seed_whatever_the_input_order() {
        let cands: Vec<Candidate> =
            (0..12).map(|i| cand(&format!("g{}", i % 3), (i as u64 + 1) * GIB, i as u128)).collect();
        let mut reversed = cands.clone();
        reversed.reverse();
        for seed in 0..50 {
            let a = select(&cands, 5, GIB, &none(), &mut StdRng::seed_from_u64(seed)).unwrap();
            let b = select(&reversed, 5, GIB, &none(), &mut StdRng::seed_from_u64(seed)).unwrap();
            assert_eq!(a, b);
        }
    }

    #[test]
    fn groups_come_from_the_first_routable_address() {
        let peer = PeerId::random();
        let with = |addrs: &[&str]| Availability {
            peer_id: peer,
            address: String::new(),
            listen_addrs: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            free_bytes: 1,
            stored_bytes: 0,
            gpus: vec![],
            price_per_gib_month: 2,
            version: String::new(),
            timestamp: 0,
        };
        let group = |addrs: &[&str]| Candidate::from_announcement(&with(addrs)).group;
        assert_eq!(group(&["/ip4/127.0.0.1/tcp/1", "/ip4/203.0.113.77/tcp/1"]), "ip4:203.0.113.0/24");
        assert_eq!(
            group(&["/ip4/0.0.0.0/tcp/1", "/ip6/2001:db8:aa:bb::1/udp/1/quic-v1"]),
            "ip6:2001:db8:aa::/48"
        );
        assert_eq!(group(&["/ip6/::ffff:198.51.100.9/tcp/1"]), "ip4:198.51.100.0/24");
        assert_eq!(group(&["/dns4/example.com/tcp/1", "/ip4/192.0.2.1/tcp/1"]), "ip4:192.0.2.0/24");
        let local = format!("peer:{peer}");
        assert_eq!(group(&["/ip4/127.0.0.1/tcp/1", "/ip6/::1/tcp/1", "/ip6/::/tcp/1"]), local);
        assert_eq!(group(&[]), local);
        let c = Candidate::from_announcement(&with(&[]));
        assert_eq!((c.peer, c.free_bytes, c.price_per_gib_month), (peer, 1, 2));
    }
}
