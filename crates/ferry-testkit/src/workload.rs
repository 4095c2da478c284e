//! A random write workload for fault tests: every data type, TTLs, counters,
//! multi-key commands in one slot and split across slots, `MULTI`/`EXEC`,
//! Lua with keys, and `FLUSHDB` now and then — bounded in count and time.
//!
//! The workload also keeps a *checker*: the value every counter key must
//! have given the replies the source acknowledged (an `INCRBY` whose reply
//! arrived counts; a `FLUSHDB` resets). After a migration, the target's
//! counters must equal [`Workload::expected_counters`] exactly — one lost
//! or doubled `INCRBY` shows.
//!
//! Every key starts with `wl:`; keys meant to share a slot use the hash tag
//! `{wl:t<n>}`.
//!
//! ```no_run
//! use std::time::Duration;
//! use ferry_testkit::{Flavor, Server};
//! use ferry_testkit::workload::{Workload, WorkloadOptions};
//! let src = Server::start(Flavor::Redis70)?;
//! let mut wl = Workload::new(WorkloadOptions::default());
//! let done = wl.run(&mut src.conn(), Duration::from_secs(2), 10_000)?;
//! assert!(done > 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use redis::{Connection, Pipeline, RedisResult, Value};

/// What the workload may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkloadOptions {
    /// Seed of the random choices (same seed, same commands).
    pub seed: u64,
    /// Distinct keys per type.
    pub keys: u32,
    /// One `FLUSHDB` every this many batches (0 = never).
    pub flush_every: u64,
    /// Commands per pipelined batch.
    pub batch: u32,
    /// Use `EVAL` (scripts with keys of one slot).
    pub lua: bool,
}

impl Default for WorkloadOptions {
    fn default() -> Self {
        WorkloadOptions {
            seed: 1,
            keys: 200,
            flush_every: 0,
            batch: 50,
            lua: true,
        }
    }
}

/// xorshift64*: a small deterministic generator, so that a test's
/// workload (and its failures) reproduce from its seed. Not for anything
/// but tests. A zero state stays zero: seed with a non-zero value.
#[derive(Debug, Clone)]
pub struct XorShift64(pub u64);

