//! The transaction sender: one task owns the provider's account.
//!
//! Everything that signs with the account goes through a [`SenderHandle`], which any number of
//! tasks may clone and use at once. The task behind it is the only place that assigns nonces, so
//! concurrent sends get consecutive nonces and never collide. For each transaction:
//!
//! 1. The caller's side estimates gas. A revert there comes back as [`SendError::Reverted`] with the
//!    custom error decoded ([`crate::errors`]); nothing is signed and no nonce is used. A gas need
//!    above `chain.max_gas_per_tx` is refused the same way.
//! 2. The task takes the next nonce, prices the transaction from `eth_feeHistory` (EIP-1559, never
//!    above `chain.max_fee_gwei`), signs it for the configured chain id and broadcasts it.
//! 3. It polls for the receipt. A transaction still unmined after `chain.replace_after_secs` is
//!    signed again with the same nonce and fees raised by `chain.fee_bump_percent` (up to
//!    `chain.max_replacements` times, never above the cap); whichever version is mined is the
//!    outcome. A mined transaction that reverted is replayed with `eth_call` at its block to
//!    recover the reason.
//!
//! The chain id is checked against the node before the task starts, so nothing is ever signed for
//! the wrong chain (and each signature commits to the chain id, so it is useless elsewhere).

mod config;
mod error;
mod task;

use std::sync::Arc;

use alloy::primitives::{Address, B256, Bytes, TxHash, U256};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::types::{Log, TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use alloy::transports::http::reqwest::Url;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

pub use config::{ConfigProblem, GWEI, MIN_FEE_BUMP_PERCENT, SenderConfig};
pub use error::SendError;

use crate::errors;
use error::{Refusal, redact, refusal};
use task::{Command, Link, Prepared, RpcFailure, Task};

/// Requests queued for the task beyond those it is working on; senders wait when it is full.
const COMMAND_QUEUE: usize = 64;

/// A transaction to send: a call to `to` with `input` and `value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxRequest {
    /// The contract (or account) called.
    pub to: Address,
    /// The calldata.
    pub input: Bytes,
    /// ETH sent along, in wei.
    pub value: U256,
    /// What this is for, e.g. `submitProofs deal 3`: it appears in logs and in every error.
    pub label: String,
    /// A gas limit to use instead of the estimate plus `chain.gas_margin_percent`. Gas is still
    /// estimated first, so a reverting call is still refused before signing.
    pub gas_limit: Option<u64>,
}

impl TxRequest {
    /// A call of `call` (a bindings call struct, e.g. `StorageMarket::takeSlotCall`) on `to`,
    /// sending no ETH.
    pub fn call<C: SolCall>(to: Address, call: &C, label: impl Into<String>) -> Self {
        TxRequest {
            to,
            input: call.abi_encode().into(),
            value: U256::ZERO,
            label: label.into(),
            gas_limit: None,
        }
    }

    /// The same request sending `value` wei.
    pub fn with_value(mut self, value: U256) -> Self {
        self.value = value;
        self
    }

    /// The same request with a fixed gas limit.
    pub fn with_gas_limit(mut self, gas_limit: u64) -> Self {
        self.gas_limit = Some(gas_limit);
        self
    }
}

/// One signed version of a transaction (the first, or a fee-bumped replacement).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxVersion {
    /// Its hash.
    pub hash: TxHash,
    /// Its `maxFeePerGas`, in wei.
    pub max_fee_per_gas: u128,
    /// Its `maxPriorityFeePerGas`, in wei.
    pub max_priority_fee_per_gas: u128,
}

/// A transaction that was mined and succeeded.
#[derive(Debug, Clone)]
pub struct TxOutcome {
    /// The request's label.
    pub label: String,
    /// The version that was mined.
    pub hash: TxHash,
    /// Its nonce.
    pub nonce: u64,
    /// The block it is in.
    pub block_number: u64,
    /// That block's hash (the watcher decides what a reorganisation means).
    pub block_hash: B256,
    /// Gas it used.
    pub gas_used: u64,
    /// What it paid per gas, in wei.
    pub effective_gas_price: u128,
    /// Every version broadcast, first to last; more than one when it was replaced.
    pub versions: Vec<TxVersion>,
    /// The full receipt, logs included.
    pub receipt: TransactionReceipt,
}

