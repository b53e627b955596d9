// A path tracer for one tile of the image: spheres, planes and parallelograms, diffuse and
// (rough) mirror materials, emissive surfaces and a background as the lights.
//
// Every pixel's random sequence depends only on the seed, the pixel and the sample number, so a
// tile renders the same alone as inside the whole image, and samples can be split over several
// dispatches: each adds its samples to the running sum in order, so the float sums are the same
// whatever the split.

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
    origin: vec4<f32>,
    lower_left: vec4<f32>,
    horizontal: vec4<f32>,
    vertical: vec4<f32>,
    background: vec4<f32>,
}

// kind 0: sphere (a = centre, radius in a.w); 1: plane (a = point, b = unit normal);
// 2: parallelogram (a = corner, b = edge u, c = edge v).
struct Prim {
    kind: u32,
    material: u32,
    pad0: u32,
    pad1: u32,
    a: vec4<f32>,
    b: vec4<f32>,
    c: vec4<f32>,
}

// albedo.w = metallic, emission.w = roughness.
struct Material {
    albedo: vec4<f32>,
    emission: vec4<f32>,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> prims: array<Prim>;
@group(0) @binding(2) var<storage, read> materials: array<Material>;
@group(0) @binding(3) var<storage, read_write> sums: array<vec4<f32>>;

var<private> rng_state: u32;

fn pcg(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

// Uniform in [0, 1) with 24 bits.
fn rand() -> f32 {
    rng_state = pcg(rng_state);
    return f32(rng_state >> 8u) * (1.0 / 16777216.0);
}

fn random_unit_vector() -> vec3<f32> {
    let z = rand() * 2.0 - 1.0;
    let a = rand() * 6.28318530718;
    let r = sqrt(max(0.0, 1.0 - z * z));
    return vec3<f32>(r * cos(a), r * sin(a), z);
}

struct Hit {
    t: f32,
    normal: vec3<f32>,
    material: u32,
    kind: u32,
}

const NO_HIT: f32 = 1e30;
const T_MIN: f32 = 1e-4;

fn intersect(ro: vec3<f32>, rd: vec3<f32>) -> Hit {
    var best = Hit(NO_HIT, vec3<f32>(0.0), 0u, 0u);
    for (var i = 0u; i < params.n_prims; i = i + 1u) {
        let p = prims[i];
        var t = NO_HIT;
        var n = vec3<f32>(0.0);
        if p.kind == 0u {
            let oc = ro - p.a.xyz;
            let b = dot(oc, rd);
            let c = dot(oc, oc) - p.a.w * p.a.w;
            let disc = b * b - c;
            if disc > 0.0 {
                let s = sqrt(disc);
                var root = -b - s;
                if root < T_MIN {
                    root = -b + s;
                }
                if root >= T_MIN {
                    t = root;
                    n = (ro + rd * t - p.a.xyz) / p.a.w;
                }
            }
        } else if p.kind == 1u {
            let denom = dot(p.b.xyz, rd);
            if abs(denom) > 1e-8 {
                let root = dot(p.a.xyz - ro, p.b.xyz) / denom;
                if root >= T_MIN {
                    t = root;
                    n = p.b.xyz;
                }
            }
        } else {
            let u = p.b.xyz;
            let v = p.c.xyz;
            let nn = cross(u, v);
            let denom = dot(nn, rd);
            if abs(denom) > 1e-12 {
                let root = dot(p.a.xyz - ro, nn) / denom;
                if root >= T_MIN {
                    let q = ro + rd * root - p.a.xyz;
                    let w = nn / dot(nn, nn);
                    let alpha = dot(w, cross(q, v));
                    let beta = dot(w, cross(u, q));
                    if alpha >= 0.0 && alpha <= 1.0 && beta >= 0.0 && beta <= 1.0 {
                        t = root;
                        n = normalize(nn);
                    }
                }
            }
        }
        if t < best.t {
            best = Hit(t, n, p.material, p.kind);
        }
    }
    return best;
}

// Light from every emissive parallelogram straight to the diffuse point `p` (next event
// estimation): one point sampled on each, a shadow ray, the area-to-solid-angle factor. Paths
// then skip those lights' emission when a diffuse bounce hits them, so nothing counts twice.
fn direct_light(p: vec3<f32>, n: vec3<f32>) -> vec3<f32> {
    var sum = vec3<f32>(0.0);
    for (var i = 0u; i < params.n_prims; i = i + 1u) {
        let l = prims[i];
        let le = materials[l.material].emission.xyz;
        if l.kind != 2u || all(le == vec3<f32>(0.0)) {
            continue;
        }
        let q = l.a.xyz + rand() * l.b.xyz + rand() * l.c.xyz;
        let d = q - p;
        let dist2 = dot(d, d);
        if dist2 < 1e-10 {
            continue;
        }
        let dist = sqrt(dist2);
        let wi = d / dist;
        let cos_p = dot(n, wi);
        let ln = cross(l.b.xyz, l.c.xyz);
        let area = length(ln);
        let cos_l = abs(dot(ln / area, wi));
        if cos_p <= 0.0 || cos_l <= 0.0 {
            continue;
        }
        let blocker = intersect(p + n * T_MIN, wi);
        if blocker.t < dist - 1e-3 {
            continue;
        }
        sum = sum + le * (cos_p * cos_l * area / (3.14159265359 * dist2));
    }
    return sum;
}

fn trace(origin: vec3<f32>, direction: vec3<f32>) -> vec3<f32> {
    var ro = origin;
    var rd = direction;
    var throughput = vec3<f32>(1.0);
    var radiance = vec3<f32>(0.0);
    // Whether the ray left a diffuse bounce, whose emissive parallelograms were sampled already.
    var after_diffuse = false;
    for (var bounce = 0u; bounce < params.max_bounces; bounce = bounce + 1u) {
        let hit = intersect(ro, rd);
        if hit.t >= NO_HIT {
            radiance = radiance + throughput * params.background.xyz;
            break;
        }
        let m = materials[hit.material];
        if !(after_diffuse && hit.kind == 2u) {
            radiance = radiance + throughput * m.emission.xyz;
        }
        if all(m.albedo.xyz == vec3<f32>(0.0)) {
            break;
        }
        // Two-sided surfaces: shade the side the ray came from.
        var n = hit.normal;
        if dot(n, rd) > 0.0 {
            n = -n;
        }
        let p = ro + rd * hit.t;
        if rand() < m.albedo.w {
            let r = reflect(rd, n) + m.emission.w * random_unit_vector();
            if dot(r, n) <= 0.0 {
                break;
            }
            rd = normalize(r);
            after_diffuse = false;
        } else {
            radiance = radiance + throughput * m.albedo.xyz * direct_light(p, n);
            // Cosine-weighted: the Lambertian pdf cancels the cosine, leaving the albedo.
            let d = n + random_unit_vector();
            if dot(d, d) < 1e-12 {
                rd = n;
            } else {
                rd = normalize(d);
            }
            after_diffuse = true;
        }
        throughput = throughput * m.albedo.xyz;
        ro = p + n * T_MIN;
    }
    return radiance;
}

@compute @workgroup_size(8, 8, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    if gid.x >= params.tile_w || gid.y >= params.tile_h {
        return;
    }
    let px = params.tile_x + gid.x;
    let py = params.tile_y + gid.y;
    let pixel = py * params.width + px;
    let out = gid.y * params.tile_w + gid.x;
    var sum = sums[out].xyz;
    let pixel_seed = pcg(pixel ^ pcg(params.seed_lo ^ pcg(params.seed_hi)));
    for (var s = params.sample_begin; s < params.sample_end; s = s + 1u) {
        rng_state = pcg(pixel_seed ^ pcg(s + 0x9e3779b9u));
        let u = (f32(px) + rand()) / f32(params.width);
        let v = 1.0 - (f32(py) + rand()) / f32(params.height);
        let target_point = params.lower_left.xyz + u * params.horizontal.xyz + v * params.vertical.xyz;
        sum = sum + trace(params.origin.xyz, normalize(target_point - params.origin.xyz));
    }
    sums[out] = vec4<f32>(sum, 1.0);
}
