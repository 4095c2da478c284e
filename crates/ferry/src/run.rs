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
//!
//! Restart: the link resumes from `state_dir/position.json` (a lower bound
//! of what is applied); with `target.checkpoints` (the default) the writer
//! reads every slot's checkpoint at connect time and skips what the target
//! already committed, so every command is applied exactly once.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use ferry_cluster::{
    Auth as WAuth, CheckpointConfig, ClusterWriter, Conn, TargetMode, WriterConfig,
};
use ferry_replica::{Auth as LAuth, Link, LinkConfig, LinkStatus, Phase};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::apply::{Applier, TargetFormat, TargetState, history_name};
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
    /// Transactions committed with a checkpoint.
    pub checkpoints: u64,
    /// Ops not sent because the target had committed them before a restart.
    pub skipped_applied: u64,
    /// Source MULTI/EXEC blocks whose keys span slots (applied per slot).
    pub split_transactions: u64,
    /// Topology refreshes (failover, reshard, unreachable node).
    pub refreshes: u64,
    /// `target.wait_replicas`: committed transactions no replica had
    /// confirmed when their master's connection was lost (probed again).
    pub reprobed: u64,
    /// `target.wait_replicas`: `WAIT`s no replica answered in time.
    pub wait_timeouts: u64,
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
    /// Cross-slot stream commands replayed by emulation (part of
    /// `commands_applied`).
    pub emulated: u64,
    /// Not carried, by reason.
    pub skipped: std::collections::BTreeMap<String, u64>,
    /// Bytes waiting in the spool (disk part included).
    pub spool_bytes: u64,
    /// Reconnects to the source.
    pub reconnects: u64,
    /// The source side of the link: spool on disk, handshake warnings.
    pub source: SourceStats,
    /// Target replies handled by redirecting or retrying, by kind
    /// (`moved`, `ask`, `retry`), and target reconnects.
    pub target: TargetStats,
    /// The error that stopped ferry, if any.
    pub error: Option<String>,
    /// Snapshot progress.
    pub snapshot: SnapshotProgress,
    /// Sampled verify during streaming.
    pub verify: crate::sampler::VerifyStatus,
}

/// The replica link's own counters for `/status` and `/metrics`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct SourceStats {
    /// Spool bytes currently on disk.
    pub spool_disk_bytes: u64,
    /// The spool reached its cap: ferry stopped reading the source.
    pub spool_full: bool,
    /// Bytes written to spool segment files so far.
    pub spool_disk_bytes_written: u64,
    /// Error replies tolerated during handshakes (e.g. `REPLCONF version`
    /// refused by Redis); each is logged as a warning.
    pub handshake_warnings: u64,
}

/// Snapshot progress for `/status`, the status line and the dashboard.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SnapshotProgress {
    /// RDB bytes decoded.
    pub bytes_done: u64,
    /// The RDB's size from its `$<len>` preamble; `None` for a diskless
    /// transfer (the source streams it with no size).
    pub bytes_total: Option<u64>,
    /// `disk` (size known), `diskless` (size unknown) or `None` before the
    /// transfer starts (or after a resume without a snapshot).
    pub transfer: Option<&'static str>,
    /// Snapshot keys handled (written or skipped).
    pub keys_done: u64,
    /// Keys in the carried dbs from the source's `INFO keyspace` at start.
    pub keys_total: Option<u64>,
    /// Done, in percent: from the bytes when the size is known, from the
    /// keys otherwise; 100 once streaming.
    pub percent: Option<f64>,
}

