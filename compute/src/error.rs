//! The compute crate's errors: a bad spec names its field; device and render failures say which
//! device and what it refused.

/// A job spec or scene field that is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {why}")]
pub struct SpecError {
    /// Where: `scene.materials[2].albedo`, or the file name for a parse error.
    pub field: String,
    /// What is wrong with it.
    pub why: String,
}

impl SpecError {
    /// An error about `field`.
    pub fn new(field: impl Into<String>, why: impl Into<String>) -> Self {
        Self { field: field.into(), why: why.into() }
    }
}

/// Rendering failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The scene is not acceptable.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// No adapter matched, or it could not be opened.
    #[error("device: {0}")]
    Device(String),
    /// The GPU (or its driver) failed while rendering.
    #[error("on {device}: {why}")]
    Gpu {
        /// The adapter's name.
        device: String,
        /// What failed.
        why: String,
    },
    /// The job was cancelled at a tile boundary.
    #[error("cancelled after {done} of {total} tiles")]
    Cancelled {
        /// Tiles finished.
        done: u32,
        /// Tiles in the image.
        total: u32,
    },
    /// Writing the image failed.
    #[error("writing {path}: {why}")]
    Output {
        /// The output path.
        path: String,
        /// What failed.
        why: String,
    },
}

/// Inference failed.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    /// The model file does not fit the architecture (names the tensor and what is wrong).
    #[error("model {what}: {why}")]
    Model {
        /// Which model (a file name or object id).
        what: String,
        /// What does not fit.
        why: String,
    },
    /// The input is not an image this model takes.
    #[error("input {what}: {why}")]
    Input {
        /// Which input (a file name or object id).
        what: String,
        /// What is wrong with it.
        why: String,
    },
    /// No such inference device, or it could not be opened.
    #[error("device: {0}")]
    Device(String),
    /// The tensor library failed on a device.
    #[error("on {device}: {why}")]
    Run {
        /// The device's name.
        device: String,
        /// What failed.
        why: String,
    },
    /// The job was cancelled at a tile boundary.
    #[error("cancelled after {done} of {total} tiles")]
    Cancelled {
        /// Tiles finished.
        done: u32,
        /// Tiles in the output.
        total: u32,
    },
    /// Writing the output failed.
    #[error("writing {path}: {why}")]
    Output {
        /// The output path.
        path: String,
        /// What failed.
        why: String,
    },
}
