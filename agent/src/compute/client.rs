//! The client's side of a compute job: post it (spec, tiles, payment escrowed), follow it to Done
//! (calling `draw`, `settle` or `expire` when nobody else does), and fetch its output, checked
//! against the committed root.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bigfile_chain::ChainKey;
use bigfile_chain::alloy::primitives::{Address, B256, U256};
use bigfile_chain::alloy::providers::Provider;
use bigfile_chain::alloy::rpc::types::Filter;
use bigfile_chain::alloy::sol_types::SolEvent;
use bigfile_chain::bindings::{ComputeMarket, IComputeMarket};
use bigfile_chain::compute::{KIND_INFER, KIND_RENDER, post_params};
use bigfile_compute::spec::{Job, JobSpec};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::market::state;
use crate::chain::{ChainLink, format_big};
use crate::config::Config;
use crate::keys;

/// A posted job.
#[derive(Clone, Debug, Serialize)]
pub struct Posted {
    /// The job id.
    pub job_id: u64,
    /// BIG escrowed.
    pub payment: String,
    /// Tiles the result is committed over.
    pub tiles: u32,
    /// The postJob transaction.
    pub tx: String,
}

/// How a job ended.
#[derive(Clone, Debug, Serialize)]
pub struct Finished {
    /// The provider paid.
    pub provider: Address,
    /// The committed root.
    pub root: B256,
    /// The output object.
    pub output_id: B256,
    /// Re-posts after failed checks or missed deadlines.
    pub attempts: u32,
    /// Verifier votes of the passing check.
    pub matches: u32,
}

/// A client connected to the compute market.
pub struct JobClient {
    link: ChainLink,
    market: Address,
    start_block: u64,
}

impl JobClient {
    /// Connects with the node's key to `chain.compute_market`.
    pub async fn connect(cfg: &Config, cancel: CancellationToken) -> Result<Self> {
        let market = cfg
            .chain
            .compute_market_address()
            .context("chain.compute_market is not set in the config: no compute market to post to")?;
        let password = keys::read_password(cfg.node.password_file.as_deref())?;
        let path = cfg.node.keystore.clone();
        let key = tokio::task::spawn_blocking(move || ChainKey::open(&path, &password)).await??;
        let link = ChainLink::connect(&cfg.chain, key.signer().clone(), cancel).await?;
        Ok(Self { link, market, start_block: cfg.chain.start_block })
    }

    /// This client's account.
    pub fn me(&self) -> Address {
        self.link.me()
    }

    /// The chain connection.
    pub fn link(&self) -> &ChainLink {
        &self.link
    }

    /// The ComputeMarket's address.
    pub fn market(&self) -> Address {
        self.market
    }

    /// The block the contracts were deployed in.
    pub fn start_block(&self) -> u64 {
        self.start_block
    }

    /// The market, for views.
    pub fn view(
        &self,
    ) -> ComputeMarket::ComputeMarketInstance<&bigfile_chain::alloy::providers::DynProvider> {
        ComputeMarket::new(self.market, &self.link.provider)
    }

    /// Escrows `payment` and posts `spec` (its canonical JSON) committed over `tiles` tiles.
    pub async fn post(&self, spec: &JobSpec, tiles: u32, payment: U256, run_blocks: u64) -> Result<Posted> {
        let bytes = serde_json::to_vec(spec)?;
        let kind = match spec.job {
            Job::Render { .. } => KIND_RENDER,
            Job::Infer { .. } => KIND_INFER,
        };
        let balance = self.link.token().balanceOf(self.link.me()).call().await.context("BIG.balanceOf")?;
        if balance < payment {
            bail!(
                "{} holds {} BIG but the job pays {} BIG; nothing was posted",
                self.link.me(),
                format_big(balance),
                format_big(payment)
            );
        }
        self.link.ensure_allowance(self.market, payment).await?;
        let inputs = spec.inputs().iter().map(|id| B256::from(id.0)).collect();
        let (params, spec_bytes) = post_params(kind, &bytes, inputs, tiles, payment, run_blocks);
        let call = ComputeMarket::postJobCall { p: params, spec: spec_bytes };
        let outcome = self.link.send(self.market, &call, "postJob").await?;
        let posted = outcome
            .logs()
            .iter()
            .find_map(|log| log.log_decode::<ComputeMarket::JobPosted>().ok())
            .context("postJob succeeded but emitted no JobPosted event")?
            .inner
            .data;
        Ok(Posted {
            job_id: posted.jobId.saturating_to(),
            payment: format_big(posted.payment),
            tiles,
            tx: outcome.hash.to_string(),
        })
    }

