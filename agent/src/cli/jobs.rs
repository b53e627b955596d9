//! Compute jobs from the command line: `client render|infer` post a job, follow it to Done and
//! fetch its output (checked against the committed root); `jobs list|show` read the jobs this
//! node ran or verified from the chain.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use bigfile_chain::alloy::primitives::{Address, U256};
use bigfile_chain::bindings::ComputeMarket;
use bigfile_compute::infer::{InputImage, Weights};
use bigfile_compute::scene::{Scene, TileGrid};
use bigfile_compute::spec::{Job, JobSpec, Limits, render_device_memory, render_output_bytes};
use bigfile_storage::ObjectId;
use clap::{Args, Subcommand};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::Output;
use super::client::Client;
use crate::chain::{format_big, parse_big};
use crate::compute::client::{JobClient, Posted};
use crate::compute::market::state;
use crate::compute::{check, objects};
use crate::config::Config;

/// What every posted job takes.
#[derive(Args, Debug, Clone)]
pub struct PostArgs {
    /// BIG paid for the job, e.g. 0.5 (default: what this node's [compute] prices ask for it).
    #[arg(long)]
    pub payment: Option<String>,
    /// Blocks the provider has from acceptance to its result.
    #[arg(long, default_value_t = 600)]
    pub run_blocks: u64,
    /// Wall time the job may take on the provider, seconds.
    #[arg(long, default_value_t = 600)]
    pub wall_secs: u64,
    /// Where to write the output (default: job-ID.png in the current directory).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Post only; do not wait for the result.
    #[arg(long, conflicts_with = "keep")]
    pub no_wait: bool,
    /// Once the output is fetched and checked, keep it on the network under a storage deal
    /// (the coding flags below, [chain.deal] terms, as `client put`). Without it the output
    /// object stays with the two providers the job's provider placed it on, under no deal.
    #[arg(long)]
    pub keep: bool,
    /// Erasure coding of the kept output (`--keep`).
    #[command(flatten)]
    pub coding: super::store::CodingArgs,
    /// Seconds to wait for the job to be done.
    #[arg(long, default_value_t = 1800)]
    pub timeout: u64,
}

/// `jobs` subcommands.
#[derive(Subcommand, Debug)]
pub enum JobsCmd {
    /// Jobs this node took as a provider or voted on as a verifier.
    List,
    /// One job, whole.
    Show {
        /// The job id.
        id: u64,
    },
    /// Withdraw a job this node posted that no provider has taken yet; the payment comes back.
    Cancel {
        /// The job id.
        id: u64,
    },
}

