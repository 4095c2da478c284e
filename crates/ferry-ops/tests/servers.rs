//! Against real 3-master clusters (Redis 7.0 and Valkey 9, one shared
//! cluster per flavor): `key_slot` vs `CLUSTER KEYSLOT`, the key table vs
//! `COMMAND GETKEYS` / `COMMAND`, and topology parsing of replies captured
//! from the wire (RESP2 and RESP3; ip, `?`, unknown and hostname endpoints)
//! vs `CLUSTER NODES`, plus real MOVED/ASK/TRYAGAIN/CROSSSLOT replies.
//!
//! `FERRY_OPS_WRITE_FIXTURES=1` also saves the captured bytes under
//! `tests/data/` (read by `tests/fixtures.rs`).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_ops::keys::table;
use ferry_ops::{
    Class, ErrorKind, KeySpec, Redirect, RedirectKind, SLOTS, Topology, command_keys, key_slot,
};
use ferry_resp::Value;
use ferry_testkit::{Cluster, Flavor, Server, XorShift64};

use common::{check_against_nodes, data_path, owners_from_nodes, ports_by_slot};

/// A raw RESP connection that keeps the exact reply bytes.
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    fn connect(node: &Server) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", node.port())).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends one command; returns the reply and its wire bytes.
    fn call(&mut self, args: &[&[u8]]) -> (Value, Vec<u8>) {
        let mut out = Vec::new();
        ferry_resp::write_command(&mut out, args);
        self.stream.write_all(&out).unwrap();
        loop {
            if let Some((v, n)) = ferry_resp::decode(&self.buf).unwrap() {
                let wire: Vec<u8> = self.buf.drain(..n).collect();
                return (v, wire);
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self.stream.read(&mut chunk).unwrap();
            assert!(n > 0, "server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn resp3(node: &Server) -> Raw {
        let mut raw = Raw::connect(node);
        let (hello, _) = raw.call(&[b"HELLO", b"3"]);
        assert!(hello.as_map().is_some(), "{hello:?}");
        raw
    }
}

/// Saves a capture when `FERRY_OPS_WRITE_FIXTURES` is set.
fn save(flavor: Flavor, name: &str, bytes: &[u8]) {
    if std::env::var_os("FERRY_OPS_WRITE_FIXTURES").is_some() {
        let path = data_path(&format!("{}_{name}", flavor.slug()));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
        eprintln!("saved {} ({} bytes)", path.display(), bytes.len());
    }
}

fn fail(node: &Server, e: &dyn std::fmt::Display) -> ! {
    panic!(
        "{} at {}: {e}\n--- log tail ---\n{}",
        node.flavor(),
        node.addr(),
        node.log_tail(40)
    )
}

fn config_set(node: &Server, name: &str, value: &str) {
    redis::cmd("CONFIG")
        .arg("SET")
        .arg(name)
        .arg(value)
        .query::<()>(&mut node.conn())
        .unwrap_or_else(|e| fail(node, &e));
}

fn text(v: &Value) -> String {
    String::from_utf8(v.as_bytes().unwrap_or_else(|| panic!("{v:?}")).to_vec()).unwrap()
}

// ---------------------------------------------------------------- key_slot

/// A random key of 0–32 bytes, braces frequent (hash tags), from a
/// deterministic generator, so failures reproduce.
fn random_key(rng: &mut XorShift64) -> Vec<u8> {
    let len = (rng.next() % 33) as usize;
    (0..len)
        .map(|_| match rng.next() % 8 {
            0 => b'{',
            1 => b'}',
            _ => rng.next() as u8,
        })
        .collect()
}

fn keyslot_matches(flavor: Flavor) {
    let t = Instant::now();
    let cluster = Cluster::shared(flavor);
    let up = t.elapsed();
    let mut keys: Vec<Vec<u8>> = [
        "",
        "{}",
        "{{a}}",
        "a{b",
        "{",
        "}",
        "}{",
        "{a}",
        "a{}b",
        "{}{a}",
        "a{b}c{d}",
        "{{}}",
        "{user1000}.a",
        "user1000",
        "foo{}{bar}",
        "foo{{bar}}",
        "{bar",
        "foo{bar}{zap}",
        "bar",
        "foo{bar",
        "123456789",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    keys.extend((0..=255u8).map(|b| vec![b]));
    keys.extend([b"\x00{\xff}".to_vec(), b"{\x00}".to_vec(), vec![0xff; 1000]]);
    keys.extend((0..1000).map(|i| format!("key:{i}").into_bytes()));
    let mut rng = XorShift64(0x9E37_79B9_7F4A_7C15 ^ flavor.slug().len() as u64);
    keys.extend((0..1500).map(|_| random_key(&mut rng)));

    let mut pipe = redis::pipe();
    for k in &keys {
        pipe.cmd("CLUSTER").arg("KEYSLOT").arg(k);
    }
    let node = &cluster.nodes[1];
    let server: Vec<u16> = pipe
        .query(&mut node.conn())
        .unwrap_or_else(|e| fail(node, &e));
    assert_eq!(server.len(), keys.len());
    for (k, s) in keys.iter().zip(&server) {
        assert_eq!(
            key_slot(k),
            *s,
            "{flavor}: key {:?}",
            k.escape_ascii().to_string()
        );
    }
    eprintln!(
        "{flavor}: {} keys agree with CLUSTER KEYSLOT (cluster {up:.2?}, total {:.2?})",
        keys.len(),
        t.elapsed()
    );
}

#[test]
fn keyslot_matches_server_redis70() {
    keyslot_matches(Flavor::Redis70);
}

#[test]
fn keyslot_matches_server_valkey9() {
    keyslot_matches(Flavor::Valkey9);
}

// ------------------------------------------------------------- key table

/// One invocation per keyed table entry; `kN` arguments are the keys.
const SAMPLES: &[&str] = &[
    "APPEND k1 v",
    "BITFIELD k1 INCRBY i5 100 1",
    "BITOP AND k1 k2 k3",
    "COPY k1 k2 REPLACE",
    "DECR k1",
    "DECRBY k1 1",
    "DEL k1 k2 k3",
    "DELIFEQ k1 v",
    "EVAL return 2 k1 k2 a",
    "EVALSHA 0123456789012345678901234567890123456789 1 k1 a",
    "EVALSHA_RO 0123456789012345678901234567890123456789 1 k1 a",
    "EVAL_RO return 1 k1",
    "EXISTS k1 k2",
    "EXPIRE k1 10",
    "EXPIREAT k1 10",
    "FCALL f 2 k1 k2 a",
    "FCALL_RO f 1 k1",
    "GEOADD k1 0 0 m",
    "GEORADIUS k1 0 0 1 km STORE k2",
    "GEORADIUSBYMEMBER k1 m 1 km STOREDIST k2",
    "GEOSEARCHSTORE k1 k2 FROMMEMBER m BYRADIUS 1 km",
    "GET k1",
    "GETDEL k1",
    "GETEX k1 PERSIST",
    "GETSET k1 v",
    "HDEL k1 f",
    "HEXPIRE k1 10 FIELDS 1 f",
    "HEXPIREAT k1 10 FIELDS 1 f",
    "HGETDEL k1 FIELDS 1 f",
    "HGETEX k1 PERSIST FIELDS 1 f",
    "HINCRBY k1 f 1",
    "HINCRBYFLOAT k1 f 1.5",
    "HMSET k1 f v",
    "HPERSIST k1 FIELDS 1 f",
    "HPEXPIRE k1 10 FIELDS 1 f",
    "HPEXPIREAT k1 10 FIELDS 1 f",
    "HSET k1 f v f2 v2",
    "HSETEX k1 FIELDS 1 f v",
    "HSETNX k1 f v",
    "INCR k1",
    "INCRBY k1 1",
    "INCRBYFLOAT k1 1.5",
    "LINSERT k1 BEFORE p v",
    "LMOVE k1 k2 LEFT RIGHT",
    "LPOP k1 2",
    "LPUSH k1 a b",
    "LPUSHX k1 a",
    "LREM k1 0 a",
    "LSET k1 0 a",
    "LTRIM k1 0 1",
    "MOVE k1 1",
    "MSET k1 v k2 v",
    "MSETEX 2 k1 v k2 v NX PXAT 1",
    "MSETNX k1 v k2 v",
    "PERSIST k1",
    "PEXPIRE k1 10",
    "PEXPIREAT k1 10",
    "PFADD k1 a",
    "PFCOUNT k1 k2",
    "PFMERGE k1 k2 k3",
    "PSETEX k1 10 v",
    "RENAME k1 k2",
    "RENAMENX k1 k2",
    "RESTORE k1 0 payload REPLACE ABSTTL",
    "RESTORE-ASKING k1 0 payload",
    "RPOP k1",
    "RPOPLPUSH k1 k2",
    "RPUSH k1 a",
    "RPUSHX k1 a",
    "SADD k1 a",
    "SDIFFSTORE k1 k2 k3",
    "SET k1 v PXAT 1",
    "SETBIT k1 7 1",
    "SETEX k1 10 v",
    "SETNX k1 v",
    "SETRANGE k1 0 v",
    "SINTERSTORE k1 k2",
    "SMOVE k1 k2 m",
    "SORT k1 BY w LIMIT 0 5 GET g ALPHA STORE k2",
    "SPOP k1",
    "SREM k1 a",
    "SUNIONSTORE k1 k2 k3",
    "TOUCH k1 k2",
    "UNLINK k1 k2",
    "XACK k1 g 1-1",
    "XACKDEL k1 g IDS 1 1-1",
    "XADD k1 1-1 f v",
    "XAUTOCLAIM k1 g c 0 0",
    "XCLAIM k1 g c 0 1-1 JUSTID",
    "XDEL k1 1-1",
    "XDELEX k1 IDS 1 1-1",
    "XGROUP CREATE k1 g $ MKSTREAM",
    "XGROUP SETID k1 g 0",
    "XGROUP DESTROY k1 g",
    "XGROUP CREATECONSUMER k1 g c",
    "XGROUP DELCONSUMER k1 g c",
    "XSETID k1 1-1",
    "XTRIM k1 MAXLEN = 5",
    "ZADD k1 1 a",
    "ZDIFFSTORE k1 2 k2 k3",
    "ZINCRBY k1 1 a",
    "ZINTERSTORE k1 2 k2 k3 WEIGHTS 1 2",
    "ZPOPMAX k1",
    "ZPOPMIN k1 2",
    "ZRANGESTORE k1 k2 0 -1",
    "ZREM k1 a",
    "ZREMRANGEBYLEX k1 - +",
    "ZREMRANGEBYRANK k1 0 1",
    "ZREMRANGEBYSCORE k1 0 1",
    "ZUNIONSTORE k1 2 k2 k3 AGGREGATE MAX",
];

/// Keyless table entries, checked to have no keys on the server either.
const NO_KEY_SAMPLES: &[&str] = &[
    "FLUSHALL ASYNC",
    "FLUSHDB",
    "FUNCTION FLUSH",
    "SCRIPT FLUSH",
    "SELECT 0",
    "MULTI",
    "EXEC",
    "DISCARD",
    "PING",
    "REPLCONF GETACK *",
    "PUBLISH ch m",
    "SWAPDB 0 1",
];

/// Write (or may-replicate) commands deliberately absent from the table:
/// the master rewrites them before propagation (protocol.md §2), or they are
/// not data commands.
const NOT_IN_STREAM: &[&str] = &[
    "BLMOVE",
    "BLMPOP",
    "BLPOP",
    "BRPOP",
    "BRPOPLPUSH",
    "BZMPOP",
    "BZPOPMAX",
    "BZPOPMIN",
    "LMPOP",
    "ZMPOP",
    "XREADGROUP",
    "MIGRATE",
    "PFDEBUG",
    "PFSELFTEST",
];

/// Table entries older servers may not know.
const NEWER: &[&str] = &[
    "DELIFEQ",
    "MSETEX",
    "HEXPIRE",
    "HEXPIREAT",
    "HGETDEL",
    "HGETEX",
    "HPERSIST",
    "HPEXPIRE",
    "HPEXPIREAT",
    "HSETEX",
    "XACKDEL",
    "XDELEX",
    "OPINFO",
];

fn getkeys(conn: &mut redis::Connection, sample: &str) -> Result<Vec<Vec<u8>>, String> {
    let mut cmd = redis::cmd("COMMAND");
    cmd.arg("GETKEYS");
    for a in sample.split(' ') {
        cmd.arg(a);
    }
    cmd.query(conn).map_err(|e| e.to_string())
}

fn key_table_matches(flavor: Flavor) {
    let cluster = Cluster::shared(flavor);
    let node = &cluster.nodes[0];
    let mut conn = node.conn();
    let mut checked = Vec::new();
    let mut unknown_to_server = Vec::new();
    for sample in SAMPLES {
        let args: Vec<Bytes> = sample
            .split(' ')
            .map(|a| Bytes::from(a.to_owned()))
            .collect();
        let name = sample.split(' ').next().unwrap();
        let ours: Vec<Vec<u8>> = command_keys(&args)
            .unwrap_or_else(|e| panic!("{sample}: {e}"))
            .keys(&args)
            .map(|k| k.to_vec())
            .collect();
        match getkeys(&mut conn, sample) {
            Ok(theirs) => {
                assert_eq!(
                    ours.iter()
                        .map(|k| k.escape_ascii().to_string())
                        .collect::<Vec<_>>(),
                    theirs
                        .iter()
                        .map(|k| k.escape_ascii().to_string())
                        .collect::<Vec<_>>(),
                    "{flavor}: {sample}"
                );
                checked.push(name);
            }
            Err(e) if e.to_lowercase().contains("invalid command") && NEWER.contains(&name) => {
                unknown_to_server.push(name);
            }
            Err(e) => panic!("{flavor}: {sample}: {e}"),
        }
    }
    for sample in NO_KEY_SAMPLES {
        let args: Vec<Bytes> = sample
            .split(' ')
            .map(|a| Bytes::from(a.to_owned()))
            .collect();
        let keys = command_keys(&args).unwrap();
        assert!(matches!(keys.class, Class::NoKeys(_)) && keys.indexes.is_empty());
        if let Ok(theirs) = getkeys(&mut conn, sample) {
            assert!(
                theirs.is_empty(),
                "{flavor}: {sample}: server says keys {theirs:?}"
            );
        }
    }
    // Every keyed table entry has a sample.
    for (name, spec) in table() {
        if !matches!(spec, KeySpec::NoKeys(_)) && *name != "OPINFO" {
            assert!(
                SAMPLES.iter().any(|s| s.split(' ').next() == Some(*name)),
                "no sample for {name}"
            );
        }
    }
    // Every write command the server knows is in the table or explained.
    let commands: Vec<Value> = {
        let mut raw = Raw::connect(node);
        let (v, _) = raw.call(&[b"COMMAND"]);
        v.as_array().unwrap().to_vec()
    };
    let mut missing = Vec::new();
    for c in &commands {
        let items = c.as_array().unwrap();
        let name = text(&items[0]).to_ascii_uppercase();
        let flags: Vec<String> = items[2].as_array().unwrap().iter().map(text).collect();
        let writes = flags.iter().any(|f| f == "write" || f == "may_replicate");
        let known =
            table().iter().any(|(n, _)| *n == name) || NOT_IN_STREAM.contains(&name.as_str());
        if writes && !known {
            missing.push(format!("{name} {flags:?}"));
        }
        // Where our spec is a plain range, it is the server's legacy triple.
        if let Some((_, KeySpec::Range { first, last, step })) =
            table().iter().find(|(n, _)| *n == name)
        {
            let legacy = (items[3].as_int(), items[4].as_int(), items[5].as_int());
            let ours = (Some(*first as i64), Some(*last as i64), Some(*step as i64));
            assert_eq!(legacy, ours, "{flavor}: {name} legacy key spec");
        }
    }
    assert!(
        missing.is_empty(),
        "{flavor}: write commands not in the key table: {missing:#?}"
    );
    eprintln!(
        "{flavor}: {} samples match COMMAND GETKEYS; unknown to this server: {unknown_to_server:?}; {} commands scanned",
        checked.len(),
        commands.len()
    );
}

#[test]
fn key_table_matches_server_redis70() {
    key_table_matches(Flavor::Redis70);
}

#[test]
fn key_table_matches_server_valkey9() {
    key_table_matches(Flavor::Valkey9);
}

// -------------------------------------------------------------- topology

/// Captures SHARDS and SLOTS in RESP2 and RESP3 from `node`; parses each.
fn capture_all(flavor: Flavor, node: &Server, tag: &str, keep: &[&str]) -> Vec<(String, Topology)> {
    let mut out = Vec::new();
    for (resp3, mut raw) in [(false, Raw::connect(node)), (true, Raw::resp3(node))] {
        for cmd in ["SHARDS", "SLOTS"] {
            let (v, wire) = raw.call(&[b"CLUSTER", cmd.as_bytes()]);
            let proto = if resp3 { "resp3" } else { "resp2" };
            let name = format!("{}_{tag}{proto}.resp", cmd.to_lowercase());
            if keep.contains(&name.as_str()) {
                save(flavor, &name, &wire);
            }
            let topo = if cmd == "SHARDS" {
                Topology::from_shards(&v, "127.0.0.1")
            } else {
                Topology::from_slots(&v, "127.0.0.1")
            }
            .unwrap_or_else(|e| panic!("{flavor}: {name}: {e}\n{v:?}"));
            out.push((name, topo));
        }
    }
    out
}

fn cluster_nodes(node: &Server) -> String {
    redis::cmd("CLUSTER")
        .arg("NODES")
        .query(&mut node.conn())
        .unwrap_or_else(|e| fail(node, &e))
}

fn error_text(v: &Value) -> Vec<u8> {
    v.error_message()
        .unwrap_or_else(|| panic!("expected an error, got {v:?}"))
        .to_vec()
}

fn topology_matches(flavor: Flavor) {
    let t = Instant::now();
    let cluster = Cluster::shared(flavor);
    let seed = &cluster.nodes[0];
    cluster.flushall();
    let nodes = cluster_nodes(seed);
    save(flavor, "nodes.txt", nodes.as_bytes());

    // 1. ip endpoints (the default), RESP2 and RESP3, SHARDS and SLOTS.
    let captured = capture_all(
        flavor,
        seed,
        "",
        &[
            "shards_resp2.resp",
            "shards_resp3.resp",
            "slots_resp2.resp",
            "slots_resp3.resp",
        ],
    );
    for (name, topo) in &captured {
        check_against_nodes(&format!("{flavor} {name}"), topo, &nodes, 3);
        assert!(
            topo.masters.iter().all(|m| m.host == "127.0.0.1"),
            "{name}: {:?}",
            topo.masters
        );
    }
    // RESP2 and RESP3 parse to the same topology; SLOTS and SHARDS agree.
    assert_eq!(
        captured[0].1, captured[2].1,
        "{flavor}: SHARDS resp2 vs resp3"
    );
    assert_eq!(
        captured[1].1, captured[3].1,
        "{flavor}: SLOTS resp2 vs resp3"
    );
    assert_eq!(ports_by_slot(&captured[0].1), ports_by_slot(&captured[1].1));
    let topo = captured[0].1.clone();

    // 2. KEYSLOT (server) -> our topology's node; a write there is not redirected.
    let mut conns: Vec<redis::Connection> = cluster.nodes.iter().map(Server::conn).collect();
    for i in 0..300 {
        let key = format!("topo:{i}");
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(&key)
            .query(&mut conns[0])
            .unwrap();
        assert_eq!(slot, key_slot(key.as_bytes()));
        let owner = topo.node_for(slot).unwrap();
        let idx = cluster
            .nodes
            .iter()
            .position(|n| n.port() == owner.port)
            .unwrap();
        redis::cmd("SET")
            .arg(&key)
            .arg("v")
            .query::<()>(&mut conns[idx])
            .unwrap_or_else(|e| panic!("{flavor}: SET {key} on {}: {e}", owner.addr()));
    }

    // 3. Real error replies: MOVED, CROSSSLOT, ASK, TRYAGAIN.
    let owners = owners_from_nodes(&nodes);
    let mut errors = Vec::new();
    let key = b"foo";
    let slot = key_slot(key);
    let owner_port = owners[usize::from(slot)].as_ref().unwrap().1;
    let other = cluster
        .nodes
        .iter()
        .find(|n| n.port() != owner_port)
        .unwrap();
    let (v, wire) = Raw::connect(other).call(&[b"SET", key, b"v"]);
    errors.extend(wire);
    let moved = Redirect::parse(&error_text(&v)).unwrap_or_else(|| panic!("{v:?}"));
    assert_eq!(
        (moved.kind, moved.slot, moved.port),
        (RedirectKind::Moved, slot, owner_port)
    );
    assert_eq!(ErrorKind::classify(&error_text(&v)), ErrorKind::Moved);
    let mut t2 = topo.clone();
    t2.slots
        .set(slot, (t2.slots.node_for(slot).unwrap() + 1) % 3)
        .unwrap();
    assert_eq!(
        t2.apply_redirect(&moved, "127.0.0.1"),
        topo.slots.node_for(slot).unwrap()
    );
    assert_eq!(t2, topo, "MOVED restores the map");

    let (v, wire) = Raw::connect(other).call(&[b"MSET", b"a", b"1", b"b", b"2"]);
    errors.extend(wire);
    assert_eq!(
        ErrorKind::classify(&error_text(&v)),
        ErrorKind::CrossSlot,
        "{v:?}"
    );

    // Slot of "{ask}" migrating from its owner to another master.
    let slot = key_slot(b"ask");
    let src_port = owners[usize::from(slot)].as_ref().unwrap().1;
    let src = cluster.nodes.iter().find(|n| n.port() == src_port).unwrap();
    let dst = cluster.nodes.iter().find(|n| n.port() != src_port).unwrap();
    let dst_id: String = redis::cmd("CLUSTER")
        .arg("MYID")
        .query(&mut dst.conn())
        .unwrap();
    let mut src_raw = Raw::connect(src);
    src_raw.call(&[b"SET", b"{ask}present", b"v"]);
    let (ok, _) = src_raw.call(&[
        b"CLUSTER",
        b"SETSLOT",
        slot.to_string().as_bytes(),
        b"MIGRATING",
        dst_id.as_bytes(),
    ]);
    assert_eq!(ok, Value::simple("OK"));
    let (v, wire) = src_raw.call(&[b"GET", b"{ask}missing"]);
    errors.extend(wire);
    let ask = Redirect::parse(&error_text(&v)).unwrap_or_else(|| panic!("{v:?}"));
    assert_eq!(
        (ask.kind, ask.slot, ask.port),
        (RedirectKind::Ask, slot, dst.port())
    );
    let mut t3 = topo.clone();
    t3.apply_redirect(&ask, "127.0.0.1");
    assert_eq!(t3, topo, "ASK leaves the map alone");
    let (v, wire) = src_raw.call(&[b"MGET", b"{ask}present", b"{ask}missing"]);
    errors.extend(wire);
    assert_eq!(
        ErrorKind::classify(&error_text(&v)),
        ErrorKind::TryAgain,
        "{v:?}"
    );
    assert!(ErrorKind::classify(&error_text(&v)).is_transient());
    src_raw.call(&[
        b"CLUSTER",
        b"SETSLOT",
        slot.to_string().as_bytes(),
        b"STABLE",
    ]);
    src_raw.call(&[b"DEL", b"{ask}present"]);

    // 4. `?` endpoints (hostname preferred, none announced) and unknown-endpoint.
    config_set(seed, "cluster-preferred-endpoint-type", "hostname");
    for (name, topo) in capture_all(
        flavor,
        seed,
        "question_",
        &["shards_question_resp2.resp", "slots_question_resp3.resp"],
    ) {
        check_against_nodes(&format!("{flavor} {name}"), &topo, &nodes, 3);
        assert!(
            topo.masters.iter().all(|m| m.host == "127.0.0.1"),
            "{name}: {:?}",
            topo.masters
        );
    }
    config_set(seed, "cluster-preferred-endpoint-type", "unknown-endpoint");
    for (name, topo) in capture_all(
        flavor,
        seed,
        "unknown_",
        &["shards_unknown_resp3.resp", "slots_unknown_resp2.resp"],
    ) {
        check_against_nodes(&format!("{flavor} {name}"), &topo, &nodes, 3);
    }
    config_set(other, "cluster-preferred-endpoint-type", "unknown-endpoint");
    let (v, wire) = Raw::connect(other).call(&[b"SET", b"foo", b"v"]);
    errors.extend(wire);
    let r = Redirect::parse(&error_text(&v)).unwrap_or_else(|| panic!("{v:?}"));
    assert_eq!((r.host.as_str(), r.port), ("", owner_port), "{v:?}");
    assert_eq!(r.host_or("127.0.0.1"), "127.0.0.1");
    config_set(other, "cluster-preferred-endpoint-type", "ip");

    // 5. Announced hostnames, preferred: wait for gossip to spread them.
    for n in &cluster.nodes {
        config_set(
            n,
            "cluster-announce-hostname",
            &format!("n{}.ferry.test", n.port()),
        );
    }
    config_set(seed, "cluster-preferred-endpoint-type", "hostname");
    let deadline = Instant::now() + Duration::from_secs(30);
    let hostnames = loop {
        let caps = capture_all(flavor, seed, "hostname_", &[]);
        let all = caps.iter().all(|(_, t)| {
            t.masters.len() == 3
                && t.masters
                    .iter()
                    .all(|m| m.host == format!("n{}.ferry.test", m.port))
        });
        if all {
            break capture_all(
                flavor,
                seed,
                "hostname_",
                &["shards_hostname_resp2.resp", "slots_hostname_resp3.resp"],
            );
        }
        assert!(
            Instant::now() < deadline,
            "{flavor}: hostnames not gossiped: {:?}",
            caps[0].1.masters
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    for (name, topo) in &hostnames {
        check_against_nodes(&format!("{flavor} {name}"), topo, &nodes, 3);
    }
    // MOVED names the hostname too.
    let key = b"foo";
    let slot = key_slot(key);
    let owner = topo.node_for(slot).unwrap();
    let wrong = cluster
        .nodes
        .iter()
        .find(|n| n.port() != owner.port)
        .unwrap();
    config_set(wrong, "cluster-preferred-endpoint-type", "hostname");
    let (v, wire) = Raw::connect(wrong).call(&[b"SET", key, b"v"]);
    errors.extend(wire);
    let r = Redirect::parse(&error_text(&v)).unwrap_or_else(|| panic!("{v:?}"));
    assert_eq!(r.host, format!("n{}.ferry.test", owner.port));
    save(flavor, "errors.resp", &errors);

    // Back to the defaults.
    for n in &cluster.nodes {
        config_set(n, "cluster-preferred-endpoint-type", "ip");
        config_set(n, "cluster-announce-hostname", "");
    }
    eprintln!("{flavor}: topology checks in {:.2?}", t.elapsed());
}

#[test]
fn topology_matches_cluster_nodes_redis70() {
    topology_matches(Flavor::Redis70);
}

#[test]
fn topology_matches_cluster_nodes_valkey9() {
    topology_matches(Flavor::Valkey9);
}

#[test]
fn slots_constant() {
    assert_eq!(SLOTS, 16384);
}
