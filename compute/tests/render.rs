//! The renderer on a real wgpu adapter (lavapipe in CI, the GPU where there is one): analytic
//! checks (a flat emissive surface gives its exact colour, a mirror-symmetric scene a
//! mirror-symmetric image, noise falls as samples rise), determinism, and tiles that render the
//! same alone as in the whole image.

use std::sync::atomic::AtomicBool;
use std::sync::{Mutex, OnceLock};

use bigfile_compute::render::srgb8;
use bigfile_compute::scene::{Camera, Material, Primitive, Scene};
use bigfile_compute::{Gpu, Image, Renderer, commit};

/// One renderer for the whole test binary (opening a device takes a while on lavapipe).
fn renderer() -> std::sync::MutexGuard<'static, Renderer> {
    static R: OnceLock<Mutex<Renderer>> = OnceLock::new();
    R.get_or_init(|| {
        let gpu = Gpu::open(std::env::var("BIGFILE_TEST_DEVICE").ok().as_deref()).expect("a wgpu adapter");
        eprintln!("rendering on {}", gpu.info.id());
        Mutex::new(Renderer::new(gpu))
    })
    .lock()
    .unwrap_or_else(|e| e.into_inner())
}

fn render(scene: &Scene) -> Image {
    renderer().render(scene, &AtomicBool::new(false), |_, _| {}).expect("render")
}

fn material(name: &str, albedo: [f32; 3], emission: [f32; 3]) -> Material {
    Material { name: name.into(), albedo, emission, metallic: 0.0, roughness: 0.0 }
}

/// A box open towards the camera: white floor, ceiling and back wall, a light in the ceiling,
/// side walls of `left`/`right` albedo, and a sphere at `sphere_x`.
fn room(left: [f32; 3], right: [f32; 3], sphere_x: f32, spp: u32) -> Scene {
    let quad = |corner: [f32; 3], edge_u: [f32; 3], edge_v: [f32; 3], material: &str| Primitive::Quad {
        corner,
        edge_u,
        edge_v,
        material: material.into(),
    };
    Scene {
        width: 64,
        height: 64,
        samples_per_pixel: spp,
        max_bounces: 5,
        seed: 11,
        tile_size: 16,
        background: [0.0; 3],
        camera: Camera {
            position: [0.0, 1.0, 3.4],
            look_at: [0.0, 1.0, 0.0],
            up: [0.0, 1.0, 0.0],
            fov_degrees: 40.0,
        },
        materials: vec![
            material("white", [0.7; 3], [0.0; 3]),
            material("left", left, [0.0; 3]),
            material("right", right, [0.0; 3]),
            material("light", [0.0; 3], [10.0; 3]),
        ],
        objects: vec![
            quad([-1.0, 0.0, -1.0], [2.0, 0.0, 0.0], [0.0, 0.0, 2.0], "white"),
            quad([-1.0, 2.0, -1.0], [2.0, 0.0, 0.0], [0.0, 0.0, 2.0], "white"),
            quad([-1.0, 0.0, -1.0], [2.0, 0.0, 0.0], [0.0, 2.0, 0.0], "white"),
            quad([-1.0, 0.0, -1.0], [0.0, 0.0, 2.0], [0.0, 2.0, 0.0], "left"),
            quad([1.0, 0.0, -1.0], [0.0, 0.0, 2.0], [0.0, 2.0, 0.0], "right"),
            quad([-0.35, 1.999, -0.35], [0.7, 0.0, 0.0], [0.0, 0.0, 0.7], "light"),
            Primitive::Sphere { center: [sphere_x, 0.4, 0.0], radius: 0.4, material: "white".into() },
        ],
    }
}

/// Mean absolute difference per channel between two images' bytes.
fn mean_abs(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (f64::from(*x) - f64::from(*y)).abs()).sum::<f64>() / a.len() as f64
}

fn mirrored(img: &Image) -> Vec<u8> {
    let (w, h) = (img.width as usize, img.height as usize);
    let mut out = vec![0u8; img.rgb.len()];
    for y in 0..h {
        for x in 0..w {
            let (from, to) = ((y * w + x) * 3, (y * w + (w - 1 - x)) * 3);
            out[to..to + 3].copy_from_slice(&img.rgb[from..from + 3]);
        }
    }
    out
}

