//! Parity of `ferry rdb --format resp | redis-cli --pipe` with the server's
//! own loader (issue 12, section 3): each case is a dump made by a real
//! server (Redis 7.0, Redis Stack 7.4, Valkey 9) or built bytes where no
//! server writes the case; one server loads the file itself, another gets
//! ferry's commands, and every key is compared (`TYPE`, `DEBUG
//! DIGEST-VALUE`, `PEXPIRETIME`, `XINFO STREAM FULL` without what commands
//! cannot set: consumer seen/active times and the radix tree's shape).

use std::io::Write;
use std::process::{Command, Output, Stdio};

use ferry_testkit::{Flavor, Server};
use redis::Value;

use crate::common::pipe_into;

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");

/// Flavors whose dumps are compared (all have `PEXPIRETIME`).
const FLAVORS: [Flavor; 3] = [Flavor::Redis70, Flavor::RedisStack74, Flavor::Valkey9];

fn start(flavor: Flavor, preload: Option<Vec<u8>>) -> Server {
    let mut b = Server::builder(flavor);
    if let Some(rdb) = preload {
        b = b.preload_rdb(rdb);
    }
    b.start().unwrap_or_else(|e| panic!("start {flavor}: {e}"))
}

/// `ferry rdb <file> <args>` with `stdin` (when the file is `-`).
fn ferry(file: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(FERRY)
        .arg("rdb")
        .arg(file)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ferry");
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let w = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("ferry output");
    let _ = w.join();
    out
}

/// The server's own load of `dump`, and a server fed `ferry rdb`'s
/// commands for it; also ferry's stderr.
struct Pair {
    loaded: Server,
    piped: Server,
    stderr: String,
}

fn load_both(flavor: Flavor, dump: &[u8], extra: &[&str]) -> Pair {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("dump.rdb");
    std::fs::write(&file, dump).expect("write dump");
    let mut args = vec!["--format", "resp"];
    args.extend_from_slice(extra);
    let out = ferry(file.to_str().expect("utf8 path"), &args, b"");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{flavor}: ferry rdb failed: {stderr}");
    let loaded = start(flavor, Some(dump.to_vec()));
    let piped = start(flavor, None);
    pipe_into(&piped, &out.stdout);
    Pair {
        loaded,
        piped,
        stderr,
    }
}

/// Field names of `XINFO STREAM FULL` that commands cannot set.
const UNSETTABLE: [&str; 4] = [
    "seen-time",
    "active-time",
    "radix-tree-keys",
    "radix-tree-nodes",
];

fn render(v: &Value) -> String {
    match v {
        Value::Nil => "nil".into(),
        Value::Int(i) => i.to_string(),
        Value::BulkString(b) => format!("{:?}", String::from_utf8_lossy(b)),
        Value::SimpleString(s) => format!("{s:?}"),
        Value::Okay => "OK".into(),
        Value::Array(items) => {
            let named = items.len() % 2 == 0
                && items
                    .iter()
                    .step_by(2)
                    .all(|n| matches!(n, Value::BulkString(_)));
            let mut parts = Vec::new();
            let mut i = 0;
            while i < items.len() {
                if named
                    && let Value::BulkString(n) = &items[i]
                    && UNSETTABLE.contains(&String::from_utf8_lossy(n).as_ref())
                {
                    i += 2;
                    continue;
                }
                parts.push(render(&items[i]));
                i += 1;
            }
            format!("[{}]", parts.join(" "))
        }
        other => format!("{other:?}"),
    }
}

/// Per key: type, digest, absolute expiry, and the stream's XINFO.
fn describe(server: &Server, key: &[u8]) -> String {
    let mut c = server.conn();
    let t: String = redis::cmd("TYPE").arg(key).query(&mut c).expect("TYPE");
    let digest: String = redis::cmd("DEBUG")
        .arg("DIGEST-VALUE")
        .arg(key)
        .query::<Vec<String>>(&mut c)
        .expect("DIGEST-VALUE")
        .concat();
    let exp: i64 = redis::cmd("PEXPIRETIME")
        .arg(key)
        .query(&mut c)
        .expect("PEXPIRETIME");
    let mut s = format!("type={t} digest={digest} expire={exp}");
    if t == "stream" {
        let v: Value = redis::cmd("XINFO")
            .arg("STREAM")
            .arg(key)
            .arg("FULL")
            .query(&mut c)
            .expect("XINFO");
        s.push_str(&format!(" xinfo={}", render(&v)));
    }
    s
}

