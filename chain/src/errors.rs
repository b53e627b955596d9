//! Turning revert data into readable errors.
//!
//! A failed call or transaction returns raw bytes: a 4-byte selector and ABI-encoded arguments.
//! [`decode_revert`] matches them against every custom error of the three BigFile contracts (a
//! registry or token error can surface through a market call, so all ABIs are tried whatever the
//! callee), plus Solidity's `Error(string)` and `Panic(uint256)`, and renders them with the
//! parameter names from the ABI, e.g. `StorageMarket.ProofFailed(dealId=3, slot=1,
//! status=InvalidProof)`.
//!
//! The ABIs are the committed artifacts under `chain/abi/`, the same files the bindings are
//! generated from, so the decoder and the bindings cannot disagree.

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

use alloy::dyn_abi::{DynSolValue, JsonAbiExt};
use alloy::json_abi::JsonAbi;
use alloy::primitives::{Bytes, Selector, U256};
use alloy::sol_types::{Panic, Revert, SolError};
use alloy::transports::{RpcError, TransportErrorKind};

/// Why a call reverted, decoded as far as the ABIs allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevertReason {
    /// A custom error declared by one of the contracts.
    Custom(CustomError),
    /// `Error(string)`: `require(cond, "message")` or `revert("message")`.
    Message(String),
    /// `Panic(uint256)`: a failed assert, arithmetic overflow, out-of-bounds index and the like.
    Panic {
        /// The panic code.
        code: U256,
        /// What Solidity documents the code to mean, when it is a known one.
        meaning: Option<&'static str>,
    },
    /// Revert data whose selector matches nothing known (or whose arguments do not decode); kept
    /// whole so it can be looked up by hand.
    Unrecognised(Bytes),
    /// The call reverted without data: `revert()`, `require(cond)` without a message, or a call
    /// into an address without code.
    NoData,
    /// The node reported a failure but gave no revert data; its message is all there is.
    Node(String),
}

/// A decoded custom error with its arguments rendered as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomError {
    /// The contract that declares the error, when exactly one of them does (errors such as
    /// `SafeERC20FailedOperation` are declared by several, and the selector cannot tell which
    /// contract raised it).
    pub contract: Option<&'static str>,
    /// The error's name, e.g. `StakeBelowMinimum`.
    pub name: String,
    /// `(parameter name, rendered value)` in declaration order. Addresses are EIP-55 checksummed,
    /// integers decimal, enum values by variant name where the variant names are known.
    pub args: Vec<(String, String)>,
}

impl CustomError {
    /// The rendered value of argument `name`, if the error has one by that name.
    pub fn arg(&self, name: &str) -> Option<&str> {
        self.args.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

impl fmt::Display for CustomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(contract) = self.contract {
            write!(f, "{contract}.")?;
        }
        write!(f, "{}(", self.name)?;
        for (i, (name, value)) in self.args.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{name}={value}")?;
        }
        f.write_str(")")
    }
}

impl fmt::Display for RevertReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RevertReason::Custom(error) => error.fmt(f),
            RevertReason::Message(message) => write!(f, "Error({message:?})"),
            RevertReason::Panic { code, meaning: Some(meaning) } => write!(f, "Panic(0x{code:x}: {meaning})"),
            RevertReason::Panic { code, meaning: None } => write!(f, "Panic(0x{code:x})"),
            RevertReason::Unrecognised(data) => write!(f, "unrecognised revert data {data}"),
            RevertReason::NoData => {
                f.write_str("reverted without data (revert() or require without a message)")
            }
            RevertReason::Node(message) => write!(f, "{message}"),
        }
    }
}

impl RevertReason {
    /// The custom error, if this is one.
    pub fn custom(&self) -> Option<&CustomError> {
        match self {
            RevertReason::Custom(error) => Some(error),
            _ => None,
        }
    }

    /// Whether this is the custom error `name` (from whichever contract).
    pub fn is(&self, name: &str) -> bool {
        self.custom().is_some_and(|e| e.name == name)
    }
}

/// Decodes revert data: the contracts' custom errors, then `Error(string)`, then `Panic(uint256)`.
///
/// Never fails: data that matches nothing comes back as [`RevertReason::Unrecognised`] and empty
/// data as [`RevertReason::NoData`].
pub fn decode_revert(data: &[u8]) -> RevertReason {
    if data.is_empty() {
        return RevertReason::NoData;
    }
    let Some(selector) = data.get(..4).map(Selector::from_slice) else {
        return RevertReason::Unrecognised(Bytes::copy_from_slice(data));
    };
    if let Some(known) = KNOWN_ERRORS.get(&selector)
        && let Some(decoded) = known.decode(&data[4..])
    {
        return RevertReason::Custom(decoded);
    }
    if selector == Revert::SELECTOR
        && let Ok(revert) = Revert::abi_decode(data)
    {
        return RevertReason::Message(revert.reason);
    }
    if selector == Panic::SELECTOR
        && let Ok(panic) = Panic::abi_decode(data)
    {
        return RevertReason::Panic { code: panic.code, meaning: panic.kind().map(|k| k.as_str()) };
    }
    RevertReason::Unrecognised(Bytes::copy_from_slice(data))
}

