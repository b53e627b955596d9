//! Reorgs under real agents on a real anvil chain (`anvil_reorg`), each deeper than the agents'
//! confirmation depth so their watchers have already acted on the blocks that vanish:
//!
//! 1. A deal whose `DealCreated` and slot takings are reorganised away: every agent rewinds,
//!    forgets the deal, and takes slots only in the deal created on the new chain (its own
//!    transactions that vanished do not leave its account's nonce stuck behind a gap).
//! 2. The seed block of a period and the proofs answering it are reorganised away: the new seed
//!    gives a new challenge, every holder proves again from the new chain, and in the end each
//!    slot has exactly one accepted proof per period, nobody is slashed, and the rewards claimed
//!    are exactly the periods proven.
//!
//! The test mines the blocks itself (a miner thread it can pause) so each reorg lands at a known
//! point; transactions are mined as they arrive.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bigfile_chain::alloy::primitives::{Address, U256};
use bigfile_chain::alloy::providers::{Provider, ProviderBuilder};
use bigfile_chain::alloy::rpc::types::TransactionRequest;
use bigfile_chain::bindings::StorageMarket;
use bigfile_chain::challenge::seed_block;
use bigfile_chain::deploy::BIG_UNIT;
use bigfile_chain::devnet::BIGFILE_NETWORK;
use bigfile_tests::chain::{Chain, devnet_up};
use bigfile_tests::{Cluster, wait_for};

const PERIOD_BLOCKS: u64 = 10;
const PERIODS: u64 = 4;
const PROVIDERS: usize = 3;
/// The agents' confirmation depth; every reorg here is deeper.
const CONFIRMATIONS: u64 = 3;

/// Mines a block every `every` until stopped; the test pauses it around each reorg.
struct Miner {
    paused: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Miner {
    fn start(rpc_url: &str, every: Duration) -> Miner {
        let (paused, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let (p, s) = (paused.clone(), stop.clone());
        let url = rpc_url.parse().expect("rpc url");
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            let provider = ProviderBuilder::new().connect_http(url);
            while !s.load(Ordering::SeqCst) {
                std::thread::sleep(every);
                if !p.load(Ordering::SeqCst) {
                    let mined: Result<(), _> =
                        rt.block_on(provider.raw_request("anvil_mine".into(), (U256::from(1), U256::ZERO)));
                    mined.expect("anvil_mine");
                }
            }
        });
        Miner { paused, stop, thread: Some(thread) }
    }

    fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
        // A mine already under way finishes within one interval.
        std::thread::sleep(Duration::from_millis(400));
    }

    fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }
}

impl Drop for Miner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Replaces the blocks from `first` to the head with new ones (as many), the first of them
/// holding an ETH transfer from `from` so every new block hash differs from the old one.
fn reorg_from(chain: &Chain, first: u64, from: Address) {
    let head = chain.head();
    assert!(head >= first, "nothing to reorganise");
    let depth = head - first + 1;
    assert!(
        depth > CONFIRMATIONS,
        "the reorg ({depth} blocks) must be deeper than the agents' confirmations"
    );
    let old = chain.block(chain.provider.get_block_by_number(first.into())).expect("block").expect("exists");
    let _: () = chain.rpc("anvil_impersonateAccount", (from,));
    let transfer = TransactionRequest::default()
        .from(from)
        .to(Address::repeat_byte(0x42))
        .value(U256::from(1))
        .gas_limit(21_000);
    let _: () = chain.rpc("anvil_reorg", (depth, vec![(transfer, 0u64)]));
    let new = chain.block(chain.provider.get_block_by_number(first.into())).expect("block").expect("exists");
    assert_ne!(new.header.hash, old.header.hash, "block {first} was replaced");
    assert!(chain.head() >= head, "anvil_reorg keeps the height");
}

fn rewinds(cluster: &Cluster, i: usize) -> u64 {
    cluster.providers[i].api_json("/status").and_then(|s| s["chain"]["rewinds"].as_u64()).unwrap_or(0)
}

fn metric(cluster: &Cluster, i: usize, name: &str) -> u64 {
    cluster.providers[i].metric(name).unwrap_or(0)
}

