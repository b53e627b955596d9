//! Which open jobs the worker may leave unread this poll. Every change to a job emits one of its
//! events, which the market watcher counts per job (`Touches`); a job with nothing for this node
//! to do rests until its count moves or, where the next step is due at a block (an expiry, a
//! draw), until that block. So a node that declined a thousand jobs nobody takes reads none of
//! them each poll, instead of calling `getJob` a thousand times.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bigfile_chain::alloy::primitives::B256;
use bigfile_chain::alloy::rpc::types::Log;
use bigfile_chain::alloy::sol_types::SolEvent;
use bigfile_chain::bindings::ComputeMarket;

use super::market::state;

/// The events that carry a job id as their first topic.
const JOB_EVENTS: [B256; 12] = [
    ComputeMarket::JobPosted::SIGNATURE_HASH,
    ComputeMarket::JobAccepted::SIGNATURE_HASH,
    ComputeMarket::ResultSubmitted::SIGNATURE_HASH,
    ComputeMarket::DrawDelayed::SIGNATURE_HASH,
    ComputeMarket::VerifiersDrawn::SIGNATURE_HASH,
    ComputeMarket::Voted::SIGNATURE_HASH,
    ComputeMarket::JobPaid::SIGNATURE_HASH,
    ComputeMarket::JobFailed::SIGNATURE_HASH,
    ComputeMarket::CheckInconclusive::SIGNATURE_HASH,
    ComputeMarket::JobMissed::SIGNATURE_HASH,
    ComputeMarket::JobReposted::SIGNATURE_HASH,
    ComputeMarket::JobCancelled::SIGNATURE_HASH,
];

/// A job's event count as last seen, with the epoch of rewinds (a rewind stirs every job).
pub type Stamp = (u64, u64);

/// Per job, how many of its events the watcher has handed over; shared by the watcher's
/// handler (writes) and the worker (reads).
#[derive(Clone, Default)]
pub struct Touches(Arc<Mutex<Counts>>);

#[derive(Default)]
struct Counts {
    epoch: u64,
    jobs: HashMap<u64, u64>,
}

impl Touches {
    /// Counts `log` for its job when it is a job event.
    pub fn saw(&self, log: &Log) {
        let topics = log.topics();
        let (Some(sig), Some(id)) = (topics.first(), topics.get(1)) else { return };
        if !JOB_EVENTS.contains(sig) {
            return;
        }
        let job = bigfile_chain::alloy::primitives::U256::from_be_bytes(id.0).saturating_to::<u64>();
        *self.lock().jobs.entry(job).or_default() += 1;
    }

    /// The chain was rewound: every job is read again.
    pub fn stir_all(&self) {
        self.lock().epoch += 1;
    }

    /// Where `job` stands now.
    pub fn stamp(&self, job: u64) -> Stamp {
        let c = self.lock();
        (c.epoch, c.jobs.get(&job).copied().unwrap_or(0))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What the worker knows of a job when it decides whether the job may rest.
#[derive(Clone, Copy, Debug)]
pub struct Seen {
    /// Its state (`market::state`).
    pub state: u8,
    /// This node is its provider.
    pub mine: bool,
    /// This node declined the current attempt.
    pub declined: bool,
    /// `compute.take_jobs`.
    pub take_jobs: bool,
    /// The provider's last block for a result.
    pub deadline: u64,
    /// The block whose hash seeds the draw.
    pub seed_block: u64,
}

/// Whether a job may go unread until one of its events: `Some(None)` until an event only,
/// `Some(Some(b))` until an event or until the head passes block `b`, `None` when it is read
/// every poll (this node has work on it, or the next step is not tied to a block).
/// `expire_after` and `draw_grace` are the blocks the worker waits past a deadline and a seed
/// block before it calls `expire` or `draw` on another provider's job.
pub fn rest_until(s: Seen, expire_after: u64, draw_grace: u64) -> Option<Option<u64>> {
    match s.state {
        state::POSTED if !s.take_jobs || s.declined => Some(None),
        state::ACCEPTED if !s.mine => Some(s.take_jobs.then_some(s.deadline + expire_after)),
        state::COMMITTED if s.mine => Some(Some(s.seed_block)),
        state::COMMITTED => Some(Some(s.seed_block + draw_grace)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use bigfile_chain::alloy::primitives::{Address, Bytes, LogData, U256};

    use super::*;

    fn log(sig: B256, job: u64) -> Log {
        let data = LogData::new_unchecked(vec![sig, B256::from(U256::from(job))], Bytes::new());
        Log {
            inner: bigfile_chain::alloy::primitives::Log { address: Address::ZERO, data },
            ..Default::default()
        }
    }

    #[test]
    fn job_events_stir_their_job_only_and_a_rewind_stirs_all() {
        let t = Touches::default();
        let before = (t.stamp(1), t.stamp(2));
        t.saw(&log(ComputeMarket::JobAccepted::SIGNATURE_HASH, 1));
        assert_ne!(t.stamp(1), before.0);
        assert_eq!(t.stamp(2), before.1);
        // Pool events carry an address, not a job: they stir nothing.
        let s = t.stamp(1);
        t.saw(&log(ComputeMarket::VerifierEnrolled::SIGNATURE_HASH, 1));
        assert_eq!(t.stamp(1), s);
        t.saw(&log(ComputeMarket::CheckInconclusive::SIGNATURE_HASH, 1));
        assert_ne!(t.stamp(1), s);
        let (a, b) = (t.stamp(1), t.stamp(2));
        t.stir_all();
        assert_ne!(t.stamp(1), a);
        assert_ne!(t.stamp(2), b);
    }

    #[test]
    fn jobs_with_nothing_to_do_rest_until_an_event_or_their_next_block() {
        let s = Seen {
            state: state::POSTED,
            mine: false,
            declined: true,
            take_jobs: true,
            deadline: 0,
            seed_block: 0,
        };
        assert_eq!(rest_until(s, 2, 3), Some(None), "declined: until it changes");
        assert_eq!(rest_until(Seen { declined: false, ..s }, 2, 3), None, "to assess: now");
        assert_eq!(rest_until(Seen { declined: false, take_jobs: false, ..s }, 2, 3), Some(None));
        let acc = Seen { state: state::ACCEPTED, deadline: 100, declined: false, ..s };
        assert_eq!(rest_until(acc, 2, 3), Some(Some(102)), "another's: until it may be expired");
        assert_eq!(rest_until(Seen { take_jobs: false, ..acc }, 2, 3), Some(None));
        assert_eq!(rest_until(Seen { mine: true, ..acc }, 2, 3), None, "mine: running");
        let com = Seen { state: state::COMMITTED, seed_block: 50, ..acc };
        assert_eq!(rest_until(Seen { mine: true, ..com }, 2, 3), Some(Some(50)));
        assert_eq!(rest_until(com, 2, 3), Some(Some(53)));
        assert_eq!(rest_until(Seen { state: state::DRAWN, ..com }, 2, 3), None);
    }
}
