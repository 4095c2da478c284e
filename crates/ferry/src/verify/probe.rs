//! The cheap first check of `ferry verify`: type, TTL and a fingerprint of
//! each key's value in one pipelined round trip per node, so that whole
//! values are fetched only for keys whose fingerprints differ.
//!
//! The fingerprint is `DEBUG DIGEST-VALUE` (a SHA-1 of the logical value,
//! computed by the server, whatever its size or encoding) when both sides
//! allow `DEBUG` — `enable-debug-command` is `no` by default since Redis
//! 7.0, and managed services refuse it — otherwise the value of a string
//! (`GET`) and nothing for other types, which are then fetched whole. Equal
//! fingerprints mean equal values; different ones mean "fetch and compare
//! semantically" (a different server version may digest the same value
//! differently, and a digest mixes in the type and whether the key has a
//! TTL), except for strings with a TTL on both sides or neither, where they
//! mean different bytes.

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use ferry_cluster::Conn;
use ferry_resp::Value;

use super::read::{T, ttl_differs};
use super::report::Reason;

/// How values are fingerprinted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// `DEBUG DIGEST-VALUE` on both sides.
    Digest,
    /// Strings by value (`GET`), other types fetched whole.
    Values,
}

/// Whether `conn`'s server answers `DEBUG DIGEST-VALUE` (an error reply:
/// `DEBUG` disabled or not allowed to this user).
pub(crate) async fn digest_allowed(conn: &mut Conn) -> Result<bool> {
    let probe: Vec<&[u8]> = vec![b"DEBUG", b"DIGEST-VALUE", b"__ferry:verify:probe"];
    let reply = conn.call(&probe, T).await?;
    Ok(reply.error_message().is_none())
}

/// One key's type, TTL and fingerprint on one side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Probe {
    /// `TYPE` (`none`: no such key).
    pub kind: Bytes,
    /// `PTTL`.
    pub pttl: i64,
    /// Digest or string value; `None`: fetch the value to compare it.
    pub fp: Option<Bytes>,
}

impl Probe {
    /// The type as text.
    pub fn kind(&self) -> &str {
        std::str::from_utf8(&self.kind).unwrap_or("?")
    }
}

/// [`Probe`]s of `keys`: one pipelined round trip (`TYPE`, `PTTL` and `GET`
/// of each key, or `TYPE` and `PTTL` of each and one `DEBUG DIGEST-VALUE`
/// of all).
pub(crate) async fn probe(conn: &mut Conn, keys: &[&[u8]], method: Method) -> Result<Vec<Probe>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let per_key = match method {
        Method::Digest => 2,
        Method::Values => 3,
    };
    let mut cmds: Vec<Vec<&[u8]>> = Vec::with_capacity(keys.len() * per_key + 1);
    for &k in keys {
        cmds.push(vec![b"TYPE", k]);
        cmds.push(vec![b"PTTL", k]);
        if method == Method::Values {
            cmds.push(vec![b"GET", k]);
        }
    }
    if method == Method::Digest {
        let mut all: Vec<&[u8]> = vec![b"DEBUG", b"DIGEST-VALUE"];
        all.extend_from_slice(keys);
        cmds.push(all);
    }
    let replies = conn.call_many(&cmds, T).await?;
    parse(conn.addr(), keys.len(), method, replies)
}

fn parse(addr: &str, n: usize, method: Method, replies: Vec<Value>) -> Result<Vec<Probe>> {
    let bad = |what: &str, v: &Value| -> anyhow::Error {
        match v.error_message() {
            Some(m) => anyhow::anyhow!("{what} on {addr}: {}", String::from_utf8_lossy(m)),
            None => anyhow::anyhow!("{what} on {addr}: unexpected reply {v:?}"),
        }
    };
    let mut it = replies.into_iter();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let kind = match it.next().context("a TYPE reply")? {
            Value::Simple(b) | Value::Bulk(b) => b,
            v => return Err(bad("TYPE", &v)),
        };
        let pttl = it.next().context("a PTTL reply")?;
        let pttl = pttl.as_int().ok_or_else(|| bad("PTTL", &pttl))?;
        let fp = match method {
            Method::Digest => None,
            // A string's value; WRONGTYPE for other types (fetched later).
            Method::Values => match it.next().context("a GET reply")? {
                Value::Bulk(b) => Some(b),
                _ => None,
            },
        };
        out.push(Probe { kind, pttl, fp });
    }
    if method == Method::Digest {
        let all = it.next().context("a DEBUG DIGEST-VALUE reply")?;
        let Some(digests) = all.as_array() else {
            return Err(bad("DEBUG DIGEST-VALUE", &all));
        };
        if digests.len() != n {
            bail!(
                "DEBUG DIGEST-VALUE on {addr}: {} digests for {n} keys",
                digests.len()
            );
        }
        for (p, d) in out.iter_mut().zip(digests) {
            p.fp = d.as_bytes().cloned();
        }
    }
    Ok(out)
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
    /// Fingerprints do not decide: fetch both values.
    Fetch,
}

