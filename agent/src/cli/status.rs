//! `bigfile-agent status`: the running daemon's `/status`, fetched over loopback HTTP.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// GETs `/status` from the daemon listening on `addr`.
pub fn fetch(addr: SocketAddr) -> Result<serde_json::Value> {
    fetch_path(addr, "/status")
}

/// GETs `path` (a JSON document) from the daemon listening on `addr`.
pub fn fetch_path(addr: SocketAddr, path: &str) -> Result<serde_json::Value> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .with_context(|| format!("the agent is not running (nothing answers on {addr}, api.listen)"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).with_context(|| format!("reading the reply from {addr}"))?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").context("malformed HTTP reply from the agent")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("the agent answered: {}", head.lines().next().unwrap_or_default());
    }
    serde_json::from_str(body).with_context(|| format!("the agent's {path} is not JSON"))
}

/// A few human lines from the status document.
pub fn summary(v: &serde_json::Value) -> String {
    let st = &v["storage"];
    let sc = &v["scrub"];
    format!(
        "bigfile-agent {} up {} s\n  peer id:  {}\n  address:  {}\n  storage:  {} objects, {} of {} bytes used\n  scrub:    {} passes, {} blocks verified, {} repaired, {} unrepairable",
        v["version"].as_str().unwrap_or("?"),
        v["uptime_secs"],
        v["peer_id"].as_str().unwrap_or("?"),
        v["address"].as_str().unwrap_or("?"),
        st["objects"],
        st["used_bytes"],
        st["capacity_bytes"],
        sc["passes_completed"],
        sc["blocks_verified"],
        sc["repaired"],
        sc["unrepairable"],
    ) + &match v.get("network").filter(|n| !n.is_null()) {
        Some(n) => format!(
            "\n  network:  {} peers connected, {} providers known, {} banned",
            n["connected"].as_array().map_or(0, Vec::len),
            n["providers"],
            n["banned"].as_array().map_or(0, Vec::len)
        ),
        None => "\n  network:  disabled".into(),
    } + &match v.get("chain").filter(|c| !c.is_null()) {
        Some(c) if c["connected"] == true => format!(
            "\n  chain:    head {}, confirmed {}, rpc {}, {} reorgs rewound{}",
            c["head"],
            c["confirmed"],
            if c["rpc_ok"] == true { "ok" } else { "DOWN" },
            c["rewinds"],
            c["last_error"].as_str().map(|e| format!(" (last error: {e})")).unwrap_or_default()
        ),
        Some(c) => format!("\n  chain:    not connected ({})", c["last_error"].as_str().unwrap_or("?")),
        None => "\n  chain:    disabled".into(),
    } + &v["jobs"]
        .as_array()
        .map(|jobs| {
            jobs.iter()
                .map(|j| {
                    format!(
                        "\n  job {}:   attempt {}, {} of {} tiles",
                        j["job_id"], j["attempt"], j["done"], j["total"]
                    )
                })
                .collect::<String>()
        })
        .unwrap_or_default()
}

/// Human lines from the `/peers` document.
pub fn peers_summary(v: &serde_json::Value) -> String {
    let n = &v["network"];
    let list = |x: &serde_json::Value| x.as_array().cloned().unwrap_or_default();
    let mut s = format!("peer id: {}\n", n["peer_id"].as_str().unwrap_or("?"));
    for a in list(&n["listen_addrs"]) {
        s += &format!("  listening on {}\n", a.as_str().unwrap_or("?"));
    }
    let connected = list(&n["connected"]);
    s += &format!("connected peers: {}\n", connected.len());
    for p in connected {
        s += &format!("  {}\n", p.as_str().unwrap_or("?"));
    }
    let providers = list(&v["providers"]);
    s += &format!("known providers: {}\n", providers.len());
    for p in providers {
        s += &format!(
            "  {}  {}  free {} B  stored {} B  price {}/GiB-month\n",
            p["peer_id"].as_str().unwrap_or("?"),
            p["address"].as_str().unwrap_or("?"),
            p["free_bytes"],
            p["stored_bytes"],
            p["price_per_gib_month"]
        );
        let devices: Vec<String> =
            list(&p["gpus"]).iter().filter_map(|d| d.as_str().map(str::to_string)).collect();
        if !devices.is_empty() {
            s += &format!("    compute: {}\n", devices.join(", "));
        }
    }
    let banned = list(&n["banned"]);
    if !banned.is_empty() {
        s += &format!("banned: {}\n", banned.len());
    }
    s.trim_end().to_string()
}
