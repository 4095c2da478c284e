//! Low-level RESP scanners shared by the general decoder and the command
//! fast path: CRLF, lengths, lines, integers, big numbers, doubles.
//!
//! Every scanner reads strictly left to right and returns `Ok(None)` when the
//! buffer ends before it can decide, or an error as soon as one byte settles
//! it. That is what makes decoding prefix-consistent (see [`mod@crate::decode`]).
//! Offsets are absolute positions in `buf`; `header` is the offset of the
//! type byte (it is the offset reported by length-limit errors).
//!
//! ```text
//! $<len>\r\n<payload>\r\n      len: "0" | [1-9][0-9]*   ("-1" where null is allowed)
//! +<line>\r\n                  line: no CR, no LF, at most max bytes
//! :[+-]<1..=19 digits>\r\n
//! ```

use crate::RespError;

/// Result of a decoding step: `Ok(None)` means "need more bytes".
pub(crate) type Step<T> = Result<Option<T>, RespError>;

pub(crate) fn unexpected(offset: usize, byte: u8, expected: &'static str) -> RespError {
    RespError::UnexpectedByte {
        offset,
        byte,
        expected,
    }
}

/// Expects CRLF at `at`; returns the offset after it.
#[inline]
pub(crate) fn expect_crlf(buf: &[u8], at: usize) -> Step<usize> {
    match buf.get(at) {
        None => return Ok(None),
        Some(b'\r') => {}
        Some(&b) => return Err(unexpected(at, b, "CR")),
    }
    match buf.get(at + 1) {
        None => Ok(None),
        Some(b'\n') => Ok(Some(at + 2)),
        Some(&b) => Err(unexpected(at + 1, b, "LF after CR")),
    }
}

/// Which limit a length is checked against.
#[derive(Debug, Clone, Copy)]
pub(crate) enum LenKind {
    Bulk,
    Aggregate,
}

/// Parses a non-negative length after the type byte at `header`: `0` or a
/// digit string without leading zeros, then CRLF. Errors as soon as the value
/// exceeds `max`. Returns `(length, offset after CRLF)`.
#[inline]
pub(crate) fn parse_count(
    buf: &[u8],
    header: usize,
    max: usize,
    kind: LenKind,
) -> Step<(usize, usize)> {
    let too_long = || match kind {
        LenKind::Bulk => RespError::BulkTooLong {
            offset: header,
            max,
        },
        LenKind::Aggregate => RespError::ArrayTooLong {
            offset: header,
            max,
        },
    };
    let mut i = header + 1;
    let first = match buf.get(i) {
        None => return Ok(None),
        Some(&b) if b.is_ascii_digit() => b,
        Some(&b) => return Err(unexpected(i, b, "a decimal digit")),
    };
    i += 1;
    let mut n = usize::from(first - b'0');
    if n > max {
        return Err(too_long());
    }
    if n != 0 {
        while let Some(&b) = buf.get(i) {
            if !b.is_ascii_digit() {
                break;
            }
            n = match n
                .checked_mul(10)
                .and_then(|n| n.checked_add(usize::from(b - b'0')))
            {
                Some(n) if n <= max => n,
                _ => return Err(too_long()),
            };
            i += 1;
        }
    }
    Ok(expect_crlf(buf, i)?.map(|next| (n, next)))
}

/// Like [`parse_count`], but `-1` (when `allow_null`) yields `None` as the length.
pub(crate) fn parse_len(
    buf: &[u8],
    header: usize,
    allow_null: bool,
    max: usize,
    kind: LenKind,
) -> Step<(Option<usize>, usize)> {
    let at = header + 1;
    if allow_null && buf.get(at) == Some(&b'-') {
        return match buf.get(at + 1) {
            None => Ok(None),
            Some(b'1') => Ok(expect_crlf(buf, at + 2)?.map(|next| (None, next))),
            Some(&b) => Err(unexpected(
                at + 1,
                b,
                "'1' (only -1 is a valid negative length)",
            )),
        };
    }
    Ok(parse_count(buf, header, max, kind)?.map(|(n, next)| (Some(n), next)))
}

