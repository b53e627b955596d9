//! The images the super-resolution model is trained and judged on, generated here from a seed, and
//! the baseline it must beat.
//!
//! An image is a gradient background under a dozen anti-aliased shapes (discs, rings, rotated
//! boxes, thick lines, striped boxes) in random colours and sizes measured in pixels, so a small
//! patch and a large image hold the same kind of content. Its low-resolution version is the 2 x 2
//! box average, rounded to 8 bits like any PNG input. The baseline is bicubic upscaling (Keys,
//! a = -0.5) of that low-resolution image.

/// A small deterministic generator (SplitMix64): the same seed gives the same images on every
/// machine, which the training command needs to reproduce the shipped weights.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x6a09_e667_f3bc_c908)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }
}

enum Shape {
    Disc { c: [f32; 2], r: f32 },
    Ring { c: [f32; 2], r: f32, half: f32 },
    Boxed { c: [f32; 2], half: [f32; 2], cos: f32, sin: f32, stripes: Option<(f32, [f32; 3])> },
    Line { a: [f32; 2], b: [f32; 2], half: f32 },
}

impl Shape {
    /// Whether `p` is inside, and the colour there if the shape paints its own (stripes).
    fn hit(&self, p: [f32; 2]) -> Option<Option<[f32; 3]>> {
        match self {
            Shape::Disc { c, r } => (dist(p, *c) <= *r).then_some(None),
            Shape::Ring { c, r, half } => ((dist(p, *c) - r).abs() <= *half).then_some(None),
            Shape::Boxed { c, half, cos, sin, stripes } => {
                let d = [p[0] - c[0], p[1] - c[1]];
                let u = d[0] * cos + d[1] * sin;
                let v = -d[0] * sin + d[1] * cos;
                if u.abs() > half[0] || v.abs() > half[1] {
                    return None;
                }
                Some(
                    stripes
                        .and_then(|(period, other)| ((u / period).floor() as i64 % 2 == 0).then_some(other)),
                )
            }
            Shape::Line { a, b, half } => {
                let ab = [b[0] - a[0], b[1] - a[1]];
                let ap = [p[0] - a[0], p[1] - a[1]];
                let len2 = (ab[0] * ab[0] + ab[1] * ab[1]).max(1e-6);
                let t = ((ap[0] * ab[0] + ap[1] * ab[1]) / len2).clamp(0.0, 1.0);
                (dist(p, [a[0] + t * ab[0], a[1] + t * ab[1]]) <= *half).then_some(None)
            }
        }
    }
}

fn dist(a: [f32; 2], b: [f32; 2]) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
}

fn colour(rng: &mut Rng) -> [f32; 3] {
    [rng.unit(), rng.unit(), rng.unit()]
}

/// Subsamples per pixel side when drawing (4 x 4 = 16 per pixel): edges come out anti-aliased.
const SUPERSAMPLE: u32 = 4;

/// A generated `width` x `height` image, row-major RGB in `[0, 1]`.
pub fn generate(seed: u64, width: u32, height: u32) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    let (w, h) = (width as f32, height as f32);
    let (c0, c1) = (colour(&mut rng), colour(&mut rng));
    let angle = rng.range(0.0, std::f32::consts::TAU);
    let dir = [angle.cos(), angle.sin()];
    let reach = (w.abs() + h.abs()).max(1.0);
    let count = 6 + (rng.next_u64() % 10) as usize;
    let mut shapes = Vec::with_capacity(count);
    for _ in 0..count {
        let c = [rng.range(-8.0, w + 8.0), rng.range(-8.0, h + 8.0)];
        let kind = rng.next_u64() % 5;
        let shape = match kind {
            0 => Shape::Disc { c, r: rng.range(2.0, 24.0) },
            1 => Shape::Ring { c, r: rng.range(4.0, 24.0), half: rng.range(0.6, 3.0) },
            2 | 3 => {
                let a = rng.range(0.0, std::f32::consts::PI);
                let stripes = (kind == 3).then(|| (rng.range(1.5, 6.0), colour(&mut rng)));
                Shape::Boxed {
                    c,
                    half: [rng.range(2.0, 20.0), rng.range(2.0, 20.0)],
                    cos: a.cos(),
                    sin: a.sin(),
                    stripes,
                }
            }
            _ => {
                let a = rng.range(0.0, std::f32::consts::TAU);
                let len = rng.range(6.0, 40.0);
                Shape::Line {
                    a: c,
                    b: [c[0] + a.cos() * len, c[1] + a.sin() * len],
                    half: rng.range(0.4, 2.5),
                }
            }
        };
        shapes.push((shape, colour(&mut rng)));
    }
    let mut out = Vec::with_capacity(width as usize * height as usize * 3);
    let n = (SUPERSAMPLE * SUPERSAMPLE) as f32;
    for y in 0..height {
        for x in 0..width {
            let mut acc = [0.0f32; 3];
            for sy in 0..SUPERSAMPLE {
                for sx in 0..SUPERSAMPLE {
                    let p = [
                        x as f32 + (sx as f32 + 0.5) / SUPERSAMPLE as f32,
                        y as f32 + (sy as f32 + 0.5) / SUPERSAMPLE as f32,
                    ];
                    let t = ((p[0] * dir[0] + p[1] * dir[1]) / reach + 0.5).clamp(0.0, 1.0);
                    let mut col = [0.0; 3];
                    for (k, v) in col.iter_mut().enumerate() {
                        *v = c0[k] + (c1[k] - c0[k]) * t;
                    }
                    for (shape, own) in &shapes {
                        if let Some(paint) = shape.hit(p) {
                            col = paint.unwrap_or(*own);
                        }
                    }
                    for k in 0..3 {
                        acc[k] += col[k];
                    }
                }
            }
            out.extend(acc.iter().map(|v| v / n));
        }
    }
    out
}

