//! The deal book: what this agent knows about on-chain deals, kept in the store's sled database
//! (`agent/chain-deals`) so a restart resumes proving without rescanning the chain.
//!
//! The book is a cache of chain facts, filled by the event handlers; every action taken from it
//! (take a slot, prove, mark a miss) re-reads the chain first, so a stale or reorganised entry can
//! cost a wasted view call but never a wrong transaction.

use bigfile_chain::alloy::primitives::{Address, B256};
use bigfile_storage::{Store, StoreError};
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

/// The deal book on sled.
#[derive(Clone)]
pub struct DealBook {
    tree: sled::Tree,
}

/// Why the book could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum BookError {
    /// The database failed.
    #[error("deal book: {0}")]
    Store(#[from] StoreError),
    /// sled failed.
    #[error("deal book: {0}")]
    Sled(#[from] sled::Error),
    /// An entry does not decode (the file was damaged or written by an incompatible version).
    #[error("deal book entry for deal {deal}: {why}")]
    Corrupt {
        /// The deal.
        deal: u64,
        /// Why.
        why: String,
    },
}

impl DealBook {
    /// Opens the book in `store`'s database.
    pub fn open(store: &Store) -> Result<Self, BookError> {
        Ok(Self { tree: store.agent_tree("chain-deals")? })
    }

    /// The entry for `deal_id`.
    pub fn get(&self, deal_id: u64) -> Result<Option<DealEntry>, BookError> {
        match self.tree.get(deal_id.to_be_bytes())? {
            None => Ok(None),
            Some(bytes) => decode(deal_id, &bytes).map(Some),
        }
    }

    /// Writes `entry` (replacing any entry of the same deal) and flushes, so a restart sees it.
    pub fn put(&self, entry: &DealEntry) -> Result<(), BookError> {
        let bytes = serde_json::to_vec(entry)
            .map_err(|e| BookError::Corrupt { deal: entry.deal_id, why: e.to_string() })?;
        self.tree.insert(entry.deal_id.to_be_bytes(), bytes)?;
        self.tree.flush()?;
        Ok(())
    }

    /// Applies `change` to the entry of `deal_id` if there is one; returns the new entry.
    pub fn update(
        &self,
        deal_id: u64,
        change: impl FnOnce(&mut DealEntry),
    ) -> Result<Option<DealEntry>, BookError> {
        let Some(mut entry) = self.get(deal_id)? else { return Ok(None) };
        change(&mut entry);
        self.put(&entry)?;
        Ok(Some(entry))
    }

    /// Every deal, in id order.
    pub fn all(&self) -> Result<Vec<DealEntry>, BookError> {
        self.tree
            .iter()
            .map(|item| {
                let (key, value) = item?;
                let deal = key.as_ref().try_into().map(u64::from_be_bytes).unwrap_or_default();
                decode(deal, &value)
            })
            .collect()
    }

    /// Removes the entry of `deal_id`.
    pub fn remove(&self, deal_id: u64) -> Result<(), BookError> {
        self.tree.remove(deal_id.to_be_bytes())?;
        self.tree.flush()?;
        Ok(())
    }

    /// Deals in which this agent holds a slot and that are not finished.
    pub fn held(&self) -> Result<Vec<DealEntry>, BookError> {
        Ok(self.all()?.into_iter().filter(|d| d.our_slot.is_some() && !d.finished).collect())
    }
}

fn decode(deal: u64, bytes: &[u8]) -> Result<DealEntry, BookError> {
    serde_json::from_slice(bytes).map_err(|e| BookError::Corrupt { deal, why: e.to_string() })
}
