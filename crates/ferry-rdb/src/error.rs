//! Decoder errors. Every variant names the file offset where decoding failed.

use crate::container::ContainerError;
use crate::lzf::LzfError;

/// Why an RDB stream could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RdbError {
    /// The first 9 bytes are not `REDIS%04d` or `VALKEY%03d`.
    #[error("not an RDB file: header {found:?} at offset 0 is neither REDISnnnn nor VALKEYnnn")]
    BadMagic {
        /// The bytes found (lossy text).
        found: String,
    },
    /// A version this decoder does not know.
    #[error("unsupported RDB version {version} ({flavor} magic); supported: REDIS 1-14, VALKEY 80")]
    UnsupportedVersion {
        /// Magic family.
        flavor: crate::Flavor,
        /// Version number.
        version: u16,
    },
    /// A type or opcode byte unknown for this file's flavor and version.
    #[error(
        "unknown RDB type/opcode byte {byte} (0x{byte:02x}) at offset {offset} ({flavor} RDB {version})"
    )]
    UnknownType {
        /// File offset of the byte.
        offset: u64,
        /// The byte.
        byte: u8,
        /// Magic family.
        flavor: crate::Flavor,
        /// Version.
        version: u16,
    },
    /// Structurally invalid data.
    #[error("corrupt RDB at offset {offset}: {what}")]
    Corrupt {
        /// File offset of the record or field being decoded.
        offset: u64,
        /// What was wrong or expected.
        what: String,
    },
    /// A packed container (ziplist, listpack, intset, zipmap) is invalid.
    #[error("corrupt {rdb_type_name} value at offset {offset}: {source}")]
    Container {
        /// File offset of the container string.
        offset: u64,
        /// The value type being decoded.
        rdb_type_name: &'static str,
        /// What the container parser found.
        source: ContainerError,
    },
    /// An LZF-compressed string is invalid.
    #[error("corrupt LZF string at offset {offset}: {source}")]
    Lzf {
        /// File offset of the string.
        offset: u64,
        /// What the decompressor found.
        source: LzfError,
    },
    /// A length beyond the configured limit.
    #[error("{what} of {len} at offset {offset} exceeds the limit of {limit}")]
    TooLarge {
        /// File offset.
        offset: u64,
        /// What the length was for.
        what: &'static str,
        /// The length found.
        len: u64,
        /// The limit.
        limit: u64,
    },
    /// The CRC64 trailer does not match the content.
    #[error(
        "checksum mismatch at offset {offset}: file says {expected:016x}, content gives {computed:016x}"
    )]
    Checksum {
        /// Offset of the checksum.
        offset: u64,
        /// Stored value.
        expected: u64,
        /// Computed value.
        computed: u64,
    },
    /// Input ended before the end of file marker.
    #[error("truncated RDB: input ended at offset {offset} while reading {context}")]
    Truncated {
        /// Offset where input ended.
        offset: u64,
        /// What was being read.
        context: String,
    },
    /// Bytes follow the checksum.
    #[error("unexpected data after the end of the RDB at offset {offset}")]
    TrailingData {
        /// Offset of the first extra byte.
        offset: u64,
    },
    /// The caller broke the buffer contract (consumed bytes the decoder had not released).
    #[error("decoder buffer contract violated: buffer shrank below {expected} pending bytes")]
    BufferContract {
        /// Bytes the decoder expected to still be present.
        expected: usize,
    },
}
