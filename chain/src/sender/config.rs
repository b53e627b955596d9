//! The sender's settings.
//!
//! A plain Rust struct with proper types (wei, [`Duration`]); the agent fills it from its `[chain]`
//! section. Problems and budget errors name the agent's keys (`chain.max_fee_gwei`,
//! `chain.max_gas_per_tx`, ...), so a user knows what to change.

use std::time::Duration;

/// Wei per gwei.
pub const GWEI: u128 = 1_000_000_000;

/// Smallest fee bump that nodes accept for a replacement: geth and reth refuse one that raises
/// the fee cap or the priority fee by less than 10 % ("replacement transaction underpriced").
pub const MIN_FEE_BUMP_PERCENT: u32 = 10;

/// How the sender spends the account's ETH and how patiently it waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SenderConfig {
    /// The chain the contracts live on (`chain.chain_id`). The RPC endpoint must report exactly
    /// this id, and every transaction is signed for it (EIP-155), so a signed transaction is
    /// useless on any other chain. The default, 0, is refused.
    pub chain_id: u64,
    /// Cap on the fee per gas (EIP-1559 `maxFeePerGas`), in wei (`chain.max_fee_gwei` × [`GWEI`]).
    /// The sender never signs above it, not even to replace a stuck transaction; while the base
    /// fee is above it, sends fail with [`super::SendError::OverBudget`] naming that key.
    pub max_fee_per_gas: u128,
    /// Most gas one transaction may use (`chain.max_gas_per_tx`). A call whose estimate is above
    /// it is refused before it is signed.
    pub max_gas_per_tx: u64,
    /// Head room added to the gas estimate, in percent (`chain.gas_margin_percent`): state can
    /// change between the estimate and the block (a storage slot going from zero to non-zero
    /// costs more).
    pub gas_margin_percent: u32,
    /// How long a transaction may wait unmined before it is signed again with higher fees
    /// (`chain.replace_after_secs`).
    pub replace_after: Duration,
    /// How much a replacement raises both the fee cap and the priority fee, in percent, at least
    /// [`MIN_FEE_BUMP_PERCENT`] (`chain.fee_bump_percent`).
    pub fee_bump_percent: u32,
    /// Most replacements of one transaction; after that the last version is re-broadcast as is
    /// (`chain.max_replacements`).
    pub max_replacements: u32,
    /// How long a caller waits for its transaction to be mined (`chain.receipt_timeout_secs`).
    /// The transaction is not abandoned then: the sender keeps tracking and re-broadcasting it.
    pub receipt_timeout: Duration,
    /// How often pending transactions are checked (`chain.poll_interval_ms`).
    pub poll_interval: Duration,
    /// How long one RPC request may take before the node counts as unreachable
    /// (`chain.rpc_timeout_secs`).
    pub rpc_timeout: Duration,
    /// Most transactions in flight (broadcast, not yet mined) at once; further sends wait
    /// (`chain.max_in_flight`). Nodes keep only so many pending transactions per account (geth:
    /// 16).
    pub max_in_flight: usize,
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            chain_id: 0,
            max_fee_per_gas: 500 * GWEI,
            max_gas_per_tx: 10_000_000,
            gas_margin_percent: 20,
            replace_after: Duration::from_secs(30),
            fee_bump_percent: 20,
            max_replacements: 5,
            receipt_timeout: Duration::from_secs(600),
            poll_interval: Duration::from_secs(1),
            rpc_timeout: Duration::from_secs(10),
            max_in_flight: 16,
        }
    }
}

/// One bad value in a [`SenderConfig`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The configuration key it comes from, e.g. `chain.fee_bump_percent`.
    pub key: &'static str,
    /// What is wrong with its value.
    pub message: String,
}

impl std::fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl SenderConfig {
    /// The defaults with `chain_id` set.
    pub fn new(chain_id: u64) -> Self {
        SenderConfig { chain_id, ..Self::default() }
    }

