use super::*;

fn args(s: &str) -> Vec<Bytes> {
    s.split(' ')
        .map(|a| Bytes::copy_from_slice(a.as_bytes()))
        .collect()
}

#[test]
fn the_hash_lookup_finds_every_name_in_any_case_and_nothing_else() {
    for (name, spec) in table() {
        assert_eq!(key_spec(name.as_bytes()), *spec, "{name}");
        assert_eq!(
            key_spec(name.to_ascii_lowercase().as_bytes()),
            *spec,
            "{name}"
        );
        let longer = format!("{name}X");
        let found = table().iter().find(|(n, _)| *n == longer).map(|(_, s)| *s);
        assert_eq!(
            key_spec(longer.as_bytes()),
            found.unwrap_or(KeySpec::Unknown)
        );
        assert_eq!(key_spec(&name.as_bytes()[1..]), {
            let shorter = &name[1..];
            table()
                .iter()
                .find(|(n, _)| *n == shorter)
                .map_or(KeySpec::Unknown, |(_, s)| *s)
        });
    }
    assert!(
        table().windows(2).all(|w| w[0].0 < w[1].0),
        "sorted, no duplicates"
    );
    assert_eq!(key_spec(b""), KeySpec::Unknown);
    assert_eq!(key_spec(&[0xff; 24]), KeySpec::Unknown);
}

fn idx(s: &str) -> Vec<usize> {
    command_keys(&args(s)).unwrap().indexes.to_vec()
}

#[test]
fn table_is_sorted_upper_case_and_short() {
    for w in TABLE.windows(2) {
        assert!(w[0].0 < w[1].0, "{} before {}", w[0].0, w[1].0);
    }
    for (name, spec) in TABLE {
        assert_eq!(*name, name.to_ascii_uppercase());
        assert!(name.len() <= MAX_NAME);
        assert_eq!(key_spec(name.as_bytes()), *spec);
        assert_eq!(key_spec(name.to_ascii_lowercase().as_bytes()), *spec);
    }
}

#[test]
fn ranges() {
    assert_eq!(idx("SET k v PXAT 1"), [1]);
    assert_eq!(idx("set k v"), [1]);
    assert_eq!(idx("MSET a 1 b 2 c 3"), [1, 3, 5]);
    assert_eq!(idx("MSETNX a 1"), [1]);
    assert_eq!(idx("DEL a b c"), [1, 2, 3]);
    assert_eq!(idx("UNLINK a"), [1]);
    assert_eq!(idx("RENAME a b"), [1, 2]);
    assert_eq!(idx("LMOVE a b LEFT RIGHT"), [1, 2]);
    assert_eq!(idx("SMOVE a b m"), [1, 2]);
    assert_eq!(idx("SINTERSTORE d a b"), [1, 2, 3]);
    assert_eq!(idx("BITOP AND d a b"), [2, 3, 4]);
    assert_eq!(idx("BITOP NOT d a"), [2, 3]);
    assert_eq!(idx("PFMERGE d"), [1]);
    assert_eq!(idx("PFMERGE d a b"), [1, 2, 3]);
    assert_eq!(idx("ZRANGESTORE d s 0 -1"), [1, 2]);
    assert_eq!(idx("GEOSEARCHSTORE d s FROMMEMBER m BYRADIUS 1 km"), [1, 2]);
    assert_eq!(idx("XADD s 1-1 f v"), [1]);
}

#[test]
fn numkeys() {
    assert_eq!(idx("ZUNIONSTORE d 2 a b WEIGHTS 1 2"), [1, 3, 4]);
    assert_eq!(idx("ZINTERSTORE d 1 a"), [1, 3]);
    assert_eq!(idx("ZDIFFSTORE d 0"), [1]);
    assert_eq!(idx("EVAL body 2 a b x y"), [3, 4]);
    assert_eq!(idx("EVALSHA sha 0 x"), Vec::<usize>::new());
    assert_eq!(idx("FCALL f 1 a"), [3]);
    assert_eq!(idx("MSETEX 2 a 1 b 2 NX PXAT 5"), [2, 4]);
    assert_eq!(idx("MSETEX 1 a 1"), [2]);
    for bad in ["MSETEX 2 a 1 b", "MSETEX 0x a", "MSETEX 3 a 1 b 2"] {
        assert!(
            matches!(
                command_keys(&args(bad)),
                Err(KeyError::BadNumKeys { index: 1, .. })
            ),
            "{bad}"
        );
    }
    for bad in [
        "EVAL b -1",
        "EVAL b x",
        "EVAL b 01",
        "EVAL b 3 a b",
        "EVAL b +1 a",
        "EVAL b ",
    ] {
        assert!(
            matches!(
                command_keys(&args(bad)),
                Err(KeyError::BadNumKeys { index: 2, .. })
            ),
            "{bad}"
        );
    }
    let huge = "EVAL b 99999999999999999999 a";
    assert!(matches!(
        command_keys(&args(huge)),
        Err(KeyError::BadNumKeys { .. })
    ));
    assert!(matches!(
        command_keys(&args("EVAL b")),
        Err(KeyError::MissingArguments { got: 2, .. })
    ));
}

