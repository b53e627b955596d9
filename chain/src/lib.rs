//! Chain side of the BigFile provider agent.
//!
//! For now it owns the provider's chain key, kept in an encrypted Web3 Secret Storage keystore, and
//! EIP-191 message signing with it (availability announcements);
//! contract bindings, the event watcher and the transaction sender arrive with the chain issue.

pub mod eip191;
pub mod keystore;

pub use alloy;
pub use eip191::{SignatureError, recover_address, sign_message};
pub use keystore::{ChainKey, InvalidPrivateKey, KeystoreError};

pub mod anvil;
pub mod bindings;
pub mod challenge;
pub mod deploy;
pub mod devnet;
pub mod errors;
pub mod sender;
pub mod watcher;

pub use errors::{CustomError, RevertReason, decode_revert};
pub use sender::{SendError, SenderConfig, SenderHandle, TxOutcome, TxRequest};
pub use watcher::{
    Cursor, CursorStore, Handler, HandlerError, LogBatch, Rewind, WatcherConfig, WatcherHandle, WatcherStatus,
};
