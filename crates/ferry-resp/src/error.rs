//! The error type shared by every decoder in this crate.
//!
//! Every variant names the byte offset at which the problem was detected,
//! counted from the start of the buffer handed to the decoder (which is the
//! start of the frame being decoded). Errors are *final*: feeding more bytes
//! after the same prefix yields the same error, so a caller can drop the
//! connection. "Not enough bytes yet" is never an error; it is `Ok(None)`.

use std::fmt;

/// Why a buffer is not valid RESP (or not a command, for the command decoder).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RespError {
    /// The byte where a frame starts is not a known RESP2/RESP3 type byte.
    #[error("unknown RESP type byte {} at offset {offset}", ShowByte(*.byte))]
    UnknownType {
        /// Offset of the type byte.
        offset: usize,
        /// The offending byte.
        byte: u8,
    },
    /// A byte that does not fit the grammar at this point.
    #[error("unexpected byte {} at offset {offset}: expected {expected}", ShowByte(*.byte))]
    UnexpectedByte {
        /// Offset of the offending byte.
        offset: usize,
        /// The offending byte.
        byte: u8,
        /// What the grammar allows here, e.g. `"a decimal digit"` or `"LF after CR"`.
        expected: &'static str,
    },
    /// A bulk/verbatim/blob-error length is larger than the configured limit.
    #[error("length of the string at offset {offset} exceeds the limit of {max} bytes")]
    BulkTooLong {
        /// Offset of the type byte (`$`, `=` or `!`).
        offset: usize,
        /// The configured limit ([`Decoder::max_bulk_len`](crate::Decoder::max_bulk_len)).
        max: usize,
    },
    /// A simple line (`+`, `-`, `,`, `(`) has no CR within the configured limit.
    #[error("line at offset {offset} is longer than the limit of {max} bytes")]
    LineTooLong {
        /// Offset of the type byte.
        offset: usize,
        /// The configured limit ([`Decoder::max_bulk_len`](crate::Decoder::max_bulk_len)).
        max: usize,
    },
    /// An aggregate (array, map, set, push, attribute) announces more elements
    /// than the configured limit.
    #[error("length of the aggregate at offset {offset} exceeds the limit of {max} elements")]
    ArrayTooLong {
        /// Offset of the type byte.
        offset: usize,
        /// The configured limit ([`Decoder::max_array_len`](crate::Decoder::max_array_len)).
        max: usize,
    },
    /// Aggregates are nested deeper than the configured limit.
    #[error("aggregate at offset {offset} is nested deeper than the limit of {max}")]
    TooDeep {
        /// Offset of the type byte of the aggregate that is one level too deep.
        offset: usize,
        /// The configured limit ([`Decoder::max_depth`](crate::Decoder::max_depth)).
        max: usize,
    },
    /// An integer (`:`) does not fit in an `i64` (or has more than 19 digits).
    #[error("integer at offset {offset} does not fit in a signed 64-bit integer")]
    IntegerOverflow {
        /// Offset of the `:` type byte.
        offset: usize,
    },
    /// A double (`,`) is not a decimal floating-point number, `inf`, `-inf` or `nan`.
    #[error("invalid double at offset {offset}")]
    InvalidDouble {
        /// Offset of the `,` type byte.
        offset: usize,
    },
    /// A verbatim string (`=`) is shorter than 4 bytes or lacks the `:` after
    /// its 3-byte format.
    #[error("verbatim string at offset {offset} does not start with a 3-byte format and ':'")]
    InvalidVerbatim {
        /// Offset of the `=` type byte.
        offset: usize,
    },
    /// The command decoder found something other than an array of bulk strings.
    #[error(
        "not a command: expected {expected} at offset {offset}, found {}",
        ShowByte(*.byte)
    )]
    NotCommand {
        /// Offset of the offending byte.
        offset: usize,
        /// The offending byte.
        byte: u8,
        /// What a command needs here (`'*'` or `'$'`).
        expected: &'static str,
    },
}

impl RespError {
    /// The byte offset the error refers to, relative to the start of the
    /// buffer given to the decoder.
    pub fn offset(&self) -> usize {
        match *self {
            RespError::UnknownType { offset, .. }
            | RespError::UnexpectedByte { offset, .. }
            | RespError::BulkTooLong { offset, .. }
            | RespError::LineTooLong { offset, .. }
            | RespError::ArrayTooLong { offset, .. }
            | RespError::TooDeep { offset, .. }
            | RespError::IntegerOverflow { offset }
            | RespError::InvalidDouble { offset }
            | RespError::InvalidVerbatim { offset }
            | RespError::NotCommand { offset, .. } => offset,
        }
    }
}

/// Formats a byte as hex plus its ASCII form when printable: `0x2a '*'`.
struct ShowByte(u8);

impl fmt::Display for ShowByte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b.is_ascii_graphic() {
            write!(f, "0x{b:02x} '{}'", b as char)
        } else {
            write!(f, "0x{b:02x} ({})", b.escape_ascii())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_offset_and_byte() {
        let e = RespError::UnexpectedByte {
            offset: 7,
            byte: b'x',
            expected: "LF after CR",
        };
        assert_eq!(
            e.to_string(),
            "unexpected byte 0x78 'x' at offset 7: expected LF after CR"
        );
        let e = RespError::UnknownType {
            offset: 0,
            byte: b'\n',
        };
        assert_eq!(
            e.to_string(),
            "unknown RESP type byte 0x0a (\\n) at offset 0"
        );
        assert_eq!(e.offset(), 0);
    }
}
