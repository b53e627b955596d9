//! The steward: acts on the deal book every poll. It takes the slots of deals whose shards this
//! node holds and has checked, answers each period's challenge for every slot it holds (batched,
//! early in the period), reports fellow holders that missed a period, and finishes its deals when
//! they end.
//!
//! Every action re-reads the chain first (slot holder, proven periods, default), so a restart in
//! the middle of a period neither misses a proof (the book is on disk and the chain says what is
//! still unproven) nor doubles one (the chain says what is proven; the contract refuses a second
//! proof anyway).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bigfile_chain::alloy::eips::BlockNumberOrTag;
use bigfile_chain::alloy::primitives::{B256, Bytes, U256};
use bigfile_chain::alloy::providers::Provider;
use bigfile_chain::bindings::{IStorageMarket, StorageMarket};
use bigfile_chain::challenge::{challenge_index, period_at, seed_block};
use bigfile_chain::sender::SendError;
use bigfile_storage::{ObjectId, Store};
use tokio_util::sync::CancellationToken;

use super::ChainLink;
use super::book::{DealBook, DealEntry};
use crate::compute::ProofGate;
use crate::config::ChainConfig;
use crate::metrics::ChainCounters;

/// One proof ready to send, with what it answers.
struct ReadyProof {
    deal: u64,
    period: u64,
    proof: IStorageMarket::Proof,
}

/// The steward's memory within one run (the chain is the memory across runs).
pub struct Steward {
    link: ChainLink,
    book: DealBook,
    store: Arc<Store>,
    cfg: ChainConfig,
    /// (deal, period) proofs the chain showed as accepted, with the block that showed it. Trusted
    /// without asking once that block is `confirmations` deep; until then a reorg could still take
    /// the proof away, so the chain is asked again each poll and the proof resent if it vanished.
    proven: HashMap<(u64, u64), u64>,
    /// Deals whose slot-taking failed or was refused, with the block to try again from.
    take_after: HashMap<u64, u64>,
    /// (deal, period) for which fellow holders' defaults were checked.
    defaults_checked: HashSet<(u64, u64)>,
    /// Deals this node finished or saw finished.
    finished: HashSet<u64>,
    rpc_down: bool,
    counters: Arc<ChainCounters>,
    /// From the event handler: the first block a reorganisation voided.
    voided: tokio::sync::watch::Receiver<u64>,
    /// Held while this node holds slots and works on their proofs: compute jobs wait at their
    /// next tile boundary.
    gate: ProofGate,
}

impl Steward {
    /// A steward over `book`, proving from `store`.
    pub fn new(
        link: ChainLink,
        book: DealBook,
        store: Arc<Store>,
        cfg: ChainConfig,
        counters: Arc<ChainCounters>,
        voided: tokio::sync::watch::Receiver<u64>,
    ) -> Self {
        Self {
            link,
            book,
            store,
            cfg,
            proven: HashMap::new(),
            take_after: HashMap::new(),
            defaults_checked: HashSet::new(),
            finished: HashSet::new(),
            rpc_down: false,
            counters,
            voided,
            gate: ProofGate::new(),
        }
    }

    /// Shares `gate` with the compute jobs.
    pub fn with_gate(mut self, gate: ProofGate) -> Self {
        self.gate = gate;
        self
    }

    /// Runs until `cancel`.
    pub async fn run(mut self, cancel: CancellationToken) -> Result<()> {
        let mut tick = tokio::time::interval(Duration::from_millis(self.cfg.poll_interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = tick.tick() => {}
            }
            let head = match self.link.provider.get_block_number().await {
                Ok(head) => {
                    if std::mem::take(&mut self.rpc_down) {
                        tracing::info!(head, "chain RPC reachable again");
                    }
                    head
                }
                Err(e) => {
                    if !std::mem::replace(&mut self.rpc_down, true) {
                        tracing::warn!(error = %e, "chain RPC unreachable; proofs wait until it is back");
                    }
                    continue;
                }
            };
            if let Err(e) = self.step(head).await {
                tracing::warn!(error = %format!("{e:#}"), head, "chain step failed; retrying next poll");
            }
        }
    }

