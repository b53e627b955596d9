//! `/bigfile/shard/1`: the request-response protocol that moves shards between agents.
//!
//! A message on the wire is a 4-byte big-endian length followed by that many bytes of a postcard
//! encoded [`Request`] or [`Response`]. The length is checked against the limit *before* anything
//! is read into memory; a message that does not decode, has trailing bytes or breaks a field
//! bound is an `InvalidData` error, which the node treats as misbehaviour (the peer is
//! disconnected and scored down). Shards travel whole in one message, so the limit is the
//! largest shard the node accepts plus a small allowance for the header.

use std::io;

use futures::prelude::*;
use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};

/// The protocol name.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/bigfile/shard/1");

/// Bytes a message may carry besides shard data (manifest, ids, holder lists).
pub const HEADER_ALLOWANCE: u64 = 256 << 10;

/// Most holders a manifest record may list (k + m ≤ 256).
pub const MAX_HOLDERS: usize = 256;

/// Most announcements one `Providers` answer carries.
pub const MAX_ANNOUNCEMENTS: usize = 1024;

/// Byte strings as serde bytes (one length and a copy) rather than a sequence of `u8` (one call
/// per byte); postcard writes both the same way, so the wire format does not change.
mod bytes {
    use serde::{Deserializer, Serializer, de};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// A 32-byte object id on the wire.
pub type Id = [u8; 32];

/// Who holds shard `index` of an object, as the manifest record lists it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Holder {
    /// Shard index.
    pub index: u16,
    /// The holder's peer id (bytes).
    pub peer: Vec<u8>,
    /// Where to reach it (multiaddr bytes), at most 8.
    pub addrs: Vec<Vec<u8>>,
}

/// What one agent asks another.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// The signed availability announcements the peer knows (its own included).
    Providers,
    /// Store shard `index` of the object whose canonical manifest is `manifest`.
    PutShard {
        /// Canonical manifest bytes (its keccak is the object id).
        manifest: Vec<u8>,
        /// Shard index.
        index: u16,
        /// The whole shard.
        #[serde(with = "bytes")]
        data: Vec<u8>,
    },
    /// Keep the manifest and the holder list of an object (a higher `version` replaces a lower).
    PutManifest {
        /// Canonical manifest bytes.
        manifest: Vec<u8>,
        /// Holder list version; repairs bump it.
        version: u64,
        /// One entry per shard.
        holders: Vec<Holder>,
    },
    /// The manifest and holder list of an object.
    GetManifest {
        /// Object id.
        id: Id,
    },
    /// Bytes `[offset, offset + len)` of a shard.
    GetShard {
        /// Object id.
        id: Id,
        /// Shard index.
        index: u16,
        /// First byte.
        offset: u64,
        /// Byte count.
        len: u64,
    },
    /// Whether the peer holds a shard.
    HasShard {
        /// Object id.
        id: Id,
        /// Shard index.
        index: u16,
    },
    /// Grant the sender the right to repair an object whose holder list is at `version`, for
    /// `secs` seconds; refused while another peer holds an unexpired lease or the version is stale.
    RepairLease {
        /// Object id.
        id: Id,
        /// The holder-list version the repair starts from.
        version: u64,
        /// Lease length in seconds (at most an hour).
        secs: u32,
    },
    /// Proof of possession: segment `segment` of a shard with its Merkle path.
    Challenge {
        /// Object id.
        id: Id,
        /// Shard index.
        index: u16,
        /// Segment index.
        segment: u64,
    },
    /// Not on the wire: what the codec hands up for a frame that is oversized or does not
    /// decode, so the node can score the sender down (a codec error would vanish silently).
    #[serde(skip)]
    Malformed(String),
}

impl Request {
    /// Short name for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Providers => "providers",
            Request::PutShard { .. } => "put-shard",
            Request::PutManifest { .. } => "put-manifest",
            Request::GetManifest { .. } => "get-manifest",
            Request::GetShard { .. } => "get-shard",
            Request::HasShard { .. } => "has-shard",
            Request::RepairLease { .. } => "repair-lease",
            Request::Challenge { .. } => "challenge",
            Request::Malformed(_) => "malformed",
        }
    }
}

/// What comes back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Encoded signed announcements.
    Providers(Vec<Vec<u8>>),
    /// The shard is stored (or was already).
    Stored {
        /// True if it was already held.
        deduplicated: bool,
    },
    /// Done.
    Ok,
    /// A manifest record.
    Manifest {
        /// Canonical manifest bytes.
        manifest: Vec<u8>,
        /// Holder list version.
        version: u64,
        /// Holders.
        holders: Vec<Holder>,
    },
    /// Shard bytes.
    Data(#[serde(with = "bytes")] Vec<u8>),
    /// Answer to `HasShard`.
    Has(bool),
    /// A segment with its sibling hashes, leaf level first.
    Proof {
        /// The segment, zero-padded to the segment size.
        segment: Vec<u8>,
        /// Sibling hashes.
        siblings: Vec<[u8; 32]>,
    },
    /// The peer does not have it.
    NotFound,
    /// Too many requests from this peer in flight; retry later.
    Busy,
    /// Refused, with the reason (bad root, no space, …).
    Refused(String),
}

/// Frames and bounds messages; `max_message` is the largest encoded message accepted either way.
#[derive(Clone, Debug)]
pub struct Codec {
    /// Largest message in bytes.
    pub max_message: u64,
}