fn put(cluster: &Cluster, path: &std::path::Path, seed: u32) -> (u64, String) {
    std::fs::write(path, (0..60_000u32).map(|i| ((i * 7 + seed) % 251) as u8).collect::<Vec<u8>>())
        .expect("write");
    let put = cluster.client_json(&[
        "client",
        "put",
        path.to_str().expect("path"),
        "--data",
        "2",
        "--parity",
        "1",
        "--periods",
        &PERIODS.to_string(),
        "--price",
        "1",
    ]);
    let deal = put["deal"]["deal_id"].as_u64().expect("deal id in client put output");
    (deal, put["id"].as_str().expect("object id").to_string())
}

#[test]
fn reorged_deals_and_proofs_are_acted_on_from_the_new_chain_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (devnet, options) = devnet_up(dir.path(), PROVIDERS, None, PERIOD_BLOCKS);
    let file = devnet.file().clone();
    let chain = Chain::connect(&file);
    let rpc_url = file.network(BIGFILE_NETWORK).expect("network").rpc_url.clone();
    let deployer = file.account("deployer").expect("deployer").address;
    let providers: Vec<Address> =
        (1..=PROVIDERS).map(|i| file.account(&format!("provider-{i}")).expect("account").address).collect();
    let stake = U256::from(2_000u128 * BIG_UNIT);
    let price = U256::from(BIG_UNIT);

    let cluster = Cluster::start_on_chain(PROVIDERS, &devnet.file_path(), "2000", |t| {
        t.replace("poll_interval_ms = 1000", "poll_interval_ms = 200")
            .replace("confirmations = 2", &format!("confirmations = {CONFIRMATIONS}"))
    });
    let miner = Miner::start(&rpc_url, Duration::from_millis(300));

    // 1. A deal is created and every provider takes a slot in it, then all of it is reorganised
    //    away: the deal never existed on the new chain.
    let (first_deal, _) = put(&cluster, &dir.path().join("first.bin"), 0);
    let created = chain.logs_at::<StorageMarket::DealCreated>(chain.market);
    let (created_at, _) =
        *created.iter().find(|(_, e)| e.dealId == U256::from(first_deal)).expect("DealCreated");
    wait_for(Duration::from_secs(60), "all three slots of the first deal taken", || {
        (0..3).all(|s| !chain.slot_holder(first_deal, s).is_zero()).then_some(())
    });
    miner.pause();
    reorg_from(&chain, created_at, deployer);
    miner.resume();
    assert!(chain.logs::<StorageMarket::DealCreated>(chain.market).is_empty(), "the deal is gone");
    assert!(chain.logs::<StorageMarket::SlotTaken>(chain.market).is_empty(), "the slot takings are gone");
    wait_for(Duration::from_secs(30), "every agent rewound", || {
        (0..PROVIDERS).all(|i| rewinds(&cluster, i) >= 1).then_some(())
    });

    // A new deal on the new chain (another object): every provider takes one slot in it, with
    // the account nonces its vanished transactions had used.
    let (deal, object) = put(&cluster, &dir.path().join("second.bin"), 1);
    wait_for(Duration::from_secs(60), "all three slots of the new deal taken", || {
        (0..3).all(|s| !chain.slot_holder(deal, s).is_zero()).then_some(())
    });
    let market = StorageMarket::new(chain.market, &chain.provider);
    let on_chain = chain.block(market.getDeal(U256::from(deal)).call()).expect("getDeal");
    assert_eq!(on_chain.objectId.to_string(), object, "the deal on the new chain is the second object's");
    let taken = chain.logs::<StorageMarket::SlotTaken>(chain.market);
    assert_eq!(taken.len(), 3, "one taking per slot, only in the new deal: {taken:?}");
    let mut takers: Vec<Address> = taken.iter().map(|e| e.provider).collect();
    takers.sort();
    takers.dedup();
    assert_eq!(takers.len(), 3, "each provider holds one slot");

    // 2. Period 1's seed block and the proofs answering it are reorganised away.
    let start: u64 = on_chain.startBlock;
    let seed = seed_block(start, 1, PERIOD_BLOCKS);
    wait_for(Duration::from_secs(60), "the chain two blocks short of period 1's seed", || {
        (chain.head() + 2 >= seed).then_some(())
    });
    miner.pause();
    // Step by hand to the block where period 1's proofs are due (seed buried by the confirmations).
    while chain.head() < seed + CONFIRMATIONS {
        let _: () = chain.rpc("anvil_mine", (U256::from(1), U256::ZERO));
    }
    let first_proofs = wait_for(Duration::from_secs(30), "period 1 proven by all three", || {
        let p: Vec<(u64, StorageMarket::ProofAccepted)> = chain
            .logs_at::<StorageMarket::ProofAccepted>(chain.market)
            .into_iter()
            .filter(|(_, e)| e.period == U256::from(1))
            .collect();
        (p.len() == 3).then_some(p)
    });
    assert!(first_proofs.iter().all(|(b, _)| *b > seed), "proofs come after their seed block");
    // Each holder has seen its receipt (so it counts its period-1 proof as given) before the
    // blocks vanish.
    let proofs_before: Vec<u64> = (0..PROVIDERS)
        .map(|i| {
            wait_for(Duration::from_secs(30), &format!("provider {i} counts its period-1 proof"), || {
                let n = metric(&cluster, i, "bigfile_chain_proofs_accepted_total");
                (n >= 2).then_some(n)
            })
        })
        .collect();

    let rewinds_before: Vec<u64> = (0..PROVIDERS).map(|i| rewinds(&cluster, i)).collect();
    reorg_from(&chain, seed, deployer);
    assert!(
        chain.logs::<StorageMarket::ProofAccepted>(chain.market).iter().all(|e| e.period < U256::from(1)),
        "period 1's proofs are gone"
    );
    // Every holder notices its proof vanished and proves again, against the new seed, before
    // any block is added by the clock.
    wait_for(Duration::from_secs(30), "period 1 proven again on the new chain", || {
        let n = chain
            .logs::<StorageMarket::ProofAccepted>(chain.market)
            .iter()
            .filter(|e| e.period == U256::from(1))
            .count();
        (n == 3).then_some(())
    });
    for (i, before) in proofs_before.iter().enumerate() {
        wait_for(Duration::from_secs(30), &format!("provider {i} counts the reorged proof"), || {
            (metric(&cluster, i, "bigfile_chain_proofs_reorged_total") >= 1).then_some(())
        });
        wait_for(Duration::from_secs(30), &format!("provider {i} counts its new proof"), || {
            (metric(&cluster, i, "bigfile_chain_proofs_accepted_total") > *before).then_some(())
        });
    }
    miner.resume();
    wait_for(Duration::from_secs(30), "every agent rewound the second reorg", || {
        (0..PROVIDERS).all(|i| rewinds(&cluster, i) > rewinds_before[i]).then_some(())
    });

    // The deal runs to its end; each slot has exactly one accepted proof per period.
    let finished = wait_for(Duration::from_secs(120), "the deal finished", || {
        chain.logs::<StorageMarket::DealFinished>(chain.market).into_iter().next()
    });
    assert!(chain.logs::<StorageMarket::SlotMissed>(chain.market).is_empty(), "nobody missed a period");
    let accepted = chain.logs::<StorageMarket::ProofAccepted>(chain.market);
    for slot in 0..3u64 {
        for period in 0..PERIODS {
            let n = accepted
                .iter()
                .filter(|e| e.slot == U256::from(slot) && e.period == U256::from(period))
                .count();
            assert_eq!(n, 1, "slot {slot} period {period} proven exactly once: {accepted:?}");
        }
    }
    assert_eq!(finished.paid, price * U256::from(3 * PERIODS));
    assert_eq!(finished.slashed, U256::ZERO);

    // Rewards: each provider is owed exactly its periods and claims them once.
    let initial = options.big_per_account;
    for (i, p) in providers.iter().enumerate() {
        assert_eq!(chain.block(market.claimable(*p).call()).expect("claimable"), price * U256::from(PERIODS));
        let claim = cluster.providers[i].node.json(&["rewards", "claim"]);
        assert!(claim["claimed"].is_string(), "provider {i} claimed: {claim}");
        let again = cluster.providers[i].node.run(&["rewards", "claim"]);
        assert!(!again.status.success(), "a second claim has nothing to take");
        assert!(String::from_utf8_lossy(&again.stderr).contains("no rewards to claim"));
        assert_eq!(chain.balance(*p), initial - stake + price * U256::from(PERIODS), "BIG balance of {p}");
    }
    drop(miner);
    drop(cluster);
    drop(devnet);
}
