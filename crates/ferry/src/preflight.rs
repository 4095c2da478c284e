//! Checks `ferry run` makes before it starts, each failing with a message
//! that names the problem:
//!
//! * the source answers and accepts the credentials (otherwise the link would
//!   retry forever with the phase stuck at `connecting`); when resuming from a
//!   saved position only the credentials must be right: a source that is
//!   down for a while is waited for;
//! * the source is not one of the target's nodes (same `run_id`);
//! * `snapshot.restore: always`: the target reads the source's RDB version;
//! * the target has the modules whose values the source holds (`INFO
//!   modules`); a lacking one is a warning (its keys are skipped and counted
//!   as `module_missing`), or an error with `snapshot.restore: always`.
//!
//! It also reads the number of keys to migrate (`INFO keyspace`) for the
//! snapshot progress. A source user without `+info` only loses the last two
//! (a warning says so).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use ferry_cluster::{Auth, Conn, ConnError};
use ferry_ops::{Info, info_text};
use ferry_rdb::Flavor;

use crate::apply::TargetFormat;
use crate::config::{Config, RestoreMode};

const T: Duration = Duration::from_secs(5);

/// What the checks learnt about the source.
#[derive(Debug, Clone, Default)]
pub struct SourceFacts {
    /// Keys in the dbs the filter carries (`INFO keyspace`).
    pub keys_total: Option<u64>,
    /// Modules (lower-case names) the source has and the target lacks.
    pub missing_modules: std::collections::BTreeSet<String>,
}

/// `INFO <section>` as text.
async fn info(conn: &mut Conn, section: &str) -> Result<String> {
    let v = conn.call(&["INFO", section], T).await?;
    Ok(info_text(&v)
        .with_context(|| format!("INFO {section}"))?
        .into_owned())
}

fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    Info::parse(info).get(name)
}

/// `Redis 7.0.15` / `Valkey 9.0.0`.
fn product(info: &str) -> String {
    match field(info, "valkey_version") {
        Some(v) => format!("Valkey {v}"),
        None => format!("Redis {}", field(info, "redis_version").unwrap_or("?")),
    }
}

/// Keys in the dbs `cfg.filter` carries, from `INFO keyspace` text.
fn keys_in_carried_dbs(cfg: &Config, keyspace: &str) -> u64 {
    Info::parse(keyspace)
        .keyspace()
        .iter()
        .filter(|d| cfg.filter.db(d.db))
        .map(|d| d.keys)
        .sum()
}

/// Run the checks; `masters` are the target's masters (already connected
/// to with `target_auth`).
pub async fn check(
    cfg: &Config,
    src: &crate::source::SourceNode,
    masters: &[String],
    target_auth: &Auth,
    resuming: bool,
) -> Result<SourceFacts> {
    let mut conn =
        match Conn::connect_tls(&src.addr(), &src.endpoint.auth, T, src.tls.as_ref()).await {
            Ok(c) => c,
            // Resuming after a restart, a source that is down (restarting,
            // unreachable for a while) is waited for by the link; wrong
            // credentials never get better.
            Err(e) if resuming && !matches!(e, ConnError::Auth { .. } | ConnError::Tls { .. }) => {
                tracing::warn!(
                    "cannot connect to the source {} yet: {e}; resuming, the link keeps trying",
                    src.addr()
                );
                return Ok(SourceFacts::default());
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "cannot connect to the source {} ({})",
                    src.addr(),
                    crate::source::describe(&cfg.source)
                )));
            }
        };
    let server = match info(&mut conn, "server").await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(
                "source: {e:#}: no snapshot key total, no same-server check (grant +info)"
            );
            if cfg.snapshot.restore == RestoreMode::Always {
                bail!(
                    "snapshot.restore: always needs the source's version, but INFO is refused \
                     on the source: {e:#}"
                );
            }
            return Ok(SourceFacts::default());
        }
    };
    let keys_total = info(&mut conn, "keyspace")
        .await
        .ok()
        .map(|k| keys_in_carried_dbs(cfg, &k));

    // Same server under another name?
    let run_id = field(&server, "run_id").unwrap_or_default().to_string();
    let source_modules = info(&mut conn, "modules")
        .await
        .map(|t| crate::modules::loaded(&t))
        .unwrap_or_default();
    let mut target_modules = Vec::new();
    let mut target_info = None;
    for addr in masters {
        let mut t = Conn::connect_tls(addr, target_auth, T, cfg.target.tls_config().as_ref())
            .await
            .with_context(|| format!("target node {addr}"))?;
        let text = info(&mut t, "server")
            .await
            .with_context(|| format!("target node {addr}"))?;
        if !run_id.is_empty() && field(&text, "run_id") == Some(run_id.as_str()) {
            bail!(
                "source and target are the same server: the target node {addr} is the source {} \
                 (same run_id)",
                src.addr()
            );
        }
        target_info.get_or_insert(text);
        if !source_modules.is_empty() {
            let m = info(&mut t, "modules")
                .await
                .with_context(|| format!("target node {addr}"))?;
            target_modules.push(crate::modules::loaded(&m));
        }
    }
    let missing_modules = crate::modules::missing(&source_modules, &target_modules);
    if !missing_modules.is_empty() {
        let names = missing_modules
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        if cfg.snapshot.restore == RestoreMode::Always {
            bail!(
                "snapshot.restore: always, but the target lacks module(s) the source has: \
                 {names}; load them on every target master, or set snapshot.restore: auto to \
                 skip (and count) their keys"
            );
        }
        tracing::warn!(
            "the target lacks module(s) the source has: {names}; keys of their types are not \
             carried (counted as module_missing, each logged with its key)"
        );
    }

    if cfg.snapshot.restore == RestoreMode::Always {
        let source = TargetFormat::from_info(&server);
        let flavor = if source.valkey && source.rdb_version >= 80 {
            Flavor::Valkey
        } else {
            Flavor::Redis
        };
        let target_text = target_info.unwrap_or_default();
        let target = TargetFormat::from_info(&target_text);
        if target.stamp(flavor, source.rdb_version, 0).is_none() {
            bail!(
                "snapshot.restore: always, but the target ({}, reads RDB version {} at most) cannot \
                 read the source's RDB version {} ({}): upgrade the target, or set \
                 snapshot.restore: auto to rebuild keys with commands",
                product(&target_text),
                target.rdb_version,
                source.rdb_version,
                product(&server),
            );
        }
    }
    Ok(SourceFacts {
        keys_total,
        missing_modules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_carried_dbs() {
        let cfg = Config::parse(
            "source: { url: \"redis://a:1\" }\ntarget: { url: \"redis://b:2\" }\nfilter: { dbs: [0, 3] }\n",
        )
        .expect("config");
        let ks = "# Keyspace\r\ndb0:keys=10,expires=1,avg_ttl=0\r\ndb2:keys=5,expires=0\r\ndb3:keys=7,expires=0\r\n";
        assert_eq!(keys_in_carried_dbs(&cfg, ks), 17);
        assert_eq!(product("redis_version:7.0.15\r\n"), "Redis 7.0.15");
    }
}