fn keys(server: &Server) -> Vec<Vec<u8>> {
    let mut k: Vec<Vec<u8>> = redis::cmd("KEYS")
        .arg("*")
        .query(&mut server.conn())
        .expect("KEYS");
    k.sort();
    k
}

/// Every key of `a` equals the same key of `b`, and no key is extra.
fn assert_same(what: &str, a: &Server, b: &Server) {
    let (ka, kb) = (keys(a), keys(b));
    assert_eq!(ka, kb, "{what}: key sets differ");
    for k in &ka {
        assert_eq!(
            describe(a, k),
            describe(b, k),
            "{what}: key {:?} (left: ferry's commands, right: the server's own load)",
            String::from_utf8_lossy(k)
        );
    }
}

/// A server of `flavor` set up by `cmds`, and its dump.
fn dump_of(flavor: Flavor, cmds: &[&[&str]]) -> Vec<u8> {
    let s = start(flavor, None);
    let mut c = s.conn();
    for cmd in cmds {
        let mut r = redis::cmd(cmd[0]);
        for a in &cmd[1..] {
            r.arg(*a);
        }
        r.query::<Value>(&mut c)
            .unwrap_or_else(|e| panic!("{flavor}: {cmd:?}: {e}"));
    }
    s.dump_rdb().expect("dump")
}

#[test]
fn zset_negative_zero_keeps_its_sign_where_the_server_does() {
    let members: Vec<String> = (0..200).map(|i| format!("m{i}")).collect();
    let mut big: Vec<&str> = vec!["ZADD", "big"];
    for m in &members {
        big.extend(["1.5", m.as_str()]);
    }
    // Set once the zset is a skiplist (a first ZADD may create a listpack).
    let zeros: Vec<&str> = vec!["ZADD", "big", "-0", "m7", "-0", "m57", "-0", "m199"];
    let mut big_zero_first: Vec<&str> = vec!["ZADD", "big2"];
    for m in members.iter().take(130) {
        big_zero_first.extend(["-0", m.as_str()]);
    }
    for flavor in FLAVORS {
        let dump = dump_of(
            flavor,
            &[
                &big,
                &zeros,
                // A skiplist whose -0 scores were set after it converted.
                &big_zero_first,
                &["ZADD", "big2", "-0", "m0", "-0", "m1"],
                &["ZADD", "small", "-0", "a", "1", "b"],
            ],
        );
        let p = load_both(flavor, &dump, &[]);
        let score: String = redis::cmd("ZSCORE")
            .arg("big")
            .arg("m7")
            .query(&mut p.loaded.conn())
            .expect("ZSCORE");
        assert_eq!(score, "-0", "{flavor}: the source dump keeps -0");
        assert_same(&flavor.to_string(), &p.piped, &p.loaded);
    }
}

#[test]
fn empty_stream_with_last_id_zero_and_no_groups_is_created() {
    for flavor in FLAVORS {
        let dump = dump_of(
            flavor,
            &[
                &["XGROUP", "CREATE", "empty", "g", "$", "MKSTREAM"],
                &["XGROUP", "DESTROY", "empty", "g"],
                &["XGROUP", "CREATE", "empty-with-group", "g", "$", "MKSTREAM"],
                &["XADD", "trimmed", "5-1", "f", "v"],
                &["XDEL", "trimmed", "5-1"],
            ],
        );
        let p = load_both(flavor, &dump, &[]);
        assert!(
            !p.stderr.contains("not carried"),
            "{flavor}: warned: {}",
            p.stderr
        );
        assert_same(&flavor.to_string(), &p.piped, &p.loaded);
    }
}

