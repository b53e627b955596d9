//! The client's side of a storage deal: the terms, the checks made before any upload (chain
//! reachable and right, enough BIG), and `createDeal` after the upload.

use anyhow::{Context, Result, bail};
use bigfile_chain::ChainKey;
use bigfile_chain::alloy::primitives::{B256, U256};
use bigfile_chain::bindings::{IStorageMarket, StorageMarket};
use bigfile_storage::{Geometry, Manifest};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{ChainLink, format_big, parse_big};
use crate::config::{ChainConfig, Config};
use crate::keys;

/// What a client offers for a deal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DealTerms {
    /// Proving periods.
    pub periods: u32,
    /// BIG base units per slot and proven period.
    pub price_per_slot_period: u128,
}

impl DealTerms {
    /// The config's defaults, overridden by `--periods` / `--price` (decimal BIG).
    pub fn from_config(cfg: &ChainConfig, periods: Option<u32>, price: Option<&str>) -> Result<Self> {
        let periods = periods.unwrap_or(cfg.deal.periods);
        if periods < 2 {
            bail!("--periods: a deal lasts at least 2 periods (got {periods})");
        }
        let price_per_slot_period = match price {
            Some(text) => parse_big(text).map_err(|e| anyhow::anyhow!("--price: {e}"))?.saturating_to(),
            None => u128::from(cfg.deal.price_per_slot_period),
        };
        if price_per_slot_period == 0 {
            bail!("--price: must be greater than 0");
        }
        Ok(Self { periods, price_per_slot_period })
    }

    /// The escrow a deal of `slots` slots costs.
    pub fn deposit(&self, slots: u16) -> U256 {
        U256::from(self.price_per_slot_period) * U256::from(slots) * U256::from(self.periods)
    }
}

/// A created deal, as `client put` reports it.
#[derive(Clone, Debug, Serialize)]
pub struct DealReport {
    /// The deal id.
    pub deal_id: u64,
    /// Its periods.
    pub periods: u32,
    /// First block of period 0 (providers take slots before it).
    pub start_block: u64,
    /// BIG escrowed.
    pub deposit: String,
    /// The createDeal transaction.
    pub tx: String,
}

/// A client connected to the chain, ready to create one deal.
pub struct DealClient {
    link: ChainLink,
    terms: DealTerms,
}

impl DealClient {
    /// Connects with the node's key and checks that it can pay for a deal over an object of
    /// `geometry`, so that nothing is uploaded for a deal that cannot be made.
    pub async fn connect(
        cfg: &Config,
        terms: DealTerms,
        geometry: &Geometry,
        cancel: CancellationToken,
    ) -> Result<Self> {
        let password = keys::read_password(cfg.node.password_file.as_deref())?;
        let path = cfg.node.keystore.clone();
        let key = tokio::task::spawn_blocking(move || ChainKey::open(&path, &password)).await??;
        let link = ChainLink::connect(&cfg.chain, key.signer().clone(), cancel).await?;
        let deposit = terms.deposit(geometry.data + geometry.parity);
        let balance = link.token().balanceOf(link.me()).call().await.context("BIG.balanceOf")?;
        if balance < deposit {
            bail!(
                "{} holds {} BIG but the deal escrows {} BIG ({} slots x {} periods x {} BIG); nothing was uploaded",
                link.me(),
                format_big(balance),
                format_big(deposit),
                geometry.data + geometry.parity,
                terms.periods,
                format_big(U256::from(terms.price_per_slot_period))
            );
        }
        Ok(Self { link, terms })
    }

    /// Escrows the deposit and creates the deal for `manifest`'s object.
    pub async fn create(&self, manifest: &Manifest) -> Result<DealReport> {
        let g = &manifest.geometry;
        let deposit = self.terms.deposit(g.data + g.parity);
        self.link.ensure_allowance(self.link.market, deposit).await?;
        let id = manifest.object_id();
        let params = IStorageMarket::DealParams {
            objectId: B256::from(id.0),
            shardRoots: manifest.shard_roots.iter().map(|r| B256::from(*r)).collect(),
            shardSize: g.shard_len(),
            segmentSize: g.segment_size,
            k: g.data,
            m: g.parity,
            numPeriods: self.terms.periods,
            pricePerSlotPeriod: self.terms.price_per_slot_period,
        };
        let call = StorageMarket::createDealCall { params };
        let outcome =
            self.link.send(self.link.market, &call, format!("createDeal for {}", id.to_hex())).await?;
        let created = outcome
            .logs()
            .iter()
            .find_map(|log| log.log_decode::<StorageMarket::DealCreated>().ok())
            .context("createDeal succeeded but emitted no DealCreated event")?
            .inner
            .data;
        Ok(DealReport {
            deal_id: created.dealId.saturating_to(),
            periods: self.terms.periods,
            start_block: created.startBlock,
            deposit: format_big(created.deposit),
            tx: outcome.hash.to_string(),
        })
    }
}

/// The peers that hold slots of `object`'s deals on chain (read-only: no key needed), for
/// `client get` to ask beside the DHT. Deals are found by their indexed `DealCreated` object id.
pub async fn chain_holders(cfg: &ChainConfig, object: B256) -> Result<Vec<libp2p::PeerId>> {
    use bigfile_chain::alloy::providers::{Provider, ProviderBuilder};
    use bigfile_chain::alloy::rpc::types::Filter;
    use bigfile_chain::alloy::sol_types::SolEvent;
    use bigfile_chain::bindings::ProviderRegistry;

    let market = cfg.market_address().context("chain.storage_market is not an address")?;
    let url = cfg.rpc_url.parse().with_context(|| format!("chain.rpc_url {:?}", cfg.rpc_url))?;
    let provider = ProviderBuilder::new().connect_http(url);
    let chain_id = provider.get_chain_id().await.with_context(|| format!("chain RPC {}", cfg.rpc_url))?;
    if chain_id != cfg.chain_id {
        bail!("chain RPC {} serves chain id {chain_id} but chain.chain_id is {}", cfg.rpc_url, cfg.chain_id);
    }
    let filter = Filter::new()
        .address(market)
        .event_signature(StorageMarket::DealCreated::SIGNATURE_HASH)
        .topic3(object)
        .from_block(cfg.start_block);
    let logs = provider.get_logs(&filter).await.context("reading DealCreated events")?;
    let view = StorageMarket::new(market, &provider);
    let registry =
        ProviderRegistry::new(view.registry().call().await.context("StorageMarket.registry")?, &provider);
    let mut peers = Vec::new();
    for log in logs {
        let Ok(created) = log.log_decode::<StorageMarket::DealCreated>() else { continue };
        let deal = created.inner.data;
        for slot in 0..u64::from(deal.k) + u64::from(deal.m) {
            let holder =
                view.slotInfo(deal.dealId, U256::from(slot)).call().await.context("slotInfo")?.provider;
            if holder.is_zero() {
                continue;
            }
            let bytes = registry.peerIdOf(holder).call().await.context("ProviderRegistry.peerIdOf")?;
            if let Ok(peer) = libp2p::PeerId::from_bytes(&bytes)
                && !peers.contains(&peer)
            {
                peers.push(peer);
            }
        }
    }
    Ok(peers)
}
