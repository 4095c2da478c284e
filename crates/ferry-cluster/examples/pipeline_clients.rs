//! Client cost of `ferry verify`'s first check with two clients: this
//! crate's [`Conn::call_many`] against the `redis` crate's pipeline (its
//! synchronous connection: the workspace builds it without an async
//! runtime), on one real Redis 7.0 server holding `N` strings of 100 bytes.
//! Each round trip is `PTTL` + `GET` of 1,000 keys, as `ferry verify` sends
//! to a cluster master. Prints wall time, keys/s and the process's CPU time
//! for each; run: `cargo run --release -p ferry-cluster --example
//! pipeline_clients -- [N]`.

use std::time::{Duration, Instant};

use ferry_cluster::{Auth, Conn};
use ferry_testkit::{Flavor, Server};

const BATCH: usize = 1000;

/// CPU seconds this process used so far (user + system).
fn cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(") ").map_or("", |x| x.1);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let server = Server::start(Flavor::Redis70).expect("a Redis 7.0 server");
    let mut c = server.conn();
    for lo in (0..n).step_by(10_000) {
        let mut p = redis::pipe();
        for i in lo..(lo + 10_000).min(n) {
            p.cmd("SET")
                .arg(format!("k:{i}"))
                .arg(&[b'x'; 100][..])
                .ignore();
        }
        p.query::<()>(&mut c).expect("fill");
    }
    let keys: Vec<Vec<u8>> = (0..n).map(|i| format!("k:{i}").into_bytes()).collect();

    // The redis crate: one pipeline per batch, replies as typed values.
    let (t, c0) = (Instant::now(), cpu());
    let mut got = 0usize;
    for batch in keys.chunks(BATCH) {
        let mut p = redis::pipe();
        for k in batch {
            p.cmd("PTTL").arg(k).cmd("GET").arg(k);
        }
        let replies: Vec<redis::Value> = p.query(&mut c).expect("pipeline");
        got += replies.len() / 2;
    }
    let (redis_s, redis_cpu) = (t.elapsed().as_secs_f64(), cpu() - c0);
    assert_eq!(got, n);

    // This crate's Conn, as `ferry verify` uses it.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (t, c0) = (Instant::now(), cpu());
    let got = rt.block_on(async {
        let mut conn = Conn::connect(&server.addr(), &Auth::none(), Duration::from_secs(5))
            .await
            .expect("connect");
        let mut got = 0usize;
        for batch in keys.chunks(BATCH) {
            let mut cmds: Vec<Vec<&[u8]>> = Vec::with_capacity(2 * batch.len());
            for k in batch {
                cmds.push(vec![b"PTTL", k]);
                cmds.push(vec![b"GET", k]);
            }
            got += conn
                .call_many(&cmds, Duration::from_secs(30))
                .await
                .expect("pipeline")
                .len()
                / 2;
        }
        got
    });
    let (conn_s, conn_cpu) = (t.elapsed().as_secs_f64(), cpu() - c0);
    assert_eq!(got, n);
    println!("| client | seconds | keys/s | client CPU s |");
    println!("|---|---:|---:|---:|");
    for (name, s, c) in [
        ("redis crate 1.x, sync pipeline", redis_s, redis_cpu),
        ("ferry Conn::call_many", conn_s, conn_cpu),
    ] {
        println!("| {name} | {s:.2} | {:.0} | {c:.2} |", n as f64 / s);
    }
}
