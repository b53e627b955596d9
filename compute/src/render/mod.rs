//! The render job: the scene path-traced by a wgpu compute pipeline (`path_trace.wgsl`), tile by
//! tile, into 8-bit sRGB pixels, with the result commitment over the tiles.
//!
//! A tile's pixels depend only on the scene (seed included) and the tile, never on the other
//! tiles or on how the samples were split into dispatches: that is what lets a verifier render a
//! single tile and compare it with the provider's.

use std::sync::atomic::AtomicBool;

mod resume;
pub use resume::{DirTileStore, Resumed, Stopped, TileStore, run_tiles};

use bytemuck::{Pod, Zeroable};
use wgpu::util::DeviceExt;

use crate::commit;
use crate::error::RenderError;
use crate::gpu::Gpu;
use crate::scene::{Primitive, Scene, Tile, TileGrid, cross, normalize, sub};

/// Work one dispatch may take at most, in ray–primitive tests (samples × primitives × bounces ×
/// 2 for the shadow rays). Short submissions keep a desktop GPU's watchdog quiet and cancellation
/// prompt; and lavapipe was seen to return wrong sums (a darker image, no error) from dispatches
/// of about 2^28 tests, while 2^23 and below were right.
const WORK_PER_DISPATCH: u64 = 1 << 22;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct Params {
    width: u32,
    height: u32,
    tile_x: u32,
    tile_y: u32,
    tile_w: u32,
    tile_h: u32,
    sample_begin: u32,
    sample_end: u32,
    max_bounces: u32,
    seed_lo: u32,
    seed_hi: u32,
    n_prims: u32,
    origin: [f32; 4],
    lower_left: [f32; 4],
    horizontal: [f32; 4],
    vertical: [f32; 4],
    background: [f32; 4],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct GpuPrim {
    kind: u32,
    material: u32,
    pad: [u32; 2],
    a: [f32; 4],
    b: [f32; 4],
    c: [f32; 4],
}

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct GpuMaterial {
    albedo: [f32; 4],
    emission: [f32; 4],
}

/// A rendered image: its pixels, its tiles' bytes and the commitment over them.
#[derive(Debug, Clone)]
pub struct Image {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Row-major 8-bit sRGB, 3 bytes a pixel.
    pub rgb: Vec<u8>,
    /// Each tile's bytes (row-major RGB within the tile), in tile order.
    pub tiles: Vec<Vec<u8>>,
    /// Each tile's digest ([`commit::tile_digest`]).
    pub digests: Vec<[u8; 32]>,
    /// The result commitment ([`commit::root`]).
    pub root: [u8; 32],
}

impl Image {
    /// Encodes the image as PNG.
    pub fn png(&self) -> Result<Vec<u8>, RenderError> {
        let mut out = Vec::new();
        let fail = |e: png::EncodingError| RenderError::Output { path: "PNG".into(), why: e.to_string() };
        let mut encoder = png::Encoder::new(&mut out, self.width, self.height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(fail)?;
        writer.write_image_data(&self.rgb).map_err(fail)?;
        writer.finish().map_err(fail)?;
        Ok(out)
    }
}

/// Reads a PNG written by [`Image::png`] (8-bit RGB) back into `(width, height, rgb)`.
pub fn decode_png(bytes: &[u8], what: &str) -> Result<(u32, u32, Vec<u8>), RenderError> {
    let fail = |why: String| RenderError::Output { path: what.to_owned(), why };
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .map_err(|e| fail(format!("not a PNG: {e}")))?;
    let size = reader.output_buffer_size().ok_or_else(|| fail("image too large".into()))?;
    let mut buf = vec![0u8; size];
    let info = reader.next_frame(&mut buf).map_err(|e| fail(format!("bad PNG data: {e}")))?;
    if info.color_type != png::ColorType::Rgb || info.bit_depth != png::BitDepth::Eight {
        return Err(fail(format!("{:?} {:?}, not 8-bit RGB", info.color_type, info.bit_depth)));
    }
    buf.truncate(info.buffer_size());
    Ok((info.width, info.height, buf))
}

/// The bytes of `tile` cut out of a whole image's row-major RGB of width `width`.
pub fn tile_bytes(rgb: &[u8], width: u32, tile: &Tile) -> Vec<u8> {
    let row = tile.width as usize * 3;
    let mut out = Vec::with_capacity(row * tile.height as usize);
    for y in tile.y..tile.y + tile.height {
        let at = (y as usize * width as usize + tile.x as usize) * 3;
        out.extend_from_slice(&rgb[at..at + row]);
    }
    out
}

/// The pipeline on one device, reusable across jobs.
pub struct Renderer {
    gpu: Gpu,
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

fn v4(a: [f32; 3], w: f32) -> [f32; 4] {
    [a[0], a[1], a[2], w]
}

/// Linear radiance to an 8-bit sRGB value (clamped to 0..=1 first).
pub fn srgb8(linear: f32) -> u8 {
    let c = if linear.is_nan() { 0.0 } else { linear.clamp(0.0, 1.0) };
    let s = if c <= 0.003_130_8 { 12.92 * c } else { 1.055 * c.powf(1.0 / 2.4) - 0.055 };
    (s * 255.0).round() as u8
}

impl Renderer {
    /// Builds the pipeline on `gpu`.
    pub fn new(gpu: Gpu) -> Renderer {
        let module = gpu.device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("path_trace"),
            source: wgpu::ShaderSource::Wgsl(include_str!("path_trace.wgsl").into()),
        });
        let entry = |binding: u32, ty: wgpu::BufferBindingType| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer { ty, has_dynamic_offset: false, min_binding_size: None },
            count: None,
        };
        let layout = gpu.device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("path_trace"),
            entries: &[
                entry(0, wgpu::BufferBindingType::Uniform),
                entry(1, wgpu::BufferBindingType::Storage { read_only: true }),
                entry(2, wgpu::BufferBindingType::Storage { read_only: true }),
                entry(3, wgpu::BufferBindingType::Storage { read_only: false }),
            ],
        });
        let pipeline_layout = gpu.device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("path_trace"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = gpu.device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("path_trace"),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        Renderer { gpu, pipeline, layout }
    }

    /// The device it renders on.
    pub fn device(&self) -> &crate::gpu::DeviceInfo {
        &self.gpu.info
    }

    fn params(scene: &Scene, tile: &Tile) -> Params {
        let cam = &scene.camera;
        let aspect = scene.width as f32 / scene.height as f32;
        let h = (cam.fov_degrees.to_radians() / 2.0).tan();
        let (vh, vw) = (2.0 * h, 2.0 * h * aspect);
        let w = normalize(sub(cam.position, cam.look_at));
        let u = normalize(cross(cam.up, w));
        let v = cross(w, u);
        let horizontal = [u[0] * vw, u[1] * vw, u[2] * vw];
        let vertical = [v[0] * vh, v[1] * vh, v[2] * vh];
        let o = cam.position;
        let lower_left = [
            o[0] - horizontal[0] / 2.0 - vertical[0] / 2.0 - w[0],
            o[1] - horizontal[1] / 2.0 - vertical[1] / 2.0 - w[1],
            o[2] - horizontal[2] / 2.0 - vertical[2] / 2.0 - w[2],
        ];
        Params {
            width: scene.width,
            height: scene.height,
            tile_x: tile.x,
            tile_y: tile.y,
            tile_w: tile.width,
            tile_h: tile.height,
            sample_begin: 0,
            sample_end: 0,
            max_bounces: scene.max_bounces,
            seed_lo: scene.seed as u32,
            seed_hi: (scene.seed >> 32) as u32,
            n_prims: scene.objects.len() as u32,
            origin: v4(o, 0.0),
            lower_left: v4(lower_left, 0.0),
            horizontal: v4(horizontal, 0.0),
            vertical: v4(vertical, 0.0),
            background: v4(scene.background, 0.0),
        }
    }

    fn gpu_scene(scene: &Scene) -> (Vec<GpuPrim>, Vec<GpuMaterial>) {
        let prims = scene
            .objects
            .iter()
            .map(|o| {
                let material = scene.material_index(o.material()).unwrap_or(0) as u32;
                let z = [0.0; 4];
                match o {
                    Primitive::Sphere { center, radius, .. } => {
                        GpuPrim { kind: 0, material, pad: [0; 2], a: v4(*center, *radius), b: z, c: z }
                    }
                    Primitive::Plane { point, normal, .. } => GpuPrim {
                        kind: 1,
                        material,
                        pad: [0; 2],
                        a: v4(*point, 0.0),
                        b: v4(normalize(*normal), 0.0),
                        c: z,
                    },
                    Primitive::Quad { corner, edge_u, edge_v, .. } => GpuPrim {
                        kind: 2,
                        material,
                        pad: [0; 2],
                        a: v4(*corner, 0.0),
                        b: v4(*edge_u, 0.0),
                        c: v4(*edge_v, 0.0),
                    },
                }
            })
            .collect();
        let materials = scene
            .materials
            .iter()
            .map(|m| GpuMaterial { albedo: v4(m.albedo, m.metallic), emission: v4(m.emission, m.roughness) })
            .collect();
        (prims, materials)
    }

    fn fail(&self, why: impl std::fmt::Display) -> RenderError {
        RenderError::Gpu { device: self.gpu.info.id(), why: why.to_string() }
    }

    /// Renders one tile: its row-major 8-bit sRGB bytes.
    pub fn render_tile(&self, scene: &Scene, tile: &Tile) -> Result<Vec<u8>, RenderError> {
        self.draw_tile(scene, &self.upload(scene), tile)
    }

    /// The scene's primitives and materials on the device, shared by all its tiles.
    fn upload(&self, scene: &Scene) -> SceneBuffers {
        let device = &self.gpu.device;
        let (prims, materials) = Self::gpu_scene(scene);
        SceneBuffers {
            prims: device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("prims"),
                contents: bytemuck::cast_slice(&prims),
                usage: wgpu::BufferUsages::STORAGE,
            }),
            materials: device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("materials"),
                contents: bytemuck::cast_slice(&materials),
                usage: wgpu::BufferUsages::STORAGE,
            }),
        }
    }

    fn draw_tile(&self, scene: &Scene, buffers: &SceneBuffers, tile: &Tile) -> Result<Vec<u8>, RenderError> {
        let device = &self.gpu.device;
        let pixels = u64::from(tile.width) * u64::from(tile.height);
        let size = pixels * 16;
        let sums = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("sums"),
            size,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let readback = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let uniform = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params"),
            size: std::mem::size_of::<Params>() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let bind = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("path_trace"),
            layout: &self.layout,
            entries: &[
                wgpu::BindGroupEntry { binding: 0, resource: uniform.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 1, resource: buffers.prims.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 2, resource: buffers.materials.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 3, resource: sums.as_entire_binding() },
            ],
        });
        let spp = scene.samples_per_pixel;
        let per_sample = (scene.objects.len() as u64 + 1) * u64::from(scene.max_bounces) * 2;
        let chunk = (WORK_PER_DISPATCH / per_sample / pixels.max(1)).clamp(1, u64::from(spp)) as u32;
        let mut params = Self::params(scene, tile);
        let mut begin = 0;
        while begin < spp {
            params.sample_begin = begin;
            params.sample_end = begin.saturating_add(chunk).min(spp);
            self.gpu.queue.write_buffer(&uniform, 0, bytemuck::bytes_of(&params));
            let mut encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
                pass.set_pipeline(&self.pipeline);
                pass.set_bind_group(0, &bind, &[]);
                pass.dispatch_workgroups(tile.width.div_ceil(8), tile.height.div_ceil(8), 1);
            }
            if params.sample_end == spp {
                encoder.copy_buffer_to_buffer(&sums, 0, &readback, 0, size);
            }
            self.gpu.queue.submit([encoder.finish()]);
            device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| self.fail(e))?;
            begin = params.sample_end;
        }
        let slice = readback.slice(..);
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| self.fail(e))?;
        rx.recv().map_err(|e| self.fail(e))?.map_err(|e| self.fail(e))?;
        let sums_f32: Vec<f32> = {
            let view = slice.get_mapped_range().map_err(|e| self.fail(e))?;
            view.chunks_exact(4).map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]])).collect()
        };
        readback.unmap();
        let inv = 1.0 / spp as f32;
        let mut out = Vec::with_capacity(pixels as usize * 3);
        for px in sums_f32.chunks_exact(4) {
            out.extend(px[..3].iter().map(|c| srgb8(c * inv)));
        }
        Ok(out)
    }

    /// Renders every tile in order, calling `progress(done, total)` after each and stopping at a
    /// tile boundary once `cancel` is set.
    pub fn render(
        &self,
        scene: &Scene,
        cancel: &AtomicBool,
        progress: impl FnMut(u32, u32),
    ) -> Result<Image, RenderError> {
        self.render_resumable(scene, &NoTileStore, cancel, progress).map(|(image, _)| image)
    }
}