/// Entries added, deleted (max deleted id), trimmed, groups at several
/// positions (entries-read known, unknown, ahead of a tombstone),
/// pending entries, consumers, and a stream whose counters were set by XSETID.
const STREAM_CMDS: &[&str] = &[
    "XADD s 1-1 a 1",
    "XADD s 2-1 b 2",
    "XADD s 3-1 c 3",
    "XADD s 4-1 d 4",
    "XADD s 5-1 e 5",
    "XGROUP CREATE s early 0",
    "XGROUP CREATE s mid 2-1",
    "XGROUP CREATE s tail $",
    "XREADGROUP GROUP early alice COUNT 2 STREAMS s >",
    "XREADGROUP GROUP mid bob COUNT 1 STREAMS s >",
    "XGROUP CREATECONSUMER s mid idle-carol",
    "XDEL s 3-1",
    "XADD s 6-1 f 6",
    "XGROUP CREATE s at-end $",
    "XADD t 1-1 a 1",
    "XADD t 2-1 b 2",
    "XADD t 3-1 c 3",
    "XTRIM t MAXLEN 1",
    "XGROUP CREATE t old 0",
    "XADD u 1-1 a 1",
    "XSETID u 9-9 ENTRIESADDED 42 MAXDELETEDID 8-0",
    "XGROUP CREATE u g 1-1 ENTRIESREAD 7",
];

/// Commands written as lines of space-separated words.
fn words<'a>(lines: impl IntoIterator<Item = &'a &'static str>) -> Vec<Vec<&'static str>> {
    lines.into_iter().map(|l| l.split(' ').collect()).collect()
}

#[test]
fn stream_metadata_matches_the_servers_own_load() {
    for flavor in FLAVORS {
        let cmds = words(STREAM_CMDS);
        let refs: Vec<&[&str]> = cmds.iter().map(Vec::as_slice).collect();
        let dump = dump_of(flavor, &refs);
        let p = load_both(flavor, &dump, &[]);
        assert_same(&flavor.to_string(), &p.piped, &p.loaded);
    }
}

/// An RDB 9 stream (Redis 6.2, no counters) loaded by Redis 7.0: the server
/// derives entries-added and each group's entries-read; ferry's commands
/// (with `--stream-counters` for a 7.0 target) carry the same.
#[test]
fn rdb9_stream_counters_are_derived_as_the_server_does() {
    let v62 = words(STREAM_CMDS.iter().filter(|c| {
        !c.contains("ENTRIESADDED") && !c.contains("ENTRIESREAD")
        // A pending entry of a deleted entry in the middle needs an XDEL,
        // which leaves a max deleted id the server does not derive (warned).
        && !c.starts_with("XDEL")
    }));
    let v62: Vec<&[&str]> = v62.iter().map(Vec::as_slice).collect();
    let dump = dump_of(Flavor::Redis62, &v62);
    assert_eq!(&dump[..9], b"REDIS0009");
    let p = load_both(Flavor::Redis70, &dump, &["--stream-counters"]);
    assert_same("RDB 9 into Redis 7.0", &p.piped, &p.loaded);
}

/// Run `f` for every flavor on the same built dump.
fn each_flavor_loads(dump: &[u8], check: impl Fn(Flavor, &Pair)) {
    for flavor in FLAVORS {
        let p = load_both(flavor, dump, &[]);
        assert_same(&flavor.to_string(), &p.piped, &p.loaded);
        check(flavor, &p);
    }
}

#[test]
fn empty_keys_are_skipped_counted_and_warned_as_the_server_does() {
    use ferry_rdb::build::RdbWriter;
    use ferry_rdb::container::Entry;
    let mut w = RdbWriter::new("REDIS", 10);
    w.select_db(0);
    w.key(0, b"str").string(b"v");
    w.key(18, b"list-partly-empty").list_quicklist2(&[
        vec![],
        vec![Entry::Str(b"a"), Entry::Str(b"b")],
        vec![],
    ]);
    w.key(18, b"list-empty").list_quicklist2(&[vec![], vec![]]);
    w.key(2, b"set-empty").set_plain(&[]);
    w.key(16, b"hash-empty").hash_listpack(&[]);
    w.key(17, b"zset-empty").zset_listpack(&[]);
    let dump = w.finish();
    each_flavor_loads(&dump, |flavor, p| {
        assert!(
            p.stderr.contains("skipped 4 empty key(s)") && p.stderr.contains("set-empty"),
            "{flavor}: {}",
            p.stderr
        );
        let log = std::fs::read_to_string(p.loaded.dir().join("server.log")).unwrap_or_default();
        assert!(log.contains("empty keys skipped: 4"), "{flavor}: {log}");
    });
}

