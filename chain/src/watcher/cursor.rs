//! Where the watcher has got to, and where that is kept between runs.
//!
//! The cursor names the last block whose logs were handled, plus the hashes of the recent blocks
//! handled before it. Those hashes are the watcher's own memory of the chain it followed: after a
//! reorg it compares them with the node's current chain to find the newest block both share,
//! without having to trust the node about what it used to serve.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use alloy::primitives::B256;
use serde::{Deserialize, Serialize};

/// A block by number and hash: one specific block of one specific chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BlockRef {
    /// The block number.
    pub number: u64,
    /// The block's header hash, as `eth_getBlockByNumber` returns it.
    pub hash: B256,
}

/// The watcher's progress: the last block it handled, and the recent handled blocks it still
/// remembers.
///
/// Invariants, checked on construction and on deserialisation: the recorded blocks are non-empty
/// and strictly ascending by number, and the last one is the tip. Within the window (the newest
/// `window` block numbers up to the tip) every block that held a delivered log is recorded, and
/// so is every block the watcher handled while it was within `window` blocks of the confirmed
/// head; older blocks drop out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "CursorRepr")]
pub struct Cursor {
    recent: Vec<BlockRef>,
}

/// The serialised shape of a [`Cursor`], validated into one.
#[derive(Deserialize)]
struct CursorRepr {
    recent: Vec<BlockRef>,
}

impl TryFrom<CursorRepr> for Cursor {
    type Error = CursorError;

    fn try_from(repr: CursorRepr) -> Result<Self, Self::Error> {
        Cursor::from_recent(repr.recent)
    }
}

impl Cursor {
    /// A cursor whose tip, and only recorded block, is `tip`.
    pub fn new(tip: BlockRef) -> Self {
        Self { recent: vec![tip] }
    }

    /// A cursor from recorded blocks, the last of them the tip; refused unless they are non-empty
    /// and strictly ascending by number.
    pub fn from_recent(recent: Vec<BlockRef>) -> Result<Self, CursorError> {
        if recent.is_empty() {
            return Err(CursorError::Corrupt("a cursor records at least its tip".into()));
        }
        if let Some(pair) = recent.windows(2).find(|pair| pair[0].number >= pair[1].number) {
            return Err(CursorError::Corrupt(format!(
                "recorded blocks out of order: {} then {}",
                pair[0].number, pair[1].number
            )));
        }
        Ok(Self { recent })
    }

    /// The last block whose logs were handled.
    pub fn tip(&self) -> BlockRef {
        // The constructors refuse an empty list, so there is always a last element; the fallback
        // only keeps this function total.
        self.recent.last().copied().unwrap_or(BlockRef { number: 0, hash: B256::ZERO })
    }

    /// The recorded recent blocks, oldest first, ending with the tip.
    pub fn recent(&self) -> &[BlockRef] {
        &self.recent
    }

    /// Moves the tip to `tip`, recording `blocks` (those after the old tip and up to `tip`, in any
    /// order) and forgetting blocks `window` or more below the new tip.
    pub(crate) fn advance(&mut self, blocks: impl IntoIterator<Item = BlockRef>, tip: BlockRef, window: u64) {
        let old_tip = self.tip().number;
        self.extend(Some(old_tip), blocks, tip, window);
    }

    /// The first cursor of a watcher: `tip` and the `blocks` before it that fall in the window.
    pub(crate) fn first(blocks: impl IntoIterator<Item = BlockRef>, tip: BlockRef, window: u64) -> Self {
        let mut cursor = Self { recent: Vec::new() };
        cursor.extend(None, blocks, tip, window);
        cursor
    }

    fn extend(
        &mut self,
        after: Option<u64>,
        blocks: impl IntoIterator<Item = BlockRef>,
        tip: BlockRef,
        window: u64,
    ) {
        let is_new = |number: u64| after.is_none_or(|after| number > after);
        let mut added: Vec<BlockRef> =
            blocks.into_iter().filter(|b| is_new(b.number) && b.number < tip.number).collect();
        added.sort_by_key(|b| b.number);
        added.dedup_by_key(|b| b.number);
        self.recent.extend(added);
        if is_new(tip.number) {
            self.recent.push(tip);
        }
        let oldest_kept = tip.number.saturating_sub(window);
        self.recent.retain(|b| b.number > oldest_kept || b.number == tip.number);
    }

