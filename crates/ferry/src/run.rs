//! `ferry run --config FILE`: the migration daemon.
//!
//! ```text
//! source ─PSYNC─▶ Link ─events─▶ Applier ─ops─▶ ClusterWriter ─▶ target masters
//!                  ▲                │
//!                  └── applied ◀────┘  (what the writer acknowledged)
//! ```
//! It prints one status line a second and serves `/status` (JSON) and
//! `/metrics` (Prometheus text) on `http.listen`. SIGINT/SIGTERM stop it
//! cleanly: in-flight writes are finished and the position is saved.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use ferry_cluster::{Auth as WAuth, ClusterWriter, Conn, TargetMode, WriterConfig};
use ferry_replica::{Auth as LAuth, Link, LinkConfig, LinkStatus, Phase};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::apply::{Applier, TargetFormat};
use crate::config::{Config, RestoreMode, TargetKind, parse_url, redact};

/// Arguments of `ferry run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The YAML configuration (see config/ferry.example.yaml).
    #[arg(long)]
    pub config: PathBuf,
    /// Start even if the target already holds keys (ferry overwrites the
    /// keys it migrates and leaves the others alone).
    #[arg(long)]
    pub allow_nonempty_target: bool,
}

/// What the cluster writer has coped with.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct TargetStats {
    /// `-MOVED` replies followed.
    pub moved: u64,
    /// `-ASK` replies followed.
    pub ask: u64,
    /// `TRYAGAIN`/`CLUSTERDOWN`/`LOADING`/… replies retried.
    pub retry: u64,
    /// Connections to target nodes re-established.
    pub reconnects: u64,
}

/// The `/status` document.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    /// connecting, snapshot, streaming, stopped, error.
    pub phase: String,
    /// The source's `master_repl_offset`.
    pub source_offset: Option<u64>,
    /// Offset applied to the target.
    pub applied_offset: Option<u64>,
    /// Offset received from the source.
    pub received_offset: Option<u64>,
    /// source_offset − applied_offset.
    pub lag_bytes: Option<u64>,
    /// Age of the oldest byte received but not yet applied (0 when caught up).
    pub lag_seconds: f64,
    /// Snapshot keys written.
    pub keys_applied: u64,
    /// Stream commands written.
    pub commands_applied: u64,
    /// Not carried, by reason.
    pub skipped: std::collections::BTreeMap<String, u64>,
    /// Bytes waiting in the spool (disk part included).
    pub spool_bytes: u64,
    /// Reconnects to the source.
    pub reconnects: u64,
    /// Target replies handled by redirecting or retrying, by kind
    /// (`moved`, `ask`, `retry`), and target reconnects.
    pub target: TargetStats,
    /// The error that stopped ferry, if any.
    pub error: Option<String>,
}

impl Status {
    fn metrics(&self) -> String {
        let phase = match self.phase.as_str() {
            "connecting" => 0,
            "snapshot" => 1,
            "streaming" => 2,
            "stopped" => 3,
            _ => 4,
        };
        let mut m = format!(
            "# TYPE ferry_phase gauge\nferry_phase {phase}\n\
             # TYPE ferry_lag_bytes gauge\nferry_lag_bytes {}\n\
             # TYPE ferry_lag_seconds gauge\nferry_lag_seconds {}\n\
             # TYPE ferry_applied_offset gauge\nferry_applied_offset {}\n\
             # TYPE ferry_source_offset gauge\nferry_source_offset {}\n\
             # TYPE ferry_keys_applied_total counter\nferry_keys_applied_total {}\n\
             # TYPE ferry_commands_applied_total counter\nferry_commands_applied_total {}\n\
             # TYPE ferry_spool_bytes gauge\nferry_spool_bytes {}\n\
             # TYPE ferry_reconnects_total counter\nferry_reconnects_total{{side=\"source\"}} {}\n\
             ferry_reconnects_total{{side=\"target\"}} {}\n",
            self.lag_bytes.unwrap_or(0),
            self.lag_seconds,
            self.applied_offset.unwrap_or(0),
            self.source_offset.unwrap_or(0),
            self.keys_applied,
            self.commands_applied,
            self.spool_bytes,
            self.reconnects,
            self.target.reconnects,
        );
        let t = &self.target;
        m.push_str(&format!(
            "# TYPE ferry_target_errors_total counter\n\
             ferry_target_errors_total{{kind=\"moved\"}} {}\n\
             ferry_target_errors_total{{kind=\"ask\"}} {}\n\
             ferry_target_errors_total{{kind=\"retry\"}} {}\n\
             # TYPE ferry_keys_skipped_total counter\n",
            t.moved, t.ask, t.retry
        ));
        for (reason, n) in &self.skipped {
            m.push_str(&format!(
                "ferry_keys_skipped_total{{reason=\"{reason}\"}} {n}\n"
            ));
        }
        m
    }
}

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Connecting => "connecting",
        Phase::Snapshot => "snapshot",
        Phase::Streaming => "streaming",
        Phase::Stopped => "stopped",
    }
}