/// A scene's primitive and material buffers on the device.
struct SceneBuffers {
    prims: wgpu::Buffer,
    materials: wgpu::Buffer,
}

/// Keeps nothing: a run that starts from scratch and leaves no tiles behind.
pub struct NoTileStore;

impl TileStore for NoTileStore {
    fn load(&self, _: u32) -> Option<Vec<u8>> {
        None
    }

    fn save(&self, _: u32, _: &[u8]) -> Result<(), String> {
        Ok(())
    }
}

/// Puts the tiles of `grid` (in order, row-major RGB each) together into an image with its
/// commitment.
pub fn assemble_grid(grid: &TileGrid, tiles: Vec<Vec<u8>>) -> Image {
    let (w, h) = (grid.width as usize, grid.height as usize);
    let mut rgb = vec![0u8; w * h * 3];
    let mut digests = Vec::with_capacity(tiles.len());
    for (index, bytes) in tiles.iter().enumerate() {
        let Some(tile) = grid.tile(index as u32) else { break };
        digests.push(commit::tile_digest(&tile, bytes));
        let row = tile.width as usize * 3;
        for (r, line) in bytes.chunks_exact(row).enumerate() {
            let at = ((tile.y as usize + r) * w + tile.x as usize) * 3;
            rgb[at..at + row].copy_from_slice(line);
        }
    }
    let root = commit::root(&digests);
    Image { width: grid.width, height: grid.height, rgb, tiles, digests, root }
}
