//! Questions ferry asks the servers before it starts, shared by `ferry run`
//! and `ferry verify`: the target's RDB format and mode, whether the target
//! is empty, whether the source holds keys in dbs a cluster cannot take.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use ferry_cluster::{Auth, Conn, TargetMode};
use ferry_ops::{Info, info_text};

use crate::apply::TargetFormat;
use crate::config::{Config, TargetKind};

/// The target's RDB format and, for `target.mode: auto`, whether it is a
/// cluster (`cluster_enabled:1` in `INFO cluster`).
pub(crate) async fn target_format(
    addr: &str,
    auth: &Auth,
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
            let text = info_text(&info).unwrap_or_default();
            if Info::parse(&text).get("cluster_enabled") == Some("1") {
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
    match info_text(&info) {
        Ok(t) => Ok((TargetFormat::from_info(&t), mode)),
        Err(e) => bail!("target {addr}: {e}"),
    }
}

/// Whether the target holds no key (in any db): `Err(why not)` names a
/// master and its key count. A new migration into a non-empty target is
/// refused unless `--allow-nonempty-target`: it may be the wrong cluster,
/// or another application's.
pub(crate) async fn target_is_empty(
    masters: &[String],
    auth: &Auth,
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
        let text = info_text(&info).unwrap_or_default();
        let n: u64 = Info::parse(&text).keyspace().iter().map(|d| d.keys).sum();
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
pub(crate) async fn check_source_dbs(
    src: &crate::source::SourceNode,
    cfg: &Config,
    standalone: bool,
) -> Result<()> {
    if !cfg.filter.dbs.is_empty() || standalone {
        return Ok(());
    }
    let Ok(mut conn) = Conn::connect_tls(
        &src.addr(),
        &src.endpoint.auth,
        Duration::from_secs(5),
        src.tls.as_ref(),
    )
    .await
    else {
        return Ok(()); // the link reports connection problems with their cause
    };
    let Ok(info) = conn
        .call(&["INFO", "keyspace"], Duration::from_secs(5))
        .await
    else {
        return Ok(());
    };
    let text = info_text(&info).unwrap_or_default();
    for ferry_ops::DbKeys { db, keys, .. } in Info::parse(&text).keyspace() {
        if db != 0 && keys > 0 {
            bail!(
                "the source's db {db} holds {keys} keys, but a cluster has only db 0: \
                 set filter.dbs (e.g. dbs: [0, {db}] merges them into db 0) or leave them out with dbs: [0]"
            );
        }
    }
    Ok(())
}
