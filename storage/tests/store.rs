//! Store behaviour on real sled files: round trips, reconstruction, repair, scrub, accounting.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use bigfile_storage::{ObjectId, PutParams, Store, StoreConfig, StoreError};
use proptest::prelude::*;

fn open(dir: &std::path::Path, capacity: u64) -> Store {
    Store::open(&StoreConfig {
        path: dir.join("db"),
        capacity,
        block_size: 64 << 10,
        cache_bytes: 64 << 20,
        disk_reserve: 0,
    })
    .unwrap()
}

fn data(len: usize, seed: u64) -> Vec<u8> {
    bigfile_storage::bench::pseudo_random(len, seed)
}

fn params(k: u16, m: u16, stripe: u32) -> PutParams {
    PutParams { data: k, parity: m, stripe_size: stripe, segment_size: 1024 }
}

fn put(store: &Store, bytes: &[u8], p: PutParams) -> ObjectId {
    let r = store.put(&mut &bytes[..], bytes.len() as u64, p, &mut |_| {}).unwrap();
    ObjectId::from_hex(&r.id).unwrap()
}

fn get(store: &Store, id: &ObjectId) -> (Vec<u8>, bigfile_storage::GetReport) {
    let mut out = Vec::new();
    let r = store.get(id, &mut out, &mut |_| {}).unwrap();
    (out, r)
}

#[test]
fn round_trips_at_the_edges() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), u64::MAX);
    let mut x = 0x9E37_79B9u64;
    let mut objects = 0;
    for round in 0..4u64 {
        // A fresh random k and m each round.
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let k = 1 + (x >> 33) as u16 % 16;
        let m = 1 + (x >> 17) as u16 % 6;
        let stripe = 4096 * u32::from(k) * (1 + round as u32);
        let s = stripe as usize;
        for (i, len) in [0usize, 1, s - 1, s, s + 1, 3 * s + 17].into_iter().enumerate() {
            let bytes = data(len, round * 100 + i as u64);
            let id = put(&store, &bytes, params(k, m, stripe));
            let (back, report) = get(&store, &id);
            assert!(back == bytes, "len {len} k {k} m {m}");
            assert!(report.damaged.is_empty());
            objects += 1;
        }
    }
    let v = store.verify(None).unwrap();
    assert!(v.ok, "{v:?}");
    // The empty object is the same for equal k, m and stripe; others are distinct.
    assert!(v.counted_objects >= objects - 4, "{v:?}");
}

#[test]
fn large_object_round_trip_and_loss_of_m_shards() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), u64::MAX);
    let bytes = data(64 << 20 | 12345, 99);
    let id = put(&store, &bytes, params(10, 4, 1 << 20));
    for shard in [0u16, 3, 7, 12] {
        store.damage_shard(&id, shard, shard % 2 == 0).unwrap();
    }
    assert!(!store.verify(Some(&id)).unwrap().ok);
    let (back, report) = get(&store, &id);
    assert!(back == bytes, "reconstructed object differs");
    assert!(report.stripes_reconstructed > 0);
    let shards: std::collections::BTreeSet<u16> = report.damaged.iter().map(|d| d.shard).collect();
    // The read needed parity, so it met (and repaired) every damaged shard.
    assert_eq!(shards, [0u16, 3, 7, 12].into_iter().collect());
    assert!(report.damaged.iter().all(|d| d.repaired));
    let scrub = store.scrub_pass(None, &|| false, &mut |_| {}).unwrap();
    assert!(scrub.damaged == 0 && scrub.pass_complete, "{scrub:?}");
    let v = store.verify(None).unwrap();
    assert!(v.ok, "{v:?}");
}

#[test]
fn more_than_m_losses_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), u64::MAX);
    let bytes = data(300_000, 5);
    let id = put(&store, &bytes, params(3, 2, 30_000));
    for s in 0..3 {
        store.damage_shard(&id, s, false).unwrap();
    }
    let mut out = Vec::new();
    let e = store.get(&id, &mut out, &mut |_| {}).unwrap_err();
    assert!(matches!(e, StoreError::Unrecoverable { good: 2, needed: 3, .. }), "{e}");
}

#[test]
fn capacity_is_enforced_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), 1_000_000);
    let first = data(400_000, 1);
    let id = put(&store, &first, params(4, 2, 64 << 10));
    let used = store.usage().unwrap().used_bytes;
    assert_eq!(used, 600_000);
    let e = store.put(&mut &data(400_000, 2)[..], 400_000, params(4, 2, 64 << 10), &mut |_| {}).unwrap_err();
    assert!(matches!(e, StoreError::Capacity { needed: 600_000, free: 400_000, .. }), "{e}");
    assert_eq!(store.usage().unwrap().used_bytes, used);
    assert_eq!(get(&store, &id).0, first);
    assert!(store.verify(None).unwrap().ok);
}

