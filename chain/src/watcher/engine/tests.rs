//! The engine against a scripted chain: ranges and confirmations, the ancestor search, rewinds
//! inside and beyond the window, a lagging node, handler failures, inconsistent answers, outages.

use std::sync::{Arc, Mutex, MutexGuard};

use alloy::primitives::{Address, B256, Bytes, U256, keccak256};
use alloy::rpc::types::Log;

use super::*;
use crate::watcher::MemoryCursorStore;

const WATCHED: Address = Address::repeat_byte(0xaa);

#[derive(Debug, Clone)]
struct FakeBlock {
    hash: B256,
    parent: B256,
    /// One log per tag, in order.
    tags: Vec<u64>,
}

#[derive(Debug, Default)]
struct ChainState {
    /// Index = block number.
    blocks: Vec<FakeBlock>,
    /// Every call fails.
    down: bool,
    /// The node only knows blocks up to this one (a lagging replica).
    visible: Option<u64>,
    /// Logs come back with a block hash no header has.
    wrong_log_hash: bool,
    /// `eth_getLogs` over more blocks than this is refused (a public RPC's cap).
    max_log_span: Option<u64>,
    /// The spans of every `eth_getLogs` asked, refused or not.
    log_spans: Vec<u64>,
    header_reads: usize,
}

/// A chain whose blocks, forks and failures the test scripts.
#[derive(Debug, Clone, Default)]
struct FakeChain(Arc<Mutex<ChainState>>);

fn block_hash(fork: u64, number: u64) -> B256 {
    keccak256(format!("{fork}/{number}"))
}

impl FakeChain {
    /// Blocks 0..=head of fork 0, with `logs` as (block, tag).
    fn new(head: u64, logs: &[(u64, u64)]) -> Self {
        let chain = Self::default();
        chain.state().blocks.push(FakeBlock { hash: block_hash(0, 0), parent: B256::ZERO, tags: Vec::new() });
        chain.extend(0, head, logs);
        chain
    }

    fn state(&self) -> MutexGuard<'_, ChainState> {
        self.0.lock().expect("fake chain lock")
    }

    /// Drops the blocks after `keep_through` and mines fork `fork`'s blocks up to `head`.
    fn reorg(&self, keep_through: u64, fork: u64, head: u64, logs: &[(u64, u64)]) {
        self.state().blocks.truncate(keep_through as usize + 1);
        self.extend(fork, head, logs);
    }

    fn extend(&self, fork: u64, head: u64, logs: &[(u64, u64)]) {
        let mut state = self.state();
        while (state.blocks.len() as u64) <= head {
            let number = state.blocks.len() as u64;
            let parent = state.blocks.last().map(|b| b.hash).unwrap_or_default();
            let tags = logs.iter().filter(|(n, _)| *n == number).map(|(_, tag)| *tag).collect();
            state.blocks.push(FakeBlock { hash: block_hash(fork, number), parent, tags });
        }
    }

    fn hash(&self, number: u64) -> B256 {
        self.state().blocks[number as usize].hash
    }

    fn block_ref(&self, number: u64) -> BlockRef {
        BlockRef { number, hash: self.hash(number) }
    }

    fn check(&self) -> Result<MutexGuard<'_, ChainState>, SourceError> {
        let state = self.state();
        if state.down {
            return Err(SourceError { what: "fake".into(), why: "connection refused".into() });
        }
        Ok(state)
    }
}

impl ChainState {
    fn known(&self) -> u64 {
        let head = self.blocks.len() as u64 - 1;
        self.visible.map_or(head, |v| v.min(head))
    }
}

impl ChainSource for FakeChain {
    async fn head(&self) -> Result<u64, SourceError> {
        Ok(self.check()?.known())
    }

    async fn header(&self, number: u64) -> Result<Option<Header>, SourceError> {
        let mut state = self.check()?;
        state.header_reads += 1;
        if number > state.known() {
            return Ok(None);
        }
        let block = &state.blocks[number as usize];
        Ok(Some(Header { number, hash: block.hash, parent_hash: block.parent }))
    }

