//! The two-way marker: a ferry in `mode: two_way` keeps the key
//! [`MARKER`] in its target (a ferry in one-way mode removes it from its
//! target), so the ferry of the opposite direction, which reads that side
//! as its source, can check that both run two-way before it starts.
//!
//! ```text
//! forward F (two_way): SET __ferry:two_way on new      reverse R (two_way, start_positions):
//!                                                        GET __ferry:two_way on new: absent → refuse
//! a one-way ferry: its source holds the marker → refuse (the opposite direction runs two-way)
//! ```

use std::time::Duration;

use anyhow::{Context, Result, bail};
use ferry_cluster::{Auth, Conn};
use ferry_ops::Redirect;
use ferry_resp::Value;

/// The marker key (under ferry's reserved prefix: never carried, never
/// compared by `ferry verify`, removed by `ferry cleanup`).
pub const MARKER: &str = "__ferry:two_way";

const T: Duration = Duration::from_secs(5);

/// Where to send a command on `MARKER`: a server, following one `MOVED`.
pub struct Side<'a> {
    /// `host:port` of the server (any node of a cluster).
    pub addr: String,
    /// Credentials.
    pub auth: &'a Auth,
    /// TLS.
    pub tls: Option<&'a ferry_tls::TlsConfig>,
    /// What it is, for messages ("source", "target").
    pub name: &'static str,
}

async fn call(side: &Side<'_>, args: &[&[u8]]) -> Result<Value> {
    let mut addr = side.addr.clone();
    for _ in 0..2 {
        let mut conn = Conn::connect_tls(&addr, side.auth, T, side.tls)
            .await
            .with_context(|| format!("{} {addr}", side.name))?;
        let reply = conn
            .call(args, T)
            .await
            .with_context(|| format!("{} {addr}", side.name))?;
        if let Value::Error(e) = &reply {
            if let Some(r) = Redirect::parse(e) {
                let host = r.host_or(ferry_ops::host_of(&addr)).to_string();
                addr = if host.contains(':') {
                    format!("[{host}]:{}", r.port)
                } else {
                    format!("{host}:{}", r.port)
                };
                continue;
            }
            bail!(
                "{} {addr}: {} {MARKER}: {}",
                side.name,
                String::from_utf8_lossy(args[0]),
                String::from_utf8_lossy(e)
            );
        }
        return Ok(reply);
    }
    bail!("{} {}: redirected twice for {MARKER}", side.name, side.addr)
}

/// Whether `side` holds the marker.
pub async fn present(side: &Side<'_>) -> Result<bool> {
    let reply = call(side, &[b"EXISTS", MARKER.as_bytes()]).await?;
    Ok(matches!(reply, Value::Integer(n) if n > 0))
}

/// Writes (`on`) or removes the marker on `side`.
pub async fn set(side: &Side<'_>, on: bool) -> Result<()> {
    if on {
        call(side, &[b"SET", MARKER.as_bytes(), b"two_way"]).await?;
    } else {
        call(side, &[b"DEL", MARKER.as_bytes()]).await?;
    }
    Ok(())
}
