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
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bigfile_storage::ObjectId;
use libp2p::PeerId;
use libp2p::multiaddr::{Multiaddr, Protocol};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::node::StreamLimits;
use super::stream::{READ_STEP, Slice, Slot};

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
        sock: TcpStream,
        permit: tokio::sync::OwnedSemaphorePermit,
        limits: StreamLimits,
    ) -> Result<(), String> {
        let mut token = [0u8; TOKEN_LEN];
        match tokio::time::timeout(TOKEN_WAIT, read_exact(&sock, &mut token)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("reading the token: {e}")),
            Err(_) => return Err("no token in time".into()),
        }
        drop(permit);
        let Some(Ticket { peer, what, len, first, mut rest, slot, .. }) = self.redeem(&token) else {
            return Err("unknown or expired token".into());
        };
        let _slot = slot;
        let t = limits.timeout;
        let mut sent = first.len() as u64;
        timed(t, "writing shard bytes", write_all(&sock, &first)).await?;
        drop(first);
        while sent < len {
            match rest.recv().await {
                Some(Ok(Some(d))) => {
                    sent += d.len() as u64;
                    timed(t, "writing shard bytes", write_all(&sock, &d)).await?;
                }
                Some(Ok(None)) => {
                    return Err(format!(
                        "shard {} of {} removed while being sent to {peer}",
                        what.1,
                        what.0.to_hex()
                    ));
                }
                Some(Err(why)) => return Err(why),
                None => return Err("reader stopped".into()),
            }
        }
        Ok(())
    }
}

async fn timed<T>(limit: Duration, what: &str, f: impl Future<Output = io::Result<T>>) -> Result<T, String> {
    match tokio::time::timeout(limit, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: timed out after {} s", limit.as_secs())),
    }
}

/// The IP a client reaches `addrs`' owner on: the first plain IPv4/IPv6 address given.
pub fn ip_of(addrs: &[Multiaddr]) -> Option<std::net::IpAddr> {
    addrs.iter().find_map(|a| match a.iter().next()? {
        Protocol::Ip4(ip) if !ip.is_unspecified() => Some(ip.into()),
        Protocol::Ip6(ip) if !ip.is_unspecified() => Some(ip.into()),
        _ => None,
    })
}

/// Client side: connects to `at`, presents `token` and reads exactly `len` bytes into `out`
/// (replacing its contents, reusing its allocation), each [`READ_STEP`] bytes under `step`.
/// Nothing is verified here.
pub async fn fetch_into(
    at: SocketAddr,
    token: &[u8; TOKEN_LEN],
    len: usize,
    step: Duration,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let sock = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(at)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(format!("connecting to {at}: {e}")),
        Err(_) => return Err(format!("connecting to {at}: no answer in {} s", CONNECT_TIMEOUT.as_secs())),
    };
    timed(step, "sending the token", write_all(&sock, token)).await?;
    out.clear();
    out.reserve_exact(len);
    while out.len() < len {
        let want = (len - out.len()).min(READ_STEP);
        timed(step, "reading shard bytes", read_into(&sock, out, want)).await?;
    }
    Ok(())
}

/// As [`fetch_into`], into a new buffer.
pub async fn fetch(
    at: SocketAddr,
    token: &[u8; TOKEN_LEN],
    len: usize,
    step: Duration,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    fetch_into(at, token, len, step, &mut out).await?;
    Ok(out)
}

/// Appends exactly `n` bytes from `sock` to `out`, straight into its spare capacity (no
/// zero-filling first).
async fn read_into(sock: &TcpStream, out: &mut Vec<u8>, n: usize) -> io::Result<()> {
    let end = out.len() + n;
    while out.len() < end {
        sock.readable().await?;
        let left = end - out.len();
        let mut room = bytes::BufMut::limit(&mut *out, left);
        match sock.try_read_buf(&mut room) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `write_all` on a tokio `TcpStream` through readiness (no `io-util` needed).
pub async fn write_all(sock: &TcpStream, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        sock.writable().await?;
        match sock.try_write(buf) {
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `read_exact` on a tokio `TcpStream` through readiness.
pub async fn read_exact(sock: &TcpStream, mut buf: &mut [u8]) -> io::Result<()> {
    while !buf.is_empty() {
        sock.readable().await?;
        match sock.try_read(buf) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => buf = &mut buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
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
