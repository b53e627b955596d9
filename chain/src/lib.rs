//! Chain side of the BigFile provider agent: the provider's chain key (encrypted Web3 Secret
//! Storage keystore, EIP-191 signing), typed bindings to the BigFile contracts, the event
//! [`watcher`] (confirmations, cursor, reorg rewind), the transaction [`sender`] (nonces, fees,
//! replacement, decoded reverts), the storage [`challenge`] and the [`compute`] market's draws
//! computed as the contracts do, and the local [`devnet`] (anvil + deployment from Rust). It
//! depends on no other BigFile crate.

pub mod eip191;
pub mod keystore;

pub use alloy;
pub use eip191::{SignatureError, recover_address, sign_message};
pub use keystore::{ChainKey, InvalidPrivateKey, KeystoreError};

pub mod anvil;
pub mod bindings;
pub mod challenge;
pub mod compute;
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
