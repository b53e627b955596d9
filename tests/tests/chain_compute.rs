//! End to end on a real anvil chain with real agents and lavapipe: a client posts a render job;
//! a lazy provider (a fault-injection build rendering an eighth of the samples) takes it, the
//! drawn verifiers re-render their tiles, vote it down, and it is slashed; the job goes back to
//! the market, an honest provider runs it and is paid, and the client gets the image. Then an
//! inference job upscales that image (its output object) with the shipped model, and is paid.
//! Every BIG moved is checked against the chain's events (the lazy provider's slash refills the
//! escrow, the rest is burned; `--keep` puts the upscaled image under a storage deal). Then an
//! agent turned to `verify = false` leaves the verifier pool, and a verifier that is down when
//! drawn makes the check inconclusive: it is drawn again without it, passes, and the stopped
//! verifier enrolls again when it is back.
//!
//! Needs the agent built with `--features bigfile-agent/fault-injection`.

use std::time::Duration;

use bigfile_chain::alloy::primitives::{Address, U256};
use bigfile_chain::bindings::{ComputeMarket, ProviderRegistry};
use bigfile_chain::deploy::BIG_UNIT;
use bigfile_chain::devnet::BIGFILE_NETWORK;
use bigfile_tests::chain::{Chain, devnet_up};
use bigfile_tests::{Cluster, wait_for};

const PROVIDERS: usize = 4;
const LAZY: usize = 0;
const HONEST: usize = 3;

fn example(path: &str) -> String {
    format!("{}/../examples/{path}", env!("CARGO_MANIFEST_DIR"))
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(png.len() > 24 && png.starts_with(b"\x89PNG\r\n\x1a\n") && &png[12..16] == b"IHDR", "not a PNG");
    let word = |at: usize| u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
    (word(16), word(20))
}

