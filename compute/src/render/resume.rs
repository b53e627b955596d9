//! Renders that survive a restart: each finished tile is saved before the next starts, and a
//! render picks up from the saved tiles, so a killed or cancelled job loses at most the tile it
//! was drawing.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Image, Renderer, assemble};
use crate::error::RenderError;
use crate::scene::Scene;

/// Where finished tiles are kept between runs (the agent keeps them in sled, the CLI in a folder).
pub trait TileStore {
    /// The saved bytes of tile `index`, if any.
    fn load(&self, index: u32) -> Option<Vec<u8>>;
    /// Saves tile `index` durably before returning.
    fn save(&self, index: u32, bytes: &[u8]) -> Result<(), String>;
}

/// Tiles as files in a folder named after the scene's digest, so tiles of another scene (or
/// another seed or sample count) are never mixed in.
pub struct DirTileStore {
    dir: PathBuf,
}

impl DirTileStore {
    /// The store for `scene` under `root` (created if missing).
    pub fn open(root: &Path, scene: &Scene) -> Result<Self, RenderError> {
        let json = serde_json::to_vec(scene)
            .map_err(|e| RenderError::Output { path: root.display().to_string(), why: e.to_string() })?;
        let digest = bigfile_storage::merkle::keccak256(&json);
        let dir = root.join(format!("render-{}", hex_prefix(&digest)));
        std::fs::create_dir_all(&dir)
            .map_err(|e| RenderError::Output { path: dir.display().to_string(), why: e.to_string() })?;
        Ok(Self { dir })
    }

    /// The folder the tiles are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, index: u32) -> PathBuf {
        self.dir.join(format!("tile-{index}.rgb"))
    }
}

fn hex_prefix(digest: &[u8; 32]) -> String {
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

impl TileStore for DirTileStore {
    fn load(&self, index: u32) -> Option<Vec<u8>> {
        std::fs::read(self.path(index)).ok()
    }

    fn save(&self, index: u32, bytes: &[u8]) -> Result<(), String> {
        use std::io::Write;
        let tmp = self.dir.join(format!("tile-{index}.tmp"));
        let mut f = std::fs::File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, self.path(index)).map_err(|e| format!("{}: {e}", self.path(index).display()))
    }
}

/// What a resumable render did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resumed {
    /// Tiles taken from the store.
    pub reused: u32,
    /// Tiles rendered in this run.
    pub rendered: u32,
}

impl Renderer {
    /// As [`Renderer::render`], taking finished tiles from `store` and saving each new one there
    /// before going on. A saved tile of the wrong size (a torn or foreign file) is rendered again.
    pub fn render_resumable(
        &self,
        scene: &Scene,
        store: &dyn TileStore,
        cancel: &AtomicBool,
        mut progress: impl FnMut(u32, u32),
    ) -> Result<(Image, Resumed), RenderError> {
        scene.validate("scene")?;
        let total = scene.tile_count();
        let mut tiles = Vec::with_capacity(total as usize);
        let mut counts = Resumed { reused: 0, rendered: 0 };
        let buffers = self.upload(scene);
        for index in 0..total {
            let tile = scene.tile(index).ok_or_else(|| self.fail("tile out of range"))?;
            let size = tile.width as usize * tile.height as usize * 3;
            if let Some(saved) = store.load(index).filter(|b| b.len() == size) {
                tiles.push(saved);
                counts.reused += 1;
                progress(index + 1, total);
                continue;
            }
            if cancel.load(Ordering::Relaxed) {
                return Err(RenderError::Cancelled { done: index, total });
            }
            let bytes = self.draw_tile(scene, &buffers, &tile)?;
            store
                .save(index, &bytes)
                .map_err(|why| RenderError::Output { path: format!("tile {index}"), why })?;
            tiles.push(bytes);
            counts.rendered += 1;
            progress(index + 1, total);
        }
        Ok((assemble(scene, tiles), counts))
    }
}
