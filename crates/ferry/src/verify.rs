//! `ferry verify --config FILE`: compare the source and the target now.
//!
//! Walks the source with `SCAN` (never `KEYS`), reads each key's type, TTL
//! and value on both sides (the target key from the master that owns its
//! slot) and compares by value: sets and hashes as sorted sets, scores as
//! numbers, TTLs within a tolerance. Then it walks every target master with
//! `SCAN` and reports keys the source does not have. Only keys inside the
//! configured filter are compared, and keys under ferry's reserved prefix
//! `__ferry:` (its checkpoints) never are. Exit status: 0 identical,
//! 1 differences (each listed), 2 error. Into a cluster only db 0 is
//! compared (a cluster has only db 0), or with `filter.db_prefix` every db of
//! `filter.dbs`, key K of db N against the target's prefix(N)+K; into a
//! standalone target every db of the source that `filter.dbs` carries, each
//! with the same db of the target.
//!
//! [`read`], [`compare`] and [`Target`] are shared with the sampled verify
//! that runs during streaming (`sampler.rs`).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use ferry_cluster::{Auth, Conn, TargetMode, WriterConfig, discover_topology};
use ferry_ops::{Topology, key_slot};
use ferry_resp::Value;

use crate::config::{Config, Filter, parse_url};

/// Arguments of `ferry verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The YAML configuration of `ferry run`.
    #[arg(long)]
    pub config: std::path::PathBuf,
    /// TTLs may differ by this many milliseconds (the time between the two reads).
    #[arg(long, default_value_t = 2000)]
    pub ttl_tolerance_ms: i64,
    /// Stop listing differences after this many (they are still counted).
    #[arg(long, default_value_t = 50)]
    pub show: usize,
}

const T: Duration = Duration::from_secs(10);

async fn call(conn: &mut Conn, args: &[&[u8]]) -> Result<Value> {
    let v = conn.call(args, T).await?;
    if let Some(m) = v.error_message() {
        bail!(
            "{} on {}: {}",
            String::from_utf8_lossy(args[0]),
            conn.addr(),
            String::from_utf8_lossy(m)
        );
    }
    Ok(v)
}

/// A value in a comparable form: sets and hashes sorted, scores as numbers.
fn canon(kind: &str, v: &Value) -> String {
    let items: Vec<&[u8]> = v
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_bytes().map(|b| &b[..]))
                .collect()
        })
        .unwrap_or_default();
    match kind {
        "set" => {
            let mut m = items;
            m.sort();
            format!("{m:?}")
        }
        "hash" => {
            let mut pairs: Vec<&[&[u8]]> = items.chunks(2).collect();
            pairs.sort();
            format!("{pairs:?}")
        }
        "zset" => {
            let mut pairs: Vec<(&[u8], f64)> = items
                .chunks(2)
                .map(|c| {
                    let score = c
                        .get(1)
                        .and_then(|s| std::str::from_utf8(s).ok())
                        .and_then(|s| s.parse::<f64>().ok())
                        .unwrap_or(f64::NAN);
                    // -0 and 0 are the same score.
                    (c[0], score + 0.0)
                })
                .collect();
            pairs.sort_by(|a, b| a.0.cmp(b.0));
            format!("{pairs:?}")
        }
        _ => format!("{v:?}"),
    }
}

fn value_command(kind: &str) -> Option<&'static [&'static [u8]]> {
    Some(match kind {
        "string" => &[b"GET"],
        "list" => &[b"LRANGE", b"0", b"-1"],
        "set" => &[b"SMEMBERS"],
        "zset" => &[b"ZRANGE", b"0", b"-1", b"WITHSCORES"],
        "hash" => &[b"HGETALL"],
        "stream" => &[b"XRANGE", b"-", b"+"],
        _ => return None,
    })
}

/// One side's view of a key: type, PTTL and the value in comparable form.
#[derive(Debug, Clone, PartialEq)]
pub struct Side {
    /// `TYPE` (`none` when the key does not exist).
    pub kind: String,
    /// `PTTL` (-1 no expiry, -2 missing).
    pub pttl: i64,
    /// The value, canonicalised (`None` for types not compared by value).
    pub value: Option<String>,
}

