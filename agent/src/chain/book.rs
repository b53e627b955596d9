//! The deal book: what this agent knows about on-chain deals, kept in the store's sled database
//! (`agent/chain-deals`) so a restart resumes proving without rescanning the chain.
//!
//! The book is a cache of chain facts, filled by the event handlers; every action taken from it
//! (take a slot, prove, mark a miss) re-reads the chain first, so a stale or reorganised entry can
//! cost a wasted view call but never a wrong transaction.

use bigfile_chain::alloy::primitives::{Address, B256};
use serde::{Deserialize, Serialize};

/// One deal as this agent knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealEntry {
    /// The deal id.
    pub deal_id: u64,
    /// The client that pays.
    pub client: Address,
    /// The object the deal is for.
    pub object_id: B256,
    /// Root of every shard, data shards first.
    pub shard_roots: Vec<B256>,
    /// Bytes per shard.
    pub shard_size: u64,
    /// Proof segment size.
    pub segment_size: u32,
    /// Data shards.
    pub k: u16,
    /// Parity shards.
    pub m: u16,
    /// Proving periods.
    pub num_periods: u32,
    /// BIG base units per proven slot-period.
    pub price_per_slot_period: u128,
    /// First block of period 0.
    pub start_block: u64,
    /// The block whose DealCreated event made this entry (a reorg past it voids the entry).
    pub created_block: u64,
    /// The slot this agent holds, if any.
    pub our_slot: Option<u16>,
    /// The deal was finished on chain.
    pub finished: bool,
}

impl DealEntry {
    /// First block after the last period.
    pub fn end_block(&self, period_blocks: u64) -> u64 {
        self.start_block + u64::from(self.num_periods) * period_blocks
    }

    /// Segments per shard.
    pub fn leaf_count(&self) -> u64 {
        self.shard_size.div_ceil(u64::from(self.segment_size.max(1)))
    }
}

/// The deal book on sled (`agent/chain-deals`).
pub type DealBook = crate::book::Book<DealEntry>;

impl crate::book::Entry for DealEntry {
    const TREE: &'static str = "chain-deals";
    const WHAT: &'static str = "deal";
    fn id(&self) -> u64 {
        self.deal_id
    }
}

impl DealBook {
    /// Deals in which this agent holds a slot and that are not finished.
    pub fn held(&self) -> Result<Vec<DealEntry>, crate::book::BookError> {
        Ok(self.all()?.into_iter().filter(|d| d.our_slot.is_some() && !d.finished).collect())
    }
}
