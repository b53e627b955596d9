//! `bench network`: the shard protocol measured against raw loopback TCP, and whole-object put
//! and get across in-process providers measured against the local store, all in one run.
//!
//! Every node runs in this process and talks to the others over real TCP on 127.0.0.1 (Noise,
//! Yamux, the shard protocols — the whole production stack; QUIC is not used). Headline
//! figures are ratios, higher is better for the network path, so that they mean the same on any
//! machine; absolute throughputs are reported beside them in MB/s (10^6 bytes per second).
//!
//! - `transfer_vs_tcp`: one shard downloaded the way clients download ([`stream::download`]:
//!   asked for on the shard stream, the bytes on the provider's bulk port, [`super::bulk`])
//!   from a node whose source is a buffer in memory (handing out views of it), ÷ the same bytes,
//!   request by request, over a plain tokio `TcpStream`.
//!   Both sides reuse one buffer for every repetition; `tcp_fresh_buffer_mb_s` is the baseline
//!   into a new buffer each time, to show what page faults cost a receiver that keeps each shard.
//! - `libp2p_stream_vs_tcp`: the same with the bytes inside the libp2p stream (Noise + Yamux),
//!   as with `network.bulk_listen = "off"`.
//! - `get_shard_store_vs_tcp`: as `transfer_vs_tcp`, answered by [`service::serve`] from a real
//!   [`Store`].
//! - `request_response_mb_s` (no ratio): the same shard as one `GetShard` request-response
//!   message answered from memory — what the stream protocol replaced for bulk reads.
//! - `codec_encode_mb_s` / `codec_decode_mb_s` (no ratio): the request-response codec alone
//!   writing and reading one such answer in memory on one thread.
//! - `put_vs_local` / `get_vs_local`: an object coded with `k + m` shards, placed on `k + m`
//!   providers with [`transfer::place`] (the time includes `encode_object`) and fetched back
//!   with [`transfer::fetch`] and `decode_object`, ÷ `Store::put` / `Store::get` of the same
//!   object on the same disk. The fetched object must be byte-identical or the run fails.
//!
//! All scratch data lives in a temporary directory that is removed at the end, on error too.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use bigfile_chain::ChainKey;
use bigfile_storage::bench::pseudo_random;
use bigfile_storage::coding::{decode_object, encode_object};
use bigfile_storage::{Geometry, ObjectId, PutParams, Store, StoreConfig};
use indicatif::ProgressBar;
use libp2p::Multiaddr;
use libp2p::identity::Keypair;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::announce::SignedAvailability;
use super::node::{self, InboundRequest, NodeHandle};
use super::protocol::{Codec, PROTOCOL, Request, Response};
use super::{service, stream, transfer};
use crate::config::{ByteSize, Config};

/// Repetitions of a shard transfer stop short of moving more than this many bytes in total.
const MAX_MOVED_BYTES: u64 = 1 << 30;
/// Fewest timed repetitions of a shard transfer.
const MIN_REPS: u64 = 3;
/// How long a node may take to report its listen address.
const LISTEN_WAIT: Duration = Duration::from_secs(10);

/// What to measure and where.
#[derive(Clone, Debug)]
pub struct NetBenchOptions {
    /// Coding parameters, store settings and network limits come from here; listen, external
    /// and bootstrap addresses are replaced (every node listens on 127.0.0.1, port chosen by the
    /// OS) and `max_shard_size` is raised to fit the sizes below.
    pub config: Config,
    /// Directory under which the scratch directory (stores) is made; created if missing and
    /// removed again if it was and is empty at the end.
    pub dir: PathBuf,
    /// Size of the shard moved by the shard-transfer measurements.
    pub shard_bytes: u64,
    /// Size of the object put and got across providers.
    pub object_bytes: u64,
    /// Shard transfers are repeated until they take about this long (within the memory cap).
    pub min_secs: f64,
}

impl NetBenchOptions {
    /// The defaults: 64 MiB shard, 256 MiB object, shard transfers of about 1.5 s.
    pub fn new(config: Config, dir: PathBuf) -> Self {
        NetBenchOptions { config, dir, shard_bytes: 64 << 20, object_bytes: 256 << 20, min_secs: 1.5 }
    }
}

