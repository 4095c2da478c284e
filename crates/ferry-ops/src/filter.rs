//! Which keys a migration carries ([`Filter`]), and the key prefix ferry
//! reserves for itself ([`RESERVED_PREFIX`]).

use bytes::Bytes;
use serde::Deserialize;

/// The key prefix reserved for ferry's own keys in the target: the verifier
/// ignores keys under it, `ferry cleanup` deletes them, and source keys
/// under it are not carried.
pub const RESERVED_PREFIX: &str = "__ferry:";

/// Whether `key` is under [`RESERVED_PREFIX`].
pub fn is_reserved(key: &[u8]) -> bool {
    key.starts_with(RESERVED_PREFIX.as_bytes())
}

/// Which keys to carry. Keys left out are counted (`filtered`), not errors.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Carry only keys starting with one of these (empty: all keys).
    #[serde(default)]
    pub include_prefixes: Vec<String>,
    /// Never carry keys starting with one of these.
    #[serde(default)]
    pub exclude_prefixes: Vec<String>,
    /// Source databases to carry, all merged into the cluster's db 0. Empty
    /// means db 0 only, and ferry refuses to start if another db holds keys.
    /// A standalone target keeps each db's number; empty means every db.
    #[serde(default)]
    pub dbs: Vec<u64>,
    /// Into a cluster: prefix every key of source db N with this template,
    /// `{db}` standing for N (`"{db}:"`: key `k` of db 2 becomes `2:k`),
    /// so the merged dbs keep their keys apart. Needs `dbs`.
    #[serde(default)]
    pub db_prefix: Option<String>,
}

impl Filter {
    /// The key prefix for source db `db` (`db_prefix`), if any.
    pub fn prefix_for(&self, db: u64) -> Option<Bytes> {
        self.db_prefix
            .as_deref()
            .map(|t| crate::rewrite::db_prefix(t, db))
    }

    /// Whether a key passes the prefix rules.
    pub fn key(&self, key: &[u8]) -> bool {
        (self.include_prefixes.is_empty()
            || self
                .include_prefixes
                .iter()
                .any(|p| key.starts_with(p.as_bytes())))
            && !self
                .exclude_prefixes
                .iter()
                .any(|p| key.starts_with(p.as_bytes()))
    }

    /// Whether keys of source db `db` are carried into a standalone target
    /// (`standalone`, dbs kept: every db unless `dbs` lists some) or a
    /// cluster ([`Filter::db`]).
    pub fn carries_db(&self, db: u64, standalone: bool) -> bool {
        if standalone {
            self.dbs.is_empty() || self.dbs.contains(&db)
        } else {
            self.db(db)
        }
    }

    /// Whether keys of source db `db` are carried into a cluster.
    pub fn db(&self, db: u64) -> bool {
        if self.dbs.is_empty() {
            db == 0
        } else {
            self.dbs.contains(&db)
        }
    }

    /// Whether the prefix rules leave any key out.
    pub fn has_key_rules(&self) -> bool {
        !self.include_prefixes.is_empty() || !self.exclude_prefixes.is_empty()
    }
}
