//! The contracts deploy from Rust onto a real anvil chain and are wired as the README says.

use alloy::network::EthereumWallet;
use alloy::primitives::U256;
use alloy::providers::{Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use bigfile_chain::anvil::{Anvil, AnvilOptions};
use bigfile_chain::bindings::{BIG, ProviderRegistry, StorageMarket};
use bigfile_chain::deploy::{DeployParams, deploy};

#[tokio::test]
async fn contracts_deploy_and_are_wired() {
    let dir = tempfile::tempdir().expect("tempdir");
    let anvil = Anvil::spawn(AnvilOptions::new(1_337_002, dir.path().join("anvil.log"))).expect("anvil");
    let deployer = PrivateKeySigner::random();
    let address = deployer.address();
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(deployer))
        .connect_http(anvil.endpoint().parse().expect("url"));
    let _: () = provider
        .raw_request("anvil_setBalance".into(), (address, U256::from(10u128.pow(21))))
        .await
        .expect("fund deployer");
    assert_eq!(provider.get_chain_id().await.expect("chain id"), 1_337_002);

    let params = DeployParams::default();
    let deployment = deploy(&provider, address, &params).await.expect("deploy");
    let token = BIG::new(deployment.token, &provider);
    let registry = ProviderRegistry::new(deployment.registry, &provider);
    let market = StorageMarket::new(deployment.storage_market, &provider);
    assert_eq!(token.balanceOf(address).call().await.expect("balance"), params.supply);
    assert_eq!(registry.token().call().await.expect("token"), deployment.token);
    assert_eq!(registry.minStake().call().await.expect("min stake"), params.min_stake);
    assert!(registry.isMarket(deployment.storage_market).call().await.expect("isMarket"));
    assert_eq!(market.registry().call().await.expect("registry"), deployment.registry);
    assert_eq!(market.periodBlocks().call().await.expect("period"), U256::from(params.period_blocks));
    assert_eq!(market.dealCount().call().await.expect("deals"), U256::ZERO);
}