    /// The cursor as it was when `ancestor`, one of its recorded blocks, was the tip; `None` when
    /// `ancestor` is not recorded.
    pub(crate) fn rewound_to(&self, ancestor: BlockRef) -> Option<Self> {
        let keep = self.recent.iter().position(|b| *b == ancestor)? + 1;
        Some(Self { recent: self.recent[..keep].to_vec() })
    }
}

/// Why a cursor could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum CursorError {
    /// Reading or writing the cursor file failed.
    #[error("cursor file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The stored cursor does not parse or breaks a cursor invariant.
    #[error("corrupt cursor: {0}")]
    Corrupt(String),
    /// The store behind a [`CursorStore`] implementation failed (e.g. the agent's database).
    #[error("cursor store: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Keeps the watcher's cursor between runs.
///
/// The watcher saves the cursor after every batch its handler accepted and after every rewind, and
/// loads it once at start. `save` must be durable when it returns: whatever it saved is what a
/// restarted watcher resumes from. The methods block; the watcher calls them on tokio's blocking
/// pool. The chain crate keeps no storage of its own: the agent implements this on its database.
pub trait CursorStore: Send + Sync + 'static {
    /// The saved cursor; `None` when none was ever saved (or it was cleared).
    fn load(&self) -> Result<Option<Cursor>, CursorError>;
    /// Replaces the saved cursor.
    fn save(&self, cursor: &Cursor) -> Result<(), CursorError>;
    /// Forgets the saved cursor: the next run starts from the configured start block.
    fn clear(&self) -> Result<(), CursorError>;
}

impl<T: CursorStore> CursorStore for Arc<T> {
    fn load(&self) -> Result<Option<Cursor>, CursorError> {
        (**self).load()
    }

    fn save(&self, cursor: &Cursor) -> Result<(), CursorError> {
        (**self).save(cursor)
    }

    fn clear(&self) -> Result<(), CursorError> {
        (**self).clear()
    }
}

/// A cursor kept in memory only: for tests, and for watchers that may start over after a restart.
#[derive(Debug, Default)]
pub struct MemoryCursorStore {
    cursor: Mutex<Option<Cursor>>,
}

impl MemoryCursorStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// The cursor last saved, if any.
    pub fn get(&self) -> Option<Cursor> {
        self.cursor.lock().map(|c| c.clone()).unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    fn set(&self, cursor: Option<Cursor>) {
        match self.cursor.lock() {
            Ok(mut guard) => *guard = cursor,
            Err(poisoned) => *poisoned.into_inner() = cursor,
        }
    }
}

impl CursorStore for MemoryCursorStore {
    fn load(&self) -> Result<Option<Cursor>, CursorError> {
        Ok(self.get())
    }

    fn save(&self, cursor: &Cursor) -> Result<(), CursorError> {
        self.set(Some(cursor.clone()));
        Ok(())
    }

    fn clear(&self) -> Result<(), CursorError> {
        self.set(None);
        Ok(())
    }
}

/// A cursor kept in one JSON file, for the CLI and tests.
///
/// A save writes a temporary file beside the target, syncs it, renames it over the target and
/// syncs the directory, so a crash leaves either the old cursor or the new one, never a torn file.
/// One watcher per file: concurrent writers are not coordinated.
#[derive(Debug, Clone)]
pub struct JsonFileCursorStore {
    path: PathBuf,
}

