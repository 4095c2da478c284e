//! `ferry verify` of a cluster source: a 3-master source cluster and a
//! 4-master target cluster loaded by a small helper (`DUMP`/`RESTORE` of
//! every key, no `ferry run` needed). Every source master is scanned; the
//! report, `--show`, `--sample` (shared among the masters by their keys)
//! and `--resume` (one cursor per source master) work as for one source.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ferry_testkit::{Cluster, Flavor};

use crate::common::daemon::{FERRY, Setup};

/// `n` keys `k:<i>` of mixed types (some with a TTL) on the source cluster,
/// each written on the master owning its slot.
pub(crate) fn fill_source(src: &Cluster, n: usize) {
    let mut per: std::collections::BTreeMap<u16, redis::Pipeline> = Default::default();
    for i in 0..n {
        let k = format!("k:{i}");
        let c = match i % 5 {
            0 => redis::cmd("HSET").arg(&k).arg("f").arg(i).clone(),
            1 => redis::cmd("ZADD").arg(&k).arg(0.5).arg(i).clone(),
            2 => redis::cmd("SADD").arg(&k).arg("x").arg(i).clone(),
            3 => redis::cmd("RPUSH").arg(&k).arg("a").arg(i).clone(),
            _ => redis::cmd("SET")
                .arg(&k)
                .arg(i)
                .arg("EX")
                .arg(86_400)
                .clone(),
        };
        per.entry(src.node_for_key(k.as_bytes()).port())
            .or_insert_with(redis::pipe)
            .add_command(c)
            .ignore();
    }
    for node in &src.nodes {
        if let Some(p) = per.get(&node.port()) {
            p.query::<()>(&mut node.conn()).expect("source writes");
        }
    }
}

/// Copy every key of every source master to the target (`DUMP`, `PTTL`,
/// then `RESTORE … REPLACE` on the target master owning the key).
fn copy(src: &Cluster, dst: &Cluster) -> usize {
    let mut copied = 0;
    for node in &src.nodes {
        let mut c = node.conn();
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).expect("keys");
        for k in keys {
            let dump: Vec<u8> = redis::cmd("DUMP").arg(&k).query(&mut c).expect("dump");
            let pttl: i64 = redis::cmd("PTTL").arg(&k).query(&mut c).expect("pttl");
            redis::cmd("RESTORE")
                .arg(&k)
                .arg(pttl.max(0))
                .arg(dump)
                .arg("REPLACE")
                .query::<()>(&mut dst.node_for_key(k.as_bytes()).conn())
                .expect("restore");
            copied += 1;
        }
    }
    copied
}

