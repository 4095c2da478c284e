//! The shard pipelines are wired concurrently; one that fails to wire
//! stops ferry with the error naming it, after the others drain.

use std::time::Duration;

use ferry_testkit::Cluster;

use super::{FLAVOR, Run, fill, masters};

/// A key in the slots of `shard-5461` (5461–10922 in a 3-master cluster)
/// on the target, no `--allow-nonempty-target`: that shard refuses to
/// wire, and ferry exits non-zero naming it, in bounded time.
#[test]
fn a_shard_that_fails_to_wire_stops_ferry_naming_it() {
    let src = Cluster::start(FLAVOR, 3).expect("source");
    let dst = Cluster::start(FLAVOR, 3).expect("target");
    fill(&src, 50);
    let key = (0..10_000)
        .map(|i| format!("left:{i}"))
        .find(|k| (5461..=10922).contains(&ferry_ops::key_slot(k.as_bytes())))
        .expect("a key of shard-5461");
    let slot = ferry_ops::key_slot(key.as_bytes());
    let owner = masters(&dst)
        .into_iter()
        .find(|m| ferry_testkit::port_of_slot(&dst.slot_map(), slot) == Some(m.port()))
        .expect("target owner");
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("x")
        .query(&mut owner.conn())
        .expect("SET on the target");
    let run = Run::with_source(&src.nodes[0].url(), "", &dst.seed_url(), "");
    let mut daemon = run.run();
    let code = daemon.wait_exit(Duration::from_secs(60));
    let log = daemon.log();
    assert!(matches!(code, Some(c) if c != 0), "{code:?}\n{log}");
    assert!(log.contains("source shard shard-5461"), "{log}");
    assert!(log.contains("the target is not empty"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}
