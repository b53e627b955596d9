//! Binary encodings of what the store keeps in sled. Decoding never panics: every record read from
//! disk is untrusted.

use crate::error::DecodeError;
use crate::manifest::ObjectId;
use crate::merkle::Hash;

const VERSION: u8 = 1;

/// Bounds-checked big-endian reader over a record.
pub(crate) struct Reader<'a> {
    what: &'static str,
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(what: &'static str, buf: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader { what, buf };
        let v = r.u8()?;
        if v != VERSION {
            return Err(DecodeError::new(what, format!("unknown record version {v}")));
        }
        Ok(r)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::new(self.what, "truncated record"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    pub(crate) fn hash(&mut self) -> Result<Hash, DecodeError> {
        let mut h = [0u8; 32];
        h.copy_from_slice(self.take(32)?);
        Ok(h)
    }

    pub(crate) fn rest(self) -> &'a [u8] {
        self.buf
    }

    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() { Ok(()) } else { Err(DecodeError::new(self.what, "trailing bytes")) }
    }
}

/// Key of a block: `handle u64 || shard u16 || block u32`, big-endian so a shard's blocks are
/// contiguous and in order.
pub(crate) fn block_key(handle: u64, shard: u16, block: u32) -> [u8; 14] {
    let mut k = [0u8; 14];
    k[..8].copy_from_slice(&handle.to_be_bytes());
    k[8..10].copy_from_slice(&shard.to_be_bytes());
    k[10..].copy_from_slice(&block.to_be_bytes());
    k
}

/// Parses a block key.
pub(crate) fn parse_block_key(k: &[u8]) -> Result<(u64, u16, u32), DecodeError> {
    if k.len() != 14 {
        return Err(DecodeError::new("block key", "wrong length"));
    }
    let mut h = [0u8; 8];
    h.copy_from_slice(&k[..8]);
    Ok((
        u64::from_be_bytes(h),
        u16::from_be_bytes([k[8], k[9]]),
        u32::from_be_bytes([k[10], k[11], k[12], k[13]]),
    ))
}

/// Key of a shard's metadata: `handle u64 || shard u16`.
pub(crate) fn shard_key(handle: u64, shard: u16) -> [u8; 10] {
    let mut k = [0u8; 10];
    k[..8].copy_from_slice(&handle.to_be_bytes());
    k[8..].copy_from_slice(&shard.to_be_bytes());
    k
}

/// A stored block: its Merkle subtree root and the bytes.
pub(crate) struct BlockRecord<'a> {
    /// Height of the block's subtree in the shard tree.
    pub height: u8,
    /// The block's root (its keccak digest).
    pub root: Hash,
    /// The block's shard bytes.
    pub data: &'a [u8],
}

impl<'a> BlockRecord<'a> {
    pub(crate) fn encode(height: u8, root: &Hash, data: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(34 + data.len());
        v.push(VERSION);
        v.push(height);
        v.extend_from_slice(root);
        v.extend_from_slice(data);
        v
    }

    pub(crate) fn decode(buf: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new("block", buf)?;
        let height = r.u8()?;
        let root = r.hash()?;
        Ok(BlockRecord { height, root, data: r.rest() })
    }
}

/// What the store knows about one shard of one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardMeta {
    /// The object the shard belongs to.
    pub object: ObjectId,
    /// Shard length in bytes.
    pub len: u64,
    /// Block size the shard was stored with (a power-of-two multiple of the segment size).
    pub block_size: u32,
    /// Height of each block's subtree.
    pub block_height: u8,
    /// Root of each block, in order; they fold into the shard root.
    pub block_roots: Vec<Hash>,
}

impl ShardMeta {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(1 + 32 + 8 + 4 + 1 + 4 + 32 * self.block_roots.len());
        v.push(VERSION);
        v.extend_from_slice(&self.object.0);
        v.extend_from_slice(&self.len.to_be_bytes());
        v.extend_from_slice(&self.block_size.to_be_bytes());
        v.push(self.block_height);
        v.extend_from_slice(&(self.block_roots.len() as u32).to_be_bytes());
        for r in &self.block_roots {
            v.extend_from_slice(r);
        }
        v
    }

    pub(crate) fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new("shard metadata", buf)?;
        let object = ObjectId(r.hash()?);
        let len = r.u64()?;
        let block_size = r.u32()?;
        let block_height = r.u8()?;
        let n = r.u32()? as usize;
        if block_size == 0 || !block_size.is_power_of_two() || block_height > 40 {
            return Err(DecodeError::new("shard metadata", "bad block geometry"));
        }
        if len.div_ceil(u64::from(block_size)) != n as u64 {
            return Err(DecodeError::new("shard metadata", "block count does not match length"));
        }
        let mut block_roots = Vec::with_capacity(n.min(1 << 20));
        for _ in 0..n {
            block_roots.push(r.hash()?);
        }
        r.finish()?;
        Ok(ShardMeta { object, len, block_size, block_height, block_roots })
    }

    /// Length of block `b` (the last may be short).
    pub fn block_len(&self, b: u32) -> u64 {
        let start = u64::from(b) * u64::from(self.block_size);
        (self.len - start.min(self.len)).min(u64::from(self.block_size))
    }
}

