//! The parallel part of `ferry verify`, one job (one source db) at a time:
//! a producer per source node (`SCAN`, or `RANDOMKEY` for `--sample`,
//! paced by `--rate`), workers that probe a batch on the source and on
//! every target master at once, a task per target master looking for keys
//! the source does not have, and a collector that counts results in cursor
//! order and saves the cursors for `--resume`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ferry_cluster::Conn;
use futures_util::future::join_all;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::probe::{
    Method, Probe, Verdict, classify, judge, judge_classified, judge_values, probe,
};
use super::read::{call, call_many, compared_key, values};
use super::report::{Progress, Reason, Tally};
use super::resume::{self, Cursor, State};
use super::reverse::reverse_task;
use super::target::{Endpoints, TargetPlan};
use super::{Job, Settings};

/// Batches probed at once (each on the source and every target master).
const WORKERS: usize = 4;
/// Keys asked of `SCAN` per step (fewer under a low `--rate`).
const SCAN_COUNT: u64 = 1000;
/// How often the cursors are saved for `--resume`.
const SAVE_EVERY: Duration = Duration::from_secs(2);

/// What every task of a run shares.
pub(crate) struct Ctx {
    pub cfg: Arc<crate::config::Config>,
    pub set: Settings,
    pub src: Endpoints,
    pub tgt: TargetPlan,
    pub method: Method,
    /// Whether the source's nodes take `MGET` of any keys (not cluster
    /// nodes, a later source shape, nor users allowed `GET` only).
    pub src_mget: bool,
    /// The same for the target (a standalone server allowing `MGET`).
    pub tgt_mget: bool,
    pub limiter: Option<Limiter>,
}

/// Paces reads of the source to `--rate` keys a second (all tasks).
pub(crate) struct Limiter {
    start: Instant,
    per_sec: f64,
    granted: Mutex<f64>,
}

impl Limiter {
    /// A limiter of `per_sec` keys a second from now.
    pub fn new(per_sec: u64) -> Limiter {
        Limiter {
            start: Instant::now(),
            per_sec: per_sec.max(1) as f64,
            granted: Mutex::new(0.0),
        }
    }

    /// Wait until `n` more keys may be read.
    pub async fn take(&self, n: u64) {
        let due = {
            let mut g = self.granted.lock().unwrap_or_else(|e| e.into_inner());
            *g += n as f64;
            self.start + Duration::from_secs_f64(*g / self.per_sec)
        };
        tokio::time::sleep_until(due.into()).await;
    }
}

impl Ctx {
    /// Keys per `SCAN`/`RANDOMKEY` step: at most a tenth of a second's worth
    /// under `--rate`.
    pub fn step(&self) -> u64 {
        match self.set.rate {
            Some(r) => (r / 10).clamp(10, SCAN_COUNT),
            None => SCAN_COUNT,
        }
    }

    /// Wait for the rate limiter, if any.
    pub async fn pace(&self, n: u64) {
        if let Some(l) = &self.limiter {
            l.take(n).await;
        }
    }

    /// The report line of a key of `job` (`db N "key": what`).
    pub fn line(&self, job: &Job, key: &[u8], what: &str) -> String {
        let key = String::from_utf8_lossy(key);
        match job.label {
            Some(db) => format!("db {db} {key:?}: {what}"),
            None => format!("{key:?}: {what}"),
        }
    }
}

/// A message to the collector.
pub(crate) enum Msg {
    /// A batch of source node `node`'s keys is compared.
    Fwd {
        node: usize,
        seq: u64,
        cursor: Vec<u8>,
        done: bool,
        tally: Tally,
    },
    /// A `SCAN` step of target master `node` is checked against the source.
    Rev {
        node: usize,
        cursor: Vec<u8>,
        done: bool,
        tally: Tally,
    },
}

/// A compared batch waiting for the ones before it: cursor after it,
/// whether it was the last, its counts.
type Held = (Vec<u8>, bool, Tally);

/// Keys of one source node to compare.
struct Batch {
    node: usize,
    seq: u64,
    keys: Vec<Vec<u8>>,
    cursor: Vec<u8>,
    done: bool,
    ignored: u64,
}

