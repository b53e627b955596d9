//! `bigfile-agent client put|get`: store an object across provider agents and read it back.
//!
//! The client is a dial-only libp2p node with the identity of its own data dir (made by `init`).
//! It learns providers from its bootstrap peers' signed announcements (each verified here), codes
//! the object in memory, places one shard per provider, and records the holder list with every
//! holder. `get` finds holders through the DHT (falling back to every known provider), takes the
//! first `k` shards that verify against the manifest, and rebuilds the object.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bigfile_storage::coding::{decode_object, encode_object, shard_matches};
use bigfile_storage::{Geometry, Manifest, ObjectId};
use clap::Subcommand;
use libp2p::{Multiaddr, PeerId};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::Output;
use crate::config::{ByteSize, Config};
use crate::keys;
use crate::net::node::{self, NodeHandle, split_peer};
use crate::net::protocol::{Holder, Request, Response};
use crate::net::select::{Candidate, select};
use crate::net::service::decode_manifest;

/// `client` subcommands.
#[derive(Subcommand, Debug)]
pub enum ClientCmd {
    /// Store a file on k + m providers (one shard each); prints the object id.
    Put {
        /// The file.
        file: PathBuf,
        /// Data shards per stripe (k); default from storage.data.
        #[arg(long)]
        data: Option<u16>,
        /// Parity shards per stripe (m); default from storage.parity.
        #[arg(long)]
        parity: Option<u16>,
        /// Object bytes per stripe; default from storage.stripe_size.
        #[arg(long)]
        stripe_size: Option<ByteSize>,
        /// Seconds to wait for providers to answer.
        #[arg(long, default_value_t = 20)]
        timeout: u64,
    },
    /// Fetch an object from its holders, verify and rebuild it.
    Get {
        /// Object id (0x…).
        id: String,
        /// Output file; written via a temporary file, so never half-written.
        #[arg(short, long)]
        output: PathBuf,
        /// Seconds to wait for providers to answer.
        #[arg(long, default_value_t = 20)]
        timeout: u64,
    },
}

#[derive(serde::Serialize)]
struct PutResult {
    id: String,
    size: u64,
    data: u16,
    parity: u16,
    holders: Vec<HolderReport>,
    /// Providers that refused or failed a shard and were replaced.
    failed: Vec<String>,
    secs: f64,
}

/// Which peer holds (or served) shard `index`.
#[derive(serde::Serialize)]
pub struct HolderReport {
    /// Shard index.
    pub index: u16,
    /// Peer id.
    pub peer: String,
}

#[derive(serde::Serialize)]
struct GetResult {
    id: String,
    size: u64,
    output: PathBuf,
    /// Shards used, by index, with the peer they came from.
    used: Vec<HolderReport>,
    /// Holders that failed, with why.
    failed: Vec<String>,
    stripes_reconstructed: u64,
    secs: f64,
}

