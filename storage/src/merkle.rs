//! Keccak binary Merkle trees over a shard's proof segments.
//!
//! These rules are the contract with the on-chain verifier; change nothing here without changing the
//! Solidity side and the shared fixtures (see the crate docs for the prose specification).

use keccak_asm::{Digest, Keccak256};

/// A 32-byte keccak256 digest.
pub type Hash = [u8; 32];

/// Domain byte prepended to a segment before hashing it into a leaf.
pub const LEAF_DOMAIN: u8 = 0x00;
/// Domain byte prepended to two child hashes before hashing them into a node.
pub const NODE_DOMAIN: u8 = 0x01;
/// The value of a leaf position past the end of the shard.
pub const EMPTY_LEAF: Hash = [0u8; 32];
/// Deepest tree supported: 2^48 segments is far beyond any shard a deal can describe.
pub const MAX_DEPTH: u32 = 48;

/// Plain keccak256 of `data`.
pub fn keccak256(data: &[u8]) -> Hash {
    Keccak256::digest(data).into()
}

/// Leaf hash of one segment: `keccak256(0x00 || segment || zero padding up to segment_size)`.
///
/// `segment` may be shorter than `segment_size` only for the last segment of a shard.
pub fn leaf_hash(segment: &[u8], segment_size: usize) -> Hash {
    debug_assert!(segment.len() <= segment_size);
    let mut h = Keccak256::new();
    h.update([LEAF_DOMAIN]);
    h.update(segment);
    if segment.len() < segment_size {
        const ZEROS: [u8; 1024] = [0u8; 1024];
        let mut left = segment_size - segment.len();
        while left > 0 {
            let n = left.min(ZEROS.len());
            h.update(&ZEROS[..n]);
            left -= n;
        }
    }
    h.finalize().into()
}

/// Inner node hash: `keccak256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 65];
    buf[0] = NODE_DOMAIN;
    buf[1..33].copy_from_slice(left);
    buf[33..].copy_from_slice(right);
    keccak256(&buf)
}

/// Root of an all-empty subtree of `height` (height 0 is [`EMPTY_LEAF`]).
pub fn empty_root(height: u32) -> Hash {
    let mut h = EMPTY_LEAF;
    for _ in 0..height {
        h = node_hash(&h, &h);
    }
    h
}

/// Number of segments (leaves that carry data) in a shard of `shard_len` bytes.
pub fn leaf_count(shard_len: u64, segment_size: u32) -> u64 {
    shard_len.div_ceil(u64::from(segment_size))
}

/// Depth of a shard's tree: the smallest `d` with `2^d >= leaf_count` (0 for zero or one leaf).
pub fn tree_depth(shard_len: u64, segment_size: u32) -> u32 {
    let n = leaf_count(shard_len, segment_size);
    if n <= 1 { 0 } else { 64 - (n - 1).leading_zeros() }
}

/// Folds a row of nodes at `level` up to a single root at `height`, padding with empty subtrees.
///
/// `nodes` are the leftmost nodes of the row; positions past them are empty.
pub fn fold_to_root(mut nodes: Vec<Hash>, level: u32, height: u32) -> Hash {
    debug_assert!(level <= height);
    let mut level = level;
    if nodes.is_empty() {
        return empty_root(height);
    }
    while level < height {
        let pad = empty_root(level);
        let mut next = Vec::with_capacity(nodes.len().div_ceil(2));
        for pair in nodes.chunks(2) {
            let right = pair.get(1).unwrap_or(&pad);
            next.push(node_hash(&pair[0], right));
        }
        nodes = next;
        level += 1;
    }
    debug_assert_eq!(nodes.len(), 1, "row wider than the tree");
    nodes[0]
}

/// Leaf hashes of consecutive segments of `data` (the last one zero-padded).
pub fn leaves(data: &[u8], segment_size: u32) -> Vec<Hash> {
    data.chunks(segment_size as usize).map(|s| leaf_hash(s, segment_size as usize)).collect()
}

/// Root of the subtree of `height` whose leftmost leaves are the segments of `data`.
///
/// This is how a stored block's digest is computed: a block is an aligned run of `2^height`
/// segments of its shard, so its root is a node of the shard's tree.
pub fn subtree_root(data: &[u8], segment_size: u32, height: u32) -> Hash {
    fold_to_root(leaves(data, segment_size), 0, height)
}

/// An inclusion proof of one segment in a shard's tree.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SegmentProof {
    /// Segment index within the shard.
    pub index: u64,
    /// The segment, zero-padded to the full segment size.
    pub segment: Vec<u8>,
    /// Sibling hashes from the leaf level up to just below the root.
    pub siblings: Vec<Hash>,
}

impl SegmentProof {
    /// Checks this proof against `root` for a shard of `shard_len` bytes and `segment_size`.
    ///
    /// Rejects a segment of the wrong length, an index outside the shard and a path of the wrong
    /// length, so a valid proof is only ever accepted for exactly one (root, index, segment).
    pub fn verify(&self, root: &Hash, shard_len: u64, segment_size: u32) -> bool {
        if self.segment.len() != segment_size as usize
            || self.index >= leaf_count(shard_len, segment_size)
            || self.siblings.len() != tree_depth(shard_len, segment_size) as usize
        {
            return false;
        }
        let mut h = leaf_hash(&self.segment, segment_size as usize);
        for (level, sib) in self.siblings.iter().enumerate() {
            h = if (self.index >> level) & 1 == 0 { node_hash(&h, sib) } else { node_hash(sib, &h) };
        }
        &h == root
    }
}

