//! The deployment files agree with the code and with each other:
//! - the Grafana dashboard and the Prometheus alert rules query only metrics ScoreStream
//!   registers (asked of the real registry), the dashboard shows every plain metric and the
//!   essential labelled ones, filters every query by instance, and its PromQL parses;
//! - the alert rules behave (promtool's rule unit tests) and the Prometheus config is valid;
//! - the compose file runs three replicas of one application with their own addresses,
//!   volumes and ports, creates the topics the replicas' configuration reads and writes, and
//!   wires Prometheus and Grafana to the files in deploy/;
//! - the Dockerfile copies what the build needs (every `include_str!` target) and
//!   .dockerignore does not hide it;
//! - docs/operations.md quotes messages the program really prints and names only real
//!   configuration keys.
//!
//! `docker-compose config -q` validates the compose file's schema in CI (.ci/run); no
//! Docker engine exists here, so the image build itself is not exercised.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use prometheus::Registry;
use scorestream::config::Config;
use scorestream::metrics::Metrics;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const DASHBOARD: &str = "deploy/grafana/dashboards/scorestream.json";
const ALERTS: &str = "deploy/prometheus-alerts.yml";

/// Metric names the lead is adding in `src/metrics/mod.rs`, accepted before they are
/// registered. Empty now that they are; delete it once nobody needs it.
const METRICS_BEING_ADDED: &[&str] = &[];

/// Labelled metrics an operator needs on the dashboard. (Metrics without labels are always
/// required: the registry lists them.)
const ESSENTIAL_LABELLED: &[&str] = &[
    "scorestream_records_consumed_total",
    "scorestream_records_produced_total",
    "scorestream_dead_letters_total",
    "scorestream_consumer_lag_records",
    "scorestream_rebalances_total",
    "scorestream_store_keys",
    "scorestream_late_events_total",
    "scorestream_game_results_total",
    "scorestream_processor_records_total",
    "scorestream_churn_predictions_total",
    "scorestream_churn_alerts_total",
    "scorestream_http_requests_total",
    "scorestream_webhook_events_total",
    "scorestream_record_e2e_latency_seconds",
    "scorestream_store_operation_seconds",
    "scorestream_kafka_broker_rtt_seconds",
    "scorestream_kafka_producer_queue_messages",
    "scorestream_kafka_consumer_fetch_queue_messages",
    "scorestream_kafka_brokers_up",
];

const PROCESS_METRICS: &[&str] = &[
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
];

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every `scorestream_…` / `process_…` metric name in `text`, with the histogram series
/// suffixes (`_bucket`, `_sum`, `_count`) taken off.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for prefix in ["scorestream_", "process_"] {
        let mut rest = text;
        while let Some(i) = rest.find(prefix) {
            let preceded_by_word = rest[..i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
            let tail = &rest[i..];
            let end = tail
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
                .unwrap_or(tail.len());
            if !preceded_by_word {
                let name = &tail[..end];
                let base = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .unwrap_or(name);
                out.insert(base.to_string());
            }
            rest = &tail[end..];
        }
    }
    out
}

/// Whether `registry` already has a metric named `name`: a probe gauge of that name (with
/// its own help text) is refused if so. The registry cannot list its collectors, and
/// `gather()` leaves out labelled metrics that have no samples yet.
fn is_registered(registry: &Registry, name: &str) -> bool {
    let probe = prometheus::IntGauge::new(name, "registration probe").unwrap();
    match registry.register(Box::new(probe.clone())) {
        Ok(()) => {
            registry.unregister(Box::new(probe)).unwrap();
            false
        }
        Err(_) => true,
    }
}

/// Names in `used` that neither the registry nor [`METRICS_BEING_ADDED`] knows.
fn unknown_metrics(used: &BTreeSet<String>) -> Vec<String> {
    let registry = Metrics::new().registry;
    assert!(
        is_registered(&registry, "scorestream_commits_total")
            && is_registered(&registry, "scorestream_dead_letters_total")
            && !is_registered(&registry, "scorestream_no_such_metric_total"),
        "the registration probe does not tell registered names apart"
    );
    used.iter()
        .filter(|n| !is_registered(&registry, n) && !METRICS_BEING_ADDED.contains(&n.as_str()))
        .cloned()
        .collect()
}

/// Every panel of the dashboard, rows' nested panels included.
fn panels(dashboard: &serde_json::Value) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for p in dashboard["panels"].as_array().expect("panels") {
        out.push(p.clone());
        if let Some(inner) = p["panels"].as_array() {
            out.extend(inner.iter().cloned());
        }
    }
    out
}