/// A running client node.
pub struct Client {
    /// The handle.
    pub node: NodeHandle,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Client {
    /// Starts a dial-only node from `cfg` and learns providers from its bootstrap peers.
    pub async fn start(cfg: &Config, timeout: Duration) -> Result<Client> {
        if cfg.network.bootstrap.is_empty() {
            bail!(
                "network.bootstrap is empty: a client needs at least one peer to join through (init --bootstrap)"
            );
        }
        let identity = keys::load_identity(&cfg.node.identity)?;
        let (node, _inbound, mut event_loop) = node::build(crate::net::node_options(cfg, identity, false))?;
        event_loop.listen()?;
        let cancel = CancellationToken::new();
        let task = tokio::spawn(event_loop.run(cancel.clone()));
        let client = Client { node, cancel, task };
        client.learn_providers(cfg, timeout).await?;
        Ok(client)
    }

    async fn learn_providers(&self, cfg: &Config, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let boots: Vec<(PeerId, Multiaddr)> =
            cfg.network.bootstrap_addrs().iter().filter_map(split_peer).collect();
        let mut last_err = String::new();
        loop {
            let mut learned = 0;
            for (peer, addr) in &boots {
                match self.node.request(*peer, vec![addr.clone()], Request::Providers).await {
                    Ok(Response::Providers(list)) => learned += self.node.learn(Some(*peer), list).await?,
                    Ok(other) => last_err = format!("{peer} answered {other:?}"),
                    Err(e) => last_err = e.to_string(),
                }
            }
            if learned > 0 || Instant::now() >= deadline {
                if learned == 0 {
                    bail!(
                        "no provider announcements from the bootstrap peers within {timeout:?} ({last_err})"
                    );
                }
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Stops the node.
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

/// Runs a `client` subcommand.
pub fn run(cfg: &Config, cmd: ClientCmd, out: &Output) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        match cmd {
            ClientCmd::Put { file, data, parity, stripe_size, timeout } => {
                let k = data.unwrap_or(cfg.storage.data);
                let m = parity.unwrap_or(cfg.storage.parity);
                let stripe = stripe_size.unwrap_or(cfg.storage.stripe_size).0;
                let r = put(cfg, file, k, m, stripe, Duration::from_secs(timeout), out).await?;
                out.print(&r, || {
                    let mut s = format!(
                        "{}\n  {} bytes as {}+{} shards on {} providers in {:.1} s",
                        r.id,
                        r.size,
                        r.data,
                        r.parity,
                        r.holders.len(),
                        r.secs
                    );
                    for h in &r.holders {
                        s += &format!("\n  shard {:>3} -> {}", h.index, h.peer);
                    }
                    for f in &r.failed {
                        s += &format!("\n  replaced: {f}");
                    }
                    s
                });
            }
            ClientCmd::Get { id, output, timeout } => {
                let r = get(cfg, &id, output, Duration::from_secs(timeout), out).await?;
                out.print(&r, || {
                    let mut s = format!(
                        "{} -> {} ({} bytes, {} stripes rebuilt from parity, {:.1} s)",
                        r.id,
                        r.output.display(),
                        r.size,
                        r.stripes_reconstructed,
                        r.secs
                    );
                    for h in &r.used {
                        s += &format!("\n  shard {:>3} from {}", h.index, h.peer);
                    }
                    for f in &r.failed {
                        s += &format!("\n  failed: {f}");
                    }
                    s
                });
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

async fn put(
    cfg: &Config,
    file: PathBuf,
    k: u16,
    m: u16,
    stripe: u64,
    timeout: Duration,
    out: &Output,
) -> Result<PutResult> {
    let started = Instant::now();
    let data = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let geometry = Geometry {
        size: data.len() as u64,
        data: k,
        parity: m,
        stripe_size: Geometry::round_stripe(u32::try_from(stripe).unwrap_or(u32::MAX), k),
        segment_size: cfg.storage.segment_size.0 as u32,
    };
    geometry.validate().map_err(|e| anyhow!("--data/--parity/--stripe-size: {e}"))?;
    let max_shard = cfg.network.max_shard_size.0;
    if geometry.shard_len() > max_shard {
        bail!(
            "{} is {} bytes: its shards would be {} bytes, above network.max_shard_size ({max_shard}); use a larger --data",
            file.display(),
            data.len(),
            geometry.shard_len()
        );
    }
    let (manifest, shards) = tokio::task::spawn_blocking(move || encode_object(&data, geometry)).await??;
    let manifest = Arc::new(manifest);
    let id = manifest.object_id();
    let client = Client::start(cfg, timeout).await?;
    let result = place(&client.node, &manifest, shards, out).await;
    client.stop().await;
    let (holders, failed) = result?;
    Ok(PutResult {
        id: id.to_hex(),
        size: geometry.size,
        data: k,
        parity: m,
        holders: holders.iter().map(|h| HolderReport { index: h.index, peer: peer_of(h) }).collect(),
        failed,
        secs: started.elapsed().as_secs_f64(),
    })
}

fn peer_of(h: &Holder) -> String {
    PeerId::from_bytes(&h.peer).map(|p| p.to_string()).unwrap_or_else(|_| "?".into())
}

/// Uploads every shard to its own provider (replacing providers that fail) and records the
/// holder list with each holder. Returns the holders and the failures met on the way.
pub async fn place(
    node: &NodeHandle,
    manifest: &Arc<Manifest>,
    shards: Vec<Vec<u8>>,
    out: &Output,
) -> Result<(Vec<Holder>, Vec<String>)> {
    let n = shards.len();
    let shard_len = manifest.geometry.shard_len();
    let anns = node.providers().await?;
    let cands: Vec<Candidate> = anns.iter().map(|a| Candidate::from_announcement(&a.body)).collect();
    let addrs: BTreeMap<PeerId, Vec<Multiaddr>> =
        anns.iter().map(|a| (a.body.peer_id, a.body.listen_addrs.clone())).collect();
    let mut exclude: HashSet<PeerId> = HashSet::new();
    exclude.insert(node.peer_id());
    let chosen = select(&cands, n, shard_len, &exclude, &mut rand::thread_rng())
        .map_err(|e| anyhow!("cannot place {n} shards of {shard_len} bytes: {e}"))?;
    let bar = out.progress(shard_len * n as u64, "uploading");
    let encoded = manifest.encode();
    let mut used: HashSet<PeerId> = chosen.iter().copied().collect();
    let mut failed = Vec::new();
    let mut holders: Vec<Option<Holder>> = vec![None; n];
    let mut pending: Vec<(u16, PeerId)> =
        chosen.into_iter().enumerate().map(|(i, p)| (i as u16, p)).collect();
    let shards: Vec<Arc<Vec<u8>>> = shards.into_iter().map(Arc::new).collect();
    for _attempt in 0..4 {
        let mut set = JoinSet::new();
        for (index, peer) in pending.drain(..) {
            let (node, manifest, data) = (node.clone(), encoded.clone(), shards[usize::from(index)].clone());
            let a = addrs.get(&peer).cloned().unwrap_or_default();
            set.spawn(async move {
                let req = Request::PutShard { manifest, index, data: data.as_ref().clone() };
                (index, peer, node.request(peer, a, req).await)
            });
        }
        while let Some(done) = set.join_next().await {
            let (index, peer, r) = done?;
            match r {
                Ok(Response::Stored { .. }) => {
                    bar.inc(shard_len);
                    let a = addrs.get(&peer).cloned().unwrap_or_default();
                    holders[usize::from(index)] = Some(Holder {
                        index,
                        peer: peer.to_bytes(),
                        addrs: a.iter().take(8).map(|m| m.to_vec()).collect(),
                    });
                }
                other => {
                    let why = match other {
                        Ok(Response::Refused(w)) => w,
                        Ok(resp) => format!("unexpected answer {resp:?}"),
                        Err(e) => e.to_string(),
                    };
                    failed.push(format!("shard {index} on {peer}: {why}"));
                    exclude.insert(peer);
                    exclude.extend(used.iter().copied());
                    let next =
                        select(&cands, 1, shard_len, &exclude, &mut rand::thread_rng()).map_err(|e| {
                            anyhow!("shard {index}: {peer} failed ({why}) and no provider is left: {e}")
                        })?;
                    used.insert(next[0]);
                    pending.push((index, next[0]));
                }
            }
        }
        if pending.is_empty() {
            break;
        }
    }
    bar.finish_and_clear();
    let holders: Vec<Holder> = holders
        .into_iter()
        .collect::<Option<_>>()
        .ok_or_else(|| anyhow!("some shards could not be placed after 4 rounds: {}", failed.join("; ")))?;
    // Every holder keeps the holder list, so any of them can answer `get` and lead a repair.
    let mut set = JoinSet::new();
    for h in &holders {
        let peer = PeerId::from_bytes(&h.peer)?;
        let req = Request::PutManifest { manifest: encoded.clone(), version: 1, holders: holders.clone() };
        let (node, a) = (node.clone(), addrs.get(&peer).cloned().unwrap_or_default());
        set.spawn(async move { (peer, node.request(peer, a, req).await) });
    }
    while let Some(done) = set.join_next().await {
        let (peer, r) = done?;
        if !matches!(r, Ok(Response::Ok)) {
            failed.push(format!("holder list on {peer}: {r:?}"));
        }
    }
    Ok((holders, failed))
}

async fn get(cfg: &Config, id: &str, output: PathBuf, timeout: Duration, out: &Output) -> Result<GetResult> {
    let started = Instant::now();
    let id = ObjectId::from_hex(id).map_err(|e| anyhow!("object id `{id}`: {e}"))?;
    let client = Client::start(cfg, timeout).await?;
    let r = fetch(&client.node, &id, out).await;
    client.stop().await;
    let (manifest, shards, used, failed) = r?;
    let dir = output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    let m = manifest.clone();
    let (rebuilt, tmp) = tokio::task::spawn_blocking(move || -> Result<(u64, tempfile::NamedTempFile)> {
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        let r = decode_object(&m, &shards, &mut w)?;
        w.flush()?;
        drop(w);
        tmp.as_file().sync_all()?;
        Ok((r, tmp))
    })
    .await??;
    tmp.persist(&output).with_context(|| format!("writing {}", output.display()))?;
    Ok(GetResult {
        id: id.to_hex(),
        size: manifest.geometry.size,
        output,
        used,
        failed,
        stripes_reconstructed: rebuilt,
        secs: started.elapsed().as_secs_f64(),
    })
}

type Fetched = (Manifest, Vec<Option<Vec<u8>>>, Vec<HolderReport>, Vec<String>);

/// Finds the object's manifest record and fetches the first `k` shards that verify.
pub async fn fetch(node: &NodeHandle, id: &ObjectId, out: &Output) -> Result<Fetched> {
    let mut failed = Vec::new();
    let (manifest, holders) = find_record(node, id, &mut failed).await?;
    let g = manifest.geometry;
    let k = usize::from(g.data);
    let bar = out.progress(g.shard_len() * k as u64, "fetching");
    let manifest = Arc::new(manifest);
    let mut set = JoinSet::new();
    for h in holders {
        let Ok(peer) = PeerId::from_bytes(&h.peer) else { continue };
        let addrs: Vec<Multiaddr> =
            h.addrs.iter().filter_map(|a| Multiaddr::try_from(a.clone()).ok()).collect();
        let (node, manifest, id) = (node.clone(), manifest.clone(), *id);
        set.spawn(async move {
            let req =
                Request::GetShard { id: id.0, index: h.index, offset: 0, len: manifest.geometry.shard_len() };
            let r = node.request(peer, addrs, req).await;
            let verdict = match r {
                Ok(Response::Data(d)) => {
                    let m = manifest.clone();
                    let index = h.index;
                    match tokio::task::spawn_blocking(move || (shard_matches(&m, index, &d), d)).await {
                        Ok((true, d)) => Ok(d),
                        Ok((false, _)) => {
                            node.penalize(
                                peer,
                                50,
                                format!("served shard {index} that does not match its root"),
                            )
                            .await;
                            Err("served a shard that does not match the manifest".to_string())
                        }
                        Err(e) => Err(e.to_string()),
                    }
                }
                Ok(Response::NotFound) => Err("does not have it".into()),
                Ok(other) => Err(format!("answered {other:?}")),
                Err(e) => Err(e.to_string()),
            };
            (h.index, peer, verdict)
        });
    }
    let mut shards: Vec<Option<Vec<u8>>> = vec![None; g.total_shards()];
    let mut used = Vec::new();
    while let Some(done) = set.join_next().await {
        let (index, peer, r) = match done {
            Ok(v) => v,
            // Aborted once the fastest k were in.
            Err(e) if e.is_cancelled() => continue,
            Err(e) => return Err(e.into()),
        };
        match r {
            Ok(d) if shards[usize::from(index)].is_none() && used.len() < k => {
                bar.inc(d.len() as u64);
                shards[usize::from(index)] = Some(d);
                used.push(HolderReport { index, peer: peer.to_string() });
                if used.len() == k {
                    // The fastest k are in; the slower holders are not needed.
                    set.abort_all();
                }
            }
            Ok(_) => {}
            Err(why) => failed.push(format!("shard {index} from {peer}: {why}")),
        }
    }
    bar.finish_and_clear();
    if used.len() < k {
        bail!(
            "only {} of the {k} shards needed could be fetched for {}: {}",
            used.len(),
            id.to_hex(),
            failed.join("; ")
        );
    }
    used.sort_by_key(|u| u.index);
    Ok((Arc::try_unwrap(manifest).unwrap_or_else(|m| (*m).clone()), shards, used, failed))
}

/// Asks the DHT's providers of `id` (or, failing that, every known provider) for the object's
/// manifest record; returns the newest record whose manifest hashes to `id`.
pub async fn find_record(
    node: &NodeHandle,
    id: &ObjectId,
    failed: &mut Vec<String>,
) -> Result<(Manifest, Vec<Holder>)> {
    let mut peers: Vec<PeerId> = node.find_providers(id.0.to_vec()).await?.into_iter().collect();
    if peers.is_empty() {
        peers = node.providers().await?.into_iter().map(|a| a.body.peer_id).collect();
    }
    peers.retain(|p| *p != node.peer_id());
    let mut set = JoinSet::new();
    for peer in peers {
        let node = node.clone();
        let req = Request::GetManifest { id: id.0 };
        set.spawn(async move { (peer, node.request(peer, vec![], req).await) });
    }
    let mut best: Option<(u64, Manifest, Vec<Holder>)> = None;
    while let Some(done) = set.join_next().await {
        let (peer, r) = done?;
        match r {
            Ok(Response::Manifest { manifest, version, holders }) => match decode_manifest(&manifest) {
                Ok(m) if m.object_id() == *id => {
                    if !holders.is_empty() && best.as_ref().is_none_or(|b| version > b.0) {
                        best = Some((version, m, holders));
                    }
                }
                Ok(_) => {
                    node.penalize(peer, 50, "sent a manifest for another object").await;
                    failed.push(format!("{peer}: manifest does not hash to the object id"));
                }
                Err(why) => {
                    node.penalize(peer, 50, why.clone()).await;
                    failed.push(format!("{peer}: {why}"));
                }
            },
            Ok(Response::NotFound) => {}
            Ok(other) => failed.push(format!("{peer}: answered {other:?}")),
            Err(e) => failed.push(e.to_string()),
        }
    }
    let (_, m, holders) = best.ok_or_else(|| {
        anyhow!("no provider knows object {} (asked the DHT and every known provider)", id.to_hex())
    })?;
    Ok((m, holders))
}
