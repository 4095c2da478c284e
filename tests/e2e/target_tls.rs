//! `ferry run` and `ferry verify` into a TLS-only 3-master cluster
//! (`rediss://` target, no plaintext port, `tls-cluster yes`), and the clear
//! fatal error a wrong CA gives.

use std::collections::BTreeMap;
use std::time::Duration;

use ferry_testkit::fixtures::{self, FixtureOptions};
use ferry_testkit::{Cluster, Flavor, Server, TlsFiles, free_port};
use ferry_tls::test_pki::TestPki;

use crate::e2e_support::{
    Daemon, assert_same, dataset, run_expecting_exit, verify, wait_caught_up, write_config,
};

fn files(pki: &TestPki) -> TlsFiles {
    TlsFiles {
        ca_cert: pki.ca_cert.clone(),
        cert: pki.server_cert.clone(),
        key: pki.server_key.clone(),
        client_cert: pki.client_cert.clone(),
        client_key: pki.client_key.clone(),
    }
}

#[test]
fn run_and_verify_into_a_tls_only_cluster() {
    let dir = tempfile::tempdir().expect("tmp");
    let pki = TestPki::generate(dir.path());
    let src = Server::start(Flavor::Redis70).expect("source");
    fixtures::populate_with(
        &mut src.conn(),
        FixtureOptions::new(Flavor::Redis70).single_db(),
    )
    .expect("populate");
    let cluster = Cluster::start_tls(Flavor::Redis70, 3, &files(&pki)).expect("TLS cluster");
    let http = format!("127.0.0.1:{}", free_port());
    let target = |ca: &std::path::Path| {
        format!(
            "{{ url: \"{}\", tls: {{ ca_file: \"{}\" }} }}",
            cluster.seed_url(),
            ca.display()
        )
    };

    // The wrong CA: ferry stops at once with a message that says why.
    let other_dir = tempfile::tempdir().expect("tmp");
    let other = TestPki::generate(other_dir.path());
    let bad_dir = tempfile::tempdir().expect("tmp");
    let cfg = write_config(
        bad_dir.path(),
        &format!("{{ url: \"{}\" }}", src.url()),
        &target(&other.ca_cert),
        &format!("127.0.0.1:{}", free_port()),
        "",
    );
    let out = run_expecting_exit(&cfg, Duration::from_secs(30));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("target") && err.contains("invalid peer certificate"),
        "{err}"
    );
    assert!(err.contains("CA file"), "{err}");

    // The right CA: snapshot and live writes land, verify agrees.
    let cfg = write_config(
        dir.path(),
        &format!("{{ url: \"{}\" }}", src.url()),
        &target(&pki.ca_cert),
        &http,
        "",
    );
    let _daemon = Daemon::start(&cfg);
    let mut c = src.conn();
    for i in 0..500u64 {
        redis::pipe()
            .cmd("INCR")
            .arg("tls:counter")
            .ignore()
            .cmd("RPUSH")
            .arg(format!("tls:list:{}", i % 7))
            .arg(i)
            .ignore()
            .cmd("SET")
            .arg(format!("tls:s:{i}"))
            .arg(i)
            .ignore()
            .query::<()>(&mut c)
            .expect("load");
    }
    wait_caught_up(&src, &http, Duration::from_secs(60));
    let want = dataset(&src);
    let mut got = BTreeMap::new();
    for node in &cluster.nodes {
        got.extend(dataset(node));
    }
    assert_same(&want, &got);

    let out = verify(&cfg);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "verify: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(" 0 differ"), "{text}");
}
