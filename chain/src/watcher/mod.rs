//! The chain event watcher: follows the BigFile contracts' logs a confirmation depth behind the
//! head and hands them, in order, to the agent's [`Handler`].
//!
//! What it guarantees:
//! - **Confirmations.** A log is delivered only once its block is at least `confirmations` blocks
//!   below the head the watcher saw.
//! - **Nothing lost, nothing skipped.** The cursor (see [`Cursor`]) is saved through a
//!   [`CursorStore`] after every batch the handler accepted, and only then; a handler error is
//!   retried from the same block after a back-off.
//! - **Idempotent delivery.** A batch whose cursor was not saved yet (crash, cancellation, failed
//!   save) is delivered again; handlers dedupe on [`LogKey`]. See [`Handler`] for the contract.
//! - **Reorgs.** Before every step the watcher checks that the handled tip's hash is still on the
//!   node's chain. If it is not, it looks through the hashes it recorded for the newest one the
//!   chain still has (the common ancestor), tells the handler ([`Handler::rewound`]) that every
//!   log after it is void, saves the rewound cursor and continues from there. When no recorded
//!   block is left on the chain (a reorg deeper than the window, or a node now serving another
//!   chain) it rewinds to the start block and delivers everything again.
//! - **Outages.** RPC failures are retried with exponential back-off until the node answers again;
//!   the status shows the outage, one warning is logged when it starts and one info line when it
//!   ends. A node that answers but lags behind the handled tip is waited for, not taken for a
//!   reorg, as long as the recorded blocks it does have match; if one of them differs, it is a
//!   reorg to a shorter chain and is rewound like any other.
//!
//! The watcher runs as one tokio task owning its state; [`spawn`] returns a [`WatcherHandle`] with
//! the task's [`WatcherStatus`] and stops it through a cancellation token.

mod cursor;
mod engine;
mod handler;
mod source;

use std::time::Duration;

use alloy::primitives::Address;
use alloy::providers::Provider;
use tokio::sync::watch;
use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::CancellationToken;

pub use cursor::{BlockRef, Cursor, CursorError, CursorStore, JsonFileCursorStore, MemoryCursorStore};
pub use handler::{Handler, HandlerError, LogBatch, LogKey, Rewind, WatchedLog};

/// How a watcher follows the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatcherConfig {
    /// The contracts whose logs are delivered (at least one: an empty filter would match every
    /// contract on the chain).
    pub addresses: Vec<Address>,
    /// The first block to read when no cursor was saved yet (the deployment block).
    pub start_block: u64,
    /// How many blocks a log's block must lie below the head before it is delivered: 0 delivers
    /// the head's logs.
    pub confirmations: u64,
    /// How many block numbers below the handled tip the cursor remembers hashes for. A reorg is
    /// rewound to its exact common ancestor when that lies within the window, that is when the
    /// reorg is at most `confirmations + window - 1` blocks deep; a deeper one replays from
    /// `start_block`.
    pub window: u64,
    /// How long to wait before looking for new blocks once caught up.
    pub poll_interval: Duration,
    /// The most blocks one `eth_getLogs` call (and so one batch) covers.
    pub max_range: u64,
    /// How long one RPC call may take before it counts as failed.
    pub request_timeout: Duration,
    /// The first delay after a failure; it doubles with every further failure.
    pub backoff_min: Duration,
    /// The longest delay between retries.
    pub backoff_max: Duration,
}

impl WatcherConfig {
    /// Watches `addresses` from `start_block` with the default depths and timings: 6
    /// confirmations, a 128-block window, a 2 s poll, 1,000 blocks per query, 10 s per call and
    /// back-off from 0.5 s to 30 s.
    pub fn new(addresses: Vec<Address>, start_block: u64) -> Self {
        Self {
            addresses,
            start_block,
            confirmations: 6,
            window: 128,
            poll_interval: Duration::from_secs(2),
            max_range: 1_000,
            request_timeout: Duration::from_secs(10),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
        }
    }

