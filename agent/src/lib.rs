//! The BigFile provider agent: the daemon (`run`) and the operator CLI.
//!
//! `main.rs` only calls [`cli::main`]. Each concept has its module: configuration, keys, logging,
//! the daemon's task tree, the local HTTP API and its metrics, and one module per CLI area.

pub mod api;
pub mod book;
pub mod chain;
pub mod cli;
pub mod compute;
pub mod config;
pub mod daemon;
pub mod keys;
pub mod logging;
pub mod metrics;
pub mod net;
