//! `/bigfile/shard-stream/1`: shard bytes on a raw libp2p stream, for bulk downloads.
//!
//! A request-response message holds its whole payload in memory on both sides and goes through
//! the request-response machinery for every answer; measured here that caps a shard transfer
//! at about a third of what the same Noise + Yamux connection carries as a plain stream. Bulk
//! shard reads therefore take a stream of their own (everything small stays on
//! `/bigfile/shard/1`):
//!
//! ```text
//! client → provider   u32 BE length + postcard(StreamRequest)     (at most 1 KiB)
//! provider → client   u32 BE length + postcard(StreamHeader)      (at most 4 KiB)
//! provider → client   exactly `len` raw bytes when the header is `Data { len }`, then close
//! ```
//!
//! The provider reads the range from its store in [`SLICE`]-sized pieces on a blocking thread,
//! one slice ahead of the socket, so at most two slices per stream are in memory. The client
//! reads straight into the buffer it returns. Bounds are the node's request bounds
//! ([`StreamLimits`](super::node::StreamLimits)): a range may not exceed `network.max_shard_size`, one peer may hold
//! `network.max_concurrent_per_peer` streams open (more are answered `Busy`), and every step
//! (the request, the header, each slice) must finish within `network.request_timeout_secs`. A
//! peer sending a malformed or oversized request is scored down like on the request protocol.
//! Nothing here verifies data: callers check shards against their roots.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use bigfile_storage::{ObjectId, Store};
use bytes::Bytes;
use futures::{AsyncWriteExt as _, StreamExt as _};
use libp2p::{Multiaddr, PeerId, StreamProtocol};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::bulk::{BulkServer, TICKET_TTL, Ticket};
use super::node::{BusyBackoff, NodeHandle};
use super::protocol::{encode, read_frame, write_frame};

/// The stream protocol's name.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/bigfile/shard-stream/1");
/// Largest request frame.
pub const MAX_REQUEST: u64 = 1024;
/// Largest header frame.
pub const MAX_HEADER: u64 = 4096;
/// Bytes read from the store (and written to the socket) per step.
pub const SLICE: u64 = 4 << 20;
/// Bytes the client reads per step (each under the step timeout).
pub(super) const READ_STEP: usize = 1 << 20;
/// Points taken from a peer that sends a malformed request.
const MALFORMED_PENALTY: i32 = 100;

/// What a client asks for.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StreamRequest {
    /// `len` bytes of shard `index` of object `id` from `offset`.
    GetShard {
        /// Object id.
        id: [u8; 32],
        /// Shard index.
        index: u16,
        /// First byte.
        offset: u64,
        /// Bytes wanted.
        len: u64,
    },
    /// As `GetShard`, the bytes to come on the provider's bulk port if it has one
    /// ([`super::bulk`]); a provider without one answers as for `GetShard`.
    GetShardBulk {
        /// Object id.
        id: [u8; 32],
        /// Shard index.
        index: u16,
        /// First byte.
        offset: u64,
        /// Bytes wanted.
        len: u64,
    },
}

/// The provider's answer, before any data.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StreamHeader {
    /// Exactly `len` bytes follow.
    Data {
        /// Bytes that follow.
        len: u64,
    },
    /// The provider does not hold that shard.
    NotFound,
    /// Too many streams from this peer are open; try again later.
    Busy,
    /// Refused, with the reason.
    Refused(String),
    /// Exactly `len` bytes wait on TCP `port` of the address the client dialled, for the
    /// first connection that sends `token` within [`super::bulk::TICKET_TTL`].
    Bulk {
        /// Bytes that will be sent.
        len: u64,
        /// The provider's bulk port.
        port: u16,
        /// One-time token.
        token: [u8; 32],
    },
}

/// Where a provider's shard bytes come from.
pub trait ShardSource: Send + Sync + 'static {
    /// `len` bytes of shard `index` of `id` from `offset`; `Ok(None)` when the shard is not held.
    /// (`Bytes`, so a source that already holds the bytes hands out views, not copies.)
    fn read_range(&self, id: &ObjectId, index: u16, offset: u64, len: u64) -> Result<Option<Bytes>, String>;
}

