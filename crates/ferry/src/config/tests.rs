//! Unit tests of the configuration loader.

use super::*;

#[test]
fn db_prefix_needs_dbs_and_a_db_placeholder() {
    let base = "source: { url: \"redis://a:1\" }\ntarget: { url: \"redis://b:2\" }\n";
    let cfg = Config::parse(&format!(
        "{base}filter: {{ dbs: [0, 2], db_prefix: \"{{db}}:\" }}\n"
    ))
    .expect("db_prefix");
    assert_eq!(cfg.filter.prefix_for(2).as_deref(), Some(&b"2:"[..]));
    assert_eq!(Filter::default().prefix_for(2), None);
    let e = Config::parse(&format!("{base}filter: {{ db_prefix: \"{{db}}:\" }}\n"));
    assert!(format!("{:#}", e.unwrap_err()).contains("filter.dbs"));
    let e = Config::parse(&format!(
        "{base}filter: {{ dbs: [0, 1], db_prefix: \"x:\" }}\n"
    ));
    assert!(format!("{:#}", e.unwrap_err()).contains("{db}"));
}

#[test]
fn example_file_parses_to_the_defaults() {
    let text = include_str!("../../../../config/ferry.example.yaml");
    let cfg = Config::parse(text).expect("example parses");
    assert_eq!(cfg.state_dir, default_state_dir());
    assert_eq!(cfg.http, Http::default());
    assert_eq!(cfg.snapshot, Snapshot::default());
    assert_eq!(cfg.filter, Filter::default());
    assert_eq!(cfg.verify, Verify::default());
    assert_eq!(cfg.target.mode, TargetKind::Auto);
    assert_eq!(cfg.spool, Spool::default());
    assert_eq!(cfg.target.checkpoints, Some(true));
    assert_eq!(cfg.target.max_ops_per_sec, 0);
    assert_eq!(cfg.target.max_bytes_per_sec, 0);
    let default =
        Config::parse("source: { url: \"redis://a:1\" }\ntarget: { url: \"redis://b:2\" }\n");
    let default = default.expect("minimal");
    assert!(default.checkpoints());
    assert!(default.snapshot.ttl_hold, "the TTL hold is on by default");
    let off = Config::parse(
        "source: { url: \"redis://a:1\" }\ntarget: { url: \"redis://b:2\" }\nsnapshot: { ttl_hold: false }\n",
    )
    .expect("ttl_hold: false");
    assert!(!off.snapshot.ttl_hold);
    assert_eq!(off.snapshot.restore, RestoreMode::Auto);
    let err = Config::parse(
        "source: { url: \"redis://a:1\", checkpoints: true }\ntarget: { url: \"redis://b:2\" }\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("target.checkpoints"), "{err}");
}

#[test]
fn each_section_accepts_only_its_own_keys() {
    let parse = |source: &str, target: &str| {
        Config::parse(&format!(
            "source: {{ url: \"redis://a:1\"{source} }}\ntarget: {{ url: \"redis://b:2\"{target} }}\n"
        ))
        .map(|_| ())
        .map_err(|e| e.to_string())
    };
    // A typo in source: the keys listed as expected are the source's own.
    let err = parse(", tsl: {}", "").unwrap_err();
    assert!(err.contains("unknown field `tsl`"), "{err}");
    assert!(err.contains("`url`") && err.contains("`tls`"), "{err}");
    assert!(!err.contains("checkpoints"), "{err}");
    // Target keys are refused in source, named as such.
    for key in ["checkpoints: false", "wait_replicas: 10"] {
        let err = parse(&format!(", {key}"), "").unwrap_err();
        assert!(err.starts_with("source"), "{key}: {err}");
    }
    // And the target still takes them.
    parse("", ", checkpoints: false, mode: cluster").expect("target keys");
}

#[test]
fn wait_replicas_needs_checkpoints_and_a_timeout() {
    let parse = |target: &str| {
        Config::parse(&format!(
            "source: {{ url: \"redis://a:1\" }}\ntarget: {{ url: \"redis://b:2\"{target} }}\n"
        ))
    };
    let cfg = parse(", wait_replicas: 100").expect("valid");
    assert_eq!(cfg.target.wait_replicas, Some(100));
    assert_eq!(parse("").expect("valid").target.wait_replicas, None);
    let err = parse(", wait_replicas: 0").unwrap_err().to_string();
    assert!(err.contains("target.wait_replicas"), "{err}");
    let err = parse(", wait_replicas: 100, checkpoints: false")
        .unwrap_err()
        .to_string();
    assert!(err.contains("target.checkpoints"), "{err}");
}

#[test]
fn kubernetes_configmap_holds_a_valid_configuration() {
    let manifest = include_str!("../../../../deploy/k8s/configmap.yaml");
    let start = manifest.find("ferry.yaml: |\n").expect("ferry.yaml key") + 14;
    let text: String = manifest[start..]
        .lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .map(|l| format!("{l}\n"))
        .collect();
    let cfg = Config::parse_with(&text, &|name| Some(format!("<{name}>")))
        .expect("the ConfigMap's ferry.yaml parses");
    assert_eq!(cfg.state_dir, PathBuf::from("/var/lib/ferry"));
    assert_eq!(cfg.http.token.as_deref(), Some("<FERRY_HTTP_TOKEN>"));
}

#[test]
fn source_mode_read_from_and_partition() {
    let parse = |source: &str, env: &[(&str, &str)]| {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::parse_env(
            &format!(
                "source: {{ url: \"redis://a:1\"{source} }}\ntarget: {{ url: \"redis://b:2\" }}\n"
            ),
            &|_| None,
            &|name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()),
        )
        .map_err(|e| format!("{e:#}"))
    };
    let d = parse("", &[]).expect("defaults");
    assert_eq!(d.source.mode, SourceMode::Auto);
    assert_eq!(d.source.read_from, ReadFrom::Master);
    assert_eq!(d.source.partition, None);
    let c = parse(
        ", mode: cluster, read_from: replica, partition: { index: 1, count: 3 }",
        &[],
    )
    .expect("cluster");
    assert_eq!(c.source.mode, SourceMode::Cluster);
    assert_eq!(c.source.read_from, ReadFrom::Replica);
    assert_eq!(c.source.partition, Some(Partition { index: 1, count: 3 }));
    // The environment overrides the file, field by field.
    let e = parse(
        ", partition: { index: 1, count: 3 }",
        &[(PARTITION_INDEX_ENV, "2")],
    )
    .expect("env index");
    assert_eq!(e.source.partition, Some(Partition { index: 2, count: 3 }));
    let e = parse(
        "",
        &[(PARTITION_INDEX_ENV, "0"), (PARTITION_COUNT_ENV, "2")],
    )
    .expect("env only");
    assert_eq!(e.source.partition, Some(Partition { index: 0, count: 2 }));
    for (source, env, what) in [
        (", partition: { index: 3, count: 3 }", &[][..], "not below"),
        (", partition: { index: 0, count: 0 }", &[][..], "count is 0"),
        ("", &[(PARTITION_INDEX_ENV, "1")][..], "no partition count"),
        ("", &[(PARTITION_COUNT_ENV, "2")][..], "no partition index"),
        (
            "",
            &[(PARTITION_INDEX_ENV, "x"), (PARTITION_COUNT_ENV, "2")][..],
            "not a partition number",
        ),
        (", mode: sentinel", &[][..], "needs source.sentinel"),
        (
            ", mode: standalone, partition: { index: 0, count: 1 }",
            &[][..],
            "cluster source",
        ),
        (", mode: clustr", &[][..], "unknown variant"),
        (", read_from: slave", &[][..], "unknown variant"),
    ] {
        let err = parse(source, env).unwrap_err();
        assert!(err.contains(what), "{source} {env:?}: {err}");
    }
}

