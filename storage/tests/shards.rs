//! Held shards on real sled files: moving shards between stores, verification before commit,
//! proofs, accounting, persistence, removal, dedup, scrub and capacity.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use bigfile_storage::merkle;
use bigfile_storage::{Manifest, ObjectId, PutParams, Store, StoreConfig, StoreError};

const BLOCK: u64 = 64 << 10;

fn open_at(path: &std::path::Path, capacity: u64) -> Store {
    Store::open(&StoreConfig {
        path: path.to_owned(),
        capacity,
        block_size: BLOCK as u32,
        cache_bytes: 64 << 20,
        disk_reserve: 0,
    })
    .unwrap()
}

fn data(len: usize, seed: u64) -> Vec<u8> {
    bigfile_storage::bench::pseudo_random(len, seed)
}

/// Stores a whole object (k = 4, m = 2, shards of several blocks with a short last one) in a
/// fresh store; returns the store, the manifest and every shard as read back from it.
fn source(dir: &std::path::Path, len: usize, seed: u64) -> (Store, Manifest, Vec<Vec<u8>>) {
    let store = open_at(&dir.join("a"), u64::MAX);
    let bytes = data(len, seed);
    let p = PutParams { data: 4, parity: 2, stripe_size: 1 << 20, segment_size: 1024 };
    let r = store.put(&mut &bytes[..], bytes.len() as u64, p, &mut |_| {}).unwrap();
    let id = ObjectId::from_hex(&r.id).unwrap();
    let manifest = store.manifest(&id).unwrap();
    let shard_len = manifest.geometry.shard_len();
    let shards: Vec<Vec<u8>> = (0..manifest.geometry.total_shards() as u16)
        .map(|i| store.read_shard(&id, i, 0, shard_len).unwrap())
        .collect();
    (store, manifest, shards)
}

fn assert_consistent(store: &Store) {
    let v = store.verify(None).unwrap();
    assert!(v.ok && v.orphan_blocks == 0, "{v:?}");
}

#[test]
fn shards_move_between_stores_and_read_back_identically() {
    let dir = tempfile::tempdir().unwrap();
    let (a, manifest, shards) = source(dir.path(), 3 << 20 | 4321, 1);
    let id = manifest.object_id();
    let g = manifest.geometry;
    let len = g.shard_len();
    assert!(len > 3 * BLOCK && len % BLOCK != 0, "want several blocks and a short last one");
    // What A serves is exactly the committed shard.
    for (i, s) in shards.iter().enumerate() {
        assert_eq!(s.len() as u64, len);
        assert_eq!(merkle::shard_root(s, g.segment_size), manifest.shard_roots[i]);
    }
    assert_eq!(a.held_shards(&id).unwrap(), (0..6).collect::<Vec<u16>>());
    assert!(a.has_shard(&id, 5).unwrap() && !a.has_shard(&id, 6).unwrap());
    assert!(a.list_shards().unwrap().is_empty());

    let b = open_at(&dir.path().join("b"), u64::MAX);
    let c = open_at(&dir.path().join("c"), u64::MAX);
    for i in [5u16, 0] {
        let r = b.put_shard(&manifest, i, &shards[usize::from(i)]).unwrap();
        assert!(!r.deduplicated && r.len == len && r.index == i && r.object == id.to_hex(), "{r:?}");
    }
    for i in 1..5u16 {
        assert!(!c.put_shard(&manifest, i, &shards[usize::from(i)]).unwrap().deduplicated);
    }

    for (store, held) in [(&b, vec![0u16, 5]), (&c, vec![1, 2, 3, 4])] {
        assert_eq!(store.held_shards(&id).unwrap(), held);
        for i in 0..6u16 {
            assert_eq!(store.has_shard(&id, i).unwrap(), held.contains(&i), "shard {i}");
        }
        for &i in &held {
            assert!(store.read_shard(&id, i, 0, len).unwrap() == shards[usize::from(i)]);
        }
        let listed: Vec<(String, u16, u64)> =
            store.list_shards().unwrap().into_iter().map(|s| (s.object, s.index, s.len)).collect();
        assert_eq!(listed, held.iter().map(|i| (id.to_hex(), *i, len)).collect::<Vec<_>>());
        // Held shards are not whole objects, but the manifest is known.
        assert!(!store.contains(&id).unwrap() && store.list().unwrap().is_empty());
        assert_eq!(store.manifest(&id).unwrap(), manifest);
        let u = store.usage().unwrap();
        assert_eq!((u.used_bytes, u.shards, u.objects), (held.len() as u64 * len, held.len() as u64, 0));
        assert_consistent(store);
    }

    // Ranged reads: across a block boundary, the last byte, and nothing.
    let s5 = &shards[5];
    let off = BLOCK - 100;
    assert!(
        b.read_shard(&id, 5, off, 3 * BLOCK).unwrap()[..] == s5[off as usize..(off + 3 * BLOCK) as usize]
    );
    assert_eq!(b.read_shard(&id, 5, len - 1, 1).unwrap(), s5[s5.len() - 1..]);
    assert!(b.read_shard(&id, 5, len, 0).unwrap().is_empty());
    for (off, n) in [(len - 10, 11), (len + 1, 0), (u64::MAX, 2)] {
        let e = b.read_shard(&id, 5, off, n).unwrap_err();
        assert!(matches!(e, StoreError::Params(_)) && e.to_string().contains("past the end"), "{e}");
    }
    // Shards not held, shards that do not exist, objects not known.
    assert!(matches!(b.read_shard(&id, 1, 0, 1), Err(StoreError::ShardNotHeld { index: 1, .. })));
    assert!(matches!(b.read_shard(&id, 6, 0, 1), Err(StoreError::Params(_))));
    let unknown = ObjectId([7; 32]);
    assert!(matches!(b.read_shard(&unknown, 0, 0, 1), Err(StoreError::NotFound(_))));
    assert!(b.held_shards(&unknown).unwrap().is_empty() && !b.has_shard(&unknown, 0).unwrap());
}

