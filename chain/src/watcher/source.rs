//! The three chain queries the watcher needs, behind a trait so that the engine's reorg and
//! consistency rules can be tested against a scripted chain.

use std::future::Future;
use std::time::Duration;

use alloy::eips::BlockNumberOrTag;
use alloy::primitives::{Address, B256};
use alloy::providers::Provider;
use alloy::rpc::types::{Filter, Log};

/// The part of a block header the watcher uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub number: u64,
    pub hash: B256,
    pub parent_hash: B256,
}

/// A chain query failed: the node is unreachable, slow, or answered with an error.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{what}: {why}")]
pub(crate) struct SourceError {
    pub what: String,
    pub why: String,
}

/// Read access to one chain.
pub(crate) trait ChainSource: Send + Sync + 'static {
    /// The latest block number.
    fn head(&self) -> impl Future<Output = Result<u64, SourceError>> + Send;
    /// The header of block `number` on the node's current chain; `None` when it has no such block.
    fn header(&self, number: u64) -> impl Future<Output = Result<Option<Header>, SourceError>> + Send;
    /// The logs that `addresses` emitted in blocks `from..=to` of the node's current chain.
    fn logs(
        &self,
        addresses: &[Address],
        from: u64,
        to: u64,
    ) -> impl Future<Output = Result<Vec<Log>, SourceError>> + Send;
}

/// A [`ChainSource`] over an alloy provider, every call bounded by a timeout so that a node that
/// accepts connections but never answers counts as down instead of stalling the watcher.
pub(crate) struct RpcSource<P> {
    provider: P,
    timeout: Duration,
}

impl<P: Provider + 'static> RpcSource<P> {
    pub(crate) fn new(provider: P, timeout: Duration) -> Self {
        Self { provider, timeout }
    }

    async fn call<T, E: std::fmt::Display>(
        &self,
        what: impl Fn() -> String,
        call: impl Future<Output = Result<T, E>>,
    ) -> Result<T, SourceError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(SourceError { what: what(), why: e.to_string() }),
            Err(_) => Err(SourceError { what: what(), why: format!("no answer within {:?}", self.timeout) }),
        }
    }
}

impl<P: Provider + 'static> ChainSource for RpcSource<P> {
    async fn head(&self) -> Result<u64, SourceError> {
        self.call(|| "eth_blockNumber".into(), self.provider.get_block_number().into_future()).await
    }

    async fn header(&self, number: u64) -> Result<Option<Header>, SourceError> {
        let what = || format!("eth_getBlockByNumber({number})");
        let block = self
            .call(what, self.provider.get_block_by_number(BlockNumberOrTag::Number(number)).into_future())
            .await?;
        let Some(block) = block else { return Ok(None) };
        if block.header.number != number {
            return Err(SourceError {
                what: what(),
                why: format!("the node returned block {} instead", block.header.number),
            });
        }
        Ok(Some(Header { number, hash: block.header.hash, parent_hash: block.header.parent_hash }))
    }

    async fn logs(&self, addresses: &[Address], from: u64, to: u64) -> Result<Vec<Log>, SourceError> {
        let filter = Filter::new().address(addresses.to_vec()).from_block(from).to_block(to);
        self.call(|| format!("eth_getLogs({from}..={to})"), self.provider.get_logs(&filter)).await
    }
}
