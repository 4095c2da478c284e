//! A dataset that makes a real server write every RDB type and encoding it
//! can produce, plus bulk data for benchmarks.
//!
//! Every fixture key starts with `fx:` and is at most 20 bytes long (longer
//! names could be LZF-compressed in the dump, which would hide them from a
//! byte search). [`expected_types`] lists what each key's type byte must be
//! per flavor, following `servers.md` ("Type bytes each server actually
//! writes"); the tests check real dumps against it.
//!
//! ```text
//! key                 6.2  7.0  Stack7.4  Valkey9   what it exercises
//! fx:s:*               0    0    0         0        raw, int8/16/32, i64 text, LZF, random, binary, empty
//! fx:l:small/ints      14   18   18        18       one packed node; every listpack int width
//! fx:l:big             14   18   18        18       1000 elements, several nodes
//! fx:l:plain           14   18   18        18       a 9000-byte element (PLAIN node on 7.0+;
//!                                                   7.0 needs DEBUG QUICKLIST-PACKED-THRESHOLD)
//! fx:set:i16/i32/i64   11   11   11        11       intset widths 2/4/8
//! fx:set:small         2    2    20        20       listpack set on 7.2+
//! fx:set:big           2    2    2         2        600 members
//! fx:z:small           12   17   17        17       ints, 1.5, -0.25, 1e300, inf, -inf, pi
//! fx:z:big             5    5    5         5        200 members (skiplist)
//! fx:h:small           13   16   16        16       ziplist/listpack hash
//! fx:h:big / bigval    4    4    4         4        600 fields / one 100-byte value
//! fx:st:*              15   19   21        21       SAMEFIELDS or not, XDEL, XTRIM, groups, PEL,
//!                                                   idle consumers, empty streams with groups
//! fx:ttl:*             (its type)                   PEXPIREAT now + 1 day
//! fx:hfe:small         -    -    25        22       hash field TTLs (listpack)
//! fx:hfe:big           -    -    24        22       hash field TTLs (hashtable)
//! fx:json/bloom/cuckoo 7 when RedisJSON and RedisBloom are loaded
//! fx:ts, fx:doc:1      7 / a hash, when RedisTimeSeries / RediSearch are
//!                      (Stack's `all_stack_modules`; the index is MODULE_AUX)
//! db 1 and 5           a few keys (unless single_db)
//! FUNCTION LOAD        library `ferryfx` (opcode 245) on 7.0+
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::time::{SystemTime, UNIX_EPOCH};

use redis::{Connection, RedisResult, Value};

use crate::flavor::Flavor;

/// The Lua library loaded on 7.0+ (`FUNCTION LOAD REPLACE`).
pub const FUNCTION_LIBRARY: &str = "#!lua name=ferryfx\n\
    redis.register_function('ferryfx_echo', function(keys, args) return args[1] end)\n";

/// The binary key name written in db 0 (NUL, 0xFF, CR/LF, a space).
pub const BINARY_KEY: &[u8] = b"fx:\x00\xff\r\n bin";

/// What to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixtureOptions {
    /// The server flavor (decides which types it can hold).
    pub flavor: Flavor,
    /// Also write keys into dbs 1 and 5 (turn off for cluster-bound data).
    pub multi_db: bool,
}

impl FixtureOptions {
    /// Everything the flavor supports, in dbs 0, 1 and 5.
    pub fn new(flavor: Flavor) -> FixtureOptions {
        FixtureOptions {
            flavor,
            multi_db: true,
        }
    }

    /// Only db 0.
    pub fn single_db(mut self) -> FixtureOptions {
        self.multi_db = false;
        self
    }
}

/// What [`populate`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixtureInfo {
    /// Keys written, over all dbs.
    pub keys: usize,
    /// The dbs that hold keys, ascending.
    pub dbs: Vec<u32>,
    /// Module values (RedisJSON, RedisBloom) were written.
    pub has_modules: bool,
    /// Hash field TTLs were written.
    pub has_field_ttls: bool,
    /// A function library was loaded.
    pub has_functions: bool,
    /// Lower-case names of the modules whose values were written, sorted:
    /// `bf` and `rejson` (with `has_modules`), `search` (an index, written
    /// as MODULE_AUX, and the hash `fx:doc:1`), `timeseries` (`fx:ts`).
    pub modules: Vec<String>,
}