impl ShardSource for Store {
    fn read_range(&self, id: &ObjectId, index: u16, offset: u64, len: u64) -> Result<Option<Bytes>, String> {
        if !self.has_shard(id, index).map_err(|e| e.to_string())? {
            return Ok(None);
        }
        self.read_shard(id, index, offset, len).map(|v| Some(Bytes::from(v))).map_err(|e| e.to_string())
    }
}

/// Why a download failed.
#[derive(Debug)]
pub enum DownloadError {
    /// The peer does not hold the shard.
    NotFound,
    /// Any other failure, in words.
    Failed(String),
}

impl std::fmt::Display for DownloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DownloadError::NotFound => f.write_str("does not have it"),
            DownloadError::Failed(why) => f.write_str(why),
        }
    }
}

/// `f` under `limit`, its error or timeout described with `what`.
pub(super) async fn step<T>(
    limit: Duration,
    what: &str,
    f: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: timed out after {} s", limit.as_secs())),
    }
}

/// Downloads `len` bytes of shard `index` of `id` from `offset` off `peer` (dialling `addrs`
/// if not connected), retrying while the peer is busy. The bytes come on the provider's bulk
/// port when it offers one and this node allows it, else on the stream. Nothing is verified here.
pub async fn download(
    node: &NodeHandle,
    peer: PeerId,
    addrs: &[Multiaddr],
    id: &ObjectId,
    index: u16,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, DownloadError> {
    let mut out = Vec::new();
    download_into(node, peer, addrs, id, index, offset, len, true, &mut out).await?;
    Ok(out)
}

/// As [`download`], into `out` (its contents replaced, its allocation reused: a caller
/// fetching shard after shard spares the page faults of a fresh buffer each time); `bulk:
/// false` keeps the bytes on the libp2p stream.
#[allow(clippy::too_many_arguments)]
pub async fn download_into(
    node: &NodeHandle,
    peer: PeerId,
    addrs: &[Multiaddr],
    id: &ObjectId,
    index: u16,
    offset: u64,
    len: u64,
    bulk: bool,
    out: &mut Vec<u8>,
) -> Result<(), DownloadError> {
    let limits = node.stream_limits();
    let size = usize::try_from(len)
        .ok()
        .filter(|_| len <= limits.max_len)
        .ok_or_else(|| DownloadError::Failed(format!("a range of {len} bytes exceeds the limit")))?;
    // Where the bulk port would be: the address we reach the provider on.
    let mut bulk_ip = (bulk && limits.bulk_downloads && node.bulk_unreachable().usable(&peer))
        .then(|| super::bulk::ip_of(addrs))
        .flatten();
    // A busy provider is asked again for up to `network.request_timeout_secs`.
    let mut backoff = BusyBackoff::new(limits.timeout);
    loop {
        let request = match bulk_ip {
            Some(_) => StreamRequest::GetShardBulk { id: id.0, index, offset, len },
            None => StreamRequest::GetShard { id: id.0, index, offset, len },
        };
        let request = encode(&request).map_err(|e| DownloadError::Failed(e.to_string()))?;
        let mut s = node
            .open_stream(peer, addrs.to_vec(), PROTOCOL)
            .await
            .map_err(|e| DownloadError::Failed(e.to_string()))?;
        let t = limits.timeout;
        step(t, "sending the request", write_frame(&mut s, &request, MAX_REQUEST))
            .await
            .map_err(DownloadError::Failed)?;
        let header = step(t, "reading the answer", read_frame(&mut s, MAX_HEADER))
            .await
            .map_err(DownloadError::Failed)?;
        let header: StreamHeader = postcard::from_bytes(&header)
            .map_err(|e| DownloadError::Failed(format!("malformed answer header: {e}")))?;
        match header {
            StreamHeader::Data { len: n } | StreamHeader::Bulk { len: n, .. } if n != len => {
                return Err(DownloadError::Failed(format!("announced {n} bytes for a range of {len}")));
            }
            StreamHeader::Data { .. } => {
                out.clear();
                out.resize(size, 0);
                for piece in out.chunks_mut(READ_STEP) {
                    step(t, "reading shard bytes", futures::AsyncReadExt::read_exact(&mut s, piece))
                        .await
                        .map_err(DownloadError::Failed)?;
                }
                let _ = s.close().await;
                return Ok(());
            }
            StreamHeader::Bulk { port, token, .. } => {
                let Some(ip) = bulk_ip else {
                    return Err(DownloadError::Failed("offered the bulk path unasked".into()));
                };
                // The stream stays open while the port is used: closing it releases the ticket.
                let at = std::net::SocketAddr::new(ip, port);
                let fetched = super::bulk::fetch_into(at, &token, size, t, out).await;
                let _ = s.close().await;
                match fetched {
                    Ok(()) => return Ok(()),
                    Err(why) => {
                        // Try the stream instead, and leave this provider's bulk port alone.
                        tracing::debug!(%peer, why, "bulk path failed; using the stream");
                        node.bulk_unreachable().failed(peer);
                        bulk_ip = None;
                    }
                }
            }
            StreamHeader::Busy if backoff.wait().await => {}
            StreamHeader::Busy => {
                let secs = limits.timeout.as_secs();
                return Err(DownloadError::Failed(format!("busy for {secs} s, gave up")));
            }
            StreamHeader::NotFound => return Err(DownloadError::NotFound),
            StreamHeader::Refused(why) => return Err(DownloadError::Failed(why)),
        }
    }
}

/// Open streams per peer, released when a stream's handler ends.
#[derive(Clone, Default)]
struct Open(Arc<Mutex<HashMap<PeerId, usize>>>);

pub(super) struct Slot(Open, PeerId);

impl Open {
    fn take(&self, peer: PeerId, limit: usize) -> Option<Slot> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(peer).or_default();
        (*n < limit).then(|| {
            *n += 1;
            Slot(self.clone(), peer)
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut m = (self.0).0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.1);
            }
        }
    }
}

