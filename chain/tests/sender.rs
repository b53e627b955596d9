//! The transaction sender against a real anvil chain with the BigFile contracts deployed:
//! concurrent nonces, refusals before signing, decoded contract errors, missing gas funds, stuck
//! transaction replacement, gas budgets and cancellation with a transaction in flight.
//!
//! No test asserts timings; waits are bounded only so a bug fails the test instead of hanging it.

use std::future::Future;
use std::time::Duration;

use alloy::consensus::Transaction as _;
use alloy::network::EthereumWallet;
use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use bigfile_chain::anvil::{Anvil, AnvilOptions};
use bigfile_chain::bindings::{BIG, ProviderRegistry, StorageMarket};
use bigfile_chain::deploy::{DeployParams, Deployment, deploy};
use bigfile_chain::sender::{self, GWEI, SendError, SenderConfig, SenderHandle, TxRequest};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Bound on every wait, far above what any step takes.
const PATIENCE: Duration = Duration::from_secs(20);

struct Chain {
    anvil: Anvil,
    provider: DynProvider,
    deployer: PrivateKeySigner,
    deployment: Deployment,
    params: DeployParams,
    cancel: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Chain {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Chain {
    /// A fresh anvil with the contracts deployed by a random, funded deployer.
    async fn start(chain_id: u64) -> Chain {
        let dir = tempfile::tempdir().expect("tempdir");
        let anvil = Anvil::spawn(AnvilOptions::new(chain_id, dir.path().join("anvil.log"))).expect("anvil");
        let deployer = PrivateKeySigner::random();
        let wallet = ProviderBuilder::new()
            .wallet(EthereumWallet::from(deployer.clone()))
            .connect_http(anvil.endpoint().parse().expect("url"));
        let provider = ProviderBuilder::new().connect_http(anvil.endpoint().parse().expect("url")).erased();
        let funds = U256::from(10u128.pow(21));
        let _: () =
            provider.raw_request("anvil_setBalance".into(), (deployer.address(), funds)).await.expect("fund");
        let params = DeployParams::default();
        let deployment = deploy(&wallet, deployer.address(), &params).await.expect("deploy");
        Chain { anvil, provider, deployer, deployment, params, cancel: CancellationToken::new(), _dir: dir }
    }

    fn endpoint(&self) -> String {
        self.anvil.endpoint()
    }

    /// Settings for tests: quick polls, no replacement unless a test asks for it.
    fn config(&self) -> SenderConfig {
        SenderConfig {
            poll_interval: Duration::from_millis(50),
            replace_after: Duration::from_secs(60),
            receipt_timeout: Duration::from_secs(60),
            rpc_timeout: Duration::from_secs(5),
            ..SenderConfig::new(self.anvil.chain_id())
        }
    }

    async fn sender(&self, signer: &PrivateKeySigner, config: SenderConfig) -> SenderHandle {
        sender::spawn(&self.endpoint(), signer.clone(), config, self.cancel.child_token())
            .await
            .expect("sender")
    }

    async fn fund(&self, address: Address, wei: U256) {
        let _: () = self.provider.raw_request("anvil_setBalance".into(), (address, wei)).await.expect("fund");
    }

    async fn automine(&self, on: bool) {
        let _: () = self.provider.raw_request("evm_setAutomine".into(), (on,)).await.expect("automine");
    }

    async fn mine(&self) {
        let _: serde_json::Value = self.provider.raw_request("evm_mine".into(), ()).await.expect("mine");
    }

    async fn nonce(&self, address: Address) -> u64 {
        self.provider.get_transaction_count(address).await.expect("nonce")
    }

    async fn big_balance(&self, address: Address) -> U256 {
        BIG::new(self.deployment.token, &self.provider).balanceOf(address).call().await.expect("balance")
    }

    fn transfer(&self, to: Address, amount: U256, label: impl Into<String>) -> TxRequest {
        TxRequest::call(self.deployment.token, &BIG::transferCall { to, value: amount }, label)
    }
}

async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within {PATIENCE:?}"))
}

/// 20 transfers from one account through cloned handles at once: all mined, with consecutive
/// nonces, and the token balances add up exactly.
#[tokio::test]
async fn concurrent_sends_get_consecutive_nonces() {
    let chain = Chain::start(31_401).await;
    let handle = chain.sender(&chain.deployer, chain.config()).await;
    let first_nonce = handle.status().next_nonce;
    assert_eq!(first_nonce, chain.nonce(chain.deployer.address()).await);

    let mut sends = JoinSet::new();
    let mut expected = Vec::new();
    for i in 0..20u64 {
        let to = random_address();
        let amount = U256::from((i + 1) * 1_000);
        expected.push((to, amount));
        let handle = handle.clone();
        let request = chain.transfer(to, amount, format!("transfer {i}"));
        sends.spawn(async move { handle.send(request).await });
    }
    let mut nonces = Vec::new();
    while let Some(joined) = within("all transfers", sends.join_next()).await {
        let outcome = joined.expect("join").expect("transfer mined");
        assert!(outcome.receipt.status());
        assert_eq!(outcome.logs().len(), 1, "one Transfer event");
        assert_eq!(outcome.replacements(), 0);
        nonces.push(outcome.nonce);
    }
    nonces.sort_unstable();
    assert_eq!(nonces, (first_nonce..first_nonce + 20).collect::<Vec<_>>());
    assert_eq!(chain.nonce(chain.deployer.address()).await, first_nonce + 20);

    let mut total = U256::ZERO;
    for (to, amount) in &expected {
        assert_eq!(chain.big_balance(*to).await, *amount);
        total += *amount;
    }
    assert_eq!(chain.big_balance(chain.deployer.address()).await, chain.params.supply - total);
    let status = handle.status();
    assert_eq!((status.sent, status.mined, status.in_flight), (20, 20, 0));
}

/// A node on another chain is refused before anything is signed; a closed port, a bad URL and a
/// bad configuration are refused with errors that say so.
#[tokio::test]
async fn wrong_chain_and_unreachable_rpc_are_refused_before_signing() {
    let chain = Chain::start(31_402).await;
    let key = PrivateKeySigner::random();
    chain.fund(key.address(), U256::from(10u128.pow(18))).await;

    let config = SenderConfig { chain_id: 999, ..chain.config() };
    match sender::spawn(&chain.endpoint(), key.clone(), config, chain.cancel.child_token()).await {
        Err(SendError::ChainIdMismatch { configured: 999, actual: 31_402, rpc }) => {
            assert_eq!(rpc, chain.endpoint());
        }
        other => panic!("expected ChainIdMismatch, got {other:?}"),
    }
    assert_eq!(chain.nonce(key.address()).await, 0, "nothing was sent");

    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let url = format!("http://127.0.0.1:{closed}");
    match sender::spawn(&url, key.clone(), chain.config(), chain.cancel.child_token()).await {
        Err(error @ SendError::Unreachable { .. }) => {
            assert!(error.to_string().contains(&url), "{error}");
            assert!(error.to_string().contains("reading the chain id"), "{error}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }

    match sender::spawn("not a url", key.clone(), chain.config(), chain.cancel.child_token()).await {
        Err(SendError::InvalidRpcUrl { .. }) => {}
        other => panic!("expected InvalidRpcUrl, got {other:?}"),
    }
    let config = SenderConfig { fee_bump_percent: 5, ..chain.config() };
    match sender::spawn(&chain.endpoint(), key.clone(), config, chain.cancel.child_token()).await {
        Err(error @ SendError::Config(_)) => {
            assert!(error.to_string().contains("chain.fee_bump_percent"), "{error}")
        }
        other => panic!("expected Config, got {other:?}"),
    }
}

/// Contract errors come back decoded with their arguments, from gas estimation (no nonce used)
/// and from a transaction that reverted when mined (replayed to find the reason).
#[tokio::test]
async fn contract_errors_are_decoded_and_use_no_nonce() {
    let chain = Chain::start(31_403).await;
    let Deployment { token, registry, storage_market, .. } = chain.deployment;
    let deployer = chain.sender(&chain.deployer, chain.config()).await;
    let provider_key = PrivateKeySigner::random();
    chain.fund(provider_key.address(), U256::from(10u128.pow(18))).await;
    let stake = chain.params.min_stake;
    deployer
        .send(chain.transfer(provider_key.address(), stake * U256::from(2), "fund provider"))
        .await
        .expect("fund provider");
    let handle = chain.sender(&provider_key, chain.config()).await;
    let peer = Bytes::from_static(b"\x00\x24peer");

    let register = |stake: U256| {
        TxRequest::call(registry, &ProviderRegistry::registerCall { peerId: peer.clone(), stake }, "register")
    };
    let error = handle.send(register(U256::from(1))).await.expect_err("stake below minimum");
    let text = error.to_string();
    assert!(
        text.contains(&format!("ProviderRegistry.StakeBelowMinimum(stake=1, minimum={stake})")),
        "{text}"
    );
    match &error {
        SendError::Reverted { label, reason, tx: None, .. } => {
            assert_eq!(label, "register");
            assert!(reason.is("StakeBelowMinimum"));
        }
        other => panic!("expected Reverted at estimation, got {other:?}"),
    }

    let text = handle.send(register(stake)).await.expect_err("no allowance").to_string();
    let expected = format!(
        "BIG.ERC20InsufficientAllowance(spender={}, allowance=0, needed={stake})",
        registry.to_checksum(None)
    );
    assert!(text.contains(&expected), "{text}");

    let take = StorageMarket::takeSlotCall { dealId: U256::from(99), slot: U256::ZERO };
    let text =
        handle.send(TxRequest::call(storage_market, &take, "takeSlot deal 99")).await.expect_err("no deal");
    assert!(
        text.to_string().contains("takeSlot deal 99: reverted: StorageMarket.UnknownDeal(dealId=99)"),
        "{text}"
    );

    // None of that used a nonce: the next sends take 0 and 1 and succeed.
    assert_eq!(handle.status().next_nonce, 0);
    assert_eq!(chain.nonce(provider_key.address()).await, 0);
    let approve = TxRequest::call(token, &BIG::approveCall { spender: registry, value: stake }, "approve");
    assert_eq!(handle.send(approve).await.expect("approve").nonce, 0);
    assert_eq!(handle.send(register(stake)).await.expect("register").nonce, 1);
    let registry_contract = ProviderRegistry::new(registry, &chain.provider);
    assert!(registry_contract.isRegistered(provider_key.address()).call().await.expect("isRegistered"));

    // A transaction that passes estimation but reverts in its block: the provider sends its whole
    // balance away while a spender it approved, tipping more, takes that balance first in the
    // same block. The reason is recovered by replaying the call at that block.
    let all = chain.big_balance(provider_key.address()).await;
    let spender = PrivateKeySigner::random();
    chain.fund(spender.address(), U256::from(10u128.pow(18))).await;
    let approve =
        TxRequest::call(token, &BIG::approveCall { spender: spender.address(), value: all }, "approve");
    assert_eq!(handle.send(approve).await.expect("approve spender").nonce, 2);
    chain.automine(false).await;
    let doomed = tokio::spawn({
        let (handle, request) = (handle.clone(), chain.transfer(random_address(), all, "doomed transfer"));
        async move { handle.send(request).await }
    });
    let mut status = handle.watch_status();
    within("the broadcast", status.wait_for(|s| s.in_flight == 1)).await.expect("status");
    let spender_wallet = ProviderBuilder::new()
        .wallet(EthereumWallet::from(spender.clone()))
        .connect_http(chain.endpoint().parse().expect("url"));
    let _pending = BIG::new(token, &spender_wallet)
        .transferFrom(provider_key.address(), spender.address(), all)
        // A fixed limit: estimating on the pending state (which anvil does) would revert.
        .gas(100_000)
        .max_priority_fee_per_gas(50 * GWEI)
        .max_fee_per_gas(100 * GWEI)
        .send()
        .await
        .expect("transferFrom broadcast");
    chain.mine().await;
    chain.automine(true).await;
    let error = within("the outcome", doomed).await.expect("join").expect_err("the transfer reverts");
    match &error {
        SendError::Reverted { label, reason, tx: Some(_), block_number: Some(_) } => {
            assert_eq!(label, "doomed transfer");
            let expected = format!(
                "BIG.ERC20InsufficientBalance(sender={}, balance=0, needed={all})",
                provider_key.address().to_checksum(None)
            );
            assert_eq!(reason.to_string(), expected);
        }
        other => panic!("expected a mined revert, got {other:?}"),
    }
    assert_eq!(chain.big_balance(spender.address()).await, all);
    assert_eq!(handle.status().reverted, 1);

    // Too small a gas limit: mined, out of gas, and said so.
    let approve =
        TxRequest::call(token, &BIG::approveCall { spender: registry, value: U256::MAX }, "starved approve");
    match handle.send(approve.with_gas_limit(30_000)).await {
        Err(SendError::Reverted { reason, tx: Some(_), .. }) => {
            assert!(reason.to_string().contains("ran out of gas"), "{reason}");
        }
        other => panic!("expected an out-of-gas revert, got {other:?}"),
    }
    assert_eq!(handle.status().reverted, 2);
    assert_eq!(chain.nonce(provider_key.address()).await, 5, "the reverted transactions used their nonces");
}

/// An account without ETH for gas gets InsufficientFunds naming it, and the nonce is kept for
/// the next send once it is funded.
#[tokio::test]
async fn missing_gas_funds_are_reported_and_lose_nothing() {
    let chain = Chain::start(31_404).await;
    let key = PrivateKeySigner::random();
    let handle = chain.sender(&key, chain.config()).await;
    let approve = TxRequest::call(
        chain.deployment.token,
        &BIG::approveCall { spender: random_address(), value: U256::MAX },
        "approve",
    );

    let error = handle.send(approve.clone()).await.expect_err("no ETH");
    match &error {
        SendError::InsufficientFunds { label, address, balance, needed } => {
            assert_eq!(label, "approve");
            assert_eq!(*address, key.address());
            assert_eq!(*balance, Some(U256::ZERO));
            assert!(needed.is_some_and(|n| n > U256::ZERO));
        }
        other => panic!("expected InsufficientFunds, got {other:?}"),
    }
    assert!(error.to_string().contains(&key.address().to_checksum(None)), "{error}");
    assert_eq!(handle.status().next_nonce, 0);

    chain.fund(key.address(), U256::from(10u128.pow(18))).await;
    let outcome = handle.send(approve).await.expect("approve once funded");
    assert_eq!(outcome.nonce, 0);
}

/// A transaction left unmined is re-signed with higher fees and the same nonce; once a block is
/// mined, one version is in it and it is the outcome.
#[tokio::test]
async fn stuck_transactions_are_replaced_with_higher_fees() {
    let chain = Chain::start(31_405).await;
    let config = SenderConfig {
        replace_after: Duration::from_millis(300),
        max_replacements: 3,
        fee_bump_percent: 20,
        ..chain.config()
    };
    let handle = chain.sender(&chain.deployer, config).await;
    let nonce = handle.status().next_nonce;
    chain.automine(false).await;
    let to = random_address();
    let send = tokio::spawn({
        let (handle, request) = (handle.clone(), chain.transfer(to, U256::from(5), "stuck transfer"));
        async move { handle.send(request).await }
    });
    let mut status = handle.watch_status();
    within("a replacement", status.wait_for(|s| s.replacements >= 1)).await.expect("status");
    chain.mine().await;
    let outcome = within("the outcome", send).await.expect("join").expect("mined");
    chain.automine(true).await;

    assert_eq!(outcome.nonce, nonce);
    assert!(outcome.versions.len() >= 2, "{:?}", outcome.versions);
    let first = outcome.versions[0];
    assert_ne!(outcome.hash, first.hash, "a replacement was mined");
    assert!(outcome.versions.iter().any(|v| v.hash == outcome.hash));
    for pair in outcome.versions.windows(2) {
        assert!(pair[1].max_fee_per_gas * 100 >= pair[0].max_fee_per_gas * 110, "{pair:?}");
        assert!(pair[1].max_priority_fee_per_gas * 100 >= pair[0].max_priority_fee_per_gas * 110, "{pair:?}");
    }
    let mined = chain.provider.get_transaction_by_hash(outcome.hash).await.expect("rpc").expect("mined tx");
    assert!(mined.max_fee_per_gas() > first.max_fee_per_gas);
    assert_eq!(mined.nonce(), nonce);
    assert!(chain.provider.get_transaction_receipt(first.hash).await.expect("rpc").is_none());
    let block =
        chain.provider.get_block_by_number(outcome.block_number.into()).await.expect("rpc").expect("block");
    assert_eq!(block.transactions.len(), 1, "one transaction with that nonce");
    assert_eq!(chain.nonce(chain.deployer.address()).await, nonce + 1);
    assert_eq!(chain.big_balance(to).await, U256::from(5), "transferred once");
}

/// A transaction the node loses (dropped from its pool, as a reorg drops the transactions of the
/// blocks it abandons) is broadcast again at the next poll, not after the replacement delay.
#[tokio::test]
async fn a_transaction_the_node_lost_is_broadcast_again() {
    let chain = Chain::start(31_406).await;
    let handle = chain.sender(&chain.deployer, chain.config()).await;
    let nonce = handle.status().next_nonce;
    let me = chain.deployer.address();
    chain.automine(false).await;
    let to = random_address();
    let send = tokio::spawn({
        let (handle, request) = (handle.clone(), chain.transfer(to, U256::from(7), "lost transfer"));
        async move { handle.send(request).await }
    });
    let pending = || async { chain.provider.get_transaction_count(me).pending().await.expect("nonce") };
    within("the transfer pending", async {
        while pending().await <= nonce {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let _: () = chain.provider.raw_request("anvil_dropAllTransactions".into(), ()).await.expect("drop");
    assert_eq!(pending().await, nonce, "the node forgot the transfer");
    // The replacement delay is a minute: only the lost-transaction check can send it again now.
    within("the transfer pending again", async {
        while pending().await <= nonce {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    chain.mine().await;
    let outcome = within("the outcome", send).await.expect("join").expect("mined");
    chain.automine(true).await;
    assert_eq!(outcome.nonce, nonce);
    assert_eq!(outcome.versions.len(), 1, "sent again as it was, not replaced");
    assert_eq!(chain.big_balance(to).await, U256::from(7), "transferred once");
}

/// Budgets: a fee cap below the base fee and a gas need above the per-transaction limit are
/// refused before signing, with the configuration key in the message.
#[tokio::test]
async fn gas_budget_errors_name_the_config_key() {
    let chain = Chain::start(31_406).await;
    let transfer = chain.transfer(random_address(), U256::from(1), "tiny transfer");

    let cheap = SenderConfig { max_fee_per_gas: 1_000, ..chain.config() };
    let handle = chain.sender(&chain.deployer, cheap).await;
    let nonce = handle.status().next_nonce;
    match handle.send(transfer.clone()).await {
        Err(error @ SendError::OverBudget { key: "chain.max_fee_gwei", .. }) => {
            assert!(error.to_string().contains("chain.max_fee_gwei"), "{error}");
            assert!(error.to_string().contains("tiny transfer"), "{error}");
        }
        other => panic!("expected OverBudget on the fee, got {other:?}"),
    }

    let small = SenderConfig { max_gas_per_tx: 30_000, max_fee_per_gas: 100 * GWEI, ..chain.config() };
    let handle = chain.sender(&chain.deployer, small).await;
    match handle.send(transfer.clone()).await {
        Err(error @ SendError::OverBudget { key: "chain.max_gas_per_tx", .. }) => {
            assert!(error.to_string().contains("chain.max_gas_per_tx"), "{error}");
        }
        other => panic!("expected OverBudget on gas, got {other:?}"),
    }
    match handle.send(transfer.with_gas_limit(40_000)).await {
        Err(SendError::OverBudget { key: "chain.max_gas_per_tx", .. }) => {}
        other => panic!("expected OverBudget on the given gas limit, got {other:?}"),
    }
    assert_eq!(chain.nonce(chain.deployer.address()).await, nonce, "nothing was sent");
}

/// Cancelling with a transaction in flight tells its caller the hashes (it may still be mined);
/// a new sender continues after it, and both are mined.
#[tokio::test]
async fn cancellation_reports_in_flight_transactions() {
    let chain = Chain::start(31_407).await;
    let cancel = CancellationToken::new();
    let handle = sender::spawn(&chain.endpoint(), chain.deployer.clone(), chain.config(), cancel.clone())
        .await
        .expect("sender");
    let nonce = handle.status().next_nonce;
    chain.automine(false).await;
    let to = random_address();
    let send = tokio::spawn({
        let (handle, request) = (handle.clone(), chain.transfer(to, U256::from(7), "in flight"));
        async move { handle.send(request).await }
    });
    let mut status = handle.watch_status();
    within("the broadcast", status.wait_for(|s| s.in_flight == 1)).await.expect("status");
    cancel.cancel();
    match within("the answer", send).await.expect("join") {
        Err(SendError::Stopped { label, hashes }) => {
            assert_eq!(label, "in flight");
            assert_eq!(hashes.len(), 1);
        }
        other => panic!("expected Stopped, got {other:?}"),
    }
    within("the task to stop", handle.stopped()).await;
    assert!(!handle.status().running);
    match handle.send(chain.transfer(to, U256::from(1), "after stop")).await {
        Err(SendError::Stopped { hashes, .. }) => assert!(hashes.is_empty()),
        other => panic!("expected Stopped, got {other:?}"),
    }

    // A restarted sender counts the pooled transaction and queues behind it.
    let restarted = chain.sender(&chain.deployer, chain.config()).await;
    assert_eq!(restarted.status().next_nonce, nonce + 1);
    chain.automine(true).await;
    chain.mine().await;
    let outcome = restarted.send(chain.transfer(to, U256::from(1), "next")).await.expect("next");
    assert_eq!(outcome.nonce, nonce + 1);
    assert_eq!(chain.big_balance(to).await, U256::from(8), "both transfers mined");
}

/// A fresh address nobody holds a key for (the primitives' `rand` feature is off).
fn random_address() -> Address {
    PrivateKeySigner::random().address()
}
