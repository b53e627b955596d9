//! Holders watch each other and rebuild lost shards.
//!
//! Every `interval` a provider challenges each fellow holder of every object it holds a shard of
//! (a random segment with its Merkle path, checked against the manifest's shard root). A holder
//! that has failed for longer than `grace` is dead for that shard. Exactly one surviving holder
//! repairs the object: the one whose `keccak(object id ‖ peer id)` is smallest among the live
//! holders, and only after every other live holder has granted it a lease for the object's
//! current holder-list version (a holder grants one lease per object at a time, and refuses a
//! stale version). The repairer fetches `k` verified shards, rebuilds the object, re-codes the
//! lost shards, places them on new providers chosen like `client put` does, challenges each new
//! copy, and only then publishes the next holder-list version to every holder. The plan (which
//! provider gets which shard) is saved before any upload, so a restart resumes it; nothing is
//! ever deleted by a repair.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use bigfile_storage::coding::{decode_object, encode_object};
use bigfile_storage::merkle::{SegmentProof, keccak256, leaf_count};
use bigfile_storage::{Manifest, ObjectId, Store};
use futures::StreamExt;
use libp2p::{Multiaddr, PeerId};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::node::NodeHandle;
use super::protocol::{Holder, Request, Response};
use super::select::{Candidate, select};
use super::service::{Leases, MANIFEST_TREE, ManifestRecord, decode_manifest, save_record};
use super::transfer::fetch_shards;
use crate::config::RepairConfig;

/// Agent tree holding repair plans in progress.
pub const PLAN_TREE: &str = "repairs";

/// A repair in progress: from which holder-list version, and which provider gets which shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairPlan {
    /// Version of the holder list being repaired.
    pub from_version: u64,
    /// (shard index, new holder peer id bytes).
    pub placements: Vec<(u16, Vec<u8>)>,
}

impl RepairPlan {
    /// `shard I -> PEER` per placement, for logs (tests read these lines).
    pub fn describe(&self) -> Vec<String> {
        self.placements
            .iter()
            .map(|(i, p)| {
                format!("shard {i} -> {}", PeerId::from_bytes(p).map(|p| p.to_string()).unwrap_or_default())
            })
            .collect()
    }
}

/// Shards the chain says are lost: their holder missed a storage proof and its slot was freed.
///
/// A holder named here that also fails a challenge is dead at once, without waiting for the
/// grace period: the chain has already slashed it and no longer pays for its slot, so the sooner
/// the shard is rebuilt on another provider (which then takes the slot), the sooner the object is
/// whole and paid for again.
#[derive(Debug, Default)]
pub struct RepairHints(std::sync::Mutex<HashMap<(ObjectId, u16), Instant>>);

/// How long a chain hint stays in force.
const HINT_TTL: Duration = Duration::from_secs(3600);

impl RepairHints {
    /// Records that shard `index` of `id` lost its on-chain slot.
    pub fn lost(&self, id: ObjectId, index: u16) {
        if let Ok(mut hints) = self.0.lock() {
            hints.retain(|_, at| at.elapsed() < HINT_TTL);
            hints.insert((id, index), Instant::now());
        }
    }

    /// Whether shard `index` of `id` lost its slot recently.
    pub fn is_lost(&self, id: &ObjectId, index: u16) -> bool {
        self.0.lock().is_ok_and(|hints| hints.get(&(*id, index)).is_some_and(|at| at.elapsed() < HINT_TTL))
    }

    /// Forgets the hint (the shard was rebuilt).
    pub fn repaired(&self, id: &ObjectId, index: u16) {
        if let Ok(mut hints) = self.0.lock() {
            hints.remove(&(*id, index));
        }
    }
}

