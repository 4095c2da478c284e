//! `ferry verify --config FILE`: compare the source and the target now.
//!
//! Walks the source with `SCAN` (never `KEYS`), reads each key's type, TTL
//! and value on both sides (the target key from the master that owns its
//! slot) and compares by value: sets and hashes as sorted sets, scores as
//! numbers, TTLs within a tolerance. Exit status: 0 identical, 1 differences
//! (each listed), 2 error. Into a cluster only db 0 is compared (a cluster
//! has only db 0); into a standalone target every db of the source that
//! `filter.dbs` carries, each with the same db of the target.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use ferry_cluster::{Auth, Conn, TargetMode, WriterConfig, discover_topology};
use ferry_ops::{Topology, key_slot};
use ferry_resp::Value;

use crate::config::{Config, parse_url};

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

struct Side {
    kind: String,
    pttl: i64,
    value: Option<String>,
}

async fn read(conn: &mut Conn, key: &[u8]) -> Result<Side> {
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

/// Compares every key of the source's current db with the target (each key
/// read from the master serving its slot); `(compared, differing)`. `db` is
/// shown with differences (standalone targets); `shown_before` differences
/// were already listed.
async fn compare_db(
    s: &mut Conn,
    nodes: &mut [Conn],
    topo: &Topology,
    args: &VerifyArgs,
    db: Option<u64>,
    shown_before: u64,
) -> Result<(u64, u64)> {
    let (mut compared, mut diffs) = (0u64, 0u64);
    let mut cursor = b"0".to_vec();
    loop {
        let reply = call(s, &[b"SCAN", &cursor, b"COUNT", b"500"]).await?;
        let parts = reply.as_array().context("SCAN reply")?;
        cursor = parts
            .first()
            .and_then(|c| c.as_bytes())
            .context("SCAN cursor")?
            .to_vec();
        for k in parts.get(1).and_then(|k| k.as_array()).unwrap_or_default() {
            let Some(key) = k.as_bytes() else { continue };
            let a = read(s, key).await?;
            if a.kind == "none" {
                continue; // deleted meanwhile
            }
            let Some(node) = topo.slots.node_for(key_slot(key)) else {
                bail!("slot {} of the target is not served", key_slot(key));
            };
            let b = read(&mut nodes[node], key).await?;
            compared += 1;
            let what = if a.kind != b.kind {
                Some(format!(
                    "type {} on the source, {} on the target",
                    a.kind, b.kind
                ))
            } else if a.value != b.value {
                Some("value differs".to_string())
            } else if (a.pttl < 0) != (b.pttl < 0)
                || (a.pttl - b.pttl).abs() > args.ttl_tolerance_ms
            {
                Some(format!(
                    "ttl {} ms on the source, {} ms on the target",
                    a.pttl, b.pttl
                ))
            } else {
                None
            };
            if let Some(what) = what {
                diffs += 1;
                if (shown_before + diffs) as usize <= args.show {
                    let key = String::from_utf8_lossy(key);
                    match db {
                        Some(db) => println!("differs: db {db} {key:?}: {what}"),
                        None => println!("differs: {key:?}: {what}"),
                    }
                }
            }
        }
        if cursor == b"0" {
            break;
        }
    }
    Ok((compared, diffs))
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

async fn verify(cfg: Config, args: &VerifyArgs) -> Result<bool> {
    let src = parse_url(&cfg.source.url)?;
    let dst = parse_url(&cfg.target.url)?;
    let sauth = Auth {
        user: src.user,
        password: src.password,
    };
    let dauth = Auth {
        user: dst.user,
        password: dst.password,
    };
    let mut s = Conn::connect_tls(&src.addr, &sauth, T, cfg.source.tls_config().as_ref())
        .await
        .with_context(|| format!("source {}", src.addr))?;
    let dtls = cfg.target.tls_config();
    let (_, mode) =
        crate::run::target_format(&dst.addr, &dauth, dtls.as_ref(), cfg.target.mode).await?;
    let standalone = mode == TargetMode::Standalone;
    let wcfg = WriterConfig {
        auth: dauth.clone(),
        tls: dtls.clone(),
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
            Conn::connect_tls(&n.addr(), &dauth, T, dtls.as_ref())
                .await
                .with_context(|| format!("target node {}", n.addr()))?,
        );
    }
    // A cluster has db 0 only; a standalone target keeps the source's dbs.
    let dbs = if standalone {
        source_dbs(&mut s)
            .await?
            .into_iter()
            .filter(|db| cfg.filter.carries_db(*db, true))
            .collect()
    } else {
        vec![0]
    };
    let (mut compared, mut diffs) = (0u64, 0u64);
    for db in dbs {
        let db_text = db.to_string();
        if standalone {
            call(&mut s, &[b"SELECT", db_text.as_bytes()]).await?;
            call(&mut nodes[0], &[b"SELECT", db_text.as_bytes()]).await?;
        }
        let shown = standalone.then_some(db);
        let (c, d) = compare_db(&mut s, &mut nodes, &topo, args, shown, diffs).await?;
        compared += c;
        diffs += d;
    }
    println!("verify: {compared} keys compared, {diffs} differ");
    Ok(diffs == 0)
}