fn dashboard() -> serde_json::Value {
    serde_json::from_str(&read(DASHBOARD)).unwrap_or_else(|e| panic!("{DASHBOARD}: {e}"))
}

/// Every query of the dashboard.
fn dashboard_exprs() -> Vec<String> {
    panels(&dashboard())
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| {
            t["expr"]
                .as_str()
                .expect("a target without expr")
                .to_string()
        })
        .collect()
}

/// Runs promtool (installed by scripts/install-deps.sh with Debian's `prometheus`).
fn promtool(args: &[&str]) {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(ROOT)
        .output()
        .unwrap_or_else(|e| {
            panic!("promtool: {e}; run scripts/install-deps.sh (Debian package `prometheus`)")
        });
    assert!(
        out.status.success(),
        "promtool {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_dashboard_queries_only_registered_metrics_and_shows_the_ones_operators_need() {
    let exprs = dashboard_exprs();
    assert!(exprs.len() > 20, "{exprs:?}");
    let used = metric_names(&exprs.join("\n"));
    let unknown = unknown_metrics(&used);
    assert!(
        unknown.is_empty(),
        "{DASHBOARD} queries metrics ScoreStream does not register: {unknown:?}"
    );
    // Every plain metric (gather() lists those even before any sample) and the essential
    // labelled ones have a panel.
    let plain: BTreeSet<String> = Metrics::new()
        .registry
        .gather()
        .iter()
        .map(|f| f.name().to_string())
        .filter(|n| n.starts_with("scorestream_"))
        .collect();
    assert!(
        plain.contains("scorestream_commit_failures_total"),
        "{plain:?}"
    );
    let required = plain
        .iter()
        .map(String::as_str)
        .chain(ESSENTIAL_LABELLED.iter().copied())
        .chain(PROCESS_METRICS.iter().copied());
    let missing: Vec<&str> = required.filter(|n| !used.contains(*n)).collect();
    assert!(missing.is_empty(), "no panel shows {missing:?}");
}

#[test]
fn every_dashboard_query_is_per_instance_and_valid_promql() {
    let d = dashboard();
    let vars: Vec<&str> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(vars, ["instance"], "the instance selector");
    let exprs = dashboard_exprs();
    let unfiltered: Vec<&String> = exprs
        .iter()
        .filter(|e| {
            let selectors = e.matches('{').count() - e.matches("{{").count() * 2;
            e.matches("instance=~\"$instance\"").count() != selectors || selectors == 0
        })
        .collect();
    assert!(
        unfiltered.is_empty(),
        "queries not filtered by the instance selector: {unfiltered:?}"
    );
    // Every panel's data source is the provisioned one.
    let provisioned = read("deploy/grafana/provisioning/datasources/prometheus.yml");
    let uid = provisioned
        .lines()
        .find_map(|l| l.trim().strip_prefix("uid:"))
        .expect("a datasource uid")
        .trim();
    for p in panels(&d).iter().filter(|p| p["type"] != "row") {
        assert_eq!(p["datasource"]["uid"], uid, "panel {}", p["title"]);
    }
    // The PromQL parses: promtool checks it as recording rules, with Grafana's variables
    // replaced by what they expand to.
    let dir = tempfile::tempdir().unwrap();
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, e) in exprs.iter().enumerate() {
        let e = e
            .replace("$__rate_interval", "1m")
            .replace("$instance", ".*");
        rules.push_str(&format!(
            "      - record: dashboard_query_{i}\n        expr: {}\n",
            serde_json::to_string(&e).unwrap()
        ));
    }
    let path = dir.path().join("dashboard-queries.yml");
    std::fs::write(&path, rules).unwrap();
    promtool(&["check", "rules", path.to_str().unwrap()]);
}

#[test]
fn the_alert_rules_use_registered_metrics_and_pass_their_unit_tests() {
    let alerts = read(ALERTS);
    let used = metric_names(&alerts);
    assert!(
        used.contains("scorestream_consumer_lag_records"),
        "{used:?}"
    );
    let unknown = unknown_metrics(&used);
    assert!(
        unknown.is_empty(),
        "{ALERTS} names metrics ScoreStream does not register: {unknown:?}"
    );
    let prometheus = read("deploy/prometheus.yml");
    assert!(
        prometheus.contains("- prometheus-alerts.yml"),
        "deploy/prometheus.yml loads the alert rules"
    );
    // Syntax of both files, then the rules' behaviour on synthetic series.
    promtool(&["check", "config", "deploy/prometheus.yml"]);
    promtool(&["test", "rules", "deploy/prometheus-alerts.test.yml"]);
}

