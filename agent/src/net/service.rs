//! The provider's side of the shard protocol: answers peers' requests from the local store, and
//! keeps each object's manifest record (holder list) that clients and repairers publish.
//!
//! Store work is blocking (sled, hashing) and runs on the blocking pool. A peer that sends a shard
//! that does not match its declared root, or a malformed manifest, is scored down and nothing it
//! sent is kept.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bigfile_storage::{Manifest, ObjectId, Store, StoreError};
use libp2p::PeerId;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::node::{InboundRequest, NodeHandle};
use super::protocol::{Holder, Request, Response};

/// Name of the agent tree holding manifest records.
pub const MANIFEST_TREE: &str = "manifests";

/// An object's manifest with the list of who holds which shard.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ManifestRecord {
    /// Canonical manifest bytes.
    pub manifest: Vec<u8>,
    /// Version; repairs bump it and the higher wins.
    pub version: u64,
    /// Holders, one per shard.
    pub holders: Vec<Holder>,
}

impl ManifestRecord {
    /// Decodes a stored record (never panics).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        postcard::from_bytes(bytes).ok()
    }

    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }
}

/// Reads the manifest record of `id`, if any.
pub fn load_record(store: &Store, id: &ObjectId) -> Result<Option<ManifestRecord>, StoreError> {
    let tree = store.agent_tree(MANIFEST_TREE)?;
    Ok(tree.get(id.0).map_err(StoreError::Db)?.and_then(|v| ManifestRecord::decode(&v)))
}

/// Stores `rec` for `id` unless a record with a version at least as high is there; returns
/// whether it was stored. A stored record is on disk when this returns: a holder answers `Ok`
/// to `PutManifest` only after this, and one killed a moment later still knows the object.
pub fn save_record(store: &Store, id: &ObjectId, rec: &ManifestRecord) -> Result<bool, StoreError> {
    let tree = store.agent_tree(MANIFEST_TREE)?;
    let db = StoreError::Db;
    loop {
        let old = tree.get(id.0).map_err(db)?;
        if let Some(o) = old.as_ref().and_then(|v| ManifestRecord::decode(v))
            && o.version >= rec.version
            && o != *rec
        {
            return Ok(false);
        }
        match tree.compare_and_swap(id.0, old, Some(rec.encode())).map_err(db)? {
            Ok(()) => {
                tree.flush().map_err(db)?;
                return Ok(true);
            }
            Err(_) => continue,
        }
    }
}

/// Repair leases this node has granted: object → (grantee, expiry).
#[derive(Default)]
pub struct Leases(Mutex<HashMap<ObjectId, (PeerId, Instant)>>);

impl Leases {
    /// Grants `peer` the lease on `id` for `secs` unless another peer holds an unexpired one.
    pub fn grant(&self, id: ObjectId, peer: PeerId, secs: u32) -> Result<(), String> {
        let mut map = self.0.lock().map_err(|_| "lease table poisoned".to_string())?;
        let now = Instant::now();
        map.retain(|_, (_, until)| *until > now);
        if let Some((holder, until)) = map.get(&id)
            && *holder != peer
        {
            return Err(format!("leased to {holder} for {} s more", until.duration_since(now).as_secs()));
        }
        map.insert(id, (peer, now + Duration::from_secs(u64::from(secs.min(3600)))));
        Ok(())
    }
}

/// Answers inbound requests until cancelled.
pub async fn serve(
    store: Arc<Store>,
    node: NodeHandle,
    inbound: mpsc::Receiver<InboundRequest>,
    max_shard: u64,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    serve_with_leases(store, node, inbound, max_shard, Arc::new(Leases::default()), cancel).await
}

/// As [`serve`], sharing the lease table with this node's own repairer.
pub async fn serve_with_leases(
    store: Arc<Store>,
    node: NodeHandle,
    mut inbound: mpsc::Receiver<InboundRequest>,
    max_shard: u64,
    leases: Arc<Leases>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    // Bulk shard reads come on their own stream protocol, answered from the same store.
    let stop_streams = cancel.child_token();
    let streams = tokio::spawn(super::stream::serve(store.clone(), node.clone(), stop_streams.clone()));
    let _stop_on_drop = stop_streams.clone().drop_guard();
    loop {
        let req = tokio::select! {
            _ = cancel.cancelled() => break,
            r = inbound.recv() => match r { Some(r) => r, None => break },
        };
        let (store, node, leases) = (store.clone(), node.clone(), leases.clone());
        tokio::spawn(async move {
            let InboundRequest { peer, request, reply } = req;
            let kind = request.kind();
            let response = handle(&store, &node, &leases, peer, request, max_shard).await;
            if let Response::Refused(why) = &response {
                tracing::info!(%peer, kind, why, "request refused");
            }
            let _ = reply.send(response);
        });
    }
    stop_streams.cancel();
    streams.await?
}

