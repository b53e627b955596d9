//! Bad chain input from the CLI: each a clear error, a non-zero exit, and nothing sent or lost.

use bigfile_chain::alloy::providers::{Provider, ProviderBuilder};
use bigfile_chain::devnet::{BIGFILE_NETWORK, Devnet, DevnetOptions};
use bigfile_tests::Node;

fn fails(node: &Node, args: &[&str]) -> String {
    let out = node.run(args);
    assert!(!out.status.success(), "{args:?} should fail: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_chain_input_is_refused_clearly_before_anything_is_sent() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let options = DevnetOptions { providers: 1, clients: 1, block_time: None, ..DevnetOptions::default() };
    let devnet = rt.block_on(Devnet::up(dir.path(), &options)).expect("devnet up");
    let file = devnet.file_path();
    let file = file.to_str().expect("path");
    let network = devnet.file().network(BIGFILE_NETWORK).expect("network").clone();
    let provider = ProviderBuilder::new().connect_http(network.rpc_url.parse().expect("url"));
    let node = Node::init_with(
        tempfile::tempdir().expect("tempdir"),
        0,
        &["--devnet", file, "--account", "provider-1"],
    );
    let me: bigfile_chain::alloy::primitives::Address =
        node.info["address"].as_str().expect("address").parse().expect("address");
    let nonce = || {
        rt.block_on(std::future::IntoFuture::into_future(provider.get_transaction_count(me))).expect("nonce")
    };

    // A stake below the registry's minimum: refused before any transaction.
    let e = fails(&node, &["register", "--stake", "5"]);
    assert!(e.contains("the registry's minimum stake is 1000 BIG, more than 5 BIG; nothing was sent"), "{e}");
    assert_eq!(nonce(), 0);
    let e = fails(&node, &["register", "--stake", "lots"]);
    assert!(e.contains("--stake: `lots` is not an amount of BIG"), "{e}");

    // More BIG than the account holds: refused before any transaction.
    let e = fails(&node, &["register", "--stake", "1000000"]);
    assert!(e.contains("less than the stake") && e.contains("nothing was sent"), "{e}");
    assert_eq!(nonce(), 0);

    // The wrong chain id: refused before signing anything.
    let original = std::fs::read_to_string(&node.config).expect("config");
    let chain_id = format!("chain_id = {}", network.chain_id);
    node.edit_config(|t| t.replace(&chain_id, "chain_id = 31337"));
    let e = fails(&node, &["register", "--stake", "1000"]);
    assert!(e.contains(&format!("serves chain id {} but chain.chain_id is 31337", network.chain_id)), "{e}");
    assert_eq!(nonce(), 0);

    // An unreachable RPC names the endpoint.
    std::fs::write(&node.config, &original).expect("restore config");
    let closed = format!("http://127.0.0.1:{}", bigfile_tests::free_port());
    node.edit_config(|t| t.replace(&network.rpc_url, &closed));
    let e = fails(&node, &["rewards"]);
    assert!(e.contains("unreachable") && e.contains(&closed), "{e}");

    // A wrong keystore password.
    std::fs::write(&node.config, &original).expect("restore config");
    std::fs::write(node.path("password"), "not the password\n").expect("password");
    let e = fails(&node, &["rewards"]);
    assert!(e.contains("wrong password for keystore"), "{e}");

    // With everything right, the same node registers.
    std::fs::write(node.path("password"), "test password\n").expect("password");
    let ok = node.json(&["register", "--stake", "1000"]);
    assert_eq!(ok["can_serve"], true, "{ok}");
    drop(devnet);
}
