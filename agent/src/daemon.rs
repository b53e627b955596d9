//! `bigfile-agent run`: the task tree under one root cancellation token.
//!
//! Each subsystem is a task in one `JoinSet` with a child token. SIGTERM or SIGINT cancels the root;
//! tasks finish or checkpoint their work and return; after `node.shutdown_timeout_secs` the rest
//! are aborted. The store is flushed last, so nothing acknowledged is lost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bigfile_chain::ChainKey;
use bigfile_storage::{Store, StoreConfig};
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiState};
use crate::config::{Config, ScrubConfig};
use crate::{keys, net};

/// Opens the store described by `cfg`.
pub fn open_store(cfg: &Config) -> Result<Store> {
    Ok(Store::open(&StoreConfig {
        path: cfg.store_dir(),
        capacity: cfg.storage.capacity.0,
        block_size: cfg.storage.block_size.0 as u32,
        cache_bytes: cfg.storage.cache_size.0,
        disk_reserve: cfg.storage.disk_reserve.0,
    })?)
}

/// Runs the daemon until a signal or a fatal task error.
pub async fn run(cfg: Config) -> Result<()> {
    let started = Instant::now();
    let identity = keys::load_identity(&cfg.node.identity)?;
    let peer_id = identity.public().to_peer_id().to_string();
    let password = keys::read_password(cfg.node.password_file.as_deref())?;
    let keystore = cfg.node.keystore.clone();
    // scrypt is deliberately slow: keep it off the async threads.
    let chain_key = tokio::task::spawn_blocking(move || ChainKey::open(&keystore, &password)).await??;
    let address = chain_key.address();
    let chain_key = Arc::new(chain_key);

    let store_cfg = cfg.clone();
    let store = Arc::new(tokio::task::spawn_blocking(move || open_store(&store_cfg)).await??);
    tracing::info!(%peer_id, %address, data_dir = %cfg.node.data_dir.display(), "agent starting");

    let root = CancellationToken::new();
    let mut tasks: JoinSet<(&'static str, Result<()>)> = JoinSet::new();

    // What the chain side did, for /metrics.
    let chain_counters = cfg.chain.enabled.then(|| Arc::new(crate::metrics::ChainCounters::default()));
    // The chain watcher's state, for the API (filled once connected).
    let chain_status = cfg.chain.enabled.then(|| tokio::sync::watch::channel(None));
    // Lost shards the chain reports (slots freed for a missed proof), for the repairer.
    let hints = Arc::new(net::repair::RepairHints::default());
    // Storage proofs hold it; compute jobs (to come) wait at tile boundaries while it is held.
    let proof_gate = crate::compute::ProofGate::new();
    // The running compute jobs, tile by tile, for /status.
    let job_progress = crate::compute::progress::JobProgress::default();
    let network = if cfg.network.enabled {
        let opts = net::node_options(&cfg, identity.clone(), true);
        let (node, inbound, mut event_loop) = net::node::build(opts)?;
        event_loop.listen()?;
        let token = root.child_token();
        tasks.spawn(async move {
            event_loop.run(token).await;
            ("network", Ok(()))
        });
        let leases = Arc::new(net::service::Leases::default());
        let (s, n, l, token) = (store.clone(), node.clone(), leases.clone(), root.child_token());
        let max_shard = cfg.network.max_shard_size.0;
        tasks.spawn(async move {
            ("shard service", net::service::serve_with_leases(s, n, inbound, max_shard, l, token).await)
        });
        if cfg.network.repair.enabled {
            let (s, n, h, r, token) =
                (store.clone(), node.clone(), hints.clone(), cfg.network.repair.clone(), root.child_token());
            tasks.spawn(
                async move { ("repairer", net::repair::repair_task(s, n, leases, h, r, token).await) },
            );
        }
        let (s, n, k, id, c, token) = (
            store.clone(),
            node.clone(),
            chain_key.clone(),
            identity.clone(),
            cfg.clone(),
            root.child_token(),
        );
        tasks.spawn(async move { ("announcer", net::announce_task(n, s, k, id, c, token).await) });
        Some(node)
    } else {
        None
    };

    if cfg.api.enabled {
        let listener = tokio::net::TcpListener::bind(cfg.api.listen)
            .await
            .with_context(|| format!("api.listen: cannot listen on {}", cfg.api.listen))?;
        let state = ApiState {
            store: store.clone(),
            registry: Arc::new(crate::metrics::registry(store.clone(), chain_counters.clone())),
            peer_id: peer_id.clone(),
            address: address.clone(),
            started,
            network: network.clone(),
            chain: chain_status.as_ref().map(|(_, rx)| rx.clone()),
            jobs: job_progress.clone(),
        };
        tracing::info!(addr = %listener.local_addr()?, "HTTP API listening");
        let token = root.child_token();
        tasks.spawn(async move { ("api", api::serve(listener, state, token).await) });
    }
    if cfg.chain.enabled {
        let (c, signer, s, token) =
            (cfg.chain.clone(), chain_key.signer().clone(), store.clone(), root.child_token());
        let shared = crate::chain::service::Shared {
            hints: hints.clone(),
            counters: chain_counters.clone().unwrap_or_default(),
            gate: proof_gate.clone(),
            status: chain_status
                .as_ref()
                .map(|(tx, _)| tx.clone())
                .unwrap_or_else(|| tokio::sync::watch::channel(None).0),
            compute: Some(crate::compute::market::ComputeSetup {
                cfg: cfg.compute.clone(),
                node: network.clone(),
                segment_size: cfg.storage.segment_size.0 as u32,
                progress: job_progress.clone(),
            }),
        };
        tasks.spawn(async move { ("chain", crate::chain::service::run(c, signer, s, shared, token).await) });
    }
    if cfg.storage.scrub.enabled {
        let (store, scrub, token) = (store.clone(), cfg.storage.scrub.clone(), root.child_token());
        tasks.spawn(async move { ("scrub", scrub_task(store, scrub, token).await) });
    }
    if let Some(period) = watchdog_period() {
        let token = root.child_token();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tokio::select! {
                    _ = token.cancelled() => return ("watchdog", Ok(())),
                    _ = tick.tick() => { let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]); }
                }
            }
        });
    }

    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status("serving")]);
    tracing::info!("agent ready");

    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut failure = None;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        Some(done) = tasks.join_next() => {
            let what = match done {
                Ok((name, Ok(()))) => anyhow::anyhow!("{name} stopped unexpectedly"),
                Ok((name, Err(e))) => e.context(format!("{name} failed")),
                Err(e) => anyhow::anyhow!("a task panicked: {e}"),
            };
            tracing::error!(error = %format!("{what:#}"), "shutting down");
            failure = Some(what);
        }
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    root.cancel();

    let deadline = Duration::from_secs(cfg.node.shutdown_timeout_secs);
    let drained = tokio::time::timeout(deadline, async {
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok((name, Err(e))) => {
                    tracing::warn!(task = name, error = %format!("{e:#}"), "task ended with an error")
                }
                Ok((name, Ok(()))) => tracing::debug!(task = name, "task stopped"),
                Err(e) => tracing::warn!(error = %e, "task panicked"),
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(secs = deadline.as_secs(), "tasks did not stop in time; aborting them");
        tasks.abort_all();
    }
    let s = store.clone();
    tokio::task::spawn_blocking(move || s.flush()).await??;
    tracing::info!("agent stopped");
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Re-verifies the store continuously at the configured rate, resting between passes.
async fn scrub_task(store: Arc<Store>, cfg: ScrubConfig, cancel: CancellationToken) -> Result<()> {
    loop {
        let (s, c) = (store.clone(), cancel.clone());
        let rate = cfg.rate.0;
        let summary =
            tokio::task::spawn_blocking(move || s.scrub_pass(Some(rate), &|| c.is_cancelled(), &mut |_| {}))
                .await??;
        if summary.damaged > 0 {
            tracing::warn!(
                damaged = summary.damaged,
                repaired = summary.repaired,
                unrepairable = summary.unrepairable,
                "scrub pass found damage"
            );
        }
        if summary.pass_complete {
            tracing::info!(blocks = summary.blocks, bytes = summary.bytes, "scrub pass complete");
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(if summary.pass_complete { cfg.pause_secs } else { 0 })) => {}
        }
    }
}

/// Half the systemd watchdog interval, if systemd asked for pings.
fn watchdog_period() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    Some(Duration::from_micros(usec / 2).max(Duration::from_millis(100)))
}
