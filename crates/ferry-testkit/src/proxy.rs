//! A TCP proxy that injects network faults between a client under test and a
//! real server: cut every connection, partition (stop forwarding without
//! closing), add latency per chunk, throttle the bandwidth.
//!
//! ```text
//!             FaultProxy (127.0.0.1:<free port>)
//! client ───▶ accept ──▶ connect target ─┬─ thread: client ─▶ target  (bytes_to_target)
//!                                        └─ thread: target ─▶ client  (bytes_to_client)
//!   each chunk: wait while paused ─▶ sleep(delay) ─▶ write ─▶ pace to the throttle
//! ```
//!
//! Invariants:
//! * Plain std threads, no runtime: usable from sync and async tests alike.
//! * Bytes are forwarded in order, unchanged; a fault only ever delays,
//!   withholds or closes, never drops a byte of a connection that stays up.
//! * [`FaultProxy::cut`] shuts both sockets of every current connection
//!   (the client sees EOF, the server sees the client leave); the listener
//!   keeps accepting, so a reconnect goes through.
//! * [`FaultProxy::pause`] withholds bytes in both directions without
//!   closing anything (a partition): the kernel buffers fill and the peers
//!   just see silence. Connections accepted during a pause are paused too.
//! * When one side of a connection closes, the proxy closes both.
//! * Drop stops every thread and closes every socket (bounded: every
//!   blocking call has a short timeout).
//!
//! ```no_run
//! use ferry_testkit::{Flavor, Server, proxy::FaultProxy};
//! let server = Server::start(Flavor::Redis70)?;
//! let proxy = FaultProxy::start(server.addr())?;
//! let client = redis::Client::open(format!("redis://{}", proxy.addr()))?;
//! let mut conn = client.get_connection()?;
//! redis::cmd("PING").query::<String>(&mut conn)?;
//! proxy.cut(); // `conn` is dead now; a new connection works
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Result, TestkitError, io_err};

/// Bound on a blocking socket call, so flags (stop, cut, pause) are seen quickly.
const POLL: Duration = Duration::from_millis(20);
/// Bound on connecting to the target.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest chunk read at once.
const CHUNK: usize = 64 * 1024;

/// Counters of a [`FaultProxy`], since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Bytes forwarded from clients to the target.
    pub bytes_to_target: u64,
    /// Bytes forwarded from the target to clients.
    pub bytes_to_client: u64,
    /// Client connections accepted (and connected to the target).
    pub connections: u64,
    /// Connections open right now.
    pub active: u64,
    /// Connections closed by [`FaultProxy::cut`].
    pub cut: u64,
}

/// One proxied connection: clones of both sockets, to shut them from outside.
struct Conn {
    client: TcpStream,
    upstream: TcpStream,
    dead: AtomicBool,
}

impl Conn {
    /// Closes both sockets (both ways); idempotent. `true` the first time.
    fn close(&self) -> bool {
        let first = !self.dead.swap(true, Ordering::SeqCst);
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.upstream.shutdown(Shutdown::Both);
        first
    }
}

struct Shared {
    target: SocketAddr,
    stop: AtomicBool,
    paused: AtomicBool,
    /// Microseconds slept before forwarding each chunk.
    delay_us: AtomicU64,
    /// Bytes per second per direction and connection; 0 = unlimited.
    throttle: AtomicU64,
    to_target: AtomicU64,
    to_client: AtomicU64,
    connections: AtomicU64,
    cut: AtomicU64,
    conns: Mutex<Vec<Arc<Conn>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    fn conns(&self) -> MutexGuard<'_, Vec<Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn threads(&self) -> MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.threads.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A fault-injecting TCP proxy on a free 127.0.0.1 port; see the
/// [module docs](self). Stops its threads and closes its sockets on drop.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("target", &self.shared.target)
            .field("paused", &self.is_paused())
            .field("stats", &self.stats())
            .finish()
    }
}

