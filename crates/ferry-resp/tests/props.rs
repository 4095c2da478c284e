//! Property tests: encode → decode round trips (whole, in random-size chunks
//! and truncated), robustness on arbitrary bytes, and agreement between the
//! command fast path and the general decoder.

use bytes::{Bytes, BytesMut};
use ferry_resp::{
    Command, Decoder, RespError, Value, command_len, decode, decode_bytes, decode_command,
    split_command, write_command, write_value,
};
use proptest::collection::vec;
use proptest::prelude::*;

type Decoded = Result<Option<(Value, usize)>, RespError>;

fn line_bytes() -> impl Strategy<Value = Bytes> {
    vec(
        any::<u8>().prop_filter("no CR/LF", |b| *b != b'\r' && *b != b'\n'),
        0..24,
    )
    .prop_map(Bytes::from)
}

fn any_bytes() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..48).prop_map(Bytes::from)
}

fn resp2_leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        line_bytes().prop_map(Value::Simple),
        line_bytes().prop_map(Value::Error),
        any::<i64>().prop_map(Value::Integer),
        any_bytes().prop_map(Value::Bulk),
        Just(Value::Null),
        Just(Value::NullArray),
    ]
    .boxed()
}

fn resp3_leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        resp2_leaf(),
        any_bytes().prop_map(Value::Error), // CR/LF inside: written as a blob error
        any::<f64>()
            .prop_filter("NaN != NaN", |d| !d.is_nan())
            .prop_map(Value::Double),
        prop_oneof![
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(-0.0),
            Just(1e-300)
        ]
        .prop_map(Value::Double),
        any::<bool>().prop_map(Value::Boolean),
        "[-+]?[0-9]{1,60}".prop_map(|s| Value::BigNumber(Bytes::from(s))),
        (any::<[u8; 3]>(), any_bytes()).prop_map(|(format, text)| Value::Verbatim { format, text }),
    ]
    .boxed()
}

fn resp2_value() -> impl Strategy<Value = Value> {
    resp2_leaf().prop_recursive(5, 96, 8, |inner| vec(inner, 0..8).prop_map(Value::Array))
}

fn resp3_value() -> impl Strategy<Value = Value> {
    resp3_leaf().prop_recursive(5, 96, 8, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..8).prop_map(Value::Array),
            vec(inner.clone(), 0..8).prop_map(Value::Set),
            vec(inner.clone(), 0..8).prop_map(Value::Push),
            vec((inner.clone(), inner), 0..6).prop_map(Value::Map),
        ]
    })
}

fn any_value() -> impl Strategy<Value = Value> {
    prop_oneof![resp2_value(), resp3_value()]
}

fn enc(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_value(&mut out, v);
    out
}

/// Bytes that look like RESP often enough to reach deep into the grammar.
fn resp_ish() -> impl Strategy<Value = Vec<u8>> {
    let tokens: Vec<&'static [u8]> = vec![
        b"*",
        b"$",
        b"+",
        b"-",
        b":",
        b"_",
        b",",
        b"#",
        b"(",
        b"=",
        b"!",
        b"%",
        b"~",
        b">",
        b"|",
        b"\r\n",
        b"\r",
        b"\n",
        b"-1",
        b"0",
        b"1",
        b"2",
        b"3",
        b"12",
        b"99999999999",
        b"t",
        b"f",
        b"inf",
        b"nan",
        b"1.5e3",
        b"txt:",
        b"SET",
        b"abc",
    ];
    prop_oneof![
        vec(any::<u8>(), 0..128),
        vec(proptest::sample::select(tokens), 0..48).prop_map(|t| t.concat()),
        (any_value(), any::<prop::sample::Index>(), any::<u8>()).prop_map(|(v, i, b)| {
            let mut e = enc(&v);
            let i = i.index(e.len());
            e[i] = b;
            e
        }),
    ]
}

/// Equality that treats NaN as equal to itself.
fn same(a: &Decoded, b: &Decoded) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

