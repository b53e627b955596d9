//! Training the shipped super-resolution weights on generated images, and judging them against
//! bicubic upscaling on held-out ones.
//!
//! `bigfile-agent compute train-sr -o examples/models/espcn-x2.safetensors` runs [`train`] with
//! [`TrainOptions::default`] (the options are also written into the file's metadata). Every
//! random number comes from [`super::data::Rng`] seeded by the options, the batches are drawn in
//! a fixed order and candle's CPU kernels add in a fixed order, so the same options give the same
//! weights on this architecture; the test suite checks that two short runs agree byte for byte.

use candle_core::{Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rayon::prelude::*;
use serde::Serialize;

use super::data::{Rng, bicubic2, downscale2, generate, psnr, quantize};
use super::{HALO, InferDevice, InputImage, LAYERS, SCALE, Upscaler, Weights, forward};
use crate::error::InferError;
use crate::render::NoTileStore;

/// How to train.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TrainOptions {
    /// Optimiser steps.
    pub steps: u32,
    /// Seed of the initial weights and of the training images.
    pub seed: u64,
    /// Patches per step.
    pub batch: usize,
    /// Side of a patch's low-resolution area (its input has HALO more on each side).
    pub patch: u32,
    /// Adam learning rate at the start; it falls linearly to a tenth by the last step.
    pub learning_rate: f64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions { steps: 1500, seed: 1, batch: 16, patch: 16, learning_rate: 3e-3 }
    }
}

/// Held-out images: seeds with the top bit set, which training never draws.
const HELD_OUT: u64 = 1 << 63;

/// Mean PSNR of the model and of bicubic upscaling against the true high-resolution images.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Evaluation {
    /// Images judged.
    pub images: usize,
    /// Side of each high-resolution image.
    pub side: u32,
    /// The model's mean PSNR, dB.
    pub model_psnr: f64,
    /// Bicubic's mean PSNR, dB.
    pub bicubic_psnr: f64,
}

/// Initial weights: Glorot-uniform, the last layer scaled down so the untrained network starts
/// close to nearest-neighbour upscaling; biases zero.
pub fn initial(seed: u64) -> Weights {
    let mut rng = Rng::new(seed.wrapping_mul(0x9e37_79b9).wrapping_add(17));
    let layers = LAYERS
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let fan = ((l.inp + l.out) * l.k * l.k) as f32;
            let bound = (6.0 / fan).sqrt() * if i + 1 == LAYERS.len() { 0.1 } else { 1.0 };
            let w = (0..l.out * l.inp * l.k * l.k).map(|_| rng.range(-bound, bound)).collect();
            (w, vec![0.0; l.out])
        })
        .collect();
    Weights { layers, metadata: Default::default() }
}

/// The training images of one step: inputs (batch, 3, patch + 2 HALO, same) and targets
/// (batch, 3, 2 patch, 2 patch), both in `[0, 1]` from 8-bit values.
fn batch(opts: &TrainOptions, step: u32) -> (Vec<f32>, Vec<f32>) {
    let side_lr = (opts.patch + 2 * HALO) as usize;
    let side_hr = 2 * side_lr;
    let (p2, h2) = (2 * opts.patch as usize, 2 * HALO as usize);
    let samples: Vec<(Vec<f32>, Vec<f32>)> = (0..opts.batch)
        .into_par_iter()
        .map(|i| {
            let seed = (opts.seed.wrapping_mul(1 << 40) ^ (u64::from(step) * opts.batch as u64 + i as u64))
                & !HELD_OUT;
            let hr = generate(seed, side_hr as u32, side_hr as u32);
            let lr = quantize(&downscale2(&hr, side_hr as u32, side_hr as u32));
            let hr8 = quantize(&hr);
            let mut x = vec![0.0f32; 3 * side_lr * side_lr];
            let mut t = vec![0.0f32; 3 * p2 * p2];
            for c in 0..3 {
                for y in 0..side_lr {
                    for xx in 0..side_lr {
                        x[(c * side_lr + y) * side_lr + xx] =
                            f32::from(lr[(y * side_lr + xx) * 3 + c]) / 255.0;
                    }
                }
                for y in 0..p2 {
                    for xx in 0..p2 {
                        t[(c * p2 + y) * p2 + xx] =
                            f32::from(hr8[((y + h2) * side_hr + xx + h2) * 3 + c]) / 255.0;
                    }
                }
            }
            (x, t)
        })
        .collect();
    let mut xs = Vec::with_capacity(opts.batch * 3 * side_lr * side_lr);
    let mut ts = Vec::with_capacity(opts.batch * 3 * p2 * p2);
    for (x, t) in samples {
        xs.extend(x);
        ts.extend(t);
    }
    (xs, ts)
}

