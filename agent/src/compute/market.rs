//! The agent on the compute market: a watcher (its own cursor) records every posted job in the
//! job book; the worker acts on the book every poll, re-reading each open job on chain first.
//!
//! - As a provider (`compute.take_jobs`): takes a posted job it can run (kind, spec, the
//!   `[compute]` limits and prices, the right tile count; inputs fetched from the network), runs
//!   it tile by tile on a blocking thread (tiles in sled, so a restart resumes; second to storage
//!   proofs through the proof gate), stores the output as an object on other providers, commits
//!   its root, then calls `draw` once the seed block is mined and `settle` once the votes are in.
//! - As a verifier (`compute.verify`): enrolls in the pool; when drawn, fetches the output (and
//!   the inputs), checks it hashes to the committed root, re-executes its drawn tiles and votes;
//!   settles a job whose vote is over when its provider does not.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use bigfile_chain::alloy::primitives::{Address, B256, U256, keccak256};
use bigfile_chain::alloy::providers::Provider;
use bigfile_chain::bindings::ComputeMarket;
use bigfile_chain::compute::PostedJob;
use bigfile_chain::watcher::{Handler, HandlerError, LogBatch, Rewind};
use bigfile_compute::spec::{Job, JobSpec};
use bigfile_storage::{ObjectId, Store};
use libp2p::PeerId;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::book::{Committed, JobBook, JobEntry};
use super::gate::ProofGate;
use super::rest::{Seen, Stamp, Touches, rest_until};
use super::run::{self, Devices, Inputs};
use super::tiles::SledTiles;
use super::{check, objects};
use crate::chain::ChainLink;
use crate::config::ComputeConfig;
use crate::metrics::ChainCounters;
use crate::net::node::NodeHandle;

/// Job states as the contract numbers them.
pub mod state {
    /// Open for a provider.
    pub const POSTED: u8 = 1;
    /// A provider runs it.
    pub const ACCEPTED: u8 = 2;
    /// The result is committed; the draw waits for the seed block.
    pub const COMMITTED: u8 = 3;
    /// Verifiers drawn; voting.
    pub const DRAWN: u8 = 4;
    /// Paid.
    pub const DONE: u8 = 5;
    /// Withdrawn by the client.
    pub const CANCELLED: u8 = 6;
    /// The name of `state`.
    pub fn name(state: u8) -> &'static str {
        ["none", "posted", "accepted", "committed", "drawn", "done", "cancelled", "expired"]
            .get(usize::from(state))
            .copied()
            .unwrap_or("unknown")
    }
}

/// What the compute side needs besides the chain link.
#[derive(Clone)]
pub struct ComputeSetup {
    /// `[compute]`.
    pub cfg: ComputeConfig,
    /// The libp2p node (inputs and outputs are objects on the network).
    pub node: Option<NodeHandle>,
    /// Segment size of stored outputs (`storage.segment_size`).
    pub segment_size: u32,
    /// Where the running jobs are, for `/status`.
    pub progress: super::progress::JobProgress,
}

/// Records posted jobs from the ComputeMarket's events.
pub struct JobHandler {
    /// The book.
    pub book: JobBook,
    /// The ComputeMarket.
    pub market: Address,
    /// Counts each job's events for the worker.
    pub touches: Touches,
}

fn fail(e: impl std::fmt::Display) -> HandlerError {
    HandlerError::new(e.to_string())
}

impl Handler for JobHandler {
    async fn handle(&mut self, batch: &LogBatch) -> Result<(), HandlerError> {
        for watched in &batch.logs {
            let log = &watched.log;
            if log.address() != self.market {
                continue;
            }
            self.touches.saw(log);
            let Ok(e) = log.log_decode::<ComputeMarket::JobPosted>() else { continue };
            match PostedJob::from_event(&e.inner.data) {
                Ok(job) => {
                    let id: u64 = job.job_id.saturating_to();
                    let known = self.book.get(id).map_err(fail)?;
                    if known.is_none_or(|k| k.posted_block != watched.block.number) {
                        tracing::info!(job = id, kind = job.kind, tiles = job.tiles, "compute job posted");
                        self.book.put(&JobEntry::posted(&job, watched.block.number)).map_err(fail)?;
                    }
                }
                Err(bad) => tracing::warn!(error = %bad, "ignoring a posted compute job"),
            }
        }
        Ok(())
    }

    async fn rewound(&mut self, rewind: &Rewind) -> Result<(), HandlerError> {
        self.touches.stir_all();
        for job in self.book.all().map_err(fail)? {
            if job.posted_block >= rewind.void_from {
                self.book.remove(job.job_id).map_err(fail)?;
            }
        }
        Ok(())
    }
}