/// Read a key's type, TTL and value (read-only commands).
pub async fn read(conn: &mut Conn, key: &[u8]) -> Result<Side> {
    let kind = call(conn, &[b"TYPE", key]).await?;
    let kind = kind
        .as_bytes()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();
    let pttl = call(conn, &[b"PTTL", key]).await?.as_int().unwrap_or(-2);
    let value = match value_command(&kind) {
        Some(cmd) => {
            let mut args: Vec<&[u8]> = vec![cmd[0], key];
            args.extend_from_slice(&cmd[1..]);
            Some(canon(&kind, &call(conn, &args).await?))
        }
        None => None,
    };
    Ok(Side { kind, pttl, value })
}

/// Like [`read`] for many keys in three pipelined round trips (`TYPE` of
/// all, `PTTL` of all, then each value).
pub async fn read_many(conn: &mut Conn, keys: &[Vec<u8>]) -> Result<Vec<Side>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let addr = conn.addr().to_string();
    let checked = |v: Vec<Value>| -> Result<Vec<Value>> {
        if let Some(m) = v.iter().find_map(|x| x.error_message()) {
            bail!("reading keys on {addr}: {}", String::from_utf8_lossy(m));
        }
        Ok(v)
    };
    let cmds: Vec<Vec<&[u8]>> = keys.iter().map(|k| vec![&b"TYPE"[..], k]).collect();
    let kinds = checked(conn.call_many(&cmds, T).await?)?;
    let cmds: Vec<Vec<&[u8]>> = keys.iter().map(|k| vec![&b"PTTL"[..], k]).collect();
    let pttls = checked(conn.call_many(&cmds, T).await?)?;
    let kinds: Vec<String> = kinds
        .iter()
        .map(|k| {
            k.as_bytes()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default()
        })
        .collect();
    let mut cmds: Vec<Vec<&[u8]>> = Vec::new();
    for (key, kind) in keys.iter().zip(&kinds) {
        if let Some(cmd) = value_command(kind) {
            let mut args: Vec<&[u8]> = vec![cmd[0], key];
            args.extend_from_slice(&cmd[1..]);
            cmds.push(args);
        }
    }
    let mut values = checked(conn.call_many(&cmds, T).await?)?.into_iter();
    let mut out = Vec::with_capacity(keys.len());
    for (kind, pttl) in kinds.into_iter().zip(pttls) {
        let value = match value_command(&kind) {
            Some(_) => Some(canon(&kind, &values.next().context("a value reply")?)),
            None => None,
        };
        out.push(Side {
            kind,
            pttl: pttl.as_int().unwrap_or(-2),
            value,
        });
    }
    Ok(out)
}

/// What differs between the source's and the target's view of a key
/// (`None`: the same, TTLs within `ttl_tolerance_ms`). A TTL the target
/// holds while ferry catches up (the TTL hold: the true expiry plus
/// `ferry_ops::HOLD_MS`) is compared as the true one.
pub fn compare(a: &Side, b: &Side, ttl_tolerance_ms: i64) -> Option<String> {
    let b_pttl = if b.pttl > ferry_ops::HOLD_MS / 2 {
        b.pttl - ferry_ops::HOLD_MS
    } else {
        b.pttl
    };
    if a.kind != b.kind {
        Some(format!(
            "type {} on the source, {} on the target",
            a.kind, b.kind
        ))
    } else if a.value != b.value {
        Some("value differs".to_string())
    } else if (a.pttl < 0) != (b_pttl < 0) || (a.pttl - b_pttl).abs() > ttl_tolerance_ms {
        Some(format!(
            "ttl {} ms on the source, {} ms on the target",
            a.pttl, b.pttl
        ))
    } else {
        None
    }
}

/// Keys under this prefix are ferry's own (checkpoints in the target): never
/// compared, never reported as extra, removed by cleanup.
pub const RESERVED_PREFIX: &[u8] = ferry_cluster::RESERVED_PREFIX.as_bytes();

/// Whether a key takes part in a comparison: inside the filter and not one
/// of ferry's own keys.
pub fn compared_key(filter: &Filter, key: &[u8]) -> bool {
    !key.starts_with(RESERVED_PREFIX) && filter.key(key)
}