    async fn logs(&self, addresses: &[Address], from: u64, to: u64) -> Result<Vec<Log>, SourceError> {
        let mut state = self.check()?;
        assert_eq!(addresses, &[WATCHED]);
        state.log_spans.push(to - from + 1);
        if state.max_log_span.is_some_and(|max| to - from + 1 > max) {
            return Err(SourceError {
                what: format!("eth_getLogs({from}..={to})"),
                why: "block range too large".into(),
            });
        }
        let mut logs = Vec::new();
        for number in from..=to.min(state.known()) {
            let block = &state.blocks[number as usize];
            let hash = if state.wrong_log_hash { B256::repeat_byte(0xee) } else { block.hash };
            for (index, tag) in block.tags.iter().enumerate() {
                let topics = vec![B256::from(U256::from(*tag))];
                logs.push(Log {
                    inner: alloy::primitives::Log::new_unchecked(WATCHED, topics, Bytes::new()),
                    block_hash: Some(hash),
                    block_number: Some(number),
                    transaction_hash: Some(keccak256([hash.as_slice(), &[index as u8]].concat())),
                    log_index: Some(index as u64),
                    ..Log::default()
                });
            }
        }
        Ok(logs)
    }
}

#[derive(Debug, Clone)]
enum Event {
    Batch(LogBatch),
    Rewound(Rewind),
}

#[derive(Debug, Default)]
struct RecorderState {
    events: Vec<Event>,
    /// How many calls to refuse before accepting.
    refuse: usize,
}

/// A handler that records what it was given.
#[derive(Debug, Clone, Default)]
struct Recorder(Arc<Mutex<RecorderState>>);

impl Recorder {
    fn state(&self) -> MutexGuard<'_, RecorderState> {
        self.0.lock().expect("recorder lock")
    }

    fn record(&self, event: Event) -> Result<(), HandlerError> {
        let mut state = self.state();
        if state.refuse > 0 {
            state.refuse -= 1;
            return Err(HandlerError::new("refused"));
        }
        state.events.push(event);
        Ok(())
    }

    fn batches(&self) -> Vec<LogBatch> {
        let events = &self.state().events;
        events.iter().filter_map(|e| if let Event::Batch(b) = e { Some(b.clone()) } else { None }).collect()
    }

    fn rewinds(&self) -> Vec<Rewind> {
        let events = &self.state().events;
        events.iter().filter_map(|e| if let Event::Rewound(r) = e { Some(*r) } else { None }).collect()
    }

    /// Every delivered log as (block, tag), in delivery order.
    fn delivered(&self) -> Vec<(u64, u64)> {
        self.batches().iter().flat_map(|b| b.logs.iter().map(tagged)).collect()
    }

    /// What an idempotent consumer ends up believing: delivered logs minus those rewinds voided.
    fn live(&self) -> Vec<(u64, u64)> {
        let mut live: Vec<(u64, u64)> = Vec::new();
        for event in &self.state().events {
            match event {
                Event::Batch(batch) => live.extend(batch.logs.iter().map(tagged)),
                Event::Rewound(rewind) => live.retain(|(block, _)| *block < rewind.void_from),
            }
        }
        live
    }
}

fn tagged(log: &WatchedLog) -> (u64, u64) {
    let tag = log.log.topics().first().map(|t| U256::from_be_bytes(t.0).to::<u64>()).unwrap_or_default();
    (log.block.number, tag)
}

impl Handler for Recorder {
    async fn handle(&mut self, batch: &LogBatch) -> Result<(), HandlerError> {
        self.record(Event::Batch(batch.clone()))
    }

    async fn rewound(&mut self, rewind: &Rewind) -> Result<(), HandlerError> {
        self.record(Event::Rewound(*rewind))
    }
}

fn config(confirmations: u64, window: u64) -> WatcherConfig {
    WatcherConfig {
        confirmations,
        window,
        max_range: 4,
        poll_interval: Duration::from_millis(5),
        backoff_min: Duration::from_millis(1),
        backoff_max: Duration::from_millis(5),
        ..WatcherConfig::new(vec![WATCHED], 1)
    }
}

type TestEngine = Engine<FakeChain, Arc<MemoryCursorStore>, Recorder>;

fn engine(
    chain: &FakeChain,
    store: &Arc<MemoryCursorStore>,
    recorder: &Recorder,
    config: WatcherConfig,
) -> TestEngine {
    let (status, _) = watch::channel(WatcherStatus::default());
    Engine::new(chain.clone(), Arc::clone(store), recorder.clone(), config, status)
}