#[test]
fn a_flat_emissive_surface_gives_its_exact_colour() {
    let emission = [0.25, 0.5, 0.75];
    let scene = Scene {
        width: 40,
        height: 24,
        samples_per_pixel: 8,
        max_bounces: 4,
        seed: 1,
        tile_size: 16,
        background: [0.0; 3],
        camera: Camera {
            position: [0.0, 0.0, 1.0],
            look_at: [0.0, 0.0, 0.0],
            up: [0.0, 1.0, 0.0],
            fov_degrees: 60.0,
        },
        materials: vec![material("glow", [0.0; 3], emission)],
        objects: vec![Primitive::Plane {
            point: [0.0, 0.0, 0.0],
            normal: [0.0, 0.0, 1.0],
            material: "glow".into(),
        }],
    };
    let img = render(&scene);
    let want = [srgb8(0.25), srgb8(0.5), srgb8(0.75)];
    assert_eq!(want, [137, 188, 225], "sRGB of 0.25, 0.5, 0.75");
    for (i, px) in img.rgb.chunks_exact(3).enumerate() {
        assert_eq!(px, want, "pixel {i}");
    }
    assert_eq!(img.tiles.len(), 6, "3 x 2 tiles of 16 (the last column 8 wide)");
}

#[test]
fn a_mirror_symmetric_scene_renders_mirror_symmetric() {
    let grey = [0.5; 3];
    let symmetric = render(&room(grey, grey, 0.0, 256));
    let asymmetric = render(&room([0.7, 0.1, 0.1], [0.1, 0.7, 0.1], 0.45, 256));
    let sym = mean_abs(&symmetric.rgb, &mirrored(&symmetric));
    let asym = mean_abs(&asymmetric.rgb, &mirrored(&asymmetric));
    eprintln!("mean |image - mirror|: symmetric {sym:.2}, asymmetric {asym:.2}");
    // What is left in the symmetric one is Monte Carlo noise (mirror pixels draw other samples).
    assert!(sym < 4.0, "symmetric scene: {sym}");
    assert!(asym > 3.0 * sym, "the check can tell: asymmetric {asym} vs symmetric {sym}");
}

#[test]
fn noise_falls_as_samples_rise() {
    let grey = [0.5; 3];
    let reference = render(&room(grey, grey, 0.0, 1024));
    let errors: Vec<f64> = [4, 16, 64]
        .into_iter()
        .map(|spp| {
            let img = render(&room(grey, grey, 0.0, spp));
            let mse = img
                .rgb
                .iter()
                .zip(&reference.rgb)
                .map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2))
                .sum::<f64>()
                / img.rgb.len() as f64;
            mse.sqrt()
        })
        .collect();
    eprintln!("RMSE against 1024 spp at 4, 16, 64 spp: {errors:?}");
    assert!(errors[0] > errors[1] && errors[1] > errors[2], "{errors:?}");
    // Quadrupling the samples halves the noise in theory; allow for clamping and the reference's own noise.
    assert!(errors[0] > 2.5 * errors[2], "{errors:?}");
}

