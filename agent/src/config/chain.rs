//! `[chain]`: the BigFile L2 the agent earns on: where its RPC and contracts are, how deep blocks
//! must be before they count, what a transaction may cost, and when proofs go out.

use serde::{Deserialize, Serialize};

use super::Problem;

/// `[chain]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChainConfig {
    /// Take part in the chain at all (deals, proofs, rewards). Off: storage network only.
    pub enabled: bool,
    /// The L2's HTTP JSON-RPC endpoint.
    pub rpc_url: String,
    /// The chain id the endpoint must report; nothing is signed for any other chain.
    pub chain_id: u64,
    /// The StorageMarket contract; the registry and the BIG token are read from it.
    pub storage_market: String,
    /// The ComputeMarket contract (same registry and token); empty: this node takes no compute
    /// jobs and verifies none.
    pub compute_market: String,
    /// The block the contracts were deployed in: the event watcher starts there.
    pub start_block: u64,
    /// Blocks a block must be buried under before its events are acted on.
    pub confirmations: u64,
    /// Milliseconds between polls for new blocks.
    pub poll_interval_ms: u64,
    /// Highest fee per gas this agent ever pays, in gwei (the gas budget's price cap).
    pub max_fee_gwei: u64,
    /// Most gas one transaction may use (the gas budget's size cap).
    pub max_gas_per_tx: u64,
    /// Seconds without a receipt before a transaction is re-sent with higher fees.
    pub replace_after_secs: u64,
    /// Proofs go out at least this many blocks before their period ends.
    pub proof_margin_blocks: u64,
    /// Most proofs in one transaction.
    pub proof_batch: usize,
    /// Take free slots of deals whose shards this node holds (a provider's earning switch).
    pub take_slots: bool,
    /// What `client put` offers when it creates a deal.
    pub deal: DealDefaults,
}

/// `[chain.deal]`: what a deal created by `client put` pays and lasts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DealDefaults {
    /// Proving periods the deal lasts.
    pub periods: u32,
    /// BIG base units paid per shard slot and proven period.
    pub price_per_slot_period: u64,
}

impl Default for DealDefaults {
    fn default() -> Self {
        DealDefaults { periods: 10, price_per_slot_period: 1_000_000_000_000_000 }
    }
}

impl Default for ChainConfig {
    fn default() -> Self {
        ChainConfig {
            enabled: false,
            rpc_url: "http://127.0.0.1:8545".into(),
            chain_id: 0,
            storage_market: String::new(),
            compute_market: String::new(),
            start_block: 0,
            confirmations: 2,
            poll_interval_ms: 1000,
            max_fee_gwei: 500,
            max_gas_per_tx: 10_000_000,
            replace_after_secs: 30,
            proof_margin_blocks: 4,
            proof_batch: 32,
            take_slots: true,
            deal: DealDefaults::default(),
        }
    }
}

impl ChainConfig {
    /// The market's address (valid after `validate` when enabled).
    pub fn market_address(&self) -> Option<bigfile_chain::alloy::primitives::Address> {
        self.storage_market.parse().ok()
    }

    /// The compute market's address, when one is configured (valid after `validate`).
    pub fn compute_market_address(&self) -> Option<bigfile_chain::alloy::primitives::Address> {
        self.compute_market.parse().ok()
    }

    /// Appends every problem with `[chain]` to `problems`.
    pub fn validate(&self, problems: &mut Vec<Problem>) {
        let mut bad =
            |key: &str, message: String| problems.push(Problem { key: format!("chain.{key}"), message });
        if !self.enabled {
            return;
        }
        match self.rpc_url.split_once("://") {
            Some(("http" | "https", rest)) if !rest.is_empty() => {}
            _ => bad("rpc_url", format!("`{}` is not an http:// or https:// URL", self.rpc_url)),
        }
        if self.chain_id == 0 {
            bad(
                "chain_id",
                "must be set: the id of the chain rpc_url serves (nothing is signed for another)".into(),
            );
        }
        if self.market_address().is_none() {
            bad(
                "storage_market",
                format!("`{}` is not a 0x-prefixed 20-byte contract address", self.storage_market),
            );
        }
        if !self.compute_market.is_empty() && self.compute_market_address().is_none() {
            bad(
                "compute_market",
                format!(
                    "`{}` is not a 0x-prefixed 20-byte contract address (or empty for none)",
                    self.compute_market
                ),
            );
        }
        if self.confirmations > 64 {
            bad("confirmations", "must be at most 64".into());
        }
        if self.poll_interval_ms < 50 || self.poll_interval_ms > 60_000 {
            bad("poll_interval_ms", "must be from 50 to 60000".into());
        }
        if self.max_fee_gwei == 0 {
            bad("max_fee_gwei", "must be greater than 0".into());
        }
        if self.max_gas_per_tx < 100_000 || self.max_gas_per_tx > 60_000_000 {
            bad("max_gas_per_tx", "must be from 100000 to 60000000".into());
        }
        if self.replace_after_secs == 0 || self.replace_after_secs > 3600 {
            bad("replace_after_secs", "must be from 1 to 3600".into());
        }
        if self.proof_margin_blocks == 0 {
            bad("proof_margin_blocks", "must be at least 1".into());
        }
        if self.proof_batch == 0 || self.proof_batch > 256 {
            bad("proof_batch", "must be from 1 to 256".into());
        }
        if self.deal.periods < 2 {
            bad("deal.periods", "must be at least 2".into());
        }
        if self.deal.price_per_slot_period == 0 {
            bad("deal.price_per_slot_period", "must be greater than 0".into());
        }
    }
}