#[test]
fn a_lazy_render_is_slashed_then_render_and_infer_jobs_are_paid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (devnet, options) = devnet_up(dir.path(), PROVIDERS, Some(1), 10);
    let file = devnet.file().clone();
    let contracts = file.network(BIGFILE_NETWORK).expect("network").contracts.expect("contracts");
    let chain = Chain::connect(&file);
    let market = contracts.compute_market;
    let address = |name: &str| file.account(name).expect("account").address;
    let providers: Vec<Address> = (1..=PROVIDERS).map(|i| address(&format!("provider-{i}"))).collect();
    let client = address("client-1");
    let stake = U256::from(2_000u128 * BIG_UNIT);

    // Every agent verifies; none takes jobs yet.
    let mut cluster = Cluster::start_on_chain(PROVIDERS, &devnet.file_path(), "2000", |t| {
        t.replace("poll_interval_ms = 1000", "poll_interval_ms = 250")
            .replace("confirmations = 2", "confirmations = 1")
            .replace("take_jobs = true", "take_jobs = false")
    });
    // Each announcement carries the agent's compute devices (lavapipe at least).
    let peers = cluster.providers[1].api_json("/peers").expect("/peers");
    for p in peers["providers"].as_array().expect("providers") {
        let devices: Vec<&str> =
            p["gpus"].as_array().expect("gpus").iter().filter_map(|d| d.as_str()).collect();
        assert!(!devices.is_empty(), "no compute devices announced: {p}");
        assert!(
            devices.iter().all(|d| d.starts_with("gpu ") || d.starts_with("cpu ") || d.starts_with("cuda:")),
            "{devices:?}"
        );
    }

    // The lazy provider takes jobs and skips samples.
    cluster.kill(LAZY);
    cluster.providers[LAZY].node.edit_config(|t| t.replace("take_jobs = false", "take_jobs = true"));
    cluster.providers[LAZY].node.env.push(("BIGFILE_FAULT_COMPUTE_SKIP_SAMPLES".into(), "1".into()));
    cluster.restart(LAZY);
    wait_for(Duration::from_secs(60), "every agent enrolled as a verifier", || {
        (chain.logs::<ComputeMarket::VerifierEnrolled>(market).len() == PROVIDERS).then_some(())
    });

    // The client posts the Cornell box and waits for its image.
    let image = dir.path().join("cornell.png");
    let scene = example("scenes/cornell.json");
    let render = cluster
        .client
        .cmd(&["client", "render", &scene, "--payment", "10", "-o", image.to_str().expect("path"), "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn client render");
    let accepted = wait_for(Duration::from_secs(60), "the lazy provider accepting the job", || {
        chain.logs::<ComputeMarket::JobAccepted>(market).into_iter().next()
    });
    assert_eq!(accepted.provider, providers[LAZY]);

    // Only now does the honest provider take jobs.
    cluster.kill(HONEST);
    cluster.providers[HONEST].node.edit_config(|t| t.replace("take_jobs = false", "take_jobs = true"));
    cluster.restart(HONEST);

    let failed = wait_for(Duration::from_secs(120), "the lazy result voted down", || {
        chain.logs::<ComputeMarket::JobFailed>(market).into_iter().next()
    });
    assert_eq!(failed.provider, providers[LAZY]);
    assert!(
        failed.mismatches > failed.matches,
        "{} mismatches, {} matches",
        failed.mismatches,
        failed.matches
    );
    assert_eq!(failed.slashed, stake / U256::from(10), "10 % of the lazy provider's stake");
    let registry = ProviderRegistry::new(chain.registry, &chain.provider);
    assert_eq!(chain.block(registry.stakeOf(providers[LAZY]).call()).expect("stake"), stake - failed.slashed);

    // The honest provider is killed a quarter into the render and resumes from its sled tiles.
    let accepted =
        wait_for(Duration::from_secs(120), "the honest provider accepting the re-posted job", || {
            chain
                .logs::<ComputeMarket::JobAccepted>(market)
                .into_iter()
                .find(|a| a.provider == providers[HONEST])
        });
    assert_eq!(accepted.jobId, U256::from(1));
    wait_for(Duration::from_secs(120), "the honest provider's first progress", || {
        cluster.providers[HONEST].node.log().contains("compute job progress").then_some(())
    });
    // Its /status shows the job running, tile by tile.
    let status = cluster.providers[HONEST].api_json("/status").expect("/status");
    let running = status["jobs"].as_array().expect("jobs in /status");
    assert!(
        running
            .iter()
            .any(|j| j["job_id"] == 1 && j["attempt"] == 1 && j["done"].as_u64().is_some_and(|d| d >= 4)),
        "{status}"
    );
    cluster.kill(HONEST);
    cluster.restart(HONEST);

    let paid = wait_for(Duration::from_secs(120), "the re-posted job paid", || {
        chain.logs::<ComputeMarket::JobPaid>(market).into_iter().next()
    });
    assert_eq!(paid.provider, providers[HONEST], "the honest provider ran the re-posted job");
    let log = cluster.providers[HONEST].node.log();
    assert!(log.contains("compute job resumes"), "no resume after the restart");
    wait_for(Duration::from_secs(30), "the committed result counted in /metrics", || {
        (cluster.providers[HONEST].metric("bigfile_compute_jobs_committed_total")? == 1).then_some(())
    });
    assert!(cluster.providers[HONEST].metric("bigfile_compute_job_tiles_total").is_some_and(|t| t > 0));
    // Votes in /metrics equal the chain's Voted events of the verifiers that were never restarted.
    let votes = chain.logs::<ComputeMarket::Voted>(market);
    for i in [1, 2] {
        for (name, matches) in
            [("bigfile_compute_votes_match_total", true), ("bigfile_compute_votes_mismatch_total", false)]
        {
            let on_chain =
                votes.iter().filter(|v| v.verifier == providers[i] && v.matches == matches).count();
            let counted = wait_for(Duration::from_secs(30), name, || {
                cluster.providers[i].metric(name).filter(|n| *n as usize == on_chain)
            });
            assert_eq!(counted as usize, on_chain);
        }
    }
    let out = render.wait_with_output().expect("client render");
    assert!(out.status.success(), "client render failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("client render --json");
    assert_eq!(report["attempts"], 2, "{report}");
    assert_eq!(report["provider"].as_str().map(|s| s.parse::<Address>().ok()), Some(Some(providers[HONEST])));
    let png = std::fs::read(&image).expect("the client wrote the image");
    assert_eq!(png_size(&png), (128, 128));

    // The same image rendered locally passes `compute verify`: the paid result is honest.
    let verify =
        cluster.client.run(&["compute", "verify", &scene, image.to_str().expect("path"), "--tiles", "2"]);
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stdout));

    // Inference on the render's output object with the shipped model, stored by the client.
    let model = cluster.client_json(&[
        "client",
        "put",
        &example("models/espcn-x2.safetensors"),
        "--data",
        "1",
        "--parity",
        "1",
        "--no-deal",
    ]);
    let model_id = model["id"].as_str().expect("model id").to_string();
    let render_output = report["output_id"].as_str().expect("output id").to_string();
    let upscaled = dir.path().join("upscaled.png");
    let infer = cluster.client_json(&[
        "client",
        "infer",
        "--model",
        &model_id,
        "--input",
        &render_output,
        "--payment",
        "5",
        "-o",
        upscaled.to_str().expect("path"),
        "--keep",
        "--data",
        "2",
        "--parity",
        "1",
    ]);
    assert_eq!(infer["attempts"], 1, "{infer}");
    // `--keep`: the upscaled image is stored again, under a storage deal the client paid for.
    let kept_deal = infer["kept"]["deal"]["deal_id"].as_u64().expect("--keep made a deal");
    let deposit =
        bigfile_agent::chain::parse_big(infer["kept"]["deal"]["deposit"].as_str().expect("deposit"))
            .expect("deposit");
    let created = chain.logs::<bigfile_chain::bindings::StorageMarket::DealCreated>(chain.market);
    assert!(
        created.iter().any(|d| d.dealId == U256::from(kept_deal) && d.client == client),
        "DealCreated for the kept output: {created:?}"
    );
    let png = std::fs::read(&upscaled).expect("the client wrote the upscaled image");
    assert_eq!(png_size(&png), (256, 256));

    // The accounting, from the chain's events.
    let view = ComputeMarket::new(market, &chain.provider);
    let all_paid = chain.logs::<ComputeMarket::JobPaid>(market);
    assert_eq!(all_paid.len(), 2);
    let payments = U256::from(15u128 * BIG_UNIT);
    let total_paid: U256 = all_paid.iter().map(|p| p.paid + p.fees).sum();
    // The failed check's fees (and those of any inconclusive round before it) came out of the
    // render's escrow too, and the lazy provider's slash refilled them; the rest was burned.
    let fee = U256::from(10u128 * BIG_UNIT) / U256::from(10) / U256::from(2);
    let voted_on_failure = U256::from(failed.mismatches + failed.matches);
    let inconclusive: U256 =
        chain.logs::<ComputeMarket::CheckInconclusive>(market).iter().map(|i| i.fees).sum();
    assert_eq!(
        total_paid + fee * voted_on_failure + inconclusive,
        payments + failed.refilled,
        "escrow paid out whole"
    );
    assert!(failed.refilled > U256::ZERO && failed.refilled < failed.slashed, "{failed:?}");
    let burn = chain.block(view.BURN().call()).expect("BURN");
    assert_eq!(chain.balance(burn), failed.slashed - failed.refilled, "the rest of the slash is burned");
    let initial = options.big_per_account;
    assert_eq!(chain.balance(client), initial - payments - deposit, "the client is made whole, no more");
    let claimable = chain.block(view.claimable(providers[HONEST]).call()).expect("claimable");
    assert!(claimable >= paid.paid, "the honest provider can claim its pay");
    let claim = cluster.providers[HONEST].node.json(&["rewards", "claim"]);
    // Storage rewards from a slot of the kept output's deal may be in the claim too.
    let claimed =
        bigfile_agent::chain::parse_big(claim["claimed"].as_str().expect("claimed")).expect("claimed");
    assert!(claimed >= claimable, "{claim}");
    assert_eq!(claim["compute_claimable"], "0", "{claim}");
    assert_eq!(chain.balance(providers[HONEST]), initial - stake + claimed, "the honest provider's balance");

    // The honest provider's side: `jobs list` shows the job it ran, paid.
    let jobs = cluster.providers[HONEST].node.json(&["jobs", "list"]);
    let ran = jobs
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["job_id"] == 1)
        .unwrap_or_else(|| panic!("job 1 in jobs list: {jobs}"));
    assert_eq!(ran["role"], "provider");
    assert_eq!(ran["state"], "done");
    let shown = cluster.providers[HONEST].node.json(&["jobs", "show", "1"]);
    assert_eq!(shown["spec"]["kind"], "render", "{shown}");
    assert_eq!(shown["verifiers"].as_array().map(Vec::len), Some(2), "{shown}");

    // A job asking more wall time than any agent allows is declined by all, with the reason,
    // and the client withdraws it: the payment comes back whole.
    let before = chain.balance(client);
    let greedy = cluster.client_json(&[
        "client",
        "render",
        &scene,
        "--payment",
        "3",
        "--wall-secs",
        "4000",
        "--no-wait",
    ]);
    let greedy_id = greedy["job_id"].as_u64().expect("job id");
    wait_for(Duration::from_secs(60), "the greedy job declined for its wall time", || {
        cluster.providers[HONEST]
            .node
            .log()
            .lines()
            .any(|l| {
                l.contains("not taking compute job")
                    && l.contains(&format!("job={greedy_id}"))
                    && l.contains("max_wall_secs")
            })
            .then_some(())
    });
    assert_eq!(chain.balance(client), before - U256::from(3u128 * BIG_UNIT));
    let cancelled = cluster.client_json(&["jobs", "cancel", &greedy_id.to_string()]);
    assert_eq!(cancelled["refund"], "3", "{cancelled}");
    assert_eq!(chain.balance(client), before);
    let again = cluster.client.run(&["jobs", "cancel", &greedy_id.to_string()]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("is cancelled"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // An operator turns compute.verify off: the agent leaves the verifier pool it had joined.
    const QUIT: usize = 1;
    let member = || chain.block(view.isVerifier(providers[QUIT]).call()).expect("isVerifier");
    assert!(member(), "every agent enrolled");
    cluster.kill(QUIT);
    cluster.providers[QUIT].node.edit_config(|t| t.replace("verify = true", "verify = false"));
    cluster.restart(QUIT);
    wait_for(Duration::from_secs(60), "the agent leaving the verifier pool", || (!member()).then_some(()));
    assert!(chain.logs::<ComputeMarket::VerifierLeft>(market).iter().any(|l| l.verifier == providers[QUIT]));

    // A drawn verifier that is down: the pool is now the lazy provider (stopped here) and
    // provider 2, so both are drawn for the honest provider's next result; one match vote of two
    // seats decides nothing, the check is drawn again without the silent one, and passes.
    cluster.kill(LAZY);
    let second = dir.path().join("second.png");
    let report = cluster.client_json(&[
        "client",
        "render",
        &scene,
        "--payment",
        "10",
        "-o",
        second.to_str().expect("path"),
    ]);
    let job = U256::from(report["job_id"].as_u64().expect("job id"));
    assert_eq!(report["provider"].as_str().map(|s| s.parse::<Address>().ok()), Some(Some(providers[HONEST])));
    let rounds: Vec<_> = chain
        .logs::<ComputeMarket::CheckInconclusive>(market)
        .into_iter()
        .filter(|i| i.jobId == job)
        .collect();
    assert!(!rounds.is_empty(), "no inconclusive round: {report}");
    assert_eq!((rounds[0].matches, rounds[0].mismatches), (1, 0), "{rounds:?}");
    let lazy_member = || chain.block(view.isVerifier(providers[LAZY]).call()).expect("isVerifier");
    assert!(!lazy_member(), "the silent verifier left the pool");
    let done = chain.block(view.getJob(job).call()).expect("getJob");
    assert_eq!(done.attempt, 0, "passed, not failed: {done:?}");
    // Back up, it enrolls again.
    cluster.restart(LAZY);
    wait_for(Duration::from_secs(60), "the silent verifier enrolling again", || lazy_member().then_some(()));
}
