//! The watcher's task: one step at a time, check the handled tip is still on the chain (rewinding
//! when it is not), fetch the next confirmed range with its logs, hand it over, save the cursor.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::B256;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::cursor::{BlockRef, Cursor, CursorError, CursorStore};
use super::handler::{Handler, HandlerError, LogBatch, LogKey, Rewind, WatchedLog};
use super::source::{ChainSource, Header, SourceError};
use super::{WatcherConfig, WatcherStatus};

/// What a successful step leaves to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// More confirmed blocks wait: step again at once.
    More,
    /// Caught up (or waiting for a lagging node): wait a poll interval.
    Idle,
}

/// Why a step stopped; the next step starts over from the saved state.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StepError {
    #[error("chain RPC: {0}")]
    Rpc(#[from] SourceError),
    #[error("inconsistent answers from the node: {0}")]
    Inconsistent(String),
    #[error("handler: {0}")]
    Handler(HandlerError),
    #[error("{0}")]
    Store(CursorError),
}

impl StepError {
    fn kind(&self) -> &'static str {
        match self {
            Self::Rpc(_) => "rpc",
            Self::Inconsistent(_) => "inconsistent",
            Self::Handler(_) => "handler",
            Self::Store(_) => "store",
        }
    }
}

/// Doubling delays between `min` and `max`, back to `min` after a success.
#[derive(Debug)]
struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        Self { min, max, next: min }
    }

    fn next(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    fn reset(&mut self) {
        self.next = self.min;
    }
}

/// A failure streak: the kind of the last failure and when the streak began.
#[derive(Debug)]
struct Trouble {
    kind: &'static str,
    since: Instant,
}

/// A range read from the node, checked for consistency, not yet handed over.
#[derive(Debug)]
struct Fetched {
    batch: LogBatch,
    /// Every block of the range whose hash is known: the headers read and the logs' blocks.
    blocks: Vec<BlockRef>,
}

/// The watcher's state, owned by its task.
pub(crate) struct Engine<C, S, H> {
    chain: C,
    store: Arc<S>,
    handler: H,
    config: WatcherConfig,
    /// The handled tip and recent hashes; `None` before the first batch or after a full rewind.
    cursor: Option<Cursor>,
    /// Whether `cursor` was loaded from the store yet.
    loaded: bool,
    status: watch::Sender<WatcherStatus>,
    trouble: Option<Trouble>,
    /// Blocks asked for per `eth_getLogs`: `max_range`, halved each time the node refuses a range
    /// (public RPCs cap the span or the number of results) and doubled back after each success.
    range: u64,
}

impl<C: ChainSource, S: CursorStore, H: Handler> Engine<C, S, H> {
    pub(crate) fn new(
        chain: C,
        store: S,
        handler: H,
        config: WatcherConfig,
        status: watch::Sender<WatcherStatus>,
    ) -> Self {
        let max_range = config.max_range;
        Self {
            chain,
            store: Arc::new(store),
            handler,
            config,
            cursor: None,
            loaded: false,
            status,
            trouble: None,
            range: max_range,
        }
    }

