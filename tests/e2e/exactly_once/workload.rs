//! The kill -9 tests' workload: non-idempotent writes of every kind, and
//! keys whose type changes under replay-safe writes, with the comparison
//! of every key it writes (value, type and absolute expiry).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ferry_testkit::{Cluster, Server, XorShift64};

/// A bounded random load of non-idempotent writes, in pipelines of 50,
/// until `stop` or the bounds. Returns the number of commands.
pub(super) fn load(src: &Server, stop: &AtomicBool, seconds: u64, max: u64) -> u64 {
    load_in(src, stop, seconds, max, "")
}

/// [`load`] with every key name under `ns` (hash tags kept, so the
/// transactions stay in one slot).
pub(super) fn load_in(src: &Server, stop: &AtomicBool, seconds: u64, max: u64, ns: &str) -> u64 {
    let mut c = src.conn();
    let mut rng = XorShift64(0x9E37_79B9_7F4A_7C15);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut n = 0u64;
    let mut mixed = Mixed::default();
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline && n < max {
        let mut p = redis::pipe();
        for _ in 0..50 {
            let r = rng.next();
            let v = n.to_string();
            if r % 13 >= 10 {
                mixed.push(&mut p, r, ns, &v);
                p.ignore();
                n += 1;
                continue;
            }
            match r % 11 {
                0 => p.cmd("INCR").arg(format!("{ns}cnt:{}", r % 20)),
                1 => p
                    .cmd("INCRBY")
                    .arg(format!("{ns}cnt:{}", r % 20))
                    .arg(r % 7 + 1),
                2 => p.cmd("LPUSH").arg(format!("{ns}list:{}", r % 10)).arg(&v),
                3 => p.cmd("RPUSH").arg(format!("{ns}list:{}", r % 10)).arg(&v),
                4 => p
                    .cmd("APPEND")
                    .arg(format!("{ns}str:{}", r % 10))
                    .arg(format!("{v},")),
                5 => p
                    .cmd("XADD")
                    .arg(format!("{ns}stream:{}", r % 3))
                    .arg("*")
                    .arg("n")
                    .arg(&v),
                6 => p
                    .cmd("HINCRBY")
                    .arg(format!("{ns}h:{}", r % 5))
                    .arg(format!("f{}", r % 4))
                    .arg(1),
                7 => p.cmd("SET").arg(format!("{ns}s:{}", r % 50)).arg(&v),
                8 => p.cmd("DEL").arg(format!("{ns}s:{}", r % 50)),
                9 => p.cmd("INCR").arg(format!("{ns}c{{{}}}", r % 1000)),
                // A transaction across slots: applied per slot, counted.
                _ if r % 4 == 0 => p
                    .cmd("MULTI")
                    .cmd("INCR")
                    .arg(format!("{ns}xa:{}", r % 5))
                    .cmd("RPUSH")
                    .arg(format!("{ns}xb:{}", r % 7))
                    .arg(&v)
                    .cmd("EXEC"),
                _ => p
                    .cmd("MULTI")
                    .cmd("INCR")
                    .arg(format!("{ns}{{tx}}:a"))
                    .cmd("RPUSH")
                    .arg(format!("{ns}{{tx}}:l"))
                    .arg(&v)
                    .cmd("APPEND")
                    .arg(format!("{ns}{{tx}}:s"))
                    .arg(format!("{v},"))
                    .cmd("EXEC"),
            };
            p.ignore();
            n += 1;
        }
        p.query::<()>(&mut c).expect("load");
    }
    n
}

/// Keys whose type changes (`DEL` first where the source would refuse
/// the write), written with replay-safe assignments (`SET`, `HSET`,
/// `SADD`, `ZADD`, absolute expiries, D96/D97) between counting ones:
/// `{mx}:0..4` share one slot and get only replay-safe ops (so their
/// slot's plain runs are long), `my:0..8` are spread.
#[derive(Default)]
struct Mixed {
    /// Per key: 0 none, 1 string, 2 hash, 3 set, 4 zset.
    types: [u8; 12],
}

impl Mixed {
    fn keys() -> impl Iterator<Item = String> {
        (0..4)
            .map(|i| format!("{{mx}}:{i}"))
            .chain((0..8).map(|i| format!("my:{i}")))
    }

