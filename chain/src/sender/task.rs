//! The task that owns the account: nonces, fees, broadcasting, replacement and receipts.

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Instant;

use alloy::consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy::eips::eip2718::Encodable2718;
use alloy::eips::{BlockId, BlockNumberOrTag};
use alloy::network::TxSignerSync;
use alloy::primitives::utils::format_units;
use alloy::primitives::{Address, Bytes, TxHash, TxKind, U256};
use alloy::providers::utils::eip1559_default_estimator;
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::transports::{TransportError, TransportResult};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::config::{MIN_FEE_BUMP_PERCENT, SenderConfig, bump};
use super::error::{Refusal, SendError, is_transport, refusal};
use super::{SenderStatus, TxOutcome, TxVersion};
use crate::errors::{self, RevertReason};

/// How many tries a new transaction gets when the node says its nonce is taken (after each, the
/// nonce is re-read from the node).
const NONCE_RETRIES: u32 = 3;

/// Polls in a row that must find the account's nonce past a transaction while none of its
/// versions has a receipt before the nonce counts as used by someone else. More than one,
/// because behind a load balancer the nonce and the receipt may come from nodes a block apart.
const CONSUMED_AFTER_POLLS: u32 = 3;

/// Blocks of fee history the fee estimate looks at, and the reward percentile it takes.
const FEE_HISTORY_BLOCKS: u64 = 10;
const FEE_REWARD_PERCENTILE: f64 = 20.0;

/// What the handles and the task share: the node, the account and the configuration.
pub(crate) struct Link {
    pub(crate) provider: RootProvider,
    /// The endpoint, redacted for messages.
    pub(crate) rpc: String,
    pub(crate) address: Address,
    pub(crate) chain_id: u64,
    pub(crate) config: SenderConfig,
    pub(crate) cancel: CancellationToken,
}

/// Why one RPC request gave no answer.
pub(crate) enum RpcFailure {
    /// The sender is stopping.
    Cancelled,
    /// No answer within `chain.rpc_timeout_secs`.
    TimedOut,
    /// The transport failed or the node answered with an error.
    Failed(TransportError),
}

impl RpcFailure {
    /// The error to give a caller that was `label`-ing when the request for `during` failed.
    pub(crate) fn into_error(self, link: &Link, during: &'static str, label: &str) -> SendError {
        match self {
            RpcFailure::Cancelled => SendError::Stopped { label: label.to_owned(), hashes: Vec::new() },
            RpcFailure::TimedOut => SendError::Unreachable {
                rpc: link.rpc.clone(),
                during,
                why: format!("no answer within {:?} (chain.rpc_timeout_secs)", link.config.rpc_timeout),
            },
            RpcFailure::Failed(e) if is_transport(&e) => {
                SendError::Unreachable { rpc: link.rpc.clone(), during, why: e.to_string() }
            }
            RpcFailure::Failed(source) => SendError::Rpc { rpc: link.rpc.clone(), during, source },
        }
    }

    fn describe(&self) -> String {
        match self {
            RpcFailure::Cancelled => "cancelled".into(),
            RpcFailure::TimedOut => "timed out".into(),
            RpcFailure::Failed(e) => e.to_string(),
        }
    }
}

impl Link {
    /// Runs one request, bounded by the RPC timeout (reqwest has none by default, and a node that
    /// accepts the connection and never answers must not stall the sender) and by cancellation.
    pub(crate) async fn rpc<T>(
        &self,
        request: impl IntoFuture<Output = TransportResult<T>>,
    ) -> Result<T, RpcFailure> {
        tokio::select! {
            _ = self.cancel.cancelled() => Err(RpcFailure::Cancelled),
            answer = tokio::time::timeout(self.config.rpc_timeout, request.into_future()) => match answer {
                Err(_) => Err(RpcFailure::TimedOut),
                Ok(Err(e)) => Err(RpcFailure::Failed(e)),
                Ok(Ok(value)) => Ok(value),
            },
        }
    }

    /// The account's balance, if the node tells.
    pub(crate) async fn balance(&self) -> Option<U256> {
        self.rpc(self.provider.get_balance(self.address)).await.ok()
    }
}

