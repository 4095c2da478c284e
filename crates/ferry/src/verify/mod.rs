//! `ferry verify --config FILE`: compare the source and the target now.
//!
//! A cluster source is read on every master (`target.rs`): one producer
//! per master, `--sample` shared among them by their key counts, one saved
//! cursor per master for `--resume`, keys only on the target looked up on
//! the master owning their slot.
//!
//! Walks the source with `SCAN` (never `KEYS`) and compares each key inside
//! the configured filter with the target's (read from the master that owns
//! its slot): type, TTL within a tolerance, and value — strings and TTLs in
//! one pipelined round trip per node, other types by digest where allowed
//! (`probe.rs`), whole values (sets and hashes as sorted sets, scores as
//! numbers) only where those do not decide. Meanwhile every target master is walked with
//! `SCAN` for keys the source does not have. Keys under ferry's reserved
//! prefix `__ferry:` (its checkpoints) are never compared. Exit status:
//! 0 identical, 1 differences (grouped by reason), 2 error. Into a cluster
//! only db 0 is compared (a cluster has only db 0), or with
//! `filter.db_prefix` every db of `filter.dbs`, key K of db N against the
//! target's prefix(N)+K; into a standalone target every db of the source
//! that `filter.dbs` carries, each with the same db of the target.
//!
//! [`read`], [`compare`] and [`Target`] are shared with the sampled verify
//! that runs during streaming (`sampler.rs`).

mod engine;
mod probe;
mod read;
mod report;
mod resume;
mod reverse;
mod target;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;

pub use read::{Side, compare, compared_key, read};
pub use target::Target;
pub(crate) use target::{Endpoints, connect_source, source_endpoints};

use crate::config::Config;
use engine::{Ctx, Limiter, fresh, run_job};
use probe::{Method, digest_allowed, mget_allowed};
use report::{Progress, Tally};
use resume::State;
use target::{TargetPlan, keyspace};

/// Arguments of `ferry verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The YAML configuration of `ferry run`.
    #[arg(long)]
    pub config: std::path::PathBuf,
    /// TTLs may differ by this many milliseconds (the time between the two reads).
    #[arg(long, default_value_t = 2000)]
    pub ttl_tolerance_ms: i64,
    /// List at most this many keys of each reason (all are counted).
    #[arg(long, default_value_t = 50)]
    pub show: usize,
    /// Read at most this many keys a second from the source (both passes together).
    #[arg(long, value_name = "KEYS_PER_SEC", value_parser = clap::value_parser!(u64).range(1..))]
    pub rate: Option<u64>,
    /// Compare N random source keys (`RANDOMKEY`) instead of all; keys only on the target are not looked for.
    #[arg(long, value_name = "N", conflicts_with = "resume")]
    pub sample: Option<u64>,
    /// Continue an interrupted run from its last saved cursor (`state_dir/verify.json`).
    #[arg(long)]
    pub resume: bool,
    /// How keys other than strings are checked before their values are
    /// fetched: `digest` (DEBUG DIGEST-VALUE on both sides), `values`
    /// (fetched whole), or `auto` (digest where every node allows DEBUG).
    #[arg(long, value_enum, default_value_t = MethodArg::Auto)]
    pub method: MethodArg,
    /// Seconds between status lines on stderr when it is not a terminal.
    #[arg(long, default_value_t = 10, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub status_every: u64,
}

/// `--method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MethodArg {
    /// `digest` when every node allows `DEBUG`, else `values`.
    Auto,
    /// `DEBUG DIGEST-VALUE` (an error where `DEBUG` is refused).
    Digest,
    /// Strings by value, other types fetched whole.
    Values,
}

/// The settings every task of a run reads.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// `--ttl-tolerance-ms`.
    pub ttl_tolerance_ms: i64,
    /// `--show`.
    pub show: usize,
    /// `--rate`.
    pub rate: Option<u64>,
}

