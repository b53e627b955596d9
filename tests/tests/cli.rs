//! Bad input of every kind gets a clear error, a non-zero exit code, and loses nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use bigfile_tests::{Node, agent_bin, pseudo_random};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn init_writes_a_config_that_checks_and_refuses_to_overwrite() {
    let node = Node::init(0);
    let v = node.json(&["config", "check"]);
    assert_eq!(v["ok"], true);
    let again = std::process::Command::new(agent_bin())
        .args(["init", "--dir"])
        .arg(node.config.parent().unwrap())
        .arg("--password-file")
        .arg(node.path("password"))
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(stderr(&again).contains("already exists"), "{}", stderr(&again));
    let no_pw = std::process::Command::new(agent_bin())
        .args(["init", "--dir"])
        .arg(node.path("other"))
        .env_remove("CREDENTIALS_DIRECTORY")
        .output()
        .unwrap();
    assert!(!no_pw.status.success());
    assert!(stderr(&no_pw).contains("--password-file"), "{}", stderr(&no_pw));
}

#[test]
fn bad_configs_name_line_and_key() {
    let node = Node::init(0);
    let original = std::fs::read_to_string(&node.config).unwrap();
    let cases = [
        ("parity = 2", "parity = 0", "storage.parity: must be at least 1"),
        ("data = 4", "data = 0", "storage.data: must be at least 1"),
        ("parity = 2", "parity = 253", "storage.parity: data + parity must be at most 256"),
        ("enabled = true\nlisten", "enabled = true\nbogus = 1\nlisten", "unknown field"),
        ("capacity = \"100 GiB\"", "capacity = \"a lot\"", "storage.capacity"),
    ];
    for (from, to, expect) in cases {
        let text = original.replacen(from, to, 1);
        assert_ne!(text, original, "{from} not in template");
        std::fs::write(&node.config, &text).unwrap();
        let out = node.run(&["config", "check"]);
        assert!(!out.status.success(), "{to} accepted");
        let err = stderr(&out);
        let line =
            text.lines().position(|l| to.lines().any(|t| l == t && !t.starts_with("enabled"))).unwrap() + 1;
        assert!(err.contains(&format!("config.toml:{line}:")), "{to}: {err}");
        assert!(err.contains(expect), "{to}: {err}");
    }
    std::fs::write(&node.config, "[storage\n").unwrap();
    assert!(stderr(&node.run(&["config", "check"])).contains("config.toml:1"));
    let missing = node.path("nope.toml");
    let out = std::process::Command::new(agent_bin())
        .arg("--config")
        .arg(&missing)
        .args(["config", "check"])
        .output()
        .unwrap();
    assert!(!out.status.success() && stderr(&out).contains("cannot read config"), "{}", stderr(&out));
}

#[test]
fn bad_store_requests_are_refused_without_losing_data() {
    let node = Node::init(0);
    let data = pseudo_random(300_000, 1);
    let file = node.path("f");
    std::fs::write(&file, &data).unwrap();
    let f = file.to_str().unwrap();
    let id = node.json(&["store", "put", f])["id"].as_str().unwrap().to_string();

    let unknown = format!("0x{}", "ab".repeat(32));
    let refused = [
        (vec!["store", "put", f, "--data", "0"], "k) must be at least 1"),
        (vec!["store", "put", f, "--data", "200", "--parity", "100"], "k + m must be at most 256"),
        (vec!["store", "put", "/definitely/not/here"], "opening /definitely/not/here"),
        (vec!["store", "get", "0x1234", "-o", "/tmp/x"], "is not an object id"),
        (vec!["store", "get", &unknown, "-o", "/tmp/x"], "is not in this store"),
        (vec!["store", "put", f, "--stripe-size", "1 TiB"], "--stripe-size"),
    ];
    for (args, expect) in &refused {
        let out = node.run(args);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr(&out).contains(expect), "{args:?}: {}", stderr(&out));
    }
    // Capacity: shrink it below what a second object needs.
    node.edit_config(|t| t.replace("capacity = \"100 GiB\"", "capacity = \"600 KiB\""));
    let out = node.run(&["store", "put", f, "--parity", "3"]);
    assert!(stderr(&out).contains("capacity exceeded"), "{}", stderr(&out));
    // Nothing already stored was touched by any refusal.
    let v = node.json(&["store", "verify"]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["counted_objects"], 1);
    let back = node.path("back");
    node.json(&["store", "get", &id, "-o", back.to_str().unwrap()]);
    assert!(std::fs::read(&back).unwrap() == data);
}

#[test]
fn damage_then_get_rebuilds_and_reports_repairs() {
    let node = Node::init(0);
    let data = pseudo_random(3 << 20, 7);
    let file = node.path("f");
    std::fs::write(&file, &data).unwrap();
    let id = node.json(&["store", "put", file.to_str().unwrap(), "--data", "4", "--parity", "2"])["id"]
        .as_str()
        .unwrap()
        .to_string();
    node.json(&["store", "damage", &id, "--shard", "1"]);
    node.json(&["store", "damage", &id, "--shard", "2", "--delete"]);
    let bad = node.run(&["store", "verify", "--json"]);
    assert!(!bad.status.success(), "verify must fail on damage");
    let back = node.path("back");
    let r = node.json(&["store", "get", &id, "-o", back.to_str().unwrap()]);
    assert!(std::fs::read(&back).unwrap() == data);
    let shards: std::collections::BTreeSet<u64> =
        r["damaged"].as_array().unwrap().iter().map(|d| d["shard"].as_u64().unwrap()).collect();
    assert_eq!(shards, [1, 2].into_iter().collect());
    assert!(r["damaged"].as_array().unwrap().iter().all(|d| d["repaired"] == true), "{r}");
    assert_eq!(node.json(&["store", "verify"])["ok"], true);
    // Three lost shards out of 4+2 cannot be rebuilt: a clear error, and nothing half-written.
    for s in 0..3 {
        node.json(&["store", "damage", &id, "--shard", &s.to_string(), "--delete"]);
    }
    let lost = node.path("lost");
    let out = node.run(&["store", "get", &id, "-o", lost.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("has 3 intact shards and needs 4"), "{}", stderr(&out));
    assert!(!lost.exists(), "a failed get must not leave a partial file");
}
