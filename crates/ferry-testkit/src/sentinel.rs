//! A Sentinel-managed master: one master, its replicas, and sentinels
//! watching it, all real processes on 127.0.0.1 (ports from the kit's
//! allocator, binaries chosen by flavor, stopped by PID on drop).
//!
//! ```text
//! master ◀── REPLICAOF ── replica × n
//!    ▲
//!    └── sentinel monitor <name> 127.0.0.1 <port> <quorum> ── sentinel × m
//! ```
//!
//! [`SentinelGroup::failover`] runs `SENTINEL FAILOVER <name>` and waits
//! until every sentinel names the new master and it is a master.

use std::time::{Duration, Instant};

use crate::error::{Result, TestkitError};
use crate::flavor::Flavor;
use crate::server::{Server, info_field};

/// Bound of the waits here (start-up sync, sentinel discovery, failover).
const WAIT: Duration = Duration::from_secs(60);

/// A master, its replicas and the sentinels that watch it.
#[derive(Debug)]
pub struct SentinelGroup {
    /// The name the sentinels monitor the master by.
    pub name: String,
    /// The data servers: the first is the master at start.
    pub servers: Vec<Server>,
    /// The sentinels.
    pub sentinels: Vec<Server>,
}

impl SentinelGroup {
    /// Starts a master with `replicas` replicas (in sync before this
    /// returns) and `sentinels` sentinels with quorum `sentinels / 2 + 1`,
    /// and waits until every sentinel knows every replica and the other
    /// sentinels. Data servers get `extra` arguments (`--name value`).
    pub fn start(
        flavor: Flavor,
        name: &str,
        replicas: usize,
        sentinels: usize,
        extra: &[(&str, &str)],
    ) -> Result<SentinelGroup> {
        SentinelGroup::start_with_password(flavor, name, replicas, sentinels, extra, None)
    }

    /// [`SentinelGroup::start`] with `password` on every data server
    /// (`requirepass`, `masterauth`) and every sentinel (`requirepass`,
    /// and `sentinel auth-pass` to reach the servers).
    pub fn start_with_password(
        flavor: Flavor,
        name: &str,
        replicas: usize,
        sentinels: usize,
        extra: &[(&str, &str)],
        password: Option<&str>,
    ) -> Result<SentinelGroup> {
        let data = || {
            let mut b = Server::builder(flavor);
            if let Some(pw) = password {
                b = b.password(pw);
            }
            for (k, v) in extra {
                b = b.arg(k, v);
            }
            b.start()
        };
        let mut servers = vec![data()?];
        for _ in 0..replicas {
            let r = data()?;
            let mut c = r.try_conn()?;
            redis::cmd("REPLICAOF")
                .arg("127.0.0.1")
                .arg(servers[0].port())
                .query::<()>(&mut c)
                .map_err(|source| TestkitError::Redis {
                    context: format!("REPLICAOF on {}", r.addr()),
                    source,
                })?;
            servers.push(r);
        }
        let mut conf = format!(
            "sentinel monitor {name} 127.0.0.1 {port} {quorum}\n\
             sentinel down-after-milliseconds {name} 2000\n\
             sentinel failover-timeout {name} 20000\n\
             sentinel parallel-syncs {name} {replicas}\n",
            port = servers[0].port(),
            quorum = sentinels / 2 + 1,
        );
        if let Some(pw) = password {
            conf.push_str(&format!("sentinel auth-pass {name} {pw}\n"));
        }
        let sentinel = || {
            let b = Server::builder(flavor).sentinel(&conf);
            match password {
                Some(pw) => b.password(pw),
                None => b,
            }
            .start()
        };
        let sentinels = (0..sentinels)
            .map(|_| sentinel())
            .collect::<Result<Vec<_>>>()?;
        let group = SentinelGroup {
            name: name.to_string(),
            servers,
            sentinels,
        };
        group.wait("the replicas to be in sync", || {
            group.servers[1..].iter().all(|r| {
                let info = r.info("replication");
                info_field(&info, "master_link_status").as_deref() == Some("up")
            })
        })?;
        let (n_replicas, n_sentinels) = (replicas, group.sentinels.len());
        group.wait(
            "every sentinel to know the replicas and the other sentinels",
            || {
                group.sentinels.iter().all(|s| {
                    let v = group.sentinel_master_fields(s);
                    let num = |k: &str| {
                        v.iter()
                            .find(|(f, _)| f == k)
                            .and_then(|(_, x)| x.parse::<usize>().ok())
                    };
                    num("num-slaves") == Some(n_replicas)
                        && num("num-other-sentinels") == Some(n_sentinels - 1)
                })
            },
        )?;
        Ok(group)
    }

