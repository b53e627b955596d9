//! Objects spread over real provider agents on 127.0.0.1 survive the loss of any m of them.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::collections::HashSet;

use std::time::Duration;

use bigfile_tests::{Cluster, pseudo_random, wait_for};

#[test]
fn objects_survive_two_providers_killed() {
    // Holders challenge each other every second and repair after 3 s of failures.
    let mut cluster = Cluster::start_with(8, |t| {
        t.replace("interval_secs = 60", "interval_secs = 1").replace("grace_secs = 600", "grace_secs = 3")
    });

    // Every provider sees every other one's signed announcement, and /status counts them.
    let peers = cluster.providers[3].api_json("/peers").unwrap();
    let ids: HashSet<&str> =
        peers["providers"].as_array().unwrap().iter().map(|p| p["peer_id"].as_str().unwrap()).collect();
    for p in &cluster.providers {
        assert!(ids.contains(p.peer_id.as_str()), "{} missing from {peers}", p.peer_id);
    }
    let status = cluster.providers[0].api_json("/status").unwrap();
    assert!(status["network"]["providers"].as_u64().unwrap() >= 8, "{status}");
    let cli = cluster.providers[0].node.json(&["peers"]);
    assert_eq!(cli["providers"].as_array().unwrap().len(), 8);

    // More shards than providers: refused up front, saying why.
    let small = cluster.client.path("small");
    std::fs::write(&small, pseudo_random(10_000, 1)).unwrap();
    let out = cluster.client.run(&["client", "put", small.to_str().unwrap(), "--data", "6", "--parity", "4"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot place 10 shards") && err.contains('8'), "{err}");

    // 20 objects of varied sizes, k = 4, m = 2.
    let sizes = [
        1usize,
        100,
        1023,
        1024,
        4095,
        65_536,
        65_537,
        200_000,
        262_144,
        300_001,
        524_288,
        777_777,
        1 << 20,
        1_048_577,
        1_500_000,
        2 << 20,
        2_500_000,
        3_000_000,
        3_145_728,
        4 << 20,
    ];
    let mut objects = Vec::new();
    for (i, size) in sizes.iter().enumerate() {
        let data = pseudo_random(*size, 1000 + i as u64);
        let file = cluster.client.path(&format!("in-{i}"));
        std::fs::write(&file, &data).unwrap();
        let put =
            cluster.client_json(&["client", "put", file.to_str().unwrap(), "--data", "4", "--parity", "2"]);
        let id = put["id"].as_str().unwrap().to_string();
        let holders: HashSet<&str> =
            put["holders"].as_array().unwrap().iter().map(|h| h["peer"].as_str().unwrap()).collect();
        assert_eq!(holders.len(), 6, "six distinct holders for {size} bytes: {put}");
        objects.push((id, data, put));
    }

    for (i, (id, data, _)) in objects.iter().enumerate() {
        let out = cluster.client.path(&format!("out-{i}"));
        let got = cluster.client_json(&["client", "get", id, "-o", out.to_str().unwrap()]);
        assert_eq!(std::fs::read(&out).unwrap(), *data, "object {i} read back differs: {got}");
    }

    // While every provider is up and answering, none of them may be taken for dead: a busy
    // holder (many challenges at once, a client reading) is not a failing one.
    for (i, p) in cluster.providers.iter().enumerate() {
        let log = p.node.log();
        assert!(
            !log.contains("repairing:") && !log.contains("repair plan saved"),
            "provider {i} repaired a live holder's shard:\n{log}"
        );
    }

    // Kill two providers that hold shards of the first object.
    let first_holders: Vec<String> = objects[0].2["holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["peer"].as_str().unwrap().to_string())
        .collect();
    let victims: Vec<usize> = cluster
        .providers
        .iter()
        .enumerate()
        .filter(|(_, p)| first_holders.contains(&p.peer_id))
        .map(|(i, _)| i)
        .take(2)
        .collect();
    assert_eq!(victims.len(), 2);
    for v in &victims {
        cluster.kill(*v);
    }
    let dead: Vec<String> = victims.iter().map(|v| cluster.providers[*v].peer_id.clone()).collect();

    for (i, (id, data, _)) in objects.iter().enumerate() {
        let out = cluster.client.path(&format!("again-{i}"));
        let got = cluster.client_json(&["client", "get", id, "-o", out.to_str().unwrap()]);
        assert_eq!(std::fs::read(&out).unwrap(), *data, "object {i} after the kills: {got}");
        for u in got["used"].as_array().unwrap() {
            assert!(!dead.contains(&u["peer"].as_str().unwrap().to_string()), "used a dead holder: {got}");
        }
    }

    // Repair: within a bounded time every object again has k + m shards, each verified by a
    // challenge, on live providers only.
    let mut repaired = 0;
    for (i, (id, _, put)) in objects.iter().enumerate() {
        let report = wait_for(Duration::from_secs(120), &format!("object {i} to be repaired"), || {
            let out = cluster.client.run(&["client", "check", id, "--json"]);
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            (out.status.success() && v["verified"] == 6).then_some(v)
        });
        let holders: HashSet<&str> =
            report["holders"].as_array().unwrap().iter().map(|h| h["peer"].as_str().unwrap()).collect();
        assert_eq!(holders.len(), 6, "six distinct live holders: {report}");
        for d in &dead {
            assert!(!holders.contains(d.as_str()), "dead provider still a holder: {report}");
        }
        // Objects that lost a holder got a new holder list; the others kept theirs.
        let lost =
            put["holders"].as_array().unwrap().iter().any(|h| dead.iter().any(|d| h["peer"] == d.as_str()));
        assert_eq!(report["version"].as_u64().unwrap() >= 2, lost, "holder list version: {report}");
        repaired += usize::from(lost);
    }
    assert!(repaired >= 1);
    // And the repaired objects still read back.
    let out = cluster.client.path("after-repair");
    cluster.client_json(&["client", "get", &objects[19].0, "-o", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out).unwrap(), objects[19].1);
}