impl Codec {
    /// A codec accepting shards up to `max_shard` bytes.
    pub fn new(max_shard: u64) -> Self {
        Codec { max_message: max_shard + HEADER_ALLOWANCE }
    }
}

fn invalid(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

/// Reads one length-prefixed message of at most `max` bytes.
pub async fn read_frame<T: AsyncRead + Unpin>(io: &mut T, max: u64) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u64::from(u32::from_be_bytes(len));
    if len > max {
        return Err(invalid(format!("message of {len} bytes exceeds the limit of {max}")));
    }
    // Grow geometrically as bytes arrive instead of trusting the length with one big
    // allocation; each step is one read_exact into the new part.
    let len = len as usize;
    let mut buf = Vec::new();
    while buf.len() < len {
        let from = buf.len();
        buf.resize((from.max(1 << 20) * 2).min(len), 0);
        io.read_exact(&mut buf[from..]).await?;
    }
    Ok(buf)
}

/// Writes one length-prefixed message.
pub async fn write_frame<T: AsyncWrite + Unpin>(io: &mut T, bytes: &[u8], max: u64) -> io::Result<()> {
    if bytes.len() as u64 > max || bytes.len() > u32::MAX as usize {
        return Err(invalid(format!("message of {} bytes exceeds the limit of {max}", bytes.len())));
    }
    io.write_all(&(bytes.len() as u32).to_be_bytes()).await?;
    io.write_all(bytes).await?;
    io.flush().await
}

/// Decodes a request and checks its field bounds.
pub fn decode_request(bytes: &[u8]) -> io::Result<Request> {
    let req: Request = postcard::from_bytes(bytes).map_err(|e| invalid(format!("bad request: {e}")))?;
    match &req {
        Request::PutManifest { holders, .. } if holders.len() > MAX_HOLDERS || holders_too_big(holders) => {
            Err(invalid("holder list breaks its bounds".into()))
        }
        _ => Ok(req),
    }
}

/// Decodes a response and checks its field bounds.
pub fn decode_response(bytes: &[u8]) -> io::Result<Response> {
    let res: Response = postcard::from_bytes(bytes).map_err(|e| invalid(format!("bad response: {e}")))?;
    match &res {
        Response::Providers(a) if a.len() > MAX_ANNOUNCEMENTS => {
            Err(invalid(format!("{} announcements, at most {MAX_ANNOUNCEMENTS}", a.len())))
        }
        Response::Manifest { holders, .. } if holders.len() > MAX_HOLDERS || holders_too_big(holders) => {
            Err(invalid("holder list breaks its bounds".into()))
        }
        _ => Ok(res),
    }
}

fn holders_too_big(h: &[Holder]) -> bool {
    h.iter().any(|h| h.peer.len() > 64 || h.addrs.len() > 8 || h.addrs.iter().any(|a| a.len() > 256))
}

/// Postcard bytes of `v`, an encoding failure as an I/O error.
pub(crate) fn encode<T: Serialize>(v: &T) -> io::Result<Vec<u8>> {
    postcard::to_allocvec(v).map_err(|e| io::Error::other(format!("encoding: {e}")))
}

impl libp2p::request_response::Codec for Codec {
    type Protocol = StreamProtocol;
    type Request = Request;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Request>
    where
        T: AsyncRead + Unpin + Send,
    {
        let frame = match read_frame(io, self.max_message).await {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::InvalidData => return Ok(Request::Malformed(e.to_string())),
            Err(e) => return Err(e),
        };
        match decode_request(&frame) {
            Ok(r) => Ok(r),
            Err(e) => Ok(Request::Malformed(e.to_string())),
        }
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        decode_response(&read_frame(io, self.max_message).await?)
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: Request) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &encode(&req)?, self.max_message).await
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, io: &mut T, res: Response) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &encode(&res)?, self.max_message).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn frame(bytes: &[u8]) -> Vec<u8> {
        let mut v = (bytes.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(bytes);
        v
    }

    #[test]
    fn round_trip_and_limits() {
        let req = Request::PutShard { manifest: vec![1; 100], index: 3, data: vec![7; 5000] };
        let bytes = encode(&req).unwrap();
        assert_eq!(decode_request(&bytes).unwrap(), req);
        let mut codec = Codec::new(4096);
        let framed = frame(&bytes);
        let got = futures::executor::block_on(async {
            let mut r = &framed[..];
            libp2p::request_response::Codec::read_request(&mut codec, &PROTOCOL, &mut r).await
        })
        .unwrap();
        assert_eq!(got, req);
        // A length above the limit is refused before the body is read.
        let mut huge = (u32::MAX).to_be_bytes().to_vec();
        huge.extend_from_slice(&[0; 16]);
        let err = futures::executor::block_on(read_frame(&mut &huge[..], 1 << 20)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("exceeds the limit"), "{err}");
        // A body shorter than its length is an error, not a short message.
        let cut = &framed[..framed.len() - 1];
        assert!(futures::executor::block_on(read_frame(&mut &cut[..], 1 << 20)).is_err());
        // Trailing garbage after a valid encoding still decodes to the same value (postcard
        // ignores it) only if nothing is left: make sure over-long holder lists are refused.
        let holders = vec![Holder { index: 0, peer: vec![0; 65], addrs: vec![] }];
        let bad = encode(&Request::PutManifest { manifest: vec![], version: 1, holders }).unwrap();
        assert!(decode_request(&bad).is_err());
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for _ in 0..20_000 {
            let len = rng.gen_range(0..64);
            let bytes: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
            let _ = decode_request(&bytes);
            let _ = decode_response(&bytes);
        }
    }
}