/// Steps until caught up; every step must succeed.
async fn drive(engine: &mut TestEngine) {
    for _ in 0..1_000 {
        match engine.step().await {
            Ok(Progress::More) => {}
            Ok(Progress::Idle) => return,
            Err(e) => panic!("step failed: {e}"),
        }
    }
    panic!("the engine never caught up");
}

/// Checks that batches cover consecutive blocks from `first`, none past `target`.
fn assert_contiguous(batches: &[LogBatch], first: u64, target: u64) {
    let mut next = first;
    for batch in batches {
        assert_eq!(batch.first, next, "batches are contiguous");
        assert!(batch.last.number <= target, "batch up to {} is not confirmed", batch.last.number);
        next = batch.last.number + 1;
    }
    assert_eq!(next, target + 1, "caught up to the confirmed head");
}

#[tokio::test]
async fn delivers_confirmed_logs_once_in_order_and_resumes_from_the_saved_cursor() {
    let logs = [(2, 1), (2, 2), (5, 3), (11, 4), (19, 5), (20, 6)];
    let chain = FakeChain::new(20, &logs);
    let store = Arc::new(MemoryCursorStore::new());
    let recorder = Recorder::default();
    let mut first = engine(&chain, &store, &recorder, config(2, 8));
    drive(&mut first).await;
    assert_contiguous(&recorder.batches(), 1, 18);
    assert_eq!(recorder.delivered(), vec![(2, 1), (2, 2), (5, 3), (11, 4)]);
    assert_eq!(store.get().expect("saved").tip(), chain.block_ref(18));
    drop(first);

    chain.extend(0, 23, &[(21, 7), (23, 8)]);
    let mut second = engine(&chain, &store, &recorder, config(2, 8));
    drive(&mut second).await;
    assert_contiguous(&recorder.batches(), 1, 21);
    assert_eq!(recorder.delivered(), vec![(2, 1), (2, 2), (5, 3), (11, 4), (19, 5), (20, 6), (21, 7)]);
}

#[tokio::test]
async fn the_ancestor_search_is_a_binary_search_over_the_recorded_blocks() {
    for fork_after in [5, 10, 11, 24, 39, 40] {
        let chain = FakeChain::new(40, &[]);
        let recent: Vec<BlockRef> = (10..=40).map(|n| chain.block_ref(n)).collect();
        chain.reorg(fork_after, 1, 40, &[]);
        chain.state().header_reads = 0;
        let found = find_ancestor(&chain, &recent).await.expect("search");
        let expected = (fork_after >= 10).then(|| chain.block_ref(fork_after));
        assert_eq!(found, expected, "fork after {fork_after}");
        assert!(chain.state().header_reads <= 6, "31 entries need at most 6 reads");
    }
}

#[tokio::test]
async fn with_sparse_records_the_newest_recorded_common_block_is_the_ancestor() {
    let chain = FakeChain::new(20, &[]);
    let recent: Vec<BlockRef> = [2, 5, 9, 14].iter().map(|n| chain.block_ref(*n)).collect();
    chain.reorg(11, 1, 20, &[]);
    assert_eq!(find_ancestor(&chain, &recent).await.expect("search"), Some(chain.block_ref(9)));
    chain.reorg(1, 2, 20, &[]);
    assert_eq!(find_ancestor(&chain, &recent).await.expect("search"), None);
}

#[tokio::test]
async fn a_reorg_within_the_window_rewinds_to_the_exact_ancestor() {
    let chain = FakeChain::new(30, &[(24, 1), (27, 2)]);
    let store = Arc::new(MemoryCursorStore::new());
    let recorder = Recorder::default();
    let mut engine = engine(&chain, &store, &recorder, config(2, 8));
    drive(&mut engine).await;
    let abandoned = chain.block_ref(28);
    assert_eq!(recorder.delivered(), vec![(24, 1), (27, 2)]);

    chain.reorg(25, 1, 30, &[(26, 3), (29, 4)]);
    drive(&mut engine).await;
    let ancestor = chain.block_ref(25);
    assert_eq!(recorder.rewinds(), vec![Rewind { ancestor: Some(ancestor), void_from: 26, abandoned }]);
    assert_eq!(recorder.delivered(), vec![(24, 1), (27, 2), (26, 3)], "27's log is not delivered again");
    assert_eq!(recorder.live(), vec![(24, 1), (26, 3)]);
    let after: Vec<LogBatch> =
        recorder.batches().into_iter().skip_while(|b| b.last.number != 28).skip(1).collect();
    assert_contiguous(&after, 26, 28);
    let cursor = store.get().expect("saved");
    assert_eq!(cursor.tip(), chain.block_ref(28), "the cursor follows the new chain");
    assert_eq!(engine.status.borrow().rewinds, 1);
}

