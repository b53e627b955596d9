//! Signed availability announcements: what a provider offers, signed by both of its keys.
//!
//! A provider periodically gossips an [`Availability`] (and serves it in `Providers` answers). Both
//! signatures cover the same *canonical bytes*, so a client, another provider or a contract can check
//! that the chain address and the libp2p peer id belong to the same operator.
//!
//! # Canonical bytes, version 1
//!
//! Integers are big-endian and unsigned; `len16` is a `u16` length or count prefix. Fields in order:
//!
//! | field                 | encoding                                                              |
//! |-----------------------|-----------------------------------------------------------------------|
//! | domain tag            | the 24 ASCII bytes `"BigFile availability v1\n"`                       |
//! | `peer_id`             | `len16` (1..=64) ‖ the peer id's binary multihash (`PeerId::to_bytes`)  |
//! | `address`             | the 20 raw bytes of the chain address                                   |
//! | `listen_addrs`        | `len16` count (≤ 16), then each: `len16` (≤ 256) ‖ binary multiaddr      |
//! | `free_bytes`          | `u64`                                                                   |
//! | `stored_bytes`        | `u64`                                                                   |
//! | `gpus`                | `len16` count (≤ 16), then each: `len16` (≤ 128) ‖ UTF-8 bytes           |
//! | `price_per_gib_month` | `u128` (16 bytes), BIG base units                                       |
//! | `version`             | `len16` (≤ 64) ‖ UTF-8 bytes                                            |
//! | `timestamp`           | `u64`, unix seconds                                                     |
//!
//! * `chain_signature` is the EIP-191 personal-message signature of the canonical bytes
//!   (`keccak256("\x19Ethereum Signed Message:\n" ‖ decimal(len) ‖ bytes)`, `r ‖ s ‖ v`, `v` ∈ {27, 28},
//!   low `s`); `ecrecover` on that digest yields `address`.
//! * `peer_signature` is the 64-byte ed25519 signature (RFC 8032) of the canonical bytes by the key
//!   inlined in `peer_id` (an identity multihash, code `0x00`, of the protobuf-encoded public key).
//!   Peer ids that hash their key instead are refused, since the key could not be checked.
//!
//! # Wire form
//!
//! `canonical bytes ‖ chain_signature (65 bytes) ‖ len16 (= 64) ‖ peer_signature`, at most
//! [`MAX_ANNOUNCEMENT_BYTES`] in all, with nothing after it. [`SignedAvailability::decode`] checks every
//! limit before allocating and accepts only bytes that re-encode identically, so a decoded announcement
//! always [`encode`](SignedAvailability::encode)s back to the bytes received.

use bigfile_chain::ChainKey;
use bigfile_chain::eip191::{self, SignatureError};
use libp2p::identity::{Keypair, PublicKey};
use libp2p::{Multiaddr, PeerId};

/// Largest encoded announcement accepted or produced, signatures included.
pub const MAX_ANNOUNCEMENT_BYTES: usize = 4096;
/// Domain tag that starts the canonical bytes; the trailing `v1` is the format version.
pub const DOMAIN_TAG: &[u8; 24] = b"BigFile availability v1\n";
/// Most listen addresses in one announcement.
pub const MAX_LISTEN_ADDRS: usize = 16;
/// Largest binary multiaddr.
pub const MAX_MULTIADDR_BYTES: usize = 256;
/// Most GPU names in one announcement.
pub const MAX_GPUS: usize = 16;
/// Longest GPU name, in bytes.
pub const MAX_GPU_NAME_BYTES: usize = 128;
/// Longest agent version string, in bytes.
pub const MAX_VERSION_BYTES: usize = 64;
/// Longest binary peer id.
pub const MAX_PEER_ID_BYTES: usize = 64;
/// Length of an ed25519 signature, the only peer signature accepted.
pub const PEER_SIGNATURE_BYTES: usize = 64;

