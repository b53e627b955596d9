use super::*;

fn check(text: &str) -> Result<Config, String> {
    Config::from_toml(text, Path::new("/tmp/cfgtest/config.toml")).map_err(|e| e.to_string())
}

#[test]
fn the_file_init_writes_parses_validates_and_means_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let text = render_default(&InitValues {
        data_dir: dir.path(),
        api: SocketAddr::from(([127, 0, 0, 1], 7777)),
        password_file: Some(Path::new("pw")),
        listen: &[],
        bootstrap: &[],
        chain: None,
    });
    let cfg = Config::from_toml(&text, &dir.path().join("config.toml")).unwrap();
    let mut expected = Config::default();
    expected.node.data_dir = dir.path().to_owned();
    expected.node.password_file = Some("pw".into());
    expected.api.listen = SocketAddr::from(([127, 0, 0, 1], 7777));
    expected.resolve_paths(dir.path());
    assert_eq!(cfg, expected);

    // Flags from `init` land in the file.
    let boot = "/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWLDUuGMcFjp2yHxhTwbXRqkJXVmxS5WV5FwwZ7NuRFG6i".to_string();
    let text = render_default(&InitValues {
        data_dir: dir.path(),
        api: SocketAddr::from(([127, 0, 0, 1], 7777)),
        password_file: None,
        listen: &["/ip4/127.0.0.1/tcp/4002".into()],
        bootstrap: std::slice::from_ref(&boot),
        chain: Some(ChainInit {
            rpc_url: "http://127.0.0.1:9545".into(),
            chain_id: 1_337_002,
            storage_market: "0x5FbDB2315678afecb367f032d93F642f64180aa3".into(),
            compute_market: "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512".into(),
            start_block: 7,
        }),
    });
    let cfg = Config::from_toml(&text, &dir.path().join("config.toml")).unwrap();
    assert_eq!(cfg.network.listen, vec!["/ip4/127.0.0.1/tcp/4002".to_string()]);
    assert_eq!(cfg.network.bootstrap, vec![boot]);
    assert!(cfg.chain.enabled);
    assert_eq!((cfg.chain.chain_id, cfg.chain.start_block), (1_337_002, 7));
    assert_eq!(cfg.chain.rpc_url, "http://127.0.0.1:9545");
    assert!(cfg.chain.market_address().is_some());
    assert_eq!(
        cfg.chain.compute_market_address().map(|a| a.to_checksum(None)),
        Some("0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512".to_string())
    );
}

#[test]
fn chain_settings_are_checked_when_enabled() {
    let dir = tempfile::tempdir().unwrap();
    // Disabled: nothing about the chain is required.
    check(&with(dir.path(), "[chain]\nenabled = false\n")).unwrap();
    let e = check(&with(
        dir.path(),
        "[chain]\nenabled = true\nrpc_url = \"ftp://x\"\nstorage_market = \"0x12\"\ncompute_market = \"nope\"\n",
    ))
    .unwrap_err();
    assert!(e.contains(":6: chain.rpc_url: `ftp://x` is not an http:// or https:// URL"), "{e}");
    assert!(e.contains(":4: chain.chain_id: must be set"), "{e}");
    assert!(
        e.contains(":7: chain.storage_market: `0x12` is not a 0x-prefixed 20-byte contract address"),
        "{e}"
    );
    assert!(e.contains(":8: chain.compute_market: `nope` is not a 0x-prefixed"), "{e}");
    // Deal defaults are checked only when the chain is enabled.
    check(&with(dir.path(), "[chain.deal]\nperiods = 1\n")).unwrap();
}

#[test]
fn network_addresses_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let e = check(&with(dir.path(), "[network]\nlisten = [\"/ip4/1.2.3/tcp/1\"]\n")).unwrap_err();
    assert!(e.contains(":5: network.listen: `/ip4/1.2.3/tcp/1` is not a multiaddr"), "{e}");
    let e = check(&with(dir.path(), "[network]\nbootstrap = [\"/ip4/127.0.0.1/tcp/1\"]\n")).unwrap_err();
    assert!(e.contains(":5: network.bootstrap: `/ip4/127.0.0.1/tcp/1` must end in /p2p/PEERID"), "{e}");
    let e = check(&with(dir.path(), "[network]\nannounce_interval_secs = 200\n")).unwrap_err();
    assert!(e.contains("network.announcement_max_age_secs: must be at least twice"), "{e}");
    let e = check(&with(dir.path(), "[network]\nbulk_listen = \"7462\"\n")).unwrap_err();
    assert!(e.contains(":5: network.bulk_listen: `7462` is not `auto`, `off` or HOST:PORT"), "{e}");
}

