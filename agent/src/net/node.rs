//! The libp2p node: a cloneable [`NodeHandle`] and an [`EventLoop`] task that owns the Swarm.
//!
//! Everything else talks to the network through the handle (bounded command channel, answers on
//! oneshot channels). Inbound shard requests leave the loop as [`InboundRequest`]s on a bounded
//! channel for the shard service, which answers on the request's own oneshot; the loop enforces
//! the per-peer concurrency limit, answers `Providers` itself from its table, verifies gossiped
//! announcements, and scores down, disconnects and finally bans peers that misbehave.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, allow_block_list, gossipsub, identify, kad, noise, ping, tcp,
    yamux,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::announce::SignedAvailability;
use super::protocol::{self, Codec, Request, Response};
use super::providers::ProviderTable;

/// Gossipsub topic of availability announcements.
pub const AVAILABILITY_TOPIC: &str = "bigfile/availability/1";
const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/bigfile/kad/1.0.0");
const IDENTIFY_PROTOCOL: &str = "/bigfile/id/1.0.0";
/// Score at or below which a peer is banned.
const BAN_SCORE: i32 = -100;
/// How long a penalized peer keeps its connection, so the answer to its request still goes out.
const DISCONNECT_DELAY: Duration = Duration::from_millis(300);

/// How to build a node.
#[derive(Clone, Debug)]
pub struct NodeOptions {
    /// The libp2p identity.
    pub identity: Keypair,
    /// Addresses to listen on (may be empty for a dial-only client).
    pub listen: Vec<Multiaddr>,
    /// Addresses to advertise besides the listen addresses.
    pub external: Vec<Multiaddr>,
    /// Bootstrap peers (`…/p2p/PEERID`), re-dialled with back-off while disconnected.
    pub bootstrap: Vec<Multiaddr>,
    /// A provider: Kademlia server mode and availability gossip. Clients only dial.
    pub provider: bool,
    /// Largest shard accepted or sent in one message.
    pub max_shard: u64,
    /// Time a request may take.
    pub request_timeout: Duration,
    /// Inbound requests one peer may have in flight.
    pub max_concurrent_per_peer: usize,
    /// Where the bulk shard port listens (None: no bulk port; see [`super::bulk`]).
    pub bulk_listen: Option<std::net::SocketAddr>,
    /// Whether downloads may take a provider's bulk port.
    pub bulk_downloads: bool,
    /// Announcements older than this are dropped.
    pub announcement_max_age: Duration,
    /// Announcements further in the future than this are refused.
    pub max_clock_skew: Duration,
    /// Most providers remembered.
    pub max_providers: usize,
    /// How long a banned peer stays banned.
    pub ban: Duration,
    /// Agent version string for identify.
    pub agent_version: String,
}

/// Why a network call failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The event loop is gone (shutting down).
    #[error("the network node is not running")]
    Stopped,
    /// The request failed on the wire.
    #[error("request to {peer} failed: {why}")]
    Request {
        /// The peer.
        peer: PeerId,
        /// What happened.
        why: String,
    },
    /// A configured address is unusable.
    #[error("{0}")]
    Address(String),
}

/// A shard request from a peer, for the shard service to answer on `reply`.
pub struct InboundRequest {
    /// Who asks.
    pub peer: PeerId,
    /// What it asks.
    pub request: Request,
    /// Where the answer goes (dropping it answers `Busy`).
    pub reply: oneshot::Sender<Response>,
}

/// A snapshot of the node for `/status` and `peers`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NetInfo {
    /// This node's peer id.
    pub peer_id: String,
    /// Addresses it listens on.
    pub listen_addrs: Vec<String>,
    /// Connected peers.
    pub connected: Vec<String>,
    /// Providers with a live announcement.
    pub providers: usize,
    /// Peers currently banned.
    pub banned: Vec<String>,
}

