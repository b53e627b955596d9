//! Chain commands for operators: `register --stake N`, `deals`, `rewards [claim]`. They read the
//! chain directly (the daemon need not run) and send through the same sender the daemon uses.

use std::process::ExitCode;

use anyhow::{Context, Result};
use bigfile_chain::ChainKey;
use bigfile_chain::alloy::primitives::{Address, Bytes, U256};
use bigfile_chain::bindings::{ProviderRegistry, StorageMarket};
use clap::Subcommand;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::Output;
use crate::chain::{ChainLink, format_big, parse_big};
use crate::config::Config;
use crate::keys;

/// `rewards …`
#[derive(Subcommand, Debug)]
pub enum RewardsCmd {
    /// Withdraw every claimable BIG reward to this account.
    Claim,
}

async fn connect(cfg: &Config, cancel: CancellationToken) -> Result<ChainLink> {
    let password = keys::read_password(cfg.node.password_file.as_deref())?;
    let path = cfg.node.keystore.clone();
    let key = tokio::task::spawn_blocking(move || ChainKey::open(&path, &password)).await??;
    ChainLink::connect(&cfg.chain, key.signer().clone(), cancel).await
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread().enable_all().build()?)
}

#[derive(Serialize)]
struct Registration {
    address: Address,
    peer_id: String,
    stake: String,
    stake_units: U256,
    can_serve: bool,
    tx: Option<String>,
}

/// `register --stake N`: binds this node's peer id to its address and bonds `stake` BIG (or tops
/// the stake up by `stake` when already registered).
pub fn register(cfg: &Config, stake: &str, out: &Output) -> Result<ExitCode> {
    let amount = parse_big(stake).map_err(|e| anyhow::anyhow!("--stake: {e}"))?;
    let peer_id = keys::load_identity(&cfg.node.identity)?.public().to_peer_id();
    runtime()?.block_on(async {
        let cancel = CancellationToken::new();
        let link = connect(cfg, cancel.clone()).await?;
        let me = link.me();
        let registry = link.registry();
        let balance = link.token().balanceOf(me).call().await.context("BIG.balanceOf")?;
        anyhow::ensure!(
            balance >= amount,
            "{me} holds {} BIG, less than the stake of {} BIG; nothing was sent",
            format_big(balance),
            format_big(amount)
        );
        let registered = registry.isRegistered(me).call().await.context("ProviderRegistry.isRegistered")?;
        let minimum = registry.minStake().call().await.context("ProviderRegistry.minStake")?;
        anyhow::ensure!(
            registered || amount >= minimum,
            "the registry's minimum stake is {} BIG, more than {} BIG; nothing was sent",
            format_big(minimum),
            format_big(amount)
        );
        link.ensure_allowance(link.registry, amount).await?;
        let outcome = if registered {
            let call = ProviderRegistry::addStakeCall { amount };
            link.send(link.registry, &call, format!("addStake {}", format_big(amount))).await?
        } else {
            let call =
                ProviderRegistry::registerCall { peerId: Bytes::from(peer_id.to_bytes()), stake: amount };
            link.send(link.registry, &call, format!("register with {} BIG", format_big(amount))).await?
        };
        let stake_units = registry.stakeOf(me).call().await.context("ProviderRegistry.stakeOf")?;
        let can_serve = registry.canServe(me).call().await.context("ProviderRegistry.canServe")?;
        cancel.cancel();
        let report = Registration {
            address: me,
            peer_id: peer_id.to_string(),
            stake: format_big(stake_units),
            stake_units,
            can_serve,
            tx: Some(outcome.hash.to_string()),
        };
        out.print(&report, || {
            format!(
                "{} {me} (peer {peer_id})\n  stake: {} BIG{}\n  tx: {}",
                if registered { "stake added for" } else { "registered" },
                report.stake,
                if can_serve { "" } else { " (below the minimum: cannot take slots yet)" },
                outcome.hash
            )
        });
        Ok(ExitCode::SUCCESS)
    })
}

#[derive(Serialize)]
struct DealRow {
    deal_id: u64,
    object_id: String,
    slot: u64,
    k: u16,
    m: u16,
    shard_size: u64,
    start_block: u64,
    end_block: u64,
    period: Option<u64>,
    first_period: u32,
    proven_periods: u32,
    last_proven_period: Option<u32>,
    in_default: bool,
    finished: bool,
    price_per_period: String,
}

