//! Rewriting the key names of a command, for mapping source databases into
//! a cluster's only db: `db_prefix: "{db}:"` turns `SET k v` in db 3 into
//! `SET 3:k v`.

use bytes::{BufMut, Bytes, BytesMut};

use crate::keys::{KeyError, command_keys};

/// `prefix` + `key`.
pub fn prefixed(prefix: &[u8], key: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(prefix.len() + key.len());
    b.put_slice(prefix);
    b.put_slice(key);
    b.freeze()
}

/// `args` with every key argument (as [`command_keys`] finds them)
/// prefixed with `prefix`; other arguments unchanged. Commands without keys
/// come back as they are.
///
/// # Errors
/// The [`KeyError`] of [`command_keys`] (unknown command, too few
/// arguments): a command whose keys cannot be found cannot be rewritten.
pub fn prefix_keys(args: &[Bytes], prefix: &[u8]) -> Result<Vec<Bytes>, KeyError> {
    let keys = command_keys(args)?;
    let mut out = args.to_vec();
    for &i in &keys.indexes {
        if let Some(k) = out.get_mut(i) {
            *k = prefixed(prefix, k);
        }
    }
    Ok(out)
}

/// The prefix for `db` from a template where `{db}` stands for the number
/// (`"{db}:"` → `"3:"`).
pub fn db_prefix(template: &str, db: u64) -> Bytes {
    Bytes::from(template.replace("{db}", &db.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &[&str]) -> Vec<Bytes> {
        s.iter().map(|x| Bytes::from(x.to_string())).collect()
    }

    #[test]
    fn keys_get_the_prefix_and_nothing_else() {
        let p = b"3:";
        assert_eq!(
            prefix_keys(&a(&["SET", "k", "v", "PX", "10"]), p).unwrap(),
            a(&["SET", "3:k", "v", "PX", "10"])
        );
        assert_eq!(
            prefix_keys(&a(&["MSET", "a", "1", "b", "2"]), p).unwrap(),
            a(&["MSET", "3:a", "1", "3:b", "2"])
        );
        assert_eq!(
            prefix_keys(
                &a(&["ZUNIONSTORE", "d", "2", "x", "y", "WEIGHTS", "1", "2"]),
                p
            )
            .unwrap(),
            a(&["ZUNIONSTORE", "3:d", "2", "3:x", "3:y", "WEIGHTS", "1", "2"])
        );
        assert_eq!(
            prefix_keys(&a(&["EVAL", "return 1", "1", "k", "arg"]), p).unwrap(),
            a(&["EVAL", "return 1", "1", "3:k", "arg"])
        );
        assert_eq!(prefix_keys(&a(&["FLUSHDB"]), p).unwrap(), a(&["FLUSHDB"]));
        assert!(prefix_keys(&a(&["NOSUCHCMD", "k"]), p).is_err());
    }

    #[test]
    fn templates_name_the_db() {
        assert_eq!(db_prefix("{db}:", 3), Bytes::from("3:"));
        assert_eq!(db_prefix("db{db}/", 12), Bytes::from("db12/"));
        assert_eq!(db_prefix("fixed:", 5), Bytes::from("fixed:"));
    }
}
