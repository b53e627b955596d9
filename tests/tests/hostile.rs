//! Hostile peers against real agents: a libp2p node in the test process sends garbage frames,
//! oversized frames, shards that do not match their manifest and badly signed announcements.
//! Each such peer is disconnected and banned, nothing it sent is kept or believed, and the honest
//! agents keep serving.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is the failure report

use std::time::Duration;

use bigfile_agent::net::protocol::{Request, Response};
use bigfile_storage::Geometry;
use bigfile_storage::coding::encode_object;
use bigfile_tests::hostile::{Hostile, bad_announcement, decode_response, encode_request, frame};
use bigfile_tests::{Cluster, Provider, pseudo_random};
use libp2p::{Multiaddr, PeerId};

/// Bound on every wait for the agent to react.
const WAIT: Duration = Duration::from_secs(25);

type Check = Result<(), String>;

fn multiaddr(p: &Provider) -> Multiaddr {
    p.addr.parse().expect("provider multiaddr")
}

fn agent_id(p: &Provider) -> PeerId {
    p.peer_id.parse().expect("provider peer id")
}

/// The peer ids a provider's `/peers` lists under `network.<field>`.
fn net_list(p: &Provider, field: &str) -> Option<Vec<String>> {
    let v = p.api_json("/peers")?;
    Some(v["network"][field].as_array()?.iter().filter_map(|s| s.as_str().map(String::from)).collect())
}

/// The peer ids of the providers a provider believes in.
fn provider_ids(p: &Provider) -> Option<Vec<String>> {
    let v = p.api_json("/peers")?;
    Some(v["providers"].as_array()?.iter().filter_map(|a| a["peer_id"].as_str().map(String::from)).collect())
}

/// `(used_bytes, shards)` from a provider's `/status`.
fn storage_use(p: &Provider) -> Option<(u64, u64)> {
    let v = p.api_json("/status")?;
    Some((v["storage"]["used_bytes"].as_u64()?, v["storage"]["shards"].as_u64()?))
}

/// A well-formed request the agent would answer for any peer it still talks to.
fn harmless_request() -> Vec<u8> {
    encode_request(&Request::HasShard { id: [7; 32], index: 0 })
}

/// The agent has dropped the hostile peer, lists it as banned, and refuses to talk to it again.
fn expect_banned(h: &mut Hostile, target: &Provider, what: &str) -> Check {
    let (me, agent, addr) = (h.peer_id(), agent_id(target), multiaddr(target));
    if !h.wait_disconnected(&agent, WAIT) {
        return Err(format!("{what}: the agent kept the connection open for {WAIT:?}\n{}", h.events()));
    }
    let banned = h.wait_for(WAIT, || net_list(target, "banned")?.contains(&me.to_string()).then_some(()));
    if banned.is_none() {
        return Err(format!(
            "{what}: {me} is not in the agent's banned list after {WAIT:?}: {:?}\n{}",
            target.api_json("/peers").map(|v| v["network"].clone()),
            h.events()
        ));
    }
    match h.request(&addr, harmless_request(), WAIT) {
        Err(_) => {}
        Ok(body) => {
            return Err(format!(
                "{what}: a banned peer's later request was answered: {:?}",
                decode_response(&body)
            ));
        }
    }
    if net_list(target, "connected").is_some_and(|c| c.contains(&me.to_string())) {
        return Err(format!("{what}: the banned peer is connected again"));
    }
    Ok(())
}

/// 1. A frame whose length is fine but whose bytes are not a request.
fn garbage_frame(target: &Provider) -> Check {
    let mut h = Hostile::new();
    let addr = multiaddr(target);
    h.connect(&addr, WAIT).map_err(|e| format!("garbage frame: cannot connect: {e}"))?;
    // Request variant 200 (there is no such request), then noise.
    let garbage = [0xc8, 0x01, 0xde, 0xad, 0xbe, 0xef, 0x00, 0xff, 0x13, 0x37];
    assert!(bigfile_agent::net::protocol::decode_request(&garbage).is_err(), "the garbage must not decode");
    if let Ok(body) = h.request(&addr, frame(&garbage), WAIT) {
        return Err(format!("garbage frame: the agent answered garbage with {:?}", decode_response(&body)));
    }
    expect_banned(&mut h, target, "garbage frame")
}

/// 2. A length prefix far above the agent's limit.
fn oversized_frame(target: &Provider) -> Check {
    let mut h = Hostile::new();
    let addr = multiaddr(target);
    h.connect(&addr, WAIT).map_err(|e| format!("oversized frame: cannot connect: {e}"))?;
    let mut bytes = u32::MAX.to_be_bytes().to_vec();
    bytes.extend_from_slice(&[0; 64]);
    if let Ok(body) = h.request(&addr, bytes, WAIT) {
        return Err(format!("oversized frame: the agent answered with {:?}", decode_response(&body)));
    }
    expect_banned(&mut h, target, "oversized frame")
}