/// Writes the whole fixture (dbs 0, 1 and 5) into the server behind `conn`.
/// The connection is left on db 0. Module values are written when RedisJSON
/// and RedisBloom are loaded (see [`FixtureInfo::has_modules`]).
pub fn populate(conn: &mut Connection, flavor: Flavor) -> RedisResult<FixtureInfo> {
    populate_with(conn, FixtureOptions::new(flavor))
}

/// Writes the fixture as `opts` says.
pub fn populate_with(conn: &mut Connection, opts: FixtureOptions) -> RedisResult<FixtureInfo> {
    let flavor = opts.flavor;
    let modules = loaded_modules(conn)?;
    let has_modules = modules.contains("rejson") && modules.contains("bf");
    let mut fx = Writer {
        conn,
        flavor,
        db: 0,
        keys: BTreeMap::new(),
        ttl_ms: unix_ms() + 24 * 3600 * 1000,
    };
    fx.select(0)?;
    fx.strings()?;
    fx.lists()?;
    fx.sets()?;
    fx.zsets()?;
    fx.hashes()?;
    fx.streams()?;
    fx.ttls(has_modules)?;
    if flavor.has_field_ttls() {
        fx.field_ttls()?;
    }
    let mut written = Vec::new();
    if has_modules {
        fx.module_values()?;
        written.extend(["bf".to_string(), "rejson".to_string()]);
    }
    if modules.contains("search") {
        fx.on(
            "FT.CREATE",
            &[
                "fx:idx", "ON", "HASH", "PREFIX", "1", "fx:doc:", "SCHEMA", "title", "TEXT", "n",
                "NUMERIC",
            ],
        )?;
        fx.write_all("HSET", b"fx:doc:1", &["title", "hello ferry", "n", "7"])?;
        written.push("search".to_string());
    }
    if modules.contains("timeseries") {
        fx.write_all(
            "TS.CREATE",
            b"fx:ts",
            &["RETENTION", "0", "LABELS", "kind", "fixture"],
        )?;
        fx.on("TS.ADD", &["fx:ts", "1000", "1.5"])?;
        fx.on("TS.ADD", &["fx:ts", "2000", "-2"])?;
        written.push("timeseries".to_string());
    }
    written.sort();
    if flavor.has_functions() {
        redis::cmd("FUNCTION")
            .arg("LOAD")
            .arg("REPLACE")
            .arg(FUNCTION_LIBRARY)
            .query::<Value>(fx.conn)?;
    }
    if opts.multi_db {
        fx.other_dbs()?;
    }
    fx.select(0)?;
    Ok(FixtureInfo {
        keys: fx.keys.values().map(BTreeSet::len).sum(),
        dbs: fx.keys.keys().copied().collect(),
        has_modules,
        has_field_ttls: flavor.has_field_ttls(),
        has_functions: flavor.has_functions(),
        modules: written,
    })
}

/// One expectation of [`expected_types`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Database.
    pub db: u32,
    /// Key name.
    pub key: Vec<u8>,
    /// The type byte the flavor writes for it.
    pub type_byte: u8,
    /// Whether the key has a TTL.
    pub expires: bool,
}

