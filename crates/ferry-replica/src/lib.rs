//! The sans-IO half of ferry's replica link: everything between "a TCP
//! connection to the source is open" and "here is the next command, with its
//! replication offset", as pure state machines over byte buffers.
//!
//! ```text
//! connect ─▶ Handshake ──+FULLRESYNC──▶ SnapshotFramer + ferry_rdb::Decoder ─▶ CommandStream
//!                     └──+CONTINUE───────────────────────────────────────────▶ CommandStream
//!                                                      REPLCONF ACK ◀── Position / ack_command
//! ```
//!
//! * [`handshake`]: `PING`, `AUTH`, `REPLCONF …`, then `PSYNC`; classifies
//!   every error reply ([`HandshakeError::retriable`]).
//! * [`snapshot`]: the `$<len>` / `$EOF:<mark>` framing around the RDB, fed
//!   to the RDB decoder as bytes arrive.
//! * [`stream`]: the command stream, with exact replication offsets,
//!   `SELECT` tracking (also inside `MULTI`), `PING`/`GETACK`/vendor noise,
//!   and the offset that is safe to checkpoint.
//! * [`position`]: the saved resume point (replid, offset, db), written
//!   atomically, and the `REPLCONF ACK` encoder.
//!
//! * [`link`]: the thin tokio driver around all of the above: socket,
//!   spool, decoder task, ACKs, saved position, reconnects.
//!
//! Apart from [`link`]: no I/O, no async runtime, no `unsafe`: the driver owns
//! the socket and the buffer, appends what it reads, and asks these types
//! what to do. Every
//! decoder here follows the same contract: `Ok(None)` means "read more",
//! bytes are removed from the front of the buffer only when used, and no
//! input can make them panic; feeding the input in pieces of any size gives
//! the same results as feeding it whole.

pub mod handshake;
pub mod link;
pub mod position;
pub mod snapshot;
pub mod spool;
pub mod stream;

pub use handshake::{Auth, Handshake, HandshakeConfig, HandshakeError, Outcome, Warning};
pub use link::{
    Applied, Link, LinkConfig, LinkError, LinkEvent, LinkEvents, LinkHandle, LinkStatus, Locate,
    Phase,
};
pub use position::{Position, PositionError, ack_command};
pub use snapshot::{Preamble, SnapshotError, SnapshotEvent, SnapshotFramer};
pub use spool::{Spool, SpoolConfig, SpoolError};
pub use stream::{Checkpoint, CommandStream, StreamError, StreamEvent};

/// Parses 1–20 ASCII decimal digits (no sign, no spaces) into a `u64`;
/// `None` on anything else or on overflow.
pub(crate) fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn parse_decimal() {
        use super::parse_decimal as p;
        assert_eq!(p(b"0"), Some(0));
        assert_eq!(p(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(p(b"18446744073709551616"), None);
        assert_eq!(p(b""), None);
        assert_eq!(p(b"-1"), None);
        assert_eq!(p(b"+1"), None);
        assert_eq!(p(b"1 "), None);
    }
}