    /// One pass over the book at chain head `head`.
    pub async fn step(&mut self, head: u64) -> Result<()> {
        // A reorg deeper than the confirmations may have taken proofs already trusted: ask the
        // chain again about every one accepted in the voided blocks, as if just accepted now.
        if self.voided.has_changed().unwrap_or(false) {
            let from = *self.voided.borrow_and_update();
            self.proven.values_mut().filter(|at| **at >= from).for_each(|at| *at = head);
        }
        let deals = self.book.all()?;
        // Proofs first: while this node holds slots, compute waits at tile boundaries during
        // each pass (a pass is short; a missed proof costs stake).
        let _gate = deals.iter().any(|d| d.our_slot.is_some() && !d.finished).then(|| {
            ChainCounters::add(&self.counters.proof_gate_holds, 1);
            self.gate.hold()
        });
        let mut ready = Vec::new();
        for deal in &deals {
            if deal.finished || self.finished.contains(&deal.deal_id) {
                continue;
            }
            let end = deal.end_block(self.link.period_blocks);
            match deal.our_slot {
                None if self.cfg.take_slots => self.maybe_take(deal, head).await,
                None => {}
                Some(slot) if head >= end => self.finish(deal, slot).await,
                Some(slot) => {
                    if let Some(proof) = self.due_proof(deal, slot, head).await? {
                        ready.push(proof);
                    }
                    self.report_defaults(deal, slot, head).await;
                }
            }
        }
        for batch in ready.chunks(self.cfg.proof_batch.max(1)) {
            self.submit(batch).await;
        }
        Ok(())
    }

    /// Takes a free slot of `deal` for a shard this node holds, after checking that the deal
    /// commits to exactly the shards received.
    async fn maybe_take(&mut self, deal: &DealEntry, head: u64) {
        if self.take_after.get(&deal.deal_id).is_some_and(|after| head < *after) {
            return;
        }
        let pb = self.link.period_blocks;
        // A slot taken after the setup window proves from the next period: one must be left.
        if period_at(deal.start_block, pb, head).is_some_and(|p| p + 1 >= u64::from(deal.num_periods)) {
            return;
        }
        let id = ObjectId(deal.object_id.0);
        let store = self.store.clone();
        let local = tokio::task::spawn_blocking(move || {
            let held = store.held_shards(&id)?;
            if held.is_empty() {
                return Ok::<_, bigfile_storage::StoreError>(None);
            }
            Ok(Some((held, store.manifest(&id)?)))
        })
        .await;
        let Ok(Ok(Some((held, manifest)))) = local else {
            // Not ours (or unreadable): look again in a period.
            self.take_after.insert(deal.deal_id, head + pb);
            return;
        };
        if let Err(why) = matches_manifest(deal, &manifest) {
            tracing::error!(
                deal = deal.deal_id,
                object = %deal.object_id,
                client = %deal.client,
                "deal does not match the shards received ({why}); not taking a slot"
            );
            self.take_after.insert(deal.deal_id, u64::MAX);
            return;
        }
        let market = self.link.market();
        for index in held {
            let slot = U256::from(index);
            let Ok(info) = market.slotInfo(U256::from(deal.deal_id), slot).call().await else { return };
            if !info.provider.is_zero() {
                continue;
            }
            let call = StorageMarket::takeSlotCall { dealId: U256::from(deal.deal_id), slot };
            let label = format!("takeSlot deal {} slot {index}", deal.deal_id);
            match self.link.send(self.link.market, &call, label).await {
                Ok(outcome) => {
                    tracing::info!(deal = deal.deal_id, slot = index, tx = %outcome.hash, "slot taken");
                    ChainCounters::add(&self.counters.slots_taken, 1);
                    let _ = self.book.update(deal.deal_id, |d| d.our_slot = Some(index));
                    return;
                }
                Err(e) => {
                    tracing::info!(deal = deal.deal_id, slot = index, error = %e, "could not take the slot");
                }
            }
        }
        self.take_after.insert(deal.deal_id, head + pb);
    }

