//! Deploying the BigFile contracts from Rust (what `devnet up` does), in the order and with the
//! wiring `chain/contracts/README.md` gives: BIG, ProviderRegistry, StorageMarket and
//! ComputeMarket, then the registry authorises both markets.

use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use serde::{Deserialize, Serialize};

use crate::bindings::{BIG, ComputeMarket, IComputeMarket, ProviderRegistry, StorageMarket};

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
    /// The compute market's parameters.
    pub compute: ComputeParams,
}

/// The compute market's constructor parameters.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct ComputeParams {
    /// Verifiers drawn per result (1..=16).
    pub verifiers_per_job: u16,
    /// Tiles each verifier re-executes (1..=16).
    pub tiles_per_verifier: u16,
    /// Blocks the drawn verifiers have to vote (2..=200).
    pub vote_window_blocks: u32,
    /// Share of the provider's slashable stake taken for a failed or missed job, basis points.
    pub slash_bps: u16,
    /// Share of the escrow paid to the verifiers who vote, basis points (at most 5000).
    pub verifier_fee_bps: u16,
}

impl Default for ComputeParams {
    /// The devnet's values: 2 verifiers of 2 tiles each (a devnet has few providers and one of
    /// them runs the job), 20 blocks to vote, 10 % slash, 10 % of the payment to the verifiers.
    fn default() -> Self {
        Self {
            verifiers_per_job: 2,
            tiles_per_verifier: 2,
            vote_window_blocks: 20,
            slash_bps: 1_000,
            verifier_fee_bps: 1_000,
        }
    }
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
            compute: ComputeParams::default(),
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
        let c = &self.compute;
        if !(1..=16).contains(&c.verifiers_per_job) {
            return Err(format!(
                "compute.verifiers_per_job {} must be between 1 and 16",
                c.verifiers_per_job
            ));
        }
        if !(1..=16).contains(&c.tiles_per_verifier) {
            return Err(format!(
                "compute.tiles_per_verifier {} must be between 1 and 16",
                c.tiles_per_verifier
            ));
        }
        if !(2..=200).contains(&c.vote_window_blocks) {
            return Err(format!(
                "compute.vote_window_blocks {} must be between 2 and 200",
                c.vote_window_blocks
            ));
        }
        if c.slash_bps > 10_000 || c.verifier_fee_bps > 5_000 {
            return Err(
                "compute.slash_bps must be at most 10000 and compute.verifier_fee_bps at most 5000".into()
            );
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
    /// The compute market.
    pub compute_market: Address,
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
    let c = &params.compute;
    let compute = ComputeMarket::deploy(
        provider,
        *token.address(),
        *registry.address(),
        IComputeMarket::Params {
            verifiersPerJob: c.verifiers_per_job,
            tilesPerVerifier: c.tiles_per_verifier,
            voteWindowBlocks: c.vote_window_blocks,
            slashBps: c.slash_bps,
            verifierFeeBps: c.verifier_fee_bps,
        },
    )
    .await
    .map_err(step("ComputeMarket"))?;
    for (address, what) in [
        (*market.address(), "authorising the storage market"),
        (*compute.address(), "authorising the compute market"),
    ] {
        let receipt = registry
            .setMarket(address, true)
            .send()
            .await
            .map_err(step(what))?
            .get_receipt()
            .await
            .map_err(step(what))?;
        if !receipt.status() {
            return Err(DeployError { step: what, source: "the transaction reverted".into() });
        }
    }
    Ok(Deployment {
        token: *token.address(),
        registry: *registry.address(),
        storage_market: *market.address(),
        compute_market: *compute.address(),
        deploy_block: deploy_block + 1,
    })
}
