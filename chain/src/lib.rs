//! Chain side of the BigFile provider agent.
//!
//! For now it owns the provider's chain key, kept in an encrypted Web3 Secret Storage keystore;
//! contract bindings, the event watcher and the transaction sender arrive with the chain issue.

pub mod keystore;

pub use keystore::{ChainKey, KeystoreError};
