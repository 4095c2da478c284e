//! `ferry run` configuration (YAML).
//!
//! Unknown fields are rejected with their name and line; `${NAME}` in any
//! value is replaced by the environment variable `NAME` (for secrets), and
//! an unset variable is an error. Every key, at its default, is listed in
//! `config/ferry.example.yaml`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `one_way` (default) or `two_way`: this ferry and the one of the
    /// opposite direction run at the same time, each leaving out the
    /// other's writes (both configurations must say `two_way`).
    #[serde(default)]
    pub mode: SyncMode,
    /// The server to migrate from.
    pub source: Endpoint,
    /// Any node of the target cluster, or a standalone server (`rediss://`
    /// and `tls` as for the source: every master is then reached over TLS).
    pub target: Target,
    /// Directory for the saved replication position and the spool.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// HTTP listener for `/status` (JSON) and `/metrics` (Prometheus).
    #[serde(default)]
    pub http: Http,
    /// How snapshot keys are written.
    #[serde(default)]
    pub snapshot: Snapshot,
    /// Which keys to carry (for splitting a shared server).
    #[serde(default)]
    pub filter: Filter,
    /// Sampled verify while streaming.
    #[serde(default)]
    pub verify: Verify,
    /// Where the replication stream waits when the target is slower.
    #[serde(default)]
    pub spool: Spool,
}

/// Limits of the spool (`state_dir/spool`): the source's stream is read at
/// line rate into memory, then segment files, so the source never drops
/// ferry for its output buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spool {
    /// Bytes held in memory before spilling to segment files.
    #[serde(default = "default_spool_memory_bytes")]
    pub memory_bytes: usize,
    /// Most bytes held in all (memory and disk); at the cap ferry stops
    /// reading the source (`spool_full` in /status) until the target catches up.
    #[serde(default = "default_spool_cap_bytes")]
    pub cap_bytes: u64,
}

impl Default for Spool {
    fn default() -> Self {
        Spool {
            memory_bytes: default_spool_memory_bytes(),
            cap_bytes: default_spool_cap_bytes(),
        }
    }
}

fn default_spool_memory_bytes() -> usize {
    64 << 20
}

fn default_spool_cap_bytes() -> u64 {
    16 << 30
}

/// Continuous sampled verify during streaming (see `sampler.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verify {
    /// Random source keys compared with the target per second; 0 turns
    /// the sampler off.
    #[serde(default = "default_sample_per_second")]
    pub sample_per_second: u32,
    /// TTLs may differ by this many milliseconds.
    #[serde(default = "default_ttl_tolerance_ms")]
    pub ttl_tolerance_ms: i64,
}

impl Default for Verify {
    fn default() -> Self {
        Verify {
            sample_per_second: default_sample_per_second(),
            ttl_tolerance_ms: default_ttl_tolerance_ms(),
        }
    }
}

fn default_sample_per_second() -> u32 {
    5
}

fn default_ttl_tolerance_ms() -> i64 {
    2000
}

pub use ferry_ops::Filter;

/// One direction, or both at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// Source to target only.
    #[default]
    OneWay,
    /// Two ferries, opposite directions, at the same time (a gradual switch).
    TwoWay,
}

