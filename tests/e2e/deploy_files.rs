//! The deployment files under `deploy/` agree with the binary and with each
//! other: the binary's name and install path, the configuration path, the
//! state directory, the metrics port, the metric names the alert rules and
//! the Grafana dashboard query, and the alert rules cover lag, link down,
//! errors and the spool near its cap. Nothing is built or deployed here.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

const FERRY: &str = env!("CARGO_BIN_EXE_ferry");
/// Where the container image and the systemd unit install the binary.
const BIN_PATH: &str = "/usr/local/bin/ferry";
/// Where they read the configuration.
const CONFIG_PATH: &str = "/etc/ferry/ferry.yaml";
/// state_dir in the deployments.
const STATE_DIR: &str = "/var/lib/ferry";
/// The metrics port: http.listen's default.
const PORT: u64 = 9121;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml(rel: &str) -> Value {
    serde_yaml_ng::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

/// Metric names the daemon exports (the `"ferry_…"` names of its
/// telemetry module).
fn exported_metrics() -> BTreeSet<String> {
    let src = read("crates/ferry/src/telemetry.rs");
    let mut names = BTreeSet::new();
    for part in src.split("\"ferry_").skip(1) {
        let name = part.split('"').next().unwrap_or("");
        names.insert(format!("ferry_{name}"));
    }
    assert!(names.len() > 10, "{names:?}");
    names
}

/// `ferry_*` names in a PromQL expression.
fn metrics_in(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("ferry_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        out.push(name);
    }
    out
}

#[test]
fn the_binary_is_called_ferry() {
    assert_eq!(
        Path::new(FERRY).file_name().and_then(|n| n.to_str()),
        Some("ferry")
    );
    assert_eq!(
        Path::new(BIN_PATH).file_name(),
        Path::new(FERRY).file_name()
    );
    let example = yaml("config/ferry.example.yaml");
    let listen = s(&example["http"]["listen"]);
    assert_eq!(listen, format!("127.0.0.1:{PORT}"), "http.listen default");
}

#[test]
fn systemd_unit() {
    let unit = read("deploy/systemd/ferry.service");
    let keys: Vec<(&str, &str)> = unit
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    let get = |k: &str| keys.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
    assert_eq!(
        get("ExecStart"),
        Some(format!("{BIN_PATH} run --config {CONFIG_PATH}").as_str())
    );
    // StateDirectory=ferry is /var/lib/ferry.
    assert_eq!(
        Path::new("/var/lib").join(get("StateDirectory").expect("StateDirectory")),
        Path::new(STATE_DIR)
    );
    assert_eq!(get("WorkingDirectory"), Some(STATE_DIR));
    let user = get("User").expect("User=");
    assert!(user != "root" && user != "0", "runs as {user}");
    for (k, v) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("KillSignal", "SIGTERM"),
        ("Restart", "on-failure"),
    ] {
        assert_eq!(get(k), Some(v), "{k}");
    }
    assert!(unit.contains("[Install]") && unit.contains("WantedBy=multi-user.target"));
}

#[test]
fn dockerfile() {
    let df = read("deploy/docker/Dockerfile");
    let lines: Vec<&str> = df
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    let from: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FROM ")).collect();
    assert!(from.len() >= 2, "multi-stage: {from:?}");
    assert!(
        from.last().unwrap().contains("distroless"),
        "minimal runtime image: {from:?}"
    );
    assert!(df.contains("cargo build --release --locked -p ferry"));
    assert!(
        lines.iter().any(|l| l.starts_with("COPY --from=build")
            && l.ends_with(&format!("/target/release/ferry {BIN_PATH}"))),
        "copies the release binary to {BIN_PATH}"
    );
    let user = lines
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER");
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "USER {user}"
    );
    assert!(lines.contains(&format!("ENTRYPOINT [\"{BIN_PATH}\"]").as_str()));
    assert!(lines.contains(&format!("CMD [\"run\", \"--config\", \"{CONFIG_PATH}\"]").as_str()));
    assert!(lines.contains(&format!("EXPOSE {PORT}").as_str()));
    assert!(lines.contains(&format!("VOLUME [\"{STATE_DIR}\"]").as_str()));
    assert!(lines.contains(&format!("WORKDIR {STATE_DIR}").as_str()));
    // The build context filter keeps target/ out.
    assert!(read("deploy/docker/Dockerfile.dockerignore").contains("target/"));
}

