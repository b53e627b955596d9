//! `bigfile-agent client put|get`: store an object across provider agents and read it back.
//!
//! The client is a dial-only libp2p node with the identity of its own data dir (made by `init`).
//! It learns providers from its bootstrap peers' signed announcements (each verified here), codes
//! the object in memory, places one shard per provider, and records the holder list with every
//! holder. `get` finds holders through the DHT (falling back to every known provider), takes the
//! first `k` shards that verify against the manifest, and rebuilds the object.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bigfile_storage::coding::{decode_object, encode_object};
use bigfile_storage::{Geometry, ObjectId};
use clap::Subcommand;
use libp2p::{Multiaddr, PeerId};
use tokio_util::sync::CancellationToken;

use super::Output;
use super::store::CodingArgs;
use crate::config::Config;
use crate::keys;
use crate::net::node::{self, NodeHandle, split_peer};
use crate::net::protocol::{Holder, Request, Response};
use crate::net::repair::challenge;
use crate::net::transfer::{HolderReport, fetch, find_record, gather, place};

/// `client` subcommands.
#[derive(Subcommand, Debug)]
pub enum ClientCmd {
    /// Store a file on k + m providers (one shard each); prints the object id.
    Put {
        /// The file.
        file: PathBuf,
        /// Erasure coding.
        #[command(flatten)]
        coding: CodingArgs,
        /// Seconds to wait for providers to answer.
        #[arg(long, default_value_t = 20)]
        timeout: u64,
        /// Storage deal: proving periods (default: chain.deal.periods).
        #[arg(long)]
        periods: Option<u32>,
        /// Storage deal: BIG per shard slot per proven period, e.g. 0.001 (default:
        /// chain.deal.price_per_slot_period).
        #[arg(long)]
        price: Option<String>,
        /// Upload only; create no deal on chain even when [chain] is enabled.
        #[arg(long)]
        no_deal: bool,
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
    /// Post a render job (a scene file or a render job spec) on the compute market, wait until
    /// it is run, verified and paid, and fetch its output image.
    Render {
        /// Scene or job spec (JSON), e.g. examples/scenes/cornell.json.
        spec: PathBuf,
        /// Payment, limits and waiting.
        #[command(flatten)]
        args: super::jobs::PostArgs,
    },
    /// Post an inference job on two objects (a safetensors model and a PNG input), wait until
    /// it is run, verified and paid, and fetch its output image.
    Infer {
        /// The model's object id.
        #[arg(long)]
        model: String,
        /// The input image's object id.
        #[arg(long)]
        input: String,
        /// Payment, limits and waiting.
        #[command(flatten)]
        args: super::jobs::PostArgs,
    },
    /// Challenge every holder of an object (a random segment each, checked against the manifest)
    /// and report its redundancy; exit 1 unless every shard is verified.
    Check {
        /// Object id (0x…).
        id: String,
        /// Seconds to wait for providers to answer.
        #[arg(long, default_value_t = 20)]
        timeout: u64,
    },
}

#[derive(serde::Serialize)]
struct CheckResult {
    id: String,
    version: u64,
    shards: usize,
    verified: usize,
    holders: Vec<CheckedShard>,
}

#[derive(serde::Serialize)]
struct CheckedShard {
    index: u16,
    peer: String,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(serde::Serialize)]
pub(crate) struct PutResult {
    pub(crate) id: String,
    size: u64,
    data: u16,
    parity: u16,
    holders: Vec<HolderReport>,
    /// Providers that refused or failed a shard and were replaced.
    failed: Vec<String>,
    /// The storage deal created on chain, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) deal: Option<crate::chain::deals::DealReport>,
    secs: f64,
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
            // Ask every bootstrap peer at once; once one has answered, wait only briefly for the
            // rest, so a dead bootstrap peer costs no dial timeout.
            let mut set = tokio::task::JoinSet::new();
            for (peer, addr) in boots.iter().cloned() {
                let node = self.node.clone();
                set.spawn(async move { (peer, node.request(peer, vec![addr], Request::Providers).await) });
            }
            let mut learned = 0;
            let answers = gather(set, |(_, r)| matches!(r, Ok(Response::Providers(_)))).await?;
            for (peer, r) in answers {
                match r {
                    Ok(Response::Providers(list)) => learned += self.node.learn(Some(peer), list).await?,
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
    let cmd = match cmd {
        ClientCmd::Render { spec, args } => return super::jobs::render(cfg, &spec, args, out),
        ClientCmd::Infer { model, input, args } => return super::jobs::infer(cfg, &model, &input, args, out),
        other => other,
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        match cmd {
            ClientCmd::Render { .. } | ClientCmd::Infer { .. } => unreachable!("handled above"),
            ClientCmd::Put { file, coding, timeout, periods, price, no_deal } => {
                let (k, m, stripe) = coding.resolve(cfg)?;
                let terms = if cfg.chain.enabled && !no_deal {
                    Some(crate::chain::deals::DealTerms::from_config(&cfg.chain, periods, price.as_deref())?)
                } else {
                    None
                };
                let r = put(cfg, file, (k, m, stripe), terms, Duration::from_secs(timeout), out).await?;
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
                    if let Some(d) = &r.deal {
                        s += &format!(
                            "\n  deal {} on chain: {} periods from block {}, {} BIG escrowed (tx {})",
                            d.deal_id, d.periods, d.start_block, d.deposit, d.tx
                        );
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
            ClientCmd::Check { id, timeout } => {
                let r = check(cfg, &id, Duration::from_secs(timeout)).await?;
                out.print(&r, || {
                    let mut s = format!(
                        "{} (holder list v{}): {} of {} shards verified",
                        r.id, r.version, r.verified, r.shards
                    );
                    for h in &r.holders {
                        s += &format!(
                            "\n  shard {:>3} on {}: {}",
                            h.index,
                            h.peer,
                            h.error.as_deref().unwrap_or("ok")
                        );
                    }
                    s
                });
                if r.verified < r.shards {
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

async fn check(cfg: &Config, id: &str, timeout: Duration) -> Result<CheckResult> {
    let id = ObjectId::from_hex(id).map_err(|e| anyhow!("object id `{id}`: {e}"))?;
    let client = Client::start(cfg, timeout).await?;
    let r = async {
        let mut failed = Vec::new();
        let (manifest, holders, version) = find_record(&client.node, &id, &mut failed).await?;
        let mut set = tokio::task::JoinSet::new();
        for h in holders {
            let (node, m) = (client.node.clone(), manifest.clone());
            set.spawn(async move {
                let peer = libp2p::PeerId::from_bytes(&h.peer).map_err(|e| e.to_string());
                let addrs = h.addrs.iter().filter_map(|a| Multiaddr::try_from(a.clone()).ok()).collect();
                let r = match &peer {
                    Ok(p) => challenge(&node, &m, h.index, *p, addrs).await,
                    Err(e) => Err(e.clone()),
                };
                CheckedShard {
                    index: h.index,
                    peer: peer.map(|p| p.to_string()).unwrap_or_else(|e| e),
                    ok: r.is_ok(),
                    error: r.err(),
                }
            });
        }
        let mut checked = Vec::new();
        while let Some(done) = set.join_next().await {
            checked.push(done?);
        }
        checked.sort_by_key(|c| c.index);
        anyhow::Ok(CheckResult {
            id: id.to_hex(),
            version,
            shards: manifest.geometry.total_shards(),
            verified: checked.iter().filter(|c| c.ok).count(),
            holders: checked,
        })
    }
    .await;
    client.stop().await;
    r
}

pub(crate) async fn put(
    cfg: &Config,
    file: PathBuf,
    (k, m, stripe): (u16, u16, u32),
    terms: Option<crate::chain::deals::DealTerms>,
    timeout: Duration,
    out: &Output,
) -> Result<PutResult> {
    let started = Instant::now();
    let data = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let geometry = Geometry {
        size: data.len() as u64,
        data: k,
        parity: m,
        stripe_size: Geometry::round_stripe(stripe, k),
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
    // Connect to the chain and check the client can pay before anything is uploaded.
    let cancel = CancellationToken::new();
    let deal_client = match terms {
        Some(terms) => {
            Some(crate::chain::deals::DealClient::connect(cfg, terms, &geometry, cancel.clone()).await?)
        }
        None => None,
    };
    let (manifest, shards) = tokio::task::spawn_blocking(move || encode_object(&data, geometry)).await??;
    let manifest = Arc::new(manifest);
    let id = manifest.object_id();
    let client = Client::start(cfg, timeout).await?;
    let bar = out.progress(geometry.shard_len() * shards.len() as u64, "uploading");
    let result = place(&client.node, &manifest, shards, &bar).await;
    bar.finish_and_clear();
    client.stop().await;
    let (holders, failed) = result?;
    let deal = match deal_client {
        Some(dc) => Some(dc.create(&manifest).await.with_context(|| {
            format!("the object {} is stored, but its deal could not be created", id.to_hex())
        })?),
        None => None,
    };
    cancel.cancel();
    Ok(PutResult {
        id: id.to_hex(),
        size: geometry.size,
        data: k,
        parity: m,
        holders: holders.iter().map(|h| HolderReport { index: h.index, peer: peer_of(h) }).collect(),
        failed,
        deal,
        secs: started.elapsed().as_secs_f64(),
    })
}

fn peer_of(h: &Holder) -> String {
    PeerId::from_bytes(&h.peer).map(|p| p.to_string()).unwrap_or_else(|_| "?".into())
}

async fn get(cfg: &Config, id: &str, output: PathBuf, timeout: Duration, out: &Output) -> Result<GetResult> {
    let started = Instant::now();
    let id = ObjectId::from_hex(id).map_err(|e| anyhow!("object id `{id}`: {e}"))?;
    // Slot holders on chain are asked beside the DHT; a chain that cannot be read only costs that.
    let also = match cfg.chain.enabled {
        true => crate::chain::deals::chain_holders(&cfg.chain, id.0.into()).await.unwrap_or_else(|e| {
            tracing::warn!(error = %format!("{e:#}"), "cannot read the object's holders from the chain");
            Vec::new()
        }),
        false => Vec::new(),
    };
    let client = Client::start(cfg, timeout).await?;
    let bar = out.progress(0, "fetching");
    let r = fetch(&client.node, &id, &also, &bar).await;
    bar.finish_and_clear();
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
