//! The compute market as the agent sees it: a posted job read from its `JobPosted` log and
//! checked, and the contract's verifier-selection formulas computed off chain, so a verifier
//! knows which tiles to re-run and a test can hold the contract to them.
//!
//! ```text
//! seed              = keccak256(abi.encode(blockhash(seedBlock), uint256 jobId))
//! tile j of the
//! verifier at i     = uint256(keccak256(abi.encode(seed, uint256 i, uint256 j))) mod tiles
//! draw order        = for i = 0, 1, ...: j = i + uint256(keccak256(abi.encode(seed, uint256 i))) mod (n - i);
//!                     swap pool[i], pool[j]; pool[i] is chosen unless it is the provider, the
//!                     client or cannot serve, until verifiersPerJob are chosen
//! ```

use alloy::primitives::{Address, B256, Bytes, U256, keccak256};

use crate::bindings::{ComputeMarket, IComputeMarket};

/// `kind` of a render job.
pub const KIND_RENDER: u8 = 0;
/// `kind` of an inference job.
pub const KIND_INFER: u8 = 1;
/// The most spec bytes the contract takes.
pub const MAX_SPEC_BYTES: usize = 16_384;

/// A job as posted on chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostedJob {
    /// The job id (from 1).
    pub job_id: U256,
    /// Who pays (an account or a router contract).
    pub client: Address,
    /// [`KIND_RENDER`] or [`KIND_INFER`].
    pub kind: u8,
    /// `keccak256(spec)`.
    pub spec_hash: B256,
    /// Input object ids.
    pub inputs: Vec<B256>,
    /// Tiles the output is committed in.
    pub tiles: u32,
    /// BIG escrowed.
    pub payment: U256,
    /// Blocks the provider has from acceptance to its result.
    pub run_blocks: u64,
    /// The job spec (JSON), as posted.
    pub spec: Bytes,
}

/// A `JobPosted` log that does not describe a job this agent can consider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("job {job_id}: {why}")]
pub struct BadJob {
    /// The job.
    pub job_id: U256,
    /// What is wrong.
    pub why: String,
}

impl PostedJob {
    /// Reads a `JobPosted` event, checking what the contract checked (a node that lies about
    /// logs is not trusted either).
    pub fn from_event(e: &ComputeMarket::JobPosted) -> Result<PostedJob, BadJob> {
        let bad = |why: String| BadJob { job_id: e.jobId, why };
        if e.kind > KIND_INFER {
            return Err(bad(format!("kind {} is neither render (0) nor infer (1)", e.kind)));
        }
        if keccak256(&e.spec) != e.specHash {
            return Err(bad("the spec does not hash to specHash".into()));
        }
        if e.spec.len() > MAX_SPEC_BYTES {
            return Err(bad(format!("spec of {} bytes (at most {MAX_SPEC_BYTES})", e.spec.len())));
        }
        if e.tiles == 0 {
            return Err(bad("zero tiles".into()));
        }
        Ok(PostedJob {
            job_id: e.jobId,
            client: e.client,
            kind: e.kind,
            spec_hash: e.specHash,
            inputs: e.inputs.clone(),
            tiles: e.tiles,
            payment: e.payment,
            run_blocks: e.runBlocks,
            spec: e.spec.clone(),
        })
    }
}

/// The `postJob` arguments for a spec: its hash computed here.
pub fn post_params(
    kind: u8,
    spec: &[u8],
    inputs: Vec<B256>,
    tiles: u32,
    payment: U256,
    run_blocks: u64,
) -> (IComputeMarket::JobParams, Bytes) {
    let params = IComputeMarket::JobParams {
        kind,
        specHash: keccak256(spec),
        inputs,
        tiles,
        payment,
        runBlocks: run_blocks,
    };
    (params, Bytes::copy_from_slice(spec))
}

fn words(parts: &[[u8; 32]]) -> B256 {
    let mut buf = Vec::with_capacity(32 * parts.len());
    for p in parts {
        buf.extend_from_slice(p);
    }
    keccak256(&buf)
}

