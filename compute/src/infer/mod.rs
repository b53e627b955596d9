//! Inference jobs: a candle model from a safetensors file applied to an input image.
//!
//! The one architecture an agent runs today is `bigfile-espcn-x2-v1`, a small ESPCN-style
//! super-resolution network that doubles an image's width and height:
//!
//! ```text
//! input    8-bit RGB, scaled to [0, 1], edge pixels repeated HALO (4) pixels outwards
//! conv1    5x5, 3 -> 32 channels, bias, tanh      (valid convolutions: no padding inside)
//! conv2    3x3, 32 -> 16, bias, tanh
//! conv3    3x3, 16 -> 12, bias
//! shuffle  12 channels -> 3 channels at twice the size (channel c*4 + dy*2 + dx -> pixel (2y+dy, 2x+dx))
//! output   shuffle + the input repeated 2x2 (nearest), rounded to 8 bits, clamped to 0..=255
//! ```
//!
//! Because the convolutions see only the edge-extended input and no padding between layers, an
//! output tile depends only on the input under it plus a HALO-pixel border. So the output is
//! computed, committed and verified tile by tile ([`OUT_TILE`]-pixel squares): a verifier
//! re-executes a tile from its input crop alone and gets the same bytes as the whole run.
//!
//! [`reference`] is the same network in plain loops, the yardstick for the candle forward pass;
//! [`train`] reproduces the shipped weights from generated images ([`data`]).

pub mod data;
pub mod reference;
pub mod train;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;

use candle_core::{DType, Device, Tensor};
use serde::Serialize;

use crate::error::InferError;
use crate::render::Image;
use crate::render::TileStore;
use crate::scene::{Tile, TileGrid};

/// The architecture name, also written in the safetensors metadata as `architecture`.
pub const ARCHITECTURE: &str = "bigfile-espcn-x2-v1";
/// Output size over input size.
pub const SCALE: u32 = 2;
/// Input pixels each output tile needs beyond its own area, on every side (2 + 1 + 1 for the
/// 5x5, 3x3, 3x3 convolutions).
pub const HALO: u32 = 4;
/// Side of an output tile, in output pixels.
pub const OUT_TILE: u32 = 64;
/// The shipped model (`examples/models/espcn-x2.safetensors`, made by `compute train-sr`).
pub const SHIPPED_MODEL: &[u8] = include_bytes!("../../../examples/models/espcn-x2.safetensors");

/// Largest input side accepted, in pixels (output 8192 x 8192 at most).
pub const MAX_INPUT_SIDE: u32 = 4096;

/// One convolution of the architecture.
#[derive(Debug, Clone, Copy)]
pub struct Layer {
    /// Tensor name prefix (`conv1` has `conv1.weight` and `conv1.bias`).
    pub name: &'static str,
    /// Output channels.
    pub out: usize,
    /// Input channels.
    pub inp: usize,
    /// Kernel side.
    pub k: usize,
    /// Whether tanh follows.
    pub tanh: bool,
}

/// The layers of [`ARCHITECTURE`], in order.
pub const LAYERS: [Layer; 3] = [
    Layer { name: "conv1", out: 32, inp: 3, k: 5, tanh: true },
    Layer { name: "conv2", out: 16, inp: 32, k: 3, tanh: true },
    Layer { name: "conv3", out: 12, inp: 16, k: 3, tanh: false },
];

/// A model's parameters as plain numbers: per layer, the weight (out, in, k, k row-major) and
/// the bias.
#[derive(Debug, Clone, PartialEq)]
pub struct Weights {
    /// `(weight, bias)` per layer of [`LAYERS`].
    pub layers: Vec<(Vec<f32>, Vec<f32>)>,
    /// The safetensors metadata (architecture, how it was trained).
    pub metadata: HashMap<String, String>,
}