#[tokio::test]
async fn a_reorg_deeper_than_the_window_replays_from_the_start_block() {
    let chain = FakeChain::new(30, &[(3, 1), (20, 2)]);
    let store = Arc::new(MemoryCursorStore::new());
    let recorder = Recorder::default();
    let mut engine = engine(&chain, &store, &recorder, config(2, 4));
    drive(&mut engine).await;
    let abandoned = chain.block_ref(28);

    chain.reorg(10, 1, 30, &[(12, 3)]);
    drive(&mut engine).await;
    assert_eq!(recorder.rewinds(), vec![Rewind { ancestor: None, void_from: 1, abandoned }]);
    assert_eq!(
        recorder.live(),
        vec![(3, 1), (12, 3)],
        "the unchanged log is delivered again, the void one not"
    );
    assert_eq!(store.get().expect("saved").tip(), chain.block_ref(28));
}

#[tokio::test]
async fn a_node_behind_the_handled_tip_is_waited_for_not_rewound() {
    let chain = FakeChain::new(30, &[(29, 1)]);
    let store = Arc::new(MemoryCursorStore::new());
    let recorder = Recorder::default();
    let mut engine = engine(&chain, &store, &recorder, config(2, 8));
    drive(&mut engine).await;
    let batches = recorder.batches().len();

    chain.state().visible = Some(20);
    assert_eq!(engine.step().await.expect("step"), Progress::Idle);
    assert_eq!(recorder.batches().len(), batches, "nothing delivered while the node lags");
    chain.state().visible = None;
    chain.extend(0, 31, &[]);
    drive(&mut engine).await;
    assert!(recorder.rewinds().is_empty());
    assert_eq!(recorder.delivered(), vec![(29, 1)]);
}

#[tokio::test]
async fn a_node_whose_chain_differs_below_its_head_is_a_reorg_even_when_shorter() {
    let chain = FakeChain::new(30, &[(16, 1), (24, 2)]);
    let store = Arc::new(MemoryCursorStore::new());
    let recorder = Recorder::default();
    let mut engine = engine(&chain, &store, &recorder, config(2, 16));
    drive(&mut engine).await;
    let abandoned = chain.block_ref(28);

    // A shorter fork from block 15: the handled tip is missing, and block 20 (recorded) differs.
    chain.reorg(15, 1, 20, &[(17, 3)]);
    drive(&mut engine).await;
    let ancestor = chain.block_ref(15);
    assert_eq!(recorder.rewinds(), vec![Rewind { ancestor: Some(ancestor), void_from: 16, abandoned }]);
    assert_eq!(recorder.live(), vec![(17, 3)]);
    assert_eq!(store.get().expect("saved").tip(), chain.block_ref(18));
}

#[tokio::test]
async fn a_refused_batch_is_retried_from_the_same_block_and_never_skipped() {
    let chain = FakeChain::new(10, &[(1, 1), (6, 2)]);
    let store = Arc::new(MemoryCursorStore::new());
    let recorder = Recorder::default();
    recorder.state().refuse = 2;
    let mut engine = engine(&chain, &store, &recorder, config(0, 8));
    for _ in 0..2 {
        assert!(matches!(engine.step().await, Err(StepError::Handler(_))));
        assert_eq!(store.get(), None, "no cursor saved for a refused batch");
    }
    drive(&mut engine).await;
    assert_contiguous(&recorder.batches(), 1, 10);
    assert_eq!(recorder.delivered(), vec![(1, 1), (6, 2)]);
}