/// Parses a length-prefixed string (`$`, `=`, `!`) whose type byte is at
/// `header`. Returns the payload range (`None` for `$-1`) and the offset after it.
pub(crate) fn parse_bulk(
    buf: &[u8],
    header: usize,
    allow_null: bool,
    max: usize,
) -> Step<(Option<(usize, usize)>, usize)> {
    let Some((len, data)) = parse_len(buf, header, allow_null, max, LenKind::Bulk)? else {
        return Ok(None);
    };
    let Some(len) = len else {
        return Ok(Some((None, data)));
    };
    let end = data.saturating_add(len);
    if buf.len() < end {
        return Ok(None);
    }
    Ok(expect_crlf(buf, end)?.map(|next| (Some((data, end)), next)))
}

/// Finds the CRLF ending the line whose type byte is at `header`. The line
/// may not contain CR or LF and may hold at most `max` bytes. Returns
/// `(end of content, offset after CRLF)`.
pub(crate) fn read_line(buf: &[u8], header: usize, max: usize) -> Step<(usize, usize)> {
    let start = header + 1;
    let window_end = buf.len().min(start.saturating_add(max).saturating_add(1));
    match memchr::memchr2(b'\r', b'\n', &buf[start..window_end]) {
        Some(k) => {
            let i = start + k;
            if buf[i] == b'\n' {
                return Err(unexpected(i, b'\n', "CR before LF"));
            }
            match buf.get(i + 1) {
                None => Ok(None),
                Some(b'\n') => Ok(Some((i, i + 2))),
                Some(&b) => Err(unexpected(i + 1, b, "LF after CR")),
            }
        }
        None if buf.len() - start > max => Err(RespError::LineTooLong {
            offset: header,
            max,
        }),
        None => Ok(None),
    }
}

/// Parses `:[+-]<1..=19 digits>\r\n` with its type byte at `header`.
pub(crate) fn parse_int(buf: &[u8], header: usize) -> Step<(i64, usize)> {
    let mut i = header + 1;
    let neg = match buf.get(i) {
        None => return Ok(None),
        Some(b'-') => true,
        Some(_) => false,
    };
    if matches!(buf.get(i), Some(b'-' | b'+')) {
        i += 1;
    }
    let digits = i;
    let mut mag: u64 = 0;
    loop {
        let Some(&b) = buf.get(i) else {
            return Ok(None);
        };
        if !b.is_ascii_digit() {
            if i == digits {
                return Err(unexpected(i, b, "a decimal digit"));
            }
            break;
        }
        if i - digits == 19 {
            return Err(RespError::IntegerOverflow { offset: header });
        }
        mag = mag * 10 + u64::from(b - b'0');
        i += 1;
    }
    let n = if neg {
        0i64.checked_sub_unsigned(mag)
    } else {
        i64::try_from(mag).ok()
    };
    let Some(n) = n else {
        return Err(RespError::IntegerOverflow { offset: header });
    };
    Ok(expect_crlf(buf, i)?.map(|next| (n, next)))
}

/// Checks a big number line `buf[start..end]`: an optional sign, then digits.
pub(crate) fn check_big_number(buf: &[u8], start: usize, end: usize) -> Result<(), RespError> {
    let mut i = start;
    if matches!(buf.get(i), Some(b'-' | b'+')) && i < end {
        i += 1;
    }
    if i == end {
        return Err(unexpected(
            i,
            buf.get(i).copied().unwrap_or(b'\r'),
            "a decimal digit",
        ));
    }
    match buf[i..end].iter().position(|b| !b.is_ascii_digit()) {
        Some(k) => Err(unexpected(i + k, buf[i + k], "a decimal digit")),
        None => Ok(()),
    }
}

/// Parses the text of a RESP3 double: `inf`, `-inf`, `nan` (any case, optional
/// sign) or a decimal float such as `1.5`, `-3e-7`.
pub(crate) fn parse_double(text: &[u8]) -> Option<f64> {
    let unsigned = text
        .strip_prefix(b"-")
        .or_else(|| text.strip_prefix(b"+"))
        .unwrap_or(text);
    if unsigned.eq_ignore_ascii_case(b"inf") {
        return Some(if text[0] == b'-' {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if unsigned.eq_ignore_ascii_case(b"nan") {
        return Some(f64::NAN);
    }
    if !text
        .iter()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}