impl Weights {
    /// Reads a safetensors file and checks it is exactly this architecture: every tensor
    /// present, F32, of the right shape, finite, and nothing else. `what` names the file.
    pub fn from_safetensors(bytes: &[u8], what: &str) -> Result<Weights, InferError> {
        let fail = |why: String| InferError::Model { what: what.to_owned(), why };
        let st = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| fail(format!("not a safetensors file: {e}")))?;
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| fail(format!("not a safetensors file: {e}")))?;
        let metadata = header.metadata().clone().unwrap_or_default();
        if let Some(arch) = metadata.get("architecture")
            && arch != ARCHITECTURE
        {
            return Err(fail(format!("architecture {arch:?}, this agent runs {ARCHITECTURE:?}")));
        }
        let expected: Vec<(String, Vec<usize>)> = LAYERS
            .iter()
            .flat_map(|l| {
                [
                    (format!("{}.weight", l.name), vec![l.out, l.inp, l.k, l.k]),
                    (format!("{}.bias", l.name), vec![l.out]),
                ]
            })
            .collect();
        let mut names = st.names();
        names.sort();
        if let Some(extra) = names.iter().find(|n| !expected.iter().any(|(e, _)| e == *n)) {
            return Err(fail(format!(
                "tensor {extra:?} is not part of {ARCHITECTURE} ({})",
                describe(&expected)
            )));
        }
        let mut tensors = Vec::with_capacity(expected.len());
        for (name, shape) in &expected {
            let view = st.tensor(name).map_err(|_| {
                fail(format!("tensor {name} is missing ({ARCHITECTURE} needs {})", describe(&expected)))
            })?;
            if view.dtype() != safetensors::Dtype::F32 {
                return Err(fail(format!("tensor {name} is {:?}, must be F32", view.dtype())));
            }
            if view.shape() != shape.as_slice() {
                return Err(fail(format!(
                    "tensor {name} has shape {:?}, {ARCHITECTURE} needs {shape:?}",
                    view.shape()
                )));
            }
            let values: Vec<f32> =
                view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
            if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                return Err(fail(format!("tensor {name} holds a non-finite value at element {i}")));
            }
            tensors.push(values);
        }
        let mut it = tensors.into_iter();
        let mut layers = Vec::with_capacity(LAYERS.len());
        while let (Some(w), Some(b)) = (it.next(), it.next()) {
            layers.push((w, b));
        }
        Ok(Weights { layers, metadata })
    }

    /// Writes the weights as safetensors (little-endian F32) with their metadata and the
    /// architecture name. Written here rather than by the safetensors crate, whose header lists
    /// the metadata in hash order: these bytes are the same on every run, so the training
    /// command reproduces the shipped file byte for byte.
    pub fn to_safetensors(&self) -> Result<Vec<u8>, InferError> {
        let mut header = serde_json::Map::new();
        let mut data = Vec::with_capacity(self.parameters() * 4);
        for (l, (w, b)) in LAYERS.iter().zip(&self.layers) {
            for (suffix, shape, values) in
                [("weight", vec![l.out, l.inp, l.k, l.k], w), ("bias", vec![l.out], b)]
            {
                if values.len() != shape.iter().product::<usize>() {
                    return Err(InferError::Model {
                        what: "weights".into(),
                        why: format!("{}.{suffix} holds {} values, not {shape:?}", l.name, values.len()),
                    });
                }
                let begin = data.len();
                data.extend(values.iter().flat_map(|x| x.to_le_bytes()));
                header.insert(
                    format!("{}.{suffix}", l.name),
                    serde_json::json!({ "dtype": "F32", "shape": shape, "data_offsets": [begin, data.len()] }),
                );
            }
        }
        let mut metadata: std::collections::BTreeMap<&str, &str> =
            self.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        metadata.insert("architecture", ARCHITECTURE);
        header.insert("__metadata__".into(), serde_json::json!(metadata));
        let mut text = serde_json::to_vec(&serde_json::Value::Object(header))
            .map_err(|e| InferError::Model { what: "weights".into(), why: e.to_string() })?;
        // The data starts 8-byte aligned.
        while (8 + text.len()) % 8 != 0 {
            text.push(b' ');
        }
        let mut out = Vec::with_capacity(8 + text.len() + data.len());
        out.extend((text.len() as u64).to_le_bytes());
        out.extend(text);
        out.extend(data);
        Ok(out)
    }

    /// Number of parameters.
    pub fn parameters(&self) -> usize {
        self.layers.iter().map(|(w, b)| w.len() + b.len()).sum()
    }
}

fn describe(expected: &[(String, Vec<usize>)]) -> String {
    expected.iter().map(|(n, s)| format!("{n} {s:?}")).collect::<Vec<_>>().join(", ")
}

/// An input image: row-major 8-bit RGB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Row-major RGB, 3 bytes a pixel.
    pub rgb: Vec<u8>,
}

