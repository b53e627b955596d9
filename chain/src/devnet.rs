//! The local devnet: anvil chains with the BigFile contracts deployed from Rust, funded test
//! accounts, and `devnet.json`, which `bigfile-agent init --devnet` turns into agent configs.
//!
//! Networks follow DESIGN.md §7: 0 plays Ethereum L1, 1 a dApp chain, 2 is BigFile, 3 a payment
//! chain. This issue runs network 2 only; `devnet.json` lists networks by id so the others join
//! later without a format change.

use std::path::{Path, PathBuf};

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use serde::{Deserialize, Serialize};

use crate::anvil::{self, Anvil, AnvilError, AnvilOptions};
use crate::bindings::BIG;
use crate::deploy::{self, BIG_UNIT, DeployError, DeployParams, Deployment};

/// The BigFile network's id in the AggLayer numbering the devnet uses.
pub const BIGFILE_NETWORK: u32 = 2;
/// The file `devnet up` writes into its directory.
pub const DEVNET_FILE: &str = "devnet.json";
/// Version of the `devnet.json` format.
pub const DEVNET_VERSION: u32 = 1;

/// The chain id the devnet gives network `network_id` (distinct from every public chain's).
pub fn devnet_chain_id(network_id: u32) -> u64 {
    1_337_000 + u64::from(network_id)
}

/// What a devnet should look like.
#[derive(Debug, Clone)]
pub struct DevnetOptions {
    /// Provider accounts (`provider-1` ...) to create and fund.
    pub providers: usize,
    /// Client accounts (`client-1` ...) to create and fund.
    pub clients: usize,
    /// Seconds between blocks; `None` mines one block per transaction (tests mine on demand).
    pub block_time: Option<u64>,
    /// Contract parameters.
    pub params: DeployParams,
    /// BIG given to every account.
    pub big_per_account: U256,
    /// Gas money (wei) given to every account.
    pub eth_per_account: U256,
}

impl Default for DevnetOptions {
    fn default() -> Self {
        Self {
            providers: 6,
            clients: 1,
            block_time: Some(1),
            params: DeployParams::default(),
            big_per_account: U256::from(100_000u128 * BIG_UNIT),
            eth_per_account: U256::from(100u128 * BIG_UNIT),
        }
    }
}

/// A funded development account. Its key is in clear text: devnet only.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DevAccount {
    /// `deployer`, `provider-N` or `client-N`.
    pub name: String,
    /// Its address.
    pub address: Address,
    /// Its private key.
    pub private_key: B256,
}

impl DevAccount {
    fn random(name: String) -> Self {
        let signer = PrivateKeySigner::random();
        Self { name, address: signer.address(), private_key: signer.to_bytes() }
    }

    /// The account's signer.
    pub fn signer(&self) -> Result<PrivateKeySigner, DevnetError> {
        PrivateKeySigner::from_bytes(&self.private_key)
            .map_err(|e| DevnetError::Invalid(format!("account {}: bad private key: {e}", self.name)))
    }
}

/// One chain of the devnet.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DevnetNetwork {
    /// The AggLayer network id (2 = BigFile).
    pub network_id: u32,
    /// A readable name.
    pub name: String,
    /// The chain id anvil reports.
    pub chain_id: u64,
    /// HTTP JSON-RPC URL.
    pub rpc_url: String,
    /// anvil's process id (for `devnet down`).
    pub pid: u32,
    /// Seconds between blocks, if interval mining.
    pub block_time: Option<u64>,
    /// anvil's state file.
    pub state: PathBuf,
    /// anvil's log.
    pub log: PathBuf,
    /// The BigFile contracts on this chain, if any.
    pub contracts: Option<Deployment>,
    /// Their parameters.
    pub params: Option<DeployParams>,
}

/// `devnet.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DevnetFile {
    /// Format version ([`DEVNET_VERSION`]).
    pub version: u32,
    /// The chains.
    pub networks: Vec<DevnetNetwork>,
    /// Funded accounts, the deployer first.
    pub accounts: Vec<DevAccount>,
}

impl DevnetFile {
    /// Reads and checks `devnet.json`.
    pub fn load(path: &Path) -> Result<Self, DevnetError> {
        let text = std::fs::read_to_string(path).map_err(|e| DevnetError::io(path, e))?;
        let file: Self = serde_json::from_str(&text)
            .map_err(|e| DevnetError::Invalid(format!("{}: {e}", path.display())))?;
        if file.version != DEVNET_VERSION {
            return Err(DevnetError::Invalid(format!(
                "{}: version {} (this agent reads version {DEVNET_VERSION})",
                path.display(),
                file.version
            )));
        }
        Ok(file)
    }