/// A request for the task, with the answer channel.
pub(crate) struct Command {
    pub(crate) request: Prepared,
    pub(crate) reply: oneshot::Sender<Result<TxOutcome, SendError>>,
}

/// A transaction whose gas has been estimated and checked against the budget.
pub(crate) struct Prepared {
    pub(crate) label: String,
    pub(crate) to: Address,
    pub(crate) input: Bytes,
    pub(crate) value: U256,
    pub(crate) gas_limit: u64,
}

/// A signed version, with its raw bytes for re-broadcasting.
struct Signed {
    version: TxVersion,
    raw: Bytes,
}

/// A transaction broadcast (or possibly broadcast) and not yet mined.
struct InFlight {
    request: Prepared,
    nonce: u64,
    /// Every version signed, first to last; the last is the one the node should hold.
    versions: Vec<Signed>,
    /// Whether the node acknowledged the last version. False after a transport failure: the
    /// transaction may or may not have arrived, so it is re-broadcast at the next poll.
    delivered: bool,
    first_sent: Instant,
    last_sent: Instant,
    /// The caller, while it waits.
    reply: Option<oneshot::Sender<Result<TxOutcome, SendError>>>,
    /// Consecutive polls that found the nonce used but no receipt of ours.
    missing_polls: u32,
    /// The node's last refusal of a (re)broadcast, for the caller's error.
    last_refusal: Option<String>,
}

impl InFlight {
    fn hashes(&self) -> Vec<TxHash> {
        self.versions.iter().map(|s| s.version.hash).collect()
    }

    fn latest(&self) -> Option<&Signed> {
        self.versions.last()
    }

    fn answer(&mut self, result: Result<TxOutcome, SendError>) {
        if let Some(reply) = self.reply.take() {
            // A caller that stopped waiting has nothing to receive; the outcome is logged anyway.
            let _ = reply.send(result);
        }
    }
}

/// The fees the network asks for now.
#[derive(Debug, Clone, Copy)]
struct NetworkFees {
    /// Base fee of the next block.
    base_fee: u128,
    /// The default estimator's `maxFeePerGas` (twice the base fee plus the tip).
    max_fee: u128,
    /// The default estimator's tip.
    priority_fee: u128,
}

/// The sender task's state. Only this task touches the nonce.
pub(crate) struct Task {
    link: Arc<Link>,
    signer: PrivateKeySigner,
    /// The nonce the next new transaction gets; it only ever grows.
    next_nonce: u64,
    /// Ordered by nonce.
    in_flight: Vec<InFlight>,
    /// Fees are read at most once per poll interval, not once per transaction.
    fees: Option<(Instant, NetworkFees)>,
    commands: mpsc::Receiver<Command>,
    status: watch::Sender<SenderStatus>,
    counters: SenderStatus,
}

impl Task {
    pub(crate) fn new(
        link: Arc<Link>,
        mut signer: PrivateKeySigner,
        next_nonce: u64,
        commands: mpsc::Receiver<Command>,
        status: watch::Sender<SenderStatus>,
    ) -> Self {
        // The signer then refuses any transaction for another chain, on top of the check at start.
        alloy::signers::Signer::set_chain_id(&mut signer, Some(link.chain_id));
        let counters = SenderStatus { running: true, next_nonce, ..SenderStatus::default() };
        Task { link, signer, next_nonce, in_flight: Vec::new(), fees: None, commands, status, counters }
    }

    /// Serves requests and watches transactions until cancelled, or until every handle is gone
    /// and nothing is in flight.
    pub(crate) async fn run(mut self) {
        let mut ticker = tokio::time::interval(self.link.config.poll_interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut accepting = true;
        let cancel = self.link.cancel.clone();
        loop {
            // Back-pressure: with the node's per-account pool in mind, new requests wait in the
            // queue (and callers in `send`) while enough transactions are in flight.
            let room = self.in_flight.len() < self.link.config.max_in_flight;
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                command = self.commands.recv(), if accepting && room => match command {
                    Some(command) => self.submit(command).await,
                    None => accepting = false,
                },
                _ = ticker.tick() => self.poll().await,
            }
            self.publish();
            if !accepting && self.in_flight.is_empty() {
                break;
            }
        }
        self.shut_down();
    }

