//! The super-resolution job: candle agrees with the plain-Rust reference, the shipped model beats
//! bicubic on held-out images, tiles are self-contained, bad model files are refused with the
//! tensor named, and the inference tolerance tells an honest re-run from another model.

use std::sync::atomic::AtomicBool;

use bigfile_compute::InferError;
use bigfile_compute::infer::data::{Rng, bicubic2, downscale2, generate, quantize};
use bigfile_compute::infer::train::{TrainOptions, evaluate, initial, train};
use bigfile_compute::infer::{
    HALO, InferDevice, InputImage, LAYERS, SCALE, Upscaler, Weights, reference, to_rgb8,
};
use bigfile_compute::render::{NoTileStore, TileStore};
use bigfile_compute::scene::Tile;
use bigfile_compute::verify::compare_infer;

fn shipped() -> Weights {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/models/espcn-x2.safetensors");
    let bytes = std::fs::read(path).expect("the shipped model (examples/models/espcn-x2.safetensors)");
    Weights::from_safetensors(&bytes, "espcn-x2.safetensors").expect("the shipped model loads")
}

/// Random weights of a size where tanh is not saturated and every tensor matters.
fn random_weights(seed: u64) -> Weights {
    let mut w = initial(seed);
    let mut rng = Rng::new(seed + 99);
    for (_, b) in &mut w.layers {
        b.iter_mut().for_each(|v| *v = rng.range(-0.2, 0.2));
    }
    w.layers[2].0.iter_mut().for_each(|v| *v *= 5.0);
    w
}

fn test_image(seed: u64, width: u32, height: u32) -> InputImage {
    let hr = generate(seed, width * 2, height * 2);
    InputImage { width, height, rgb: quantize(&downscale2(&hr, width * 2, height * 2)) }
}

#[test]
fn candle_forward_equals_the_reference() {
    let weights = random_weights(3);
    let input = test_image(11, 40, 28);
    let up = Upscaler::new(&weights, InferDevice::Cpu).expect("cpu");
    let tile = Tile { index: 0, x: 16, y: 8, width: 48, height: 32 };
    let (crop, cw, ch) = input.crop(&tile);
    let ours = reference::forward(&weights, &crop, cw, ch);
    assert_eq!(ours.len(), 3 * 48 * 32);
    let x = candle_core::Tensor::from_vec(crop, (1, 3, ch, cw), &candle_core::Device::Cpu).expect("tensor");
    let layers: Vec<_> = LAYERS
        .iter()
        .zip(&weights.layers)
        .map(|(l, (w, b))| {
            (
                candle_core::Tensor::from_slice(w, (l.out, l.inp, l.k, l.k), &candle_core::Device::Cpu)
                    .expect("w"),
                candle_core::Tensor::from_slice(b, l.out, &candle_core::Device::Cpu).expect("b"),
            )
        })
        .collect();
    let theirs: Vec<f32> = bigfile_compute::infer::forward(&layers, &x)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1())
        .expect("candle forward");
    let worst = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "candle and the reference differ by {worst}");
    // And the network does something: the output is not just the input repeated.
    let spread = ours.iter().map(|v| v.abs()).sum::<f32>() / ours.len() as f32;
    assert!(spread > 0.05, "outputs are all near zero ({spread})");
    assert_eq!(up.tile(&input, &tile).expect("tile"), to_rgb8(&ours, 48, 32));
}

#[test]
fn the_shipped_model_beats_bicubic_on_held_out_images() {
    let weights = shipped();
    assert_eq!(weights.metadata.get("architecture").map(String::as_str), Some("bigfile-espcn-x2-v1"));
    let e = evaluate(&weights, InferDevice::Cpu, 8, 128).expect("evaluate");
    eprintln!("held-out PSNR: model {:.2} dB, bicubic {:.2} dB", e.model_psnr, e.bicubic_psnr);
    assert!(
        e.model_psnr > e.bicubic_psnr + 0.5,
        "model {:.2} dB is not 0.5 dB better than bicubic {:.2} dB",
        e.model_psnr,
        e.bicubic_psnr
    );
    // The untrained network (nearest-neighbour plus noise) is worse than bicubic: the test can fail.
    let raw = evaluate(&initial(1), InferDevice::Cpu, 8, 128).expect("evaluate");
    assert!(raw.model_psnr < raw.bicubic_psnr, "{raw:?}");
}