    /// The network with `network_id`.
    pub fn network(&self, network_id: u32) -> Result<&DevnetNetwork, DevnetError> {
        self.networks
            .iter()
            .find(|n| n.network_id == network_id)
            .ok_or_else(|| DevnetError::Invalid(format!("devnet has no network {network_id}")))
    }

    /// The account called `name`.
    pub fn account(&self, name: &str) -> Result<&DevAccount, DevnetError> {
        self.accounts.iter().find(|a| a.name == name).ok_or_else(|| {
            let names: Vec<&str> = self.accounts.iter().map(|a| a.name.as_str()).collect();
            DevnetError::Invalid(format!("devnet has no account {name:?} (it has {})", names.join(", ")))
        })
    }

    fn save(&self, path: &Path) -> Result<(), DevnetError> {
        let text =
            serde_json::to_string_pretty(self).map_err(|e| DevnetError::Invalid(e.to_string()))? + "\n";
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text).map_err(|e| DevnetError::io(&tmp, e))?;
        set_private(&tmp)?;
        std::fs::rename(&tmp, path).map_err(|e| DevnetError::io(path, e))
    }
}

fn set_private(path: &Path) -> Result<(), DevnetError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| DevnetError::io(path, e))
}

/// Why a devnet command failed.
#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    /// A devnet already runs in the directory.
    #[error("a devnet already runs from {0} (pid {1}); run `bigfile-agent devnet down --dir {0}` first")]
    Running(PathBuf, u32),
    /// No devnet in the directory.
    #[error("no devnet in {0} (no devnet.json); run `bigfile-agent devnet up --dir {0}`")]
    NotFound(PathBuf),
    /// anvil failed.
    #[error(transparent)]
    Anvil(#[from] AnvilError),
    /// Deployment failed.
    #[error(transparent)]
    Deploy(#[from] DeployError),
    /// Funding or an RPC call failed.
    #[error("devnet {what}: {why}")]
    Rpc {
        /// What was being done.
        what: String,
        /// The error.
        why: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// `devnet.json` or an argument is invalid.
    #[error("{0}")]
    Invalid(String),
}

impl DevnetError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io { path: path.to_owned(), source }
    }
}

fn rpc_err<E: std::fmt::Display>(what: &'static str) -> impl FnOnce(E) -> DevnetError {
    move |e| DevnetError::Rpc { what: what.into(), why: e.to_string() }
}

/// A running devnet. Dropping it stops its chains unless [`Devnet::detach`] was called.
#[derive(Debug)]
pub struct Devnet {
    dir: PathBuf,
    file: DevnetFile,
    chains: Vec<(u32, Anvil)>,
}

