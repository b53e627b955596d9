//! A test's view of a devnet chain: blocking reads of balances, slots and events, and the raw
//! anvil calls (mining, reorgs) that the chain end-to-end tests drive.

use bigfile_chain::alloy::primitives::{Address, U256};
use bigfile_chain::alloy::providers::{DynProvider, Provider, ProviderBuilder};
use bigfile_chain::alloy::rpc::types::Filter;
use bigfile_chain::bindings::{BIG, StorageMarket};
use bigfile_chain::devnet::{BIGFILE_NETWORK, Devnet, DevnetFile, DevnetOptions};

/// Starts a devnet in `dir` for the chain end-to-end tests: `providers` funded provider accounts
/// and one client, periods of `period_blocks` blocks (unbonding two periods), blocks every
/// `block_time` seconds (`None`: only when a transaction or the test mines one). Returns it with
/// the options it was made with (funding amounts, for the accounting).
pub fn devnet_up(
    dir: &std::path::Path,
    providers: usize,
    block_time: Option<u64>,
    period_blocks: u64,
) -> (Devnet, DevnetOptions) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut options = DevnetOptions { providers, clients: 1, block_time, ..DevnetOptions::default() };
    options.params.period_blocks = period_blocks;
    options.params.unbonding_blocks = 2 * period_blocks;
    let devnet = rt.block_on(Devnet::up(dir, &options)).expect("devnet up");
    (devnet, options)
}

/// The BigFile network of a devnet, read from the test thread.
pub struct Chain {
    /// Runs the RPC calls.
    pub rt: tokio::runtime::Runtime,
    /// The network's RPC.
    pub provider: DynProvider,
    /// StorageMarket.
    pub market: Address,
    /// ProviderRegistry.
    pub registry: Address,
    /// BIG.
    pub token: Address,
    /// The block the contracts were deployed in (events are read from there).
    pub from_block: u64,
}

impl Chain {
    /// Connects to the BigFile network described by `file`.
    pub fn connect(file: &DevnetFile) -> Chain {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
        let network = file.network(BIGFILE_NETWORK).expect("network");
        let contracts = network.contracts.expect("contracts");
        let provider = ProviderBuilder::new().connect_http(network.rpc_url.parse().expect("url")).erased();
        Chain {
            rt,
            provider,
            market: contracts.storage_market,
            registry: contracts.registry,
            token: contracts.token,
            from_block: contracts.deploy_block,
        }
    }

    /// Runs `f` to completion.
    pub fn block<T>(&self, f: impl std::future::IntoFuture<Output = T>) -> T {
        self.rt.block_on(f.into_future())
    }

    /// The chain head.
    pub fn head(&self) -> u64 {
        self.block(self.provider.get_block_number()).expect("block number")
    }

    /// The number of transactions `who` has had mined.
    pub fn nonce(&self, who: Address) -> u64 {
        self.block(self.provider.get_transaction_count(who)).expect("nonce")
    }

    /// BIG balance of `who`.
    pub fn balance(&self, who: Address) -> U256 {
        self.block(BIG::new(self.token, &self.provider).balanceOf(who).call()).expect("balanceOf")
    }

    /// Holder of `slot` of `deal` (zero when free).
    pub fn slot_holder(&self, deal: u64, slot: u64) -> Address {
        let market = StorageMarket::new(self.market, &self.provider);
        self.block(market.slotInfo(U256::from(deal), U256::from(slot)).call()).expect("slotInfo").provider
    }

    /// Every `E` emitted by `address` since the deployment, on the chain as it is now.
    pub fn logs<E: bigfile_chain::alloy::sol_types::SolEvent>(&self, address: Address) -> Vec<E> {
        self.logs_at::<E>(address).into_iter().map(|(_, e)| e).collect()
    }

    /// As [`Chain::logs`], each with the number of its block.
    pub fn logs_at<E: bigfile_chain::alloy::sol_types::SolEvent>(&self, address: Address) -> Vec<(u64, E)> {
        let filter =
            Filter::new().address(address).event_signature(E::SIGNATURE_HASH).from_block(self.from_block);
        let logs = self.block(self.provider.get_logs(&filter)).expect("get_logs");
        logs.iter()
            .map(|l| (l.block_number.expect("mined log"), l.log_decode::<E>().expect("decode").inner.data))
            .collect()
    }

    /// A raw JSON-RPC call (anvil's `evm_mine`, `anvil_reorg`, …).
    pub fn rpc<P, R>(&self, method: &'static str, params: P) -> R
    where
        P: serde::Serialize + Clone + std::fmt::Debug + Send + Sync + Unpin,
        R: serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + Unpin + 'static,
    {
        self.block(self.provider.raw_request::<P, R>(method.into(), params))
            .unwrap_or_else(|e| panic!("{method}: {e}"))
    }
}