/// Whether a JSON-RPC error says that execution reverted (as opposed to the node refusing the
/// request for another reason, e.g. insufficient funds).
///
/// geth, reth and anvil answer a reverted `eth_call` or `eth_estimateGas` with code 3 (geth's
/// `execution reverted`); some nodes use other codes but keep the word "revert" in the message.
pub fn is_revert(err: &RpcError<TransportErrorKind>) -> bool {
    err.as_error_resp().is_some_and(|p| p.code == 3 || p.message.to_ascii_lowercase().contains("revert"))
}

/// The revert data carried by a JSON-RPC error (the `data` field of an `eth_call` or
/// `eth_estimateGas` failure), if there is any.
///
/// Nodes put it there either as a bare hex string (geth, reth, anvil) or nested in an object
/// (some providers); both are handled.
pub fn revert_data(err: &RpcError<TransportErrorKind>) -> Option<Bytes> {
    let payload = err.as_error_resp()?;
    if let Some(Ok(hex)) = payload.try_data_as::<String>()
        && let Ok(bytes) = hex.parse::<Bytes>()
    {
        return Some(bytes);
    }
    payload.as_revert_data()
}

/// The reason behind a JSON-RPC error that [`is_revert`]: decoded data when the node sent some,
/// otherwise its message.
pub fn revert_reason(err: &RpcError<TransportErrorKind>) -> RevertReason {
    match revert_data(err) {
        Some(data) => decode_revert(&data),
        None => match err.as_error_resp() {
            // "execution reverted" alone says no more than NoData does.
            Some(p) if p.message.trim().eq_ignore_ascii_case("execution reverted") => RevertReason::NoData,
            Some(p) => RevertReason::Node(p.message.to_string()),
            None => RevertReason::Node(err.to_string()),
        },
    }
}

/// The contracts whose custom errors are decoded, with their committed artifacts.
const ARTIFACTS: [(&str, &str); 4] = [
    ("StorageMarket", include_str!("../abi/StorageMarket.json")),
    ("ComputeMarket", include_str!("../abi/ComputeMarket.json")),
    ("ProviderRegistry", include_str!("../abi/ProviderRegistry.json")),
    ("BIG", include_str!("../abi/BIG.json")),
];

/// Variant names of the contracts' enums, which the ABI records only as `uint8` with an
/// `internalType` (the names are in `src/interfaces/IStorageMarket.sol`).
const ENUMS: [(&str, &[&str]); 3] = [
    (
        "ProofStatus",
        &[
            "Accepted",
            "UnknownDeal",
            "DealOver",
            "NotSlotHolder",
            "NotYetProving",
            "AlreadyProven",
            "PeriodMissed",
            "NoRandomness",
            "InvalidProof",
        ],
    ),
    ("FreeReason", &["Missed", "Released", "DealEnded"]),
    ("State", &["None", "Posted", "Accepted", "Committed", "Drawn", "Done", "Cancelled", "Expired"]),
];

/// One selector's definition and the contracts that declare it.
struct KnownError {
    error: alloy::json_abi::Error,
    contracts: Vec<&'static str>,
}

impl KnownError {
    fn decode(&self, args: &[u8]) -> Option<CustomError> {
        let values = self.error.abi_decode_input(args).ok()?;
        let args = self
            .error
            .inputs
            .iter()
            .zip(&values)
            .map(|(param, value)| {
                let variants = param
                    .internal_type
                    .as_ref()
                    .and_then(|t| t.as_enum())
                    .and_then(|(_, ty)| ENUMS.iter().find(|(name, _)| *name == ty))
                    .map(|(_, variants)| *variants);
                (param.name.clone(), render(value, variants))
            })
            .collect();
        let contract = match self.contracts.as_slice() {
            [one] => Some(*one),
            _ => None,
        };
        Some(CustomError { contract, name: self.error.name.clone(), args })
    }
}