/// Connections to every master of the target (one for a standalone
/// target), by slot.
pub struct Target {
    topo: Topology,
    nodes: Vec<Conn>,
    /// A standalone server: dbs are kept, `SELECT` before reading.
    pub standalone: bool,
}

impl Target {
    /// Discover the target from `cfg.target` (TLS, cluster or standalone)
    /// and connect to every master.
    pub async fn connect(cfg: &Config) -> Result<Target> {
        let dst = parse_url(&cfg.target.url)?;
        let auth = Auth {
            user: dst.user,
            password: dst.password,
        };
        let tls = cfg.target.tls_config();
        let (_, mode) =
            crate::probe::target_format(&dst.addr, &auth, tls.as_ref(), cfg.target.mode).await?;
        let wcfg = WriterConfig {
            auth: auth.clone(),
            tls: tls.clone(),
            connect_timeout: T,
            mode,
            ..WriterConfig::default()
        };
        let topo = discover_topology(&dst.addr, &wcfg)
            .await
            .with_context(|| format!("target {}", dst.addr))?;
        let mut nodes = Vec::new();
        for n in &topo.masters {
            nodes.push(
                Conn::connect_tls(&n.addr(), &auth, T, tls.as_ref())
                    .await
                    .with_context(|| format!("target node {}", n.addr()))?,
            );
        }
        Ok(Target {
            topo,
            nodes,
            standalone: mode == TargetMode::Standalone,
        })
    }

    /// Standalone target: read db `db` from now on.
    pub async fn select(&mut self, db: u64) -> Result<()> {
        let db = db.to_string();
        for n in &mut self.nodes {
            call(n, &[b"SELECT", db.as_bytes()]).await?;
        }
        Ok(())
    }

    /// The connection to the master serving `key`'s slot.
    pub fn node_for(&mut self, key: &[u8]) -> Result<&mut Conn> {
        let Some(node) = self.topo.slots.node_for(key_slot(key)) else {
            bail!("slot {} of the target is not served", key_slot(key));
        };
        Ok(&mut self.nodes[node])
    }

    /// Read `key` from the master that owns it.
    pub async fn read(&mut self, key: &[u8]) -> Result<Side> {
        read(self.node_for(key)?, key).await
    }

    /// Read `keys` from the masters that own them, pipelined per master;
    /// results in the order of `keys`.
    pub async fn read_many(&mut self, keys: &[Vec<u8>]) -> Result<Vec<Side>> {
        let mut by_node: Vec<Vec<usize>> = vec![Vec::new(); self.nodes.len()];
        for (i, key) in keys.iter().enumerate() {
            let Some(node) = self.topo.slots.node_for(key_slot(key)) else {
                bail!("slot {} of the target is not served", key_slot(key));
            };
            by_node[node].push(i);
        }
        let mut out: Vec<Option<Side>> = (0..keys.len()).map(|_| None).collect();
        for (node, idx) in by_node.into_iter().enumerate() {
            let mine: Vec<Vec<u8>> = idx.iter().map(|&i| keys[i].clone()).collect();
            for (i, side) in idx
                .into_iter()
                .zip(read_many(&mut self.nodes[node], &mine).await?)
            {
                out[i] = Some(side);
            }
        }
        out.into_iter()
            .map(|s| s.context("a key without a reply"))
            .collect()
    }
}

/// Connect to the source (read-only use).
pub async fn connect_source(cfg: &Config) -> Result<Conn> {
    let src = parse_url(&cfg.source.url)?;
    let auth = Auth {
        user: src.user,
        password: src.password,
    };
    Conn::connect_tls(&src.addr, &auth, T, cfg.source.tls_config().as_ref())
        .await
        .with_context(|| format!("source {}", src.addr))
}

/// Run `ferry verify`; Ok(true) when identical.
pub fn run(args: &VerifyArgs) -> Result<bool> {
    let cfg = Config::load(&args.config)?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(verify(cfg, args))
}

/// The dbs of the source that hold keys (`INFO keyspace`).
async fn source_dbs(s: &mut Conn) -> Result<Vec<u64>> {
    let info = call(s, &[b"INFO", b"keyspace"]).await?;
    let text = info
        .as_bytes()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();
    Ok(text
        .lines()
        .filter_map(|l| l.strip_prefix("db")?.split_once(':')?.0.parse().ok())
        .collect())
}

