//! Object manifests, their canonical encoding and the geometry of stripes and shards.

use crate::error::DecodeError;
use crate::merkle::{Hash, keccak256};

/// Largest stripe a manifest may describe; bounds the memory one stripe needs while coding.
pub const MAX_STRIPE_SIZE: u32 = 256 << 20;
/// Largest proof segment: a proof must fit in about 2 KiB of calldata.
pub const MAX_SEGMENT_SIZE: u32 = 1024;
/// Smallest proof segment.
pub const MIN_SEGMENT_SIZE: u32 = 32;
/// Reed-Solomon over GF(2^8) allows at most this many shards in total.
pub const MAX_SHARDS: u32 = 256;

const MAGIC: &[u8; 4] = b"BFM1";
const HEADER_LEN: usize = 4 + 8 + 2 + 2 + 4 + 4;

/// An object's identity: keccak256 of its manifest's canonical encoding.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId(pub Hash);

impl ObjectId {
    /// Lower-case hex with a `0x` prefix, as printed by the CLI and used on chain.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(66);
        s.push_str("0x");
        for b in self.0 {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    /// Parses 64 hex digits, with or without `0x`.
    pub fn from_hex(s: &str) -> Result<Self, DecodeError> {
        let s = s.strip_prefix("0x").unwrap_or(s);
        if s.len() != 64 || !s.is_ascii() {
            return Err(DecodeError::new("object id", "expected 64 hex digits"));
        }
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16)
                .map_err(|_| DecodeError::new("object id", "not hexadecimal"))?;
        }
        Ok(ObjectId(out))
    }
}

impl std::fmt::Display for ObjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl std::fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ObjectId({})", self.to_hex())
    }
}

/// How an object is cut: the parameters that fix every stripe's and shard's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Object size in bytes.
    pub size: u64,
    /// Data shards per stripe (k).
    pub data: u16,
    /// Parity shards per stripe (m).
    pub parity: u16,
    /// Object bytes per stripe; a multiple of `data`.
    pub stripe_size: u32,
    /// Proof segment size; a power of two in 32..=1024.
    pub segment_size: u32,
}

/// Where one stripe lies in the object and in every shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StripeSpan {
    /// Offset of the stripe's first byte in the object.
    pub object_offset: u64,
    /// Object bytes in this stripe (less than `stripe_size` only for the last one).
    pub object_len: u64,
    /// Offset of this stripe's piece in each shard.
    pub shard_offset: u64,
    /// Bytes of each shard that belong to this stripe.
    pub piece_len: u64,
}

impl Geometry {
    /// Checks the rules every manifest obeys; `what` names the source in the error.
    pub fn validate(&self) -> Result<(), DecodeError> {
        let fail = |why: &str| Err(DecodeError::new("manifest", why));
        if self.data == 0 {
            return fail("data shards (k) must be at least 1");
        }
        if self.parity == 0 {
            return fail("parity shards (m) must be at least 1");
        }
        if u32::from(self.data) + u32::from(self.parity) > MAX_SHARDS {
            return fail("k + m must be at most 256");
        }
        if self.stripe_size == 0 || self.stripe_size > MAX_STRIPE_SIZE {
            return fail("stripe size must be in 1..=256 MiB");
        }
        if !self.stripe_size.is_multiple_of(u32::from(self.data)) {
            return fail("stripe size must be a multiple of k");
        }
        if !self.segment_size.is_power_of_two()
            || !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(&self.segment_size)
        {
            return fail("segment size must be a power of two in 32..=1024");
        }
        Ok(())
    }

    /// Total shards per stripe (k + m).
    pub fn total_shards(&self) -> usize {
        usize::from(self.data) + usize::from(self.parity)
    }

    /// Bytes of each shard per full stripe.
    pub fn piece_size(&self) -> u64 {
        u64::from(self.stripe_size / u32::from(self.data))
    }

    /// Number of stripes (zero for an empty object).
    pub fn stripes(&self) -> u64 {
        self.size.div_ceil(u64::from(self.stripe_size))
    }

    /// Span of stripe `s` (which must be `< stripes()`).
    pub fn stripe(&self, s: u64) -> StripeSpan {
        let stripe = u64::from(self.stripe_size);
        let object_offset = s * stripe;
        let object_len = (self.size - object_offset).min(stripe);
        StripeSpan {
            object_offset,
            object_len,
            shard_offset: s * self.piece_size(),
            piece_len: object_len.div_ceil(u64::from(self.data)),
        }
    }

    /// Length of every shard of the object.
    pub fn shard_len(&self) -> u64 {
        match self.stripes() {
            0 => 0,
            n => self.stripe(n - 1).shard_offset + self.stripe(n - 1).piece_len,
        }
    }

    /// Index of the stripe holding shard byte `offset` (which must be `< shard_len()`).
    pub fn stripe_at_shard_offset(&self, offset: u64) -> u64 {
        (offset / self.piece_size()).min(self.stripes().saturating_sub(1))
    }

    /// Rounds a requested stripe size up to the next multiple of `data`, within the maximum.
    pub fn round_stripe(requested: u32, data: u16) -> u32 {
        let k = u32::from(data.max(1));
        requested.max(1).div_ceil(k).saturating_mul(k).min(MAX_STRIPE_SIZE / k * k)
    }
}

