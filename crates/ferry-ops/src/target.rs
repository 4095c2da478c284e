//! [`TargetFormat`]: which `RESTORE` payloads the target reads.

use ferry_rdb::Flavor;

/// What the target can `RESTORE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TargetFormat {
    /// Valkey (as opposed to Redis).
    pub valkey: bool,
    /// Highest RDB version it reads (Valkey: 11 for `REDIS` payloads, 80 for its own).
    pub rdb_version: u16,
}

impl TargetFormat {
    /// From `INFO server` text.
    pub fn from_info(info: &str) -> TargetFormat {
        let info = crate::info::Info::parse(info);
        let field = |name: &str| info.get(name).map(str::trim);
        let version = |v: &str| {
            let mut it = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
            (it.next().unwrap_or(0), it.next().unwrap_or(0))
        };
        if let Some(v) = field("valkey_version") {
            let (major, _) = version(v);
            return TargetFormat {
                valkey: true,
                rdb_version: if major >= 9 { 80 } else { 11 },
            };
        }
        let (major, minor) = version(field("redis_version").unwrap_or("0.0"));
        let rdb_version = match (major, minor) {
            (m, _) if m >= 8 => 12,
            (7, n) if n >= 4 => 12,
            (7, n) if n >= 2 => 11,
            (7, _) => 10,
            (6, _) | (5, _) => 9,
            _ => 8,
        };
        TargetFormat {
            valkey: false,
            rdb_version,
        }
    }

    /// The version to stamp on a payload of `rdb_type` from a `flavor`/`version`
    /// file, or `None` if the target cannot read it (use commands).
    pub fn stamp(&self, flavor: Flavor, version: u16, rdb_type: u8) -> Option<u16> {
        match (flavor, self.valkey) {
            (Flavor::Redis, false) => (version <= self.rdb_version).then_some(version),
            (Flavor::Valkey, true) => (version <= self.rdb_version).then_some(version),
            // Valkey reads REDIS payloads up to 11 for types that exist there.
            (Flavor::Redis, true) => (rdb_type <= 21).then_some(version.min(11)),
            (Flavor::Valkey, false) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_formats() {
        let redis70 = TargetFormat::from_info("# Server\r\nredis_version:7.0.15\r\n");
        assert_eq!(
            redis70,
            TargetFormat {
                valkey: false,
                rdb_version: 10
            }
        );
        let valkey = TargetFormat::from_info("redis_version:7.2.4\r\nvalkey_version:9.1.2\r\n");
        assert_eq!(
            valkey,
            TargetFormat {
                valkey: true,
                rdb_version: 80
            }
        );
        assert_eq!(redis70.stamp(Flavor::Redis, 10, 18), Some(10));
        assert_eq!(redis70.stamp(Flavor::Redis, 12, 0), None);
        assert_eq!(valkey.stamp(Flavor::Redis, 12, 18), Some(11));
        assert_eq!(valkey.stamp(Flavor::Redis, 12, 25), None);
        assert_eq!(valkey.stamp(Flavor::Valkey, 80, 22), Some(80));
        assert_eq!(redis70.stamp(Flavor::Valkey, 80, 0), None);
    }
}