#[test]
fn compose_runs_three_replicas_of_one_application_that_can_reach_each_other() {
    let compose = read("docker-compose.yml");
    let prometheus = read("deploy/prometheus.yml");
    for n in 1..=3 {
        let service = format!("\n  scorestream-{n}:");
        assert!(compose.contains(&service), "service scorestream-{n}");
        for needed in [
            format!("SCORESTREAM_ADVERTISED_HTTP_ADDR: scorestream-{n}:8080"),
            format!("hostname: scorestream-{n}\n"),
            format!("- state-{n}:/var/lib/scorestream\n"),
            format!("- \"808{n}:8080\""),
            format!("\n  state-{n}:\n"),
        ] {
            assert_eq!(
                compose.matches(&needed).count(),
                1,
                "replica {n}: exactly one `{}`",
                needed.trim()
            );
        }
        assert!(
            prometheus.contains(&format!("\"scorestream-{n}:8080\"")),
            "Prometheus scrapes replica {n}"
        );
    }
    // One application id and one webhook token, shared through the anchored environment;
    // the token comes from the environment with a development default.
    for shared in [
        "SCORESTREAM_APPLICATION_ID: scorestream\n",
        "SCORESTREAM_WEBHOOK_TOKEN: ${SCORESTREAM_WEBHOOK_TOKEN:-",
    ] {
        assert_eq!(compose.matches(shared).count(), 1, "{shared}");
    }
    assert_eq!(compose.matches("<<: *scorestream-env").count(), 2);
    for needed in [
        "image: apache/kafka:",
        "KAFKA_PROCESS_ROLES: broker,controller",
        "image: prom/prometheus:",
        "image: grafana/grafana:",
        "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro",
        "./deploy/prometheus-alerts.yml:/etc/prometheus/prometheus-alerts.yml:ro",
        "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro",
        "profiles: [\"load\"]",
    ] {
        assert!(
            compose.contains(needed),
            "docker-compose.yml lacks `{needed}`"
        );
    }
    // Grafana finds the dashboard where the provider looks.
    let provider = read("deploy/grafana/provisioning/dashboards/scorestream.yml");
    let path = provider
        .lines()
        .find_map(|l| l.trim().strip_prefix("path:"))
        .expect("the provider's path")
        .trim();
    assert!(
        compose.contains(&format!("./deploy/grafana/dashboards:{path}:ro")),
        "the dashboards directory is mounted at {path}"
    );
    // The replicas' configuration loads, and kafka-init creates every topic it reads and
    // writes (the broker does not auto-create; ScoreStream creates only its own topics).
    let mounted = "./deploy/scorestream.toml:/etc/scorestream/scorestream.toml:ro";
    assert_eq!(
        compose.matches(mounted).count(),
        3,
        "each replica mounts it"
    );
    let config = Config::from_toml_with_env(Some(&read("deploy/scorestream.toml")), &|_| None)
        .unwrap_or_else(|e| panic!("deploy/scorestream.toml: {e}"));
    let init = &compose[compose.find("\n  kafka-init:").expect("kafka-init")..];
    let init = &init[..init[1..].find("\n  scorestream-1:").unwrap()];
    let created: BTreeSet<&str> = init
        .lines()
        .find_map(|l| l.trim().strip_prefix("for t in "))
        .expect("kafka-init's topic loop")
        .trim_end_matches("; do")
        .split_whitespace()
        .collect();
    let needed = config.inputs.iter().map(String::as_str).chain([
        config.gamification.results_topic.as_str(),
        config.churn.predictions_topic.as_str(),
        config.churn.alerts_topic.as_str(),
    ]);
    for topic in needed {
        assert!(
            created.contains(topic),
            "kafka-init does not create {topic}"
        );
    }
    assert!(compose.contains("KAFKA_AUTO_CREATE_TOPICS_ENABLE: \"false\""));
}

/// `COPY <source> <destination>` lines of the Dockerfile, except `--from` copies.
fn dockerfile_copies(dockerfile: &str) -> Vec<String> {
    dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("COPY "))
        .filter(|l| !l.starts_with("--from"))
        .flat_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words[..words.len() - 1]
                .iter()
                .map(|w| w.to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Top-level directories (or files) `include_str!`/`include_bytes!` in src/ reach.
fn included_roots(dir: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            included_roots(&path, out);
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for macro_name in ["include_str!(\"", "include_bytes!(\""] {
            for (i, _) in text.match_indices(macro_name) {
                let rest = &text[i + macro_name.len()..];
                let rel = &rest[..rest.find('"').unwrap()];
                let target = path.parent().unwrap().join(rel);
                let target = target
                    .canonicalize()
                    .unwrap_or_else(|e| panic!("{}: include of {rel}: {e}", path.display()));
                let root = Path::new(ROOT).canonicalize().unwrap();
                let first = target
                    .strip_prefix(&root)
                    .unwrap_or_else(|_| panic!("{} includes outside the crate", path.display()))
                    .components()
                    .next()
                    .unwrap();
                out.insert(first.as_os_str().to_string_lossy().into_owned());
            }
        }
    }
}

