//! Commands that talk to a running daemon's HTTP listener: `ferry status`
//! (and the `/status` reads of `ferry cutover`, `cutover.rs`), and
//! `ferry cleanup`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::config::{Config, parse_endpoint};

/// Arguments of `ferry status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The daemon's HTTP listener (`http.listen` of its configuration);
    /// several, comma-separated, for the processes sharing one source
    /// (`source.partition`): one row per link of each.
    #[arg(long, default_value = "127.0.0.1:9121", value_delimiter = ',')]
    pub http: Vec<String>,
    /// The daemon's `http.token`, if it has one (default: the environment
    /// variable FERRY_HTTP_TOKEN; a flag shows in `ps`).
    #[arg(long)]
    pub token: Option<String>,
}

/// GET a path from the daemon's HTTP listener, with the bearer token if any.
pub(crate) fn get(addr: &str, path: &str, token: Option<&str>) -> Result<String> {
    let mut s = TcpStream::connect(addr).with_context(|| {
        format!(
            "no ferry daemon answers on {addr} (is `ferry run` running with http.listen {addr}?)"
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n")
            .as_bytes(),
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    match out.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_string()),
        Some((head, _)) if head.starts_with("HTTP/1.1 401") => bail!(
            "the daemon on {addr} needs its http.token: {}",
            if token.is_some() {
                "the token given is not the one it has"
            } else {
                "pass --token (or set FERRY_HTTP_TOKEN)"
            }
        ),
        _ => bail!(
            "unexpected answer from {addr}{path}: {}",
            out.lines().next().unwrap_or("")
        ),
    }
}

pub(crate) fn status_json(addr: &str, token: Option<&str>) -> Result<serde_json::Value> {
    serde_json::from_str(&get(addr, "/status", token)?).context("the daemon's /status is not JSON")
}

/// Run `ferry status`.
pub fn status(args: &StatusArgs) -> Result<()> {
    let token = args.token.clone().or_else(|| {
        std::env::var("FERRY_HTTP_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
    });
    let mut all = Vec::with_capacity(args.http.len());
    for e in &args.http {
        let e = e.trim().to_string();
        let s = status_json(&e, token.as_deref())?;
        all.push((e, s));
    }
    match &all[..] {
        [(_, s)] if s["links"].as_array().is_none_or(|l| l.len() <= 1) => print_one(s),
        _ => print!("{}", table(&all)),
    }
    Ok(())
}

/// Several links (one process's shards, or several processes'): a row
/// per link and the total (lag: the largest).
fn table(all: &[(String, serde_json::Value)]) -> String {
    use std::fmt::Write as _;
    let n = |v: &serde_json::Value| v.as_u64().map_or("-".to_string(), |v| v.to_string());
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<21} {:<12} {:<21} {:<11} {:<10} {:>14} {:>14} {:>12} {:>10}",
        "ferry",
        "shard",
        "source",
        "slots",
        "phase",
        "source offset",
        "applied",
        "lag bytes",
        "reconnects"
    );
    let (mut links, mut worst, mut worst_secs): (usize, Option<(u64, String)>, f64) =
        (0, None, 0.0);
    let mut errors = Vec::new();
    for (endpoint, s) in all {
        let rows: Vec<&serde_json::Value> = match s["links"].as_array() {
            Some(l) if !l.is_empty() => l.iter().collect(),
            _ => vec![s],
        };
        for l in rows {
            links += 1;
            let name = l["name"].as_str().unwrap_or("source");
            let lag = l["lag_bytes"].as_u64();
            if let Some(lag) = lag
                && worst.as_ref().is_none_or(|(w, _)| lag > *w)
            {
                worst = Some((lag, format!("{name} on {endpoint}")));
            }
            let _ = writeln!(
                out,
                "{:<21} {:<12} {:<21} {:<11} {:<10} {:>14} {:>14} {:>12} {:>10}",
                endpoint,
                name,
                l["source"].as_str().unwrap_or("-"),
                l["slots"].as_str().unwrap_or("-"),
                l["phase"].as_str().unwrap_or("?"),
                n(&l["source_offset"]),
                n(&l["applied_offset"]),
                n(&l["lag_bytes"]),
                n(&l["reconnects"]),
            );
        }
        worst_secs = worst_secs.max(s["lag_seconds"].as_f64().unwrap_or(0.0));
        if let Some(e) = s["error"].as_str() {
            errors.push(format!("error on {endpoint}: {e}"));
        }
    }
    let _ = match &worst {
        Some((lag, at)) => writeln!(
            out,
            "total: {links} links on {} processes; lag {lag} bytes ({at}), {worst_secs:.1} s",
            all.len()
        ),
        None => writeln!(
            out,
            "total: {links} links on {} processes; lag unknown",
            all.len()
        ),
    };
    for e in errors {
        let _ = writeln!(out, "{e}");
    }
    out
}

