//! `bigfile-agent devnet up|status|down` and `init --devnet` as a newcomer runs them.

use std::process::Command;

use bigfile_tests::{Node, agent_bin};

fn agent(args: &[&str]) -> std::process::Output {
    Command::new(agent_bin()).args(args).output().expect("run bigfile-agent")
}

fn json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

#[test]
fn devnet_up_status_down_and_init_from_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().join("devnet");
    let d = d.to_str().expect("path");
    let up = json(&agent(&["devnet", "up", "--dir", d, "--providers", "2", "--block-time", "0", "--json"]));
    let network = &up["networks"][0];
    assert_eq!(network["network_id"], 2);
    let names: Vec<&str> =
        up["accounts"].as_array().expect("accounts").iter().filter_map(|a| a["name"].as_str()).collect();
    assert_eq!(names, ["deployer", "provider-1", "provider-2", "client-1"]);

    // A second `up` in the same directory is refused while the first runs.
    let again = agent(&["devnet", "up", "--dir", d]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already runs"), "{again:?}");

    let status = json(&agent(&["devnet", "status", "--dir", d, "--json"]));
    assert_eq!(status[0]["running"], true);
    assert!(status[0]["block"].as_u64().is_some_and(|b| b > 0), "{status}");

    // A node made from the devnet joins its chain with the account's key.
    let file = format!("{d}/devnet.json");
    let node = Node::init_with(
        tempfile::tempdir().expect("tempdir"),
        0,
        &["--devnet", &file, "--account", "provider-2"],
    );
    let provider_2 = up["accounts"][2]["address"].as_str().expect("address");
    assert_eq!(node.info["address"].as_str().map(str::to_lowercase), Some(provider_2.to_lowercase()));
    let check = node.json(&["config", "check"]);
    assert_eq!(check["ok"], true);
    let rewards = node.json(&["rewards"]);
    assert_eq!(rewards["claimable_units"], "0x0");
    assert_eq!(rewards["balance"], "100000");
    let bad = Node::init_with(tempfile::tempdir().expect("tempdir"), 0, &[]);
    let unknown = bad
        .cmd(&[])
        .args(["init", "--dir"])
        .arg(bad.dir.path().join("other"))
        .args(["--devnet", &file, "--account", "provider-9", "--password-file"])
        .arg(bad.dir.path().join("password"))
        .output()
        .expect("run init");
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("devnet has no account \"provider-9\""),
        "{unknown:?}"
    );

    let down = json(&agent(&["devnet", "down", "--dir", d, "--json"]));
    assert_eq!(down["stopped"][0], network["pid"]);
    // Stopped: status says so and exits non-zero.
    let after = bigfile_tests::wait_for(std::time::Duration::from_secs(10), "the chain to stop", || {
        let out = agent(&["devnet", "status", "--dir", d, "--json"]);
        (!out.status.success()).then_some(out)
    });
    let v: serde_json::Value = serde_json::from_slice(&after.stdout).expect("JSON");
    assert_eq!(v[0]["running"], false);
}