/// What a provider offers, as announced.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Availability {
    /// The provider's libp2p peer id (serialized as its base58 string).
    #[serde(serialize_with = "ser_display")]
    pub peer_id: PeerId,
    /// The provider's chain address, `0x…` EIP-55 checksummed.
    pub address: String,
    /// Where to dial the provider (at most [`MAX_LISTEN_ADDRS`]; serialized as strings).
    #[serde(serialize_with = "ser_addrs")]
    pub listen_addrs: Vec<Multiaddr>,
    /// Bytes the provider can still accept.
    pub free_bytes: u64,
    /// Bytes the provider holds.
    pub stored_bytes: u64,
    /// GPU device names, possibly none (at most [`MAX_GPUS`], each at most [`MAX_GPU_NAME_BYTES`]).
    pub gpus: Vec<String>,
    /// Asking price per GiB and month, in BIG base units.
    pub price_per_gib_month: u128,
    /// The agent's version (at most [`MAX_VERSION_BYTES`]).
    pub version: String,
    /// When the announcement was made, unix seconds.
    pub timestamp: u64,
}

/// An [`Availability`] with the signatures of the chain key and the libp2p identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedAvailability {
    /// What is announced.
    pub body: Availability,
    /// EIP-191 signature of the canonical bytes by the chain key (`r ‖ s ‖ v`).
    pub chain_signature: [u8; 65],
    /// ed25519 signature of the canonical bytes by the libp2p identity.
    pub peer_signature: Vec<u8>,
}

/// Why an announcement could not be signed, decoded or verified.
#[derive(Debug, thiserror::Error)]
pub enum AnnounceError {
    /// The encoded announcement is over the size limit.
    #[error("announcement is {len} bytes, limit {limit}")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The bytes end inside a field.
    #[error("announcement truncated in {field} (needs {need} more bytes at offset {offset}, {have} left)")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// Where it starts.
        offset: usize,
        /// Bytes it needs.
        need: usize,
        /// Bytes left.
        have: usize,
    },
    /// The bytes do not start with the v1 domain tag.
    #[error("not a BigFile availability v1 announcement (domain tag mismatch)")]
    Domain,
    /// A list has too many entries.
    #[error("{field} has {count} entries, limit {limit}")]
    TooMany {
        /// The list.
        field: &'static str,
        /// Entries found.
        count: usize,
        /// The limit.
        limit: usize,
    },
    /// A field is too long.
    #[error("{field} is {len} bytes, limit {limit}")]
    FieldTooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// A field does not parse.
    #[error("invalid {field}: {why}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        why: String,
    },
    /// Bytes follow the peer signature.
    #[error("{0} unexpected bytes after the announcement")]
    Trailing(usize),
    /// The fields decode but would re-encode differently, so the signatures could not cover them.
    #[error("announcement is not in canonical form (its fields re-encode differently)")]
    NonCanonical,
    /// The peer signature is not an ed25519 signature.
    #[error("peer signature is {0} bytes, an ed25519 signature is {PEER_SIGNATURE_BYTES}")]
    PeerSignatureLength(usize),
    /// `sign` was given a body for another peer.
    #[error("announcement is for peer {body}, but the identity is {identity}")]
    PeerIdMismatch {
        /// The body's peer id (base58).
        body: String,
        /// The identity's peer id (base58).
        identity: String,
    },
    /// `sign` was given a body for another chain address.
    #[error("announcement claims address {body}, but the chain key is {key}")]
    AddressMismatch {
        /// The body's address.
        body: String,
        /// The chain key's address (EIP-55).
        key: String,
    },
    /// The libp2p identity could not sign.
    #[error("libp2p identity cannot sign: {0}")]
    Signing(String),
    /// The peer id does not carry an ed25519 key to check the peer signature with.
    #[error("peer id {0} does not inline an ed25519 public key")]
    PeerKeyNotInline(String),
    /// The peer signature does not verify (the peer id, base58).
    #[error("peer signature does not verify for peer {0}")]
    BadPeerSignature(String),
    /// The chain signature is malformed.
    #[error("chain signature: {0}")]
    ChainSignature(#[from] SignatureError),
    /// The chain signature is valid but by another address.
    #[error("chain signature recovers {recovered}, announcement claims {claimed}")]
    ChainSignerMismatch {
        /// The signer.
        recovered: String,
        /// The address in the body.
        claimed: String,
    },
    /// The timestamp is too far in the future.
    #[error("timestamp {timestamp} is {ahead} s in the future (max skew {max_skew} s)")]
    FromFuture {
        /// The announced timestamp.
        timestamp: u64,
        /// How far ahead of now.
        ahead: u64,
        /// The tolerance.
        max_skew: u64,
    },
    /// The announcement is too old.
    #[error("timestamp {timestamp} is {age} s old (max age {max_age} s)")]
    TooOld {
        /// The announced timestamp.
        timestamp: u64,
        /// Its age.
        age: u64,
        /// The limit.
        max_age: u64,
    },
}

