//! Checking a provider's result as a verifier (and, for its commitment, as the client): the
//! output object must be the job's image, its tiles must hash to the committed root, and the
//! tiles drawn for this verifier, re-executed here, must match within the kind's tolerance
//! (`bigfile_compute::verify`).
//!
//! Holding the whole output lets the verifier recompute every tile digest, which proves the
//! drawn tiles' inclusion in the root as an inclusion path would, and more (the whole object is
//! what the client gets).
//!
//! Blocking: call from `spawn_blocking`.

use bigfile_compute::commit;
use bigfile_compute::infer::{InputImage, Upscaler, Weights};
use bigfile_compute::render::{decode_png, tile_bytes};
use bigfile_compute::scene::TileGrid;
use bigfile_compute::spec::{Job, JobSpec};
use bigfile_compute::verify::{TileComparison, compare_infer, compare_render};
use bigfile_compute::{Gpu, Renderer};
use serde::Serialize;

use super::run::{Devices, Inputs, RunError};

/// What a verifier found.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// Whether the result passes: its root and every re-executed tile.
    pub matches: bool,
    /// Why it fails, if it does.
    pub why: Option<String>,
    /// Each re-executed tile.
    pub tiles: Vec<(u32, TileComparison)>,
}

impl Verdict {
    fn fail(why: String) -> Verdict {
        Verdict { matches: false, why: Some(why), tiles: Vec::new() }
    }
}

/// The tile grid of `spec`'s output.
pub fn grid(spec: &JobSpec, inputs: &Inputs) -> Result<TileGrid, RunError> {
    Ok(match &spec.job {
        Job::Render { scene } => scene.grid(),
        Job::Infer { input, .. } => InputImage::from_png(&inputs.input, input)?.output_grid(),
    })
}

/// The commitment root of an output PNG cut along `grid`, or why the PNG is not an output of it.
pub fn output_root(grid: &TileGrid, png: &[u8]) -> Result<[u8; 32], String> {
    let (width, height, rgb) = decode_png(png, "the output object").map_err(|e| e.to_string())?;
    if (width, height) != (grid.width, grid.height) {
        return Err(format!(
            "the output is {width}x{height} but the job's output is {}x{}",
            grid.width, grid.height
        ));
    }
    let digests: Vec<[u8; 32]> = (0..grid.count())
        .filter_map(|i| grid.tile(i))
        .map(|t| commit::tile_digest(&t, &tile_bytes(&rgb, width, &t)))
        .collect();
    Ok(commit::root(&digests))
}

/// Checks `png` against `root` and re-executes `tiles` of it. Errors are this verifier's own
/// failures (no device, bad inputs): no vote should be cast on them.
pub fn check(
    spec: &JobSpec,
    inputs: &Inputs,
    devices: &Devices,
    png: &[u8],
    root: [u8; 32],
    tiles: &[u32],
) -> Result<Verdict, RunError> {
    let grid = grid(spec, inputs)?;
    match output_root(&grid, png) {
        Err(why) => return Ok(Verdict::fail(why)),
        Ok(r) if r != root => {
            return Ok(Verdict::fail(format!(
                "the output's tiles hash to 0x{} but the provider committed to 0x{}",
                hex::encode(r),
                hex::encode(root)
            )));
        }
        Ok(_) => {}
    }
    let (width, _, rgb) = decode_png(png, "the output object")?;
    let mut out = Vec::new();
    match &spec.job {
        Job::Render { scene } => {
            let renderer = Renderer::new(Gpu::open(devices.render.as_deref())?);
            for &i in tiles {
                let Some(tile) = grid.tile(i) else { return Ok(Verdict::fail(format!("no tile {i}"))) };
                let ours = renderer.render_tile(scene, &tile)?;
                out.push((i, compare_render(&ours, &tile_bytes(&rgb, width, &tile))));
            }
        }
        Job::Infer { model, input } => {
            let weights = Weights::from_safetensors(&inputs.model, model)?;
            let image = InputImage::from_png(&inputs.input, input)?;
            let up = Upscaler::new(&weights, devices.infer)?;
            for &i in tiles {
                let Some(tile) = grid.tile(i) else { return Ok(Verdict::fail(format!("no tile {i}"))) };
                let ours = up.tile(&image, &tile)?;
                out.push((i, compare_infer(&ours, &tile_bytes(&rgb, width, &tile))));
            }
        }
    }
    let bad: Vec<String> = out.iter().filter(|(_, c)| !c.matches).map(|(i, _)| i.to_string()).collect();
    Ok(Verdict {
        matches: bad.is_empty(),
        why: (!bad.is_empty()).then(|| format!("tiles {} differ beyond the tolerance", bad.join(", "))),
        tiles: out,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use bigfile_compute::infer::InferDevice;
    use bigfile_compute::render::NoTileStore;

    use super::*;
    use crate::compute::ProofGate;

    fn spec(spp: u32) -> JobSpec {
        let scene = include_str!("../../../examples/scenes/cornell.json")
            .replace("\"width\": 128", "\"width\": 64")
            .replace("\"height\": 128", "\"height\": 64")
            .replace("\"samples_per_pixel\": 64", &format!("\"samples_per_pixel\": {spp}"));
        let text = format!(
            r#"{{"version": 1, "kind": "render", "scene": {scene},
                "limits": {{"max_wall_secs": 600, "max_device_memory": 268435456, "max_output_bytes": 1048576}}}}"#
        );
        JobSpec::from_json(&text, "spec").expect("spec")
    }

    fn render(spec: &JobSpec) -> (Vec<u8>, [u8; 32]) {
        let devices = Devices { render: None, infer: InferDevice::Cpu };
        let image = super::super::run::run(
            spec,
            &Inputs::default(),
            &devices,
            &NoTileStore,
            &AtomicBool::new(false),
            &ProofGate::new(),
            |_, _| {},
        )
        .expect("render");
        (image.png().expect("png"), image.root)
    }

    #[test]
    fn an_honest_result_passes_and_tampered_or_lazy_ones_fail() {
        let paid_for = spec(32);
        let devices = Devices { render: None, infer: InferDevice::Cpu };
        let inputs = Inputs::default();
        let (png, root) = render(&paid_for);
        let honest = check(&paid_for, &inputs, &devices, &png, root, &[0, 3]).expect("check");
        assert!(honest.matches, "{honest:?}");
        assert_eq!(honest.tiles.len(), 2);

        // Committed to another root than the output's tiles hash to.
        let mut other = root;
        other[0] ^= 1;
        let v = check(&paid_for, &inputs, &devices, &png, other, &[0]).expect("check");
        assert!(!v.matches && v.why.as_deref().is_some_and(|w| w.contains("hash to")), "{v:?}");

        // Consistent with its own root, but rendered with an eighth of the samples.
        let (lazy, lazy_root) = render(&spec(4));
        let v = check(&paid_for, &inputs, &devices, &lazy, lazy_root, &[0, 1, 2, 3]).expect("check");
        assert!(!v.matches && v.why.as_deref().is_some_and(|w| w.contains("beyond the tolerance")), "{v:?}");

        // Not even an image of the job's size.
        let v = check(&paid_for, &inputs, &devices, b"junk", root, &[0]).expect("check");
        assert!(!v.matches, "{v:?}");
    }
}
