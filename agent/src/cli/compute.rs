//! `devices` and `compute …`: try this machine's GPUs (or lavapipe) on real jobs, with no network
//! or chain involved.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use anyhow::{Context, Result};
use bigfile_compute::{Gpu, Renderer, Scene};
use clap::Subcommand;

use super::Output;

/// `compute …`
#[derive(Subcommand, Debug)]
pub enum ComputeCmd {
    /// Path-trace a scene (JSON, see examples/scenes) into a PNG, tile by tile.
    Render {
        /// The scene file.
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
        /// The scene file the result claims to render.
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

/// `devices`: every wgpu adapter that can run compute shaders, best first.
pub fn devices(out: &Output) -> Result<ExitCode> {
    let list = bigfile_compute::gpu::list();
    out.print(&list, || {
        if list.is_empty() {
            return "no wgpu adapter with compute shaders (install mesa-vulkan-drivers for lavapipe)".into();
        }
        list.iter()
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
            .join("\n")
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
            let total = scene.tile_count();
            let mut chosen: Vec<u32> = rand::seq::index::sample(
                &mut rand::thread_rng(),
                total as usize,
                (tiles as usize).min(total as usize),
            )
            .into_iter()
            .map(|i| i as u32)
            .collect();
            chosen.sort_unstable();
            let renderer = Renderer::new(Gpu::open(device.as_deref())?);
            let mut verdicts = Vec::new();
            for index in chosen {
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
            out.print(&report, || {
                let mut s = format!(
                    "{}: {} ({} tiles re-rendered on {})",
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
            Ok(if report.matches { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}

fn load_scene(path: &std::path::Path) -> Result<Scene> {
    let what = path.display().to_string();
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {what}"))?;
    Ok(Scene::from_json(&text, &what)?)
}
