//! Target failovers during streaming (issue 17), three faults in one run
//! against 3 masters with one replica each (`cluster-node-timeout` 2 s)
//! while the random workload (`INCRBY`, `LPUSH`, `APPEND`, ... every type)
//! writes to the source:
//!
//! 1. a graceful `CLUSTER FAILOVER` on a replica;
//! 2. `kill -9` of another master; once its replica is promoted, the dead
//!    node is restarted and rejoins as a replica;
//! 3. both at once: a graceful failover of the first pair back, and a
//!    `kill -9` of the master promoted in 2 (restarted afterwards).
//!
//! Then lag 0 and `ferry verify`. With `target.wait_replicas`, nothing is
//! lost: verify finds 0 differences and every counter is exact. Without
//! it, a killed master may take writes it acknowledged but had not yet
//! replicated (Redis replication is asynchronous): verify must then list
//! exactly the keys whose values differ, as compared here independently
//! (`DEBUG DIGEST-VALUE` and TTLs on both sides).

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use ferry_testkit::workload::{Workload, WorkloadOptions};
use ferry_testkit::{Cluster, Flavor, Server, info_field, port_of_slot, role};

use super::{assert_counters, recovered, report_row, start_streaming, target_summary};
use crate::common::daemon::{FERRY, Setup, wait_caught_up};

/// Bound on every wait for the cluster to settle after a fault.
const SETTLE: Duration = Duration::from_secs(40);

/// Runs the workload on `src` until `stop` (or `bound`), a batch of 50
/// commands every 2 ms at most.
fn workload_until(
    src: &Server,
    seed: u64,
    stop: Arc<AtomicBool>,
    bound: Duration,
) -> thread::JoinHandle<Workload> {
    let mut conn = src.conn();
    thread::spawn(move || {
        let mut wl = Workload::new(WorkloadOptions {
            seed,
            ..WorkloadOptions::default()
        });
        let start = Instant::now();
        while !stop.load(Ordering::Relaxed) && start.elapsed() < bound {
            wl.batch(&mut conn).expect("workload batch");
            thread::sleep(Duration::from_millis(2));
        }
        wl
    })
}

fn cluster_failover(c: &Cluster, replica: usize) {
    let _: String = redis::cmd("CLUSTER")
        .arg("FAILOVER")
        .query(&mut c.nodes[replica].conn())
        .expect("CLUSTER FAILOVER");
}

/// Waits until `dead` serves no slot and every other node is `ok`.
fn wait_replaced(c: &Cluster, dead: usize) {
    let port = c.nodes[dead].port();
    c.wait_until("a replica promoted", SETTLE, |c| {
        c.all_ok(Some(dead)) && c.slot_map().iter().all(|(_, _, p)| *p != port)
    })
    .expect("promotion");
}

/// Restarts the killed node `dead` and waits until it is a replica in
/// sync and every node is `ok`.
fn restart_as_replica(c: &mut Cluster, dead: usize) {
    c.nodes[dead].restart().expect("restart the killed node");
    c.wait_until("the restarted node to rejoin as a replica", SETTLE, |c| {
        let info = c.nodes[dead].info("replication");
        info_field(&info, "role").as_deref() == Some("slave")
            && info_field(&info, "master_link_status").as_deref() == Some("up")
            && c.all_ok(None)
    })
    .expect("rejoined");
}

/// The master and replica pairs (without node 0, the seed) of the
/// cluster, once node 0's view shows two.
fn pairs(c: &Cluster) -> Vec<(usize, usize)> {
    c.wait_until("node 0 to see two master/replica pairs", SETTLE, |c| {
        c.master_replica_pairs().len() >= 2
    })
    .expect("two master/replica pairs without node 0");
    c.master_replica_pairs()
}

