//! Reading one key on one server and comparing two reads by value: the
//! slow, exact path (`ferry verify` uses it for keys whose cheap check
//! differs; the sampled verify of `ferry run` for every key).

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ferry_cluster::Conn;
use ferry_resp::Value;

use crate::config::Filter;

/// Timeout of one request (or one pipelined batch) of `ferry verify`.
pub(crate) const T: Duration = Duration::from_secs(30);

/// One command; an error reply is an error naming the command and node.
pub(crate) async fn call(conn: &mut Conn, args: &[&[u8]]) -> Result<Value> {
    let v = conn.call(args, T).await?;
    if let Some(m) = v.error_message() {
        bail!(
            "{} on {}: {}",
            String::from_utf8_lossy(args[0]),
            conn.addr(),
            String::from_utf8_lossy(m)
        );
    }
    Ok(v)
}

/// Pipelined commands; any error reply is an error naming the node.
pub(crate) async fn call_many(conn: &mut Conn, cmds: &[Vec<&[u8]>]) -> Result<Vec<Value>> {
    if cmds.is_empty() {
        return Ok(Vec::new());
    }
    let v = conn.call_many(cmds, T).await?;
    if let Some(m) = v.iter().find_map(|x| x.error_message()) {
        bail!(
            "reading keys on {}: {}",
            conn.addr(),
            String::from_utf8_lossy(m)
        );
    }
    Ok(v)
}

/// A value in a comparable form: sets and hashes sorted, scores as numbers.
///
/// Only compared for equality (never shown), so the form only has to be
/// exact: each byte string is written with its length (as text if it is
/// UTF-8, else in hex), after a letter naming the shape. A shape other
/// than a string or an array of strings keeps `Debug`'s form (which starts
/// differently). `Debug` of a whole list formatted every byte on its own:
/// seconds of CPU for a sampled list of a million elements.
pub(crate) fn canon(kind: &str, v: &Value) -> String {
    let items: Vec<&[u8]> = v
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_bytes().map(|b| &b[..]))
                .collect()
        })
        .unwrap_or_default();
    let mut out = String::new();
    match kind {
        "set" => {
            let mut m = items;
            m.sort();
            out.push('S');
            for b in m {
                put_bytes(&mut out, b);
            }
        }
        "hash" => {
            let mut pairs: Vec<&[&[u8]]> = items.chunks(2).collect();
            pairs.sort();
            out.push('H');
            for pair in pairs {
                // A lone field (an odd reply) is told apart from a pair.
                out.push(if pair.len() == 2 { '2' } else { '1' });
                for b in pair {
                    put_bytes(&mut out, b);
                }
            }
        }
        "zset" => {
            let mut pairs: Vec<(&[u8], f64)> = items
                .chunks(2)
                .map(|c| {
                    let score = c
                        .get(1)
                        .and_then(|s| std::str::from_utf8(s).ok())
                        .and_then(|s| s.parse::<f64>().ok())
                        .unwrap_or(f64::NAN);
                    // -0 and 0 are the same score, and so are all NaNs.
                    let score = if score.is_nan() {
                        f64::NAN
                    } else {
                        score + 0.0
                    };
                    (c[0], score)
                })
                .collect();
            pairs.sort_by(|a, b| a.0.cmp(b.0));
            out.push('Z');
            for (member, score) in pairs {
                put_bytes(&mut out, member);
                let _ = write!(out, "{:016x}", score.to_bits());
            }
        }
        _ => match v {
            Value::Bulk(b) => {
                out.push('B');
                put_bytes(&mut out, b);
            }
            Value::Array(a) if a.iter().all(|x| matches!(x, Value::Bulk(_))) => {
                out.push('A');
                for x in a {
                    if let Value::Bulk(b) = x {
                        put_bytes(&mut out, b);
                    }
                }
            }
            // Anything else (a stream's entries, a null): rare and small.
            _ => return format!("{v:?}"),
        },
    }
    out
}