enum Command {
    Request {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        request: Request,
        reply: oneshot::Sender<Result<Response, NetError>>,
    },
    Publish {
        ann: SignedAvailability,
    },
    Providers {
        reply: oneshot::Sender<Vec<SignedAvailability>>,
    },
    Learn {
        from: Option<PeerId>,
        encoded: Vec<Vec<u8>>,
        reply: oneshot::Sender<usize>,
    },
    Info {
        reply: oneshot::Sender<NetInfo>,
    },
    StartProviding {
        key: Vec<u8>,
    },
    FindProviders {
        key: Vec<u8>,
        reply: oneshot::Sender<HashSet<PeerId>>,
    },
    Penalize {
        peer: PeerId,
        points: i32,
        why: String,
    },
    AddAddresses {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        reply: oneshot::Sender<()>,
    },
}

/// Bounds on raw streams (see [`super::stream`]), the same as on requests.
#[derive(Clone, Copy, Debug)]
pub struct StreamLimits {
    /// Largest range one stream may carry.
    pub max_len: u64,
    /// Streams one peer may have open towards this node at once.
    pub per_peer: usize,
    /// Time any single step (a header, a slice of data) may take.
    pub timeout: Duration,
    /// Where this node's bulk shard port listens, if it has one.
    pub bulk_listen: Option<std::net::SocketAddr>,
    /// Whether downloads may take a provider's bulk port.
    pub bulk_downloads: bool,
}

/// The cloneable way into the node.
#[derive(Clone)]
pub struct NodeHandle {
    tx: mpsc::Sender<Command>,
    peer_id: PeerId,
    streams: libp2p_stream::Control,
    limits: StreamLimits,
    outbound: Arc<OutboundLimits>,
    bulk_unreachable: Arc<super::bulk::Unreachable>,
}

/// First wait before asking a peer that answered `Busy` again; doubles up to [`BUSY_BACKOFF_MAX`].
const BUSY_BACKOFF_START: Duration = Duration::from_millis(20);
/// Longest wait between two asks of a busy peer.
const BUSY_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Waits between asks of a peer that answered `Busy` (a request or a shard stream), for as long
/// as one request may take.
pub(super) struct BusyBackoff {
    next: Duration,
    until: Instant,
}

impl BusyBackoff {
    /// Back-off that gives up `limit` from now.
    pub(super) fn new(limit: Duration) -> Self {
        BusyBackoff { next: BUSY_BACKOFF_START, until: Instant::now() + limit }
    }

    /// Sleeps before the next ask (with jitter, so askers spread out); false, without
    /// sleeping, when that would pass the limit.
    pub(super) async fn wait(&mut self) -> bool {
        if Instant::now() + self.next >= self.until {
            return false;
        }
        let jitter = rand::random::<u64>() % (self.next.as_millis() as u64 / 2 + 1);
        tokio::time::sleep(self.next + Duration::from_millis(jitter)).await;
        self.next = (self.next * 2).min(BUSY_BACKOFF_MAX);
        true
    }
}
/// Peers whose outbound limiters are kept before idle ones are dropped.
const OUTBOUND_PEERS_KEPT: usize = 1024;

/// Caps this node's requests in flight to one peer at the per-peer limit peers enforce, so a
/// burst (a repair round checking many objects at once) queues here instead of being answered
/// `Busy` and mistaken for a failing holder.
struct OutboundLimits {
    per_peer: usize,
    peers: Mutex<HashMap<PeerId, Arc<Semaphore>>>,
}

impl OutboundLimits {
    async fn acquire(&self, peer: PeerId) -> Option<OwnedSemaphorePermit> {
        let sem = {
            let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
            if peers.len() >= OUTBOUND_PEERS_KEPT {
                peers.retain(|_, s| Arc::strong_count(s) > 1);
            }
            peers.entry(peer).or_insert_with(|| Arc::new(Semaphore::new(self.per_peer))).clone()
        };
        sem.acquire_owned().await.ok()
    }
}