#[test]
fn segment_proofs_from_held_shards_verify_against_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let (_a, manifest, shards) = source(dir.path(), 2 << 20 | 99, 2);
    let id = manifest.object_id();
    let g = manifest.geometry;
    let b = open_at(&dir.path().join("b"), u64::MAX);
    b.put_shard(&manifest, 3, &shards[3]).unwrap();
    let n = merkle::leaf_count(g.shard_len(), g.segment_size);
    for index in [0, 1, 63, 64, n / 2, n - 1] {
        let p = b.prove_segment(&id, 3, index).unwrap();
        assert!(p.verify(&manifest.shard_roots[3], g.shard_len(), g.segment_size), "segment {index}");
        assert!(!p.verify(&manifest.shard_roots[2], g.shard_len(), g.segment_size));
        let seg = g.segment_size as usize;
        let start = index as usize * seg;
        assert_eq!(
            p.segment[..seg.min(shards[3].len() - start)],
            shards[3][start..(start + seg).min(shards[3].len())]
        );
    }
    assert!(b.prove_segment(&id, 3, n).is_err());
    assert!(matches!(b.prove_segment(&id, 2, 0), Err(StoreError::ShardNotHeld { index: 2, .. })));
    assert!(matches!(b.prove_segment(&id, 6, 0), Err(StoreError::Params(_))));
}

