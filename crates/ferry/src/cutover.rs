//! `ferry cutover`: pause the source's writes until the target has them all.
//!
//! ```text
//! 1. every daemon (--http a,b,c, or http.listen) must be streaming, and
//!    not following a resharding of the source (source_watch.resharding)
//! 2. the source's masters: the standalone server, or every master of a
//!    cluster source (CLUSTER SHARDS, fallback CLUSTER SLOTS)
//! 3. each master's master_replid must be followed by a link of some
//!    daemon's /status (links[].replid), else refused, naming the master
//! 4. CLIENT PAUSE <pause_ms> WRITE on every master: writes wait, reads go on
//! 5. read each master's master_repl_offset; wait until the link with its
//!    replid has applied_offset ≥ it (a standalone source: the daemon's
//!    applied_offset, as before)
//! 6. "in sync ... after M ms" → exit 0   (switch clients now)
//!    not reached within the pause → exit 1 with what is behind
//! 7. CLIENT UNPAUSE on every master in every case (an error, Ctrl-C)
//! ```
//! The source's writes are paused, never refused; ferry keeps streaming
//! until it is stopped. `CLIENT PAUSE` also ends by itself after `pause_ms`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use redis::aio::MultiplexedConnection;

use crate::config::Config;
use crate::control::status_json;

/// Arguments of `ferry cutover`.
#[derive(Debug, Args)]
pub struct CutoverArgs {
    /// The configuration the daemon runs with.
    #[arg(long)]
    pub config: std::path::PathBuf,
    /// How long the source's writes may be paused.
    #[arg(long, default_value_t = 2000)]
    pub pause_ms: u64,
    /// The HTTP listeners of every process sharing the source
    /// (`source.partition`), comma-separated (default: the configuration's
    /// `http.listen`).
    #[arg(long, value_delimiter = ',')]
    pub http: Vec<String>,
    /// Also write a configuration for the opposite direction (target →
    /// source) starting at the position both sides share at the cutover:
    /// every target master gets a replication backlog before the pause and
    /// its position is recorded once in sync.
    #[arg(long, value_name = "R.yaml")]
    pub reverse: Option<std::path::PathBuf>,
}

/// A source master at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Master {
    /// `host:port`.
    pub addr: String,
    /// Its `master_replid`.
    pub replid: String,
    /// Its `master_repl_offset`.
    pub offset: u64,
}

/// One link of one daemon's `/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LinkView {
    /// The daemon's HTTP listener.
    pub endpoint: String,
    /// The link's (shard's) name.
    pub name: String,
    /// The history it follows (`None`: a standalone source's one link).
    pub replid: Option<String>,
    /// Offset applied to the target.
    pub applied: Option<u64>,
}

/// How far the target is from the paused source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Check {
    /// Every master's offset is applied.
    InSync,
    /// These masters (address, offset, bytes behind) are not yet.
    Behind(Vec<(String, u64, u64)>),
    /// No daemon has a link following these masters.
    NoLink(Vec<String>),
}

/// Compare the masters with the links: by replid for a cluster source;
/// a standalone source has one master and any link is its.
pub(crate) fn check(masters: &[Master], links: &[LinkView], cluster: bool) -> Check {
    let mut behind = Vec::new();
    let mut orphans = Vec::new();
    for m in masters {
        let applied = links
            .iter()
            .filter(|l| !cluster || l.replid.as_deref() == Some(m.replid.as_str()))
            .map(|l| l.applied)
            .max();
        match applied {
            None => orphans.push(m.addr.clone()),
            Some(a) => {
                let a = a.unwrap_or(0);
                if a < m.offset {
                    behind.push((m.addr.clone(), m.offset, m.offset - a));
                }
            }
        }
    }
    if !orphans.is_empty() {
        Check::NoLink(orphans)
    } else if behind.is_empty() {
        Check::InSync
    } else {
        Check::Behind(behind)
    }
}