impl Availability {
    /// The exact bytes both signatures cover (see the module docs for the format).
    ///
    /// An `address` that is not a 20-byte hex address is encoded as 20 zero bytes; such a body can
    /// be neither signed nor verified, both of which check the address first.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(DOMAIN_TAG);
        put_bytes(&mut out, &self.peer_id.to_bytes());
        out.extend_from_slice(&eip191::parse_address(&self.address).unwrap_or([0; 20]));
        put_len(&mut out, self.listen_addrs.len());
        for a in &self.listen_addrs {
            put_bytes(&mut out, a.as_ref());
        }
        out.extend_from_slice(&self.free_bytes.to_be_bytes());
        out.extend_from_slice(&self.stored_bytes.to_be_bytes());
        put_len(&mut out, self.gpus.len());
        for g in &self.gpus {
            put_bytes(&mut out, g.as_bytes());
        }
        out.extend_from_slice(&self.price_per_gib_month.to_be_bytes());
        put_bytes(&mut out, self.version.as_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out
    }

    /// Checks every count and length limit of the format.
    fn check_limits(&self) -> Result<(), AnnounceError> {
        let long = |field, len, limit| {
            if len > limit { Err(AnnounceError::FieldTooLong { field, len, limit }) } else { Ok(()) }
        };
        let many = |field, count, limit| {
            if count > limit { Err(AnnounceError::TooMany { field, count, limit }) } else { Ok(()) }
        };
        long("peer id", self.peer_id.to_bytes().len(), MAX_PEER_ID_BYTES)?;
        many("listen addresses", self.listen_addrs.len(), MAX_LISTEN_ADDRS)?;
        for a in &self.listen_addrs {
            long("listen address", a.as_ref().len(), MAX_MULTIADDR_BYTES)?;
        }
        many("gpus", self.gpus.len(), MAX_GPUS)?;
        for g in &self.gpus {
            long("gpu name", g.len(), MAX_GPU_NAME_BYTES)?;
        }
        long("version", self.version.len(), MAX_VERSION_BYTES)
    }
}

impl SignedAvailability {
    /// Signs `body` with both keys; refuses a body whose peer id or address is not the signers',
    /// a non-ed25519 identity, and a body that breaks a limit of the format.
    pub fn sign(body: Availability, chain_key: &ChainKey, identity: &Keypair) -> Result<Self, AnnounceError> {
        let own_peer = identity.public().to_peer_id();
        if body.peer_id != own_peer {
            return Err(AnnounceError::PeerIdMismatch {
                body: body.peer_id.to_string(),
                identity: own_peer.to_string(),
            });
        }
        let key_address = chain_key.address();
        if body.address != key_address {
            return Err(AnnounceError::AddressMismatch { body: body.address, key: key_address });
        }
        inline_ed25519(&body.peer_id)?;
        body.check_limits()?;
        let canonical = body.canonical_bytes();
        let len = canonical.len() + 65 + 2 + PEER_SIGNATURE_BYTES;
        if len > MAX_ANNOUNCEMENT_BYTES {
            return Err(AnnounceError::TooLarge { len, limit: MAX_ANNOUNCEMENT_BYTES });
        }
        let chain_signature = eip191::sign_message(chain_key, &canonical);
        let peer_signature = identity.sign(&canonical).map_err(|e| AnnounceError::Signing(e.to_string()))?;
        Ok(SignedAvailability { body, chain_signature, peer_signature })
    }

