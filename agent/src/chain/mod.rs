//! The agent's side of the BigFile chain: one connection (views through a read-only provider,
//! transactions through the sender task that owns the account), the deal book, the event
//! handlers that take slots and follow deals, and the prover that answers each period's
//! challenges.

pub mod book;
pub mod deals;
pub mod events;
pub mod service;
pub mod steward;

use anyhow::{Context, Result};
use bigfile_chain::alloy::primitives::{Address, U256};
use bigfile_chain::alloy::providers::{DynProvider, Provider, ProviderBuilder};
use bigfile_chain::alloy::signers::local::PrivateKeySigner;
use bigfile_chain::bindings::{BIG, ProviderRegistry, StorageMarket};
use bigfile_chain::deploy::BIG_UNIT;
use bigfile_chain::sender::{self, SendError, SenderConfig, SenderHandle, TxOutcome, TxRequest};
use tokio_util::sync::CancellationToken;

use crate::config::ChainConfig;

/// What the agent's chain settings mean to the sender.
pub fn sender_config(cfg: &ChainConfig) -> SenderConfig {
    SenderConfig {
        chain_id: cfg.chain_id,
        max_fee_per_gas: u128::from(cfg.max_fee_gwei) * sender::GWEI,
        max_gas_per_tx: cfg.max_gas_per_tx,
        replace_after: std::time::Duration::from_secs(cfg.replace_after_secs),
        poll_interval: std::time::Duration::from_millis(cfg.poll_interval_ms),
        ..SenderConfig::default()
    }
}

/// A connection to the BigFile chain with this agent's account.
#[derive(Clone, Debug)]
pub struct ChainLink {
    /// Read-only provider for views and logs.
    pub provider: DynProvider,
    /// The account's transaction sender.
    pub sender: SenderHandle,
    /// The StorageMarket.
    pub market: Address,
    /// The ProviderRegistry (read from the market).
    pub registry: Address,
    /// The BIG token (read from the market).
    pub token: Address,
    /// Blocks per proving period.
    pub period_blocks: u64,
}

impl ChainLink {
    /// Connects: checks the chain id (before anything is signed), starts the sender and reads the
    /// registry, token and period length from the market.
    pub async fn connect(
        cfg: &ChainConfig,
        signer: PrivateKeySigner,
        cancel: CancellationToken,
    ) -> Result<Self> {
        anyhow::ensure!(cfg.enabled, "the chain is disabled in this config ([chain] enabled = false)");
        let market = cfg.market_address().context("chain.storage_market is not an address")?;
        let sender = sender::spawn(&cfg.rpc_url, signer, sender_config(cfg), cancel).await?;
        let url = cfg.rpc_url.parse().with_context(|| format!("chain.rpc_url {:?}", cfg.rpc_url))?;
        let provider = ProviderBuilder::new().connect_http(url).erased();
        let code = provider.get_code_at(market).await.context("reading the market's code")?;
        anyhow::ensure!(
            !code.is_empty(),
            "chain.storage_market {market} has no contract on chain {} (wrong address or chain?)",
            cfg.chain_id
        );
        let view = StorageMarket::new(market, &provider);
        let registry = view.registry().call().await.context("StorageMarket.registry()")?;
        let token = view.token().call().await.context("StorageMarket.token()")?;
        let period_blocks = view.periodBlocks().call().await.context("StorageMarket.periodBlocks()")?;
        Ok(Self { provider, sender, market, registry, token, period_blocks: period_blocks.saturating_to() })
    }

    /// This agent's address.
    pub fn me(&self) -> Address {
        self.sender.address()
    }

    /// The market, for views.
    pub fn market(&self) -> StorageMarket::StorageMarketInstance<&DynProvider> {
        StorageMarket::new(self.market, &self.provider)
    }

    /// The registry, for views.
    pub fn registry(&self) -> ProviderRegistry::ProviderRegistryInstance<&DynProvider> {
        ProviderRegistry::new(self.registry, &self.provider)
    }

    /// The token, for views.
    pub fn token(&self) -> BIG::BIGInstance<&DynProvider> {
        BIG::new(self.token, &self.provider)
    }

    /// The libp2p peer id `account` registered, if it registered a valid one.
    pub async fn peer_of(&self, account: Address) -> Option<libp2p::PeerId> {
        let bytes = self.registry().peerIdOf(account).call().await.ok()?;
        libp2p::PeerId::from_bytes(&bytes).ok()
    }

    /// Sends a call through the sender.
    pub async fn send<C: bigfile_chain::alloy::sol_types::SolCall>(
        &self,
        to: Address,
        call: &C,
        label: impl Into<String>,
    ) -> Result<TxOutcome, SendError> {
        self.sender.send(TxRequest::call(to, call, label)).await
    }

    /// Makes sure `spender` may move at least `amount` of this account's BIG (one approval of
    /// `amount` when the allowance is short).
    pub async fn ensure_allowance(&self, spender: Address, amount: U256) -> Result<()> {
        let allowance = self.token().allowance(self.me(), spender).call().await.context("BIG.allowance")?;
        if allowance < amount {
            let call = BIG::approveCall { spender, value: amount };
            self.send(self.token, &call, format!("approve {} BIG for {spender}", format_big(amount))).await?;
        }
        Ok(())
    }
}

/// BIG base units as a decimal BIG amount (`1234.5`).
pub fn format_big(units: U256) -> String {
    let unit = U256::from(BIG_UNIT);
    let whole = units / unit;
    let frac = units % unit;
    if frac.is_zero() {
        return whole.to_string();
    }
    let digits = format!("{:0>18}", frac.to_string());
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Parses a decimal BIG amount (`1000`, `0.25`) into base units.
pub fn parse_big(text: &str) -> Result<U256, String> {
    let text = text.trim();
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !(frac.is_empty() || digits(frac)) {
        return Err(format!("`{text}` is not an amount of BIG such as 1000 or 0.5"));
    }
    if frac.len() > 18 {
        return Err(format!("`{text}` has more than 18 decimals"));
    }
    let whole: U256 = whole.parse().map_err(|_| format!("`{text}` is too large"))?;
    let frac_units: U256 =
        if frac.is_empty() { U256::ZERO } else { format!("{frac:0<18}").parse().unwrap_or_default() };
    whole
        .checked_mul(U256::from(BIG_UNIT))
        .and_then(|w| w.checked_add(frac_units))
        .ok_or_else(|| format!("`{text}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_amounts_parse_and_print() {
        assert_eq!(parse_big("1000"), Ok(U256::from(1000u128 * BIG_UNIT)));
        assert_eq!(parse_big("0.5"), Ok(U256::from(BIG_UNIT / 2)));
        assert_eq!(format_big(U256::from(1000u128 * BIG_UNIT + BIG_UNIT / 4)), "1000.25");
        assert_eq!(format_big(U256::from(7u8)), "0.000000000000000007");
        for bad in ["", "-1", "1.2.3", "abc", "1.0000000000000000001", "1e3"] {
            assert!(parse_big(bad).is_err(), "{bad}");
        }
    }
}