/// The job key of one attempt: its tiles in sled are kept under it.
fn tiles_key(market: Address, job: u64, attempt: u32) -> [u8; 32] {
    let mut buf = Vec::with_capacity(32);
    buf.extend_from_slice(market.as_slice());
    buf.extend_from_slice(&job.to_be_bytes());
    buf.extend_from_slice(&attempt.to_be_bytes());
    keccak256(&buf).0
}

/// Work the job needs, in the units of its price: million samples for a render, output
/// megapixels for an inference (fractions rounded up to a millionth).
fn price_of(cfg: &ComputeConfig, spec: &JobSpec, tiles: &bigfile_compute::scene::TileGrid) -> U256 {
    let (units, price) = match &spec.job {
        Job::Render { scene } => (scene.samples(), cfg.render_price_per_msample),
        Job::Infer { .. } => (u64::from(tiles.width) * u64::from(tiles.height), cfg.infer_price_per_mpixel),
    };
    (U256::from(units) * U256::from(price)).div_ceil(U256::from(1_000_000u64))
}

/// Everything the worker and its tasks share.
#[derive(Clone)]
struct Ctx {
    link: ChainLink,
    market: Address,
    book: JobBook,
    setup: ComputeSetup,
    store: Arc<Store>,
    gate: ProofGate,
    tiles: sled::Tree,
    cancel: CancellationToken,
    counters: Arc<ChainCounters>,
}

impl Ctx {
    fn view(&self) -> ComputeMarket::ComputeMarketInstance<&bigfile_chain::alloy::providers::DynProvider> {
        ComputeMarket::new(self.market, &self.link.provider)
    }

    fn devices(&self) -> Result<Devices> {
        Ok(Devices {
            render: Some(self.setup.cfg.render_device.clone()).filter(|d| !d.is_empty()),
            infer: bigfile_compute::infer::InferDevice::parse(&self.setup.cfg.infer_device)?,
        })
    }

    /// Fetches the job's inputs (an inference's model and image) from the network.
    async fn inputs(&self, spec: &JobSpec, also: &[PeerId]) -> Result<Inputs> {
        let Job::Infer { model, input } = &spec.job else { return Ok(Inputs::default()) };
        let node = self.setup.node.as_ref().context("the network is disabled: cannot fetch job inputs")?;
        let max = self.setup.cfg.max_output_bytes.0;
        let get = async |what: &str, id: &str| -> Result<Vec<u8>> {
            let oid = ObjectId::from_hex(id).map_err(|e| anyhow!("{what} `{id}`: {e}"))?;
            objects::fetch(node, Some(self.store.clone()), &oid, also, max)
                .await
                .with_context(|| format!("fetching the {what} {id}"))
        };
        Ok(Inputs { model: get("model", model).await?, input: get("input", input).await? })
    }
}

/// The first checks of a posted job, before its inputs are fetched: the spec parses, matches the
/// posted kind and fits this node's `[compute]` limits. `Err` says why the job is declined.
pub fn precheck(cfg: &ComputeConfig, entry: &JobEntry) -> Result<JobSpec, String> {
    let spec_text = String::from_utf8_lossy(&entry.spec);
    let spec =
        JobSpec::from_json(&spec_text, &format!("job {} spec", entry.job_id)).map_err(|e| e.to_string())?;
    let kind_ok = matches!((&spec.job, entry.kind), (Job::Render { .. }, 0) | (Job::Infer { .. }, 1));
    if !kind_ok {
        return Err(format!("posted as kind {} but the spec is another kind", entry.kind));
    }
    spec.check_against(&cfg.limits()).map_err(|e| e.to_string())?;
    Ok(spec)
}

/// The last checks, with the inputs at hand: the posted tile count is the output's, and the
/// payment meets this node's price for the work.
pub fn terms(cfg: &ComputeConfig, entry: &JobEntry, spec: &JobSpec, inputs: &Inputs) -> Result<(), String> {
    let grid = check::grid(spec, inputs).map_err(|e| e.to_string())?;
    if grid.count() != entry.tiles {
        return Err(format!("posted with {} tiles but its output has {}", entry.tiles, grid.count()));
    }
    let price = price_of(cfg, spec, &grid);
    if entry.payment < price {
        return Err(format!(
            "pays {} BIG, below this node's price of {} BIG",
            crate::chain::format_big(entry.payment),
            crate::chain::format_big(price)
        ));
    }
    Ok(())
}

/// Why a posted job is not taken.
#[derive(Debug)]
enum Decline {
    /// For this attempt (the spec, the limits, the terms or the node itself rule it out).
    Attempt(String),
    /// For now: its inputs could not be fetched (the network may serve them a little later).
    ForNow(String),
}

/// The inputs of `entry` when this agent takes it (fetched for the checks, handed to the run),
/// or why it does not.
async fn assess(ctx: &Ctx, entry: &JobEntry) -> Result<Inputs, Decline> {
    let spec = precheck(&ctx.setup.cfg, entry).map_err(Decline::Attempt)?;
    let inputs = ctx.inputs(&spec, &[]).await.map_err(|e| Decline::ForNow(format!("{e:#}")))?;
    terms(&ctx.setup.cfg, entry, &spec, &inputs).map_err(Decline::Attempt)?;
    Ok(inputs)
}

