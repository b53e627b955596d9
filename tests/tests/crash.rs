//! SIGKILL during `store put`, again and again: every acknowledged object survives byte for byte
//! and `store verify` finds the accounting exact.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::process::Stdio;
use std::time::{Duration, Instant};

use bigfile_tests::{Node, pseudo_random};

/// Small stripes, so even a short put writes many stripes and blocks.
const CODING: &[&str] = &["--data", "3", "--parity", "2", "--stripe-size", "96 KiB"];

#[test]
fn killed_puts_never_damage_acknowledged_objects() {
    let node = Node::init(0);
    let mut acked: Vec<(String, Vec<u8>)> = Vec::new();
    let mut kills = 0;
    let mut killed_inputs: Vec<Vec<u8>> = Vec::new();
    let mut committed_unacked = 0;
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    // Calibrate: how long does an unkilled put of the largest size take on this machine?
    let max_len = 16 << 20;
    let probe = node.path("probe");
    std::fs::write(&probe, pseudo_random(max_len, 999)).unwrap();
    let t = Instant::now();
    let v = node.json(&[&["store", "put", probe.to_str().unwrap()][..], CODING].concat());
    let full_ms = (t.elapsed().as_millis() as u64).max(20);
    acked.push((v["id"].as_str().unwrap().to_string(), std::fs::read(&probe).unwrap()));

    // At least 20 kills at random moments; puts that finish first make the window shorter.
    let mut window_ms = full_ms;
    let mut i = 0u64;
    while kills < 20 {
        i += 1;
        assert!(i <= 100, "only {kills} kills in 100 puts; the test did not exercise crashes");
        let len = max_len / 2 + (next() % (max_len as u64 / 2)) as usize;
        let data = pseudo_random(len, i);
        let file = node.path(&format!("in-{i}"));
        std::fs::write(&file, &data).unwrap();
        let mut child = node
            .cmd(&[&["store", "put", file.to_str().unwrap(), "--json"][..], CODING].concat())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Kill at a random moment within the put's expected lifetime (process start included).
        let delay = Duration::from_millis(next() % window_ms);
        let start = Instant::now();
        let mut exited = None;
        while start.elapsed() < delay {
            if let Some(st) = child.try_wait().unwrap() {
                exited = Some(st);
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if exited.is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        } else {
            window_ms = (window_ms * 4 / 5).max(10);
        }
        let out = child.wait_with_output().unwrap();
        if out.status.success() {
            // Acknowledged: the id was printed only after the object was durable.
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("put JSON");
            acked.push((v["id"].as_str().unwrap().to_string(), data));
        } else {
            killed_inputs.push(data);
        }
        std::fs::remove_file(&file).unwrap();

        let v = node.json(&["store", "verify"]);
        assert_eq!(v["ok"], true, "after iteration {i}: {v}");
        // A put killed after its commit but before printing the id is stored without an ack;
        // it must then be whole: byte-identical to one of the killed inputs.
        for o in node.json(&["store", "ls"]).as_array().unwrap() {
            let id = o["id"].as_str().unwrap();
            if acked.iter().any(|(a, _)| a == id) {
                continue;
            }
            let out_path = node.path("out");
            node.json(&["store", "get", id, "-o", out_path.to_str().unwrap()]);
            let back = std::fs::read(&out_path).unwrap();
            let pos = killed_inputs.iter().position(|d| *d == back);
            let pos =
                pos.unwrap_or_else(|| panic!("object {id} matches no input: a partial object survived"));
            committed_unacked += 1;
            acked.push((id.to_string(), killed_inputs.swap_remove(pos)));
        }
        assert_eq!(v["counted_objects"].as_u64().unwrap(), acked.len() as u64, "{v}");
        for (id, bytes) in &acked {
            let out_path = node.path("out");
            node.json(&["store", "get", id, "-o", out_path.to_str().unwrap()]);
            let back = std::fs::read(&out_path).unwrap();
            assert!(back == *bytes, "object {id} differs after iteration {i}");
        }
    }
    eprintln!("{kills} kills ({committed_unacked} after the commit), {} objects intact", acked.len());
}
