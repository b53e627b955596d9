//! Faults around real agents on a real anvil chain:
//!
//! - a client that cannot pay for its deal is told so before anything is uploaded or sent;
//! - a deal whose shard roots do not match the shards the providers received is refused by every
//!   provider (no slot taken, a clear log line), while a correct deal for the same object is taken;
//! - the chain node is stopped and restarted with its state: the agents report the outage in
//!   `/status`, keep running, and prove the following periods without a restart;
//! - a holder killed in the middle of a period and started again neither misses that period nor
//!   proves it twice.

use std::time::Duration;

use bigfile_agent::chain::deals::{DealClient, DealTerms};
use bigfile_chain::alloy::network::EthereumWallet;
use bigfile_chain::alloy::primitives::{B256, U256};
use bigfile_chain::alloy::providers::ProviderBuilder;
use bigfile_chain::bindings::{BIG, IStorageMarket, StorageMarket};
use bigfile_chain::deploy::BIG_UNIT;
use bigfile_chain::devnet::BIGFILE_NETWORK;
use bigfile_storage::ObjectId;
use bigfile_tests::chain::{Chain, devnet_up};
use bigfile_tests::{Cluster, wait_for};
use tokio_util::sync::CancellationToken;

const PERIOD_BLOCKS: u64 = 10;
const PERIODS: u64 = 8;
const PROVIDERS: usize = 3;

/// Every `ProofAccepted` for `deal`, as (slot, period).
fn proofs(chain: &Chain, deal: u64) -> Vec<(u64, u64)> {
    chain
        .logs::<StorageMarket::ProofAccepted>(chain.market)
        .iter()
        .filter(|e| e.dealId == U256::from(deal))
        .map(|e| (e.slot.saturating_to(), e.period.saturating_to()))
        .collect()
}

fn rpc_ok(cluster: &Cluster, i: usize) -> Option<bool> {
    cluster.providers[i].api_json("/status").and_then(|s| s["chain"]["rpc_ok"].as_bool())
}