/// Compare the source's probe `a` with the target's `b`.
pub(crate) fn judge(a: &Probe, b: &Probe, ttl_tolerance_ms: i64) -> Verdict {
    if &a.kind[..] == b"none" {
        return Verdict::Gone;
    }
    if &b.kind[..] == b"none" {
        return Verdict::Differs(
            Reason::Missing,
            format!("missing on the target ({} on the source)", a.kind()),
        );
    }
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
    match (&a.fp, &b.fp) {
        (Some(x), Some(y)) if x == y => {}
        // (A digest also mixes in whether the key has a TTL: only when
        // both have one or neither does it speak of the value alone.)
        (Some(_), Some(_)) if &a.kind[..] == b"string" && (a.pttl < 0) == (b.pttl < 0) => {
            return Verdict::Differs(Reason::Value, "value differs".into());
        }
        _ => return Verdict::Fetch,
    }
    ttl_verdict(a.pttl, b.pttl, ttl_tolerance_ms)
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

    fn p(kind: &'static str, pttl: i64, fp: Option<&'static str>) -> Probe {
        Probe {
            kind: Bytes::from_static(kind.as_bytes()),
            pttl,
            fp: fp.map(|f| Bytes::from_static(f.as_bytes())),
        }
    }

    #[test]
    fn verdicts() {
        let same = p("string", -1, Some("a"));
        assert_eq!(judge(&same, &same, 0), Verdict::Same);
        assert_eq!(judge(&p("none", -2, None), &same, 0), Verdict::Gone);
        let missing = judge(&same, &p("none", -2, None), 0);
        assert!(
            matches!(missing, Verdict::Differs(Reason::Missing, _)),
            "{missing:?}"
        );
        let ty = judge(&same, &p("list", -1, None), 0);
        assert!(matches!(ty, Verdict::Differs(Reason::Type, _)), "{ty:?}");
        let val = judge(&same, &p("string", -1, Some("b")), 0);
        assert!(matches!(val, Verdict::Differs(Reason::Value, _)), "{val:?}");
        // Other types: a different digest may be another server's digest.
        assert_eq!(
            judge(&p("zset", -1, Some("a")), &p("zset", -1, Some("b")), 0),
            Verdict::Fetch
        );
        assert_eq!(
            judge(&p("hash", -1, None), &p("hash", -1, None), 0),
            Verdict::Fetch
        );
        let ttl = judge(&same, &p("string", 5000, Some("a")), 100);
        assert!(matches!(ttl, Verdict::Differs(Reason::Ttl, _)), "{ttl:?}");
        // A digest differs when only one side has a TTL: fetch the values.
        assert_eq!(
            judge(&same, &p("string", 5000, Some("b")), 100),
            Verdict::Fetch
        );
        let (a, b) = (p("set", 9000, None), p("set", 8000, None));
        let v = Some("x".to_string());
        assert_eq!(judge_values(&a, &b, &v, &v, 2000), Verdict::Same);
        let other = Some("y".to_string());
        assert!(matches!(
            judge_values(&a, &b, &v, &other, 2000),
            Verdict::Differs(Reason::Value, _)
        ));
    }

    #[test]
    fn replies_parse_per_method() {
        let b = |s: &'static str| Value::Bulk(Bytes::from_static(s.as_bytes()));
        let st = |s: &'static str| Value::Simple(Bytes::from_static(s.as_bytes()));
        let got = parse(
            "n",
            2,
            Method::Values,
            vec![
                st("string"),
                Value::Integer(-1),
                b("v"),
                st("hash"),
                Value::Integer(10),
                Value::Error(Bytes::from_static(b"WRONGTYPE x")),
            ],
        )
        .expect("parse");
        assert_eq!(got[0], p("string", -1, Some("v")));
        assert_eq!(got[1], p("hash", 10, None));
        let got = parse(
            "n",
            1,
            Method::Digest,
            vec![st("set"), Value::Integer(-1), Value::Array(vec![b("abc")])],
        )
        .expect("parse");
        assert_eq!(got[0], p("set", -1, Some("abc")));
        let err = parse(
            "n",
            1,
            Method::Digest,
            vec![Value::Error(Bytes::from_static(b"MOVED 1 x"))],
        )
        .expect_err("an error reply");
        assert!(err.to_string().contains("MOVED"), "{err}");
    }
}