/// Target → source checks of a job.
#[derive(Debug)]
pub(crate) enum Reverse {
    /// Target keys of this job's db (with `db_prefix`, those under its
    /// prefix, stripped; `first`: also report keys under no prefix).
    Db {
        prefixes: Vec<(u64, Vec<u8>)>,
        first: bool,
    },
    /// Several source dbs merged into db 0 without prefixes: a target key
    /// is extra when none of `dbs` has it.
    Merged { dbs: Vec<u64> },
}

/// One source db to compare.
#[derive(Debug)]
pub(crate) struct Job {
    /// The source db.
    pub db: u64,
    /// The db named in report lines.
    pub label: Option<u64>,
    /// Prepended to a source key to name the target key.
    pub prefix: Vec<u8>,
    /// Whether (and how) to look for keys only the target has.
    pub reverse: Option<Reverse>,
}

/// Run `ferry verify`; Ok(true) when identical.
pub fn run(args: &VerifyArgs) -> Result<bool> {
    let cfg = Config::load(&args.config)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(verify(cfg, args))
}

/// The jobs of a run: one per compared db, in order.
fn plan(cfg: &Config, standalone: bool, source_dbs: &[u64]) -> Vec<Job> {
    // A cluster has db 0 only; a standalone target keeps the source's dbs.
    let dbs: Vec<u64> = if standalone {
        source_dbs
            .iter()
            .copied()
            .filter(|db| cfg.filter.carries_db(*db, true))
            .collect()
    } else if cfg.filter.dbs.is_empty() {
        vec![0]
    } else {
        cfg.filter.dbs.clone()
    };
    let prefixes: Vec<(u64, Vec<u8>)> = if standalone {
        Vec::new()
    } else {
        dbs.iter()
            .filter_map(|&db| cfg.filter.prefix_for(db).map(|p| (db, p.to_vec())))
            .collect()
    };
    // Several source dbs merged into the cluster's db 0 without prefixes:
    // a target key is "only on the target" when no carried db has it, so
    // that pass runs once, with the last db.
    let merged = !standalone && prefixes.is_empty() && dbs != [0];
    let last = dbs.len().saturating_sub(1);
    dbs.iter()
        .enumerate()
        .map(|(n, &db)| Job {
            db,
            label: (standalone || !prefixes.is_empty() || merged).then_some(db),
            prefix: prefixes
                .iter()
                .find(|(d, _)| *d == db)
                .map(|(_, p)| p.clone())
                .unwrap_or_default(),
            reverse: if !merged {
                Some(Reverse::Db {
                    prefixes: prefixes.clone(),
                    first: n == 0,
                })
            } else if n == last {
                Some(Reverse::Merged { dbs: dbs.clone() })
            } else {
                None
            },
        })
        .collect()
}

/// Keys per db over every source node, by db.
fn merge_counts(per_node: &[Vec<(u64, u64)>]) -> Vec<(u64, u64)> {
    let mut all = std::collections::BTreeMap::new();
    for (db, keys) in per_node.iter().flatten() {
        *all.entry(*db).or_insert(0) += keys;
    }
    all.into_iter().collect()
}

/// `n` samples shared among nodes in proportion to their keys (the
/// remainder to the nodes with the most keys; none to an empty node).
fn split_sample(n: u64, keys: &[u64]) -> Vec<u64> {
    let total: u64 = keys.iter().sum();
    if total == 0 {
        return vec![0; keys.len()];
    }
    let mut out: Vec<u64> = keys
        .iter()
        .map(|&k| (u128::from(n) * u128::from(k) / u128::from(total)) as u64)
        .collect();
    let mut left = n - out.iter().sum::<u64>();
    let mut order: Vec<usize> = (0..keys.len()).filter(|&i| keys[i] > 0).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(keys[i]));
    for &i in order.iter().cycle() {
        if left == 0 {
            break;
        }
        out[i] += 1;
        left -= 1;
    }
    out
}