impl NodeHandle {
    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, NetError> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)
    }

    /// Sends `request` to `peer` (dialling `addrs` if not connected) and waits for the answer.
    ///
    /// At most `max_concurrent_per_peer` requests to one peer are in flight; more wait their
    /// turn. A `Busy` answer (the peer is serving others) is retried with back-off within the
    /// request timeout, except for `PutShard`, whose payload is not kept for a second try: the
    /// caller gets `Busy` and may place the shard elsewhere.
    pub async fn request(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        mut request: Request,
    ) -> Result<Response, NetError> {
        let mut backoff = BusyBackoff::new(self.limits.timeout);
        loop {
            let again = (!matches!(request, Request::PutShard { .. })).then(|| request.clone());
            let permit = self.outbound.acquire(peer).await;
            let addrs = addrs.clone();
            let r = self.call(|reply| Command::Request { peer, addrs, request, reply }).await?;
            drop(permit);
            match (r, again) {
                (Ok(Response::Busy), Some(next)) if backoff.wait().await => request = next,
                (r, _) => return r,
            }
        }
    }

    /// Publishes this node's announcement (and keeps it in the local table).
    pub async fn publish(&self, ann: SignedAvailability) -> Result<(), NetError> {
        self.tx.send(Command::Publish { ann }).await.map_err(|_| NetError::Stopped)
    }

    /// Live announcements known to this node.
    pub async fn providers(&self) -> Result<Vec<SignedAvailability>, NetError> {
        self.call(|reply| Command::Providers { reply }).await
    }

    /// Verifies and records announcements received in a `Providers` answer from `from`;
    /// returns how many were accepted. A bad one scores `from` down.
    pub async fn learn(&self, from: Option<PeerId>, encoded: Vec<Vec<u8>>) -> Result<usize, NetError> {
        self.call(|reply| Command::Learn { from, encoded, reply }).await
    }

    /// A snapshot of peers and providers.
    pub async fn info(&self) -> Result<NetInfo, NetError> {
        self.call(|reply| Command::Info { reply }).await
    }

    /// Publishes a DHT provider record for `key` (an object id).
    pub async fn start_providing(&self, key: Vec<u8>) -> Result<(), NetError> {
        self.tx.send(Command::StartProviding { key }).await.map_err(|_| NetError::Stopped)
    }

    /// Peers the DHT lists as providers of `key`.
    pub async fn find_providers(&self, key: Vec<u8>) -> Result<HashSet<PeerId>, NetError> {
        self.call(|reply| Command::FindProviders { key, reply }).await
    }

    /// The bounds raw streams are held to.
    pub fn stream_limits(&self) -> StreamLimits {
        self.limits
    }

    /// Providers whose bulk port this node could not use lately.
    pub fn bulk_unreachable(&self) -> &super::bulk::Unreachable {
        &self.bulk_unreachable
    }

    /// Opens a raw stream of `protocol` to `peer`, dialling `addrs` (and the addresses of its
    /// announcement) if not connected.
    pub async fn open_stream(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        protocol: StreamProtocol,
    ) -> Result<libp2p::Stream, NetError> {
        self.call(|reply| Command::AddAddresses { peer, addrs, reply }).await?;
        let mut control = self.streams.clone();
        tokio::time::timeout(self.limits.timeout, control.open_stream(peer, protocol))
            .await
            .map_err(|_| NetError::Request { peer, why: "opening a stream timed out".into() })?
            .map_err(|e| NetError::Request { peer, why: format!("opening a stream: {e}") })
    }

    /// Inbound raw streams of `protocol`; one taker per protocol.
    pub fn accept_streams(
        &self,
        protocol: StreamProtocol,
    ) -> Result<libp2p_stream::IncomingStreams, NetError> {
        self.streams
            .clone()
            .accept(protocol)
            .map_err(|e| NetError::Address(format!("accepting streams: {e}")))
    }

    /// Scores `peer` down for misbehaviour and disconnects it; enough points ban it.
    pub async fn penalize(&self, peer: PeerId, points: i32, why: impl Into<String>) {
        let _ = self.tx.send(Command::Penalize { peer, points, why: why.into() }).await;
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    gossipsub: gossipsub::Behaviour,
    shards: request_response::Behaviour<Codec>,
    streams: libp2p_stream::Behaviour,
}

