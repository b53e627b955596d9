//! The daemon's chain task: connect (retrying while the RPC is down, failing at once on a wrong
//! chain id or market address), then run the event watcher (cursor in sled) feeding the deal book,
//! and the steward acting on it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bigfile_chain::alloy::primitives::Address;
use bigfile_chain::alloy::signers::local::PrivateKeySigner;
use bigfile_chain::sender::SendError;
use bigfile_chain::watcher::{self, Cursor, CursorError, CursorStore, WatcherConfig, WatcherStatus};
use bigfile_storage::Store;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::compute::ProofGate;

use super::ChainLink;
use super::book::DealBook;
use super::events::DealHandler;
use super::steward::Steward;
use crate::config::ChainConfig;
use crate::metrics::ChainCounters;
use crate::net::repair::RepairHints;

/// The watcher's cursor in the store's sled database (`agent/chain-cursor`), flushed on every save.
pub struct SledCursor {
    tree: sled::Tree,
}

const CURSOR_KEY: &[u8] = b"cursor";
/// Which chain and market the cursor and the deal book describe.
const SCOPE_KEY: &[u8] = b"scope";

impl SledCursor {
    /// The storage market's cursor tree of `store`.
    pub fn open(store: &Store) -> Result<Self> {
        Self::open_named(store, "chain-cursor")
    }

    /// The cursor in tree `name` of `store` (one per watched market).
    pub fn open_named(store: &Store, name: &str) -> Result<Self> {
        Ok(Self { tree: store.agent_tree(name)? })
    }

    /// Ties the cursor to `scope` (which chain and contract it follows). When it was written for
    /// another scope, `forget` drops what the caller derived from the old one, then the cursor
    /// is cleared, and the old scope is returned.
    pub fn rebind(&self, scope: &str, forget: impl FnOnce(&str) -> Result<()>) -> Result<Option<String>> {
        let old = self.tree.get(SCOPE_KEY)?.map(|v| String::from_utf8_lossy(&v).into_owned());
        let replaced = match old {
            Some(old) if old != scope => {
                forget(&old)?;
                self.clear()?;
                Some(old)
            }
            _ => None,
        };
        self.tree.insert(SCOPE_KEY, scope.as_bytes())?;
        self.tree.flush()?;
        Ok(replaced)
    }

    /// Ties the cursor and `book` to `chain_id` and `market`. When the configuration names
    /// another chain or market than the one they were written for (a new devnet, a redeployed
    /// market), both are forgotten: the old cursor would skip the new market's history and the
    /// old deal ids would be taken for the new market's. Shards in the store are untouched, and
    /// rewards earned on the old market stay claimable there. Returns whether anything was reset.
    pub fn bind_scope(&self, book: &DealBook, chain_id: u64, market: Address) -> Result<bool> {
        let scope = format!("{chain_id}:{market:#x}");
        let replaced = self.rebind(&scope, |old| {
            let deals = book.all()?;
            tracing::warn!(was = old, now = %scope, deals = deals.len(),
                "chain.chain_id or chain.storage_market changed: following the new market from chain.start_block; the old market's deal book and cursor are dropped (stored shards stay)");
            for deal in deals {
                book.remove(deal.deal_id)?;
            }
            Ok(())
        })?;
        Ok(replaced.is_some())
    }
}

fn cursor_err(e: impl std::error::Error + Send + Sync + 'static) -> CursorError {
    CursorError::Backend(Box::new(e))
}

impl CursorStore for SledCursor {
    fn load(&self) -> Result<Option<Cursor>, CursorError> {
        match self.tree.get(CURSOR_KEY).map_err(cursor_err)? {
            None => Ok(None),
            Some(bytes) => {
                serde_json::from_slice(&bytes).map(Some).map_err(|e| CursorError::Corrupt(e.to_string()))
            }
        }
    }

    fn save(&self, cursor: &Cursor) -> Result<(), CursorError> {
        let bytes = serde_json::to_vec(cursor).map_err(cursor_err)?;
        self.tree.insert(CURSOR_KEY, bytes).map_err(cursor_err)?;
        self.tree.flush().map_err(cursor_err)?;
        Ok(())
    }

    fn clear(&self) -> Result<(), CursorError> {
        self.tree.remove(CURSOR_KEY).map_err(cursor_err)?;
        self.tree.flush().map_err(cursor_err)?;
        Ok(())
    }
}

/// Whether a connection error is worth retrying (the node is down) rather than a configuration
/// mistake that no retry fixes.
fn transient(e: &anyhow::Error) -> bool {
    match e.downcast_ref::<SendError>() {
        Some(SendError::Unreachable { .. } | SendError::Rpc { .. }) => true,
        Some(_) => false,
        None => e.chain().any(|c| c.to_string().contains("error sending request")),
    }
}

