//! `INFO` replies: the one parser of their text.
//!
//! ```text
//! # Server\r\n                       section header
//! redis_version:7.0.15\r\n           field:value
//! \r\n                               blank lines between sections
//! # Keyspace\r\n
//! db0:keys=10,expires=1,avg_ttl=0\r\n  a value made of name=value properties
//! # Modules\r\n
//! module:name=ReJSON,ver=20809,...   a field may repeat (one line per module)
//! ```
//!
//! Lines are split at the first `:`; values are trimmed; lines without `:`
//! are ignored. Nothing here fails on odd text: a missing field is `None`.

use std::borrow::Cow;

use bytes::Bytes;
use ferry_resp::Value;

use crate::show;

/// A parsed `INFO` text, borrowing from it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Info<'a> {
    fields: Vec<Field<'a>>,
}

/// One `name:value` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field<'a> {
    /// The section it is in (`Server`, `Keyspace`, ...; empty before any
    /// header).
    pub section: &'a str,
    /// The field name.
    pub name: &'a str,
    /// The value, trimmed.
    pub value: &'a str,
}

/// One `db<N>:keys=…,expires=…` line of `INFO keyspace`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbKeys {
    /// The db number.
    pub db: u64,
    /// `keys=`.
    pub keys: u64,
    /// `expires=` (0 when absent).
    pub expires: u64,
}

/// Why a reply to `INFO` has no text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InfoError {
    /// The server refused (e.g. an ACL user without `+info`).
    #[error("INFO refused: {}", show(.message))]
    Refused {
        /// The error reply.
        message: Bytes,
    },
    /// Not a string reply.
    #[error("INFO answered with {reply}, not text")]
    NotText {
        /// The reply, abridged.
        reply: String,
    },
}

/// The text of a reply to `INFO` (bulk, or RESP3 verbatim).
///
/// # Errors
/// [`InfoError`] for an error reply or a reply that is not a string.
pub fn info_text(reply: &Value) -> Result<Cow<'_, str>, InfoError> {
    match reply {
        Value::Error(message) => Err(InfoError::Refused {
            message: message.clone(),
        }),
        v => match v.as_bytes() {
            Some(b) => Ok(String::from_utf8_lossy(b)),
            None => Err(InfoError::NotText {
                reply: format!("{v:?}").chars().take(64).collect(),
            }),
        },
    }
}

impl<'a> Info<'a> {
    /// Parses `INFO` text (any sections).
    ///
    /// ```
    /// let info = ferry_ops::Info::parse("# Replication\r\nrole:master\r\nmaster_repl_offset:42\r\n");
    /// assert_eq!(info.get("role"), Some("master"));
    /// assert_eq!(info.get_u64("master_repl_offset"), Some(42));
    /// ```
    pub fn parse(text: &'a str) -> Info<'a> {
        let mut section = "";
        let mut fields = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if let Some(name) = line.strip_prefix('#') {
                section = name.trim();
                continue;
            }
            if let Some((name, value)) = line.split_once(':') {
                fields.push(Field {
                    section,
                    name,
                    value: value.trim(),
                });
            }
        }
        Info { fields }
    }

    /// Every field, in order.
    pub fn fields(&self) -> &[Field<'a>] {
        &self.fields
    }

    /// The value of the first field called `name`.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.all(name).next()
    }

    /// The value of the first field called `name`, as a number.
    pub fn get_u64(&self, name: &str) -> Option<u64> {
        self.get(name)?.parse().ok()
    }

    /// The values of every field called `name` (`module` repeats).
    pub fn all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a str> + 's {
        self.fields
            .iter()
            .filter(move |f| f.name == name)
            .map(|f| f.value)
    }

    /// The `db<N>` lines (`INFO keyspace`), in order; a line whose
    /// `keys=` is missing or not a number is left out.
    pub fn keyspace(&self) -> Vec<DbKeys> {
        self.fields
            .iter()
            .filter_map(|f| {
                let db = f.name.strip_prefix("db")?.parse().ok()?;
                let num = |name| prop(f.value, name).and_then(|v| v.parse::<u64>().ok());
                Some(DbKeys {
                    db,
                    keys: num("keys")?,
                    expires: num("expires").unwrap_or(0),
                })
            })
            .collect()
    }
}

/// The `name=value` properties of a value such as
/// `keys=10,expires=1,avg_ttl=0` or `name=ReJSON,ver=20809`.
pub fn props(value: &str) -> impl Iterator<Item = (&str, &str)> {
    value.split(',').filter_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        Some((k.trim(), v.trim()))
    })
}

/// The property `name` of a value (see [`props`]).
pub fn prop<'v>(value: &'v str, name: &str) -> Option<&'v str> {
    props(value).find(|(k, _)| *k == name).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# Server\r\nredis_version:7.0.15\r\nvalkey_version: 9.0.0 \r\n\r\n\
        # Replication\r\nrole:master\r\nmaster_repl_offset:1234\r\n\r\n\
        # Modules\r\nmodule:name=ReJSON,ver=20809,api=1\r\nmodule:name=bf,ver=20807\r\n\r\n\
        # Keyspace\r\ndb0:keys=10,expires=1,avg_ttl=0\r\ndb2:keys=5,expires=0,avg_ttl=0,subexpiry=0\r\n\
        db9:keys=x\r\ndbx:keys=1\r\n";

    #[test]
    fn fields_sections_and_keyspace() {
        let info = Info::parse(TEXT);
        assert_eq!(info.get("redis_version"), Some("7.0.15"));
        assert_eq!(info.get("valkey_version"), Some("9.0.0"));
        assert_eq!(info.get_u64("master_repl_offset"), Some(1234));
        assert_eq!(info.get("nothing"), None);
        assert_eq!(info.get_u64("role"), None);
        let role = info.fields().iter().find(|f| f.name == "role").unwrap();
        assert_eq!(role.section, "Replication");
        let modules: Vec<_> = info.all("module").filter_map(|m| prop(m, "name")).collect();
        assert_eq!(modules, ["ReJSON", "bf"]);
        assert_eq!(
            info.keyspace(),
            [
                DbKeys {
                    db: 0,
                    keys: 10,
                    expires: 1
                },
                DbKeys {
                    db: 2,
                    keys: 5,
                    expires: 0
                },
            ]
        );
        // LF-only text and no headers parse the same.
        let bare = Info::parse("master_repl_offset:7\nrole:slave\n");
        assert_eq!(bare.get_u64("master_repl_offset"), Some(7));
        assert_eq!(bare.fields()[0].section, "");
        assert!(Info::parse("").fields().is_empty());
    }

    #[test]
    fn reply_text() {
        assert_eq!(info_text(&Value::bulk("a:1")).unwrap(), "a:1");
        let verbatim = Value::Verbatim {
            format: *b"txt",
            text: Bytes::from_static(b"a:2"),
        };
        assert_eq!(info_text(&verbatim).unwrap(), "a:2");
        let refused = Value::Error(Bytes::from_static(b"NOPERM no info"));
        assert!(
            info_text(&refused)
                .unwrap_err()
                .to_string()
                .contains("NOPERM")
        );
        assert!(matches!(
            info_text(&Value::Integer(1)),
            Err(InfoError::NotText { .. })
        ));
    }
}