/// `DEBUG DIGEST-VALUE` when every node allows it, else values.
async fn choose_method(src: &target::Endpoints, tgt: &TargetPlan) -> Result<Method> {
    for (side, nodes) in [("source", src), ("target", &tgt.nodes)] {
        for i in 0..nodes.addrs.len() {
            let mut c = nodes.connect(i, 0).await?;
            if !digest_allowed(&mut c).await? {
                eprintln!(
                    "verify: DEBUG DIGEST-VALUE is not allowed on {side} node {} \
                     (enable-debug-command, ACL); keys other than strings are \
                     compared by their whole values",
                    nodes.addrs[i]
                );
                return Ok(Method::Values);
            }
        }
    }
    Ok(Method::Digest)
}

async fn verify(cfg: Config, args: &VerifyArgs) -> Result<bool> {
    let src = source_endpoints(&cfg).await?;
    let tgt = TargetPlan::discover(&cfg).await?;
    // Keys per db of each source node (a cluster source: each master's).
    let mut per_node: Vec<Vec<(u64, u64)>> = Vec::with_capacity(src.addrs.len());
    for i in 0..src.addrs.len() {
        let mut s = src
            .connect(i, 0)
            .await
            .with_context(|| format!("source {}", src.addrs[i]))?;
        per_node.push(keyspace(&mut s).await?);
    }
    let counts = merge_counts(&per_node);
    // A cluster node refuses `MGET` of keys in several slots.
    let src_mget = !src.is_cluster() && mget_allowed(&mut src.connect(0, 0).await?).await?;
    let tgt_mget = tgt.standalone && mget_allowed(&mut tgt.nodes.connect(0, 0).await?).await?;
    if !src_mget && !src.is_cluster() {
        eprintln!(
            "verify: MGET is not allowed on the source ({}): strings are read key by key \
             (allow +mget for a faster verify)",
            src.addrs[0]
        );
    }
    if src.is_cluster() {
        eprintln!(
            "verify: the source is a cluster: scanning its {} masters ({})",
            src.addrs.len(),
            src.addrs.join(", ")
        );
    }
    let source_dbs: Vec<u64> = counts.iter().map(|(db, _)| *db).collect();
    let jobs: Vec<Arc<Job>> = plan(&cfg, tgt.standalone, &source_dbs)
        .into_iter()
        .map(Arc::new)
        .collect();
    let keys_of = |db: u64| counts.iter().find(|(d, _)| *d == db).map_or(0, |c| c.1);
    let total: u64 = jobs.iter().map(|j| keys_of(j.db)).sum();
    let method = match args.method {
        MethodArg::Auto => choose_method(&src, &tgt).await?,
        MethodArg::Digest => Method::Digest,
        MethodArg::Values => Method::Values,
    };
    let fingerprint = resume::fingerprint(&cfg, args.ttl_tolerance_ms);
    let save_path = resume::path(&cfg);
    let mut state = None;
    if args.resume {
        state = resume::load(&save_path, &fingerprint)?;
        match &state {
            Some(st) => eprintln!(
                "verify: resuming at db job {} with {} source keys seen",
                st.job,
                st.tally.source_seen()
            ),
            None => eprintln!(
                "verify: no saved state in {}; starting from the beginning",
                save_path.display()
            ),
        }
    }
    let mut state = state.unwrap_or_else(|| State {
        fingerprint,
        job: 0,
        forward: fresh(&src.addrs),
        reverse: fresh(&tgt.nodes.addrs),
        tally: Tally::default(),
    });
    let nodes = |c: &[resume::Cursor]| c.iter().map(|c| c.node.clone()).collect::<Vec<_>>();
    if nodes(&state.forward) != src.addrs || nodes(&state.reverse) != tgt.nodes.addrs {
        bail!(
            "the saved verify state names other nodes (source {:?}, target masters {:?}) than \
             now ({:?}, {:?}); run without --resume to start over",
            nodes(&state.forward),
            nodes(&state.reverse),
            src.addrs,
            tgt.nodes.addrs
        );
    }
    let total = args.sample.unwrap_or(total);
    let every = Duration::from_secs(args.status_every);
    let mut progress = Progress::new(total, state.tally.source_seen(), every);
    let ctx = Arc::new(Ctx {
        cfg: Arc::new(cfg),
        set: Settings {
            ttl_tolerance_ms: args.ttl_tolerance_ms,
            show: args.show,
            rate: args.rate,
        },
        src,
        tgt,
        method,
        src_mget,
        tgt_mget,
        limiter: args.rate.map(Limiter::new),
    });
    let all_keys: u64 = jobs.iter().map(|j| keys_of(j.db)).sum();
    let mut sampled = 0;
    for (n, job) in jobs.iter().enumerate() {
        // `--sample`: each db's share in proportion to its keys, and each
        // source node's share of that in proportion to its keys of the db.
        let share = args.sample.map(|s| {
            let share = if n + 1 == jobs.len() {
                s - sampled
            } else {
                (s * keys_of(job.db)).checked_div(all_keys).unwrap_or(0)
            };
            sampled += share;
            let node_keys: Vec<u64> = per_node
                .iter()
                .map(|c| c.iter().find(|(d, _)| *d == job.db).map_or(0, |c| c.1))
                .collect();
            split_sample(share, &node_keys)
        });
        if n < state.job {
            continue;
        }
        let result = run_job(&ctx, job, &mut state, &mut progress, share).await;
        if let Err(e) = result {
            progress.finish();
            return Err(e);
        }
        state.job = n + 1;
        state.forward = fresh(&ctx.src.addrs);
        state.reverse = fresh(&ctx.tgt.nodes.addrs);
        if args.sample.is_none() {
            resume::save(&save_path, &state)?;
        }
    }
    progress.finish();
    if args.sample.is_none() {
        resume::remove(&save_path)?;
    }
    let t = &state.tally;
    if !progress.is_bar() {
        eprintln!("{}", progress.line(t));
    }
    print!("{}", t.report());
    Ok(t.diffs() == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(filter: &str) -> Config {
        Config::parse(&format!(
            "source: {{ url: \"redis://127.0.0.1:1\" }}\ntarget: {{ url: \"redis://127.0.0.1:2\" }}\n{filter}"
        ))
        .expect("config")
    }

    #[test]
    fn jobs_per_source_shape() {
        let c = cfg("");
        let j = plan(&c, false, &[0]);
        assert_eq!(j.len(), 1);
        assert!(j[0].label.is_none() && j[0].prefix.is_empty());
        let j = plan(&c, true, &[0, 3]);
        assert_eq!(j.iter().map(|j| j.db).collect::<Vec<_>>(), [0, 3]);
        assert_eq!(j[1].label, Some(3));
        let c = cfg("filter: { dbs: [0, 2] }\n");
        let j = plan(&c, false, &[0, 2]);
        assert!(j[0].reverse.is_none());
        assert!(matches!(j[1].reverse, Some(Reverse::Merged { .. })));
        let c = cfg("filter: { dbs: [0, 2], db_prefix: \"{db}:\" }\n");
        let j = plan(&c, false, &[0, 2]);
        assert_eq!(j[1].prefix, b"2:");
        assert!(matches!(
            j[0].reverse,
            Some(Reverse::Db { first: true, .. })
        ));
        assert!(matches!(
            j[1].reverse,
            Some(Reverse::Db { first: false, .. })
        ));
    }

    #[test]
    fn samples_follow_each_nodes_keys() {
        assert_eq!(split_sample(100, &[10, 30, 60]), [10, 30, 60]);
        assert_eq!(split_sample(10, &[1, 1, 1]), [4, 3, 3]);
        assert_eq!(split_sample(5, &[0, 7, 0]), [0, 5, 0]);
        assert_eq!(split_sample(5, &[0, 0]), [0, 0]);
        let s = split_sample(1000, &[333, 1, 5000]);
        assert_eq!(s.iter().sum::<u64>(), 1000);
        assert_eq!(
            merge_counts(&[vec![(0, 3)], vec![(0, 4), (2, 1)]]),
            [(0, 7), (2, 1)]
        );
    }
}
