//! Per-slot checkpoints committed with the ops (MULTI ... SET ckpt ... EXEC)
//! and exactly-once resume, against a real 3-master Redis 7.0 cluster.

mod common;

use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{LOCK, node_for, op};
use ferry_cluster::checkpoint::{self, RESERVED_PREFIX};
use ferry_cluster::{CheckpointConfig, ClusterWriter, Op, WriterConfig};
use ferry_ops::key_slot;
use ferry_testkit::{Cluster, Flavor};

const FLAVOR: Flavor = Flavor::Redis70;
const TEST_BOUND: Duration = Duration::from_secs(120);
/// Source commands.
const N: u64 = 20_000;
const COUNTERS: u64 = 100;
const LISTS: u64 = 20;
const STRINGS: u64 = 30;
const HISTORY: &str = "test-history";

fn offset(i: u64) -> u64 {
    1_000 + 10 * i
}

fn ctr(i: u64) -> String {
    format!("ctr:{}", i % COUNTERS)
}

fn list(i: u64) -> String {
    format!("l:{}", i % LISTS)
}

fn string(i: u64) -> String {
    format!("s:{}", i % STRINGS)
}

/// What source command `i` becomes: three ops sharing its offset (as a
/// command split per slot), a one-slot group every 97th command (a source
/// MULTI/EXEC), a FLUSHALL at `flush_at`.
#[allow(clippy::large_enum_variant)] // a test's values, built one at a time
enum Cmd {
    Ops([Op; 3]),
    Group(Vec<Op>),
    Flush(Op),
}

fn command(i: u64, flush_at: Option<u64>) -> Cmd {
    if Some(i) == flush_at {
        return Cmd::Flush(Op::all_masters(
            vec![Bytes::from_static(b"FLUSHALL")],
            offset(i),
        ));
    }
    if i % 97 == 5 {
        // Offsets inside a source transaction grow command by command.
        return Cmd::Group(vec![
            op(&[b"INCRBY", b"{tx}:a", b"2"], offset(i) - 5),
            op(&[b"RPUSH", b"{tx}:l", i.to_string().as_bytes()], offset(i)),
        ]);
    }
    let (c, l, s, v) = (ctr(i), list(i), string(i), i.to_string());
    Cmd::Ops([
        op(&[b"INCR", c.as_bytes()], offset(i)),
        op(&[b"RPUSH", l.as_bytes(), v.as_bytes()], offset(i)),
        op(
            &[b"APPEND", s.as_bytes(), format!("{v},").as_bytes()],
            offset(i),
        ),
    ])
}

async fn submit(w: &mut ClusterWriter, i: u64, flush_at: Option<u64>) {
    match command(i, flush_at) {
        Cmd::Ops(ops) => {
            for o in ops {
                w.submit(o).await.unwrap();
            }
        }
        Cmd::Group(ops) => w.submit_group(ops).await.unwrap(),
        Cmd::Flush(o) => w.submit(o).await.unwrap(),
    }
}

fn config() -> WriterConfig {
    WriterConfig {
        checkpoint: Some(CheckpointConfig {
            history: HISTORY.into(),
            namespace: String::new(),
        }),
        skip_applied: true,
        ..WriterConfig::default()
    }
}

async fn writer(cluster: &Cluster, config: WriterConfig) -> ClusterWriter {
    tokio::time::timeout(
        TEST_BOUND,
        ClusterWriter::connect_with(&cluster.seed_url(), config),
    )
    .await
    .expect("connect in time")
    .expect("connect")
}

fn random(below: u64) -> u64 {
    RandomState::new().hash_one(Instant::now()) % below.max(1)
}

/// Runs a writer in its own runtime, replays commands `from..k` (after a
/// restart, from a lower bound), waits `linger`, then drops the runtime:
/// the engine and its connections die wherever they are, as in `kill -9`.
/// Returns the first command not known applied (what `position.json`
/// would hold: a lower bound for the next resume).
fn crash_after(
    cluster: &Cluster,
    from: u64,
    k: u64,
    linger: Duration,
    flush_at: Option<u64>,
) -> u64 {
    let seed = cluster.seed_url();
    let handle = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let applied = rt.block_on(async {
            let mut w = ClusterWriter::connect_with(&seed, config()).await.unwrap();
            for i in from..k {
                submit(&mut w, i, flush_at).await;
            }
            tokio::time::sleep(linger).await;
            let applied = w.applied_offset();
            std::mem::forget(w);
            applied
        });
        // Drop every task (engine, pipelines) where it stands.
        rt.shutdown_timeout(Duration::from_secs(5));
        applied
    });
    let applied = handle.join().unwrap();
    // What the old connections had already sent is executed by the nodes
    // before a restarted process would look (as after a real kill -9).
    std::thread::sleep(Duration::from_millis(200));
    (0..N).find(|&i| offset(i) > applied).unwrap_or(N)
}

