//! The end-to-end tests of the `ferry` binary against real servers, as one
//! test binary (one link instead of one per file): each file is a module.
//!
//! Run one file's tests with a name filter, e.g.
//! `cargo test -p ferry --test e2e -- faults::` (or `-- --exact
//! faults::<test name>` for one test). Every test starts its own servers on
//! free 127.0.0.1 ports and runs `ferry` as a child process, so tests of
//! different modules share no process-global state and may run as threads
//! of this one process.
//!
//! To add a file `tests/e2e/<name>.rs`: declare `mod <name>;` below, and in
//! the file import the shared helpers as `crate::common::…` or
//! `crate::e2e_support::…` (not `mod common;`).

mod common;
mod e2e_support;

mod bad_input;
mod big_values;
mod cluster_ops;
mod cluster_source;
mod cluster_verify;
mod corrupt_inputs;
mod cross_slot;
mod daemon;
mod dashboard;
mod db_prefix;
mod deploy_files;
mod exactly_once;
mod faults;
mod rate_limit;
mod rdb_parity;
mod rdb_roundtrip;
mod reverse;
mod run_e2e;
mod sampler;
mod security;
mod sentinel_source;
mod source_reshard;
mod standalone;
mod target_tls;
mod ttl_hold;
mod verify;
