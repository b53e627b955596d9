//! Typed bindings to the BigFile contracts, generated at compile time from the ABI and bytecode
//! artifacts committed under `chain/abi/` (exported from `chain/contracts` by forge).
//!
//! The test `artifacts_match_a_fresh_forge_build` rebuilds the contracts and fails when the
//! committed artifacts are stale; run it with `BIGFILE_BLESS_ABI=1` to rewrite them.

#![allow(missing_docs, clippy::too_many_arguments)]

alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    BIG,
    "abi/BIG.json"
);

alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    ProviderRegistry,
    "abi/ProviderRegistry.json"
);

alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    StorageMarket,
    "abi/StorageMarket.json"
);

alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    ComputeMarket,
    "abi/ComputeMarket.json"
);

/// The contracts whose artifacts are committed, by the name forge gives them.
pub const CONTRACTS: [&str; 4] = ["BIG", "ProviderRegistry", "StorageMarket", "ComputeMarket"];