/// Answers shard streams from `source` until `cancel` fires.
pub async fn serve(source: Arc<dyn ShardSource>, node: NodeHandle, cancel: CancellationToken) -> Result<()> {
    let mut incoming = node.accept_streams(PROTOCOL)?;
    let open = Open::default();
    let mut tasks = tokio::task::JoinSet::new();
    let limits = node.stream_limits();
    let bulk = match limits.bulk_listen {
        None => None,
        Some(at) => match BulkServer::bind(at).await {
            Ok((server, listener)) => {
                tracing::info!(port = server.port(), "bulk shard port listening");
                tasks.spawn(server.clone().run(listener, limits, cancel.child_token()));
                Some(server)
            }
            Err(e) => {
                tracing::warn!(%at, error = %e, "cannot listen for bulk shard transfers; shards go on libp2p streams only");
                None
            }
        },
    };
    loop {
        let (peer, stream) = tokio::select! {
            _ = cancel.cancelled() => break,
            Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                if let Err(e) = done { tracing::warn!(error = %e, "a shard stream handler failed"); }
                continue;
            }
            next = incoming.next() => match next { Some(s) => s, None => break },
        };
        let slot = open.take(peer, limits.per_peer);
        let (source, node, bulk) = (source.clone(), node.clone(), bulk.clone());
        tasks.spawn(async move {
            if let Err(why) = answer(source, &node, bulk, peer, stream, slot).await {
                tracing::debug!(%peer, why, "shard stream ended early");
            }
        });
    }
    tasks.abort_all();
    Ok(())
}