fn word(v: usize) -> [u8; 32] {
    U256::from(v).to_be_bytes()
}

/// The seed of a job's check: `keccak256(abi.encode(blockhash(seedBlock), jobId))`.
pub fn seed(seed_block_hash: B256, job_id: U256) -> B256 {
    words(&[seed_block_hash.0, job_id.to_be_bytes()])
}

/// The tiles the verifier at `position` in the drawn list re-runs (the contract's `tilesFor`).
pub fn tiles_for(seed: B256, position: usize, tiles: u32, per_verifier: u16) -> Vec<u32> {
    let modulus = U256::from(tiles.max(1));
    (0..usize::from(per_verifier))
        .map(|j| {
            let h = U256::from_be_bytes(words(&[seed.0, word(position), word(j)]).0);
            (h % modulus).to::<u32>()
        })
        .collect()
}

/// The verifiers drawn from `pool` (in `verifiers()` order at the draw) for a job, in drawn
/// order; `eligible` says whether a member may verify this job (not its provider or client, and
/// able to serve).
pub fn draw(
    seed: B256,
    pool: &[Address],
    per_job: usize,
    eligible: impl Fn(&Address) -> bool,
) -> Vec<Address> {
    let mut pool = pool.to_vec();
    let n = pool.len();
    let mut chosen = Vec::with_capacity(per_job);
    let mut i = 0;
    while i < n && chosen.len() < per_job {
        let h = U256::from_be_bytes(words(&[seed.0, word(i)]).0);
        let j = i + (h % U256::from(n - i)).to::<usize>();
        pool.swap(i, j);
        if eligible(&pool[i]) {
            chosen.push(pool[i]);
        }
        i += 1;
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_are_the_documented_hash_mod_tiles() {
        let s = B256::repeat_byte(7);
        let mut buf = Vec::new();
        buf.extend_from_slice(&[7u8; 32]);
        buf.extend_from_slice(&U256::from(2).to_be_bytes::<32>());
        buf.extend_from_slice(&U256::from(1).to_be_bytes::<32>());
        let expected = (U256::from_be_bytes(keccak256(&buf).0) % U256::from(100)).to::<u32>();
        let got = tiles_for(s, 2, 100, 3);
        assert_eq!(got.len(), 3);
        assert_eq!(got[1], expected);
        assert!(got.iter().all(|t| *t < 100));
    }

    #[test]
    fn a_draw_is_distinct_and_skips_the_ineligible() {
        let pool: Vec<Address> = (1..=9u8).map(Address::repeat_byte).collect();
        let banned = pool[3];
        for k in 0..50u8 {
            let chosen = draw(B256::repeat_byte(k), &pool, 3, |a| *a != banned);
            assert_eq!(chosen.len(), 3);
            assert!(!chosen.contains(&banned));
            let mut unique = chosen.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(unique.len(), 3);
        }
        assert_eq!(draw(B256::ZERO, &pool[..2], 3, |_| true).len(), 2);
        assert!(draw(B256::ZERO, &pool, 3, |_| false).is_empty());
    }

    #[test]
    fn a_job_log_whose_spec_does_not_hash_is_refused() {
        let (p, spec) = post_params(KIND_RENDER, b"{}", vec![], 4, U256::from(5), 10);
        let mut e = ComputeMarket::JobPosted {
            jobId: U256::from(1),
            client: Address::ZERO,
            kind: p.kind,
            specHash: p.specHash,
            inputs: p.inputs,
            tiles: p.tiles,
            payment: p.payment,
            runBlocks: p.runBlocks,
            spec,
        };
        assert_eq!(PostedJob::from_event(&e).expect("good").spec.as_ref(), b"{}");
        e.spec = Bytes::from_static(b"{ }");
        assert!(PostedJob::from_event(&e).expect_err("bad").to_string().contains("does not hash"));
        e.kind = 2;
        assert!(PostedJob::from_event(&e).is_err());
    }
}
