//! The chain watcher against a real anvil chain with the BigFile contracts deployed: exact-once
//! ordered delivery behind the confirmation depth, resuming from a saved cursor, a reorg made with
//! `anvil_reorg`, and an RPC outage (anvil stopped and restarted with its state file).
//!
//! No test asserts timings; waits are bounded only so a bug fails the test instead of hanging it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::{Filter, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{SolCall, SolEvent};
use bigfile_chain::anvil::{Anvil, AnvilOptions};
use bigfile_chain::bindings::{BIG, ProviderRegistry};
use bigfile_chain::deploy::{BIG_UNIT, DeployParams, Deployment, deploy};
use bigfile_chain::watcher::{
    self, BlockRef, CursorStore, Handler, HandlerError, JsonFileCursorStore, LogBatch, MemoryCursorStore,
    Rewind, WatcherConfig, WatcherHandle, WatcherStatus,
};
use tokio_util::sync::CancellationToken;

/// Bound on every wait, far above what any step takes.
const PATIENCE: Duration = Duration::from_secs(20);

struct Chain {
    anvil: Anvil,
    signer: PrivateKeySigner,
    /// Signs with the deployer's key.
    wallet: DynProvider,
    /// Reads, and anvil's own RPCs.
    provider: DynProvider,
    deployer: Address,
    deployment: Deployment,
    dir: tempfile::TempDir,
}

impl Chain {
    /// A fresh anvil (with a state file when `with_state`) and the contracts deployed by a random,
    /// funded deployer.
    async fn start(chain_id: u64, with_state: bool) -> Chain {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut options = AnvilOptions::new(chain_id, dir.path().join("anvil.log"));
        if with_state {
            options.state = Some(dir.path().join("state.json"));
        }
        let anvil = Anvil::spawn(options).expect("anvil");
        let signer = PrivateKeySigner::random();
        let deployer = signer.address();
        let (wallet, provider) = connect(&anvil, &signer);
        let _: () = provider
            .raw_request("anvil_setBalance".into(), (deployer, U256::from(10u128.pow(21))))
            .await
            .expect("fund the deployer");
        let deployment = deploy(&wallet, deployer, &DeployParams::default()).await.expect("deploy");
        Chain { anvil, signer, wallet, provider, deployer, deployment, dir }
    }

    /// Fresh providers, after anvil was restarted: no pooled connection to the old process.
    fn reconnect(&mut self) {
        (self.wallet, self.provider) = connect(&self.anvil, &self.signer);
    }

    fn watched(&self) -> Vec<Address> {
        vec![self.deployment.token, self.deployment.registry]
    }

    fn config(&self, confirmations: u64) -> WatcherConfig {
        WatcherConfig {
            confirmations,
            window: 16,
            max_range: 3,
            poll_interval: Duration::from_millis(20),
            request_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(300),
            ..WatcherConfig::new(self.watched(), self.deployment.deploy_block)
        }
    }

    fn watch(&self, config: WatcherConfig, store: impl CursorStore, recorder: &Recorder) -> WatcherHandle {
        let provider = ProviderBuilder::new().connect_http(self.anvil.endpoint().parse().expect("url"));
        watcher::spawn(provider, config, store, recorder.clone(), &CancellationToken::new()).expect("spawn")
    }

    /// Sends BIG from the deployer to `to`; returns the block it landed in.
    async fn transfer(&self, to: Address, amount: u64) -> u64 {
        let token = BIG::new(self.deployment.token, &self.wallet);
        let receipt = token
            .transfer(to, U256::from(amount))
            .send()
            .await
            .expect("send transfer")
            .get_receipt()
            .await
            .expect("transfer receipt");
        assert!(receipt.status(), "the transfer succeeded");
        receipt.block_number.expect("mined")
    }

    /// Registers the deployer as a provider with `peer_id` (approve, then register).
    async fn register(&self, peer_id: &[u8], stake: U256) {
        let token = BIG::new(self.deployment.token, &self.wallet);
        let registry = ProviderRegistry::new(self.deployment.registry, &self.wallet);
        let approve = token.approve(self.deployment.registry, stake).send().await.expect("approve");
        assert!(approve.get_receipt().await.expect("approve receipt").status());
        let register =
            registry.register(Bytes::copy_from_slice(peer_id), stake).send().await.expect("register");
        assert!(register.get_receipt().await.expect("register receipt").status());
    }

    async fn mine(&self, blocks: u64) {
        let _: () = self
            .provider
            .raw_request("anvil_mine".into(), (U256::from(blocks), U256::ZERO))
            .await
            .expect("anvil_mine");
    }

