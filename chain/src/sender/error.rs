//! What can go wrong when sending, and how node answers are sorted into it.

use std::time::Duration;

use alloy::primitives::utils::format_ether;
use alloy::primitives::{Address, TxHash, U256};
use alloy::transports::{RpcError, TransportError, TransportErrorKind};

use super::config::ConfigProblem;
use crate::errors::RevertReason;

/// Why a transaction was not sent, or not mined as asked.
///
/// Every variant about one transaction carries its label (what the caller was doing, e.g.
/// `takeSlot deal 3 slot 1`). [`SendError::Reverted`] without a hash, [`SendError::InsufficientFunds`],
/// [`SendError::OverBudget`], [`SendError::ChainIdMismatch`] and [`SendError::Stopped`] without
/// hashes guarantee that nothing reached the chain and no nonce was used: the next send takes the
/// same nonce.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The configuration is unusable; every bad key is listed.
    #[error("invalid chain configuration: {}", join(.0))]
    Config(Vec<ConfigProblem>),
    /// The RPC URL does not parse.
    #[error("chain.rpc_url {rpc:?} is not a valid URL: {why}")]
    InvalidRpcUrl {
        /// The URL as given (redacted).
        rpc: String,
        /// The parser's complaint.
        why: String,
    },
    /// The node could not be reached or did not answer in time.
    #[error("chain RPC {rpc} is unreachable ({during}): {why}")]
    Unreachable {
        /// The endpoint (scheme, host and port only: paths often hold API keys).
        rpc: String,
        /// What the sender was doing.
        during: &'static str,
        /// The transport's error, or the timeout.
        why: String,
    },
    /// The node serves another chain than the configured one; nothing was signed.
    #[error(
        "chain RPC {rpc} serves chain id {actual} but chain.chain_id is {configured}; refusing to sign \
         anything (wrong RPC URL or wrong chain id?)"
    )]
    ChainIdMismatch {
        /// `chain.chain_id`.
        configured: u64,
        /// What the node reports.
        actual: u64,
        /// The endpoint.
        rpc: String,
    },
    /// The node answered with an error the sender does not know how to handle.
    #[error("chain RPC {rpc} refused {during}: {source}")]
    Rpc {
        /// The endpoint.
        rpc: String,
        /// What the sender was doing.
        during: &'static str,
        /// The node's error.
        #[source]
        source: TransportError,
    },
    /// The call reverts: at gas estimation (nothing was signed, no nonce used) or when mined
    /// (then `tx` names the transaction, which paid for its gas).
    #[error("{label}: reverted: {reason}{}", mined_in(.tx, .block_number))]
    Reverted {
        /// What the transaction was for.
        label: String,
        /// The decoded revert reason (boxed: it is large and errors travel through `Result`s).
        reason: Box<RevertReason>,
        /// The mined transaction, when it reverted on chain.
        tx: Option<TxHash>,
        /// The block it was mined in.
        block_number: Option<u64>,
    },
    /// The account cannot pay for gas (or the value sent); nothing was signed into the chain and
    /// no nonce used.
    #[error(
        "{label}: the account {address} has too little ETH for gas: balance {}, needs up to {} \
         (gas limit × max fee + value); fund it",
        ether(.balance),
        ether(.needed)
    )]
    InsufficientFunds {
        /// What the transaction was for.
        label: String,
        /// The sending account.
        address: Address,
        /// Its balance, when it could be read.
        balance: Option<U256>,
        /// The most the transaction could cost, when known.
        needed: Option<U256>,
    },
    /// The transaction would break a budget from the configuration; `key` names the setting.
    #[error("{label}: {why}; not sent (raise {key} to allow it)")]
    OverBudget {
        /// What the transaction was for.
        label: String,
        /// The configuration key, e.g. `chain.max_gas_per_tx` or `chain.max_fee_gwei`.
        key: &'static str,
        /// Which budget and by how much.
        why: String,
    },
    /// No version of the transaction was mined within `chain.receipt_timeout_secs`. It is *not*
    /// abandoned: the sender keeps tracking and re-broadcasting it, so it may still be mined;
    /// check `hashes` before doing the same thing again.
    #[error(
        "{label}: not mined after {waited:?} (nonce {nonce}, {} version(s), last {}); still pending, \
         the sender keeps re-broadcasting it{}",
        .hashes.len(),
        last_hash(.hashes),
        refusal_note(.last_refusal)
    )]
    NotMined {
        /// What the transaction was for.
        label: String,
        /// Its nonce.
        nonce: u64,
        /// Every version broadcast, first to last.
        hashes: Vec<TxHash>,
        /// How long the caller waited.
        waited: Duration,
        /// The node's last refusal of a (re)broadcast, if any.
        last_refusal: Option<String>,
    },
    /// The nonce was used by a transaction that is none of ours (the key is used elsewhere too);
    /// this call was not executed.
    #[error(
        "{label}: nonce {nonce} was used by a transaction this sender did not sign (is the key in use \
         elsewhere?); none of {} was mined",
        .hashes.len()
    )]
    NonceConsumed {
        /// What the transaction was for.
        label: String,
        /// The nonce.
        nonce: u64,
        /// Our versions, none mined.
        hashes: Vec<TxHash>,
    },
    /// The sender stopped (cancelled, or its task ended) before the outcome was known. When
    /// `hashes` is not empty the transaction was broadcast and may still be mined; when it is
    /// empty it was never signed.
    #[error(
        "{label}: the transaction sender stopped before the outcome was known ({})",
        stopped_detail(.hashes)
    )]
    Stopped {
        /// What the transaction was for.
        label: String,
        /// The versions broadcast, if any.
        hashes: Vec<TxHash>,
    },
    /// The signer refused (it should not: the key is local).
    #[error("{label}: signing failed: {why}")]
    Signing {
        /// What the transaction was for.
        label: String,
        /// The signer's error.
        why: String,
    },
}

