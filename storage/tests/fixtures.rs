//! Shared Merkle fixtures: the contract tests (chain issue) must agree with these bit for bit.
//! The file is regenerated when `BIGFILE_WRITE_FIXTURES=1`; otherwise this test fails if the
//! committed file no longer matches what the Rust rules compute.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use bigfile_storage::merkle::{self, Hash};

fn hex(b: &[u8]) -> String {
    let mut s = String::from("0x");
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

fn shard(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn case(len: usize, segment_size: u32, seed: u8) -> serde_json::Value {
    let data = shard(len, seed);
    let root = merkle::shard_root(&data, segment_size);
    let depth = merkle::tree_depth(len as u64, segment_size);
    let n = merkle::leaf_count(len as u64, segment_size);
    let roots: Vec<Hash> =
        data.chunks(segment_size as usize).map(|s| merkle::leaf_hash(s, segment_size as usize)).collect();
    let mut proofs = Vec::new();
    for index in [0, n / 2, n.saturating_sub(1)]
        .into_iter()
        .filter(|i| *i < n)
        .collect::<std::collections::BTreeSet<_>>()
    {
        // Blocks of one segment: the proof path is then the whole tree path.
        let block = &data[(index * u64::from(segment_size)) as usize
            ..((index + 1) * u64::from(segment_size)).min(len as u64) as usize];
        let p = merkle::prove_segment(index, block, 0, &roots, len as u64, segment_size).unwrap();
        assert!(p.verify(&root, len as u64, segment_size));
        proofs.push(serde_json::json!({
            "index": index,
            "segment": hex(&p.segment),
            "siblings": p.siblings.iter().map(|s| hex(s)).collect::<Vec<_>>(),
        }));
    }
    serde_json::json!({
        "shard_len": len,
        "segment_size": segment_size,
        "depth": depth,
        "shard": hex(&data),
        "root": hex(&root),
        "proofs": proofs,
    })
}

#[test]
fn committed_fixtures_match_the_rules() {
    let doc = serde_json::json!({
        "description": "BigFile shard Merkle commitments: leaf = keccak256(0x00 || segment zero-padded to segment_size); node = keccak256(0x01 || left || right); empty leaf = bytes32(0); depth = ceil(log2(ceil(shard_len / segment_size))); siblings bottom-up, running hash on the left iff the index bit is 0.",
        "empty_leaf": hex(&merkle::EMPTY_LEAF),
        "cases": [case(0, 32, 0), case(1, 32, 1), case(32, 32, 2), case(33, 32, 3), case(1000, 64, 4), case(4096, 1024, 5), case(5000, 1024, 6)],
    });
    let text = serde_json::to_string_pretty(&doc).unwrap() + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/merkle-v1.json");
    if std::env::var_os("BIGFILE_WRITE_FIXTURES").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let committed = std::fs::read_to_string(&path)
        .expect("fixtures/merkle-v1.json (regenerate with BIGFILE_WRITE_FIXTURES=1)");
    assert!(committed == text, "fixtures/merkle-v1.json is stale: the Merkle rules changed");
}
