//! EIP-191 personal-message signatures (version byte `0x45`, "Ethereum Signed Message").
//!
//! The signed digest is `keccak256("\x19Ethereum Signed Message:\n" ‖ decimal(len(message)) ‖ message)`
//! and the signature is the 65 bytes `r ‖ s ‖ v` with `v` = 27 or 28, exactly what `cast wallet sign`,
//! ethers' `signMessage` and web3's `eth.accounts.sign` produce. Any Ethereum tool, or a contract using
//! `ecrecover` on the same digest, recovers the signer's address from it.
//!
//! Recovery is strict, like OpenZeppelin's `ECDSA.recover`: `v` must be 27 or 28 (not 0/1 and not an
//! EIP-155 value) and `s` must be in the lower half of the curve order, so every message has exactly one
//! valid signature per key and what this module accepts a contract accepts too.

use std::str::FromStr;

use alloy_primitives::{Address, Signature, eip191_hash_message};
use alloy_signer::SignerSync;

use crate::ChainKey;

/// Why a signature or an address was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The signature is not 65 bytes.
    #[error("signature is {0} bytes, expected 65 (r ‖ s ‖ v)")]
    Length(usize),
    /// The recovery byte is not 27 or 28.
    #[error("signature recovery byte v is {0}, expected 27 or 28")]
    BadV(u8),
    /// `s` is in the upper half of the curve order (a malleated signature).
    #[error("signature s value is in the upper half of the curve order (malleable form)")]
    HighS,
    /// No public key can be recovered from the signature (r or s zero or out of range, or no point).
    #[error("invalid signature: {0}")]
    Invalid(String),
    /// A string is not a 20-byte hex address, or its mixed-case checksum is wrong.
    #[error("invalid address {address:?}: {why}")]
    Address {
        /// The string given.
        address: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// Signs `message` as an EIP-191 personal message; returns `r ‖ s ‖ v` with `v` = 27 or 28 and low `s`.
pub fn sign_message(key: &ChainKey, message: &[u8]) -> [u8; 65] {
    // Deterministic (RFC 6979) ECDSA with a valid in-memory key over a 32-byte digest cannot fail:
    // the nonce derivation retries internally until it finds a usable nonce.
    let sig = key.signer().sign_message_sync(message).expect("ECDSA signing with a valid secp256k1 key");
    // alloy already produces low-s signatures; normalising again costs nothing and guarantees it.
    sig.normalized_s().as_bytes()
}

/// Recovers the EIP-55 checksummed address that signed `message` as an EIP-191 personal message.
pub fn recover_address(message: &[u8], signature: &[u8]) -> Result<String, SignatureError> {
    let raw: &[u8; 65] = signature.try_into().map_err(|_| SignatureError::Length(signature.len()))?;
    let v = raw[64];
    let parity = match v {
        27 => false,
        28 => true,
        _ => return Err(SignatureError::BadV(v)),
    };
    let sig = Signature::from_bytes_and_parity(&raw[..64], parity);
    if sig.normalize_s().is_some() {
        return Err(SignatureError::HighS);
    }
    let address = sig
        .recover_address_from_prehash(&eip191_hash_message(message))
        .map_err(|e| SignatureError::Invalid(e.to_string()))?;
    Ok(address.to_checksum(None))
}

/// Formats 20 raw address bytes as an EIP-55 checksummed `0x…` string.
pub fn checksum_address(raw: &[u8; 20]) -> String {
    Address::from(*raw).to_checksum(None)
}

/// Parses a `0x`-prefixed (or bare) 40-hex-digit address into its 20 raw bytes.
///
/// All-lowercase and all-uppercase forms are accepted; a mixed-case form must carry a valid EIP-55
/// checksum, since a wrong one means the address was mistyped.
pub fn parse_address(address: &str) -> Result<[u8; 20], SignatureError> {
    let bad = |why| SignatureError::Address { address: address.to_owned(), why };
    let digits = address.strip_prefix("0x").unwrap_or(address);
    if digits.len() != 40 {
        return Err(bad("expected 40 hex digits"));
    }
    let parsed = Address::from_str(digits).map_err(|_| bad("not hexadecimal"))?;
    let has_lower = digits.bytes().any(|b| b.is_ascii_lowercase());
    let has_upper = digits.bytes().any(|b| b.is_ascii_uppercase());
    if has_lower && has_upper && parsed.to_checksum(None)[2..] != *digits {
        return Err(bad("mixed-case address with a wrong EIP-55 checksum"));
    }
    Ok(parsed.into_array())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Public test vector from the web3.js documentation (`web3.eth.accounts.sign('Some data', key)`).
    const VECTOR_KEY: &str = "0x4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
    const VECTOR_SIG: &str = "b91467e570a6466aa9e9876cbcd013baba02900b8979d43fe208a4a4f339f5fd\
                              6007e74cd82e037b800186422fc2da167c747ef045e5d18a5f5d4300f8e1a0291c";
    const VECTOR_ADDRESS: &str = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23";

    fn vector_sig() -> Vec<u8> {
        alloy_primitives::hex::decode(VECTOR_SIG).unwrap()
    }

    #[test]
    fn known_vector_matches_web3() {
        let key = ChainKey::from_private_key_hex(VECTOR_KEY).unwrap();
        assert_eq!(key.address(), VECTOR_ADDRESS);
        let sig = sign_message(&key, b"Some data");
        assert_eq!(sig.to_vec(), vector_sig());
        assert_eq!(sig[64], 28);
        assert_eq!(recover_address(b"Some data", &sig).unwrap(), VECTOR_ADDRESS);
    }

    #[test]
    fn round_trip_with_random_keys() {
        for len in [0usize, 1, 9, 10, 99, 100, 1000] {
            let key = ChainKey::random();
            let msg = vec![0xa5u8; len];
            let sig = sign_message(&key, &msg);
            assert!(sig[64] == 27 || sig[64] == 28);
            assert_eq!(recover_address(&msg, &sig).unwrap(), key.address());
        }
        assert_ne!(ChainKey::random().address(), ChainKey::random().address());
    }

    #[test]
    fn tampering_changes_signer_or_errors() {
        let sig = vector_sig();
        // A different message recovers some other address (or none).
        match recover_address(b"Some datA", &sig) {
            Ok(addr) => assert_ne!(addr, VECTOR_ADDRESS),
            Err(e) => assert!(matches!(e, SignatureError::Invalid(_))),
        }
        // A flipped bit in r or s.
        for i in [0usize, 31, 32, 63] {
            let mut bad = sig.clone();
            bad[i] ^= 0x01;
            match recover_address(b"Some data", &bad) {
                Ok(addr) => assert_ne!(addr, VECTOR_ADDRESS, "byte {i}"),
                Err(e) => assert!(matches!(e, SignatureError::Invalid(_) | SignatureError::HighS), "{e}"),
            }
        }
        // The other parity recovers another key.
        let mut flipped = sig.clone();
        flipped[64] = 27;
        assert_ne!(recover_address(b"Some data", &flipped).unwrap(), VECTOR_ADDRESS);
    }

    #[test]
    fn malformed_signatures_are_typed_errors() {
        let sig = vector_sig();
        assert_eq!(recover_address(b"x", &sig[..64]), Err(SignatureError::Length(64)));
        assert_eq!(recover_address(b"x", &[]), Err(SignatureError::Length(0)));
        let mut long = sig.clone();
        long.push(0);
        assert_eq!(recover_address(b"x", &long), Err(SignatureError::Length(66)));
        for v in [0u8, 1, 29, 37, 255] {
            let mut bad = sig.clone();
            bad[64] = v;
            assert_eq!(recover_address(b"Some data", &bad), Err(SignatureError::BadV(v)));
        }
        let zero = [0u8; 64].iter().copied().chain([27]).collect::<Vec<_>>();
        assert!(matches!(recover_address(b"Some data", &zero), Err(SignatureError::Invalid(_))));
        // The malleated twin (n - s, other parity) is valid ECDSA but refused.
        let s = Signature::from_raw(&sig).unwrap();
        assert!(s.normalize_s().is_none(), "the vector is low-s");
        let secp_n = alloy_primitives::U256::from_str_radix(
            "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141",
            16,
        )
        .unwrap();
        let malleated = Signature::new(s.r(), secp_n - s.s(), !s.v()).as_bytes();
        assert_eq!(recover_address(b"Some data", &malleated), Err(SignatureError::HighS));
    }

    #[test]
    fn private_key_hex_is_checked() {
        let bare = ChainKey::from_private_key_hex(&VECTOR_KEY[2..]).unwrap();
        assert_eq!(bare.address(), VECTOR_ADDRESS);
        let err = |s: &str| ChainKey::from_private_key_hex(s).err().unwrap().to_string();
        assert_eq!(err("0x1234"), "invalid private key: expected 64 hex digits, got 4");
        assert_eq!(err(&"g".repeat(64)), "invalid private key: not hexadecimal");
        assert!(err(&"0".repeat(64)).contains("zero or not below"));
        assert!(err(&"f".repeat(64)).contains("zero or not below"));
    }

    #[test]
    fn addresses_parse_and_checksum() {
        let raw = parse_address(VECTOR_ADDRESS).unwrap();
        assert_eq!(checksum_address(&raw), VECTOR_ADDRESS);
        assert_eq!(parse_address(&VECTOR_ADDRESS.to_lowercase()).unwrap(), raw);
        assert_eq!(parse_address(&VECTOR_ADDRESS[2..].to_uppercase()).unwrap(), raw);
        let wrong_case = VECTOR_ADDRESS.replace('E', "e").replacen('c', "C", 1);
        assert!(matches!(parse_address(&wrong_case), Err(SignatureError::Address { .. })));
        assert!(matches!(parse_address("0x1234"), Err(SignatureError::Address { .. })));
        assert!(matches!(
            parse_address(&format!("0x{}", "zz".repeat(20))),
            Err(SignatureError::Address { .. })
        ));
    }
}
