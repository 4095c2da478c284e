//! `ferry run` into a standalone (non-cluster) Redis: detected by
//! `target.mode: auto`, every op to the one server over one pipelined
//! connection, dbs kept (`SELECT`), multi-key commands replayed as they are.
//! A source with keys in db 0 and db 3 (snapshot and live writes, a
//! connection kill on the target in between) lands identical, db by db, and
//! `ferry verify` compares per db (exit 0, then 1 after tampering in db 3).

use std::time::Duration;

use ferry_testkit::{Flavor, Server, free_port};

use crate::e2e_support::{Daemon, assert_same, dataset, verify, wait_caught_up, write_config};

fn writes(c: &mut redis::Connection, db: u64, from: u64, to: u64) {
    redis::cmd("SELECT").arg(db).query::<()>(c).expect("select");
    for i in from..to {
        redis::pipe()
            .cmd("RPUSH")
            .arg(format!("list:{}", i % 5))
            .arg(i)
            .ignore()
            .cmd("INCR")
            .arg("counter")
            .ignore()
            // Cross-slot in a cluster; as is on one server.
            .cmd("MSET")
            .arg(format!("a:{i}"))
            .arg(i)
            .arg(format!("b:{i}"))
            .arg(db)
            .ignore()
            .cmd("DEL")
            .arg(format!("a:{}", i.saturating_sub(2)))
            .arg(format!("b:{}", i.saturating_sub(3)))
            .ignore()
            .cmd("HSET")
            .arg("h")
            .arg(format!("f{}", i % 9))
            .arg(i)
            .ignore()
            .cmd("MULTI")
            .ignore()
            .cmd("INCR")
            .arg("tx:a")
            .ignore()
            .cmd("INCR")
            .arg("tx:b")
            .ignore()
            .cmd("EXEC")
            .ignore()
            .query::<()>(c)
            .expect("writes");
    }
    redis::cmd("RENAME")
        .arg("h")
        .arg(format!("h:renamed:{to}"))
        .query::<()>(c)
        .expect("rename");
}

#[test]
fn run_and_verify_into_a_standalone_target_keep_dbs() {
    let src = Server::start(Flavor::Redis70).expect("source");
    let dst = Server::start(Flavor::Redis70).expect("standalone target");
    let mut c = src.conn();
    // Snapshot: db 0 and db 3, every common type, TTLs.
    for db in [0u64, 3] {
        redis::cmd("SELECT")
            .arg(db)
            .query::<()>(&mut c)
            .expect("select");
        for i in 0..200u64 {
            redis::pipe()
                .cmd("SET")
                .arg(format!("s:{i}"))
                .arg(format!("db{db}:{i}"))
                .ignore()
                .cmd("SADD")
                .arg(format!("set:{}", i % 4))
                .arg(i)
                .ignore()
                .cmd("ZADD")
                .arg("z")
                .arg(i)
                .arg(format!("m{i}"))
                .ignore()
                .cmd("XADD")
                .arg("stream")
                .arg("*")
                .arg("n")
                .arg(i)
                .ignore()
                .query::<()>(&mut c)
                .expect("populate");
        }
        redis::cmd("PEXPIRE")
            .arg("s:1")
            .arg(3_600_000)
            .query::<()>(&mut c)
            .expect("pexpire");
        // Same key names in both dbs with different values.
        writes(&mut c, db, 0, 50);
    }

    let dir = tempfile::tempdir().expect("tmp");
    let http = format!("127.0.0.1:{}", free_port());
    let cfg = write_config(
        dir.path(),
        &format!("{{ url: \"{}\" }}", src.url()),
        &format!("{{ url: \"{}\" }}", dst.url()),
        &http,
        "",
    );
    let _daemon = Daemon::start(&cfg);
    wait_caught_up(&src, &http, Duration::from_secs(60));

    // Stream: writes in db 3, the target drops ferry's connection, more
    // writes in db 3 (no new SELECT in the stream: the reconnect must put
    // the connection back on db 3), then db 0.
    writes(&mut c, 3, 50, 300);
    wait_caught_up(&src, &http, Duration::from_secs(60));
    redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .query::<()>(&mut dst.conn())
        .expect("client kill");
    writes(&mut c, 3, 300, 600);
    writes(&mut c, 0, 300, 400);
    wait_caught_up(&src, &http, Duration::from_secs(60));
    let st = crate::e2e_support::status(&http).expect("status");
    assert!(
        st["target"]["reconnects"].as_u64().unwrap_or(0) >= 1,
        "no reconnect seen: {st}"
    );

    let want = dataset(&src);
    assert!(want.keys().any(|(db, _)| *db == 3));
    assert_same(&want, &dataset(&dst));

    let out = verify(&cfg);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "verify: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(" 0 differ"), "{text}");

    // A difference in db 3 only is found and named with its db.
    let mut t = dst.conn();
    redis::cmd("SELECT")
        .arg(3)
        .query::<()>(&mut t)
        .expect("select");
    redis::cmd("SET")
        .arg("s:7")
        .arg("tampered")
        .query::<()>(&mut t)
        .expect("tamper");
    let out = verify(&cfg);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "verify after tampering: {text}");
    assert!(text.contains("db 3 \"s:7\""), "{text}");
}
