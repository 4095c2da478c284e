//! One real server process on a free 127.0.0.1 port, in its own temp dir.
//!
//! Lifecycle:
//!
//! ```text
//! ServerBuilder::start
//!   ├─ pick a free port (and bus port for cluster nodes)
//!   ├─ spawn `<server> --port N --bind 127.0.0.1 --dir <tmp> ...`
//!   │     stdout/stderr -> <tmp>/stdout.log, log -> <tmp>/server.log
//!   ├─ spawn the watchdog (see below)
//!   └─ wait (bounded) until `INFO server` on that port reports our PID
//!        ├─ "Address already in use" / another server answered -> retry on a new port
//!        └─ exited / timed out -> StartFailed with the log tail
//! Drop: SIGTERM, up to 1 s grace, SIGKILL, reap; then the watchdog; then the dir.
//! ```
//!
//! **Watchdog.** Each server gets a tiny `sh` whose stdin is a pipe that only
//! this process holds open. If the test process dies without running `Drop`
//! (abort, `process::exit`, a server kept in a `static`), the pipe closes and
//! the watchdog SIGKILLs the server and removes its dir. On a normal `Drop` the
//! server is killed first and the watchdog after it, so it never fires.
//!
//! Error policy: starting returns `Result`; helpers on a running server
//! ([`Server::conn`], [`Server::digest`], [`Server::info`]) panic with the
//! server's address and log tail, which is what a test wants.

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill as send_signal};
use nix::unistd::Pid;
use tempfile::TempDir;

use crate::error::{Result, TestkitError, io_err};
use crate::flavor::Flavor;
use crate::port::{free_cluster_port, free_port};

/// Default bound on a server's start-up.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// Grace between SIGTERM and SIGKILL on drop.
const STOP_GRACE: Duration = Duration::from_secs(1);
/// How often a start is retried on "Address already in use".
const START_ATTEMPTS: usize = 5;
/// Read/write timeout on connections handed out by [`Server::conn`].
const CONN_IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Lines of log shown in errors.
pub(crate) const LOG_TAIL_LINES: usize = 30;

/// Configures and starts a [`Server`]. Obtain one with [`Server::builder`].
///
/// ```no_run
/// # use ferry_testkit::{Flavor, Server};
/// let server = Server::builder(Flavor::RedisStack74)
///     .arg("repl-diskless-sync", "yes")
///     .modules(true)
///     .password("p")
///     .start()?;
/// # Ok::<(), ferry_testkit::TestkitError>(())
/// ```
#[derive(Debug, Clone)]
pub struct ServerBuilder {
    flavor: Flavor,
    args: Vec<OsString>,
    stack_modules: bool,
    all_stack_modules: bool,
    module_paths: Vec<PathBuf>,
    cluster: bool,
    password: Option<String>,
    startup_timeout: Duration,
    preload_rdb: Option<Vec<u8>>,
    port: Option<u16>,
    tls: Option<TlsFiles>,
    sentinel_conf: Option<String>,
}

/// PEM files for a TLS-only server ([`ServerBuilder::tls_only`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA that signed both certificates (the server trusts it too).
    pub ca_cert: PathBuf,
    /// The server certificate (must name `127.0.0.1` or `localhost`).
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// A certificate with the client-auth usage, which cluster nodes present
    /// to each other on the TLS cluster bus.
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
}

impl ServerBuilder {
    /// A builder with the defaults described at [`Server::start`].
    pub fn new(flavor: Flavor) -> ServerBuilder {
        ServerBuilder {
            flavor,
            args: Vec::new(),
            stack_modules: false,
            all_stack_modules: false,
            module_paths: Vec::new(),
            cluster: false,
            password: None,
            startup_timeout: STARTUP_TIMEOUT,
            preload_rdb: None,
            port: None,
            tls: None,
            sentinel_conf: None,
        }
    }

    /// Runs a Sentinel (`<server> <dir>/sentinel.conf --sentinel`, the same
    /// binary as the flavor's server) whose config file starts with `conf`
    /// (e.g. `sentinel monitor …` lines); the sentinel rewrites that file
    /// as it learns. See [`crate::SentinelGroup`].
    pub fn sentinel(mut self, conf: &str) -> ServerBuilder {
        self.sentinel_conf = Some(conf.to_string());
        self
    }