/// Run `job` to its end, continuing from `state`; `sample` is this job's
/// share of `--sample`, one number per source node.
pub(crate) async fn run_job(
    ctx: &Arc<Ctx>,
    job: &Arc<Job>,
    state: &mut State,
    progress: &mut Progress,
    sample: Option<Vec<u64>>,
) -> Result<()> {
    let (tx, mut rx) = mpsc::channel::<Msg>(4 * WORKERS);
    let (btx, brx) = mpsc::channel::<Batch>(2 * WORKERS);
    let brx = Arc::new(tokio::sync::Mutex::new(brx));
    let mut tasks: JoinSet<Result<()>> = JoinSet::new();
    for (node, c) in state.forward.iter().enumerate() {
        let share = sample.as_ref().map(|s| s.get(node).copied().unwrap_or(0));
        if !c.done && share != Some(0) {
            let (ctx, job, btx) = (ctx.clone(), job.clone(), btx.clone());
            let cursor = c.cursor.clone().into_bytes();
            tasks.spawn(async move { produce(&ctx, &job, node, cursor, share, btx).await });
        }
    }
    drop(btx);
    for _ in 0..WORKERS {
        let (ctx, job, brx, tx) = (ctx.clone(), job.clone(), brx.clone(), tx.clone());
        tasks.spawn(async move { work(&ctx, &job, brx, tx).await });
    }
    if job.reverse.is_some() && sample.is_none() {
        for (node, c) in state.reverse.iter().enumerate() {
            if !c.done {
                let (ctx, job, tx) = (ctx.clone(), job.clone(), tx.clone());
                let cursor = c.cursor.clone().into_bytes();
                tasks.spawn(async move { reverse_task(&ctx, &job, node, cursor, tx).await });
            }
        }
    }
    drop(tx);
    let save_path = resume::path(&ctx.cfg);
    let mut next: Vec<u64> = vec![0; state.forward.len()];
    let mut held: Vec<BTreeMap<u64, Held>> =
        (0..state.forward.len()).map(|_| BTreeMap::new()).collect();
    let mut save = tokio::time::interval(SAVE_EVERY);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let show = ctx.set.show;
    loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                None => break,
                Some(Msg::Rev { node, cursor, done, tally }) => {
                    state.tally.merge(tally, show);
                    state.reverse[node].cursor = String::from_utf8_lossy(&cursor).into_owned();
                    state.reverse[node].done = done;
                }
                Some(Msg::Fwd { node, seq, cursor, done, tally }) => {
                    held[node].insert(seq, (cursor, done, tally));
                    // Count batches in cursor order only: the saved cursor
                    // then never skips a batch not yet counted.
                    while let Some((cursor, done, tally)) = held[node].remove(&next[node]) {
                        next[node] += 1;
                        state.tally.merge(tally, show);
                        state.forward[node].cursor = String::from_utf8_lossy(&cursor).into_owned();
                        state.forward[node].done = done;
                    }
                }
            },
            _ = save.tick(), if sample.is_none() => resume::save(&save_path, state)?,
            _ = tick.tick() => progress.update(&state.tally),
            Some(r) = tasks.join_next() => r.context("a verify task")??,
            _ = tokio::signal::ctrl_c() => {
                if sample.is_none() {
                    resume::save(&save_path, state)?;
                }
                bail!("interrupted; `ferry verify --resume` continues from the last saved cursor");
            }
        }
    }
    while let Some(r) = tasks.join_next().await {
        r.context("a verify task")??;
    }
    progress.update(&state.tally);
    Ok(())
}

/// Feed the workers source node `node`'s keys (filtered, paced).
async fn produce(
    ctx: &Ctx,
    job: &Job,
    node: usize,
    mut cursor: Vec<u8>,
    sample: Option<u64>,
    out: mpsc::Sender<Batch>,
) -> Result<()> {
    let mut s = ctx
        .src
        .connect(node, job.db)
        .await
        .with_context(|| format!("source {}", ctx.src.addrs[node]))?;
    let step = ctx.step();
    let count = step.to_string();
    let (mut seq, mut left, mut tries) = (0u64, sample.unwrap_or(0), 0u64);
    loop {
        let (keys, done) = match sample {
            None => {
                let (next, keys) = scan(&mut s, &cursor, &count).await?;
                let done = next == b"0";
                cursor = next;
                (keys, done)
            }
            Some(_) => {
                // Random keys until this job's share is drawn; filtered
                // keys do not count, but the draws are bounded.
                let n = left.min(step);
                tries += n;
                let cmds: Vec<Vec<&[u8]>> = (0..n).map(|_| vec![&b"RANDOMKEY"[..]]).collect();
                let keys: Vec<Vec<u8>> = call_many(&mut s, &cmds)
                    .await?
                    .into_iter()
                    .filter_map(|v| v.as_bytes().map(|b| b.to_vec()))
                    .collect();
                let empty = keys.is_empty();
                let inside = keys
                    .iter()
                    .filter(|k| compared_key(&ctx.cfg.filter, k))
                    .count() as u64;
                left = left.saturating_sub(inside);
                (
                    keys,
                    left == 0 || empty || tries > 10 * sample.unwrap_or(0) + 1000,
                )
            }
        };
        let total = keys.len();
        let keys: Vec<Vec<u8>> = keys
            .into_iter()
            .filter(|k| compared_key(&ctx.cfg.filter, k))
            .collect();
        ctx.pace(total as u64).await;
        let batch = Batch {
            node,
            seq,
            ignored: (total - keys.len()) as u64,
            keys,
            cursor: cursor.clone(),
            done,
        };
        seq += 1;
        if out.send(batch).await.is_err() || done {
            return Ok(());
        }
    }
}

