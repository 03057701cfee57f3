//! deploy/k8s/ is valid and wired to what the program reads:
//! - every manifest passes scripts/validate-k8s.py (the Kubernetes JSON schemas of the PyPI
//!   package `kubernetes-validate`, strict, and a PodMonitor schema written from the
//!   Prometheus Operator's CRD), and the validator does reject broken manifests;
//! - the StatefulSet's environment, resolved as Kubernetes would (downward API, Secrets,
//!   `$(VAR)` references), loads with the ConfigMap's file into the configuration it means:
//!   the pod name as `group.instance.id` and in the advertised address, the SASL password
//!   from the Secret, the rules and state where they are mounted;
//! - probes, Services, the PodDisruptionBudget and the PodMonitor point at the right pods,
//!   port and paths; the memory request is the budget of docs/operations.md for the
//!   ConfigMap's settings.

use std::collections::BTreeMap;
use std::process::Command;

use scorestream::config::Config;
use scorestream::runtime::client;
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const POD: &str = "scorestream-0";
const NAMESPACE: &str = "games";

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Runs the validator (installed by scripts/install-deps.sh) on `dir`: (success, output).
fn validate(args: &[&str]) -> (bool, String) {
    let out = Command::new("python3")
        .arg(format!("{ROOT}/scripts/validate-k8s.py"))
        .args(args)
        .output()
        .expect("python3");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("ModuleNotFoundError"),
        "run scripts/install-deps.sh (pip install kubernetes-validate): {text}"
    );
    (out.status.success(), text)
}

/// Every resource of deploy/k8s, by kind and name.
fn resources() -> BTreeMap<(String, String), Value> {
    let out = Command::new("python3")
        .args([&format!("{ROOT}/scripts/validate-k8s.py"), "--json"])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    all.into_iter()
        .map(|r| {
            let r = r["resource"].clone();
            let kind = r["kind"].as_str().unwrap().to_string();
            let name = r["metadata"]["name"].as_str().unwrap_or("").to_string();
            ((kind, name), r)
        })
        .collect()
}

fn get<'a>(all: &'a BTreeMap<(String, String), Value>, kind: &str, name: &str) -> &'a Value {
    all.get(&(kind.to_string(), name.to_string()))
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/k8s"))
}

#[test]
fn the_manifests_pass_the_kubernetes_schemas_and_broken_ones_do_not() {
    let (ok, out) = validate(&[]);
    assert!(ok, "{out}");
    assert!(out.contains("9 resources checked"), "{out}");
    // The same files with one mistake each: every one is caught.
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(format!("{ROOT}/deploy/k8s")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let text = std::fs::read_to_string(&path).unwrap();
            let broken = match path.file_name().unwrap().to_str().unwrap() {
                "statefulset.yaml" => text.replace("  replicas: 3", "  replica: 3"),
                "podmonitor.yaml" => text.replace("podMetricsEndpoints", "podMetricEndpoints"),
                "poddisruptionbudget.yaml" => {
                    text.replace("maxUnavailable: 1", "maxUnavailable: [1]")
                }
                _ => text,
            };
            std::fs::write(dir.path().join(path.file_name().unwrap()), broken).unwrap();
        }
    }
    let (ok, out) = validate(&[dir.path().to_str().unwrap()]);
    assert!(!ok, "{out}");
    for needed in [
        "'replica' was unexpected",
        "'podMetricEndpoints' was unexpected",
        "PodDisruptionBudget/scorestream: spec.maxUnavailable",
    ] {
        assert!(out.contains(needed), "`{needed}` not in:\n{out}");
    }
}

/// The container's environment as Kubernetes sets it for pod [`POD`].
fn pod_env(container: &Value, secrets: &[&Value]) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for var in container["env"].as_array().unwrap() {
        let name = var["name"].as_str().unwrap().to_string();
        let value = if let Some(v) = var["value"].as_str() {
            // `$(NAME)` expands variables defined before this one.
            let mut v = v.to_string();
            for (k, known) in &env {
                v = v.replace(&format!("$({k})"), known);
            }
            assert!(!v.contains("$("), "{name}: unresolved reference in {v}");
            v
        } else if let Some(field) = var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            match field {
                "metadata.name" => POD.to_string(),
                "metadata.namespace" => NAMESPACE.to_string(),
                other => panic!("{name}: unexpected field {other}"),
            }
        } else {
            let r = &var["valueFrom"]["secretKeyRef"];
            let secret = secrets
                .iter()
                .find(|s| s["metadata"]["name"] == r["name"])
                .unwrap_or_else(|| {
                    panic!("{name}: no Secret {} in secret.example.yaml", r["name"])
                });
            secret["stringData"][r["key"].as_str().unwrap()]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: Secret {} has no key {}", r["name"], r["key"]))
                .to_string()
        };
        env.insert(name, value);
    }
    env
}

