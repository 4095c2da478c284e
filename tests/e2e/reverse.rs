//! Reverse sync and two-way sync (issue 14), against real servers.
//!
//! * A standalone target is exactly-once across `kill -9` (checkpoint key
//!   in db 0, each transaction selecting its way there and back).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferry_testkit::{Flavor, Server};

use crate::common::daemon::{Setup, status, wait_caught_up};
use crate::e2e_support::{assert_same, dataset};

/// xorshift64*: a reproducible workload.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// A bounded load of non-idempotent writes over dbs 0–2 (so the stream
/// carries `SELECT`s), keys under `ns`, in pipelines of 50, until `stop`
/// or the bounds. Returns the number of commands sent by clients.
pub(crate) fn load_dbs(
    server: &Server,
    stop: &AtomicBool,
    seconds: u64,
    max: u64,
    ns: &str,
    seed: u64,
) -> u64 {
    let mut c = server.conn();
    let mut rng = Rng(seed);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline && n < max {
        let mut p = redis::pipe();
        let db = rng.next() % 3;
        p.cmd("SELECT").arg(db).ignore();
        for _ in 0..50 {
            let r = rng.next();
            let v = n.to_string();
            match r % 5 {
                0 => p.cmd("INCR").arg(format!("{ns}cnt:{}", r % 20)),
                1 => p.cmd("RPUSH").arg(format!("{ns}list:{}", r % 10)).arg(&v),
                2 => p
                    .cmd("APPEND")
                    .arg(format!("{ns}str:{}", r % 10))
                    .arg(format!("{v},")),
                3 => p
                    .cmd("HINCRBY")
                    .arg(format!("{ns}h:{}", r % 5))
                    .arg(format!("f{}", r % 4))
                    .arg(1),
                _ => p
                    .cmd("MULTI")
                    .cmd("INCR")
                    .arg(format!("{ns}{{tx}}:a"))
                    .cmd("RPUSH")
                    .arg(format!("{ns}{{tx}}:l"))
                    .arg(&v)
                    .cmd("EXEC"),
            };
            p.ignore();
            n += 1;
        }
        p.query::<()>(&mut c).expect("load");
    }
    n
}

/// Waits (bounded) until the daemon on `http` streams.
pub(crate) fn wait_streaming(http: &str, log: &dyn Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let st = status(http);
        if st
            .as_ref()
            .is_some_and(|s| s["phase"] == "streaming" && s["applied_offset"].as_u64().is_some())
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not streaming: {st:?}\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Keys under ferry's reserved prefix in each of dbs 0–2 of `server`.
fn reserved_per_db(server: &Server) -> Vec<usize> {
    let mut c = server.conn();
    (0..3)
        .map(|db| {
            redis::cmd("SELECT")
                .arg(db)
                .query::<()>(&mut c)
                .expect("SELECT");
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg("__ferry:*")
                .query(&mut c)
                .expect("KEYS");
            keys.len()
        })
        .collect()
}

#[test]
fn standalone_target_kill_9_twice_applies_every_command_once() {
    let src = Server::builder(Flavor::Redis70)
        .arg("repl-backlog-size", "64mb")
        .start()
        .expect("source");
    let dst = Server::start(Flavor::Redis70).expect("target");
    let mut c = src.conn();
    ferry_testkit::fixtures::populate_mixed(&mut c, 5_000).expect("seed");
    let setup = Setup::new(&src.url(), &dst.url(), "");
    let mut daemon = setup.run();
    wait_streaming(&setup.http, &|| daemon.log());

    let stop = AtomicBool::new(false);
    let mut kills = Vec::new();
    let ops = std::thread::scope(|scope| {
        let loader = scope.spawn(|| load_dbs(&src, &stop, 10, 300_000, "", 7));
        for _ in 0..2 {
            std::thread::sleep(Duration::from_millis(1500));
            let before = status(&setup.http).and_then(|s| s["applied_offset"].as_u64());
            daemon.kill9();
            kills.push(format!("kill -9 at applied {before:?}"));
            daemon = setup.run();
            wait_streaming(&setup.http, &|| daemon.log());
        }
        std::thread::sleep(Duration::from_millis(1000));
        stop.store(true, Ordering::Relaxed);
        loader.join().expect("load thread")
    });
    assert!(ops > 1000, "load too small: {ops}");
    wait_caught_up(&src, &setup.http, Duration::from_secs(90));
    let st = status(&setup.http).expect("status");
    assert_eq!(st["keys_applied"], 0, "a restart resynced: {st}");
    assert_same(&dataset(&src), &dataset(&dst));
    setup.assert_verified();
    // ferry's keys: in db 0 only.
    let ours = reserved_per_db(&dst);
    assert!(ours[0] > 0 && ours[1] == 0 && ours[2] == 0, "{ours:?}");
    eprintln!(
        "{ops} commands, {}; target {}",
        kills.join("; "),
        st["target"]
    );
}
