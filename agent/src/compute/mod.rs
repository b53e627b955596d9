//! Compute jobs inside the agent: running a job's render or inference tile by tile with its
//! tiles kept in sled ([`tiles`]), resumable, cancellable at a tile boundary, bounded by the job's
//! wall time ([`run`]), and always second to storage proofs ([`gate`]).

pub mod book;
pub mod check;
pub mod client;
pub mod gate;
pub mod market;
pub mod objects;
pub mod progress;
pub mod rest;
pub mod run;
pub mod tiles;

pub use gate::{GateGuard, ProofGate};
pub use run::{Devices, Inputs, RunError};
pub use tiles::SledTiles;

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use bigfile_compute::infer::{InferDevice, InputImage, Upscaler, Weights};
    use bigfile_compute::render::NoTileStore;
    use bigfile_compute::spec::JobSpec;

    use super::*;

    fn render_spec(max_wall_secs: u64) -> JobSpec {
        let scene = include_str!("../../../examples/scenes/cornell.json")
            .replace("\"width\": 128", "\"width\": 64")
            .replace("\"height\": 128", "\"height\": 64")
            .replace("\"samples_per_pixel\": 64", "\"samples_per_pixel\": 4");
        let text = format!(
            r#"{{"version": 1, "kind": "render", "scene": {scene},
                "limits": {{"max_wall_secs": {max_wall_secs}, "max_device_memory": 268435456, "max_output_bytes": 1048576}}}}"#
        );
        JobSpec::from_json(&text, "spec").expect("spec")
    }

    fn devices() -> Devices {
        Devices { render: None, infer: InferDevice::Cpu }
    }

    fn sled_tiles(dir: &std::path::Path, job: u8) -> SledTiles {
        let db = sled::open(dir.join("db")).expect("sled");
        SledTiles::new(db.open_tree("tiles").expect("tree"), [job; 32])
    }

    #[test]
    fn a_cancelled_job_resumes_from_its_sled_tiles() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = render_spec(600);
        let tiles = sled_tiles(dir.path(), 1);
        let gate = ProofGate::new();
        let cancel = AtomicBool::new(false);
        let err = run::run(&spec, &Inputs::default(), &devices(), &tiles, &cancel, &gate, |done, _| {
            if done == 2 {
                cancel.store(true, Ordering::Relaxed);
            }
        })
        .expect_err("cancelled");
        assert!(err.to_string().contains("cancelled after 2 of 4 tiles"), "{err}");
        assert_eq!(tiles.count(), 2);
        // Another job's tiles are apart.
        assert_eq!(
            SledTiles::new(
                sled::open(dir.path().join("db2")).expect("sled").open_tree("t").expect("t"),
                [2; 32]
            )
            .count(),
            0
        );
        cancel.store(false, Ordering::Relaxed);
        let resumed = run::run(&spec, &Inputs::default(), &devices(), &tiles, &cancel, &gate, |_, _| {})
            .expect("resume");
        let straight =
            run::run(&spec, &Inputs::default(), &devices(), &NoTileStore, &cancel, &gate, |_, _| {})
                .expect("straight");
        assert_eq!(resumed.root, straight.root);
        tiles.clear().expect("clear");
        assert_eq!(tiles.count(), 0);
    }

    #[test]
    fn a_job_waits_for_proofs_and_stops_at_its_wall_time() {
        let spec = render_spec(1);
        let gate = ProofGate::new();
        let held = gate.hold();
        let cancel = AtomicBool::new(false);
        // Proofs hold the gate for the whole run: the job waits after its first tile, runs past
        // its one second and stops there, at a tile boundary.
        let err = run::run(&spec, &Inputs::default(), &devices(), &NoTileStore, &cancel, &gate, |_, _| {})
            .expect_err("timed out");
        drop(held);
        assert!(matches!(err, RunError::TimedOut { done: 1, total: 4, limit: 1 }), "{err}");
        assert_eq!(gate.waits(), 1);
    }

    #[test]
    fn an_inference_job_runs_from_its_fetched_inputs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let render = run::run(
            &render_spec(600),
            &Inputs::default(),
            &devices(),
            &NoTileStore,
            &AtomicBool::new(false),
            &ProofGate::new(),
            |_, _| {},
        )
        .expect("render");
        let inputs = Inputs {
            model: bigfile_compute::infer::SHIPPED_MODEL.to_vec(),
            input: render.png().expect("png"),
        };
        let id = format!("0x{}", "ab".repeat(32));
        let text = format!(
            r#"{{"version": 1, "kind": "infer", "model": "{id}", "input": "{id}",
                "limits": {{"max_wall_secs": 600, "max_device_memory": 268435456, "max_output_bytes": 1048576}}}}"#
        );
        let spec = JobSpec::from_json(&text, "spec").expect("spec");
        assert_eq!(check::grid(&spec, &inputs).expect("tiles").count(), 4);
        let tiles = sled_tiles(dir.path(), 3);
        let image = run::run(
            &spec,
            &inputs,
            &devices(),
            &tiles,
            &AtomicBool::new(false),
            &ProofGate::new(),
            |_, _| {},
        )
        .expect("infer");
        let weights = Weights::from_safetensors(&inputs.model, "model").expect("model");
        let input = InputImage::from_png(&inputs.input, "input").expect("input");
        let direct = Upscaler::new(&weights, InferDevice::Cpu)
            .expect("cpu")
            .upscale(&input, &NoTileStore, &AtomicBool::new(false), |_, _| {})
            .expect("upscale");
        assert_eq!(image.root, direct.root);
        assert_eq!((image.width, image.height), (128, 128));
        let bad = Inputs { model: b"junk".to_vec(), input: inputs.input.clone() };
        let err = run::run(
            &spec,
            &bad,
            &devices(),
            &NoTileStore,
            &AtomicBool::new(false),
            &ProofGate::new(),
            |_, _| {},
        )
        .expect_err("junk model");
        assert!(err.to_string().contains("not a safetensors file"), "{err}");
    }
}
