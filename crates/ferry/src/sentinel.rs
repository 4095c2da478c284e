//! A Sentinel-managed source: which server is the master now.
//!
//! ```text
//! source.sentinel ─▶ Sentinels::master(): SENTINEL GET-MASTER-ADDR-BY-NAME on each
//!                    sentinel in turn; the first that answers names the master
//!      ├─ the link's Locate: asked before every connection (start, link loss)
//!      ├─ resolve_source(): the same answer for preflight, verify, cutover
//!      └─ watch(): SUBSCRIBE +switch-master on one sentinel (the next one
//!                  when it fails); a switch of our master ─▶ LinkHandle::reconnect
//! ```
//!
//! The link then PSYNCs the new master with the replication id and offset
//! it had: a promoted replica answers `+CONTINUE` when its history holds the
//! offset (the usual case: it was in sync), a full sync otherwise.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use anyhow::{Result, bail};
use bytes::BytesMut;
use ferry_cluster::{Auth, Conn};
use ferry_replica::{LinkError, LinkHandle, Locate};
use ferry_resp::Value;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::config::Tls;

/// Bound of connecting to a sentinel and of each of its replies.
const TIMEOUT: Duration = Duration::from_secs(3);

/// A `+switch-master` subscription silent this long is pinged; two pings
/// unanswered move it to the next sentinel.
const KEEPALIVE: Duration = Duration::from_secs(5);

/// `source.sentinel`: the sentinels that watch the source's master.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentinelConfig {
    /// The name the sentinels know the master by (`sentinel monitor <name> …`).
    pub master_name: String,
    /// The sentinels, `host:port` each; asked in this order.
    pub addresses: Vec<String>,
    /// ACL user for the sentinels (`AUTH <user> <password>`).
    #[serde(default)]
    pub user: Option<String>,
    /// Password of the sentinels (`requirepass` in sentinel.conf).
    #[serde(default)]
    pub password: Option<String>,
    /// TLS to the sentinels (present, even empty `{}`: TLS on); also to
    /// the master when `source.url` is not given.
    #[serde(default)]
    pub tls: Option<Tls>,
}

/// The password never shows in debug output.
impl std::fmt::Debug for SentinelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelConfig")
            .field("master_name", &self.master_name)
            .field("addresses", &self.addresses)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("tls", &self.tls)
            .finish()
    }
}

impl SentinelConfig {
    /// Checks the fields, naming what is wrong.
    pub fn validate(&self) -> Result<()> {
        if self.master_name.trim().is_empty() {
            bail!("source.sentinel.master_name is empty: give the name the sentinels monitor");
        }
        if self.addresses.is_empty() {
            bail!("source.sentinel.addresses is empty: list the sentinels as host:port");
        }
        for a in &self.addresses {
            if ferry_ops::split_host_port(a).is_none() {
                bail!("source.sentinel.addresses: {a:?} is not host:port");
            }
        }
        if self.user.is_some() && self.password.is_none() {
            bail!("source.sentinel.user needs source.sentinel.password");
        }
        Ok(())
    }

    /// Credentials for the sentinels.
    pub fn auth(&self) -> Auth {
        Auth {
            user: self.user.clone(),
            password: self.password.clone(),
        }
    }

    /// TLS to the sentinels, when configured.
    pub fn tls_config(&self) -> Option<ferry_tls::TlsConfig> {
        self.tls.as_ref().map(Tls::config)
    }
}

/// Asks the sentinels of one master.
#[derive(Clone)]
pub struct Sentinels {
    name: String,
    addrs: Vec<String>,
    auth: Auth,
    tls: Option<ferry_tls::TlsConfig>,
}

impl Sentinels {
    /// From `source.sentinel`.
    pub fn new(cfg: &SentinelConfig) -> Sentinels {
        Sentinels {
            name: cfg.master_name.clone(),
            addrs: cfg.addresses.clone(),
            auth: cfg.auth(),
            tls: cfg.tls_config(),
        }
    }

    /// The master's `host:port` from the first sentinel that answers; the
    /// error names every sentinel tried and what it said.
    pub async fn master(&self) -> Result<String> {
        let mut tried = Vec::new();
        for addr in &self.addrs {
            match self.ask(addr).await {
                Ok(master) => return Ok(master),
                Err(e) => tried.push(format!("{addr}: {e:#}")),
            }
        }
        bail!(
            "no sentinel named the master {:?} (tried {}: {})",
            self.name,
            self.addrs.len(),
            tried.join("; ")
        )
    }

