//! The job book: compute jobs seen on the ComputeMarket, kept in the store's sled database
//! (`agent/compute-jobs`) with what this agent decided and did about each, so a restart resumes a
//! running job or a pending vote without rescanning the chain.
//!
//! Like the deal book it is a cache of chain facts: every action taken from it re-reads the job
//! on chain first (`getJob`), so a stale entry costs a view call, never a wrong transaction.

use bigfile_chain::alloy::primitives::{Address, B256, Bytes, U256};
use bigfile_chain::compute::PostedJob;
use serde::{Deserialize, Serialize};

/// One job as this agent knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobEntry {
    /// The job id.
    pub job_id: u64,
    /// Who pays.
    pub client: Address,
    /// 0 render, 1 infer.
    pub kind: u8,
    /// The spec as posted (JSON).
    pub spec: Bytes,
    /// Input object ids.
    pub inputs: Vec<B256>,
    /// Tiles the result is committed over.
    pub tiles: u32,
    /// BIG escrowed.
    pub payment: U256,
    /// Blocks from acceptance to the result.
    pub run_blocks: u64,
    /// The block of its `JobPosted` event (a reorg past it voids the entry).
    pub posted_block: u64,
    /// Why this agent does not take the job (checked once per attempt), if it does not.
    pub declined: Option<String>,
    /// The attempt `declined` was decided for.
    pub decided_attempt: Option<u32>,
    /// The result this agent computed and committed for the attempt it ran.
    pub committed: Option<Committed>,
    /// This agent's vote as a drawn verifier, for the attempt it voted on.
    pub voted: Option<(u32, bool)>,
    /// The job reached a final state (Done or Cancelled) on chain.
    pub finished: bool,
}

/// What this agent committed to as the job's provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    /// The attempt.
    pub attempt: u32,
    /// Merkle root over the tile digests.
    pub root: B256,
    /// The output object.
    pub output_id: B256,
}

impl JobEntry {
    /// A fresh entry for a posted job seen in block `block`.
    pub fn posted(job: &PostedJob, block: u64) -> JobEntry {
        JobEntry {
            job_id: job.job_id.saturating_to(),
            client: job.client,
            kind: job.kind,
            spec: job.spec.clone(),
            inputs: job.inputs.clone(),
            tiles: job.tiles,
            payment: job.payment,
            run_blocks: job.run_blocks,
            posted_block: block,
            declined: None,
            decided_attempt: None,
            committed: None,
            voted: None,
            finished: false,
        }
    }
}

/// The job book on sled (`agent/compute-jobs`).
pub type JobBook = crate::book::Book<JobEntry>;

impl crate::book::Entry for JobEntry {
    const TREE: &'static str = "compute-jobs";
    const WHAT: &'static str = "job";
    fn id(&self) -> u64 {
        self.job_id
    }
}

impl JobBook {
    /// Jobs not yet Done or Cancelled.
    pub fn open_jobs(&self) -> Result<Vec<JobEntry>, crate::book::BookError> {
        Ok(self.all()?.into_iter().filter(|j| !j.finished).collect())
    }
}
