//! Real Redis and Valkey servers for ferry's tests.
//!
//! * [`Flavor`]: which server (Redis 7.0 / 6.2 / Stack 7.4, Valkey 9) and
//!   where its binary is found (env override, `PATH`, pip package dirs).
//! * [`Server`]: one process on a free 127.0.0.1 port in its own temp dir,
//!   killed by PID on drop (also when the test panics; a watchdog covers
//!   aborts and servers kept in statics).
//! * [`Cluster`]: N masters (optionally with replicas) joined with
//!   `redis-cli --cluster create`, waited on until every node agrees.
//!   [`Cluster::reshard`] moves slots with `redis-cli --cluster reshard`,
//!   [`Cluster::migrate_slots_atomic`] with Valkey 9's `CLUSTER MIGRATESLOTS`.
//! * [`fixtures`]: a dataset that makes each server write every RDB type and
//!   encoding it has; bulk data for benchmarks.
//! * [`proxy`]: [`FaultProxy`], a TCP proxy that cuts, pauses, delays and
//!   throttles connections to a server (network faults for link tests).
//! * [`workload`]: a seeded random write workload of every type with a
//!   checker of acknowledged counter values (fault tests).
//! * [`rdb_scan`]: a small RDB walker that lists the type byte of every key,
//!   used to check the fixtures.
//!
//! Install the servers with `.ci/install-servers.sh` (as root). Environment
//! variables: `FERRY_REDIS70`, `FERRY_REDIS62`, `FERRY_REDIS_STACK74`,
//! `FERRY_VALKEY9` (server binary paths), `FERRY_REDIS_CLI`, `FERRY_PYTHON`
//! (the interpreter asked for pip package dirs), `FERRY_TEST_LIBS` (where
//! `lib/libssl.so.1.1` for Redis Stack lives, default `/opt/ferry-test-libs`),
//! `FERRY_KEEP_TMP` (keep server dirs after drop).
//!
//! ```no_run
//! use ferry_testkit::{Flavor, Server, fixtures};
//! let server = Server::start(Flavor::Valkey9)?;
//! let info = fixtures::populate(&mut server.conn(), Flavor::Valkey9)?;
//! let rdb = server.dump_rdb()?;
//! assert!(rdb.starts_with(b"VALKEY080"));
//! # let _ = info;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod cluster;
mod error;
mod flavor;
mod port;
mod reshard;
mod sentinel;
mod server;
mod tools;

pub mod fixtures;
pub mod proxy;
pub mod rdb_scan;
pub mod workload;

pub use cluster::{Cluster, SlotRange, port_of_slot, role};
pub use error::{Result, TestkitError};
pub use flavor::Flavor;
pub use port::{CLUSTER_BUS_OFFSET, free_cluster_port, free_port};
pub use proxy::{FaultProxy, ProxyStats};
pub use sentinel::SentinelGroup;
pub use server::{Server, ServerBuilder, TlsFiles, info_field, pid_alive};
pub use tools::{check_rdb, run_bounded};
pub use workload::XorShift64;