    /// Answers everyone still waiting; the transactions themselves stay with the node.
    fn shut_down(mut self) {
        self.commands.close();
        while let Ok(Command { request, reply }) = self.commands.try_recv() {
            let _ = reply.send(Err(SendError::Stopped { label: request.label, hashes: Vec::new() }));
        }
        for mut tx in std::mem::take(&mut self.in_flight) {
            let hashes = tx.hashes();
            tracing::warn!(label = %tx.request.label, nonce = tx.nonce, ?hashes,
                "sender stopping with a transaction in flight; it may still be mined");
            tx.answer(Err(SendError::Stopped { label: tx.request.label.clone(), hashes }));
        }
        self.counters.running = false;
        self.publish();
        tracing::info!(address = %self.link.address, "transaction sender stopped");
    }

    fn publish(&mut self) {
        self.counters.next_nonce = self.next_nonce;
        self.counters.in_flight = self.in_flight.len();
        let counters = self.counters.clone();
        self.status.send_if_modified(|status| {
            let changed = *status != counters;
            *status = counters;
            changed
        });
    }

    /// Signs and broadcasts a new transaction with the next nonce.
    async fn submit(&mut self, Command { request, reply }: Command) {
        if reply.is_closed() {
            // The caller gave up before anything was signed: sending now would surprise it.
            tracing::debug!(label = %request.label, "request dropped by its caller before signing");
            return;
        }
        if self.in_flight.is_empty() {
            self.realign_idle_nonce().await;
        }
        let mut attempts = 0;
        loop {
            let (max_fee, priority_fee) = match self.fees_for_new(&request.label).await {
                Ok(fees) => fees,
                Err(e) => {
                    let _ = reply.send(Err(e));
                    return;
                }
            };
            let nonce = self.next_nonce;
            let signed = match self.sign(&request, nonce, max_fee, priority_fee) {
                Ok(signed) => signed,
                Err(e) => {
                    let _ = reply.send(Err(e));
                    return;
                }
            };
            if self.link.cancel.is_cancelled() {
                // Stopping: do not start a broadcast whose fate the caller would never learn.
                let _ = reply.send(Err(SendError::Stopped { label: request.label, hashes: Vec::new() }));
                return;
            }
            let delivered = match self.broadcast(&signed.raw).await {
                Ok(()) => true,
                Err(RpcFailure::Failed(e)) => match refusal(&e) {
                    Some(Refusal::AlreadyKnown) => true,
                    Some(Refusal::NonceTooLow | Refusal::Underpriced) if attempts < NONCE_RETRIES => {
                        attempts += 1;
                        tracing::info!(label = %request.label, nonce, error = %e, "nonce taken; re-reading it");
                        if let Err(e) = self.resync_nonce(nonce).await {
                            let _ = reply.send(Err(e.into_error(
                                &self.link,
                                "re-reading the nonce",
                                &request.label,
                            )));
                            return;
                        }
                        continue;
                    }
                    Some(Refusal::FeeBelowBaseFee) if attempts < NONCE_RETRIES => {
                        // The base fee rose past our fee since it was read; read it again, which
                        // also refuses when it is now above the cap.
                        attempts += 1;
                        self.fees = None;
                        continue;
                    }
                    Some(Refusal::InsufficientFunds) => {
                        let needed = U256::from(request.gas_limit)
                            .saturating_mul(U256::from(max_fee))
                            .saturating_add(request.value);
                        let _ = reply.send(Err(SendError::InsufficientFunds {
                            label: request.label,
                            address: self.link.address,
                            balance: self.link.balance().await,
                            needed: Some(needed),
                        }));
                        return;
                    }
                    None => false,
                    Some(Refusal::FeeBelowBaseFee) if max_fee >= self.link.config.max_fee_per_gas => {
                        let _ = reply.send(Err(SendError::OverBudget {
                            label: request.label,
                            key: "chain.max_fee_gwei",
                            why: format!(
                                "the node refuses a fee of {} gwei, the cap, as below the base fee",
                                gwei(max_fee)
                            ),
                        }));
                        return;
                    }
                    Some(_) => {
                        let _ = reply.send(Err(SendError::Rpc {
                            rpc: self.link.rpc.clone(),
                            during: "broadcasting",
                            source: e,
                        }));
                        return;
                    }
                },
                // Whether the node got it is unknown: count the nonce as used and re-broadcast at
                // the next poll. Treating it as not sent could give the nonce to another
                // transaction while this one sits in the pool.
                Err(failure) => {
                    tracing::warn!(label = %request.label, nonce, error = %failure.describe(),
                        "broadcast unconfirmed; will re-broadcast");
                    false
                }
            };
            let now = Instant::now();
            tracing::info!(label = %request.label, nonce, hash = %signed.version.hash, max_fee,
                priority_fee, gas_limit = request.gas_limit, "transaction broadcast");
            self.next_nonce = nonce + 1;
            self.counters.sent += 1;
            self.in_flight.push(InFlight {
                request,
                nonce,
                versions: vec![signed],
                delivered,
                first_sent: now,
                last_sent: now,
                reply: Some(reply),
                missing_polls: 0,
                last_refusal: None,
            });
            return;
        }
    }

