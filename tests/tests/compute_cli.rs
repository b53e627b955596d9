//! The operator's compute commands on this machine's real adapters (lavapipe in CI) and candle's
//! CPU: `devices`, `compute render` of the shipped example scene, `compute verify` telling the
//! honest result from another seed's, `compute infer` with the shipped model and `compute
//! verify-infer` telling its output from a bicubic one.

use std::path::Path;

use bigfile_tests::agent_bin;

fn agent(args: &[&str]) -> std::process::Output {
    std::process::Command::new(agent_bin()).args(args).output().expect("run bigfile-agent")
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `--json compute render SCENE -o PNG [extra...]`.
fn render(scene: &Path, png: &Path, extra: &[&str]) -> std::process::Output {
    agent(&[&["--json", "compute", "render", path(scene), "-o", path(png)], extra].concat())
}

/// `compute verify SCENE PNG --tiles N`.
fn verify(scene: &Path, png: &Path, tiles: &str) -> std::process::Output {
    agent(&["compute", "verify", path(scene), path(png), "--tiles", tiles])
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).expect("json")
}

fn example() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/scenes/cornell.json")
}

/// The example scene at another size, written to `dir/name`.
fn example_sized(dir: &Path, name: &str, width: u32, height: u32) -> std::path::PathBuf {
    let text = std::fs::read_to_string(example()).expect("example scene");
    let path = dir.join(name);
    let sized = text
        .replace("\"width\": 128", &format!("\"width\": {width}"))
        .replace("\"height\": 128", &format!("\"height\": {height}"));
    std::fs::write(&path, sized).expect("write scene");
    path
}

#[test]
fn devices_render_and_verify_from_the_command_line() {
    let devices = agent(&["devices", "--json"]);
    assert!(devices.status.success(), "{}", String::from_utf8_lossy(&devices.stderr));
    let all = json(&devices);
    assert_eq!(all["infer"][0], "cpu", "{all}");
    let list = all["wgpu"].clone();
    let first = &list.as_array().expect("array")[0];
    assert!(first["name"].as_str().is_some_and(|n| !n.is_empty()), "{list}");
    assert!(first["backend"].is_string() && first["max_storage_buffer_binding_size"].as_u64() > Some(0));

    let dir = tempfile::tempdir().expect("tempdir");
    let scene = example_sized(dir.path(), "scene.json", 64, 64);
    let png = dir.path().join("out.png");
    let rendered = render(&scene, &png, &[]);
    assert!(rendered.status.success(), "{}", String::from_utf8_lossy(&rendered.stderr));
    let report = json(&rendered);
    assert_eq!((report["width"].as_u64(), report["tiles"].as_u64()), (Some(64), Some(4)), "{report}");
    assert!(report["root"].as_str().is_some_and(|r| r.len() == 66), "{report}");
    assert!(std::fs::read(&png).expect("png").starts_with(b"\x89PNG"));

    // With a work folder, a second run takes every tile from it and gives the same commitment.
    let work = dir.path().join("work");
    let first = json(&render(&scene, &dir.path().join("a.png"), &["--work-dir", path(&work)]));
    let again = json(&render(&scene, &dir.path().join("b.png"), &["--work-dir", path(&work)]));
    assert_eq!(
        (first["tiles_reused"].as_u64(), again["tiles_reused"].as_u64()),
        (Some(0), Some(4)),
        "{again}"
    );
    assert_eq!(first["root"], report["root"]);
    assert_eq!(again["root"], report["root"]);

    let honest = verify(&scene, &png, "4");
    assert!(honest.status.success(), "{}", String::from_utf8_lossy(&honest.stdout));
    assert!(String::from_utf8_lossy(&honest.stdout).contains(": match (4 tiles"));

    // A result rendered with another seed does not pass for this scene.
    let other = dir.path().join("other.json");
    let text = std::fs::read_to_string(&scene).expect("scene");
    std::fs::write(&other, text.replace("\"seed\": 7", "\"seed\": 8")).expect("write");
    let other_png = dir.path().join("other.png");
    assert!(render(&other, &other_png, &[]).status.success());
    let cheat = verify(&scene, &other_png, "2");
    assert!(!cheat.status.success());
    assert!(String::from_utf8_lossy(&cheat.stdout).contains("MISMATCH"));

    // The shipped render job spec is accepted where a scene is, and holds the example scene.
    let job = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/jobs/render-cornell.json");
    let job_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&job).expect("job")).expect("json");
    let scene_json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(example()).expect("scene")).expect("json");
    assert_eq!(
        job_json["scene"], scene_json,
        "examples/jobs/render-cornell.json drifted from the example scene"
    );
    let from_job = agent(&["compute", "verify", path(&job), path(&dir.path().join("a.png")), "--tiles", "1"]);
    assert!(!from_job.status.success(), "a 64x64 result is not the 128x128 job's");
    assert!(String::from_utf8_lossy(&from_job.stderr).contains("is 64x64 but the scene renders 128x128"));

    // A bad scene names its field; nothing is written.
    std::fs::write(&other, text.replace("\"samples_per_pixel\": 64", "\"samples_per_pixel\": 0"))
        .expect("write");
    let bad_png = dir.path().join("bad.png");
    let bad = render(&other, &bad_png, &[]);
    assert!(!bad.status.success());
    let why = String::from_utf8_lossy(&bad.stderr);
    assert!(why.contains("other.json.samples_per_pixel: must be 1..="), "{why}");
    assert!(!bad_png.exists());

    // The benchmark measures every adapter; GPU ÷ CPU only where there is a GPU.
    let bench = agent(&["--json", "bench", "compute", "--seconds", "0.2"]);
    assert!(bench.status.success(), "{}", String::from_utf8_lossy(&bench.stderr));
    let b = json(&bench);
    let rates = b["devices"].as_array().expect("devices");
    assert_eq!(rates.len(), list.as_array().expect("array").len(), "{b}");
    assert!(rates.iter().all(|d| d["megasamples_per_sec"].as_f64().is_some_and(|r| r > 0.0)), "{b}");
    let has_gpu = rates.iter().any(|d| d["device_type"].as_str().is_some_and(|t| t.ends_with("_gpu")));
    assert_eq!(b.get("render_gpu_vs_cpu").is_some(), has_gpu, "{b}");
    assert!(b["infer_cpu_images_per_sec"].as_f64().is_some_and(|r| r > 0.0), "{b}");
    let cuda = all["infer"].as_array().expect("infer").len() > 1;
    assert_eq!(b.get("infer_gpu_vs_cpu").is_some(), cuda, "{b}");
}