impl SnapshotProgress {
    fn compute(&mut self, streaming: bool) {
        self.transfer = match (self.bytes_total, self.bytes_done) {
            (Some(_), _) => Some("disk"),
            (None, 0) => None,
            (None, _) => Some("diskless"),
        };
        self.percent = if streaming {
            Some(100.0)
        } else if let Some(t) = self.bytes_total.filter(|t| *t > 0) {
            Some((100.0 * self.bytes_done as f64 / t as f64).min(100.0))
        } else {
            self.keys_total
                .filter(|t| *t > 0)
                .map(|t| (100.0 * self.keys_done as f64 / t as f64).min(99.9))
        };
    }
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
             # TYPE ferry_commands_emulated_total counter\nferry_commands_emulated_total {}\n\
             # TYPE ferry_spool_bytes gauge\nferry_spool_bytes {}\n\
             # TYPE ferry_reconnects_total counter\nferry_reconnects_total{{side=\"source\"}} {}\n\
             ferry_reconnects_total{{side=\"target\"}} {}\n",
            self.lag_bytes.unwrap_or(0),
            self.lag_seconds,
            self.applied_offset.unwrap_or(0),
            self.source_offset.unwrap_or(0),
            self.keys_applied,
            self.commands_applied,
            self.emulated,
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
             # TYPE ferry_checkpoints_total counter\nferry_checkpoints_total {}\n\
             # TYPE ferry_skipped_applied_total counter\nferry_skipped_applied_total {}\n\
             # TYPE ferry_transactions_split_total counter\nferry_transactions_split_total {}\n\
             # TYPE ferry_keys_skipped_total counter\n",
            t.moved, t.ask, t.retry, t.checkpoints, t.skipped_applied, t.split_transactions
        ));
        for (reason, n) in &self.skipped {
            m.push_str(&format!(
                "ferry_keys_skipped_total{{reason=\"{reason}\"}} {n}\n"
            ));
        }
        m.push_str(&format!(
            "# TYPE ferry_verify_checked_total counter\nferry_verify_checked_total {}\n\
             # TYPE ferry_verify_mismatches_total counter\nferry_verify_mismatches_total {}\n\
             # TYPE ferry_verify_pending gauge\nferry_verify_pending {}\n\
             # TYPE ferry_snapshot_percent gauge\nferry_snapshot_percent {}\n",
            self.verify.checked,
            self.verify.mismatches,
            self.verify.pending,
            self.snapshot.percent.unwrap_or(0.0),
        ));
        let src = &self.source;
        m.push_str(&format!(
            "# TYPE ferry_spool_disk_bytes gauge\nferry_spool_disk_bytes {}\n\
             # TYPE ferry_spool_full gauge\nferry_spool_full {}\n\
             # TYPE ferry_spool_disk_written_bytes_total counter\nferry_spool_disk_written_bytes_total {}\n\
             # TYPE ferry_source_handshake_warnings_total counter\nferry_source_handshake_warnings_total {}\n",
            src.spool_disk_bytes,
            u8::from(src.spool_full),
            src.spool_disk_bytes_written,
            src.handshake_warnings,
        ));
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

/// Whether `req` (request head) carries `Authorization: Bearer <token>`.
fn bearer_ok(req: &str, token: &str) -> bool {
    req.lines().skip(1).any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("authorization")
                && value
                    .trim()
                    .strip_prefix("Bearer ")
                    .is_some_and(|t| same_secret(t.trim(), token))
        })
    })
}

/// Compares without stopping at the first different byte.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The `token` query parameter (accepted for `/` only, so that a browser can
/// open the dashboard; the page then sends it as a bearer header).
fn query_token(query: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let v = kv.strip_prefix("token=")?;
        // %XX decoding, enough for tokens.
        let (mut out, b) = (Vec::new(), v.as_bytes());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%'
                && let Some(x) = v
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(x);
                i += 3;
                continue;
            }
            out.push(b[i]);
            i += 1;
        }
        String::from_utf8(out).ok()
    })
}

/// What the HTTP listener serves, and who may see it.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// `host:port`.
    pub listen: String,
    /// Bearer token for `/`, `/status` and control endpoints.
    pub token: Option<String>,
    /// `/metrics` needs the token too.
    pub protect_metrics: bool,
}

/// Answer one request head: (status line, content type, body).
fn respond(req: &str, http: &HttpConfig, status: &Status) -> (&'static str, &'static str, String) {
    let target = req.split_whitespace().nth(1).unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let needs_token = match path {
        "/metrics" => http.protect_metrics,
        _ => true,
    };
    if let Some(token) = http.token.as_deref().filter(|_| needs_token) {
        let by_query = path == "/" && query_token(query).is_some_and(|t| same_secret(&t, token));
        if !bearer_ok(req, token) && !by_query {
            return (
                "401 Unauthorized",
                "text/plain",
                "this ferry needs its http.token: send `Authorization: Bearer <token>` \
                 (ferry status --token), or open the dashboard as /?token=<token>\n"
                    .to_string(),
            );
        }
    }
    match path {
        "/status" => (
            "200 OK",
            "application/json",
            serde_json::to_string_pretty(status).unwrap_or_default(),
        ),
        "/metrics" => ("200 OK", "text/plain; version=0.0.4", status.metrics()),
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
    }
}