struct Bootstrap {
    peer: PeerId,
    addr: Multiaddr,
    next_try: Instant,
    backoff: Duration,
}

type PendingReply = std::pin::Pin<
    Box<dyn std::future::Future<Output = (PeerId, ResponseChannel<Response>, Response)> + Send>,
>;

/// The task that owns the Swarm; run it with [`EventLoop::run`].
pub struct EventLoop {
    swarm: Swarm<Behaviour>,
    opts: NodeOptions,
    commands: mpsc::Receiver<Command>,
    inbound: mpsc::Sender<InboundRequest>,
    topic: gossipsub::IdentTopic,
    table: ProviderTable,
    requests: HashMap<OutboundRequestId, oneshot::Sender<Result<Response, NetError>>>,
    replies: FuturesUnordered<PendingReply>,
    in_flight: HashMap<PeerId, usize>,
    scores: HashMap<PeerId, i32>,
    banned: HashMap<PeerId, Instant>,
    disconnects: HashMap<PeerId, Instant>,
    provider_queries: HashMap<kad::QueryId, (HashSet<PeerId>, oneshot::Sender<HashSet<PeerId>>)>,
    bootstrap: Vec<Bootstrap>,
}

/// Splits `…/p2p/PEERID` into the peer id and the address without it.
pub fn split_peer(addr: &Multiaddr) -> Option<(PeerId, Multiaddr)> {
    let mut a = addr.clone();
    match a.pop() {
        Some(Protocol::P2p(peer)) => Some((peer, a)),
        _ => None,
    }
}

