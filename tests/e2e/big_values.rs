//! Big values with a memory bound: a 200 MB list (200 000 elements of
//! 1000 bytes) and a hash with 1 000 000 fields, both with a TTL, migrated by
//! `ferry run` into a 3-master cluster once with `snapshot.restore: auto`
//! (RESTORE where it can; keys this big always go in bounded chunks) and once
//! with `snapshot.restore: never` (command form). Each time the keys land
//! identical (type, `DEBUG DIGEST-VALUE` — a digest of the content in order
//! for the list, whatever the encoding —, sizes, sampled elements, expire
//! time to the millisecond) and ferry's peak RSS (`VmHWM`) stays under 400 MB: a
//! memory bound, not a timing.

use std::time::Duration;

use ferry_testkit::{Cluster, Flavor, Server, free_port};

use crate::e2e_support::{Daemon, wait_caught_up, write_config};

const LIST: &str = "big:list";
const HASH: &str = "big:hash";
const LIST_LEN: usize = 200_000;
const ELEMENT: usize = 1000;
const FIELDS: usize = 1_000_000;
/// Peak RSS ferry may reach.
const RSS_BOUND_KB: u64 = 400 * 1024;

fn element(i: usize) -> Vec<u8> {
    let mut e = format!("{i:010}:").into_bytes();
    e.resize(ELEMENT, b'a' + (i % 26) as u8);
    e
}

fn populate(src: &Server) {
    let mut c = src.conn();
    for start in (0..LIST_LEN).step_by(1000) {
        let mut cmd = redis::cmd("RPUSH");
        cmd.arg(LIST);
        for i in start..start + 1000 {
            cmd.arg(element(i));
        }
        cmd.query::<()>(&mut c).expect("RPUSH");
    }
    for start in (0..FIELDS).step_by(10_000) {
        let mut cmd = redis::cmd("HSET");
        cmd.arg(HASH);
        for i in start..start + 10_000 {
            cmd.arg(format!("field:{i}")).arg(format!("value:{i}"));
        }
        cmd.query::<()>(&mut c).expect("HSET");
    }
    for key in [LIST, HASH] {
        redis::cmd("PEXPIRE")
            .arg(key)
            .arg(3_600_000)
            .query::<()>(&mut c)
            .expect("PEXPIRE");
    }
}

/// `VmHWM` of a process, in kB.
fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

fn assert_same_keys(src: &Server, cluster: &Cluster) {
    let mut s = src.conn();
    for key in [LIST, HASH] {
        let mut t = cluster.node_for_key(key.as_bytes()).conn();
        let kind = |c: &mut redis::Connection| -> String {
            redis::cmd("TYPE").arg(key).query(c).expect("TYPE")
        };
        assert_eq!(kind(&mut s), kind(&mut t), "{key}: type");
        let at = |c: &mut redis::Connection| -> i64 {
            redis::cmd("PEXPIRETIME")
                .arg(key)
                .query(c)
                .expect("PEXPIRETIME")
        };
        let expire = at(&mut s);
        assert!(expire > 0);

        assert_eq!(expire, at(&mut t), "{key}: expire time");
    }
    // Content digests (by value, whatever the encoding), sizes, samples.
    for key in [LIST, HASH] {
        let mut t = cluster.node_for_key(key.as_bytes()).conn();
        let digest = |c: &mut redis::Connection| -> String {
            redis::cmd("DEBUG")
                .arg("DIGEST-VALUE")
                .arg(key)
                .query::<Vec<String>>(c)
                .expect("DEBUG DIGEST-VALUE")
                .concat()
        };
        assert_eq!(digest(&mut s), digest(&mut t), "{key}: content digest");
    }
    let mut t = cluster.node_for_key(LIST.as_bytes()).conn();
    let len = |c: &mut redis::Connection| -> usize {
        redis::cmd("LLEN").arg(LIST).query(c).expect("LLEN")
    };
    assert_eq!(len(&mut s), LIST_LEN);
    assert_eq!(len(&mut t), LIST_LEN, "list length on the target");
    for i in [0, 1, 4_999, 5_000, LIST_LEN / 2, LIST_LEN - 1] {
        let got: Vec<u8> = redis::cmd("LINDEX")
            .arg(LIST)
            .arg(i)
            .query(&mut t)
            .expect("LINDEX");
        assert_eq!(got, element(i), "list element {i}");
    }
    let mut t = cluster.node_for_key(HASH.as_bytes()).conn();
    let len: usize = redis::cmd("HLEN").arg(HASH).query(&mut t).expect("HLEN");
    assert_eq!(len, FIELDS, "hash fields on the target");
    for i in [0, 1, FIELDS / 2, FIELDS - 1] {
        let got: String = redis::cmd("HGET")
            .arg(HASH)
            .arg(format!("field:{i}"))
            .query(&mut t)
            .expect("HGET");
        assert_eq!(got, format!("value:{i}"), "hash field {i}");
    }
}

#[test]
fn big_list_and_hash_land_identical_within_a_memory_bound() {
    let src = Server::start(Flavor::Redis70).expect("source");
    populate(&src);
    // DEBUG DIGEST-VALUE of a 200 MB list blocks its node for seconds on a
    // loaded machine: a long node timeout keeps the others from marking it
    // failed (and the cluster down) meanwhile.
    let cluster = Cluster::start_with(Flavor::Redis70, 3, |b| {
        b.arg("cluster-node-timeout", "60000")
    })
    .expect("cluster");
    for restore in ["auto", "never"] {
        cluster.flushall();
        let dir = tempfile::tempdir().expect("tmp");
        let http = format!("127.0.0.1:{}", free_port());
        let cfg = write_config(
            dir.path(),
            &format!("{{ url: \"{}\" }}", src.url()),
            &format!("{{ url: \"{}\" }}", cluster.seed_url()),
            &http,
            &format!("snapshot: {{ restore: {restore} }}\n"),
        );
        let daemon = Daemon::start(&cfg);
        let started = std::time::Instant::now();
        wait_caught_up(&src, &http, Duration::from_secs(600));
        let peak = peak_rss_kb(daemon.pid());
        eprintln!(
            "restore={restore}: caught up in {:.1} s, ferry peak RSS {} MB",
            started.elapsed().as_secs_f64(),
            peak / 1024
        );
        assert_same_keys(&src, &cluster);
        assert!(
            peak < RSS_BOUND_KB,
            "restore={restore}: ferry peak RSS {} MB over the {} MB bound",
            peak / 1024,
            RSS_BOUND_KB / 1024
        );
        drop(daemon);
    }
}
