//! The cheap first check of `ferry verify`, so that whole values are
//! fetched only for keys whose cheap check does not decide:
//!
//! 1. `PTTL` of each key and the values of the strings — one `MGET` of the
//!    batch on a standalone server, one `GET` a key on a cluster node (where
//!    `MGET` is refused across slots) — in one pipelined round trip. A
//!    missing key has PTTL -2; `MGET` answers nil for other types (`GET`
//!    WRONGTYPE). Strings (most keys, usually) are decided here.
//! 2. Keys of other types: `TYPE` of each, and when every node allows
//!    `DEBUG` (`enable-debug-command` is `no` by default since Redis 7.0,
//!    and managed services refuse it), one `DEBUG DIGEST-VALUE` of them: a
//!    SHA-1 of the logical value computed by the server, whatever its size
//!    or encoding. Equal digests mean equal values.
//! 3. Whole values of what is left (different digests: another server
//!    version may digest the same value differently), compared
//!    semantically ([`super::read::canon`]).

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use ferry_cluster::Conn;
use ferry_resp::Value;

use super::read::{T, ttl_differs};
use super::report::Reason;

/// How keys that are not strings are checked before fetching them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// `DEBUG DIGEST-VALUE` on both sides.
    Digest,
    /// No digest: fetched whole.
    Values,
}

/// Whether `conn`'s server answers `DEBUG DIGEST-VALUE` (an error reply:
/// `DEBUG` disabled or not allowed to this user).
pub(crate) async fn digest_allowed(conn: &mut Conn) -> Result<bool> {
    let probe: Vec<&[u8]> = vec![b"DEBUG", b"DIGEST-VALUE", b"__ferry:verify:probe"];
    let reply = conn.call(&probe, T).await?;
    Ok(reply.error_message().is_none())
}

/// Whether `conn`'s server answers `MGET` (an ACL may allow `GET` only;
/// a cluster node refuses `MGET` across slots, so it is not asked).
pub(crate) async fn mget_allowed(conn: &mut Conn) -> Result<bool> {
    let probe: Vec<&[u8]> = vec![b"MGET", b"__ferry:verify:probe"];
    let reply = conn.call(&probe, T).await?;
    Ok(reply.error_message().is_none())
}

/// One key on one side after step 1 (and step 2 where needed).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Probe {
    /// `PTTL` (-2: no such key).
    pub pttl: i64,
    /// The value of a string; `None` for other types (and missing keys).
    pub string: Option<Bytes>,
    /// `TYPE`, read in step 2 only.
    pub kind: Option<Bytes>,
    /// `DEBUG DIGEST-VALUE`, read in step 2 only.
    pub digest: Option<Bytes>,
}

impl Probe {
    /// The type as text (`string` when step 1 read a string).
    pub fn kind(&self) -> &str {
        match (&self.kind, &self.string, self.pttl) {
            (Some(k), _, _) => std::str::from_utf8(k).unwrap_or("?"),
            (None, Some(_), _) => "string",
            (None, None, -2) => "none",
            (None, None, _) => "not a string",
        }
    }
}

fn bad(addr: &str, what: &str, v: &Value) -> anyhow::Error {
    match v.error_message() {
        Some(m) => anyhow::anyhow!("{what} on {addr}: {}", String::from_utf8_lossy(m)),
        None => anyhow::anyhow!("{what} on {addr}: unexpected reply {v:?}"),
    }
}

/// Step 1 for `keys`: one pipelined round trip (`mget`: one `MGET` for
/// all, else one `GET` a key).
pub(crate) async fn probe(conn: &mut Conn, keys: &[&[u8]], mget: bool) -> Result<Vec<Probe>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut cmds: Vec<Vec<&[u8]>> = Vec::with_capacity(keys.len() * 2);
    for &k in keys {
        cmds.push(vec![b"PTTL", k]);
        if !mget {
            cmds.push(vec![b"GET", k]);
        }
    }
    if mget {
        let mut all: Vec<&[u8]> = vec![b"MGET"];
        all.extend_from_slice(keys);
        cmds.push(all);
    }
    let replies = conn.call_many(&cmds, T).await?;
    parse_step1(conn.addr(), keys.len(), mget, replies)
}

