//! A hostile peer for the e2e tests: a bare libp2p node (TCP and QUIC) in the test process that
//! speaks the agent's protocols (`/bigfile/shard/1`, availability gossip, identify) but sends
//! whatever bytes a test asks for.
//!
//! Its shard codec writes a request's bytes verbatim (the test supplies the length prefix, so it
//! can lie about it) and reads answers with the agent's own framing. The node is driven on its
//! own single-threaded runtime only while one of its methods runs; every wait is bounded.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::time::{Duration, Instant};

use bigfile_agent::net::announce::{Availability, SignedAvailability};
use bigfile_agent::net::node::{AVAILABILITY_TOPIC, split_peer};
use bigfile_agent::net::protocol::{self, Request, Response};
use futures::StreamExt;
use futures::prelude::*;
use libp2p::identity::Keypair;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, gossipsub, identify, noise, tcp, yamux};

/// Largest answer the hostile node reads.
const MAX_RESPONSE: u64 = 64 << 20;
/// Identify protocol the agents speak.
const IDENTIFY_PROTOCOL: &str = "/bigfile/id/1.0.0";
/// How many recent events [`Hostile::events`] reports.
const EVENT_LOG: usize = 64;

/// `bytes` with the 4-byte big-endian length prefix of the shard protocol.
pub fn frame(bytes: &[u8]) -> Vec<u8> {
    let len = u32::try_from(bytes.len()).expect("frame under 4 GiB");
    let mut v = len.to_be_bytes().to_vec();
    v.extend_from_slice(bytes);
    v
}

/// A well-formed, framed shard request.
pub fn encode_request(req: &Request) -> Vec<u8> {
    frame(&postcard::to_allocvec(req).expect("encode request"))
}

/// Decodes an answer body as the agent's [`Response`].
pub fn decode_response(body: &[u8]) -> Result<Response, String> {
    protocol::decode_response(body).map_err(|e| e.to_string())
}

/// An availability announcement for `identity`'s peer, correctly signed by the peer key but with
/// a chain signature that does not verify. `nonce` goes into `free_bytes`, so every call with a
/// new nonce yields different bytes (gossip drops repeats).
pub fn bad_announcement(identity: &Keypair, nonce: u64) -> Vec<u8> {
    let chain_key = bigfile_chain::ChainKey::random();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let body = Availability {
        peer_id: identity.public().to_peer_id(),
        address: chain_key.address(),
        listen_addrs: vec!["/ip4/127.0.0.1/tcp/9".parse().expect("multiaddr")],
        free_bytes: (1 << 40) + nonce,
        stored_bytes: 0,
        gpus: vec![],
        price_per_gib_month: 1,
        version: "hostile/0".into(),
        timestamp: now,
    };
    let mut signed = SignedAvailability::sign(body, &chain_key, identity).expect("sign announcement");
    signed.verify(now, 120, 300).expect("the untampered announcement verifies");
    // Flip bits in `s`: the signature is then by nobody in particular (or malformed).
    signed.chain_signature[40] ^= 0x5a;
    signed.chain_signature[41] ^= 0xa5;
    let bytes = signed.encode();
    let decoded = SignedAvailability::decode(&bytes).expect("tampered announcement still decodes");
    assert!(decoded.verify(now, 120, 300).is_err(), "tampered announcement must not verify");
    bytes
}

/// Writes requests verbatim; reads answers framed as the agent frames them.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawCodec;

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, _: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        Err(io::Error::other("the hostile node serves nothing"))
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        protocol::read_frame(io, MAX_RESPONSE).await
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: Vec<u8>) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&req).await?;
        io.flush().await
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, _: &mut T, _: Vec<u8>) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        Err(io::Error::other("the hostile node serves nothing"))
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    identify: identify::Behaviour,
    gossipsub: gossipsub::Behaviour,
    shards: request_response::Behaviour<RawCodec>,
}

/// Everything but the runtime, so conditions can borrow it while the runtime drives it.
struct State {
    swarm: Swarm<Behaviour>,
    topic: gossipsub::IdentTopic,
    answers: HashMap<OutboundRequestId, Result<Vec<u8>, String>>,
    dial_errors: HashMap<PeerId, String>,
    closed: HashSet<PeerId>,
    log: VecDeque<String>,
}

impl State {
    fn note(&mut self, line: String) {
        if self.log.len() == EVENT_LOG {
            self.log.pop_front();
        }
        self.log.push_back(line);
    }