    /// Checks the values a watcher cannot run with.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.addresses.is_empty() {
            return Err(ConfigError::NoAddresses);
        }
        let zero = [
            ("window", self.window == 0),
            ("max_range", self.max_range == 0),
            ("poll_interval", self.poll_interval.is_zero()),
            ("request_timeout", self.request_timeout.is_zero()),
            ("backoff_min", self.backoff_min.is_zero()),
        ];
        if let Some((field, _)) = zero.iter().find(|(_, is_zero)| *is_zero) {
            return Err(ConfigError::Zero(field));
        }
        if self.backoff_min > self.backoff_max {
            return Err(ConfigError::Backoff { min: self.backoff_min, max: self.backoff_max });
        }
        Ok(())
    }
}

/// A [`WatcherConfig`] the watcher cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No contract address to watch.
    #[error("watcher: no contract addresses to watch")]
    NoAddresses,
    /// A field that must be positive is zero.
    #[error("watcher: {0} must be positive")]
    Zero(&'static str),
    /// The back-off bounds are reversed.
    #[error("watcher: backoff_min ({min:?}) exceeds backoff_max ({max:?})")]
    Backoff {
        /// The lower bound.
        min: Duration,
        /// The upper bound.
        max: Duration,
    },
}

/// What the watcher is doing, for the agent's status and doctor commands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatcherStatus {
    /// The latest head the node reported.
    pub head: Option<u64>,
    /// The last block handled (the cursor's tip); `None` before the first batch.
    pub handled: Option<BlockRef>,
    /// Whether the last RPC call succeeded; false until the first one does.
    pub connected: bool,
    /// The error that stopped the last step (RPC, handler, cursor store or inconsistent node
    /// answers); cleared by the next step that succeeds.
    pub last_error: Option<String>,
    /// How many reorgs this watcher rewound.
    pub rewinds: u64,
    /// The most recent of them.
    pub last_rewind: Option<Rewind>,
}

/// A running watcher: its status, and the way to stop it.
///
/// Dropping the handle does not stop the task; cancel the token given to [`spawn`] or call
/// [`WatcherHandle::shutdown`].
#[derive(Debug)]
pub struct WatcherHandle {
    status: watch::Receiver<WatcherStatus>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl WatcherHandle {
    /// The current status.
    pub fn status(&self) -> WatcherStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change (`wait_for` waits for a condition).
    pub fn subscribe(&self) -> watch::Receiver<WatcherStatus> {
        self.status.clone()
    }

    /// Whether the task has ended (cancelled, or its handler panicked).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops the watcher and waits for it. A handler call in flight is dropped; its batch is
    /// delivered again by the next watcher on the same cursor store. Errs when the task panicked.
    pub async fn shutdown(self) -> Result<(), JoinError> {
        self.cancel.cancel();
        self.task.await
    }
}

/// Starts a watcher on the current tokio runtime: it reads the chain through `provider`, resumes
/// from `store`'s cursor (or `config.start_block`), hands logs to `handler`, and runs until
/// `cancel` is cancelled or [`WatcherHandle::shutdown`] is called (which cancels a child token of
/// `cancel`, never `cancel` itself).
pub fn spawn<P, S, H>(
    provider: P,
    config: WatcherConfig,
    store: S,
    handler: H,
    cancel: &CancellationToken,
) -> Result<WatcherHandle, ConfigError>
where
    P: Provider + 'static,
    S: CursorStore,
    H: Handler,
{
    config.validate()?;
    let (status_tx, status) = watch::channel(WatcherStatus::default());
    let cancel = cancel.child_token();
    let source = source::RpcSource::new(provider, config.request_timeout);
    let engine = engine::Engine::new(source, store, handler, config, status_tx);
    let task = tokio::spawn(engine.run(cancel.clone()));
    Ok(WatcherHandle { status, cancel, task })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_validation_names_the_field() {
        let good = WatcherConfig::new(vec![Address::repeat_byte(1)], 0);
        assert_eq!(good.validate(), Ok(()));
        assert_eq!(
            WatcherConfig { addresses: vec![], ..good.clone() }.validate(),
            Err(ConfigError::NoAddresses)
        );
        assert_eq!(
            WatcherConfig { max_range: 0, ..good.clone() }.validate(),
            Err(ConfigError::Zero("max_range"))
        );
        assert_eq!(WatcherConfig { window: 0, ..good.clone() }.validate(), Err(ConfigError::Zero("window")));
        let reversed = WatcherConfig {
            backoff_min: Duration::from_secs(2),
            backoff_max: Duration::from_secs(1),
            ..good
        };
        assert!(matches!(reversed.validate(), Err(ConfigError::Backoff { .. })));
    }
}