#[test]
fn url_of_another_node_keeps_scheme_and_credentials() {
    assert_eq!(
        url_with_addr("rediss://u:p@w@h:1", "10.0.0.2:7001"),
        "rediss://u:p@w@10.0.0.2:7001"
    );
    assert_eq!(url_with_addr("redis://h:1", "[::1]:7"), "redis://[::1]:7");
}

#[test]
fn unknown_fields_are_named_with_their_line() {
    let err = Config::parse(
        "source: { url: \"redis://a:1\" }\ntarget: { url: \"redis://b:2\" }\nstate_dri: x\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("state_dri") && err.contains("line 3"), "{err}");
}

#[test]
fn env_and_urls() {
    let env = |name: &str| (name == "PW").then(|| "s3cret".to_string());
    let cfg = Config::parse_with(
        "source: { url: \"redis://app:${PW}@127.0.0.1:6379\" }\ntarget: { url: \"redis://127.0.0.1:7000\" }\n",
        &env,
    )
    .expect("parses");
    let u = parse_endpoint(&cfg.source.url).expect("url");
    assert_eq!(u.auth.user.as_deref(), Some("app"));
    assert_eq!(u.auth.password.as_deref(), Some("s3cret"));
    assert_eq!(u.addr(), "127.0.0.1:6379");
    assert_eq!(redact(&cfg.source.url), "redis://app:***@127.0.0.1:6379");
    let shown = format!("{cfg:?}");
    assert!(
        !shown.contains("s3cret") && shown.contains("app:***@"),
        "{shown}"
    );
    let with_token = Config::parse_with(
        "source: { url: \"redis://a:1\" }\ntarget: { url: \"redis://b:2\" }\nhttp: { token: \"${PW}\" }\n",
        &env,
    )
    .expect("parses");
    assert!(!format!("{with_token:?}").contains("s3cret"));
    let unset = Config::parse_with(
        "source: { url: \"redis://${NOPE}@h:1\" }\ntarget: { url: \"redis://h:2\" }\n",
        &env,
    );
    assert!(unset.unwrap_err().to_string().contains("NOPE"));
    assert_eq!(
        parse_endpoint("rediss://h:1").expect("tls url").addr(),
        "h:1"
    );
    assert_eq!(
        parse_endpoint("redis://[::1]:1").expect("v6 url").addr(),
        "[::1]:1"
    );
    for (url, what) in [
        ("http://h:1", "unsupported scheme"),
        ("redis://h", "no port"),
        ("redis://h:1/2", "a db in the URL"),
    ] {
        let e = Config::parse(&format!(
            "source: {{ url: \"{url}\" }}\ntarget: {{ url: \"redis://h:2\" }}\n"
        ))
        .unwrap_err();
        assert!(format!("{e:#}").contains(what), "{url}: {e:#}");
        assert!(format!("{e:#}").contains("source.url"), "{url}: {e:#}");
    }
    assert!(
        Config::parse("source: { url: \"redis://h:1\" }\ntarget: { url: \"redis://h:1\" }\n")
            .unwrap_err()
            .to_string()
            .contains("same server")
    );
}