/// Challenges fellow holders and repairs objects; one per provider.
pub struct Repairer {
    hints: Arc<RepairHints>,
    store: Arc<Store>,
    node: NodeHandle,
    leases: Arc<Leases>,
    cfg: RepairConfig,
    /// When each (object, shard) holder was first seen failing.
    failing: HashMap<(ObjectId, u16), Instant>,
    /// Providers that failed to take a rebuilt shard, and when: left out of plans for a while.
    avoid: HashMap<PeerId, Instant>,
    /// Rounds run since start; every [`SYNC_EVERY`]th (the first included) syncs holder lists.
    rounds: u64,
}

/// Rounds between holder-list syncs: each object's record is compared with the other holders'
/// on the first round after a start (a provider coming back learns what changed while it was
/// away) and every this many rounds after.
pub const SYNC_EVERY: u64 = 10;
/// How long a sync waits for the other holders' answers.
const SYNC_WAIT: Duration = Duration::from_secs(10);
/// Objects checked at once in a round.
pub const CHECKS_IN_FLIGHT: usize = 16;

/// What one round learned about one object this node holds a shard of.
struct Checked {
    id: ObjectId,
    /// The holder list after any sync.
    rec: ManifestRecord,
    manifest: Manifest,
    /// When the challenges were sent (failures count from here).
    at: Instant,
    /// (shard index, challenge outcome) for every other holder.
    results: Vec<(u16, Result<(), String>)>,
}

/// Runs the repairer until cancelled.
pub async fn repair_task(
    store: Arc<Store>,
    node: NodeHandle,
    leases: Arc<Leases>,
    hints: Arc<RepairHints>,
    cfg: RepairConfig,
    cancel: CancellationToken,
) -> Result<()> {
    let mut r = Repairer {
        hints,
        store,
        node,
        leases,
        cfg,
        failing: HashMap::new(),
        avoid: HashMap::new(),
        rounds: 0,
    };
    let mut tick = tokio::time::interval(Duration::from_secs(r.cfg.interval_secs));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            res = r.round() => if let Err(e) = res {
                tracing::warn!(error = %format!("{e:#}"), "repair round failed");
            },
        }
    }
}

fn peer_of(h: &Holder) -> Option<PeerId> {
    PeerId::from_bytes(&h.peer).ok()
}

fn addrs_of(h: &Holder) -> Vec<Multiaddr> {
    h.addrs.iter().filter_map(|a| Multiaddr::try_from(a.clone()).ok()).collect()
}

/// The holder that leads the repair of `id` among `live` peers.
pub fn leader(id: &ObjectId, live: &BTreeSet<PeerId>) -> Option<PeerId> {
    live.iter()
        .map(|p| {
            let mut buf = id.0.to_vec();
            buf.extend_from_slice(&p.to_bytes());
            (keccak256(&buf), *p)
        })
        .min()
        .map(|(_, p)| p)
}

