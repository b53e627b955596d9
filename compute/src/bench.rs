//! `bench compute`: render throughput of every adapter on the shipped Cornell scene, inference
//! throughput of every candle device with the shipped super-resolution model, and in each case
//! the best GPU against the CPU measured in the same run.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use serde::Serialize;

use crate::error::{InferError, RenderError};
use crate::gpu::{self, Gpu};
use crate::infer::{self, InferDevice, InputImage, Upscaler, Weights};
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
    /// Inference input side (the output is twice that).
    pub infer_input_side: u32,
    /// Every inference device measured.
    pub infer_devices: Vec<InferRate>,
    /// candle CPU's rate, images per second.
    pub infer_cpu_images_per_sec: f64,
    /// Best CUDA device's rate.
    pub infer_gpu_images_per_sec: Option<f64>,
    /// GPU ÷ CPU; absent without a GPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub infer_gpu_vs_cpu: Option<f64>,
}

/// One inference device's figure.
#[derive(Debug, Clone, Serialize)]
pub struct InferRate {
    /// `cpu` or `cuda:N`.
    pub device: String,
    /// Images upscaled in the timed run.
    pub images: u32,
    /// Wall time of the timed run.
    pub secs: f64,
    /// Images per second.
    pub images_per_sec: f64,
    /// Output megapixels per second.
    pub output_megapixels_per_sec: f64,
}

/// A benchmark failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Rendering failed.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// Inference failed.
    #[error(transparent)]
    Infer(#[from] InferError),
}

/// Inference benchmark input side: 256 x 256 in, 512 x 512 out (64 tiles).
const INFER_SIDE: u32 = 256;

/// Measures every adapter: a short calibration render, then one lasting about `seconds`.
pub fn run(seconds: f64, mut progress: impl FnMut(&str)) -> Result<ComputeBench, BenchError> {
    let mut scene = Scene::from_json(SCENE, "benchmark scene").map_err(RenderError::from)?;
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
    let weights = Weights::from_safetensors(infer::SHIPPED_MODEL, "the shipped model")?;
    let input = {
        let side = INFER_SIDE * 2;
        let hr = infer::data::generate(42, side, side);
        InputImage {
            width: INFER_SIDE,
            height: INFER_SIDE,
            rgb: infer::data::quantize(&infer::data::downscale2(&hr, side, side)),
        }
    };
    let mut infer_devices = Vec::new();
    for device in infer::devices() {
        progress(&format!("upscaling on {}", device.name()));
        infer_devices.push(time_infer(&weights, device, &input, seconds)?);
    }
    let infer_cpu = infer_devices.first().map_or(0.0, |d| d.images_per_sec);
    let infer_gpu = infer_devices
        .iter()
        .filter(|d| d.device != InferDevice::Cpu.name())
        .map(|d| d.images_per_sec)
        .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))));
    Ok(ComputeBench {
        pixels: scene.width,
        devices,
        render_cpu_msamples_per_sec: cpu,
        render_gpu_msamples_per_sec: gpu_rate,
        render_gpu_vs_cpu: cpu.zip(gpu_rate).map(|(c, g)| g / c),
        infer_input_side: INFER_SIDE,
        infer_devices,
        infer_cpu_images_per_sec: infer_cpu,
        infer_gpu_images_per_sec: infer_gpu,
        infer_gpu_vs_cpu: infer_gpu.map(|g| g / infer_cpu.max(f64::MIN_POSITIVE)),
    })
}

/// Upscales `input` once to warm up, then repeatedly for about `seconds` (at least once).
fn time_infer(
    weights: &Weights,
    device: InferDevice,
    input: &InputImage,
    seconds: f64,
) -> Result<InferRate, InferError> {
    let up = Upscaler::new(weights, device)?;
    let cancel = AtomicBool::new(false);
    let store = crate::render::NoTileStore;
    up.upscale(input, &store, &cancel, |_, _| {})?;
    let started = Instant::now();
    let mut images = 0u32;
    while images == 0 || started.elapsed().as_secs_f64() < seconds {
        up.upscale(input, &store, &cancel, |_, _| {})?;
        images += 1;
    }
    let secs = started.elapsed().as_secs_f64();
    let out_pixels = f64::from(input.width * 2) * f64::from(input.height * 2);
    Ok(InferRate {
        device: device.name(),
        images,
        secs,
        images_per_sec: f64::from(images) / secs,
        output_megapixels_per_sec: f64::from(images) * out_pixels / secs / 1e6,
    })
}