/// 3. Well-formed `PutShard`s for a real manifest whose data is not the shard named.
fn bad_shards(target: &Provider) -> Check {
    let mut h = Hostile::new();
    let (addr, agent) = (multiaddr(target), agent_id(target));
    if storage_use(target) != Some((0, 0)) {
        return Err(format!(
            "bad shard: the agent stores something already: {:?}",
            target.api_json("/status")
        ));
    }
    let data = pseudo_random(100_000, 31);
    let geometry = Geometry {
        size: data.len() as u64,
        data: 2,
        parity: 1,
        stripe_size: Geometry::round_stripe(64 << 10, 2),
        segment_size: 1024,
    };
    let (manifest, shards) = encode_object(&data, geometry).expect("encode object");
    assert_eq!(shards[0].len(), shards[1].len());
    let mut flipped = shards[0].clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 1;
    // Another shard of the same object (right length, wrong root), then shard 0 with one bit off.
    let attempts = [shards[1].clone(), flipped];

    let mut answers = Vec::new();
    for (n, wrong) in attempts.into_iter().enumerate() {
        let what = format!("bad shard #{}", n + 1);
        h.connect(&addr, WAIT).map_err(|e| format!("{what}: cannot connect: {e}"))?;
        let req = Request::PutShard { manifest: manifest.encode(), index: 0, data: wrong };
        answers.push((what.clone(), h.request(&addr, encode_request(&req), WAIT)));
        if n == 0 && !h.wait_disconnected(&agent, WAIT) {
            return Err(format!("{what}: the agent did not disconnect the sender\n{}", h.events()));
        }
    }
    if storage_use(target) != Some((0, 0)) {
        return Err(format!("bad shard: the agent kept something: {:?}", target.api_json("/status")));
    }
    expect_banned(&mut h, target, "bad shard")?;
    for (what, answer) in answers {
        match answer.as_deref().map(decode_response) {
            Ok(Ok(Response::Refused(_))) => {}
            other => return Err(format!("{what}: expected a Refused answer, got {other:?}")),
        }
    }
    Ok(())
}

/// 4. Announcements for the hostile peer whose chain signature does not verify.
fn bad_announcements(target: &Provider, all: &[Provider]) -> Check {
    let mut h = Hostile::new();
    let (addr, agent, me) = (multiaddr(target), agent_id(target), h.peer_id().to_string());
    for round in 1..=2u64 {
        let what = format!("bad announcement #{round}");
        h.connect(&addr, WAIT).map_err(|e| format!("{what}: cannot connect: {e}"))?;
        if !h.wait_subscribed(&agent, WAIT) {
            return Err(format!("{what}: the agent never showed up on the topic\n{}", h.events()));
        }
        // A publish can find no peer right after the subscription lands, and one message could in
        // principle be lost; a few attempts, each a different message, each given time to bite.
        let mut outcome = Err(String::new());
        for attempt in 0..3u64 {
            let ann = bad_announcement(h.keypair(), round * 10 + attempt);
            outcome = h.publish(ann, Duration::from_secs(5));
            if outcome.is_ok() && h.wait_disconnected(&agent, Duration::from_secs(8)) {
                break;
            }
            outcome = outcome.and(Err("published, but the agent kept the connection".into()));
        }
        if let Err(e) = outcome {
            return Err(format!("{what}: the publisher was not disconnected: {e}\n{}", h.events()));
        }
        if provider_ids(target).is_some_and(|ids| ids.contains(&me)) {
            return Err(format!("{what}: the agent lists the hostile peer as a provider"));
        }
    }
    expect_banned(&mut h, target, "bad announcement")?;
    for (i, p) in all.iter().enumerate() {
        if provider_ids(p).is_some_and(|ids| ids.contains(&me)) {
            return Err(format!("bad announcement: provider {i} believes the hostile announcement"));
        }
    }
    Ok(())
}

#[test]
fn hostile_peers_are_banned_and_honest_ones_keep_serving() {
    let mut cluster = Cluster::start(3);
    let p = &cluster.providers;

    let results = [
        ("garbage frame", garbage_frame(&p[0])),
        ("oversized frame", oversized_frame(&p[1])),
        ("bad shard", bad_shards(&p[2])),
        ("bad announcement", bad_announcements(&p[1], p)),
    ];

    // The honest network is unharmed: a put and a get across the agents succeed.
    let data = pseudo_random(300_001, 99);
    let file = cluster.client.path("honest-in");
    std::fs::write(&file, &data).unwrap();
    let put = cluster.client_json(&["client", "put", file.to_str().unwrap(), "--data", "2", "--parity", "1"]);
    let id = put["id"].as_str().unwrap().to_string();
    let out = cluster.client.path("honest-out");
    let got = cluster.client_json(&["client", "get", &id, "-o", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out).unwrap(), data, "the honest object reads back differently: {got}");
    for (i, prov) in cluster.providers.iter_mut().enumerate() {
        assert!(prov.alive(), "agent {i} died");
    }

    let failed: Vec<String> =
        results.into_iter().filter_map(|(name, r)| r.err().map(|e| format!("[{name}] {e}"))).collect();
    assert!(failed.is_empty(), "hostile peers were not handled:\n\n{}", failed.join("\n\n"));
}
