//! The committed ABI and bytecode artifacts (`chain/abi/`, from which the bindings are generated)
//! match a fresh forge build of `chain/contracts`. With `BIGFILE_BLESS_ABI=1` the test rewrites
//! them instead (after a contract change).

use std::path::{Path, PathBuf};
use std::process::Command;

use bigfile_chain::bindings::CONTRACTS;
use serde_json::{Value, json};

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The parts of a forge artifact the bindings use.
fn essentials(artifact: &Value) -> Value {
    json!({
        "abi": artifact["abi"],
        "bytecode": { "object": artifact["bytecode"]["object"] },
        "deployedBytecode": { "object": artifact["deployedBytecode"]["object"] },
    })
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

#[test]
fn artifacts_match_a_fresh_forge_build() {
    let contracts = crate_dir().join("contracts");
    let forge = contracts.join("bin/forge");
    let scratch = tempfile::tempdir().expect("tempdir");
    let out = scratch.path().join("out");
    let output = Command::new(&forge)
        .current_dir(&contracts)
        .args(["build", "--skip", "test", "--skip", "script", "--out"])
        .arg(&out)
        .arg("--cache-path")
        .arg(scratch.path().join("cache"))
        .output()
        .unwrap_or_else(|e| panic!("run {} (packaging/chain-deps.sh installs it): {e}", forge.display()));
    assert!(
        output.status.success(),
        "forge build failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let bless = std::env::var_os("BIGFILE_BLESS_ABI").is_some();
    let mut stale = Vec::new();
    for name in CONTRACTS {
        let fresh = essentials(&read_json(&out.join(format!("{name}.sol/{name}.json"))));
        let committed_path = crate_dir().join(format!("abi/{name}.json"));
        if bless {
            let text = serde_json::to_string_pretty(&fresh).expect("serialise") + "\n";
            std::fs::write(&committed_path, text).expect("write artifact");
            continue;
        }
        let committed = read_json(&committed_path);
        assert!(
            committed["bytecode"]["object"].as_str().is_some_and(|code| code.len() > 2),
            "{name}: no bytecode"
        );
        if committed != fresh {
            stale.push(name);
        }
    }
    assert!(
        stale.is_empty(),
        "chain/abi is stale for {stale:?}: the contracts changed; run \
         `BIGFILE_BLESS_ABI=1 cargo test -p bigfile-chain --test artifacts` and commit chain/abi"
    );
}