async fn verify(cfg: Config, args: &VerifyArgs) -> Result<bool> {
    let mut s = connect_source(&cfg).await?;
    let mut target = Target::connect(&cfg).await?;
    // A cluster has db 0 only; a standalone target keeps the source's dbs.
    let dbs: Vec<u64> = if target.standalone {
        source_dbs(&mut s)
            .await?
            .into_iter()
            .filter(|db| cfg.filter.carries_db(*db, true))
            .collect()
    } else if cfg.filter.dbs.is_empty() {
        vec![0]
    } else {
        // Carried dbs, merged into db 0 (or prefixed, below).
        cfg.filter.dbs.clone()
    };
    // Into a cluster with `filter.db_prefix`: key K of source db N is the
    // target's key prefix(N)+K; a target key belongs to the db with the
    // longest prefix it starts with (none: only on the target).
    let prefixes: Vec<(u64, Vec<u8>)> = if target.standalone {
        Vec::new()
    } else {
        dbs.iter()
            .filter_map(|&db| cfg.filter.prefix_for(db).map(|p| (db, p.to_vec())))
            .collect()
    };
    let owner = |key: &[u8]| -> Option<(u64, usize)> {
        prefixes
            .iter()
            .filter(|(_, p)| key.starts_with(p))
            .max_by_key(|(_, p)| p.len())
            .map(|(db, p)| (*db, p.len()))
    };
    // Several source dbs merged into the cluster's db 0 without prefixes:
    // a target key is "only on the target" when no carried db has it, so
    // that pass runs once, after the per-db comparisons.
    let merged = !target.standalone && prefixes.is_empty() && dbs != [0];
    let (mut compared, mut diffs, mut ignored, mut extra) = (0u64, 0u64, 0u64, 0u64);
    for (n, &db) in dbs.iter().enumerate() {
        let label = (target.standalone || !prefixes.is_empty() || merged).then_some(db);
        if db != 0 || n > 0 {
            // (A read-only user may lack SELECT: only when needed.)
            call(&mut s, &[b"SELECT", db.to_string().as_bytes()]).await?;
        }
        if target.standalone {
            target.select(db).await?;
        }
        let prefix: Vec<u8> = prefixes
            .iter()
            .find(|(d, _)| *d == db)
            .map(|(_, p)| p.clone())
            .unwrap_or_default();
        let report = |key: &[u8], what: &str, diffs: &mut u64| {
            *diffs += 1;
            if *diffs as usize <= args.show {
                let key = String::from_utf8_lossy(key);
                match label {
                    Some(db) => println!("differs: db {db} {key:?}: {what}"),
                    None => println!("differs: {key:?}: {what}"),
                }
            }
        };
        // Source → target: every source key inside the filter.
        let mut cursor = b"0".to_vec();
        loop {
            let (next, keys) = scan(&mut s, &cursor).await?;
            cursor = next;
            let total = keys.len();
            let keys: Vec<Vec<u8>> = keys
                .into_iter()
                .filter(|k| compared_key(&cfg.filter, k))
                .collect();
            ignored += (total - keys.len()) as u64;
            let sources = read_many(&mut s, &keys).await?;
            let target_keys: Vec<Vec<u8>> = keys
                .iter()
                .map(|k| [&prefix[..], &k[..]].concat())
                .collect();
            let targets = target.read_many(&target_keys).await?;
            for ((key, a), b) in keys.iter().zip(&sources).zip(&targets) {
                if a.kind == "none" {
                    continue; // deleted meanwhile
                }
                compared += 1;
                if let Some(what) = compare(a, b, args.ttl_tolerance_ms) {
                    report(key, &what, &mut diffs);
                }
            }
            if cursor == b"0" {
                break;
            }
        }
        // Target → source: keys the target holds (inside the filter) that
        // the source does not.
        if merged {
            continue;
        }
        for node in 0..target.nodes.len() {
            let mut cursor = b"0".to_vec();
            loop {
                let (next, keys) = scan(&mut target.nodes[node], &cursor).await?;
                cursor = next;
                let keys: Vec<Vec<u8>> = if prefixes.is_empty() {
                    keys.into_iter()
                        .filter(|k| compared_key(&cfg.filter, k))
                        .collect()
                } else {
                    // This db's keys, without the prefix; the first pass
                    // also reports keys no carried db's prefix names.
                    let mut mine = Vec::new();
                    for k in keys {
                        match owner(&k) {
                            Some((d, len)) if d == db && compared_key(&cfg.filter, &k[len..]) => {
                                mine.push(k[len..].to_vec());
                            }
                            None if n == 0 && !k.starts_with(RESERVED_PREFIX) => {
                                extra += 1;
                                report(
                                    &k,
                                    "on the target under no db_prefix of a carried db",
                                    &mut diffs,
                                );
                            }
                            _ => {}
                        }
                    }
                    mine
                };
                for key in missing(&mut s, &keys).await? {
                    extra += 1;
                    report(key, "present on the target, not on the source", &mut diffs);
                }
                if cursor == b"0" {
                    break;
                }
            }
        }
    }
    if merged {
        for node in 0..target.nodes.len() {
            let mut cursor = b"0".to_vec();
            loop {
                let (next, keys) = scan(&mut target.nodes[node], &cursor).await?;
                cursor = next;
                let mut keys: Vec<Vec<u8>> = keys
                    .into_iter()
                    .filter(|k| compared_key(&cfg.filter, k))
                    .collect();
                for &db in &dbs {
                    if keys.is_empty() {
                        break;
                    }
                    call(&mut s, &[b"SELECT", db.to_string().as_bytes()]).await?;
                    keys = missing(&mut s, &keys)
                        .await?
                        .into_iter()
                        .map(<[u8]>::to_vec)
                        .collect();
                }
                for key in keys {
                    extra += 1;
                    diffs += 1;
                    if diffs as usize <= args.show {
                        println!(
                            "differs: {:?}: present on the target, in none of the source's dbs {dbs:?}",
                            String::from_utf8_lossy(&key)
                        );
                    }
                }
                if cursor == b"0" {
                    break;
                }
            }
        }
    }
    println!(
        "verify: {compared} keys compared, {diffs} differ ({extra} only on the target), \
         {ignored} source keys outside the filter"
    );
    Ok(diffs == 0)
}