/// The type byte every fixture key gets in `flavor`'s dump, as documented
/// in `servers.md`. `info` says which optional parts were written.
pub fn expected_types(flavor: Flavor, info: &FixtureInfo) -> Vec<Expected> {
    use Flavor::*;
    let v62 = flavor == Redis62;
    let v72 = matches!(flavor, RedisStack74 | Valkey9);
    let list = if v62 { 14 } else { 18 };
    let stream = match flavor {
        Redis62 => 15,
        Redis70 => 19,
        RedisStack74 | Valkey9 => 21,
    };
    let mut out = Vec::new();
    let mut e = |db: u32, key: &[u8], type_byte: u8, expires: bool| {
        out.push(Expected {
            db,
            key: key.to_vec(),
            type_byte,
            expires,
        });
    };
    for k in STRING_KEYS {
        e(0, k.as_bytes(), 0, false);
    }
    e(0, BINARY_KEY, 0, false);
    for k in ["fx:l:small", "fx:l:ints", "fx:l:big", "fx:l:plain"] {
        e(0, k.as_bytes(), list, false);
    }
    for k in ["fx:set:i16", "fx:set:i32", "fx:set:i64"] {
        e(0, k.as_bytes(), 11, false);
    }
    e(0, b"fx:set:small", if v72 { 20 } else { 2 }, false);
    e(0, b"fx:set:big", 2, false);
    e(0, b"fx:z:small", if v62 { 12 } else { 17 }, false);
    e(0, b"fx:z:big", 5, false);
    e(0, b"fx:h:small", if v62 { 13 } else { 16 }, false);
    e(0, b"fx:h:big", 4, false);
    e(0, b"fx:h:bigval", 4, false);
    for k in STREAM_KEYS {
        e(0, k.as_bytes(), stream, false);
    }
    e(0, b"fx:ttl:s", 0, true);
    e(0, b"fx:ttl:l", list, true);
    e(0, b"fx:ttl:set", if v72 { 20 } else { 2 }, true);
    e(0, b"fx:ttl:z", if v62 { 12 } else { 17 }, true);
    e(0, b"fx:ttl:h", if v62 { 13 } else { 16 }, true);
    e(0, b"fx:ttl:st", stream, true);
    if info.has_field_ttls {
        let (small, big) = if flavor == Valkey9 {
            (22, 22)
        } else {
            (25, 24)
        };
        e(0, b"fx:hfe:small", small, false);
        e(0, b"fx:hfe:big", big, false);
        e(0, b"fx:hfe:ttl", small, true);
    }
    if info.has_modules {
        for k in ["fx:json", "fx:bloom", "fx:cuckoo"] {
            e(0, k.as_bytes(), 7, false);
        }
        e(0, b"fx:ttl:json", 7, true);
    }
    if info.modules.iter().any(|m| m == "search") {
        e(0, b"fx:doc:1", if v62 { 13 } else { 16 }, false);
    }
    if info.modules.iter().any(|m| m == "timeseries") {
        e(0, b"fx:ts", 7, false);
    }
    if info.dbs.contains(&1) {
        e(1, b"fx:db1:s", 0, false);
        e(1, b"fx:db1:l", list, false);
        e(5, b"fx:db5:h", if v62 { 13 } else { 16 }, false);
        e(5, b"fx:db5:z", if v62 { 12 } else { 17 }, false);
        e(5, b"fx:db5:ttl", 0, true);
    }
    out
}

const STRING_KEYS: [&str; 13] = [
    "fx:s:raw",
    "fx:s:int",
    "fx:s:neg",
    "fx:s:i32",
    "fx:s:i32min",
    "fx:s:i64max",
    "fx:s:i64min",
    "fx:s:lead0",
    "fx:s:lzf",
    "fx:s:rand",
    "fx:s:bin",
    "fx:s:empty",
    "fx:s:float",
];

const STREAM_KEYS: [&str; 5] = [
    "fx:st:main",
    "fx:st:trim",
    "fx:st:nodes",
    "fx:st:empty",
    "fx:st:emptied",
];

/// Zset scores covering every listpack/ziplist score form.
const SCORES: [&str; 9] = [
    "1",
    "-5",
    "1.5",
    "-0.25",
    "1e300",
    "inf",
    "-inf",
    "3.141592653589793",
    "0",
];

struct Writer<'a> {
    conn: &'a mut Connection,
    flavor: Flavor,
    db: u32,
    keys: BTreeMap<u32, BTreeSet<Vec<u8>>>,
    ttl_ms: u64,
}

