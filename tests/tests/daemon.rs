//! `bigfile-agent run`: serves /status and /metrics on loopback, scrubs, and stops cleanly on
//! SIGTERM within the configured bound.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::{Duration, Instant};

use bigfile_tests::{Node, free_port, http_get, pseudo_random};

#[test]
fn run_serves_status_and_metrics_and_stops_on_sigterm() {
    let port = free_port();
    let node = Node::init(port);
    let file = node.path("f");
    std::fs::write(&file, pseudo_random(1 << 20, 3)).unwrap();
    let id = node.json(&["store", "put", file.to_str().unwrap()])["id"].as_str().unwrap().to_string();
    node.json(&["store", "damage", &id, "--shard", "5"]);
    // Scrub fast so the test sees it find and repair the damage.
    node.edit_config(|t| t.replace("rate = \"32 MiB\"", "rate = \"512 MiB\""));

    let mut daemon = node.spawn_run();
    let child = &mut daemon.0;
    let start = Instant::now();
    let status = loop {
        if let Some((200, body)) = http_get(port, "/status") {
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            if v["scrub"]["passes_completed"].as_u64().unwrap_or(0) >= 1 {
                break v;
            }
        }
        assert!(child.try_wait().unwrap().is_none(), "agent exited early");
        assert!(start.elapsed() < Duration::from_secs(60), "agent not ready in time");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status["storage"]["objects"], 1);
    assert!(status["peer_id"].as_str().unwrap().starts_with("12D3"));
    assert!(status["address"].as_str().unwrap().starts_with("0x"));
    // A 1 MiB object with k=4 has 256 KiB shards: four 64 KiB blocks, all corrupted, all repaired.
    assert_eq!(status["scrub"]["repaired"], 4, "{status}");

    // The CLI reads the same document from the running daemon.
    let cli = node.json(&["status"]);
    assert_eq!(cli["peer_id"], status["peer_id"]);
    assert_eq!(cli["storage"]["objects"], 1);

    let (code, metrics) = http_get(port, "/metrics").unwrap();
    assert_eq!(code, 200);
    for name in [
        "bigfile_store_used_bytes 1",
        "bigfile_scrub_repaired_blocks_total 4",
        "bigfile_store_disk_bytes_per_stored_byte",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }

    // SIGTERM: clean exit well within the 10 s shutdown bound.
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let t = Instant::now();
    let code = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(t.elapsed() < Duration::from_secs(15), "agent ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(code.success(), "exit status {code}");
    assert_eq!(node.json(&["store", "verify"])["ok"], true);
    let down = node.run(&["status"]);
    assert!(!down.status.success());
    assert!(String::from_utf8_lossy(&down.stderr).contains("the agent is not running"));
}

#[test]
fn a_second_process_is_told_the_store_is_in_use() {
    let port = free_port();
    let node = Node::init(port);
    let _daemon = node.spawn_run();
    let start = Instant::now();
    while http_get(port, "/status").is_none() {
        assert!(start.elapsed() < Duration::from_secs(60), "agent not ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = node.run(&["store", "ls"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use by another process"));
}
