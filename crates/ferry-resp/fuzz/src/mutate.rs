//! Inputs for `fuzz_resp`: a small random number generator, mutations of
//! corpus entries (RESP type bytes, tokens, huge lengths, splices) and
//! random values to encode as fresh corpus entries.

use bytes::Bytes;
use ferry_resp::Value;

use crate::encode;

/// SplitMix64: small, fast, and good enough to drive mutations.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub(crate) fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const TYPE_BYTES: &[u8] = b"+-:$*_,#(=!%~>|";
const INTERESTING_BYTES: &[u8] = b"\r\n\0*$+-:_,#(=!%~>|0123456789?tf.eE ";
const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\r",
    b"\n",
    b"*1\r\n",
    b"*0\r\n",
    b"*-1\r\n",
    b"$-1\r\n",
    b"$0\r\n\r\n",
    b"_\r\n",
    b"|1\r\n+a\r\n+b\r\n",
    b"%1\r\n",
    b"~2\r\n",
    b">1\r\n",
    b":-9223372036854775808\r\n",
    b",nan\r\n",
    b",-inf\r\n",
    b"#t\r\n",
    b"(-1\r\n",
    b"=4\r\ntxt:\r\n",
    b"!0\r\n\r\n",
    b"$4\r\nPING\r\n",
    b"*1\r\n$4\r\nPING\r\n",
    b"*3\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n$1\r\n*\r\n",
];
const HUGE_LENGTHS: &[&str] = &[
    "2147483647",
    "2147483648",
    "4294967295",
    "4294967296",
    "536870912",
    "536870913",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "99999999999999999999999",
    "-1",
    "-2",
    "-0",
    "0",
    "00",
    "01",
    "",
    "+1",
    " 1",
    "1 ",
    "?",
];

/// Applies one random mutation to `buf`.
pub(crate) fn mutate_once(rng: &mut Rng, buf: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    let len = buf.len();
    match rng.below(12) {
        0 if len > 0 => {
            let i = rng.below(len);
            buf[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            buf[i] = if rng.chance(2) {
                *rng.pick(INTERESTING_BYTES)
            } else {
                rng.next() as u8
            };
        }
        2 => {
            let i = rng.below(len + 1);
            let b = if rng.chance(2) {
                *rng.pick(INTERESTING_BYTES)
            } else {
                rng.next() as u8
            };
            buf.insert(i, b);
        }
        3 if len > 0 => {
            let i = rng.below(len);
            let n = 1 + rng.below((len - i).min(16));
            buf.drain(i..i + n);
        }
        4 => {
            // Splice: a piece of another input, inserted or overwriting.
            let other = rng.pick(corpus);
            if !other.is_empty() {
                let s = rng.below(other.len());
                let e = s + 1 + rng.below(other.len() - s);
                let at = rng.below(len + 1);
                if rng.chance(2) {
                    buf.splice(at..at, other[s..e].iter().copied());
                } else {
                    let end = (at + (e - s)).min(len);
                    buf.splice(at..end, other[s..e].iter().copied());
                }
            }
        }
        5 => {
            // Length-field tweak: replace the digits after a type byte.
            let heads: Vec<usize> = (0..len).filter(|&i| TYPE_BYTES.contains(&buf[i])).collect();
            if let Some(&h) = heads.get(rng.below(heads.len().max(1))) {
                let start = h + 1;
                let mut end = start;
                while end < len && (buf[end].is_ascii_digit() || buf[end] == b'-') {
                    end += 1;
                }
                let new: Vec<u8> = if rng.chance(4) {
                    (rng.next() % 100_000).to_string().into_bytes()
                } else {
                    rng.pick(HUGE_LENGTHS).as_bytes().to_vec()
                };
                buf.splice(start..end, new);
            }
        }
        6 if len > 0 => buf.truncate(rng.below(len)),
        7 if len > 0 => {
            // Duplicate a range in place.
            let s = rng.below(len);
            let e = s + 1 + rng.below((len - s).min(64));
            let piece = buf[s..e].to_vec();
            buf.splice(e..e, piece);
        }
        8 => {
            let i = rng.below(len + 1);
            buf.splice(i..i, rng.pick(TOKENS).iter().copied());
        }
        9 => {
            // Deep nesting in front.
            let depth = 1 + rng.below(40);
            let head = *rng.pick(&[
                &b"*1\r\n"[..],
                b"~1\r\n",
                b">1\r\n",
                b"%1\r\n:0\r\n",
                b"|0\r\n",
            ]);
            let mut v = head.repeat(depth);
            v.extend_from_slice(buf);
            *buf = v;
        }
        10 => {
            // Replace with the encoding of a random value.
            *buf = encode(&gen_value(rng, 4));
        }
        _ => {
            // Concatenate with another corpus entry (multi-frame streams).
            let other: &Vec<u8> = rng.pick(corpus);
            buf.extend_from_slice(other);
        }
    }
}

pub(crate) fn random_bytes(rng: &mut Rng, max: usize, line: bool) -> Bytes {
    let n = rng.below(max + 1);
    (0..n)
        .map(|_| {
            let b = if rng.chance(3) {
                *rng.pick(INTERESTING_BYTES)
            } else {
                rng.next() as u8
            };
            if line && (b == b'\r' || b == b'\n') {
                b' '
            } else {
                b
            }
        })
        .collect::<Vec<u8>>()
        .into()
}

/// A random value of every RESP2/RESP3 kind, nested up to `depth`.
pub(crate) fn gen_value(rng: &mut Rng, depth: usize) -> Value {
    let kinds = if depth == 0 { 12 } else { 16 };
    match rng.below(kinds) {
        0 => Value::Simple(random_bytes(rng, 20, true)),
        1 => {
            let line = rng.chance(2);
            Value::Error(random_bytes(rng, 20, line))
        }
        2 => Value::Integer(match rng.below(4) {
            0 => i64::MIN,
            1 => i64::MAX,
            2 => rng.next() as i64,
            _ => rng.below(1000) as i64 - 500,
        }),
        3 | 4 => Value::Bulk(random_bytes(rng, 40, false)),
        5 => Value::Null,
        6 => Value::NullArray,
        7 => Value::Double(match rng.below(5) {
            0 => f64::INFINITY,
            1 => f64::NEG_INFINITY,
            2 => f64::NAN,
            3 => f64::from_bits(rng.next()),
            _ => (rng.below(100_000) as f64 - 50_000.0) / 64.0,
        }),
        8 => Value::Boolean(rng.chance(2)),
        9 => {
            let digits: String = (0..1 + rng.below(50))
                .map(|_| char::from(b'0' + rng.below(10) as u8))
                .collect();
            Value::BigNumber(format!("{}{digits}", if rng.chance(2) { "-" } else { "" }).into())
        }
        10 => Value::Verbatim {
            format: [rng.next() as u8, b'x', b't'],
            text: random_bytes(rng, 30, false),
        },
        11 => Value::Bulk(Bytes::new()),
        k => {
            let n = rng.below(6);
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(gen_value(rng, depth - 1));
            }
            match k {
                12 => Value::Array(items),
                13 => Value::Set(items),
                14 => Value::Push(items),
                _ => {
                    let mut it = items.into_iter();
                    let mut pairs = Vec::new();
                    while let (Some(a), Some(b)) = (it.next(), it.next()) {
                        pairs.push((a, b));
                    }
                    Value::Map(pairs)
                }
            }
        }
    }
}