/// Serve `/`, `/status` and `/metrics` until cancelled.
async fn serve_http(
    http: HttpConfig,
    status: Arc<Mutex<Status>>,
    cancel: CancellationToken,
) -> Result<()> {
    let listen = http.listen.clone();
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen} (http.listen)"))?;
    let loopback = listener.local_addr().is_ok_and(|a| a.ip().is_loopback());
    if !loopback && http.token.is_none() {
        tracing::warn!(
            %listen,
            "the HTTP listener is reachable from other hosts without a token: set http.token"
        );
    }
    tracing::info!(%listen, "dashboard: http://{listen}/  status: http://{listen}/status  metrics: http://{listen}/metrics");
    let http = Arc::new(http);
    loop {
        let (mut sock, _) = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            r = listener.accept() => r?,
        };
        let status = status.clone();
        let http = http.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 8192];
            let mut n = 0;
            // Read the request head (bounded in size and time).
            while n < buf.len() {
                match tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf[n..])).await {
                    Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                    Ok(Ok(k)) => n += k,
                }
                if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            if n == 0 {
                return;
            }
            let req = String::from_utf8_lossy(&buf[..n]);
            let snapshot = status.lock().map(|s| s.clone()).unwrap_or_default();
            let (code, ctype, body) = respond(&req, &http, &snapshot);
            let auth = if code.starts_with("401") {
                "WWW-Authenticate: Bearer realm=\"ferry\"\r\n"
            } else {
                ""
            };
            let resp = format!(
                "HTTP/1.1 {code}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{auth}Cache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = sock.write_all(resp.as_bytes()).await;
        });
    }
}

