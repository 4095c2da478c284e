//! Every flavor, populated with the fixture, dumps the RDB version and the
//! type bytes that `servers.md` documents; the dump reloads to the same data.

use ferry_testkit::fixtures::{self, FixtureInfo, expected_types};
use ferry_testkit::rdb_scan::{self, Detail, RdbSummary, StrEnc};
use ferry_testkit::{Flavor, Server, ServerBuilder, check_rdb};

/// The builder each fixture test uses: with `modules`, RedisJSON and
/// RedisBloom, and on Redis Stack also RediSearch and RedisTimeSeries.
fn builder(flavor: Flavor, modules: bool) -> ServerBuilder {
    Server::builder(flavor)
        .modules(modules)
        .all_stack_modules(modules && flavor == Flavor::RedisStack74)
}

fn dbsize(server: &Server, db: u32) -> usize {
    let mut conn = server.conn();
    redis::cmd("SELECT").arg(db).query::<()>(&mut conn).unwrap();
    redis::cmd("DBSIZE").query(&mut conn).unwrap()
}

/// Populates a fresh server, dumps it and checks the dump against the
/// expectations. Returns the scan for further checks.
fn check_flavor(flavor: Flavor, modules: bool) -> (RdbSummary, FixtureInfo) {
    let server = builder(flavor, modules)
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    let info =
        fixtures::populate(&mut server.conn(), flavor).unwrap_or_else(|e| server_fail(&server, &e));
    assert_eq!(info.dbs, vec![0, 1, 5]);
    assert_eq!(info.has_modules, modules);
    assert_eq!(info.has_field_ttls, flavor.has_field_ttls());
    assert_eq!(info.has_functions, flavor != Flavor::Redis62);
    let total: usize = info.dbs.iter().map(|db| dbsize(&server, *db)).sum();
    assert_eq!(total, info.keys, "DBSIZE over all dbs");

    let rdb = server.dump_rdb().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(&rdb[..9], flavor.rdb_magic(), "{flavor} header");
    assert!(rdb.len() < 5 << 20, "fixture dump is {} bytes", rdb.len());
    let scan = rdb_scan::scan(&rdb).unwrap_or_else(|e| panic!("{flavor}: {e}"));
    assert_eq!(scan.version, flavor.rdb_version());
    assert_eq!(scan.keys.len(), info.keys, "keys in the dump");

    let mut wrong = Vec::new();
    for exp in expected_types(flavor, &info) {
        match scan.key(u64::from(exp.db), &exp.key) {
            None => wrong.push(format!("{:?} missing", String::from_utf8_lossy(&exp.key))),
            Some(rec) => {
                if rec.type_byte != exp.type_byte || rec.expire_ms.is_some() != exp.expires {
                    wrong.push(format!(
                        "{:?}: type {} expire {:?}, expected type {} expires {}",
                        String::from_utf8_lossy(&exp.key),
                        rec.type_byte,
                        rec.expire_ms,
                        exp.type_byte,
                        exp.expires
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{flavor}:\n{}", wrong.join("\n"));
    assert_eq!(
        expected_types(flavor, &info).len(),
        info.keys,
        "every key has an expectation"
    );

    // Encodings the fixture promises.
    let detail = |k: &str| scan.key(0, k.as_bytes()).map(|r| r.detail.clone()).unwrap();
    assert_eq!(detail("fx:s:int"), Detail::String(StrEnc::Int));
    assert_eq!(detail("fx:s:neg"), Detail::String(StrEnc::Int));
    assert_eq!(detail("fx:s:i32"), Detail::String(StrEnc::Int));
    assert_eq!(detail("fx:s:lzf"), Detail::String(StrEnc::Lzf));
    assert_eq!(detail("fx:s:rand"), Detail::String(StrEnc::Raw));
    assert_eq!(detail("fx:s:i64max"), Detail::String(StrEnc::Raw));
    match (flavor, detail("fx:l:big"), detail("fx:l:plain")) {
        (Flavor::Redis62, Detail::Quicklist { nodes }, Detail::Quicklist { .. }) => {
            assert!(nodes > 1, "big list has {nodes} nodes")
        }
        (_, Detail::Quicklist2 { plain: 0, packed }, Detail::Quicklist2 { plain, .. }) => {
            assert!(packed > 1, "big list has {packed} nodes");
            assert_eq!(plain, 1, "the 9000-byte element is a PLAIN node");
        }
        other => panic!("{flavor}: unexpected list details {other:?}"),
    }
    match detail("fx:st:main") {
        Detail::Stream {
            length,
            groups,
            consumers,
            pending,
            ..
        } => {
            assert_eq!(
                (length, groups, consumers, pending),
                (4, 2, 4, 3),
                "fx:st:main"
            );
        }
        d => panic!("{d:?}"),
    }
    assert!(matches!(
        detail("fx:st:nodes"),
        Detail::Stream {
            nodes: 3,
            length: 250,
            ..
        }
    ));
    assert!(matches!(
        detail("fx:st:empty"),
        Detail::Stream {
            length: 0,
            groups: 1,
            ..
        }
    ));
    assert!(matches!(
        detail("fx:st:emptied"),
        Detail::Stream {
            length: 0,
            pending: 2,
            ..
        }
    ));
    assert_eq!(scan.functions.len(), usize::from(info.has_functions));

    // The dump reloads into a fresh server with the same content.
    let digest = server.digest();
    let reloaded = builder(flavor, modules)
        .preload_rdb(rdb.clone())
        .start()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reloaded.digest(), digest, "{flavor}: digest after reload");

    // The server's own checker accepts it (it cannot check module values).
    if !modules {
        let path = server.dir().join("dump.rdb");
        let out = check_rdb(flavor, &path).unwrap_or_else(|e| panic!("{e}"));
        assert!(out.contains("RDB looks OK"), "{out}");
    }
    eprintln!(
        "{flavor}: {} bytes, {} keys, type bytes {:?}, {} function(s), {} module aux",
        rdb.len(),
        scan.keys.len(),
        scan.type_bytes(),
        scan.functions.len(),
        scan.module_aux
    );
    (scan, info)
}

fn server_fail(server: &Server, e: &dyn std::fmt::Display) -> ! {
    panic!("{e}\n{}", server.log_tail(30))
}

#[test]
fn redis70_fixture() {
    check_flavor(Flavor::Redis70, false);
}

#[test]
fn redis62_fixture() {
    check_flavor(Flavor::Redis62, false);
}

#[test]
fn redis_stack74_fixture_with_modules() {
    let (scan, info) = check_flavor(Flavor::RedisStack74, true);
    assert_eq!(info.modules, ["bf", "rejson", "search", "timeseries"]);
    assert!(scan.type_bytes().contains(&7));
    assert!(scan.module_aux > 0, "RediSearch writes MODULE_AUX");
}

#[test]
fn valkey9_fixture() {
    check_flavor(Flavor::Valkey9, false);
}

#[test]
fn redis70_fixture_with_stack_modules() {
    check_flavor(Flavor::Redis70, true);
}

#[test]
fn valkey9_fixture_with_stack_modules() {
    check_flavor(Flavor::Valkey9, true);
}

#[test]
fn redis_stack74_fixture_without_modules() {
    check_flavor(Flavor::RedisStack74, false);
}

#[test]
fn single_db_fixture_stays_in_db0() {
    let server = Server::start(Flavor::Valkey9).unwrap_or_else(|e| panic!("{e}"));
    let opts = fixtures::FixtureOptions::new(Flavor::Valkey9).single_db();
    let info = fixtures::populate_with(&mut server.conn(), opts).unwrap();
    assert_eq!(info.dbs, vec![0]);
    assert_eq!(dbsize(&server, 0), info.keys);
    assert_eq!(dbsize(&server, 1) + dbsize(&server, 5), 0);
}

#[test]
fn populate_big_writes_incompressible_values() {
    let server = Server::start(Flavor::Redis70).unwrap_or_else(|e| panic!("{e}"));
    let mut conn = server.conn();
    fixtures::populate_big(&mut conn, 2500, 100).unwrap();
    assert_eq!(dbsize(&server, 0), 2500);
    let rdb = server.dump_rdb().unwrap();
    // Random values do not shrink: the dump is at least keys x value size.
    assert!(rdb.len() > 2500 * 100, "dump is {} bytes", rdb.len());
    let scan = rdb_scan::scan(&rdb).unwrap();
    assert_eq!(scan.keys.len(), 2500);
    assert!(
        scan.keys
            .iter()
            .all(|k| k.detail == Detail::String(StrEnc::Raw))
    );

    redis::cmd("FLUSHALL").query::<()>(&mut conn).unwrap();
    fixtures::populate_big_debug(&mut conn, 3000, 100).unwrap();
    assert_eq!(dbsize(&server, 0), 3000);
}
