//! The bulk path: shard bytes on a plain TCP connection beside libp2p.
//!
//! Why: on the 2-core machines we measure on, libp2p's encrypted transports carry 0.2-0.35 of
//! what raw loopback TCP does, and any authenticated cipher alone (AES-256-GCM 2.8 GB/s,
//! ChaCha20-Poly1305 2.1 GB/s per core here) caps a transfer near 0.58 of it. Shard bytes do not
//! need the channel's protection: every shard is checked against its Merkle root by whoever
//! downloads it (a tampered transfer is a failed download, as from a bad holder), and
//! confidentiality of object contents is the client's own encryption, since providers read
//! them anyway. So the *control* stays inside libp2p and only the bytes go plain:
//!
//! ```text
//! client → provider   (shard stream)  GetShardBulk { id, index, offset, len }
//! provider → client   (shard stream)  Bulk { len, port, token }     token: 32 random bytes
//! client → provider   (TCP, port)     token
//! provider → client   (TCP)           exactly `len` raw bytes, then close
//! ```
//!
//! The token travels only inside the Noise-encrypted stream, is good for one connection, and
//! expires [`TICKET_TTL`] after it is issued or when the client closes the stream it came on
//! (a client keeps it open while it uses the port). The provider reads the shard (and answers
//! `NotFound`, `Busy` or `Refused`) before issuing a token, and the ticket holds the
//! requester's per-peer stream slot until the bytes are sent or the ticket goes, so bulk
//! transfers count against `network.max_concurrent_per_peer` like streams do. Connections that have not shown
//! a token are limited to [`MAX_UNAUTHENTICATED`] at once and [`TOKEN_WAIT`] each.
//!
//! A client that cannot reach the port (a firewall, NAT) falls back to the libp2p stream and
//! leaves that provider's bulk path alone for [`UNREACHABLE_FOR`]. `network.bulk_listen = "off"`
//! keeps every shard byte inside libp2p, serving and downloading.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bigfile_storage::ObjectId;
use libp2p::PeerId;
use libp2p::multiaddr::{Multiaddr, Protocol};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::node::StreamLimits;
use super::stream::{READ_STEP, Slice, Slot, next_slice, step};

/// Bytes in a bulk token.
pub const TOKEN_LEN: usize = 32;
/// A token must be redeemed this soon after it is issued (a client gives up connecting after
/// [`CONNECT_TIMEOUT`]; an unused ticket holds a stream slot until it expires).
pub const TICKET_TTL: Duration = Duration::from_secs(5);
/// How often expired tickets are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// A connection must present its token this soon after it is accepted.
pub const TOKEN_WAIT: Duration = Duration::from_secs(5);
/// Connections accepted but not yet past their token.
pub const MAX_UNAUTHENTICATED: usize = 64;
/// Tickets outstanding at once (each holds a per-peer slot and up to two read-ahead slices).
pub const MAX_TICKETS: usize = 256;
/// How long a client waits for the bulk port to accept.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a provider whose bulk port could not be used is left out of the bulk path.
pub const UNREACHABLE_FOR: Duration = Duration::from_secs(600);

/// What the provider has already prepared for a token: the slices of the range (read ahead
/// from the store), the stream slot it holds, and when it expires.
pub(super) struct Ticket {
    /// Who was given the token (for logs).
    pub peer: PeerId,
    /// What it is for (for logs).
    pub what: (ObjectId, u16),
    /// Bytes to send.
    pub len: u64,
    /// The first slice, already read.
    pub first: bytes::Bytes,
    /// The rest, as the read-ahead delivers them.
    pub rest: mpsc::Receiver<Slice>,
    /// The per-peer slot, released when the ticket is used up or dropped.
    pub slot: Slot,
    /// When the token stops working.
    pub expires: Instant,
}

/// A provider's bulk listener and its outstanding tickets.
pub struct BulkServer {
    port: u16,
    tickets: Mutex<HashMap<[u8; TOKEN_LEN], Ticket>>,
}

impl BulkServer {
    /// Binds `addr`; returns the server and its listener (run it with [`BulkServer::run`]).
    pub async fn bind(addr: SocketAddr) -> io::Result<(Arc<Self>, TcpListener)> {
        let listener = TcpListener::bind(addr).await?;
        let port = listener.local_addr()?.port();
        Ok((Arc::new(BulkServer { port, tickets: Mutex::new(HashMap::new()) }), listener))
    }

    /// The TCP port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Files `ticket` under a fresh random token; gives the ticket back when too many are
    /// outstanding (the caller then answers on the stream itself).
    pub(super) fn issue(&self, ticket: Ticket) -> Result<[u8; TOKEN_LEN], Box<Ticket>> {
        let mut t = self.tickets.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        t.retain(|_, v| v.expires > now);
        if t.len() >= MAX_TICKETS {
            return Err(Box::new(ticket));
        }
        let token: [u8; TOKEN_LEN] = rand::random();
        t.insert(token, ticket);
        Ok(token)
    }

    fn redeem(&self, token: &[u8; TOKEN_LEN]) -> Option<Ticket> {
        let mut t = self.tickets.lock().unwrap_or_else(|p| p.into_inner());
        t.remove(token).filter(|v| v.expires > Instant::now())
    }

