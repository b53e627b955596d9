//! Finished tiles of running jobs, kept in sled so a job picks up after a restart from its last
//! tile. Keys: the job's 32-byte key (market, job id, attempt) then the tile index; values: the
//! tile's bytes. A job's tiles are dropped once its result is committed.

use bigfile_compute::render::TileStore;

/// The tiles of one job.
pub struct SledTiles {
    tree: sled::Tree,
    job: [u8; 32],
}

impl SledTiles {
    /// The tiles of `job` in `tree`.
    pub fn new(tree: sled::Tree, job: [u8; 32]) -> SledTiles {
        SledTiles { tree, job }
    }

    fn key(&self, index: u32) -> [u8; 36] {
        let mut k = [0u8; 36];
        k[..32].copy_from_slice(&self.job);
        k[32..].copy_from_slice(&index.to_be_bytes());
        k
    }

    /// Tiles kept for this job.
    pub fn count(&self) -> usize {
        self.tree.scan_prefix(self.job).count()
    }

    /// Forgets this job's tiles.
    pub fn clear(&self) -> Result<(), sled::Error> {
        for entry in self.tree.scan_prefix(self.job) {
            let (k, _) = entry?;
            self.tree.remove(k)?;
        }
        self.tree.flush()?;
        Ok(())
    }
}

impl TileStore for SledTiles {
    fn load(&self, index: u32) -> Option<Vec<u8>> {
        self.tree.get(self.key(index)).ok().flatten().map(|v| v.to_vec())
    }

    fn save(&self, index: u32, bytes: &[u8]) -> Result<(), String> {
        self.tree.insert(self.key(index), bytes).map_err(|e| e.to_string())?;
        self.tree.flush().map_err(|e| e.to_string())?;
        Ok(())
    }
}
