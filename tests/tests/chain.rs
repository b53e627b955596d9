//! End to end on a real anvil chain with real agents: providers register and stake, a client
//! stores an object with a deal, every holder takes its slot and proves each period, a killed
//! provider misses a period and is slashed by its fellow holders, its shard is rebuilt on the
//! spare provider (hinted by the chain, long before the network's own grace period), which takes
//! the freed slot and proves it; the deal ends, providers claim, and every BIG balance equals the
//! accounting of the chain's own events, to the wei.

use std::collections::HashMap;
use std::time::Duration;

use bigfile_chain::alloy::primitives::{Address, U256};
use bigfile_chain::bindings::{ProviderRegistry, StorageMarket};
use bigfile_chain::deploy::BIG_UNIT;
use bigfile_chain::devnet::BIGFILE_NETWORK;
use bigfile_tests::chain::{Chain, devnet_up};
use bigfile_tests::{Cluster, wait_for};

/// Blocks per period: 1-second blocks keep a period at 10 s.
const PERIOD_BLOCKS: u64 = 10;
const PERIODS: u64 = 6;
const PROVIDERS: usize = 5;

#[test]
fn deal_proofs_slashing_and_rewards_add_up_to_the_wei() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (devnet, options) = devnet_up(dir.path(), PROVIDERS, Some(1), PERIOD_BLOCKS);
    let file = devnet.file().clone();
    let network = file.network(BIGFILE_NETWORK).expect("network").clone();
    let contracts = network.contracts.expect("contracts");
    let chain = Chain::connect(&file);
    let stake = U256::from(2_000u128 * BIG_UNIT);
    let initial = options.big_per_account;
    let address = |name: &str| file.account(name).expect("account").address;

    // Holders check each other every 2 s; the network alone would wait 10 min before repairing.
    let mut cluster = Cluster::start_on_chain(PROVIDERS, &devnet.file_path(), "2000", |t| {
        t.replace("poll_interval_ms = 1000", "poll_interval_ms = 250")
            .replace("confirmations = 2", "confirmations = 1")
            .replace("interval_secs = 60", "interval_secs = 2")
    });
    let providers: Vec<Address> = (1..=PROVIDERS).map(|i| address(&format!("provider-{i}"))).collect();
    for p in &providers {
        let registry = ProviderRegistry::new(chain.registry, &chain.provider);
        assert_eq!(chain.block(registry.stakeOf(*p).call()).expect("stake"), stake);
    }

    // The client stores an object with a deal: 2 data + 2 parity slots, 1 BIG per slot-period.
    let object = dir.path().join("object.bin");
    std::fs::write(&object, (0..400_000u32).map(|i| (i * 7 % 251) as u8).collect::<Vec<u8>>())
        .expect("write");
    let put = cluster.client_json(&[
        "client",
        "put",
        object.to_str().expect("path"),
        "--data",
        "2",
        "--parity",
        "2",
        "--periods",
        &PERIODS.to_string(),
        "--price",
        "1",
    ]);
    let deal = put["deal"]["deal_id"].as_u64().expect("deal id in client put output");
    let price = U256::from(BIG_UNIT);
    let deposit = price * U256::from(4 * PERIODS);

    // Every provider takes the slot of the shard it holds before period 0.
    let holders: Vec<Address> = wait_for(Duration::from_secs(60), "all four slots taken", || {
        let holders: Vec<Address> = (0..4).map(|s| chain.slot_holder(deal, s)).collect();
        holders.iter().all(|h| !h.is_zero()).then_some(holders)
    });
    let mut distinct = holders.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 4, "one slot per provider");
    assert!(holders.iter().all(|h| providers.contains(h)));
    let spare = *providers.iter().find(|p| !holders.contains(p)).expect("one provider holds no slot");

    // Each agent's status shows it following the chain.
    for p in &cluster.providers {
        let status = p.api_json("/status").expect("status");
        assert_eq!(status["chain"]["connected"], true, "{status}");
        assert!(
            status["chain"]["confirmed"].as_u64().is_some_and(|b| b >= contracts.deploy_block),
            "{status}"
        );
    }

    // A reader finds the holders from the chain: slot holders' peer ids from the registry.
    let object_id: bigfile_chain::alloy::primitives::B256 =
        put["id"].as_str().expect("id").parse().expect("hex id");
    let client_cfg = bigfile_agent::config::Config::load(&cluster.client.config).expect("client config");
    let mut from_chain = chain
        .block(bigfile_agent::chain::deals::chain_holders(&client_cfg.chain, object_id))
        .expect("chain holders");
    from_chain.sort();
    let mut expected_peers: Vec<libp2p::PeerId> = holders
        .iter()
        .map(|h| {
            let i = providers.iter().position(|p| p == h).expect("holder is a provider");
            cluster.providers[i].peer_id.parse().expect("peer id")
        })
        .collect();
    expected_peers.sort();
    assert_eq!(from_chain, expected_peers, "slot holders read from the chain");

    // Periods 0 and 1 are proven by everyone.
    wait_for(Duration::from_secs(90), "periods 0 and 1 proven by all four", || {
        let accepted = chain.logs::<StorageMarket::ProofAccepted>(chain.market);
        (accepted.iter().filter(|e| e.period == U256::from(1)).count() == 4).then_some(())
    });

    // The holders count their proofs in /metrics (once each receipt is in: wait, the chain's
    // event can be seen before the agent's sender has polled its receipt).
    let holder1 = providers.iter().position(|p| *p == holders[1]).expect("holder");
    wait_for(Duration::from_secs(30), "two accepted proofs counted in /metrics", || {
        let accepted = cluster.providers[holder1].metric("bigfile_chain_proofs_accepted_total")?;
        (accepted >= 2).then_some(())
    });
    // Proofs first: its steward held the proof gate while working on them (compute jobs wait).
    let holds = cluster.providers[holder1].metric("bigfile_chain_proof_gate_holds_total");
    assert!(holds.is_some_and(|n| n > 0), "proof gate never held: {holds:?}");

    // Kill the holder of slot 0: it misses the next period and a fellow holder reports it.
    let victim = holders[0];
    let victim_index = providers.iter().position(|p| *p == victim).expect("victim is a provider");
    cluster.kill(victim_index);
    let missed = wait_for(Duration::from_secs(90), "the victim's missed period reported", || {
        chain.logs::<StorageMarket::SlotMissed>(chain.market).into_iter().next()
    });
    assert_eq!(missed.provider, victim);
    assert_eq!(missed.dealId, U256::from(deal));
    assert!(chain.slot_holder(deal, 0).is_zero(), "the missed slot is free");
    assert_eq!(missed.slashed, stake / U256::from(10), "10 % of the stake is slashed");

    // The spare provider gets the rebuilt shard, takes the freed slot and proves it.
    let retaken = wait_for(Duration::from_secs(60), "the freed slot taken again", || {
        chain
            .logs::<StorageMarket::SlotTaken>(chain.market)
            .into_iter()
            .find(|e| e.slot == U256::ZERO && e.provider != victim)
    });
    assert_eq!(retaken.provider, spare, "the provider without a slot repairs");
    wait_for(Duration::from_secs(60), "the repaired slot proven", || {
        chain
            .logs::<StorageMarket::ProofAccepted>(chain.market)
            .into_iter()
            .find(|e| e.slot == U256::ZERO && e.provider == spare)
    });

    // The deal ends and is finished; the live providers claim.
    let finished = wait_for(Duration::from_secs(120), "the deal finished", || {
        chain.logs::<StorageMarket::DealFinished>(chain.market).into_iter().next()
    });
    for (i, p) in cluster.providers.iter().enumerate() {
        if i == victim_index {
            continue;
        }
        let claim = p.node.json(&["rewards", "claim"]);
        assert!(claim["claimed"].is_string(), "provider {i} claimed: {claim}");
    }

    // Accounting from the chain's own events, to the wei.
    let accepted = chain.logs::<StorageMarket::ProofAccepted>(chain.market);
    let mut proofs: HashMap<Address, u64> = HashMap::new();
    for e in &accepted {
        *proofs.entry(e.provider).or_default() += 1;
    }
    let total_proofs: u64 = proofs.values().sum();
    assert!(proofs[&victim] >= 2 && proofs[&victim] < PERIODS, "the victim proved until it was killed");
    let first_repaired: u64 = retaken.firstPeriod.saturating_to();
    assert_eq!(proofs[&spare], PERIODS - first_repaired, "the repairer proved every period from its first");
    for p in &providers {
        if *p != victim && *p != spare {
            assert_eq!(proofs[p], PERIODS, "{p} proved every period");
        }
    }
    let slashed = missed.slashed;
    assert_eq!(finished.paid, price * U256::from(total_proofs));
    assert_eq!(finished.slashed, slashed);
    assert_eq!(finished.refund, deposit + slashed - price * U256::from(total_proofs));
    for p in &providers {
        let earned = price * U256::from(proofs.get(p).copied().unwrap_or(0));
        let expected = if *p == victim { initial - stake } else { initial - stake + earned };
        assert_eq!(chain.balance(*p), expected, "BIG balance of {p}");
    }
    let client = address("client-1");
    assert_eq!(chain.balance(client), initial - deposit + finished.refund, "the client's balance");
    // What stays in the contracts: the victim's unclaimed rewards and the stakes (one slashed).
    let market = StorageMarket::new(chain.market, &chain.provider);
    let unclaimed = chain.block(market.claimable(victim).call()).expect("claimable");
    assert_eq!(unclaimed, price * U256::from(proofs[&victim]));
    assert_eq!(chain.balance(chain.market), unclaimed);
    assert_eq!(chain.balance(chain.registry), stake * U256::from(PROVIDERS) - slashed);

    // The object still reads back whole, from the survivors and the repaired holder.
    let back = dir.path().join("back.bin");
    cluster.client_json(&[
        "client",
        "get",
        put["id"].as_str().expect("id"),
        "-o",
        back.to_str().expect("path"),
    ]);
    assert_eq!(std::fs::read(&back).expect("read back"), std::fs::read(&object).expect("read object"));
    drop(cluster);
    drop(devnet);
}