impl FaultProxy {
    /// Listens on a free 127.0.0.1 port and forwards every connection to
    /// `target` (resolved once, now).
    pub fn start(target: impl ToSocketAddrs) -> Result<FaultProxy> {
        let target = target
            .to_socket_addrs()
            .map_err(io_err("resolving the proxy target"))?
            .next()
            .ok_or_else(|| TestkitError::Io {
                context: "resolving the proxy target".into(),
                source: std::io::Error::new(ErrorKind::NotFound, "no address"),
            })?;
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(io_err("binding the proxy listener"))?;
        let addr = listener
            .local_addr()
            .map_err(io_err("reading the proxy address"))?;
        let shared = Arc::new(Shared {
            target,
            stop: AtomicBool::new(false),
            paused: AtomicBool::new(false),
            delay_us: AtomicU64::new(0),
            throttle: AtomicU64::new(0),
            to_target: AtomicU64::new(0),
            to_client: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            cut: AtomicU64::new(0),
            conns: Mutex::new(Vec::new()),
            threads: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        let acceptor = std::thread::Builder::new()
            .name(format!("fault-proxy-{}", addr.port()))
            .spawn(move || accept_loop(&s, &listener))
            .map_err(io_err("spawning the proxy thread"))?;
        Ok(FaultProxy {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address connections are forwarded to.
    pub fn target(&self) -> SocketAddr {
        self.shared.target
    }

    /// Closes every current connection, both ways (each peer sees its
    /// socket closed); new connections are accepted as before. Returns how
    /// many were cut.
    pub fn cut(&self) -> usize {
        let conns: Vec<_> = self.shared.conns().drain(..).collect();
        let n = conns.iter().filter(|c| c.close()).count();
        self.shared.cut.fetch_add(n as u64, Ordering::SeqCst);
        n
    }

    /// `true`: stop forwarding in both directions, closing nothing (a
    /// network partition); `false`: forward again, withheld bytes first.
    pub fn pause(&self, on: bool) {
        self.shared.paused.store(on, Ordering::SeqCst);
    }

    /// Whether forwarding is paused.
    pub fn is_paused(&self) -> bool {
        self.shared.paused.load(Ordering::SeqCst)
    }

    /// Sleeps this long before forwarding each chunk (each direction);
    /// `Duration::ZERO` turns it off.
    pub fn delay(&self, delay: Duration) {
        let us = u64::try_from(delay.as_micros()).unwrap_or(u64::MAX);
        self.shared.delay_us.store(us, Ordering::SeqCst);
    }

    /// Limits each direction of each connection to about `bytes_per_sec`;
    /// 0 removes the limit.
    pub fn throttle(&self, bytes_per_sec: u64) {
        self.shared.throttle.store(bytes_per_sec, Ordering::SeqCst);
    }

    /// The counters so far.
    pub fn stats(&self) -> ProxyStats {
        let s = &self.shared;
        ProxyStats {
            bytes_to_target: s.to_target.load(Ordering::SeqCst),
            bytes_to_client: s.to_client.load(Ordering::SeqCst),
            connections: s.connections.load(Ordering::SeqCst),
            active: s
                .conns()
                .iter()
                .filter(|c| !c.dead.load(Ordering::SeqCst))
                .count() as u64,
            cut: s.cut.load(Ordering::SeqCst),
        }
    }

    /// Waits (bounded) until at least `n` connections were accepted in
    /// total; `false` on timeout.
    pub fn wait_connections(&self, n: u64, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        loop {
            if self.shared.connections.load(Ordering::SeqCst) >= n {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
        for c in self.shared.conns().drain(..) {
            c.close();
        }
        let threads: Vec<_> = self.shared.threads().drain(..).collect();
        for h in threads {
            let _ = h.join();
        }
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener) {
    for client in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else {
            std::thread::sleep(POLL);
            continue;
        };
        // A target that refuses: the client sees its connection closed.
        let Ok(upstream) = TcpStream::connect_timeout(&shared.target, CONNECT_TIMEOUT) else {
            continue;
        };
        let _ = spawn_conn(shared, client, upstream);
        shared.threads().retain(|h| !h.is_finished());
    }
}

fn spawn_conn(shared: &Arc<Shared>, client: TcpStream, upstream: TcpStream) -> std::io::Result<()> {
    for s in [&client, &upstream] {
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(POLL))?;
        s.set_write_timeout(Some(POLL))?;
    }
    let conn = Arc::new(Conn {
        client: client.try_clone()?,
        upstream: upstream.try_clone()?,
        dead: AtomicBool::new(false),
    });
    let up = (client.try_clone()?, upstream.try_clone()?);
    shared.conns().push(conn.clone());
    shared.connections.fetch_add(1, Ordering::SeqCst);
    let mut threads = shared.threads();
    for (from, to, to_target) in [(up.0, up.1, true), (upstream, client, false)] {
        let (s, c) = (shared.clone(), conn.clone());
        threads.push(std::thread::spawn(move || {
            forward(&s, &c, from, to, to_target);
            c.close();
            s.conns().retain(|x| !Arc::ptr_eq(x, &c));
        }));
    }
    Ok(())
}

/// Whether this direction must stop.
fn done(shared: &Shared, conn: &Conn) -> bool {
    shared.stop.load(Ordering::SeqCst) || conn.dead.load(Ordering::SeqCst)
}

/// Waits while paused; `false` if the connection ended meanwhile.
fn wait_unpaused(shared: &Shared, conn: &Conn) -> bool {
    while shared.paused.load(Ordering::SeqCst) {
        if done(shared, conn) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    !done(shared, conn)
}

/// Sleeps `d` in short steps; `false` if the connection ended meanwhile.
fn sleep_checked(shared: &Shared, conn: &Conn, d: Duration) -> bool {
    let until = Instant::now() + d;
    loop {
        if done(shared, conn) {
            return false;
        }
        let now = Instant::now();
        if now >= until {
            return true;
        }
        std::thread::sleep((until - now).min(POLL));
    }
}

/// Forwards one direction until EOF, an error, a cut or the proxy stopping.
fn forward(shared: &Shared, conn: &Conn, mut from: TcpStream, mut to: TcpStream, to_target: bool) {
    let counter = if to_target {
        &shared.to_target
    } else {
        &shared.to_client
    };
    let mut buf = vec![0u8; CHUNK];
    // Throttle pacing: when the bytes sent so far are "paid for".
    let mut paid_until = Instant::now();
    loop {
        if !wait_unpaused(shared, conn) {
            return;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if is_timeout(&e) => continue,
            Err(_) => return,
        };
        if !wait_unpaused(shared, conn) {
            return;
        }
        let delay = Duration::from_micros(shared.delay_us.load(Ordering::SeqCst));
        if !delay.is_zero() && !sleep_checked(shared, conn, delay) {
            return;
        }
        let mut sent = 0;
        while sent < n {
            let rate = shared.throttle.load(Ordering::SeqCst);
            // Under a throttle, write in slices of ~1/20 s worth of bytes.
            let slice = if rate == 0 {
                n - sent
            } else {
                (usize::try_from(rate / 20).unwrap_or(usize::MAX))
                    .max(1)
                    .min(n - sent)
            };
            let Some(w) = write_checked(shared, conn, &mut to, &buf[sent..sent + slice]) else {
                return;
            };
            sent += w;
            counter.fetch_add(w as u64, Ordering::SeqCst);
            if rate > 0 {
                let now = Instant::now();
                paid_until = paid_until.max(now) + Duration::from_secs_f64(w as f64 / rate as f64);
                if !sleep_checked(shared, conn, paid_until.saturating_duration_since(now)) {
                    return;
                }
                if !wait_unpaused(shared, conn) {
                    return;
                }
            }
        }
    }
}

/// Writes some of `data` (retrying on timeouts); `None` when the
/// connection ended.
fn write_checked(shared: &Shared, conn: &Conn, to: &mut TcpStream, data: &[u8]) -> Option<usize> {
    loop {
        if done(shared, conn) {
            return None;
        }
        match to.write(data) {
            Ok(0) => return None,
            Ok(n) => return Some(n),
            Err(e) if is_timeout(&e) || e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Flavor, Server};

    fn raw(proxy: &FaultProxy) -> TcpStream {
        let s = TcpStream::connect(proxy.addr()).expect("connect to the proxy");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }

    /// Sends `PING`, returns the reply line (or the error kind).
    fn ping(s: &mut TcpStream) -> std::result::Result<String, ErrorKind> {
        s.write_all(b"PING\r\n").map_err(|e| e.kind())?;
        read_line(s)
    }

    fn read_line(s: &mut TcpStream) -> std::result::Result<String, ErrorKind> {
        let mut out = Vec::new();
        let mut b = [0u8; 1];
        while !out.ends_with(b"\r\n") {
            match s.read(&mut b) {
                Ok(0) => return Err(ErrorKind::UnexpectedEof),
                Ok(_) => out.push(b[0]),
                Err(e) => return Err(e.kind()),
            }
        }
        Ok(String::from_utf8_lossy(&out).trim_end().to_string())
    }

    #[test]
    fn ping_cut_and_reconnect() {
        let server = Server::start(Flavor::Redis70).expect("server");
        let proxy = FaultProxy::start(server.addr()).expect("proxy");
        assert_eq!(proxy.target().to_string(), server.addr());
        let client = redis::Client::open(format!("redis://{}", proxy.addr())).unwrap();
        let mut conn = client.get_connection().unwrap();
        let pong: String = redis::cmd("PING").query(&mut conn).unwrap();
        assert_eq!(pong, "PONG");
        let s = proxy.stats();
        assert_eq!((s.connections, s.active, s.cut), (1, 1, 0));
        assert!(s.bytes_to_target > 0 && s.bytes_to_client >= 7, "{s:?}");

        assert_eq!(proxy.cut(), 1);
        assert!(redis::cmd("PING").query::<String>(&mut conn).is_err());
        let mut conn = client.get_connection().unwrap();
        let pong: String = redis::cmd("PING").query(&mut conn).unwrap();
        assert_eq!(pong, "PONG");
        let s = proxy.stats();
        assert_eq!((s.connections, s.active, s.cut), (2, 1, 1));
        // The server saw the cut client leave: only the new one remains.
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            let clients: String = redis::cmd("CLIENT")
                .arg("LIST")
                .query(&mut server.conn())
                .unwrap();
            // Ours through the proxy, plus the one asking.
            if clients.lines().count() == 2 {
                break;
            }
            assert!(Instant::now() < until, "{clients}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn pause_withholds_without_closing_then_delivers() {
        let server = Server::start(Flavor::Redis70).expect("server");
        let proxy = FaultProxy::start(server.addr()).expect("proxy");
        let mut s = raw(&proxy);
        assert_eq!(ping(&mut s).as_deref(), Ok("+PONG"));
        proxy.pause(true);
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        assert!(matches!(
            ping(&mut s),
            Err(ErrorKind::WouldBlock | ErrorKind::TimedOut)
        ));
        // New connections are paused too.
        let mut other = raw(&proxy);
        other
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        assert!(ping(&mut other).is_err());
        proxy.pause(false);
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        other
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(read_line(&mut s).as_deref(), Ok("+PONG"));
        assert_eq!(read_line(&mut other).as_deref(), Ok("+PONG"));
        assert_eq!(ping(&mut s).as_deref(), Ok("+PONG"));
        assert_eq!(proxy.stats().cut, 0);
    }

    #[test]
    fn delay_and_throttle_slow_it_down() {
        let server = Server::start(Flavor::Redis70).expect("server");
        let proxy = FaultProxy::start(server.addr()).expect("proxy");
        let mut s = raw(&proxy);
        proxy.delay(Duration::from_millis(100));
        let t = Instant::now();
        assert_eq!(ping(&mut s).as_deref(), Ok("+PONG"));
        assert!(
            t.elapsed() >= Duration::from_millis(200),
            "{:?}",
            t.elapsed()
        );
        proxy.delay(Duration::ZERO);

        // 40 kB of value at 100 kB/s: ~0.4 s.
        proxy.throttle(100_000);
        let value = vec![b'x'; 40_000];
        let mut cmd = format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n", value.len()).into_bytes();
        cmd.extend_from_slice(&value);
        cmd.extend_from_slice(b"\r\n");
        let t = Instant::now();
        s.write_all(&cmd).unwrap();
        assert_eq!(read_line(&mut s).as_deref(), Ok("+OK"));
        let took = t.elapsed();
        assert!(took >= Duration::from_millis(300), "{took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
        proxy.throttle(0);
        assert_eq!(ping(&mut s).as_deref(), Ok("+PONG"));
    }

    #[test]
    fn drop_closes_connections_and_stops_listening() {
        let server = Server::start(Flavor::Redis70).expect("server");
        let proxy = FaultProxy::start(server.addr()).expect("proxy");
        let addr = proxy.addr();
        let mut s = raw(&proxy);
        assert_eq!(ping(&mut s).as_deref(), Ok("+PONG"));
        let t = Instant::now();
        drop(proxy);
        assert!(t.elapsed() < Duration::from_secs(2));
        assert!(ping(&mut s).is_err());
        assert!(TcpStream::connect(addr).is_err());
    }
}
