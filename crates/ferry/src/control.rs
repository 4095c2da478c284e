//! Commands that talk to a running daemon: `ferry status` and `ferry cutover`.
//!
//! Cutover, the switch-over procedure:
//! ```text
//! 1. the daemon must be streaming            (its /status)
//! 2. CLIENT PAUSE <pause_ms> WRITE on the source: writes wait, reads go on
//! 3. wait until applied offset == source master_repl_offset
//! 4. "in sync at offset N after M ms" → exit 0   (switch clients now)
//!    not reached within the pause → exit 1 with the remaining lag
//! 5. CLIENT UNPAUSE in both cases
//! ```
//! The source's writes are paused, never refused; ferry keeps streaming
//! until it is stopped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use redis::aio::MultiplexedConnection;

use crate::config::{Config, parse_endpoint};

/// Arguments of `ferry status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The daemon's HTTP listener (`http.listen` of its configuration).
    #[arg(long, default_value = "127.0.0.1:9121")]
    pub http: String,
    /// The daemon's `http.token`, if it has one (default: the environment
    /// variable FERRY_HTTP_TOKEN; a flag shows in `ps`).
    #[arg(long)]
    pub token: Option<String>,
}

/// Arguments of `ferry cutover`.
#[derive(Debug, Args)]
pub struct CutoverArgs {
    /// The configuration the daemon runs with.
    #[arg(long)]
    pub config: std::path::PathBuf,
    /// How long the source's writes may be paused.
    #[arg(long, default_value_t = 2000)]
    pub pause_ms: u64,
    /// Also write a configuration for the opposite direction (target →
    /// source) starting at the position both sides share at the cutover:
    /// every target master gets a replication backlog before the pause and
    /// its position is recorded once in sync.
    #[arg(long, value_name = "R.yaml")]
    pub reverse: Option<std::path::PathBuf>,
}

