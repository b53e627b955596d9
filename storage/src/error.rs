//! Errors of the shard store.

use std::path::PathBuf;

use crate::manifest::ObjectId;

/// A record, manifest or identifier could not be decoded; says what and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {why}")]
pub struct DecodeError {
    /// What was being decoded.
    pub what: &'static str,
    /// Why it was rejected.
    pub why: String,
}

impl DecodeError {
    /// Builds an error for `what` (a record kind) failing because of `why`.
    pub fn new(what: &'static str, why: impl Into<String>) -> Self {
        DecodeError { what, why: why.into() }
    }
}

/// Everything that can go wrong in the store. No variant leaves the store inconsistent.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process (usually the running agent) holds the database lock.
    #[error("the store at {path} is in use by another process (is `bigfile-agent run` running?)")]
    Locked {
        /// The store directory.
        path: PathBuf,
    },
    /// The data directory cannot be created or opened.
    #[error("cannot open the store at {path}: {source}")]
    Open {
        /// The store directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The disk holding the store has no space left.
    #[error("disk full: no space left under {path}; the object was not stored and nothing else changed")]
    DiskFull {
        /// The store directory.
        path: PathBuf,
    },
    /// The filesystem lacks room for the put with its safety margin; refused before writing.
    #[error(
        "disk full: storing this needs about {needed} bytes on disk plus the {reserve}-byte reserve \
         (storage.disk_reserve), but only {free} bytes are free under {path}; nothing was written"
    )]
    DiskSpace {
        /// The store directory.
        path: PathBuf,
        /// Estimated bytes the put will occupy on disk.
        needed: u64,
        /// Bytes free on the filesystem.
        free: u64,
        /// Bytes kept free.
        reserve: u64,
    },
    /// The configured capacity would be exceeded.
    #[error(
        "capacity exceeded: the object needs {needed} bytes but only {free} of {capacity} are free \
         (raise storage.capacity or remove objects)"
    )]
    Capacity {
        /// Bytes the object would occupy.
        needed: u64,
        /// Bytes still free under the capacity.
        free: u64,
        /// The configured capacity.
        capacity: u64,
    },
    /// No such object in this store.
    #[error("object {0} is not in this store")]
    NotFound(ObjectId),
    /// This store does not hold the shard (neither as a held shard nor in a whole object).
    #[error("shard {index} of object {object} is not held by this store")]
    ShardNotHeld {
        /// Object id (hex).
        object: String,
        /// Shard index.
        index: u16,
    },
    /// Shard data offered to `put_shard` does not hash to the manifest's shard root.
    #[error("shard {index} of object {object} does not match the manifest's shard root; nothing was stored")]
    ShardRootMismatch {
        /// Object id (hex).
        object: String,
        /// Shard index.
        index: u16,
    },
    /// A block read from a single shard is missing or corrupt, and is not repaired by that read.
    #[error("block {block} of shard {shard} of object {object} is damaged ({problem})")]
    DamagedBlock {
        /// Object id (hex).
        object: String,
        /// Shard index.
        shard: u16,
        /// Block number within the shard.
        block: u32,
        /// What is wrong with it.
        problem: String,
    },
    /// A stored record is damaged beyond what parity can repair.
    #[error("corrupt store record: {0}")]
    Corrupt(DecodeError),
    /// Parameters for a put are invalid.
    #[error("invalid parameters: {0}")]
    Params(DecodeError),
    /// Too many shards of a stripe are missing or damaged.
    #[error("object {id} cannot be read: stripe {stripe} has {good} intact shards and needs {needed}")]
    Unrecoverable {
        /// The object.
        id: ObjectId,
        /// The stripe that cannot be rebuilt.
        stripe: u64,
        /// Intact shards found.
        good: usize,
        /// Shards needed (k).
        needed: usize,
    },
    /// The input ended early or failed.
    #[error("reading the input failed: {0}")]
    Input(std::io::Error),
    /// Writing the output failed.
    #[error("writing the output failed: {0}")]
    Output(std::io::Error),
    /// The database failed.
    #[error("database error: {0}")]
    Db(sled::Error),
}

impl StoreError {
    /// Maps a sled error, recognising a full disk.
    pub(crate) fn from_db(e: sled::Error, path: &std::path::Path) -> Self {
        match &e {
            sled::Error::Io(io) if is_disk_full(io) => StoreError::DiskFull { path: path.to_owned() },
            _ => StoreError::Db(e),
        }
    }
}

/// True for ENOSPC and EDQUOT.
pub(crate) fn is_disk_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::StorageFull
        || matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

impl From<sled::transaction::TransactionError<StoreError>> for StoreError {
    fn from(e: sled::transaction::TransactionError<StoreError>) -> Self {
        match e {
            sled::transaction::TransactionError::Abort(e) => e,
            sled::transaction::TransactionError::Storage(e) => StoreError::Db(e),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