/// Serve `/status` and `/metrics` until cancelled.
async fn serve_http(
    listen: String,
    status: Arc<Mutex<Status>>,
    cancel: CancellationToken,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (http.listen)"))?;
    tracing::info!(%listen, "dashboard: http://{listen}/  status: http://{listen}/status  metrics: http://{listen}/metrics");
    loop {
        let (mut sock, _) = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            r = listener.accept() => r?,
        };
        let status = status.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let n = match tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf)).await {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let req = String::from_utf8_lossy(&buf[..n]);
            let path = req.split_whitespace().nth(1).unwrap_or("/");
            let snapshot = status.lock().map(|s| s.clone()).unwrap_or_default();
            let (code, ctype, body) = match path {
                "/status" => (
                    "200 OK",
                    "application/json",
                    serde_json::to_string_pretty(&snapshot).unwrap_or_default(),
                ),
                "/metrics" => ("200 OK", "text/plain; version=0.0.4", snapshot.metrics()),
                "/" => (
                    "200 OK",
                    "text/html; charset=utf-8",
                    crate::dashboard::PAGE.to_string(),
                ),
                _ => (
                    "404 Not Found",
                    "text/plain",
                    "try /, /status or /metrics\n".to_string(),
                ),
            };
            let resp = format!(
                "HTTP/1.1 {code}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}

/// Run `ferry run`.
pub fn run(args: &RunArgs) -> Result<()> {
    let cfg = Config::load(&args.config)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(daemon(cfg, args.allow_nonempty_target))
}

/// The target's RDB format and, for `target.mode: auto`, whether it is a
/// cluster (`cluster_enabled:1` in `INFO cluster`).
pub(crate) async fn target_format(
    addr: &str,
    auth: &WAuth,
    tls: Option<&ferry_tls::TlsConfig>,
    kind: TargetKind,
) -> Result<(TargetFormat, TargetMode)> {
    let mut conn = Conn::connect_tls(addr, auth, Duration::from_secs(5), tls)
        .await
        .with_context(|| format!("cannot connect to the target {addr}"))?;
    let mode = match kind {
        TargetKind::Cluster => TargetMode::Cluster,
        TargetKind::Standalone => TargetMode::Standalone,
        TargetKind::Auto => {
            let info = conn
                .call(&["INFO", "cluster"], Duration::from_secs(5))
                .await
                .with_context(|| format!("INFO cluster on the target {addr}"))?;
            let text = info
                .as_bytes()
                .map(|b| String::from_utf8_lossy(b))
                .unwrap_or_default();
            let enabled = text.lines().any(|l| l.trim() == "cluster_enabled:1");
            if enabled {
                TargetMode::Cluster
            } else {
                TargetMode::Standalone
            }
        }
    };
    let info = conn
        .call(&["INFO", "server"], Duration::from_secs(5))
        .await
        .with_context(|| format!("INFO server on the target {addr}"))?;
    let text = info
        .as_bytes()
        .map(|b| String::from_utf8_lossy(b).into_owned());
    match text {
        Some(t) => Ok((TargetFormat::from_info(&t), mode)),
        None => bail!("target {addr} answered INFO with {info:?}"),
    }
}

/// Refuse to start a new migration into a target that already holds keys:
/// it may be the wrong cluster, or another application's.
async fn check_target_empty(
    masters: &[String],
    auth: &WAuth,
    tls: Option<&ferry_tls::TlsConfig>,
) -> Result<()> {
    for addr in masters {
        let mut conn = Conn::connect_tls(addr, auth, Duration::from_secs(5), tls)
            .await
            .with_context(|| format!("target node {addr}"))?;
        // Every db (a standalone target has several).
        let info = conn
            .call(&["INFO", "keyspace"], Duration::from_secs(5))
            .await
            .with_context(|| format!("INFO keyspace on {addr}"))?;
        let n: u64 = info
            .as_bytes()
            .map(|b| String::from_utf8_lossy(b))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                l.split_once(":keys=")?
                    .1
                    .split(',')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum();
        if n > 0 {
            bail!(
                "the target is not empty: {addr} holds {n} keys. Start with --allow-nonempty-target \
                 to migrate into it anyway (migrated keys are overwritten, others are left alone)"
            );
        }
    }
    Ok(())
}

/// Refuse to start when the source holds keys in a db the filter leaves out
/// by default (a cluster has only db 0), naming the option that decides.
async fn check_source_dbs(src: &crate::config::Url, cfg: &Config, standalone: bool) -> Result<()> {
    if !cfg.filter.dbs.is_empty() || standalone {
        return Ok(());
    }
    let auth = WAuth {
        user: src.user.clone(),
        password: src.password.clone(),
    };
    let tls = cfg.source.tls_config();
    let Ok(mut conn) =
        Conn::connect_tls(&src.addr, &auth, Duration::from_secs(5), tls.as_ref()).await
    else {
        return Ok(()); // the link reports connection problems with their cause
    };
    let Ok(info) = conn
        .call(&["INFO", "keyspace"], Duration::from_secs(5))
        .await
    else {
        return Ok(());
    };
    let text = info
        .as_bytes()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();
    for line in text.lines() {
        let Some((db, rest)) = line.strip_prefix("db").and_then(|l| l.split_once(':')) else {
            continue;
        };
        let keys = rest
            .split(',')
            .find_map(|kv| kv.strip_prefix("keys="))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        if db != "0" && keys > 0 {
            bail!(
                "the source's db {db} holds {keys} keys, but a cluster has only db 0: \
                 set filter.dbs (e.g. dbs: [0, {db}] merges them into db 0) or leave them out with dbs: [0]"
            );
        }
    }
    Ok(())
}

async fn daemon(cfg: Config, allow_nonempty_target: bool) -> Result<()> {
    let src = parse_url(&cfg.source.url)?;
    let dst = parse_url(&cfg.target.url)?;
    let target_tls = cfg.target.tls_config();
    if let Some(w) = target_tls.as_ref().and_then(|t| t.warning()) {
        tracing::warn!("target: {w}");
    }
    let wauth = WAuth {
        user: dst.user.clone(),
        password: dst.password.clone(),
    };
    let cancel = CancellationToken::new();
    {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            }
            tracing::info!("stopping: finishing in-flight writes and saving the position");
            cancel.cancel();
        });
    }

    let (format, mode) =
        target_format(&dst.addr, &wauth, target_tls.as_ref(), cfg.target.mode).await?;
    let writer = ClusterWriter::connect_with(
        &dst.addr,
        WriterConfig {
            auth: wauth.clone(),
            tls: target_tls.clone(),
            mode,
            ..Default::default()
        },
    )
    .await
    .with_context(|| format!("target {}", redact(&cfg.target.url)))?;
    if writer.is_standalone() {
        tracing::info!(server = ?writer.masters(), "standalone target (dbs kept)");
    } else {
        tracing::info!(masters = ?writer.masters(), "target cluster");
    }
    check_source_dbs(&src, &cfg, writer.is_standalone()).await?;
    let resuming = cfg
        .state_dir
        .join(ferry_replica::link::POSITION_FILE)
        .exists();
    if !resuming && !allow_nonempty_target {
        check_target_empty(writer.masters(), &wauth, target_tls.as_ref()).await?;
    }
    let mut applier = Applier::new(
        writer,
        format,
        cfg.snapshot.restore == RestoreMode::Auto,
        cfg.filter.clone(),
    );

    let mut lcfg = LinkConfig::new(src.addr.clone(), cfg.state_dir.clone());
    lcfg.tls = cfg.source.tls_config();
    if let Some(w) = lcfg.tls.as_ref().and_then(|t| t.warning()) {
        tracing::warn!("source: {w}");
    }
    lcfg.auth = src.password.clone().map(|password| LAuth {
        user: src.user.clone(),
        password,
    });
    let (link, mut events) = Link::start(lcfg, cancel.child_token())
        .with_context(|| format!("source {}", redact(&cfg.source.url)))?;

    let status = Arc::new(Mutex::new(Status::default()));
    if !cfg.http.listen.is_empty() {
        let (listen, status, cancel) = (cfg.http.listen.clone(), status.clone(), cancel.clone());
        tokio::spawn(async move {
            if let Err(e) = serve_http(listen, status, cancel).await {
                tracing::error!("{e:#}");
            }
        });
    }

    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut last_print = Instant::now();
    // (received offset, when it was first seen): the age of the oldest
    // received-but-unapplied byte is the lag in seconds.
    let mut unapplied: std::collections::VecDeque<(u64, Instant)> = Default::default();
    let result: Result<()> = loop {
        tokio::select! {
            _ = cancel.cancelled() => break Ok(()),
            ev = events.recv() => match ev {
                Some(ev) => {
                    if let Err(e) = applier.event(ev).await {
                        break Err(e);
                    }
                }
                None => break Ok(()),
            },
            _ = tick.tick() => {}
        }
        if let Some(a) = applier.applied() {
            link.applied(a);
        }
        if let Some(e) = applier.writer_error() {
            break Err(anyhow::Error::new(e).context("target cluster"));
        }
        let ls: LinkStatus = link.status();
        if let Some(r) = ls.received_offset
            && unapplied.back().is_none_or(|(o, _)| r > *o)
        {
            unapplied.push_back((r, Instant::now()));
        }
        let applied = ls.applied_offset.unwrap_or(0);
        while unapplied.front().is_some_and(|(o, _)| *o <= applied) {
            unapplied.pop_front();
        }
        let lag_seconds = unapplied
            .front()
            .map_or(0.0, |(_, t)| t.elapsed().as_secs_f64());
        let st = Status {
            phase: phase_name(ls.phase).into(),
            source_offset: ls.source_offset,
            applied_offset: ls.applied_offset,
            received_offset: ls.received_offset,
            lag_bytes: match (ls.source_offset, ls.applied_offset) {
                (Some(s), Some(a)) => Some(s.saturating_sub(a)),
                _ => None,
            },
            lag_seconds,
            keys_applied: applier.counters.keys_applied,
            commands_applied: applier.counters.commands_applied,
            skipped: applier
                .counters
                .skipped
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            spool_bytes: ls.spool_bytes,
            reconnects: ls.reconnects,
            target: {
                let w = applier.writer_stats();
                TargetStats {
                    moved: w.moved,
                    ask: w.ask,
                    retry: w.retries,
                    reconnects: w.reconnects,
                }
            },
            error: None,
        };
        if last_print.elapsed() >= Duration::from_secs(1) {
            last_print = Instant::now();
            println!(
                "ferry: {} applied={} source={} lag={} bytes {:.1}s keys={} commands={} skipped={}",
                st.phase,
                st.applied_offset.map_or("-".into(), |v| v.to_string()),
                st.source_offset.map_or("-".into(), |v| v.to_string()),
                st.lag_bytes.map_or("-".into(), |v| v.to_string()),
                st.lag_seconds,
                st.keys_applied,
                st.commands_applied,
                st.skipped.values().sum::<u64>(),
            );
        }
        if let Ok(mut s) = status.lock() {
            *s = st;
        }
    };
    // Finish what is in flight, report it, save the position.
    let flushed = applier.flush().await;
    if let Some(a) = applier.applied() {
        link.applied(a);
    }
    cancel.cancel();
    let link_result = link.shutdown().await;
    result?;
    flushed?;
    link_result.context("source link")?;
    Ok(())
}
