//! Free loopback ports.
//!
//! A port is "free" if binding `127.0.0.1:port` succeeds right now. That is a
//! race by nature (another process may take it before the server binds), so
//! the server start retries on "Address already in use". Within one process
//! a port is never handed out twice, which removes the races between tests of
//! the same binary.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, OnceLock};

/// Offset of the cluster bus port from the client port.
pub const CLUSTER_BUS_OFFSET: u16 = 10000;

fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static SET: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    SET.get_or_init(Default::default)
}

fn bindable(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// Returns a port on 127.0.0.1 that was free a moment ago and that this
/// process has not handed out before.
///
/// # Panics
/// If no such port is found in 1000 tries (the machine is out of ports).
pub fn free_port() -> u16 {
    pick(false)
}

/// Like [`free_port`], but `port + 10000` (the cluster bus port) is free too
/// and also reserved.
///
/// # Panics
/// If no such port is found in 1000 tries.
pub fn free_cluster_port() -> u16 {
    pick(true)
}

fn pick(with_bus: bool) -> u16 {
    for _ in 0..1000 {
        // Let the kernel choose: it skips ports in use.
        let Ok(listener) = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)) else {
            continue;
        };
        let Ok(addr) = listener.local_addr() else {
            continue;
        };
        let port = addr.port();
        drop(listener);
        let mut taken = handed_out().lock().unwrap_or_else(|e| e.into_inner());
        if taken.contains(&port) {
            continue;
        }
        if with_bus {
            let Some(bus) = port.checked_add(CLUSTER_BUS_OFFSET) else {
                continue;
            };
            if taken.contains(&bus) || !bindable(bus) {
                continue;
            }
            taken.insert(bus);
        }
        taken.insert(port);
        return port;
    }
    panic!("ferry-testkit: no free 127.0.0.1 port found in 1000 tries");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_bus_ports_fit() {
        let mut seen = HashSet::new();
        for _ in 0..50 {
            let p = free_cluster_port();
            assert!(p <= u16::MAX - CLUSTER_BUS_OFFSET);
            assert!(seen.insert(p));
            assert!(seen.insert(p + CLUSTER_BUS_OFFSET));
            let q = free_port();
            assert!(seen.insert(q), "port {q} handed out twice");
        }
    }
}
