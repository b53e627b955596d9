//! `bigfile-agent store …`: the local shard store, opened directly.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use bigfile_storage::{ObjectId, PutParams, Store};
use clap::Subcommand;

use super::Output;
use crate::config::{ByteSize, Config};

/// Erasure-coding flags shared by `store put` and `client put`; unset ones come from `[storage]`.
#[derive(clap::Args, Debug, Clone)]
pub struct CodingArgs {
    /// Data shards per stripe (k); default from storage.data.
    #[arg(long)]
    pub data: Option<u16>,
    /// Parity shards per stripe (m); default from storage.parity.
    #[arg(long)]
    pub parity: Option<u16>,
    /// Object bytes per stripe, e.g. `1 MiB`; default from storage.stripe_size.
    #[arg(long)]
    pub stripe_size: Option<ByteSize>,
}

impl CodingArgs {
    /// `(k, m, stripe bytes)` with the config's defaults filled in.
    pub fn resolve(&self, cfg: &Config) -> Result<(u16, u16, u32)> {
        Ok((
            self.data.unwrap_or(cfg.storage.data),
            self.parity.unwrap_or(cfg.storage.parity),
            u32::try_from(self.stripe_size.unwrap_or(cfg.storage.stripe_size).0)
                .context("--stripe-size: at most 256 MiB")?,
        ))
    }
}

