//! A nearly full disk: puts that could fill it are refused with a clear error before anything is
//! written, the store stays consistent, and once space is freed the same put succeeds.
//! Needs root to mount a small tmpfs; CI runs as root.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use bigfile_tests::{Node, pseudo_random};

#[test]
fn a_full_disk_is_a_clear_error_and_loses_nothing() {
    if euid() != 0 {
        eprintln!("SKIPPED: mounting a tmpfs needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().to_str().unwrap().to_string();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=96m", "tmpfs", &mnt])
        .status()
        .unwrap();
    assert!(ok.success(), "mount tmpfs failed");
    struct Unmount(String);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());

    let node = Node::init_in(tempfile::TempDir::new_in(&mnt).unwrap(), 0);
    node.edit_config(|t| {
        t.replace("cache_size = \"256 MiB\"", "cache_size = \"8 MiB\"")
            .replace("disk_reserve = \"1 GiB\"", "disk_reserve = \"8 MiB\"")
    });
    // Inputs live outside the tmpfs so only the store competes for its space.
    let inputs = tempfile::tempdir().unwrap();
    let small = pseudo_random(2 << 20, 1);
    let small_file = inputs.path().join("small");
    std::fs::write(&small_file, &small).unwrap();
    let id = node.json(&["store", "put", small_file.to_str().unwrap()])["id"].as_str().unwrap().to_string();

    // Something else fills most of the disk.
    let ballast = node.dir.path().join("ballast");
    std::fs::write(&ballast, vec![1u8; 60 << 20]).unwrap();
    let big = pseudo_random(12 << 20, 2);
    let big_file = inputs.path().join("big");
    std::fs::write(&big_file, &big).unwrap();
    let out = node.run(&["store", "put", big_file.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("disk full") && err.contains("storage.disk_reserve"), "{err}");

    let v = node.json(&["store", "verify"]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["counted_objects"], 1, "{v}");
    let back = inputs.path().join("back");
    node.json(&["store", "get", &id, "-o", back.to_str().unwrap()]);
    assert!(std::fs::read(&back).unwrap() == small);

    // Space freed: the same put now goes through.
    std::fs::remove_file(&ballast).unwrap();
    let big_id = node.json(&["store", "put", big_file.to_str().unwrap()])["id"].as_str().unwrap().to_string();
    node.json(&["store", "get", &big_id, "-o", back.to_str().unwrap()]);
    assert!(std::fs::read(&back).unwrap() == big);
    assert_eq!(node.json(&["store", "verify"])["ok"], true);
}

fn euid() -> u32 {
    // The effective uid is the second field of `Uid:` in /proc/self/status.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|u| u.parse().ok())
        .unwrap_or(u32::MAX)
}