impl Devnet {
    /// Starts the chains in `dir`, deploys the contracts, funds the accounts and writes
    /// `dir/devnet.json`. Refuses when a devnet from `dir` still runs; a stopped one is replaced.
    pub async fn up(dir: &Path, options: &DevnetOptions) -> Result<Self, DevnetError> {
        std::fs::create_dir_all(dir).map_err(|e| DevnetError::io(dir, e))?;
        let dir = std::path::absolute(dir).map_err(|e| DevnetError::io(dir, e))?;
        let path = dir.join(DEVNET_FILE);
        if path.exists() {
            if let Ok(old) = DevnetFile::load(&path)
                && let Some(live) = old.networks.iter().find(|n| anvil::alive(n.pid))
            {
                return Err(DevnetError::Running(dir, live.pid));
            }
            // A stopped devnet is replaced, not resumed: its keys and addresses are rewritten.
            let _ = std::fs::remove_file(dir.join("bigfile-2.state"));
        }
        options.params.validate().map_err(DevnetError::Invalid)?;
        let network_id = BIGFILE_NETWORK;
        let mut anvil_options = AnvilOptions::new(devnet_chain_id(network_id), dir.join("bigfile-2.log"));
        anvil_options.state = Some(dir.join("bigfile-2.state"));
        let mut chain = Anvil::spawn(anvil_options)?;
        let deployer = DevAccount::random("deployer".into());
        let mut accounts = vec![deployer.clone()];
        accounts.extend((1..=options.providers).map(|i| DevAccount::random(format!("provider-{i}"))));
        accounts.extend((1..=options.clients).map(|i| DevAccount::random(format!("client-{i}"))));

        let url = chain.endpoint().parse().map_err(rpc_err("parsing the RPC URL"))?;
        let provider =
            ProviderBuilder::new().wallet(EthereumWallet::from(deployer.signer()?)).connect_http(url);
        for account in &accounts {
            let _: () = provider
                .raw_request("anvil_setBalance".into(), (account.address, options.eth_per_account))
                .await
                .map_err(rpc_err("funding accounts with gas money"))?;
        }
        let contracts = deploy::deploy(&provider, deployer.address, &options.params).await?;
        let token = BIG::new(contracts.token, &provider);
        let mut pending = Vec::new();
        for account in accounts.iter().skip(1) {
            pending.push(
                token
                    .transfer(account.address, options.big_per_account)
                    .send()
                    .await
                    .map_err(rpc_err("handing out BIG"))?,
            );
        }
        for tx in pending {
            let receipt = tx.get_receipt().await.map_err(rpc_err("handing out BIG (receipt)"))?;
            if !receipt.status() {
                return Err(DevnetError::Rpc {
                    what: "handing out BIG".into(),
                    why: "a transfer reverted".into(),
                });
            }
        }
        if let Some(seconds) = options.block_time {
            // Set up with instant blocks, then produce blocks on a clock so periods advance.
            let _: () = provider
                .raw_request("evm_setIntervalMining".into(), (seconds,))
                .await
                .map_err(rpc_err("starting interval mining"))?;
            chain.set_block_time(Some(seconds));
        }
        let options_now = chain.options();
        let network = DevnetNetwork {
            network_id,
            name: "bigfile".into(),
            chain_id: chain.chain_id(),
            rpc_url: chain.endpoint(),
            pid: chain.pid(),
            block_time: options.block_time,
            state: options_now.state.unwrap_or_default(),
            log: options_now.log,
            contracts: Some(contracts),
            params: Some(options.params.clone()),
        };
        let file = DevnetFile { version: DEVNET_VERSION, networks: vec![network], accounts };
        file.save(&path)?;
        Ok(Self { dir, file, chains: vec![(network_id, chain)] })
    }

    /// What `devnet.json` says.
    pub fn file(&self) -> &DevnetFile {
        &self.file
    }

    /// The path of `devnet.json`.
    pub fn file_path(&self) -> PathBuf {
        self.dir.join(DEVNET_FILE)
    }

    /// The anvil process of network `network_id` (tests stop and restart it).
    pub fn chain_mut(&mut self, network_id: u32) -> Option<&mut Anvil> {
        self.chains.iter_mut().find(|(id, _)| *id == network_id).map(|(_, chain)| chain)
    }

    /// Leaves the chains running after this handle is dropped (`devnet up`).
    pub fn detach(self) -> DevnetFile {
        for (_, chain) in self.chains {
            chain.detach();
        }
        self.file
    }

    /// Stops the chains of the devnet in `dir`; returns the process ids that were running.
    pub fn down(dir: &Path) -> Result<Vec<u32>, DevnetError> {
        let path = dir.join(DEVNET_FILE);
        if !path.exists() {
            return Err(DevnetError::NotFound(dir.to_owned()));
        }
        let file = DevnetFile::load(&path)?;
        let mut stopped = Vec::new();
        for network in &file.networks {
            if anvil::alive(network.pid) {
                anvil::terminate(network.pid);
                stopped.push(network.pid);
            }
        }
        Ok(stopped)
    }

    /// Reports on each chain of the devnet in `dir`.
    pub async fn status(dir: &Path) -> Result<Vec<NetworkStatus>, DevnetError> {
        let path = dir.join(DEVNET_FILE);
        if !path.exists() {
            return Err(DevnetError::NotFound(dir.to_owned()));
        }
        let file = DevnetFile::load(&path)?;
        let mut out = Vec::new();
        for network in file.networks {
            let block = match network.rpc_url.parse() {
                Ok(url) => ProviderBuilder::new().connect_http(url).get_block_number().await.ok(),
                Err(_) => None,
            };
            out.push(NetworkStatus { running: anvil::alive(network.pid), block, network });
        }
        Ok(out)
    }
}

/// One chain's state in `devnet status`.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkStatus {
    /// What `devnet.json` says about it.
    pub network: DevnetNetwork,
    /// Whether its process exists.
    pub running: bool,
    /// Its latest block, when it answers.
    pub block: Option<u64>,
}