impl TxOutcome {
    /// How many times the transaction was re-signed with higher fees.
    pub fn replacements(&self) -> usize {
        self.versions.len().saturating_sub(1)
    }

    /// The events it emitted; decode them with the bindings' event types.
    pub fn logs(&self) -> &[Log] {
        self.receipt.inner.logs()
    }
}

/// Counters and state of the sender, for metrics and status pages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SenderStatus {
    /// Whether the task is running.
    pub running: bool,
    /// The nonce the next new transaction gets.
    pub next_nonce: u64,
    /// Transactions broadcast and not yet mined.
    pub in_flight: usize,
    /// Transactions broadcast (first versions only).
    pub sent: u64,
    /// Replacement versions broadcast.
    pub replacements: u64,
    /// Transactions mined that succeeded.
    pub mined: u64,
    /// Transactions mined that reverted.
    pub reverted: u64,
}

/// Sends transactions from the account through the sender task; cheap to clone.
///
/// Dropping every handle lets the task finish the transactions in flight (so none is left
/// untracked) and then stop; cancelling the token stops it at once (see [`spawn`]).
#[derive(Clone)]
pub struct SenderHandle {
    link: Arc<Link>,
    commands: mpsc::Sender<Command>,
    status: watch::Receiver<SenderStatus>,
}

impl std::fmt::Debug for SenderHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SenderHandle")
            .field("address", &self.link.address)
            .field("chain_id", &self.link.chain_id)
            .field("rpc", &self.link.rpc)
            .finish()
    }
}

/// Connects to `rpc_url`, checks that it serves `config.chain_id`, and starts the sender task for
/// `signer`'s account.
///
/// Fails before anything is signed when the configuration is invalid
/// ([`SendError::Config`]), the node cannot be reached within `chain.rpc_timeout_secs`
/// ([`SendError::Unreachable`]) or serves another chain ([`SendError::ChainIdMismatch`]).
///
/// The task runs until `cancel` fires, or until every handle is dropped and no transaction is in
/// flight. On cancellation, callers waiting on a broadcast transaction get
/// [`SendError::Stopped`] listing its hashes (it may still be mined: a restarted sender reads the
/// account's pending nonce from the node, so it continues after it rather than colliding with it),
/// and queued requests that were never signed get [`SendError::Stopped`] with no hashes.
pub async fn spawn(
    rpc_url: &str,
    signer: PrivateKeySigner,
    config: SenderConfig,
    cancel: CancellationToken,
) -> Result<SenderHandle, SendError> {
    let problems = config.validate();
    if !problems.is_empty() {
        return Err(SendError::Config(problems));
    }
    let rpc = redact(rpc_url);
    let url = rpc_url
        .parse::<Url>()
        .map_err(|e| SendError::InvalidRpcUrl { rpc: rpc.clone(), why: e.to_string() })?;
    let provider = RootProvider::new_http(url);
    let address = signer.address();
    let link = Arc::new(Link { provider, rpc, address, chain_id: config.chain_id, config, cancel });

    let actual = link
        .rpc(link.provider.get_chain_id())
        .await
        .map_err(|e| e.into_error(&link, "reading the chain id", "starting the sender"))?;
    if actual != link.chain_id {
        return Err(SendError::ChainIdMismatch { configured: link.chain_id, actual, rpc: link.rpc.clone() });
    }
    // The pending count includes our own transactions still in the node's pool (from an earlier
    // run), so new ones queue behind them instead of replacing them.
    let next_nonce = link
        .rpc(link.provider.get_transaction_count(address).pending())
        .await
        .map_err(|e| e.into_error(&link, "reading the account nonce", "starting the sender"))?;

    let (commands, queue) = mpsc::channel(COMMAND_QUEUE);
    let initial = SenderStatus { running: true, next_nonce, ..SenderStatus::default() };
    let (status_tx, status) = watch::channel(initial);
    let task = Task::new(link.clone(), signer, next_nonce, queue, status_tx);
    tracing::info!(%address, chain_id = link.chain_id, rpc = %link.rpc, next_nonce, "transaction sender started");
    tokio::spawn(task.run());
    Ok(SenderHandle { link, commands, status })
}

