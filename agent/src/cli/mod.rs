//! The operator CLI: one binary, clap subcommands, `--json` on every read command, exit code 1 on
//! any error (2 for a usage error).

mod bench;
mod chain;
mod client;
mod compute;
mod devnet;
mod init;
mod jobs;
mod status;
mod store;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use serde::Serialize;

use crate::config::{self, Config};

/// BigFile provider agent: earn BIG by storing erasure-coded shards and running compute jobs.
#[derive(Parser, Debug)]
#[command(name = "bigfile-agent", version, about, propagate_version = true)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, global = true, env = "BIGFILE_CONFIG", default_value = config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a node: commented config.toml, libp2p identity and encrypted chain keystore.
    Init(init::InitArgs),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Run the agent daemon (what the systemd service starts).
    Run,
    /// Ask the running daemon how it is doing (its /status endpoint).
    Status,
    /// Use the local shard store directly (the daemon must not be running).
    #[command(subcommand)]
    Store(store::StoreCmd),
    /// Store and fetch objects across provider agents (a client of the network).
    #[command(subcommand)]
    Client(client::ClientCmd),
    /// List the running daemon's connected peers and known providers.
    Peers,
    /// Register this node's peer id and address on chain and bond a BIG stake (or add to it).
    Register {
        /// BIG to bond, e.g. 1000 or 1500.5.
        #[arg(long)]
        stake: String,
    },
    /// The storage deals in which this node holds a slot, read from the chain.
    Deals,
    /// Compute jobs this node ran or verified, read from the chain.
    #[command(subcommand)]
    Jobs(jobs::JobsCmd),
    /// BIG rewards earned and claimable; `rewards claim` withdraws them.
    Rewards {
        /// `claim`: withdraw everything claimable.
        #[command(subcommand)]
        cmd: Option<chain::RewardsCmd>,
    },
    /// A local BigFile chain with the contracts and funded accounts, for trying and testing.
    #[command(subcommand)]
    Devnet(devnet::DevnetCmd),
    /// The wgpu adapters jobs can run on (GPUs, and lavapipe on the CPU), best first.
    Devices,
    /// Run compute jobs locally, without network or chain, to try this machine's devices.
    #[command(subcommand)]
    Compute(compute::ComputeCmd),
    /// Measure this machine against raw baselines, in the same run.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
}

/// `config …`
#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Parse and validate the config; every problem is reported with its line and key.
    Check,
}

/// Runs the CLI and turns the outcome into an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            if json {
                println!("{}", serde_json::json!({ "error": format!("{e:#}") }));
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: Cli) -> Result<ExitCode> {
    let out = Output { json: cli.json };
    match cli.command {
        Command::Init(args) => init::run(&cli.config, args, &out),
        Command::Config(ConfigCmd::Check) => {
            let cfg = Config::load(&cli.config)?;
            out.print(
                &serde_json::json!({ "ok": true, "config": cli.config, "data_dir": cfg.node.data_dir }),
                || format!("{}: ok (data in {})", cli.config.display(), cfg.node.data_dir.display()),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Run => {
            let cfg = Config::load(&cli.config)?;
            crate::logging::init(&cfg.log.level);
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(crate::daemon::run(cfg))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status => {
            let cfg = Config::load(&cli.config)?;
            let v = status::fetch(cfg.api.listen)?;
            out.print(&v, || status::summary(&v));
            Ok(ExitCode::SUCCESS)
        }
        Command::Store(cmd) => {
            let cfg = Config::load(&cli.config)?;
            crate::logging::init("warn");
            store::run(&cfg, cmd, &out)
        }
        Command::Client(cmd) => {
            let cfg = Config::load(&cli.config)?;
            crate::logging::init("warn");
            client::run(&cfg, cmd, &out)
        }
        Command::Peers => {
            let cfg = Config::load(&cli.config)?;
            let v = status::fetch_path(cfg.api.listen, "/peers")?;
            out.print(&v, || status::peers_summary(&v));
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(cmd) => bench::run(&cli.config, cmd, &out),
        Command::Devices => compute::devices(&out),
        Command::Compute(cmd) => compute::run(cmd, &out),
        Command::Devnet(cmd) => devnet::run(cmd, &out),
        Command::Register { stake } => {
            let cfg = Config::load(&cli.config)?;
            crate::logging::init("warn");
            chain::register(&cfg, &stake, &out)
        }
        Command::Deals => {
            let cfg = Config::load(&cli.config)?;
            crate::logging::init("warn");
            chain::deals(&cfg, &out)
        }
        Command::Jobs(cmd) => {
            let cfg = Config::load(&cli.config)?;
            crate::logging::init("warn");
            jobs::jobs(&cfg, cmd, &out)
        }
        Command::Rewards { cmd } => {
            let cfg = Config::load(&cli.config)?;
            crate::logging::init("warn");
            chain::rewards(&cfg, cmd, &out)
        }
    }
}

/// Prints results as JSON or text.
pub struct Output {
    /// JSON mode.
    pub json: bool,
}

impl Output {
    /// Prints `value` as JSON, or the text `text()` builds.
    ///
    /// A closed stdout (`| head`, `| grep -q`) is not an error worth a panic: the reader has what it
    /// wanted, so the write error is ignored.
    pub fn print<T: Serialize>(&self, value: &T, text: impl FnOnce() -> String) {
        use std::io::Write;
        let line = if self.json {
            match serde_json::to_string_pretty(value) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: cannot encode JSON: {e}");
                    return;
                }
            }
        } else {
            text()
        };
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    }

    /// A progress bar on stderr when it is a terminal and output is text; hidden otherwise.
    pub fn progress(&self, total: u64, what: &str) -> indicatif::ProgressBar {
        use std::io::IsTerminal;
        if self.json || !std::io::stderr().is_terminal() {
            return indicatif::ProgressBar::hidden();
        }
        let bar = indicatif::ProgressBar::new(total);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what.to_string());
        bar
    }
}