    async fn ask(&self, addr: &str) -> Result<String> {
        let mut conn = Conn::connect_tls(addr, &self.auth, TIMEOUT, self.tls.as_ref()).await?;
        let reply = conn
            .call(
                &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name.as_str()],
                TIMEOUT,
            )
            .await?;
        master_addr(&reply)
    }

    /// Until `token` is cancelled: subscribes to `+switch-master` on one
    /// sentinel (the next one when it fails) and, when our master is
    /// switched, makes `link` reconnect (asking the sentinels again).
    pub async fn watch(self, link: LinkHandle, token: CancellationToken) {
        let mut i = 0usize;
        loop {
            let addr = self.addrs[i % self.addrs.len()].clone();
            let r = tokio::select! {
                r = self.subscribe(&addr, &link) => r,
                _ = token.cancelled() => return,
            };
            if let Err(e) = r {
                tracing::warn!(sentinel = %addr, "sentinel subscription: {e:#}; trying the next sentinel");
            }
            i += 1;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = token.cancelled() => return,
            }
        }
    }

    async fn subscribe(&self, addr: &str, link: &LinkHandle) -> Result<()> {
        let mut sock = ferry_tls::connect(addr, self.tls.as_ref(), TIMEOUT).await?;
        let mut out = Vec::new();
        if let Some(args) = self.auth.command() {
            ferry_resp::write_command(&mut out, &args);
        }
        ferry_resp::write_command(&mut out, &["SUBSCRIBE", "+switch-master"]);
        sock.write_all(&out).await?;
        sock.flush().await?;
        let mut buf = BytesMut::new();
        let mut silent = 0u32;
        loop {
            let v = loop {
                if let Some((v, n)) = ferry_resp::decode(&buf)? {
                    let _ = buf.split_to(n);
                    break v;
                }
                // A quiet subscription is normal: ping it when silent, and
                // give up on a sentinel that answers nothing (the next
                // one is subscribed to then).
                match tokio::time::timeout(KEEPALIVE, sock.read_buf(&mut buf)).await {
                    Ok(Ok(0)) => bail!("the sentinel closed the connection"),
                    Ok(Ok(_)) => silent = 0,
                    Ok(Err(e)) => return Err(e.into()),
                    Err(_) if silent >= 2 => {
                        bail!("no answer to PING for {:?}", KEEPALIVE * 2)
                    }
                    Err(_) => {
                        silent += 1;
                        let mut ping = Vec::new();
                        ferry_resp::write_command(&mut ping, &["PING"]);
                        sock.write_all(&ping).await?;
                        sock.flush().await?;
                    }
                }
            };
            match &v {
                Value::Error(e) => bail!("{}", String::from_utf8_lossy(e)),
                Value::Array(parts) => {
                    if let Some(new) = switched(parts, &self.name) {
                        tracing::info!(sentinel = %addr, master = %self.name, to = %new,
                            "+switch-master: the link follows the new master");
                        link.reconnect(format!(
                            "sentinel {addr}: +switch-master {} to {new}",
                            self.name
                        ));
                    } else if matches!(parts.first(), Some(Value::Bulk(k)) if k.eq_ignore_ascii_case(b"subscribe"))
                    {
                        tracing::debug!(sentinel = %addr, "subscribed to +switch-master");
                    }
                }
                _ => {}
            }
        }
    }
}

impl Locate for Sentinels {
    fn locate(&self) -> Pin<Box<dyn Future<Output = Result<String, LinkError>> + Send + '_>> {
        Box::pin(async move {
            self.master()
                .await
                .map_err(|e| LinkError::Locate(format!("{e:#}")))
        })
    }
}

/// `host:port` from a `SENTINEL GET-MASTER-ADDR-BY-NAME` reply.
fn master_addr(reply: &Value) -> Result<String> {
    match reply {
        Value::Array(v) if v.len() == 2 => {
            let s = |x: &Value| match x {
                Value::Bulk(b) => Some(String::from_utf8_lossy(b).into_owned()),
                _ => None,
            };
            match (s(&v[0]), s(&v[1]).and_then(|p| p.parse::<u16>().ok())) {
                (Some(host), Some(port)) if host.contains(':') => Ok(format!("[{host}]:{port}")),
                (Some(host), Some(port)) => Ok(format!("{host}:{port}")),
                _ => bail!("unexpected reply {reply:?}"),
            }
        }
        Value::Null | Value::NullArray => bail!("does not know this master name"),
        Value::Error(e) => bail!("{}", String::from_utf8_lossy(e)),
        other => bail!("unexpected reply {other:?}"),
    }
}

