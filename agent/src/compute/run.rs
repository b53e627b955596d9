//! Running one job to its committed image: render or infer, tile by tile through a
//! [`TileStore`] (so a restarted job resumes), stopping at a tile boundary when cancelled or past
//! its wall-time limit, and waiting at tile boundaries while storage proofs hold the gate.
//!
//! Blocking: call from a dedicated thread or `spawn_blocking`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bigfile_compute::infer::{InferDevice, InputImage, Upscaler, Weights};
use bigfile_compute::render::{Image, TileStore};
use bigfile_compute::spec::{Job, JobSpec};
use bigfile_compute::{Gpu, InferError, RenderError, Renderer};

use super::gate::ProofGate;

/// Longest a job waits at one tile boundary for proofs to finish before it checks again.
const GATE_WAIT: Duration = Duration::from_secs(5);

/// What a job needs besides its spec: for an inference, the model and input bytes (fetched from
/// their objects by the caller).
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// The safetensors model.
    pub model: Vec<u8>,
    /// The input image (PNG).
    pub input: Vec<u8>,
}

/// The devices this agent runs jobs on.
#[derive(Debug, Clone)]
pub struct Devices {
    /// wgpu adapter selector (`None`: the best).
    pub render: Option<String>,
    /// candle device.
    pub infer: InferDevice,
}

/// Why a job did not produce its image.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The render failed or was cancelled.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The inference failed or was cancelled.
    #[error(transparent)]
    Infer(#[from] InferError),
    /// The job ran past its `max_wall_secs`.
    #[error("stopped after {done} of {total} tiles: past the job's wall-time limit of {limit} s")]
    TimedOut {
        /// Tiles finished.
        done: u32,
        /// Tiles in the output.
        total: u32,
        /// The limit.
        limit: u64,
    },
}

/// Runs `spec` to its image. `progress(done, total)` after each tile.
pub fn run(
    spec: &JobSpec,
    inputs: &Inputs,
    devices: &Devices,
    store: &dyn TileStore,
    cancel: &AtomicBool,
    gate: &ProofGate,
    mut progress: impl FnMut(u32, u32),
) -> Result<Image, RunError> {
    let started = Instant::now();
    let limit = spec.limits.max_wall_secs;
    // The runners check one flag before each tile; it is raised after a tile when the caller
    // cancelled or the job ran out of time.
    let stop = AtomicBool::new(cancel.load(Ordering::Relaxed));
    let mut timed_out = false;
    let mut last = (0, 0);
    let mut tick = |done: u32, total: u32| {
        last = (done, total);
        progress(done, total);
        gate.pass(GATE_WAIT);
        if started.elapsed() > Duration::from_secs(limit) {
            timed_out = true;
        }
        if timed_out || cancel.load(Ordering::Relaxed) {
            stop.store(true, Ordering::Relaxed);
        }
    };
    let result = match &spec.job {
        Job::Render { scene } => {
            #[cfg(feature = "fault-injection")]
            let cheat = skip_samples(scene);
            #[cfg(feature = "fault-injection")]
            let scene = cheat.as_ref().unwrap_or(scene);
            let renderer = Renderer::new(Gpu::open(devices.render.as_deref())?);
            renderer
                .render_resumable(scene, store, &stop, &mut tick)
                .map(|(image, _)| image)
                .map_err(RunError::from)
        }
        Job::Infer { model, input } => {
            let weights = Weights::from_safetensors(&inputs.model, model)?;
            let image = InputImage::from_png(&inputs.input, input)?;
            let up = Upscaler::new(&weights, devices.infer)?;
            up.upscale(&image, store, &stop, &mut tick).map_err(RunError::from)
        }
    };
    match result {
        Err(_) if timed_out => Err(RunError::TimedOut { done: last.0, total: last.1, limit }),
        other => other,
    }
}

/// Fault injection for tests: `BIGFILE_FAULT_COMPUTE_SKIP_SAMPLES=1` makes this provider render
/// with an eighth of the samples per pixel it was paid for (a lazy provider), which drawn
/// verifiers must catch.
#[cfg(feature = "fault-injection")]
fn skip_samples(scene: &bigfile_compute::scene::Scene) -> Option<bigfile_compute::scene::Scene> {
    std::env::var_os("BIGFILE_FAULT_COMPUTE_SKIP_SAMPLES")?;
    let mut lazy = scene.clone();
    lazy.samples_per_pixel = (scene.samples_per_pixel / 8).max(1);
    tracing::warn!(
        spp = lazy.samples_per_pixel,
        paid_for = scene.samples_per_pixel,
        "fault injection: rendering with fewer samples"
    );
    Some(lazy)
}
