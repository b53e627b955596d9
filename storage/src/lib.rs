//! The BigFile provider's local shard store: Reed-Solomon erasure coding, keccak Merkle
//! commitments and a crash-safe sled database that never returns a wrong byte.
//!
//! No networking and no chain live here; the agent wires this crate to both.
//!
//! # Objects, stripes and shards
//!
//! An object of `size` bytes is cut into stripes of `stripe_size` bytes (a multiple of `k`; the last
//! stripe may be shorter). Stripe `s` is split into `k` equal pieces of `piece = ceil(len / k)`
//! bytes (the last piece zero-padded) and Reed-Solomon coded over GF(2^8) into `m` parity pieces
//! of the same length. Shard `i` (data shards `0..k`, parity shards `k..k+m`) is the concatenation
//! of piece `i` of every stripe in order, so every shard has the same length:
//! `shard_len = (stripes - 1) * stripe_size / k + ceil(last_stripe_len / k)` (0 for an empty object).
//! Any `k` shards of a stripe rebuild it.
//!
//! # Commitment: the exact hashing and padding rules
//!
//! All hashes are keccak256 (Ethereum's, padding byte 0x01), so a contract checks them cheaply.
//!
//! 1. A shard is cut into segments of `segment_size` bytes, a power of two from 32 to 1024. The last
//!    segment is zero-padded to full size. `n = ceil(shard_len / segment_size)` segments.
//! 2. Leaf `i < n` is `keccak256(0x00 || segment_i)` (1 + segment_size bytes hashed).
//! 3. The tree has depth `d = ceil(log2(n))`, i.e. `2^d` leaf positions; `d = 0` when `n <= 1`.
//!    Positions `n..2^d` are the empty leaf `bytes32(0)`.
//! 4. An inner node is `keccak256(0x01 || left || right)` (65 bytes hashed), for every node,
//!    including nodes over empty positions.
//! 5. The shard root is the node at height `d`. An empty shard (n = 0) has root `bytes32(0)`.
//! 6. A proof of segment `i` is the padded segment and the `d` sibling hashes from the leaf level
//!    upward; at level `j` the running hash is the left input iff bit `j` of `i` is 0. A verifier
//!    must know `shard_len` (from the deal) and require `i < n`, `len(segment) = segment_size`
//!    and exactly `d` siblings.
//!
//! With 1 KiB segments a 1 GiB shard has `d = 20`, so a proof carries 1024 + 20 * 32 = 1664
//! bytes of payload.
//!
//! The manifest (see [`manifest::Manifest::encode`]) lists the `k + m` shard roots; the object id
//! is keccak256 of its canonical encoding.
//!
//! # Blocks: how shards sit in sled
//!
//! sled copes badly with millions of tiny values, so shards are stored as blocks of `block_size`
//! bytes, a power-of-two multiple `2^h` of the segment size. Block `b` holds shard bytes
//! `[b * block_size, (b + 1) * block_size)`; it is therefore an aligned run of `2^h` segments, and
//! its digest is the root of that subtree of the shard tree (height `min(h, d)`). Every read
//! rehashes the block and compares with both the digest stored beside it and the block root in
//! the shard's metadata, whose block roots fold up into the shard root. Hashing is thus done once
//! on the write path, and a segment proof needs only the one block that holds the segment plus the
//! block roots (see [`merkle::prove_segment`]).
//!
//! # Held shards
//!
//! A provider usually holds only some shards of an object. [`Store::put_shard`] stores one shard
//! under a handle of its own, laid out in blocks exactly like a shard of a whole object, after
//! checking that it hashes to the manifest's shard root; [`Store::read_shard`],
//! [`Store::prove_segment`], scrub and verify serve and check it like any other shard, except that
//! a damaged block cannot be rebuilt locally (there are no other shards to rebuild it from).

pub mod bench;
pub mod coding;
pub mod error;
pub mod manifest;
pub mod merkle;
mod records;
pub mod store;

pub use error::{DecodeError, Result, StoreError};
pub use manifest::{Geometry, Manifest, ObjectId};
pub use records::ShardMeta;
pub use store::{
    GetReport, ObjectInfo, PutParams, PutReport, ScrubCounts, ScrubStats, ScrubSummary, ShardInfo,
    ShardPutReport, Store, StoreConfig, Usage, VerifyReport,
};