    /// The wire form, as sent in gossip and `Providers` answers (see the module docs).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.body.canonical_bytes();
        out.extend_from_slice(&self.chain_signature);
        put_bytes(&mut out, &self.peer_signature);
        out
    }

    /// Parses the wire form, checking every limit before allocating; never panics.
    ///
    /// This checks structure only: call [`verify`](Self::verify) before trusting the contents.
    pub fn decode(bytes: &[u8]) -> Result<Self, AnnounceError> {
        if bytes.len() > MAX_ANNOUNCEMENT_BYTES {
            return Err(AnnounceError::TooLarge { len: bytes.len(), limit: MAX_ANNOUNCEMENT_BYTES });
        }
        let mut r = Reader { bytes, pos: 0 };
        if r.take("domain tag", DOMAIN_TAG.len())? != DOMAIN_TAG {
            return Err(AnnounceError::Domain);
        }
        let raw_peer = r.bytes16("peer id", MAX_PEER_ID_BYTES)?;
        let peer_id = PeerId::from_bytes(raw_peer)
            .map_err(|e| AnnounceError::Invalid { field: "peer id", why: e.to_string() })?;
        let raw_address: [u8; 20] = r.array("address")?;
        let address = eip191::checksum_address(&raw_address);
        let count = r.count("listen addresses", MAX_LISTEN_ADDRS)?;
        let mut listen_addrs = Vec::with_capacity(count);
        for _ in 0..count {
            let raw = r.bytes16("listen address", MAX_MULTIADDR_BYTES)?;
            let addr = Multiaddr::try_from(raw.to_vec())
                .map_err(|e| AnnounceError::Invalid { field: "listen address", why: e.to_string() })?;
            listen_addrs.push(addr);
        }
        let free_bytes = u64::from_be_bytes(r.array("free bytes")?);
        let stored_bytes = u64::from_be_bytes(r.array("stored bytes")?);
        let count = r.count("gpus", MAX_GPUS)?;
        let mut gpus = Vec::with_capacity(count);
        for _ in 0..count {
            gpus.push(r.string16("gpu name", MAX_GPU_NAME_BYTES)?);
        }
        let price_per_gib_month = u128::from_be_bytes(r.array("price")?);
        let version = r.string16("version", MAX_VERSION_BYTES)?;
        let timestamp = u64::from_be_bytes(r.array("timestamp")?);
        let canonical_end = r.pos;
        let chain_signature: [u8; 65] = r.array("chain signature")?;
        let sig_len = usize::from(u16::from_be_bytes(r.array("peer signature length")?));
        if sig_len != PEER_SIGNATURE_BYTES {
            return Err(AnnounceError::PeerSignatureLength(sig_len));
        }
        let peer_signature = r.take("peer signature", sig_len)?.to_vec();
        if r.pos != bytes.len() {
            return Err(AnnounceError::Trailing(bytes.len() - r.pos));
        }
        let body = Availability {
            peer_id,
            address,
            listen_addrs,
            free_bytes,
            stored_bytes,
            gpus,
            price_per_gib_month,
            version,
            timestamp,
        };
        if body.canonical_bytes() != bytes[..canonical_end] {
            return Err(AnnounceError::NonCanonical);
        }
        Ok(SignedAvailability { body, chain_signature, peer_signature })
    }

    /// Checks the timestamp against `now_unix` (at most `max_skew_secs` ahead, at most `max_age_secs`
    /// old), the peer signature against the ed25519 key inlined in the peer id, and that the chain
    /// signature recovers the body's address. Cheap checks come first.
    pub fn verify(&self, now_unix: u64, max_skew_secs: u64, max_age_secs: u64) -> Result<(), AnnounceError> {
        let timestamp = self.body.timestamp;
        if timestamp > now_unix {
            let ahead = timestamp - now_unix;
            if ahead > max_skew_secs {
                return Err(AnnounceError::FromFuture { timestamp, ahead, max_skew: max_skew_secs });
            }
        } else {
            let age = now_unix - timestamp;
            if age > max_age_secs {
                return Err(AnnounceError::TooOld { timestamp, age, max_age: max_age_secs });
            }
        }
        let claimed = eip191::parse_address(&self.body.address)
            .map_err(|e| AnnounceError::Invalid { field: "address", why: e.to_string() })?;
        let peer_key = inline_ed25519(&self.body.peer_id)?;
        let canonical = self.body.canonical_bytes();
        if !peer_key.verify(&canonical, &self.peer_signature) {
            return Err(AnnounceError::BadPeerSignature(self.body.peer_id.to_string()));
        }
        let recovered = eip191::recover_address(&canonical, &self.chain_signature)?;
        if eip191::parse_address(&recovered)? != claimed {
            return Err(AnnounceError::ChainSignerMismatch { recovered, claimed: self.body.address.clone() });
        }
        Ok(())
    }
}