/// One stream node of `n` live entries (ids 1-1 .. n-1), field `f`.
fn stream_node(n: usize) -> Vec<u8> {
    use ferry_rdb::build::{StreamNodeEntry, stream_node_listpack};
    let entries: Vec<StreamNodeEntry> = (0..n)
        .map(|i| StreamNodeEntry {
            ms_delta: i as i64,
            seq_delta: 0,
            deleted: false,
            fields: vec![(b"f", b"v")],
        })
        .collect();
    stream_node_listpack(&[b"f"], &entries)
}

#[test]
fn stream_length_disagreeing_with_entries_is_loaded_as_the_server_does() {
    use ferry_rdb::build::RdbWriter;
    // Stored length 3, one live entry: Redis keeps the stored length,
    // Valkey 9 refuses the dump ("Stream length inconsistent with the
    // number of valid entries"); ferry carries the entry and warns.
    let mut w = RdbWriter::new("REDIS", 10);
    w.select_db(0);
    w.key(19, b"s").len(1).stream_node(1, 1, &stream_node(1));
    w.len(3).len(1).len(1); // length, last id
    w.len(1).len(1).len(0).len(0).len(1); // first id, max deleted id, entries added
    w.len(0); // groups
    let dump = w.finish();
    assert!(
        Server::builder(Flavor::Valkey9)
            .preload_rdb(dump.clone())
            .start()
            .is_err(),
        "Valkey 9 loaded a stream whose length disagrees with its entries"
    );
    for flavor in [Flavor::Redis70, Flavor::RedisStack74] {
        let p = load_both(flavor, &dump, &[]);
        let xlen: i64 = redis::cmd("XLEN")
            .arg("s")
            .query(&mut p.loaded.conn())
            .expect("XLEN");
        assert_eq!(xlen, 3, "{flavor}: the server keeps the stored length");
        assert!(
            p.stderr
                .contains("stream length 3 in the dump differs from its 1 entries"),
            "{flavor}: {}",
            p.stderr
        );
        let copy: Vec<(String, Vec<String>)> = redis::cmd("XRANGE")
            .arg("s")
            .arg("-")
            .arg("+")
            .query(&mut p.piped.conn())
            .expect("XRANGE");
        assert_eq!(
            copy,
            vec![("1-1".to_string(), vec!["f".into(), "v".into()])]
        );
    }
    // A stored length with no entry node at all: the server refuses the
    // dump ("Stream length inconsistent with rax entries"), so does ferry.
    let mut w = RdbWriter::new("REDIS", 10);
    w.select_db(0);
    ferry_rdb::build::samples::stream_length_without_nodes(&mut w, b"s");
    let bad = w.finish();
    let out = ferry("-", &["--format", "resp"], &bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "accepted: {err}");
    assert!(err.contains("stream length 2 but no entry node"), "{err}");
    assert!(
        Server::builder(Flavor::Redis70)
            .preload_rdb(bad)
            .start()
            .is_err(),
        "Redis 7.0 loaded a stream with a length and no entries"
    );
}

#[test]
fn bytes_after_the_checksum_are_ignored_with_a_warning() {
    for flavor in FLAVORS {
        let mut dump = dump_of(
            flavor,
            &[
                &["SET", "a", "1"],
                &["RPUSH", "l", "x", "y"],
                &["PEXPIREAT", "a", "99999999999999"],
            ],
        );
        dump.extend_from_slice(b"trailing garbage\n");
        let p = load_both(flavor, &dump, &[]);
        assert!(
            p.stderr.contains("17 byte(s) after the end of the RDB"),
            "{flavor}: {}",
            p.stderr
        );
        assert_same(&flavor.to_string(), &p.piped, &p.loaded);
    }
}

