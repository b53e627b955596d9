//! The provider's secp256k1 chain key in an encrypted keystore (Web3 Secret Storage v3: scrypt
//! and AES-128-CTR), the format geth, Foundry's `cast wallet` and MetaMask import.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use alloy_signer_local::{LocalSignerError, PrivateKeySigner};

/// Why a keystore could not be created or opened; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    /// The keystore file does not exist.
    #[error("keystore {0} does not exist (run `bigfile-agent init` to create one)")]
    Missing(PathBuf),
    /// Other users can read the keystore.
    #[error("keystore {path} is readable by other users (mode {mode:o}); run `chmod 600 {path}`")]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The password does not decrypt the keystore.
    #[error("wrong password for keystore {0}")]
    WrongPassword(PathBuf),
    /// The file is not a valid keystore.
    #[error("keystore {path} is not a valid Web3 Secret Storage file: {why}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A keystore already exists where a new one would be written.
    #[error("keystore {0} already exists; refusing to overwrite a key that may hold funds")]
    Exists(PathBuf),
    /// Reading or writing failed.
    #[error("keystore {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// A private key given as hex is malformed; the message says why without repeating the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid private key: {0}")]
pub struct InvalidPrivateKey(String);

/// The provider's chain key, decrypted in memory.
pub struct ChainKey {
    signer: PrivateKeySigner,
}

impl ChainKey {
    /// Generates a key and writes it encrypted with `password` to `path` (mode 0600).
    pub fn create(path: &Path, password: &[u8]) -> Result<Self, KeystoreError> {
        let key = ChainKey::random();
        key.save(path, password)?;
        Ok(key)
    }

    /// Writes this key encrypted with `password` to a new keystore at `path` (mode 0600), e.g. a
    /// devnet account's key for `init --devnet`. Refuses to overwrite a file.
    pub fn save(&self, path: &Path, password: &[u8]) -> Result<(), KeystoreError> {
        if path.exists() {
            return Err(KeystoreError::Exists(path.to_owned()));
        }
        let io = |source| KeystoreError::Io { path: path.to_owned(), source };
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| KeystoreError::Invalid {
            path: path.to_owned(),
            why: "file name is not UTF-8".into(),
        })?;
        let key = self.signer.to_bytes();
        PrivateKeySigner::encrypt_keystore(dir, &mut rand::thread_rng(), key, password, Some(name))
            .map_err(|e| KeystoreError::Invalid { path: path.to_owned(), why: e.to_string() })?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)
    }

    /// Opens and decrypts the keystore at `path`, refusing one that others can read.
    pub fn open(path: &Path, password: &[u8]) -> Result<Self, KeystoreError> {
        let md = std::fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => KeystoreError::Missing(path.to_owned()),
            _ => KeystoreError::Io { path: path.to_owned(), source: e },
        })?;
        let mode = md.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeystoreError::Permissions { path: path.to_owned(), mode });
        }
        let signer = PrivateKeySigner::decrypt_keystore(path, password).map_err(|e| match e {
            LocalSignerError::EthKeystoreError(eth) if eth.to_string().contains("Mac Mismatch") => {
                KeystoreError::WrongPassword(path.to_owned())
            }
            other => KeystoreError::Invalid { path: path.to_owned(), why: other.to_string() },
        })?;
        Ok(ChainKey { signer })
    }

    /// An ephemeral random key held only in memory, for clients and tests that need no keystore.
    pub fn random() -> Self {
        ChainKey { signer: PrivateKeySigner::random() }
    }

    /// A key from 32 bytes of hex (64 digits, optional `0x`), for well-known devnet keys and tests.
    ///
    /// Never use this for a key that holds real funds: keep those in a keystore ([`ChainKey::open`]).
    /// The error does not echo the input, so a mistyped key does not end up in logs.
    pub fn from_private_key_hex(hex: &str) -> Result<Self, InvalidPrivateKey> {
        let digits = hex.trim().strip_prefix("0x").unwrap_or(hex.trim());
        if digits.len() != 64 {
            return Err(InvalidPrivateKey(format!("expected 64 hex digits, got {}", digits.len())));
        }
        let bytes =
            alloy_primitives::hex::decode(digits).map_err(|_| InvalidPrivateKey("not hexadecimal".into()))?;
        let signer = PrivateKeySigner::from_slice(&bytes)
            .map_err(|_| InvalidPrivateKey("zero or not below the secp256k1 group order".into()))?;
        Ok(ChainKey { signer })
    }

    /// The key's Ethereum address, EIP-55 checksummed.
    pub fn address(&self) -> String {
        self.signer.address().to_checksum(None)
    }

    /// The signer, for the parts of the agent that sign messages and transactions.
    pub fn signer(&self) -> &PrivateKeySigner {
        &self.signer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_open_and_refuse_bad_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keystore.json");
        let key = ChainKey::create(&path, b"correct horse").unwrap();
        let imported = ChainKey::from_private_key_hex(&format!("{}", key.signer().to_bytes())).unwrap();
        assert_eq!(imported.address(), key.address());
        assert!(matches!(imported.save(&path, b"x"), Err(KeystoreError::Exists(_))));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(ChainKey::open(&path, b"correct horse").unwrap().address(), key.address());
        assert!(matches!(ChainKey::open(&path, b"wrong"), Err(KeystoreError::WrongPassword(_))));
        assert!(matches!(ChainKey::create(&path, b"x"), Err(KeystoreError::Exists(_))));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(ChainKey::open(&path, b"correct horse"), Err(KeystoreError::Permissions { .. })));
        let missing = dir.path().join("nope.json");
        assert!(matches!(ChainKey::open(&missing, b"x"), Err(KeystoreError::Missing(_))));
        let garbage = dir.path().join("garbage.json");
        std::fs::write(&garbage, b"{not json").unwrap();
        std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(ChainKey::open(&garbage, b"x"), Err(KeystoreError::Invalid { .. })));
    }
}
