//! `bigfile-agent init`: a new node's config, identity and keystore.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use bigfile_chain::ChainKey;
use clap::Args;

use super::Output;
use crate::config::{ChainInit, Config, InitValues, render_default};
use crate::keys;

/// Arguments of `init`.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// Node directory: config.toml, keys and data go here (default: the --config file's directory
    /// for the config, /var/lib/bigfile-agent for data).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// File holding the keystore password (default: the systemd credential `keystore-password`).
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// Local HTTP API address.
    #[arg(long, default_value = "127.0.0.1:7460")]
    pub api: SocketAddr,
    /// p2p listen address (repeatable; default TCP and QUIC on port 7461 on every interface).
    #[arg(long = "listen", value_name = "MULTIADDR")]
    pub listen: Vec<libp2p::Multiaddr>,
    /// A peer to join through, `MULTIADDR/p2p/PEERID` (repeatable).
    #[arg(long = "bootstrap", value_name = "MULTIADDR")]
    pub bootstrap: Vec<libp2p::Multiaddr>,
    /// Join a local devnet: `[chain]` from this `devnet.json` (written by `devnet up`), and the
    /// chain key of its account `--account` instead of a new one.
    #[arg(long, value_name = "DEVNET_JSON", requires = "account")]
    pub devnet: Option<PathBuf>,
    /// The devnet account whose key this node uses (`provider-1`, `client-1`, ...).
    #[arg(long, requires = "devnet")]
    pub account: Option<String>,
}

#[derive(serde::Serialize)]
struct InitReport {
    config: PathBuf,
    data_dir: PathBuf,
    peer_id: String,
    address: String,
    /// Listen addresses with `/p2p/PEERID`: what other nodes put in `--bootstrap`.
    p2p_addrs: Vec<String>,
}

/// Writes everything, refusing to overwrite an existing node.
pub fn run(config_flag: &Path, args: InitArgs, out: &Output) -> Result<ExitCode> {
    let (config_path, data_dir) = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            let d = std::path::absolute(d)?;
            (d.join("config.toml"), d)
        }
        None => (config_flag.to_owned(), crate::config::NodeConfig::default().data_dir),
    };
    if config_path.exists() {
        bail!("{} already exists; refusing to overwrite a node's config", config_path.display());
    }
    let password_file = args.password_file.as_deref().map(std::path::absolute).transpose()?;
    let password = keys::read_password(password_file.as_deref())
        .context("init needs a keystore password and never prompts when not asked to")?;
    let (chain, devnet_key) = match (&args.devnet, &args.account) {
        (Some(file), Some(account)) => devnet_chain(file, account)?,
        _ => (None, None),
    };
    let listen: Vec<String> = args.listen.iter().map(|a| a.to_string()).collect();
    let bootstrap: Vec<String> = args.bootstrap.iter().map(|a| a.to_string()).collect();
    let text = render_default(&InitValues {
        data_dir: &data_dir,
        api: args.api,
        password_file: password_file.as_deref(),
        listen: &listen,
        bootstrap: &bootstrap,
        chain,
    });
    // Validate before writing anything.
    let cfg = Config::from_toml(&text, &config_path)?;
    std::fs::create_dir_all(&cfg.node.data_dir)?;
    if cfg.node.keystore.exists() || cfg.node.identity.exists() {
        bail!("keys already exist in {}; refusing to overwrite them", cfg.node.data_dir.display());
    }
    let peer_id = keys::create_identity(&cfg.node.identity)?;
    let key = match devnet_key {
        Some(key) => {
            key.save(&cfg.node.keystore, &password)?;
            key
        }
        None => ChainKey::create(&cfg.node.keystore, &password)?,
    };
    if let Some(parent) = config_path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&config_path, text).with_context(|| format!("writing {}", config_path.display()))?;
    let report = InitReport {
        config: config_path.clone(),
        data_dir: cfg.node.data_dir.clone(),
        peer_id: peer_id.to_string(),
        address: key.address(),
        p2p_addrs: cfg
            .network
            .listen_addrs()
            .into_iter()
            .map(|a| a.with(libp2p::multiaddr::Protocol::P2p(peer_id)).to_string())
            .collect(),
    };
    out.print(&report, || {
        format!(
            "node created\n  config:   {}\n  data:     {}\n  peer id:  {}\n  address:  {}\n  p2p:      {}",
            report.config.display(),
            report.data_dir.display(),
            report.peer_id,
            report.address,
            report.p2p_addrs.join("\n            ")
        )
    });
    Ok(ExitCode::SUCCESS)
}

/// `[chain]` values and the account key for a node joining the devnet described by `file`.
fn devnet_chain(file: &Path, account: &str) -> Result<(Option<ChainInit>, Option<ChainKey>)> {
    use bigfile_chain::devnet::{BIGFILE_NETWORK, DevnetFile};
    let devnet = DevnetFile::load(file)?;
    let network = devnet.network(BIGFILE_NETWORK)?;
    let contracts = network
        .contracts
        .with_context(|| format!("{}: network {BIGFILE_NETWORK} has no contracts", file.display()))?;
    let account = devnet.account(account)?;
    let key = ChainKey::from_private_key_hex(&account.private_key.to_string())
        .with_context(|| format!("{}: account {}", file.display(), account.name))?;
    let chain = ChainInit {
        rpc_url: network.rpc_url.clone(),
        chain_id: network.chain_id,
        storage_market: contracts.storage_market.to_checksum(None),
        compute_market: contracts.compute_market.to_checksum(None),
        start_block: contracts.deploy_block,
    };
    Ok((Some(chain), Some(key)))
}