#[test]
fn bad_deals_outages_and_restarts_lose_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut devnet, _) = devnet_up(dir.path(), PROVIDERS, Some(1), PERIOD_BLOCKS);
    let file = devnet.file().clone();
    let mut chain = Chain::connect(&file);
    let client = file.account("client-1").expect("client").address;
    let mut cluster = Cluster::start_on_chain(PROVIDERS, &devnet.file_path(), "2000", |t| {
        t.replace("poll_interval_ms = 1000", "poll_interval_ms = 250")
            .replace("confirmations = 2", "confirmations = 1")
    });
    let object = dir.path().join("object.bin");
    std::fs::write(&object, (0..50_000u32).map(|i| (i * 13 % 251) as u8).collect::<Vec<u8>>())
        .expect("write");
    let path = object.to_str().expect("path");

    // A client that cannot pay: refused before any upload, and no transaction sent.
    let client_nonce = chain.nonce(client);
    let poor =
        cluster.client.run(&["client", "put", path, "--data", "2", "--parity", "1", "--price", "1000000"]);
    assert!(!poor.status.success());
    let why = String::from_utf8_lossy(&poor.stderr);
    assert!(why.contains("but the deal escrows") && why.contains("nothing was uploaded"), "{why}");
    assert_eq!(chain.nonce(client), client_nonce, "nothing was sent");
    for p in &cluster.providers {
        let status = p.api_json("/status").expect("status");
        assert_eq!(status["storage"]["shards"], 0, "nothing was uploaded: {status}");
    }

    // Store the object without a deal, then create a deal whose roots are not the shards'.
    let put = cluster.client_json(&["client", "put", path, "--data", "2", "--parity", "1", "--no-deal"]);
    let id_hex = put["id"].as_str().expect("id").to_string();
    let id = ObjectId::from_hex(&id_hex).expect("object id");
    let cfg = bigfile_agent::config::Config::load(&cluster.client.config).expect("client config");
    // The manifest the client made (it keeps none): the same coding of the same bytes.
    let geometry = bigfile_storage::Geometry {
        size: 50_000,
        data: 2,
        parity: 1,
        stripe_size: bigfile_storage::Geometry::round_stripe(cfg.storage.stripe_size.0 as u32, 2),
        segment_size: cfg.storage.segment_size.0 as u32,
    };
    let bytes = std::fs::read(&object).expect("read object");
    let (manifest, _) = bigfile_storage::coding::encode_object(&bytes, geometry).expect("encode");
    assert_eq!(manifest.object_id(), id, "the manifest rebuilt here is the one the providers hold");
    // The forged deal names the real object but commits to a wrong root for shard 1: a holder
    // that took a slot in it could never prove it and would be slashed.
    let forged_roots: Vec<B256> = manifest
        .shard_roots
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut r = *r;
            if i == 1 {
                r[0] ^= 0xff;
            }
            B256::from(r)
        })
        .collect();
    let bad = chain.rt.block_on(async {
        let signer = file.account("client-1").expect("client").signer().expect("key");
        let url = file.network(BIGFILE_NETWORK).expect("network").rpc_url.parse().expect("url");
        let wallet = ProviderBuilder::new().wallet(EthereumWallet::from(signer)).connect_http(url);
        let deposit = U256::from(3 * PERIODS as u128 * BIG_UNIT);
        BIG::new(chain.token, &wallet)
            .approve(chain.market, deposit)
            .send()
            .await
            .expect("approve")
            .get_receipt()
            .await
            .expect("approved");
        let g = &manifest.geometry;
        let params = IStorageMarket::DealParams {
            objectId: B256::from(id.0),
            shardRoots: forged_roots,
            shardSize: g.shard_len(),
            segmentSize: g.segment_size,
            k: g.data,
            m: g.parity,
            numPeriods: PERIODS as u32,
            pricePerSlotPeriod: BIG_UNIT,
        };
        let receipt = StorageMarket::new(chain.market, &wallet)
            .createDeal(params)
            .send()
            .await
            .expect("createDeal")
            .get_receipt()
            .await
            .expect("created");
        let created = receipt.decoded_log::<StorageMarket::DealCreated>().expect("DealCreated");
        created.data.dealId.saturating_to::<u64>()
    });
    let create = |m: &bigfile_storage::Manifest| {
        chain
            .rt
            .block_on(async {
                let terms = DealTerms { periods: PERIODS as u32, price_per_slot_period: BIG_UNIT };
                let deals = DealClient::connect(&cfg, terms, &m.geometry, CancellationToken::new()).await?;
                deals.create(m).await
            })
            .expect("deal created")
            .deal_id
    };
    let good = create(&manifest);
    wait_for(Duration::from_secs(60), "all three slots of the correct deal taken", || {
        (0..3).all(|s| !chain.slot_holder(good, s).is_zero()).then_some(())
    });
    for (i, p) in cluster.providers.iter().enumerate() {
        wait_for(
            Duration::from_secs(10),
            &format!("provider {i} says why it refused the forged deal"),
            || p.node.log().contains("deal does not match the shards received").then_some(()),
        );
    }
    // The forged deal was seen before the correct one and is still untaken.
    assert!((0..3).all(|s| chain.slot_holder(bad, s).is_zero()), "no slot of the forged deal taken");

    // Period 0 proven by the three holders, then the chain node goes away.
    wait_for(Duration::from_secs(60), "period 0 proven", || {
        (proofs(&chain, good).iter().filter(|(_, p)| *p == 0).count() == 3).then_some(())
    });
    let anvil = devnet.chain_mut(BIGFILE_NETWORK).expect("anvil");
    anvil.kill();
    wait_for(Duration::from_secs(30), "every agent reports the outage", || {
        (0..PROVIDERS).all(|i| rpc_ok(&cluster, i) == Some(false)).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    devnet.chain_mut(BIGFILE_NETWORK).expect("anvil").restart().expect("anvil restarts with its state");
    chain = Chain::connect(&file);
    wait_for(Duration::from_secs(30), "every agent reconnected", || {
        (0..PROVIDERS).all(|i| rpc_ok(&cluster, i) == Some(true)).then_some(())
    });
    let head = chain.head();
    let start = chain
        .block(StorageMarket::new(chain.market, &chain.provider).getDeal(U256::from(good)).call())
        .expect("getDeal")
        .startBlock;
    let now = (head.saturating_sub(start)) / PERIOD_BLOCKS;
    wait_for(Duration::from_secs(60), "the period after the outage proven by all", || {
        (proofs(&chain, good).iter().filter(|(_, p)| *p == now + 1).count() == 3).then_some(())
    });
    for i in 0..PROVIDERS {
        assert!(cluster.providers[i].alive(), "provider {i} kept running through the outage");
    }

    // Kill a holder in the middle of a period, after it proved it, and start it again.
    let holder = chain.slot_holder(good, 0);
    let victim = (1..=PROVIDERS)
        .position(|i| file.account(&format!("provider-{i}")).expect("account").address == holder)
        .expect("slot 0 holder is a provider");
    let proven_now =
        proofs(&chain, good).iter().filter(|(s, _)| *s == 0).map(|(_, p)| *p).max().expect("proven");
    let log_before = cluster.providers[victim].node.log().len();
    cluster.kill(victim);
    std::thread::sleep(Duration::from_secs(2));
    cluster.restart(victim);
    wait_for(Duration::from_secs(60), "the restarted holder proves the next period", || {
        proofs(&chain, good).iter().any(|(s, p)| *s == 0 && *p == proven_now + 1).then_some(())
    });
    let log = cluster.providers[victim].node.log();
    let after_restart = &log[log_before..];
    for end in [" ", ":"] {
        assert!(
            !after_restart.contains(&format!("submitProof deal {good} period {proven_now}{end}")),
            "the restarted holder tried period {proven_now} again:\n{after_restart}"
        );
    }

    // Nobody missed a period; every slot proved each period at most once.
    assert!(chain.logs::<StorageMarket::SlotMissed>(chain.market).is_empty(), "nobody missed a period");
    let all = proofs(&chain, good);
    for (slot, period) in &all {
        assert_eq!(all.iter().filter(|x| *x == &(*slot, *period)).count(), 1, "slot {slot} period {period}");
    }
    drop(cluster);
    drop(devnet);
}