#[test]
fn the_image_build_gets_every_file_it_compiles_in() {
    let dockerfile = read("Dockerfile");
    let ignore = read(".dockerignore");
    let ignored: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let copies = dockerfile_copies(&dockerfile);
    for source in &copies {
        assert!(
            Path::new(ROOT).join(source).exists(),
            "the Dockerfile copies {source}, which does not exist"
        );
        let top = source.split('/').next().unwrap();
        assert!(
            !ignored.contains(&top) && !ignored.contains(&source.as_str()),
            ".dockerignore hides {source}, which the Dockerfile copies"
        );
    }
    // What the build stage (up to the runtime stage's FROM) copies must include every
    // directory src/ compiles files in from.
    let build_stage = &dockerfile[..dockerfile
        .find("\nFROM debian:bookworm-slim")
        .expect("the runtime stage")];
    let build_copies = dockerfile_copies(build_stage);
    let mut roots = BTreeSet::new();
    included_roots(&Path::new(ROOT).join("src"), &mut roots);
    assert!(roots.contains("topology"), "{roots:?}");
    for root in &roots {
        assert!(
            build_copies.iter().any(|c| c == root),
            "src/ compiles in files from {root}/, which the build stage does not copy"
        );
    }
    for needed in [
        "FROM rust:1-bookworm AS build",
        "FROM debian:bookworm-slim",
        "libclang-dev",
        "--uid 10001",
        "USER 10001",
        "VOLUME [\"/var/lib/scorestream\"]",
        "EXPOSE 8080",
        "ENTRYPOINT [\"scorestream\"]",
        "CMD [\"run\"]",
        "COPY topology /etc/scorestream/topology",
    ] {
        assert!(dockerfile.contains(needed), "Dockerfile lacks `{needed}`");
    }
}

/// All of src/ as text, plus the messages loading four unreadable rules, model and mapping
/// files really produces (their wording is composed at run time).
fn message_corpus() -> String {
    fn walk(dir: &Path, out: &mut String) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push_str(&std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut out = String::new();
    walk(&Path::new(ROOT).join("src"), &mut out);
    let missing = std::path::PathBuf::from("/nonexistent/scorestream-test.toml");
    let mut config = Config::default();
    config.ingest.mapping_file = Some(missing.clone());
    config.gamification.rules_file = Some(missing.clone());
    config.churn.rules_file = Some(missing.clone());
    config.churn.model_file = Some(missing);
    let err = scorestream::topology::Components::load(&config)
        .err()
        .expect("missing files are an error");
    out.push_str(&err.to_string());
    out
}

#[test]
fn the_operations_guide_quotes_real_messages_and_keys() {
    let guide = read("docs/operations.md");
    let corpus = message_corpus();
    let section = &guide[guide
        .find("## Troubleshooting")
        .expect("a troubleshooting section")..];
    let mut checked = 0;
    let mut problems = Vec::new();
    for line in section.lines().filter(|l| l.starts_with("| ")) {
        let first_cell = line.trim_start_matches("| ").split(" | ").next().unwrap();
        // Quoted messages: backticked spans of the first column with at least two words.
        for (i, span) in first_cell.split('`').enumerate() {
            if i % 2 == 0 || !span.trim().contains(' ') {
                continue;
            }
            checked += 1;
            // `…` stands for what varies; every literal piece must be in the program.
            for piece in span.split('…').map(str::trim).filter(|p| p.len() > 2) {
                if !corpus.contains(piece) {
                    problems.push(format!(
                        "`{span}`: '{piece}' is not a message of the program"
                    ));
                }
            }
        }
    }
    assert!(checked >= 15, "only {checked} messages found in the table");
    // Every configuration key the guide names is a documented configuration key (and
    // tests/config_docs.rs ties those to the configuration types).
    let reference = read("docs/configuration.md");
    let sections = [
        "runtime.",
        "state.",
        "ingest.",
        "gamification.",
        "churn.",
        "http.",
    ];
    for (i, span) in guide.split('`').enumerate() {
        let key = span.trim();
        let is_key = i % 2 == 1
            && sections.iter().any(|s| key.starts_with(s))
            && !key.ends_with(".md")
            && key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c == '.');
        if is_key && !reference.contains(&format!("| `{key}` |")) {
            problems.push(format!("`{key}` is not a configuration key"));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/operations.md:\n  {}",
        problems.join("\n  ")
    );
}