#[test]
fn tiles_are_self_contained_and_match_the_whole_image() {
    let weights = shipped();
    // 70 x 45 input: 140 x 90 output, tiles of 64 with ragged right and bottom edges.
    let input = test_image(21, 70, 45);
    let up = Upscaler::new(&weights, InferDevice::Cpu).expect("cpu");
    let image = up.upscale(&input, &NoTileStore, &AtomicBool::new(false), |_, _| {}).expect("upscale");
    assert_eq!((image.width, image.height), (140, 90));
    assert_eq!(image.tiles.len(), 3 * 2);
    // One crop covering the whole image, run through the reference: the same picture.
    let whole = Tile { index: 0, x: 0, y: 0, width: 140, height: 90 };
    let (crop, cw, ch) = input.crop(&whole);
    let all = to_rgb8(&reference::forward(&weights, &crop, cw, ch), 140, 90);
    let c = compare_infer(&image.rgb, &all);
    assert!(c.matches && c.max_abs <= 1, "tiled output differs from the whole-image pass: {c:?}");
    // Each tile re-run alone gives the committed bytes, and its proof checks.
    for (index, bytes) in image.tiles.iter().enumerate() {
        let tile = input.output_grid().tile(index as u32).expect("tile");
        assert_eq!(&up.tile(&input, &tile).expect("tile"), bytes);
        let proof = bigfile_compute::commit::prove(&image.digests, index).expect("proof");
        let digest = bigfile_compute::commit::tile_digest(&tile, bytes);
        assert!(bigfile_compute::commit::verify(&image.root, &digest, index, &proof));
    }
    // The output is sharper than repeating pixels: it differs from nearest-neighbour.
    let nearest: Vec<u8> = (0..90u32)
        .flat_map(|y| (0..140u32).map(move |x| (x / SCALE, y / SCALE)))
        .flat_map(|(x, y)| {
            let at = ((y * 70 + x) * 3) as usize;
            input.rgb[at..at + 3].to_vec()
        })
        .collect();
    assert!(!compare_infer(&image.rgb, &nearest).matches);
}

#[test]
fn verification_passes_a_rerun_and_fails_another_model_or_tampering() {
    let weights = shipped();
    let input = test_image(5, 64, 64);
    let up = Upscaler::new(&weights, InferDevice::Cpu).expect("cpu");
    let image = up.upscale(&input, &NoTileStore, &AtomicBool::new(false), |_, _| {}).expect("upscale");
    let other = Upscaler::new(&random_weights(8), InferDevice::Cpu).expect("cpu");
    let grid = input.output_grid();
    let bicubic = bicubic2(&input.rgb, input.width, input.height);
    let mut caught_bicubic = 0;
    for index in 0..grid.count() {
        let tile = grid.tile(index).expect("tile");
        let rerun = up.tile(&input, &tile).expect("tile");
        let theirs = &image.tiles[index as usize];
        assert!(compare_infer(&rerun, theirs).matches);
        assert!(!compare_infer(&other.tile(&input, &tile).expect("tile"), theirs).matches);
        let mut tampered = theirs.clone();
        let middle = tampered.len() / 2;
        tampered[middle] ^= 0x10;
        assert!(!compare_infer(&rerun, &tampered).matches);
        let lazy = bigfile_compute::render::tile_bytes(&bicubic, grid.width, &tile);
        if !compare_infer(&rerun, &lazy).matches {
            caught_bicubic += 1;
        }
    }
    assert_eq!(caught_bicubic, grid.count(), "bicubic passed as the model's output");
}