fn parse_step1(addr: &str, n: usize, mget: bool, replies: Vec<Value>) -> Result<Vec<Probe>> {
    let string = |v: Value| -> Result<Option<Bytes>> {
        match v {
            Value::Bulk(b) => Ok(Some(b)),
            Value::Null => Ok(None),
            // Another type.
            Value::Error(e) if e.starts_with(b"WRONGTYPE") => Ok(None),
            v => Err(bad(addr, "GET", &v)),
        }
    };
    let mut it = replies.into_iter();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let pttl = it.next().context("a PTTL reply")?;
        let pttl = pttl.as_int().ok_or_else(|| bad(addr, "PTTL", &pttl))?;
        let string = if mget {
            None
        } else {
            string(it.next().context("a GET reply")?)?
        };
        out.push(Probe {
            pttl,
            string,
            ..Probe::default()
        });
    }
    if mget {
        let all = it.next().context("an MGET reply")?;
        let Value::Array(values) = all else {
            return Err(bad(addr, "MGET", &all));
        };
        if values.len() != n {
            bail!("MGET on {addr}: {} values for {n} keys", values.len());
        }
        for (p, v) in out.iter_mut().zip(values) {
            p.string = string(v)?;
        }
    }
    Ok(out)
}

/// Step 2 for `keys` (probes `probes`): `TYPE` of each, and the digests.
pub(crate) async fn classify(
    conn: &mut Conn,
    keys: &[&[u8]],
    probes: &mut [Probe],
    method: Method,
) -> Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let mut cmds: Vec<Vec<&[u8]>> = keys.iter().map(|k| vec![&b"TYPE"[..], k]).collect();
    if method == Method::Digest {
        let mut all: Vec<&[u8]> = vec![b"DEBUG", b"DIGEST-VALUE"];
        all.extend_from_slice(keys);
        cmds.push(all);
    }
    let replies = conn.call_many(&cmds, T).await?;
    let addr = conn.addr().to_string();
    let mut it = replies.into_iter();
    for p in probes.iter_mut() {
        p.kind = Some(match it.next().context("a TYPE reply")? {
            Value::Simple(b) | Value::Bulk(b) => b,
            v => return Err(bad(&addr, "TYPE", &v)),
        });
    }
    if method == Method::Digest {
        let all = it.next().context("a DEBUG DIGEST-VALUE reply")?;
        let Some(digests) = all.as_array() else {
            return Err(bad(&addr, "DEBUG DIGEST-VALUE", &all));
        };
        if digests.len() != probes.len() {
            bail!(
                "DEBUG DIGEST-VALUE on {addr}: {} digests for {} keys",
                digests.len(),
                probes.len()
            );
        }
        for (p, d) in probes.iter_mut().zip(digests) {
            p.digest = d.as_bytes().cloned();
        }
    }
    Ok(())
}

/// The outcome of comparing two probes (or two fetched values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The same (TTLs within the tolerance).
    Same,
    /// Gone from the source meanwhile: not compared.
    Gone,
    /// Different, for this reason.
    Differs(Reason, String),
    /// Needs step 2 (types, digests) on both sides.
    Classify,
    /// Needs the whole values of both sides.
    Fetch,
}

/// Compare the source's probe `a` with the target's `b` after step 1.
pub(crate) fn judge(a: &Probe, b: &Probe, ttl_tolerance_ms: i64) -> Verdict {
    if a.pttl == -2 {
        return Verdict::Gone;
    }
    if b.pttl == -2 {
        let what = match &a.string {
            Some(_) => "missing on the target (string on the source)".to_string(),
            None => "missing on the target".to_string(),
        };
        return Verdict::Differs(Reason::Missing, what);
    }
    match (&a.string, &b.string) {
        (Some(x), Some(y)) if x == y => ttl_verdict(a.pttl, b.pttl, ttl_tolerance_ms),
        (Some(_), Some(_)) => Verdict::Differs(Reason::Value, "value differs".into()),
        _ => Verdict::Classify,
    }
}

/// Compare after step 2 (types known; digests where allowed).
pub(crate) fn judge_classified(a: &Probe, b: &Probe, ttl_tolerance_ms: i64) -> Verdict {
    if a.kind != b.kind {
        return Verdict::Differs(
            Reason::Type,
            format!(
                "type {} on the source, {} on the target",
                a.kind(),
                b.kind()
            ),
        );
    }
    match (&a.digest, &b.digest) {
        (Some(x), Some(y)) if x == y => ttl_verdict(a.pttl, b.pttl, ttl_tolerance_ms),
        _ => Verdict::Fetch,
    }
}