#[test]
fn sort_and_georadius() {
    assert_eq!(idx("SORT k"), [1]);
    assert_eq!(idx("SORT k STORE d"), [1, 3]);
    assert_eq!(
        idx("SORT k BY store LIMIT 0 10 GET store ALPHA STORE d"),
        [1, 11]
    );
    assert_eq!(idx("SORT k STORE a STORE b"), [1, 5]);
    assert_eq!(idx("SORT k STORE"), [1]);
    assert_eq!(idx("GEORADIUS k 0 0 1 km STORE d"), [1, 7]);
    assert_eq!(idx("GEORADIUS k 0 0 1 km STOREDIST d ASC"), [1, 7]);
    assert_eq!(idx("GEORADIUSBYMEMBER k m 1 km STORE d"), [1, 6]);
    assert_eq!(
        idx("GEORADIUSBYMEMBER k m 1 km STORE a STOREDIST b"),
        [1, 8]
    );
    assert_eq!(idx("GEORADIUS k 0 0 1 km"), [1]);
}

#[test]
fn xgroup_copy_move() {
    assert_eq!(idx("XGROUP CREATE s g $ MKSTREAM"), [2]);
    assert_eq!(idx("xgroup setid s g 0 ENTRIESREAD 3"), [2]);
    assert_eq!(idx("XGROUP CREATECONSUMER s g c"), [2]);
    assert!(matches!(
        command_keys(&args("XGROUP HELP")),
        Err(KeyError::UnknownSubcommand { .. })
    ));
    assert!(matches!(
        command_keys(&args("XGROUP")),
        Err(KeyError::MissingArguments { .. })
    ));
    let k = command_keys(&args("COPY a b REPLACE")).unwrap();
    assert_eq!((k.class, k.indexes.to_vec()), (Class::DataKeys, vec![1, 2]));
    let k = command_keys(&args("COPY a b DB 3")).unwrap();
    assert_eq!((k.class, k.indexes.to_vec()), (Class::CrossDb, vec![1, 2]));
    let k = command_keys(&args("COPY a b DB")).unwrap();
    assert_eq!(k.class, Class::DataKeys);
    let k = command_keys(&args("MOVE a 1")).unwrap();
    assert_eq!((k.class, k.indexes.to_vec()), (Class::CrossDb, vec![1]));
}

#[test]
fn no_keys_are_classified() {
    for (cmd, kind) in [
        ("FLUSHALL ASYNC", NoKeysKind::Flush),
        ("flushdb", NoKeysKind::Flush),
        ("FUNCTION LOAD x", NoKeysKind::Function),
        ("SCRIPT LOAD x", NoKeysKind::Script),
        ("SELECT 1", NoKeysKind::Select),
        ("MULTI", NoKeysKind::Multi),
        ("EXEC", NoKeysKind::Exec),
        ("PING", NoKeysKind::Ping),
        ("REPLCONF GETACK *", NoKeysKind::Replconf),
        ("PUBLISH ch m", NoKeysKind::Publish),
        ("SWAPDB 0 1", NoKeysKind::SwapDb),
        ("OPINFO x", NoKeysKind::Vendor),
        ("CLUSTER SYNCSLOTS SNAPSHOT-EOF", NoKeysKind::Vendor),
    ] {
        let k = command_keys(&args(cmd)).unwrap();
        assert_eq!(k.class, Class::NoKeys(kind), "{cmd}");
        assert!(k.indexes.is_empty());
    }
}

#[test]
fn errors() {
    assert_eq!(command_keys(&[]), Err(KeyError::Empty));
    assert!(matches!(
        command_keys(&args("XREADGROUP GROUP g c STREAMS s >")),
        Err(KeyError::UnknownCommand { .. })
    ));
    assert!(matches!(
        command_keys(&[Bytes::from(vec![b'X'; 1000])]),
        Err(KeyError::UnknownCommand { .. })
    ));
    for short in [
        "SET",
        "DEL",
        "RENAME a",
        "MSET a",
        "MSET a 1 b",
        "BITOP AND",
        "MOVE a",
        "SORT",
    ] {
        assert!(
            matches!(
                command_keys(&args(short)),
                Err(KeyError::MissingArguments { .. })
            ),
            "{short}"
        );
    }
    let e = command_keys(&args("NOPE\u{1}")).unwrap_err().to_string();
    assert_eq!(e, "unknown command NOPE\\x01: no key spec, not routed");
}

#[test]
fn keys_iterates_key_arguments() {
    let a = args("MSET a 1 b 2");
    let k = command_keys(&a).unwrap();
    let got: Vec<&[u8]> = k.keys(&a).map(|b| &b[..]).collect();
    assert_eq!(got, [&b"a"[..], b"b"]);
}

#[test]
fn eight_bytes_upper_cased_at_once_as_one_at_a_time() {
    for b in 0..=255u8 {
        for pos in 0..8 {
            // The byte among neighbours that are and are not letters.
            for fill in [b'a', b'Z', 0x7f, 0xff, 0x00, b'{'] {
                let mut bytes = [fill; 8];
                bytes[pos] = b;
                let want = bytes.map(|c| c.to_ascii_uppercase());
                assert_eq!(upper(pack(&bytes)), pack(&want), "{b:#x} at {pos}");
            }
        }
    }
    assert_eq!(pack(b"ab"), 0x6261);
    // Names that differ only past a word or in length.
    assert_eq!(key_spec(b"ZREMRANGEBYSCORE"), K1);
    assert_eq!(key_spec(b"ZREMRANGEBYSCOREX"), KeySpec::Unknown);
    assert_eq!(key_spec(b"SET\0"), KeySpec::Unknown);
    assert_eq!(key_spec(b"S\xc5T"), KeySpec::Unknown);
    assert_eq!(key_spec(b"RESTORE\rASKING"), KeySpec::Unknown);
    assert_eq!(key_spec(b"restore-asking"), K1);
}