    /// The proof this slot owes for the current period, if it is due and not yet given.
    async fn due_proof(&mut self, deal: &DealEntry, slot: u16, head: u64) -> Result<Option<ReadyProof>> {
        let pb = self.link.period_blocks;
        let Some(period) = period_at(deal.start_block, pb, head) else { return Ok(None) };
        if period >= u64::from(deal.num_periods) {
            return Ok(None);
        }
        let seen_at = self.proven.get(&(deal.deal_id, period)).copied();
        if seen_at.is_some_and(|at| head >= at + self.cfg.confirmations) {
            return Ok(None);
        }
        // Wait until the seed block is buried by the confirmation depth (a reorg of it would
        // change the challenge), unless that would run into the safety margin.
        let seed_at = seed_block(deal.start_block, period, pb);
        let period_end = deal.start_block + (period + 1) * pb;
        let buried = head >= seed_at + self.cfg.confirmations;
        let late = head + self.cfg.proof_margin_blocks >= period_end;
        if !buried && !late {
            return Ok(None);
        }
        let deal_id = U256::from(deal.deal_id);
        let info = self.link.market().slotInfo(deal_id, U256::from(slot)).call().await.context("slotInfo")?;
        if info.provider != self.link.me() {
            tracing::warn!(deal = deal.deal_id, slot, holder = %info.provider, "the chain says another holds our slot");
            self.book.update(deal.deal_id, |d| d.our_slot = None)?;
            return Ok(None);
        }
        if u64::from(info.firstPeriod) > period {
            return Ok(None);
        }
        if u64::from(info.lastProvenPlusOne) > period {
            self.proven.entry((deal.deal_id, period)).or_insert(head);
            return Ok(None);
        }
        if let Some(at) = self.proven.remove(&(deal.deal_id, period)) {
            tracing::warn!(
                deal = deal.deal_id,
                period,
                accepted_at = at,
                head,
                "our accepted proof is no longer on the chain (a reorg); proving again"
            );
            ChainCounters::add(&self.counters.proofs_reorged, 1);
        }
        let block = self
            .link
            .provider
            .get_block_by_number(BlockNumberOrTag::Number(seed_at))
            .await
            .context("reading the seed block")?
            .with_context(|| format!("seed block {seed_at} is not on the chain yet"))?;
        let index = challenge_index(block.header.hash, deal_id, U256::from(slot), deal.leaf_count());
        let store = self.store.clone();
        let id = ObjectId(deal.object_id.0);
        let proof =
            tokio::task::spawn_blocking(move || store.prove_segment(&id, slot, index)).await?.with_context(
                || format!("proving deal {} slot {slot} segment {index} from the store", deal.deal_id),
            )?;
        if late {
            tracing::warn!(deal = deal.deal_id, period, head, period_end, "proof is late in its period");
        }
        Ok(Some(ReadyProof {
            deal: deal.deal_id,
            period,
            proof: IStorageMarket::Proof {
                dealId: deal_id,
                slot: U256::from(slot),
                segment: Bytes::from(proof.segment),
                siblings: proof.siblings.into_iter().map(B256::from).collect(),
            },
        }))
    }

    /// Sends `batch` in one transaction and records which proofs the chain accepted.
    async fn submit(&mut self, batch: &[ReadyProof]) {
        let market = self.link.market;
        let label = match batch {
            [one] => format!("submitProof deal {} period {}", one.deal, one.period),
            _ => format!("submitProofs ({} proofs)", batch.len()),
        };
        let result = match batch {
            [one] => {
                let p = &one.proof;
                let call = StorageMarket::submitProofCall {
                    dealId: p.dealId,
                    slot: p.slot,
                    segment: p.segment.clone(),
                    siblings: p.siblings.clone(),
                };
                self.link.send(market, &call, label.clone()).await
            }
            _ => {
                let call = StorageMarket::submitProofsCall {
                    proofs: batch.iter().map(|r| r.proof.clone()).collect(),
                };
                self.link.send(market, &call, label.clone()).await
            }
        };
        match result {
            Ok(outcome) => {
                let mut accepted: u64 = 0;
                for log in outcome.logs() {
                    if let Ok(e) = log.log_decode::<StorageMarket::ProofAccepted>() {
                        let e = e.inner.data;
                        self.proven.insert(
                            (e.dealId.saturating_to(), e.period.saturating_to()),
                            outcome.block_number,
                        );
                        accepted += 1;
                    } else if let Ok(e) = log.log_decode::<StorageMarket::ProofRejected>() {
                        let e = e.inner.data;
                        tracing::warn!(deal = %e.dealId, slot = %e.slot, status = e.status, "proof rejected; retrying next poll");
                    }
                }
                let c = &self.counters;
                ChainCounters::add(&c.proofs_submitted, batch.len() as u64);
                ChainCounters::add(&c.proofs_accepted, accepted);
                ChainCounters::add(&c.proofs_rejected, batch.len() as u64 - accepted);
                ChainCounters::add(&c.proof_gas, outcome.gas_used);
                tracing::info!(
                    proofs = batch.len(),
                    accepted,
                    gas = outcome.gas_used,
                    tx = %outcome.hash,
                    "storage proofs submitted"
                );
            }
            Err(e @ SendError::Reverted { .. }) => {
                tracing::warn!(error = %e, "proof refused; retrying next poll")
            }
            Err(e) => tracing::warn!(error = %e, "proof transaction failed; retrying next poll"),
        }
    }