/// The links of one daemon's `/status` (its top level for a standalone
/// source, `links[]` for a cluster source).
pub(crate) fn links_of(endpoint: &str, st: &serde_json::Value, cluster: bool) -> Vec<LinkView> {
    if !cluster {
        return vec![LinkView {
            endpoint: endpoint.to_string(),
            name: "source".into(),
            replid: None,
            applied: st["applied_offset"].as_u64(),
        }];
    }
    st["links"]
        .as_array()
        .map(|links| {
            links
                .iter()
                .map(|l| LinkView {
                    endpoint: endpoint.to_string(),
                    name: l["name"].as_str().unwrap_or("?").to_string(),
                    replid: l["replid"].as_str().map(str::to_string),
                    applied: l["applied_offset"].as_u64(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Refuse a daemon that is not streaming (or one of its links).
fn ready(endpoint: &str, st: &serde_json::Value) -> Result<()> {
    if let Some(e) = st["error"].as_str() {
        bail!("ferry on {endpoint} stopped on an error: {e}");
    }
    if st["phase"] != "streaming" {
        bail!(
            "ferry on {endpoint} is not streaming yet (phase {}): wait until the snapshot is applied",
            st["phase"]
        );
    }
    let watch = &st["source_watch"];
    if watch["resharding"] == true {
        bail!(
            "ferry on {endpoint}: the source cluster is being resharded (slots moving, or a resync \
             pending: {}): wait until /status source_watch.resharding is false",
            watch["pending"]
        );
    }
    for l in st["links"].as_array().into_iter().flatten() {
        if l["phase"] != "streaming" {
            bail!(
                "link {} of ferry on {endpoint} is not streaming (phase {})",
                l["name"],
                l["phase"]
            );
        }
    }
    Ok(())
}

/// Every daemon's links now.
fn gather(endpoints: &[String], token: Option<&str>, cluster: bool) -> Result<Vec<LinkView>> {
    let mut out = Vec::new();
    for e in endpoints {
        out.extend(links_of(e, &status_json(e, token)?, cluster));
    }
    Ok(out)
}

/// A connection to a source node for the cutover: redis-rs (`redis` crate)
/// speaking over ferry-tls's stream, so the TLS settings (CA, client
/// certificate, `server_name`, `insecure`) are the link's own. Connecting,
/// `AUTH` and every reply are bounded by 5 s.
async fn source_client(cfg: &Config, addr: &str) -> Result<MultiplexedConnection> {
    const T: Duration = Duration::from_secs(5);
    // The URL's credentials, or a Sentinel source's (see `source::node_access`).
    let (auth, tls) = crate::source::node_access(&cfg.source)?;
    let stream = ferry_tls::connect(addr, tls.as_ref(), T)
        .await
        .with_context(|| format!("source {addr}"))?;
    let mut info = redis::RedisConnectionInfo::default().set_skip_set_lib_name();
    if let Some(user) = &auth.user {
        info = info.set_username(user);
    }
    if let Some(password) = &auth.password {
        info = info.set_password(password);
    }
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(T));
    let (conn, driver) = tokio::time::timeout(
        T,
        MultiplexedConnection::new_with_config(&info, stream, config),
    )
    .await
    .map_err(|_| anyhow::anyhow!("source {addr}: no answer to AUTH within 5 s"))?
    .with_context(|| format!("source {addr}"))?;
    tokio::spawn(driver);
    Ok(conn)
}

/// One command on a source node; an error reply is an error naming it.
async fn call(conn: &mut MultiplexedConnection, addr: &str, args: &[&str]) -> Result<redis::Value> {
    let mut cmd = redis::cmd(args[0]);
    cmd.arg(&args[1..]);
    cmd.query_async(conn)
        .await
        .with_context(|| format!("{} on the source ({addr})", args.join(" ")))
}

/// Each master's replid and offset now.
async fn masters_now(conns: &mut [(String, MultiplexedConnection)]) -> Result<Vec<Master>> {
    let mut out = Vec::with_capacity(conns.len());
    for (addr, conn) in conns.iter_mut() {
        let reply = call(conn, addr, &["INFO", "replication"]).await?;
        let text: String = redis::from_redis_value(reply)
            .with_context(|| format!("the source's INFO replication ({addr})"))?;
        let info = ferry_ops::Info::parse(&text);
        let offset = info.get_u64("master_repl_offset").with_context(|| {
            format!("the source's INFO replication ({addr}) has no master_repl_offset")
        })?;
        out.push(Master {
            addr: addr.clone(),
            replid: info.get("master_replid").unwrap_or_default().to_string(),
            offset,
        });
    }
    Ok(out)
}

/// Run `ferry cutover`; Ok(true) when in sync.
pub fn cutover(args: &CutoverArgs) -> Result<bool> {
    let cfg = Config::load(&args.config)?;
    let endpoints: Vec<String> = if args.http.is_empty() {
        vec![cfg.http.listen.clone()]
    } else {
        args.http.iter().map(|h| h.trim().to_string()).collect()
    };
    if endpoints.iter().any(String::is_empty) {
        bail!(
            "cutover needs the daemon's status page: set http.listen in {} (or pass --http)",
            args.config.display()
        );
    }
    let token = cfg.http.token.clone();
    for e in &endpoints {
        ready(e, &status_json(e, token.as_deref())?)?;
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let src = crate::verify::source_endpoints(&cfg).await?;
            let cluster = src.is_cluster();
            let mut conns = Vec::with_capacity(src.addrs.len());
            for addr in &src.addrs {
                conns.push((addr.clone(), source_client(&cfg, addr).await?));
            }
            // Refuse before pausing anything when a master has no link.
            let masters = masters_now(&mut conns).await?;
            if let Check::NoLink(orphans) = check(
                &masters,
                &gather(&endpoints, token.as_deref(), cluster)?,
                cluster,
            ) {
                bail!(no_link(&orphans, &endpoints));
            }
            use crate::reverse::cutover as rc;
            let reverse = match &args.reverse {
                Some(_) => {
                    let masters = rc::target_masters(&cfg).await?;
                    let created = rc::ensure_backlogs(&masters).await?;
                    for m in &created {
                        println!("created a replication backlog on {m} (it had no replica)");
                    }
                    Some((masters, created))
                }
                None => None,
            };
            let pause = args.pause_ms.to_string();
            let mut paused = 0;
            let mut result = Ok((Check::InSync, masters.clone()));
            for (addr, conn) in conns.iter_mut() {
                match call(conn, addr, &["CLIENT", "PAUSE", &pause, "WRITE"]).await {
                    Ok(_) => paused += 1,
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            let started = Instant::now();
            if result.is_ok() {
                let deadline = started + Duration::from_millis(args.pause_ms);
                let wait =
                    wait_in_sync(&mut conns, &endpoints, token.as_deref(), cluster, deadline);
                result = tokio::select! {
                    r = wait => r,
                    _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted (Ctrl-C)")),
                };
            }
            // In sync and paused: both sides are equal, record the target's.
            let recorded = match (&result, &reverse) {
                (Ok((Check::InSync, _)), Some((masters, _))) => Some(rc::positions(masters).await),
                _ => None,
            };
            let mut unpaused = Ok(());
            for (addr, conn) in conns.iter_mut().take(paused) {
                if let Err(e) = call(conn, addr, &["CLIENT", "UNPAUSE"]).await {
                    unpaused = Err(e);
                }
            }
            let (state, masters) = result?;
            unpaused?;
            if let (Some(recorded), Some(path), Some((_, created))) =
                (recorded, &args.reverse, &reverse)
            {
                let (positions, backlog_ttl) = recorded?;
                crate::reverse::yaml::write(
                    &args.config,
                    &cfg,
                    path,
                    &positions,
                    backlog_ttl,
                    created,
                )?;
            }
            let ms = started.elapsed().as_millis();
            match state {
                Check::InSync => {
                    let at = if cluster {
                        masters
                            .iter()
                            .map(|m| format!("{} at offset {}", m.addr, m.offset))
                            .collect::<Vec<_>>()
                            .join(", ")
                    } else {
                        format!("offset {}", masters[0].offset)
                    };
                    println!("in sync at {at} after {ms} ms: switch clients to the target now");
                    Ok(true)
                }
                Check::Behind(behind) => {
                    let what: Vec<String> = behind
                        .iter()
                        .map(|(addr, offset, lag)| {
                            if cluster {
                                format!("{addr}: {lag} bytes behind offset {offset}")
                            } else {
                                format!("{lag} bytes behind offset {offset}")
                            }
                        })
                        .collect();
                    println!(
                        "NOT in sync after {ms} ms: {}; writes resumed, try again",
                        what.join(", ")
                    );
                    Ok(false)
                }
                Check::NoLink(orphans) => bail!(no_link(&orphans, &endpoints)),
            }
        })
}

/// Poll until in sync or `deadline`; the last check and the masters read.
async fn wait_in_sync(
    conns: &mut [(String, MultiplexedConnection)],
    endpoints: &[String],
    token: Option<&str>,
    cluster: bool,
    deadline: Instant,
) -> Result<(Check, Vec<Master>)> {
    loop {
        let masters = masters_now(conns).await?;
        let state = check(&masters, &gather(endpoints, token, cluster)?, cluster);
        match state {
            Check::InSync | Check::NoLink(_) => return Ok((state, masters)),
            Check::Behind(_) if Instant::now() >= deadline => return Ok((state, masters)),
            Check::Behind(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

fn no_link(orphans: &[String], endpoints: &[String]) -> String {
    format!(
        "no ferry link follows source master(s) {} (asked {}): start the partition that \
         carries them, or pass every partition's listener with --http a,b,c",
        orphans.join(", "),
        endpoints.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(addr: &str, replid: &str, offset: u64) -> Master {
        Master {
            addr: addr.into(),
            replid: replid.into(),
            offset,
        }
    }

    fn l(replid: &str, applied: u64) -> LinkView {
        LinkView {
            endpoint: "h:1".into(),
            name: "shard-0".into(),
            replid: Some(replid.into()),
            applied: Some(applied),
        }
    }

    #[test]
    fn cluster_masters_are_matched_to_links_by_replid() {
        let masters = [m("a:1", "r1", 100), m("b:1", "r2", 50)];
        assert_eq!(
            check(&masters, &[l("r1", 100), l("r2", 60)], true),
            Check::InSync
        );
        assert_eq!(
            check(&masters, &[l("r2", 40), l("r1", 100)], true),
            Check::Behind(vec![("b:1".into(), 50, 10)])
        );
        assert_eq!(
            check(&masters, &[l("r1", 100), l("zz", 60)], true),
            Check::NoLink(vec!["b:1".into()])
        );
        // A link with no applied offset yet is behind by everything.
        let mut none = l("r1", 0);
        none.applied = None;
        assert_eq!(
            check(&masters[..1], &[none], true),
            Check::Behind(vec![("a:1".into(), 100, 100)])
        );
    }

    #[test]
    fn a_standalone_source_takes_the_daemons_applied_offset() {
        let st = serde_json::json!({ "applied_offset": 90, "links": [] });
        let links = links_of("h:1", &st, false);
        assert_eq!(
            check(&[m("s:1", "any", 100)], &links, false),
            Check::Behind(vec![("s:1".into(), 100, 10)])
        );
        let st = serde_json::json!({ "links": [
            { "name": "shard-0", "replid": "r1", "applied_offset": 7 },
            { "name": "shard-5461", "replid": "r2" }
        ] });
        let links = links_of("h:2", &st, true);
        assert_eq!(links.len(), 2);
        assert_eq!(links[1].applied, None);
        assert_eq!(links[0].replid.as_deref(), Some("r1"));
    }

    #[test]
    fn not_streaming_is_refused_naming_the_daemon_or_link() {
        let err = ready("h:1", &serde_json::json!({ "phase": "snapshot" })).unwrap_err();
        assert!(err.to_string().contains("h:1"), "{err}");
        let st = serde_json::json!({ "phase": "streaming", "links": [
            { "name": "shard-0", "phase": "streaming" },
            { "name": "shard-10923", "phase": "snapshot" }
        ] });
        let err = ready("h:1", &st).unwrap_err();
        assert!(err.to_string().contains("shard-10923"), "{err}");
        let err = ready(
            "h:1",
            &serde_json::json!({ "phase": "error", "error": "boom" }),
        )
        .unwrap_err();
        assert!(err.to_string().contains("boom"), "{err}");
        let st = serde_json::json!({ "phase": "streaming", "links": [],
            "source_watch": { "resharding": true, "pending": ["shard-0"] } });
        let err = ready("h:1", &st).unwrap_err();
        assert!(err.to_string().contains("resharded"), "{err}");
        assert!(err.to_string().contains("shard-0"), "{err}");
        let st = serde_json::json!({ "phase": "streaming", "links": [],
            "source_watch": { "resharding": false, "pending": [] } });
        ready("h:1", &st).unwrap();
    }
}