/// The public description of a stored object; its keccak256 is the object id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// Sizes and coding parameters.
    pub geometry: Geometry,
    /// Merkle root of each shard, data shards first, then parity.
    pub shard_roots: Vec<Hash>,
}

impl Manifest {
    /// Canonical bytes: `"BFM1" || size u64 || k u16 || m u16 || stripe u32 || segment u32 ||
    /// root_0 .. root_{k+m-1}`, integers big-endian. Equal to Solidity's
    /// `abi.encodePacked(bytes4("BFM1"), uint64, uint16, uint16, uint32, uint32, bytes32[])`.
    pub fn encode(&self) -> Vec<u8> {
        let g = &self.geometry;
        let mut out = Vec::with_capacity(HEADER_LEN + 32 * self.shard_roots.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&g.size.to_be_bytes());
        out.extend_from_slice(&g.data.to_be_bytes());
        out.extend_from_slice(&g.parity.to_be_bytes());
        out.extend_from_slice(&g.stripe_size.to_be_bytes());
        out.extend_from_slice(&g.segment_size.to_be_bytes());
        for r in &self.shard_roots {
            out.extend_from_slice(r);
        }
        out
    }

    /// Parses and validates canonical bytes; never panics on any input.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let err = |why: &str| DecodeError::new("manifest", why);
        if bytes.len() < HEADER_LEN {
            return Err(err("truncated header"));
        }
        if &bytes[..4] != MAGIC {
            return Err(err("bad magic (not a BigFile manifest)"));
        }
        let be = |r: std::ops::Range<usize>| -> u64 {
            bytes[r].iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
        };
        let geometry = Geometry {
            size: be(4..12),
            data: be(12..14) as u16,
            parity: be(14..16) as u16,
            stripe_size: be(16..20) as u32,
            segment_size: be(20..24) as u32,
        };
        geometry.validate()?;
        let roots = &bytes[HEADER_LEN..];
        if roots.len() != 32 * geometry.total_shards() {
            return Err(err("shard root list does not match k + m"));
        }
        let shard_roots = roots
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                h
            })
            .collect();
        Ok(Manifest { geometry, shard_roots })
    }

    /// The object id: keccak256 of [`Manifest::encode`].
    pub fn object_id(&self) -> ObjectId {
        ObjectId(keccak256(&self.encode()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn geom(size: u64, k: u16, m: u16, stripe: u32) -> Geometry {
        Geometry { size, data: k, parity: m, stripe_size: stripe, segment_size: 1024 }
    }

    #[test]
    fn stripes_cover_the_object_exactly() {
        let g = geom(10_000, 3, 2, 3 * 1000);
        assert_eq!(g.stripes(), 4);
        let last = g.stripe(3);
        assert_eq!(last.object_len, 1000);
        assert_eq!(last.piece_len, 334);
        assert_eq!(g.shard_len(), 3 * 1000 + 334);
        assert_eq!(geom(0, 4, 2, 4096).shard_len(), 0);
        assert_eq!(geom(1, 4, 2, 4096).shard_len(), 1);
        assert_eq!(g.stripe_at_shard_offset(3 * 1000 + 5), 3);
    }

    #[test]
    fn manifest_round_trip_and_id() {
        let m = Manifest { geometry: geom(5, 2, 1, 2048), shard_roots: vec![[1; 32], [2; 32], [3; 32]] };
        let bytes = m.encode();
        assert_eq!(Manifest::decode(&bytes).unwrap(), m);
        assert_eq!(m.object_id().0, keccak256(&bytes));
        let id = m.object_id();
        assert_eq!(ObjectId::from_hex(&id.to_hex()).unwrap(), id);
    }

    #[test]
    fn bad_manifests_are_rejected() {
        let m = Manifest { geometry: geom(5, 2, 1, 2048), shard_roots: vec![[1; 32], [2; 32], [3; 32]] };
        let bytes = m.encode();
        for cut in 0..bytes.len() {
            assert!(Manifest::decode(&bytes[..cut]).is_err(), "truncated at {cut}");
        }
        let mut k0 = bytes.clone();
        k0[12..14].copy_from_slice(&0u16.to_be_bytes());
        assert!(Manifest::decode(&k0).unwrap_err().to_string().contains("k"));
        let mut big = bytes.clone();
        big[12..14].copy_from_slice(&255u16.to_be_bytes());
        big[14..16].copy_from_slice(&2u16.to_be_bytes());
        assert!(Manifest::decode(&big).is_err());
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = Manifest::decode(&bytes);
        }

        #[test]
        fn decode_never_panics_on_mutated_header(size in any::<u64>(), k in any::<u16>(), m in any::<u16>(),
                                                 stripe in any::<u32>(), seg in any::<u32>(), extra in 0usize..10) {
            let mut b = MAGIC.to_vec();
            b.extend_from_slice(&size.to_be_bytes());
            b.extend_from_slice(&k.to_be_bytes());
            b.extend_from_slice(&m.to_be_bytes());
            b.extend_from_slice(&stripe.to_be_bytes());
            b.extend_from_slice(&seg.to_be_bytes());
            b.extend(std::iter::repeat_n(7u8, 32 * extra));
            if let Ok(man) = Manifest::decode(&b) {
                prop_assert_eq!(man.encode(), b);
            }
        }
    }
}