    /// Adds `--<name> <value>` after the defaults (so it overrides them).
    /// The value is one argv element; for options taking several words use
    /// [`ServerBuilder::raw_args`].
    pub fn arg(mut self, name: &str, value: &str) -> ServerBuilder {
        self.args.push(format!("--{name}").into());
        self.args.push(value.into());
        self
    }

    /// Appends raw argv elements after the defaults.
    pub fn raw_args<I, S>(mut self, args: I) -> ServerBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Loads RedisJSON (`rejson.so`) and RedisBloom (`redisbloom.so`) from
    /// the Redis Stack wheel. Works for every flavor but Redis 6.2.
    pub fn modules(mut self, on: bool) -> ServerBuilder {
        self.stack_modules = on;
        self
    }

    /// Redis Stack 7.4 only: also loads RediSearch and RedisTimeSeries
    /// (which need the private libssl 1.1), so dumps carry MODULE_AUX
    /// records and time series. Implies [`ServerBuilder::modules`].
    pub fn all_stack_modules(mut self, on: bool) -> ServerBuilder {
        self.all_stack_modules = on;
        self
    }

    /// Loads one more module (`--loadmodule <path>`).
    pub fn module(mut self, path: impl Into<PathBuf>) -> ServerBuilder {
        self.module_paths.push(path.into());
        self
    }

    /// Starts the server as a cluster node (`cluster-enabled yes`, config
    /// file in its temp dir, and a free bus port at port + 10000).
    pub fn cluster(mut self, on: bool) -> ServerBuilder {
        self.cluster = on;
        self
    }

    /// Sets `requirepass` (and `masterauth`, for replicas and cluster nodes).
    pub fn password(mut self, password: &str) -> ServerBuilder {
        self.password = Some(password.to_string());
        self
    }

    /// Bounds the wait for the server to answer (default 20 s).
    pub fn startup_timeout(mut self, timeout: Duration) -> ServerBuilder {
        self.startup_timeout = timeout;
        self
    }

    /// Writes these bytes as `dump.rdb` into the server's dir before it
    /// starts, so the server loads them.
    pub fn preload_rdb(mut self, rdb: Vec<u8>) -> ServerBuilder {
        self.preload_rdb = Some(rdb);
        self
    }

    /// Listens on this port instead of a free one; no retry on another port
    /// if it is taken.
    pub fn port(mut self, port: u16) -> ServerBuilder {
        self.port = Some(port);
        self
    }

    /// Serves clients over TLS only: `--port 0`, the chosen port becomes
    /// `--tls-port` (client certificates are not asked for), and a cluster
    /// node also runs its bus over TLS (`--tls-cluster yes`). The test kit
    /// itself talks to the server over a Unix socket in its dir, so
    /// [`Server::conn`] and the cluster helpers work unchanged, while
    /// [`Server::url`] is the `rediss://` URL a client under test must use.
    pub fn tls_only(mut self, files: TlsFiles) -> ServerBuilder {
        self.tls = Some(files);
        self
    }

    /// Starts the server and waits until it answers on its port. Retries on
    /// a new port when the chosen one turns out to be taken.
    pub fn start(self) -> Result<Server> {
        let binary = self.flavor.server_binary()?;
        let mut modules = self.module_paths.clone();
        if self.all_stack_modules && self.flavor != Flavor::RedisStack74 {
            return Err(TestkitError::Unsupported {
                flavor: self.flavor,
                what: "RediSearch and RedisTimeSeries (only Redis Stack 7.4 loads them here)",
            });
        }
        if self.stack_modules || self.all_stack_modules {
            if !self.flavor.supports_stack_modules() {
                return Err(TestkitError::Unsupported {
                    flavor: self.flavor,
                    what: "the Redis Stack modules (they crash its module loader)",
                });
            }
            let dir = Flavor::stack_module_dir()?;
            let mut names = vec!["rejson.so", "redisbloom.so"];
            if self.all_stack_modules {
                names.extend(["redisearch.so", "redistimeseries.so"]);
            }
            for (i, name) in names.into_iter().enumerate() {
                modules.insert(i, dir.join(name));
            }
        }
        let mut last_err = None;
        let attempts = if self.port.is_some() {
            1
        } else {
            START_ATTEMPTS
        };
        for _ in 0..attempts {
            let port = match self.port {
                Some(p) => p,
                None if self.cluster => free_cluster_port(),
                None => free_port(),
            };
            match self.spawn_once(&binary, &modules, port) {
                Ok(server) => return Ok(server),
                Err(Attempt::PortTaken(e)) => last_err = Some(e),
                Err(Attempt::Failed(e)) => return Err(e),
            }
        }
        Err(last_err.expect("at least one attempt"))
    }