/// One document of a manifest file.
fn manifest(rel: &str, kind: &str) -> Value {
    let v = yaml(rel);
    assert_eq!(s(&v["kind"]), kind, "{rel}");
    v
}

#[test]
fn kubernetes_manifests() {
    let kust = yaml("deploy/k8s/kustomization.yaml");
    let resources: Vec<&str> = kust["resources"]
        .as_sequence()
        .expect("resources")
        .iter()
        .map(s)
        .collect();
    for r in &resources {
        assert!(root().join("deploy/k8s").join(r).exists(), "{r}");
    }
    for r in [
        "deployment.yaml",
        "service.yaml",
        "servicemonitor.yaml",
        "pvc.yaml",
        "configmap.yaml",
    ] {
        assert!(resources.contains(&r), "kustomization lacks {r}");
    }

    let dep = manifest("deploy/k8s/deployment.yaml", "Deployment");
    assert_eq!(dep["spec"]["replicas"].as_u64(), Some(1));
    assert_eq!(s(&dep["spec"]["strategy"]["type"]), "Recreate");
    let pod = &dep["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    let c = &pod["containers"][0];
    assert_eq!(s(&c["command"][0]), BIN_PATH);
    let args: Vec<&str> = c["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .map(s)
        .collect();
    assert_eq!(args, ["run", "--config", CONFIG_PATH]);
    assert_eq!(c["ports"][0]["containerPort"].as_u64(), Some(PORT));
    let port_name = s(&c["ports"][0]["name"]);
    assert_eq!(
        c["securityContext"]["readOnlyRootFilesystem"].as_bool(),
        Some(true)
    );

    // Volumes: the ConfigMap at the config's directory, the PVC at state_dir.
    let mounts = c["volumeMounts"].as_sequence().expect("volumeMounts");
    let volumes = pod["volumes"].as_sequence().expect("volumes");
    let volume = |name: &str| {
        volumes
            .iter()
            .find(|v| s(&v["name"]) == name)
            .unwrap_or_else(|| panic!("no volume {name}"))
    };
    let mount_at = |path: &str| {
        let m = mounts
            .iter()
            .find(|m| s(&m["mountPath"]) == path)
            .unwrap_or_else(|| panic!("nothing mounted at {path}"));
        volume(s(&m["name"]))
    };
    let config_dir = Path::new(CONFIG_PATH).parent().unwrap().to_str().unwrap();
    let cm_name = s(&mount_at(config_dir)["configMap"]["name"]);
    let pvc_name = s(&mount_at(STATE_DIR)["persistentVolumeClaim"]["claimName"]);
    let pvc = manifest("deploy/k8s/pvc.yaml", "PersistentVolumeClaim");
    assert_eq!(s(&pvc["metadata"]["name"]), pvc_name);

    // The configuration in the ConfigMap: file name, state_dir, port, and
    // every ${NAME} it uses is set from the Secret.
    let cm = manifest("deploy/k8s/configmap.yaml", "ConfigMap");
    assert_eq!(s(&cm["metadata"]["name"]), cm_name);
    let file = Path::new(CONFIG_PATH)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    let text = s(&cm["data"][file]);
    let cfg: Value = serde_yaml_ng::from_str(text).expect("ferry.yaml in the ConfigMap");
    assert_eq!(s(&cfg["state_dir"]), STATE_DIR);
    let listen = s(&cfg["http"]["listen"]);
    assert!(listen.ends_with(&format!(":{PORT}")), "{listen}");
    assert!(
        cfg["http"]["token"]
            .as_str()
            .is_some_and(|t| t.starts_with("${")),
        "a listener on all interfaces needs a token"
    );
    let env = c["env"].as_sequence().expect("env");
    let secret = manifest("deploy/k8s/secret.example.yaml", "Secret");
    let secret_name = s(&secret["metadata"]["name"]);
    for part in text.split("${").skip(1) {
        let name = &part[..part.find('}').expect("closing brace")];
        let e = env
            .iter()
            .find(|e| s(&e["name"]) == name)
            .unwrap_or_else(|| panic!("${{{name}}} is not set in the Deployment's env"));
        let key = &e["valueFrom"]["secretKeyRef"];
        assert_eq!(s(&key["name"]), secret_name, "{name} comes from the Secret");
        assert!(
            !secret["stringData"][s(&key["key"])].is_null(),
            "secret.example.yaml lacks {}",
            s(&key["key"])
        );
    }
    assert!(
        !resources.contains(&"secret.example.yaml"),
        "never apply the example Secret"
    );

    // Service and ServiceMonitor reach the metrics port.
    let svc = manifest("deploy/k8s/service.yaml", "Service");
    assert_eq!(svc["spec"]["ports"][0]["port"].as_u64(), Some(PORT));
    assert_eq!(s(&svc["spec"]["ports"][0]["targetPort"]), port_name);
    let pod_labels = &dep["spec"]["template"]["metadata"]["labels"];
    for (k, v) in svc["spec"]["selector"].as_mapping().expect("selector") {
        assert_eq!(&pod_labels[s(k)], v, "Service selector {k:?}");
    }
    let sm = manifest("deploy/k8s/servicemonitor.yaml", "ServiceMonitor");
    let ep = &sm["spec"]["endpoints"][0];
    assert_eq!(s(&ep["port"]), s(&svc["spec"]["ports"][0]["name"]));
    assert_eq!(s(&ep["path"]), "/metrics");
    for (k, v) in sm["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .expect("matchLabels")
    {
        assert_eq!(
            &svc["metadata"]["labels"][s(k)],
            v,
            "ServiceMonitor selector {k:?}"
        );
    }
    // Alerts match job="ferry": the job label comes from the Service's label.
    let job_label = s(&sm["spec"]["jobLabel"]);
    assert_eq!(s(&svc["metadata"]["labels"][job_label]), "ferry");
}

/// `deploy/k8s/statefulset/`: N ferry processes sharing one cluster
/// source, the partition index from the pod ordinal, the count equal to the
/// replicas, one PVC per pod at state_dir, a headless Service.
#[test]
fn kubernetes_statefulset_variant() {
    let dir = "deploy/k8s/statefulset";
    let kust = yaml(&format!("{dir}/kustomization.yaml"));
    let resources: Vec<&str> = kust["resources"]
        .as_sequence()
        .expect("resources")
        .iter()
        .map(s)
        .collect();
    for r in &resources {
        assert!(root().join(dir).join(r).exists(), "{dir}/{r}");
    }
    for r in ["statefulset.yaml", "service.yaml", "configmap.yaml"] {
        assert!(resources.contains(&r), "{dir}/kustomization.yaml lacks {r}");
    }
    let sts = manifest(&format!("{dir}/statefulset.yaml"), "StatefulSet");
    let spec = &sts["spec"];
    let replicas = spec["replicas"].as_u64().expect("replicas");
    assert!(replicas >= 2, "{replicas}");
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    let c = &pod["containers"][0];
    assert_eq!(s(&c["command"][0]), BIN_PATH);
    let args: Vec<&str> = c["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .map(s)
        .collect();
    assert_eq!(args, ["run", "--config", CONFIG_PATH]);
    assert_eq!(c["ports"][0]["containerPort"].as_u64(), Some(PORT));
    let env = c["env"].as_sequence().expect("env");
    let var = |name: &str| {
        env.iter()
            .find(|e| s(&e["name"]) == name)
            .unwrap_or_else(|| panic!("{name} is not set"))
    };
    assert_eq!(
        s(&var("FERRY_PARTITION_INDEX")["valueFrom"]["fieldRef"]["fieldPath"]),
        "metadata.labels['apps.kubernetes.io/pod-index']",
        "the partition index is the pod ordinal"
    );
    assert_eq!(
        s(&var("FERRY_PARTITION_COUNT")["value"]),
        replicas.to_string(),
        "the partition count is the number of replicas"
    );
    // One PVC per pod, mounted at state_dir; the config from the ConfigMap.
    let mounts = c["volumeMounts"].as_sequence().expect("volumeMounts");
    let mounted = |path: &str| {
        s(&mounts
            .iter()
            .find(|m| s(&m["mountPath"]) == path)
            .unwrap_or_else(|| panic!("nothing mounted at {path}"))["name"])
    };
    let claim = &spec["volumeClaimTemplates"][0];
    assert_eq!(s(&claim["metadata"]["name"]), mounted(STATE_DIR));
    assert!(
        claim["spec"]["resources"]["requests"]["storage"]
            .as_str()
            .is_some()
    );
    let config_dir = Path::new(CONFIG_PATH).parent().unwrap().to_str().unwrap();
    let cm_volume = pod["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .find(|v| s(&v["name"]) == mounted(config_dir))
        .expect("config volume");
    let cm = manifest(&format!("{dir}/configmap.yaml"), "ConfigMap");
    assert_eq!(
        s(&cm["metadata"]["name"]),
        s(&cm_volume["configMap"]["name"])
    );
    let text = s(&cm["data"]["ferry.yaml"]);
    let cfg: Value = serde_yaml_ng::from_str(text).expect("ferry.yaml in the ConfigMap");
    assert_eq!(s(&cfg["state_dir"]), STATE_DIR);
    assert_eq!(s(&cfg["source"]["mode"]), "cluster");
    assert!(
        cfg["source"]["partition"].is_null(),
        "the environment sets it"
    );
    let secret = manifest("deploy/k8s/secret.example.yaml", "Secret");
    for part in text.split("${").skip(1) {
        let name = &part[..part.find('}').expect("closing brace")];
        let key = &var(name)["valueFrom"]["secretKeyRef"];
        assert_eq!(s(&key["name"]), s(&secret["metadata"]["name"]), "{name}");
    }
    // A headless Service named by the StatefulSet, selecting its pods.
    let svc = manifest(&format!("{dir}/service.yaml"), "Service");
    assert_eq!(s(&svc["metadata"]["name"]), s(&spec["serviceName"]));
    assert_eq!(s(&svc["spec"]["clusterIP"]), "None");
    assert_eq!(svc["spec"]["ports"][0]["port"].as_u64(), Some(PORT));
    let pod_labels = &spec["template"]["metadata"]["labels"];
    for (k, v) in svc["spec"]["selector"].as_mapping().expect("selector") {
        assert_eq!(&pod_labels[s(k)], v, "Service selector {k:?}");
        assert_eq!(&spec["selector"]["matchLabels"][s(k)], v);
    }
    // Where kubectl is installed, kustomize renders the variant offline.
    let kubectl = Path::new("/usr/bin/kubectl");
    if kubectl.exists() {
        let out = std::process::Command::new("timeout")
            .args(["60"])
            .arg(kubectl)
            .arg("kustomize")
            .arg(root().join(dir))
            .output()
            .expect("kubectl kustomize");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("kind: StatefulSet") && text.contains("namespace: ferry"));
    } else {
        println!("kubectl not installed: the kustomize rendering is not checked");
    }
}

#[test]
fn alert_rules_cover_lag_link_errors_and_spool() {
    let rules_file = yaml("deploy/prometheus/ferry-alerts.yaml");
    let exported = exported_metrics();
    let rules: Vec<&Value> = rules_file["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("rules"))
        .collect();
    let exprs: Vec<String> = rules
        .iter()
        .map(|r| {
            s(&r["expr"])
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    for e in &exprs {
        for m in metrics_in(e) {
            assert!(
                exported.contains(&m),
                "alert uses {m}, which ferry does not export: {e}"
            );
        }
    }
    let has = |what: &str, f: &dyn Fn(&str) -> bool| {
        assert!(
            exprs.iter().any(|e| f(e)),
            "no alert for {what}: {exprs:#?}"
        );
    };
    has("lag too high", &|e| {
        e.contains("ferry_lag_seconds >") || e.contains("ferry_lag_bytes >")
    });
    has("link down", &|e| e.contains("ferry_phase == 0"));
    // One link per source shard: the largest lag of any, and any link down.
    has("largest link lag", &|e| {
        e.contains("max by (instance, job, shard) (ferry_link_lag_bytes) >")
    });
    has("a link down", &|e| e.contains("ferry_link_connected == 0"));
    has("errors", &|e| e.contains("ferry_phase == 4"));
    has("target errors", &|e| {
        e.contains("ferry_target_errors_total")
    });
    has("verify mismatches", &|e| {
        e.contains("ferry_verify_mismatches_total")
    });
    has("daemon down", &|e| e.contains("up{job=\"ferry\"}"));
    // Spool near its cap: the threshold is a fraction of the link's real cap.
    let cap = ferry_replica::LinkConfig::new("x:1", "/tmp")
        .spool
        .cap_bytes;
    has("spool near its cap", &|e| {
        e.starts_with("ferry_spool_bytes >") && e.contains(&format!("* {cap}"))
    });
    for r in &rules {
        assert!(
            !r["labels"]["severity"].is_null(),
            "{:?} has no severity",
            r["alert"]
        );
        assert!(
            !r["annotations"]["summary"].is_null(),
            "{:?} has no summary",
            r["alert"]
        );
    }

    // The Kubernetes PrometheusRule carries the same rules.
    let pr = manifest("deploy/k8s/prometheusrule.yaml", "PrometheusRule");
    assert_eq!(
        pr["spec"], rules_file,
        "deploy/k8s/prometheusrule.yaml differs from deploy/prometheus/ferry-alerts.yaml"
    );
}

#[test]
fn grafana_dashboard_queries_exported_metrics() {
    let dash: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/ferry-dashboard.json")).expect("JSON");
    let exported = exported_metrics();
    let mut exprs = Vec::new();
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    if k == "expr" {
                        out.extend(x.as_str().map(str::to_string));
                    }
                    walk(x, out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(&dash, &mut exprs);
    assert!(exprs.len() > 5);
    for e in &exprs {
        for m in metrics_in(e) {
            assert!(exported.contains(&m), "dashboard uses {m}: {e}");
        }
    }
}

#[test]
fn readme_and_runbook() {
    let readme = read("README.md");
    let deploy = readme.find("\n## Deploy").expect("README: ## Deploy");
    let install = readme.find("\n## Install").expect("README: ## Install");
    assert!(deploy < install, "## Deploy comes before ## Install");
    let section = &readme[deploy..install];
    for p in [
        "deploy/systemd",
        "deploy/docker",
        "deploy/k8s",
        "docs/runbook.md",
    ] {
        assert!(section.contains(p), "## Deploy does not mention {p}");
    }
    let runbook = read("docs/runbook.md");
    for h in [
        "Prepare",
        "Start",
        "Watch",
        "Cut over",
        "Roll back",
        "Clean up",
    ] {
        assert!(
            runbook
                .lines()
                .any(|l| l.starts_with("## ") && l.contains(h)),
            "docs/runbook.md has no section {h}"
        );
    }
}
