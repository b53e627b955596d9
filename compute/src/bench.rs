//! `bench compute`: render throughput of every adapter on the shipped Cornell scene, and the best
//! GPU against the best CPU adapter (lavapipe) measured in the same run.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use serde::Serialize;

use crate::error::RenderError;
use crate::gpu::{self, Gpu};
use crate::render::Renderer;
use crate::scene::Scene;

/// The benchmark scene (also `examples/scenes/cornell.json`).
pub const SCENE: &str = include_str!("../../examples/scenes/cornell.json");

/// One adapter's figure.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceRate {
    /// `backend:name`.
    pub device: String,
    /// `cpu`, `discrete_gpu`, ….
    pub device_type: String,
    /// Samples per pixel of the timed run (raised until it lasts about `seconds`).
    pub samples_per_pixel: u32,
    /// Wall time of the timed render.
    pub secs: f64,
    /// Render throughput in million primary samples (pixel × sample) per second.
    pub megasamples_per_sec: f64,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct ComputeBench {
    /// Image side of the benchmark scene.
    pub pixels: u32,
    /// Every adapter measured, best first.
    pub devices: Vec<DeviceRate>,
    /// Best CPU adapter's rate (lavapipe or llvmpipe).
    pub render_cpu_msamples_per_sec: Option<f64>,
    /// Best GPU's rate.
    pub render_gpu_msamples_per_sec: Option<f64>,
    /// GPU ÷ CPU; absent without a GPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub render_gpu_vs_cpu: Option<f64>,
}

/// Measures every adapter: a short calibration render, then one lasting about `seconds`.
pub fn run(seconds: f64, mut progress: impl FnMut(&str)) -> Result<ComputeBench, RenderError> {
    let mut scene = Scene::from_json(SCENE, "benchmark scene")?;
    scene.width = 256;
    scene.height = 256;
    let mut devices = Vec::new();
    for info in gpu::list() {
        progress(&format!("rendering on {}", info.id()));
        let renderer = Renderer::new(Gpu::open(Some(&info.id()))?);
        let cancel = AtomicBool::new(false);
        scene.samples_per_pixel = 4;
        let started = Instant::now();
        renderer.render(&scene, &cancel, |_, _| {})?;
        let calibration = started.elapsed().as_secs_f64().max(1e-3);
        scene.samples_per_pixel = ((4.0 * seconds / calibration) as u32).clamp(4, 4096);
        let started = Instant::now();
        renderer.render(&scene, &cancel, |_, _| {})?;
        let secs = started.elapsed().as_secs_f64();
        devices.push(DeviceRate {
            device: info.id(),
            device_type: info.device_type.clone(),
            samples_per_pixel: scene.samples_per_pixel,
            secs,
            megasamples_per_sec: scene.samples() as f64 / secs / 1e6,
        });
    }
    let best = |gpu: bool| {
        devices
            .iter()
            .filter(|d| {
                matches!(d.device_type.as_str(), "discrete_gpu" | "integrated_gpu" | "virtual_gpu") == gpu
            })
            .map(|d| d.megasamples_per_sec)
            .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))))
    };
    let (cpu, gpu_rate) = (best(false), best(true));
    Ok(ComputeBench {
        pixels: scene.width,
        devices,
        render_cpu_msamples_per_sec: cpu,
        render_gpu_msamples_per_sec: gpu_rate,
        render_gpu_vs_cpu: cpu.zip(gpu_rate).map(|(c, g)| g / c),
    })
}