/// The new master's `host:port` when `parts` is a `+switch-master` message
/// about `name` (`<name> <old ip> <old port> <new ip> <new port>`).
fn switched(parts: &[Value], name: &str) -> Option<String> {
    let [
        Value::Bulk(kind),
        Value::Bulk(_channel),
        Value::Bulk(payload),
    ] = parts
    else {
        return None;
    };
    if !kind.eq_ignore_ascii_case(b"message") {
        return None;
    }
    let text = String::from_utf8_lossy(payload);
    let f: Vec<&str> = text.split_whitespace().collect();
    match f.as_slice() {
        [n, _, _, ip, port] if *n == name => Some(format!("{ip}:{port}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn bulk(s: &str) -> Value {
        Value::Bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn master_addr_replies() {
        let r = Value::Array(vec![bulk("127.0.0.1"), bulk("6380")]);
        assert_eq!(master_addr(&r).unwrap(), "127.0.0.1:6380");
        let r = Value::Array(vec![bulk("::1"), bulk("6380")]);
        assert_eq!(master_addr(&r).unwrap(), "[::1]:6380");
        assert!(
            format!("{:#}", master_addr(&Value::NullArray).unwrap_err()).contains("does not know")
        );
        let r = Value::Array(vec![bulk("h"), bulk("port")]);
        assert!(master_addr(&r).is_err());
        let r = Value::Error(Bytes::from_static(b"NOAUTH Authentication required."));
        assert!(format!("{:#}", master_addr(&r).unwrap_err()).contains("NOAUTH"));
    }

    #[test]
    fn switch_master_messages() {
        let m = |payload: &str| vec![bulk("message"), bulk("+switch-master"), bulk(payload)];
        assert_eq!(
            switched(&m("src 127.0.0.1 1 127.0.0.1 2"), "src").as_deref(),
            Some("127.0.0.1:2")
        );
        assert_eq!(switched(&m("other 127.0.0.1 1 127.0.0.1 2"), "src"), None);
        assert_eq!(switched(&m("src garbage"), "src"), None);
        let sub = vec![bulk("subscribe"), bulk("+switch-master"), Value::Integer(1)];
        assert_eq!(switched(&sub, "src"), None);
    }

    #[test]
    fn config_selects_sentinel_mode() {
        use crate::config::{Config, SourceMode};
        let parse = |source: &str| {
            Config::parse(&format!(
                "source: {{ {source} }}\ntarget: {{ url: \"redis://b:2\" }}\n"
            ))
            .map_err(|e| format!("{e:#}"))
        };
        let s = "sentinel: { master_name: src, addresses: [\"127.0.0.1:26379\"] }";
        let c = parse(s).expect("sentinel without url");
        assert_eq!(c.source.mode, SourceMode::Sentinel);
        assert!(c.source.url.is_empty());
        let c = parse(&format!(
            "url: \"redis://u:pw@ignored:1\", mode: sentinel, {s}"
        ))
        .expect("sentinel with url");
        assert_eq!(c.source.mode, SourceMode::Sentinel);
        let (auth, tls) = crate::source::node_access(&c.source).unwrap();
        assert_eq!(auth.password.as_deref(), Some("pw"));
        assert!(tls.is_none());
        for (source, what) in [
            (
                "mode: sentinel, url: \"redis://a:1\"",
                "needs source.sentinel",
            ),
            ("", "source.url is missing"),
            (&format!("mode: cluster, {s}"), "use mode: sentinel"),
            (&format!("read_from: replica, {s}"), "read_from"),
            (
                &format!("partition: {{ index: 0, count: 1 }}, {s}"),
                "partition",
            ),
            (
                "sentinel: { master_name: src, addresses: [] }",
                "addresses is empty",
            ),
        ] {
            let e = parse(source).unwrap_err();
            assert!(e.contains(what), "{source}: {e}");
        }
    }

    #[test]
    fn validation_names_the_field() {
        let ok = SentinelConfig {
            master_name: "src".into(),
            addresses: vec!["127.0.0.1:26379".into()],
            user: None,
            password: Some("pw".into()),
            tls: None,
        };
        ok.validate().expect("valid");
        assert!(!format!("{ok:?}").contains("pw"));
        let mut e = ok.clone();
        e.addresses = vec!["nohost".into()];
        assert!(format!("{:#}", e.validate().unwrap_err()).contains("\"nohost\""));
        let mut e = ok.clone();
        e.addresses.clear();
        assert!(format!("{:#}", e.validate().unwrap_err()).contains("addresses is empty"));
        let mut e = ok;
        e.master_name = " ".into();
        assert!(format!("{:#}", e.validate().unwrap_err()).contains("master_name"));
    }
}