    fn on_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        use request_response::{Event, Message};
        match ev {
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                self.closed.remove(&peer_id);
                self.note(format!("connected to {peer_id}"));
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established, cause, .. } => {
                if num_established == 0 {
                    self.closed.insert(peer_id);
                }
                self.note(format!("connection to {peer_id} closed ({num_established} left): {cause:?}"));
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                if let Some(p) = peer_id {
                    self.dial_errors.insert(p, error.to_string());
                }
                self.note(format!("dial to {peer_id:?} failed: {error}"));
            }
            SwarmEvent::Behaviour(BehaviourEvent::Shards(ev)) => match ev {
                Event::Message { message: Message::Response { request_id, response }, .. } => {
                    self.note(format!("answer to {request_id}: {} bytes", response.len()));
                    self.answers.insert(request_id, Ok(response));
                }
                Event::OutboundFailure { request_id, error, .. } => {
                    self.note(format!("request {request_id} failed: {error}"));
                    self.answers.insert(request_id, Err(error.to_string()));
                }
                _ => {}
            },
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Subscribed {
                peer_id,
                topic,
            })) => {
                self.note(format!("{peer_id} subscribed to {topic}"));
            }
            _ => {}
        }
    }

    fn subscribed(&self, peer: &PeerId) -> bool {
        let hash = self.topic.hash();
        self.swarm.behaviour().gossipsub.all_peers().any(|(p, topics)| p == peer && topics.contains(&&hash))
    }
}

/// The hostile node. Each one has a fresh identity, so a ban earned by one does not affect another.
pub struct Hostile {
    state: State,
    keypair: Keypair,
    // Declared last: the swarm's sockets are dropped before their runtime.
    rt: tokio::runtime::Runtime,
}

impl Default for Hostile {
    fn default() -> Self {
        Self::new()
    }
}