/// The source: a standalone server, any node of a cluster, or the
/// sentinels of a Sentinel-managed master.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// `redis://[user:password@]host:port`, or `rediss://` for TLS.
    /// Required, except with `sentinel`: then optional, and only its
    /// credentials and scheme are used (for the master the sentinels
    /// name); its host:port is ignored.
    #[serde(default)]
    pub url: String,
    /// The sentinels to ask for the master (selects `mode: sentinel`).
    #[serde(default)]
    pub sentinel: Option<crate::sentinel::SentinelConfig>,
    /// TLS settings (used with `rediss://`); certificates are verified by default.
    #[serde(default)]
    pub tls: Tls,
    /// Where each master's stream starts on a state_dir with no saved
    /// position (written by `ferry cutover --reverse`): `PSYNC <replid>
    /// <offset+1>` must be answered `+CONTINUE`; a full sync is refused.
    #[serde(default)]
    pub start_positions: Vec<crate::reverse::StartPosition>,
    /// What the source is (`auto`: a cluster when `INFO cluster` says
    /// `cluster_enabled:1`).
    #[serde(default)]
    pub mode: SourceMode,
    /// For a cluster source: replicate each shard from its master
    /// (default) or from one of its replicas.
    #[serde(default)]
    pub read_from: ReadFrom,
    /// For a cluster source: this process's share of the shards
    /// (`FERRY_PARTITION_INDEX` / `FERRY_PARTITION_COUNT` override it).
    #[serde(default)]
    pub partition: Option<Partition>,
    /// For a cluster source: how long no slot may move (no
    /// `MIGRATING`/`IMPORTING` marker, no atomic migration, no ownership
    /// change) before a shard that gained slots is resynced.
    #[serde(default = "default_reshard_settle_ms")]
    pub reshard_settle_ms: u64,
}

fn default_reshard_settle_ms() -> u64 {
    ferry_ops::DEFAULT_SETTLE.as_millis() as u64
}

/// What kind of server the source is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SourceMode {
    /// Detect from `INFO cluster` (`cluster_enabled`).
    #[default]
    Auto,
    /// One server: one link (today's layout of `state_dir`).
    Standalone,
    /// A Redis Cluster: one pipeline per source shard.
    Cluster,
    /// A Sentinel-managed primary (needs `source.sentinel`).
    Sentinel,
}

/// Which node of a source shard ferry replicates from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    /// The shard's master.
    #[default]
    Master,
    /// An online replica of the shard (spares the master the fork; a
    /// replica relays the master's stream with the same replid and offsets).
    Replica,
}

/// `source.partition`: process `index` of `count` takes the shards whose
/// position (by lowest slot at first discovery) modulo `count` is `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    /// This process, `0..count`.
    pub index: u32,
    /// How many processes share the source.
    pub count: u32,
}

/// Environment variable overriding `source.partition.index`.
pub const PARTITION_INDEX_ENV: &str = "FERRY_PARTITION_INDEX";
/// Environment variable overriding `source.partition.count`.
pub const PARTITION_COUNT_ENV: &str = "FERRY_PARTITION_COUNT";

/// The partition from the file, overridden by the environment (`lookup`).
fn partition_with(
    file: Option<Partition>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Partition>> {
    let num = |name: &str| -> Result<Option<u32>> {
        match lookup(name) {
            None => Ok(None),
            Some(v) if v.trim().is_empty() => Ok(None),
            Some(v) => v.trim().parse::<u32>().map(Some).map_err(|_| {
                anyhow::anyhow!("{name}={v:?} is not a partition number (0, 1, 2, ...)")
            }),
        }
    };
    let index = num(PARTITION_INDEX_ENV)?;
    let count = num(PARTITION_COUNT_ENV)?;
    let p = match (file, index, count) {
        (f, None, None) => f,
        (f, i, c) => {
            let index = i.or(f.map(|p| p.index));
            let count = c.or(f.map(|p| p.count));
            match (index, count) {
                (Some(index), Some(count)) => Some(Partition { index, count }),
                (None, _) => bail!(
                    "{PARTITION_COUNT_ENV} is set but no partition index: set {PARTITION_INDEX_ENV} \
                     or source.partition.index"
                ),
                (_, None) => bail!(
                    "{PARTITION_INDEX_ENV} is set but no partition count: set {PARTITION_COUNT_ENV} \
                     or source.partition.count"
                ),
            }
        }
    };
    if let Some(Partition { index, count }) = p {
        if count == 0 {
            bail!("source.partition.count is 0: at least 1 process must take the shards");
        }
        if index >= count {
            bail!(
                "source.partition.index {index} is not below source.partition.count {count} \
                 (indexes run 0..{})",
                count - 1
            );
        }
    }
    Ok(p)
}

/// TLS settings of an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM CA certificate(s) to trust instead of the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (mutual TLS); needs `key_file`.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Skip certificate verification (logged as a warning). Default false.
    #[serde(default)]
    pub insecure: bool,
    /// Name to verify the certificate against (default: the host of the URL).
    #[serde(default)]
    pub server_name: Option<String>,
}