    /// The account's nonce counting the node's pending pool.
    async fn pending_nonce(&self) -> Result<u64, RpcFailure> {
        self.link.rpc(self.link.provider.get_transaction_count(self.link.address).pending()).await
    }

    /// With nothing of ours in flight the node's pending nonce is the whole truth: it is lower
    /// than ours after a reorg dropped a transaction that had been mined (signing past it would
    /// queue the new one behind a gap for ever), higher after another user of the key sent one.
    async fn realign_idle_nonce(&mut self) {
        match self.pending_nonce().await {
            Ok(pending) if pending != self.next_nonce => {
                tracing::warn!(
                    ours = self.next_nonce,
                    chain = pending,
                    "the account nonce moved under us (a reorg or another sender); following the chain"
                );
                self.next_nonce = pending;
            }
            Ok(_) => {}
            // Keep ours; a refusal on broadcast re-reads it anyway.
            Err(e) => {
                tracing::debug!(error = %e.describe(), "cannot re-read the account nonce before sending")
            }
        }
    }

    /// After the node said `tried` is taken: moves the next nonce past it and past what the node
    /// counts as pending, never backwards (lower nonces may be ours, in flight).
    async fn resync_nonce(&mut self, tried: u64) -> Result<(), RpcFailure> {
        let pending = self.pending_nonce().await?;
        self.next_nonce = self.next_nonce.max(pending).max(tried + 1);
        Ok(())
    }

    fn sign(
        &self,
        request: &Prepared,
        nonce: u64,
        max_fee: u128,
        priority_fee: u128,
    ) -> Result<Signed, SendError> {
        let mut tx = TxEip1559 {
            chain_id: self.link.chain_id,
            nonce,
            gas_limit: request.gas_limit,
            max_fee_per_gas: max_fee,
            max_priority_fee_per_gas: priority_fee,
            to: TxKind::Call(request.to),
            value: request.value,
            access_list: Default::default(),
            input: request.input.clone(),
        };
        let signature = self
            .signer
            .sign_transaction_sync(&mut tx)
            .map_err(|e| SendError::Signing { label: request.label.clone(), why: e.to_string() })?;
        let signed = tx.into_signed(signature);
        let hash = *signed.hash();
        let raw = TxEnvelope::from(signed).encoded_2718().into();
        let version = TxVersion { hash, max_fee_per_gas: max_fee, max_priority_fee_per_gas: priority_fee };
        Ok(Signed { version, raw })
    }

    async fn broadcast(&self, raw: &Bytes) -> Result<(), RpcFailure> {
        let request = self.link.provider.raw_request::<_, TxHash>("eth_sendRawTransaction".into(), (raw,));
        self.link.rpc(request).await.map(drop)
    }

    /// The network's fees, read at most once per poll interval.
    async fn network_fees(&mut self) -> Result<NetworkFees, RpcFailure> {
        if let Some((at, fees)) = self.fees
            && at.elapsed() < self.link.config.poll_interval
        {
            return Ok(fees);
        }
        let history = self
            .link
            .rpc(self.link.provider.get_fee_history(
                FEE_HISTORY_BLOCKS,
                BlockNumberOrTag::Latest,
                &[FEE_REWARD_PERCENTILE],
            ))
            .await?;
        let base_fee = history.next_block_base_fee().or(history.latest_block_base_fee()).unwrap_or(0);
        let estimate = eip1559_default_estimator(base_fee, &history.reward.unwrap_or_default());
        let fees = NetworkFees {
            base_fee,
            max_fee: estimate.max_fee_per_gas,
            priority_fee: estimate.max_priority_fee_per_gas,
        };
        self.fees = Some((Instant::now(), fees));
        Ok(fees)
    }

