//! The scene a render job describes: camera, materials, primitives, sampling and seed, checked
//! field by field before any GPU work.
//!
//! Lights are emissive materials on primitives (area lights) plus the background, which is seen
//! by rays that hit nothing, so a scene lit only by its sky is possible too.

use serde::{Deserialize, Serialize};

use crate::error::SpecError;

/// An RGB triple, linear (not sRGB), each channel ≥ 0.
pub type Rgb = [f32; 3];
/// A point or direction in world space.
pub type Vec3 = [f32; 3];

/// Largest image side accepted, in pixels.
pub const MAX_SIDE: u32 = 16_384;
/// Largest samples per pixel accepted.
pub const MAX_SAMPLES: u32 = 1 << 16;
/// Largest number of bounces per path accepted.
pub const MAX_BOUNCES: u32 = 64;
/// Largest number of primitives accepted (each is tested by every ray: no BVH yet).
pub const MAX_PRIMITIVES: usize = 256;
/// Largest number of materials accepted.
pub const MAX_MATERIALS: usize = 256;

/// What a render job draws.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scene {
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
    /// Paths traced per pixel; noise falls as its square root grows.
    pub samples_per_pixel: u32,
    /// Surface interactions per path before it is cut.
    #[serde(default = "default_bounces")]
    pub max_bounces: u32,
    /// Seeds every pixel's random sequence: the same seed gives the same image.
    pub seed: u64,
    /// Side of the square tiles the image is rendered and committed in.
    #[serde(default = "default_tile")]
    pub tile_size: u32,
    /// Radiance of rays that leave the scene.
    #[serde(default)]
    pub background: Rgb,
    /// The pinhole camera.
    pub camera: Camera,
    /// Materials, referred to by name from the primitives.
    pub materials: Vec<Material>,
    /// What rays can hit.
    pub objects: Vec<Primitive>,
}

fn default_bounces() -> u32 {
    6
}

fn default_tile() -> u32 {
    32
}

/// A pinhole camera.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Camera {
    /// Eye position.
    pub position: Vec3,
    /// The point at the image centre.
    pub look_at: Vec3,
    /// Which way is up (need not be exactly perpendicular to the view direction).
    #[serde(default = "default_up")]
    pub up: Vec3,
    /// Vertical field of view in degrees.
    pub fov_degrees: f32,
}

fn default_up() -> Vec3 {
    [0.0, 1.0, 0.0]
}

/// How a surface reflects and emits light.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Material {
    /// The name primitives use.
    pub name: String,
    /// Reflectance per channel, 0..=1.
    #[serde(default)]
    pub albedo: Rgb,
    /// Emitted radiance (makes the surface a light).
    #[serde(default)]
    pub emission: Rgb,
    /// 0 = diffuse (Lambertian), 1 = mirror; between, the chance a bounce is specular.
    #[serde(default)]
    pub metallic: f32,
    /// Blur of specular bounces, 0 = perfect mirror .. 1.
    #[serde(default)]
    pub roughness: f32,
}

/// A shape rays can hit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Primitive {
    /// A sphere.
    Sphere {
        /// Centre.
        center: Vec3,
        /// Radius (> 0).
        radius: f32,
        /// Material name.
        material: String,
    },
    /// An infinite plane through `point`, facing `normal`.
    Plane {
        /// A point on the plane.
        point: Vec3,
        /// Its normal (any length > 0).
        normal: Vec3,
        /// Material name.
        material: String,
    },
    /// A parallelogram `corner + s*edge_u + t*edge_v`, s and t in 0..=1 (walls, area lights).
    Quad {
        /// One corner.
        corner: Vec3,
        /// First edge from the corner.
        edge_u: Vec3,
        /// Second edge from the corner (not parallel to the first).
        edge_v: Vec3,
        /// Material name.
        material: String,
    },
}