impl InputImage {
    /// Decodes a PNG of any colour type and depth into 8-bit RGB (alpha dropped, grey repeated)
    /// and checks its size; `what` names it in errors.
    pub fn from_png(bytes: &[u8], what: &str) -> Result<InputImage, InferError> {
        let fail = |why: String| InferError::Input { what: what.to_owned(), why };
        let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = decoder.read_info().map_err(|e| fail(format!("not a PNG: {e}")))?;
        let (w, h) = (reader.info().width, reader.info().height);
        if w == 0 || h == 0 || w > MAX_INPUT_SIDE || h > MAX_INPUT_SIDE {
            return Err(fail(format!("{w} x {h} pixels; each side must be 1..={MAX_INPUT_SIDE}")));
        }
        let size = reader.output_buffer_size().ok_or_else(|| fail("image too large".into()))?;
        let mut buf = vec![0u8; size];
        let info = reader.next_frame(&mut buf).map_err(|e| fail(format!("bad PNG data: {e}")))?;
        buf.truncate(info.buffer_size());
        let channels = match info.color_type {
            png::ColorType::Grayscale => 1,
            png::ColorType::GrayscaleAlpha => 2,
            png::ColorType::Rgb => 3,
            png::ColorType::Rgba => 4,
            png::ColorType::Indexed => return Err(fail("indexed colour was not expanded".into())),
        };
        let rgb = if channels == 3 {
            buf
        } else {
            buf.chunks_exact(channels)
                .flat_map(|p| if channels < 3 { [p[0]; 3] } else { [p[0], p[1], p[2]] })
                .collect()
        };
        Ok(InputImage { width: w, height: h, rgb })
    }

    /// The output's tile grid.
    pub fn output_grid(&self) -> TileGrid {
        TileGrid { width: self.width * SCALE, height: self.height * SCALE, tile_size: OUT_TILE }
    }

    /// Bytes of the output image (raw RGB), for the job's output limit.
    pub fn output_bytes(&self) -> u64 {
        u64::from(self.width * SCALE) * u64::from(self.height * SCALE) * 3
    }

    /// The input an output tile needs: its area plus HALO pixels each side, edge pixels
    /// repeated, as channel-major floats in `[0, 1]`, with its width and height.
    pub fn crop(&self, tile: &Tile) -> (Vec<f32>, usize, usize) {
        let (x0, y0) = ((tile.x / SCALE) as i64 - HALO as i64, (tile.y / SCALE) as i64 - HALO as i64);
        let cw = (tile.width / SCALE + 2 * HALO) as usize;
        let ch = (tile.height / SCALE + 2 * HALO) as usize;
        let (w, h) = (i64::from(self.width), i64::from(self.height));
        let mut out = vec![0.0f32; 3 * cw * ch];
        for y in 0..ch {
            let sy = (y0 + y as i64).clamp(0, h - 1) as usize;
            for x in 0..cw {
                let sx = (x0 + x as i64).clamp(0, w - 1) as usize;
                for c in 0..3 {
                    out[(c * ch + y) * cw + x] =
                        f32::from(self.rgb[(sy * self.width as usize + sx) * 3 + c]) / 255.0;
                }
            }
        }
        (out, cw, ch)
    }
}

/// Turns the network's channel-major float output (3 x h x w) into row-major 8-bit RGB.
pub fn to_rgb8(chw: &[f32], w: usize, h: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(w * h * 3);
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                out.push(data::level(chw[(c * h + y) * w + x]));
            }
        }
    }
    out
}

/// Where inference runs: candle on the CPU, or (built with `cuda`) on an NVIDIA GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InferDevice {
    /// candle's CPU backend (all cores).
    Cpu,
    /// CUDA device `n`.
    Cuda(usize),
}

impl InferDevice {
    /// `cpu` or `cuda:N` (`cuda` alone is `cuda:0`).
    pub fn parse(text: &str) -> Result<InferDevice, InferError> {
        match text {
            "cpu" => Ok(InferDevice::Cpu),
            "cuda" => Ok(InferDevice::Cuda(0)),
            _ => text.strip_prefix("cuda:").and_then(|n| n.parse().ok()).map(InferDevice::Cuda).ok_or_else(
                || InferError::Device(format!("{text:?} is not an inference device (cpu, cuda:N)")),
            ),
        }
    }

    /// The device's name as `devices` shows it.
    pub fn name(&self) -> String {
        match self {
            InferDevice::Cpu => "cpu".into(),
            InferDevice::Cuda(n) => format!("cuda:{n}"),
        }
    }

    /// Whether the device opens here; the error says why not (no CUDA build, no driver, ...).
    pub fn probe(&self) -> Result<(), InferError> {
        self.open().map(|_| ())
    }

    fn open(&self) -> Result<Device, InferError> {
        match self {
            InferDevice::Cpu => Ok(Device::Cpu),
            InferDevice::Cuda(n) if cfg!(feature = "cuda") => Device::new_cuda(*n)
                .map_err(|e| InferError::Device(format!("cuda:{n} cannot be opened: {e}"))),
            InferDevice::Cuda(_) => Err(InferError::Device(
                "this agent was built without CUDA (build with the `cuda` feature)".into(),
            )),
        }
    }
}