#[test]
fn bad_shards_are_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (_a, manifest, shards) = source(dir.path(), 1 << 20 | 7, 3);
    let id = manifest.object_id();
    let len = manifest.geometry.shard_len();
    let b = open_at(&dir.path().join("b"), u64::MAX);
    let before = b.usage().unwrap();
    let unchanged = |b: &Store| {
        assert_eq!(b.usage().unwrap(), before);
        assert!(b.list_shards().unwrap().is_empty());
        assert!(!b.has_shard(&id, 1).unwrap() && b.held_shards(&id).unwrap().is_empty());
        assert!(matches!(b.manifest(&id), Err(StoreError::NotFound(_))));
        assert_consistent(b);
    };

    // One byte flipped anywhere, including the last block.
    for at in [0, len as usize / 2, len as usize - 1] {
        let mut bad = shards[1].clone();
        bad[at] ^= 1;
        let e = b.put_shard(&manifest, 1, &bad).unwrap_err();
        assert!(
            matches!(&e, StoreError::ShardRootMismatch { index: 1, object } if *object == id.to_hex()),
            "{e}"
        );
        unchanged(&b);
    }
    // The right shard under the wrong index.
    assert!(matches!(
        b.put_shard(&manifest, 2, &shards[1]),
        Err(StoreError::ShardRootMismatch { index: 2, .. })
    ));
    unchanged(&b);

    // Wrong length: the error names both lengths.
    for n in [len as usize - 1, len as usize + 1, 0] {
        let mut d = shards[1].clone();
        d.resize(n, 0);
        let e = b.put_shard(&manifest, 1, &d).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, StoreError::Params(_)), "{e}");
        assert!(msg.contains(&len.to_string()) && msg.contains(&n.to_string()), "{msg}");
    }
    // No such shard index; a manifest whose root list does not match k + m.
    let e = b.put_shard(&manifest, 6, &shards[1]).unwrap_err();
    assert!(matches!(e, StoreError::Params(_)) && e.to_string().contains('6'), "{e}");
    let mut short = manifest.clone();
    short.shard_roots.pop();
    assert!(matches!(b.put_shard(&short, 1, &shards[1]), Err(StoreError::Params(_))));
    let mut bad_geometry = manifest.clone();
    bad_geometry.geometry.data = 0;
    assert!(matches!(b.put_shard(&bad_geometry, 1, &shards[1]), Err(StoreError::Params(_))));
    unchanged(&b);
}

#[test]
fn capacity_is_enforced_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let (_a, manifest, shards) = source(dir.path(), 1 << 20, 4);
    let id = manifest.object_id();
    let len = manifest.geometry.shard_len();
    let b = open_at(&dir.path().join("b"), 2 * len - 1);
    b.put_shard(&manifest, 0, &shards[0]).unwrap();
    let e = b.put_shard(&manifest, 1, &shards[1]).unwrap_err();
    assert!(
        matches!(e, StoreError::Capacity { needed, free, .. } if needed == len && free == len - 1),
        "{e}"
    );
    assert!(!b.has_shard(&id, 1).unwrap());
    assert_eq!(b.usage().unwrap().used_bytes, len);
    assert_eq!(b.usage().unwrap().free_bytes, len - 1);
    // A shard already held is no new bytes: dedup does not need room.
    assert!(b.put_shard(&manifest, 0, &shards[0]).unwrap().deduplicated);
    assert_consistent(&b);
}

#[test]
fn held_shards_persist_and_removal_frees_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (_a, manifest, shards) = source(dir.path(), 1 << 20 | 555, 5);
    let id = manifest.object_id();
    let len = manifest.geometry.shard_len();
    let path = dir.path().join("b");
    {
        let b = open_at(&path, u64::MAX);
        b.put_shard(&manifest, 2, &shards[2]).unwrap();
        b.put_shard(&manifest, 4, &shards[4]).unwrap();
    }
    let b = open_at(&path, u64::MAX);
    assert_eq!(b.held_shards(&id).unwrap(), vec![2, 4]);
    assert!(b.read_shard(&id, 4, 0, len).unwrap() == shards[4]);
    assert_eq!(b.manifest(&id).unwrap(), manifest);
    let u = b.usage().unwrap();
    assert_eq!((u.used_bytes, u.shards), (2 * len, 2));
    assert_consistent(&b);

    assert_eq!(b.remove_shard(&id, 2).unwrap(), len);
    let u = b.usage().unwrap();
    assert_eq!((u.used_bytes, u.shards), (len, 1));
    assert!(!b.has_shard(&id, 2).unwrap());
    assert!(matches!(b.remove_shard(&id, 2), Err(StoreError::ShardNotHeld { index: 2, .. })));
    // Another shard still refers to the manifest.
    assert_eq!(b.manifest(&id).unwrap(), manifest);
    assert_consistent(&b);

    assert_eq!(b.remove_shard(&id, 4).unwrap(), len);
    assert!(matches!(b.manifest(&id), Err(StoreError::NotFound(_))));
    assert!(b.list_shards().unwrap().is_empty());
    assert_eq!(b.usage().unwrap().used_bytes, 0);
    drop(b);
    let b = open_at(&path, u64::MAX);
    let u = b.usage().unwrap();
    assert_eq!((u.used_bytes, u.shards), (0, 0));
    assert!(b.held_shards(&id).unwrap().is_empty());
    assert_consistent(&b);
}