/// A committed object: its local handle and the bytes it occupies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ObjectRecord {
    pub handle: u64,
    pub stored_bytes: u64,
    pub created_unix: u64,
}

impl ObjectRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut v = vec![VERSION];
        v.extend_from_slice(&self.handle.to_be_bytes());
        v.extend_from_slice(&self.stored_bytes.to_be_bytes());
        v.extend_from_slice(&self.created_unix.to_be_bytes());
        v
    }

    pub(crate) fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new("object record", buf)?;
        let rec = ObjectRecord { handle: r.u64()?, stored_bytes: r.u64()?, created_unix: r.u64()? };
        r.finish()?;
        Ok(rec)
    }
}

/// Key of a held shard: `object id (32 bytes) || shard index u16`, so an object's held shards
/// are contiguous and in index order.
pub(crate) fn held_key(object: &ObjectId, index: u16) -> [u8; 34] {
    let mut k = [0u8; 34];
    k[..32].copy_from_slice(&object.0);
    k[32..].copy_from_slice(&index.to_be_bytes());
    k
}

/// Parses a held-shard key.
pub(crate) fn parse_held_key(k: &[u8]) -> Result<(ObjectId, u16), DecodeError> {
    if k.len() != 34 {
        return Err(DecodeError::new("held shard key", "wrong length"));
    }
    let mut id = [0u8; 32];
    id.copy_from_slice(&k[..32]);
    Ok((ObjectId(id), u16::from_be_bytes([k[32], k[33]])))
}

/// A single shard held without the rest of its object: its local handle (blocks and shard
/// metadata live under it) and its length, which is also the bytes it occupies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HeldRecord {
    pub handle: u64,
    pub len: u64,
    pub created_unix: u64,
}

impl HeldRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut v = vec![VERSION];
        v.extend_from_slice(&self.handle.to_be_bytes());
        v.extend_from_slice(&self.len.to_be_bytes());
        v.extend_from_slice(&self.created_unix.to_be_bytes());
        v
    }

    pub(crate) fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new("held shard record", buf)?;
        let rec = HeldRecord { handle: r.u64()?, len: r.u64()?, created_unix: r.u64()? };
        r.finish()?;
        Ok(rec)
    }
}

/// A u64 counter value as stored.
pub(crate) fn decode_u64(what: &'static str, buf: &[u8]) -> Result<u64, DecodeError> {
    let a: [u8; 8] = buf.try_into().map_err(|_| DecodeError::new(what, "not 8 bytes"))?;
    Ok(u64::from_be_bytes(a))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = ShardMeta::decode(&bytes);
            let _ = ObjectRecord::decode(&bytes);
            let _ = BlockRecord::decode(&bytes);
            let _ = parse_block_key(&bytes);
            let _ = decode_u64("x", &bytes);
            let _ = HeldRecord::decode(&bytes);
            let _ = parse_held_key(&bytes);
        }
    }

    #[test]
    fn held_record_and_key_round_trip() {
        let r = HeldRecord { handle: 7, len: 123_456, created_unix: 1_700_000_000 };
        assert_eq!(HeldRecord::decode(&r.encode()).unwrap(), r);
        let enc = r.encode();
        assert!(HeldRecord::decode(&enc[..enc.len() - 1]).is_err());
        let mut long = enc.clone();
        long.push(0);
        assert!(HeldRecord::decode(&long).is_err());
        let id = ObjectId([3; 32]);
        assert_eq!(parse_held_key(&held_key(&id, 258)).unwrap(), (id, 258));
        assert!(held_key(&id, 1) < held_key(&id, 256));
    }

    #[test]
    fn shard_meta_round_trip() {
        let m = ShardMeta {
            object: ObjectId([9; 32]),
            len: 70_000,
            block_size: 65536,
            block_height: 6,
            block_roots: vec![[1; 32], [2; 32]],
        };
        assert_eq!(ShardMeta::decode(&m.encode()).unwrap(), m);
        assert_eq!(m.block_len(1), 70_000 - 65536);
        let enc = m.encode();
        assert!(ShardMeta::decode(&enc[..enc.len() - 1]).is_err());
    }
}
