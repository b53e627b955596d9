//! A repair whose leader is killed after saving its plan resumes that plan after a restart: the
//! lost shard lands where the plan said, the holder list moves on by exactly one version, and
//! nothing is placed twice. The replaced provider, once back, learns the new holder list from
//! the other holders and drops its orphaned shard only after the new holder proves it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::BTreeSet;
use std::time::Duration;

use bigfile_agent::net::repair::leader;
use bigfile_storage::ObjectId;
use bigfile_tests::{Cluster, pseudo_random, wait_for};
use libp2p::PeerId;

#[test]
fn a_killed_repair_leader_resumes_its_saved_plan() {
    // Every repairer stalls 20 s after saving a fresh plan (never after resuming one), which
    // is when this test kills it.
    let mut cluster = Cluster::start_with_env(
        7,
        |t| {
            t.replace("interval_secs = 60", "interval_secs = 1").replace("grace_secs = 600", "grace_secs = 4")
        },
        &[("BIGFILE_FAULT_REPAIR_STALL_SECS", "20")],
    );
    let file = cluster.client.path("object");
    let data = pseudo_random(1_000_003, 7);
    std::fs::write(&file, &data).unwrap();
    let put = cluster.client_json(&["client", "put", file.to_str().unwrap(), "--data", "4", "--parity", "2"]);
    let id_hex = put["id"].as_str().unwrap().to_string();
    let holders: Vec<(u64, String)> = put["holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["index"].as_u64().unwrap(), h["peer"].as_str().unwrap().to_string()))
        .collect();
    let peers: Vec<String> = cluster.providers.iter().map(|p| p.peer_id.clone()).collect();
    let provider_of = |peer: &str| peers.iter().position(|p| p == peer).unwrap();

    // Lose a holder that will not lead the repair.
    let id = ObjectId::from_hex(&id_hex).unwrap();
    let all: BTreeSet<PeerId> = holders.iter().map(|(_, p)| p.parse().unwrap()).collect();
    let first_leader = leader(&id, &all).unwrap();
    let (lost_index, victim) = holders.iter().find(|(_, p)| *p != first_leader.to_string()).unwrap().clone();
    let mut live = all.clone();
    live.remove(&victim.parse().unwrap());
    let lead = provider_of(&leader(&id, &live).unwrap().to_string());
    cluster.kill(provider_of(&victim));

    // The leader saves its plan, then stalls; kill it there and start it again.
    let planned = wait_for(Duration::from_secs(90), "the leader to save a repair plan", || {
        cluster.providers[lead]
            .node
            .log()
            .lines()
            .find(|l| l.contains("repair plan saved"))
            .map(str::to_string)
    });
    let target = cluster
        .providers
        .iter()
        .map(|p| p.peer_id.clone())
        .find(|p| planned.contains(&format!("shard {lost_index} -> {p}")))
        .unwrap_or_else(|| panic!("no known provider in the plan: {planned}"));
    cluster.kill(lead);
    let before = cluster.providers[lead].node.log();
    assert!(!before.contains("repair complete"), "the repair finished before the kill: {before}");
    cluster.restart(lead);

    // The restarted leader resumes the same plan and completes it.
    wait_for(Duration::from_secs(120), "the restarted leader to resume and complete", || {
        let log = cluster.providers[lead].node.log();
        let after = &log[before.len()..];
        (after.contains("resuming a saved repair plan") && after.contains("repair complete")).then_some(())
    });
    let report = wait_for(Duration::from_secs(60), "six verified shards", || {
        let out = cluster.client.run(&["client", "check", &id_hex, "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (out.status.success() && v["verified"] == 6).then_some(v)
    });
    assert_eq!(report["version"], 2, "exactly one new holder list: {report}");
    let now: Vec<(u64, String)> = report["holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["index"].as_u64().unwrap(), h["peer"].as_str().unwrap().to_string()))
        .collect();
    assert!(
        now.contains(&(lost_index, target.clone())),
        "shard {lost_index} is not on the planned {target}: {report}"
    );
    for (i, p) in &holders {
        if *i != lost_index {
            assert!(now.contains(&(*i, p.clone())), "holder of shard {i} changed: {report}");
        }
    }
    // No other provider led a second repair of this object.
    for (i, p) in cluster.providers.iter().enumerate() {
        if i != lead {
            assert!(!p.node.log().contains("repair plan saved"), "provider {i} planned a repair too");
        }
    }
    let out = cluster.client.path("back");
    cluster.client_json(&["client", "get", &id_hex, "-o", out.to_str().unwrap()]);
    assert!(std::fs::read(&out).unwrap() == data);

    // The replaced provider comes back: it adopts the new list and frees its orphaned shard.
    let v = provider_of(&victim);
    let shards_held =
        |c: &Cluster| c.providers[v].api_json("/status").and_then(|s| s["storage"]["shards"].as_u64());
    // (It may already be gone by the time the API answers: the first round after a start syncs.)
    cluster.restart(v);
    let start = std::time::Instant::now();
    while shards_held(&cluster) != Some(0) {
        let log = cluster.providers[v].node.log();
        assert!(start.elapsed() < Duration::from_secs(60), "the orphaned shard stayed; its log:\n{log}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = cluster.providers[v].node.log();
    assert!(log.contains("adopted a newer holder list"), "{log}");
    let line = log.lines().find(|l| l.contains("removed an orphaned shard")).unwrap();
    assert!(line.contains(&target), "removed before the planned holder proved it: {line}");
    // It did hold the shard until then: the removal freed the shard's bytes.
    let freed: u64 =
        line.split("freed=").nth(1).and_then(|r| r.split_whitespace().next()).unwrap().parse().unwrap();
    assert!(freed > 0, "{line}");
    // Still whole, on the same holders.
    let again = cluster.client_json(&["client", "check", &id_hex]);
    assert_eq!((again["verified"].as_u64(), again["version"].as_u64()), (Some(6), Some(2)), "{again}");
}
