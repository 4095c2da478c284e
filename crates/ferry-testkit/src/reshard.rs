//! Moving slots between the masters of a test [`Cluster`]: the legacy
//! `redis-cli --cluster reshard` (`SETSLOT IMPORTING/MIGRATING`, `MIGRATE`
//! key by key, `SETSLOT NODE`) and Valkey 9's atomic slot migration
//! (`CLUSTER MIGRATESLOTS`, polled with `CLUSTER GETSLOTMIGRATIONS`).
//! Both are bounded in time; `redis-cli` is the one the kit selects by
//! path and version ([`Flavor::cli_binary`]).

use std::process::Command;
use std::time::{Duration, Instant};

use crate::cluster::Cluster;
use crate::error::{Result, TestkitError};
use crate::flavor::Flavor;
use crate::server::Server;
use crate::tools::run_bounded;

impl Cluster {
    /// Node `i`'s id (`CLUSTER MYID`).
    pub fn node_id(&self, i: usize) -> Result<String> {
        let node = &self.nodes[i];
        redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut node.try_conn()?)
            .map_err(|source| TestkitError::Redis {
                context: format!("{}: CLUSTER MYID", node.addr()),
                source,
            })
    }

    /// Moves `slots` slots from master `from` to master `to` with
    /// `redis-cli --cluster reshard <node 0> --cluster-from <id>
    /// --cluster-to <id> --cluster-slots N --cluster-yes`, killed after
    /// `timeout`; then waits until every node agrees on the new map.
    /// Returns redis-cli's output.
    pub fn reshard(
        &self,
        from: usize,
        to: usize,
        slots: usize,
        timeout: Duration,
    ) -> Result<String> {
        let (from_id, to_id) = (self.node_id(from)?, self.node_id(to)?);
        let mut cmd = Command::new(Flavor::cli_binary()?);
        cmd.args(["--cluster", "reshard", &self.nodes[0].addr()]);
        cmd.args(["--cluster-from", &from_id, "--cluster-to", &to_id]);
        cmd.args(["--cluster-slots", &slots.to_string(), "--cluster-yes"]);
        self.cli_args(&mut cmd);
        let started = Instant::now();
        let out = run_bounded(&mut cmd, timeout)?;
        self.wait_converged(
            timeout
                .saturating_sub(started.elapsed())
                .max(Duration::from_secs(5)),
        )?;
        Ok(out)
    }

    /// Whether the nodes have Valkey 9's atomic slot migration (`CLUSTER
    /// MIGRATESLOTS`), asked with `COMMAND INFO`.
    pub fn has_atomic_migration(&self) -> bool {
        let Ok(mut conn) = self.nodes[0].try_conn() else {
            return false;
        };
        let reply: redis::RedisResult<redis::Value> = redis::cmd("COMMAND")
            .arg("INFO")
            .arg("CLUSTER|MIGRATESLOTS")
            .query(&mut conn);
        matches!(reply, Ok(redis::Value::Array(a)) if a.first().is_some_and(|v| *v != redis::Value::Nil))
    }

    /// Moves slots `lo..=hi` (all served by master `from`) to master `to`
    /// with `CLUSTER MIGRATESLOTS SLOTSRANGE lo hi NODE <id>` and waits
    /// (at most `timeout`) until `CLUSTER GETSLOTMIGRATIONS` on `from`
    /// reports the job `success` and every node agrees on the new map.
    ///
    /// # Errors
    /// [`TestkitError::Unsupported`] without atomic migration; the job's
    /// state and message if it fails; a timeout.
    pub fn migrate_slots_atomic(
        &self,
        from: usize,
        to: usize,
        lo: u16,
        hi: u16,
        timeout: Duration,
    ) -> Result<()> {
        if !self.has_atomic_migration() {
            return Err(TestkitError::Unsupported {
                flavor: self.nodes[0].flavor(),
                what: "atomic slot migration (CLUSTER MIGRATESLOTS)",
            });
        }
        let source = &self.nodes[from];
        let to_id = self.node_id(to)?;
        let redis_err = |what: &str| {
            let context = format!("{}: {what}", source.addr());
            move |source| TestkitError::Redis { context, source }
        };
        let mut conn = source.try_conn()?;
        redis::cmd("CLUSTER")
            .arg("MIGRATESLOTS")
            .arg("SLOTSRANGE")
            .arg(lo)
            .arg(hi)
            .arg("NODE")
            .arg(&to_id)
            .query::<()>(&mut conn)
            .map_err(redis_err("CLUSTER MIGRATESLOTS"))?;
        let started = Instant::now();
        loop {
            let jobs: redis::Value = redis::cmd("CLUSTER")
                .arg("GETSLOTMIGRATIONS")
                .query(&mut conn)
                .map_err(redis_err("CLUSTER GETSLOTMIGRATIONS"))?;
            let range = if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            };
            match job_state(&jobs, &range) {
                Some((state, _)) if state == "success" => break,
                Some((state, message)) if state == "failed" || state == "cancelled" => {
                    return Err(TestkitError::CommandFailed {
                        command: format!("CLUSTER MIGRATESLOTS SLOTSRANGE {lo} {hi} NODE {to_id}"),
                        status: state,
                        output: format!("{message}\n{}", self.log_tails()),
                    });
                }
                _ => {}
            }
            if started.elapsed() > timeout {
                return Err(self.timeout_err(&format!("atomic migration of {range}"), timeout));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.wait_converged(
            timeout
                .saturating_sub(started.elapsed())
                .max(Duration::from_secs(5)),
        )
    }

    fn timeout_err(&self, what: &str, timeout: Duration) -> TestkitError {
        TestkitError::Timeout {
            what: what.to_owned(),
            seconds: timeout.as_secs_f64(),
            log_tail: self.log_tails(),
        }
    }

    /// The index of the master serving `slot`.
    pub fn master_of_slot(&self, slot: u16) -> Option<usize> {
        let port = crate::cluster::port_of_slot(&self.slot_map(), slot)?;
        self.nodes.iter().position(|n: &Server| n.port() == port)
    }
}

/// (state, message) of the newest job moving exactly `range`.
fn job_state(jobs: &redis::Value, range: &str) -> Option<(String, String)> {
    let redis::Value::Array(jobs) = jobs else {
        return None;
    };
    jobs.iter().rev().find_map(|job| {
        let pairs: Vec<(String, String)> = match job {
            redis::Value::Map(m) => m.iter().map(|(k, v)| (text(k), text(v))).collect(),
            redis::Value::Array(a) => a
                .chunks(2)
                .map(|kv| Some((text(&kv[0]), text(kv.get(1)?))))
                .collect::<Option<_>>()?,
            _ => return None,
        };
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        (get("slot_ranges")? == range).then(|| {
            (
                get("state").unwrap_or_default(),
                get("message").unwrap_or_default(),
            )
        })
    })
}

fn text(v: &redis::Value) -> String {
    match v {
        redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        redis::Value::SimpleString(s) => s.clone(),
        redis::Value::Int(i) => i.to_string(),
        _ => String::new(),
    }
}