    fn spawn_once(
        &self,
        binary: &Path,
        modules: &[PathBuf],
        port: u16,
    ) -> std::result::Result<Server, Attempt> {
        let flavor = self.flavor;
        let dir = tempfile::Builder::new()
            .prefix(&format!("ferry-{}-{port}-", flavor.slug()))
            .tempdir()
            .map_err(io_err("creating a temp dir"))?;
        let path = dir.path().to_path_buf();
        if let Some(rdb) = &self.preload_rdb {
            std::fs::write(path.join("dump.rdb"), rdb).map_err(io_err("writing dump.rdb"))?;
        }
        let out = File::create(path.join("stdout.log")).map_err(io_err("creating stdout.log"))?;
        let err = out.try_clone().map_err(io_err("cloning stdout.log"))?;

        let mut cmd = Command::new(binary);
        if let Some(conf) = &self.sentinel_conf {
            // The config file must be the first argument.
            let file = path.join("sentinel.conf");
            std::fs::write(&file, conf).map_err(io_err("writing sentinel.conf"))?;
            cmd.arg(&file).arg("--sentinel");
        }
        match &self.tls {
            None => {
                cmd.arg("--port").arg(port.to_string());
            }
            Some(tls) => {
                cmd.args(["--port", "0", "--tls-port", &port.to_string()]);
                cmd.arg("--tls-cert-file").arg(&tls.cert);
                cmd.arg("--tls-key-file").arg(&tls.key);
                cmd.arg("--tls-ca-cert-file").arg(&tls.ca_cert);
                cmd.arg("--tls-client-cert-file").arg(&tls.client_cert);
                cmd.arg("--tls-client-key-file").arg(&tls.client_key);
                cmd.args(["--tls-auth-clients", "no"]);
                cmd.arg("--unixsocket").arg(path.join(UNIX_SOCKET));
                cmd.args(["--unixsocketperm", "700"]);
                if self.cluster {
                    cmd.args(["--tls-cluster", "yes"]);
                }
            }
        }
        cmd.args(["--bind", "127.0.0.1", "--protected-mode", "no"]);
        cmd.arg("--dir").arg(&path);
        cmd.args(["--dbfilename", "dump.rdb", "--daemonize", "no"]);
        cmd.arg("--logfile").arg(path.join("server.log"));
        cmd.args(["--save", "", "--appendonly", "no"]);
        if self.sentinel_conf.is_none() {
            cmd.args(["--repl-diskless-sync-delay", "0"]);
        }
        if flavor.has_enable_debug_command() && self.sentinel_conf.is_none() {
            cmd.args(["--enable-debug-command", "yes"]);
        }
        if self.cluster {
            cmd.args(["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"]);
            cmd.arg("--cluster-config-file")
                .arg(path.join("nodes.conf"));
        }
        if let Some(pw) = &self.password {
            cmd.args(["--requirepass", pw, "--masterauth", pw]);
        }
        for m in modules {
            cmd.arg("--loadmodule").arg(m);
        }
        cmd.args(&self.args);
        if let Some(lib) = flavor.library_path() {
            cmd.env("LD_LIBRARY_PATH", lib);
        }
        cmd.current_dir(&path)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let launch = Launch {
            program: binary.to_path_buf(),
            args: cmd.get_args().map(|a| a.to_os_string()).collect(),
            library_path: flavor.library_path().map(Into::into),
        };
        let child = cmd
            .spawn()
            .map_err(io_err(format!("spawning {}", binary.display())))?;
        let pid = child.id();
        let watchdog = Watchdog::spawn(pid, &path);
        let mut server = Server {
            launch,
            flavor,
            port,
            pid,
            password: self.password.clone(),
            cluster: self.cluster,
            tls: self.tls.clone(),
            child: Some(child),
            watchdog,
            path,
            dir: Some(dir),
        };
        server.wait_ready(self.startup_timeout)?;
        Ok(server)
    }
}