    async fn head(&self) -> u64 {
        self.provider.get_block_number().await.expect("block number")
    }

    async fn block(&self, number: u64) -> BlockRef {
        let block = self.provider.get_block_by_number(number.into()).await.expect("block").expect("exists");
        BlockRef { number, hash: block.header.hash }
    }

    /// The watched contracts' logs in `from..=to`, straight from the node, as (block, hash, index).
    async fn truth(&self, from: u64, to: u64) -> Vec<(u64, B256, u64)> {
        let filter = Filter::new().address(self.watched()).from_block(from).to_block(to);
        let logs = self.provider.get_logs(&filter).await.expect("get_logs");
        logs.iter()
            .map(|l| {
                (l.block_number.expect("number"), l.block_hash.expect("hash"), l.log_index.expect("index"))
            })
            .collect()
    }
}

/// A provider signing with `signer`, and one for reads and anvil's own RPCs.
fn connect(anvil: &Anvil, signer: &PrivateKeySigner) -> (DynProvider, DynProvider) {
    let url: alloy::transports::http::reqwest::Url = anvil.endpoint().parse().expect("url");
    let wallet =
        ProviderBuilder::new().wallet(EthereumWallet::from(signer.clone())).connect_http(url.clone());
    (wallet.erased(), ProviderBuilder::new().connect_http(url).erased())
}

#[derive(Debug, Clone)]
enum Event {
    Batch(LogBatch),
    Rewound(Rewind),
}

#[derive(Debug, Default)]
struct Record {
    events: Vec<Event>,
    /// Batches that reached past the confirmation depth, checked against the head at delivery.
    unconfirmed: Vec<String>,
}

/// A handler that records what it is given and checks every batch against the chain's head.
#[derive(Clone)]
struct Recorder {
    record: Arc<Mutex<Record>>,
    provider: DynProvider,
    confirmations: u64,
}

impl Recorder {
    fn new(chain: &Chain, confirmations: u64) -> Self {
        Self { record: Arc::default(), provider: chain.provider.clone(), confirmations }
    }

    fn record(&self) -> MutexGuard<'_, Record> {
        self.record.lock().expect("record lock")
    }

    fn batches(&self) -> Vec<LogBatch> {
        let record = self.record();
        record
            .events
            .iter()
            .filter_map(|e| if let Event::Batch(b) = e { Some(b.clone()) } else { None })
            .collect()
    }

    fn rewinds(&self) -> Vec<Rewind> {
        let record = self.record();
        record.events.iter().filter_map(|e| if let Event::Rewound(r) = e { Some(*r) } else { None }).collect()
    }

    /// Every delivered log as (block, hash, index), in delivery order.
    fn delivered(&self) -> Vec<(u64, B256, u64)> {
        let batches = self.batches();
        batches
            .iter()
            .flat_map(|b| b.logs.iter().map(|l| (l.block.number, l.key.block_hash, l.key.log_index)))
            .collect()
    }

    /// Asserts no log was delivered twice and no batch outran the confirmation depth.
    fn assert_sound(&self) {
        let delivered = self.delivered();
        let unique: HashSet<_> = delivered.iter().collect();
        assert_eq!(unique.len(), delivered.len(), "a log was delivered twice");
        assert_eq!(self.record().unconfirmed, Vec::<String>::new());
    }
}

impl Handler for Recorder {
    async fn handle(&mut self, batch: &LogBatch) -> Result<(), HandlerError> {
        // Heads never go down in these tests (anvil_reorg keeps the height), so the head now is
        // at least the head the watcher confirmed the batch against.
        let head = self.provider.get_block_number().await.map_err(HandlerError::new)?;
        let mut record = self.record();
        if batch.last.number + self.confirmations > head {
            record.unconfirmed.push(format!("batch up to {} with head {head}", batch.last.number));
        }
        record.events.push(Event::Batch(batch.clone()));
        Ok(())
    }

    async fn rewound(&mut self, rewind: &Rewind) -> Result<(), HandlerError> {
        self.record().events.push(Event::Rewound(*rewind));
        Ok(())
    }
}

/// Waits until the status satisfies `done`.
async fn wait_for(
    handle: &WatcherHandle,
    what: &str,
    done: impl FnMut(&WatcherStatus) -> bool,
) -> WatcherStatus {
    let mut status = handle.subscribe();
    match tokio::time::timeout(PATIENCE, status.wait_for(done)).await {
        Ok(Ok(status)) => status.clone(),
        _ => panic!("waiting for {what}; status {:?}", handle.status()),
    }
}