/// The password never shows in debug output.
impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &redact(&self.url))
            .field("tls", &self.tls)
            .field("mode", &self.mode)
            .field("read_from", &self.read_from)
            .field("partition", &self.partition)
            .field("reshard_settle_ms", &self.reshard_settle_ms)
            .field("sentinel", &self.sentinel)
            .finish()
    }
}

impl Endpoint {
    /// The TLS configuration when the URL is `rediss://`.
    pub fn tls_config(&self) -> Option<ferry_tls::TlsConfig> {
        self.tls.config_for(&self.url)
    }
}

impl Tls {
    /// These settings when `url` is `rediss://`.
    fn config_for(&self, url: &str) -> Option<ferry_tls::TlsConfig> {
        let tls = ferry_ops::Endpoint::parse(url).is_ok_and(|e| e.tls);
        tls.then(|| self.config())
    }

    /// These settings, TLS on.
    pub fn config(&self) -> ferry_tls::TlsConfig {
        ferry_tls::TlsConfig {
            ca_file: self.ca_file.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            insecure: self.insecure,
            server_name: self.server_name.clone(),
        }
    }
}

/// The target: a cluster (any node) or a standalone server.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// `redis://[user:password@]host:port`, or `rediss://` for TLS.
    pub url: String,
    /// TLS settings (used with `rediss://`), as for the source.
    #[serde(default)]
    pub tls: Tls,
    /// `auto` (default): a cluster if the server has cluster support
    /// enabled (`INFO cluster`), standalone otherwise.
    #[serde(default)]
    pub mode: TargetKind,
    /// Commit ops per slot with a checkpoint key (exactly-once replay after
    /// a crash). Default true; a standalone target never uses them.
    #[serde(default)]
    pub checkpoints: Option<bool>,
    /// Milliseconds: with checkpoints, report an offset applied only once
    /// `WAIT 1 <ms>` says a replica of the master has its transactions, so
    /// a master killed before replicating loses nothing (what it had not
    /// replicated is probed and resent on the promoted replica). Every
    /// master needs a replica. Unset (default): no `WAIT`.
    #[serde(default)]
    pub wait_replicas: Option<u64>,
    /// Most commands per second written to the target, snapshot and stream
    /// alike (one budget for the whole process); 0 = unlimited (default).
    /// When it binds the source lag grows instead of the target's load.
    #[serde(default)]
    pub max_ops_per_sec: u64,
    /// Most bytes of command arguments per second written to the target;
    /// 0 = unlimited (default).
    #[serde(default)]
    pub max_bytes_per_sec: u64,
}

impl Target {
    /// The TLS configuration when the URL is `rediss://`.
    pub fn tls_config(&self) -> Option<ferry_tls::TlsConfig> {
        self.tls.config_for(&self.url)
    }
}

/// What kind of server the target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// Detect from `INFO cluster` (`cluster_enabled`).
    #[default]
    Auto,
    /// A Redis Cluster: slot routing, db 0 only.
    Cluster,
    /// One server: everything to it, `SELECT` kept (source dbs map to the
    /// same dbs).
    Standalone,
}

/// The HTTP listener.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Http {
    /// `host:port`; empty disables the listener.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// When set, `/`, `/status` and control endpoints need
    /// `Authorization: Bearer <token>` (`${ENV}` recommended).
    #[serde(default)]
    pub token: Option<String>,
    /// Whether `/metrics` needs the token too (default false: Prometheus
    /// scrapes without one).
    #[serde(default)]
    pub protect_metrics: bool,
}

