//! Storage proofs before compute: while the steward holds the gate (it is building or sending
//! proofs whose period is closing), a running job finishes its current tile and waits before the
//! next. A proof missed is slashed stake; a render a few seconds late is not.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Shared between the steward (holds) and compute jobs (wait between tiles).
#[derive(Clone, Default)]
pub struct ProofGate {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Holders now, and tile boundaries at which a job waited.
    state: Mutex<State>,
    released: Condvar,
}

#[derive(Default)]
struct State {
    holders: usize,
    waits: u64,
}

/// Held while proofs are being made; releases the gate when dropped.
pub struct GateGuard {
    inner: Arc<Inner>,
}

impl ProofGate {
    /// A gate nobody holds.
    pub fn new() -> ProofGate {
        ProofGate::default()
    }

    /// Closes the gate until the guard is dropped (several holders may overlap).
    pub fn hold(&self) -> GateGuard {
        self.lock().holders += 1;
        GateGuard { inner: self.inner.clone() }
    }

    /// Blocks (a compute thread, never an async task) until nobody holds the gate, or `limit`
    /// passed; returns whether it had to wait.
    pub fn pass(&self, limit: Duration) -> bool {
        let mut s = self.lock();
        if s.holders == 0 {
            return false;
        }
        s.waits += 1;
        let _unused = self.inner.released.wait_timeout_while(s, limit, |s| s.holders > 0);
        true
    }

    /// Tile boundaries at which a job had to wait, since start.
    pub fn waits(&self) -> u64 {
        self.lock().waits
    }

    /// Whether someone holds the gate now.
    pub fn is_held(&self) -> bool {
        self.lock().holders > 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the counters inconsistent.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for GateGuard {
    fn drop(&mut self) {
        let mut s = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        s.holders = s.holders.saturating_sub(1);
        if s.holders == 0 {
            self.inner.released.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_waits_while_proofs_hold_the_gate() {
        let gate = ProofGate::new();
        assert!(!gate.pass(Duration::from_secs(1)), "an open gate does not wait");
        let a = gate.hold();
        let b = gate.hold();
        let waiter = {
            let gate = gate.clone();
            std::thread::spawn(move || gate.pass(Duration::from_secs(60)))
        };
        // Until the job is at its tile boundary, waiting.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while gate.waits() == 0 {
            assert!(std::time::Instant::now() < deadline, "the job never reached the gate");
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(a);
        assert!(gate.is_held(), "one holder left");
        drop(b);
        assert!(waiter.join().expect("join"), "the job waited");
        assert_eq!(gate.waits(), 1);
        assert!(!gate.is_held());
    }
}