/// Waits until the watcher, in good health, has handled exactly `block`.
async fn wait_handled(handle: &WatcherHandle, block: BlockRef) -> WatcherStatus {
    wait_for(handle, &format!("block {block:?} handled"), |s| {
        s.handled == Some(block) && s.connected && s.last_error.is_none()
    })
    .await
}

#[tokio::test]
async fn delivers_every_event_once_in_order_behind_the_confirmations_and_resumes_from_the_cursor() {
    let chain = Chain::start(1_337_201, false).await;
    let start = chain.deployment.deploy_block;
    let cursor_file = chain.dir.path().join("cursor.json");
    let recorder = Recorder::new(&chain, 2);
    let watcher = chain.watch(chain.config(2), JsonFileCursorStore::new(&cursor_file), &recorder);

    chain.transfer(Address::repeat_byte(0x11), 1).await;
    let stake = U256::from(1_000u128 * BIG_UNIT);
    chain.register(b"peer-one", stake).await;
    let head = chain.transfer(Address::repeat_byte(0x22), 2).await;
    assert_eq!(chain.head().await, head);

    // Two blocks hold logs the watcher must not deliver yet: they lie within the confirmations.
    wait_handled(&watcher, chain.block(head - 2).await).await;
    assert!(!chain.truth(head - 1, head).await.is_empty());
    assert_eq!(recorder.delivered(), chain.truth(start, head - 2).await);
    chain.mine(2).await;
    wait_handled(&watcher, chain.block(head).await).await;
    assert_eq!(recorder.delivered(), chain.truth(start, head).await);
    watcher.shutdown().await.expect("watcher stopped");
    let delivered_before = recorder.batches().len();

    // Events while no watcher runs are picked up by the next one, from the saved cursor.
    chain.transfer(Address::repeat_byte(0x33), 3).await;
    chain.transfer(Address::repeat_byte(0x44), 4).await;
    chain.mine(2).await;
    let saved = JsonFileCursorStore::new(&cursor_file).load().expect("load").expect("saved");
    assert_eq!(saved.tip(), chain.block(head).await);
    let restarted = chain.watch(chain.config(2), JsonFileCursorStore::new(&cursor_file), &recorder);
    let new_head = chain.head().await;
    wait_handled(&restarted, chain.block(new_head - 2).await).await;
    restarted.shutdown().await.expect("watcher stopped");

    assert_eq!(recorder.batches()[delivered_before].first, head + 1, "resumed right after the cursor");
    assert_eq!(recorder.delivered(), chain.truth(start, new_head - 2).await);
    recorder.assert_sound();
    let batches = recorder.batches();
    assert_eq!(batches.first().map(|b| b.first), Some(start));
    for pair in batches.windows(2) {
        assert_eq!(pair[1].first, pair[0].last.number + 1, "batches are contiguous");
    }

    // Handlers decode with the bindings.
    let logs: Vec<_> = batches.iter().flat_map(|b| b.logs.iter()).collect();
    let registered: Vec<_> = logs
        .iter()
        .filter(|l| l.log.topic0() == Some(&ProviderRegistry::ProviderRegistered::SIGNATURE_HASH))
        .map(|l| ProviderRegistry::ProviderRegistered::decode_log(&l.log.inner).expect("decode"))
        .collect();
    assert_eq!(registered.len(), 1);
    assert_eq!(registered[0].address, chain.deployment.registry);
    assert_eq!(registered[0].data.provider, chain.deployer);
    assert_eq!(registered[0].data.peerId.as_ref(), b"peer-one");
    assert_eq!(registered[0].data.stake, stake);
    let transfers: Vec<(Address, U256)> = logs
        .iter()
        .filter(|l| l.log.address() == chain.deployment.token)
        .filter_map(|l| BIG::Transfer::decode_log(&l.log.inner).ok())
        .map(|t| (t.data.to, t.data.value))
        .collect();
    for (n, byte) in [(1u64, 0x11), (2, 0x22), (3, 0x33), (4, 0x44)] {
        assert!(transfers.contains(&(Address::repeat_byte(byte), U256::from(n))), "transfer {n} seen");
    }
}