/// The token never shows in debug output.
impl std::fmt::Debug for Http {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Http")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("protect_metrics", &self.protect_metrics)
            .finish()
    }
}

impl Default for Http {
    fn default() -> Self {
        Http {
            listen: default_listen(),
            token: None,
            protect_metrics: false,
        }
    }
}

/// Snapshot writing.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// `auto`: `RESTORE` raw payloads when the target reads the source's
    /// format, commands otherwise; `always`: like `auto`, but refuse to
    /// start when the target cannot read the source's RDB version;
    /// `never`: always commands.
    #[serde(default)]
    pub restore: RestoreMode,
    /// Hold short TTLs while the snapshot loads and the stream catches up
    /// (a key expiring meanwhile is written with a much later expiry and
    /// given its true expiry once caught up), so keys whose TTL the source
    /// keeps refreshing are not lost. On by default.
    #[serde(default = "yes")]
    pub ttl_hold: bool,
}

fn yes() -> bool {
    true
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot {
            restore: RestoreMode::default(),
            ttl_hold: true,
        }
    }
}

/// When to use `RESTORE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RestoreMode {
    /// When the target can read the payload.
    #[default]
    Auto,
    /// Never; rebuild keys with commands.
    Never,
    /// Required: refuse to start if the target cannot read the source's
    /// RDB version.
    Always,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("./ferry-state")
}

fn default_listen() -> String {
    "127.0.0.1:9121".into()
}

/// Replace `${NAME}` with `lookup(NAME)` (the environment, in `ferry run`),
/// except on comment lines.
fn expand_env(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                bail!("line {}: unterminated ${{…}}", i + 1);
            };
            let name = &after[..end];
            let Some(value) = lookup(name) else {
                bail!(
                    "line {}: environment variable {name} (used as ${{{name}}}) is not set",
                    i + 1
                );
            };
            out.push_str(&value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
    }
    Ok(out)
}

impl Config {
    /// Parse configuration text, expanding `${NAME}` from the environment.
    pub fn parse(text: &str) -> Result<Config> {
        let env = |name: &str| std::env::var(name).ok();
        Config::parse_env(text, &env, &env)
    }