impl SenderHandle {
    /// Sends `request` and waits until a version of it is mined (or the caller's wait of
    /// [`SenderConfig::receipt_timeout`] is over).
    ///
    /// Errors before signing use no nonce: [`SendError::Reverted`] (without a hash),
    /// [`SendError::InsufficientFunds`], [`SendError::OverBudget`]. Dropping the returned future
    /// after the request reached the task does not cancel the transaction: once signed it is
    /// tracked to the end.
    pub async fn send(&self, request: TxRequest) -> Result<TxOutcome, SendError> {
        let TxRequest { to, input, value, label, gas_limit } = request;
        let estimate = self.estimate(&label, to, &input, value).await?;
        let max = self.link.config.max_gas_per_tx;
        if estimate > max {
            return Err(SendError::OverBudget {
                label,
                key: "chain.max_gas_per_tx",
                why: format!("needs {estimate} gas (estimated), above the {max} allowed per transaction"),
            });
        }
        let gas_limit = match gas_limit {
            Some(given) if given > max => {
                return Err(SendError::OverBudget {
                    label,
                    key: "chain.max_gas_per_tx",
                    why: format!("asks for a gas limit of {given}, above the {max} allowed per transaction"),
                });
            }
            Some(given) => given,
            None => self.link.config.gas_limit_for(estimate),
        };
        let (reply, answer) = oneshot::channel();
        let prepared = Prepared { label: label.clone(), to, input, value, gas_limit };
        if self.commands.send(Command { request: prepared, reply }).await.is_err() {
            return Err(SendError::Stopped { label, hashes: Vec::new() });
        }
        // The task answers every request it took, even when stopping; a missing answer means it
        // panicked, and then nothing more is known about the transaction.
        answer.await.unwrap_or(Err(SendError::Stopped { label, hashes: Vec::new() }))
    }

    /// Gas the call needs now, or why it cannot be sent.
    async fn estimate(&self, label: &str, to: Address, input: &Bytes, value: U256) -> Result<u64, SendError> {
        let link = &self.link;
        let call =
            TransactionRequest::default().from(link.address).to(to).value(value).input(input.clone().into());
        match link.rpc(link.provider.estimate_gas(call)).await {
            Ok(gas) => Ok(gas),
            Err(RpcFailure::Failed(e)) if errors::is_revert(&e) => Err(SendError::Reverted {
                label: label.to_owned(),
                reason: Box::new(errors::revert_reason(&e)),
                tx: None,
                block_number: None,
            }),
            Err(RpcFailure::Failed(e)) if refusal(&e) == Some(Refusal::InsufficientFunds) => {
                Err(SendError::InsufficientFunds {
                    label: label.to_owned(),
                    address: link.address,
                    balance: link.balance().await,
                    needed: Some(value),
                })
            }
            Err(e) => Err(e.into_error(link, "estimating gas", label)),
        }
    }

    /// The account that signs.
    pub fn address(&self) -> Address {
        self.link.address
    }

    /// The chain id every transaction is signed for (checked against the node at start).
    pub fn chain_id(&self) -> u64 {
        self.link.chain_id
    }

    /// The sender's current counters.
    pub fn status(&self) -> SenderStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every change of [`SenderHandle::status`] (e.g. to wait for a
    /// replacement).
    pub fn watch_status(&self) -> watch::Receiver<SenderStatus> {
        self.status.clone()
    }

    /// Waits until the task has stopped and answered every caller.
    pub async fn stopped(&self) {
        let mut status = self.status.clone();
        // The task drops its end of the channel as its last act.
        while status.changed().await.is_ok() {}
    }
}