fn get_string(cluster: &Cluster, key: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(key)
        .query(&mut node_for(cluster, key).conn())
        .unwrap()
}

fn lrange(cluster: &Cluster, key: &str) -> Vec<u64> {
    redis::cmd("LRANGE")
        .arg(key)
        .arg(0)
        .arg(-1)
        .query(&mut node_for(cluster, key).conn())
        .unwrap()
}

/// Every value equals what applying commands `0..N` exactly once gives
/// (only those after `flush_at`, if any).
fn assert_exact(cluster: &Cluster, flush_at: Option<u64>, what: &str) {
    let live = |i: &u64| flush_at.is_none_or(|f| *i > f) && i % 97 != 5;
    for j in 0..COUNTERS {
        let want = (0..N).filter(|i| live(i) && i % COUNTERS == j).count();
        let got = get_string(cluster, &ctr(j)).map_or(0, |v| v.parse::<usize>().unwrap());
        assert_eq!(got, want, "{what}: {}", ctr(j));
    }
    for j in 0..LISTS {
        let want: Vec<u64> = (0..N).filter(|i| live(i) && i % LISTS == j).collect();
        assert_eq!(lrange(cluster, &list(j)), want, "{what}: {}", list(j));
    }
    for j in 0..STRINGS {
        let want: String = (0..N)
            .filter(|i| live(i) && i % STRINGS == j)
            .map(|i| format!("{i},"))
            .collect();
        let got = get_string(cluster, &string(j)).unwrap_or_default();
        assert_eq!(got, want, "{what}: {}", string(j));
    }
    let tx: Vec<u64> = (0..N)
        .filter(|i| i % 97 == 5 && flush_at.is_none_or(|f| *i > f))
        .collect();
    let a = get_string(cluster, "{tx}:a").map_or(0, |v| v.parse::<usize>().unwrap());
    assert_eq!(a, 2 * tx.len(), "{what}: {{tx}}:a");
    assert_eq!(lrange(cluster, "{tx}:l"), tx, "{what}: {{tx}}:l");
}