/// Results of one run. Ratios are network throughput ÷ baseline throughput (higher is better);
/// `*_mb_s` are throughputs in MB/s of shard bytes (transfers) or object bytes (put, get).
#[derive(Clone, Debug, serde::Serialize)]
pub struct NetBenchReport {
    /// A shard download (bulk port) answered from memory ÷ raw loopback TCP of the same bytes.
    pub transfer_vs_tcp: f64,
    /// The same with the bytes inside the encrypted libp2p stream ÷ raw loopback TCP.
    pub libp2p_stream_vs_tcp: f64,
    /// A shard stream answered by the shard service from a store ÷ raw loopback TCP.
    pub get_shard_store_vs_tcp: f64,
    /// Encode + place on `k + m` providers ÷ local `Store::put`.
    pub put_vs_local: f64,
    /// Fetch `k` shards + decode ÷ local `Store::get`.
    pub get_vs_local: f64,
    /// Shard size of the transfer measurements.
    pub shard_bytes: u64,
    /// Timed transfers of that shard, the same number for each of the three.
    pub repetitions: u64,
    /// Shard download (bulk port) answered from memory.
    pub transfer_mb_s: f64,
    /// Shard bytes inside the libp2p stream, answered from memory.
    pub libp2p_stream_mb_s: f64,
    /// Shard stream answered from a store.
    pub get_shard_store_mb_s: f64,
    /// One `GetShard` request-response message answered from memory.
    pub request_response_mb_s: f64,
    /// Request + shard over a plain `TcpStream`, into one reused buffer (the baseline).
    pub tcp_mb_s: f64,
    /// The same into a new buffer each time: the page faults a receiver that keeps every
    /// shard pays (the downloads above reuse one buffer, like the baseline).
    pub tcp_fresh_buffer_mb_s: f64,
    /// The shard codec writing one `Data` answer of `shard_bytes` to a byte sink, one thread.
    pub codec_encode_mb_s: f64,
    /// The shard codec reading that answer back from memory, one thread.
    pub codec_decode_mb_s: f64,
    /// Object size of the put and get measurements.
    pub object_bytes: u64,
    /// Data shards (k).
    pub data: u16,
    /// Parity shards (m).
    pub parity: u16,
    /// Provider agents the object was placed on (k + m).
    pub providers: usize,
    /// Encode + place, object bytes.
    pub put_mb_s: f64,
    /// Fetch + decode, object bytes.
    pub get_mb_s: f64,
    /// Local durable `Store::put`.
    pub local_put_mb_s: f64,
    /// Local `Store::get` into memory.
    pub local_get_mb_s: f64,
    /// Stripes the get had to rebuild from parity (zero when the data shards came first).
    pub stripes_reconstructed: u64,
    /// Cores available to the process.
    pub cores: usize,
}

/// Runs the benchmark; `progress` receives one line per finished measurement.
///
/// Needs about four times `object_bytes` plus a gibibyte of memory, and three times
/// `object_bytes` of disk under `dir`.
pub async fn run(opts: &NetBenchOptions, progress: &mut (dyn FnMut(&str) + Send)) -> Result<NetBenchReport> {
    ensure!(
        opts.shard_bytes > 0 && opts.object_bytes > 0,
        "shard and object sizes must be at least one byte"
    );
    let _parent = Parent::create(&opts.dir)?;
    let scratch = tempfile::Builder::new()
        .prefix("bigfile-bench-net-")
        .tempdir_in(&opts.dir)
        .with_context(|| format!("creating a scratch directory in {}", opts.dir.display()))?;
    let mut bench = Bench {
        scratch: scratch.path().to_owned(),
        cancel: CancellationToken::new(),
        tasks: JoinSet::new(),
        stores: Vec::new(),
    };
    let result = measure(opts, &mut bench, progress).await;
    bench.shutdown().await;
    if let Err(e) = scratch.close() {
        tracing::warn!(error = %e, "cannot remove benchmark data");
    }
    result
}

/// The directory the scratch directory is made in; removed when dropped (on a panic too) if it
/// was created for the run and is empty again.
struct Parent(Option<PathBuf>);