/// Why one start attempt failed.
enum Attempt {
    /// The port was taken: try another.
    PortTaken(TestkitError),
    /// Anything else: give up.
    Failed(TestkitError),
}

impl From<TestkitError> for Attempt {
    fn from(e: TestkitError) -> Attempt {
        Attempt::Failed(e)
    }
}

/// The Unix socket of a TLS-only server, in its dir.
const UNIX_SOCKET: &str = "redis.sock";

/// How a server was started, to start it again ([`Server::restart`]).
#[derive(Debug, Clone)]
struct Launch {
    program: PathBuf,
    args: Vec<OsString>,
    library_path: Option<OsString>,
}

/// A running server process. Killed (and its dir removed) on drop.
#[derive(Debug)]
pub struct Server {
    launch: Launch,
    flavor: Flavor,
    port: u16,
    pid: u32,
    password: Option<String>,
    cluster: bool,
    tls: Option<TlsFiles>,
    child: Option<Child>,
    watchdog: Option<Watchdog>,
    path: PathBuf,
    dir: Option<TempDir>,
}

impl Server {
    /// A builder for a server of this flavor.
    pub fn builder(flavor: Flavor) -> ServerBuilder {
        ServerBuilder::new(flavor)
    }

    /// Starts a server with the defaults: `--bind 127.0.0.1 --port <free>
    /// --protected-mode no --dir <tmp> --dbfilename dump.rdb --daemonize no
    /// --logfile <tmp>/server.log --save '' --appendonly no
    /// --repl-diskless-sync-delay 0`, plus `--enable-debug-command yes` where
    /// the server knows it (7.0+, Valkey).
    pub fn start(flavor: Flavor) -> Result<Server> {
        ServerBuilder::new(flavor).start()
    }