/// The ed25519 public key inlined in `peer` (identity multihash of the protobuf-encoded key).
fn inline_ed25519(peer: &PeerId) -> Result<PublicKey, AnnounceError> {
    let not_inline = || AnnounceError::PeerKeyNotInline(peer.to_string());
    let multihash = peer.as_ref();
    if multihash.code() != 0 {
        return Err(not_inline());
    }
    let key = PublicKey::try_decode_protobuf(multihash.digest()).map_err(|_| not_inline())?;
    if key.clone().try_into_ed25519().is_err() || key.to_peer_id() != *peer {
        return Err(not_inline());
    }
    Ok(key)
}

/// Appends a `u16` length or count. Callers stay within the format's limits; a longer value is
/// clamped, which makes the result fail to decode rather than alias another encoding.
fn put_len(out: &mut Vec<u8>, len: usize) {
    out.extend_from_slice(&u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// A bounds-checked cursor over untrusted bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, field: &'static str, need: usize) -> Result<&'a [u8], AnnounceError> {
        let have = self.bytes.len() - self.pos;
        if need > have {
            return Err(AnnounceError::Truncated { field, offset: self.pos, need, have });
        }
        let out = &self.bytes[self.pos..self.pos + need];
        self.pos += need;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], AnnounceError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(field, N)?);
        Ok(out)
    }

    fn len16(&mut self, field: &'static str) -> Result<usize, AnnounceError> {
        Ok(usize::from(u16::from_be_bytes(self.array(field)?)))
    }

    fn count(&mut self, field: &'static str, limit: usize) -> Result<usize, AnnounceError> {
        let count = self.len16(field)?;
        if count > limit {
            return Err(AnnounceError::TooMany { field, count, limit });
        }
        Ok(count)
    }

    fn bytes16(&mut self, field: &'static str, limit: usize) -> Result<&'a [u8], AnnounceError> {
        let len = self.len16(field)?;
        if len > limit {
            return Err(AnnounceError::FieldTooLong { field, len, limit });
        }
        self.take(field, len)
    }

    fn string16(&mut self, field: &'static str, limit: usize) -> Result<String, AnnounceError> {
        let raw = self.bytes16(field, limit)?;
        let s = std::str::from_utf8(raw)
            .map_err(|e| AnnounceError::Invalid { field, why: format!("not UTF-8: {e}") })?;
        Ok(s.to_owned())
    }
}

