//! Erasure coding of whole objects in memory, for clients that send shards to other providers
//! and rebuild objects from shards fetched over the network.
//!
//! The layout and commitments are exactly the store's (see the crate docs), so a shard made here
//! is accepted by [`crate::Store::put_shard`] and a shard served by a store decodes here.

use std::io::Write;

use rayon::prelude::*;
use reed_solomon_erasure::galois_8::ReedSolomon;

use crate::error::{DecodeError, Result, StoreError};
use crate::manifest::{Geometry, Manifest};
use crate::merkle::{self, Hash};

/// Bytes hashed per parallel task when computing a shard root (an aligned subtree).
const ROOT_CHUNK: usize = 1 << 20;

fn coder(g: &Geometry) -> Result<ReedSolomon> {
    ReedSolomon::new(usize::from(g.data), usize::from(g.parity))
        .map_err(|e| StoreError::Params(DecodeError::new("erasure coding", format!("{e:?}"))))
}

/// Root of a shard held in memory, hashed on every core (equal to [`merkle::shard_root`]).
pub fn shard_root(data: &[u8], segment_size: u32) -> Hash {
    let depth = merkle::tree_depth(data.len() as u64, segment_size);
    let seg = segment_size as usize;
    // Largest aligned subtree not above ROOT_CHUNK bytes and not above the tree itself.
    let height = (ROOT_CHUNK / seg).trailing_zeros().min(depth);
    let chunk = seg << height;
    let roots: Vec<Hash> =
        data.par_chunks(chunk.max(1)).map(|c| merkle::subtree_root(c, segment_size, height)).collect();
    merkle::fold_to_root(roots, height, depth)
}

/// True if `data` is shard `index` of `manifest`: right length and right Merkle root.
pub fn shard_matches(manifest: &Manifest, index: u16, data: &[u8]) -> bool {
    let g = &manifest.geometry;
    usize::from(index) < g.total_shards()
        && data.len() as u64 == g.shard_len()
        && shard_root(data, g.segment_size) == manifest.shard_roots[usize::from(index)]
}

/// Splits one stripe's object bytes into `k` zero-padded pieces and codes the `n - k` parity
/// pieces: the `n` pieces this stripe contributes to the shards, in shard order.
pub(crate) fn code_stripe(
    rs: &ReedSolomon,
    obj: &[u8],
    sp: &crate::manifest::StripeSpan,
    n: usize,
    k: usize,
) -> Result<Vec<Vec<u8>>> {
    let piece = sp.piece_len as usize;
    let mut pieces: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let mut v = vec![0u8; piece];
            if i < k {
                let lo = (i * piece).min(obj.len());
                let hi = ((i + 1) * piece).min(obj.len());
                v[..hi - lo].copy_from_slice(&obj[lo..hi]);
            }
            v
        })
        .collect();
    rs.encode(&mut pieces)
        .map_err(|e| StoreError::Params(DecodeError::new("erasure coding", format!("{e:?}"))))?;
    Ok(pieces)
}

/// Codes `data` into the `k + m` shards of `geometry` (whose `size` must be `data.len()`) and
/// returns the manifest committing to them.
pub fn encode_object(data: &[u8], geometry: Geometry) -> Result<(Manifest, Vec<Vec<u8>>)> {
    geometry.validate().map_err(StoreError::Params)?;
    if geometry.size != data.len() as u64 {
        return Err(StoreError::Params(DecodeError::new(
            "geometry",
            format!("size {} does not match the {} bytes given", geometry.size, data.len()),
        )));
    }
    let g = geometry;
    let (n, k) = (g.total_shards(), usize::from(g.data));
    let rs = coder(&g)?;
    let shard_len = g.shard_len() as usize;
    // Code every stripe in parallel, then lay its pieces into the shards.
    let stripes: Vec<Vec<Vec<u8>>> = (0..g.stripes())
        .into_par_iter()
        .map(|s| {
            let sp = g.stripe(s);
            code_stripe(
                &rs,
                &data[sp.object_offset as usize..(sp.object_offset + sp.object_len) as usize],
                &sp,
                n,
                k,
            )
        })
        .collect::<Result<_>>()?;
    let mut shards: Vec<Vec<u8>> = (0..n).map(|_| Vec::with_capacity(shard_len)).collect();
    for stripe in stripes {
        for (shard, piece) in shards.iter_mut().zip(stripe) {
            shard.extend_from_slice(&piece);
        }
    }
    let shard_roots = shards.par_iter().map(|s| shard_root(s, g.segment_size)).collect();
    Ok((Manifest { geometry: g, shard_roots }, shards))
}

