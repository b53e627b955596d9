//! `bigfile-agent status`: the running daemon's `/status`, fetched over loopback HTTP.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// GETs `/status` from the daemon listening on `addr`.
pub fn fetch(addr: SocketAddr) -> Result<serde_json::Value> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .with_context(|| format!("the agent is not running (nothing answers on {addr}, api.listen)"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET /status HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).with_context(|| format!("reading the reply from {addr}"))?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").context("malformed HTTP reply from the agent")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("the agent answered: {}", head.lines().next().unwrap_or_default());
    }
    serde_json::from_str(body).context("the agent's /status is not JSON")
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
    )
}
