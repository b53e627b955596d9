//! The daemon's chain task: connect (retrying while the RPC is down, failing at once on a wrong
//! chain id or market address), then run the event watcher (cursor in sled) feeding the deal book,
//! and the steward acting on it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bigfile_chain::alloy::signers::local::PrivateKeySigner;
use bigfile_chain::sender::SendError;
use bigfile_chain::watcher::{self, Cursor, CursorError, CursorStore, WatcherConfig, WatcherStatus};
use bigfile_storage::Store;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

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

impl SledCursor {
    /// The cursor tree of `store`.
    pub fn open(store: &Store) -> Result<Self> {
        Ok(Self { tree: store.agent_tree("chain-cursor")? })
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

/// Runs the chain side of the daemon until `cancel`; `status` receives the watcher's state.
pub async fn run(
    cfg: ChainConfig,
    signer: PrivateKeySigner,
    store: Arc<Store>,
    hints: Arc<RepairHints>,
    counters: Arc<ChainCounters>,
    status: watch::Sender<Option<WatcherStatus>>,
    cancel: CancellationToken,
) -> Result<()> {
    let Some(link) = connect(&cfg, &signer, &cancel).await? else { return Ok(()) };
    tracing::info!(
        address = %link.me(),
        market = %link.market,
        registry = %link.registry,
        period_blocks = link.period_blocks,
        "connected to the BigFile chain"
    );
    let book = DealBook::open(&store)?;
    let (confirmed_tx, _confirmed_rx) = watch::channel(0);
    let handler = DealHandler::new(book.clone(), link.clone(), hints, confirmed_tx);
    let mut config = WatcherConfig::new(vec![link.market], cfg.start_block);
    config.confirmations = cfg.confirmations;
    config.poll_interval = Duration::from_millis(cfg.poll_interval_ms);
    let watcher = watcher::spawn(link.provider.clone(), config, SledCursor::open(&store)?, handler, &cancel)
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
    let steward = Steward::new(link, book, store, cfg, counters);
    let (result, ()) = tokio::join!(steward.run(cancel.clone()), forward);
    let _ = watcher.shutdown().await;
    result
}