#[test]
fn a_cancelled_upscale_resumes_from_its_tiles() {
    struct Mem(std::sync::Mutex<std::collections::HashMap<u32, Vec<u8>>>);
    impl TileStore for Mem {
        fn load(&self, index: u32) -> Option<Vec<u8>> {
            self.0.lock().expect("lock").get(&index).cloned()
        }
        fn save(&self, index: u32, bytes: &[u8]) -> Result<(), String> {
            self.0.lock().expect("lock").insert(index, bytes.to_vec());
            Ok(())
        }
    }
    let up = Upscaler::new(&shipped(), InferDevice::Cpu).expect("cpu");
    let input = test_image(9, 96, 64);
    let store = Mem(Default::default());
    let cancel = AtomicBool::new(false);
    let err = up
        .upscale(&input, &store, &cancel, |done, _| {
            if done == 2 {
                cancel.store(true, std::sync::atomic::Ordering::Relaxed)
            }
        })
        .expect_err("cancelled");
    assert!(matches!(err, InferError::Cancelled { done: 2, total: 6 }), "{err}");
    cancel.store(false, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(store.0.lock().expect("lock").len(), 2, "two tiles kept");
    let resumed = up.upscale(&input, &store, &cancel, |_, _| {}).expect("resume");
    let straight = up.upscale(&input, &NoTileStore, &cancel, |_, _| {}).expect("straight");
    assert_eq!(resumed.root, straight.root);
}

#[test]
fn model_files_that_do_not_fit_are_refused_by_name() {
    let good = shipped();
    let bytes = good.to_safetensors().expect("serialise");
    assert_eq!(Weights::from_safetensors(&bytes, "m").expect("round trip").layers, good.layers);
    // The shipped file is exactly what the training command writes for the default options.
    assert_eq!(bytes, bigfile_compute::infer::SHIPPED_MODEL, "the shipped model is not in canonical form");
    let d = TrainOptions::default();
    for (key, value) in
        [("steps", d.steps.to_string()), ("seed", d.seed.to_string()), ("batch", d.batch.to_string())]
    {
        assert_eq!(good.metadata.get(key), Some(&value), "shipped model's {key} is not the training default");
    }
    let refuse = |w: &[(&str, Vec<usize>, safetensors::Dtype)], meta: Option<(&str, &str)>| -> String {
        let data: Vec<Vec<u8>> =
            w.iter().map(|(_, s, d)| vec![0u8; s.iter().product::<usize>() * d.bitsize() / 8]).collect();
        let views: Vec<(String, safetensors::tensor::TensorView)> = w
            .iter()
            .zip(&data)
            .map(|((n, s, d), b)| {
                ((*n).to_owned(), safetensors::tensor::TensorView::new(*d, s.clone(), b).expect("view"))
            })
            .collect();
        let metadata = meta.map(|(k, v)| [(k.to_owned(), v.to_owned())].into_iter().collect());
        let file = safetensors::serialize(views, metadata).expect("serialise");
        Weights::from_safetensors(&file, "bad.safetensors").expect_err("refused").to_string()
    };
    use safetensors::Dtype::{F16, F32};
    let full = |swap: Option<(&'static str, Vec<usize>, safetensors::Dtype)>| {
        let mut all: Vec<(&str, Vec<usize>, safetensors::Dtype)> = vec![
            ("conv1.weight", vec![32, 3, 5, 5], F32),
            ("conv1.bias", vec![32], F32),
            ("conv2.weight", vec![16, 32, 3, 3], F32),
            ("conv2.bias", vec![16], F32),
            ("conv3.weight", vec![12, 16, 3, 3], F32),
            ("conv3.bias", vec![12], F32),
        ];
        if let Some(s) = swap {
            match all.iter_mut().find(|t| t.0 == s.0) {
                Some(t) => *t = s,
                None => all.push(s),
            }
        }
        all
    };
    assert!(refuse(&full(None), Some(("architecture", "llama"))).contains("architecture \"llama\""));
    let e = refuse(&full(Some(("conv2.weight", vec![16, 32, 5, 5], F32))), None);
    assert!(e.contains("bad.safetensors") && e.contains("conv2.weight has shape [16, 32, 5, 5]"), "{e}");
    let e = refuse(&full(Some(("conv3.bias", vec![12], F16))), None);
    assert!(e.contains("conv3.bias is F16"), "{e}");
    let e = refuse(&full(Some(("conv4.weight", vec![3], F32))), None);
    assert!(e.contains("\"conv4.weight\" is not part of"), "{e}");
    let mut missing = full(None);
    missing.retain(|t| t.0 != "conv1.bias");
    assert!(refuse(&missing, None).contains("conv1.bias is missing"));
    let e = Weights::from_safetensors(b"not a model at all", "junk.bin").expect_err("junk").to_string();
    assert!(e.contains("junk.bin") && e.contains("not a safetensors file"), "{e}");
    let mut nan = good.clone();
    nan.layers[1].1[3] = f32::NAN;
    let e = Weights::from_safetensors(&nan.to_safetensors().expect("s"), "nan.safetensors").expect_err("nan");
    assert!(e.to_string().contains("conv2.bias holds a non-finite value at element 3"), "{e}");
}

#[test]
fn inputs_of_other_png_kinds_are_converted_and_oversized_ones_refused() {
    let png_of = |w: u32, h: u32, color: png::ColorType, data: &[u8]| {
        let mut out = Vec::new();
        let mut e = png::Encoder::new(&mut out, w, h);
        e.set_color(color);
        e.set_depth(png::BitDepth::Eight);
        let mut writer = e.write_header().expect("header");
        writer.write_image_data(data).expect("data");
        writer.finish().expect("finish");
        out
    };
    let grey =
        InputImage::from_png(&png_of(2, 1, png::ColorType::Grayscale, &[10, 200]), "g.png").expect("grey");
    assert_eq!(grey.rgb, vec![10, 10, 10, 200, 200, 200]);
    let rgba =
        InputImage::from_png(&png_of(1, 1, png::ColorType::Rgba, &[1, 2, 3, 4]), "a.png").expect("rgba");
    assert_eq!(rgba.rgb, vec![1, 2, 3]);
    let wide = vec![0u8; 4097];
    let e = InputImage::from_png(&png_of(4097, 1, png::ColorType::Grayscale, &wide), "wide.png")
        .expect_err("wide");
    assert!(e.to_string().contains("wide.png") && e.to_string().contains("4097 x 1"), "{e}");
    let e = InputImage::from_png(b"GIF89a", "x.gif").expect_err("gif");
    assert!(e.to_string().contains("x.gif: not a PNG"), "{e}");
    assert_eq!(HALO, 4);
}

#[test]
fn training_is_reproducible_and_lowers_the_loss() {
    let options = TrainOptions { steps: 40, seed: 5, batch: 4, patch: 8, learning_rate: 3e-3 };
    let mut losses = Vec::new();
    let a = train(&options, |_, loss| losses.push(loss)).expect("train");
    let b = train(&options, |_, _| {}).expect("train again");
    assert_eq!(a.to_safetensors().expect("a"), b.to_safetensors().expect("b"), "same options, other weights");
    let first: f32 = losses[..5].iter().sum::<f32>() / 5.0;
    let last: f32 = losses[35..].iter().sum::<f32>() / 5.0;
    assert!(last < first * 0.8, "loss did not fall: {first} -> {last}");
    let c = train(&TrainOptions { seed: 6, ..options }, |_, _| {}).expect("other seed");
    assert_ne!(a.layers, c.layers);
}
