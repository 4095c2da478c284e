//! `ferry cutover --reverse R.yaml`: before the pause, a replication
//! backlog on every target master; during it, once in sync, each master's
//! position; then the reverse configuration.
//!
//! A master that never had a replica keeps no backlog, and its
//! `master_repl_offset` does not advance: a position recorded there cannot
//! be continued. Redis creates the backlog (with a new replid) when the
//! first replica asks to sync, so ferry connects as a short-lived replica
//! (`PSYNC ? -1`), reads the `+FULLRESYNC` line and hangs up, discarding
//! the snapshot. The backlog then lives until `repl-backlog-ttl` seconds
//! pass with no replica: the reverse run must start within that time.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ferry_cluster::{Auth, Conn, TargetMode, WriterConfig, WriterError};
use ferry_resp::Value;

use super::StartPosition;
use crate::config::{Config, TargetKind, parse_endpoint};

const T: Duration = Duration::from_secs(5);

/// How ferry reaches the target's masters.
pub struct Masters {
    /// `host:port` of each master.
    pub addrs: Vec<String>,
    auth: Auth,
    tls: Option<ferry_tls::TlsConfig>,
}

/// The masters of `cfg`'s target (one for a standalone server).
pub async fn target_masters(cfg: &Config) -> Result<Masters> {
    let dst = parse_endpoint(&cfg.target.url)?;
    let tls = cfg.target.tls_config();
    let addr = dst.addr();
    let wcfg = WriterConfig {
        auth: dst.auth.clone(),
        tls: tls.clone(),
        mode: TargetMode::Cluster,
        ..Default::default()
    };
    let addrs = if cfg.target.mode == TargetKind::Standalone {
        vec![addr]
    } else {
        match ferry_cluster::discover_topology(&cfg.target.url, &wcfg).await {
            Ok(t) => t.masters.iter().map(ferry_ops::Node::addr).collect(),
            Err(WriterError::NotACluster { .. }) if cfg.target.mode == TargetKind::Auto => {
                vec![addr]
            }
            Err(e) => return Err(e).context("the target's masters"),
        }
    };
    Ok(Masters {
        addrs,
        auth: dst.auth,
        tls,
    })
}

async fn connect(m: &Masters, addr: &str) -> Result<Conn> {
    Conn::connect_tls(addr, &m.auth, T, m.tls.as_ref())
        .await
        .with_context(|| format!("target master {addr}"))
}

/// `INFO replication` of `addr` as name → value.
async fn info_replication(conn: &mut Conn, addr: &str) -> Result<HashMap<String, String>> {
    let reply = conn
        .call(&["INFO", "replication"], T)
        .await
        .with_context(|| format!("INFO replication on {addr}"))?;
    let Some(text) = reply
        .as_bytes()
        .filter(|_| !matches!(reply, Value::Error(_)))
    else {
        bail!("INFO replication on {addr}: unexpected reply {reply:?}");
    };
    let text = String::from_utf8_lossy(text);
    Ok(ferry_ops::Info::parse(&text)
        .fields()
        .iter()
        .map(|f| (f.name.to_owned(), f.value.to_owned()))
        .collect())
}

fn field<'a>(info: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    info.get(name).map(String::as_str)
}

/// Makes sure every master keeps a replication backlog; returns the
/// masters where ferry had to create one.
pub async fn ensure_backlogs(m: &Masters) -> Result<Vec<String>> {
    let mut created = Vec::new();
    for addr in &m.addrs {
        let mut conn = connect(m, addr).await?;
        let info = info_replication(&mut conn, addr).await?;
        if field(&info, "role") != Some("master") {
            bail!("{addr} is not a master (role {:?})", field(&info, "role"));
        }
        if field(&info, "repl_backlog_active") == Some("1") {
            continue;
        }
        // A short-lived replica: the first replica's sync creates the
        // backlog; ferry hangs up after the +FULLRESYNC line.
        let mut replica = connect(m, addr).await?;
        let reply = replica
            .call(&["PSYNC", "?", "-1"], Duration::from_secs(30))
            .await
            .with_context(|| format!("PSYNC on {addr} (to create its replication backlog)"))?;
        drop(replica);
        if let Value::Error(e) = &reply {
            bail!(
                "{addr} refused PSYNC ({}): cannot create its replication backlog",
                String::from_utf8_lossy(e)
            );
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let info = info_replication(&mut conn, addr).await?;
            if field(&info, "repl_backlog_active") == Some("1") {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("{addr} still has no replication backlog after a replica connected");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::info!(master = %addr, "created a replication backlog (the master had no replica)");
        created.push(addr.clone());
    }
    Ok(created)
}

/// Each master's `master_replid` / `master_repl_offset` now, and the
/// smallest `repl-backlog-ttl` in seconds (`None` when `CONFIG GET` is
/// refused everywhere).
pub async fn positions(m: &Masters) -> Result<(Vec<StartPosition>, Option<u64>)> {
    let mut out = Vec::new();
    let mut ttl: Option<u64> = None;
    for addr in &m.addrs {
        let mut conn = connect(m, addr).await?;
        let info = info_replication(&mut conn, addr).await?;
        let replid = field(&info, "master_replid")
            .with_context(|| format!("{addr}: no master_replid in INFO replication"))?;
        let offset = field(&info, "master_repl_offset")
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("{addr}: no master_repl_offset in INFO replication"))?;
        if field(&info, "repl_backlog_active") != Some("1") {
            bail!("{addr} has no replication backlog: its position cannot be continued");
        }
        out.push(StartPosition {
            master: addr.clone(),
            replid: replid.to_owned(),
            offset,
        });
        if let Ok(Value::Array(kv)) = conn.call(&["CONFIG", "GET", "repl-backlog-ttl"], T).await
            && let Some(v) = kv.get(1).and_then(Value::as_int)
        {
            let v = u64::try_from(v).unwrap_or(0);
            ttl = Some(ttl.map_or(v, |t| t.min(v)));
        }
    }
    Ok((out, ttl))
}