/// Appends `b` to a canonical form: its length, then `:` and the text if
/// it is UTF-8, else `#` and its bytes in hex.
fn put_bytes(out: &mut String, b: &[u8]) {
    let _ = write!(out, "{}", b.len());
    match std::str::from_utf8(b) {
        Ok(text) => {
            out.push(':');
            out.push_str(text);
        }
        Err(_) => {
            out.push('#');
            for byte in b {
                let _ = write!(out, "{byte:02x}");
            }
        }
    }
}

/// The read-only command returning a whole value of type `kind` (the key
/// goes after the first word); `None` for types not compared by value.
pub(crate) fn value_command(kind: &str) -> Option<&'static [&'static [u8]]> {
    Some(match kind {
        "string" => &[b"GET"],
        "list" => &[b"LRANGE", b"0", b"-1"],
        "set" => &[b"SMEMBERS"],
        "zset" => &[b"ZRANGE", b"0", b"-1", b"WITHSCORES"],
        "hash" => &[b"HGETALL"],
        "stream" => &[b"XRANGE", b"-", b"+"],
        _ => return None,
    })
}

/// One side's view of a key: type, PTTL and the value in comparable form.
#[derive(Debug, Clone, PartialEq)]
pub struct Side {
    /// `TYPE` (`none` when the key does not exist).
    pub kind: String,
    /// `PTTL` (-1 no expiry, -2 missing).
    pub pttl: i64,
    /// The value, canonicalised (`None` for types not compared by value).
    pub value: Option<String>,
}

/// Read a key's type, TTL and value (read-only commands).
pub async fn read(conn: &mut Conn, key: &[u8]) -> Result<Side> {
    let kind = call(conn, &[b"TYPE", key]).await?;
    let kind = kind
        .as_bytes()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();
    let pttl = call(conn, &[b"PTTL", key]).await?.as_int().unwrap_or(-2);
    let value = match value_command(&kind) {
        Some(cmd) => {
            let mut args: Vec<&[u8]> = vec![cmd[0], key];
            args.extend_from_slice(&cmd[1..]);
            Some(canon(&kind, &call(conn, &args).await?))
        }
        None => None,
    };
    Ok(Side { kind, pttl, value })
}

/// The values of `keys`, whose types are `kinds`, in comparable form: one
/// pipelined round trip (`None` for a type not compared by value).
pub(crate) async fn values(
    conn: &mut Conn,
    keys: &[&[u8]],
    kinds: &[&str],
) -> Result<Vec<Option<String>>> {
    let mut cmds: Vec<Vec<&[u8]>> = Vec::new();
    for (key, kind) in keys.iter().zip(kinds) {
        if let Some(cmd) = value_command(kind) {
            let mut args: Vec<&[u8]> = vec![cmd[0], key];
            args.extend_from_slice(&cmd[1..]);
            cmds.push(args);
        }
    }
    // A key whose type changed meanwhile answers WRONGTYPE: that is a
    // difference to report, not an error.
    let replies = conn.call_many(&cmds, T).await?;
    let mut replies = replies.into_iter();
    let mut out = Vec::with_capacity(keys.len());
    for kind in kinds {
        out.push(match value_command(kind) {
            Some(_) => {
                let v = replies.next().context("a value reply")?;
                Some(match v.error_message() {
                    Some(m) => format!("error: {}", String::from_utf8_lossy(m)),
                    None => canon(kind, &v),
                })
            }
            None => None,
        });
    }
    Ok(out)
}

/// What differs between the source's and the target's view of a key
/// (`None`: the same, TTLs within `ttl_tolerance_ms`).
pub fn compare(a: &Side, b: &Side, ttl_tolerance_ms: i64) -> Option<String> {
    if a.kind != b.kind {
        Some(format!(
            "type {} on the source, {} on the target",
            a.kind, b.kind
        ))
    } else if a.value != b.value {
        Some("value differs".to_string())
    } else {
        ttl_differs(a.pttl, b.pttl, ttl_tolerance_ms)
    }
}