impl Hostile {
    /// A node with a new ed25519 identity, subscribed to the availability topic, listening nowhere.
    pub fn new() -> Hostile {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
        let keypair = Keypair::generate_ed25519();
        let topic = gossipsub::IdentTopic::new(AVAILABILITY_TOPIC);
        let swarm = {
            let _guard = rt.enter();
            let gossip_cfg = gossipsub::ConfigBuilder::default()
                .heartbeat_interval(Duration::from_secs(1))
                .validation_mode(gossipsub::ValidationMode::Strict)
                .build()
                .expect("gossipsub config");
            let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair.clone())
                .with_tokio()
                .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
                .expect("tcp transport")
                .with_quic()
                .with_behaviour(|key| Behaviour {
                    identify: identify::Behaviour::new(identify::Config::new(
                        IDENTIFY_PROTOCOL.into(),
                        key.public(),
                    )),
                    gossipsub: gossipsub::Behaviour::new(
                        gossipsub::MessageAuthenticity::Signed(key.clone()),
                        gossip_cfg,
                    )
                    .expect("gossipsub"),
                    shards: request_response::Behaviour::with_codec(
                        RawCodec,
                        [(protocol::PROTOCOL, ProtocolSupport::Outbound)],
                        request_response::Config::default().with_request_timeout(Duration::from_secs(20)),
                    ),
                })
                .expect("behaviour")
                .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(120)))
                .build();
            swarm.behaviour_mut().gossipsub.subscribe(&topic).expect("subscribe");
            swarm
        };
        let state = State {
            swarm,
            topic,
            answers: HashMap::new(),
            dial_errors: HashMap::new(),
            closed: HashSet::new(),
            log: VecDeque::new(),
        };
        Hostile { state, keypair, rt }
    }

    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        *self.state.swarm.local_peer_id()
    }

    /// This node's identity.
    pub fn keypair(&self) -> &Keypair {
        &self.keypair
    }

    /// The most recent swarm events, one a line, for failure messages.
    pub fn events(&self) -> String {
        self.state.log.iter().map(String::as_str).collect::<Vec<_>>().join("\n")
    }

    /// Runs the swarm, calling `f` first and then every `every`, until `f` answers or `limit`
    /// has passed. Everything runs inside the node's runtime, so `f` may use the swarm.
    fn drive<T>(
        &mut self,
        limit: Duration,
        every: Duration,
        mut f: impl FnMut(&mut State) -> Option<T>,
    ) -> Option<T> {
        let Hostile { state, rt, .. } = self;
        let start = Instant::now();
        rt.block_on(async {
            loop {
                if let Some(v) = f(state) {
                    return Some(v);
                }
                if start.elapsed() >= limit {
                    return None;
                }
                let pause = tokio::time::sleep(every);
                tokio::pin!(pause);
                loop {
                    tokio::select! {
                        ev = state.swarm.select_next_some() => state.on_event(ev),
                        _ = &mut pause => break,
                    }
                }
            }
        })
    }

    fn until<T>(&mut self, limit: Duration, f: impl FnMut(&mut State) -> Option<T>) -> Option<T> {
        self.drive(limit, Duration::from_millis(50), f)
    }

    /// Runs the swarm for `d`.
    pub fn pump(&mut self, d: Duration) {
        let mut first = true;
        self.drive(d, d, |_| (!std::mem::take(&mut first)).then_some(()));
    }

    /// Keeps the swarm running while polling `f` (an API call, say) every 200 ms; `None` if
    /// `f` has not answered within `limit`.
    pub fn wait_for<T>(&mut self, limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
        self.drive(limit, Duration::from_millis(200), |_| f())
    }

    /// Whether a connection to `peer` is open.
    pub fn is_connected(&self, peer: &PeerId) -> bool {
        self.state.swarm.is_connected(peer)
    }

    /// Dials `addr` (`…/p2p/PEERID`) unless connected and waits for the connection.
    pub fn connect(&mut self, addr: &Multiaddr, limit: Duration) -> Result<(), String> {
        let (peer, _) = split_peer(addr).ok_or_else(|| format!("{addr} has no /p2p/ part"))?;
        if self.is_connected(&peer) {
            return Ok(());
        }
        let mut dialled = false;
        let got = self.until(limit, |s| {
            if !std::mem::replace(&mut dialled, true) {
                s.dial_errors.remove(&peer);
                if let Err(e) = s.swarm.dial(addr.clone()) {
                    return Some(Err(format!("dial {addr}: {e}")));
                }
            }
            if s.swarm.is_connected(&peer) { Some(Ok(())) } else { s.dial_errors.remove(&peer).map(Err) }
        });
        got.unwrap_or_else(|| Err(format!("no connection to {addr} within {limit:?}")))
    }

    /// Waits until no connection to `peer` is open; false if one still is after `limit`.
    pub fn wait_disconnected(&mut self, peer: &PeerId, limit: Duration) -> bool {
        self.until(limit, |s| (!s.swarm.is_connected(peer)).then_some(())).is_some()
    }

    /// Sends `bytes` verbatim as a `/bigfile/shard/1` request to the peer of `addr` (dialling it
    /// if needed) and returns the answer's body, or why there is none.
    pub fn request(&mut self, addr: &Multiaddr, bytes: Vec<u8>, limit: Duration) -> Result<Vec<u8>, String> {
        let (peer, bare) = split_peer(addr).ok_or_else(|| format!("{addr} has no /p2p/ part"))?;
        let mut sent = None;
        let mut request = Some((bytes, bare));
        self.until(limit, |s| {
            if let Some((bytes, bare)) = request.take() {
                sent = Some(s.swarm.behaviour_mut().shards.send_request_with_addresses(
                    &peer,
                    bytes,
                    vec![bare],
                ));
            }
            sent.and_then(|id| s.answers.remove(&id))
        })
        .unwrap_or_else(|| Err(format!("no answer and no failure within {limit:?}")))
    }

    /// Waits until `peer` is known to be subscribed to the availability topic.
    pub fn wait_subscribed(&mut self, peer: &PeerId, limit: Duration) -> bool {
        self.until(limit, |s| s.subscribed(peer).then_some(())).is_some()
    }

    /// Publishes `data` on the availability topic, retrying while no subscribed peer is known
    /// yet; the last error if none took it within `limit`.
    pub fn publish(&mut self, data: Vec<u8>, limit: Duration) -> Result<(), String> {
        let mut last = String::new();
        let topic = self.state.topic.clone();
        self.until(limit, |s| match s.swarm.behaviour_mut().gossipsub.publish(topic.clone(), data.clone()) {
            Ok(_) => Some(()),
            Err(e) => {
                last = e.to_string();
                None
            }
        })
        .ok_or_else(|| format!("not published within {limit:?}: {last}"))
    }
}