    /// Drops the ticket for `token` if it was not used.
    pub(super) fn revoke(&self, token: &[u8; TOKEN_LEN]) {
        self.tickets.lock().unwrap_or_else(|p| p.into_inner()).remove(token);
    }

    fn sweep(&self) {
        let now = Instant::now();
        self.tickets.lock().unwrap_or_else(|p| p.into_inner()).retain(|_, v| v.expires > now);
    }

    /// Accepts bulk connections until `cancel` fires.
    pub async fn run(
        self: Arc<Self>,
        listener: TcpListener,
        limits: StreamLimits,
        cancel: CancellationToken,
    ) {
        let gate = Arc::new(Semaphore::new(MAX_UNAUTHENTICATED));
        let mut sweep = tokio::time::interval(SWEEP_EVERY);
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            let sock = tokio::select! {
                _ = cancel.cancelled() => break,
                _ = sweep.tick() => { self.sweep(); continue; }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
                r = listener.accept() => match r {
                    Ok((sock, _)) => sock,
                    Err(e) => {
                        tracing::debug!(error = %e, "bulk accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = gate.clone().try_acquire_owned() else { continue };
            let server = self.clone();
            tasks.spawn(async move {
                if let Err(why) = server.answer(sock, permit, limits).await {
                    tracing::debug!(why, "bulk connection ended early");
                }
            });
        }
        tasks.abort_all();
    }

    async fn answer(
        &self,
        mut sock: TcpStream,
        permit: tokio::sync::OwnedSemaphorePermit,
        limits: StreamLimits,
    ) -> Result<(), String> {
        let mut token = [0u8; TOKEN_LEN];
        match tokio::time::timeout(TOKEN_WAIT, sock.read_exact(&mut token)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("reading the token: {e}")),
            Err(_) => return Err("no token in time".into()),
        }
        drop(permit);
        // The slot stays taken until the bytes are sent.
        let Some(Ticket { peer, what, len, first, mut rest, slot: _slot, .. }) = self.redeem(&token) else {
            return Err("unknown or expired token".into());
        };
        let t = limits.timeout;
        let mut sent = first.len() as u64;
        step(t, "writing shard bytes", sock.write_all(&first)).await?;
        drop(first);
        while sent < len {
            let d = next_slice(&mut rest)
                .await
                .map_err(|why| format!("shard {} of {} for {peer}: {why}", what.1, what.0.to_hex()))?;
            sent += d.len() as u64;
            step(t, "writing shard bytes", sock.write_all(&d)).await?;
        }
        Ok(())
    }
}

/// The IP a multiaddr starts with (`/ip4/…` or `/ip6/…`), if it does.
pub fn ip_in(a: &Multiaddr) -> Option<IpAddr> {
    match a.iter().next()? {
        Protocol::Ip4(ip) => Some(ip.into()),
        Protocol::Ip6(ip) => Some(ip.into()),
        _ => None,
    }
}

/// The IP a client reaches `addrs`' owner on: the first plain IPv4/IPv6 address given.
pub fn ip_of(addrs: &[Multiaddr]) -> Option<IpAddr> {
    addrs.iter().filter_map(ip_in).find(|ip| !ip.is_unspecified())
}

/// Client side: connects to `at`, presents `token` and reads exactly `len` bytes into `out`
/// (replacing its contents, reusing its allocation), each [`READ_STEP`] bytes under `limit`.
/// Nothing is verified here.
pub async fn fetch_into(
    at: SocketAddr,
    token: &[u8; TOKEN_LEN],
    len: usize,
    limit: Duration,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let mut sock = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(at)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(format!("connecting to {at}: {e}")),
        Err(_) => return Err(format!("connecting to {at}: no answer in {} s", CONNECT_TIMEOUT.as_secs())),
    };
    step(limit, "sending the token", sock.write_all(token)).await?;
    out.clear();
    out.reserve_exact(len);
    while out.len() < len {
        let want = (len - out.len()).min(READ_STEP);
        step(limit, "reading shard bytes", read_into(&mut sock, out, want)).await?;
    }
    Ok(())
}

/// Appends exactly `n` bytes from `sock` to `out`, straight into its spare capacity (no
/// zero-filling first).
async fn read_into(sock: &mut TcpStream, out: &mut Vec<u8>, n: usize) -> io::Result<()> {
    let end = out.len() + n;
    while out.len() < end {
        let left = end - out.len();
        if sock.read_buf(&mut bytes::BufMut::limit(&mut *out, left)).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(())
}

/// Providers whose bulk port a client could not use, and since when.
#[derive(Default)]
pub struct Unreachable(Mutex<HashMap<PeerId, Instant>>);

impl Unreachable {
    /// Whether the bulk path to `peer` may be tried.
    pub fn usable(&self, peer: &PeerId) -> bool {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match m.get(peer) {
            Some(t) if t.elapsed() < UNREACHABLE_FOR => false,
            Some(_) => {
                m.remove(peer);
                true
            }
            None => true,
        }
    }

    /// Records that the bulk path to `peer` failed.
    pub fn failed(&self, peer: PeerId) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= 4096 {
            m.retain(|_, t| t.elapsed() < UNREACHABLE_FOR);
        }
        m.insert(peer, Instant::now());
    }
}
