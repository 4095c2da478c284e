//! A cluster source (issue 13): one pipeline per source shard. Real
//! servers: a 3-master source cluster with one replica per master, into a
//! 4-master cluster or a standalone server; mixed types, a bounded random
//! single-slot write workload during the sync, `kill -9` of ferry, two
//! processes sharing the shards. The target is compared with the union of
//! every source master's dump, key by key and by value.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_testkit::{Cluster, Flavor, Server, SlotRange, free_port, info_field, port_of_slot};

use crate::common::Norm;
use crate::common::daemon::{Daemon, FERRY, status};
use crate::e2e_support::{assert_same, dataset};

const FLAVOR: Flavor = Flavor::Redis70;
/// Bound of every wait for a catch-up.
const CATCH_UP: Duration = Duration::from_secs(120);

/// A config and its HTTP address in a temp dir.
struct Run {
    dir: tempfile::TempDir,
    cfg: PathBuf,
    http: String,
}

impl Run {
    /// `source_extra` is added to the `source:` map, `extra` as lines.
    fn new(source_url: &str, source_extra: &str, target_url: &str, extra: &str) -> Run {
        let dir = tempfile::tempdir().expect("tmp");
        let http = format!("127.0.0.1:{}", free_port());
        let cfg = dir.path().join("ferry.yaml");
        std::fs::write(
            &cfg,
            format!(
                "source: {{ url: \"{source_url}\"{source_extra} }}\ntarget: {{ url: \"{target_url}\" }}\nstate_dir: \"{}\"\nhttp: {{ listen: \"{http}\" }}\n{extra}",
                dir.path().join("state").display()
            ),
        )
        .expect("config");
        Run { dir, cfg, http }
    }

    fn start(&self) -> Daemon {
        let n = std::fs::read_dir(self.dir.path())
            .map(|d| d.count())
            .unwrap_or(0);
        let log = self.dir.path().join(format!("run-{n}.log"));
        let child = Command::new(FERRY)
            .args(["run", "--config"])
            .arg(&self.cfg)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start ferry run");
        Daemon { child, log }
    }

    fn status(&self) -> Option<serde_json::Value> {
        status(&self.http)
    }
}

fn masters(c: &Cluster) -> Vec<&Server> {
    c.nodes
        .iter()
        .filter(|n| ferry_testkit::role(n).as_deref() == Some("master"))
        .collect()
}