#[test]
fn held_shards_and_whole_objects_share_manifests_and_dedup() {
    let dir = tempfile::tempdir().unwrap();
    let (a, manifest, shards) = source(dir.path(), 700_001, 6);
    let id = manifest.object_id();
    let len = manifest.geometry.shard_len();

    // A holds the whole object: every shard is a dedup, no bytes added, still checked.
    let before = a.usage().unwrap();
    let r = a.put_shard(&manifest, 3, &shards[3]).unwrap();
    assert!(r.deduplicated && r.len == len);
    assert_eq!(a.usage().unwrap(), before);
    assert!(a.list_shards().unwrap().is_empty());
    let mut bad = shards[3].clone();
    bad[10] ^= 0x80;
    assert!(matches!(a.put_shard(&manifest, 3, &bad), Err(StoreError::ShardRootMismatch { .. })));
    // Removing a shard of a whole object is not how whole objects go.
    assert!(matches!(a.remove_shard(&id, 3), Err(StoreError::ShardNotHeld { .. })));

    // B holds one shard; storing it again is a dedup.
    let b = open_at(&dir.path().join("b"), u64::MAX);
    b.put_shard(&manifest, 1, &shards[1]).unwrap();
    let u = b.usage().unwrap();
    assert!(b.put_shard(&manifest, 1, &shards[1]).unwrap().deduplicated);
    assert!(matches!(b.put_shard(&manifest, 1, &bad), Err(StoreError::ShardRootMismatch { .. })));
    assert_eq!(b.usage().unwrap(), u);

    // B then gets the whole object too; removing it keeps the manifest the held shard needs.
    let bytes = data(700_001, 6);
    let p = PutParams { data: 4, parity: 2, stripe_size: 1 << 20, segment_size: 1024 };
    assert!(!b.put(&mut &bytes[..], bytes.len() as u64, p, &mut |_| {}).unwrap().deduplicated);
    assert_eq!(b.held_shards(&id).unwrap(), (0..6).collect::<Vec<u16>>());
    assert_eq!(b.usage().unwrap().used_bytes, 7 * len);
    assert_consistent(&b);
    assert_eq!(b.remove(&id).unwrap(), 6 * len);
    assert_eq!(b.manifest(&id).unwrap(), manifest);
    assert_eq!(b.held_shards(&id).unwrap(), vec![1]);
    assert!(b.read_shard(&id, 1, 0, len).unwrap() == shards[1]);
    assert_eq!(b.usage().unwrap().used_bytes, len);
    assert_consistent(&b);
    assert_eq!(b.remove_shard(&id, 1).unwrap(), len);
    assert!(matches!(b.manifest(&id), Err(StoreError::NotFound(_))));
    assert_consistent(&b);
}

#[test]
fn empty_shards_are_held_too() {
    let dir = tempfile::tempdir().unwrap();
    let (_a, manifest, shards) = source(dir.path(), 0, 0);
    let id = manifest.object_id();
    assert_eq!(manifest.geometry.shard_len(), 0);
    let b = open_at(&dir.path().join("b"), u64::MAX);
    assert!(!b.put_shard(&manifest, 0, &shards[0]).unwrap().deduplicated);
    assert!(b.has_shard(&id, 0).unwrap());
    assert!(b.read_shard(&id, 0, 0, 0).unwrap().is_empty());
    assert!(b.prove_segment(&id, 0, 0).is_err());
    assert_eq!(b.usage().unwrap().shards, 1);
    assert_consistent(&b);
    assert_eq!(b.remove_shard(&id, 0).unwrap(), 0);
    assert_eq!(b.usage().unwrap().shards, 0);
    assert_consistent(&b);
}