/// First wait before a job whose inputs could not be fetched is assessed again; it doubles up
/// to `INPUT_RETRY_MAX` while the inputs stay out of reach.
const INPUT_RETRY_FIRST: Duration = Duration::from_secs(15);
const INPUT_RETRY_MAX: Duration = Duration::from_secs(600);

/// Jobs (job, attempt) waiting to be assessed again, each with its doubling wait.
#[derive(Default)]
struct Backoff {
    waiting: HashMap<(u64, u32), (std::time::Instant, Duration)>,
}

impl Backoff {
    /// Whether `key` may be tried at `now`.
    fn ready(&self, key: (u64, u32), now: std::time::Instant) -> bool {
        self.waiting.get(&key).is_none_or(|(at, _)| now >= *at)
    }

    /// Records a failed try at `now`; returns how long `key` now waits.
    fn failed(&mut self, key: (u64, u32), now: std::time::Instant) -> Duration {
        let wait = self.waiting.get(&key).map_or(INPUT_RETRY_FIRST, |(_, next)| *next);
        self.waiting.insert(key, (now + wait, (wait * 2).min(INPUT_RETRY_MAX)));
        wait
    }

    /// Forgets every attempt of `job`.
    fn forget(&mut self, job: u64) {
        self.waiting.retain(|(j, _), _| *j != job);
    }
}

/// Runs an accepted job to its committed result: inputs (fetched unless given), tiles, output
/// object, `submitResult`.
async fn provide(ctx: Ctx, entry: JobEntry, attempt: u32, inputs: Option<Inputs>) -> Result<Committed> {
    let spec = JobSpec::from_json(&String::from_utf8_lossy(&entry.spec), "spec")?;
    let inputs = match inputs {
        Some(inputs) => inputs,
        None => ctx.inputs(&spec, &[]).await?,
    };
    let devices = ctx.devices()?;
    let key = tiles_key(ctx.market, entry.job_id, attempt);
    let max_output = spec.limits.max_output_bytes;
    let flag = Arc::new(AtomicBool::new(false));
    let stop = {
        let (flag, cancel) = (flag.clone(), ctx.cancel.clone());
        tokio::spawn(async move {
            cancel.cancelled().await;
            flag.store(true, Ordering::Relaxed);
        })
    };
    let (tree, gate, job, counters) =
        (ctx.tiles.clone(), ctx.gate.clone(), entry.job_id, ctx.counters.clone());
    let progress = ctx.setup.progress.clone();
    let image = tokio::task::spawn_blocking(move || {
        let tiles = SledTiles::new(tree, key);
        let kept = tiles.count();
        if kept > 0 {
            tracing::info!(job, kept, "compute job resumes: tiles finished before the restart are kept");
        }
        let mut next = 25;
        let mut counted = kept as u32;
        run::run(&spec, &inputs, &devices, &tiles, &flag, &gate, |done, total| {
            progress.set(job, attempt, done, total);
            ChainCounters::add(&counters.job_tiles, u64::from(done.saturating_sub(counted)));
            counted = counted.max(done);
            if done * 100 >= next * total {
                tracing::info!(job, done, total, "compute job progress");
                next += 25;
            }
        })
    })
    .await;
    stop.abort();
    ctx.setup.progress.finish(job);
    let image = image??;
    let png = image.png()?;
    anyhow::ensure!(
        png.len() as u64 <= max_output,
        "the output is {} bytes, more than the job's max_output_bytes ({max_output})",
        png.len()
    );
    let node = ctx.setup.node.as_ref().context("the network is disabled: cannot store the output")?;
    let output = objects::store(node, png, ctx.setup.segment_size).await.context("storing the output")?;
    let root = B256::from(image.root);
    let output_id = B256::from(output.0);
    let call = ComputeMarket::submitResultCall { jobId: U256::from(job), root, outputId: output_id };
    ctx.link.send(ctx.market, &call, format!("submitResult for compute job {job}")).await?;
    tracing::info!(job, root = %root, output = %output_id, "compute result committed");
    ChainCounters::add(&ctx.counters.jobs_committed, 1);
    SledTiles::new(ctx.tiles.clone(), key).clear()?;
    Ok(Committed { attempt, root, output_id })
}

/// Blocks past a result's seed block after which any node, not only its provider, calls `draw`.
const DRAW_GRACE: u64 = 3;
/// Blocks past another provider's deadline after which a node calls `expire`.
const EXPIRE_AFTER: u64 = 2;
/// How often the verifier pool membership is read again (the market removes a drawn verifier
/// that stayed silent through an inconclusive check; this node then enrolls again).
const ENROLL_RECHECK: Duration = Duration::from_secs(30);