    /// The sentinels' `host:port`s.
    pub fn sentinel_addrs(&self) -> Vec<String> {
        self.sentinels.iter().map(Server::addr).collect()
    }

    /// The master as `sentinel` names it (`SENTINEL GET-MASTER-ADDR-BY-NAME`).
    pub fn master_addr_of(&self, sentinel: &Server) -> Option<String> {
        let mut c = sentinel.try_conn().ok()?;
        let v: Option<(String, String)> = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(&self.name)
            .query(&mut c)
            .ok()?;
        v.map(|(h, p)| format!("{h}:{p}"))
    }

    /// The data server that is the master now (as the first sentinel says).
    pub fn master(&self) -> &Server {
        let addr = self.master_addr_of(&self.sentinels[0]);
        self.servers
            .iter()
            .find(|s| Some(s.addr()) == addr)
            .unwrap_or(&self.servers[0])
    }

    /// `SENTINEL FAILOVER <name>`; waits until every sentinel names a new
    /// master and that server reports `role:master`. Returns its address.
    pub fn failover(&self) -> Result<String> {
        let old = self.master().addr();
        let mut c = self.sentinels[0].try_conn()?;
        let _: () = redis::cmd("SENTINEL")
            .arg("FAILOVER")
            .arg(&self.name)
            .query(&mut c)
            .map_err(|source| TestkitError::Redis {
                context: format!("SENTINEL FAILOVER on {}", self.sentinels[0].addr()),
                source,
            })?;
        let mut new = None;
        self.wait("every sentinel to name the new master", || {
            let names: Vec<Option<String>> = self
                .sentinels
                .iter()
                .map(|s| self.master_addr_of(s))
                .collect();
            let first = names[0].clone();
            let agreed = first.is_some()
                && first.as_deref() != Some(old.as_str())
                && names.iter().all(|n| *n == first);
            let promoted = first
                .as_ref()
                .and_then(|a| self.servers.iter().find(|s| s.addr() == *a))
                .is_some_and(|s| {
                    info_field(&s.info("replication"), "role").as_deref() == Some("master")
                });
            if agreed && promoted {
                new = first;
            }
            agreed && promoted
        })?;
        Ok(new.unwrap_or_default())
    }

    /// `SENTINEL MASTER <name>` on `sentinel` as (field, value) pairs.
    fn sentinel_master_fields(&self, sentinel: &Server) -> Vec<(String, String)> {
        let Ok(mut c) = sentinel.try_conn() else {
            return Vec::new();
        };
        let v: Vec<String> = redis::cmd("SENTINEL")
            .arg("MASTER")
            .arg(&self.name)
            .query(&mut c)
            .unwrap_or_default();
        v.chunks(2)
            .filter_map(|p| match p {
                [k, v] => Some((k.clone(), v.clone())),
                _ => None,
            })
            .collect()
    }

    fn wait(&self, what: &str, mut cond: impl FnMut() -> bool) -> Result<()> {
        let until = Instant::now() + WAIT;
        while !cond() {
            if Instant::now() > until {
                let log_tail = self
                    .sentinels
                    .iter()
                    .map(|s| format!("--- sentinel {} ---\n{}", s.addr(), s.log_tail(15)))
                    .collect::<Vec<_>>()
                    .join("\n");
                return Err(TestkitError::Timeout {
                    what: what.to_string(),
                    seconds: WAIT.as_secs_f64(),
                    log_tail,
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }
}