fn ser_display<S: serde::Serializer, T: std::fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn ser_addrs<S: serde::Serializer>(addrs: &[Multiaddr], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(addrs.iter().map(|a| a.to_string()))
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

    const NOW: u64 = 1_700_000_000;
    const SKEW: u64 = 120;
    const AGE: u64 = 900;

    struct Fixture {
        chain: ChainKey,
        identity: Keypair,
    }

    impl Fixture {
        fn new() -> Self {
            Fixture { chain: ChainKey::random(), identity: Keypair::generate_ed25519() }
        }

        fn body(&self) -> Availability {
            Availability {
                peer_id: self.identity.public().to_peer_id(),
                address: self.chain.address(),
                listen_addrs: vec![
                    "/ip4/203.0.113.7/tcp/4001".parse().unwrap(),
                    "/ip6/2001:db8::1/udp/4001/quic-v1".parse().unwrap(),
                ],
                free_bytes: 5 << 40,
                stored_bytes: 1 << 30,
                gpus: vec!["NVIDIA H100 80GB HBM3".into()],
                price_per_gib_month: 3_000_000_000_000_000,
                version: "0.1.0".into(),
                timestamp: NOW,
            }
        }

        fn signed(&self) -> SignedAvailability {
            SignedAvailability::sign(self.body(), &self.chain, &self.identity).unwrap()
        }
    }

    fn check(a: &SignedAvailability) -> Result<(), AnnounceError> {
        a.verify(NOW, SKEW, AGE)
    }

    #[test]
    fn round_trip_encode_decode_verify() {
        let f = Fixture::new();
        let signed = f.signed();
        check(&signed).unwrap();
        let wire = signed.encode();
        assert!(wire.len() <= MAX_ANNOUNCEMENT_BYTES);
        assert!(wire.starts_with(DOMAIN_TAG));
        let back = SignedAvailability::decode(&wire).unwrap();
        assert_eq!(back, signed);
        assert_eq!(back.encode(), wire);
        check(&back).unwrap();
        // The chain signature is a plain EIP-191 signature over the canonical bytes.
        let canonical = signed.body.canonical_bytes();
        assert_eq!(
            bigfile_chain::recover_address(&canonical, &signed.chain_signature).unwrap(),
            f.chain.address()
        );
        assert!(f.identity.public().verify(&canonical, &signed.peer_signature));
        // Empty lists and strings round trip too.
        let mut body = f.body();
        body.listen_addrs.clear();
        body.gpus.clear();
        body.version.clear();
        let signed = SignedAvailability::sign(body, &f.chain, &f.identity).unwrap();
        assert_eq!(SignedAvailability::decode(&signed.encode()).unwrap(), signed);
    }

    #[test]
    fn canonical_layout_is_as_documented() {
        let f = Fixture::new();
        let body = f.body();
        let c = body.canonical_bytes();
        let peer = body.peer_id.to_bytes();
        let mut at = 24;
        assert_eq!(&c[..at], b"BigFile availability v1\n");
        assert_eq!(&c[at..at + 2], &(peer.len() as u16).to_be_bytes());
        at += 2 + peer.len();
        assert_eq!(&c[at..at + 20], &bigfile_chain::eip191::parse_address(&body.address).unwrap());
        at += 20;
        assert_eq!(&c[at..at + 2], &[0, 2]);
        at += 2;
        for a in &body.listen_addrs {
            assert_eq!(&c[at..at + 2], &(a.as_ref().len() as u16).to_be_bytes());
            at += 2;
            assert_eq!(&c[at..at + a.as_ref().len()], a.as_ref());
            at += a.as_ref().len();
        }
        assert_eq!(&c[at..at + 8], &(5u64 << 40).to_be_bytes());
        at += 16 + 2 + 2 + body.gpus[0].len();
        assert_eq!(&c[at..at + 16], &3_000_000_000_000_000u128.to_be_bytes());
        at += 16;
        assert_eq!(&c[at..at + 7], b"\x00\x050.1.0");
        at += 7;
        assert_eq!(&c[at..], &NOW.to_be_bytes());
    }

    #[test]
    fn any_field_changed_after_signing_is_rejected() {
        let f = Fixture::new();
        let signed = f.signed();
        let other = Fixture::new();
        type Tamper<'a> = Box<dyn Fn(&mut Availability) + 'a>;
        let tampers: Vec<(&str, Tamper)> = vec![
            ("address", Box::new(|b| b.address = other.chain.address())),
            ("listen", Box::new(|b| b.listen_addrs.push("/ip4/198.51.100.1/tcp/1".parse().unwrap()))),
            ("free", Box::new(|b| b.free_bytes += 1)),
            ("stored", Box::new(|b| b.stored_bytes -= 1)),
            ("gpus", Box::new(|b| b.gpus.clear())),
            ("price", Box::new(|b| b.price_per_gib_month /= 10)),
            ("version", Box::new(|b| b.version = "0.1.1".into())),
            ("timestamp", Box::new(|b| b.timestamp -= 1)),
        ];
        for (name, tamper) in tampers {
            let mut t = signed.clone();
            tamper(&mut t.body);
            // Re-encoding keeps the change on the wire; the peer signature (checked first) fails.
            let t = SignedAvailability::decode(&t.encode()).unwrap();
            let err = check(&t).unwrap_err();
            assert!(
                matches!(err, AnnounceError::BadPeerSignature(ref p) if *p == signed.body.peer_id.to_string()),
                "{name}: {err}"
            );
        }
        // With a valid peer signature over the changed body, the chain signature still catches it.
        let mut t = signed.clone();
        t.body.free_bytes = u64::MAX;
        t.peer_signature = f.identity.sign(&t.body.canonical_bytes()).unwrap();
        let err = check(&t).unwrap_err();
        assert!(
            matches!(err, AnnounceError::ChainSignerMismatch { ref claimed, .. } if *claimed == f.chain.address())
        );
    }

    #[test]
    fn foreign_signatures_are_rejected() {
        let f = Fixture::new();
        let signed = f.signed();
        let canonical = signed.body.canonical_bytes();
        // Chain signature by another key: recovers that key's address.
        let other = ChainKey::random();
        let mut t = signed.clone();
        t.chain_signature = bigfile_chain::sign_message(&other, &canonical);
        match check(&t).unwrap_err() {
            AnnounceError::ChainSignerMismatch { recovered, claimed } => {
                assert_eq!(recovered, other.address());
                assert_eq!(claimed, f.chain.address());
                let msg = AnnounceError::ChainSignerMismatch { recovered, claimed }.to_string();
                assert!(msg.starts_with("chain signature recovers 0x"), "{msg}");
            }
            e => panic!("unexpected {e}"),
        }
        // Garbled chain signature.
        let mut t = signed.clone();
        t.chain_signature[64] = 5;
        assert!(matches!(check(&t), Err(AnnounceError::ChainSignature(SignatureError::BadV(5)))));
        // Peer signature by another identity.
        let mut t = signed.clone();
        t.peer_signature = Keypair::generate_ed25519().sign(&canonical).unwrap();
        assert!(matches!(check(&t), Err(AnnounceError::BadPeerSignature(_))));
        // Peer id swapped for another ed25519 peer: its key did not sign.
        let mut t = signed.clone();
        t.body.peer_id = Keypair::generate_ed25519().public().to_peer_id();
        assert!(
            matches!(check(&t), Err(AnnounceError::BadPeerSignature(p)) if p == t.body.peer_id.to_string())
        );
        // Peer ids without an inline ed25519 key.
        let mut t = signed.clone();
        t.body.peer_id = PeerId::random();
        assert!(matches!(check(&t), Err(AnnounceError::PeerKeyNotInline(_))));
        let mut sha256_id = vec![0x12, 0x20];
        sha256_id.extend_from_slice(&[7u8; 32]);
        t.body.peer_id = PeerId::from_bytes(&sha256_id).unwrap();
        assert!(matches!(check(&t), Err(AnnounceError::PeerKeyNotInline(_))));
    }

    #[test]
    fn sign_refuses_foreign_bodies_and_limit_violations() {
        let f = Fixture::new();
        let mut body = f.body();
        body.peer_id = Keypair::generate_ed25519().public().to_peer_id();
        assert!(matches!(
            SignedAvailability::sign(body, &f.chain, &f.identity),
            Err(AnnounceError::PeerIdMismatch { .. })
        ));
        let mut body = f.body();
        body.address = ChainKey::random().address();
        assert!(matches!(
            SignedAvailability::sign(body, &f.chain, &f.identity),
            Err(AnnounceError::AddressMismatch { .. })
        ));
        let mut body = f.body();
        body.gpus = vec!["x".into(); MAX_GPUS + 1];
        let err = SignedAvailability::sign(body, &f.chain, &f.identity).unwrap_err();
        assert_eq!(err.to_string(), "gpus has 17 entries, limit 16");
        let mut body = f.body();
        body.version = "v".repeat(MAX_VERSION_BYTES + 1);
        assert!(matches!(
            SignedAvailability::sign(body, &f.chain, &f.identity),
            Err(AnnounceError::FieldTooLong { field: "version", len: 65, limit: 64 })
        ));
    }

    #[test]
    fn timestamps_outside_the_window_are_rejected() {
        let f = Fixture::new();
        let signed = f.signed();
        signed.verify(NOW + AGE, SKEW, AGE).unwrap();
        signed.verify(NOW - SKEW, SKEW, AGE).unwrap();
        let err = signed.verify(NOW + AGE + 1, SKEW, AGE).unwrap_err();
        assert!(matches!(err, AnnounceError::TooOld { age: 901, .. }));
        assert_eq!(err.to_string(), format!("timestamp {NOW} is 901 s old (max age 900 s)"));
        let err = signed.verify(NOW - 900, SKEW, AGE).unwrap_err();
        assert!(matches!(err, AnnounceError::FromFuture { ahead: 900, max_skew: 120, .. }));
        assert_eq!(err.to_string(), format!("timestamp {NOW} is 900 s in the future (max skew 120 s)"));
    }

    #[test]
    fn oversized_truncated_and_malformed_bytes_are_rejected() {
        let f = Fixture::new();
        let wire = f.signed().encode();
        let mut big = wire.clone();
        big.resize(MAX_ANNOUNCEMENT_BYTES + 904, 0);
        let err = SignedAvailability::decode(&big).unwrap_err();
        assert_eq!(err.to_string(), "announcement is 5000 bytes, limit 4096");
        for cut in 0..wire.len() {
            let err = SignedAvailability::decode(&wire[..cut]).unwrap_err();
            assert!(matches!(err, AnnounceError::Truncated { .. }), "cut {cut}: {err}");
        }
        let mut trailing = wire.clone();
        trailing.push(0);
        assert!(matches!(SignedAvailability::decode(&trailing), Err(AnnounceError::Trailing(1))));
        let mut domain = wire.clone();
        domain[22] = b'2';
        assert!(matches!(SignedAvailability::decode(&domain), Err(AnnounceError::Domain)));
        // A count over the limit is refused before anything is read or allocated.
        let peer_len = f.identity.public().to_peer_id().to_bytes().len();
        let count_at = 24 + 2 + peer_len + 20;
        let mut many = wire.clone();
        many[count_at..count_at + 2].copy_from_slice(&u16::MAX.to_be_bytes());
        assert!(matches!(
            SignedAvailability::decode(&many),
            Err(AnnounceError::TooMany { field: "listen addresses", count: 65535, limit: 16 })
        ));
        // A wrong peer signature length.
        let mut sig_len = wire.clone();
        let at = wire.len() - PEER_SIGNATURE_BYTES - 2;
        sig_len[at..at + 2].copy_from_slice(&63u16.to_be_bytes());
        assert!(matches!(SignedAvailability::decode(&sig_len), Err(AnnounceError::PeerSignatureLength(63))));
    }

    #[test]
    fn decode_never_panics_on_random_or_mutated_bytes() {
        let f = Fixture::new();
        let wire = f.signed().encode();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0xb16f11e);
        for i in 0..20_000 {
            let bytes: Vec<u8> = match i % 3 {
                0 => {
                    let len = rng.gen_range(0..600);
                    let mut v = DOMAIN_TAG.to_vec();
                    v.extend((0..len).map(|_| rng.r#gen::<u8>()));
                    v
                }
                1 => {
                    let mut v = wire.clone();
                    for _ in 0..rng.gen_range(1..4) {
                        let at = rng.gen_range(0..v.len());
                        v[at] = rng.r#gen();
                    }
                    v.truncate(rng.gen_range(0..=v.len()));
                    v
                }
                _ => (0..rng.gen_range(0..5000)).map(|_| rng.r#gen::<u8>()).collect(),
            };
            // Whatever decodes must re-encode to the same bytes and never verify by accident.
            if let Ok(a) = SignedAvailability::decode(&bytes) {
                assert_eq!(a.encode(), bytes);
                if a.encode() != wire {
                    assert!(check(&a).is_err());
                }
            }
        }
    }

    #[test]
    fn serializes_ids_and_addresses_as_strings() {
        let f = Fixture::new();
        let body = f.body();
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(json["peer_id"], body.peer_id.to_string());
        assert_eq!(json["listen_addrs"][0], "/ip4/203.0.113.7/tcp/4001");
        assert_eq!(json["address"], f.chain.address());
    }
}