/// Run `ferry run`.
pub fn run(args: &RunArgs) -> Result<()> {
    let cfg = Config::load(&args.config)?;
    // Few blocking threads (spool segment IO, position saves): each thread
    // that allocates gets its own malloc arena, and arenas fragment.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(4)
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

/// Whether the target holds no key (in any db): `Err(why not)` names a
/// master and its key count. A new migration into a non-empty target is
/// refused unless `--allow-nonempty-target`: it may be the wrong cluster,
/// or another application's.
async fn target_is_empty(
    masters: &[String],
    auth: &WAuth,
    tls: Option<&ferry_tls::TlsConfig>,
) -> Result<std::result::Result<(), String>> {
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
            return Ok(Err(format!(
                "the target is not empty: {addr} holds {n} keys. Start with --allow-nonempty-target \
                 to migrate into it anyway (migrated keys are overwritten, others are left alone)"
            )));
        }
    }
    Ok(Ok(()))
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
    let position = cfg.state_dir.join(ferry_replica::link::POSITION_FILE);
    let mut state = TargetState::load(&cfg.state_dir)?;
    if state.as_ref().is_none_or(|s| s.history.is_none()) && position.exists() {
        // A state_dir from before checkpoints: start one history now
        // (nothing of it is in the target yet, so nothing is skipped).
        let mut s = state.clone().unwrap_or_else(|| TargetState::new(false));
        s.history = Some(history_name("resumed", 0));
        s.save(&cfg.state_dir)?;
        state = Some(s);
    }
    let history = state.as_ref().and_then(|s| s.history.clone());
    // A standalone target keeps several dbs: per-slot checkpoint keys
    // (written in whatever db is selected) do not fit it.
    let checkpoints = cfg.checkpoints() && mode != TargetMode::Standalone;
    if cfg.checkpoints() && !checkpoints {
        tracing::warn!("standalone target: no checkpoints (at-least-once replay after a crash)");
    }
    if cfg.target.wait_replicas.is_some() && !checkpoints {
        tracing::warn!("standalone target: target.wait_replicas ignored (it needs checkpoints)");
    }
    let writer = ClusterWriter::connect_with(
        &dst.addr,
        WriterConfig {
            auth: wauth.clone(),
            checkpoint: checkpoints.then(|| CheckpointConfig {
                history: history.clone().unwrap_or_default(),
            }),
            skip_applied: checkpoints && history.is_some(),
            tls: target_tls.clone(),
            mode,
            wait_replicas: cfg
                .target
                .wait_replicas
                .filter(|_| checkpoints)
                .map(std::time::Duration::from_millis),
            ..Default::default()
        },
    )
    .await
    .with_context(|| format!("target {}", redact(&cfg.target.url)))?;
    if writer.is_standalone() && cfg.filter.db_prefix.is_some() {
        bail!(
            "filter.db_prefix is for a cluster target; a standalone target keeps each db \
             (remove db_prefix)"
        );
    }
    if writer.is_standalone() {
        tracing::info!(server = ?writer.masters(), "standalone target (dbs kept)");
    } else {
        tracing::info!(masters = ?writer.masters(), "target cluster");
    }
    if checkpoints && history.is_some() {
        let c = writer.checkpoint_summary();
        tracing::info!(
            slots = c.slots,
            barriers = c.barriers,
            min = ?c.min,
            max = ?c.max,
            other_history = c.other_history,
            "checkpoints in the target: ops at or below them are not applied again"
        );
    }
    let resuming = position.exists();
    let facts = crate::preflight::check(&cfg, writer.masters(), &wauth, resuming).await?;
    check_source_dbs(&src, &cfg, writer.is_standalone()).await?;
    let state = match state {
        Some(s) => s,
        None => {
            // A new migration.
            let empty = target_is_empty(writer.masters(), &wauth, target_tls.as_ref()).await?;
            if let Err(e) = &empty
                && !allow_nonempty_target
            {
                bail!("{e}");
            }
            let s = TargetState::new(empty.is_ok());
            s.save(&cfg.state_dir)?;
            s
        }
    };
    let mut applier = Applier::new(
        writer,
        format,
        cfg.snapshot.restore != RestoreMode::Never,
        cfg.filter.clone(),
        checkpoints,
        cfg.snapshot.ttl_hold,
        cfg.state_dir.clone(),
        state,
    )?;

    let mut lcfg = LinkConfig::new(src.addr.clone(), cfg.state_dir.clone());
    lcfg.spool.memory_bytes = cfg.spool.memory_bytes;
    lcfg.spool.cap_bytes = cfg.spool.cap_bytes;
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
        let http = HttpConfig {
            listen: cfg.http.listen.clone(),
            token: cfg.http.token.clone(),
            protect_metrics: cfg.http.protect_metrics,
        };
        let (status, cancel) = (status.clone(), cancel.clone());
        tokio::spawn(async move {
            if let Err(e) = serve_http(http, status, cancel).await {
                tracing::error!("{e:#}");
            }
        });
    }

    let sampler = Arc::new(crate::sampler::SamplerStats::default());
    {
        let status = status.clone();
        crate::sampler::spawn(
            &cfg,
            sampler.clone(),
            move || {
                let s = status.lock().map(|s| s.clone()).unwrap_or_default();
                crate::sampler::Progress {
                    streaming: s.phase == "streaming",
                    applied: s.applied_offset,
                }
            },
            cancel.child_token(),
        );
    }
    let mut snapshot = SnapshotProgress {
        keys_total: facts.keys_total,
        ..Default::default()
    };

    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut last_print = Instant::now();
    // (received offset, when it was first seen): the age of the oldest
    // received-but-unapplied byte is the lag in seconds.
    let mut unapplied: std::collections::VecDeque<(u64, Instant)> = Default::default();
    // Events come in batches (what the link decoded from one read); the
    // status is rebuilt at most every STATUS_EVERY, not per key.
    const STATUS_EVERY: Duration = Duration::from_millis(20);
    let mut batch: Vec<ferry_replica::LinkEvent> = Vec::with_capacity(1024);
    let mut last_status = Instant::now() - STATUS_EVERY;
    let result: Result<()> = loop {
        let mut ticked = false;
        tokio::select! {
            _ = cancel.cancelled() => break Ok(()),
            more = events.recv_many(&mut batch) => {
                if !more {
                    break Ok(());
                }
                let mut failed = None;
                for ev in batch.drain(..) {
                    if let Err(e) = applier.event(ev).await {
                        failed = Some(e);
                        break;
                    }
                }
                batch.clear();
                if let Some(e) = failed {
                    break Err(e);
                }
                if let Err(e) = applier.mark_complete().await {
                    break Err(e);
                }
            },
            _ = tick.tick() => ticked = true,
        }
        if let Some(a) = applier.applied() {
            link.applied(a);
        }
        if let Some(e) = applier.writer_error() {
            break Err(anyhow::Error::new(e).context("target cluster"));
        }
        if !ticked && last_status.elapsed() < STATUS_EVERY {
            continue;
        }
        last_status = Instant::now();
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
        let streaming = ls.phase == Phase::Streaming;
        snapshot.bytes_done = ls.snapshot_bytes_done;
        snapshot.bytes_total = ls.snapshot_bytes_total;
        if ls.phase == Phase::Snapshot {
            snapshot.keys_done =
                applier.counters().keys_applied + applier.counters().skipped.values().sum::<u64>();
        }
        snapshot.compute(streaming);
        if let Err(e) = applier
            .progress(
                snapshot.percent,
                lag_seconds,
                ls.source_offset.or(ls.received_offset),
            )
            .await
        {
            break Err(e);
        }
        let st = Status {
            snapshot: snapshot.clone(),
            verify: sampler.status(cfg.verify.sample_per_second),
            phase: phase_name(ls.phase).into(),
            source_offset: ls.source_offset,
            applied_offset: ls.applied_offset,
            received_offset: ls.received_offset,
            lag_bytes: match (ls.source_offset, ls.applied_offset) {
                (Some(s), Some(a)) => Some(s.saturating_sub(a)),
                _ => None,
            },
            lag_seconds,
            keys_applied: applier.counters().keys_applied,
            commands_applied: applier.counters().commands_applied,
            emulated: applier.counters().emulated,
            skipped: applier
                .counters()
                .skipped
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            spool_bytes: ls.spool_bytes,
            reconnects: ls.reconnects,
            source: SourceStats {
                spool_disk_bytes: ls.spool_disk_bytes,
                spool_full: ls.spool_full,
                spool_disk_bytes_written: ls.spool_disk_bytes_written,
                handshake_warnings: ls.handshake_warnings,
            },
            target: {
                let w = applier.writer_stats();
                TargetStats {
                    moved: w.moved,
                    ask: w.ask,
                    retry: w.retries,
                    reconnects: w.reconnects,
                    checkpoints: w.checkpoints,
                    skipped_applied: w.skipped,
                    split_transactions: w.split_groups,
                    refreshes: w.refreshes,
                    reprobed: w.reprobed,
                    wait_timeouts: w.wait_timeouts,
                }
            },
            error: None,
        };
        if last_print.elapsed() >= Duration::from_secs(1) {
            last_print = Instant::now();
            let progress = match (st.phase.as_str(), st.snapshot.percent) {
                ("snapshot", Some(p)) => format!(
                    " [{:<20}] {p:.1}%{}",
                    "#".repeat((p / 5.0) as usize),
                    if st.snapshot.transfer == Some("diskless") {
                        " (of keys; diskless: size unknown)"
                    } else {
                        ""
                    }
                ),
                _ => String::new(),
            };
            println!(
                "ferry: {}{progress} applied={} source={} lag={} bytes {:.1}s keys={} commands={} skipped={} verify={}/{}",
                st.phase,
                st.applied_offset.map_or("-".into(), |v| v.to_string()),
                st.source_offset.map_or("-".into(), |v| v.to_string()),
                st.lag_bytes.map_or("-".into(), |v| v.to_string()),
                st.lag_seconds,
                st.keys_applied,
                st.commands_applied,
                st.skipped.values().sum::<u64>(),
                st.verify.mismatches,
                st.verify.checked,
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

#[cfg(test)]
mod http_tests {
    use super::*;

    fn http(token: Option<&str>, protect_metrics: bool) -> HttpConfig {
        HttpConfig {
            listen: "127.0.0.1:0".into(),
            token: token.map(str::to_string),
            protect_metrics,
        }
    }

    fn code(req: &str, h: &HttpConfig) -> &'static str {
        respond(req, h, &Status::default()).0
    }

    #[test]
    fn token_rules() {
        let open = http(None, false);
        assert!(code("GET /status HTTP/1.1\r\n\r\n", &open).starts_with("200"));
        let t = http(Some("abc"), false);
        assert!(code("GET /status HTTP/1.1\r\n\r\n", &t).starts_with("401"));
        assert!(
            code(
                "GET /status HTTP/1.1\r\nauthorization: Bearer abc\r\n\r\n",
                &t
            )
            .starts_with("200")
        );
        assert!(
            code(
                "GET /status HTTP/1.1\r\nAuthorization: Bearer abd\r\n\r\n",
                &t
            )
            .starts_with("401")
        );
        assert!(code("GET /metrics HTTP/1.1\r\n\r\n", &t).starts_with("200"));
        assert!(code("GET /?token=a%62c HTTP/1.1\r\n\r\n", &t).starts_with("200"));
        assert!(code("GET /status?token=abc HTTP/1.1\r\n\r\n", &t).starts_with("401"));
        assert!(code("GET /nothing HTTP/1.1\r\n\r\n", &t).starts_with("401"));
        let m = http(Some("abc"), true);
        assert!(code("GET /metrics HTTP/1.1\r\n\r\n", &m).starts_with("401"));
        assert!(
            code(
                "GET /metrics HTTP/1.1\r\nAuthorization: Bearer abc\r\n\r\n",
                &m
            )
            .starts_with("200")
        );
    }

    #[test]
    fn listens_on_loopback_by_default() {
        let cfg =
            Config::parse("source: { url: \"redis://a:1\" }\ntarget: { url: \"redis://b:2\" }\n")
                .expect("config");
        let addr: std::net::SocketAddr = cfg.http.listen.parse().expect("an IP address");
        assert!(addr.ip().is_loopback(), "{addr}");
        assert_eq!(cfg.http.token, None);
    }
}
