//! Deploying the BigFile contracts from Rust (what `devnet up` does), in the order and with the
//! wiring `chain/contracts/README.md` gives: BIG, ProviderRegistry, StorageMarket, then the
//! registry authorises the market.

use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use serde::{Deserialize, Serialize};

use crate::bindings::{BIG, ProviderRegistry, StorageMarket};

/// One BIG in its smallest unit (18 decimals).
pub const BIG_UNIT: u128 = 1_000_000_000_000_000_000;

/// The parameters of a deployment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeployParams {
    /// The whole fixed BIG supply, minted to the deployer.
    pub supply: U256,
    /// The smallest stake that lets a provider take slots.
    pub min_stake: U256,
    /// Blocks between an unbond request and the withdrawal.
    pub unbonding_blocks: u64,
    /// Blocks per proving period (2..=256).
    pub period_blocks: u64,
    /// Share of the slashable stake taken for a missed period, in basis points.
    pub slash_bps: u64,
}

impl Default for DeployParams {
    /// The devnet's values: 1 billion BIG, 1,000 BIG minimum stake, 20-block periods, 10 % slash.
    fn default() -> Self {
        Self {
            supply: U256::from(1_000_000_000u128 * BIG_UNIT),
            min_stake: U256::from(1_000u128 * BIG_UNIT),
            unbonding_blocks: 40,
            period_blocks: 20,
            slash_bps: 1_000,
        }
    }
}

impl DeployParams {
    /// Checks what the contracts' constructors check, so a bad value is refused before anything is
    /// deployed.
    pub fn validate(&self) -> Result<(), String> {
        if !(2..=256).contains(&self.period_blocks) {
            return Err(format!("period_blocks {} must be between 2 and 256", self.period_blocks));
        }
        if self.slash_bps > 10_000 {
            return Err(format!("slash_bps {} must be at most 10000", self.slash_bps));
        }
        if self.min_stake.is_zero() {
            return Err("min_stake must be positive".into());
        }
        Ok(())
    }
}

/// Where the contracts live on one chain.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Deployment {
    /// The BIG token.
    pub token: Address,
    /// The provider registry.
    pub registry: Address,
    /// The storage market.
    pub storage_market: Address,
    /// The block of the first deployment transaction: watchers start here.
    pub deploy_block: u64,
}

/// A deployment step failed; says which.
#[derive(Debug, thiserror::Error)]
#[error("deploying {step}: {source}")]
pub struct DeployError {
    step: &'static str,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

fn step<E: std::error::Error + Send + Sync + 'static>(step: &'static str) -> impl FnOnce(E) -> DeployError {
    move |e| DeployError { step, source: Box::new(e) }
}

/// Deploys and wires the contracts with `provider`'s wallet, whose address `owner` becomes the BIG
/// holder and the registry's owner.
pub async fn deploy<P: Provider>(
    provider: &P,
    owner: Address,
    params: &DeployParams,
) -> Result<Deployment, DeployError> {
    let deploy_block = provider.get_block_number().await.map_err(step("reading the block number"))?;
    let token = BIG::deploy(provider, owner, params.supply).await.map_err(step("BIG"))?;
    let registry = ProviderRegistry::deploy(
        provider,
        *token.address(),
        params.min_stake,
        U256::from(params.unbonding_blocks),
        owner,
    )
    .await
    .map_err(step("ProviderRegistry"))?;
    let market = StorageMarket::deploy(
        provider,
        *token.address(),
        *registry.address(),
        U256::from(params.period_blocks),
        U256::from(params.slash_bps),
    )
    .await
    .map_err(step("StorageMarket"))?;
    let receipt = registry
        .setMarket(*market.address(), true)
        .send()
        .await
        .map_err(step("authorising the market"))?
        .get_receipt()
        .await
        .map_err(step("authorising the market (receipt)"))?;
    if !receipt.status() {
        return Err(DeployError {
            step: "authorising the market",
            source: "the transaction reverted".into(),
        });
    }
    Ok(Deployment {
        token: *token.address(),
        registry: *registry.address(),
        storage_market: *market.address(),
        deploy_block: deploy_block + 1,
    })
}
