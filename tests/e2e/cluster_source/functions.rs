//! Every-master commands of a cluster source: a client runs `FUNCTION
//! LOAD` and `FUNCTION DELETE` on each source master, so each shard's
//! stream carries a copy and each shard pipeline applies it to every
//! target master. The copies after the first must not stop ferry.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferry_testkit::{Cluster, Server};

use super::{
    CATCH_UP, FLAVOR, Run, assert_target_equals_source, fill, masters, repl_offset,
    wait_all_caught_up, wait_streaming, workload_until,
};
use crate::common::daemon::Daemon;

const LIB: &str =
    "#!lua name=ferrydel\nredis.register_function('ferry_del', function() return 7 end)";

/// Waits until every link has applied at least the offset its source
/// node had in `offsets` (`(addr, offset)`).
fn wait_applied(run: &Run, offsets: &[(String, u64)], daemon: &Daemon) {
    let deadline = Instant::now() + CATCH_UP;
    loop {
        let st = run.status();
        let ok = st.as_ref().is_some_and(|st| {
            let ls = st["links"].as_array().cloned().unwrap_or_default();
            offsets.iter().all(|(addr, want)| {
                ls.iter().any(|l| {
                    l["source"].as_str() == Some(addr.as_str())
                        && l["applied_offset"].as_u64().is_some_and(|a| a >= *want)
                })
            })
        });
        if ok {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not applied in {CATCH_UP:?}: {offsets:?} {st:#?}\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn libraries(s: &Server) -> usize {
    let v: redis::Value = redis::cmd("FUNCTION")
        .arg("LIST")
        .query(&mut s.conn())
        .expect("FUNCTION LIST");
    match v {
        redis::Value::Array(a) => a.len(),
        other => panic!("FUNCTION LIST: {other:?}"),
    }
}

/// `FUNCTION LOAD` then `FUNCTION DELETE` on every source master while a
/// workload streams: ferry keeps streaming, the library is gone from every
/// target master, the copies the target refused ("Library not found") are
/// counted as `function_delete_absent` (the first copy on each target
/// master applies, the other two are refused: 2 × 3 masters) and logged,
/// and the target equals the source.
#[test]
fn function_delete_on_every_source_master_keeps_streaming() {
    let src = Cluster::start(FLAVOR, 3).expect("source");
    let dst = Cluster::start(FLAVOR, 3).expect("target");
    load_then_delete_everywhere(&src, &dst.seed_url(), &masters(&dst));
}

/// The same into one standalone server (consolidation): 2 refused copies.
#[test]
fn function_delete_on_every_source_master_into_a_standalone_target() {
    let src = Cluster::start(FLAVOR, 3).expect("source");
    let dst = Server::start(FLAVOR).expect("standalone target");
    load_then_delete_everywhere(&src, &dst.url(), &[&dst]);
}

fn load_then_delete_everywhere(src: &Cluster, target_url: &str, targets: &[&Server]) {
    fill(src, 300);
    let run = Run::with_source(&src.nodes[0].url(), ", mode: cluster", target_url, "");
    let daemon = run.run();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let w = s.spawn(|| workload_until(src, 13, &stop, 90, 400_000));
        wait_streaming(&run, 3, &daemon);
        // Loaded on every master; every copy applied before the deletes
        // (so each target master refuses exactly the later two deletes).
        let mut loaded = Vec::new();
        for m in masters(src) {
            let _: String = redis::cmd("FUNCTION")
                .arg("LOAD")
                .arg(LIB)
                .query(&mut m.conn())
                .expect("FUNCTION LOAD");
            loaded.push((m.addr(), repl_offset(m)));
        }
        wait_applied(&run, &loaded, &daemon);
        for m in targets {
            assert_eq!(libraries(m), 1, "{}", m.addr());
        }
        for m in masters(src) {
            let _: () = redis::cmd("FUNCTION")
                .arg("DELETE")
                .arg("ferrydel")
                .query(&mut m.conn())
                .expect("FUNCTION DELETE");
        }
        std::thread::sleep(Duration::from_millis(1000));
        stop.store(true, Ordering::Relaxed);
        w.join().expect("workload")
    });
    wait_all_caught_up(src, &run, 3, &daemon);
    for m in targets {
        assert_eq!(libraries(m), 0, "library left on {}", m.addr());
    }
    let st = run.status().expect("status");
    assert_eq!(st["phase"], "streaming", "{st:#}");
    let refused = 2 * targets.len() as u64;
    assert_eq!(
        st["target"]["function_delete_absent"].as_u64(),
        Some(refused),
        "{st:#}\n{}",
        daemon.log()
    );
    let log = daemon.log();
    let lines = log
        .lines()
        .filter(|l| l.contains("FUNCTION DELETE ferrydel") && l.contains("function_delete_absent"))
        .count();
    assert!(
        (1..=refused as usize).contains(&lines),
        "{lines} lines\n{log}"
    );
    assert_target_equals_source(src, targets);
}