/// The keys of `keys` the server does not have: one `EXISTS` for all of
/// them, key by key only when some are missing.
async fn missing<'a>(conn: &mut Conn, keys: &'a [Vec<u8>]) -> Result<Vec<&'a [u8]>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut args: Vec<&[u8]> = vec![b"EXISTS"];
    args.extend(keys.iter().map(|k| &k[..]));
    if call(conn, &args).await?.as_int() == Some(keys.len() as i64) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for key in keys {
        if call(conn, &[b"EXISTS", key]).await?.as_int() == Some(0) {
            out.push(&key[..]);
        }
    }
    Ok(out)
}

/// One `SCAN` step: the next cursor and the keys.
async fn scan(conn: &mut Conn, cursor: &[u8]) -> Result<(Vec<u8>, Vec<Vec<u8>>)> {
    let reply = call(conn, &[b"SCAN", cursor, b"COUNT", b"500"]).await?;
    let parts = reply.as_array().context("SCAN reply")?;
    let next = parts
        .first()
        .and_then(|c| c.as_bytes())
        .context("SCAN cursor")?
        .to_vec();
    let keys = parts
        .get(1)
        .and_then(|k| k.as_array())
        .unwrap_or_default()
        .iter()
        .filter_map(|k| k.as_bytes().map(|b| b.to_vec()))
        .collect();
    Ok((next, keys))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(pttl: i64) -> Side {
        Side {
            kind: "string".into(),
            pttl,
            value: Some("v".into()),
        }
    }

    #[test]
    fn a_held_ttl_compares_as_its_true_expiry() {
        let hold = ferry_ops::HOLD_MS;
        assert_eq!(compare(&side(5_000), &side(5_100), 2_000), None);
        assert_eq!(compare(&side(5_000), &side(hold + 5_100), 2_000), None);
        assert!(compare(&side(5_000), &side(hold + 60_000), 2_000).is_some());
        assert!(compare(&side(-1), &side(hold + 5_000), 2_000).is_some());
        assert!(compare(&side(5_000), &side(-1), 2_000).is_some());
    }
}
