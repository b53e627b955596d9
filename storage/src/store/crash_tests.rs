//! Crash safety of held shards: an interrupted `put_shard` or `remove_shard` is finished or rolled
//! back by the next open, leaving exact accounting and no orphan blocks.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use super::{PutParams, Store, StoreConfig};
use crate::manifest::{Manifest, ObjectId};

fn open(dir: &std::path::Path) -> Store {
    Store::open(&StoreConfig {
        path: dir.join("db"),
        capacity: u64::MAX,
        block_size: 4096,
        cache_bytes: 16 << 20,
        disk_reserve: 0,
    })
    .unwrap()
}

/// A manifest and its shard 1, made by a whole-object put into a scratch store.
fn shard_source(dir: &std::path::Path) -> (Manifest, Vec<u8>) {
    let store = open(&dir.join("source"));
    let bytes = crate::bench::pseudo_random(100_000, 7);
    let p = PutParams { data: 3, parity: 2, stripe_size: 3 * 8192, segment_size: 256 };
    let r = store.put(&mut &bytes[..], bytes.len() as u64, p, &mut |_| {}).unwrap();
    let id = ObjectId::from_hex(&r.id).unwrap();
    let m = store.manifest(&id).unwrap();
    let len = m.geometry.shard_len();
    (m, store.read_shard(&id, 1, 0, len).unwrap())
}

fn assert_clean(store: &Store, used: u64, shards: u64) {
    let u = store.usage().unwrap();
    assert_eq!((u.used_bytes, u.shards), (used, shards), "{u:?}");
    let v = store.verify(None).unwrap();
    assert!(v.ok && v.orphan_blocks == 0, "{v:?}");
    assert!(store.pending.is_empty());
}

#[test]
fn interrupted_put_shard_is_rolled_back_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let (manifest, shard) = shard_source(dir.path());
    let id = manifest.object_id();
    {
        let store = open(dir.path());
        // Everything put_shard does before its commit, then a "crash".
        let handle = store.begin().unwrap();
        let height = store.block_height(&manifest.geometry);
        let root = store.write_shard(handle, &id, 1, &shard, &manifest.geometry, height).unwrap();
        assert_eq!(root, manifest.shard_roots[1]);
        assert!(!store.blocks.is_empty());
        store.flush().unwrap();
    }
    let store = open(dir.path());
    assert!(store.blocks.is_empty() && store.shards.is_empty());
    assert!(!store.has_shard(&id, 1).unwrap());
    assert!(store.list_shards().unwrap().is_empty());
    assert_clean(&store, 0, 0);
    // The shard can be stored normally afterwards.
    assert!(!store.put_shard(&manifest, 1, &shard).unwrap().deduplicated);
    assert_clean(&store, shard.len() as u64, 1);
}

#[test]
fn interrupted_remove_shard_is_finished_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let (manifest, shard) = shard_source(dir.path());
    let id = manifest.object_id();
    {
        let store = open(dir.path());
        store.put_shard(&manifest, 1, &shard).unwrap();
        // The unlinking transaction commits, then a "crash" before the data is deleted.
        store.unlink_shard(&id, 1).unwrap();
        store.flush().unwrap();
        assert!(!store.blocks.is_empty());
    }
    let store = open(dir.path());
    assert!(store.blocks.is_empty() && store.shards.is_empty());
    assert!(store.manifest(&id).is_err());
    assert_clean(&store, 0, 0);
}