/// Compare batches until the producers are done.
async fn work(
    ctx: &Ctx,
    job: &Job,
    batches: Arc<tokio::sync::Mutex<mpsc::Receiver<Batch>>>,
    out: mpsc::Sender<Msg>,
) -> Result<()> {
    let mut srcs = ctx.src.connect_all(job.db).await?;
    let tdb = if ctx.tgt.standalone { job.db } else { 0 };
    let mut tgts = ctx.tgt.nodes.connect_all(tdb).await?;
    loop {
        let batch = batches.lock().await.recv().await;
        let Some(b) = batch else { return Ok(()) };
        let tally = compare_batch(ctx, job, &mut srcs[b.node], &mut tgts, &b).await?;
        let msg = Msg::Fwd {
            node: b.node,
            seq: b.seq,
            cursor: b.cursor,
            done: b.done,
            tally,
        };
        if out.send(msg).await.is_err() {
            return Ok(());
        }
    }
}

/// Probe a batch on both sides at once; classify and fetch values where
/// probes do not decide (`probe.rs`).
async fn compare_batch(
    ctx: &Ctx,
    job: &Job,
    src: &mut Conn,
    tgts: &mut [Conn],
    b: &Batch,
) -> Result<Tally> {
    let mut tally = Tally {
        ignored: b.ignored,
        ..Tally::default()
    };
    let show = ctx.set.show;
    let tol = ctx.set.ttl_tolerance_ms;
    let skeys: Vec<&[u8]> = b.keys.iter().map(|k| &k[..]).collect();
    let tkeys: Vec<Vec<u8>> = b
        .keys
        .iter()
        .map(|k| [&job.prefix[..], k].concat())
        .collect();
    let mut node_of = Vec::with_capacity(tkeys.len());
    for k in &tkeys {
        node_of.push(ctx.tgt.node_of(k)?);
    }
    // Step 1 on the source and every master at once.
    let all: Vec<usize> = (0..skeys.len()).collect();
    let (a, bs) = tokio::join!(
        probe(src, &skeys, ctx.src_mget),
        probe_targets(ctx, tgts, &tkeys, &node_of, &all)
    );
    let (mut a, mut bs) = (a?, bs?);
    let mut step2 = Vec::new();
    for (i, (pa, pb)) in a.iter().zip(&bs).enumerate() {
        match judge(pa, pb, tol) {
            Verdict::Classify => step2.push(i),
            v => count(ctx, job, &mut tally, &b.keys[i], v, show),
        }
    }
    if step2.is_empty() {
        return Ok(tally);
    }
    // Step 2: types (and digests) of the keys that are not strings.
    let method = ctx.method;
    let keys2: Vec<&[u8]> = step2.iter().map(|&i| skeys[i]).collect();
    let mut a2: Vec<Probe> = step2.iter().map(|&i| std::mem::take(&mut a[i])).collect();
    let mut b2: Vec<Probe> = step2.iter().map(|&i| std::mem::take(&mut bs[i])).collect();
    let (ra, rb) = tokio::join!(
        classify(src, &keys2, &mut a2, method),
        classify_targets(tgts, &tkeys, &node_of, &step2, &mut b2, method)
    );
    ra?;
    rb?;
    let mut fetch = Vec::new();
    for (j, &i) in step2.iter().enumerate() {
        match judge_classified(&a2[j], &b2[j], tol) {
            Verdict::Fetch => fetch.push(j),
            v => count(ctx, job, &mut tally, &b.keys[i], v, show),
        }
    }
    if fetch.is_empty() {
        return Ok(tally);
    }
    // Step 3, the slow path: whole values, compared semantically.
    let kinds: Vec<&str> = fetch.iter().map(|&j| a2[j].kind()).collect();
    let fkeys: Vec<&[u8]> = fetch.iter().map(|&j| keys2[j]).collect();
    let va = values(src, &fkeys, &kinds).await?;
    let mut vb: Vec<Option<String>> = vec![None; fetch.len()];
    for (n, c) in tgts.iter_mut().enumerate() {
        let mine: Vec<usize> = (0..fetch.len())
            .filter(|&f| node_of[step2[fetch[f]]] == n)
            .collect();
        let keys: Vec<&[u8]> = mine.iter().map(|&f| &tkeys[step2[fetch[f]]][..]).collect();
        let kinds: Vec<&str> = mine.iter().map(|&f| kinds[f]).collect();
        for (&f, v) in mine.iter().zip(values(c, &keys, &kinds).await?) {
            vb[f] = v;
        }
    }
    for (f, &j) in fetch.iter().enumerate() {
        let v = judge_values(&a2[j], &b2[j], &va[f], &vb[f], tol);
        count(ctx, job, &mut tally, &b.keys[step2[j]], v, show);
    }
    Ok(tally)
}