    /// Parse configuration text, expanding `${NAME}` with `lookup` (no
    /// partition override from the environment).
    #[cfg(test)]
    pub fn parse_with(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Config> {
        Config::parse_env(text, lookup, &|_| None)
    }

    /// Parse configuration text, expanding `${NAME}` with `lookup`;
    /// `env` gives the partition overrides ([`PARTITION_INDEX_ENV`],
    /// [`PARTITION_COUNT_ENV`]).
    pub fn parse_env(
        text: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config> {
        let text = expand_env(text, lookup)?;
        let mut cfg: Config = serde_yaml_ng::from_str(&text).map_err(|e| {
            let msg = e.to_string();
            if msg.starts_with("source") && msg.contains("unknown field `checkpoints`") {
                anyhow::anyhow!("{msg} (checkpoints are a target setting: target.checkpoints)")
            } else {
                anyhow::anyhow!("{msg}")
            }
        })?;
        if cfg.http.token.as_deref() == Some("") {
            bail!("http.token is empty (remove it to serve without a token)");
        }
        if let Some(p) = &cfg.filter.db_prefix {
            if cfg.filter.dbs.is_empty() {
                bail!(
                    "filter.db_prefix needs filter.dbs: list the source dbs to merge (e.g. dbs: [0, 2])"
                );
            }
            if !p.contains("{db}") {
                bail!(
                    "filter.db_prefix {p:?} has no {{db}}: every db would get the same prefix \
                     (e.g. db_prefix: \"{{db}}:\")"
                );
            }
        }
        if let Some(ms) = cfg.target.wait_replicas {
            if ms == 0 {
                bail!(
                    "target.wait_replicas: 0 ms would wait forever; give a timeout in milliseconds (e.g. 100)"
                );
            }
            if !cfg.checkpoints() {
                bail!(
                    "target.wait_replicas needs target.checkpoints (the checkpoints tell which transactions a promoted replica lacks)"
                );
            }
        }
        check_sentinel(&mut cfg.source)?;
        if cfg.source.mode != SourceMode::Sentinel || !cfg.source.url.is_empty() {
            parse_endpoint(&cfg.source.url).context("source.url")?;
        }
        parse_endpoint(&cfg.target.url).context("target.url")?;
        cfg.source.partition = partition_with(cfg.source.partition, env)?;
        if cfg.source.partition.is_some() && cfg.source.mode == SourceMode::Sentinel {
            bail!(
                "source.partition is for a cluster source; a Sentinel source is one link: \
                 remove source.partition"
            );
        }
        if cfg.source.partition.is_some() && cfg.source.mode == SourceMode::Standalone {
            bail!(
                "source.partition is for a cluster source (its shards are shared out); \
                 a standalone source is one link: remove source.partition"
            );
        }
        if cfg.source.mode != SourceMode::Sentinel && cfg.source.url == cfg.target.url {
            bail!(
                "source and target are the same server ({})",
                redact(&cfg.source.url)
            );
        }
        Ok(cfg)
    }

    /// Whether checkpoints are written to the target (`target.checkpoints`).
    pub fn checkpoints(&self) -> bool {
        self.target.checkpoints.unwrap_or(true)
    }

    /// Read and parse a configuration file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read configuration {}", path.display()))?;
        Config::parse(&text).with_context(|| format!("invalid configuration {}", path.display()))
    }
}

pub use ferry_ops::redact;

/// `url` with its `host:port` replaced by `addr` (scheme and credentials
/// kept): the URL of another node of the same cluster.
pub fn url_with_addr(url: &str, addr: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("redis", url));
    let creds = rest.rfind('@').map_or("", |i| &rest[..=i]);
    format!("{scheme}://{creds}{addr}")
}

/// `source.sentinel` or `source.mode: sentinel` (either selects the other):
/// both agree, the sentinel settings are valid, and nothing cluster-only
/// is set.
fn check_sentinel(src: &mut Endpoint) -> Result<()> {
    match (&src.sentinel, src.mode) {
        (None, SourceMode::Sentinel) => bail!(
            "source.mode: sentinel needs source.sentinel: {{ master_name: <name>, \
             addresses: [host:port, ...] }}"
        ),
        (None, _) => {
            if src.url.is_empty() {
                bail!("source.url is missing (or give source.sentinel for a Sentinel source)");
            }
            Ok(())
        }
        (Some(_), SourceMode::Standalone | SourceMode::Cluster) => bail!(
            "source.sentinel is set but source.mode is {:?}: use mode: sentinel (or auto), \
             or remove source.sentinel",
            src.mode
        ),
        (Some(s), _) => {
            s.validate()?;
            if src.read_from == ReadFrom::Replica {
                bail!(
                    "source.read_from: replica is for a cluster source; a Sentinel source \
                     replicates from the master the sentinels name"
                );
            }
            src.mode = SourceMode::Sentinel;
            Ok(())
        }
    }
}

/// Parse a `redis://` or `rediss://` (TLS) URL of the configuration: a
/// `/<db>` path is refused (the source replicates every db; `filter.dbs`
/// chooses them).
pub fn parse_endpoint(url: &str) -> Result<ferry_ops::Endpoint> {
    let e = ferry_ops::Endpoint::parse(url)?;
    if let Some(db) = e.db {
        bail!(
            "{}: a db in the URL (/{db}) is not supported: ferry carries every db of the source (choose them with filter.dbs); remove /{db}",
            redact(url)
        );
    }
    Ok(e)
}

#[cfg(test)]
mod tests;
