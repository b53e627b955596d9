//! A book: records keyed by a u64 id, JSON in one tree of the store's sled database, flushed on
//! every write so a restart sees them. The deal book (`chain/book.rs`) and the job book
//! (`compute/book.rs`) are books; each is a cache of chain facts that the code acting on it
//! re-reads from the chain first.

use std::marker::PhantomData;

use bigfile_storage::{Store, StoreError};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// What a book keeps.
pub trait Entry: Serialize + DeserializeOwned {
    /// The sled tree (under `agent/`).
    const TREE: &'static str;
    /// What one entry is, for errors (`deal`, `job`).
    const WHAT: &'static str;
    /// The entry's id.
    fn id(&self) -> u64;
}

/// The book of `T`s.
pub struct Book<T> {
    tree: sled::Tree,
    entries: PhantomData<fn() -> T>,
}

impl<T> Clone for Book<T> {
    fn clone(&self) -> Self {
        Self { tree: self.tree.clone(), entries: PhantomData }
    }
}

/// Why a book could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum BookError {
    /// The database failed.
    #[error("book: {0}")]
    Store(#[from] StoreError),
    /// sled failed.
    #[error("book: {0}")]
    Sled(#[from] sled::Error),
    /// An entry does not decode (the file was damaged or written by an incompatible version).
    #[error("book entry for {what} {id}: {why}")]
    Corrupt {
        /// What the entry is.
        what: &'static str,
        /// Its id.
        id: u64,
        /// Why.
        why: String,
    },
}

impl<T: Entry> Book<T> {
    /// Opens the book in `store`'s database.
    pub fn open(store: &Store) -> Result<Self, BookError> {
        Ok(Self { tree: store.agent_tree(T::TREE)?, entries: PhantomData })
    }

    fn decode(id: u64, bytes: &[u8]) -> Result<T, BookError> {
        serde_json::from_slice(bytes).map_err(|e| BookError::Corrupt {
            what: T::WHAT,
            id,
            why: e.to_string(),
        })
    }

    /// The entry of `id`.
    pub fn get(&self, id: u64) -> Result<Option<T>, BookError> {
        match self.tree.get(id.to_be_bytes())? {
            None => Ok(None),
            Some(bytes) => Self::decode(id, &bytes).map(Some),
        }
    }

    /// Writes `entry` (replacing any entry of the same id) and flushes.
    pub fn put(&self, entry: &T) -> Result<(), BookError> {
        let bytes = serde_json::to_vec(entry).map_err(|e| BookError::Corrupt {
            what: T::WHAT,
            id: entry.id(),
            why: e.to_string(),
        })?;
        self.tree.insert(entry.id().to_be_bytes(), bytes)?;
        self.tree.flush()?;
        Ok(())
    }

    /// Applies `change` to the entry of `id` if there is one; returns the new entry.
    pub fn update(&self, id: u64, change: impl FnOnce(&mut T)) -> Result<Option<T>, BookError> {
        let Some(mut entry) = self.get(id)? else { return Ok(None) };
        change(&mut entry);
        self.put(&entry)?;
        Ok(Some(entry))
    }

    /// Every entry, in id order.
    pub fn all(&self) -> Result<Vec<T>, BookError> {
        self.tree
            .iter()
            .map(|item| {
                let (key, value) = item?;
                let id = key.as_ref().try_into().map(u64::from_be_bytes).unwrap_or_default();
                Self::decode(id, &value)
            })
            .collect()
    }

    /// Removes the entry of `id`.
    pub fn remove(&self, id: u64) -> Result<(), BookError> {
        self.tree.remove(id.to_be_bytes())?;
        self.tree.flush()?;
        Ok(())
    }
}