/// Step 1 for the target keys `tkeys[i]` of `idx`, on every master at once
/// (one result per entry of `idx`).
async fn probe_targets(
    ctx: &Ctx,
    tgts: &mut [Conn],
    tkeys: &[Vec<u8>],
    node_of: &[usize],
    idx: &[usize],
) -> Result<Vec<Probe>> {
    let mget = ctx.tgt_mget;
    let per_node = join_all(tgts.iter_mut().enumerate().map(|(n, c)| {
        let mine: Vec<usize> = (0..idx.len()).filter(|&j| node_of[idx[j]] == n).collect();
        async move {
            let keys: Vec<&[u8]> = mine.iter().map(|&j| &tkeys[idx[j]][..]).collect();
            probe(c, &keys, mget).await.map(|p| (mine, p))
        }
    }))
    .await;
    let mut out = vec![Probe::default(); idx.len()];
    for r in per_node {
        let (mine, probes) = r?;
        for (j, p) in mine.into_iter().zip(probes) {
            out[j] = p;
        }
    }
    Ok(out)
}

/// Step 2 for the target keys of `idx` (probes `probes`, in `idx` order),
/// on every master at once.
async fn classify_targets(
    tgts: &mut [Conn],
    tkeys: &[Vec<u8>],
    node_of: &[usize],
    idx: &[usize],
    probes: &mut [Probe],
    method: Method,
) -> Result<()> {
    let mut parts: Vec<(Vec<usize>, Vec<Probe>)> = (0..tgts.len())
        .map(|n| {
            let mine: Vec<usize> = (0..idx.len()).filter(|&j| node_of[idx[j]] == n).collect();
            let ps = mine
                .iter()
                .map(|&j| std::mem::take(&mut probes[j]))
                .collect();
            (mine, ps)
        })
        .collect();
    let results = join_all(
        tgts.iter_mut()
            .zip(parts.iter_mut())
            .map(|(c, (mine, ps))| {
                let keys: Vec<&[u8]> = mine.iter().map(|&j| &tkeys[idx[j]][..]).collect();
                async move { classify(c, &keys, ps, method).await }
            }),
    )
    .await;
    for r in results {
        r?;
    }
    for (mine, ps) in parts {
        for (j, p) in mine.into_iter().zip(ps) {
            probes[j] = p;
        }
    }
    Ok(())
}

fn count(ctx: &Ctx, job: &Job, tally: &mut Tally, key: &[u8], v: Verdict, show: usize) {
    match v {
        Verdict::Same | Verdict::Classify | Verdict::Fetch => tally.compared += 1,
        Verdict::Gone => tally.gone += 1,
        Verdict::Differs(reason, what) => {
            tally.compared += 1;
            tally.add(reason, ctx.line(job, key, &what), show);
        }
    }
}

/// One `SCAN` step: the next cursor and the keys.
pub(crate) async fn scan(
    conn: &mut Conn,
    cursor: &[u8],
    count: &str,
) -> Result<(Vec<u8>, Vec<Vec<u8>>)> {
    let reply = call(conn, &[b"SCAN", cursor, b"COUNT", count.as_bytes()]).await?;
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

/// Cursors of a job not started: every node from the beginning.
pub(crate) fn fresh(addrs: &[String]) -> Vec<Cursor> {
    addrs.iter().map(|a| Cursor::start(a)).collect()
}

/// Count a key as extra.
pub(crate) fn extra(ctx: &Ctx, job: &Job, tally: &mut Tally, key: &[u8], what: &str) {
    tally.add(Reason::Extra, ctx.line(job, key, what), ctx.set.show);
}