impl Primitive {
    /// The material name this primitive uses.
    pub fn material(&self) -> &str {
        match self {
            Primitive::Sphere { material, .. }
            | Primitive::Plane { material, .. }
            | Primitive::Quad { material, .. } => material,
        }
    }
}

/// The tiles an image is cut into, in row-major order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    /// Index in row-major order.
    pub index: u32,
    /// Left pixel column.
    pub x: u32,
    /// Top pixel row.
    pub y: u32,
    /// Width (less than the tile size at the right edge).
    pub width: u32,
    /// Height (less than the tile size at the bottom edge).
    pub height: u32,
}

/// An image of `width` x `height` cut into square tiles of `tile_size` (smaller at the right and
/// bottom edges), numbered row-major. Renders and inference outputs are committed tile by tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileGrid {
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
    /// Side of a full tile.
    pub tile_size: u32,
}

impl TileGrid {
    /// Tiles across and down.
    pub fn across_down(&self) -> (u32, u32) {
        (self.width.div_ceil(self.tile_size), self.height.div_ceil(self.tile_size))
    }

    /// Number of tiles.
    pub fn count(&self) -> u32 {
        let (x, y) = self.across_down();
        x * y
    }

    /// Tile `index` (row-major), or `None` past the last.
    pub fn tile(&self, index: u32) -> Option<Tile> {
        let (across, down) = self.across_down();
        if index >= across * down {
            return None;
        }
        let (tx, ty) = (index % across, index / across);
        let (x, y) = (tx * self.tile_size, ty * self.tile_size);
        Some(Tile {
            index,
            x,
            y,
            width: self.tile_size.min(self.width - x),
            height: self.tile_size.min(self.height - y),
        })
    }
}

fn finite(v: &[f32]) -> bool {
    v.iter().all(|x| x.is_finite())
}

pub(crate) fn length(v: Vec3) -> f32 {
    (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt()
}

pub(crate) fn cross(a: Vec3, b: Vec3) -> Vec3 {
    [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]
}

pub(crate) fn sub(a: Vec3, b: Vec3) -> Vec3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}

pub(crate) fn normalize(a: Vec3) -> Vec3 {
    let l = length(a);
    [a[0] / l, a[1] / l, a[2] / l]
}

impl Scene {
    /// Parses a scene from JSON; `what` names the source in errors.
    pub fn from_json(text: &str, what: &str) -> Result<Scene, SpecError> {
        let scene: Scene = serde_json::from_str(text)
            .map_err(|e| SpecError::new(what, format!("not a valid scene: {e}")))?;
        scene.validate(what)?;
        Ok(scene)
    }

