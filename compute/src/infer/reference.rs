//! The super-resolution network in plain loops, written straight from the architecture in the
//! module above, with no tensor library: the candle forward pass must agree with it.

use super::{HALO, LAYERS, SCALE, Weights};

/// The network on one channel-major input crop of `cw` x `ch` (edge-extended by HALO); returns
/// the channel-major float output (3 x 2(ch - 2 HALO) x 2(cw - 2 HALO)) before rounding.
pub fn forward(weights: &Weights, input: &[f32], cw: usize, ch: usize) -> Vec<f32> {
    let (mut cur, mut w, mut h) = (input.to_vec(), cw, ch);
    for (l, (wt, bias)) in LAYERS.iter().zip(&weights.layers) {
        let (ow, oh) = (w + 1 - l.k, h + 1 - l.k);
        let mut next = vec![0.0f32; l.out * ow * oh];
        for o in 0..l.out {
            for y in 0..oh {
                for x in 0..ow {
                    let mut s = bias[o];
                    for i in 0..l.inp {
                        for ky in 0..l.k {
                            for kx in 0..l.k {
                                s += wt[((o * l.inp + i) * l.k + ky) * l.k + kx]
                                    * cur[(i * h + y + ky) * w + x + kx];
                            }
                        }
                    }
                    next[(o * oh + y) * ow + x] = if l.tanh { s.tanh() } else { s };
                }
            }
        }
        (cur, w, h) = (next, ow, oh);
    }
    // Pixel shuffle plus the input repeated 2x2.
    let r = SCALE as usize;
    let halo = HALO as usize;
    let (ow, oh) = (w * r, h * r);
    let mut out = vec![0.0f32; 3 * ow * oh];
    for c in 0..3 {
        for y in 0..oh {
            for x in 0..ow {
                let channel = c * r * r + (y % r) * r + x % r;
                let skip = input[(c * ch + halo + y / r) * cw + halo + x / r];
                out[(c * oh + y) * ow + x] = cur[(channel * h + y / r) * w + x / r] + skip;
            }
        }
    }
    out
}