/// `store` subcommands.
#[derive(Subcommand, Debug)]
pub enum StoreCmd {
    /// Store a file; prints its object id once it is durable.
    Put {
        /// The file.
        file: PathBuf,
        /// Erasure coding.
        #[command(flatten)]
        coding: CodingArgs,
    },
    /// Read an object back, rebuilding and repairing damaged shards.
    Get {
        /// Object id (0x…).
        id: String,
        /// Output file (`-` for stdout); written via a temporary file, so never half-written.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// List stored objects.
    Ls,
    /// Remove an object and free its space.
    Rm {
        /// Object id.
        id: String,
    },
    /// Verify every block (of one object, or all) and recount the accounting; exit 1 if wrong.
    Verify {
        /// Only this object.
        id: Option<String>,
    },
    /// Run one full scrub pass now, repairing what parity allows.
    Scrub {
        /// Bytes per second at most (default: unlimited).
        #[arg(long)]
        rate: Option<ByteSize>,
    },
    /// Print a storage proof: segment I of shard N with its Merkle path to the shard root.
    Prove {
        /// Object id.
        id: String,
        /// Shard index.
        #[arg(long)]
        shard: u16,
        /// Segment index within the shard.
        #[arg(long)]
        segment: u64,
    },
    /// Destroy one shard of an object (test builds only).
    #[cfg(feature = "fault-injection")]
    Damage {
        /// Object id.
        id: String,
        /// Shard index.
        #[arg(long)]
        shard: u16,
        /// Delete the shard's blocks instead of flipping a byte in each.
        #[arg(long)]
        delete: bool,
    },
}

/// Folds per-block lines into runs: `shard 0 blocks 0-191: corrupt`, so a lost shard is one line.
fn block_ranges(items: impl Iterator<Item = (String, u32, String)>) -> Vec<String> {
    let mut runs: Vec<(String, u32, u32, String)> = Vec::new();
    for (what, block, why) in items {
        match runs.last_mut() {
            Some(r) if r.0 == what && r.3 == why && r.2 + 1 == block => r.2 = block,
            _ => runs.push((what, block, block, why)),
        }
    }
    runs.into_iter()
        .map(|(what, a, b, why)| {
            if a == b { format!("{what} block {a}: {why}") } else { format!("{what} blocks {a}-{b}: {why}") }
        })
        .collect()
}

fn parse_id(s: &str) -> Result<ObjectId> {
    ObjectId::from_hex(s).with_context(|| format!("`{s}` is not an object id"))
}

/// Runs a store subcommand.
pub fn run(cfg: &Config, cmd: StoreCmd, out: &Output) -> Result<ExitCode> {
    let store = crate::daemon::open_store(cfg)?;
    let result = run_with(&store, cfg, cmd, out);
    if result.is_err() {
        // After an I/O failure such as a full disk, sled 0.34 can block forever flushing in its
        // destructor. Everything acknowledged is already durable and the next open rolls back
        // the failed operation, so exit without the final flush.
        std::mem::forget(store);
    }
    result
}

fn run_with(store: &Store, cfg: &Config, cmd: StoreCmd, out: &Output) -> Result<ExitCode> {
    match cmd {
        StoreCmd::Put { file, coding } => {
            let f = File::open(&file).with_context(|| format!("opening {}", file.display()))?;
            let size = f.metadata().with_context(|| format!("reading {}", file.display()))?.len();
            let (data, parity, stripe_size) = coding.resolve(cfg)?;
            let params =
                PutParams { data, parity, stripe_size, segment_size: cfg.storage.segment_size.0 as u32 };
            let bar = out.progress(size, "storing");
            let r = store
                .put(&mut BufReader::with_capacity(1 << 20, f), size, params, &mut |n| bar.set_position(n));
            bar.finish_and_clear();
            let r = r.with_context(|| format!("storing {}", file.display()))?;
            out.print(&r, || {
                let note = if r.deduplicated { " (already stored)" } else { "" };
                format!("{}{note}", r.id)
            });
        }
        StoreCmd::Get { id, output } => {
            let id = parse_id(&id)?;
            let size = store.manifest(&id)?.geometry.size;
            let bar = out.progress(size, "reading");
            let report = if output.as_os_str() == "-" {
                let stdout = std::io::stdout();
                store.get(&id, &mut BufWriter::new(stdout.lock()), &mut |n| bar.set_position(n))?
            } else {
                let dir = output
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or(std::path::Path::new("."));
                let mut tmp = tempfile::NamedTempFile::new_in(dir)
                    .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
                let r =
                    store.get(&id, &mut BufWriter::new(tmp.as_file_mut()), &mut |n| bar.set_position(n))?;
                tmp.as_file().sync_all()?;
                tmp.persist(&output).with_context(|| format!("writing {}", output.display()))?;
                r
            };
            bar.finish_and_clear();
            let text = || {
                let mut s = format!("{}: {} bytes", report.id, report.size);
                if report.stripes_reconstructed > 0 {
                    s += &format!(", {} stripes rebuilt from parity", report.stripes_reconstructed);
                }
                let damaged = report.damaged.iter().map(|d| {
                    let fate = if d.repaired { "repaired" } else { "NOT repaired" };
                    (format!("shard {}", d.shard), d.block, format!("{} -> {fate}", d.problem))
                });
                for line in block_ranges(damaged) {
                    s += &format!("\n  {line}");
                }
                s
            };
            if output.as_os_str() == "-" {
                // The object went to stdout; the report must not mix with it.
                eprintln!("{}", text());
            } else {
                out.print(&report, text);
            }
        }
        StoreCmd::Ls => {
            let list = store.list()?;
            out.print(&list, || {
                let mut s = format!("{:<66} {:>14} {:>5} {:>14}", "OBJECT", "SIZE", "K+M", "STORED");
                for o in &list {
                    s += &format!(
                        "\n{:<66} {:>14} {:>5} {:>14}",
                        o.id,
                        o.size,
                        format!("{}+{}", o.data, o.parity),
                        o.stored_bytes
                    );
                }
                s
            });
        }
        StoreCmd::Rm { id } => {
            let id = parse_id(&id)?;
            let freed = store.remove(&id)?;
            out.print(&serde_json::json!({ "id": id.to_hex(), "freed_bytes": freed }), || {
                format!("{id} removed, {freed} bytes freed")
            });
        }
        StoreCmd::Verify { id } => {
            let id = id.as_deref().map(parse_id).transpose()?;
            let r = store.verify(id.as_ref())?;
            out.print(&r, || {
                let mut s = format!(
                    "{}: {} objects, {} blocks, {} bytes checked; used {} recorded / {} counted; {} orphan blocks",
                    if r.ok { "ok" } else { "PROBLEMS" },
                    r.objects,
                    r.blocks,
                    r.bytes,
                    r.recorded_used_bytes,
                    r.counted_used_bytes,
                    r.orphan_blocks
                );
                let bad = r.bad_blocks.iter().map(|b| (format!("{} shard {}", b.object, b.shard), b.block, b.problem.clone()));
                for line in block_ranges(bad) {
                    s += &format!("\n  {line}");
                }
                for o in &r.mismatched_objects {
                    s += &format!("\n  {o}: stored size differs from its record");
                }
                s
            });
            if !r.ok {
                return Ok(ExitCode::FAILURE);
            }
        }
        StoreCmd::Scrub { rate } => {
            let usage = store.usage()?;
            let bar = out.progress(usage.used_bytes, "scrubbing");
            let s = store.scrub_pass(rate.map(|r| r.0), &|| false, &mut |s| bar.set_position(s.bytes))?;
            bar.finish_and_clear();
            out.print(&s, || {
                format!(
                    "scrubbed {} blocks ({} bytes): {} damaged, {} repaired, {} unrepairable",
                    s.blocks, s.bytes, s.damaged, s.repaired, s.unrepairable
                )
            });
            if s.unrepairable > 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
        StoreCmd::Prove { id, shard, segment } => {
            let id = parse_id(&id)?;
            let manifest = store.manifest(&id)?;
            let p = store.prove_segment(&id, shard, segment)?;
            let g = manifest.geometry;
            let root = manifest.shard_roots.get(usize::from(shard)).copied().unwrap_or_default();
            let verified = p.verify(&root, g.shard_len(), g.segment_size);
            let v = serde_json::json!({
                "id": id.to_hex(),
                "shard": shard,
                "shard_len": g.shard_len(),
                "segment_size": g.segment_size,
                "index": p.index,
                "root": format!("0x{}", hex::encode(root)),
                "segment": format!("0x{}", hex::encode(&p.segment)),
                "siblings": p.siblings.iter().map(|h| format!("0x{}", hex::encode(h))).collect::<Vec<_>>(),
                "verified": verified,
            });
            out.print(&v, || {
                format!(
                    "segment {} of shard {shard} ({} bytes) with {} siblings: {}",
                    p.index,
                    p.segment.len(),
                    p.siblings.len(),
                    if verified { "verifies against the shard root" } else { "DOES NOT VERIFY" }
                )
            });
            if !verified {
                return Ok(ExitCode::FAILURE);
            }
        }
        #[cfg(feature = "fault-injection")]
        StoreCmd::Damage { id, shard, delete } => {
            let id = parse_id(&id)?;
            let n = store.damage_shard(&id, shard, !delete)?;
            out.print(
                &serde_json::json!({ "id": id.to_hex(), "shard": shard, "blocks": n, "deleted": delete }),
                || {
                    format!(
                        "{} shard {shard}: {n} blocks {}",
                        id,
                        if delete { "deleted" } else { "corrupted" }
                    )
                },
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
