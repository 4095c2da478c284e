//! The source server ferry talks to now, resolved in one place for every
//! command (`run`'s preflight and link, `verify`, `cutover`): the URL's
//! server, or for a Sentinel source the master the sentinels name.

use anyhow::{Context, Result, bail};
use ferry_ops::{Auth, Endpoint};

use crate::config::{self, Config, parse_endpoint, redact};
use crate::sentinel::Sentinels;

/// The source server to connect to now, with its credentials and TLS.
#[derive(Debug, Clone)]
pub struct SourceNode {
    /// Host, port and credentials.
    pub endpoint: Endpoint,
    /// TLS settings, when TLS is on.
    pub tls: Option<ferry_tls::TlsConfig>,
}

impl SourceNode {
    /// `host:port`.
    pub fn addr(&self) -> String {
        self.endpoint.addr()
    }
}

/// Credentials and TLS for the source's data servers: from `source.url`
/// (with `source.tls`) when given, else (a Sentinel source without a URL)
/// the sentinels' own.
pub fn node_access(src: &config::Endpoint) -> Result<(Auth, Option<ferry_tls::TlsConfig>)> {
    match &src.sentinel {
        Some(s) if src.url.is_empty() => Ok((s.auth(), s.tls_config())),
        _ => Ok((parse_endpoint(&src.url)?.auth, src.tls_config())),
    }
}

/// How the source is named in messages (the URL without its password,
/// or the Sentinel master's name and sentinels).
pub fn describe(src: &config::Endpoint) -> String {
    match &src.sentinel {
        Some(s) => format!(
            "Sentinel master {:?} (sentinels {})",
            s.master_name,
            s.addresses.join(", ")
        ),
        None => redact(&src.url),
    }
}

/// The source server now (asks the sentinels for a Sentinel source).
pub async fn resolve(cfg: &Config) -> Result<SourceNode> {
    let Some(s) = &cfg.source.sentinel else {
        return Ok(SourceNode {
            endpoint: parse_endpoint(&cfg.source.url)?,
            tls: cfg.source.tls_config(),
        });
    };
    let addr = Sentinels::new(s).master().await?;
    let Some((host, port)) = ferry_ops::split_host_port(&addr) else {
        bail!("the sentinels named {addr:?} as the master: not host:port");
    };
    let (auth, tls) = node_access(&cfg.source).context("source.url")?;
    Ok(SourceNode {
        endpoint: Endpoint {
            host: host.to_string(),
            port,
            auth,
            tls: tls.is_some(),
            db: None,
        },
        tls,
    })
}
