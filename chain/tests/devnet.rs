//! `devnet up` on a real anvil: contracts deployed and wired, accounts funded, `devnet.json`
//! written; a deal's challenge computed off chain equals the contract's.

use alloy::eips::BlockNumberOrTag;
use alloy::network::EthereumWallet;
use alloy::primitives::{B256, U256};
use alloy::providers::{Provider, ProviderBuilder};
use bigfile_chain::bindings::{BIG, IStorageMarket, StorageMarket};
use bigfile_chain::challenge::{challenge_index, seed_block};
use bigfile_chain::devnet::{BIGFILE_NETWORK, Devnet, DevnetError, DevnetFile, DevnetOptions};

#[tokio::test]
async fn devnet_up_funds_accounts_and_challenges_match_the_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = DevnetOptions { providers: 2, clients: 1, block_time: None, ..DevnetOptions::default() };
    let devnet = Devnet::up(dir.path(), &options).await.expect("devnet up");
    let file = DevnetFile::load(&devnet.file_path()).expect("devnet.json");
    assert_eq!(&file, devnet.file());
    assert_eq!(file.accounts.len(), 4, "deployer, 2 providers, 1 client");
    let network = file.network(BIGFILE_NETWORK).expect("network 2");
    let contracts = network.contracts.expect("contracts");

    // A second devnet in the same directory is refused while the first runs.
    match Devnet::up(dir.path(), &options).await {
        Err(DevnetError::Running(_, pid)) => assert_eq!(pid, network.pid),
        other => panic!("expected Running, got {other:?}"),
    }

    let client = file.account("client-1").expect("client");
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(client.signer().expect("signer")))
        .connect_http(network.rpc_url.parse().expect("url"));
    let token = BIG::new(contracts.token, &provider);
    for account in &file.accounts[1..] {
        assert_eq!(token.balanceOf(account.address).call().await.expect("balance"), options.big_per_account);
        assert_eq!(provider.get_balance(account.address).await.expect("eth"), options.eth_per_account);
    }

    let market = StorageMarket::new(contracts.storage_market, &provider);
    let price = U256::from(1_000_000u64);
    token
        .approve(contracts.storage_market, U256::MAX)
        .send()
        .await
        .expect("approve")
        .get_receipt()
        .await
        .expect("r");
    let params = IStorageMarket::DealParams {
        objectId: B256::repeat_byte(1),
        shardRoots: (0..6u8).map(B256::repeat_byte).collect(),
        shardSize: 1 << 20,
        segmentSize: 1024,
        k: 4,
        m: 2,
        numPeriods: 3,
        pricePerSlotPeriod: price.to(),
    };
    let receipt =
        market.createDeal(params).send().await.expect("createDeal").get_receipt().await.expect("receipt");
    assert!(receipt.status());
    let deal = market.getDeal(U256::from(1)).call().await.expect("getDeal");
    assert_eq!(deal.leafCount, 1024);
    // Mine into period 1 so the seeds of periods 0 and 1 exist.
    let period_blocks = options.params.period_blocks;
    let head = provider.get_block_number().await.expect("head");
    let target = deal.startBlock + period_blocks + 1;
    let _: () = provider.raw_request("anvil_mine".into(), (U256::from(target - head),)).await.expect("mine");
    for period in 0..2u64 {
        let seed_at = seed_block(deal.startBlock, period, period_blocks);
        let block = provider
            .get_block_by_number(BlockNumberOrTag::Number(seed_at))
            .await
            .expect("block")
            .expect("seed block exists");
        for slot in 0..6u64 {
            let ours = challenge_index(block.header.hash, U256::from(1), U256::from(slot), deal.leafCount);
            let theirs = market
                .challengeIndex(U256::from(1), U256::from(slot), U256::from(period))
                .call()
                .await
                .expect("challengeIndex");
            assert_eq!(U256::from(ours), theirs, "period {period} slot {slot}");
        }
    }

    let stopped = Devnet::down(dir.path()).expect("down");
    assert_eq!(stopped, vec![network.pid]);
}