impl JsonFileCursorStore {
    /// A store at `path`; nothing is read or created until the first load or save.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, path: &Path) -> impl FnOnce(std::io::Error) -> CursorError {
        let path = path.to_path_buf();
        move |source| CursorError::Io { path, source }
    }

    fn temp_path(&self) -> PathBuf {
        let mut name = self.path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        name.push(".tmp");
        self.path.with_file_name(name)
    }

    fn sync_dir(&self) -> Result<(), CursorError> {
        // Makes the rename itself durable; the directory may be "" for a bare file name.
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(self.io(dir))
    }
}

impl CursorStore for JsonFileCursorStore {
    fn load(&self) -> Result<Option<Cursor>, CursorError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(&self.path)(e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| CursorError::Corrupt(format!("{}: {e}", self.path.display())))
    }

    fn save(&self, cursor: &Cursor) -> Result<(), CursorError> {
        let json = serde_json::to_vec(cursor).map_err(|e| CursorError::Corrupt(e.to_string()))?;
        let temp = self.temp_path();
        let mut file = std::fs::File::create(&temp).map_err(self.io(&temp))?;
        file.write_all(&json).and_then(|()| file.sync_all()).map_err(self.io(&temp))?;
        drop(file);
        std::fs::rename(&temp, &self.path).map_err(self.io(&self.path))?;
        self.sync_dir()
    }

    fn clear(&self) -> Result<(), CursorError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => self.sync_dir(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.io(&self.path)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(number: u64) -> BlockRef {
        BlockRef { number, hash: B256::with_last_byte(number as u8) }
    }

    #[test]
    fn advance_records_new_blocks_and_forgets_old_ones() {
        let mut cursor = Cursor::new(block(10));
        cursor.advance([block(13), block(12), block(9), block(15)], block(14), 4);
        // 9 is not after the old tip and 15 is past the new one: neither is recorded.
        assert_eq!(cursor.recent(), &[block(12), block(13), block(14)]);
        cursor.advance([], block(17), 4);
        assert_eq!(cursor.recent(), &[block(14), block(17)]);
        assert_eq!(cursor.tip(), block(17));
        cursor.advance([], block(40), 4);
        assert_eq!(cursor.recent(), &[block(40)]);
        let first = Cursor::first([block(3), block(9), block(8)], block(10), 3);
        assert_eq!(first.recent(), &[block(8), block(9), block(10)]);
    }

    #[test]
    fn rewinding_keeps_the_ancestor_and_what_came_before() {
        let cursor = Cursor::from_recent(vec![block(3), block(5), block(6)]).expect("valid");
        assert_eq!(cursor.rewound_to(block(5)).expect("recorded").recent(), &[block(3), block(5)]);
        assert_eq!(cursor.rewound_to(block(4)), None);
        assert_eq!(cursor.rewound_to(BlockRef { number: 5, hash: B256::ZERO }), None);
    }

    #[test]
    fn invalid_cursors_are_refused() {
        assert!(Cursor::from_recent(Vec::new()).is_err());
        assert!(Cursor::from_recent(vec![block(5), block(5)]).is_err());
        assert!(serde_json::from_str::<Cursor>(r#"{"recent":[]}"#).is_err());
        let json = serde_json::to_string(&Cursor::from_recent(vec![block(1), block(2)]).expect("valid"))
            .expect("serialise");
        let back: Cursor = serde_json::from_str(&json).expect("parse");
        assert_eq!(back.recent(), &[block(1), block(2)]);
    }

    #[test]
    fn the_json_file_store_saves_loads_and_clears() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = JsonFileCursorStore::new(dir.path().join("cursor.json"));
        assert_eq!(store.load().expect("load"), None);
        let cursor = Cursor::from_recent(vec![block(7), block(8)]).expect("valid");
        store.save(&cursor).expect("save");
        assert_eq!(store.load().expect("load"), Some(cursor.clone()));
        assert!(!store.temp_path().exists(), "the temporary file is renamed away");
        store.clear().expect("clear");
        assert_eq!(store.load().expect("load"), None);
        store.clear().expect("clearing twice is fine");
        std::fs::write(store.path(), "{not json").expect("write");
        assert!(matches!(store.load(), Err(CursorError::Corrupt(_))));
    }
}
