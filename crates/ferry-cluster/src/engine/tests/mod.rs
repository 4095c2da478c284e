//! Unit tests of the engine core: no servers, no tokio; replies are fed by
//! hand and time is moved by hand. `harness` drives a [`Core`] and reads
//! back what it wrote per node as command lines.

mod harness;
mod plain_groups;
mod redirects;
mod standalone;
mod tolerate;
mod transactions;
mod wait;

use super::entry::{demoted, topology_changing};

#[test]
fn replies_of_a_demoted_or_failing_master_are_topology_changes() {
    for m in [
        &b"ERR WAIT cannot be used with replica instances. Please also note"[..],
        b"UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)",
        b"-UNBLOCKED force unblock",
        b"READONLY You can't write against a read only replica.",
        b"MOVED 3999 127.0.0.1:7001",
        b"LOADING Redis is loading the dataset in memory",
        b"CLUSTERDOWN The cluster is down",
        b"MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
        b"TRYAGAIN Multiple keys request during rehashing of slot",
    ] {
        assert!(topology_changing(m), "{}", m.escape_ascii());
    }
    for m in [
        &b"ERR unknown command 'WAIT'"[..],
        b"NOPERM this user has no permissions to run the 'wait' command",
        b"OOM command not allowed when used memory > 'maxmemory'.",
        b"WRONGTYPE Operation against a key holding the wrong kind of value",
    ] {
        assert!(!topology_changing(m), "{}", m.escape_ascii());
    }
    assert!(demoted(b"ERR WAIT cannot be used with replica instances."));
    assert!(!demoted(
        b"READONLY You can't write against a read only replica."
    ));
}
