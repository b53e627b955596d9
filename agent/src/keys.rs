//! The node's two keys: the libp2p identity (ed25519) and the chain key (keystore), and where the
//! keystore password comes from.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use libp2p_identity::{Keypair, PeerId};

/// Name of the systemd credential holding the keystore password.
pub const PASSWORD_CREDENTIAL: &str = "keystore-password";

/// Writes a new ed25519 identity to `path` (mode 0600); refuses to overwrite one.
pub fn create_identity(path: &Path) -> Result<PeerId> {
    let key = Keypair::generate_ed25519();
    let bytes = key.to_protobuf_encoding().context("encoding the identity key")?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating identity key {}", path.display()))?;
    f.write_all(&bytes).and_then(|_| f.sync_all()).with_context(|| format!("writing {}", path.display()))?;
    Ok(key.public().to_peer_id())
}

/// Reads the identity at `path`, refusing a file that others can read.
pub fn load_identity(path: &Path) -> Result<Keypair> {
    let md = std::fs::metadata(path)
        .with_context(|| format!("identity key {} (run `bigfile-agent init`)", path.display()))?;
    let mode = md.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "identity key {} is readable by other users (mode {mode:o}); run `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Keypair::from_protobuf_encoding(&bytes)
        .with_context(|| format!("{} is not a libp2p identity key", path.display()))
}

/// Finds the keystore password: an explicit file first, then the systemd credential.
///
/// The password is the file's content without its trailing newline; it is never printed.
pub fn read_password(file: Option<&Path>) -> Result<Vec<u8>> {
    let path: PathBuf = match file {
        Some(f) => f.to_owned(),
        None => match std::env::var_os("CREDENTIALS_DIRECTORY") {
            Some(dir) => Path::new(&dir).join(PASSWORD_CREDENTIAL),
            None => bail!(
                "no keystore password: pass --password-file FILE, set node.password_file, \
                 or provide the systemd credential `{PASSWORD_CREDENTIAL}`"
            ),
        },
    };
    let mut pw = std::fs::read(&path).with_context(|| format!("reading password file {}", path.display()))?;
    while pw.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        pw.pop();
    }
    if pw.is_empty() {
        bail!("password file {} is empty", path.display());
    }
    Ok(pw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_round_trip_and_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("identity.key");
        let id = create_identity(&p).unwrap();
        assert_eq!(load_identity(&p).unwrap().public().to_peer_id(), id);
        assert!(create_identity(&p).is_err(), "must not overwrite an identity");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load_identity(&p).unwrap_err().to_string().contains("readable by other users"));
    }

    #[test]
    fn password_file_is_trimmed_and_empty_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, b"s3cret\n").unwrap();
        assert_eq!(read_password(Some(&p)).unwrap(), b"s3cret");
        std::fs::write(&p, b"\n").unwrap();
        assert!(read_password(Some(&p)).unwrap_err().to_string().contains("empty"));
    }
}