/// Decodes a manifest, naming what is wrong.
pub fn decode_manifest(bytes: &[u8]) -> Result<Manifest, String> {
    let m = Manifest::decode(bytes).map_err(|e| format!("bad manifest: {e}"))?;
    m.geometry.validate().map_err(|e| format!("bad manifest: {e}"))?;
    Ok(m)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

async fn handle(
    store: &Arc<Store>,
    node: &NodeHandle,
    leases: &Leases,
    peer: PeerId,
    request: Request,
    max_shard: u64,
) -> Response {
    let s = store.clone();
    match request {
        // Answered by the event loop itself.
        Request::Providers | Request::Malformed(_) => Response::Refused("not served here".into()),
        Request::PutShard { manifest, index, data } => {
            let m = match decode_manifest(&manifest) {
                Ok(m) => m,
                Err(why) => {
                    node.penalize(peer, 50, why.clone()).await;
                    return Response::Refused(why);
                }
            };
            if data.len() as u64 > max_shard {
                return Response::Refused(format!(
                    "shard of {} bytes exceeds the limit of {max_shard}",
                    data.len()
                ));
            }
            let id = m.object_id();
            let r = blocking(move || s.put_shard(&m, index, &data)).await;
            match r {
                Some(Ok(rep)) => {
                    node.start_providing(id.0.to_vec()).await.ok();
                    tracing::info!(%peer, object = %id.to_hex(), index, dedup = rep.deduplicated, "shard stored");
                    Response::Stored { deduplicated: rep.deduplicated }
                }
                Some(Err(e @ StoreError::ShardRootMismatch { .. })) => {
                    node.penalize(peer, 50, e.to_string()).await;
                    Response::Refused(e.to_string())
                }
                Some(Err(e)) => Response::Refused(e.to_string()),
                None => Response::Refused("internal error".into()),
            }
        }
        Request::PutManifest { manifest, version, holders } => {
            let m = match decode_manifest(&manifest) {
                Ok(m) => m,
                Err(why) => {
                    node.penalize(peer, 50, why.clone()).await;
                    return Response::Refused(why);
                }
            };
            let id = m.object_id();
            if holders.iter().any(|h| {
                usize::from(h.index) >= m.geometry.total_shards() || PeerId::from_bytes(&h.peer).is_err()
            }) {
                node.penalize(peer, 50, "holder list names a bad shard index or peer id").await;
                return Response::Refused("holder list names a bad shard index or peer id".into());
            }
            let rec = ManifestRecord { manifest, version, holders };
            let r = blocking(move || -> Result<bool, StoreError> {
                // Only objects this node holds a shard of get a record: nobody can fill the
                // tree with records for objects we have nothing to do with.
                if s.held_shards(&id)?.is_empty() && !s.contains(&id)? {
                    return Err(StoreError::NotFound(id));
                }
                save_record(&s, &id, &rec)
            })
            .await;
            match r {
                Some(Ok(_)) => Response::Ok,
                Some(Err(StoreError::NotFound(_))) => {
                    Response::Refused("no shard of this object is held here".into())
                }
                Some(Err(e)) => Response::Refused(e.to_string()),
                None => Response::Refused("internal error".into()),
            }
        }
        Request::GetManifest { id } => {
            let id = ObjectId(id);
            let r = blocking(move || -> Result<Option<ManifestRecord>, StoreError> {
                if let Some(rec) = load_record(&s, &id)? {
                    return Ok(Some(rec));
                }
                match s.manifest(&id) {
                    Ok(m) => Ok(Some(ManifestRecord { manifest: m.encode(), version: 0, holders: vec![] })),
                    Err(StoreError::NotFound(_)) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .await;
            match r {
                Some(Ok(Some(rec))) => {
                    Response::Manifest { manifest: rec.manifest, version: rec.version, holders: rec.holders }
                }
                Some(Ok(None)) => Response::NotFound,
                Some(Err(e)) => Response::Refused(e.to_string()),
                None => Response::Refused("internal error".into()),
            }
        }
        Request::GetShard { id, index, offset, len } => {
            if len > max_shard {
                return Response::Refused(format!("range of {len} bytes exceeds the limit of {max_shard}"));
            }
            let id = ObjectId(id);
            let r = blocking(move || -> Result<Option<Vec<u8>>, StoreError> {
                if !s.has_shard(&id, index)? {
                    return Ok(None);
                }
                s.read_shard(&id, index, offset, len).map(Some)
            })
            .await;
            match r {
                Some(Ok(Some(d))) => Response::Data(d),
                Some(Ok(None)) => Response::NotFound,
                Some(Err(e)) => Response::Refused(e.to_string()),
                None => Response::Refused("internal error".into()),
            }
        }
        Request::HasShard { id, index } => {
            let id = ObjectId(id);
            match blocking(move || s.has_shard(&id, index)).await {
                Some(Ok(h)) => Response::Has(h),
                Some(Err(e)) => Response::Refused(e.to_string()),
                None => Response::Refused("internal error".into()),
            }
        }
        Request::RepairLease { id, version, secs } => {
            let id = ObjectId(id);
            match blocking(move || load_record(&s, &id)).await {
                Some(Ok(Some(rec))) if rec.version > version => {
                    Response::Refused(format!("holder list is at version {}, not {version}", rec.version))
                }
                Some(Ok(Some(_))) => match leases.grant(id, peer, secs) {
                    Ok(()) => Response::Ok,
                    Err(why) => Response::Refused(why),
                },
                Some(Ok(None)) => Response::NotFound,
                Some(Err(e)) => Response::Refused(e.to_string()),
                None => Response::Refused("internal error".into()),
            }
        }
        Request::Challenge { id, index, segment } => {
            let id = ObjectId(id);
            let r = blocking(move || -> Result<Option<bigfile_storage::merkle::SegmentProof>, StoreError> {
                if !s.has_shard(&id, index)? {
                    return Ok(None);
                }
                s.prove_segment(&id, index, segment).map(Some)
            })
            .await;
            match r {
                Some(Ok(Some(p))) => Response::Proof { segment: p.segment, siblings: p.siblings },
                Some(Ok(None)) => Response::NotFound,
                Some(Err(e)) => Response::Refused(e.to_string()),
                None => Response::Refused("internal error".into()),
            }
        }
    }
}
