//! `bigfile-agent bench storage|network`: throughput as ratios against raw baselines measured in
//! the same run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use super::Output;
use crate::config::{ByteSize, Config};

/// `bench` subcommands.
#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// Render throughput (million samples per second) on every wgpu adapter, and the best GPU
    /// against the best CPU adapter (lavapipe) measured in the same run.
    Compute {
        /// Seconds each adapter's timed render should last.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
    },
    /// Erasure coding, durable put, reconstruction and scrub against memcpy, write+fsync and read.
    Storage {
        /// Object size to measure with.
        #[arg(long, default_value = "256 MiB")]
        size: ByteSize,
        /// Scratch directory on the disk to measure (default: inside node.data_dir, or /tmp
        /// when there is no config).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// The shard protocol against raw loopback TCP, and put/get across k + m in-process provider
    /// agents against the local store.
    Network {
        /// Shard moved node to node by the transfer measurements.
        #[arg(long, default_value = "64 MiB")]
        shard_size: ByteSize,
        /// Object put and got across the providers.
        #[arg(long, default_value = "256 MiB")]
        size: ByteSize,
        /// Directory for the providers' scratch stores (default: inside node.data_dir, or /tmp
        /// when there is no config).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// Runs a benchmark.
pub fn run(config: &Path, cmd: BenchCmd, out: &Output) -> Result<ExitCode> {
    match cmd {
        BenchCmd::Compute { seconds } => {
            let quiet = out.json;
            let r = bigfile_compute::bench::run(seconds, |step| {
                if !quiet {
                    eprintln!("  {step}");
                }
            })?;
            out.print(&r, || {
                let mut s = format!("compute benchmark (Cornell box, {0}x{0} pixels)", r.pixels);
                for d in &r.devices {
                    s += &format!(
                        "\n  {:<48} {:>9.2} Msamples/s  ({} spp in {:.2} s)",
                        d.device, d.megasamples_per_sec, d.samples_per_pixel, d.secs
                    );
                }
                match r.render_gpu_vs_cpu {
                    Some(x) => s += &format!("\n  render GPU / CPU: {x:.1}x"),
                    None => s += "\n  no GPU adapter: render GPU / CPU not measured",
                }
                s += &format!(
                    "\ninference (shipped x2 super-resolution, {0}x{0} -> {1}x{1})",
                    r.infer_input_side,
                    2 * r.infer_input_side
                );
                for d in &r.infer_devices {
                    s += &format!(
                        "\n  {:<48} {:>9.2} images/s   ({:.2} output Mpixel/s, {} images in {:.2} s)",
                        d.device, d.images_per_sec, d.output_megapixels_per_sec, d.images, d.secs
                    );
                }
                match r.infer_gpu_vs_cpu {
                    Some(x) => s += &format!("\n  inference GPU / CPU: {x:.1}x"),
                    None => s += "\n  no CUDA device (build with --features cuda): inference GPU / CPU not measured",
                }
                s
            });
            Ok(ExitCode::SUCCESS)
        }
        BenchCmd::Network { shard_size, size, dir } => network(config, shard_size, size, dir, out),
        BenchCmd::Storage { size, dir } => {
            let cfg = if config.exists() { Some(Config::load(config)?) } else { None };
            let storage = cfg.as_ref().map(|c| c.storage.clone()).unwrap_or_default();
            let dir = dir.unwrap_or_else(|| match &cfg {
                Some(c) => c.node.data_dir.join("bench-scratch"),
                None => std::env::temp_dir().join(format!("bigfile-bench-{}", std::process::id())),
            });
            let mut opts = bigfile_storage::bench::BenchOptions::new(dir);
            opts.object_bytes = size.0;
            opts.data = storage.data;
            opts.parity = storage.parity;
            opts.stripe_size = u32::try_from(storage.stripe_size.0)?;
            opts.segment_size = storage.segment_size.0 as u32;
            opts.block_size = storage.block_size.0 as u32;
            let quiet = out.json;
            let r = bigfile_storage::bench::run(&opts, &mut |step| {
                if !quiet {
                    eprintln!("  {step}");
                }
            })?;
            out.print(&r, || {
                format!(
                    "storage benchmark ({} MiB object, k={} m={}, {} cores)\n\
                     \x20 encode_vs_memcpy       {:.3}  (RS encode {:.0} MB/s, memcpy {:.0} MB/s)\n\
                     \x20 put_vs_fsync           {:.3}  (durable put {:.0} MB/s of object, raw write+fsync {:.0} MB/s)\n\
                     \x20 put_vs_fsync_stored    {:.3}  (shard bytes written incl. parity vs the same bytes raw)\n\
                     \x20 reconstruct_vs_intact  {:.3}  (get with m shards lost {:.0} MB/s, intact {:.0} MB/s)\n\
                     \x20 scrub_vs_read          {:.3}  (scrub {:.0} MB/s, raw sequential read {:.0} MB/s)\n\
                     \x20 keccak256 per core     {:.0} MB/s\n\
                     \x20 disk bytes per stored byte {:.3}",
                    r.object_bytes >> 20,
                    opts.data,
                    opts.parity,
                    r.cores,
                    r.encode_vs_memcpy,
                    r.encode_mb_s,
                    r.memcpy_mb_s,
                    r.put_vs_fsync,
                    r.put_mb_s,
                    r.raw_write_mb_s,
                    r.put_vs_fsync_stored,
                    r.reconstruct_vs_intact,
                    r.get_reconstruct_mb_s,
                    r.get_intact_mb_s,
                    r.scrub_vs_read,
                    r.scrub_mb_s,
                    r.raw_read_mb_s,
                    r.keccak_mb_s,
                    r.allocated_per_stored_byte,
                )
            });
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn network(
    config: &Path,
    shard_size: ByteSize,
    size: ByteSize,
    dir: Option<PathBuf>,
    out: &Output,
) -> Result<ExitCode> {
    let loaded = config.exists();
    let cfg = if loaded { Config::load(config)? } else { Config::default() };
    let dir = dir.unwrap_or_else(|| {
        if loaded {
            cfg.node.data_dir.join("bench-scratch")
        } else {
            std::env::temp_dir().join(format!("bigfile-bench-{}", std::process::id()))
        }
    });
    let mut opts = crate::net::bench::NetBenchOptions::new(cfg, dir);
    opts.shard_bytes = shard_size.0;
    opts.object_bytes = size.0;
    let quiet = out.json;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let r = rt.block_on(crate::net::bench::run(&opts, &mut |step| {
        if !quiet {
            eprintln!("  {step}");
        }
    }))?;
    out.print(&r, || {
        format!(
            "network benchmark ({} shard x {}, {} object k={} m={} on {} providers, {} cores; loopback TCP)\n\
             \x20 transfer_vs_tcp        {:.3}  (shard download, bulk port, from memory {:.0} MB/s, raw TCP {:.0} MB/s;\n\
             \x20                              into a new buffer each time {:.0} MB/s)\n\
             \x20 libp2p_stream_vs_tcp   {:.3}  (bytes inside the encrypted libp2p stream {:.0} MB/s)\n\
             \x20 get_shard_store_vs_tcp {:.3}  (shard download from a store {:.0} MB/s)\n\
             \x20 one GetShard message   {:.0} MB/s (request-response; codec alone: encode {:.0} MB/s, decode {:.0} MB/s)\n\
             \x20 put_vs_local           {:.3}  (encode + place {:.0} MB/s, local Store::put {:.0} MB/s)\n\
             \x20 get_vs_local           {:.3}  (fetch + decode {:.0} MB/s, local Store::get {:.0} MB/s)",
            ByteSize(r.shard_bytes),
            r.repetitions,
            ByteSize(r.object_bytes),
            r.data,
            r.parity,
            r.providers,
            r.cores,
            r.transfer_vs_tcp,
            r.transfer_mb_s,
            r.tcp_mb_s,
            r.tcp_fresh_buffer_mb_s,
            r.libp2p_stream_vs_tcp,
            r.libp2p_stream_mb_s,
            r.get_shard_store_vs_tcp,
            r.get_shard_store_mb_s,
            r.request_response_mb_s,
            r.codec_encode_mb_s,
            r.codec_decode_mb_s,
            r.put_vs_local,
            r.put_mb_s,
            r.local_put_mb_s,
            r.get_vs_local,
            r.get_mb_s,
            r.local_get_mb_s,
        )
    });
    Ok(ExitCode::SUCCESS)
}