/// The worker's memory within one run.
struct Worker {
    ctx: Ctx,
    touches: Touches,
    /// Jobs left unread until their event count moves (or the head passes the block), see
    /// `rest::rest_until`.
    resting: HashMap<u64, (Stamp, Option<u64>)>,
    running: HashMap<u64, (u32, JoinHandle<Result<Committed>>)>,
    /// (job, attempt) runs that failed in this process: not retried until a restart (a job
    /// past its wall time must not get a fresh one by being started again).
    given_up: std::collections::HashSet<(u64, u32)>,
    /// (job, attempt) whose inputs could not be fetched: when to try again, and the next wait.
    retry_inputs: Backoff,
    verifying: HashMap<u64, JoinHandle<Result<bool>>>,
    /// When the verifier pool membership was last settled (joined, or left when verify is off).
    enrolled_at: Option<std::time::Instant>,
    /// Whether this node was in the pool when last settled.
    was_member: bool,
    enroll_warned: bool,
}

/// What the compute side shares with the chain side it runs beside.
pub struct Shared {
    /// The chain connection (the same account and sender as the steward's).
    pub link: ChainLink,
    /// The ComputeMarket.
    pub market: Address,
    /// The store (job book, tiles, local shards of inputs).
    pub store: Arc<Store>,
    /// The steward's proof gate.
    pub gate: ProofGate,
    /// Counters for /metrics.
    pub counters: Arc<ChainCounters>,
}

/// Leaves the verifier pool (with `compute.verify` off, a member would only make the jobs it is
/// drawn for wait out their vote window and then be removed).
async fn leave_pool(link: &ChainLink, market: Address) {
    match link.send(market, &ComputeMarket::leaveCall {}, "leave the compute verifier pool").await {
        Ok(_) => tracing::info!("compute.verify is off: left the verifier pool"),
        Err(e) => tracing::warn!(error = %e, "leaving the verifier pool failed"),
    }
}

/// With `compute.take_jobs` and `compute.verify` both off the compute side does not run; this
/// only takes the node out of the verifier pool when an earlier run had enrolled it.
pub async fn leave_pool_if_member(link: &ChainLink, market: Address) {
    let view = ComputeMarket::new(market, &link.provider);
    match view.isVerifier(link.me()).call().await {
        Ok(true) => leave_pool(link, market).await,
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the compute verifier pool"),
    }
}