#[tokio::test]
async fn logs_that_disagree_with_the_headers_are_not_delivered() {
    let chain = FakeChain::new(10, &[(3, 1)]);
    let store = Arc::new(MemoryCursorStore::new());
    let recorder = Recorder::default();
    let mut engine = engine(&chain, &store, &recorder, config(0, 8));
    chain.state().wrong_log_hash = true;
    assert!(matches!(engine.step().await, Err(StepError::Inconsistent(_))));
    assert!(recorder.batches().is_empty());
    chain.state().wrong_log_hash = false;
    drive(&mut engine).await;
    assert_eq!(recorder.delivered(), vec![(3, 1)]);
}

#[tokio::test]
async fn an_outage_is_announced_once_when_it_starts_and_once_when_it_ends() {
    let chain = FakeChain::new(10, &[]);
    let store = Arc::new(MemoryCursorStore::new());
    let mut engine = engine(&chain, &store, &Recorder::default(), config(1, 8));
    chain.state().down = true;
    let mut warnings = 0;
    for _ in 0..5 {
        let error = engine.step().await.expect_err("the node is down");
        assert!(matches!(error, StepError::Rpc(_)));
        warnings += usize::from(engine.failed(&error));
    }
    assert_eq!(warnings, 1, "one warning per outage, not one per retry");
    assert!(!engine.status.borrow().connected);
    chain.state().down = false;
    engine.step().await.expect("the node is back");
    assert!(engine.recovered(), "one info line when it ends");
    assert!(!engine.recovered(), "and only one");
    assert_eq!(engine.status.borrow().last_error, None);
}

#[tokio::test]
async fn the_running_engine_reports_an_outage_and_recovers_from_it() {
    let chain = FakeChain::new(10, &[(3, 1)]);
    let recorder = Recorder::default();
    let (status_tx, mut status) = watch::channel(WatcherStatus::default());
    let engine =
        Engine::new(chain.clone(), MemoryCursorStore::new(), recorder.clone(), config(1, 8), status_tx);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(engine.run(cancel.clone()));
    let wait = Duration::from_secs(10);
    let handled = |n: u64| move |s: &WatcherStatus| s.handled.map(|h| h.number) == Some(n);
    tokio::time::timeout(wait, status.wait_for(handled(9))).await.expect("caught up").expect("status");

    chain.state().down = true;
    let down =
        |s: &WatcherStatus| !s.connected && s.last_error.as_deref().is_some_and(|e| e.contains("refused"));
    tokio::time::timeout(wait, status.wait_for(down)).await.expect("outage seen").expect("status");
    chain.extend(0, 12, &[(12, 2)]);
    chain.state().down = false;
    let up = |s: &WatcherStatus| handled(11)(s) && s.connected && s.last_error.is_none();
    tokio::time::timeout(wait, status.wait_for(up)).await.expect("resumed").expect("status");

    cancel.cancel();
    task.await.expect("the task ends when cancelled");
    assert_eq!(recorder.delivered(), vec![(3, 1)]);
}

#[tokio::test]
async fn a_refused_log_range_is_halved_until_the_node_accepts_it_then_grows_back() {
    let logs: Vec<(u64, u64)> = (1..=40).map(|n| (n, n)).collect();
    let chain = FakeChain::new(40, &logs);
    chain.state().max_log_span = Some(3);
    let (store, recorder) = (Arc::new(MemoryCursorStore::new()), Recorder::default());
    let mut engine = engine(&chain, &store, &recorder, WatcherConfig { max_range: 16, ..config(0, 8) });
    drive(&mut engine).await;
    let batches = recorder.batches();
    assert_contiguous(&batches, 1, 40);
    assert_eq!(recorder.delivered(), logs, "every log once, in order");
    let spans = chain.state().log_spans.clone();
    assert_eq!(&spans[..3], &[16, 8, 4], "halved after each refusal: {spans:?}");
    assert!(
        spans.iter().filter(|s| **s > 3).count() > 3,
        "the span is tried larger again after successes: {spans:?}"
    );

    // Lifting the cap: the range grows back to max_range.
    chain.state().max_log_span = None;
    chain.extend(0, 100, &[]);
    drive(&mut engine).await;
    assert_eq!(chain.state().log_spans.last().copied().map(|s| s <= 16), Some(true));
    assert!(chain.state().log_spans.iter().rev().take(3).any(|s| *s == 16), "back to max_range");
}