/// Builds the proof of segment `index` from the block that holds it and the shard's block roots.
///
/// `block` holds the data of block `index / 2^block_height` (its last block may be short);
/// `block_roots` are the roots of all the shard's blocks, each a subtree of `block_height`.
/// Only the one block is read, so a proof never needs the whole shard.
pub fn prove_segment(
    index: u64,
    block: &[u8],
    block_height: u32,
    block_roots: &[Hash],
    shard_len: u64,
    segment_size: u32,
) -> Option<SegmentProof> {
    let depth = tree_depth(shard_len, segment_size);
    if index >= leaf_count(shard_len, segment_size) || block_height > depth {
        return None;
    }
    let per_block = 1u64 << block_height;
    let in_block = (index % per_block) as usize;
    let block_no = (index / per_block) as usize;
    let seg = segment_size as usize;
    let start = in_block * seg;
    if start >= block.len() || block_no >= block_roots.len() {
        return None;
    }
    let mut segment = block[start..block.len().min(start + seg)].to_vec();
    segment.resize(seg, 0);

    let mut siblings = Vec::with_capacity(depth as usize);
    // Path inside the block.
    path_in_row(leaves(block, segment_size), 0, block_height, in_block, &mut siblings);
    // Path from the block root up to the shard root.
    path_in_row(block_roots.to_vec(), block_height, depth, block_no, &mut siblings);
    Some(SegmentProof { index, segment, siblings })
}

/// Appends the siblings of `pos` while folding `row` (at `level`) up to `height`.
fn path_in_row(mut row: Vec<Hash>, mut level: u32, height: u32, mut pos: usize, out: &mut Vec<Hash>) {
    while level < height {
        let pad = empty_root(level);
        out.push(*row.get(pos ^ 1).unwrap_or(&pad));
        let mut next = Vec::with_capacity(row.len().div_ceil(2));
        for pair in row.chunks(2) {
            next.push(node_hash(&pair[0], pair.get(1).unwrap_or(&pad)));
        }
        row = next;
        pos /= 2;
        level += 1;
    }
}

/// Root of a whole shard held in memory (reference implementation, used by tests and fixtures).
pub fn shard_root(data: &[u8], segment_size: u32) -> Hash {
    fold_to_root(leaves(data, segment_size), 0, tree_depth(data.len() as u64, segment_size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn keccak_known_vector() {
        // keccak256("") as used by Ethereum.
        assert_eq!(
            keccak256(b""),
            hex_lit("c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470")
        );
    }

    fn hex_lit(s: &str) -> Hash {
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap();
        }
        out
    }

    #[test]
    fn depth_rules() {
        assert_eq!(tree_depth(0, 1024), 0);
        assert_eq!(tree_depth(1, 1024), 0);
        assert_eq!(tree_depth(1024, 1024), 0);
        assert_eq!(tree_depth(1025, 1024), 1);
        assert_eq!(tree_depth(4096, 1024), 2);
        assert_eq!(tree_depth(4097, 1024), 3);
        // 1 GiB shard of 1 KiB segments: 20 levels, so a proof is 1024 + 20*32 = 1664 bytes.
        assert_eq!(tree_depth(1 << 30, 1024), 20);
    }

    #[test]
    fn empty_shard_root_is_empty_leaf() {
        assert_eq!(shard_root(&[], 1024), EMPTY_LEAF);
    }

    #[test]
    fn block_roots_compose_into_shard_root() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let seg = 64;
        let height = 3; // blocks of 8 segments = 512 bytes
        let depth = tree_depth(data.len() as u64, seg);
        let roots: Vec<Hash> = data.chunks(512).map(|b| subtree_root(b, seg, height)).collect();
        assert_eq!(fold_to_root(roots, height, depth), shard_root(&data, seg));
    }

    fn shard_and_proof(len: usize, index: u64) -> (Vec<u8>, Hash, SegmentProof) {
        let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8 ^ 0x5a).collect();
        let seg = 32u32;
        let depth = tree_depth(len as u64, seg);
        let height = 2.min(depth);
        let block = 32 << height;
        let roots: Vec<Hash> = data.chunks(block).map(|b| subtree_root(b, seg, height)).collect();
        let b = (index >> height) as usize;
        let blk = &data[b * block..(b * block + block).min(len)];
        let p = prove_segment(index, blk, height, &roots, len as u64, seg).unwrap();
        (data.clone(), shard_root(&data, seg), p)
    }

    proptest! {
        #[test]
        fn proofs_verify_and_any_change_breaks_them(len in 1usize..3000, idx in any::<u64>(), flip in any::<u16>()) {
            let n = (len as u64).div_ceil(32);
            let index = idx % n;
            let (_, root, p) = shard_and_proof(len, index);
            prop_assert!(p.verify(&root, len as u64, 32));

            // Any changed byte of the segment fails.
            let mut bad = p.clone();
            let i = flip as usize % bad.segment.len();
            bad.segment[i] ^= 1;
            prop_assert!(!bad.verify(&root, len as u64, 32));

            // Any changed byte of the path fails.
            if !p.siblings.is_empty() {
                let mut bad = p.clone();
                let s = flip as usize % bad.siblings.len();
                bad.siblings[s][flip as usize % 32] ^= 0x80;
                prop_assert!(!bad.verify(&root, len as u64, 32));
            }

            // Any changed byte of the root fails.
            let mut bad_root = root;
            bad_root[flip as usize % 32] ^= 1;
            prop_assert!(!p.verify(&bad_root, len as u64, 32));

            // Another index fails (when the shard has more than one segment).
            if n > 1 {
                let mut bad = p.clone();
                bad.index = (index + 1) % n;
                prop_assert!(!bad.verify(&root, len as u64, 32));
            }
        }
    }
}