#[test]
fn damaged_held_shards_are_reported_by_scrub_and_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let (_a, manifest, shards) = source(dir.path(), 2 << 20 | 1, 7);
    let id = manifest.object_id();
    let g = manifest.geometry;
    let len = g.shard_len();
    let blocks_per_shard = len.div_ceil(BLOCK);
    let path = dir.path().join("b");
    let b = open_at(&path, u64::MAX);
    for i in [0u16, 2, 4] {
        b.put_shard(&manifest, i, &shards[usize::from(i)]).unwrap();
    }
    // B also holds another object whole, so scrub repairs there and reports here in one walk.
    let other = data(1 << 20, 8);
    let p = PutParams { data: 4, parity: 2, stripe_size: 256 << 10, segment_size: 1024 };
    let other_id = ObjectId::from_hex(&b.put(&mut &other[..], 1 << 20, p, &mut |_| {}).unwrap().id).unwrap();
    let other_blocks = 6 * (256u64 << 10).div_ceil(BLOCK);

    assert_eq!(b.damage_shard(&id, 2, true).unwrap(), blocks_per_shard);
    assert_eq!(b.damage_shard(&id, 4, false).unwrap(), blocks_per_shard);
    assert_eq!(b.damage_shard(&other_id, 1, true).unwrap(), 4);

    for i in [2u16, 4] {
        let e = b.read_shard(&id, i, 0, len).unwrap_err();
        assert!(
            matches!(&e, StoreError::DamagedBlock { shard, block: 0, object, .. } if *shard == i && *object == id.to_hex()),
            "{e}"
        );
        let e = b.read_shard(&id, i, BLOCK + 5, 10).unwrap_err();
        assert!(matches!(e, StoreError::DamagedBlock { block: 1, .. }), "{e}");
        assert!(matches!(b.prove_segment(&id, i, 0), Err(StoreError::DamagedBlock { block: 0, .. })));
    }
    assert!(b.read_shard(&id, 0, 0, len).unwrap() == shards[0]);
    let v = b.verify(None).unwrap();
    assert!(!v.ok && v.bad_blocks.len() as u64 == 2 * blocks_per_shard + 4, "{v:?}");

    // A resumable scrub across a restart: every block once, held damage unrepairable.
    let first = b.scrub_step(3 * BLOCK).unwrap();
    assert!(!first.pass_complete);
    drop(b);
    let b = open_at(&path, u64::MAX);
    let rest = b.scrub_pass(None, &|| false, &mut |_| {}).unwrap();
    assert!(rest.pass_complete);
    // Deleted blocks are not in the walk; corrupt ones are.
    assert_eq!(first.blocks + rest.blocks, 2 * blocks_per_shard + other_blocks);
    assert_eq!(first.damaged + rest.damaged, blocks_per_shard + 4);
    assert_eq!(first.unrepairable + rest.unrepairable, blocks_per_shard);
    assert_eq!(first.repaired + rest.repaired, 4);
    let counts = b.scrub_stats().snapshot();
    assert_eq!(counts.unrepairable, rest.unrepairable);

    // Nothing was deleted: the shards are still held and still refused on read.
    assert_eq!(b.held_shards(&id).unwrap(), vec![0, 2, 4]);
    assert_eq!(b.usage().unwrap().used_bytes, 3 * len + 6 * (256 << 10));
    assert!(b.read_shard(&id, 2, 0, len).is_err());
    let mut out = Vec::new();
    b.get(&other_id, &mut out, &mut |_| {}).unwrap();
    assert!(out == other);
    // Dropping the damaged shards leaves a consistent store.
    b.remove_shard(&id, 2).unwrap();
    b.remove_shard(&id, 4).unwrap();
    assert_consistent(&b);
}

#[test]
fn agent_trees_live_in_the_same_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b");
    {
        let b = open_at(&path, u64::MAX);
        let t = b.agent_tree("holders").unwrap();
        t.insert(b"k", b"v").unwrap();
        b.flush().unwrap();
        assert!(b.agent_tree("").is_err());
    }
    let b = open_at(&path, u64::MAX);
    assert_eq!(b.agent_tree("holders").unwrap().get(b"k").unwrap().unwrap(), b"v");
    assert!(b.agent_tree("leases").unwrap().is_empty());
    assert_eq!(b.usage().unwrap().used_bytes, 0);
    assert_consistent(&b);
}