impl XorShift64 {
    /// The next number.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// A seeded random workload and its checker.
#[derive(Debug)]
pub struct Workload {
    opts: WorkloadOptions,
    rng: XorShift64,
    batches: u64,
    commands: u64,
    counters: BTreeMap<String, i64>,
}

/// What one batch changes in the checker once its replies arrive.
enum Expect {
    /// Reply index, counter key.
    Incr(usize, String),
    /// Every counter is gone.
    Flush,
}

impl Workload {
    /// A workload with these options.
    pub fn new(opts: WorkloadOptions) -> Workload {
        Workload {
            opts,
            rng: XorShift64(opts.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
            batches: 0,
            commands: 0,
            counters: BTreeMap::new(),
        }
    }

    fn next(&mut self) -> u64 {
        self.rng.next()
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn key(&mut self, kind: &str) -> String {
        let k = self.below(u64::from(self.opts.keys));
        format!("wl:{kind}:{k}")
    }

    fn tag(&mut self) -> String {
        let t = self.below(16);
        format!("{{wl:t{t}}}")
    }

    /// Commands sent so far (including those of failed batches).
    pub fn commands(&self) -> u64 {
        self.commands
    }

    /// Every counter key and the value the source acknowledged for it.
    pub fn expected_counters(&self) -> &BTreeMap<String, i64> {
        &self.counters
    }

    /// Run batches until `duration` has passed or `max_commands` were sent;
    /// returns the commands sent by this call. Each key name has one type,
    /// so any error reply is a failure of the workload (returned).
    pub fn run(
        &mut self,
        conn: &mut Connection,
        duration: Duration,
        max_commands: u64,
    ) -> RedisResult<u64> {
        let deadline = Instant::now() + duration;
        let start = self.commands;
        while Instant::now() < deadline && self.commands - start < max_commands {
            self.batch(conn)?;
        }
        Ok(self.commands - start)
    }

    /// One pipelined batch.
    pub fn batch(&mut self, conn: &mut Connection) -> RedisResult<()> {
        let mut p = redis::pipe();
        let mut expect = Vec::new();
        let mut n = 0usize;
        self.batches += 1;
        if self.opts.flush_every > 0 && self.batches % self.opts.flush_every == 0 {
            p.cmd("FLUSHDB");
            n += 1;
            expect.push(Expect::Flush);
        }
        for _ in 0..self.opts.batch {
            n += self.one(&mut p, n, &mut expect);
        }
        self.commands += n as u64;
        let replies: Vec<Value> = p.query(conn)?;
        for ex in expect {
            match ex {
                Expect::Flush => self.counters.clear(),
                // The reply is the counter's new value as the source has it.
                Expect::Incr(i, key) => {
                    if let Some(Value::Int(v)) = replies.get(i) {
                        self.counters.insert(key, *v);
                    }
                }
            }
        }
        Ok(())
    }

    /// Add one random command (or a small group) to `p`; returns how many
    /// replies it adds.
    fn one(&mut self, p: &mut Pipeline, base: usize, expect: &mut Vec<Expect>) -> usize {
        let v = self.next();
        match self.below(20) {
            0 => {
                let k = self.key("s");
                p.cmd("SET").arg(k).arg(v);
                1
            }
            1 => {
                let k = self.key("s");
                p.cmd("SET")
                    .arg(k)
                    .arg(v)
                    .arg("PX")
                    .arg(60_000 + v % 600_000);
                1
            }
            2 => {
                let k = self.key("a");
                p.cmd("APPEND").arg(k).arg(format!("{}.", v % 100));
                1
            }
            3 | 4 => {
                let k = self.key("c");
                let by = (v % 10) as i64 + 1;
                p.cmd("INCRBY").arg(&k).arg(by);
                expect.push(Expect::Incr(base, k));
                1
            }
            5 => {
                let k = self.key("l");
                p.cmd("RPUSH").arg(k).arg(v % 1000);
                1
            }
            6 => {
                let k = self.key("l");
                p.cmd("LPUSH").arg(&k).arg(v % 1000);
                p.cmd("LTRIM").arg(k).arg(0).arg(50);
                2
            }
            7 => {
                let k = self.key("h");
                p.cmd("HSET")
                    .arg(k)
                    .arg(format!("f{}", v % 20))
                    .arg(v % 1000);
                1
            }
            8 => {
                let k = self.key("h");
                p.cmd("HINCRBY").arg(k).arg(format!("n{}", v % 5)).arg(1);
                1
            }
            9 => {
                let k = self.key("t");
                p.cmd("SADD").arg(k).arg(v % 50);
                1
            }
            10 => {
                let k = self.key("t");
                p.cmd("SREM").arg(k).arg(v % 50);
                1
            }
            11 => {
                let k = self.key("z");
                p.cmd("ZADD")
                    .arg(k)
                    .arg(v % 1000)
                    .arg(format!("m{}", v % 30));
                1
            }
            12 => {
                let k = self.key("z");
                p.cmd("ZINCRBY").arg(k).arg(1).arg(format!("m{}", v % 30));
                1
            }
            13 => {
                let k = self.key("x");
                p.cmd("XADD")
                    .arg(k)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(100)
                    .arg("*")
                    .arg("n")
                    .arg(v % 1000);
                1
            }
            14 => {
                let k = self.key("s");
                match v % 3 {
                    0 => p.cmd("PEXPIRE").arg(k).arg(30_000 + v % 600_000),
                    1 => p.cmd("PERSIST").arg(k),
                    _ => p.cmd("DEL").arg(k),
                };
                1
            }
            15 => {
                // Split per slot by ferry.
                let (a, b) = (self.key("s"), self.key("s"));
                p.cmd("MSET").arg(a).arg(v).arg(b).arg(v / 2);
                1
            }
            16 => {
                let (a, b) = (self.key("a"), self.key("l"));
                if v % 2 == 0 {
                    p.cmd("DEL").arg(a).arg(b);
                } else {
                    p.cmd("UNLINK").arg(a).arg(b);
                }
                1
            }
            17 => {
                // One slot: a transaction and multi-key moves.
                let t = self.tag();
                p.cmd("MULTI");
                p.cmd("INCRBY").arg(format!("{t}:c")).arg(1);
                p.cmd("RPUSH").arg(format!("{t}:l")).arg(v % 100);
                p.cmd("SADD").arg(format!("{t}:s")).arg(v % 10);
                p.cmd("EXEC");
                5
            }
            18 => {
                let t = self.tag();
                match v % 3 {
                    0 => p
                        .cmd("LMOVE")
                        .arg(format!("{t}:l"))
                        .arg(format!("{t}:l2"))
                        .arg("LEFT")
                        .arg("RIGHT"),
                    1 => p
                        .cmd("SUNIONSTORE")
                        .arg(format!("{t}:u"))
                        .arg(format!("{t}:s"))
                        .arg(format!("{t}:s2")),
                    _ => p
                        .cmd("SMOVE")
                        .arg(format!("{t}:s"))
                        .arg(format!("{t}:s2"))
                        .arg(v % 10),
                };
                1
            }
            _ => {
                if self.opts.lua {
                    let t = self.tag();
                    p.cmd("EVAL")
                        .arg(
                            "redis.call('INCRBY', KEYS[1], ARGV[1]); \
                             return redis.call('HSET', KEYS[2], 'last', ARGV[1])",
                        )
                        .arg(2)
                        .arg(format!("{t}:lc"))
                        .arg(format!("{t}:lh"))
                        .arg(v % 10 + 1);
                } else {
                    let k = self.key("s");
                    p.cmd("SET").arg(k).arg(v);
                }
                1
            }
        }
    }
}