    /// The flavor this server runs.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// The client port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `redis://127.0.0.1:<port>`, or `redis://:<password>@127.0.0.1:<port>`;
    /// `rediss://` for a TLS-only server.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        match &self.password {
            Some(pw) => format!("{scheme}://:{pw}@127.0.0.1:{}", self.port),
            None => format!("{scheme}://127.0.0.1:{}", self.port),
        }
    }

    /// The certificate files of a TLS-only server.
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// The URL the test kit's own connections use: [`Server::url`], or the
    /// Unix socket of a TLS-only server.
    fn admin_url(&self) -> String {
        if self.tls.is_none() {
            return self.url();
        }
        let socket = self.path.join(UNIX_SOCKET);
        match &self.password {
            Some(pw) => format!("redis+unix://{}?pass={pw}", socket.display()),
            None => format!("redis+unix://{}", socket.display()),
        }
    }

    /// The password, if one was set.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// Whether this server was started as a cluster node.
    pub fn is_cluster_node(&self) -> bool {
        self.cluster
    }

    /// The server's process id (still reported after [`Server::kill`]).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The server's temp dir (`--dir`): `dump.rdb`, `server.log`,
    /// `stdout.log`, `nodes.conf`.
    pub fn dir(&self) -> &Path {
        &self.path
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The last `lines` lines of the server log, followed by the tail of its
    /// stdout/stderr when that is not empty (linker errors, crash reports).
    pub fn log_tail(&self, lines: usize) -> String {
        let mut s = tail_file(&self.path.join("server.log"), lines);
        let out = tail_file(&self.path.join("stdout.log"), lines);
        if !out.trim().is_empty() {
            s.push_str("\n--- stdout/stderr ---\n");
            s.push_str(&out);
        }
        s
    }

    /// A new connection (5 s connect timeout, 60 s read/write timeouts).
    pub fn try_conn(&self) -> Result<redis::Connection> {
        let ctx = || format!("connecting to {} ({})", self.addr(), self.flavor);
        let client =
            redis::Client::open(self.admin_url()).map_err(|source| TestkitError::Redis {
                context: ctx(),
                source,
            })?;
        let conn = client
            .get_connection_with_timeout(Duration::from_secs(5))
            .and_then(|c| {
                c.set_read_timeout(Some(CONN_IO_TIMEOUT))?;
                c.set_write_timeout(Some(CONN_IO_TIMEOUT))?;
                Ok(c)
            })
            .map_err(|source| TestkitError::Redis {
                context: ctx(),
                source,
            })?;
        Ok(conn)
    }

    /// A new connection; panics with the log tail if the server does not
    /// answer.
    pub fn conn(&self) -> redis::Connection {
        self.try_conn().unwrap_or_else(|e| self.fail(&e))
    }

    /// Runs `SAVE` and returns the bytes of `<dir>/dump.rdb`.
    pub fn dump_rdb(&self) -> Result<Vec<u8>> {
        let mut conn = self.try_conn()?;
        redis::cmd("SAVE")
            .query::<()>(&mut conn)
            .map_err(|source| TestkitError::Redis {
                context: format!("SAVE on {}", self.addr()),
                source,
            })?;
        let file = self.path.join("dump.rdb");
        std::fs::read(&file).map_err(io_err(format!("reading {}", file.display())))
    }

    /// `DEBUG DIGEST`: a hash of the whole dataset (40 hex digits; all zeros
    /// when empty). Panics on error.
    pub fn digest(&self) -> String {
        let mut conn = self.conn();
        redis::cmd("DEBUG")
            .arg("DIGEST")
            .query::<String>(&mut conn)
            .unwrap_or_else(|e| self.fail(&e))
    }

    /// `INFO <section>` as text. Panics on error.
    pub fn info(&self, section: &str) -> String {
        let mut conn = self.conn();
        redis::cmd("INFO")
            .arg(section)
            .query::<String>(&mut conn)
            .unwrap_or_else(|e| self.fail(&e))
    }

    /// Sends SIGKILL now and reaps the process. Idempotent. The temp dir
    /// (and so the log) stays until drop.
    pub fn kill(&mut self) {
        self.stop(Duration::ZERO);
    }

    /// Starts the server again after [`Server::kill`] or [`Server::stop`]
    /// (stopping it first if it still runs): same binary, arguments, port
    /// and dir, so a cluster node keeps its `nodes.conf` and rejoins its
    /// cluster (as a replica if a failover replaced it meanwhile). Waits
    /// (bounded) until it answers.
    pub fn restart(&mut self) -> Result<()> {
        self.stop(STOP_GRACE);
        let out = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.path.join("stdout.log"))
            .map_err(io_err("opening stdout.log"))?;
        let err = out.try_clone().map_err(io_err("cloning stdout.log"))?;
        let mut cmd = Command::new(&self.launch.program);
        cmd.args(&self.launch.args);
        if let Some(lib) = &self.launch.library_path {
            cmd.env("LD_LIBRARY_PATH", lib);
        }
        cmd.current_dir(&self.path)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = cmd.spawn().map_err(io_err(format!(
            "spawning {} again",
            self.launch.program.display()
        )))?;
        self.pid = child.id();
        self.child = Some(child);
        self.watchdog = Watchdog::spawn(self.pid, &self.path);
        self.wait_ready(STARTUP_TIMEOUT).map_err(|a| match a {
            Attempt::PortTaken(e) | Attempt::Failed(e) => e,
        })
    }

    /// SIGTERM, up to `grace` for the process to exit, then SIGKILL; reaps
    /// it and disarms the watchdog. Idempotent.
    pub fn stop(&mut self, grace: Duration) {
        if let Some(mut child) = self.child.take() {
            terminate(&mut child, grace);
        }
        if let Some(w) = self.watchdog.take() {
            w.disarm();
        }
    }

    /// Panics with the address, the error and the log tail.
    pub(crate) fn fail(&self, e: &dyn std::fmt::Display) -> ! {
        panic!(
            "{} server at {}: {e}\n--- server log tail ({}) ---\n{}",
            self.flavor,
            self.addr(),
            self.path.display(),
            self.log_tail(LOG_TAIL_LINES)
        )
    }

    fn wait_ready(&mut self, timeout: Duration) -> std::result::Result<(), Attempt> {
        let start = Instant::now();
        let failed = |s: &Server, reason: String| TestkitError::StartFailed {
            flavor: s.flavor,
            port: s.port,
            reason,
            log_tail: s.log_tail(LOG_TAIL_LINES),
        };
        loop {
            let exited = match &mut self.child {
                Some(c) => c.try_wait().map_err(io_err("waiting for the server"))?,
                None => None,
            };
            if let Some(status) = exited {
                let e = failed(self, format!("the process exited ({status})"));
                let tail = self.log_tail(LOG_TAIL_LINES);
                return Err(if tail.contains("Address already in use") {
                    Attempt::PortTaken(e)
                } else {
                    Attempt::Failed(e)
                });
            }
            if let Some(reported) = self.probe_pid() {
                if reported == self.pid {
                    return Ok(());
                }
                // Someone else's server holds the port: ours will fail to bind.
                let e = failed(
                    self,
                    format!("port answered by another server (pid {reported})"),
                );
                self.kill();
                return Err(Attempt::PortTaken(e));
            }
            if start.elapsed() > timeout {
                let e = TestkitError::Timeout {
                    what: format!("{} server on {} to answer", self.flavor, self.addr()),
                    seconds: timeout.as_secs_f64(),
                    log_tail: self.log_tail(LOG_TAIL_LINES),
                };
                return Err(Attempt::Failed(e));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `process_id` from `INFO server`, if the port answers (and is not
    /// loading).
    fn probe_pid(&self) -> Option<u32> {
        let client = redis::Client::open(self.admin_url()).ok()?;
        let mut conn = client
            .get_connection_with_timeout(Duration::from_millis(500))
            .ok()?;
        conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let info: String = redis::cmd("INFO").arg("server").query(&mut conn).ok()?;
        info_field(&info, "process_id")?.parse().ok()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() && self.dir.is_some() {
            eprintln!(
                "--- {} server {} (pid {}) log tail, dropped while panicking ---\n{}",
                self.flavor,
                self.addr(),
                self.pid,
                self.log_tail(LOG_TAIL_LINES)
            );
        }
        self.stop(STOP_GRACE);
        if let Some(dir) = self.dir.take() {
            if std::env::var_os("FERRY_KEEP_TMP").is_some() {
                let kept = dir.keep();
                eprintln!("ferry-testkit: kept {}", kept.display());
            }
        }
    }
}

/// The value of `field` in an `INFO` reply (`field:value` lines).
pub fn info_field(info: &str, field: &str) -> Option<String> {
    ferry_ops::Info::parse(info).get(field).map(str::to_owned)
}

/// SIGTERM, wait up to `grace`, SIGKILL, reap.
pub(crate) fn terminate(child: &mut Child, grace: Duration) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let pid = i32::try_from(child.id()).ok();
    if let (false, Some(pid)) = (grace.is_zero(), pid) {
        let _ = send_signal(Pid::from_raw(pid), Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(_) => break,
            }
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Whether a process with this id exists (and is not a zombie we could see).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if send_signal(Pid::from_raw(raw), None::<Signal>).is_err() {
        return false;
    }
    // A zombie still accepts signal 0; /proc tells it apart.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Last `lines` lines of a file ("" if unreadable).
pub(crate) fn tail_file(path: &Path, lines: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Kills the server if this process dies without dropping it (see module docs).
#[derive(Debug)]
struct Watchdog {
    child: Child,
    /// Held open; its closing is the watchdog's trigger.
    _stdin: Option<ChildStdin>,
}

impl Watchdog {
    fn spawn(server_pid: u32, dir: &Path) -> Option<Watchdog> {
        let script = if std::env::var_os("FERRY_KEEP_TMP").is_some() {
            r#"read _ignored; kill -9 "$1" 2>/dev/null"#
        } else {
            r#"read _ignored; kill -9 "$1" 2>/dev/null; sleep 0.2; rm -rf "$2""#
        };
        let mut child = Command::new("sh")
            .args(["-c", script, "ferry-watchdog"])
            .arg(server_pid.to_string())
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let stdin = child.stdin.take();
        Some(Watchdog {
            child,
            _stdin: stdin,
        })
    }

    /// Kills the watchdog before it can fire, then closes its pipe.
    fn disarm(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        drop(self._stdin.take());
    }
}