#[test]
fn renders_are_deterministic_and_tiles_render_the_same_alone() {
    let scene = Scene::from_json(include_str!("../../examples/scenes/cornell.json"), "cornell.json")
        .expect("example");
    let mut small = scene.clone();
    small.width = 48;
    small.height = 40;
    small.samples_per_pixel = 16;
    small.tile_size = 16;
    let a = render(&small);
    let b = render(&small);
    assert_eq!(a.rgb, b.rgb, "same scene, same seed, same device: same bytes");
    assert_eq!(a.root, b.root);
    assert!(a.rgb.iter().any(|c| *c > 40), "the light reaches the camera");

    let tile = small.tile(4).expect("tile 4");
    let alone = renderer().render_tile(&small, &tile).expect("tile");
    assert_eq!(alone, a.tiles[4], "tile 4 alone equals tile 4 of the image");
    let path = commit::prove(&a.digests, 4).expect("proof");
    assert!(commit::verify(&a.root, &commit::tile_digest(&tile, &alone), 4, &path));

    let mut other_seed = small.clone();
    other_seed.seed += 1;
    assert_ne!(render(&other_seed).root, a.root, "another seed, another image");
    let mut fewer = small.clone();
    fewer.samples_per_pixel = 8;
    assert_ne!(render(&fewer).root, a.root, "fewer samples, another image");

    // The PNG decodes back to the same pixels.
    let png = a.png().expect("png");
    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let mut reader = decoder.read_info().expect("png header");
    let mut buf = vec![0u8; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("png frame");
    assert_eq!((info.width, info.height), (48, 40));
    assert_eq!(&buf[..info.buffer_size()], &a.rgb[..]);
}

/// The verifier's side: the same job on another adapter (llvmpipe through GL rather than lavapipe
/// through Vulkan) matches tile by tile; a tampered tile, a lower sample count or another seed
/// does not.
#[test]
fn another_adapter_matches_and_cheats_do_not() {
    use bigfile_compute::verify::compare_render;
    let mut scene = Scene::from_json(include_str!("../../examples/scenes/cornell.json"), "cornell.json")
        .expect("example");
    scene.width = 64;
    scene.height = 48;
    scene.samples_per_pixel = 32;
    scene.tile_size = 16;
    let honest = render(&scene);
    let primary = renderer().device().id();
    let other = Gpu::open(Some(if primary.starts_with("gl:") { "vulkan:" } else { "gl:" }))
        .expect("a second adapter (Mesa's GL llvmpipe beside lavapipe; make test installs both)");
    eprintln!("comparing {primary} with {}", other.info.id());
    let verifier = Renderer::new(other);
    let check = |result: &Image| -> Vec<bool> {
        (0..scene.tile_count())
            .map(|i| {
                let tile = scene.tile(i).expect("tile");
                let ours = verifier.render_tile(&scene, &tile).expect("verifier renders");
                compare_render(&ours, &result.tiles[i as usize]).matches
            })
            .collect()
    };
    assert!(check(&honest).iter().all(|m| *m), "every honest tile matches on the other adapter");

    let mut tampered = honest.clone();
    for v in tampered.tiles[5].iter_mut().take(300) {
        *v = v.wrapping_add(60);
    }
    let verdict = check(&tampered);
    assert!(!verdict[5], "the tampered tile fails");
    assert_eq!(verdict.iter().filter(|m| !**m).count(), 1, "and only it");

    let mut lazy = scene.clone();
    lazy.samples_per_pixel = 16;
    assert!(check(&render(&lazy)).iter().all(|m| !*m), "every tile of a half-sampled render fails");
    let mut reseeded = scene.clone();
    reseeded.seed += 1;
    assert!(check(&render(&reseeded)).iter().all(|m| !*m), "every tile of another seed's render fails");
}

/// A render cancelled after a few tiles resumes from its saved tiles and ends with the same bytes
/// as one that ran straight through; a store of another scene is not used.
#[test]
fn a_cancelled_render_resumes_from_its_saved_tiles() {
    use bigfile_compute::render::DirTileStore;
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut scene = room([0.5; 3], [0.5; 3], 0.0, 8);
    scene.width = 48;
    scene.height = 32;
    let straight = render(&scene);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = DirTileStore::open(dir.path(), &scene).expect("store");
    let cancel = AtomicBool::new(false);
    let r = renderer();
    let first = r.render_resumable(&scene, &store, &cancel, |done, _| {
        if done == 2 {
            cancel.store(true, Ordering::Relaxed);
        }
    });
    assert!(matches!(first, Err(bigfile_compute::RenderError::Cancelled { done: 2, total: 6 })), "{first:?}");
    // A torn tile file (a crash mid-write) is rendered again.
    std::fs::write(store.dir().join("tile-1.rgb"), b"torn").expect("tear");
    cancel.store(false, Ordering::Relaxed);
    let (image, counts) = r.render_resumable(&scene, &store, &cancel, |_, _| {}).expect("resumed");
    assert_eq!((counts.reused, counts.rendered), (1, 5));
    assert_eq!(image.rgb, straight.rgb);
    assert_eq!(image.root, straight.root);

    let mut other = scene.clone();
    other.seed += 1;
    let other_store = DirTileStore::open(dir.path(), &other).expect("store");
    assert_ne!(other_store.dir(), store.dir(), "another scene, another folder");
}
