//! Compute jobs for the BigFile provider agent.
//!
//! - [`spec`]: the versioned job spec (render or infer), its inputs and limits;
//! - [`scene`]: the render job's scene description and its strict validation;
//! - [`render`]: a wgpu compute pipeline (WGSL) that path-traces a scene tile by tile into 8-bit
//!   sRGB, deterministic for a seed up to float differences between devices;
//! - [`commit`]: the result commitment, a Merkle root over per-tile digests, and tile proofs;
//! - [`verify`]: whether a provider's tile matches a re-execution, under a stated tolerance;
//! - [`gpu`]: the wgpu adapters (a GPU where there is one, lavapipe on the CPU otherwise);
//! - [`infer`]: a candle super-resolution model from a safetensors file, run tile by tile on the
//!   CPU or (built with `cuda`) an NVIDIA GPU, its plain-Rust reference and its training.
//!
//! GPU work is blocking: callers run it on a dedicated thread or `spawn_blocking`.

pub mod bench;
pub mod commit;
pub mod error;
pub mod gpu;
pub mod infer;
pub mod render;
pub mod scene;
pub mod spec;
pub mod verify;

pub use error::{InferError, RenderError, SpecError};
pub use gpu::{DeviceInfo, Gpu};
pub use render::{Image, Renderer};
pub use scene::Scene;
