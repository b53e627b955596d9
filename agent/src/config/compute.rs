//! `[compute]`: which render and inference jobs this node takes from the compute market, on
//! which devices, within which limits and at what price, and whether it verifies others' results.

use serde::{Deserialize, Serialize};

use super::{ByteSize, Problem};

/// `[compute]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComputeConfig {
    /// Take jobs from `chain.compute_market` (needs the chain enabled and the market set).
    pub take_jobs: bool,
    /// Enroll as a verifier and re-run the tiles the market draws for this node.
    pub verify: bool,
    /// wgpu adapter for renders: part of `backend:name` from `bigfile-agent devices`, `gpu`,
    /// `cpu`, or empty for the best one.
    pub render_device: String,
    /// candle device for inference: `cpu` or `cuda:N` (a `cuda` build).
    pub infer_device: String,
    /// Longest wall time a job may ask for, seconds.
    pub max_wall_secs: u64,
    /// Most device memory a job may ask for.
    pub max_device_memory: ByteSize,
    /// Largest output a job may produce.
    pub max_output_bytes: ByteSize,
    /// Least payment for a render, BIG base units per million primary samples (pixels x spp).
    pub render_price_per_msample: u64,
    /// Least payment for an inference, BIG base units per output megapixel.
    pub infer_price_per_mpixel: u64,
}

impl Default for ComputeConfig {
    fn default() -> Self {
        ComputeConfig {
            take_jobs: true,
            verify: true,
            render_device: String::new(),
            infer_device: "cpu".into(),
            max_wall_secs: 3600,
            max_device_memory: ByteSize(2 << 30),
            max_output_bytes: ByteSize(256 << 20),
            render_price_per_msample: 1_000_000_000_000_000,
            infer_price_per_mpixel: 1_000_000_000_000_000,
        }
    }
}

impl ComputeConfig {
    /// The limits a job spec is checked against before any work.
    pub fn limits(&self) -> bigfile_compute::spec::AgentLimits {
        bigfile_compute::spec::AgentLimits {
            max_wall_secs: self.max_wall_secs,
            max_device_memory: self.max_device_memory.0,
            max_output_bytes: self.max_output_bytes.0,
        }
    }

    /// Appends every problem with `[compute]` to `problems`.
    pub fn validate(&self, problems: &mut Vec<Problem>) {
        let mut bad =
            |key: &str, message: String| problems.push(Problem { key: format!("compute.{key}"), message });
        if let Err(e) = bigfile_compute::infer::InferDevice::parse(&self.infer_device) {
            bad("infer_device", e.to_string());
        }
        if self.max_wall_secs == 0 || self.max_wall_secs > 7 * 24 * 3600 {
            bad("max_wall_secs", "must be from 1 to 604800 (a week)".into());
        }
        if self.max_device_memory.0 < 16 << 20 {
            bad("max_device_memory", "must be at least 16 MiB".into());
        }
        if self.max_output_bytes.0 < 1 << 20 {
            bad("max_output_bytes", "must be at least 1 MiB".into());
        }
    }
}