/// Connects to the chain, retrying with back-off while the RPC is unreachable.
async fn connect(
    cfg: &ChainConfig,
    signer: &PrivateKeySigner,
    cancel: &CancellationToken,
) -> Result<Option<ChainLink>> {
    let mut backoff = Duration::from_secs(1);
    let mut warned = false;
    loop {
        match ChainLink::connect(cfg, signer.clone(), cancel.child_token()).await {
            Ok(link) => return Ok(Some(link)),
            Err(e) if transient(&e) => {
                if !warned {
                    tracing::warn!(error = %format!("{e:#}"), "chain unreachable; storage keeps serving, retrying");
                    warned = true;
                }
            }
            Err(e) => return Err(e),
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ok(None),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// What the chain side shares with the rest of the daemon.
pub struct Shared {
    /// Deals whose slots are free, for the repair task.
    pub hints: Arc<RepairHints>,
    /// Counters for /metrics.
    pub counters: Arc<ChainCounters>,
    /// Held while proofs are made, so compute jobs wait at tile boundaries.
    pub gate: ProofGate,
    /// Receives the watcher's state.
    pub status: watch::Sender<Option<WatcherStatus>>,
    /// The compute side, run on the same account when `chain.compute_market` is set.
    pub compute: Option<crate::compute::market::ComputeSetup>,
}

/// Runs the chain side of the daemon until `cancel`.
pub async fn run(
    cfg: ChainConfig,
    signer: PrivateKeySigner,
    store: Arc<Store>,
    shared: Shared,
    cancel: CancellationToken,
) -> Result<()> {
    let Shared { hints, counters, gate, status, compute } = shared;
    let Some(link) = connect(&cfg, &signer, &cancel).await? else { return Ok(()) };
    tracing::info!(
        address = %link.me(),
        market = %link.market,
        registry = %link.registry,
        period_blocks = link.period_blocks,
        "connected to the BigFile chain"
    );
    let book = DealBook::open(&store)?;
    let cursor = SledCursor::open(&store)?;
    cursor.bind_scope(&book, cfg.chain_id, link.market)?;
    let (confirmed_tx, _confirmed_rx) = watch::channel(0);
    let (voided_tx, voided_rx) = watch::channel(0);
    let handler = DealHandler::new(book.clone(), link.clone(), hints, confirmed_tx, voided_tx);
    let mut config = WatcherConfig::new(vec![link.market], cfg.start_block);
    config.confirmations = cfg.confirmations;
    config.poll_interval = Duration::from_millis(cfg.poll_interval_ms);
    let watcher = watcher::spawn(link.provider.clone(), config, cursor, handler, &cancel)
        .context("starting the chain watcher")?;
    let mut updates = watcher.subscribe();
    let forward = {
        let cancel = cancel.clone();
        async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    changed = updates.changed() => {
                        if changed.is_err() { return }
                        let _ = status.send(Some(updates.borrow().clone()));
                    }
                }
            }
        }
    };
    let compute_market = cfg.compute_market_address();
    let jobs = async {
        match (compute, compute_market) {
            (Some(setup), Some(market)) if setup.cfg.take_jobs || setup.cfg.verify => {
                let shared = crate::compute::market::Shared {
                    link: link.clone(),
                    market,
                    store: store.clone(),
                    gate: gate.clone(),
                    counters: counters.clone(),
                };
                // Storage keeps earning when the compute side cannot run: say why, loudly.
                if let Err(e) = crate::compute::market::run(shared, cfg.clone(), setup, cancel.clone()).await
                {
                    tracing::error!(error = %format!("{e:#}"), "the compute market side stopped; storage goes on");
                }
            }
            (_, Some(market)) => crate::compute::market::leave_pool_if_member(&link, market).await,
            (_, None) => {}
        }
    };
    let steward = Steward::new(link.clone(), book, store.clone(), cfg.clone(), counters.clone(), voided_rx)
        .with_gate(gate.clone());
    let (result, (), ()) = tokio::join!(steward.run(cancel.clone()), jobs, forward);
    let _ = watcher.shutdown().await;
    result
}

#[cfg(test)]
mod tests {
    use bigfile_chain::alloy::primitives::{Address, B256};
    use bigfile_storage::{Store, StoreConfig};

    use super::*;
    use crate::chain::book::DealEntry;

    fn entry(deal_id: u64) -> DealEntry {
        DealEntry {
            deal_id,
            client: Address::repeat_byte(1),
            object_id: B256::repeat_byte(2),
            shard_roots: vec![B256::repeat_byte(3)],
            shard_size: 256,
            segment_size: 256,
            k: 1,
            m: 0,
            num_periods: 2,
            price_per_slot_period: 1,
            start_block: 10,
            created_block: 5,
            our_slot: Some(0),
            finished: false,
        }
    }

    #[test]
    fn a_new_market_drops_the_old_cursor_and_deal_book() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&StoreConfig {
            path: dir.path().join("store"),
            capacity: 1 << 20,
            block_size: 4096,
            cache_bytes: 1 << 20,
            disk_reserve: 0,
        })
        .expect("store");
        let (book, cursor) =
            (DealBook::open(&store).expect("book"), SledCursor::open(&store).expect("cursor"));
        let (market, other) = (Address::repeat_byte(0xaa), Address::repeat_byte(0xbb));
        assert!(!cursor.bind_scope(&book, 7, market).expect("first bind"));
        book.put(&entry(1)).expect("put");
        let saved = Cursor::new(bigfile_chain::watcher::BlockRef { number: 42, hash: B256::repeat_byte(4) });
        cursor.save(&saved).expect("save");

        // Same chain and market (a restart): everything kept.
        assert!(!cursor.bind_scope(&book, 7, market).expect("same scope"));
        assert_eq!(cursor.load().expect("load"), Some(saved));
        assert_eq!(book.all().expect("all").len(), 1);

        // Another market, then another chain id: both forgotten each time.
        assert!(cursor.bind_scope(&book, 7, other).expect("new market"));
        assert_eq!(cursor.load().expect("load"), None);
        assert!(book.all().expect("all").is_empty());
        book.put(&entry(2)).expect("put");
        assert!(cursor.bind_scope(&book, 8, other).expect("new chain"));
        assert!(book.all().expect("all").is_empty());
    }
}
