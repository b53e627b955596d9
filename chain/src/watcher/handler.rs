//! What the watcher hands to the agent: batches of confirmed logs, and rewinds after reorgs.

use std::future::Future;

use alloy::primitives::B256;
use alloy::rpc::types::Log;

use super::cursor::BlockRef;

/// Identifies one log of one block: the block's hash and the log's index in that block.
///
/// The same log delivered twice (after a crash, a cancelled handler or a failed cursor save) has
/// the same key, so handlers can dedupe on it. After a reorg, an event that lands again in a new
/// block is a new log with a new key: the rewind that preceded it told the handler that the old
/// one is void.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LogKey {
    /// Hash of the block that holds the log.
    pub block_hash: B256,
    /// The log's index within its block.
    pub log_index: u64,
}

/// One log the watcher delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedLog {
    /// Its stable key.
    pub key: LogKey,
    /// The block that holds it.
    pub block: BlockRef,
    /// The transaction that emitted it.
    pub transaction_hash: B256,
    /// The log as the node returned it; decode it with the bindings, e.g.
    /// `StorageMarket::DealCreated::decode_log(&log.log.inner)`. Its `block_hash`,
    /// `block_number`, `transaction_hash` and `log_index` are set and agree with the fields above.
    pub log: Log,
}

/// The logs of a run of consecutive confirmed blocks, `first..=last.number`.
///
/// Batches arrive in chain order, each starting right after the previous one (or after the
/// ancestor of the last rewind). Empty batches are delivered too, so a handler always knows how
/// far the confirmed chain goes, e.g. to time proving periods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogBatch {
    /// The first block covered.
    pub first: u64,
    /// The last block covered, with its hash; it is at least the confirmation depth below the head
    /// the watcher saw when it fetched the batch.
    pub last: BlockRef,
    /// The logs of the watched contracts in these blocks, ordered by block and log index.
    pub logs: Vec<WatchedLog>,
}

/// What a reorg voided: every log delivered from a block after `ancestor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rewind {
    /// The newest handled block that is still on the node's chain; `None` when none of the
    /// recorded blocks is (a reorg deeper than the window, or a different chain altogether), and
    /// everything from the start block on is void.
    pub ancestor: Option<BlockRef>,
    /// The first block whose logs are void: the ancestor's successor, or the start block.
    pub void_from: u64,
    /// The tip the watcher had handled before the reorg, now off the chain.
    pub abandoned: BlockRef,
}

/// A handler could not take a batch or a rewind; the watcher retries it after a back-off.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HandlerError(#[source] Box<dyn std::error::Error + Send + Sync>);

impl HandlerError {
    /// Wraps an error (or a message: `&str` and `String` convert too).
    pub fn new(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self(error.into())
    }
}

/// Takes what the watcher delivers. The agent's implementation decodes the logs with the bindings
/// and updates its deals, slots and proof schedule.
///
/// # Contract
///
/// - **At least once, in order.** Every log of a watched contract in a confirmed block is delivered,
///   in chain order. The watcher saves its cursor only after `handle` returned `Ok`, so nothing is
///   lost, but a batch whose cursor was not saved yet (the process stopped, the watcher was
///   cancelled while the handler ran, or the save failed) is delivered again. Handlers must be
///   idempotent; [`LogKey`] names a log for deduplication.
/// - **Never skipped.** When `handle` or `rewound` fails, the watcher backs off and tries again from
///   the same block (the retried batch may cover more blocks if the chain grew meanwhile). It never
///   advances past a batch the handler refused.
/// - **Reorgs.** When blocks already handled leave the chain, `rewound` is called before any batch
///   of the new chain. Everything delivered from `void_from` on is void; batches then continue
///   from `void_from`. Handlers must undo or re-validate whatever they derived from void logs
///   against the current chain. `rewound` may be called again for the same reorg (if the process
///   stops before the rewound cursor is saved), so it must be idempotent too.
/// - Calls never overlap, and a call may be cancelled (dropped) at any await point when the
///   watcher shuts down.
pub trait Handler: Send + 'static {
    /// Takes one batch of confirmed logs.
    fn handle(&mut self, batch: &LogBatch) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// Learns that a reorg voided every log delivered from `rewind.void_from` on.
    fn rewound(&mut self, rewind: &Rewind) -> impl Future<Output = Result<(), HandlerError>> + Send;
}
