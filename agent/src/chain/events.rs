//! The watcher's handler: turns confirmed StorageMarket events into deal-book facts.
//!
//! It only records; it never sends a transaction, so a batch is handled in milliseconds and a
//! batch delivered twice changes nothing (every write sets a value, none increments). The steward
//! acts on the book, and re-reads the chain before every action.

use bigfile_chain::alloy::primitives::Address;
use bigfile_chain::bindings::StorageMarket;
use bigfile_chain::watcher::{Handler, HandlerError, LogBatch, Rewind};
use std::sync::Arc;

use bigfile_storage::ObjectId;
use tokio::sync::watch;

use crate::net::repair::RepairHints;

use super::ChainLink;
use super::book::{DealBook, DealEntry};

/// Records deals and this agent's slots from the market's events.
pub struct DealHandler {
    book: DealBook,
    link: ChainLink,
    hints: Arc<RepairHints>,
    /// The last confirmed block handled, for the steward to wake on.
    confirmed: watch::Sender<u64>,
    /// The first block of the last reorganisation rewound: the steward forgets the proofs it saw
    /// accepted from there on and proves those periods again if they are gone.
    voided: watch::Sender<u64>,
}

impl DealHandler {
    /// A handler writing into `book`; `confirmed` learns the last handled block.
    pub fn new(
        book: DealBook,
        link: ChainLink,
        hints: Arc<RepairHints>,
        confirmed: watch::Sender<u64>,
        voided: watch::Sender<u64>,
    ) -> Self {
        Self { book, link, hints, confirmed, voided }
    }

    fn me(&self) -> Address {
        self.link.me()
    }
}

fn fail(e: impl std::fmt::Display) -> HandlerError {
    HandlerError::new(e.to_string())
}

impl Handler for DealHandler {
    async fn handle(&mut self, batch: &LogBatch) -> Result<(), HandlerError> {
        for watched in &batch.logs {
            let log = &watched.log;
            if log.address() != self.link.market {
                continue;
            }
            if let Ok(e) = log.log_decode::<StorageMarket::DealCreated>() {
                let e = e.inner.data;
                let deal_id: u64 = e.dealId.saturating_to();
                let fresh = DealEntry {
                    deal_id,
                    client: e.client,
                    object_id: e.objectId,
                    shard_roots: e.shardRoots.clone(),
                    shard_size: e.shardSize,
                    segment_size: e.segmentSize,
                    k: e.k,
                    m: e.m,
                    num_periods: e.numPeriods,
                    price_per_slot_period: e.pricePerSlotPeriod,
                    start_block: e.startBlock,
                    created_block: watched.block.number,
                    our_slot: None,
                    finished: false,
                };
                // Delivered twice: keep what was learned since (our slot).
                let existing = self.book.get(deal_id).map_err(fail)?;
                if existing.as_ref().is_none_or(|old| old.created_block != fresh.created_block) {
                    tracing::info!(deal = deal_id, object = %e.objectId, k = e.k, m = e.m, "deal created on chain");
                    self.book.put(&fresh).map_err(fail)?;
                }
            } else if let Ok(e) = log.log_decode::<StorageMarket::SlotTaken>() {
                let e = e.inner.data;
                if e.provider == self.me() {
                    let slot = u16::try_from(e.slot).unwrap_or(u16::MAX);
                    self.book.update(e.dealId.saturating_to(), |d| d.our_slot = Some(slot)).map_err(fail)?;
                }
            } else if let Ok(e) = log.log_decode::<StorageMarket::SlotFreed>() {
                let e = e.inner.data;
                let deal: u64 = e.dealId.saturating_to();
                let slot = u16::try_from(e.slot).unwrap_or(u16::MAX);
                if e.provider == self.me() {
                    if e.reason == 0 {
                        tracing::error!(deal, slot, "our slot was freed for a missed period: stake slashed");
                    }
                    self.book.update(deal, |d| d.our_slot = None).map_err(fail)?;
                } else if e.reason == 0
                    && let Some(entry) = self.book.get(deal).map_err(fail)?
                {
                    // A holder defaulted: its shard is presumed lost; the repairer rebuilds it on
                    // another provider, which then takes the free slot.
                    tracing::info!(deal, slot, holder = %e.provider, "slot freed after a missed period: repair hinted");
                    self.hints.lost(ObjectId(entry.object_id.0), slot);
                }
            } else if let Ok(e) = log.log_decode::<StorageMarket::DealFinished>() {
                let e = e.inner.data;
                self.book.update(e.dealId.saturating_to(), |d| d.finished = true).map_err(fail)?;
            } else if let Ok(e) = log.log_decode::<StorageMarket::ProofAccepted>() {
                let e = e.inner.data;
                if e.provider == self.me() {
                    tracing::debug!(deal = %e.dealId, slot = %e.slot, period = %e.period, "proof confirmed");
                }
            }
        }
        let _ = self.confirmed.send(batch.last.number);
        Ok(())
    }

    async fn rewound(&mut self, rewind: &Rewind) -> Result<(), HandlerError> {
        tracing::warn!(
            void_from = rewind.void_from,
            abandoned = rewind.abandoned.number,
            "chain reorganised: re-reading deals from the new chain"
        );
        let _ = self.voided.send(rewind.void_from);
        let market = self.link.market();
        let me = self.me();
        for entry in self.book.all().map_err(fail)? {
            if entry.created_block >= rewind.void_from {
                // Its DealCreated is void; the new chain's batches re-add it if it is still there.
                self.book.remove(entry.deal_id).map_err(fail)?;
                continue;
            }
            let held = market
                .slotOf(bigfile_chain::alloy::primitives::U256::from(entry.deal_id), me)
                .call()
                .await
                .map_err(fail)?;
            let slot = held.held.then(|| u16::try_from(held.slot).unwrap_or(u16::MAX));
            if slot != entry.our_slot {
                self.book.update(entry.deal_id, |d| d.our_slot = slot).map_err(fail)?;
            }
        }
        Ok(())
    }
}