/// (a) Crash the writer three times at random points of a non-idempotent
/// workload (INCR, RPUSH, APPEND, one-slot groups, optionally a FLUSHALL in
/// the middle), restart each time with the checkpoints, replay from a lower
/// bound: every value is exactly what one application gives.
async fn crash_rounds(flavor: Flavor, flush_at: Option<u64>) {
    let _guard = LOCK.lock().await;
    let cluster = Cluster::shared(flavor);
    cluster.flushall();
    let (mut k, mut known) = (0, 0);
    let mut log = Vec::new();
    for round in 0..3 {
        // Resume from below what is known applied, as from position.json.
        let from = known - random(known.min(2_000));
        k = (k + N / 6 + random(N / 6)).min(N - 1);
        let linger = Duration::from_millis(random(30));
        let started = Instant::now();
        known = crash_after(cluster, from, k, linger, flush_at);
        log.push(format!(
            "round {round}: replayed {from}..{k}, crashed after {} ms (+{} ms linger), \
             applied below command {known}",
            started.elapsed().as_millis(),
            linger.as_millis()
        ));
    }
    let mut w = writer(cluster, config()).await;
    let summary = w.checkpoint_summary().clone();
    assert!(summary.slots > 0, "{summary:?}");
    // Again from a lower bound, so some ops are known applied: skipped.
    let from = known - known.min(500);
    let run = async {
        for i in from..N {
            submit(&mut w, i, flush_at).await;
        }
        w.flush().await.unwrap();
    };
    tokio::time::timeout(TEST_BOUND, run)
        .await
        .expect("replay in time");
    assert_eq!(w.applied_offset(), offset(N - 1));
    let stats = w.stats();
    assert!(stats.skipped > 0, "{stats:?}");
    w.close().await.unwrap();
    assert_exact(cluster, flush_at, "after three crashes");
    for l in &log {
        eprintln!("{l}");
    }
    eprintln!("final resume from {from}: {summary:?}, {stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crashes_then_resume_apply_every_op_exactly_once() {
    crash_rounds(FLAVOR, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crashes_around_a_flushall_apply_every_op_exactly_once() {
    crash_rounds(FLAVOR, Some(N / 3 + random(N / 3))).await;
}

/// The same against a Valkey 9 cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn valkey9_crashes_around_a_flushall_apply_every_op_exactly_once() {
    crash_rounds(Flavor::Valkey9, Some(N / 3 + random(N / 3))).await;
}

/// Connections killed by the server while transactions are in flight: the
/// writer reconnects and resends only what did not commit (a probe of the
/// checkpoint key decides).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_connections_resend_only_uncommitted_transactions() {
    let _guard = LOCK.lock().await;
    let cluster = Cluster::shared(FLAVOR);
    cluster.flushall();
    let mut w = writer(cluster, config()).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let killer = {
        let stop = stop.clone();
        let ports: Vec<u16> = cluster.nodes.iter().map(|n| n.port()).collect();
        std::thread::spawn(move || {
            let mut kills = 0;
            let deadline = Instant::now() + Duration::from_secs(20);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(40));
                for port in &ports {
                    let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}"))
                    else {
                        continue;
                    };
                    if let Ok(mut c) = client.get_connection() {
                        let n: redis::RedisResult<u64> = redis::cmd("CLIENT")
                            .arg("KILL")
                            .arg("TYPE")
                            .arg("normal")
                            .arg("SKIPME")
                            .arg("yes")
                            .query(&mut c);
                        kills += n.unwrap_or(0);
                    }
                }
            }
            kills
        })
    };
    let run = async {
        for i in 0..N {
            submit(&mut w, i, None).await;
            if i % 2000 == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        w.flush().await.unwrap();
    };
    let done = tokio::time::timeout(TEST_BOUND, run).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    done.expect("writes in time");
    let kills = killer.join().unwrap();
    let stats = w.stats();
    w.close().await.unwrap();
    assert_exact(cluster, None, "with killed connections");
    assert!(stats.reconnects > 0, "{stats:?} ({kills} kills)");
    eprintln!("{kills} connections killed: {stats:?}");
}

/// Replies lost after the commit: a tiny client output buffer limit makes
/// every master close the writer's connection in the middle of a pipeline,
/// after executing part of it. The transactions that committed are found by
/// their probe and not sent again; the others are.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replies_lost_after_the_commit_are_not_resent() {
    let _guard = LOCK.lock().await;
    let cluster = Cluster::shared(FLAVOR);
    cluster.flushall();
    let limit = |value: &str| {
        for n in &cluster.nodes {
            let _: () = redis::cmd("CONFIG")
                .arg("SET")
                .arg("client-output-buffer-limit")
                .arg(value)
                .query(&mut n.conn())
                .unwrap();
        }
    };
    // Small requests with big replies (GETEX of 8 KiB values), so a
    // pipeline's replies overflow the limit; APPEND shows whether anything
    // was applied twice.
    const KEYS: u64 = 2_000;
    const ROUNDS: u64 = 10_000;
    let big = |j: u64| format!("{j:08192}");
    for j in 0..KEYS {
        let k = format!("big:{j}");
        let _: () = redis::cmd("SET")
            .arg(&k)
            .arg(big(j))
            .query(&mut node_for(cluster, &k).conn())
            .unwrap();
    }
    let mut w = writer(cluster, config()).await;
    limit("normal 32kb 32kb 0");
    let run = async {
        for i in 0..ROUNDS {
            let (k, l) = (format!("big:{}", i % KEYS), format!("log:{}", i % KEYS));
            w.submit(op(&[b"GETEX", k.as_bytes(), b"PERSIST"], offset(i)))
                .await
                .unwrap();
            w.submit(op(
                &[b"APPEND", l.as_bytes(), format!("{i},").as_bytes()],
                offset(i),
            ))
            .await
            .unwrap();
        }
        w.flush().await.unwrap();
    };
    let done = tokio::time::timeout(TEST_BOUND, run).await;
    limit("normal 0 0 0");
    done.expect("writes in time");
    let stats = w.stats();
    w.close().await.unwrap();
    for j in (0..KEYS).step_by(7) {
        let want: String = (0..ROUNDS)
            .filter(|i| i % KEYS == j)
            .map(|i| format!("{i},"))
            .collect();
        let key = format!("log:{j}");
        assert_eq!(get_string(cluster, &key).unwrap_or_default(), want, "{key}");
    }
    assert!(stats.reconnects > 0, "{stats:?}");
    assert!(stats.verified > 0, "{stats:?}");
    eprintln!("{stats:?}");
}