/// Builds the node: the handle, the inbound-request stream and the loop to spawn.
pub fn build(opts: NodeOptions) -> Result<(NodeHandle, mpsc::Receiver<InboundRequest>, EventLoop), NetError> {
    let key = opts.identity.clone();
    let peer_id = key.public().to_peer_id();
    let gossip_cfg = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(Duration::from_secs(1))
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .max_transmit_size(super::announce::MAX_ANNOUNCEMENT_BYTES + 1024)
        .message_id_fn(|m: &gossipsub::Message| {
            gossipsub::MessageId::from(bigfile_storage::merkle::keccak256(&m.data).to_vec())
        })
        .build()
        .map_err(|e| NetError::Address(format!("gossipsub config: {e}")))?;
    let rr_cfg = request_response::Config::default()
        .with_request_timeout(opts.request_timeout)
        .with_max_concurrent_streams(opts.max_concurrent_per_peer.max(1) * 4);
    let codec = Codec::new(opts.max_shard);
    let agent_version = opts.agent_version.clone();
    let provider = opts.provider;
    let swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
        .map_err(|e| NetError::Address(format!("tcp transport: {e}")))?
        .with_quic()
        .with_behaviour(|key| {
            let mut kad_cfg = kad::Config::new(KAD_PROTOCOL);
            kad_cfg.set_query_timeout(Duration::from_secs(20));
            let store = kad::store::MemoryStore::new(key.public().to_peer_id());
            let mut kad = kad::Behaviour::with_config(key.public().to_peer_id(), store, kad_cfg);
            kad.set_mode(Some(if provider { kad::Mode::Server } else { kad::Mode::Client }));
            let gossipsub =
                gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), gossip_cfg)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
            Ok(Behaviour {
                blocked: Default::default(),
                identify: identify::Behaviour::new(
                    identify::Config::new(IDENTIFY_PROTOCOL.into(), key.public())
                        .with_agent_version(agent_version),
                ),
                ping: ping::Behaviour::default(),
                kad,
                gossipsub,
                shards: request_response::Behaviour::with_codec(
                    codec,
                    [(protocol::PROTOCOL, ProtocolSupport::Full)],
                    rr_cfg,
                ),
                streams: libp2p_stream::Behaviour::new(),
            })
        })
        .map_err(|e| NetError::Address(format!("network behaviour: {e}")))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
        .build();

    let (tx, commands) = mpsc::channel(256);
    let (inbound, inbound_rx) = mpsc::channel(64);
    let mut bootstrap = Vec::new();
    for addr in &opts.bootstrap {
        let (peer, bare) = split_peer(addr)
            .ok_or_else(|| NetError::Address(format!("bootstrap address {addr} must end in /p2p/PEERID")))?;
        if peer != peer_id {
            bootstrap.push(Bootstrap {
                peer,
                addr: bare,
                next_try: Instant::now(),
                backoff: Duration::from_secs(1),
            });
        }
    }
    let topic = gossipsub::IdentTopic::new(AVAILABILITY_TOPIC);
    let table = ProviderTable::new(opts.max_providers, opts.announcement_max_age.as_secs());
    let event_loop = EventLoop {
        swarm,
        opts,
        commands,
        inbound,
        topic,
        table,
        requests: HashMap::new(),
        replies: FuturesUnordered::new(),
        in_flight: HashMap::new(),
        scores: HashMap::new(),
        banned: HashMap::new(),
        disconnects: HashMap::new(),
        provider_queries: HashMap::new(),
        bootstrap,
    };
    let limits = StreamLimits {
        max_len: event_loop.opts.max_shard,
        per_peer: event_loop.opts.max_concurrent_per_peer.max(1),
        timeout: event_loop.opts.request_timeout,
        bulk_listen: event_loop.opts.bulk_listen,
        bulk_downloads: event_loop.opts.bulk_downloads,
    };
    let streams = event_loop.swarm.behaviour().streams.new_control();
    let outbound = Arc::new(OutboundLimits { per_peer: limits.per_peer, peers: Mutex::new(HashMap::new()) });
    let bulk_unreachable = Arc::default();
    Ok((NodeHandle { tx, peer_id, streams, limits, outbound, bulk_unreachable }, inbound_rx, event_loop))
}

fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl EventLoop {
    /// Starts listening; returns the first listen error with the address that failed.
    pub fn listen(&mut self) -> Result<(), NetError> {
        for addr in self.opts.listen.clone() {
            self.swarm
                .listen_on(addr.clone())
                .map_err(|e| NetError::Address(format!("network.listen: cannot listen on {addr}: {e}")))?;
        }
        for addr in self.opts.external.clone() {
            self.swarm.add_external_address(addr);
        }
        if self.opts.provider {
            self.swarm
                .behaviour_mut()
                .gossipsub
                .subscribe(&self.topic)
                .map_err(|e| NetError::Address(format!("subscribing to availability: {e}")))?;
        }
        Ok(())
    }

    /// Runs until `cancel` fires.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut commands_open = true;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                ev = self.swarm.select_next_some() => self.on_swarm(ev),
                cmd = self.commands.recv(), if commands_open => match cmd {
                    Some(c) => self.on_command(c),
                    None => commands_open = false,
                },
                Some((peer, channel, response)) = self.replies.next(), if !self.replies.is_empty() => {
                    self.release(&peer);
                    let _ = self.swarm.behaviour_mut().shards.send_response(channel, response);
                }
                _ = tick.tick() => self.on_tick(),
            }
        }
        tracing::debug!("network event loop stopped");
    }

    fn on_tick(&mut self) {
        self.disconnect_due();
        let now = Instant::now();
        self.table.expire(now_unix());
        let expired: Vec<PeerId> =
            self.banned.iter().filter(|(_, until)| **until <= now).map(|(p, _)| *p).collect();
        for p in expired {
            self.banned.remove(&p);
            self.scores.remove(&p);
            self.swarm.behaviour_mut().blocked.unblock_peer(p);
            tracing::info!(peer = %p, "ban lifted");
        }
        for i in 0..self.bootstrap.len() {
            let (peer, due) = (self.bootstrap[i].peer, self.bootstrap[i].next_try <= now);
            if !due || self.swarm.is_connected(&peer) {
                continue;
            }
            let b = &mut self.bootstrap[i];
            let addr = b.addr.clone().with(Protocol::P2p(peer));
            b.next_try = now + b.backoff;
            b.backoff = (b.backoff * 2).min(Duration::from_secs(60));
            self.swarm.behaviour_mut().kad.add_address(&peer, b.addr.clone());
            if let Err(e) = self.swarm.dial(addr.clone()) {
                tracing::debug!(%addr, error = %e, "bootstrap dial failed");
            }
        }
    }

    fn release(&mut self, peer: &PeerId) {
        if let Some(n) = self.in_flight.get_mut(peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.in_flight.remove(peer);
            }
        }
    }

    /// Scores `peer` down now; the disconnect (and, at the ban score, the block) follows a
    /// moment later so that an answer already on its way (a `Refused`) still reaches the peer.
    fn penalize(&mut self, peer: PeerId, points: i32, why: &str) {
        let score = self.scores.entry(peer).or_insert(0);
        *score -= points;
        let score = *score;
        tracing::warn!(%peer, score, why, "peer misbehaved; disconnecting");
        if score <= BAN_SCORE && !self.banned.contains_key(&peer) {
            self.banned.insert(peer, Instant::now() + self.opts.ban);
            self.swarm.behaviour_mut().kad.remove_peer(&peer);
            self.table.remove(&peer);
            tracing::warn!(%peer, secs = self.opts.ban.as_secs(), "peer banned");
        }
        self.disconnects.entry(peer).or_insert(Instant::now() + DISCONNECT_DELAY);
    }

    /// Carries out the disconnects and blocks that `penalize` scheduled.
    fn disconnect_due(&mut self) {
        let now = Instant::now();
        let due: Vec<PeerId> = self.disconnects.iter().filter(|(_, t)| **t <= now).map(|(p, _)| *p).collect();
        for peer in due {
            self.disconnects.remove(&peer);
            if self.banned.contains_key(&peer) {
                // Blocking closes every connection and refuses new ones.
                self.swarm.behaviour_mut().blocked.block_peer(peer);
            }
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    fn verify(&self, bytes: &[u8]) -> Result<SignedAvailability, String> {
        let ann = SignedAvailability::decode(bytes).map_err(|e| e.to_string())?;
        ann.verify(now_unix(), self.opts.max_clock_skew.as_secs(), self.opts.announcement_max_age.as_secs())
            .map_err(|e| e.to_string())?;
        Ok(ann)
    }

    fn remember(&mut self, ann: SignedAvailability) {
        let peer = ann.body.peer_id;
        if peer == *self.swarm.local_peer_id() {
            self.table.insert(ann, now_unix());
            return;
        }
        for a in &ann.body.listen_addrs {
            if self.opts.provider {
                self.swarm.behaviour_mut().kad.add_address(&peer, a.clone());
            }
        }
        self.table.insert(ann, now_unix());
    }

    /// `addrs` plus the addresses `peer` announced, if its announcement is known.
    fn with_announced(&self, peer: &PeerId, mut addrs: Vec<Multiaddr>) -> Vec<Multiaddr> {
        if let Some(a) = self.table.get(peer) {
            addrs.extend(a.body.listen_addrs.iter().cloned());
        }
        addrs
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Request { peer, addrs, request, reply } => {
                let addrs = self.with_announced(&peer, addrs);
                let id = self.swarm.behaviour_mut().shards.send_request_with_addresses(&peer, request, addrs);
                self.requests.insert(id, reply);
            }
            Command::Publish { ann } => {
                let bytes = ann.encode();
                self.table.insert(ann, now_unix());
                if let Err(e) = self.swarm.behaviour_mut().gossipsub.publish(self.topic.clone(), bytes) {
                    // No subscribed peer yet is normal right after start.
                    tracing::debug!(error = %e, "announcement not published");
                }
            }
            Command::Providers { reply } => {
                let live = self.table.live(now_unix()).into_iter().cloned().collect();
                let _ = reply.send(live);
            }
            Command::Learn { from, encoded, reply } => {
                let mut ok = 0;
                for bytes in encoded {
                    match self.verify(&bytes) {
                        Ok(ann) => {
                            self.remember(ann);
                            ok += 1;
                        }
                        Err(why) => {
                            if let Some(p) = from {
                                self.penalize(p, 50, &format!("relayed a bad announcement: {why}"));
                            }
                        }
                    }
                }
                let _ = reply.send(ok);
            }
            Command::Info { reply } => {
                let _ = reply.send(NetInfo {
                    peer_id: self.swarm.local_peer_id().to_string(),
                    listen_addrs: self.swarm.listeners().map(|a| a.to_string()).collect(),
                    connected: self.swarm.connected_peers().map(|p| p.to_string()).collect(),
                    providers: self.table.live(now_unix()).len(),
                    banned: self.banned.keys().map(|p| p.to_string()).collect(),
                });
            }
            Command::StartProviding { key } => {
                if let Err(e) = self.swarm.behaviour_mut().kad.start_providing(kad::RecordKey::new(&key)) {
                    tracing::warn!(error = %e, "cannot publish a provider record");
                }
            }
            Command::FindProviders { key, reply } => {
                let id = self.swarm.behaviour_mut().kad.get_providers(kad::RecordKey::new(&key));
                self.provider_queries.insert(id, (HashSet::new(), reply));
            }
            Command::Penalize { peer, points, why } => self.penalize(peer, points, &why),
            Command::AddAddresses { peer, addrs, reply } => {
                for a in self.with_announced(&peer, addrs) {
                    self.swarm.add_peer_address(peer, a);
                }
                let _ = reply.send(());
            }
        }
    }

    fn on_swarm(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => tracing::info!(%address, "p2p listening"),
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                if let Some(b) = self.bootstrap.iter_mut().find(|b| b.peer == peer_id) {
                    b.backoff = Duration::from_secs(1);
                    if self.opts.provider {
                        let _ = self.swarm.behaviour_mut().kad.bootstrap();
                    }
                }
                tracing::debug!(peer = %peer_id, "connected");
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                tracing::debug!(peer = %peer_id, "disconnected");
            }
            // Every address of a provider failed: stop offering it to clients and repairers
            // until it announces itself again.
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                error: libp2p::swarm::DialError::Transport(errors),
                ..
            } if self.table.unreachable(&peer) => {
                tracing::info!(%peer, addresses = errors.len(), "provider unreachable: dropped until it announces again");
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) if self.opts.provider && info.protocols.contains(&KAD_PROTOCOL) => {
                for a in info.listen_addrs.into_iter().filter(|a| !is_unspecified(a)) {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, a);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => {
                let verdict = self.verify(&message.data).and_then(|ann| {
                    if message.source != Some(ann.body.peer_id) {
                        Err(format!(
                            "announcement for {} was published by {:?}",
                            ann.body.peer_id,
                            message.source.map(|s| s.to_string())
                        ))
                    } else {
                        Ok(ann)
                    }
                });
                let acceptance = match verdict {
                    Ok(ann) => {
                        self.remember(ann);
                        gossipsub::MessageAcceptance::Accept
                    }
                    Err(why) => {
                        self.penalize(propagation_source, 50, &format!("bad announcement: {why}"));
                        gossipsub::MessageAcceptance::Reject
                    }
                };
                let _ = self.swarm.behaviour_mut().gossipsub.report_message_validation_result(
                    &message_id,
                    &propagation_source,
                    acceptance,
                );
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                id,
                result: kad::QueryResult::GetProviders(res),
                step,
                ..
            })) => {
                if let Some((found, _)) = self.provider_queries.get_mut(&id)
                    && let Ok(kad::GetProvidersOk::FoundProviders { providers, .. }) = res
                {
                    found.extend(providers);
                }
                // Any holder can name all the others (the holder list), so the first providers
                // found are enough: answer at once instead of waiting for unreachable peers.
                let found_some = self.provider_queries.get(&id).is_some_and(|(f, _)| !f.is_empty());
                if (step.last || found_some)
                    && let Some((found, reply)) = self.provider_queries.remove(&id)
                {
                    if let Some(mut q) = self.swarm.behaviour_mut().kad.query_mut(&id) {
                        q.finish();
                    }
                    let _ = reply.send(found);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Shards(ev)) => self.on_shards(ev),
            _ => {}
        }
    }

    fn on_shards(&mut self, ev: request_response::Event<Request, Response>) {
        use request_response::{Event, Message};
        match ev {
            Event::Message { peer, message: Message::Request { request, channel, .. }, .. } => {
                if let Request::Malformed(why) = &request {
                    // No answer: the channel is dropped and the peer scored down.
                    self.penalize(peer, 100, &format!("malformed request: {why}"));
                    return;
                }
                if self.banned.contains_key(&peer) {
                    return;
                }
                if let Request::Providers = request {
                    let live: Vec<Vec<u8>> = self
                        .table
                        .live(now_unix())
                        .into_iter()
                        .take(protocol::MAX_ANNOUNCEMENTS)
                        .map(|a| a.encode())
                        .collect();
                    let _ =
                        self.swarm.behaviour_mut().shards.send_response(channel, Response::Providers(live));
                    return;
                }
                let n = self.in_flight.entry(peer).or_insert(0);
                if *n >= self.opts.max_concurrent_per_peer {
                    let _ = self.swarm.behaviour_mut().shards.send_response(channel, Response::Busy);
                    return;
                }
                let (tx, rx) = oneshot::channel();
                match self.inbound.try_send(InboundRequest { peer, request, reply: tx }) {
                    Ok(()) => {
                        *n += 1;
                        self.replies.push(Box::pin(async move {
                            let res = rx.await.unwrap_or(Response::Busy);
                            (peer, channel, res)
                        }));
                    }
                    Err(_) => {
                        let _ = self.swarm.behaviour_mut().shards.send_response(channel, Response::Busy);
                    }
                }
            }
            Event::Message { message: Message::Response { request_id, response }, .. } => {
                if let Some(tx) = self.requests.remove(&request_id) {
                    let _ = tx.send(Ok(response));
                }
            }
            Event::OutboundFailure { peer, request_id, error, .. } => {
                if let request_response::OutboundFailure::Io(e) = &error
                    && e.kind() == std::io::ErrorKind::InvalidData
                {
                    self.penalize(peer, 100, &format!("malformed response: {e}"));
                }
                if let Some(tx) = self.requests.remove(&request_id) {
                    let _ = tx.send(Err(NetError::Request { peer, why: error.to_string() }));
                }
            }
            Event::InboundFailure { peer, error, .. } => {
                if let request_response::InboundFailure::Io(e) = &error
                    && e.kind() == std::io::ErrorKind::InvalidData
                {
                    self.penalize(peer, 100, &format!("malformed request: {e}"));
                } else {
                    tracing::debug!(%peer, error = %error, "inbound request failed");
                }
            }
            Event::ResponseSent { .. } => {}
        }
    }
}

fn is_unspecified(a: &Multiaddr) -> bool {
    a.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}
