//! The compute market on a real anvil chain, driven from Rust through the bindings: a job posted
//! with its spec, read back from its log, accepted, committed, drawn, voted and paid; the draw and
//! every drawn verifier's tiles equal what `bigfile_chain::compute` computes off chain.

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolEvent;
use bigfile_chain::anvil::{Anvil, AnvilOptions};
use bigfile_chain::bindings::{BIG, ComputeMarket, ProviderRegistry};
use bigfile_chain::compute::{self, KIND_RENDER, PostedJob};
use bigfile_chain::deploy::{BIG_UNIT, DeployParams, deploy};

/// Sends a contract call and waits for its receipt.
macro_rules! mined {
    ($call:expr) => {
        $call.send().await.expect("send").get_receipt().await.expect("mined")
    };
}

fn big(n: u128) -> U256 {
    U256::from(n * BIG_UNIT)
}

async fn wallet(endpoint: &str, signer: &PrivateKeySigner) -> DynProvider {
    ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer.clone()))
        .connect_http(endpoint.parse().expect("url"))
        .erased()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_posted_drawn_voted_and_paid_as_computed_off_chain() {
    let dir = tempfile::tempdir().expect("tempdir");
    let anvil = Anvil::spawn(AnvilOptions::new(3_133_777, dir.path().join("anvil.log"))).expect("anvil");
    let endpoint = anvil.endpoint();
    let deployer = PrivateKeySigner::random();
    let plain = ProviderBuilder::new().connect_http(endpoint.parse().expect("url")).erased();
    let eth = U256::from(10u128.pow(21));
    let fund = |a: Address| {
        let plain = plain.clone();
        async move {
            let _: () = plain.raw_request("anvil_setBalance".into(), (a, eth)).await.expect("fund");
        }
    };
    fund(deployer.address()).await;
    let owner = wallet(&endpoint, &deployer).await;
    let params = DeployParams::default();
    let d = deploy(&owner, deployer.address(), &params).await.expect("deploy");
    let token = BIG::new(d.token, owner.clone());

    // A client and five registered providers: one runs the job, four enroll as verifiers.
    let client = PrivateKeySigner::random();
    let providers: Vec<PrivateKeySigner> = (0..5).map(|_| PrivateKeySigner::random()).collect();
    for s in std::iter::once(&client).chain(&providers) {
        fund(s.address()).await;
        mined!(token.transfer(s.address(), big(10_000)));
    }
    for (i, s) in providers.iter().enumerate() {
        let w = wallet(&endpoint, s).await;
        let t = BIG::new(d.token, w.clone());
        mined!(t.approve(d.registry, big(2_000)));
        let r = ProviderRegistry::new(d.registry, w.clone());
        let peer = vec![i as u8 + 1; 34];
        assert!(mined!(r.register(peer.into(), big(2_000))).status());
        if i > 0 {
            let m = ComputeMarket::new(d.compute_market, w);
            assert!(mined!(m.enroll()).status());
        }
    }

    // Post: the spec travels in the log and comes back whole and checked.
    let cw = wallet(&endpoint, &client).await;
    let market = ComputeMarket::new(d.compute_market, cw.clone());
    let spec = br#"{"version":1,"kind":"render","scene":{}}"#;
    let payment = big(100);
    mined!(BIG::new(d.token, cw.clone()).approve(d.compute_market, payment));
    let (job, spec_bytes) =
        compute::post_params(KIND_RENDER, spec, vec![B256::repeat_byte(9)], 16, payment, 50);
    let receipt = mined!(market.postJob(job, spec_bytes));
    assert!(receipt.status());
    let posted = receipt
        .inner
        .logs()
        .iter()
        .find_map(|l| ComputeMarket::JobPosted::decode_log(&l.inner).ok())
        .expect("JobPosted");
    let posted = PostedJob::from_event(&posted.data).expect("a good job");
    assert_eq!((posted.job_id, posted.client, posted.tiles), (U256::from(1), client.address(), 16));
    assert_eq!(posted.spec.as_ref(), spec);

    // Accept, commit, draw.
    let runner = &providers[0];
    let pm = ComputeMarket::new(d.compute_market, wallet(&endpoint, runner).await);
    assert!(mined!(pm.accept(posted.job_id)).status());
    let root = B256::repeat_byte(0xab);
    assert!(mined!(pm.submitResult(posted.job_id, root, B256::repeat_byte(0xcd))).status());
    let _: () = plain.raw_request("anvil_mine".into(), (U256::from(1),)).await.expect("mine");
    let pool = market.verifiers().call().await.expect("pool");
    assert_eq!(pool.len(), 4);
    assert!(mined!(market.draw(posted.job_id)).status());
    let view = market.getJob(posted.job_id).call().await.expect("job");
    let seed_block = plain.get_block_by_number(view.seedBlock.into()).await.expect("rpc").expect("block");
    let seed = compute::seed(seed_block.header.hash, posted.job_id);
    assert_eq!(view.seed, seed, "the seed formula");
    let drawn = market.verifiersOf(posted.job_id).call().await.expect("drawn");
    let expected = compute::draw(seed, &pool, usize::from(params.compute.verifiers_per_job), |a| {
        *a != runner.address() && *a != client.address()
    });
    assert_eq!(drawn, expected, "the draw order");
    assert_eq!(drawn.len(), 2);
    for (i, v) in drawn.iter().enumerate() {
        let on_chain = market.tilesFor(posted.job_id, *v).call().await.expect("tiles");
        assert_eq!(
            on_chain,
            compute::tiles_for(seed, i, 16, params.compute.tiles_per_verifier),
            "tiles of {v}"
        );
    }

    // Both vote match; settle pays the provider the escrow less the two fees.
    for v in &drawn {
        let s = providers.iter().find(|p| p.address() == *v).expect("a provider");
        let vm = ComputeMarket::new(d.compute_market, wallet(&endpoint, s).await);
        assert!(mined!(vm.vote(posted.job_id, true)).status());
    }
    assert!(mined!(market.settle(posted.job_id)).status());
    let fee = payment * U256::from(params.compute.verifier_fee_bps)
        / U256::from(10_000)
        / U256::from(params.compute.verifiers_per_job);
    let paid = market.claimable(runner.address()).call().await.expect("claimable");
    assert_eq!(paid, payment - fee * U256::from(2));
    for v in &drawn {
        assert_eq!(market.claimable(*v).call().await.expect("claimable"), fee);
    }
    let before = token.balanceOf(runner.address()).call().await.expect("balance");
    assert!(mined!(pm.claimRewards()).status());
    assert_eq!(token.balanceOf(runner.address()).call().await.expect("balance"), before + paid);
}