/// The 2 x 2 box average of a row-major RGB image (odd edges dropped).
pub fn downscale2(hr: &[f32], width: u32, height: u32) -> Vec<f32> {
    let (w, lw, lh) = (width as usize, (width / 2) as usize, (height / 2) as usize);
    let mut out = Vec::with_capacity(lw * lh * 3);
    for y in 0..lh {
        for x in 0..lw {
            for c in 0..3 {
                let at = |yy: usize, xx: usize| hr[(yy * w + xx) * 3 + c];
                let s =
                    at(2 * y, 2 * x) + at(2 * y, 2 * x + 1) + at(2 * y + 1, 2 * x) + at(2 * y + 1, 2 * x + 1);
                out.push(s / 4.0);
            }
        }
    }
    out
}

/// `[0, 1]` floats to 8-bit levels, rounded to nearest.
pub fn quantize(v: &[f32]) -> Vec<u8> {
    v.iter().map(|&x| level(x)).collect()
}

/// One `[0, 1]` float to an 8-bit level, rounded to nearest (the model's output rule too).
pub fn level(x: f32) -> u8 {
    (x * 255.0).round().clamp(0.0, 255.0) as u8
}

/// Keys' cubic convolution kernel with a = -0.5 (the usual "bicubic").
fn cubic(t: f32) -> f32 {
    let t = t.abs();
    if t <= 1.0 {
        1.5 * t * t * t - 2.5 * t * t + 1.0
    } else if t < 2.0 {
        -0.5 * t * t * t + 2.5 * t * t - 4.0 * t + 2.0
    } else {
        0.0
    }
}

/// Bicubic x2 upscaling of row-major 8-bit RGB, pixel centres aligned (output pixel `x` samples
/// input position `(x + 0.5) / 2 - 0.5`), edges clamped.
pub fn bicubic2(lr: &[u8], width: u32, height: u32) -> Vec<u8> {
    let (w, h) = (width as i64, height as i64);
    let (ow, oh) = (2 * width as usize, 2 * height as usize);
    let mut out = Vec::with_capacity(ow * oh * 3);
    // Output pixel 2i + p sits at input i - 0.25 (p = 0) or i + 0.25 (p = 1): two weight sets.
    let weights = |p: usize| -> ([f32; 4], i64) {
        let f = if p == 0 { 0.75 } else { 0.25 };
        let base = if p == 0 { -2 } else { -1 };
        ([cubic(1.0 + f), cubic(f), cubic(1.0 - f), cubic(2.0 - f)], base)
    };
    for oy in 0..oh {
        let (wy, by) = weights(oy % 2);
        let iy = (oy / 2) as i64 + by;
        for ox in 0..ow {
            let (wx, bx) = weights(ox % 2);
            let ix = (ox / 2) as i64 + bx;
            for c in 0..3 {
                let mut s = 0.0;
                for (j, wyj) in wy.iter().enumerate() {
                    let yy = (iy + j as i64).clamp(0, h - 1) as usize;
                    for (i, wxi) in wx.iter().enumerate() {
                        let xx = (ix + i as i64).clamp(0, w - 1) as usize;
                        s += wyj * wxi * f32::from(lr[(yy * width as usize + xx) * 3 + c]);
                    }
                }
                out.push((s.round()).clamp(0.0, 255.0) as u8);
            }
        }
    }
    out
}

/// Peak signal-to-noise ratio of `a` against `b` (8-bit), in dB; infinite when equal.
pub fn psnr(a: &[u8], b: &[u8]) -> f64 {
    let n = a.len().min(b.len()).max(1);
    let mse: f64 =
        a.iter().zip(b).map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2)).sum::<f64>() / n as f64;
    if mse == 0.0 { f64::INFINITY } else { 10.0 * (255.0f64 * 255.0 / mse).log10() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_varied() {
        let a = generate(7, 32, 24);
        assert_eq!(a, generate(7, 32, 24));
        assert_ne!(a, generate(8, 32, 24));
        assert_eq!(a.len(), 32 * 24 * 3);
        assert!(a.iter().all(|v| (0.0..=1.0).contains(v)));
        let distinct: std::collections::BTreeSet<u8> = quantize(&a).into_iter().collect();
        assert!(distinct.len() > 20, "a generated image has edges and gradients, not a flat colour");
    }

    #[test]
    fn bicubic_keeps_flat_images_and_interpolates_ramps() {
        let flat = vec![77u8; 5 * 4 * 3];
        assert!(bicubic2(&flat, 5, 4).iter().all(|&v| v == 77));
        // A horizontal ramp 0, 32, 64, ... : output pixels 3 and 4 sample input positions 1.25
        // and 1.75, and cubic convolution reproduces a straight line exactly.
        let ramp: Vec<u8> = (0..8u8).flat_map(|x| [x * 32; 3]).collect();
        let up = bicubic2(&ramp, 8, 1);
        assert_eq!(up[3 * 3], 40);
        assert_eq!(up[4 * 3], 56);
    }

    #[test]
    fn psnr_of_known_error() {
        let a = vec![100u8; 300];
        let mut b = a.clone();
        assert!(psnr(&a, &b).is_infinite());
        b.iter_mut().for_each(|v| *v += 1);
        assert!((psnr(&a, &b) - 48.13).abs() < 0.01);
    }
}
