//! Renders that survive a restart: each finished tile is saved before the next starts, and a
//! render picks up from the saved tiles, so a killed or cancelled job loses at most the tile it
//! was drawing.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Image, Renderer, assemble_grid};
use crate::error::RenderError;
use crate::scene::{Scene, Tile, TileGrid};

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

/// Why a tile loop stopped before its last tile; each job kind's error takes it in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// Cancelled at a tile boundary.
    Cancelled {
        /// Tiles finished.
        done: u32,
        /// Tiles in the output.
        total: u32,
    },
    /// A finished tile could not be saved.
    Unsaved {
        /// The tile.
        index: u32,
        /// Why.
        why: String,
    },
}

impl From<Stopped> for RenderError {
    fn from(s: Stopped) -> Self {
        match s {
            Stopped::Cancelled { done, total } => RenderError::Cancelled { done, total },
            Stopped::Unsaved { index, why } => RenderError::Output { path: format!("tile {index}"), why },
        }
    }
}

impl From<Stopped> for crate::error::InferError {
    fn from(s: Stopped) -> Self {
        use crate::error::InferError;
        match s {
            Stopped::Cancelled { done, total } => InferError::Cancelled { done, total },
            Stopped::Unsaved { index, why } => InferError::Output { path: format!("tile {index}"), why },
        }
    }
}

/// The tile loop every job kind runs: for each tile of `grid` in order, take it from `store`
/// (when saved with the right size; a torn or foreign file is computed again) or check `cancel`,
/// `compute` it and save it before going on; `progress(done, total)` after each. Returns the
/// assembled image and what was reused.
pub fn run_tiles<E: From<Stopped>>(
    grid: &TileGrid,
    store: &dyn TileStore,
    cancel: &AtomicBool,
    mut progress: impl FnMut(u32, u32),
    mut compute: impl FnMut(&Tile) -> Result<Vec<u8>, E>,
) -> Result<(Image, Resumed), E> {
    let total = grid.count();
    let mut tiles = Vec::with_capacity(total as usize);
    let mut counts = Resumed { reused: 0, rendered: 0 };
    for index in 0..total {
        let Some(tile) = grid.tile(index) else { break };
        let size = tile.width as usize * tile.height as usize * 3;
        if let Some(saved) = store.load(index).filter(|b| b.len() == size) {
            tiles.push(saved);
            counts.reused += 1;
        } else {
            if cancel.load(Ordering::Relaxed) {
                return Err(Stopped::Cancelled { done: index, total }.into());
            }
            let bytes = compute(&tile)?;
            store.save(index, &bytes).map_err(|why| Stopped::Unsaved { index, why })?;
            tiles.push(bytes);
            counts.rendered += 1;
        }
        progress(index + 1, total);
    }
    Ok((assemble_grid(grid, tiles), counts))
}

impl Renderer {
    /// As [`Renderer::render`], taking finished tiles from `store` and saving each new one there
    /// before going on ([`run_tiles`]).
    pub fn render_resumable(
        &self,
        scene: &Scene,
        store: &dyn TileStore,
        cancel: &AtomicBool,
        progress: impl FnMut(u32, u32),
    ) -> Result<(Image, Resumed), RenderError> {
        scene.validate("scene")?;
        let buffers = self.upload(scene);
        run_tiles(&scene.grid(), store, cancel, progress, |tile| self.draw_tile(scene, &buffers, tile))
    }
}