    /// Every problem with the values; empty when the configuration is usable.
    pub fn validate(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let mut bad = |key: &'static str, message: String| problems.push(ConfigProblem { key, message });
        if self.chain_id == 0 {
            bad("chain.chain_id", "must be set to the id of the chain the contracts are on".into());
        }
        if self.max_fee_per_gas == 0 {
            bad("chain.max_fee_gwei", "must be greater than 0".into());
        }
        if self.max_gas_per_tx < 21_000 {
            bad(
                "chain.max_gas_per_tx",
                format!("must be at least 21000, a plain transfer (is {})", self.max_gas_per_tx),
            );
        }
        if self.gas_margin_percent > 100 {
            bad("chain.gas_margin_percent", format!("must be at most 100 (is {})", self.gas_margin_percent));
        }
        if !(MIN_FEE_BUMP_PERCENT..=100).contains(&self.fee_bump_percent) {
            bad(
                "chain.fee_bump_percent",
                format!(
                    "must be from {MIN_FEE_BUMP_PERCENT} (nodes refuse smaller replacement bumps) to 100 (is {})",
                    self.fee_bump_percent
                ),
            );
        }
        if self.max_replacements > 100 {
            bad("chain.max_replacements", format!("must be at most 100 (is {})", self.max_replacements));
        }
        if self.poll_interval < Duration::from_millis(10) || self.poll_interval > Duration::from_secs(60) {
            bad(
                "chain.poll_interval_ms",
                format!("must be from 10 ms to 60 s (is {:?})", self.poll_interval),
            );
        }
        if self.replace_after < self.poll_interval {
            bad(
                "chain.replace_after_secs",
                format!(
                    "must be at least the poll interval {:?} (is {:?})",
                    self.poll_interval, self.replace_after
                ),
            );
        }
        if self.receipt_timeout < self.poll_interval {
            bad(
                "chain.receipt_timeout_secs",
                format!(
                    "must be at least the poll interval {:?} (is {:?})",
                    self.poll_interval, self.receipt_timeout
                ),
            );
        }
        if self.rpc_timeout.is_zero() || self.rpc_timeout > Duration::from_secs(300) {
            bad("chain.rpc_timeout_secs", format!("must be from 1 ms to 300 s (is {:?})", self.rpc_timeout));
        }
        if !(1..=1024).contains(&self.max_in_flight) {
            bad("chain.max_in_flight", format!("must be from 1 to 1024 (is {})", self.max_in_flight));
        }
        problems
    }

    /// The gas limit for an estimate: the estimate plus the margin, capped by the budget.
    pub(crate) fn gas_limit_for(&self, estimate: u64) -> u64 {
        let margin = estimate.saturating_mul(u64::from(self.gas_margin_percent)) / 100;
        estimate.saturating_add(margin).min(self.max_gas_per_tx)
    }
}

/// `value` raised by `percent`, rounded up and by at least 1 wei, so a replacement always clears
/// the node's minimum bump even for tiny fees (10 % of 1 wei rounds to nothing).
pub(crate) fn bump(value: u128, percent: u32) -> u128 {
    let raise = value.saturating_mul(u128::from(percent)).div_ceil(100).max(1);
    value.saturating_add(raise)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_only_a_chain_id() {
        let problems = SenderConfig::default().validate();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key, "chain.chain_id");
        assert!(SenderConfig::new(1).validate().is_empty());
    }

    #[test]
    fn every_bad_value_is_named() {
        let config = SenderConfig {
            chain_id: 1,
            max_fee_per_gas: 0,
            max_gas_per_tx: 100,
            gas_margin_percent: 500,
            replace_after: Duration::from_millis(5),
            fee_bump_percent: 5,
            max_replacements: 1000,
            receipt_timeout: Duration::ZERO,
            poll_interval: Duration::from_millis(1),
            rpc_timeout: Duration::ZERO,
            max_in_flight: 0,
        };
        let keys: Vec<&str> = config.validate().into_iter().map(|p| p.key).collect();
        for key in [
            "chain.max_fee_gwei",
            "chain.max_gas_per_tx",
            "chain.gas_margin_percent",
            "chain.fee_bump_percent",
            "chain.max_replacements",
            "chain.poll_interval_ms",
            "chain.receipt_timeout_secs",
            "chain.rpc_timeout_secs",
            "chain.max_in_flight",
        ] {
            assert!(keys.contains(&key), "{key} not reported in {keys:?}");
        }
        let slow_poll = SenderConfig { poll_interval: Duration::from_secs(5), ..SenderConfig::new(1) };
        assert!(
            SenderConfig { replace_after: Duration::from_secs(1), ..slow_poll }
                .validate()
                .iter()
                .any(|p| p.key == "chain.replace_after_secs")
        );
    }

    #[test]
    fn bumps_round_up_and_clear_the_node_minimum() {
        assert_eq!(bump(1, 10), 2);
        assert_eq!(bump(0, 10), 1);
        assert_eq!(bump(1_000, 10), 1_100);
        assert_eq!(bump(1_001, 10), 1_102);
        for value in [1u128, 7, 999, 1_000_000_007, 3_000_000_000] {
            let bumped = bump(value, MIN_FEE_BUMP_PERCENT);
            assert!(bumped * 100 >= value * 110, "{value} -> {bumped}");
        }
        assert_eq!(bump(u128::MAX, 50), u128::MAX);
    }

    #[test]
    fn gas_limit_adds_the_margin_within_the_budget() {
        let config = SenderConfig { max_gas_per_tx: 100_000, ..SenderConfig::new(1) };
        assert_eq!(config.gas_limit_for(50_000), 60_000);
        assert_eq!(config.gas_limit_for(90_000), 100_000);
    }
}