#[test]
fn a_damaged_file_writes_no_command_and_stdin_says_to_discard_the_output() {
    let mut cmds: Vec<Vec<String>> = Vec::new();
    for i in 0..2000 {
        cmds.push(vec!["SET".into(), format!("key:{i}"), format!("value-{i}")]);
    }
    let refs: Vec<Vec<&str>> = cmds
        .iter()
        .map(|c| c.iter().map(String::as_str).collect())
        .collect();
    let refs: Vec<&[&str]> = refs.iter().map(Vec::as_slice).collect();
    let mut dump = dump_of(Flavor::Redis70, &refs);
    // One character of a value: every record still decodes.
    let at = dump
        .windows(10)
        .position(|w| w == b"value-1999")
        .expect("value in the dump");
    dump[at] = b'V';
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("damaged.rdb");
    std::fs::write(&file, &dump).expect("write");
    let path = file.to_str().expect("utf8");

    let out = ferry(path, &["--format", "resp"], b"");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "exit 0: {err}");
    assert!(err.contains("checksum mismatch"), "{err}");
    assert!(out.stdout.is_empty(), "{} bytes written", out.stdout.len());

    let out = ferry(path, &["--format", "resp", "--no-precheck"], b"");
    assert!(!out.status.success());
    assert!(!out.stdout.is_empty(), "--no-precheck streams");

    let out = ferry("-", &["--format", "resp"], &dump);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "stdin: exit 0: {err}");
    assert!(!out.stdout.is_empty(), "stdin streams");
    assert!(err.contains("checksum mismatch"), "{err}");
    assert!(err.contains("must be discarded"), "{err}");

    // An intact file still works, also through the precheck.
    let good = dump_of(Flavor::Redis70, &refs);
    std::fs::write(&file, &good).expect("write");
    let out = ferry(path, &["--format", "resp"], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn summary_escapes_binary_key_bytes_as_json_does() {
    use ferry_rdb::build::RdbWriter;
    let mut w = RdbWriter::new("REDIS", 10);
    w.select_db(0);
    w.key(0, b"bin\n\x1b[31mred\xff\x00").string(b"v");
    w.aux(b"note", b"line1\nline2\x07");
    let out = ferry("-", &["--format", "summary"], &w.finish());
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.stdout.contains(&0x1b) && !out.stdout.contains(&0x07),
        "{text}"
    );
    assert!(
        text.contains(r#""bin\n\u001b[31mred\\xff\u0000""#),
        "key not escaped as in JSON: {text}"
    );
    assert!(text.contains(r#""line1\nline2\u0007""#), "{text}");
}

/// A source with module values and a target without the modules: the
/// preflight warns (refuses with `snapshot.restore: always`), and `ferry
/// run` skips each module key, counted as `module_missing` and logged with
/// its key and module, while the other keys are carried.
#[test]
fn module_values_whose_module_the_target_lacks_are_counted_not_fatal() {
    use crate::common::daemon::{Setup, status, wait_phase};
    use std::time::{Duration, Instant};
    let src = Server::builder(Flavor::RedisStack74)
        .modules(true)
        .start()
        .expect("source");
    let mut c = src.conn();
    for cmd in [
        &["JSON.SET", "doc", "$", r#"{"a":1}"#][..],
        &["BF.ADD", "bloom", "x"],
        &["SET", "plain", "v"],
        &["RPUSH", "list", "a", "b"],
    ] {
        let mut r = redis::cmd(cmd[0]);
        for a in &cmd[1..] {
            r.arg(*a);
        }
        r.query::<Value>(&mut c).expect("populate");
    }
    // `ferry rdb` says which module each RESTORE needs.
    let out = ferry("-", &["--format", "resp"], &src.dump_rdb().expect("dump"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("type ReJSON-RL (module rejson)")
            && err.contains("type MBbloom-- (module bf)"),
        "{err}"
    );

    let target = start(Flavor::RedisStack74, None);
    let always = Setup::new(&src.url(), &target.url(), "snapshot: { restore: always }\n");
    let mut d = always.run();
    let code = d.wait_exit(Duration::from_secs(30));
    let log = d.log();
    assert_eq!(code, Some(1), "restore: always must refuse: {log}");
    assert!(
        log.contains("lacks module(s)") && log.contains("bf, rejson"),
        "{log}"
    );

    let setup = Setup::new(&src.url(), &target.url(), "");
    let mut d = setup.run();
    wait_phase(&setup.http, "streaming", Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut st = status(&setup.http).expect("status");
    while st["skipped"]["module_missing"] != 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        st = status(&setup.http).unwrap_or(st);
    }
    let log = d.log();
    d.stop();
    assert_eq!(st["skipped"]["module_missing"], 2, "{st}\n{log}");
    assert!(log.contains("lacks module(s)"), "preflight warning: {log}");
    assert!(
        log.contains("doc (module rejson, type ReJSON-RL)")
            && log.contains("bloom (module bf, type MBbloom--)"),
        "each key is logged with its module: {log}"
    );
    assert_eq!(keys(&target), vec![b"list".to_vec(), b"plain".to_vec()]);
}