    /// Checks every field; errors name the field as `prefix.field`.
    pub fn validate(&self, prefix: &str) -> Result<(), SpecError> {
        let at = |field: &str| format!("{prefix}.{field}");
        for (name, v) in [("width", self.width), ("height", self.height)] {
            if v == 0 || v > MAX_SIDE {
                return Err(SpecError::new(at(name), format!("must be 1..={MAX_SIDE} pixels (is {v})")));
            }
        }
        if self.samples_per_pixel == 0 || self.samples_per_pixel > MAX_SAMPLES {
            return Err(SpecError::new(
                at("samples_per_pixel"),
                format!("must be 1..={MAX_SAMPLES} (is {})", self.samples_per_pixel),
            ));
        }
        if self.max_bounces == 0 || self.max_bounces > MAX_BOUNCES {
            return Err(SpecError::new(
                at("max_bounces"),
                format!("must be 1..={MAX_BOUNCES} (is {})", self.max_bounces),
            ));
        }
        if !(8..=512).contains(&self.tile_size) {
            return Err(SpecError::new(at("tile_size"), format!("must be 8..=512 (is {})", self.tile_size)));
        }
        check_rgb(&self.background, &at("background"), false)?;
        let cam = &self.camera;
        if !finite(&cam.position) || !finite(&cam.look_at) || !finite(&cam.up) {
            return Err(SpecError::new(at("camera"), "position, look_at and up must be finite numbers"));
        }
        let view = sub(cam.look_at, cam.position);
        if length(view) < 1e-6 {
            return Err(SpecError::new(at("camera.look_at"), "must differ from camera.position"));
        }
        if length(cross(view, cam.up)) < 1e-6 * length(view) * length(cam.up).max(1e-6) {
            return Err(SpecError::new(at("camera.up"), "must not be parallel to the view direction"));
        }
        if !(cam.fov_degrees > 0.0 && cam.fov_degrees < 180.0) {
            return Err(SpecError::new(
                at("camera.fov_degrees"),
                format!("must be between 0 and 180 (is {})", cam.fov_degrees),
            ));
        }
        if self.materials.is_empty() || self.materials.len() > MAX_MATERIALS {
            return Err(SpecError::new(at("materials"), format!("must hold 1..={MAX_MATERIALS} materials")));
        }
        for (i, m) in self.materials.iter().enumerate() {
            let at_m = |f: &str| at(&format!("materials[{i}].{f}"));
            if m.name.is_empty() {
                return Err(SpecError::new(at_m("name"), "must not be empty"));
            }
            if self.materials[..i].iter().any(|o| o.name == m.name) {
                return Err(SpecError::new(at_m("name"), format!("{:?} is defined twice", m.name)));
            }
            check_rgb(&m.albedo, &at_m("albedo"), true)?;
            check_rgb(&m.emission, &at_m("emission"), false)?;
            for (f, v) in [("metallic", m.metallic), ("roughness", m.roughness)] {
                if !(0.0..=1.0).contains(&v) {
                    return Err(SpecError::new(at_m(f), format!("must be 0..=1 (is {v})")));
                }
            }
        }
        if self.objects.is_empty() || self.objects.len() > MAX_PRIMITIVES {
            return Err(SpecError::new(at("objects"), format!("must hold 1..={MAX_PRIMITIVES} primitives")));
        }
        for (i, o) in self.objects.iter().enumerate() {
            let at_o = |f: &str| at(&format!("objects[{i}].{f}"));
            if self.material_index(o.material()).is_none() {
                return Err(SpecError::new(
                    at_o("material"),
                    format!("no material is named {:?}", o.material()),
                ));
            }
            match o {
                Primitive::Sphere { center, radius, .. } => {
                    if !finite(center) {
                        return Err(SpecError::new(at_o("center"), "must be finite numbers"));
                    }
                    if !(radius.is_finite() && *radius > 0.0) {
                        return Err(SpecError::new(at_o("radius"), format!("must be > 0 (is {radius})")));
                    }
                }
                Primitive::Plane { point, normal, .. } => {
                    if !finite(point) || !finite(normal) || length(*normal) < 1e-6 {
                        return Err(SpecError::new(
                            at_o("normal"),
                            "point and normal must be finite, normal not zero",
                        ));
                    }
                }
                Primitive::Quad { corner, edge_u, edge_v, .. } => {
                    if !finite(corner) || !finite(edge_u) || !finite(edge_v) {
                        return Err(SpecError::new(
                            at_o("corner"),
                            "corner and edges must be finite numbers",
                        ));
                    }
                    if length(cross(*edge_u, *edge_v)) < 1e-9 {
                        return Err(SpecError::new(at_o("edge_v"), "edges must not be parallel or zero"));
                    }
                }
            }
        }
        Ok(())
    }

    /// Index of the material called `name`.
    pub fn material_index(&self, name: &str) -> Option<usize> {
        self.materials.iter().position(|m| m.name == name)
    }

    /// The grid of tiles the image is cut into.
    pub fn grid(&self) -> TileGrid {
        TileGrid { width: self.width, height: self.height, tile_size: self.tile_size }
    }

    /// Tiles across and down.
    pub fn tile_grid(&self) -> (u32, u32) {
        self.grid().across_down()
    }

