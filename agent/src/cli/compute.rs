//! `devices` and `compute …`: try this machine's GPUs (or lavapipe) on real jobs, with no network
//! or chain involved.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, Result};
use bigfile_compute::infer::train::{Evaluation, TrainOptions};
use bigfile_compute::infer::{InferDevice, InputImage, Upscaler, Weights};
use bigfile_compute::render::NoTileStore;
use bigfile_compute::{Gpu, Renderer, Scene};
use clap::Subcommand;

use super::Output;

/// `compute …`
#[derive(Subcommand, Debug)]
pub enum ComputeCmd {
    /// Path-trace a scene (JSON, see examples/scenes) into a PNG, tile by tile.
    Render {
        /// The scene file, or a render job spec (examples/jobs).
        scene: PathBuf,
        /// Where to write the PNG.
        #[arg(short = 'o', long)]
        output: PathBuf,
        /// Adapter to use: part of `backend:name` from `devices`, or `gpu` / `cpu`; default the best.
        #[arg(long)]
        device: Option<String>,
        /// Keep finished tiles here, so a killed render started again picks up where it stopped.
        #[arg(long)]
        work_dir: Option<PathBuf>,
    },
    /// Re-render randomly chosen tiles of a scene and compare them with a result PNG, under the
    /// render tolerance (exit code 1 on a mismatch).
    Verify {
        /// The scene file (or render job spec) the result claims to render.
        scene: PathBuf,
        /// The result PNG.
        result: PathBuf,
        /// How many tiles to re-render (all when larger than the tile count).
        #[arg(long, default_value_t = 4)]
        tiles: u32,
        /// Adapter to use (as for `render`).
        #[arg(long)]
        device: Option<String>,
    },
    /// Upscale a PNG 2x with a super-resolution model (safetensors, see examples/models), tile
    /// by tile.
    Infer {
        /// The model file (architecture bigfile-espcn-x2-v1).
        #[arg(long)]
        model: PathBuf,
        /// The input PNG.
        #[arg(long)]
        input: PathBuf,
        /// Where to write the output PNG.
        #[arg(short = 'o', long)]
        output: PathBuf,
        /// `cpu`, or `cuda:N` in a build with the `cuda` feature.
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Re-run randomly chosen tiles of an inference and compare them with a result PNG, under
    /// the inference tolerance (exit code 1 on a mismatch).
    VerifyInfer {
        /// The result PNG.
        result: PathBuf,
        /// The model the result claims to come from.
        #[arg(long)]
        model: PathBuf,
        /// The input it claims to upscale.
        #[arg(long)]
        input: PathBuf,
        /// How many tiles to re-run (all when larger than the tile count).
        #[arg(long, default_value_t = 4)]
        tiles: u32,
        /// `cpu` or `cuda:N`.
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Train the shipped super-resolution model from generated images (the defaults reproduce
    /// examples/models/espcn-x2.safetensors) and judge it against bicubic on held-out images.
    TrainSr {
        /// Where to write the weights (safetensors).
        #[arg(short = 'o', long)]
        output: PathBuf,
        /// Optimiser steps.
        #[arg(long, default_value_t = bigfile_compute::infer::train::TrainOptions::default().steps)]
        steps: u32,
        /// Seed of the initial weights and the training images.
        #[arg(long, default_value_t = bigfile_compute::infer::train::TrainOptions::default().seed)]
        seed: u64,
        /// Patches per step.
        #[arg(long, default_value_t = bigfile_compute::infer::train::TrainOptions::default().batch)]
        batch: usize,
    },
}

#[derive(serde::Serialize)]
struct TileVerdict {
    tile: u32,
    #[serde(flatten)]
    comparison: bigfile_compute::verify::TileComparison,
}

#[derive(serde::Serialize)]
struct VerifyReport {
    device: String,
    matches: bool,
    tiles: Vec<TileVerdict>,
}

#[derive(serde::Serialize)]
struct Devices {
    /// wgpu adapters (rendering), best first.
    wgpu: Vec<bigfile_compute::DeviceInfo>,
    /// candle devices (inference): `cpu`, and `cuda:N` in a `cuda` build.
    infer: Vec<String>,
    /// In a `cuda` build without a usable CUDA device: why `cuda:0` does not open.
    #[serde(skip_serializing_if = "Option::is_none")]
    cuda_error: Option<String>,
}

/// `devices`: every wgpu adapter that can run compute shaders, best first, and the inference
/// devices.
pub fn devices(out: &Output) -> Result<ExitCode> {
    let list = bigfile_compute::gpu::list();
    let infer: Vec<String> = bigfile_compute::infer::devices().iter().map(|d| d.name()).collect();
    // A CUDA build that finds no CUDA device says why (driver missing, no GPU, ...).
    let cuda_error = (cfg!(feature = "cuda") && infer.len() == 1)
        .then(|| bigfile_compute::infer::InferDevice::Cuda(0).probe().err().map(|e| e.to_string()))
        .flatten();
    let all = Devices { wgpu: list.clone(), infer: infer.clone(), cuda_error: cuda_error.clone() };
    out.print(&all, || {
        let mut inference = format!("inference (candle): {}", infer.join(", "));
        if let Some(why) = &cuda_error {
            inference += &format!(" (no CUDA device: {why})");
        }
        if list.is_empty() {
            return format!(
                "no wgpu adapter with compute shaders (install mesa-vulkan-drivers for lavapipe)\n{inference}"
            );
        }
        let adapters = list
            .iter()
            .enumerate()
            .map(|(i, d)| {
                format!(
                    "{i}: {} [{}, {}] {} — storage binding {} MiB",
                    d.name,
                    d.backend,
                    d.device_type,
                    d.driver,
                    d.max_storage_buffer_binding_size >> 20
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
        format!("{adapters}\n{inference}")
    });
    Ok(ExitCode::SUCCESS)
}

#[derive(serde::Serialize)]
struct RenderReport {
    output: PathBuf,
    device: String,
    width: u32,
    height: u32,
    samples_per_pixel: u32,
    tiles: usize,
    /// Tiles taken from `--work-dir` rather than rendered in this run.
    tiles_reused: u32,
    root: String,
    secs: f64,
    megasamples_per_sec: f64,
}

/// Runs a `compute` subcommand.
pub fn run(cmd: ComputeCmd, out: &Output) -> Result<ExitCode> {
    match cmd {
        ComputeCmd::Render { scene, output, device, work_dir } => {
            let scene = load_scene(&scene)?;
            let gpu = Gpu::open(device.as_deref())?;
            let device = gpu.info.id();
            let renderer = Renderer::new(gpu);
            let bar = out.progress(u64::from(scene.tile_count()), "rendering");
            bar.set_style(indicatif::ProgressStyle::default_bar());
            let started = Instant::now();
            let cancel = AtomicBool::new(false);
            let tick = |done: u32, _| bar.set_position(u64::from(done));
            let (image, reused) = match &work_dir {
                Some(dir) => {
                    let store = bigfile_compute::render::DirTileStore::open(dir, &scene)?;
                    let (image, counts) = renderer.render_resumable(&scene, &store, &cancel, tick)?;
                    (image, counts.reused)
                }
                None => (renderer.render(&scene, &cancel, tick)?, 0),
            };
            let secs = started.elapsed().as_secs_f64();
            bar.finish_and_clear();
            let png = image.png()?;
            std::fs::write(&output, png).with_context(|| format!("writing {}", output.display()))?;
            let report = RenderReport {
                output,
                device,
                width: image.width,
                height: image.height,
                samples_per_pixel: scene.samples_per_pixel,
                tiles: image.tiles.len(),
                tiles_reused: reused,
                root: format!("0x{}", hex::encode(image.root)),
                secs,
                // Only the tiles drawn in this run count.
                megasamples_per_sec: scene.samples() as f64 * f64::from(scene.tile_count() - reused)
                    / f64::from(scene.tile_count())
                    / secs
                    / 1e6,
            };
            out.print(&report, || {
                format!(
                    "{}: {}x{} at {} spp on {} in {:.2} s ({:.2} Msamples/s)\n  {} tiles, commitment {}",
                    report.output.display(),
                    report.width,
                    report.height,
                    report.samples_per_pixel,
                    report.device,
                    report.secs,
                    report.megasamples_per_sec,
                    report.tiles,
                    report.root
                )
            });
            Ok(ExitCode::SUCCESS)
        }
        ComputeCmd::Verify { scene, result, tiles, device } => {
            let scene = load_scene(&scene)?;
            let what = result.display().to_string();
            let bytes = std::fs::read(&result).with_context(|| format!("reading {what}"))?;
            let (width, height, rgb) = bigfile_compute::render::decode_png(&bytes, &what)?;
            if (width, height) != (scene.width, scene.height) {
                anyhow::bail!(
                    "{what} is {width}x{height} but the scene renders {}x{}: not its result",
                    scene.width,
                    scene.height
                );
            }
            let renderer = Renderer::new(Gpu::open(device.as_deref())?);
            let mut verdicts = Vec::new();
            for index in pick_tiles(scene.tile_count(), tiles) {
                let tile = scene.tile(index).context("tile index")?;
                let ours = renderer.render_tile(&scene, &tile)?;
                let theirs = bigfile_compute::render::tile_bytes(&rgb, width, &tile);
                let comparison = bigfile_compute::verify::compare_render(&ours, &theirs);
                verdicts.push(TileVerdict { tile: index, comparison });
            }
            let report = VerifyReport {
                device: renderer.device().id(),
                matches: verdicts.iter().all(|v| v.comparison.matches),
                tiles: verdicts,
            };
            Ok(print_verdict(&report, &what, "re-rendered", out))
        }
        ComputeCmd::Infer { model, input, output, device } => infer(&model, &input, output, &device, out),
        ComputeCmd::VerifyInfer { result, model, input, tiles, device } => {
            verify_infer(&result, &model, &input, tiles, &device, out)
        }
        ComputeCmd::TrainSr { output, steps, seed, batch } => {
            let options = TrainOptions { steps, seed, batch, ..TrainOptions::default() };
            train_sr(output, options, out)
        }
    }
}

#[derive(serde::Serialize)]
struct InferReport {
    output: PathBuf,
    device: String,
    width: u32,
    height: u32,
    tiles: usize,
    root: String,
    secs: f64,
    megapixels_per_sec: f64,
}

fn infer(model: &Path, input: &Path, output: PathBuf, device: &str, out: &Output) -> Result<ExitCode> {
    let device = InferDevice::parse(device)?;
    let (weights, input) = load_infer(model, input)?;
    let up = Upscaler::new(&weights, device)?;
    let total = input.output_grid().count();
    let bar = out.progress(u64::from(total), "upscaling");
    bar.set_style(indicatif::ProgressStyle::default_bar());
    let started = Instant::now();
    let image = up.upscale(&input, &NoTileStore, &AtomicBool::new(false), |done, _| {
        bar.set_position(u64::from(done))
    })?;
    let secs = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    std::fs::write(&output, image.png()?).with_context(|| format!("writing {}", output.display()))?;
    let report = InferReport {
        output,
        device: up.device().to_owned(),
        width: image.width,
        height: image.height,
        tiles: image.tiles.len(),
        root: format!("0x{}", hex::encode(image.root)),
        secs,
        megapixels_per_sec: f64::from(image.width) * f64::from(image.height) / secs / 1e6,
    };
    out.print(&report, || {
        format!(
            "{}: {}x{} on {} in {:.2} s ({:.2} output Mpixel/s)\n  {} tiles, commitment {}",
            report.output.display(),
            report.width,
            report.height,
            report.device,
            report.secs,
            report.megapixels_per_sec,
            report.tiles,
            report.root
        )
    });
    Ok(ExitCode::SUCCESS)
}

fn load_infer(model: &Path, input: &Path) -> Result<(Weights, InputImage)> {
    let model_name = model.display().to_string();
    let bytes = std::fs::read(model).with_context(|| format!("reading {model_name}"))?;
    let weights = Weights::from_safetensors(&bytes, &model_name)?;
    let input_name = input.display().to_string();
    let bytes = std::fs::read(input).with_context(|| format!("reading {input_name}"))?;
    Ok((weights, InputImage::from_png(&bytes, &input_name)?))
}

/// Tile indices to re-run: `wanted` of `total`, at random, in order.
fn pick_tiles(total: u32, wanted: u32) -> Vec<u32> {
    let mut chosen: Vec<u32> = rand::seq::index::sample(
        &mut rand::thread_rng(),
        total as usize,
        (wanted as usize).min(total as usize),
    )
    .into_iter()
    .map(|i| i as u32)
    .collect();
    chosen.sort_unstable();
    chosen
}

fn print_verdict(report: &VerifyReport, what: &str, action: &str, out: &Output) -> ExitCode {
    out.print(report, || {
        let mut s = format!(
            "{}: {} ({} tiles {action} on {})",
            what,
            if report.matches { "match" } else { "MISMATCH" },
            report.tiles.len(),
            report.device
        );
        for v in &report.tiles {
            let c = &v.comparison;
            s += &format!(
                "\n  tile {:>4}: {} ({:.1} % within 1 level, mean |diff| {:.2}, max {})",
                v.tile,
                if c.matches { "match" } else { "mismatch" },
                c.close * 100.0,
                c.mean_abs,
                c.max_abs
            );
        }
        s
    });
    if report.matches { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

fn verify_infer(
    result: &Path,
    model: &Path,
    input: &Path,
    tiles: u32,
    device: &str,
    out: &Output,
) -> Result<ExitCode> {
    let device = InferDevice::parse(device)?;
    let (weights, input) = load_infer(model, input)?;
    let what = result.display().to_string();
    let bytes = std::fs::read(result).with_context(|| format!("reading {what}"))?;
    let (width, height, rgb) = bigfile_compute::render::decode_png(&bytes, &what)?;
    let grid = input.output_grid();
    if (width, height) != (grid.width, grid.height) {
        anyhow::bail!(
            "{what} is {width}x{height} but the model turns the input into {}x{}: not its result",
            grid.width,
            grid.height
        );
    }
    let up = Upscaler::new(&weights, device)?;
    let mut verdicts = Vec::new();
    for index in pick_tiles(grid.count(), tiles) {
        let tile = grid.tile(index).context("tile index")?;
        let ours = up.tile(&input, &tile)?;
        let theirs = bigfile_compute::render::tile_bytes(&rgb, width, &tile);
        let comparison = bigfile_compute::verify::compare_infer(&ours, &theirs);
        verdicts.push(TileVerdict { tile: index, comparison });
    }
    let report = VerifyReport {
        device: up.device().to_owned(),
        matches: verdicts.iter().all(|v| v.comparison.matches),
        tiles: verdicts,
    };
    Ok(print_verdict(&report, &what, "re-run", out))
}

#[derive(serde::Serialize)]
struct TrainReport {
    output: PathBuf,
    options: TrainOptions,
    parameters: usize,
    final_loss: f32,
    secs: f64,
    evaluation: Evaluation,
}

fn train_sr(output: PathBuf, options: TrainOptions, out: &Output) -> Result<ExitCode> {
    let started = Instant::now();
    let bar = out.progress(u64::from(options.steps), "training");
    bar.set_style(indicatif::ProgressStyle::default_bar());
    let mut last = f32::NAN;
    let weights = bigfile_compute::infer::train::train(&options, |step, loss| {
        last = loss;
        bar.set_position(u64::from(step));
        if !out.json && (step % 500 == 0 || step == options.steps) {
            bar.suspend(|| eprintln!("step {step:>6}: loss {loss:.6}"));
        }
    })?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    std::fs::write(&output, weights.to_safetensors()?)
        .with_context(|| format!("writing {}", output.display()))?;
    let evaluation = bigfile_compute::infer::train::evaluate(&weights, InferDevice::Cpu, 8, 128)?;
    let report =
        TrainReport { output, options, parameters: weights.parameters(), final_loss: last, secs, evaluation };
    out.print(&report, || {
        format!(
            "{}: {} parameters, {} steps in {:.0} s, final loss {:.6}\n  held-out PSNR (8 images 128x128): model {:.2} dB, bicubic {:.2} dB ({:+.2} dB)",
            report.output.display(),
            report.parameters,
            report.options.steps,
            report.secs,
            report.final_loss,
            report.evaluation.model_psnr,
            report.evaluation.bicubic_psnr,
            report.evaluation.model_psnr - report.evaluation.bicubic_psnr
        )
    });
    Ok(ExitCode::SUCCESS)
}

/// A scene file, or a render job spec (`"kind": "render"`, see examples/jobs) whose scene is taken.
fn load_scene(path: &std::path::Path) -> Result<Scene> {
    let what = path.display().to_string();
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {what}"))?;
    let is_job = serde_json::from_str::<serde_json::Value>(&text).is_ok_and(|v| v.get("kind").is_some());
    if !is_job {
        return Ok(Scene::from_json(&text, &what)?);
    }
    match bigfile_compute::spec::JobSpec::from_json(&text, &what)?.job {
        bigfile_compute::spec::Job::Render { scene } => Ok(scene),
        bigfile_compute::spec::Job::Infer { .. } => {
            anyhow::bail!("{what} is an inference job spec: run it with `compute infer --model M --input IN`")
        }
    }
}