#[tokio::test]
async fn a_reorg_is_rewound_to_the_common_ancestor_and_the_new_chain_delivered_once() {
    let chain = Chain::start(1_337_202, false).await;
    let start = chain.deployment.deploy_block;
    let store = Arc::new(MemoryCursorStore::new());
    let recorder = Recorder::new(&chain, 1);
    let watcher = chain.watch(chain.config(1), Arc::clone(&store), &recorder);

    let ancestor = chain.transfer(Address::repeat_byte(0x11), 1).await;
    chain.transfer(Address::repeat_byte(0x22), 2).await;
    chain.transfer(Address::repeat_byte(0x33), 3).await;
    chain.mine(2).await;
    let tip = ancestor + 3;
    let abandoned = chain.block(tip).await;
    wait_handled(&watcher, abandoned).await;
    let old_chain = chain.truth(start, tip).await;
    assert_eq!(recorder.delivered(), old_chain);
    let ancestor = chain.block(ancestor).await;

    // Replace the four blocks after the first transfer (deeper than the one confirmation). The
    // new chain holds the third transfer again (offset 0: the first new block) and a fourth one
    // (offset 2); the second transfer is gone.
    let _: () = chain
        .provider
        .raw_request("anvil_impersonateAccount".into(), (chain.deployer,))
        .await
        .expect("impersonate the deployer");
    let transfer = |to: u8, amount: u64| {
        let call = BIG::transferCall { to: Address::repeat_byte(to), value: U256::from(amount) };
        TransactionRequest::default()
            .from(chain.deployer)
            .to(chain.deployment.token)
            .input(Bytes::from(call.abi_encode()).into())
            // anvil estimates gas on the chain before the reorg, where 0x33 already holds BIG
            // (a cheaper storage write): give enough for a fresh balance.
            .gas_limit(100_000)
    };
    let pairs = vec![(transfer(0x33, 3), 0u64), (transfer(0x55, 5), 2)];
    let _: () = chain.provider.raw_request("anvil_reorg".into(), (4u64, pairs)).await.expect("anvil_reorg");
    assert_eq!(chain.head().await, tip + 1, "anvil_reorg keeps the height");
    assert_eq!(chain.block(ancestor.number).await, ancestor);
    let replaced = chain.block(tip).await;
    assert_ne!(replaced, abandoned);
    let new_logs = chain.truth(ancestor.number + 1, tip + 1).await;
    wait_handled(&watcher, replaced).await;
    chain.mine(1).await;
    wait_handled(&watcher, chain.block(tip + 1).await).await;
    watcher.shutdown().await.expect("watcher stopped");

    assert_eq!(
        recorder.rewinds(),
        vec![Rewind { ancestor: Some(ancestor), void_from: ancestor.number + 1, abandoned }]
    );
    let delivered = recorder.delivered();
    let (before, after) = delivered.split_at(old_chain.len());
    assert_eq!(before, old_chain.as_slice());
    assert_eq!(after, new_logs.as_slice(), "only the new chain's logs after the rewind, once each");
    recorder.assert_sound();
    let saved = store.get().expect("cursor saved");
    assert_eq!(saved.tip(), chain.block(tip + 1).await, "the cursor is on the new chain");
    for block in saved.recent() {
        assert_eq!(chain.block(block.number).await, *block, "every recorded hash is the new chain's");
    }
}

#[tokio::test]
async fn an_rpc_outage_is_reported_and_the_same_watcher_resumes_after_the_node_restarts() {
    let mut chain = Chain::start(1_337_203, true).await;
    let start = chain.deployment.deploy_block;
    let recorder = Recorder::new(&chain, 1);
    let config = WatcherConfig { backoff_max: Duration::from_millis(200), ..chain.config(1) };
    let watcher = chain.watch(config, MemoryCursorStore::new(), &recorder);

    chain.transfer(Address::repeat_byte(0x11), 1).await;
    chain.mine(1).await;
    let head = chain.head().await;
    wait_handled(&watcher, chain.block(head - 1).await).await;
    // This one is still within the confirmation when the node goes away.
    let pending = chain.transfer(Address::repeat_byte(0x22), 2).await;
    let pending_block = chain.block(pending).await;

    chain.anvil.kill();
    let down = wait_for(&watcher, "the outage", |s| !s.connected && s.last_error.is_some()).await;
    assert!(down.last_error.as_deref().is_some_and(|e| e.contains("chain RPC")), "{down:?}");
    assert!(!recorder.delivered().iter().any(|l| l.0 == pending), "nothing past the confirmation");

    chain.anvil.restart().expect("anvil restarts with its state");
    chain.reconnect();
    assert_eq!(chain.block(pending).await, pending_block, "the chain survived the restart");
    chain.transfer(Address::repeat_byte(0x33), 3).await;
    chain.mine(1).await;
    let head = chain.head().await;
    let status = wait_handled(&watcher, chain.block(head - 1).await).await;
    watcher.shutdown().await.expect("watcher stopped");

    assert_eq!(status.rewinds, 0, "a node restarted with its state is no reorg");
    assert!(recorder.rewinds().is_empty());
    assert_eq!(recorder.delivered(), chain.truth(start, head - 1).await);
    assert!(recorder.delivered().iter().any(|l| l.0 == pending), "the block held back during the outage");
    recorder.assert_sound();
}