    /// Number of tiles.
    pub fn tile_count(&self) -> u32 {
        self.grid().count()
    }

    /// Tile `index` (row-major), or `None` past the last.
    pub fn tile(&self, index: u32) -> Option<Tile> {
        self.grid().tile(index)
    }

    /// Primary-ray samples the whole image takes (pixels × samples per pixel).
    pub fn samples(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height) * u64::from(self.samples_per_pixel)
    }
}

fn check_rgb(v: &Rgb, at: &str, unit: bool) -> Result<(), SpecError> {
    if !finite(v) || v.iter().any(|c| *c < 0.0) {
        return Err(SpecError::new(at, format!("must be three numbers ≥ 0 (is {v:?})")));
    }
    if unit && v.iter().any(|c| *c > 1.0) {
        return Err(SpecError::new(at, format!("must be three numbers in 0..=1 (is {v:?})")));
    }
    if !unit && v.iter().any(|c| *c > 1e6) {
        return Err(SpecError::new(at, format!("must be at most 1e6 per channel (is {v:?})")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Scene {
        Scene::from_json(include_str!("../../examples/scenes/cornell.json"), "cornell.json")
            .expect("example parses")
    }

    #[test]
    fn tiles_cover_the_image_exactly_once() {
        let mut s = sample();
        s.width = 100;
        s.height = 70;
        s.tile_size = 32;
        assert_eq!(s.tile_grid(), (4, 3));
        let mut covered = vec![0u8; 100 * 70];
        for i in 0..s.tile_count() {
            let t = s.tile(i).expect("tile");
            for y in t.y..t.y + t.height {
                for x in t.x..t.x + t.width {
                    covered[(y * 100 + x) as usize] += 1;
                }
            }
        }
        assert!(covered.iter().all(|c| *c == 1));
        assert_eq!(s.tile(12), None);
        assert_eq!(s.tile(11).map(|t| (t.width, t.height)), Some((4, 6)));
    }

    #[test]
    fn every_bad_field_is_named() {
        type Edit = Box<dyn Fn(&mut Scene)>;
        let cases: Vec<(&str, Edit)> = vec![
            ("scene.width", Box::new(|s| s.width = 0)),
            ("scene.samples_per_pixel", Box::new(|s| s.samples_per_pixel = 0)),
            ("scene.max_bounces", Box::new(|s| s.max_bounces = 1000)),
            ("scene.tile_size", Box::new(|s| s.tile_size = 4)),
            ("scene.camera.look_at", Box::new(|s| s.camera.look_at = s.camera.position)),
            ("scene.camera.fov_degrees", Box::new(|s| s.camera.fov_degrees = 180.0)),
            ("scene.camera.up", Box::new(|s| s.camera.up = sub(s.camera.look_at, s.camera.position))),
            ("scene.materials[0].albedo", Box::new(|s| s.materials[0].albedo = [1.5, 0.0, 0.0])),
            ("scene.materials[0].emission", Box::new(|s| s.materials[0].emission = [f32::NAN, 0.0, 0.0])),
            ("scene.materials[1].name", Box::new(|s| s.materials[1].name = s.materials[0].name.clone())),
            ("scene.materials[0].roughness", Box::new(|s| s.materials[0].roughness = -0.1)),
            (
                "scene.objects[0].material",
                Box::new(|s| {
                    if let Primitive::Quad { material, .. } = &mut s.objects[0] {
                        *material = "nope".into();
                    }
                }),
            ),
            ("scene.objects", Box::new(|s| s.objects.clear())),
        ];
        for (field, edit) in cases {
            let mut s = sample();
            edit(&mut s);
            let e = s.validate("scene").expect_err(field);
            assert_eq!(e.field, field, "{e}");
        }
        let e = Scene::from_json(r#"{"width": 4, "colour": 1}"#, "x.json").expect_err("unknown field");
        assert!(e.to_string().contains("x.json"), "{e}");
    }
}