    /// Once per period, reports fellow holders of `deal` that missed a period (slashing them and
    /// freeing their slot for repair).
    async fn report_defaults(&mut self, deal: &DealEntry, our: u16, head: u64) {
        let pb = self.link.period_blocks;
        let Some(period) = period_at(deal.start_block, pb, head) else { return };
        if period == 0 || !self.defaults_checked.insert((deal.deal_id, period)) {
            return;
        }
        let market = self.link.market();
        let deal_id = U256::from(deal.deal_id);
        for slot in 0..deal.k + deal.m {
            if slot == our {
                continue;
            }
            let Ok(missed) = market.missedPeriod(deal_id, U256::from(slot)).call().await else { continue };
            if !missed.missed {
                continue;
            }
            let call = StorageMarket::markMissedCall { dealId: deal_id, slot: U256::from(slot) };
            let label = format!("markMissed deal {} slot {slot}", deal.deal_id);
            match self.link.send(self.link.market, &call, label).await {
                Ok(outcome) => {
                    ChainCounters::add(&self.counters.misses_reported, 1);
                    tracing::warn!(
                        deal = deal.deal_id,
                        slot,
                        period = %missed.period,
                        tx = %outcome.hash,
                        "a fellow holder missed a period: reported, its slot is free for repair"
                    )
                }
                // Another holder reported it first: the estimate reverts and nothing is spent.
                Err(e) => tracing::debug!(error = %e, "markMissed not sent"),
            }
        }
    }

    /// Finishes `deal` after its last period (pays the client's refund, ends the commitments).
    async fn finish(&mut self, deal: &DealEntry, slot: u16) {
        let call = StorageMarket::finishDealCall { dealId: U256::from(deal.deal_id) };
        match self.link.send(self.link.market, &call, format!("finishDeal {}", deal.deal_id)).await {
            Ok(outcome) => tracing::info!(deal = deal.deal_id, slot, tx = %outcome.hash, "deal finished"),
            Err(e) => {
                tracing::debug!(deal = deal.deal_id, error = %e, "finishDeal not sent (finished already?)")
            }
        }
        self.finished.insert(deal.deal_id);
        let _ = self.book.update(deal.deal_id, |d| d.finished = true);
    }
}

/// Whether `deal` commits to exactly the object this node received shards of.
pub fn matches_manifest(deal: &DealEntry, manifest: &bigfile_storage::Manifest) -> Result<(), String> {
    let g = &manifest.geometry;
    if manifest.object_id().0 != deal.object_id.0 {
        return Err("the manifest's object id differs".into());
    }
    if (g.data, g.parity) != (deal.k, deal.m) {
        return Err(format!("coding {}+{} on chain, {}+{} received", deal.k, deal.m, g.data, g.parity));
    }
    if g.shard_len() != deal.shard_size || g.segment_size != deal.segment_size {
        return Err(format!(
            "shard size {} / segment {} on chain, {} / {} received",
            deal.shard_size,
            deal.segment_size,
            g.shard_len(),
            g.segment_size
        ));
    }
    if manifest.shard_roots.len() != deal.shard_roots.len()
        || manifest.shard_roots.iter().zip(&deal.shard_roots).any(|(ours, theirs)| ours != &theirs.0)
    {
        return Err("the shard roots differ".into());
    }
    Ok(())
}