impl Writer<'_> {
    fn select(&mut self, db: u32) -> RedisResult<()> {
        redis::cmd("SELECT").arg(db).query::<()>(self.conn)?;
        self.db = db;
        Ok(())
    }

    /// Runs `name key args...`, recording `key` as written.
    fn write_all<A: redis::ToRedisArgs>(
        &mut self,
        name: &str,
        key: &[u8],
        args: &[A],
    ) -> RedisResult<Value> {
        let mut cmd = redis::cmd(name);
        cmd.arg(key);
        for a in args {
            cmd.arg(a);
        }
        let v = cmd.query(self.conn)?;
        self.keys.entry(self.db).or_default().insert(key.to_vec());
        Ok(v)
    }

    /// A command on an existing key (not recorded).
    fn on(&mut self, name: &str, args: &[&str]) -> RedisResult<Value> {
        redis::cmd(name).arg(args).query(self.conn)
    }

    fn expire(&mut self, key: &str) -> RedisResult<()> {
        redis::cmd("PEXPIREAT")
            .arg(key)
            .arg(self.ttl_ms)
            .query::<()>(self.conn)
    }

    fn strings(&mut self) -> RedisResult<()> {
        let set =
            |w: &mut Self, k: &str, v: &[u8]| w.write_all("SET", k.as_bytes(), &[v]).map(drop);
        set(self, "fx:s:raw", b"hello world")?;
        set(self, "fx:s:int", b"12345")?;
        set(self, "fx:s:neg", b"-7")?;
        set(self, "fx:s:i32", b"100000")?;
        set(self, "fx:s:i32min", b"-2147483648")?;
        set(self, "fx:s:i64max", b"9223372036854775807")?;
        set(self, "fx:s:i64min", b"-9223372036854775808")?;
        set(self, "fx:s:lead0", b"007")?;
        set(self, "fx:s:lzf", &[b'a'; 200])?;
        set(self, "fx:s:rand", &random_bytes(64, 1))?;
        set(self, "fx:s:bin", b"\x00\xff\x00bin\xfe\r\n\x00")?;
        set(self, "fx:s:empty", b"")?;
        set(self, "fx:s:float", b"3.25")?;
        self.write_all("SET", BINARY_KEY, &["binary key name"])?;
        Ok(())
    }

    fn lists(&mut self) -> RedisResult<()> {
        self.write_all("RPUSH", b"fx:l:small", &["a", "b", "c"])?;
        let ints = [
            "0",
            "1",
            "-1",
            "127",
            "128",
            "-128",
            "4095",
            "-4096",
            "32767",
            "-32768",
            "8388607",
            "-8388608",
            "2147483647",
            "-2147483648",
            "9223372036854775807",
            "-9223372036854775808",
            "12abc",
            "",
            "007",
            " 1",
        ];
        self.write_all("RPUSH", b"fx:l:ints", &ints)?;
        let big: Vec<String> = (0..1000)
            .map(|i| format!("element-{i:05}-of-the-big-list"))
            .collect();
        self.write_all("RPUSH", b"fx:l:big", &big)?;
        // 7.2+ stores an element larger than a node (8 KB) as a PLAIN node;
        // 7.0 only above its packed threshold (1 GB unless lowered by DEBUG).
        let lower = self.flavor == Flavor::Redis70;
        if lower {
            self.on("DEBUG", &["QUICKLIST-PACKED-THRESHOLD", "8192"])?;
        }
        let huge = "x".repeat(9000);
        self.write_all(
            "RPUSH",
            b"fx:l:plain",
            &["before", huge.as_str(), "after", "42"],
        )?;
        if lower {
            self.on("DEBUG", &["QUICKLIST-PACKED-THRESHOLD", "0"])?; // back to the default
        }
        Ok(())
    }

    fn sets(&mut self) -> RedisResult<()> {
        self.write_all("SADD", b"fx:set:i16", &["1", "2", "3", "-300"])?;
        self.write_all("SADD", b"fx:set:i32", &["70000", "-70000", "5"])?;
        let i64s = [
            "9223372036854775807",
            "-9223372036854775808",
            "2147483648",
            "0",
        ];
        self.write_all("SADD", b"fx:set:i64", &i64s)?;
        self.write_all("SADD", b"fx:set:small", &["alpha", "beta", "gamma"])?;
        let big: Vec<String> = (0..600).map(|i| format!("member-{i}")).collect();
        self.write_all("SADD", b"fx:set:big", &big)?;
        Ok(())
    }

    fn zsets(&mut self) -> RedisResult<()> {
        let mut small = Vec::new();
        for (i, s) in SCORES.iter().enumerate() {
            small.push(s.to_string());
            small.push(format!("m{i}"));
        }
        small.extend(["2".to_string(), "42".to_string()]);
        self.write_all("ZADD", b"fx:z:small", &small)?;
        let mut big = Vec::new();
        for i in 0..200 {
            let score = match (SCORES.get(i), i % 4) {
                (Some(s), _) => s.to_string(),
                (None, 0) => i.to_string(),
                (None, 1) => format!("{i}.5"),
                (None, 2) => format!("-{i}.125"),
                (None, _) => format!("{i}e10"),
            };
            big.push(score);
            big.push(format!("zmember-{i}"));
        }
        self.write_all("ZADD", b"fx:z:big", &big)?;
        Ok(())
    }

    fn hashes(&mut self) -> RedisResult<()> {
        let small = [
            "name",
            "ferry",
            "n",
            "12345",
            "neg",
            "-7",
            "big",
            "9223372036854775807",
            "empty",
            "",
        ];
        self.write_all("HSET", b"fx:h:small", &small)?;
        let mut big = Vec::new();
        for i in 0..600 {
            big.push(format!("field-{i}"));
            big.push(i.to_string());
        }
        self.write_all("HSET", b"fx:h:big", &big)?;
        let long = "v".repeat(100);
        self.write_all(
            "HSET",
            b"fx:h:bigval",
            &["short", "1", "long", long.as_str()],
        )?;
        Ok(())
    }

    fn streams(&mut self) -> RedisResult<()> {
        let k = "fx:st:main";
        let kb = k.as_bytes();
        self.write_all("XADD", kb, &["1-1", "a", "1", "b", "2"])?;
        self.write_all("XADD", kb, &["1-2", "a", "3", "b", "4"])?; // same fields: SAMEFIELDS
        self.write_all("XADD", kb, &["2-0", "c", "5"])?; // other fields
        self.write_all("XADD", kb, &["*", "a", "6", "b", "7"])?;
        self.write_all("XADD", kb, &["*", "d", "8", "e", "9", "f", "10"])?;
        self.on("XDEL", &[k, "1-2"])?;
        self.on("XGROUP", &["CREATE", k, "g1", "0"])?;
        self.on(
            "XREADGROUP",
            &["GROUP", "g1", "alice", "COUNT", "3", "STREAMS", k, ">"],
        )?;
        self.on("XACK", &[k, "g1", "1-1"])?;
        self.on(
            "XREADGROUP",
            &["GROUP", "g1", "dave", "COUNT", "1", "STREAMS", k, ">"],
        )?;
        self.on("XGROUP", &["CREATECONSUMER", k, "g1", "bob"])?;
        self.on("XGROUP", &["CREATE", k, "g2", "$"])?;
        self.on("XGROUP", &["CREATECONSUMER", k, "g2", "carol"])?;

        for i in 0..50 {
            let v = i.to_string();
            self.write_all("XADD", b"fx:st:trim", &["*", "i", v.as_str()])?;
        }
        self.on("XTRIM", &["fx:st:trim", "MAXLEN", "=", "10"])?;

        // More entries than stream-node-max-entries (100): several nodes.
        for i in 1..=250 {
            let id = format!("{i}-0");
            let v = i.to_string();
            self.write_all(
                "XADD",
                b"fx:st:nodes",
                &[id.as_str(), "n", v.as_str(), "x", "y"],
            )?;
        }

        self.on("XGROUP", &["CREATE", "fx:st:empty", "g0", "$", "MKSTREAM"])?;
        self.keys
            .entry(self.db)
            .or_default()
            .insert(b"fx:st:empty".to_vec());

        // Pending entries that point at deleted ids.
        let e = "fx:st:emptied";
        self.write_all("XADD", e.as_bytes(), &["5-0", "x", "1"])?;
        self.write_all("XADD", e.as_bytes(), &["6-0", "x", "2"])?;
        self.on("XGROUP", &["CREATE", e, "g", "0"])?;
        self.on(
            "XREADGROUP",
            &["GROUP", "g", "erin", "COUNT", "10", "STREAMS", e, ">"],
        )?;
        self.on("XDEL", &[e, "5-0", "6-0"])?;
        Ok(())
    }

    fn ttls(&mut self, has_modules: bool) -> RedisResult<()> {
        self.write_all("SET", b"fx:ttl:s", &["expires tomorrow"])?;
        self.write_all("RPUSH", b"fx:ttl:l", &["1", "two", "3"])?;
        self.write_all("SADD", b"fx:ttl:set", &["x", "y"])?;
        self.write_all("ZADD", b"fx:ttl:z", &["1", "one", "2.5", "two"])?;
        self.write_all("HSET", b"fx:ttl:h", &["f", "v"])?;
        self.write_all("XADD", b"fx:ttl:st", &["1-0", "f", "v"])?;
        for k in [
            "fx:ttl:s",
            "fx:ttl:l",
            "fx:ttl:set",
            "fx:ttl:z",
            "fx:ttl:h",
            "fx:ttl:st",
        ] {
            self.expire(k)?;
        }
        if has_modules {
            self.write_all("JSON.SET", b"fx:ttl:json", &["$", r#"{"ttl":true}"#])?;
            self.expire("fx:ttl:json")?;
        }
        Ok(())
    }

    fn field_ttls(&mut self) -> RedisResult<()> {
        let at = self.ttl_ms.to_string();
        self.write_all("HSET", b"fx:hfe:small", &["a", "1", "b", "two", "c", "3"])?;
        self.on(
            "HPEXPIREAT",
            &["fx:hfe:small", &at, "FIELDS", "2", "a", "b"],
        )?;
        let mut big = Vec::new();
        for i in 0..600 {
            big.push(format!("field-{i}"));
            big.push(i.to_string());
        }
        self.write_all("HSET", b"fx:hfe:big", &big)?;
        self.on(
            "HPEXPIREAT",
            &[
                "fx:hfe:big",
                &at,
                "FIELDS",
                "3",
                "field-1",
                "field-2",
                "field-599",
            ],
        )?;
        self.write_all("HSET", b"fx:hfe:ttl", &["f", "v", "g", "w"])?;
        self.on("HPEXPIREAT", &["fx:hfe:ttl", &at, "FIELDS", "1", "f"])?;
        self.expire("fx:hfe:ttl")?;
        Ok(())
    }

    fn module_values(&mut self) -> RedisResult<()> {
        let doc =
            r#"{"name":"ferry","n":1,"f":2.5,"list":[1,"two",null,true],"nested":{"a":{"b":[]}}}"#;
        self.write_all("JSON.SET", b"fx:json", &["$", doc])?;
        self.write_all("BF.ADD", b"fx:bloom", &["apple"])?;
        self.on("BF.ADD", &["fx:bloom", "banana"])?;
        self.write_all("CF.ADD", b"fx:cuckoo", &["cherry"])?;
        Ok(())
    }

    fn other_dbs(&mut self) -> RedisResult<()> {
        self.select(1)?;
        self.write_all("SET", b"fx:db1:s", &["in db 1"])?;
        self.write_all("RPUSH", b"fx:db1:l", &["1", "2"])?;
        self.select(5)?;
        self.write_all("HSET", b"fx:db5:h", &["f", "v"])?;
        self.write_all("ZADD", b"fx:db5:z", &["1", "a"])?;
        self.write_all("SET", b"fx:db5:ttl", &["in db 5"])?;
        self.expire("fx:db5:ttl")?;
        self.select(0)
    }
}

/// Lower-cased names of the loaded modules (`MODULE LIST`).
fn loaded_modules(conn: &mut Connection) -> RedisResult<BTreeSet<String>> {
    let list: Vec<Value> = redis::cmd("MODULE").arg("LIST").query(conn)?;
    let mut names = BTreeSet::new();
    for m in list {
        let pairs: Vec<(Value, Value)> = match m {
            Value::Array(items) => items
                .chunks(2)
                .filter_map(|c| Some((c.first()?.clone(), c.get(1)?.clone())))
                .collect(),
            Value::Map(pairs) => pairs,
            _ => continue,
        };
        for (k, v) in pairs {
            let k: String = redis::from_redis_value(k).unwrap_or_default();
            if k == "name" {
                let v: String = redis::from_redis_value(v).unwrap_or_default();
                names.insert(v.to_lowercase());
            }
        }
    }
    Ok(names)
}

/// Fills the server with `n_keys` strings `big:<i>` of `value_size`
/// incompressible bytes, pipelined 1000 at a time (a fair load for decode
/// benchmarks: LZF cannot shrink them).
pub fn populate_big(conn: &mut Connection, n_keys: usize, value_size: usize) -> RedisResult<()> {
    let mut seed = 0x5EED_u64;
    let mut start = 0;
    while start < n_keys {
        let end = (start + 1000).min(n_keys);
        let mut pipe = redis::pipe();
        for i in start..end {
            seed = seed.wrapping_add(1);
            pipe.cmd("SET")
                .arg(format!("big:{i}"))
                .arg(random_bytes(value_size, seed))
                .ignore();
        }
        pipe.query::<()>(conn)?;
        start = end;
    }
    Ok(())
}

/// `n_keys` keys of mixed types in db 0, named `mix:<type>:<i>`: 40 %
/// strings (one in four with a TTL of a day), 15 % lists and 15 % hashes of
/// 5 elements, 10 % sets, 10 % sorted sets (4 members each), 10 % streams
/// (2 entries). Pipelined, 1000 keys per round trip.
pub fn populate_mixed(conn: &mut Connection, n_keys: usize) -> RedisResult<()> {
    let mut start = 0;
    while start < n_keys {
        let end = (start + 1000).min(n_keys);
        let mut pipe = redis::pipe();
        for i in start..end {
            match i % 20 {
                0..=7 => {
                    let key = format!("mix:s:{i}");
                    if i % 4 == 0 {
                        pipe.cmd("SET").arg(&key).arg(i).arg("EX").arg(86_400);
                    } else {
                        pipe.cmd("SET").arg(&key).arg(format!("value-{i}"));
                    }
                }
                8..=10 => {
                    pipe.cmd("RPUSH")
                        .arg(format!("mix:l:{i}"))
                        .arg(&[1, 2, 3, 4, i][..]);
                }
                11..=13 => {
                    pipe.cmd("HSET")
                        .arg(format!("mix:h:{i}"))
                        .arg(&["a", "1", "b", "2", "c", "3", "d", "4", "e"][..])
                        .arg(i);
                }
                14 | 15 => {
                    pipe.cmd("SADD")
                        .arg(format!("mix:t:{i}"))
                        .arg(&["x", "y", "z"][..])
                        .arg(i);
                }
                16 | 17 => {
                    pipe.cmd("ZADD")
                        .arg(format!("mix:z:{i}"))
                        .arg(&[(1.5, "a"), (2.0, "b"), (-3.0, "c")][..])
                        .arg(i)
                        .arg("d");
                }
                _ => {
                    let key = format!("mix:x:{i}");
                    pipe.cmd("XADD").arg(&key).arg("*").arg("n").arg(i).ignore();
                    pipe.cmd("XADD").arg(&key).arg("*").arg("m").arg(i + 1);
                }
            }
            pipe.ignore();
        }
        pipe.query::<()>(conn)?;
        start = end;
    }
    Ok(())
}

/// `DEBUG POPULATE n_keys big value_size`: fast, but the values
/// (`value:<i>` padded with zeros) compress very well under LZF.
pub fn populate_big_debug(
    conn: &mut Connection,
    n_keys: usize,
    value_size: usize,
) -> RedisResult<()> {
    redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(n_keys)
        .arg("big")
        .arg(value_size)
        .query(conn)
}

/// Deterministic pseudo-random bytes (xorshift64*), incompressible.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