/// The three faults; returns (fault, recovery) per fault.
fn faults(c: &mut Cluster, src: &Server, http: &str) -> Vec<(String, Duration)> {
    let mut rows = Vec::new();
    let (m1, r1) = pairs(c)[0];
    // 1. Graceful.
    let t = Instant::now();
    cluster_failover(c, r1);
    c.wait_role_change(r1, Some(m1), None, SETTLE)
        .expect("failover");
    rows.push((
        "target failover (CLUSTER FAILOVER on a replica)".to_owned(),
        recovered(src, http, t, Duration::from_secs(90)),
    ));
    // 2. Another master killed, restarted once replaced.
    let (m2, r2) = pairs(c)
        .into_iter()
        .find(|(m, _)| *m != r1 && *m != m1)
        .expect("a second pair");
    let t = Instant::now();
    c.nodes[m2].kill();
    wait_replaced(c, m2);
    restart_as_replica(c, m2);
    rows.push((
        "target master killed (kill -9), promoted replica, dead node restarted as a replica"
            .to_owned(),
        recovered(src, http, t, Duration::from_secs(90)),
    ));
    // 3. Both at once: pair 1 fails back gracefully while the master
    // promoted in 2 is killed.
    assert_eq!(role(&c.nodes[r2]).as_deref(), Some("master"));
    let t = Instant::now();
    cluster_failover(c, m1);
    c.nodes[r2].kill();
    c.wait_role_change(m1, Some(r1), Some(r2), SETTLE)
        .expect("failover back");
    wait_replaced(c, r2);
    restart_as_replica(c, r2);
    rows.push((
        "graceful failover and kill -9 of another master at once".to_owned(),
        recovered(src, http, t, Duration::from_secs(90)),
    ));
    rows
}

/// Runs the three faults with `target.wait_replicas` (ms) or without.
pub(crate) fn target_failovers(seed: u64, wait_replicas: Option<u64>) {
    let mut cluster = Cluster::start_with_replicas_and(Flavor::Redis70, 3, 1, |b| {
        b.arg("cluster-node-timeout", "2000")
    })
    .expect("cluster");
    let (src, setup, mut ferry) = start_streaming(&cluster, seed, wait_replicas);
    let stop = Arc::new(AtomicBool::new(false));
    let wl = workload_until(&src, seed, Arc::clone(&stop), Duration::from_secs(200));
    thread::sleep(Duration::from_secs(2));
    let rows = faults(&mut cluster, &src, &setup.http);
    thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let wl = wl.join().expect("workload thread");
    if let Some(code) = ferry.wait_exit(Duration::from_millis(200)) {
        panic!("ferry exited with {code}: {}", ferry.log());
    }
    wait_caught_up(&src, &setup.http, Duration::from_secs(90));
    let st = setup.status().expect("status");
    assert!(
        st["target"]["refreshes"].as_u64().unwrap_or(0) >= 1,
        "ferry never re-read the topology: {st}"
    );
    let did = match wait_replicas {
        Some(_) => {
            "kept running; unconfirmed transactions probed on the new master, resent if absent"
        }
        None => "kept running; followed MOVED and the new topology",
    };
    let did = format!("{did} ({})", target_summary(&setup));
    let verify = if wait_replicas.is_some() {
        let v = setup.assert_verified();
        assert_counters(&cluster, wl.expected_counters());
        v
    } else {
        let (v, lost) = verify_lists_exactly_the_differences(&setup, &src, &cluster);
        // The comparison itself must see a difference: two keys changed
        // on the target behind ferry's back are listed too, exactly.
        let changed = break_two_keys(&cluster, wl.expected_counters());
        let (_, listed) = verify_lists_exactly_the_differences(&setup, &src, &cluster);
        let want: BTreeSet<String> = lost.union(&changed).cloned().collect();
        assert_eq!(listed, want, "after changing {changed:?} on the target");
        v
    };
    let mode = match wait_replicas {
        Some(ms) => format!("wait_replicas {ms} ms"),
        None => "no wait_replicas".to_owned(),
    };
    for (fault, rec) in rows {
        report_row(&format!("{fault}, {mode}"), &did, rec, &verify);
    }
    assert_eq!(ferry.stop(), Some(0), "{}", ferry.log());
}

/// Changes two keys on the target: a counter incremented, another one
/// deleted; returns their names.
fn break_two_keys(
    cluster: &Cluster,
    counters: &std::collections::BTreeMap<String, i64>,
) -> BTreeSet<String> {
    let mut keys = counters.keys().take(2);
    let (a, b) = (keys.next().expect("a counter"), keys.next().expect("two"));
    let _: i64 = redis::cmd("INCRBY")
        .arg(a)
        .arg(1000)
        .query(&mut cluster.node_for_key(a.as_bytes()).conn())
        .expect("INCRBY on the target");
    let _: i64 = redis::cmd("DEL")
        .arg(b)
        .query(&mut cluster.node_for_key(b.as_bytes()).conn())
        .expect("DEL on the target");
    [a.clone(), b.clone()].into()
}

