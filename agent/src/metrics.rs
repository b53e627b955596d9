//! Prometheus metrics, encoded by `prometheus-client` from the live state at each scrape.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bigfile_storage::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// Reads the store's accounting and scrub counters when scraped, so values are never stale.
struct StoreCollector {
    store: Arc<Store>,
}

impl std::fmt::Debug for StoreCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreCollector({})", self.store.path().display())
    }
}

fn gauge(enc: &mut DescriptorEncoder, name: &str, help: &str, v: f64) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(v);
    let m = enc.encode_descriptor(name, help, None, g.metric_type())?;
    g.encode(m)
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(v);
    let m = enc.encode_descriptor(name, help, None, c.metric_type())?;
    c.encode(m)
}

impl Collector for StoreCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Ok(u) = self.store.usage() {
            gauge(
                &mut enc,
                "bigfile_store_used_bytes",
                "Shard bytes held by stored objects",
                u.used_bytes as f64,
            )?;
            gauge(&mut enc, "bigfile_store_capacity_bytes", "Configured capacity", u.capacity_bytes as f64)?;
            gauge(&mut enc, "bigfile_store_free_bytes", "Capacity not yet used", u.free_bytes as f64)?;
            gauge(&mut enc, "bigfile_store_objects", "Objects stored", u.objects as f64)?;
            let alloc = self.store.disk_allocated_bytes();
            gauge(
                &mut enc,
                "bigfile_store_disk_allocated_bytes",
                "Bytes the database occupies on disk (as du counts)",
                alloc as f64,
            )?;
            if u.used_bytes > 0 {
                gauge(
                    &mut enc,
                    "bigfile_store_disk_bytes_per_stored_byte",
                    "Disk bytes allocated per shard byte stored",
                    alloc as f64 / u.used_bytes as f64,
                )?;
            }
        }
        let s = self.store.scrub_stats().snapshot();

        counter(&mut enc, "bigfile_scrub_blocks_verified", "Blocks re-verified by scrub", s.blocks_verified)?;
        counter(&mut enc, "bigfile_scrub_bytes_verified", "Bytes re-verified by scrub", s.bytes_verified)?;
        counter(&mut enc, "bigfile_scrub_damaged_blocks", "Damaged blocks found by scrub", s.damaged_found)?;
        counter(&mut enc, "bigfile_scrub_repaired_blocks", "Damaged blocks rebuilt from parity", s.repaired)?;
        counter(
            &mut enc,
            "bigfile_scrub_unrepairable_blocks",
            "Damaged blocks beyond repair",
            s.unrepairable,
        )?;
        counter(&mut enc, "bigfile_scrub_passes", "Complete scrub passes", s.passes_completed)?;
        Ok(())
    }
}

/// What the chain side did since start, counted by the steward.
#[derive(Debug, Default)]
pub struct ChainCounters {
    /// Proofs sent in mined transactions.
    pub proofs_submitted: AtomicU64,
    /// Proofs the market accepted (each pays one slot-period).
    pub proofs_accepted: AtomicU64,
    /// Proofs refused (in a batch, or a reverted single proof).
    pub proofs_rejected: AtomicU64,
    /// Accepted proofs a reorg took off the chain again (each is proven anew).
    pub proofs_reorged: AtomicU64,
    /// Gas used by proof transactions.
    pub proof_gas: AtomicU64,
    /// Slots taken.
    pub slots_taken: AtomicU64,
    /// Fellow holders reported for a missed period.
    pub misses_reported: AtomicU64,
    /// Steward passes that held the proof gate (compute jobs wait meanwhile).
    pub proof_gate_holds: AtomicU64,
    /// Compute jobs accepted as their provider.
    pub jobs_accepted: AtomicU64,
    /// Tiles computed for accepted jobs (tiles kept across a restart are not counted again).
    pub job_tiles: AtomicU64,
    /// Results committed on chain.
    pub jobs_committed: AtomicU64,
    /// Accepted jobs that ended without a result (device error, wall time, inputs unavailable).
    pub jobs_failed: AtomicU64,
    /// Votes cast as a drawn verifier, matching.
    pub votes_match: AtomicU64,
    /// Votes cast as a drawn verifier, mismatching.
    pub votes_mismatch: AtomicU64,
}

impl ChainCounters {
    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct ChainCollector(Arc<ChainCounters>);

impl Collector for ChainCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let c = &self.0;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut enc,
            "bigfile_chain_proofs_submitted",
            "Storage proofs sent in mined transactions",
            get(&c.proofs_submitted),
        )?;
        counter(
            &mut enc,
            "bigfile_chain_proofs_accepted",
            "Storage proofs accepted (paid)",
            get(&c.proofs_accepted),
        )?;
        counter(
            &mut enc,
            "bigfile_chain_proofs_rejected",
            "Storage proofs refused by the market",
            get(&c.proofs_rejected),
        )?;
        counter(
            &mut enc,
            "bigfile_chain_proofs_reorged",
            "Accepted storage proofs a reorg removed (proven again)",
            get(&c.proofs_reorged),
        )?;
        counter(&mut enc, "bigfile_chain_proof_gas", "Gas used by proof transactions", get(&c.proof_gas))?;
        counter(&mut enc, "bigfile_chain_slots_taken", "Deal slots taken", get(&c.slots_taken))?;
        counter(
            &mut enc,
            "bigfile_chain_misses_reported",
            "Fellow holders reported for a missed period",
            get(&c.misses_reported),
        )?;
        counter(
            &mut enc,
            "bigfile_chain_proof_gate_holds",
            "Steward passes that held the proof gate (compute jobs wait at tile boundaries)",
            get(&c.proof_gate_holds),
        )?;
        for (name, help, value) in [
            ("bigfile_compute_jobs_accepted", "Compute jobs accepted as provider", &c.jobs_accepted),
            ("bigfile_compute_job_tiles", "Tiles computed for accepted compute jobs", &c.job_tiles),
            ("bigfile_compute_jobs_committed", "Compute results committed on chain", &c.jobs_committed),
            (
                "bigfile_compute_jobs_failed",
                "Accepted compute jobs that ended without a result",
                &c.jobs_failed,
            ),
            ("bigfile_compute_votes_match", "Votes cast as a drawn verifier: match", &c.votes_match),
            ("bigfile_compute_votes_mismatch", "Votes cast as a drawn verifier: mismatch", &c.votes_mismatch),
        ] {
            counter(&mut enc, name, help, get(value))?;
        }
        Ok(())
    }
}

/// Builds the registry the `/metrics` endpoint encodes.
pub fn registry(store: Arc<Store>, chain: Option<Arc<ChainCounters>>) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(StoreCollector { store }));
    if let Some(c) = chain {
        r.register_collector(Box::new(ChainCollector(c)));
    }
    r
}

/// Encodes the registry in the Prometheus text format. Reads the store: call off the async threads.
pub fn encode(r: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, r)?;
    Ok(out)
}