/// Runs the compute side until `cancel`: the watcher and the worker.
pub async fn run(
    shared: Shared,
    chain: crate::config::ChainConfig,
    setup: ComputeSetup,
    cancel: CancellationToken,
) -> Result<()> {
    let Shared { link, market, store, gate, counters } = shared;
    let book = JobBook::open(&store)?;
    let cursor = crate::chain::service::SledCursor::open_named(&store, "compute-cursor")?;
    cursor.rebind(&format!("{}:{market:#x}", chain.chain_id), |old| {
        tracing::warn!(was = old, "chain.compute_market changed: the old market's job book is dropped");
        for j in book.all()? {
            book.remove(j.job_id)?;
        }
        Ok(())
    })?;
    let code = link.provider.get_code_at(market).await.context("reading the compute market's code")?;
    anyhow::ensure!(
        !code.is_empty(),
        "chain.compute_market {market} has no contract on chain {}",
        chain.chain_id
    );
    let mut config = bigfile_chain::watcher::WatcherConfig::new(vec![market], chain.start_block);
    config.confirmations = chain.confirmations;
    config.poll_interval = Duration::from_millis(chain.poll_interval_ms);
    let touches = Touches::default();
    let handler = JobHandler { book: book.clone(), market, touches: touches.clone() };
    let watcher = bigfile_chain::watcher::spawn(link.provider.clone(), config, cursor, handler, &cancel)
        .context("starting the compute market watcher")?;
    tracing::info!(%market, take_jobs = setup.cfg.take_jobs, verify = setup.cfg.verify, "following the compute market");
    let tiles = store.agent_tree("compute-tiles")?;
    let ctx = Ctx { link, market, book, setup, store, gate, tiles, cancel: cancel.clone(), counters };
    let mut worker = Worker {
        ctx,
        touches,
        resting: HashMap::new(),
        running: HashMap::new(),
        given_up: Default::default(),
        retry_inputs: Backoff::default(),
        verifying: HashMap::new(),
        enrolled_at: None,
        was_member: false,
        enroll_warned: false,
    };
    let mut tick = tokio::time::interval(Duration::from_millis(chain.poll_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        if let Err(e) = worker.step().await {
            tracing::warn!(error = %format!("{e:#}"), "compute market step failed; retrying next poll");
        }
    }
    for (_, (_, task)) in worker.running.drain() {
        // Each stops at its next tile boundary; its tiles are in sled for the next run.
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    let _ = watcher.shutdown().await;
    Ok(())
}

impl Worker {
    fn me(&self) -> Address {
        self.ctx.link.me()
    }

    async fn step(&mut self) -> Result<()> {
        let head = self.ctx.link.provider.get_block_number().await.context("chain head")?;
        self.enroll().await;
        self.reap().await?;
        for entry in self.ctx.book.open_jobs()? {
            let job = entry.job_id;
            let stamp = self.touches.stamp(job);
            let busy = self.running.contains_key(&job) || self.verifying.contains_key(&job);
            if !busy
                && let Some((seen, wake)) = self.resting.get(&job)
                && *seen == stamp
                && wake.is_none_or(|b| head <= b)
            {
                continue;
            }
            self.resting.remove(&job);
            if let Err(e) = self.act(&entry, head, stamp).await {
                tracing::warn!(job = entry.job_id, error = %format!("{e:#}"), "compute job step failed");
            }
        }
        Ok(())
    }

    /// Joins the verifier pool when `compute.verify` is on, and leaves it when it is off (a
    /// member that never votes only makes drawn jobs wait for their vote window); read again
    /// every `ENROLL_RECHECK`, so a node the market removed for silence enrolls again.
    async fn enroll(&mut self) {
        if self.enrolled_at.is_some_and(|t| t.elapsed() < ENROLL_RECHECK) {
            return;
        }
        let me = self.me();
        let member = match self.ctx.view().isVerifier(me).call().await {
            Ok(member) => member,
            Err(_) => return,
        };
        if !self.ctx.setup.cfg.verify {
            self.enrolled_at = Some(std::time::Instant::now());
            self.was_member = false;
            if member {
                leave_pool(&self.ctx.link, self.ctx.market).await;
            }
            return;
        }
        if member {
            self.enrolled_at = Some(std::time::Instant::now());
            self.was_member = true;
            return;
        }
        if self.was_member {
            tracing::warn!(
                "this node is no longer in the compute verifier pool (the market removes a drawn verifier that did not vote in time): enrolling again"
            );
            self.was_member = false;
        }
        let can = self.ctx.link.registry().canServe(me).call().await.unwrap_or(false);
        if !can {
            if !std::mem::replace(&mut self.enroll_warned, true) {
                tracing::warn!(
                    "compute.verify is on but this account is not registered with the minimum stake: not enrolling as a verifier yet"
                );
            }
            return;
        }
        match self
            .ctx
            .link
            .send(self.ctx.market, &ComputeMarket::enrollCall {}, "enroll as a compute verifier")
            .await
        {
            Ok(_) => {
                tracing::info!("enrolled as a compute verifier");
                self.enrolled_at = Some(std::time::Instant::now());
                self.was_member = true;
            }
            Err(e) => tracing::warn!(error = %e, "enrolling as a compute verifier failed; retrying"),
        }
    }

    /// Collects finished provider and verifier tasks.
    async fn reap(&mut self) -> Result<()> {
        let done: Vec<u64> =
            self.running.iter().filter(|(_, (_, t))| t.is_finished()).map(|(j, _)| *j).collect();
        for job in done {
            let Some((attempt, task)) = self.running.remove(&job) else { continue };
            let failure = match task.await {
                Ok(Ok(committed)) => {
                    self.ctx.book.update(job, |e| e.committed = Some(committed))?;
                    continue;
                }
                Ok(Err(e)) => format!("{e:#}"),
                Err(e) => format!("the job's task panicked: {e}"),
            };
            ChainCounters::add(&self.ctx.counters.jobs_failed, 1);
            tracing::error!(job, attempt, error = %failure, "compute job failed: no result will be committed (the deadline passes and the stake is slashed); restart the agent to try again");
            self.given_up.insert((job, attempt));
        }
        let done: Vec<u64> =
            self.verifying.iter().filter(|(_, t)| t.is_finished()).map(|(j, _)| *j).collect();
        for job in done {
            let Some(task) = self.verifying.remove(&job) else { continue };
            match task.await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(job, error = %format!("{e:#}"), "verifying a compute result failed; retrying")
                }
                Err(e) => tracing::error!(job, error = %e, "verifier task panicked"),
            }
        }
        Ok(())
    }

    async fn act(&mut self, entry: &JobEntry, head: u64, stamp: Stamp) -> Result<()> {
        let me = self.me();
        let job = U256::from(entry.job_id);
        let view = self.ctx.view().getJob(job).call().await.context("ComputeMarket.getJob")?;
        let st = view.state as u8;
        let seen = Seen {
            state: st,
            mine: view.provider == me,
            declined: entry.decided_attempt == Some(view.attempt),
            take_jobs: self.ctx.setup.cfg.take_jobs,
            deadline: view.deadline,
            seed_block: view.seedBlock,
        };
        if let Some(wake) = rest_until(seen, EXPIRE_AFTER, DRAW_GRACE) {
            self.resting.insert(entry.job_id, (stamp, wake));
        }
        match st {
            state::POSTED if self.ctx.setup.cfg.take_jobs && !self.running.contains_key(&entry.job_id) => {
                if entry.decided_attempt == Some(view.attempt) {
                    return Ok(());
                }
                let key = (entry.job_id, view.attempt);
                if !self.retry_inputs.ready(key, std::time::Instant::now()) {
                    return Ok(());
                }
                let assessed = if self.ctx.view().barred(job, me).call().await.unwrap_or(false) {
                    Err(Decline::Attempt("this node's result failed its check or missed its deadline".into()))
                } else if entry.client == me {
                    Err(Decline::Attempt("this node posted it".into()))
                } else {
                    assess(&self.ctx, entry).await
                };
                let inputs = match assessed {
                    Ok(inputs) => {
                        self.retry_inputs.forget(entry.job_id);
                        inputs
                    }
                    Err(Decline::ForNow(why)) => {
                        let wait = self.retry_inputs.failed(key, std::time::Instant::now());
                        tracing::info!(job = entry.job_id, attempt = view.attempt, why = %why, retry_in_s = wait.as_secs(), "not taking compute job for now: its inputs could not be fetched");
                        self.ctx.book.update(entry.job_id, |e| e.declined = Some(why))?;
                        return Ok(());
                    }
                    Err(Decline::Attempt(why)) => {
                        tracing::info!(job = entry.job_id, attempt = view.attempt, why = %why, "not taking compute job");
                        self.ctx.book.update(entry.job_id, |e| {
                            e.declined = Some(why);
                            e.decided_attempt = Some(view.attempt);
                        })?;
                        return Ok(());
                    }
                };
                let call = ComputeMarket::acceptCall { jobId: job };
                match self
                    .ctx
                    .link
                    .send(self.ctx.market, &call, format!("accept compute job {}", entry.job_id))
                    .await
                {
                    Ok(_) => {
                        tracing::info!(job = entry.job_id, attempt = view.attempt, "compute job accepted");
                        ChainCounters::add(&self.ctx.counters.jobs_accepted, 1);
                        self.spawn_run(entry, view.attempt, Some(inputs));
                    }
                    // Another provider was faster, most likely (its accept is pending while the
                    // job still reads Posted): the next poll reads its state.
                    Err(e) if e.to_string().contains("WrongState") => {
                        tracing::debug!(job = entry.job_id, error = %e, "another provider took the compute job first")
                    }
                    Err(e) => {
                        tracing::info!(job = entry.job_id, error = %e, "accepting the compute job failed")
                    }
                }
            }
            state::ACCEPTED if view.provider == me => {
                let done = entry.committed.as_ref().is_some_and(|c| c.attempt == view.attempt);
                let given_up = self.given_up.contains(&(entry.job_id, view.attempt));
                if !done && !given_up && !self.running.contains_key(&entry.job_id) && head <= view.deadline {
                    tracing::info!(job = entry.job_id, "resuming compute job");
                    self.spawn_run(entry, view.attempt, None);
                }
            }
            // Another provider's deadline passed without a result: send the job back to the
            // market (the contract slashes it), where this node may take it.
            state::ACCEPTED if self.ctx.setup.cfg.take_jobs && head > view.deadline + EXPIRE_AFTER => {
                let call = ComputeMarket::expireCall { jobId: job };
                if let Err(e) = self
                    .ctx
                    .link
                    .send(self.ctx.market, &call, format!("expire compute job {}", entry.job_id))
                    .await
                {
                    tracing::debug!(job = entry.job_id, error = %e, "expire failed (expired by another?)");
                }
            }
            // The provider draws as soon as the seed block is mined; any other node a few blocks
            // later (a provider that died after committing, or after an inconclusive check).
            state::COMMITTED
                if (view.provider == me && head > view.seedBlock) || head > view.seedBlock + DRAW_GRACE =>
            {
                let call = ComputeMarket::drawCall { jobId: job };
                let sent = self
                    .ctx
                    .link
                    .send(self.ctx.market, &call, format!("draw verifiers for compute job {}", entry.job_id))
                    .await;
                match sent {
                    Ok(_) => {}
                    Err(e) if view.provider == me => return Err(e.into()),
                    Err(e) => {
                        tracing::debug!(job = entry.job_id, error = %e, "draw failed (drawn by another?)")
                    }
                }
            }
            state::DRAWN => self.drawn(entry, &view, head, stamp).await?,
            state::DONE | state::CANCELLED => {
                if view.provider == me && st == state::DONE {
                    tracing::info!(job = entry.job_id, matches = view.matches, "compute job paid");
                }
                self.ctx.book.update(entry.job_id, |e| e.finished = true)?;
                self.retry_inputs.forget(entry.job_id);
            }
            _ => {}
        }
        Ok(())
    }

    fn spawn_run(&mut self, entry: &JobEntry, attempt: u32, inputs: Option<Inputs>) {
        let task = tokio::spawn(provide(self.ctx.clone(), entry.clone(), attempt, inputs));
        self.running.insert(entry.job_id, (attempt, task));
    }

    /// A drawn job: vote when this node was drawn, settle when the vote is over.
    async fn drawn(
        &mut self,
        entry: &JobEntry,
        view: &bigfile_chain::bindings::IComputeMarket::JobView,
        head: u64,
        stamp: Stamp,
    ) -> Result<()> {
        let me = self.me();
        let job = U256::from(entry.job_id);
        let drawn = self.ctx.view().verifiersOf(job).call().await.context("verifiersOf")?;
        let position = drawn.iter().position(|v| *v == me);
        if position.is_none() && view.provider != me {
            // Not this node's to vote on or settle: until the next event (a settle).
            self.resting.insert(entry.job_id, (stamp, None));
        }
        let votes = view.matches + view.mismatches;
        let all_voted = votes as usize >= drawn.len();
        if position.is_some() && !self.verifying.contains_key(&entry.job_id) && head <= view.voteDeadline {
            let voted = self.ctx.view().hasVoted(job, me).call().await.context("hasVoted")?;
            if !voted {
                let task = tokio::spawn(verify_and_vote(self.ctx.clone(), entry.clone(), view.clone()));
                self.verifying.insert(entry.job_id, task);
            }
        }
        // The provider settles as soon as it can; the first drawn verifier too (a provider that
        // failed has no wish to); anyone drawn once the window is over.
        let first = position == Some(0);
        let due = all_voted || head > view.voteDeadline;
        if due && (view.provider == me || first || (position.is_some() && head > view.voteDeadline + 2)) {
            let call = ComputeMarket::settleCall { jobId: job };
            match self
                .ctx
                .link
                .send(self.ctx.market, &call, format!("settle compute job {}", entry.job_id))
                .await
            {
                Ok(outcome) => {
                    for log in outcome.logs() {
                        if let Ok(p) = log.log_decode::<ComputeMarket::JobPaid>() {
                            tracing::info!(job = entry.job_id, paid = %crate::chain::format_big(p.inner.data.paid), "compute job settled: paid");
                        } else if let Ok(f) = log.log_decode::<ComputeMarket::JobFailed>() {
                            tracing::warn!(job = entry.job_id, slashed = %crate::chain::format_big(f.inner.data.slashed), "compute job settled: the result failed its check");
                        } else if let Ok(i) = log.log_decode::<ComputeMarket::CheckInconclusive>() {
                            let d = &i.inner.data;
                            tracing::info!(
                                job = entry.job_id,
                                matches = d.matches,
                                mismatches = d.mismatches,
                                round = d.round,
                                "compute check inconclusive (no majority of the drawn verifiers): drawn again"
                            );
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(job = entry.job_id, error = %e, "settle failed (settled by another?)")
                }
            }
        }
        Ok(())
    }
}

/// Fetches the output (and inputs), checks it and votes.
async fn verify_and_vote(
    ctx: Ctx,
    entry: JobEntry,
    view: bigfile_chain::bindings::IComputeMarket::JobView,
) -> Result<bool> {
    let me = ctx.link.me();
    let job = U256::from(entry.job_id);
    let spec = JobSpec::from_json(&String::from_utf8_lossy(&entry.spec), "spec")?;
    let node = ctx.setup.node.as_ref().context("the network is disabled: cannot fetch the output")?;
    let also: Vec<PeerId> = ctx.link.peer_of(view.provider).await.into_iter().collect();
    let inputs = ctx.inputs(&spec, &also).await?;
    let tiles = ctx.view().tilesFor(job, me).call().await.context("tilesFor")?;
    let max = spec.limits.max_output_bytes.min(ctx.setup.cfg.max_output_bytes.0);
    let output = ObjectId(view.outputId.0);
    let verdict = match objects::fetch(node, Some(ctx.store.clone()), &output, &also, max).await {
        Ok(png) => {
            let devices = ctx.devices()?;
            let root = view.root.0;
            tokio::task::spawn_blocking(move || check::check(&spec, &inputs, &devices, &png, root, &tiles))
                .await??
        }
        // An output nobody serves cannot be checked: it is the provider's to keep available
        // until the vote is over, so it counts as a mismatch once the vote is about to close.
        Err(e) => {
            let head = ctx.link.provider.get_block_number().await.unwrap_or_default();
            if head + 2 < view.voteDeadline {
                return Err(e);
            }
            check::Verdict {
                matches: false,
                why: Some(format!("the output could not be fetched: {e:#}")),
                tiles: vec![],
            }
        }
    };
    match &verdict.why {
        None => {
            tracing::info!(job = entry.job_id, tiles = verdict.tiles.len(), "compute result checked: match")
        }
        Some(why) => tracing::warn!(job = entry.job_id, why = %why, "compute result checked: MISMATCH"),
    }
    let call = ComputeMarket::voteCall { jobId: job, matches: verdict.matches };
    ctx.link.send(ctx.market, &call, format!("vote on compute job {}", entry.job_id)).await?;
    let tally = if verdict.matches { &ctx.counters.votes_match } else { &ctx.counters.votes_mismatch };
    ChainCounters::add(tally, 1);
    ctx.book.update(entry.job_id, |e| e.voted = Some((view.attempt, verdict.matches)))?;
    Ok(verdict.matches)
}

#[cfg(test)]
mod tests {
    use bigfile_chain::alloy::primitives::Bytes;

    use super::*;

    fn entry(spec: &str, kind: u8, tiles: u32, payment: u128) -> JobEntry {
        JobEntry {
            job_id: 7,
            client: Address::repeat_byte(1),
            kind,
            spec: Bytes::from(spec.as_bytes().to_vec()),
            inputs: vec![],
            tiles,
            payment: U256::from(payment),
            run_blocks: 100,
            posted_block: 1,
            declined: None,
            decided_attempt: None,
            committed: None,
            voted: None,
            finished: false,
        }
    }

    fn render_spec(wall: u64) -> String {
        let scene = include_str!("../../../examples/scenes/cornell.json");
        format!(
            r#"{{"version": 1, "kind": "render", "scene": {scene},
                "limits": {{"max_wall_secs": {wall}, "max_device_memory": 268435456, "max_output_bytes": 1048576}}}}"#
        )
    }

    #[test]
    fn jobs_outside_the_limits_kind_tiles_or_price_are_declined_with_the_reason() {
        let cfg = ComputeConfig::default();
        // 128 x 128 x 64 spp = 1.048576 Msamples at 0.001 BIG per Msample.
        let price = 1_048_576u128 * 1_000_000_000;
        let good = entry(&render_spec(600), 0, 16, price);
        let spec = precheck(&cfg, &good).expect("a job this node runs");
        terms(&cfg, &good, &spec, &Inputs::default()).expect("paid enough");

        let long = entry(&render_spec(cfg.max_wall_secs + 1), 0, 16, price);
        assert!(precheck(&cfg, &long).expect_err("too long").contains("limits.max_wall_secs"));
        let kind = entry(&render_spec(600), 1, 16, price);
        assert!(precheck(&cfg, &kind).expect_err("kind").contains("posted as kind 1"));
        let junk = entry("{\"version\": 1}", 0, 16, price);
        assert!(precheck(&cfg, &junk).is_err());

        let tiles = entry(&render_spec(600), 0, 5, price);
        let why = terms(&cfg, &tiles, &spec, &Inputs::default()).expect_err("tiles");
        assert!(why.contains("posted with 5 tiles but its output has 16"), "{why}");
        let cheap = entry(&render_spec(600), 0, 16, price - 1);
        let why = terms(&cfg, &cheap, &spec, &Inputs::default()).expect_err("underpaid");
        assert!(why.contains("below this node's price of 0.001048576 BIG"), "{why}");
    }

    #[test]
    fn a_job_whose_inputs_were_out_of_reach_is_tried_again_later_and_later() {
        let mut b = Backoff::default();
        let t0 = std::time::Instant::now();
        assert!(b.ready((7, 0), t0), "never tried: ready");
        assert_eq!(b.failed((7, 0), t0), INPUT_RETRY_FIRST);
        assert!(!b.ready((7, 0), t0 + INPUT_RETRY_FIRST - Duration::from_millis(1)));
        assert!(b.ready((7, 0), t0 + INPUT_RETRY_FIRST));
        assert!(b.ready((7, 1), t0), "another attempt is apart");
        assert!(b.ready((8, 0), t0), "another job is apart");
        let mut now = t0 + INPUT_RETRY_FIRST;
        let mut waits = Vec::new();
        for _ in 0..8 {
            let w = b.failed((7, 0), now);
            waits.push(w.as_secs());
            now += w;
        }
        assert_eq!(waits, [30, 60, 120, 240, 480, 600, 600, 600]);
        b.failed((7, 1), now);
        b.forget(7);
        assert!(b.ready((7, 0), now) && b.ready((7, 1), now));
        assert_eq!(b.failed((7, 0), now), INPUT_RETRY_FIRST, "forgotten: starts over");
    }

    #[test]
    fn each_attempt_keeps_its_tiles_apart() {
        let m = Address::repeat_byte(9);
        assert_ne!(tiles_key(m, 1, 0), tiles_key(m, 1, 1));
        assert_ne!(tiles_key(m, 1, 0), tiles_key(m, 2, 0));
        assert_ne!(tiles_key(m, 1, 0), tiles_key(Address::repeat_byte(8), 1, 0));
        assert_eq!(tiles_key(m, 1, 0), tiles_key(m, 1, 0));
    }
}
