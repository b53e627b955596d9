//! `bigfile-agent devnet up|down|status`: a local BigFile chain (anvil) with the contracts, funded
//! dev accounts and `devnet.json`, which `init --devnet` turns into agent configs.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use bigfile_chain::alloy::primitives::U256;
use bigfile_chain::deploy::BIG_UNIT;
use bigfile_chain::devnet::{Devnet, DevnetOptions};
use clap::{Args, Subcommand};

use super::Output;

/// `devnet …`
#[derive(Subcommand, Debug)]
pub enum DevnetCmd {
    /// Start the chain, deploy the contracts, fund the accounts, write DIR/devnet.json.
    Up(UpArgs),
    /// Stop the devnet's chains.
    Down(DirArg),
    /// Show the devnet's chains, addresses and block heights.
    Status(DirArg),
}

/// The devnet directory.
#[derive(Args, Debug)]
pub struct DirArg {
    /// Directory holding devnet.json and the chains' state and logs.
    #[arg(long, default_value = "devnet")]
    pub dir: PathBuf,
}

/// Arguments of `devnet up`.
#[derive(Args, Debug)]
pub struct UpArgs {
    #[command(flatten)]
    dir: DirArg,
    /// Provider accounts to fund (`provider-1` ...).
    #[arg(long, default_value_t = 6)]
    providers: usize,
    /// Client accounts to fund (`client-1` ...).
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Seconds between blocks (0: a block per transaction only).
    #[arg(long, default_value_t = 1)]
    block_time: u64,
    /// Blocks per proving period (2 to 256).
    #[arg(long, default_value_t = 20)]
    period_blocks: u64,
    /// BIG given to every account.
    #[arg(long, default_value_t = 100_000)]
    big: u64,
}

/// Runs a `devnet` command.
pub fn run(cmd: DevnetCmd, out: &Output) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match cmd {
        DevnetCmd::Up(args) => {
            let mut options = DevnetOptions {
                providers: args.providers,
                clients: args.clients,
                block_time: (args.block_time > 0).then_some(args.block_time),
                big_per_account: U256::from(u128::from(args.big) * BIG_UNIT),
                ..DevnetOptions::default()
            };
            options.params.period_blocks = args.period_blocks;
            options.params.unbonding_blocks = 2 * args.period_blocks;
            let devnet = rt.block_on(Devnet::up(&args.dir.dir, &options))?;
            let path = devnet.file_path();
            let file = devnet.detach();
            out.print(&file, || {
                let mut text = format!("devnet up: {}\n", path.display());
                for n in &file.networks {
                    text += &format!("  network {} ({}): chain id {}, {}\n", n.network_id, n.name, n.chain_id, n.rpc_url);
                    if let Some(c) = n.contracts {
                        text += &format!(
                            "    BIG {}\n    ProviderRegistry {}\n    StorageMarket {}\n    ComputeMarket {} (from block {})\n",
                            c.token, c.registry, c.storage_market, c.compute_market, c.deploy_block
                        );
                    }
                }
                let names: Vec<&str> = file.accounts.iter().map(|a| a.name.as_str()).collect();
                text += &format!("  accounts: {}\n", names.join(", "));
                text += &format!(
                    "  next: bigfile-agent init --dir NODE --devnet {} --account provider-1 --password-file F",
                    path.display()
                );
                text
            });
        }
        DevnetCmd::Down(dir) => {
            let stopped = Devnet::down(&dir.dir)?;
            out.print(&serde_json::json!({ "stopped": stopped }), || match stopped.len() {
                0 => format!("devnet in {} was not running", dir.dir.display()),
                _ => format!("devnet in {} stopped (pids {stopped:?})", dir.dir.display()),
            });
        }
        DevnetCmd::Status(dir) => {
            let status = rt.block_on(Devnet::status(&dir.dir))?;
            out.print(&status, || {
                status
                    .iter()
                    .map(|s| {
                        let state = match (s.running, s.block) {
                            (true, Some(b)) => format!("running, block {b}"),
                            (true, None) => "process up, RPC not answering".to_string(),
                            (false, _) => "stopped".to_string(),
                        };
                        format!(
                            "network {} ({}): chain id {}, {} — {state}",
                            s.network.network_id, s.network.name, s.network.chain_id, s.network.rpc_url
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            });
            if status.iter().any(|s| !s.running) {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
