//! Deciding whether a provider's tile matches a verifier's re-execution of it.
//!
//! # The render tolerance, and why
//!
//! Every pixel's random numbers come from integer hashing of (seed, pixel, sample), so two honest
//! devices trace the same paths and add the same samples in the same order; they differ only by
//! float rounding in the intrinsics (`sqrt`, `cos`, `pow`) and fused operations. Such a
//! difference moves a pixel by at most one 8-bit level, except where it flips a branch (a ray
//! grazing an edge, a bounce leaving at a tangent) and sends one path elsewhere; that moves the
//! pixel by up to `255 / samples` per flipped path, and it is rare. Measured: the Cornell example
//! at 64 spp on lavapipe (Vulkan) and llvmpipe (GL) agrees exactly on 99.97 % of its channel
//! values, the rest differ by at most 35 levels.
//!
//! A cheat cannot stay that close: a lower sample count, another seed or an unrelated image draw
//! other paths, so nearly every pixel carries different Monte Carlo noise (±several levels at
//! the sample counts jobs use), and a tampered tile differs wherever it was touched. So a tile
//! passes when
//!
//! - at least [`RENDER_MIN_CLOSE`] of its channel values are within ±1 level, and
//! - the mean absolute difference is at most [`RENDER_MAX_MEAN`] levels.
//!
//! The honest worst case seen is under 0.1 % of values off by more than one level; a render at a
//! different sample count or seed has well over half of them off. A scene so smooth that its
//! noise is below one level everywhere cannot tell a lazy render from an honest one, and then
//! the lazy render is as good as the honest one.

//! # The inference tolerance, and why
//!
//! The super-resolution network has no randomness: two honest devices run the same weights on
//! the same input and differ only in the order of float additions (CPU gemm blocking against
//! CUDA kernels) and in `tanh`'s last bits, about 1e-6 of the signal. Rounding to 8 bits turns
//! that into a difference of one level where a value sits right on a rounding edge, rarely and
//! never more. So an inference tile passes when every channel value is within
//! [`INFER_MAX_DIFF`] levels and the mean absolute difference is at most [`INFER_MAX_MEAN`].
//! Another model, a cheaper upscaler (bicubic, nearest) or a tampered tile differs by many
//! levels along every edge in the tile; only a tile with no detail at all, where any upscaler
//! gives the same flat colour, cannot tell them apart, and there the cheap answer is right.

use serde::Serialize;

/// Share of channel values that must be within ±1 level of the verifier's.
pub const RENDER_MIN_CLOSE: f64 = 0.95;
/// Largest mean absolute difference, in 8-bit levels.
pub const RENDER_MAX_MEAN: f64 = 1.5;

/// Largest per-value difference an inference tile may have, in 8-bit levels.
pub const INFER_MAX_DIFF: u8 = 2;
/// Largest mean absolute difference for an inference tile, in 8-bit levels.
pub const INFER_MAX_MEAN: f64 = 0.25;

/// How a provider's tile compares with the verifier's re-execution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TileComparison {
    /// Share of channel values within ±1 level.
    pub close: f64,
    /// Mean absolute difference in levels.
    pub mean_abs: f64,
    /// Largest difference.
    pub max_abs: u8,
    /// Whether it passes the tolerance.
    pub matches: bool,
}

/// Compares two renders of the same tile (8-bit channel values).
pub fn compare_render(ours: &[u8], theirs: &[u8]) -> TileComparison {
    let mut c = differences(ours, theirs);
    c.matches = c.close >= RENDER_MIN_CLOSE && c.mean_abs <= RENDER_MAX_MEAN;
    c
}

/// Compares two inference outputs of the same tile (8-bit channel values).
pub fn compare_infer(ours: &[u8], theirs: &[u8]) -> TileComparison {
    let mut c = differences(ours, theirs);
    c.matches = c.max_abs <= INFER_MAX_DIFF && c.mean_abs <= INFER_MAX_MEAN;
    c
}

/// The differences between two tiles; `matches` is left false for the caller's rule.
fn differences(ours: &[u8], theirs: &[u8]) -> TileComparison {
    if ours.len() != theirs.len() || ours.is_empty() {
        return TileComparison { close: 0.0, mean_abs: 255.0, max_abs: 255, matches: false };
    }
    let (mut close, mut sum, mut max) = (0usize, 0u64, 0u8);
    for (a, b) in ours.iter().zip(theirs) {
        let d = a.abs_diff(*b);
        if d <= 1 {
            close += 1;
        }
        sum += u64::from(d);
        max = max.max(d);
    }
    let n = ours.len() as f64;
    let (close, mean_abs) = (close as f64 / n, sum as f64 / n);
    TileComparison { close, mean_abs, max_abs: max, matches: false }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rare_divergent_pixels_pass_and_broad_differences_fail() {
        let a: Vec<u8> = (0..3000u32).map(|i| (i * 37 % 251) as u8).collect();
        assert!(compare_render(&a, &a).matches);
        let mut rounding = a.clone();
        for v in rounding.iter_mut().step_by(3) {
            *v = v.saturating_add(1);
        }
        assert!(compare_render(&a, &rounding).matches, "one-level rounding everywhere passes");
        let mut divergent = a.clone();
        for v in divergent.iter_mut().step_by(500) {
            *v = v.wrapping_add(40);
        }
        assert!(compare_render(&a, &divergent).matches, "a few diverged paths pass");
        let noisy: Vec<u8> = a.iter().enumerate().map(|(i, v)| v.wrapping_add((i % 7) as u8)).collect();
        assert!(!compare_render(&a, &noisy).matches, "other noise everywhere fails");
        let mut patched = a.clone();
        patched[..400].fill(0);
        assert!(!compare_render(&a, &patched).matches, "a patched region fails");
        assert!(!compare_render(&a, &a[..10]).matches, "a wrong size fails");
    }

    #[test]
    fn inference_allows_rounding_only() {
        let a: Vec<u8> = (0..3000u32).map(|i| (i * 37 % 251) as u8).collect();
        assert!(compare_infer(&a, &a).matches);
        let mut rounding = a.clone();
        for v in rounding.iter_mut().step_by(50) {
            *v = v.saturating_add(1);
        }
        assert!(compare_infer(&a, &rounding).matches, "rare one-level rounding passes");
        let mut edge = a.clone();
        edge[100] = edge[100].wrapping_add(3);
        assert!(!compare_infer(&a, &edge).matches, "one value off by three fails");
        let shifted: Vec<u8> = a.iter().map(|v| v.saturating_add(1)).collect();
        assert!(!compare_infer(&a, &shifted).matches, "one level everywhere fails");
        assert!(!compare_infer(&a, &a[..10]).matches, "a wrong size fails");
    }
}