async fn answer(
    source: Arc<dyn ShardSource>,
    node: &NodeHandle,
    bulk: Option<Arc<BulkServer>>,
    peer: PeerId,
    mut s: libp2p::Stream,
    slot: Option<Slot>,
) -> Result<(), String> {
    let limits = node.stream_limits();
    let t = limits.timeout;
    let request = match tokio::time::timeout(t, read_frame(&mut s, MAX_REQUEST)).await {
        Err(_) => return Err("no request in time".into()),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
            node.penalize(peer, MALFORMED_PENALTY, format!("oversized shard stream request: {e}")).await;
            return Err(e.to_string());
        }
        Ok(Err(e)) => return Err(e.to_string()),
        Ok(Ok(r)) => r,
    };
    let (id, index, offset, len, wants_bulk) = match postcard::from_bytes(&request) {
        Ok(StreamRequest::GetShard { id, index, offset, len }) => (id, index, offset, len, false),
        Ok(StreamRequest::GetShardBulk { id, index, offset, len }) => (id, index, offset, len, true),
        Err(_) => {
            node.penalize(peer, MALFORMED_PENALTY, "malformed shard stream request").await;
            return Err("malformed request".into());
        }
    };
    let Some(slot) = slot else {
        return finish(&mut s, t, StreamHeader::Busy).await;
    };
    if len > limits.max_len {
        let why = format!("range of {len} bytes exceeds the limit of {}", limits.max_len);
        return finish(&mut s, t, StreamHeader::Refused(why)).await;
    }
    let id = ObjectId(id);
    // The first slice decides the header: a missing shard or a bad range is an answer, not a
    // cut stream.
    let mut slices = read_ahead(source, id, index, offset, len);
    let first = match slices.recv().await {
        Some(Ok(Some(d))) => d,
        Some(Ok(None)) => return finish(&mut s, t, StreamHeader::NotFound).await,
        Some(Err(why)) => return finish(&mut s, t, StreamHeader::Refused(why)).await,
        None => return finish(&mut s, t, StreamHeader::Refused("internal error".into())).await,
    };
    let (first, slices, _slot) = match bulk.filter(|_| wants_bulk) {
        None => (first, slices, slot),
        Some(server) => {
            let expires = Instant::now() + TICKET_TTL;
            let ticket = Ticket { peer, what: (id, index), len, first, rest: slices, slot, expires };
            match server.issue(ticket) {
                Ok(token) => {
                    // The client keeps the stream open until it is done with the port (or gave
                    // up on it); an unused ticket goes with the stream, or at expiry, and the
                    // slot with it.
                    let told =
                        finish(&mut s, t, StreamHeader::Bulk { len, port: server.port(), token }).await;
                    if told.is_ok() {
                        let mut b = [0u8; 1];
                        let _ = tokio::time::timeout(TICKET_TTL, futures::AsyncReadExt::read(&mut s, &mut b))
                            .await;
                    }
                    server.revoke(&token);
                    return told;
                }
                // Too many outstanding: the bytes go on this stream after all.
                Err(ticket) => {
                    let Ticket { first, rest, slot, .. } = *ticket;
                    (first, rest, slot)
                }
            }
        }
    };
    let mut slices = slices;
    write_header(&mut s, t, StreamHeader::Data { len }).await?;
    let mut sent = first.len() as u64;
    step(t, "writing shard bytes", s.write_all(&first)).await?;
    drop(first);
    while sent < len {
        let d = next_slice(&mut slices).await?;
        sent += d.len() as u64;
        step(t, "writing shard bytes", s.write_all(&d)).await?;
    }
    step(t, "closing", s.close()).await
}

/// The next slice of a range being sent. A shard damaged or removed mid-way is an error: the
/// sender cuts the connection and the client sees a short read.
pub(super) async fn next_slice(slices: &mut mpsc::Receiver<Slice>) -> Result<Bytes, String> {
    match slices.recv().await {
        Some(Ok(Some(d))) => Ok(d),
        Some(Ok(None)) => Err("shard removed while being read".into()),
        Some(Err(why)) => Err(why),
        None => Err("reader stopped".into()),
    }
}