    /// Steps until cancelled, pausing a poll interval when caught up and backing off on failures.
    pub(crate) async fn run(mut self, cancel: CancellationToken) {
        let mut backoff = Backoff::new(self.config.backoff_min, self.config.backoff_max);
        loop {
            let outcome = tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                outcome = self.step() => outcome,
            };
            let pause = match outcome {
                Ok(progress) => {
                    self.recovered();
                    backoff.reset();
                    match progress {
                        Progress::More => continue,
                        Progress::Idle => self.config.poll_interval,
                    }
                }
                // The node answered, only not consistently (typically a reorg while a range was
                // read): that settles by itself, so retry at the normal pace.
                Err(StepError::Inconsistent(why)) => {
                    debug!(%why, "chain watcher: inconsistent node answers; retrying");
                    self.status
                        .send_modify(|s| s.last_error = Some(format!("inconsistent node answers: {why}")));
                    self.config.poll_interval
                }
                Err(e) => {
                    self.failed(&e);
                    backoff.next()
                }
            };
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(pause) => {}
            }
        }
        debug!("chain watcher stopped");
    }

    /// Logs a failure once per streak (a warning when it starts or changes kind, debug after) and
    /// shows it in the status. Returns whether it warned.
    fn failed(&mut self, error: &StepError) -> bool {
        let kind = error.kind();
        let warned = match &mut self.trouble {
            Some(trouble) if trouble.kind == kind => {
                debug!(%error, "chain watcher: still failing");
                false
            }
            trouble => {
                match kind {
                    "rpc" => warn!(%error, "chain watcher: node unreachable; retrying with back-off"),
                    _ => warn!(%error, "chain watcher: step failed; retrying with back-off"),
                }
                let since = trouble.as_ref().map_or_else(Instant::now, |t| t.since);
                *trouble = Some(Trouble { kind, since });
                true
            }
        };
        let rpc = matches!(error, StepError::Rpc(_));
        self.status.send_modify(|s| {
            s.last_error = Some(error.to_string());
            if rpc {
                s.connected = false;
            }
        });
        warned
    }

    /// Ends a failure streak after a successful step, with one info line. Returns whether there
    /// was a streak to end.
    fn recovered(&mut self) -> bool {
        self.status.send_if_modified(|s| s.last_error.take().is_some());
        let Some(trouble) = self.trouble.take() else { return false };
        info!(after = ?trouble.since.elapsed(), last_failure = trouble.kind, "chain watcher: recovered");
        true
    }

    /// One step: load the cursor if needed, check the handled tip, then either rewind or hand
    /// over the next confirmed range.
    pub(crate) async fn step(&mut self) -> Result<Progress, StepError> {
        if !self.loaded {
            self.cursor = self.blocking(|store| store.load()).await?;
            self.loaded = true;
            let handled = self.cursor.as_ref().map(Cursor::tip);
            self.status.send_modify(|s| s.handled = handled);
        }
        let head = self.chain.head().await?;
        self.status.send_modify(|s| {
            s.head = Some(head);
            s.connected = true;
        });
        if let Some(cursor) = &self.cursor {
            let tip = cursor.tip();
            let on_chain = match self.chain.header(tip.number).await? {
                Some(header) => header.hash == tip.hash,
                // The node is behind what was handled. A lagging replica, a node still syncing or
                // one restarted from an older snapshot still has the recorded blocks up to its
                // head: wait for it. A node whose chain differs below its head (a shorter fork,
                // a reset devnet) is a reorg now.
                None => match cursor.recent().iter().rev().find(|b| b.number <= head).copied() {
                    None => return Ok(Progress::Idle),
                    Some(below) => match self.chain.header(below.number).await? {
                        Some(header) if header.hash != below.hash => false,
                        _ => return Ok(Progress::Idle),
                    },
                },
            };
            if !on_chain {
                self.rewind(tip).await?;
                return Ok(Progress::More);
            }
        }
        let next = self.cursor.as_ref().map_or(self.config.start_block, |c| c.tip().number + 1);
        let Some(target) = head.checked_sub(self.config.confirmations) else { return Ok(Progress::Idle) };
        if next > target {
            return Ok(Progress::Idle);
        }
        let to = target.min(next.saturating_add(self.range.max(1) - 1));
        let tip = self.cursor.as_ref().map(Cursor::tip);
        let fetched = match Self::fetch(&self.chain, &self.config, tip, next, to, target).await {
            Ok(fetched) => {
                self.range = self.range.saturating_mul(2).min(self.config.max_range);
                fetched
            }
            // The head and headers were read but the logs of several blocks were refused: retry
            // at once over half the span; a single block's refusal is an ordinary failure.
            Err(StepError::Rpc(e)) if to > next && e.what.starts_with("eth_getLogs") => {
                // `to > next`: at least two blocks, so half is at least one.
                let span = to - next + 1;
                self.range = span / 2;
                debug!(error = %e, range = self.range, "chain watcher: eth_getLogs refused; asking for fewer blocks");
                return Ok(Progress::More);
            }
            Err(e) => return Err(e),
        };
        self.handler.handle(&fetched.batch).await.map_err(StepError::Handler)?;
        let last = fetched.batch.last;
        let cursor = match &self.cursor {
            Some(cursor) => {
                let mut cursor = cursor.clone();
                cursor.advance(fetched.blocks, last, self.config.window);
                cursor
            }
            None => Cursor::first(fetched.blocks, last, self.config.window),
        };
        // Saved only now that the handler has the batch: a crash before this line delivers the
        // batch again (handlers are idempotent), never loses it.
        let saved = cursor.clone();
        self.blocking(move |store| store.save(&saved)).await?;
        self.cursor = Some(cursor);
        self.status.send_modify(|s| s.handled = Some(last));
        Ok(if to < target { Progress::More } else { Progress::Idle })
    }

    /// The handled `tip` left the chain: find the common ancestor, tell the handler, save.
    async fn rewind(&mut self, tip: BlockRef) -> Result<(), StepError> {
        let Some(cursor) = self.cursor.clone() else { return Ok(()) };
        let ancestor = find_ancestor(&self.chain, cursor.recent()).await?;
        let void_from = ancestor.map_or(self.config.start_block, |a| a.number + 1);
        let rewind = Rewind { ancestor, void_from, abandoned: tip };
        // The handler first, the cursor second: a crash in between finds the old tip off the chain
        // again and repeats the rewind, where the other order could lose it.
        self.handler.rewound(&rewind).await.map_err(StepError::Handler)?;
        // Logged once the handler took it, so a handler that keeps refusing does not repeat it.
        match ancestor {
            Some(ancestor) => warn!(
                abandoned = tip.number,
                ancestor = ancestor.number,
                depth = tip.number - ancestor.number,
                "chain watcher: reorg; rewinding to the common ancestor"
            ),
            None => warn!(
                abandoned = tip.number,
                window = self.config.window,
                start = self.config.start_block,
                "chain watcher: no recorded block is on the node's chain any more (reorg deeper than the \
                 window, or another chain); replaying from the start block"
            ),
        }
        let rewound = ancestor.and_then(|a| cursor.rewound_to(a));
        match rewound.clone() {
            Some(saved) => self.blocking(move |store| store.save(&saved)).await?,
            None => self.blocking(|store| store.clear()).await?,
        }
        self.cursor = rewound;
        self.status.send_modify(|s| {
            s.rewinds += 1;
            s.last_rewind = Some(rewind);
            s.handled = ancestor;
        });
        Ok(())
    }

    /// Reads blocks `from..=to` and their logs, checking that every answer comes from one chain,
    /// the one the cursor is on.
    ///
    /// Headers are read for `from`, `to`, and every block within `window` of `target` (those the
    /// cursor keeps; older ones would drop out of it at once). Consecutive headers must link, the
    /// first must follow the handled tip, every log's block hash must match the header read for
    /// its block, and `to` must have the same hash after the logs were read as before.
    ///
    /// A free function over the fields it reads, so that the engine (whose handler need not be
    /// `Sync`) is not borrowed across its awaits.
    async fn fetch(
        chain: &C,
        config: &WatcherConfig,
        tip: Option<BlockRef>,
        from: u64,
        to: u64,
        target: u64,
    ) -> Result<Fetched, StepError> {
        let dense_from = from.max(target.saturating_add(1).saturating_sub(config.window));
        let mut numbers = vec![from];
        numbers.extend(dense_from.max(from + 1)..=to);
        if to > from && dense_from > to {
            numbers.push(to);
        }
        let mut headers: BTreeMap<u64, Header> = BTreeMap::new();
        for number in numbers {
            let header = chain.header(number).await?.ok_or_else(|| {
                StepError::Inconsistent(format!("head is at least {target} but block {number} is missing"))
            })?;
            headers.insert(number, header);
        }
        let mut linked = headers.values().zip(headers.values().skip(1));
        if let Some((a, b)) = linked.find(|(a, b)| b.number == a.number + 1 && b.parent_hash != a.hash) {
            return Err(StepError::Inconsistent(format!(
                "block {} does not follow block {}",
                b.number, a.number
            )));
        }
        let first = headers.get(&from).copied();
        let last = headers.get(&to).copied();
        let (Some(first), Some(last)) = (first, last) else {
            return Err(StepError::Inconsistent(format!("headers of {from} and {to} were not read")));
        };
        if let Some(tip) = tip
            && first.parent_hash != tip.hash
        {
            return Err(StepError::Inconsistent(format!(
                "block {from} does not follow the handled block {}",
                tip.number
            )));
        }

        let raw = chain.logs(&config.addresses, from, to).await?;
        let mut hashes: BTreeMap<u64, B256> = headers.iter().map(|(n, h)| (*n, h.hash)).collect();
        let mut logs = Vec::with_capacity(raw.len());
        for log in raw {
            let (Some(number), Some(block_hash), Some(log_index), Some(transaction_hash)) =
                (log.block_number, log.block_hash, log.log_index, log.transaction_hash)
            else {
                return Err(StepError::Inconsistent("a log without its block, index or transaction".into()));
            };
            if log.removed || !(from..=to).contains(&number) || !config.addresses.contains(&log.address()) {
                return Err(StepError::Inconsistent(format!(
                    "a log outside the query (block {number}, address {}, removed {})",
                    log.address(),
                    log.removed
                )));
            }
            match hashes.entry(number) {
                Entry::Vacant(entry) => {
                    entry.insert(block_hash);
                }
                Entry::Occupied(entry) if *entry.get() != block_hash => {
                    return Err(StepError::Inconsistent(format!(
                        "block {number} changed while its logs were read"
                    )));
                }
                Entry::Occupied(_) => {}
            }
            let block = BlockRef { number, hash: block_hash };
            logs.push(WatchedLog { key: LogKey { block_hash, log_index }, block, transaction_hash, log });
        }
        logs.sort_by_key(|l| (l.block.number, l.key.log_index));
        if logs.windows(2).any(|pair| pair[0].key == pair[1].key) {
            return Err(StepError::Inconsistent("the same log twice".into()));
        }
        let end = chain.header(to).await?;
        if end.map(|h| h.hash) != Some(last.hash) {
            return Err(StepError::Inconsistent(format!("block {to} changed while the range was read")));
        }
        let blocks = hashes.into_iter().map(|(number, hash)| BlockRef { number, hash }).collect();
        let last = BlockRef { number: to, hash: last.hash };
        Ok(Fetched { batch: LogBatch { first: from, last, logs }, blocks })
    }

    /// Runs a cursor store call on the blocking pool (the agent's store is a database).
    /// Like `fetch`, it borrows no part of the engine across the await.
    fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce(&S) -> Result<T, CursorError> + Send + 'static,
    ) -> impl Future<Output = Result<T, StepError>> + Send + 'static {
        let store = Arc::clone(&self.store);
        async move {
            tokio::task::spawn_blocking(move || call(&store))
                .await
                .map_err(|e| StepError::Store(CursorError::Backend(Box::new(e))))?
                .map_err(StepError::Store)
        }
    }
}

/// The newest of `recent` (recorded blocks of one chain, oldest first) that is still on the
/// node's chain, or `None` when none is.
///
/// Blocks are chained by hash, so if a recorded block is on the chain, so is every recorded
/// block before it: the matches form a prefix, and a binary search finds its end in
/// O(log n) header reads. Only blocks seen to match are ever returned, so an answer can be too
/// old (a node that changed its mind mid-search), which costs a redelivery, never too new.
pub(crate) async fn find_ancestor<C: ChainSource>(
    chain: &C,
    recent: &[BlockRef],
) -> Result<Option<BlockRef>, SourceError> {
    // Invariant: recent[..low] match (checked or implied), recent[high..] do not.
    let (mut low, mut high) = (0, recent.len());
    let mut best = None;
    while low < high {
        let mid = low + (high - low) / 2;
        let candidate = recent[mid];
        let on_chain = chain.header(candidate.number).await?.is_some_and(|h| h.hash == candidate.hash);
        if on_chain {
            best = Some(candidate);
            low = mid + 1;
        } else {
            high = mid;
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests;