/// Trains from [`initial`] with Adam on mean squared error; `progress(step, loss)` after each
/// step. Runs on the CPU.
pub fn train(opts: &TrainOptions, mut progress: impl FnMut(u32, f32)) -> Result<Weights, InferError> {
    if opts.steps == 0
        || opts.batch == 0
        || opts.patch == 0
        || opts.learning_rate.is_nan()
        || opts.learning_rate <= 0.0
    {
        return Err(InferError::Model {
            what: "training options".into(),
            why: "steps, batch, patch and learning rate must be positive".into(),
        });
    }
    let fail = |e: candle_core::Error| InferError::Run { device: "cpu".into(), why: e.to_string() };
    let dev = Device::Cpu;
    let start = initial(opts.seed);
    let mut vars = Vec::with_capacity(2 * LAYERS.len());
    for (l, (w, b)) in LAYERS.iter().zip(&start.layers) {
        vars.push(
            Var::from_tensor(&Tensor::from_slice(w, (l.out, l.inp, l.k, l.k), &dev).map_err(fail)?)
                .map_err(fail)?,
        );
        vars.push(Var::from_tensor(&Tensor::from_slice(b, l.out, &dev).map_err(fail)?).map_err(fail)?);
    }
    let params = ParamsAdamW { lr: opts.learning_rate, weight_decay: 0.0, ..Default::default() };
    let mut adam = AdamW::new(vars.clone(), params).map_err(fail)?;
    let side_lr = (opts.patch + 2 * HALO) as usize;
    let p2 = 2 * opts.patch as usize;
    for step in 0..opts.steps {
        let (xs, ts) = batch(opts, step);
        let x = Tensor::from_vec(xs, (opts.batch, 3, side_lr, side_lr), &dev).map_err(fail)?;
        let t = Tensor::from_vec(ts, (opts.batch, 3, p2, p2), &dev).map_err(fail)?;
        let layers: Vec<(Tensor, Tensor)> =
            vars.chunks_exact(2).map(|p| (p[0].as_tensor().clone(), p[1].as_tensor().clone())).collect();
        let y = forward(&layers, &x).map_err(fail)?;
        let loss = (y - t).and_then(|d| d.sqr()).and_then(|d| d.mean_all()).map_err(fail)?;
        let fraction = f64::from(step) / f64::from(opts.steps);
        adam.set_learning_rate(opts.learning_rate * (1.0 - 0.9 * fraction));
        adam.backward_step(&loss).map_err(fail)?;
        progress(step + 1, loss.to_scalar::<f32>().map_err(fail)?);
    }
    let mut layers = Vec::with_capacity(LAYERS.len());
    for pair in vars.chunks_exact(2) {
        let w: Vec<f32> = pair[0].as_tensor().flatten_all().and_then(|t| t.to_vec1()).map_err(fail)?;
        let b: Vec<f32> = pair[1].to_vec1().map_err(fail)?;
        layers.push((w, b));
    }
    let metadata = [
        ("trained_by".to_owned(), "bigfile-agent compute train-sr".to_owned()),
        ("steps".to_owned(), opts.steps.to_string()),
        ("seed".to_owned(), opts.seed.to_string()),
        ("batch".to_owned(), opts.batch.to_string()),
        ("patch".to_owned(), opts.patch.to_string()),
        ("learning_rate".to_owned(), opts.learning_rate.to_string()),
    ]
    .into_iter()
    .collect();
    Ok(Weights { layers, metadata })
}

/// Judges `weights` on `images` held-out generated images of `side` x `side` (even): each is
/// box-downscaled, upscaled by the model (tile by tile, as jobs run) and by bicubic, and both
/// are compared with the original.
pub fn evaluate(
    weights: &Weights,
    device: InferDevice,
    images: usize,
    side: u32,
) -> Result<Evaluation, InferError> {
    let up = Upscaler::new(weights, device)?;
    let (mut model, mut bicubic) = (0.0, 0.0);
    for i in 0..images {
        let hr = generate(HELD_OUT | i as u64, side, side);
        let truth = quantize(&hr);
        let lr = quantize(&downscale2(&hr, side, side));
        let input = InputImage { width: side / SCALE, height: side / SCALE, rgb: lr };
        let out = up.upscale(&input, &NoTileStore, &Default::default(), |_, _| {})?;
        model += psnr(&out.rgb, &truth);
        bicubic += psnr(&bicubic2(&input.rgb, input.width, input.height), &truth);
    }
    let n = images.max(1) as f64;
    Ok(Evaluation { images, side, model_psnr: model / n, bicubic_psnr: bicubic / n })
}