    fn push(&mut self, p: &mut redis::Pipeline, r: u64, ns: &str, v: &str) {
        let i = (r >> 8) as usize % 12;
        let key = format!("{ns}{}", Self::keys().nth(i).unwrap_or_default());
        let m = format!("m{}", (r >> 16) % 3);
        // An hour ahead, so nothing expires during the test.
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
            + 3_600_000
            + (r >> 24) % 1000;
        // Before a write of type `kind` (0: a deletion): one that does not
        // overwrite needs the key deleted if it holds another type.
        let was = self.types[i];
        let types = &mut self.types;
        let mut write = |p: &mut redis::Pipeline, kind: u8, overwrites: bool| {
            if !overwrites && types[i] != 0 && types[i] != kind {
                p.cmd("DEL").arg(&key).ignore();
            }
            types[i] = kind;
        };
        match (r >> 4) % 16 {
            0 | 1 => {
                write(p, 1, true);
                p.cmd("SET").arg(&key).arg(v);
            }
            2 => {
                write(p, 1, true);
                p.cmd("SET").arg(&key).arg(v).arg("PXAT").arg(at);
            }
            3 | 4 => {
                write(p, 2, false);
                p.cmd("HSET").arg(&key).arg(&m).arg(v).arg("g").arg(v);
            }
            5 | 6 => {
                write(p, 3, false);
                p.cmd("SADD").arg(&key).arg(&m).arg(v);
            }
            7 | 8 => {
                write(p, 4, false);
                p.cmd("ZADD").arg(&key).arg((r >> 32) % 100).arg(&m);
            }
            9 | 10 => {
                p.cmd("PEXPIREAT").arg(&key).arg(at);
            }
            11 => {
                p.cmd("PERSIST").arg(&key);
            }
            12 => {
                write(p, 0, true);
                p.cmd("DEL").arg(&key);
            }
            // `{mx}` gets no op that always needs a transaction: its
            // transactions are those a change of family asks for.
            _ if i < 4 => {
                write(p, 1, true);
                p.cmd("SET").arg(&key).arg(v);
            }
            // Removals that can empty (and so delete) a key: transactions.
            // The model keeps the type: a collection write to an emptied
            // key then deletes nothing first, which the server allows.
            13 if was == 3 => {
                p.cmd("SREM").arg(&key).arg(&m).arg(v);
            }
            13 if was == 2 => {
                p.cmd("HDEL").arg(&key).arg(&m).arg("g");
            }
            _ => {
                write(p, 1, false);
                p.cmd("APPEND").arg(&key).arg(v);
            }
        }
    }
}

/// A key's value as comparable text, read with `conn`.
fn read(conn: &mut redis::Connection, key: &str) -> String {
    let kind: String = redis::cmd("TYPE").arg(key).query(conn).expect("TYPE");
    let value: String = match kind.as_str() {
        "string" => redis::cmd("GET")
            .arg(key)
            .query::<String>(conn)
            .expect("GET"),
        "list" => format!(
            "{:?}",
            redis::cmd("LRANGE")
                .arg(key)
                .arg(0)
                .arg(-1)
                .query::<Vec<String>>(conn)
                .expect("LRANGE")
        ),
        "hash" => {
            let mut h: Vec<(String, String)> =
                redis::cmd("HGETALL").arg(key).query(conn).expect("HGETALL");
            h.sort();
            format!("{h:?}")
        }
        "stream" => format!(
            "{:?}",
            redis::cmd("XRANGE")
                .arg(key)
                .arg("-")
                .arg("+")
                .query::<Vec<(String, Vec<(String, String)>)>>(conn)
                .expect("XRANGE")
        ),
        "set" => {
            let mut m: Vec<String> = redis::cmd("SMEMBERS")
                .arg(key)
                .query(conn)
                .expect("SMEMBERS");
            m.sort();
            format!("{m:?}")
        }
        "zset" => format!(
            "{:?}",
            redis::cmd("ZRANGE")
                .arg(key)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .query::<Vec<(String, String)>>(conn)
                .expect("ZRANGE")
        ),
        "none" => String::new(),
        other => panic!("unexpected type {other} of {key}"),
    };
    // The absolute expiry (-1: none): a TTL left by a replay would show.
    let at: i64 = redis::cmd("PEXPIRETIME")
        .arg(key)
        .query(conn)
        .expect("PEXPIRETIME");
    format!("{kind}:{value}:{at}")
}

/// Compares every key the load writes, source against target.
pub(super) fn compare(src: &Server, cluster: &Cluster) -> usize {
    let mut keys: Vec<String> = Vec::new();
    keys.extend((0..20).map(|i| format!("cnt:{i}")));
    keys.extend((0..10).map(|i| format!("list:{i}")));
    keys.extend((0..10).map(|i| format!("str:{i}")));
    keys.extend((0..3).map(|i| format!("stream:{i}")));
    keys.extend((0..5).map(|i| format!("h:{i}")));
    keys.extend((0..50).map(|i| format!("s:{i}")));
    keys.extend((0..1000).map(|i| format!("c{{{i}}}")));
    keys.extend(["{tx}:a", "{tx}:l", "{tx}:s"].map(String::from));
    keys.extend((0..5).map(|i| format!("xa:{i}")));
    keys.extend((0..7).map(|i| format!("xb:{i}")));
    keys.extend(Mixed::keys());
    let mut s = src.conn();
    let mut conns: Vec<(u16, redis::Connection)> =
        cluster.nodes.iter().map(|n| (n.port(), n.conn())).collect();
    let mut present = 0;
    for key in &keys {
        let want = read(&mut s, key);
        let port = cluster.node_for_key(key.as_bytes()).port();
        let conn = &mut conns.iter_mut().find(|(p, _)| *p == port).expect("node").1;
        let got = read(conn, key);
        assert_eq!(got, want, "{key}: target differs from the source");
        if !want.starts_with("none:") {
            present += 1;
        }
    }
    present
}