    /// Follows job `job_id` until it is Done, prodding it along where its provider and
    /// verifiers do not (draw, settle, expire); `progress` hears each new state.
    pub async fn wait(
        &self,
        job_id: u64,
        timeout: Duration,
        mut progress: impl FnMut(&str),
    ) -> Result<Finished> {
        let started = Instant::now();
        let job = U256::from(job_id);
        let mut last = String::new();
        let mut all_voted_at: Option<u64> = None;
        loop {
            let view: IComputeMarket::JobView = self.view().getJob(job).call().await.context("getJob")?;
            let head = self.link.provider.get_block_number().await.context("chain head")?;
            let st = view.state as u8;
            let now = match st {
                state::ACCEPTED => format!("accepted by {} (attempt {})", view.provider, view.attempt + 1),
                state::COMMITTED if view.round > 0 => format!(
                    "check inconclusive (no majority of the drawn verifiers): drawing again, round {}",
                    view.round + 1
                ),
                state::DRAWN => {
                    format!("verifiers drawn; votes {} match, {} mismatch", view.matches, view.mismatches)
                }
                s => format!("{} (attempt {})", state::name(s), view.attempt + 1),
            };
            if now != last {
                progress(&now);
                last = now;
            }
            // A grace of a few blocks lets the provider and verifiers act first; a call that
            // fails (someone else was first) is read back on the next poll.
            match st {
                state::DONE => {
                    return Ok(Finished {
                        provider: view.provider,
                        root: view.root,
                        output_id: view.outputId,
                        attempts: view.attempt + 1,
                        matches: view.matches,
                    });
                }
                state::CANCELLED => bail!("job {job_id} was cancelled"),
                state::ACCEPTED if head > view.deadline + 2 => {
                    self.prod(&ComputeMarket::expireCall { jobId: job }, format!("expire job {job_id}"))
                        .await;
                }
                state::COMMITTED if head > view.seedBlock + 3 => {
                    self.prod(&ComputeMarket::drawCall { jobId: job }, format!("draw for job {job_id}"))
                        .await;
                }
                state::DRAWN => {
                    let drawn = self.view().verifiersOf(job).call().await.context("verifiersOf")?;
                    if (view.matches + view.mismatches) as usize >= drawn.len() {
                        all_voted_at.get_or_insert(head);
                    }
                    let settle = head > view.voteDeadline + 2 || all_voted_at.is_some_and(|b| head > b + 3);
                    if settle {
                        self.prod(&ComputeMarket::settleCall { jobId: job }, format!("settle job {job_id}"))
                            .await;
                    }
                }
                _ => all_voted_at = None,
            }
            if started.elapsed() > timeout {
                bail!(
                    "job {job_id} is not done after {} s (last: {last}); it stays on chain: follow it with `jobs show {job_id}`",
                    timeout.as_secs()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl JobClient {
    /// Sends a call that moves a job along; when it fails (someone else was first), the next
    /// read of the job shows where it is.
    async fn prod<C: bigfile_chain::alloy::sol_types::SolCall>(&self, call: &C, label: String) {
        if let Err(e) = self.link.send(self.market, call, label).await {
            tracing::debug!(error = %e, "a call to move the job along failed");
        }
    }
}

impl JobClient {
    /// Jobs this account accepted or was drawn to verify, by id.
    pub async fn mine(&self) -> Result<Vec<u64>> {
        let me = self.me();
        let topic = me.into_word();
        let from = self.start_block();
        let mut ids = Vec::new();
        for (sig, filter) in [
            (ComputeMarket::JobAccepted::SIGNATURE_HASH, Filter::new().topic2(topic)),
            (ComputeMarket::Voted::SIGNATURE_HASH, Filter::new().topic2(topic)),
        ] {
            let filter = filter.address(self.market()).event_signature(sig).from_block(from);
            let logs = self.link().provider.get_logs(&filter).await.context("reading job events")?;
            ids.extend(
                logs.iter().filter_map(|l| {
                    l.topics().get(1).map(|t| U256::from_be_bytes(t.0).saturating_to::<u64>())
                }),
            );
        }
        let drawn = Filter::new()
            .address(self.market())
            .event_signature(ComputeMarket::VerifiersDrawn::SIGNATURE_HASH)
            .from_block(from);
        for log in self.link().provider.get_logs(&drawn).await.context("reading draws")? {
            if let Ok(d) = log.log_decode::<ComputeMarket::VerifiersDrawn>()
                && d.inner.data.verifiers.contains(&me)
            {
                ids.push(d.inner.data.jobId.saturating_to());
            }
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    /// The spec bytes job `id` was posted with.
    pub async fn spec_of(&self, id: u64) -> Result<Option<Vec<u8>>> {
        let filter = Filter::new()
            .address(self.market())
            .event_signature(ComputeMarket::JobPosted::SIGNATURE_HASH)
            .topic1(U256::from(id))
            .from_block(self.start_block());
        let logs = self.link().provider.get_logs(&filter).await.context("reading JobPosted")?;
        Ok(logs
            .last()
            .and_then(|l| l.log_decode::<ComputeMarket::JobPosted>().ok())
            .map(|e| e.inner.data.spec.to_vec()))
    }
}

/// How often `wait` reads the job.
const POLL: Duration = Duration::from_millis(500);