#[test]
fn the_bulk_port_follows_the_listen_address() {
    let mut n = NetworkConfig {
        listen: vec!["/ip4/127.0.0.1/udp/9/quic-v1".into(), "/ip4/10.0.0.1/tcp/9".into()],
        ..NetworkConfig::default()
    };
    assert_eq!(n.bulk(), (Some(SocketAddr::from(([127, 0, 0, 1], 0))), true));
    n.bulk_listen = "0.0.0.0:7462".into();
    assert_eq!(n.bulk(), (Some(SocketAddr::from(([0, 0, 0, 0], 7462))), true));
    n.bulk_listen = "off".into();
    assert_eq!(n.bulk(), (None, false));
    n.bulk_listen = "auto".into();
    n.listen = vec!["/dns4/example.org/tcp/9".into()];
    assert_eq!(n.bulk(), (None, true), "no IP to listen on: no bulk port, downloads still may");
}

fn with(data_dir: &Path, extra: &str) -> String {
    format!("[node]\ndata_dir = {:?}\n\n{extra}", data_dir.display().to_string())
}

#[test]
fn errors_name_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let e = check(&with(dir.path(), "[storage]\ndata = 4\nparity = 0\n")).unwrap_err();
    assert_eq!(e, "/tmp/cfgtest/config.toml:6: storage.parity: must be at least 1");

    let e = check(&with(dir.path(), "[storage]\ndata = 200\nparity = 100\n")).unwrap_err();
    assert!(e.contains(":6: storage.parity: data + parity must be at most 256"), "{e}");

    let e = check(&with(dir.path(), "[storage]\ndata = 0\ncapacity = 0\n")).unwrap_err();
    assert!(e.contains(":5: storage.data: must be at least 1"), "{e}");
    assert!(e.contains(":6: storage.capacity: must be greater than 0"), "{e}");

    let e = check(&with(dir.path(), "[storage]\nparty = 3\n")).unwrap_err();
    assert!(e.starts_with("/tmp/cfgtest/config.toml:5:"), "{e}");
    assert!(e.contains("storage.party") && e.contains("unknown field"), "{e}");

    let e = check(&with(dir.path(), "[storage]\ncapacity = \"lots\"\n")).unwrap_err();
    assert!(e.contains(":5: storage.capacity:") && e.contains("not a size"), "{e}");

    let e = check(&with(dir.path(), "[api]\nlisten = \"0.0.0.0:80\"\n")).unwrap_err();
    assert!(e.contains(":5: api.listen: must be a loopback address"), "{e}");

    let e = check("[storage\n").unwrap_err();
    assert!(e.starts_with("/tmp/cfgtest/config.toml:1"), "{e}");

    let e = check(&with(dir.path(), "[storage]\nsegment_size = 1000\nblock_size = \"3 KiB\"\n")).unwrap_err();
    assert!(e.contains(":5: storage.segment_size") && e.contains(":6: storage.block_size"), "{e}");
}

#[test]
fn unwritable_data_dir_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"").unwrap();
    let e = check(&with(&file.join("sub"), "")).unwrap_err();
    assert!(e.contains(":2: node.data_dir: cannot create"), "{e}");
}

#[test]
fn compute_settings_are_checked_and_become_job_limits() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = check(&with(dir.path(), "[compute]\nmax_output_bytes = \"64 MiB\"\n")).unwrap();
    assert_eq!(cfg.compute.limits().max_output_bytes, 64 << 20);
    assert_eq!(cfg.compute.limits().max_wall_secs, 3600);
    let e = check(&with(
        dir.path(),
        "[compute]\ninfer_device = \"tpu:0\"\nmax_wall_secs = 0\nmax_device_memory = \"1 MiB\"\nbogus = 1\n",
    ))
    .unwrap_err();
    assert!(e.contains("compute.bogus") || e.contains("unknown field `bogus`"), "{e}");
    let e = check(&with(
        dir.path(),
        "[compute]\ninfer_device = \"tpu:0\"\nmax_wall_secs = 0\nmax_device_memory = \"1 MiB\"\n",
    ))
    .unwrap_err();
    assert!(e.contains(":5: compute.infer_device: device: \"tpu:0\" is not an inference device"), "{e}");
    assert!(e.contains(":6: compute.max_wall_secs: must be from 1 to 604800"), "{e}");
    assert!(e.contains(":7: compute.max_device_memory: must be at least 16 MiB"), "{e}");
}