impl Parent {
    fn create(dir: &std::path::Path) -> Result<Self> {
        let created = !dir.exists();
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Parent(created.then(|| dir.to_owned())))
    }
}

impl Drop for Parent {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            // Only if empty: anything else placed there is not ours to delete.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// The nodes, services and stores of one run, torn down together.
struct Bench {
    scratch: PathBuf,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
    stores: Vec<Arc<Store>>,
}

impl Bench {
    /// Starts a node listening on loopback (a provider) or a dial-only client; returns its handle,
    /// its inbound requests, its identity and its listen addresses.
    async fn node(
        &mut self,
        cfg: &Config,
        provider: bool,
    ) -> Result<(NodeHandle, mpsc::Receiver<InboundRequest>, Keypair, Vec<Multiaddr>)> {
        let identity = Keypair::generate_ed25519();
        let (handle, inbound, mut event_loop) =
            node::build(super::node_options(cfg, identity.clone(), provider))?;
        event_loop.listen()?;
        self.tasks.spawn(event_loop.run(self.cancel.child_token()));
        let mut addrs = Vec::new();
        let deadline = Instant::now() + LISTEN_WAIT;
        while provider && addrs.is_empty() {
            addrs = handle.info().await?.listen_addrs.iter().filter_map(|a| a.parse().ok()).collect();
            if addrs.is_empty() {
                ensure!(Instant::now() < deadline, "a benchmark node did not start listening");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Ok((handle, inbound, identity, addrs))
    }

    /// Opens a store in `path` and keeps it for the teardown.
    async fn store(&mut self, cfg: &Config, path: PathBuf) -> Result<Arc<Store>> {
        let store_cfg = StoreConfig {
            path,
            capacity: u64::MAX / 2,
            block_size: u32::try_from(cfg.storage.block_size.0)?,
            cache_bytes: 64 << 20,
            disk_reserve: 0,
        };
        let store = Arc::new(tokio::task::spawn_blocking(move || Store::open(&store_cfg)).await??);
        self.stores.push(store.clone());
        Ok(store)
    }

    /// Answers `inbound` from `store` with the shard service until the teardown.
    fn serve(
        &mut self,
        store: Arc<Store>,
        node: NodeHandle,
        inbound: mpsc::Receiver<InboundRequest>,
        max_shard: u64,
    ) {
        let token = self.cancel.child_token();
        self.tasks.spawn(async move {
            if let Err(e) = service::serve(store, node, inbound, max_shard, token).await {
                tracing::warn!(error = %e, "benchmark shard service failed");
            }
        });
    }

    /// A provider agent with a store in `name` under the scratch directory, a node answering from
    /// it, and its signed announcement (returned).
    async fn provider(&mut self, cfg: &Config, name: &str) -> Result<SignedAvailability> {
        let store = self.store(cfg, self.scratch.join(name)).await?;
        let (handle, inbound, identity, addrs) = self.node(cfg, true).await?;
        self.serve(store.clone(), handle.clone(), inbound, cfg.network.max_shard_size.0);
        let s = store.clone();
        let usage = tokio::task::spawn_blocking(move || s.usage()).await??;
        let chain_key = ChainKey::random();
        Ok(super::sign_availability(&chain_key, &identity, addrs, &usage, cfg, &[], super::now_unix())?)
    }

    /// Stops every task, waits until nothing else holds a store, and closes the stores.
    async fn shutdown(mut self) {
        self.cancel.cancel();
        while self.tasks.join_next().await.is_some() {}
        // Requests the service had already started (e.g. a shard read that `fetch` no longer
        // waited for) finish on their own; the stores close after them.
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.stores.iter().any(|s| Arc::strong_count(s) > 1) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let stores = std::mem::take(&mut self.stores);
        let _ = tokio::task::spawn_blocking(move || {
            for s in &stores {
                if let Err(e) = s.flush() {
                    tracing::warn!(error = %e, "flushing a benchmark store");
                }
            }
            drop(stores);
        })
        .await;
    }
}

/// The config every benchmark node is built from.
fn bench_config(opts: &NetBenchOptions, object_shard: u64) -> Config {
    let mut cfg = opts.config.clone();
    let n = &mut cfg.network;
    n.listen = vec!["/ip4/127.0.0.1/tcp/0".into()];
    n.external.clear();
    n.bootstrap.clear();
    n.max_shard_size = ByteSize(n.max_shard_size.0.max(opts.shard_bytes).max(object_shard));
    cfg
}

/// MB/s of `bytes` in `secs`, reported to `progress` (zero time counts as 1 ns).
fn say(progress: &mut (dyn FnMut(&str) + Send), what: &str, bytes: f64, secs: f64) -> f64 {
    let mb_s = bytes / secs.max(1e-9) / 1e6;
    progress(&format!("{what}: {mb_s:.0} MB/s"));
    mb_s
}

/// Figures of the shard-transfer half of the run.
struct Transfers {
    reps: u64,
    memory_mb_s: f64,
    libp2p_stream_mb_s: f64,
    tcp_fresh_buffer_mb_s: f64,
    store_mb_s: f64,
    request_response_mb_s: f64,
    tcp_mb_s: f64,
    codec_encode_mb_s: f64,
    codec_decode_mb_s: f64,
}

/// Figures of the object half of the run.
struct Objects {
    put_mb_s: f64,
    get_mb_s: f64,
    local_put_mb_s: f64,
    local_get_mb_s: f64,
    rebuilt: u64,
}

async fn measure(
    opts: &NetBenchOptions,
    bench: &mut Bench,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<NetBenchReport> {
    let st = &opts.config.storage;
    let stripe = u32::try_from(st.stripe_size.0).unwrap_or(u32::MAX);
    let segment_size = u32::try_from(st.segment_size.0)?;
    let geometry = Geometry {
        size: opts.object_bytes,
        data: st.data,
        parity: st.parity,
        stripe_size: Geometry::round_stripe(stripe, st.data),
        segment_size,
    };
    geometry.validate().map_err(|e| anyhow!("storage coding parameters: {e}"))?;
    // The store-backed shard is shard 0 of a k = 1 object: the shard itself, padded to whole stripes.
    let single = Geometry {
        size: opts.shard_bytes,
        data: 1,
        parity: 1,
        stripe_size: Geometry::round_stripe(stripe, 1),
        segment_size,
    };
    let cfg = bench_config(opts, geometry.shard_len().max(single.shard_len()));
    let (client, _client_inbound, _, _) = bench.node(&cfg, false).await?;
    let t = transfers(opts, &cfg, single, &client, bench, progress).await?;
    let o = objects(opts, &cfg, geometry, &client, bench, progress).await?;
    Ok(NetBenchReport {
        transfer_vs_tcp: t.memory_mb_s / t.tcp_mb_s,
        libp2p_stream_vs_tcp: t.libp2p_stream_mb_s / t.tcp_mb_s,
        get_shard_store_vs_tcp: t.store_mb_s / t.tcp_mb_s,
        put_vs_local: o.put_mb_s / o.local_put_mb_s,
        get_vs_local: o.get_mb_s / o.local_get_mb_s,
        shard_bytes: opts.shard_bytes,
        repetitions: t.reps,
        transfer_mb_s: t.memory_mb_s,
        libp2p_stream_mb_s: t.libp2p_stream_mb_s,
        get_shard_store_mb_s: t.store_mb_s,
        request_response_mb_s: t.request_response_mb_s,
        tcp_mb_s: t.tcp_mb_s,
        tcp_fresh_buffer_mb_s: t.tcp_fresh_buffer_mb_s,
        codec_encode_mb_s: t.codec_encode_mb_s,
        codec_decode_mb_s: t.codec_decode_mb_s,
        object_bytes: opts.object_bytes,
        data: st.data,
        parity: st.parity,
        providers: geometry.total_shards(),
        put_mb_s: o.put_mb_s,
        get_mb_s: o.get_mb_s,
        local_put_mb_s: o.local_put_mb_s,
        local_get_mb_s: o.local_get_mb_s,
        stripes_reconstructed: o.rebuilt,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
    })
}

/// One shard fetched by `client` again and again: answered from memory, over raw TCP, through
/// the codec alone, and answered by the shard service from a store.
async fn transfers(
    opts: &NetBenchOptions,
    cfg: &Config,
    single: Geometry,
    client: &NodeHandle,
    bench: &mut Bench,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<Transfers> {
    let shard = Arc::new(pseudo_random(usize::try_from(opts.shard_bytes)?, 0x5851_f42d_4c95_7f2d));
    let (server, inbound, _, server_addrs) = bench.node(cfg, true).await?;
    bench.tasks.spawn(answer_from_memory(inbound, shard.clone(), bench.cancel.child_token()));
    // Slices of one buffer: the source hands out views, so no copy is timed on the server side.
    let memory: Arc<dyn stream::ShardSource> = Arc::new(Memory(bytes::Bytes::from(shard.to_vec())));
    let (node, token) = (server.clone(), bench.cancel.child_token());
    bench.tasks.spawn(async move {
        if let Err(e) = stream::serve(memory, node, token).await {
            tracing::warn!(error = %e, "benchmark stream service failed");
        }
    });
    let get = Request::GetShard { id: [0; 32], index: 0, offset: 0, len: opts.shard_bytes };
    // The first transfer dials, runs the handshakes and tells how many repetitions to time.
    let first = Instant::now();
    get_shard(client, &server, &server_addrs, &get, &shard, Via::Stream, true, &mut Vec::new()).await?;
    let once = first.elapsed().as_secs_f64();
    let cap = (MAX_MOVED_BYTES / opts.shard_bytes).max(MIN_REPS);
    let reps = ((opts.min_secs / once.max(1e-6)).ceil() as u64).clamp(MIN_REPS, cap);
    let secs = repeat(client, &server, &server_addrs, &get, &shard, Via::Stream, reps).await?;
    let moved = (opts.shard_bytes * reps) as f64;
    let what =
        format!("shard download (bulk port) answered from memory ({reps} x {})", ByteSize(opts.shard_bytes));
    let memory_mb_s = say(progress, &what, moved, secs);
    let secs = repeat(client, &server, &server_addrs, &get, &shard, Via::Libp2pStream, reps).await?;
    let libp2p_stream_mb_s = say(progress, "shard bytes inside the libp2p stream, from memory", moved, secs);
    let secs = repeat(client, &server, &server_addrs, &get, &shard, Via::Message, reps).await?;
    let request_response_mb_s = say(progress, "one GetShard message answered from memory", moved, secs);
    let tcp_mb_s =
        say(progress, "raw loopback TCP, same bytes", moved, tcp_baseline(&shard, reps, false).await?);
    let secs = tcp_baseline(&shard, reps, true).await?;
    let tcp_fresh_buffer_mb_s = say(progress, "raw loopback TCP into a new buffer each time", moved, secs);
    let (data, max_shard) = (shard.clone(), cfg.network.max_shard_size.0);
    let (enc, dec) =
        tokio::task::spawn_blocking(move || futures::executor::block_on(codec_secs(&data, max_shard)))
            .await??;
    let codec_encode_mb_s = say(progress, "codec alone: encode a Data answer", opts.shard_bytes as f64, enc);
    let codec_decode_mb_s = say(progress, "codec alone: decode a Data answer", opts.shard_bytes as f64, dec);

    let (holder, holder_addrs, id) = {
        let store = bench.store(cfg, bench.scratch.join("shard-store")).await?;
        let (holder, inbound, _, addrs) = bench.node(cfg, true).await?;
        bench.serve(store.clone(), holder.clone(), inbound, max_shard);
        let data = shard.clone();
        let id = tokio::task::spawn_blocking(move || -> Result<[u8; 32]> {
            let (manifest, shards) = encode_object(&data, single)?;
            store.put_shard(&manifest, 0, &shards[0])?;
            Ok(manifest.object_id().0)
        })
        .await??;
        (holder, addrs, id)
    };
    let mut padded = shard.to_vec();
    padded.resize(usize::try_from(single.shard_len())?, 0);
    let get = Request::GetShard { id, index: 0, offset: 0, len: single.shard_len() };
    get_shard(client, &holder, &holder_addrs, &get, &padded, Via::Stream, true, &mut Vec::new()).await?;
    let secs = repeat(client, &holder, &holder_addrs, &get, &padded, Via::Stream, reps).await?;
    let store_mb_s =
        say(progress, "shard stream answered from a store", (single.shard_len() * reps) as f64, secs);
    Ok(Transfers {
        reps,
        memory_mb_s,
        libp2p_stream_mb_s,
        tcp_fresh_buffer_mb_s,
        store_mb_s,
        request_response_mb_s,
        tcp_mb_s,
        codec_encode_mb_s,
        codec_decode_mb_s,
    })
}

/// Seconds for `reps` requests one after the other; the last answer is compared byte for byte.
async fn repeat(
    client: &NodeHandle,
    peer: &NodeHandle,
    addrs: &[Multiaddr],
    request: &Request,
    expect: &[u8],
    via: Via,
    reps: u64,
) -> Result<f64> {
    // One buffer for every repetition, as the TCP baseline has.
    let mut buf = Vec::new();
    let start = Instant::now();
    for i in 0..reps {
        get_shard(client, peer, addrs, request, expect, via, i + 1 == reps, &mut buf).await?;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// An object put on k + m provider agents and got back, then put and got in a local store.
async fn objects(
    opts: &NetBenchOptions,
    cfg: &Config,
    geometry: Geometry,
    client: &NodeHandle,
    bench: &mut Bench,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<Objects> {
    let n = geometry.total_shards();
    let mut anns = Vec::with_capacity(n);
    for i in 0..n {
        anns.push(bench.provider(cfg, &format!("provider-{i}")).await?.encode());
    }
    let learned = client.learn(None, anns).await?;
    ensure!(learned == n, "the client accepted {learned} of {n} provider announcements");
    let object = Arc::new(pseudo_random(usize::try_from(opts.object_bytes)?, 0x2545_f491_4f6c_dd1d));
    let size = opts.object_bytes as f64;
    let hidden = ProgressBar::hidden();

    let start = Instant::now();
    let data = object.clone();
    let (manifest, shards) = tokio::task::spawn_blocking(move || encode_object(&data, geometry)).await??;
    let manifest = Arc::new(manifest);
    let (holders, failed) = transfer::place(client, &manifest, shards, &hidden).await?;
    let secs = start.elapsed().as_secs_f64();
    let put_mb_s = say(progress, &format!("put on {n} providers (encode + place)"), size, secs);
    ensure!(holders.len() == n, "placed {} of {n} shards", holders.len());
    if !failed.is_empty() {
        progress(&format!("put had to work around: {}", failed.join("; ")));
    }

    let start = Instant::now();
    let (fetched, shards, _, _) = transfer::fetch(client, &manifest.object_id(), &[], &hidden).await?;
    let (rebuilt, got) = tokio::task::spawn_blocking(move || -> Result<(u64, Vec<u8>)> {
        let mut out = Vec::with_capacity(usize::try_from(fetched.geometry.size)?);
        let rebuilt = decode_object(&fetched, &shards, &mut out)?;
        Ok((rebuilt, out))
    })
    .await??;
    let secs = start.elapsed().as_secs_f64();
    let get_mb_s = say(progress, "get from the providers (fetch + decode)", size, secs);
    ensure!(got[..] == object[..], "the object fetched from the providers differs from the one put");
    drop(got);

    let local = bench.store(cfg, bench.scratch.join("local-store")).await?;
    let params = PutParams {
        data: geometry.data,
        parity: geometry.parity,
        stripe_size: geometry.stripe_size,
        segment_size: geometry.segment_size,
    };
    let data = object.clone();
    let (put_secs, get_secs, got) = tokio::task::spawn_blocking(move || -> Result<(f64, f64, Vec<u8>)> {
        let start = Instant::now();
        let put = local.put(&mut &data[..], data.len() as u64, params, &mut |_| {})?;
        let put_secs = start.elapsed().as_secs_f64();
        let id = bigfile_storage::ObjectId::from_hex(&put.id).map_err(|e| anyhow!("{e}"))?;
        let mut out = Vec::with_capacity(data.len());
        let start = Instant::now();
        local.get(&id, &mut out, &mut |_| {})?;
        Ok((put_secs, start.elapsed().as_secs_f64(), out))
    })
    .await??;
    let local_put_mb_s = say(progress, "local Store::put", size, put_secs);
    let local_get_mb_s = say(progress, "local Store::get", size, get_secs);
    ensure!(got[..] == object[..], "the local store returned other bytes than were put");
    Ok(Objects { put_mb_s, get_mb_s, local_put_mb_s, local_get_mb_s, rebuilt })
}

/// Answers every `GetShard` with a copy of the asked range of `shard` (a memcpy, next to nothing
/// beside the transfer); anything else gets `NotFound`.
async fn answer_from_memory(
    mut inbound: mpsc::Receiver<InboundRequest>,
    shard: Arc<Vec<u8>>,
    cancel: CancellationToken,
) {
    loop {
        let req = tokio::select! {
            _ = cancel.cancelled() => return,
            r = inbound.recv() => match r { Some(r) => r, None => return },
        };
        let response = match req.request {
            Request::GetShard { offset, len, .. } => {
                let (at, len) = (offset as usize, len as usize);
                match shard.get(at..at.saturating_add(len)) {
                    Some(range) => Response::Data(range.to_vec()),
                    None => Response::Refused("range out of bounds".into()),
                }
            }
            _ => Response::NotFound,
        };
        let _ = req.reply.send(response);
    }
}

/// The shard in memory, as a stream source.
struct Memory(bytes::Bytes);

impl stream::ShardSource for Memory {
    fn read_range(
        &self,
        _: &ObjectId,
        _: u16,
        offset: u64,
        len: u64,
    ) -> Result<Option<bytes::Bytes>, String> {
        let at = usize::try_from(offset).map_err(|e| e.to_string())?;
        let end = at.saturating_add(usize::try_from(len).map_err(|e| e.to_string())?);
        (end <= self.0.len()).then(|| Some(self.0.slice(at..end))).ok_or_else(|| "range out of bounds".into())
    }
}

/// Which protocol a shard is fetched with.
#[derive(Clone, Copy)]
enum Via {
    /// The way clients download ([`stream::download`]: the bulk port where offered).
    Stream,
    /// The shard stream protocol with the bytes inside the libp2p stream.
    Libp2pStream,
    /// One request-response message.
    Message,
}

/// Fetches `request`'s range from `peer` and checks the answer is `expect` (every byte if
/// `compare`, else only the length, to keep comparisons out of the timed loop), into `buf`.
#[allow(clippy::too_many_arguments)]
async fn get_shard(
    client: &NodeHandle,
    peer: &NodeHandle,
    addrs: &[Multiaddr],
    request: &Request,
    expect: &[u8],
    via: Via,
    compare: bool,
    buf: &mut Vec<u8>,
) -> Result<()> {
    let Request::GetShard { id, index, offset, len } = *request else { bail!("not a GetShard request") };
    match via {
        Via::Stream | Via::Libp2pStream => {
            let bulk = matches!(via, Via::Stream);
            stream::download_into(client, peer.peer_id(), addrs, &ObjectId(id), index, offset, len, bulk, buf)
                .await
                .map_err(|e| anyhow!("shard stream: {e}"))?
        }
        Via::Message => match client.request(peer.peer_id(), addrs.to_vec(), request.clone()).await? {
            Response::Data(d) => *buf = d,
            other => bail!("GetShard answered {other:?}"),
        },
    };
    let d = &*buf;
    ensure!(
        d.len() == expect.len() && (!compare || d == expect),
        "got {} bytes that differ from the {} expected",
        d.len(),
        expect.len()
    );
    Ok(())
}

/// Seconds the shard codec takes to write `Response::Data(shard)` to a sink and to read it back
/// from memory: the framing cost of a transfer without any transport.
async fn codec_secs(shard: &[u8], max_shard: u64) -> Result<(f64, f64)> {
    use libp2p::request_response::Codec as _;
    let mut codec = Codec::new(max_shard);
    let mut wire = futures::io::Cursor::new(Vec::new());
    codec.write_response(&PROTOCOL, &mut wire, Response::Data(shard.to_vec())).await?;
    let wire = wire.into_inner();
    let answer = Response::Data(shard.to_vec());
    let start = Instant::now();
    codec.write_response(&PROTOCOL, &mut futures::io::sink(), answer).await?;
    let encode = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let back = codec.read_response(&PROTOCOL, &mut &wire[..]).await?;
    let decode = start.elapsed().as_secs_f64();
    ensure!(matches!(&back, Response::Data(d) if d[..] == shard[..]), "the codec changed the shard");
    Ok((encode, decode))
}

/// Seconds for `reps` round trips of an 8-byte request and `shard` as the answer over one
/// loopback `TcpStream` (after one untimed round trip), read into one preallocated buffer.
async fn tcp_baseline(shard: &Arc<Vec<u8>>, reps: u64, fresh: bool) -> Result<f64> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let data = shard.clone();
    let server = tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await?;
        sock.set_nodelay(true)?;
        let mut req = [0u8; 8];
        // One answer per request until the client hangs up.
        while sock.read_exact(&mut req).await.is_ok() {
            sock.write_all(&data).await?;
        }
        io::Result::Ok(())
    });
    let mut sock = TcpStream::connect(addr).await?;
    sock.set_nodelay(true)?;
    let mut buf = vec![0u8; shard.len()];
    let mut secs = 0.0;
    for i in 0..=reps {
        let start = Instant::now();
        sock.write_all(&i.to_le_bytes()).await?;
        if fresh {
            buf = vec![0u8; shard.len()];
        }
        sock.read_exact(&mut buf).await?;
        if i > 0 {
            secs += start.elapsed().as_secs_f64();
        }
    }
    ensure!(buf[..] == shard[..], "loopback TCP delivered other bytes");
    drop(sock);
    server.await??;
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bench_tiny_sizes_round_trips_and_cleans_up() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("scratch");
        let mut opts = NetBenchOptions::new(Config::default(), dir.clone());
        opts.shard_bytes = 1 << 20;
        // Not a multiple of the stripe, so the short last stripe travels too.
        opts.object_bytes = (4 << 20) + 12345;
        opts.min_secs = 0.05;
        let mut lines = Vec::new();
        let report = run(&opts, &mut |l| lines.push(l.to_string())).await.unwrap();
        println!("{report:#?}");
        for r in [
            report.transfer_vs_tcp,
            report.libp2p_stream_vs_tcp,
            report.get_shard_store_vs_tcp,
            report.put_vs_local,
            report.get_vs_local,
            report.transfer_mb_s,
            report.get_shard_store_mb_s,
            report.tcp_mb_s,
            report.tcp_fresh_buffer_mb_s,
            report.libp2p_stream_mb_s,
            report.put_mb_s,
            report.get_mb_s,
            report.local_put_mb_s,
            report.local_get_mb_s,
        ] {
            assert!(r.is_finite() && r > 0.0, "{report:?}");
        }
        assert!(report.repetitions >= MIN_REPS);
        assert_eq!((report.data, report.parity, report.providers), (4, 2, 6));
        assert_eq!(report.object_bytes, opts.object_bytes);
        // The run fails unless the fetched object was byte-identical; the lines say what ran.
        assert!(lines.iter().any(|l| l.starts_with("get from the providers")), "{lines:?}");
        let json = serde_json::to_value(&report).unwrap();
        for key in [
            "transfer_vs_tcp",
            "libp2p_stream_vs_tcp",
            "get_shard_store_vs_tcp",
            "put_vs_local",
            "get_vs_local",
        ] {
            assert!(json[key].is_f64(), "{key} missing from {json}");
        }
        assert!(!dir.exists(), "scratch dir left behind");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bench_leaves_an_existing_dir_and_its_other_files() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("keep"), b"not ours").unwrap();
        let mut opts = NetBenchOptions::new(Config::default(), tmp.path().into());
        opts.shard_bytes = 64 << 10;
        opts.object_bytes = 256 << 10;
        opts.min_secs = 0.0;
        run(&opts, &mut |_| {}).await.unwrap();
        let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, ["keep"]);
    }
}