fn repl_offset(s: &Server) -> u64 {
    info_field(&s.info("replication"), "master_repl_offset")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn sync_full(s: &Server) -> u64 {
    info_field(&s.info("stats"), "sync_full")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Waits until `/status` has `links` links, each applied up to the
/// `master_repl_offset` of the node it reads from, with lag 0.
fn wait_all_caught_up(c: &Cluster, run: &Run, links: usize, daemon: &Daemon) {
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let st = run.status();
        let ok = st.as_ref().is_some_and(|st| {
            let ls = st["links"].as_array().cloned().unwrap_or_default();
            ls.len() == links
                && ls.iter().all(|l| {
                    let node = l["source"].as_str().unwrap_or("");
                    let Some(n) = c.nodes.iter().find(|n| n.addr() == node) else {
                        return false;
                    };
                    l["applied_offset"].as_u64() == Some(repl_offset(n))
                        && l["lag_bytes"].as_u64() == Some(0)
                        && l["phase"] == "streaming"
                })
        });
        if ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not caught up in {CATCH_UP:?}: {st:#?}\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Connections to a cluster's masters by slot (the slot map read once).
struct Router<'a> {
    cluster: &'a Cluster,
    map: Vec<SlotRange>,
    conns: HashMap<u16, redis::Connection>,
}

impl<'a> Router<'a> {
    fn new(cluster: &'a Cluster) -> Router<'a> {
        Router {
            cluster,
            map: cluster.slot_map(),
            conns: HashMap::new(),
        }
    }

    fn conn(&mut self, key: &str) -> &mut redis::Connection {
        let slot = ferry_ops::key_slot(key.as_bytes());
        let port = port_of_slot(&self.map, slot).expect("slot served");
        let cluster = self.cluster;
        self.conns.entry(port).or_insert_with(|| {
            cluster
                .nodes
                .iter()
                .find(|n| n.port() == port)
                .expect("node")
                .conn()
        })
    }

    fn run(&mut self, key: &str, cmd: &mut redis::Cmd) {
        let _: redis::Value = cmd.query(self.conn(key)).expect("source write");
    }
}

/// Every type, some with TTLs, spread over every slot range.
fn fill(c: &Cluster, keys: usize) {
    let mut r = Router::new(c);
    for i in 0..keys {
        let k = |t: &str| format!("{t}:{i}");
        r.run(&k("s"), redis::cmd("SET").arg(k("s")).arg(format!("v{i}")));
        if i % 5 == 0 {
            r.run(
                &k("s"),
                redis::cmd("PEXPIRE").arg(k("s")).arg(3_600_000 + i as u64),
            );
        }
        r.run(
            &k("h"),
            redis::cmd("HSET")
                .arg(k("h"))
                .arg("a")
                .arg(i)
                .arg("b")
                .arg("x"),
        );
        r.run(
            &k("l"),
            redis::cmd("RPUSH").arg(k("l")).arg(1).arg(2).arg(i),
        );
        r.run(&k("t"), redis::cmd("SADD").arg(k("t")).arg("m").arg(i));
        r.run(
            &k("z"),
            redis::cmd("ZADD")
                .arg(k("z"))
                .arg(1.5)
                .arg("a")
                .arg(i)
                .arg("b"),
        );
        if i % 50 == 0 {
            r.run(
                &k("x"),
                redis::cmd("XADD").arg(k("x")).arg("*").arg("f").arg(i),
            );
        }
    }
}

/// A bounded random single-slot write workload (counters, lists, strings,
/// hashes, deletes, and a `MULTI`/`EXEC` on one slot): at most `max_ops`
/// batches or `seconds`. Returns the batches run.
fn workload(c: &Cluster, seed: u64, seconds: u64, max_ops: u64) -> u64 {
    let mut r = Router::new(c);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut x = seed | 1;
    let mut n = 0;
    while n < max_ops && Instant::now() < deadline {
        // xorshift: reproducible and dependency-free.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let i = x % 97;
        match x % 6 {
            0 => r.run(
                &format!("w:c:{i}"),
                redis::cmd("INCR").arg(format!("w:c:{i}")),
            ),
            1 => r.run(
                &format!("w:l:{i}"),
                redis::cmd("RPUSH").arg(format!("w:l:{i}")).arg(n),
            ),
            2 => r.run(
                &format!("w:s:{i}"),
                redis::cmd("SET").arg(format!("w:s:{i}")).arg(n),
            ),
            3 => r.run(
                &format!("w:h:{i}"),
                redis::cmd("HINCRBY")
                    .arg(format!("w:h:{i}"))
                    .arg(format!("f{}", n % 5))
                    .arg(1),
            ),
            4 => r.run(&format!("s:{i}"), redis::cmd("DEL").arg(format!("s:{i}"))),
            _ => {
                let key = format!("{{w:m:{i}}}");
                let conn = r.conn(&key);
                let _: () = redis::pipe()
                    .atomic()
                    .cmd("INCR")
                    .arg(format!("{key}:a"))
                    .ignore()
                    .cmd("RPUSH")
                    .arg(format!("{key}:b"))
                    .arg(n)
                    .ignore()
                    .query(conn)
                    .expect("multi");
            }
        }
        n += 1;
    }
    n
}

/// The union of the datasets of `servers`.
fn union(servers: &[&Server]) -> BTreeMap<(u64, Bytes), Norm> {
    let mut all = BTreeMap::new();
    for s in servers {
        all.extend(dataset(s));
    }
    all
}

fn assert_target_equals_source(src: &Cluster, dst: &[&Server]) {
    let want = union(&masters(src));
    assert!(want.len() > 1000, "{} keys", want.len());
    let got = union(dst);
    assert_same(&want, &got);
}

fn source_cluster() -> Cluster {
    Cluster::start_with_replicas(FLAVOR, 3, 1).expect("3-master source with replicas")
}

/// 3 source masters (one replica each) into 4 target masters, from the
/// masters or from the replicas.
fn three_into_four(read_from: &str) {
    let src = source_cluster();
    let dst = Cluster::start(FLAVOR, 4).expect("4-master target");
    fill(&src, 400);
    let run = Run::new(
        &src.nodes[0].url(),
        &format!(", read_from: {read_from}"),
        &dst.seed_url(),
        "",
    );
    let daemon = run.start();
    let ops = std::thread::scope(|s| {
        let w = s.spawn(|| workload(&src, 1, 4, 20_000));
        w.join().expect("workload")
    });
    assert!(ops > 100, "{ops} ops");
    wait_all_caught_up(&src, &run, 3, &daemon);
    let st = run.status().expect("status");
    let names: Vec<&str> = st["links"]
        .as_array()
        .expect("links")
        .iter()
        .map(|l| l["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, ["shard-0", "shard-5461", "shard-10923"], "{st:#}");
    for l in st["links"].as_array().expect("links") {
        let node = l["source"].as_str().expect("source");
        let server = src.nodes.iter().find(|n| n.addr() == node).expect("node");
        let role = ferry_testkit::role(server);
        let want = if read_from == "replica" {
            "slave"
        } else {
            "master"
        };
        assert_eq!(role.as_deref(), Some(want), "{l:#}");
        assert!(l["slots"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(l["replid"].as_str().is_some_and(|s| s.len() == 40), "{l:#}");
    }
    assert_eq!(st["phase"], "streaming");
    assert_eq!(st["lag_bytes"], 0);
    assert_target_equals_source(&src, &masters(&dst));
    // Each shard's checkpoints are in its own namespace.
    let mut ckpts = std::collections::BTreeSet::new();
    for m in masters(&dst) {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg("__ferry:ckpt:*")
            .query(&mut m.conn())
            .expect("keys");
        for k in keys {
            ckpts.insert(k.split(':').nth(2).unwrap_or("").to_string());
        }
    }
    assert_eq!(
        ckpts.into_iter().collect::<Vec<_>>(),
        ["shard-0", "shard-10923", "shard-5461"]
    );
}

#[test]
fn three_masters_into_four_from_masters() {
    three_into_four("master");
}

#[test]
fn three_masters_into_four_from_replicas() {
    three_into_four("replica");
}

/// Waits until every link of `/status` streams (the full syncs are over).
fn wait_streaming(run: &Run, links: usize, daemon: &Daemon) {
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let st = run.status();
        let ok = st.as_ref().is_some_and(|st| {
            let ls = st["links"].as_array().cloned().unwrap_or_default();
            ls.len() == links && ls.iter().all(|l| l["phase"] == "streaming")
        });
        if ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not streaming in {CATCH_UP:?}: {st:#?}\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Two `kill -9` of ferry while the workload streams: every shard resumes
/// with `+CONTINUE` (no source master counts another full sync) and the
/// checkpoints skip what the target has, so counters and lists (`INCR`,
/// `RPUSH`, `HINCRBY`, a `MULTI`) end equal to the source: exactly once.
#[test]
fn kill9_twice_while_streaming_is_exactly_once_without_full_sync() {
    let src = source_cluster();
    let dst = Cluster::start(FLAVOR, 3).expect("target");
    fill(&src, 300);
    let run = Run::new(&src.nodes[0].url(), "", &dst.seed_url(), "");
    let mut daemon = run.start();
    wait_streaming(&run, 3, &daemon);
    let full_before: Vec<u64> = masters(&src).iter().map(|m| sync_full(m)).collect();
    std::thread::scope(|s| {
        let w = s.spawn(|| workload(&src, 7, 12, 60_000));
        for _ in 0..2 {
            std::thread::sleep(Duration::from_millis(1500));
            daemon.kill9();
            std::thread::sleep(Duration::from_millis(300));
            daemon = run.start();
        }
        w.join().expect("workload")
    });
    wait_all_caught_up(&src, &run, 3, &daemon);
    let full_after: Vec<u64> = masters(&src).iter().map(|m| sync_full(m)).collect();
    assert_eq!(full_before, full_after, "a source master took a full sync");
    assert_target_equals_source(&src, &masters(&dst));
    let st = run.status().expect("status");
    assert!(
        st["target"]["skipped_applied"].as_u64().unwrap_or(0) > 0
            || st["commands_applied"].as_u64().unwrap_or(0) > 0,
        "{st:#}"
    );
}