    /// `(maxFeePerGas, maxPriorityFeePerGas)` for a new transaction: the network's estimate held
    /// to the cap; refused when even the base fee is above the cap (it could not be mined).
    async fn fees_for_new(&mut self, label: &str) -> Result<(u128, u128), SendError> {
        let fees = self.network_fees().await.map_err(|e| e.into_error(&self.link, "reading fees", label))?;
        let cap = self.link.config.max_fee_per_gas;
        if fees.base_fee > cap {
            return Err(SendError::OverBudget {
                label: label.to_owned(),
                key: "chain.max_fee_gwei",
                why: format!(
                    "the base fee is {} gwei, above the fee cap of {} gwei",
                    gwei(fees.base_fee),
                    gwei(cap)
                ),
            });
        }
        let max_fee = fees.max_fee.min(cap);
        Ok((max_fee, fees.priority_fee.min(max_fee)))
    }

    /// Checks every transaction in flight: resolves the mined ones, re-broadcasts or replaces the
    /// stuck ones, and tells callers whose wait is over.
    async fn poll(&mut self) {
        if self.in_flight.is_empty() {
            return;
        }
        let mined_nonce = match self
            .link
            .rpc(self.link.provider.get_transaction_count(self.link.address).latest())
            .await
        {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e.describe(), "cannot read the account nonce; retrying at the next poll");
                return;
            }
        };
        for mut tx in std::mem::take(&mut self.in_flight) {
            if tx.nonce < mined_nonce {
                if let Some(result) = self.mined(&mut tx).await {
                    self.resolved(tx, result);
                    continue;
                }
            } else {
                self.nudge(&mut tx).await;
            }
            let waited = tx.first_sent.elapsed();
            if tx.reply.is_some() && waited >= self.link.config.receipt_timeout {
                let error = SendError::NotMined {
                    label: tx.request.label.clone(),
                    nonce: tx.nonce,
                    hashes: tx.hashes(),
                    waited,
                    last_refusal: tx.last_refusal.clone(),
                };
                tracing::warn!(%error, "caller stopped waiting; still tracking the transaction");
                tx.answer(Err(error));
            }
            self.in_flight.push(tx);
        }
    }

    /// The outcome of a transaction whose nonce the chain has passed, once a receipt of one of its
    /// versions is found (or it is clear that none will be).
    async fn mined(&mut self, tx: &mut InFlight) -> Option<Result<TxOutcome, SendError>> {
        // Newest first: normally the last version is the one mined.
        for index in (0..tx.versions.len()).rev() {
            let hash = tx.versions[index].version.hash;
            match self.link.rpc(self.link.provider.get_transaction_receipt(hash)).await {
                Ok(Some(receipt)) => return Some(self.outcome(tx, receipt).await),
                Ok(None) => {}
                Err(RpcFailure::Cancelled) => return None,
                Err(e) => {
                    tracing::warn!(%hash, error = %e.describe(), "cannot read a receipt; retrying at the next poll");
                    return None;
                }
            }
        }
        tx.missing_polls += 1;
        (tx.missing_polls >= CONSUMED_AFTER_POLLS).then(|| {
            Err(SendError::NonceConsumed {
                label: tx.request.label.clone(),
                nonce: tx.nonce,
                hashes: tx.hashes(),
            })
        })
    }

    async fn outcome(&self, tx: &InFlight, receipt: TransactionReceipt) -> Result<TxOutcome, SendError> {
        let block_number = receipt.block_number.unwrap_or_default();
        if !receipt.status() {
            let reason = self.replay(&tx.request, block_number, receipt.gas_used).await;
            return Err(SendError::Reverted {
                label: tx.request.label.clone(),
                reason: Box::new(reason),
                tx: Some(receipt.transaction_hash),
                block_number: receipt.block_number,
            });
        }
        Ok(TxOutcome {
            label: tx.request.label.clone(),
            hash: receipt.transaction_hash,
            nonce: tx.nonce,
            block_number,
            block_hash: receipt.block_hash.unwrap_or_default(),
            gas_used: receipt.gas_used,
            effective_gas_price: receipt.effective_gas_price,
            versions: tx.versions.iter().map(|s| s.version).collect(),
            receipt,
        })
    }

    /// Why a mined transaction reverted: the same call replayed with `eth_call` on the state at
    /// the end of its block, with that block's number and timestamp, so a revert that depends on
    /// the block (a proving period) replays as it happened.
    async fn replay(&self, request: &Prepared, block: u64, gas_used: u64) -> RevertReason {
        let call = TransactionRequest::default()
            .from(self.link.address)
            .to(request.to)
            .value(request.value)
            .input(request.input.clone().into())
            .gas_limit(request.gas_limit);
        let replayed = self.link.rpc(self.link.provider.call(call).block(BlockId::number(block))).await;
        match replayed {
            Err(RpcFailure::Failed(e)) if errors::is_revert(&e) && errors::revert_data(&e).is_some() => {
                errors::revert_reason(&e)
            }
            // A revert hands back its unused gas, so using all of it means running out of it.
            _ if gas_used >= request.gas_limit => RevertReason::Node(format!(
                "ran out of gas (used all {gas_used} of its gas limit; raise the limit or \
                 chain.gas_margin_percent)"
            )),
            Err(RpcFailure::Failed(e)) if errors::is_revert(&e) => errors::revert_reason(&e),
            Ok(_) => RevertReason::Node(format!(
                "reverted on chain, but the replay at block {block} succeeded (state changed within the block?)"
            )),
            Err(e) => RevertReason::Node(format!("reverted on chain; replaying it failed: {}", e.describe())),
        }
    }

    fn resolved(&mut self, mut tx: InFlight, result: Result<TxOutcome, SendError>) {
        match &result {
            Ok(outcome) => {
                self.counters.mined += 1;
                tracing::info!(label = %outcome.label, hash = %outcome.hash, nonce = outcome.nonce,
                    block = outcome.block_number, gas_used = outcome.gas_used,
                    replacements = outcome.replacements(), "transaction mined");
            }
            Err(error) => {
                if matches!(error, SendError::Reverted { .. }) {
                    self.counters.reverted += 1;
                }
                tracing::warn!(%error, nonce = tx.nonce, "transaction failed");
            }
        }
        tx.answer(result);
    }

    /// A transaction not mined yet: re-broadcast it if the node may not have it, replace it with
    /// higher fees once it has waited `chain.replace_after_secs`, or re-broadcast the last version
    /// when no more replacements are allowed (a node that restarted or evicted it may have lost it).
    async fn nudge(&mut self, tx: &mut InFlight) {
        if tx.delivered && tx.last_sent.elapsed() < self.link.config.replace_after {
            if self.node_holds(tx).await {
                return;
            }
            // Not mined and not pending: a reorg took it off the chain without putting it back in
            // the pool, or the pool evicted it. Waiting for the replacement delay would leave a
            // gap in the nonces for that long; send it again now.
            tracing::warn!(label = %tx.request.label, nonce = tx.nonce,
                "transaction vanished from the node (a reorg or eviction); broadcasting it again");
            tx.delivered = false;
        }
        let retry = !tx.delivered;
        tx.last_sent = Instant::now();
        if !retry
            && tx.versions.len() <= self.link.config.max_replacements as usize
            && let Some((max_fee, priority_fee)) = self.replacement_fees(tx).await
        {
            match self.sign(&tx.request, tx.nonce, max_fee, priority_fee) {
                Ok(signed) => match self.broadcast(&signed.raw).await {
                    Ok(()) => return self.replaced(tx, signed, true),
                    Err(RpcFailure::Failed(e)) => match refusal(&e) {
                        Some(Refusal::AlreadyKnown) => return self.replaced(tx, signed, true),
                        // A version was mined meanwhile; the next poll finds its receipt.
                        Some(Refusal::NonceTooLow) => return,
                        Some(_) => {
                            tracing::info!(label = %tx.request.label, error = %e,
                                "replacement refused; re-broadcasting the last version");
                            tx.last_refusal = Some(e.to_string());
                        }
                        // Whether it arrived is unknown: track it (it may be mined) and send it
                        // again at the next poll; it outbids the earlier versions either way.
                        None => return self.replaced(tx, signed, false),
                    },
                    Err(_) => return self.replaced(tx, signed, false),
                },
                Err(e) => tracing::error!(error = %e, "cannot sign a replacement"),
            }
        }
        let Some(latest) = tx.latest() else { return };
        match self.broadcast(&latest.raw).await {
            Ok(()) => tx.delivered = true,
            Err(RpcFailure::Failed(e)) => match refusal(&e) {
                Some(Refusal::AlreadyKnown) => tx.delivered = true,
                // Mined meanwhile: the next poll resolves it.
                Some(Refusal::NonceTooLow) => tx.delivered = true,
                Some(_) => {
                    tracing::info!(label = %tx.request.label, nonce = tx.nonce, error = %e, "re-broadcast refused");
                    tx.last_refusal = Some(e.to_string());
                }
                None => tracing::warn!(label = %tx.request.label, error = %e, "re-broadcast failed"),
            },
            Err(failure) => {
                tracing::warn!(label = %tx.request.label, error = %failure.describe(), "re-broadcast failed")
            }
        }
    }

    /// Whether the node still knows the last version of `tx` (pending or mined). An RPC failure
    /// counts as yes: only a clear "unknown" triggers a re-broadcast.
    async fn node_holds(&self, tx: &InFlight) -> bool {
        let Some(latest) = tx.latest() else { return true };
        let hash = latest.version.hash;
        !matches!(self.link.rpc(self.link.provider.get_transaction_by_hash(hash)).await, Ok(None))
    }

    fn replaced(&mut self, tx: &mut InFlight, signed: Signed, delivered: bool) {
        tracing::info!(label = %tx.request.label, nonce = tx.nonce, hash = %signed.version.hash,
            max_fee = signed.version.max_fee_per_gas, priority_fee = signed.version.max_priority_fee_per_gas,
            replacement = tx.versions.len(), "stuck transaction replaced with higher fees");
        tx.versions.push(signed);
        tx.delivered = delivered;
        self.counters.replacements += 1;
    }

    /// Fees for the next version of `tx`: both raised by `chain.fee_bump_percent` and at least
    /// what the network asks now, held to the cap. `None` when the cap leaves no room for the
    /// minimum bump that nodes accept.
    async fn replacement_fees(&mut self, tx: &InFlight) -> Option<(u128, u128)> {
        let last = tx.latest()?.version;
        let cap = self.link.config.max_fee_per_gas;
        let percent = self.link.config.fee_bump_percent;
        let (min_max_fee, min_priority_fee) = (
            bump(last.max_fee_per_gas, MIN_FEE_BUMP_PERCENT),
            bump(last.max_priority_fee_per_gas, MIN_FEE_BUMP_PERCENT),
        );
        if min_max_fee > cap {
            tracing::info!(label = %tx.request.label, nonce = tx.nonce, "at the fee cap (chain.max_fee_gwei); not replacing");
            return None;
        }
        let (network_max, network_priority) = match self.network_fees().await {
            Ok(fees) => (fees.max_fee, fees.priority_fee),
            Err(_) => (0, 0),
        };
        let max_fee = bump(last.max_fee_per_gas, percent).max(network_max).min(cap);
        let priority_fee = bump(last.max_priority_fee_per_gas, percent).max(network_priority).min(max_fee);
        (max_fee >= min_max_fee && priority_fee >= min_priority_fee).then_some((max_fee, priority_fee))
    }
}

/// `wei` in gwei for messages.
fn gwei(wei: u128) -> String {
    format_units(U256::from(wei), "gwei").map(trim_zeros).unwrap_or_else(|_| format!("{wei} wei"))
}

fn trim_zeros(text: String) -> String {
    if text.contains('.') { text.trim_end_matches('0').trim_end_matches('.').to_string() } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gwei_for_messages() {
        assert_eq!(gwei(1_000_000_000), "1");
        assert_eq!(gwei(1_500_000_000), "1.5");
        assert_eq!(gwei(7), "0.000000007");
    }
}