fn verify(setup: &Setup, args: &[&str]) -> (Option<i32>, String, String) {
    let out: Output = Command::new(FERRY)
        .args(["verify", "--config"])
        .arg(&setup.cfg)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("ferry verify");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Equal clusters: exit 0 and every source master scanned; then a few keys
/// changed, missing or extra: exactly those are listed, under their reason.
#[test]
fn cluster_source_equal_then_exactly_the_changed_keys() {
    let src = Cluster::start(Flavor::Redis70, 3).expect("source cluster");
    let dst = Cluster::start(Flavor::Redis70, 4).expect("target cluster");
    fill_source(&src, 3000);
    assert_eq!(copy(&src, &dst), 3000);
    let s = Setup::new(&src.seed_url(), &dst.seed_url(), "");
    let (code, out, err) = verify(&s, &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("3000 keys compared, 0 differ"), "{out}");
    assert!(err.contains("scanning its 3 masters"), "{err}");

    let t = |k: &str| dst.node_for_key(k.as_bytes()).conn();
    let sc = |k: &str| src.node_for_key(k.as_bytes()).conn();
    let q = |c: &mut redis::Cmd, mut conn: redis::Connection| {
        c.query::<()>(&mut conn).expect("write");
    };
    q(redis::cmd("DEL").arg("k:10"), t("k:10")); // missing
    q(redis::cmd("SET").arg("only:dst").arg(1), t("only:dst")); // extra
    q(redis::cmd("DEL").arg("k:11"), sc("k:11")); // extra too
    q(redis::cmd("HSET").arg("k:20").arg("f").arg("x"), t("k:20")); // value
    q(redis::cmd("PERSIST").arg("k:24"), t("k:24")); // ttl
    q(redis::cmd("DEL").arg("k:34"), t("k:34"));
    q(redis::cmd("RPUSH").arg("k:34").arg("x"), t("k:34")); // type

    let (code, out, err) = verify(&s, &["--show", "5"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.contains("differences by reason: missing 1, extra 2, type 1, value 1, ttl 1"),
        "{out}"
    );
    let listed: Vec<&str> = out.lines().filter(|l| l.starts_with("differs: ")).collect();
    assert_eq!(listed.len(), 6, "{out}");
    for line in [
        "differs: \"k:10\": missing on the target",
        "differs: \"only:dst\": present on the target, not on the source",
        "differs: \"k:11\": present on the target, not on the source",
        "differs: \"k:20\": value differs",
        "differs: \"k:24\": ttl ",
        "differs: \"k:34\": type string on the source, list on the target",
    ] {
        assert!(listed.iter().any(|l| l.starts_with(line)), "{line}: {out}");
    }

    // `--sample`: drawn from every master, as many as asked.
    let (code, out, err) = verify(&s, &["--sample", "600"]);
    assert!(code == Some(0) || code == Some(1), "{out}{err}");
    assert!(out.contains("verify: 600 keys compared"), "{out}");
}

/// A run killed mid-way and continued with `--resume`: the saved state has
/// one cursor per source master, and the report equals an uninterrupted
/// run's.
#[test]
fn cluster_source_resume_keeps_a_cursor_per_master() {
    let src = Cluster::start(Flavor::Redis70, 3).expect("source cluster");
    let dst = Cluster::start(Flavor::Redis70, 4).expect("target cluster");
    fill_source(&src, 9000);
    copy(&src, &dst);
    redis::cmd("SET")
        .arg("k:7")
        .arg("changed")
        .query::<()>(&mut dst.node_for_key(b"k:7").conn())
        .expect("set");
    let s = Setup::new(&src.seed_url(), &dst.seed_url(), "");
    let (code, whole, err) = verify(&s, &[]);
    assert_eq!(code, Some(1), "{whole}{err}");
    let state = s.dir.path().join("state").join("verify.json");

    let mut child = Command::new(FERRY)
        .args(["verify", "--config"])
        .arg(&s.cfg)
        .args(["--rate", "2000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ferry verify");
    let deadline = Instant::now() + Duration::from_secs(60);
    let saved = loop {
        let text = std::fs::read_to_string(&state).unwrap_or_default();
        let st: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        if st["tally"]["compared"].as_u64().unwrap_or(0) > 0 {
            break st;
        }
        assert!(Instant::now() < deadline, "no progress saved: {text}");
        assert!(
            child.try_wait().expect("wait").is_none(),
            "verify ended early"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    let mut nodes: Vec<String> = saved["forward"]
        .as_array()
        .expect("forward cursors")
        .iter()
        .map(|c| c["node"].as_str().unwrap_or("").to_string())
        .collect();
    let mut masters: Vec<String> = src
        .nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port()))
        .collect();
    nodes.sort();
    masters.sort();
    assert_eq!(nodes, masters, "{saved}");
    assert!(saved["tally"]["compared"].as_u64().unwrap_or(0) < 9000);

    let (code, resumed, err) = verify(&s, &["--resume"]);
    assert_eq!(code, Some(1), "{resumed}{err}");
    assert!(err.contains("verify: resuming"), "{err}");
    assert_eq!(resumed, whole);
    assert!(!state.exists());
}
