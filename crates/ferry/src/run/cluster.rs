//! `ferry run` with a cluster source: one pipeline per source shard.
//!
//! ```text
//! source shard 0-5460      ─PSYNC─▶ Link ─▶ Applier(gate 0-5460)      ─▶ ClusterWriter ─┐
//! source shard 5461-10922  ─PSYNC─▶ Link ─▶ Applier(gate 5461-10922)  ─▶ ClusterWriter ─┼─▶ target
//! source shard 10923-16383 ─PSYNC─▶ Link ─▶ Applier(gate 10923-16383) ─▶ ClusterWriter ─┘
//! ```
//! Each selected shard (see `source.partition`) gets today's standalone
//! pipeline, wired by [`wiring::wire`] with the shard's node as the source,
//! `state_dir/shards/<name>/` as its state directory, the shard name as
//! its checkpoint namespace and a [`SlotGate`] of its slots; each is
//! driven by its own task running [`main_loop::run`]. One shutdown tree:
//! a signal (or any pipeline's error) cancels `work`, every pipeline
//! drains (finishes in-flight writes, saves its position) and stops. One
//! status is assembled from all of them ([`status::combine`]).
//!
//! The shards are discovered from `source.url` (`CLUSTER SHARDS`, else
//! `CLUSTER SLOTS`) and recorded in `state_dir/shards.json`
//! ([`ferry_ops::ShardRecord`]): names, node ids, the partition.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ferry_cluster::Conn;
use ferry_ops::{
    Info, PartitionRecord, ShardRecord, SlotGate, SourceShard, host_of, info_text, ranges_text,
    reconcile, source_shards, source_shards_from_slots,
};
use ferry_resp::Value;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::locate::ShardLocator;
use super::main_loop::{self, Publish};
use super::shutdown::Shutdown;
use super::status::{self, Assembler, ShardStatus, Status};
use super::status_metrics::StatusMetrics;
use super::wiring::{self, ShardWire};
use crate::config::{Config, ReadFrom, SourceMode, parse_endpoint, redact, url_with_addr};

/// The record of the source's shards in `state_dir`.
pub const SHARDS_FILE: &str = "shards.json";
/// The directory of the shards' state directories in `state_dir`.
pub const SHARDS_DIR: &str = "shards";

const T: Duration = Duration::from_secs(5);

/// Whether `ferry run` reads a cluster source: `source.mode`, else
/// (`auto`) a `shards.json` from an earlier run, else `INFO cluster` on
/// `source.url` (unreachable: standalone, whose link reports it).
pub async fn is_cluster(cfg: &Config) -> Result<bool> {
    match cfg.source.mode {
        SourceMode::Cluster => return Ok(true),
        SourceMode::Standalone => return Ok(false),
        // One link to the master the sentinels name (today's layout).
        SourceMode::Sentinel => return Ok(false),
        SourceMode::Auto => {}
    }
    if cfg.state_dir.join(SHARDS_FILE).exists() {
        return Ok(true);
    }
    let src = parse_endpoint(&cfg.source.url)?;
    let tls = cfg.source.tls_config();
    let Ok(mut conn) = Conn::connect_tls(&src.addr(), &src.auth, T, tls.as_ref()).await else {
        return Ok(false);
    };
    let Ok(info) = conn.call(&["INFO", "cluster"], T).await else {
        return Ok(false);
    };
    let text = info_text(&info).unwrap_or_default();
    Ok(Info::parse(&text).get("cluster_enabled") == Some("1"))
}

/// Refuses cluster-only settings for a standalone source (`source.partition`
/// would otherwise be ignored: two processes would both migrate it) and
/// warns about `read_from: replica`.
pub fn check_standalone(cfg: &Config) -> Result<()> {
    if let Some(p) = cfg.source.partition {
        bail!(
            "source.partition (index {}, count {}) is for a cluster source, but {} is a standalone \
             server (INFO cluster: cluster_enabled:0): remove source.partition and \
             FERRY_PARTITION_INDEX/FERRY_PARTITION_COUNT",
            p.index,
            p.count,
            redact(&cfg.source.url)
        );
    }
    if cfg.source.read_from == ReadFrom::Replica {
        tracing::warn!(
            "source.read_from: replica is for a cluster source; replicating {} itself",
            redact(&cfg.source.url)
        );
    }
    Ok(())
}

