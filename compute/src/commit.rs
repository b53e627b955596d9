//! The result commitment: a Merkle root over per-tile digests of the exact output bytes, and the
//! inclusion proof a verifier checks a fetched tile against.
//!
//! ```text
//! digest(tile) = keccak256("bigfile-tile-v1" || index || x || y || width || height || bytes)
//!                (the five numbers as 4-byte big-endian)
//! root         = the storage crate's Merkle tree over the digests as leaves: inner nodes
//!                keccak256(0x01 || left || right), missing leaves zero, depth ceil(log2(tiles))
//! ```
//!
//! The tree shape is the storage proofs' one, so a contract that checks storage paths can check
//! tile paths with the same code.

use bigfile_storage::merkle::{Hash, empty_root, fold_to_root, keccak256, node_hash};

use crate::scene::Tile;

const TILE_DOMAIN: &[u8] = b"bigfile-tile-v1";

/// Digest of one tile's output bytes, bound to its place in the image.
pub fn tile_digest(tile: &Tile, bytes: &[u8]) -> Hash {
    let mut buf = Vec::with_capacity(TILE_DOMAIN.len() + 20 + bytes.len());
    buf.extend_from_slice(TILE_DOMAIN);
    for v in [tile.index, tile.x, tile.y, tile.width, tile.height] {
        buf.extend_from_slice(&v.to_be_bytes());
    }
    buf.extend_from_slice(bytes);
    keccak256(&buf)
}

/// Depth of the tree over `tiles` leaves.
pub fn depth(tiles: usize) -> u32 {
    if tiles <= 1 { 0 } else { usize::BITS - (tiles - 1).leading_zeros() }
}

/// Root over the tile digests, in tile order.
pub fn root(digests: &[Hash]) -> Hash {
    fold_to_root(digests.to_vec(), 0, depth(digests.len()))
}

/// Siblings from leaf `index` up to the root.
pub fn prove(digests: &[Hash], index: usize) -> Option<Vec<Hash>> {
    if index >= digests.len() {
        return None;
    }
    let height = depth(digests.len());
    let mut row = digests.to_vec();
    let mut at = index;
    let mut siblings = Vec::with_capacity(height as usize);
    for level in 0..height {
        let pad = empty_root(level);
        siblings.push(row.get(at ^ 1).copied().unwrap_or(pad));
        row = row.chunks(2).map(|p| node_hash(&p[0], p.get(1).unwrap_or(&pad))).collect();
        at /= 2;
    }
    Some(siblings)
}

/// Whether `digest` sits at `index` under `root` with these `siblings`.
pub fn verify(root_hash: &Hash, digest: &Hash, index: usize, siblings: &[Hash]) -> bool {
    let mut node = *digest;
    let mut at = index;
    for s in siblings {
        node = if at.is_multiple_of(2) { node_hash(&node, s) } else { node_hash(s, &node) };
        at /= 2;
    }
    at == 0 && node == *root_hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tile(index: u32) -> Tile {
        Tile { index, x: index * 8, y: 0, width: 8, height: 8 }
    }

    #[test]
    fn every_tile_proves_against_the_root_and_nothing_else_does() {
        for n in [1usize, 2, 3, 5, 8, 13] {
            let digests: Vec<Hash> = (0..n).map(|i| tile_digest(&tile(i as u32), &[i as u8; 192])).collect();
            let r = root(&digests);
            for (i, d) in digests.iter().enumerate() {
                let path = prove(&digests, i).expect("in range");
                assert_eq!(path.len() as u32, depth(n));
                assert!(verify(&r, d, i, &path), "tile {i} of {n}");
                let forged = tile_digest(&tile(i as u32), &[i as u8 ^ 1; 192]);
                assert!(!verify(&r, &forged, i, &path), "altered bytes of tile {i}");
                if n > 1 {
                    assert!(!verify(&r, d, (i + 1) % n, &path), "tile {i} at another index");
                }
            }
            assert!(prove(&digests, n).is_none());
        }
    }

    #[test]
    fn the_digest_binds_the_tile_position() {
        let bytes = [7u8; 64];
        let a = tile_digest(&Tile { index: 0, x: 0, y: 0, width: 8, height: 8 }, &bytes);
        let b = tile_digest(&Tile { index: 1, x: 8, y: 0, width: 8, height: 8 }, &bytes);
        assert_ne!(a, b);
    }
}