/// GET a path from the daemon's HTTP listener, with the bearer token if any.
fn get(addr: &str, path: &str, token: Option<&str>) -> Result<String> {
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

fn status_json(addr: &str, token: Option<&str>) -> Result<serde_json::Value> {
    serde_json::from_str(&get(addr, "/status", token)?).context("the daemon's /status is not JSON")
}

/// Run `ferry status`.
pub fn status(args: &StatusArgs) -> Result<()> {
    let token = args.token.clone().or_else(|| {
        std::env::var("FERRY_HTTP_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
    });
    let s = status_json(&args.http, token.as_deref())?;
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
    Ok(())
}

/// A connection to the source for the cutover: redis-rs (`redis` crate)
/// speaking over ferry-tls's stream, so the TLS settings (CA, client
/// certificate, `server_name`, `insecure`) are the link's own. Connecting,
/// `AUTH` and every reply are bounded by 5 s.
async fn source_client(cfg: &Config) -> Result<MultiplexedConnection> {
    const T: Duration = Duration::from_secs(5);
    let src = parse_endpoint(&cfg.source.url)?;
    let addr = src.addr();
    let stream = ferry_tls::connect(&addr, cfg.source.tls_config().as_ref(), T)
        .await
        .with_context(|| format!("source {addr}"))?;
    let mut info = redis::RedisConnectionInfo::default().set_skip_set_lib_name();
    if let Some(user) = &src.auth.user {
        info = info.set_username(user);
    }
    if let Some(password) = &src.auth.password {
        info = info.set_password(password);
    }
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(T));
    let (conn, driver) = tokio::time::timeout(
        T,
        MultiplexedConnection::new_with_config(&info, stream, config),
    )
    .await
    .map_err(|_| anyhow::anyhow!("source {addr}: no answer to AUTH within 5 s"))?
    .with_context(|| format!("source {addr}"))?;
    tokio::spawn(driver);
    Ok(conn)
}

/// One command on the source; an error reply is an error naming it.
async fn call(conn: &mut MultiplexedConnection, args: &[&str]) -> Result<redis::Value> {
    let mut cmd = redis::cmd(args[0]);
    cmd.arg(&args[1..]);
    cmd.query_async(conn)
        .await
        .with_context(|| format!("{} on the source", args.join(" ")))
}

async fn source_offset(conn: &mut MultiplexedConnection) -> Result<u64> {
    let reply = call(conn, &["INFO", "replication"]).await?;
    let text: String = redis::from_redis_value(reply).context("the source's INFO replication")?;
    ferry_ops::Info::parse(&text)
        .get_u64("master_repl_offset")
        .context("the source's INFO replication has no master_repl_offset")
}

/// Run `ferry cutover`; Ok(true) when in sync.
pub fn cutover(args: &CutoverArgs) -> Result<bool> {
    let cfg = Config::load(&args.config)?;
    if cfg.http.listen.is_empty() {
        bail!(
            "cutover needs the daemon's status page: set http.listen in {}",
            args.config.display()
        );
    }
    let st = status_json(&cfg.http.listen, cfg.http.token.as_deref())?;
    if let Some(e) = st["error"].as_str() {
        bail!("ferry stopped on an error: {e}");
    }
    if st["phase"] != "streaming" {
        bail!(
            "ferry is not streaming yet (phase {}): wait until the snapshot is applied",
            st["phase"]
        );
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            use crate::reverse::cutover as rc;
            let reverse = match &args.reverse {
                Some(_) => {
                    let masters = rc::target_masters(&cfg).await?;
                    let created = rc::ensure_backlogs(&masters).await?;
                    for m in &created {
                        println!("created a replication backlog on {m} (it had no replica)");
                    }
                    Some((masters, created))
                }
                None => None,
            };
            let mut conn = source_client(&cfg).await?;
            let pause = args.pause_ms.to_string();
            call(&mut conn, &["CLIENT", "PAUSE", &pause, "WRITE"]).await?;
            let started = Instant::now();
            let deadline = started + Duration::from_millis(args.pause_ms);
            let result = loop {
                let target = source_offset(&mut conn).await;
                let applied = status_json(&cfg.http.listen, cfg.http.token.as_deref()).map(|s| s["applied_offset"].as_u64());
                match (target, applied) {
                    (Ok(t), Ok(Some(a))) if a >= t => break Ok((true, t, 0)),
                    (Ok(t), Ok(a)) if Instant::now() >= deadline => {
                        break Ok((false, t, t.saturating_sub(a.unwrap_or(0))));
                    }
                    (Err(e), _) | (_, Err(e)) => break Err(e),
                    _ => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            };
            // In sync and paused: both sides are equal, record the target's.
            let recorded = match (&result, &reverse) {
                (Ok((true, _, _)), Some((masters, _))) => Some(rc::positions(masters).await),
                _ => None,
            };
            let unpaused = call(&mut conn, &["CLIENT", "UNPAUSE"]).await;
            let (ok, offset, lag) = result?;
            unpaused?;
            if let (Some(recorded), Some(path), Some((_, created))) =
                (recorded, &args.reverse, &reverse)
            {
                let (positions, backlog_ttl) = recorded?;
                write_reverse(args, &cfg, path, &positions, backlog_ttl, created)?;
            }
            let ms = started.elapsed().as_millis();
            if ok {
                println!("in sync at offset {offset} after {ms} ms: switch clients to the target now");
            } else {
                println!("NOT in sync after {ms} ms: {lag} bytes behind offset {offset}; writes resumed, try again");
            }
            Ok(ok)
        })
}

/// Writes the reverse configuration `path` (see `reverse::yaml`).
fn write_reverse(
    args: &CutoverArgs,
    cfg: &Config,
    path: &std::path::Path,
    positions: &[crate::reverse::StartPosition],
    backlog_ttl: Option<u64>,
    created: &[String],
) -> Result<()> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("cannot read {}", args.config.display()))?;
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let rec = crate::reverse::yaml::Recorded {
        positions,
        backlog_ttl,
        created,
        forward: &args.config.display().to_string(),
        at: format!("unix time {at}"),
    };
    let out = crate::reverse::yaml::reverse_config(&text, cfg, &rec)?;
    std::fs::write(path, out).with_context(|| format!("cannot write {}", path.display()))?;
    for p in positions {
        println!(
            "recorded {} at replid {} offset {}",
            p.master, p.replid, p.offset
        );
    }
    println!(
        "reverse configuration written to {} (start it with `ferry run --config {}`)",
        path.display(),
        path.display()
    );
    Ok(())
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