/// Rebuilds the object from any `k` verified shards (`None` where a shard is unavailable) and
/// writes it to `out`. Shards must already have passed [`shard_matches`]; lengths are rechecked.
/// Returns the number of stripes that needed parity.
pub fn decode_object(manifest: &Manifest, shards: &[Option<Vec<u8>>], out: &mut dyn Write) -> Result<u64> {
    let g = manifest.geometry;
    g.validate().map_err(StoreError::Params)?;
    let (n, k) = (g.total_shards(), usize::from(g.data));
    if shards.len() != n {
        return Err(StoreError::Params(DecodeError::new(
            "shards",
            format!("{} slots given, the manifest has {n} shards", shards.len()),
        )));
    }
    let have: Vec<usize> = (0..n).filter(|i| shards[*i].is_some()).collect();
    if have.len() < k {
        return Err(StoreError::Params(DecodeError::new(
            "shards",
            format!("{} of {n} shards available, {k} needed", have.len()),
        )));
    }
    for i in &have {
        if let Some(s) = &shards[*i]
            && s.len() as u64 != g.shard_len()
        {
            return Err(StoreError::Params(DecodeError::new(
                "shards",
                format!("shard {i} is {} bytes, expected {}", s.len(), g.shard_len()),
            )));
        }
    }
    let rs = coder(&g)?;
    let data_complete = (0..k).all(|i| shards[i].is_some());
    let stripes = g.stripes();
    // Decode in batches of stripes so memory stays near one copy of the object.
    let per_batch = ((16u64 << 20) / u64::from(g.stripe_size)).max(1);
    let mut s = 0;
    while s < stripes {
        let end = (s + per_batch).min(stripes);
        let decoded: Vec<Vec<u8>> = (s..end)
            .into_par_iter()
            .map(|si| {
                let sp = g.stripe(si);
                let (lo, len) = (sp.shard_offset as usize, sp.piece_len as usize);
                let mut pieces: Vec<Option<Vec<u8>>> =
                    shards.iter().map(|sh| sh.as_ref().map(|d| d[lo..lo + len].to_vec())).collect();
                if !data_complete {
                    rs.reconstruct_data(&mut pieces).map_err(|e| {
                        StoreError::Params(DecodeError::new("erasure coding", format!("stripe {si}: {e:?}")))
                    })?;
                }
                let mut obj = Vec::with_capacity(sp.object_len as usize);
                for p in pieces.iter().take(k).flatten() {
                    obj.extend_from_slice(p);
                }
                obj.truncate(sp.object_len as usize);
                Ok(obj)
            })
            .collect::<Result<_>>()?;
        for d in decoded {
            out.write_all(&d).map_err(StoreError::Output)?;
        }
        s = end;
    }
    Ok(if data_complete { 0 } else { stripes })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::pseudo_random;

    fn geometry(size: u64) -> Geometry {
        Geometry { size, data: 4, parity: 2, stripe_size: 64 << 10, segment_size: 1024 }
    }

    #[test]
    fn parallel_root_equals_reference() {
        for len in [0usize, 1, 1024, 1025, 3 << 20, (5 << 20) + 7] {
            let d = pseudo_random(len, len as u64);
            assert_eq!(shard_root(&d, 1024), merkle::shard_root(&d, 1024), "len {len}");
            assert_eq!(shard_root(&d, 32), merkle::shard_root(&d, 32), "len {len} seg 32");
        }
    }

    #[test]
    fn round_trip_with_any_two_shards_lost() {
        let data = pseudo_random(300_000, 7);
        let (m, shards) = encode_object(&data, geometry(data.len() as u64)).unwrap();
        for (i, s) in shards.iter().enumerate() {
            assert!(shard_matches(&m, i as u16, s));
        }
        for (a, b) in [(0, 1), (2, 5), (4, 5), (0, 3)] {
            let mut have: Vec<Option<Vec<u8>>> = shards.iter().cloned().map(Some).collect();
            have[a] = None;
            have[b] = None;
            let mut out = Vec::new();
            decode_object(&m, &have, &mut out).unwrap();
            assert_eq!(out, data, "lost {a} and {b}");
        }
        let mut have: Vec<Option<Vec<u8>>> = shards.iter().cloned().map(Some).collect();
        have[0] = None;
        have[1] = None;
        have[2] = None;
        let err = decode_object(&m, &have, &mut Vec::new()).unwrap_err().to_string();
        assert!(err.contains("3 of 6 shards available, 4 needed"), "{err}");
        let mut bad = shards[1].clone();
        bad[17] ^= 1;
        assert!(!shard_matches(&m, 1, &bad));
        assert!(!shard_matches(&m, 9, &shards[1]));
    }

    #[test]
    fn matches_the_store_layout() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::open(&crate::StoreConfig {
            path: dir.path().join("s"),
            capacity: 1 << 30,
            block_size: 64 << 10,
            cache_bytes: 8 << 20,
            disk_reserve: 0,
        })
        .unwrap();
        let data = pseudo_random(200_001, 3);
        let params = crate::PutParams { data: 4, parity: 2, stripe_size: 64 << 10, segment_size: 1024 };
        let rep = store.put(&mut &data[..], data.len() as u64, params, &mut |_| {}).unwrap();
        let (m, _) = encode_object(&data, geometry(data.len() as u64)).unwrap();
        assert_eq!(m.object_id().to_hex(), rep.id);
    }
}