#[test]
fn short_input_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), u64::MAX);
    let bytes = data(100_000, 3);
    let e = store.put(&mut &bytes[..], 200_000, params(4, 2, 64 << 10), &mut |_| {}).unwrap_err();
    assert!(matches!(e, StoreError::Input(_)), "{e}");
    let v = store.verify(None).unwrap();
    assert!(v.ok && v.counted_objects == 0 && v.recorded_used_bytes == 0, "{v:?}");
}

#[test]
fn accounting_survives_reopen_and_remove() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b);
    {
        let store = open(dir.path(), u64::MAX);
        a = put(&store, &data(200_000, 1), params(2, 1, 64 << 10));
        b = put(&store, &data(50_000, 2), params(5, 3, 50_000));
        // Same bytes and parameters: same id, nothing new stored.
        let again = store.put(&mut &data(50_000, 2)[..], 50_000, params(5, 3, 50_000), &mut |_| {}).unwrap();
        assert!(again.deduplicated);
    }
    let store = open(dir.path(), u64::MAX);
    let u = store.usage().unwrap();
    assert_eq!(u.objects, 2);
    assert_eq!(u.used_bytes, 300_000 + 8 * 10_000);
    assert_eq!(store.remove(&a).unwrap(), 300_000);
    assert_eq!(store.usage().unwrap().used_bytes, 80_000);
    assert!(matches!(store.get(&a, &mut Vec::new(), &mut |_| {}), Err(StoreError::NotFound(_))));
    assert_eq!(get(&store, &b).0, data(50_000, 2));
    assert!(store.verify(None).unwrap().ok);
}

#[test]
fn scrub_resumes_from_its_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), u64::MAX);
    let id = put(&store, &data(2 << 20, 8), params(4, 2, 256 << 10));
    store.damage_shard(&id, 5, true).unwrap();
    let first = store.scrub_step(200 << 10).unwrap();
    assert!(!first.pass_complete);
    drop(store);
    let store = open(dir.path(), u64::MAX);
    let rest = store.scrub_pass(None, &|| false, &mut |_| {}).unwrap();
    assert!(rest.pass_complete);
    // Every block is visited exactly once across the restart.
    let total_blocks = 6 * (512u64 << 10).div_ceil(64 << 10);
    assert_eq!(first.blocks + rest.blocks, total_blocks);
    assert_eq!(first.repaired + rest.repaired, 8);
    assert!(store.verify(None).unwrap().ok);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]
    #[test]
    fn any_m_erasures_are_survived(k in 1u16..12, m in 1u16..6, len in 0usize..200_000, seed in any::<u64>(),
                                   pick in any::<u64>(), corrupt in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), u64::MAX);
        let bytes = data(len, seed);
        let id = put(&store, &bytes, params(k, m, 4096 * u32::from(k)));
        // Destroy m distinct shards chosen by `pick`.
        let mut shards: Vec<u16> = (0..k + m).collect();
        let mut p = pick;
        for i in 0..usize::from(m) {
            let j = i + (p as usize % (shards.len() - i));
            shards.swap(i, j);
            p /= 7;
        }
        for s in &shards[..usize::from(m)] {
            store.damage_shard(&id, *s, corrupt).unwrap();
        }
        let (back, _) = get(&store, &id);
        prop_assert!(back == bytes);
    }
}

#[test]
fn segment_proofs_from_the_store_verify_against_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), u64::MAX);
    let id = put(&store, &data(3 << 20 | 77, 4), params(4, 2, 1 << 20));
    let manifest = store.manifest(&id).unwrap();
    let g = manifest.geometry;
    let n = bigfile_storage::merkle::leaf_count(g.shard_len(), g.segment_size);
    for shard in [0u16, 5] {
        for index in [0, 1, n / 2, n - 1] {
            let p = store.prove_segment(&id, shard, index).unwrap();
            assert!(p.verify(&manifest.shard_roots[usize::from(shard)], g.shard_len(), g.segment_size));
            assert!(!p.verify(&manifest.shard_roots[usize::from(shard) ^ 1], g.shard_len(), g.segment_size));
        }
    }
    assert!(store.prove_segment(&id, 6, 0).is_err());
    assert!(store.prove_segment(&id, 0, n).is_err());
}