/// Today's screen of one daemon with one link.
fn print_one(s: &serde_json::Value) {
    let n = |k: &str| s[k].as_u64().map_or("-".to_string(), |v| v.to_string());
    println!("phase:            {}", s["phase"].as_str().unwrap_or("?"));
    println!("source offset:    {}", n("source_offset"));
    println!("applied offset:   {}", n("applied_offset"));
    println!(
        "lag:              {} bytes, {:.1} s",
        n("lag_bytes"),
        s["lag_seconds"].as_f64().unwrap_or(0.0)
    );
    if let Some(p) = s["snapshot"]["percent"].as_f64() {
        let sn = &s["snapshot"];
        let total = |k: &str| sn[k].as_u64().map_or("?".to_string(), |v| v.to_string());
        let bytes = if sn["transfer"] == "diskless" {
            "size unknown (diskless)".to_string()
        } else {
            format!("{} / {} bytes", total("bytes_done"), total("bytes_total"))
        };
        println!(
            "snapshot:         {p:.1}% ({} / {} keys, {bytes})",
            total("keys_done"),
            total("keys_total")
        );
    }
    println!("keys applied:     {}", n("keys_applied"));
    println!("commands applied: {}", n("commands_applied"));
    println!("cross-slot emulated: {}", n("emulated"));
    println!("spool:            {} bytes", n("spool_bytes"));
    println!("reconnects:       {}", n("reconnects"));
    if s["target"]["rate_limited"] == true {
        println!("rate limit:       binding (target.max_ops/bytes_per_sec sets the pace)");
    }
    if let Some(skipped) = s["skipped"].as_object().filter(|m| !m.is_empty()) {
        println!("not carried:");
        for (reason, count) in skipped {
            println!("  {reason}: {count}");
        }
    }
    let v = &s["verify"];
    if v["sample_per_second"].as_u64().unwrap_or(0) > 0 {
        println!(
            "sampled verify:   {} checked, {} mismatches",
            v["checked"].as_u64().unwrap_or(0),
            v["mismatches"].as_u64().unwrap_or(0)
        );
    }
    if let Some(e) = s["error"].as_str() {
        println!("error:            {e}");
    }
}

/// Arguments of `ferry cleanup`.
#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// The configuration ferry ran with (its `target`).
    #[arg(long)]
    pub config: std::path::PathBuf,
}

/// Run `ferry cleanup`: delete every key under ferry's reserved prefix
/// (`__ferry:`, the checkpoints) from every master of the target. Run it
/// after cutover, once `ferry run` is stopped (a running daemon writes
/// them again).
pub fn cleanup(args: &CleanupArgs) -> Result<()> {
    let cfg = Config::load(&args.config)?;
    let dst = parse_endpoint(&cfg.target.url)?;
    let config = ferry_cluster::WriterConfig {
        auth: dst.auth.clone(),
        tls: cfg.target.tls_config(),
        ..Default::default()
    };
    let n = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(ferry_cluster::checkpoint::remove_all(&dst.addr(), config))
        .with_context(|| format!("target {}", crate::config::redact(&cfg.target.url)))?;
    println!(
        "removed {n} keys under {} from the target",
        ferry_cluster::RESERVED_PREFIX
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn several_links_one_row_each_and_the_largest_lag() {
        let a = serde_json::json!({ "phase": "streaming", "lag_seconds": 0.5, "links": [
            { "name": "shard-0", "source": "10.0.0.1:6379", "slots": "0-5460",
              "phase": "streaming", "source_offset": 100, "applied_offset": 90, "lag_bytes": 10 },
            { "name": "shard-10923", "source": "10.0.0.3:6379", "slots": "10923-16383",
              "phase": "streaming", "source_offset": 50, "applied_offset": 50, "lag_bytes": 0 }
        ] });
        let b = serde_json::json!({ "phase": "snapshot", "lag_seconds": 2.0, "links": [
            { "name": "shard-5461", "source": "10.0.0.2:6379", "slots": "5461-10922",
              "phase": "snapshot", "source_offset": 70, "applied_offset": 30, "lag_bytes": 40 }
        ] });
        let t = super::table(&[("h:1".into(), a), ("h:2".into(), b)]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 5, "{t}");
        assert!(
            lines[1].contains("shard-0") && lines[1].contains("10.0.0.1:6379"),
            "{t}"
        );
        assert!(
            lines[3].starts_with("h:2") && lines[3].contains("snapshot"),
            "{t}"
        );
        assert!(
            lines[4].contains("3 links on 2 processes; lag 40 bytes (shard-5461 on h:2), 2.0 s"),
            "{t}"
        );
        // A daemon without links[] (an older one) is one row.
        let t = super::table(&[("h:3".into(), serde_json::json!({ "lag_bytes": 5 }))]);
        assert!(t.contains("lag 5 bytes (source on h:3)"), "{t}");
    }
}