fn join(problems: &[ConfigProblem]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

fn mined_in(tx: &Option<TxHash>, block: &Option<u64>) -> String {
    match (tx, block) {
        (Some(tx), Some(block)) => format!(" (mined in {tx}, block {block})"),
        (Some(tx), None) => format!(" (mined in {tx})"),
        _ => " (at gas estimation; nothing was sent)".into(),
    }
}

fn ether(value: &Option<U256>) -> String {
    value.map(|v| format!("{} ETH", format_ether(v))).unwrap_or_else(|| "unknown".into())
}

fn refusal_note(refusal: &Option<String>) -> String {
    refusal.as_deref().map(|r| format!("; the node last said: {r}")).unwrap_or_default()
}

fn stopped_detail(hashes: &[TxHash]) -> String {
    match hashes.last() {
        None => "never signed".into(),
        Some(last) => format!("broadcast as {last}; it may still be mined"),
    }
}

fn last_hash(hashes: &[TxHash]) -> String {
    hashes.last().map(ToString::to_string).unwrap_or_else(|| "none".into())
}

/// How a node answered `eth_sendRawTransaction` when it did not simply accept it.
///
/// Matched on the message text, as every node spells these differently and none gives stable
/// codes (geth: `nonce too low: next nonce 5, tx nonce 3`; anvil: `nonce too low`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The nonce is already mined.
    NonceTooLow,
    /// The same transaction is already in the pool: as good as accepted.
    AlreadyKnown,
    /// Another transaction with this nonce is in the pool and ours does not outbid it.
    Underpriced,
    /// The account cannot cover gas × fee + value.
    InsufficientFunds,
    /// The fee cap is below the base fee of the next block.
    FeeBelowBaseFee,
    /// Anything else the node refused.
    Other,
}

/// Sorts a node's refusal; `None` when the request did not get an answer at all (transport
/// failure), in which case the transaction may or may not have arrived.
pub(crate) fn refusal(err: &TransportError) -> Option<Refusal> {
    let message = match err {
        RpcError::ErrorResp(payload) => payload.message.to_ascii_lowercase(),
        RpcError::Transport(_) => return None,
        other => return Some(classify_message(&other.to_string().to_ascii_lowercase())),
    };
    Some(classify_message(&message))
}