/// Whether two PTTLs differ: one expires and the other not, or by more
/// than the tolerance.
///
/// A TTL the target holds while ferry catches up (the TTL hold: the true
/// expiry plus `ferry_ops::HOLD_MS`) is compared as the true one.
pub(crate) fn ttl_differs(a: i64, b: i64, ttl_tolerance_ms: i64) -> Option<String> {
    let held = if b > ferry_ops::HOLD_MS / 2 {
        b - ferry_ops::HOLD_MS
    } else {
        b
    };
    ((a < 0) != (held < 0) || (a - held).abs() > ttl_tolerance_ms)
        .then(|| format!("ttl {a} ms on the source, {b} ms on the target"))
}

/// Whether a key takes part in a comparison: inside the filter and not one
/// of ferry's own keys.
pub fn compared_key(filter: &Filter, key: &[u8]) -> bool {
    !ferry_ops::is_reserved(key) && filter.key(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn arr(items: &[&str]) -> Value {
        Value::Array(
            items
                .iter()
                .map(|s| Value::Bulk(Bytes::copy_from_slice(s.as_bytes())))
                .collect(),
        )
    }

    #[test]
    fn sets_and_hashes_compare_unordered_scores_as_numbers() {
        assert_eq!(
            canon("set", &arr(&["b", "a"])),
            canon("set", &arr(&["a", "b"]))
        );
        assert_eq!(
            canon("hash", &arr(&["f", "1", "g", "2"])),
            canon("hash", &arr(&["g", "2", "f", "1"]))
        );
        assert_eq!(
            canon("zset", &arr(&["m", "0.1", "n", "-0"])),
            canon("zset", &arr(&["n", "0", "m", "0.10000000000000001"]))
        );
        assert_ne!(
            canon("list", &arr(&["a", "b"])),
            canon("list", &arr(&["b", "a"]))
        );
    }

    #[test]
    fn canonical_forms_tell_apart_what_differs() {
        let bulk = |b: &[u8]| Value::Bulk(Bytes::copy_from_slice(b));
        // Lengths delimit: no two different lists of strings look alike.
        assert_ne!(
            canon("list", &arr(&["ab", "c"])),
            canon("list", &arr(&["a", "bc"]))
        );
        assert_ne!(
            canon("list", &arr(&["1:a"])),
            canon("list", &arr(&["1", "a"]))
        );
        assert_ne!(canon("list", &arr(&[])), canon("list", &arr(&[""])));
        // Bytes that are not UTF-8 stay exact.
        assert_ne!(
            canon("string", &bulk(b"\xff")),
            canon("string", &bulk(b"\xfe"))
        );
        assert_ne!(
            canon("string", &bulk(b"\xff")),
            canon("string", &bulk(b"ff"))
        );
        assert_eq!(canon("string", &bulk(b"\xff\x00")), "B2#ff00");
        assert_eq!(canon("list", &arr(&["é", "x"])), "A2:é1:x");
        // Scores as numbers; other shapes as before (`Debug`).
        assert_ne!(
            canon("zset", &arr(&["m", "1"])),
            canon("zset", &arr(&["m", "1.5"]))
        );
        assert_ne!(canon("list", &Value::Null), canon("list", &arr(&[])));
        assert_eq!(canon("list", &Value::Null), format!("{:?}", Value::Null));
        assert_ne!(
            canon("hash", &arr(&["f", "1", "g"])),
            canon("hash", &arr(&["f", "1g"]))
        );
    }

    #[test]
    fn ttls_within_the_tolerance_are_equal() {
        assert_eq!(ttl_differs(-1, -1, 0), None);
        assert_eq!(ttl_differs(10_000, 9_000, 2000), None);
        assert!(ttl_differs(10_000, 7_000, 2000).is_some());
        assert!(ttl_differs(-1, 5_000, 1_000_000).is_some());
    }

    #[test]
    fn a_held_ttl_compares_as_its_true_expiry() {
        let hold = ferry_ops::HOLD_MS;
        assert_eq!(ttl_differs(5_000, 5_100, 2_000), None);
        assert_eq!(ttl_differs(5_000, hold + 5_100, 2_000), None);
        assert!(ttl_differs(5_000, hold + 60_000, 2_000).is_some());
        assert!(ttl_differs(-1, hold + 5_000, 2_000).is_some());
        assert!(ttl_differs(5_000, -1, 2_000).is_some());
    }
}