/// The inference devices this build can use: the CPU always, and each CUDA device that opens
/// when built with `cuda`.
pub fn devices() -> Vec<InferDevice> {
    let mut out = vec![InferDevice::Cpu];
    if cfg!(feature = "cuda") {
        out.extend((0..16).map(InferDevice::Cuda).take_while(|d| d.open().is_ok()));
    }
    out
}

/// The network on one device, ready to upscale.
pub struct Upscaler {
    device: Device,
    name: String,
    layers: Vec<(Tensor, Tensor)>,
}

impl Upscaler {
    /// Uploads `weights` to `device`.
    pub fn new(weights: &Weights, device: InferDevice) -> Result<Upscaler, InferError> {
        let name = device.name();
        let dev = device.open()?;
        let fail = |e: candle_core::Error| InferError::Run { device: name.clone(), why: e.to_string() };
        let mut layers = Vec::with_capacity(LAYERS.len());
        for (l, (w, b)) in LAYERS.iter().zip(&weights.layers) {
            let wt = Tensor::from_slice(w, (l.out, l.inp, l.k, l.k), &dev).map_err(fail)?;
            let bt = Tensor::from_slice(b, l.out, &dev).map_err(fail)?;
            layers.push((wt, bt));
        }
        Ok(Upscaler { device: dev, name, layers })
    }

    /// The device's name.
    pub fn device(&self) -> &str {
        &self.name
    }

    /// One output tile of `input`, as row-major 8-bit RGB.
    pub fn tile(&self, input: &InputImage, tile: &Tile) -> Result<Vec<u8>, InferError> {
        let fail = |e: candle_core::Error| InferError::Run { device: self.name.clone(), why: e.to_string() };
        let (crop, cw, ch) = input.crop(tile);
        let x = Tensor::from_vec(crop, (1, 3, ch, cw), &self.device).map_err(fail)?;
        let y = forward(&self.layers, &x).map_err(fail)?;
        let out: Vec<f32> =
            y.flatten_all().and_then(|t| t.to_dtype(DType::F32)).and_then(|t| t.to_vec1()).map_err(fail)?;
        Ok(to_rgb8(&out, tile.width as usize, tile.height as usize))
    }

    /// Upscales `input` tile by tile, keeping each finished tile in `store` and taking tiles
    /// already there; `progress(done, total)` after each; stops at a tile boundary once `cancel`
    /// is set.
    pub fn upscale(
        &self,
        input: &InputImage,
        store: &dyn TileStore,
        cancel: &AtomicBool,
        progress: impl FnMut(u32, u32),
    ) -> Result<Image, InferError> {
        let grid = input.output_grid();
        crate::render::run_tiles(&grid, store, cancel, progress, |tile| self.tile(input, tile))
            .map(|(image, _)| image)
    }
}

/// The network on a batch: `x` is (batch, 3, h + 2 HALO, w + 2 HALO) in `[0, 1]`, the result
/// (batch, 3, 2h, 2w) before rounding. Training runs the same function.
pub fn forward(layers: &[(Tensor, Tensor)], x: &Tensor) -> candle_core::Result<Tensor> {
    let (_, _, ch, cw) = x.dims4()?;
    let halo = HALO as usize;
    let (h, w) = (ch - 2 * halo, cw - 2 * halo);
    let mut y = x.clone();
    for (l, (wt, bt)) in LAYERS.iter().zip(layers) {
        y = y.conv2d(wt, 0, 1, 1, 1)?.broadcast_add(&bt.reshape((1, l.out, 1, 1))?)?;
        if l.tanh {
            y = y.tanh()?;
        }
    }
    let up = candle_nn::ops::pixel_shuffle(&y, SCALE as usize)?;
    let skip = x.narrow(2, halo, h)?.narrow(3, halo, w)?.upsample_nearest2d(2 * h, 2 * w)?;
    up + skip
}

/// Upscales with the weights in a safetensors file on `device`, in one call (the CLI's
/// `compute infer`).
pub fn upscale_file(
    model: &[u8],
    model_name: &str,
    input: &InputImage,
    device: InferDevice,
    store: &dyn TileStore,
    cancel: &AtomicBool,
    progress: impl FnMut(u32, u32),
) -> Result<Image, InferError> {
    let weights = Weights::from_safetensors(model, model_name)?;
    Upscaler::new(&weights, device)?.upscale(input, store, cancel, progress)
}