/// The source's shards, asked of `source.url`, else of the nodes
/// recorded in `shards.json` (the seed may have failed since).
async fn discover(cfg: &Config, recorded: &[String]) -> Result<Vec<SourceShard>> {
    let src = parse_endpoint(&cfg.source.url)?;
    let mut seeds = vec![src.addr()];
    seeds.extend(recorded.iter().filter(|a| **a != src.addr()).cloned());
    let mut tried = Vec::new();
    for addr in &seeds {
        match discover_at(cfg, &src.auth, addr).await {
            Ok(s) => return Ok(s),
            Err(e) => {
                tracing::warn!(node = %addr, "source cluster: {e:#}");
                tried.push(format!("{addr}: {e:#}"));
            }
        }
    }
    bail!(
        "cannot read the source cluster's shards from {} (nor any recorded node): {}",
        redact(&cfg.source.url),
        tried.join("; ")
    )
}

async fn discover_at(
    cfg: &Config,
    auth: &ferry_cluster::Auth,
    addr: &str,
) -> Result<Vec<SourceShard>> {
    let tls = cfg.source.tls_config();
    let mut conn = Conn::connect_tls(addr, auth, T, tls.as_ref())
        .await
        .with_context(|| format!("cannot connect to the source node {addr}"))?;
    let host = host_of(addr).to_owned();
    let reply = conn
        .call(&["CLUSTER", "SHARDS"], T)
        .await
        .with_context(|| format!("CLUSTER SHARDS on the source {addr}"))?;
    let shards = match reply {
        Value::Error(_) => {
            // Before 7.0: CLUSTER SLOTS.
            let reply = conn
                .call(&["CLUSTER", "SLOTS"], T)
                .await
                .with_context(|| format!("CLUSTER SLOTS on the source {addr}"))?;
            source_shards_from_slots(&reply, &host)
        }
        reply => source_shards(&reply, &host, tls.is_some()),
    }
    .with_context(|| format!("the source cluster's shards (asked {addr})"))?;
    if shards.is_empty() {
        bail!("the source cluster at {addr} has no shard serving slots");
    }
    Ok(shards)
}

