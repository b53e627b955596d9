//! Moving whole objects over the shard protocol: placing an object's shards on providers, and
//! fetching enough verified shards to rebuild one. Used by `client put|get`, by repair and by
//! `bench network`.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use anyhow::{Result, anyhow, bail};
use bigfile_storage::coding::shard_matches;
use bigfile_storage::{Manifest, ObjectId};
use indicatif::ProgressBar;
use libp2p::{Multiaddr, PeerId};
use tokio::task::JoinSet;

use super::node::NodeHandle;
use super::protocol::{Holder, Request, Response};
use super::select::{Candidate, select};
use super::service::decode_manifest;
use super::stream::download;

/// How long to keep listening for more answers once a good one is in.
pub const SETTLE: std::time::Duration = std::time::Duration::from_millis(300);

/// Collects the results of `set`; once one satisfies `good`, waits at most [`SETTLE`] for the
/// rest and aborts them, so an unreachable peer costs no dial timeout.
pub async fn gather<T: Send + 'static>(mut set: JoinSet<T>, good: impl Fn(&T) -> bool) -> Result<Vec<T>> {
    let mut out = Vec::new();
    let mut settle: Option<tokio::time::Instant> = None;
    loop {
        let next = match settle {
            Some(t) => match tokio::time::timeout_at(t, set.join_next()).await {
                Ok(n) => n,
                Err(_) => break,
            },
            None => set.join_next().await,
        };
        let Some(done) = next else { break };
        let v = done?;
        if good(&v) {
            settle.get_or_insert(tokio::time::Instant::now() + SETTLE);
        }
        out.push(v);
    }
    set.abort_all();
    Ok(out)
}

/// Which peer holds (or served) shard `index`.
#[derive(serde::Serialize)]
pub struct HolderReport {
    /// Shard index.
    pub index: u16,
    /// Peer id.
    pub peer: String,
}

/// Uploads every shard to its own provider (replacing providers that fail) and records the
/// holder list with each holder. Returns the holders and the failures met on the way.
pub async fn place(
    node: &NodeHandle,
    manifest: &Arc<Manifest>,
    shards: Vec<Vec<u8>>,
    bar: &ProgressBar,
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

/// A manifest, the shards fetched (`None` where not), which peer served each, and the failures.
pub type Fetched = (Manifest, Vec<Option<Vec<u8>>>, Vec<HolderReport>, Vec<String>);

/// Finds the object's manifest record and fetches the first `k` shards that verify.
pub async fn fetch(node: &NodeHandle, id: &ObjectId, also: &[PeerId], bar: &ProgressBar) -> Result<Fetched> {
    let mut failed = Vec::new();
    let (manifest, holders, _) = find_record_with(node, id, also, &mut failed).await?;
    let (shards, used, more) = fetch_shards(node, &manifest, &holders, None, bar).await?;
    failed.extend(more);
    Ok((manifest, shards, used, failed))
}

/// Shards by index (`None` where not fetched), who served each, and what failed.
pub type Shards = (Vec<Option<Vec<u8>>>, Vec<HolderReport>, Vec<String>);

/// Fetches the first `k` shards that verify from `holders`, all asked in parallel. Shards this
/// node holds itself are read from `local` instead of the network.
pub async fn fetch_shards(
    node: &NodeHandle,
    manifest: &Manifest,
    holders: &[Holder],
    local: Option<Arc<bigfile_storage::Store>>,
    bar: &ProgressBar,
) -> Result<Shards> {
    let id = manifest.object_id();
    let mut failed = Vec::new();
    let g = manifest.geometry;
    let k = usize::from(g.data);
    bar.set_length(g.shard_len() * k as u64);
    let manifest = Arc::new(manifest.clone());
    let mut set = JoinSet::new();
    for h in holders.iter().cloned() {
        let Ok(peer) = PeerId::from_bytes(&h.peer) else { continue };
        let addrs: Vec<Multiaddr> =
            h.addrs.iter().filter_map(|a| Multiaddr::try_from(a.clone()).ok()).collect();
        let (node, manifest, local) = (node.clone(), manifest.clone(), local.clone());
        set.spawn(async move {
            let len = manifest.geometry.shard_len();
            // Our own shard is read locally; every other one comes on the shard stream.
            let got: Result<Vec<u8>, String> = match local.filter(|_| peer == node.peer_id()) {
                Some(store) => {
                    let index = h.index;
                    match tokio::task::spawn_blocking(move || store.read_shard(&id, index, 0, len)).await {
                        Ok(r) => r.map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    }
                }
                None => download(&node, peer, &addrs, &id, h.index, 0, len).await.map_err(|e| e.to_string()),
            };
            let verdict = match got {
                Ok(d) => {
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
                Err(why) => Err(why),
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
    if used.len() < k {
        bail!(
            "only {} of the {k} shards needed could be fetched for {}: {}",
            used.len(),
            id.to_hex(),
            failed.join("; ")
        );
    }
    used.sort_by_key(|u| u.index);
    Ok((shards, used, failed))
}

/// Asks the DHT's providers of `id` (or, failing that, every known provider) for the object's
/// manifest record; returns the newest record whose manifest hashes to `id`.
pub async fn find_record(
    node: &NodeHandle,
    id: &ObjectId,
    failed: &mut Vec<String>,
) -> Result<(Manifest, Vec<Holder>, u64)> {
    find_record_with(node, id, &[], failed).await
}

/// As [`find_record`], also asking `also` (e.g. the holders of the object's slots on chain).
pub async fn find_record_with(
    node: &NodeHandle,
    id: &ObjectId,
    also: &[PeerId],
    failed: &mut Vec<String>,
) -> Result<(Manifest, Vec<Holder>, u64)> {
    // The DHT usually answers at once; never let a query stuck on dead peers hold up a read.
    let mut peers: Vec<PeerId> =
        match tokio::time::timeout(std::time::Duration::from_secs(3), node.find_providers(id.0.to_vec()))
            .await
        {
            Ok(found) => found?.into_iter().collect(),
            Err(_) => Vec::new(),
        };
    peers.extend(also.iter().filter(|p| !peers.contains(p)).copied().collect::<Vec<_>>());
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
    let answers =
        gather(set, |(_, r)| matches!(r, Ok(Response::Manifest { holders, .. }) if !holders.is_empty()))
            .await?;
    for (peer, r) in answers {
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
            // Unreachable peers show up again, per shard, when the shards are fetched.
            Err(e) => tracing::debug!(%peer, error = %e, "manifest request failed"),
        }
    }
    let (version, m, holders) = best.ok_or_else(|| {
        anyhow!(
            "no provider knows object {} (asked the DHT, every known provider{})",
            id.to_hex(),
            if also.is_empty() { "" } else { " and the slot holders on chain" }
        )
    })?;
    Ok((m, holders, version))
}
