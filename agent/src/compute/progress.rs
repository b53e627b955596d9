//! Where the running compute jobs are, tile by tile, for `/status` and `status`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// One running job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Running {
    /// The job id.
    pub job_id: u64,
    /// Its attempt.
    pub attempt: u32,
    /// Tiles finished (kept from before a restart included).
    pub done: u32,
    /// Tiles in its output.
    pub total: u32,
}

/// The running jobs, shared by the job runner and the API.
#[derive(Debug, Clone, Default)]
pub struct JobProgress(Arc<Mutex<BTreeMap<u64, Running>>>);

impl JobProgress {
    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<u64, Running>) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// Job `job_id` is at `done` of `total` tiles.
    pub fn set(&self, job_id: u64, attempt: u32, done: u32, total: u32) {
        self.with(|m| m.insert(job_id, Running { job_id, attempt, done, total }));
    }

    /// Job `job_id` stopped running (committed, failed or cancelled).
    pub fn finish(&self, job_id: u64) {
        self.with(|m| m.remove(&job_id));
    }

    /// The running jobs, by id.
    pub fn snapshot(&self) -> Vec<Running> {
        self.with(|m| m.values().copied().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_jobs_are_listed_until_they_finish() {
        let p = JobProgress::default();
        let seen = p.clone();
        p.set(2, 0, 1, 16);
        p.set(1, 1, 0, 4);
        p.set(2, 0, 5, 16);
        assert_eq!(
            seen.snapshot(),
            vec![
                Running { job_id: 1, attempt: 1, done: 0, total: 4 },
                Running { job_id: 2, attempt: 0, done: 5, total: 16 }
            ]
        );
        p.finish(1);
        assert_eq!(seen.snapshot().len(), 1);
    }
}