async fn write_header(s: &mut libp2p::Stream, t: Duration, header: StreamHeader) -> Result<(), String> {
    let bytes = encode(&header).map_err(|e| e.to_string())?;
    step(t, "writing the header", write_frame(s, &bytes, MAX_HEADER)).await
}

/// Writes a header that ends the answer, and closes.
async fn finish(s: &mut libp2p::Stream, t: Duration, header: StreamHeader) -> Result<(), String> {
    write_header(s, t, header).await?;
    step(t, "closing", s.close()).await
}

pub(super) type Slice = Result<Option<Bytes>, String>;

/// Reads the range slice by slice on a blocking thread, one slice ahead of the consumer; stops
/// at the first error or when the consumer goes away.
fn read_ahead(
    source: Arc<dyn ShardSource>,
    id: ObjectId,
    index: u16,
    offset: u64,
    len: u64,
) -> mpsc::Receiver<Slice> {
    let (tx, rx) = mpsc::channel(1);
    tokio::task::spawn_blocking(move || {
        let mut at = 0u64;
        // An empty range is still one read, so a missing shard is reported.
        loop {
            let n = SLICE.min(len - at);
            let slice = source.read_range(&id, index, offset + at, n);
            let stop = !matches!(slice, Ok(Some(_)));
            if tx.blocking_send(slice).is_err() || stop {
                return;
            }
            at += n;
            if at >= len {
                return;
            }
        }
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::node::{self, NodeOptions};
    use libp2p::identity::Keypair;

    /// A shard in memory; reads wait while `gate` is closed.
    struct Source {
        id: ObjectId,
        data: Vec<u8>,
        gate: Arc<std::sync::RwLock<()>>,
    }

    impl ShardSource for Source {
        fn read_range(
            &self,
            id: &ObjectId,
            index: u16,
            offset: u64,
            len: u64,
        ) -> Result<Option<Bytes>, String> {
            let _open = self.gate.read().map_err(|e| e.to_string())?;
            if *id != self.id || index != 3 {
                return Ok(None);
            }
            let (at, end) = (offset as usize, (offset + len) as usize);
            self.data
                .get(at..end)
                .map(|r| Some(Bytes::copy_from_slice(r)))
                .ok_or_else(|| format!("{at}..{end} is out of range"))
        }
    }

    async fn start(provider: bool, bulk: bool, cancel: &CancellationToken) -> (NodeHandle, Vec<Multiaddr>) {
        let opts = NodeOptions {
            identity: Keypair::generate_ed25519(),
            listen: if provider { vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()] } else { vec![] },
            external: vec![],
            bootstrap: vec![],
            provider,
            max_shard: 16 << 20,
            request_timeout: Duration::from_secs(20),
            max_concurrent_per_peer: 1,
            bulk_listen: bulk.then(|| "127.0.0.1:0".parse().unwrap()),
            bulk_downloads: true,
            announcement_max_age: Duration::from_secs(60),
            max_clock_skew: Duration::from_secs(60),
            max_providers: 16,
            ban: Duration::from_secs(60),
            agent_version: "test".into(),
        };
        let (handle, _inbound, mut event_loop) = node::build(opts).unwrap();
        event_loop.listen().unwrap();
        tokio::spawn(event_loop.run(cancel.child_token()));
        let mut addrs = Vec::new();
        for _ in 0..500 {
            addrs = handle.info().await.unwrap().listen_addrs.iter().filter_map(|a| a.parse().ok()).collect();
            if !provider || !addrs.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (handle, addrs)
    }

    /// A serving provider (with a bulk port or not) and a client, the shard in memory.
    struct Served {
        server: NodeHandle,
        client: NodeHandle,
        addrs: Vec<Multiaddr>,
        id: ObjectId,
        data: Vec<u8>,
        gate: Arc<std::sync::RwLock<()>>,
    }

    async fn served(bulk: bool, len: u64, cancel: &CancellationToken) -> Served {
        let (server, addrs) = start(true, bulk, cancel).await;
        let (client, _) = start(false, bulk, cancel).await;
        let id = ObjectId([7; 32]);
        let data = bigfile_storage::bench::pseudo_random(len as usize, len);
        let gate = Arc::new(std::sync::RwLock::new(()));
        let source = Arc::new(Source { id, data: data.clone(), gate: gate.clone() });
        tokio::spawn(serve(source, server.clone(), cancel.child_token()));
        Served { server, client, addrs, id, data, gate }
    }

    /// Sends `request` bytes raw on a new stream and returns the decoded header.
    async fn raw(
        client: &NodeHandle,
        server: &NodeHandle,
        addrs: &[Multiaddr],
        request: &[u8],
    ) -> StreamHeader {
        let mut s = client.open_stream(server.peer_id(), addrs.to_vec(), PROTOCOL).await.unwrap();
        write_frame(&mut s, request, MAX_REQUEST).await.unwrap();
        postcard::from_bytes(&read_frame(&mut s, MAX_HEADER).await.unwrap()).unwrap()
    }

    // The gate is taken only by the source's blocking reader threads, never by a task.
    #[allow(clippy::await_holding_lock)]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ranges_arrive_whole_and_limits_hold() {
        let cancel = CancellationToken::new();
        let _stop = cancel.clone().drop_guard();
        // Three slices and a bit, so the read-ahead and a short last slice are exercised.
        let Served { server, client, addrs, id, data, gate } = served(false, 3 * SLICE + 4321, &cancel).await;
        let peer = server.peer_id();

        let got = download(&client, peer, &addrs, &id, 3, 0, data.len() as u64).await.unwrap();
        assert!(got == data, "whole shard differs");
        let got = download(&client, peer, &addrs, &id, 3, 1000, SLICE + 1).await.unwrap();
        assert!(got[..] == data[1000..1000 + SLICE as usize + 1], "range differs");
        assert!(download(&client, peer, &addrs, &id, 3, 5, 0).await.unwrap().is_empty());
        assert!(matches!(download(&client, peer, &addrs, &id, 2, 0, 10).await, Err(DownloadError::NotFound)));
        let past = download(&client, peer, &addrs, &id, 3, data.len() as u64 - 1, 2).await.unwrap_err();
        assert!(past.to_string().contains("out of range"), "{past}");
        // The client will not ask for more than the limit, and the server refuses it.
        assert!(download(&client, peer, &addrs, &id, 3, 0, (16 << 20) + 1).await.is_err());
        let big =
            encode(&StreamRequest::GetShard { id: id.0, index: 3, offset: 0, len: (16 << 20) + 1 }).unwrap();
        assert!(
            matches!(raw(&client, &server, &addrs, &big).await, StreamHeader::Refused(w) if w.contains("exceeds"))
        );

        // One stream per peer: while one read is held up, another stream is told Busy; the held
        // download still completes, and a waiting download goes through once it is done.
        let held = gate.write().unwrap();
        let first = tokio::spawn({
            let (client, addrs) = (client.clone(), addrs.clone());
            async move { download(&client, peer, &addrs, &id, 3, 0, 100).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let small = encode(&StreamRequest::GetShard { id: id.0, index: 3, offset: 0, len: 10 }).unwrap();
        assert_eq!(raw(&client, &server, &addrs, &small).await, StreamHeader::Busy);
        let second = tokio::spawn({
            let (client, addrs) = (client.clone(), addrs.clone());
            async move { download(&client, peer, &addrs, &id, 3, 10, 10).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(held);
        assert!(first.await.unwrap().unwrap() == data[..100]);
        assert!(second.await.unwrap().unwrap() == data[10..20]);

        // A malformed request costs the sender its standing: it is banned.
        let mut s = client.open_stream(peer, addrs.clone(), PROTOCOL).await.unwrap();
        write_frame(&mut s, b"\xff\xff\xff garbage", MAX_REQUEST).await.unwrap();
        let mut banned = false;
        for _ in 0..100 {
            banned = server.info().await.unwrap().banned.contains(&client.peer_id().to_string());
            if banned {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(banned, "a malformed stream request went unpunished");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bulk_port_carries_ranges_once_per_token_and_falls_back() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let cancel = CancellationToken::new();
        let _stop = cancel.clone().drop_guard();
        let Served { server, client, addrs, id, data, .. } = served(true, 2 * SLICE + 999, &cancel).await;
        let peer = server.peer_id();

        // Whole shard and a range through the bulk port.
        let got = download(&client, peer, &addrs, &id, 3, 0, data.len() as u64).await.unwrap();
        assert!(got == data, "whole shard differs");
        let got = download(&client, peer, &addrs, &id, 3, 77, SLICE + 5).await.unwrap();
        assert!(got[..] == data[77..77 + SLICE as usize + 5], "range differs");
        assert!(client.bulk_unreachable().usable(&peer), "the bulk path failed");
        assert!(matches!(download(&client, peer, &addrs, &id, 2, 0, 10).await, Err(DownloadError::NotFound)));

        // By hand: the provider offers the port; the token works once, a made-up one never.
        let ask = encode(&StreamRequest::GetShardBulk { id: id.0, index: 3, offset: 10, len: 1000 }).unwrap();
        let mut held = client.open_stream(peer, addrs.clone(), PROTOCOL).await.unwrap();
        write_frame(&mut held, &ask, MAX_REQUEST).await.unwrap();
        let offer = postcard::from_bytes(&read_frame(&mut held, MAX_HEADER).await.unwrap()).unwrap();
        let StreamHeader::Bulk { len: 1000, port, token } = offer else { panic!("no bulk offer: {offer:?}") };
        // The ticket holds this peer's only slot until it is used.
        assert_eq!(raw(&client, &server, &addrs, &ask).await, StreamHeader::Busy);
        let at = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut wrong = tokio::net::TcpStream::connect(at).await.unwrap();
        wrong.write_all(&[0u8; 32]).await.unwrap();
        let mut b = [0u8; 1];
        assert!(wrong.read_exact(&mut b).await.is_err(), "a made-up token got bytes");
        let mut got = Vec::new();
        super::super::bulk::fetch_into(at, &token, 1000, Duration::from_secs(5), &mut got).await.unwrap();
        assert!(got[..] == data[10..1010]);
        let mut again = tokio::net::TcpStream::connect(at).await.unwrap();
        again.write_all(&token).await.unwrap();
        assert!(again.read_exact(&mut b).await.is_err(), "a token worked twice");
        // Used up, the ticket gave the slot back (its stream is still open).
        let mut second = client.open_stream(peer, addrs.clone(), PROTOCOL).await.unwrap();
        write_frame(&mut second, &ask, MAX_REQUEST).await.unwrap();
        let offer = postcard::from_bytes(&read_frame(&mut second, MAX_HEADER).await.unwrap()).unwrap();
        let StreamHeader::Bulk { token, .. } = offer else { panic!("slot not given back: {offer:?}") };
        drop(held);
        // A client that closes the stream without using the port gives its ticket up.
        drop(second);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut late = tokio::net::TcpStream::connect(at).await.unwrap();
        late.write_all(&token).await.unwrap();
        assert!(late.read_exact(&mut b).await.is_err(), "a ticket outlived its stream");

        // A provider whose bulk port cannot be reached is still read, over the stream, and
        // left off the bulk path afterwards. (The ticket issued above goes with its stream.)
        let elsewhere: Vec<Multiaddr> = vec!["/ip4/127.0.0.2/tcp/9".parse().unwrap()];
        let got = download(&client, peer, &elsewhere, &id, 3, 5, 5000).await.unwrap();
        assert!(got[..] == data[5..5005]);
        assert!(!client.bulk_unreachable().usable(&peer), "the failed bulk path was not remembered");
        // And with bulk off the bytes come on the stream.
        let mut got = vec![1; 7];
        download_into(&client, peer, &addrs, &id, 3, 0, 100, false, &mut got).await.unwrap();
        assert!(got[..] == data[..100]);
    }
}