fn classify_message(message: &str) -> Refusal {
    let has = |needle: &str| message.contains(needle);
    if has("nonce too low") || has("nonce has already been used") || has("oldnonce") {
        Refusal::NonceTooLow
    } else if has("already known")
        || has("already imported")
        || has("alreadyknown")
        || has("known transaction")
    {
        Refusal::AlreadyKnown
    } else if has("replacement") && has("underpriced") {
        Refusal::Underpriced
    } else if has("insufficient funds") {
        Refusal::InsufficientFunds
    } else if has("less than block base fee") || has("fee cap less than") || has("feecaptoolow") {
        Refusal::FeeBelowBaseFee
    } else {
        Refusal::Other
    }
}

/// Whether the error came from the transport (connection refused, reset, HTTP failure) rather
/// than from the node.
pub(crate) fn is_transport(err: &TransportError) -> bool {
    matches!(err, RpcError::Transport(kind) if !matches!(kind, TransportErrorKind::MissingBatchResponse(_)))
}

/// `url` without path, query or credentials: RPC URLs of hosted nodes carry API keys there, and
/// errors end up in logs.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<rpc>".into();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    let hidden = if rest.len() > authority.len() || authority.contains('@') { "/…" } else { "" };
    format!("{scheme}://{host}{hidden}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_error(message: &str) -> TransportError {
        RpcError::ErrorResp(
            serde_json::from_str(&format!(r#"{{"code":-32003,"message":{message:?}}}"#)).expect("payload"),
        )
    }

    #[test]
    fn sorts_node_refusals() {
        let cases = [
            ("nonce too low", Refusal::NonceTooLow),
            ("nonce too low: next nonce 5, tx nonce 3", Refusal::NonceTooLow),
            ("transaction already imported", Refusal::AlreadyKnown),
            ("already known", Refusal::AlreadyKnown),
            ("replacement transaction underpriced", Refusal::Underpriced),
            ("Insufficient funds for gas * price + value", Refusal::InsufficientFunds),
            ("insufficient funds for gas * price + value: balance 0, tx cost 1", Refusal::InsufficientFunds),
            ("max fee per gas less than block base fee", Refusal::FeeBelowBaseFee),
            ("invalid chain id for signer", Refusal::Other),
        ];
        for (message, expected) in cases {
            assert_eq!(refusal(&node_error(message)), Some(expected), "{message}");
        }
        let transport: TransportError = TransportErrorKind::custom_str("connection refused");
        assert_eq!(refusal(&transport), None);
        assert!(is_transport(&transport));
        assert!(!is_transport(&node_error("nonce too low")));
    }

    #[test]
    fn redacts_rpc_urls() {
        assert_eq!(redact("http://127.0.0.1:8545"), "http://127.0.0.1:8545");
        assert_eq!(redact("https://mainnet.infura.io/v3/secretkey"), "https://mainnet.infura.io/…");
        assert_eq!(redact("https://user:pass@node.example:443/x?key=1"), "https://node.example:443/…");
        assert_eq!(redact("not a url"), "<rpc>");
    }

    #[test]
    fn messages_say_what_to_do() {
        let err = SendError::OverBudget {
            label: "takeSlot deal 3 slot 1".into(),
            key: "chain.max_gas_per_tx",
            why: "needs 90000 gas, above the 50000 allowed".into(),
        };
        assert_eq!(
            err.to_string(),
            "takeSlot deal 3 slot 1: needs 90000 gas, above the 50000 allowed; not sent (raise \
             chain.max_gas_per_tx to allow it)"
        );
        let err = SendError::InsufficientFunds {
            label: "x".into(),
            address: Address::ZERO,
            balance: Some(U256::ZERO),
            needed: Some(U256::from(10u64.pow(15))),
        };
        assert!(
            err.to_string()
                .contains("balance 0.000000000000000000 ETH, needs up to 0.001000000000000000 ETH")
        );
        let err = SendError::Stopped { label: "x".into(), hashes: vec![] };
        assert!(err.to_string().contains("never signed"));
    }
}