/// Every custom error of the three contracts by selector, built once from the artifacts.
///
/// The artifacts are compiled in and checked by a unit test, so a parse failure cannot happen in
/// a released binary; if it somehow did, the affected contract's errors would decode as
/// [`RevertReason::Unrecognised`] rather than take the process down.
static KNOWN_ERRORS: LazyLock<HashMap<Selector, KnownError>> = LazyLock::new(|| {
    let mut known: HashMap<Selector, KnownError> = HashMap::new();
    for (contract, abi) in parse_artifacts() {
        for error in abi.errors() {
            let entry = known
                .entry(error.selector())
                .or_insert_with(|| KnownError { error: error.clone(), contracts: Vec::new() });
            if !entry.contracts.contains(&contract) {
                entry.contracts.push(contract);
            }
        }
    }
    known
});

fn parse_artifacts() -> Vec<(&'static str, JsonAbi)> {
    #[derive(serde::Deserialize)]
    struct Artifact {
        abi: JsonAbi,
    }
    ARTIFACTS
        .iter()
        .filter_map(|(contract, json)| match serde_json::from_str::<Artifact>(json) {
            Ok(artifact) => Some((*contract, artifact.abi)),
            Err(e) => {
                tracing::error!(contract, error = %e, "committed ABI artifact does not parse; its errors will not decode");
                None
            }
        })
        .collect()
}

/// Longest byte string rendered in full; longer ones are cut, so a huge argument cannot flood
/// a log line.
const MAX_BYTES_SHOWN: usize = 64;

fn render(value: &DynSolValue, enum_variants: Option<&[&str]>) -> String {
    match value {
        DynSolValue::Uint(n, _) => {
            let variant = enum_variants.and_then(|v| usize::try_from(*n).ok().and_then(|i| v.get(i)));
            match variant {
                Some(name) => (*name).to_string(),
                None => n.to_string(),
            }
        }
        DynSolValue::Int(n, _) => n.to_string(),
        DynSolValue::Bool(b) => b.to_string(),
        DynSolValue::Address(a) => a.to_checksum(None),
        DynSolValue::FixedBytes(word, size) => bytes_hex(&word[..(*size).min(32)]),
        DynSolValue::Bytes(bytes) => bytes_hex(bytes),
        DynSolValue::String(s) => format!("{s:?}"),
        DynSolValue::Array(items) | DynSolValue::FixedArray(items) => {
            format!("[{}]", items.iter().map(|v| render(v, None)).collect::<Vec<_>>().join(", "))
        }
        DynSolValue::Tuple(items) => {
            format!("({})", items.iter().map(|v| render(v, None)).collect::<Vec<_>>().join(", "))
        }
        other => format!("{other:?}"),
    }
}

