//! The local HTTP API on loopback: `/status` (JSON) and `/metrics` (Prometheus text).

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bigfile_storage::Store;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

/// What the handlers read.
#[derive(Clone)]
pub struct ApiState {
    /// The shard store.
    pub store: Arc<Store>,
    /// Metrics registry.
    pub registry: Arc<Registry>,
    /// libp2p peer id.
    pub peer_id: String,
    /// Chain address.
    pub address: String,
    /// When the daemon started.
    pub started: Instant,
    /// The libp2p node, when the network is enabled.
    pub network: Option<crate::net::node::NodeHandle>,
    /// The chain watcher's state, when the chain is enabled (`None` inside until connected).
    pub chain: Option<tokio::sync::watch::Receiver<Option<bigfile_chain::WatcherStatus>>>,
    /// The compute jobs running here.
    pub jobs: crate::compute::progress::JobProgress,
}

/// The chain part of `/status`.
#[derive(serde::Serialize)]
pub struct ChainStatus {
    /// Whether the agent has connected to the chain (chain id and market checked).
    pub connected: bool,
    /// Whether the RPC answered the watcher's last request.
    pub rpc_ok: bool,
    /// The chain head the watcher last saw.
    pub head: Option<u64>,
    /// The last confirmed block whose events were handled.
    pub confirmed: Option<u64>,
    /// Reorganisations rewound since start.
    pub rewinds: u64,
    /// The last RPC or handler error, while it lasts.
    pub last_error: Option<String>,
}

impl ChainStatus {
    fn from_watch(status: &Option<bigfile_chain::WatcherStatus>) -> Self {
        match status {
            None => ChainStatus {
                connected: false,
                rpc_ok: false,
                head: None,
                confirmed: None,
                rewinds: 0,
                last_error: Some("not connected to the chain yet".into()),
            },
            Some(w) => ChainStatus {
                connected: true,
                rpc_ok: w.connected,
                head: w.head,
                confirmed: w.handled.map(|b| b.number),
                rewinds: w.rewinds,
                last_error: w.last_error.clone(),
            },
        }
    }
}

/// The `/status` document.
#[derive(serde::Serialize)]
pub struct Status {
    /// Agent version.
    pub version: &'static str,
    /// libp2p peer id.
    pub peer_id: String,
    /// Chain address.
    pub address: String,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// Store accounting.
    pub storage: bigfile_storage::Usage,
    /// Scrub counters.
    pub scrub: bigfile_storage::ScrubCounts,
    /// Peers and providers (absent when the network is disabled).
    pub network: Option<crate::net::node::NetInfo>,
    /// The chain (absent when disabled).
    pub chain: Option<ChainStatus>,
    /// Compute jobs running here, tile by tile.
    pub jobs: Vec<crate::compute::progress::Running>,
}

/// The `/peers` document: the node's view of the network.
#[derive(serde::Serialize)]
pub struct Peers {
    /// Peers, addresses and counts.
    pub network: crate::net::node::NetInfo,
    /// Live provider announcements.
    pub providers: Vec<crate::net::announce::Availability>,
}

/// The router.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/peers", get(peers))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Serves until `cancel` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(cancel.cancelled_owned()).await?;
    Ok(())
}

fn internal(e: impl std::fmt::Display) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
}

async fn status(State(s): State<ApiState>) -> Response {
    let store = s.store.clone();
    let usage = match tokio::task::spawn_blocking(move || store.usage()).await {
        Ok(Ok(u)) => u,
        Ok(Err(e)) => return internal(e),
        Err(e) => return internal(e),
    };
    let network = match &s.network {
        Some(n) => n.info().await.ok(),
        None => None,
    };
    axum::Json(Status {
        version: env!("CARGO_PKG_VERSION"),
        peer_id: s.peer_id.clone(),
        address: s.address.clone(),
        uptime_secs: s.started.elapsed().as_secs(),
        storage: usage,
        scrub: s.store.scrub_stats().snapshot(),
        network,
        chain: s.chain.as_ref().map(|rx| ChainStatus::from_watch(&rx.borrow())),
        jobs: s.jobs.snapshot(),
    })
    .into_response()
}

async fn peers(State(s): State<ApiState>) -> Response {
    let Some(node) = &s.network else {
        return (StatusCode::NOT_FOUND, "the network is disabled in this agent's config").into_response();
    };
    let (info, providers) = match (node.info().await, node.providers().await) {
        (Ok(i), Ok(p)) => (i, p),
        (Err(e), _) | (_, Err(e)) => return internal(e),
    };
    axum::Json(Peers { network: info, providers: providers.into_iter().map(|a| a.body).collect() })
        .into_response()
}

async fn metrics(State(s): State<ApiState>) -> Response {
    let registry = s.registry.clone();
    match tokio::task::spawn_blocking(move || crate::metrics::encode(&registry)).await {
        Ok(Ok(text)) => {
            ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
        }
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}