/// The keys: one per slot written, on the slot's master, holding the
/// history and the last offset; removable by prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checkpoint_keys_live_on_their_slot_and_are_removed_by_prefix() {
    let _guard = LOCK.lock().await;
    let cluster = Cluster::shared(FLAVOR);
    cluster.flushall();
    let mut w = writer(cluster, config()).await;
    for i in 0..1000 {
        submit(&mut w, i, None).await;
    }
    w.close().await.unwrap();
    let last = (0..1000).filter(|i| i % COUNTERS == 3).max().unwrap();
    let slot = key_slot(ctr(3).as_bytes());
    let key = checkpoint::ckpt_key(slot);
    assert!(key.starts_with(RESERVED_PREFIX));
    // The list and string ops of a later command may share the slot.
    let got = get_string(cluster, &key).expect("checkpoint of the slot");
    let (h, o) = checkpoint::decode(got.as_bytes()).unwrap();
    assert_eq!(h, HISTORY);
    assert!(o >= offset(last), "{got}");

    let user_keys = COUNTERS + LISTS + STRINGS + 2;
    let total = |c: &Cluster| -> u64 {
        c.nodes
            .iter()
            .map(|n| redis::cmd("DBSIZE").query::<u64>(&mut n.conn()).unwrap())
            .sum()
    };
    let ckpts = total(cluster) - user_keys;
    assert!(ckpts > 0);
    let removed = checkpoint::remove_all(&cluster.seed_url(), WriterConfig::default())
        .await
        .unwrap();
    assert_eq!(removed, ckpts);
    assert_eq!(total(cluster), user_keys);
}

/// A writer without checkpoint config writes no keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_checkpoint_config_writes_no_keys() {
    let _guard = LOCK.lock().await;
    let cluster = Cluster::shared(FLAVOR);
    cluster.flushall();
    let mut w = writer(cluster, WriterConfig::default()).await;
    for i in 0..1000 {
        submit(&mut w, i, None).await;
    }
    w.close().await.unwrap();
    let total: u64 = cluster
        .nodes
        .iter()
        .map(|n| redis::cmd("DBSIZE").query::<u64>(&mut n.conn()).unwrap())
        .sum();
    assert_eq!(total, COUNTERS + LISTS + STRINGS + 2);
}

/// Streaming throughput with and without checkpoints, same run (figures
/// only; speed targets live in benches).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn throughput_with_and_without_checkpoints() {
    let _guard = LOCK.lock().await;
    let cluster = Cluster::shared(FLAVOR);
    let mut rates = Vec::new();
    // Few hot keys (big groups per slot), then SET over 100k keys (about
    // one op per slot and transaction).
    for (spread, ckpt) in [(false, false), (false, true), (true, false), (true, true)] {
        cluster.flushall();
        let cfg = if ckpt {
            config()
        } else {
            WriterConfig::default()
        };
        let mut w = writer(cluster, cfg).await;
        let start = Instant::now();
        for i in 0..N {
            if spread {
                for j in 0..3 {
                    let key = format!("k:{}", i * 3 + j);
                    w.submit(op(&[b"SET", key.as_bytes(), b"v"], offset(i)))
                        .await
                        .unwrap();
                }
            } else {
                submit(&mut w, i, None).await;
            }
        }
        w.flush().await.unwrap();
        let secs = start.elapsed().as_secs_f64();
        let ops = w.stats().acked;
        w.close().await.unwrap();
        rates.push(format!(
            "{}, checkpoints={ckpt}: {ops} ops in {secs:.2} s = {:.0} ops/s",
            if spread { "60k keys" } else { "150 hot keys" },
            ops as f64 / secs
        ));
    }
    for r in rates {
        eprintln!("{r}");
    }
}
