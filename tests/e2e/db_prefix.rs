//! `filter.db_prefix` into a cluster: a Redis 7.0 source with the same key
//! names in db 0 and db 2 (snapshot and live writes, a cross-slot `RENAME`
//! among them), `dbs: [0, 2]`, `db_prefix: "{db}:"`, a 3-master Redis 7.0
//! cluster. Key `k` of db 2 lands as `2:k`, `ferry verify` compares db by
//! db through the prefixes (exit 0), then reports a tampered key (exit 1).
//! A `FLUSHDB` in db 2 deletes exactly the keys under `2:`.

use std::time::Duration;

use ferry_testkit::{Cluster, Flavor, Server};

use crate::common::daemon::{Setup, wait_caught_up, wait_phase};

fn writes(c: &mut redis::Connection, db: u64, from: u64, to: u64) {
    redis::cmd("SELECT").arg(db).query::<()>(c).expect("select");
    for i in from..to {
        redis::pipe()
            .cmd("SET")
            .arg(format!("k:{}", i % 50))
            .arg(format!("db{db}-{i}"))
            .ignore()
            .cmd("RPUSH")
            .arg(format!("list:{}", i % 5))
            .arg(i)
            .ignore()
            .cmd("INCR")
            .arg("counter")
            .ignore()
            .cmd("HSET")
            .arg("{h}:hash")
            .arg(format!("f{}", i % 9))
            .arg(db * 1000 + i)
            .ignore()
            .cmd("MSET")
            .arg(format!("a:{i}"))
            .arg(i)
            .arg(format!("b:{i}"))
            .arg(db)
            .ignore()
            .cmd("DEL")
            .arg(format!("a:{}", i.saturating_sub(2)))
            .ignore()
            .cmd("SET")
            .arg(format!("r:{i}"))
            .arg(i)
            .arg("PX")
            .arg(3_600_000)
            .ignore()
            .cmd("RENAME")
            .arg(format!("r:{i}"))
            .arg(format!("renamed:{}", i % 7))
            .ignore()
            .query::<()>(c)
            .expect("writes");
    }
}

#[test]
fn dbs_merged_under_prefixes_verify_per_db() {
    let src = Server::start(Flavor::Redis70).expect("source");
    let mut c = src.conn();
    writes(&mut c, 0, 0, 100);
    writes(&mut c, 2, 0, 100);
    let cluster = Cluster::start(Flavor::Redis70, 3).expect("cluster");
    let setup = Setup::new(
        &src.url(),
        &cluster.seed_url(),
        "filter: { dbs: [0, 2], db_prefix: \"{db}:\" }\n",
    );
    let daemon = setup.run();
    wait_phase(&setup.http, "streaming", Duration::from_secs(60));
    writes(&mut c, 2, 100, 300);
    writes(&mut c, 0, 100, 300);
    wait_caught_up(&src, &setup.http, Duration::from_secs(120));
    let st = setup.status().expect("status");
    assert_eq!(
        st["skipped"],
        serde_json::json!({}),
        "{st}\n{}",
        daemon.log()
    );

    // The same name in both dbs, apart in the target.
    let get = |key: &str| -> Option<String> {
        redis::cmd("GET")
            .arg(key)
            .query(&mut cluster.node_for_key(key.as_bytes()).conn())
            .expect("GET")
    };
    assert_eq!(get("0:k:1").as_deref(), Some("db0-251"));
    assert_eq!(get("2:k:1").as_deref(), Some("db2-251"));
    assert_eq!(get("k:1"), None);
    let out = setup.assert_verified();
    assert!(out.contains("0 differ"), "{out}");

    // A tampered key of db 2 is found through its prefix.
    redis::cmd("SET")
        .arg("2:k:3")
        .arg("tampered")
        .query::<()>(&mut cluster.node_for_key(b"2:k:3").conn())
        .expect("tamper");
    let bad = setup.verify();
    let text = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{text}");
    assert!(text.contains("db 2 \"k:3\""), "{text}");

    // FLUSHDB in a prefixed db: the keys under its prefix are deleted (SCAN
    // + DEL on every master), the other db's stay; writes after it land.
    redis::cmd("SET")
        .arg("2:k:3")
        .arg("db2-253")
        .query::<()>(&mut cluster.node_for_key(b"2:k:3").conn())
        .expect("untamper");
    redis::cmd("SELECT")
        .arg(2)
        .query::<()>(&mut c)
        .expect("select");
    redis::cmd("FLUSHDB").query::<()>(&mut c).expect("flushdb");
    writes(&mut c, 2, 300, 320);
    wait_caught_up(&src, &setup.http, Duration::from_secs(60));
    let st = setup.status().expect("status");
    assert_eq!(
        st["skipped"],
        serde_json::json!({}),
        "{st}\n{}",
        daemon.log()
    );
    assert_eq!(get("2:k:40"), None);
    assert_eq!(get("2:k:10").as_deref(), Some("db2-310"));
    assert_eq!(get("0:k:1").as_deref(), Some("db0-251"));
    let after = setup.assert_verified();
    // The sampled verify reads db 0's keys through the prefix too.
    assert_eq!(st["verify"]["mismatches"], 0, "{st}");
    eprintln!(
        "verify: {}; after FLUSHDB: {}; sampled: {}",
        out.trim(),
        after.trim(),
        st["verify"]
    );
}

/// `dbs: [0, 3]` without a prefix: both dbs merge into the cluster's db 0
/// (distinct key names); `ferry verify` compares each source db with db 0
/// and reports a target key that no carried db has.
#[test]
fn dbs_merged_without_prefix_verify_every_carried_db() {
    let src = Server::start(Flavor::Redis70).expect("source");
    let mut c = src.conn();
    for (db, name) in [(0u64, "zero"), (3, "three")] {
        redis::cmd("SELECT")
            .arg(db)
            .query::<()>(&mut c)
            .expect("select");
        for i in 0..200 {
            redis::cmd("SET")
                .arg(format!("{name}:{i}"))
                .arg(i)
                .query::<()>(&mut c)
                .expect("set");
        }
    }
    let cluster = Cluster::start(Flavor::Redis70, 3).expect("cluster");
    let setup = Setup::new(&src.url(), &cluster.seed_url(), "filter: { dbs: [0, 3] }\n");
    let _daemon = setup.run();
    wait_phase(&setup.http, "streaming", Duration::from_secs(60));
    redis::cmd("SELECT")
        .arg(3)
        .query::<()>(&mut c)
        .expect("select");
    for i in 200..300 {
        redis::cmd("SET")
            .arg(format!("three:{i}"))
            .arg(i)
            .query::<()>(&mut c)
            .expect("set");
    }
    wait_caught_up(&src, &setup.http, Duration::from_secs(60));
    let out = setup.assert_verified();
    assert!(out.contains("500 keys compared, 0 differ"), "{out}");
    redis::cmd("SET")
        .arg("stray")
        .arg(1)
        .query::<()>(&mut cluster.node_for_key(b"stray").conn())
        .expect("stray");
    let bad = setup.verify();
    let text = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{text}");
    assert!(text.contains("\"stray\""), "{text}");
}