fn load_record(dir: &Path) -> Result<Option<ShardRecord>> {
    let path = dir.join(SHARDS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let r: ShardRecord = serde_json::from_str(&text).with_context(|| {
        format!(
            "corrupt {} (delete the state_dir to start over)",
            path.display()
        )
    })?;
    Ok(Some(r))
}

fn save_record(dir: &Path, record: &ShardRecord) -> Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(SHARDS_FILE);
    let tmp = dir.join(format!("{SHARDS_FILE}.tmp"));
    let body = serde_json::to_string_pretty(record).context("shards record")?;
    let mut f =
        std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(body.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot rename over {}", path.display()))
}

/// One selected shard, ready to wire.
struct Planned {
    name: String,
    node: String,
    slots: String,
    cfg: Config,
    gate: Arc<SlotGate>,
    locator: Arc<ShardLocator>,
}

/// The node a shard is replicated from (`source.read_from`); with
/// `replica` and no usable replica, its master (logged).
fn node_of(shard: &SourceShard, read_from: ReadFrom, name: &str) -> String {
    match read_from {
        ReadFrom::Master => shard.master.addr.clone(),
        ReadFrom::Replica => match shard.replica_to_read() {
            Some(r) => r.addr.clone(),
            None => {
                tracing::warn!(
                    shard = %name,
                    slots = %ranges_text(&shard.ranges),
                    "source.read_from: replica, but the shard has no usable replica: \
                     replicating its master"
                );
                shard.master.addr.clone()
            }
        },
    }
}

/// `limit` (0 = unlimited) split among `n` pipelines, rounded up.
fn share(limit: u64, n: u64) -> u64 {
    if limit == 0 {
        0
    } else {
        limit.div_ceil(n.max(1))
    }
}

/// Discovers, records and selects the shards of this process.
async fn plan(cfg: &Config) -> Result<Vec<Planned>> {
    let recorded = load_record(&cfg.state_dir)?;
    let known = recorded
        .as_ref()
        .map(ShardRecord::addrs)
        .unwrap_or_default();
    let shards = discover(cfg, &known).await?;
    let partition = cfg.source.partition.map(|p| PartitionRecord {
        index: p.index,
        count: p.count,
    });
    let (record, assigned) = reconcile(recorded.as_ref(), &shards, partition)
        .with_context(|| format!("{}", cfg.state_dir.join(SHARDS_FILE).display()))?;
    save_record(&cfg.state_dir, &record)?;
    let src = parse_endpoint(&cfg.source.url)?;
    let mut seeds = vec![src.addr()];
    for s in &shards {
        for m in std::iter::once(&s.master).chain(&s.replicas) {
            if !seeds.contains(&m.addr) {
                seeds.push(m.addr.clone());
            }
        }
    }
    let mut out = Vec::new();
    let selected = assigned.iter().filter(|a| a.selected).count() as u64;
    for a in assigned.iter().filter(|a| a.selected) {
        let shard = &shards[a.current];
        let node = node_of(shard, cfg.source.read_from, &a.name);
        let mut c = cfg.clone();
        c.state_dir = cfg.state_dir.join(SHARDS_DIR).join(&a.name);
        c.source.url = url_with_addr(&cfg.source.url, &node);
        // One sampler for the process (below), drawing from every master.
        c.verify.sample_per_second = 0;
        // The target rate limit is one budget for the process: shared out
        // evenly among its pipelines (each writer has its own limiter).
        c.target.max_ops_per_sec = share(cfg.target.max_ops_per_sec, selected);
        c.target.max_bytes_per_sec = share(cfg.target.max_bytes_per_sec, selected);
        let gate = Arc::new(SlotGate::from_ranges(&shard.ranges));
        let locator = Arc::new(ShardLocator::new(
            a.name.clone(),
            seeds.clone(),
            src.auth.clone(),
            cfg.source.tls_config(),
            gate.clone(),
            cfg.source.read_from,
            node.clone(),
        ));
        out.push(Planned {
            name: a.name.clone(),
            node,
            slots: ranges_text(&shard.ranges),
            cfg: c,
            gate,
            locator,
        });
    }
    let names: Vec<&str> = out.iter().map(|p| p.name.as_str()).collect();
    tracing::info!(
        shards = shards.len(),
        selected = ?names,
        partition = ?cfg.source.partition,
        "cluster source: one pipeline per selected shard"
    );
    if out.is_empty() {
        bail!(
            "source.partition {:?} takes no shard: the source has {} shard(s) (use a smaller count)",
            cfg.source.partition,
            shards.len()
        );
    }
    Ok(out)
}

/// What the aggregator knows of one running pipeline.
struct Running {
    name: String,
    node: String,
    slots: String,
    status: Arc<Mutex<Status>>,
}

/// Runs every selected shard's pipeline until a signal or an error.
pub async fn run(
    cfg: &Config,
    allow_nonempty_target: bool,
    sd: &Shutdown,
    status: &Arc<Mutex<Status>>,
) -> Result<()> {
    let planned = tokio::select! {
        p = plan(cfg) => p?,
        _ = sd.work.cancelled() => return Ok(()),
    };
    let mut tasks: JoinSet<Result<()>> = JoinSet::new();
    let mut running = Vec::new();
    let mut first_error: Option<anyhow::Error> = None;
    for p in planned {
        let shard = ShardWire {
            namespace: p.name.clone(),
            gate: p.gate.clone(),
            locator: Some(p.locator.clone()),
        };
        let wired = tokio::select! {
            w = wiring::wire(&p.cfg, allow_nonempty_target, sd.root.child_token(), Some(shard)) => {
                match w.with_context(|| format!("source shard {} ({})", p.name, p.node)) {
                    Ok(w) => w,
                    Err(e) => {
                        // The pipelines already running drain before ferry stops.
                        sd.work.cancel();
                        first_error = Some(e);
                        break;
                    }
                }
            }
            _ = sd.work.cancelled() => break,
        };
        tracing::info!(shard = %p.name, node = %p.node, slots = %p.slots, "shard pipeline started");
        let shard_status = Arc::new(Mutex::new(Status::default()));
        let publish = Publish {
            status: shard_status.clone(),
            sampler: Arc::new(crate::sampler::SamplerStats::default()),
            sample_per_second: 0,
            metrics: None,
            assembler: Assembler::new(wired.keys_total, wired.standalone, wired.masters.clone())
                .for_shard(),
            print_line: false,
        };
        let work = sd.work.clone();
        let name = p.name.clone();
        tasks.spawn(async move {
            drive(wired, publish, work.clone())
                .await
                .with_context(|| format!("source shard {name}"))
        });
        running.push(Running {
            name: p.name,
            node: p.node,
            slots: p.slots,
            status: shard_status,
        });
    }
    // The sampled verify: keys of every source master whose shard this
    // process carries, each checked once its link has applied the
    // master's offset (matched by replid).
    let sampler = Arc::new(crate::sampler::SamplerStats::default());
    {
        let status = status.clone();
        crate::sampler::spawn(
            cfg,
            sampler.clone(),
            move || crate::run::sampler_progress(&status),
            sd.work.child_token(),
            &sd.tracker,
        );
    }
    let metrics = StatusMetrics::default();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut last_print = Instant::now();
    loop {
        tokio::select! {
            done = tasks.join_next() => match done {
                None => break,
                Some(r) => {
                    let r = r.map_err(anyhow::Error::from).and_then(|r| r);
                    if let Err(e) = r {
                        // One pipeline failed: every other one drains and stops.
                        sd.work.cancel();
                        first_error.get_or_insert(e);
                    }
                }
            },
            _ = tick.tick() => {}
        }
        let mut st = combined(&running);
        st.verify = sampler.status(cfg.verify.sample_per_second);
        metrics.record(&st);
        if last_print.elapsed() >= Duration::from_secs(1) {
            last_print = Instant::now();
            println!("{}", st.line());
        }
        if let Ok(mut s) = status.lock() {
            *s = st;
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let mut st = combined(&running);
    st.verify = sampler.status(cfg.verify.sample_per_second);
    st.stopped();
    metrics.record(&st);
    if let Ok(mut s) = status.lock() {
        *s = st;
    }
    Ok(())
}

fn combined(running: &[Running]) -> Status {
    let shards: Vec<ShardStatus> = running
        .iter()
        .map(|r| ShardStatus {
            name: r.name.clone(),
            source: r.node.clone(),
            slots: r.slots.clone(),
            replid: None,
            status: r.status.lock().map(|s| s.clone()).unwrap_or_default(),
        })
        .collect();
    status::combine(&shards)
}

/// One shard's pipeline: today's main loop, then the drain.
async fn drive(wired: wiring::Wired, mut publish: Publish, work: CancellationToken) -> Result<()> {
    let wiring::Wired {
        mut applier,
        link,
        mut events,
        ..
    } = wired;
    let result = main_loop::run(&mut applier, &link, &mut events, &mut publish, &work).await;
    if result.is_err() {
        work.cancel();
    }
    // Drain: as for a standalone source (see `run::daemon`).
    let flushed = applier.flush().await;
    if let Some(a) = applier.applied() {
        link.applied(a);
    }
    publish.snapshot(&link, &applier);
    let link_result = link.shutdown().await;
    result?;
    flushed?;
    link_result.context("source link")?;
    if let Ok(mut s) = publish.status.lock() {
        s.stopped();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_rate_budget_is_shared_among_the_pipelines() {
        assert_eq!(super::share(0, 3), 0, "unlimited stays unlimited");
        assert_eq!(super::share(1000, 3), 334);
        assert_eq!(super::share(1000, 1), 1000);
        assert_eq!(super::share(1, 3), 1, "never 0 (unlimited)");
    }
}
