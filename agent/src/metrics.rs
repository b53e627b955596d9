//! Prometheus metrics, encoded by `prometheus-client` from the live state at each scrape.

use std::sync::Arc;

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

/// Builds the registry the `/metrics` endpoint encodes.
pub fn registry(store: Arc<Store>) -> Registry {
    let mut r = Registry::default();
    r.register_collector(Box::new(StoreCollector { store }));
    r
}

/// Encodes the registry in the Prometheus text format. Reads the store: call off the async threads.
pub fn encode(r: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, r)?;
    Ok(out)
}