/// Feeds `stream` to `dec` in pieces of the given sizes, draining whole frames.
/// Returns the frames and, if decoding stopped on an error, that error.
fn decode_chunked(stream: &[u8], sizes: &[usize]) -> (Vec<(Value, usize)>, Option<RespError>) {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut fed = 0;
    let mut i = 0;
    loop {
        loop {
            match decode(&buf) {
                Ok(Some((v, n))) => {
                    assert!(n <= buf.len());
                    out.push((v, n));
                    buf.drain(..n);
                }
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
        if fed == stream.len() {
            return (out, None);
        }
        let n = sizes[i % sizes.len()].min(stream.len() - fed);
        buf.extend_from_slice(&stream[fed..fed + n]);
        fed += n;
        i += 1;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn roundtrip_in_random_chunks(values in vec(any_value(), 1..5), sizes in vec(1usize..40, 1..16)) {
        let encoded: Vec<Vec<u8>> = values.iter().map(enc).collect();
        let stream = encoded.concat();
        let (frames, err) = decode_chunked(&stream, &sizes);
        prop_assert_eq!(err, None);
        prop_assert_eq!(frames.len(), values.len());
        for ((got, n), (want, e)) in frames.iter().zip(values.iter().zip(&encoded)) {
            prop_assert_eq!(got, want);
            prop_assert_eq!(*n, e.len());
        }
    }

    #[test]
    fn roundtrip_zero_copy(v in any_value()) {
        let e = Bytes::from(enc(&v));
        prop_assert_eq!(decode_bytes(&e), Ok(Some((v.clone(), e.len()))));
        prop_assert_eq!(decode(&e), Ok(Some((v, e.len()))));
    }

    #[test]
    fn truncation_is_always_incomplete(v in any_value()) {
        let e = enc(&v);
        for k in 0..e.len() {
            prop_assert_eq!(decode(&e[..k]), Ok(None), "prefix of {} bytes", k);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_are_prefix_consistent(b in resp_ish()) {
        let whole = decode(&b);
        if let Ok(Some((v, n))) = &whole {
            prop_assert!(*n <= b.len());
            // Whatever decodes re-encodes to something that decodes to the same value.
            let again = decode(&enc(v));
            prop_assert!(same(&again, &Ok(Some((v.clone(), enc(v).len())))));
        }
        let shared = Bytes::from(b.clone());
        prop_assert!(same(&decode_bytes(&shared), &whole));
        for k in 0..b.len() {
            let part = decode(&b[..k]);
            prop_assert!(matches!(part, Ok(None)) || same(&part, &whole),
                "prefix {} gave {:?}, whole gave {:?}", k, part, whole);
        }
        check_command_agrees(&shared, &whole)?;
        // The same with tight limits, so limit errors are exercised too.
        let small = Decoder { max_bulk_len: 5, max_array_len: 3, max_depth: 2 };
        let whole = small.decode(&b);
        for k in 0..b.len() {
            let part = small.decode(&b[..k]);
            prop_assert!(matches!(part, Ok(None)) || same(&part, &whole),
                "small limits: prefix {} gave {:?}, whole gave {:?}", k, part, whole);
        }
    }

    #[test]
    fn commands_roundtrip(args in vec(vec(any::<u8>(), 0..40), 0..10), sizes in vec(1usize..30, 1..8)) {
        let mut wire = Vec::new();
        write_command(&mut wire, &args);
        prop_assert_eq!(wire.len(), command_len(&args));
        let as_value = Value::Array(args.iter().map(|a| Value::bulk(a.clone())).collect());
        prop_assert_eq!(&enc(&as_value), &wire);
        let buf = Bytes::from(wire.clone());
        let cmd = decode_command(&buf).unwrap().unwrap();
        prop_assert_eq!(&cmd.args, &args);
        prop_assert_eq!(cmd.wire_len, wire.len());
        check_command_agrees(&buf, &decode(&buf))?;
        for k in 0..wire.len() {
            prop_assert_eq!(decode_command(&buf.slice(..k)), Ok(None));
        }
        // A stream of three commands through split_command in pieces, and
        // through split_args (every other command): the same commands.
        let stream = wire.repeat(3);
        let mut rx = BytesMut::new();
        let mut got: Vec<Command> = Vec::new();
        let (mut fed, mut i) = (0, 0);
        let dec = Decoder::new();
        while fed < stream.len() {
            let n = sizes[i % sizes.len()].min(stream.len() - fed);
            rx.extend_from_slice(&stream[fed..fed + n]);
            fed += n;
            i += 1;
            loop {
                let c = if got.len() % 2 == 1 {
                    dec.split_args(&mut rx).unwrap().map(|c| {
                        assert_eq!(c.args.spilled(), c.args.len() > 3);
                        Command { args: c.args.into_vec(), wire_len: c.wire_len }
                    })
                } else {
                    split_command(&mut rx).unwrap()
                };
                let Some(c) = c else { break };
                got.push(c);
            }
        }
        prop_assert!(rx.is_empty());
        prop_assert_eq!(got, vec![cmd.clone(), cmd.clone(), cmd]);
    }
}

/// `decode_command` and `decode` agree wherever the frame is an array of bulks
/// (and carries no RESP3 attribute).
fn check_command_agrees(buf: &Bytes, whole: &Decoded) -> Result<(), TestCaseError> {
    let cmd = decode_command(buf);
    match &cmd {
        Ok(Some(c)) => {
            prop_assert!(c.wire_len <= buf.len());
            prop_assert_eq!(c.wire_len, command_len(&c.args));
            prop_assert_eq!(whole, &Ok(Some((c.to_value(), c.wire_len))));
        }
        Ok(None) => prop_assert_eq!(whole, &Ok(None)),
        Err(_) => {}
    }
    // Attributes are skipped by `decode` but are not commands: compare only
    // when the consumed bytes are exactly the canonical command encoding.
    if let Ok(Some((Value::Array(items), n))) = whole {
        let args: Option<Vec<&Bytes>> = items
            .iter()
            .map(|v| match v {
                Value::Bulk(b) => Some(b),
                _ => None,
            })
            .collect();
        if args.is_some_and(|a| command_len(&a) == *n) {
            prop_assert_eq!(
                cmd.map(|c| c.map(|c| (c.to_value(), c.wire_len))),
                Ok(Some((Value::Array(items.clone()), *n)))
            );
        }
    }
    Ok(())
}

#[test]
fn absurd_lengths_are_cheap() {
    // Neither header reserves memory for its announced length.
    for wire in [
        &b"*2147483647\r\n"[..],
        b"%2147483647\r\n",
        b"$536870912\r\n",
        b"*2147483647\r\n$2147483647",
    ] {
        assert!(matches!(decode(wire), Ok(None) | Err(_)));
        assert!(matches!(
            decode_command(&Bytes::copy_from_slice(wire)),
            Ok(None) | Err(_)
        ));
    }
    let strict = Decoder {
        max_array_len: 1000,
        ..Decoder::new()
    };
    assert_eq!(
        strict.decode(b"*2147483647\r\n"),
        Err(RespError::ArrayTooLong {
            offset: 0,
            max: 1000
        })
    );
}