/// `ferry verify` (every difference listed) must name exactly the keys
/// whose values differ; returns its stdout and the keys it listed.
fn verify_lists_exactly_the_differences(
    setup: &Setup,
    src: &Server,
    cluster: &Cluster,
) -> (String, BTreeSet<String>) {
    let out = Command::new(FERRY)
        .args(["verify", "--show", "1000000", "--config"])
        .arg(&setup.cfg)
        .output()
        .expect("ferry verify");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let listed: BTreeSet<String> = text.lines().filter_map(listed_key).collect();
    let code = out.status.code();
    assert_eq!(
        code,
        Some(if listed.is_empty() { 0 } else { 1 }),
        "ferry verify: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (differ, unsure) = differing_keys(src, cluster);
    let missed: Vec<&String> = differ.difference(&listed).collect();
    let extra: Vec<&String> = listed
        .iter()
        .filter(|k| !differ.contains(*k) && !unsure.contains(*k))
        .collect();
    eprintln!(
        "{} keys differ by an independent comparison (verify listed {}, {} borderline TTLs)",
        differ.len(),
        listed.len(),
        unsure.len()
    );
    assert!(
        missed.is_empty() && extra.is_empty(),
        "verify missed {missed:?}, listed unchanged {extra:?}\n{text}"
    );
    (text, listed)
}

/// The key of a `differs: "key": what` line of `ferry verify`.
fn listed_key(line: &str) -> Option<String> {
    let rest = line.strip_prefix("differs: ")?;
    let rest = rest.strip_prefix('"')?;
    Some(rest.split_once("\": ")?.0.to_owned())
}

/// What a key holds, as far as the comparison goes: type, value digest
/// (encoding independent; marks a TTL), remaining TTL (ms, -1 none, -2
/// absent).
fn fingerprint(conn: &mut redis::Connection, key: &str) -> (String, String, i64) {
    let (kind, digest, pttl): (String, Vec<String>, i64) = redis::pipe()
        .cmd("TYPE")
        .arg(key)
        .cmd("DEBUG")
        .arg("DIGEST-VALUE")
        .arg(key)
        .cmd("PTTL")
        .arg(key)
        .query(conn)
        .expect("TYPE, DEBUG DIGEST-VALUE, PTTL");
    (kind, digest.concat(), pttl)
}

/// Keys whose contents differ between `src` and the cluster, and keys
/// that differ only by a TTL close to verify's 2 s tolerance (either
/// answer is right for those).
fn differing_keys(src: &Server, cluster: &Cluster) -> (BTreeSet<String>, BTreeSet<String>) {
    let map = cluster.slot_map();
    let masters: Vec<&Server> = cluster
        .nodes
        .iter()
        .filter(|n| map.iter().any(|(_, _, p)| *p == n.port()))
        .collect();
    let scan = |s: &Server| -> Vec<String> {
        redis::cmd("KEYS")
            .arg("*")
            .query(&mut s.conn())
            .expect("KEYS")
    };
    let mut keys: BTreeSet<String> = scan(src).into_iter().collect();
    for m in &masters {
        keys.extend(scan(m).into_iter().filter(|k| !k.starts_with("__ferry:")));
    }
    let mut conns: Vec<(u16, redis::Connection)> =
        masters.iter().map(|m| (m.port(), m.conn())).collect();
    let mut s = src.conn();
    let (mut differ, mut unsure) = (BTreeSet::new(), BTreeSet::new());
    for key in keys {
        let slot = ferry_ops::key_slot(key.as_bytes());
        let port = port_of_slot(&map, slot).expect("slot served");
        let t = &mut conns
            .iter_mut()
            .find(|(p, _)| *p == port)
            .expect("a master")
            .1;
        let (a, b) = (fingerprint(&mut s, &key), fingerprint(t, &key));
        let ttl_gap = (a.2 - b.2).abs();
        if a.0 != b.0 || a.1 != b.1 || (a.2 < 0) != (b.2 < 0) {
            // Absent on one side only with a TTL about to run out: may
            // just have expired between the two reads.
            let expiring = |p: i64| (0..3_000).contains(&p);
            if (a.0 == "none" && expiring(b.2)) || (b.0 == "none" && expiring(a.2)) {
                unsure.insert(key);
            } else {
                differ.insert(key);
            }
        } else if ttl_gap > 3_000 {
            differ.insert(key);
        } else if ttl_gap > 1_000 {
            unsure.insert(key);
        }
    }
    (differ, unsure)
}