/// Challenges `peer` for a random segment of shard `index` and checks the proof.
pub async fn challenge(
    node: &NodeHandle,
    m: &Manifest,
    index: u16,
    peer: PeerId,
    addrs: Vec<Multiaddr>,
) -> Result<(), String> {
    let id = m.object_id();
    let g = m.geometry;
    let n = leaf_count(g.shard_len(), g.segment_size);
    if n == 0 {
        return match node.request(peer, addrs, Request::HasShard { id: id.0, index }).await {
            Ok(Response::Has(true)) => Ok(()),
            Ok(other) => Err(format!("answered {other:?}")),
            Err(e) => Err(e.to_string()),
        };
    }
    let segment = rand::thread_rng().gen_range(0..n);
    match node.request(peer, addrs, Request::Challenge { id: id.0, index, segment }).await {
        Ok(Response::Proof { segment: bytes, siblings }) => {
            let proof = SegmentProof { index: segment, segment: bytes, siblings };
            if proof.verify(&m.shard_roots[usize::from(index)], g.shard_len(), g.segment_size) {
                Ok(())
            } else {
                node.penalize(peer, 50, format!("bad proof for shard {index} of {}", id.to_hex())).await;
                Err(format!("proof of segment {segment} does not verify"))
            }
        }
        Ok(other) => Err(format!("answered {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

impl Repairer {
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let s = self.store.clone();
        tokio::task::spawn_blocking(move || f(&s)).await?
    }

    /// Every object record this node holds a shard of.
    async fn records(&self) -> Result<Vec<(ObjectId, ManifestRecord)>> {
        self.blocking(|s| {
            let tree = s.agent_tree(MANIFEST_TREE)?;
            let mut out = Vec::new();
            for kv in tree.iter() {
                let (k, v) = kv?;
                let (Ok(id), Some(rec)) = (<[u8; 32]>::try_from(&k[..]), ManifestRecord::decode(&v)) else {
                    continue;
                };
                out.push((ObjectId(id), rec));
            }
            Ok(out)
        })
        .await
    }

    /// One pass over every object: challenge the other holders, repair what is dead.
    ///
    /// The checks of different objects run concurrently (up to [`CHECKS_IN_FLIGHT`]), so a
    /// holder that does not answer costs one request timeout per round, not one per object;
    /// the repairs this node leads then run one after another.
    pub async fn round(&mut self) -> Result<()> {
        let me = self.node.peer_id();
        let sync = self.rounds.is_multiple_of(SYNC_EVERY);
        self.rounds += 1;
        let records = self.records().await?;
        let this = &*self;
        let checks: Vec<Checked> = futures::stream::iter(records)
            .map(|(id, rec)| this.check(id, rec, sync))
            .buffer_unordered(CHECKS_IN_FLIGHT)
            .filter_map(|c| async move { c })
            .collect()
            .await;
        let grace = Duration::from_secs(self.cfg.grace_secs);
        let mut repairs = Vec::new();
        for mut c in checks {
            let id = c.id;
            for (index, r) in std::mem::take(&mut c.results) {
                match r {
                    Ok(()) => {
                        self.failing.remove(&(id, index));
                    }
                    Err(why) => {
                        let since = *self.failing.entry((id, index)).or_insert(c.at);
                        tracing::debug!(object = %id.to_hex(), index, why, failing_secs = c.at.duration_since(since).as_secs(), "holder failed a challenge");
                    }
                }
            }
            let dead: BTreeSet<u16> = c
                .rec
                .holders
                .iter()
                .filter(|h| {
                    self.failing
                        .get(&(id, h.index))
                        .is_some_and(|t| c.at.duration_since(*t) >= grace || self.hints.is_lost(&id, h.index))
                })
                .map(|h| h.index)
                .collect();
            if dead.is_empty() {
                continue;
            }
            let live: BTreeSet<PeerId> =
                c.rec.holders.iter().filter(|h| !dead.contains(&h.index)).filter_map(peer_of).collect();
            if leader(&id, &live) != Some(me) {
                tracing::debug!(object = %id.to_hex(), "another holder leads this repair");
                continue;
            }
            repairs.push((c, dead, live));
        }
        for (c, dead, live) in repairs {
            let id = c.id;
            match self.repair(id, &c.rec, &c.manifest, &dead, &live).await {
                Ok(()) => {
                    for i in &dead {
                        self.failing.remove(&(id, *i));
                        self.hints.repaired(&id, *i);
                    }
                }
                Err(e) => {
                    tracing::warn!(object = %id.to_hex(), error = %format!("{e:#}"), "repair failed; will retry")
                }
            }
        }
        Ok(())
    }

    /// Syncs the holder list of one object (on sync rounds), collects orphaned shards, and
    /// challenges every other holder; None when this node is not a holder (or the record is
    /// unreadable).
    async fn check(&self, id: ObjectId, rec: ManifestRecord, sync: bool) -> Option<Checked> {
        let me = self.node.peer_id();
        let manifest = decode_manifest(&rec.manifest).ok()?;
        let rec = match sync {
            true => match self.sync(id, &rec).await {
                Ok(Some(newer)) => newer,
                Ok(None) => rec,
                Err(e) => {
                    tracing::debug!(object = %id.to_hex(), error = %format!("{e:#}"), "holder list sync failed");
                    rec
                }
            },
            false => rec,
        };
        if let Err(e) = self.collect_orphans(id, &rec, &manifest).await {
            tracing::warn!(object = %id.to_hex(), error = %format!("{e:#}"), "cannot check for orphaned shards");
        }
        if !rec.holders.iter().any(|h| peer_of(h) == Some(me)) {
            return None;
        }
        let at = Instant::now();
        let mut set = JoinSet::new();
        for h in rec.holders.iter().filter(|h| peer_of(h).is_some_and(|p| p != me)) {
            let (node, m, h) = (self.node.clone(), manifest.clone(), h.clone());
            set.spawn(async move {
                let r = match peer_of(&h) {
                    Some(p) => challenge(&node, &m, h.index, p, addrs_of(&h)).await,
                    None => Err("bad peer id".into()),
                };
                (h.index, r)
            });
        }
        let mut results = Vec::new();
        while let Some(done) = set.join_next().await {
            if let Ok(r) = done {
                results.push(r);
            }
        }
        Some(Checked { id, rec, manifest, at, results })
    }

    /// Asks the other holders of `id` for their holder lists and adopts a newer one that more
    /// than half of them report identically (so one peer cannot talk this node out of its
    /// shards). Returns the adopted record.
    async fn sync(&self, id: ObjectId, rec: &ManifestRecord) -> Result<Option<ManifestRecord>> {
        let me = self.node.peer_id();
        let others: Vec<(PeerId, Vec<Multiaddr>)> = rec
            .holders
            .iter()
            .filter_map(|h| Some((peer_of(h)?, addrs_of(h))))
            .filter(|(p, _)| *p != me)
            .collect::<HashMap<_, _>>()
            .into_iter()
            .collect();
        if others.is_empty() {
            return Ok(None);
        }
        let mut set = JoinSet::new();
        for (peer, addrs) in others.iter().cloned() {
            let node = self.node.clone();
            set.spawn(
                async move { (peer, node.request(peer, addrs, Request::GetManifest { id: id.0 }).await) },
            );
        }
        let mut votes: HashMap<ManifestRecord, HashSet<PeerId>> = HashMap::new();
        let deadline = tokio::time::Instant::now() + SYNC_WAIT;
        while let Ok(Some(done)) = tokio::time::timeout_at(deadline, set.join_next()).await {
            let Ok((peer, Ok(Response::Manifest { manifest, version, holders }))) = done else { continue };
            if version > rec.version
                && manifest == rec.manifest
                && decode_manifest(&manifest).is_ok_and(|m| m.object_id() == id)
            {
                votes.entry(ManifestRecord { manifest, version, holders }).or_default().insert(peer);
            }
        }
        set.abort_all();
        tracing::debug!(object = %id.to_hex(), version = rec.version, newer = ?votes.iter().map(|(r, v)| (r.version, v.len())).collect::<Vec<_>>(), asked = others.len(), "holder list sync");
        let Some(newer) = votes
            .into_iter()
            .filter(|(_, v)| v.len() * 2 > others.len())
            .map(|(r, _)| r)
            .max_by_key(|r| r.version)
        else {
            return Ok(None);
        };
        let saved = newer.clone();
        if !self.blocking(move |s| Ok(save_record(s, &id, &saved)?)).await? {
            return Ok(None);
        }
        tracing::info!(object = %id.to_hex(), from = rec.version, to = newer.version, "adopted a newer holder list");
        Ok(Some(newer))
    }

    /// Removes shards of `id` this node holds but `rec` gives to another provider, once that
    /// provider has proved it holds them (a fresh challenge); forgets the record when nothing
    /// of the object is left here.
    async fn collect_orphans(&self, id: ObjectId, rec: &ManifestRecord, manifest: &Manifest) -> Result<()> {
        let me = self.node.peer_id();
        let held = self.blocking(move |s| Ok(s.held_shards(&id)?)).await?;
        let mut kept = 0;
        for index in held {
            let Some(h) = rec.holders.iter().find(|h| h.index == index) else {
                kept += 1;
                continue;
            };
            let Some(peer) = peer_of(h).filter(|p| *p != me) else {
                kept += 1;
                continue;
            };
            if let Err(why) = challenge(&self.node, manifest, index, peer, addrs_of(h)).await {
                tracing::info!(object = %id.to_hex(), index, %peer, why, "keeping a shard whose new holder does not prove it yet");
                kept += 1;
                continue;
            }
            let freed = self.blocking(move |s| Ok(s.remove_shard(&id, index)?)).await?;
            tracing::info!(object = %id.to_hex(), index, %peer, freed, "removed an orphaned shard: its new holder proved it");
        }
        if kept == 0 && !rec.holders.iter().any(|h| peer_of(h) == Some(me)) {
            self.blocking(move |s| Ok(s.agent_tree(MANIFEST_TREE)?.remove(id.0).map(|_| ())?)).await?;
        }
        Ok(())
    }

    async fn repair(
        &mut self,
        id: ObjectId,
        rec: &ManifestRecord,
        manifest: &Manifest,
        dead: &BTreeSet<u16>,
        live: &BTreeSet<PeerId>,
    ) -> Result<()> {
        let me = self.node.peer_id();
        let secs = self.cfg.lease_secs;
        self.leases.grant(id, me, secs).map_err(|why| anyhow!("own lease: {why}"))?;
        let addr_book: HashMap<PeerId, Vec<Multiaddr>> =
            rec.holders.iter().filter_map(|h| Some((peer_of(h)?, addrs_of(h)))).collect();
        for peer in live.iter().filter(|p| **p != me) {
            let addrs = addr_book.get(peer).cloned().unwrap_or_default();
            match self
                .node
                .request(*peer, addrs.clone(), Request::RepairLease { id: id.0, version: rec.version, secs })
                .await
            {
                Ok(Response::Ok) => {}
                Ok(Response::Refused(why)) if why.contains("version") => {
                    self.adopt_newer(*peer, addrs, &id).await;
                    bail!("{peer} has a newer holder list ({why})");
                }
                other => bail!("{peer} did not grant the repair lease: {other:?}"),
            }
        }
        tracing::info!(object = %id.to_hex(), shards = ?dead, "repairing: lease granted by every live holder");

        // Rebuild the lost shards from k verified ones (ours read locally).
        let live_holders: Vec<Holder> =
            rec.holders.iter().filter(|h| !dead.contains(&h.index)).cloned().collect();
        let bar = indicatif::ProgressBar::hidden();
        let (shards, _, failed) =
            fetch_shards(&self.node, manifest, &live_holders, Some(self.store.clone()), &bar).await?;
        if !failed.is_empty() {
            tracing::debug!(failed = ?failed, "some holders failed during the repair fetch");
        }
        let m = manifest.clone();
        let rebuilt = tokio::task::spawn_blocking(move || -> Result<Vec<Vec<u8>>> {
            let mut data = Vec::with_capacity(m.geometry.size as usize);
            decode_object(&m, &shards, &mut data)?;
            let (again, all) = encode_object(&data, m.geometry)?;
            if again != m {
                bail!("re-coded shards do not match the manifest");
            }
            Ok(all)
        })
        .await??;

        // Where the lost shards go: the saved plan, or a fresh choice.
        let plan = self.plan(id, rec, manifest, dead).await?;
        let anns = self.node.providers().await?;
        let addrs: HashMap<PeerId, Vec<Multiaddr>> =
            anns.iter().map(|a| (a.body.peer_id, a.body.listen_addrs.clone())).collect();
        let encoded = manifest.encode();
        let mut set = JoinSet::new();
        for (index, peer_bytes) in &plan.placements {
            let peer = PeerId::from_bytes(peer_bytes)?;
            let (node, m, a) =
                (self.node.clone(), manifest.clone(), addrs.get(&peer).cloned().unwrap_or_default());
            let req = Request::PutShard {
                manifest: encoded.clone(),
                index: *index,
                data: rebuilt[usize::from(*index)].clone(),
            };
            let index = *index;
            set.spawn(async move {
                let r = match node.request(peer, a.clone(), req).await {
                    Ok(Response::Stored { .. }) => challenge(&node, &m, index, peer, a).await,
                    Ok(other) => Err(format!("answered {other:?}")),
                    Err(e) => Err(e.to_string()),
                };
                (index, peer, r)
            });
        }
        let mut failures = Vec::new();
        while let Some(done) = set.join_next().await {
            let (index, peer, r) = done?;
            if let Err(why) = r {
                failures.push(format!("shard {index} on {peer}: {why}"));
                self.avoid.insert(peer, Instant::now());
            }
        }
        if !failures.is_empty() {
            // A provider that failed is left out of the next plan.
            self.blocking(move |s| Ok(s.agent_tree(PLAN_TREE)?.remove(id.0).map(|_| ())?)).await?;
            bail!("placing rebuilt shards failed: {}", failures.join("; "));
        }

        // Every replacement is verified: publish the next holder list.
        let mut holders = rec.holders.clone();
        for (index, peer_bytes) in &plan.placements {
            let peer = PeerId::from_bytes(peer_bytes)?;
            if let Some(h) = holders.iter_mut().find(|h| h.index == *index) {
                h.peer = peer_bytes.clone();
                h.addrs = addrs
                    .get(&peer)
                    .map(|v| v.iter().take(8).map(|a| a.to_vec()).collect())
                    .unwrap_or_default();
            }
        }
        let next =
            ManifestRecord { manifest: encoded.clone(), version: rec.version + 1, holders: holders.clone() };
        let saved = next.clone();
        self.blocking(move |s| {
            save_record(s, &id, &saved)?;
            s.agent_tree(PLAN_TREE)?.remove(id.0)?;
            Ok(())
        })
        .await?;
        let targets: HashSet<PeerId> = holders.iter().filter_map(peer_of).filter(|p| *p != me).collect();
        let mut set = JoinSet::new();
        for peer in targets {
            let a = addrs.get(&peer).cloned().or_else(|| addr_book.get(&peer).cloned()).unwrap_or_default();
            let (node, req) = (
                self.node.clone(),
                Request::PutManifest {
                    manifest: encoded.clone(),
                    version: next.version,
                    holders: holders.clone(),
                },
            );
            set.spawn(async move { (peer, node.request(peer, a, req).await) });
        }
        while let Some(done) = set.join_next().await {
            if let Ok((peer, r)) = done
                && !matches!(r, Ok(Response::Ok))
            {
                tracing::warn!(%peer, answer = ?r, "holder did not take the new holder list");
            }
        }
        tracing::info!(object = %id.to_hex(), version = next.version, placements = ?plan.describe(), "repair complete: full redundancy restored");
        Ok(())
    }

    /// The saved plan for this repair, or a new one (saved before any upload).
    async fn plan(
        &mut self,
        id: ObjectId,
        rec: &ManifestRecord,
        manifest: &Manifest,
        dead: &BTreeSet<u16>,
    ) -> Result<RepairPlan> {
        let saved = self
            .blocking(move |s| {
                Ok(s.agent_tree(PLAN_TREE)?
                    .get(id.0)?
                    .and_then(|v| postcard::from_bytes::<RepairPlan>(&v).ok()))
            })
            .await?;
        if let Some(p) = saved
            && p.from_version == rec.version
            && p.placements.iter().map(|(i, _)| *i).collect::<BTreeSet<u16>>() == *dead
        {
            tracing::info!(object = %id.to_hex(), "resuming a saved repair plan");
            return Ok(p);
        }
        let anns = self.node.providers().await?;
        let cands: Vec<Candidate> = anns.iter().map(|a| Candidate::from_announcement(&a.body)).collect();
        let mut exclude: HashSet<PeerId> = rec.holders.iter().filter_map(peer_of).collect();
        exclude.insert(self.node.peer_id());
        let shun = Duration::from_secs(self.cfg.grace_secs.max(self.cfg.interval_secs * 10));
        self.avoid.retain(|_, t| t.elapsed() < shun);
        exclude.extend(self.avoid.keys().copied());
        let chosen =
            select(&cands, dead.len(), manifest.geometry.shard_len(), &exclude, &mut rand::thread_rng())
                .context("choosing providers for the rebuilt shards")?;
        let plan = RepairPlan {
            from_version: rec.version,
            placements: dead.iter().copied().zip(chosen.iter().map(|p| p.to_bytes())).collect(),
        };
        let bytes = postcard::to_allocvec(&plan)?;
        self.blocking(move |s| {
            let t = s.agent_tree(PLAN_TREE)?;
            t.insert(id.0, bytes)?;
            t.flush()?;
            Ok(())
        })
        .await?;
        tracing::info!(object = %id.to_hex(), placements = ?plan.describe(), "repair plan saved");
        #[cfg(feature = "fault-injection")]
        Self::stall_after_plan().await;
        Ok(plan)
    }

    /// Fault injection for tests: `BIGFILE_FAULT_REPAIR_STALL_SECS=N` makes a repairer wait `N`
    /// seconds after saving a fresh plan and before any upload, so a test can kill it there.
    #[cfg(feature = "fault-injection")]
    async fn stall_after_plan() {
        if let Some(secs) =
            std::env::var("BIGFILE_FAULT_REPAIR_STALL_SECS").ok().and_then(|v| v.parse::<u64>().ok())
        {
            tracing::warn!(secs, "fault injection: repair stalls after saving its plan");
            tokio::time::sleep(Duration::from_secs(secs)).await;
        }
    }

    /// Takes a newer holder list from `peer` (after it refused a lease for a stale version).
    async fn adopt_newer(&self, peer: PeerId, addrs: Vec<Multiaddr>, id: &ObjectId) {
        if let Ok(Response::Manifest { manifest, version, holders }) =
            self.node.request(peer, addrs, Request::GetManifest { id: id.0 }).await
            && decode_manifest(&manifest).is_ok_and(|m| m.object_id() == *id)
        {
            let rec = ManifestRecord { manifest, version, holders };
            let id = *id;
            let _ = self.blocking(move |s| Ok(save_record(s, &id, &rec)?)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_leader_whatever_the_order() {
        let id = ObjectId([7; 32]);
        let peers: Vec<PeerId> = (0..6).map(|_| PeerId::random()).collect();
        let a: BTreeSet<PeerId> = peers.iter().copied().collect();
        let b: BTreeSet<PeerId> = peers.iter().rev().copied().collect();
        let l = leader(&id, &a).unwrap();
        assert_eq!(Some(l), leader(&id, &b));
        // Removing a non-leader keeps the leader; removing the leader elects another.
        let mut c = a.clone();
        let other = *peers.iter().find(|p| **p != l).unwrap();
        c.remove(&other);
        assert_eq!(leader(&id, &c), Some(l));
        c.remove(&l);
        let l2 = leader(&id, &c).unwrap();
        assert_ne!(l2, l);
        // Different objects spread the work over different leaders.
        let leaders: HashSet<PeerId> = (0u8..40).map(|i| leader(&ObjectId([i; 32]), &a).unwrap()).collect();
        assert!(leaders.len() > 2, "{leaders:?}");
    }
}