fn model() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/models/espcn-x2.safetensors")
}

#[test]
fn infer_and_verify_infer_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The input: a small render of the example scene.
    let scene = example_sized(dir.path(), "scene.json", 48, 40);
    let input = dir.path().join("in.png");
    assert!(render(&scene, &input, &[]).status.success());

    let output = dir.path().join("out.png");
    let run = agent(&[
        "--json",
        "compute",
        "infer",
        "--model",
        path(&model()),
        "--input",
        path(&input),
        "-o",
        path(&output),
    ]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let report = json(&run);
    assert_eq!((report["width"].as_u64(), report["height"].as_u64()), (Some(96), Some(80)), "{report}");
    assert_eq!(report["tiles"].as_u64(), Some(4), "{report}");
    assert_eq!(report["device"], "cpu");

    let verify_infer = |result: &Path| {
        agent(&[
            "compute",
            "verify-infer",
            path(result),
            "--model",
            path(&model()),
            "--input",
            path(&input),
            "--tiles",
            "9",
        ])
    };
    let honest = verify_infer(&output);
    assert!(honest.status.success(), "{}", String::from_utf8_lossy(&honest.stdout));
    assert!(String::from_utf8_lossy(&honest.stdout).contains(": match (4 tiles re-run on cpu)"));

    // The same size rendered directly (not upscaled) is not the model's output.
    let big = example_sized(dir.path(), "big.json", 96, 80);
    let direct = dir.path().join("direct.png");
    assert!(render(&big, &direct, &[]).status.success());
    let cheat = verify_infer(&direct);
    assert!(!cheat.status.success());
    assert!(String::from_utf8_lossy(&cheat.stdout).contains("MISMATCH"));

    // A model file that is not the architecture is refused by name; nothing is written.
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"\x08\0\0\0\0\0\0\0{}      ").expect("write");
    let none = dir.path().join("none.png");
    let bad =
        agent(&["compute", "infer", "--model", path(&junk), "--input", path(&input), "-o", path(&none)]);
    assert!(!bad.status.success());
    let why = String::from_utf8_lossy(&bad.stderr);
    assert!(why.contains("junk.safetensors") && why.contains("conv1.weight is missing"), "{why}");
    assert!(!none.exists());
    let bad = agent(&[
        "compute",
        "infer",
        "--model",
        path(&model()),
        "--input",
        path(&input),
        "-o",
        path(&none),
        "--device",
        "tpu",
    ]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("\"tpu\" is not an inference device"));
}