/// Compare after fetching both values (`va` from the source).
pub(crate) fn judge_values(
    a: &Probe,
    b: &Probe,
    va: &Option<String>,
    vb: &Option<String>,
    ttl_tolerance_ms: i64,
) -> Verdict {
    if va != vb {
        return Verdict::Differs(Reason::Value, "value differs".into());
    }
    ttl_verdict(a.pttl, b.pttl, ttl_tolerance_ms)
}

fn ttl_verdict(a: i64, b: i64, ttl_tolerance_ms: i64) -> Verdict {
    match ttl_differs(a, b, ttl_tolerance_ms) {
        Some(what) => Verdict::Differs(Reason::Ttl, what),
        None => Verdict::Same,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(pttl: i64, v: &'static str) -> Probe {
        Probe {
            pttl,
            string: Some(Bytes::from_static(v.as_bytes())),
            ..Probe::default()
        }
    }

    fn other(pttl: i64, kind: &'static str, digest: Option<&'static str>) -> Probe {
        Probe {
            pttl,
            string: None,
            kind: Some(Bytes::from_static(kind.as_bytes())),
            digest: digest.map(|d| Bytes::from_static(d.as_bytes())),
        }
    }

    #[test]
    fn verdicts() {
        let same = st(-1, "a");
        assert_eq!(judge(&same, &same, 0), Verdict::Same);
        let gone = Probe {
            pttl: -2,
            ..Probe::default()
        };
        assert_eq!(judge(&gone, &same, 0), Verdict::Gone);
        let missing = judge(&same, &gone, 0);
        assert!(
            matches!(missing, Verdict::Differs(Reason::Missing, _)),
            "{missing:?}"
        );
        let val = judge(&same, &st(-1, "b"), 0);
        assert!(matches!(val, Verdict::Differs(Reason::Value, _)), "{val:?}");
        let ttl = judge(&same, &st(5000, "a"), 100);
        assert!(matches!(ttl, Verdict::Differs(Reason::Ttl, _)), "{ttl:?}");
        let hash = Probe {
            pttl: -1,
            ..Probe::default()
        };
        assert_eq!(judge(&same, &hash, 0), Verdict::Classify);
        assert_eq!(judge(&hash, &hash, 0), Verdict::Classify);
        // After step 2.
        let ty = judge_classified(&other(-1, "string", None), &other(-1, "list", None), 0);
        assert!(matches!(ty, Verdict::Differs(Reason::Type, _)), "{ty:?}");
        let (x, y) = (other(-1, "zset", Some("d1")), other(-1, "zset", Some("d1")));
        assert_eq!(judge_classified(&x, &y, 0), Verdict::Same);
        // A different digest may be another server's digest of the same value.
        let z = other(-1, "zset", Some("d2"));
        assert_eq!(judge_classified(&x, &z, 0), Verdict::Fetch);
        assert_eq!(
            judge_classified(&other(-1, "hash", None), &other(-1, "hash", None), 0),
            Verdict::Fetch
        );
        let v = Some("x".to_string());
        assert_eq!(
            judge_values(
                &other(9000, "set", None),
                &other(8000, "set", None),
                &v,
                &v,
                2000
            ),
            Verdict::Same
        );
        let w = Some("y".to_string());
        assert!(matches!(
            judge_values(&x, &y, &v, &w, 0),
            Verdict::Differs(Reason::Value, _)
        ));
    }

    #[test]
    fn step1_replies_with_and_without_mget() {
        let b = |s: &'static str| Value::Bulk(Bytes::from_static(s.as_bytes()));
        let got = parse_step1(
            "n",
            3,
            false,
            vec![
                Value::Integer(-1),
                b("v"),
                Value::Integer(10),
                Value::Error(Bytes::from_static(b"WRONGTYPE x")),
                Value::Integer(-2),
                Value::Null,
            ],
        )
        .expect("parse");
        assert_eq!(got[0], st(-1, "v"));
        assert_eq!((got[1].pttl, got[1].kind()), (10, "not a string"));
        assert_eq!(got[2].kind(), "none");
        let got = parse_step1(
            "n",
            2,
            true,
            vec![
                Value::Integer(-1),
                Value::Integer(-1),
                Value::Array(vec![b("v"), Value::Null]),
            ],
        )
        .expect("parse");
        assert_eq!(got[0], st(-1, "v"));
        assert_eq!(got[1].string, None);
        let err = parse_step1(
            "n",
            1,
            false,
            vec![Value::Error(Bytes::from_static(b"MOVED 1 x"))],
        )
        .expect_err("an error reply");
        assert!(err.to_string().contains("MOVED"), "{err}");
    }
}