/// What `client render|infer` report.
#[derive(Serialize)]
struct JobReport {
    #[serde(flatten)]
    posted: Posted,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    root: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    matches: Option<u32>,
    /// The output kept under a storage deal (`--keep`).
    #[serde(skip_serializing_if = "Option::is_none")]
    kept: Option<super::client::PutResult>,
    secs: f64,
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// The payment: `--payment`, or `units` of work at `price` base units per million.
fn payment(args: &PostArgs, units: u64, price: u64) -> Result<U256> {
    let p = match &args.payment {
        Some(text) => parse_big(text).map_err(|e| anyhow!("--payment: {e}"))?,
        None => (U256::from(units) * U256::from(price)).div_ceil(U256::from(1_000_000u64)),
    };
    anyhow::ensure!(!p.is_zero(), "--payment: must be greater than 0");
    Ok(p)
}

/// `client render SPEC`: a scene file or a render job spec.
pub fn render(cfg: &Config, path: &Path, args: PostArgs, out: &Output) -> Result<ExitCode> {
    let what = path.display().to_string();
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {what}"))?;
    let is_job = serde_json::from_str::<serde_json::Value>(&text).is_ok_and(|v| v.get("kind").is_some());
    let spec = if is_job {
        let spec = JobSpec::from_json(&text, &what)?;
        anyhow::ensure!(
            matches!(spec.job, Job::Render { .. }),
            "{what} is an inference job spec: post it with `client infer --model ID --input ID`"
        );
        spec
    } else {
        let scene = Scene::from_json(&text, &what)?;
        let limits = Limits {
            max_wall_secs: args.wall_secs,
            max_device_memory: render_device_memory(&scene),
            max_output_bytes: render_output_bytes(&scene),
        };
        let spec = JobSpec { version: bigfile_compute::spec::VERSION, job: Job::Render { scene }, limits };
        spec.validate(&what)?;
        spec
    };
    let Job::Render { scene } = &spec.job else { unreachable!("checked above") };
    let grid = scene.grid();
    let pay = payment(&args, scene.samples(), cfg.compute.render_price_per_msample)?;
    runtime()?.block_on(post_and_follow(cfg, spec, grid, pay, args, out))
}

/// `client infer --model ID --input ID`: both fetched first, so a bad object costs nothing.
pub fn infer(cfg: &Config, model: &str, input: &str, args: PostArgs, out: &Output) -> Result<ExitCode> {
    let model_id = ObjectId::from_hex(model).map_err(|e| anyhow!("--model `{model}`: {e}"))?;
    let input_id = ObjectId::from_hex(input).map_err(|e| anyhow!("--input `{input}`: {e}"))?;
    runtime()?.block_on(async {
        let client = Client::start(cfg, Duration::from_secs(20)).await?;
        let fetched = async {
            let max = cfg.compute.max_output_bytes.0;
            let m =
                objects::fetch(&client.node, None, &model_id, &[], max).await.context("fetching --model")?;
            let i =
                objects::fetch(&client.node, None, &input_id, &[], max).await.context("fetching --input")?;
            anyhow::Ok((m, i))
        }
        .await;
        client.stop().await;
        let (m, i) = fetched?;
        Weights::from_safetensors(&m, &format!("model {model}"))?;
        let grid = InputImage::from_png(&i, &format!("input {input}"))?.output_grid();
        let raw = (u64::from(grid.width) * 3 + 1) * u64::from(grid.height);
        let limits = Limits {
            max_wall_secs: args.wall_secs,
            max_device_memory: 512 << 20,
            max_output_bytes: raw + raw / 65_535 * 5 + 1024,
        };
        let spec = JobSpec {
            version: bigfile_compute::spec::VERSION,
            job: Job::Infer { model: model_id.to_hex(), input: input_id.to_hex() },
            limits,
        };
        spec.validate("job")?;
        let pixels = u64::from(grid.width) * u64::from(grid.height);
        let pay = payment(&args, pixels, cfg.compute.infer_price_per_mpixel)?;
        post_and_follow(cfg, spec, grid, pay, args, out).await
    })
}

async fn post_and_follow(
    cfg: &Config,
    spec: JobSpec,
    grid: TileGrid,
    pay: U256,
    args: PostArgs,
    out: &Output,
) -> Result<ExitCode> {
    let started = Instant::now();
    // The deal terms are checked before anything is paid.
    let keep = match args.keep {
        true => Some((
            args.coding.resolve(cfg)?,
            crate::chain::deals::DealTerms::from_config(&cfg.chain, None, None)
                .context("--keep: the [chain.deal] terms")?,
        )),
        false => None,
    };
    let cancel = CancellationToken::new();
    let jobs = JobClient::connect(cfg, cancel.clone()).await?;
    let posted = jobs.post(&spec, grid.count(), pay, args.run_blocks).await?;
    if !out.json {
        eprintln!(
            "job {} posted: {} tiles, {} BIG escrowed (tx {})",
            posted.job_id, posted.tiles, posted.payment, posted.tx
        );
    }
    let mut report = JobReport {
        posted: posted.clone(),
        provider: None,
        root: None,
        output_id: None,
        output: None,
        attempts: None,
        matches: None,
        kept: None,
        secs: 0.0,
    };
    if !args.no_wait {
        let json = out.json;
        let done = jobs
            .wait(posted.job_id, Duration::from_secs(args.timeout), |s| {
                if !json {
                    eprintln!("job {}: {s}", posted.job_id);
                }
            })
            .await?;
        let path = args.output.clone().unwrap_or_else(|| PathBuf::from(format!("job-{}.png", posted.job_id)));
        let also: Vec<libp2p::PeerId> = jobs.link().peer_of(done.provider).await.into_iter().collect();
        let client = Client::start(cfg, Duration::from_secs(20)).await?;
        let png = objects::fetch(
            &client.node,
            None,
            &ObjectId(done.output_id.0),
            &also,
            spec.limits.max_output_bytes,
        )
        .await
        .context("fetching the job's output");
        client.stop().await;
        let png = png?;
        let root = check::output_root(&grid, &png).map_err(|e| anyhow!("the job's output object: {e}"))?;
        anyhow::ensure!(
            root == done.root.0,
            "the output object does not hash to the root the provider committed to: not written"
        );
        std::fs::write(&path, &png).with_context(|| format!("writing {}", path.display()))?;
        report.provider = Some(done.provider.to_string());
        report.root = Some(done.root.to_string());
        report.output_id = Some(done.output_id.to_string());
        report.output = Some(path.clone());
        report.attempts = Some(done.attempts);
        report.matches = Some(done.matches);
        if let Some((coding, terms)) = keep {
            let kept =
                super::client::put(cfg, path.clone(), coding, Some(terms), Duration::from_secs(120), out)
                    .await
                    .with_context(|| {
                        format!(
                            "the output is written to {}, but keeping it under a deal failed",
                            path.display()
                        )
                    })?;
            report.kept = Some(kept);
        }
    }
    cancel.cancel();
    report.secs = started.elapsed().as_secs_f64();
    out.print(&report, || match &report.output {
        Some(path) => format!(
            "job {} done and paid ({} BIG): run by {}, attempt {}, {} verifier vote(s) matched\n  output {} (object {}, root {})",
            report.posted.job_id,
            report.posted.payment,
            report.provider.as_deref().unwrap_or("?"),
            report.attempts.unwrap_or(0),
            report.matches.unwrap_or(0),
            path.display(),
            report.output_id.as_deref().unwrap_or("?"),
            report.root.as_deref().unwrap_or("?"),
        ) + &match report.kept.as_ref().and_then(|k| k.deal.as_ref().map(|d| (&k.id, d))) {
            Some((id, d)) => format!("\n  kept as object {id} under deal {} ({} periods)", d.deal_id, d.periods),
            None => String::new(),
        },
        None => format!("job {} posted", report.posted.job_id),
    });
    Ok(ExitCode::SUCCESS)
}

/// One job in `jobs list|show`.
#[derive(Serialize)]
struct JobRow {
    job_id: u64,
    role: &'static str,
    state: &'static str,
    kind: &'static str,
    client: Address,
    provider: Address,
    payment: String,
    tiles: u32,
    attempt: u32,
    /// Inconclusive checks of the current result so far (each draws fresh verifiers).
    check_round: u32,
    root: String,
    output_id: String,
    matches: u32,
    mismatches: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    verifiers: Vec<Address>,
    #[serde(skip_serializing_if = "Option::is_none")]
    spec: Option<serde_json::Value>,
}

/// `jobs list|show`.
pub fn jobs(cfg: &Config, cmd: JobsCmd, out: &Output) -> Result<ExitCode> {
    runtime()?.block_on(async {
        let cancel = CancellationToken::new();
        let jobs = JobClient::connect(cfg, cancel.clone()).await?;
        let me = jobs.me();
        let view = jobs.view();
        let row = async |id: u64, whole: bool| -> Result<JobRow> {
            let v = view.getJob(U256::from(id)).call().await.context("ComputeMarket.getJob")?;
            let verifiers = view.verifiersOf(U256::from(id)).call().await.context("verifiersOf")?;
            let role = if v.provider == me {
                "provider"
            } else if verifiers.contains(&me) {
                "verifier"
            } else if v.client == me {
                "client"
            } else {
                "-"
            };
            let spec = if whole {
                jobs.spec_of(id).await?.and_then(|b| serde_json::from_slice(&b).ok())
            } else {
                None
            };
            Ok(JobRow {
                job_id: id,
                role,
                state: state::name(v.state as u8),
                kind: if v.kind == 0 { "render" } else { "infer" },
                client: v.client,
                provider: v.provider,
                payment: format_big(v.payment),
                tiles: v.tiles,
                attempt: v.attempt,
                check_round: v.round,
                root: v.root.to_string(),
                output_id: v.outputId.to_string(),
                matches: v.matches,
                mismatches: v.mismatches,
                verifiers: if whole { verifiers } else { Vec::new() },
                spec,
            })
        };
        match cmd {
            JobsCmd::List => {
                let mut rows = Vec::new();
                for id in jobs.mine().await? {
                    rows.push(row(id, false).await?);
                }
                out.print(&rows, || {
                    let mut s = format!("{me}: {} compute job(s)", rows.len());
                    for r in &rows {
                        s += &format!(
                            "\n  job {:>4} {:<8} {:<6} {:<9} {} BIG, {} tiles, votes {}/{}",
                            r.job_id, r.role, r.kind, r.state, r.payment, r.tiles, r.matches, r.mismatches
                        );
                    }
                    s
                });
            }
            JobsCmd::Cancel { id } => {
                let v = view.getJob(U256::from(id)).call().await.context("ComputeMarket.getJob")?;
                anyhow::ensure!(
                    v.client == me,
                    "job {id} was posted by {}, not by this node ({me})",
                    v.client
                );
                anyhow::ensure!(
                    v.state as u8 == state::POSTED,
                    "job {id} is {}: only a job no provider has taken can be cancelled",
                    state::name(v.state as u8)
                );
                let call = ComputeMarket::cancelCall { jobId: U256::from(id) };
                let outcome = jobs.link().send(jobs.market(), &call, format!("cancel job {id}")).await?;
                let refund = outcome
                    .logs()
                    .iter()
                    .find_map(|l| l.log_decode::<ComputeMarket::JobCancelled>().ok())
                    .map(|e| e.inner.data.refund)
                    .unwrap_or_default();
                let report = serde_json::json!({
                    "job_id": id, "refund": format_big(refund), "tx": outcome.hash.to_string()
                });
                out.print(&report, || format!("job {id} cancelled: {} BIG refunded", format_big(refund)));
            }
            JobsCmd::Show { id } => {
                let count: u64 = view.jobCount().call().await.context("jobCount")?.saturating_to();
                anyhow::ensure!(
                    id >= 1 && id <= count,
                    "job {id} does not exist (the market has {count} jobs)"
                );
                let r = row(id, true).await?;
                out.print(&r, || serde_json::to_string_pretty(&r).unwrap_or_default());
            }
        }
        cancel.cancel();
        Ok(ExitCode::SUCCESS)
    })
}