/// `512Mi` → bytes.
fn quantity(q: &Value) -> usize {
    let q = q.as_str().expect("a quantity string");
    let n: usize = q
        .trim_end_matches("Mi")
        .trim_end_matches("Gi")
        .parse()
        .unwrap();
    if q.ends_with("Gi") {
        n << 30
    } else {
        assert!(q.ends_with("Mi"), "{q}");
        n << 20
    }
}

/// Bytes of a librdkafka `*.kbytes` property of a client configuration.
fn kbytes(config: &rdkafka::ClientConfig, key: &str) -> usize {
    config.get(key).unwrap().parse::<usize>().unwrap() << 10
}

#[test]
fn the_statefulset_runs_the_configuration_it_means() {
    let all = resources();
    let set = get(&all, "StatefulSet", "scorestream");
    let pod = &set["spec"]["template"];
    let container = &pod["spec"]["containers"][0];
    let secrets: Vec<&Value> = all
        .iter()
        .filter(|((k, _), _)| k == "Secret")
        .map(|(_, v)| v)
        .collect();
    let env = pod_env(container, &secrets);
    let config_map = get(&all, "ConfigMap", "scorestream-config");

    // The file: the container's --config, inside the ConfigMap's mount.
    let mount = |volume: &str| -> String {
        container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == volume)
            .unwrap_or_else(|| panic!("no mount of {volume}"))["mountPath"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let config_dir = mount("config");
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args,
        ["run", "--config", &format!("{config_dir}/scorestream.toml")]
    );
    let volume = pod["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "config")
        .unwrap();
    assert_eq!(volume["configMap"]["name"], "scorestream-config");
    let file = config_map["data"]["scorestream.toml"].as_str().unwrap();

    // Loaded with the pod's environment, as the program does.
    let kafka_vars: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| k.starts_with("SCORESTREAM_KAFKA_"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let config = Config::from_toml_with_env_vars(Some(file), &|k| env.get(k).cloned(), &kafka_vars)
        .unwrap_or_else(|e| panic!("deploy/k8s configuration: {e}"));
    assert_eq!(config.kafka.consumer["group.instance.id"], POD);
    assert_eq!(config.kafka.common["sasl.password"], "replace-me");
    assert_eq!(config.kafka.common["sasl.username"], "scorestream");
    assert_eq!(config.kafka.common["security.protocol"], "SASL_SSL");
    assert_eq!(set["spec"]["serviceName"], "scorestream-headless");
    assert_eq!(
        config.http.advertised_addr.as_deref(),
        Some(format!("{POD}.scorestream-headless.{NAMESPACE}.svc:8080").as_str())
    );
    assert_eq!(config.application_id, "scorestream");
    assert!(config.runtime.replication_factor >= 3);
    assert_eq!(env["SCORESTREAM_LOG_FORMAT"], "json");
    assert!(config.http.webhook_token.is_some());

    // The rules: the ConfigMap's copy of the bundled ones, where the file points.
    assert_eq!(
        config.gamification.rules_file.as_deref(),
        Some(std::path::Path::new(&format!(
            "{config_dir}/gamification.toml"
        )))
    );
    // The same rules as the bundled file (comments aside: compared as parsed TOML), and
    // they compile.
    let shipped = config_map["data"]["gamification.toml"].as_str().unwrap();
    assert_eq!(
        shipped.parse::<toml::Table>().unwrap(),
        read("topology/gamification.toml")
            .parse::<toml::Table>()
            .unwrap(),
        "deploy/k8s/configmap.yaml's rules differ from topology/gamification.toml: \
         python3 scripts/validate-k8s.py --sync-rules"
    );
    let rules_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(rules_file.path(), shipped).unwrap();
    let mut local = config.clone();
    local.gamification.rules_file = Some(rules_file.path().to_path_buf());
    if let Err(e) = scorestream::topology::Components::load(&local) {
        panic!("the ConfigMap's rules: {e}");
    }

    // State on the pod's own volume.
    let claim = &set["spec"]["volumeClaimTemplates"][0];
    assert_eq!(
        mount(claim["metadata"]["name"].as_str().unwrap()),
        config.state_dir.to_str().unwrap()
    );
    assert_eq!(pod["spec"]["securityContext"]["fsGroup"], 10001);

    // HTTP: the port the program listens on, named `http` for probes, Services, scraping.
    let port: u16 = config
        .http_addr
        .rsplit_once(':')
        .unwrap()
        .1
        .parse()
        .unwrap();
    assert_eq!(container["ports"][0]["name"], "http");
    assert_eq!(container["ports"][0]["containerPort"], port);
    let probe = |name: &str| -> (String, u64, u64) {
        let p = &container[name];
        assert_eq!(p["httpGet"]["port"], "http", "{name}");
        (
            p["httpGet"]["path"].as_str().unwrap().to_string(),
            p["periodSeconds"].as_u64().unwrap(),
            p["failureThreshold"].as_u64().unwrap(),
        )
    };
    assert_eq!(probe("readinessProbe").0, "/ready");
    assert_eq!(probe("livenessProbe").0, "/health");
    let (path, period, failures) = probe("startupProbe");
    assert_eq!(path, "/ready");
    assert!(
        period * failures >= 30 * 60,
        "the startup probe must allow a 30-minute restore"
    );
    assert!(
        set["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .unwrap()
            > config.runtime.shutdown_timeout.as_secs()
    );
    assert_eq!(set["spec"]["podManagementPolicy"], "Parallel");

    // Memory: requests = the budget of docs/operations.md for these settings, with the
    // clients' queues as the program configures them; the limit a quarter above.
    let plan = config.memory();
    let budget = plan.block_cache_bytes.max(plan.write_buffer_bytes)
        + plan.read_cache_bytes
        + kbytes(
            &client::producer_config(&config),
            "queue.buffering.max.kbytes",
        )
        + kbytes(
            &client::consumer_config(&config),
            "queued.max.messages.kbytes",
        )
        + kbytes(
            &client::restore_consumer_config(&config),
            "queued.max.messages.kbytes",
        )
        + (128 << 20);
    let resources = &container["resources"];
    assert_eq!(quantity(&resources["requests"]["memory"]), budget);
    assert_eq!(quantity(&resources["limits"]["memory"]), budget / 4 * 5);
    let guide = read("docs/operations.md");
    assert!(
        guide.contains("### Memory budget") && guide.contains("deploy/k8s/statefulset.yaml"),
        "docs/operations.md describes the budget the StatefulSet's request comes from"
    );
}

#[test]
fn services_budget_and_monitor_select_the_statefulsets_pods() {
    let all = resources();
    let set = get(&all, "StatefulSet", "scorestream");
    let labels = set["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .unwrap();
    let selects_pods = |selector: &Value, what: &str| {
        let wanted = selector.as_object().unwrap_or_else(|| panic!("{what}"));
        assert!(!wanted.is_empty(), "{what} selects everything");
        for (k, v) in wanted {
            assert_eq!(labels.get(k), Some(v), "{what} selects {k}={v}");
        }
    };
    selects_pods(&set["spec"]["selector"]["matchLabels"], "the StatefulSet");
    let headless = get(&all, "Service", "scorestream-headless");
    assert_eq!(headless["spec"]["clusterIP"], "None");
    assert_eq!(headless["spec"]["publishNotReadyAddresses"], true);
    for service in [headless, get(&all, "Service", "scorestream")] {
        selects_pods(&service["spec"]["selector"], "a Service");
        assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
    }
    let pdb = get(&all, "PodDisruptionBudget", "scorestream");
    selects_pods(
        &pdb["spec"]["selector"]["matchLabels"],
        "the PodDisruptionBudget",
    );
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    // Scraped with the labels the dashboard and the alert rules filter on.
    let monitor = get(&all, "PodMonitor", "scorestream");
    selects_pods(
        &monitor["spec"]["selector"]["matchLabels"],
        "the PodMonitor",
    );
    let endpoint = &monitor["spec"]["podMetricsEndpoints"][0];
    assert_eq!(endpoint["port"], "http");
    assert_eq!(endpoint["path"], "/metrics");
    let relabel = |target: &str| -> &Value {
        endpoint["relabelings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["targetLabel"] == target)
            .unwrap_or_else(|| panic!("no relabeling to {target}"))
    };
    assert_eq!(
        relabel("instance")["sourceLabels"][0],
        "__meta_kubernetes_pod_name"
    );
    assert_eq!(relabel("job")["replacement"], "scorestream");
    assert!(read("deploy/grafana/dashboards/scorestream.json").contains(r#"job=\"scorestream\""#));
    // Applied by kustomize: everything but the example Secrets.
    let kustomization = get(&all, "Kustomization", "");
    let listed: Vec<&str> = kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(listed.contains(&"statefulset.yaml") && !listed.contains(&"secret.example.yaml"));
}