fn bytes_hex(bytes: &[u8]) -> String {
    if bytes.len() <= MAX_BYTES_SHOWN {
        format!("0x{}", alloy::hex::encode(bytes))
    } else {
        format!("0x{}…({} bytes)", alloy::hex::encode(&bytes[..MAX_BYTES_SHOWN]), bytes.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::{BIG, ComputeMarket, ProviderRegistry, StorageMarket};
    use alloy::primitives::{Address, address};
    use alloy::sol_types::SolInterface;

    #[test]
    fn every_binding_error_is_known() {
        let parsed = parse_artifacts();
        assert_eq!(parsed.len(), ARTIFACTS.len(), "every committed artifact parses");
        let selectors = StorageMarket::StorageMarketErrors::selectors()
            .chain(ProviderRegistry::ProviderRegistryErrors::selectors())
            .chain(BIG::BIGErrors::selectors())
            .chain(ComputeMarket::ComputeMarketErrors::selectors());
        for selector in selectors {
            assert!(KNOWN_ERRORS.contains_key(&Selector::from(selector)), "{selector:?} missing");
        }
    }

    #[test]
    fn decodes_compute_market_errors_with_state_names() {
        let data = ComputeMarket::WrongState { jobId: U256::from(4), state: 3 }.abi_encode();
        assert_eq!(decode_revert(&data).to_string(), "ComputeMarket.WrongState(jobId=4, state=Committed)");
    }

    #[test]
    fn decodes_market_error_with_enum_names() {
        let data =
            StorageMarket::ProofFailed { dealId: U256::from(3), slot: U256::from(1), status: 8 }.abi_encode();
        let reason = decode_revert(&data);
        assert_eq!(reason.to_string(), "StorageMarket.ProofFailed(dealId=3, slot=1, status=InvalidProof)");
        assert!(reason.is("ProofFailed"));
        // A value past the known variants is shown as a number rather than guessed.
        let data = StorageMarket::ProofFailed { dealId: U256::from(3), slot: U256::from(1), status: 42 }
            .abi_encode();
        assert_eq!(
            decode_revert(&data).to_string(),
            "StorageMarket.ProofFailed(dealId=3, slot=1, status=42)"
        );
    }

    #[test]
    fn decodes_token_and_registry_errors_with_arguments() {
        let sender = address!("0x00000000000000000000000000000000000000aa");
        let data = BIG::ERC20InsufficientBalance { sender, balance: U256::from(5), needed: U256::from(7) }
            .abi_encode();
        let reason = decode_revert(&data);
        assert_eq!(
            reason.to_string(),
            format!("BIG.ERC20InsufficientBalance(sender={}, balance=5, needed=7)", sender.to_checksum(None))
        );
        assert_eq!(reason.custom().and_then(|e| e.arg("needed")), Some("7"));

        let data = ProviderRegistry::StakeBelowMinimum { stake: U256::from(1), minimum: U256::from(1000) }
            .abi_encode();
        assert_eq!(
            decode_revert(&data).to_string(),
            "ProviderRegistry.StakeBelowMinimum(stake=1, minimum=1000)"
        );

        let data = ProviderRegistry::InvalidPeerId { length: U256::ZERO }.abi_encode();
        assert_eq!(decode_revert(&data).to_string(), "ProviderRegistry.InvalidPeerId(length=0)");
    }

    #[test]
    fn an_error_declared_twice_has_no_contract_prefix() {
        let token = Address::repeat_byte(0x11);
        let data = StorageMarket::SafeERC20FailedOperation { token }.abi_encode();
        assert_eq!(
            decode_revert(&data).to_string(),
            format!("SafeERC20FailedOperation(token={})", token.to_checksum(None))
        );
    }

    #[test]
    fn decodes_string_and_panic_reverts() {
        let data = Revert::from("not enough").abi_encode();
        assert_eq!(decode_revert(&data), RevertReason::Message("not enough".into()));
        assert_eq!(decode_revert(&data).to_string(), "Error(\"not enough\")");
        let data = Panic::from(0x11).abi_encode();
        let text = decode_revert(&data).to_string();
        assert!(text.starts_with("Panic(0x11: "), "{text}");
        assert!(text.contains("overflow"), "{text}");
        let data = Panic::from(0x99).abi_encode();
        assert_eq!(decode_revert(&data).to_string(), "Panic(0x99)");
    }

    #[test]
    fn odd_data_is_kept_not_dropped() {
        assert_eq!(decode_revert(&[]), RevertReason::NoData);
        assert_eq!(decode_revert(&[1, 2]), RevertReason::Unrecognised(Bytes::from(vec![1, 2])));
        let unknown = [0xde, 0xad, 0xbe, 0xef, 0, 1];
        assert_eq!(decode_revert(&unknown).to_string(), "unrecognised revert data 0xdeadbeef0001");
        // A known selector whose arguments are cut short does not decode as that error.
        let mut short = StorageMarket::UnknownDeal { dealId: U256::from(9) }.abi_encode();
        short.truncate(20);
        assert!(matches!(decode_revert(&short), RevertReason::Unrecognised(_)));
    }

    #[test]
    fn extracts_revert_data_from_rpc_errors() {
        let data = StorageMarket::UnknownDeal { dealId: U256::from(9) }.abi_encode();
        let json = format!(
            r#"{{"code":3,"message":"execution reverted: custom error","data":"0x{}"}}"#,
            alloy::hex::encode(&data)
        );
        let err: RpcError<TransportErrorKind> = RpcError::ErrorResp(serde_json::from_str(&json).unwrap());
        assert!(is_revert(&err));
        assert_eq!(revert_data(&err), Some(Bytes::from(data.clone())));
        assert_eq!(revert_reason(&err).to_string(), "StorageMarket.UnknownDeal(dealId=9)");

        let nested = format!(
            r#"{{"code":-32000,"message":"execution reverted","data":{{"originalError":{{"data":"0x{}"}}}}}}"#,
            alloy::hex::encode(&data)
        );
        let err: RpcError<TransportErrorKind> = RpcError::ErrorResp(serde_json::from_str(&nested).unwrap());
        assert_eq!(revert_reason(&err).to_string(), "StorageMarket.UnknownDeal(dealId=9)");

        let bare = r#"{"code":3,"message":"execution reverted"}"#;
        let err: RpcError<TransportErrorKind> = RpcError::ErrorResp(serde_json::from_str(bare).unwrap());
        assert_eq!(revert_reason(&err), RevertReason::NoData);

        let funds = r#"{"code":-32003,"message":"Insufficient funds for gas * price + value"}"#;
        let err: RpcError<TransportErrorKind> = RpcError::ErrorResp(serde_json::from_str(funds).unwrap());
        assert!(!is_revert(&err));
    }
}