/// `deals`: every deal in which this account holds a slot, read from the chain.
pub fn deals(cfg: &Config, out: &Output) -> Result<ExitCode> {
    runtime()?.block_on(async {
        let cancel = CancellationToken::new();
        let link = connect(cfg, cancel.clone()).await?;
        let market = link.market();
        let me = link.me();
        let count: u64 = market.dealCount().call().await.context("StorageMarket.dealCount")?.saturating_to();
        let mut rows = Vec::new();
        for id in 1..=count {
            let deal_id = U256::from(id);
            let held = market.slotOf(deal_id, me).call().await.context("StorageMarket.slotOf")?;
            if !held.held {
                continue;
            }
            let deal = market.getDeal(deal_id).call().await.context("StorageMarket.getDeal")?;
            let slot = market.slotInfo(deal_id, held.slot).call().await.context("StorageMarket.slotInfo")?;
            let current =
                market.currentPeriod(deal_id).call().await.context("StorageMarket.currentPeriod")?;
            let missed =
                market.missedPeriod(deal_id, held.slot).call().await.context("StorageMarket.missedPeriod")?;
            rows.push(DealRow {
                deal_id: id,
                object_id: deal.objectId.to_string(),
                slot: held.slot.saturating_to(),
                k: deal.k,
                m: deal.m,
                shard_size: deal.shardSize,
                start_block: deal.startBlock,
                end_block: deal.endBlock,
                period: current.started.then(|| current.period.saturating_to()),
                first_period: slot.firstPeriod,
                proven_periods: slot.lastProvenPlusOne.saturating_sub(slot.firstPeriod),
                last_proven_period: slot.lastProvenPlusOne.checked_sub(1),
                in_default: missed.missed,
                finished: deal.finished,
                price_per_period: format_big(U256::from(deal.pricePerSlotPeriod)),
            });
        }
        cancel.cancel();
        out.print(&rows, || {
            if rows.is_empty() {
                return format!("{me} holds no slots");
            }
            let mut text = format!(
                "{:>5} {:>4} {:>8} {:>12} {:>7} {:>7}  object\n",
                "deal", "slot", "period", "proven", "default", "price"
            );
            for r in &rows {
                let period = r.period.map_or("setup".to_string(), |p| p.to_string());
                text += &format!(
                    "{:>5} {:>4} {:>8} {:>12} {:>7} {:>7}  {}\n",
                    r.deal_id,
                    r.slot,
                    period,
                    format!("{} from {}", r.proven_periods, r.first_period),
                    if r.in_default { "yes" } else { "no" },
                    r.price_per_period,
                    r.object_id
                );
            }
            text.trim_end().to_string()
        });
        Ok(ExitCode::SUCCESS)
    })
}

#[derive(Serialize)]
struct Rewards {
    address: Address,
    /// Claimable on both markets.
    claimable: String,
    claimable_units: U256,
    /// Earned on both markets, all time.
    earned: String,
    balance: String,
    stake: String,
    claimed_tx: Option<String>,
    claimed: Option<String>,
    /// Claimable from storage deals.
    storage_claimable: String,
    /// Claimable from compute jobs (paid results and verifier fees); absent without a compute market.
    #[serde(skip_serializing_if = "Option::is_none")]
    compute_claimable: Option<String>,
}

/// `rewards` and `rewards claim`: both markets keep a reward ledger (StorageMarket and, when
/// configured, ComputeMarket); the figures are their sums.
pub fn rewards(cfg: &Config, cmd: Option<RewardsCmd>, out: &Output) -> Result<ExitCode> {
    runtime()?.block_on(async {
        let cancel = CancellationToken::new();
        let link = connect(cfg, cancel.clone()).await?;
        let me = link.me();
        let compute = cfg.chain.compute_market_address();
        let mut ledgers = vec![("StorageMarket", link.market)];
        ledgers.extend(compute.map(|c| ("ComputeMarket", c)));
        let mut claimed: Option<(String, U256)> = None;
        if let Some(RewardsCmd::Claim) = cmd {
            let mut txs = Vec::new();
            let mut total = U256::ZERO;
            for (name, at) in &ledgers {
                let ledger = StorageMarket::new(*at, &link.provider);
                let amount = ledger.claimable(me).call().await.with_context(|| format!("{name}.claimable"))?;
                if amount.is_zero() {
                    continue;
                }
                let outcome =
                    link.send(*at, &StorageMarket::claimRewardsCall {}, format!("claimRewards on {name}")).await?;
                total += outcome
                    .logs()
                    .iter()
                    .find_map(|log| log.log_decode::<StorageMarket::RewardsClaimed>().ok())
                    .map(|log| log.inner.data.amount)
                    .unwrap_or(amount);
                txs.push(outcome.hash.to_string());
            }
            anyhow::ensure!(!txs.is_empty(), "{me} has no rewards to claim");
            claimed = Some((txs.join(", "), total));
        }
        let (mut claimable_units, mut earned, mut per) = (U256::ZERO, U256::ZERO, Vec::new());
        for (name, at) in &ledgers {
            // Both markets implement the same reward ledger interface (IRewardLedger).
            let ledger = StorageMarket::new(*at, &link.provider);
            let c = ledger.claimable(me).call().await.with_context(|| format!("{name}.claimable"))?;
            earned += ledger.earned(me).call().await.with_context(|| format!("{name}.earned"))?;
            claimable_units += c;
            per.push(c);
        }
        let balance = link.token().balanceOf(me).call().await.context("BIG.balanceOf")?;
        let stake = link.registry().stakeOf(me).call().await.context("ProviderRegistry.stakeOf")?;
        cancel.cancel();
        let report = Rewards {
            address: me,
            claimable: format_big(claimable_units),
            claimable_units,
            earned: format_big(earned),
            balance: format_big(balance),
            stake: format_big(stake),
            claimed_tx: claimed.as_ref().map(|(tx, _)| tx.clone()),
            claimed: claimed.as_ref().map(|(_, paid)| format_big(*paid)),
            storage_claimable: format_big(per[0]),
            compute_claimable: per.get(1).map(|c| format_big(*c)),
        };
        out.print(&report, || {
            let mut text = String::new();
            if let (Some(paid), Some(tx)) = (&report.claimed, &report.claimed_tx) {
                text += &format!("claimed {paid} BIG (tx {tx})\n");
            }
            text += &format!(
                "{me}\n  claimable: {} BIG (storage {}, compute {})\n  earned:    {} BIG (all time)\n  balance:   {} BIG\n  stake:     {} BIG",
                report.claimable,
                report.storage_claimable,
                report.compute_claimable.as_deref().unwrap_or("-"),
                report.earned,
                report.balance,
                report.stake
            );
            text
        });
        Ok(ExitCode::SUCCESS)
    })
}
