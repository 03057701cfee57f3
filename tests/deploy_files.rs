//! The deployment files agree with the code: the Grafana dashboard only queries metrics
//! ScoreStream defines (and covers the ones an operator needs), and the compose file runs
//! three replicas of one application that can reach each other for forwarded queries.
//! (`docker-compose config` and `promtool check config` validate the files' syntax in CI.)

use std::collections::BTreeSet;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every `scorestream_…` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("scorestream_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

#[test]
fn the_dashboard_queries_only_defined_metrics_and_the_essential_ones() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/dashboards/scorestream.json")).unwrap();
    let mut exprs = String::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            exprs.push_str(t["expr"].as_str().unwrap());
            exprs.push('\n');
        }
    }
    // The definitions: every name registered in src/metrics/mod.rs.
    let defined = metric_names(&read("src/metrics/mod.rs"));
    let used: BTreeSet<String> = metric_names(&exprs)
        .into_iter()
        .map(|n| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| n.strip_suffix(s).map(str::to_string))
                .unwrap_or(n)
        })
        .collect();
    let unknown: Vec<&String> = used.difference(&defined).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard queries undefined metrics: {unknown:?}"
    );
    for essential in [
        "scorestream_records_consumed_total",
        "scorestream_consumer_lag_records",
        "scorestream_dead_letters_total",
        "scorestream_commit_duration_seconds",
        "scorestream_tasks_restoring",
        "scorestream_record_process_seconds",
        "scorestream_churn_predictions_total",
        "scorestream_http_requests_total",
    ] {
        assert!(used.contains(essential), "no panel shows {essential}");
    }
    assert!(exprs.contains("process_resident_memory_bytes"));
    // The metric definitions the test reads are the real ones: a registry has them.
    let rendered = scorestream::metrics::Metrics::new().render();
    assert!(rendered.contains("scorestream_commit_duration_seconds_bucket"));
}

#[test]
fn compose_runs_three_replicas_of_one_application_that_can_reach_each_other() {
    let compose = read("docker-compose.yml");
    let prometheus = read("deploy/prometheus.yml");
    for n in 1..=3 {
        let service = format!("scorestream-{n}:");
        assert!(compose.contains(&service), "{service}");
        assert!(
            compose.contains(&format!(
                "SCORESTREAM_ADVERTISED_HTTP_ADDR: scorestream-{n}:8080"
            )),
            "replica {n} advertises its own address"
        );
        assert!(
            compose.contains(&format!("state-{n}:/var/lib/scorestream")),
            "own state volume {n}"
        );
        assert!(
            prometheus.contains(&format!("scorestream-{n}:8080")),
            "Prometheus scrapes {n}"
        );
    }
    assert_eq!(
        compose
            .matches("SCORESTREAM_APPLICATION_ID: scorestream")
            .count(),
        1,
        "one shared id (anchored env)"
    );
    for needed in [
        "apache/kafka",
        "KAFKA_PROCESS_ROLES: broker,controller",
        "kafka-init",
        "grafana/grafana",
        "prom/prometheus",
    ] {
        assert!(compose.contains(needed), "{needed}");
    }
    // The config the replicas mount loads.
    let text = read("deploy/scorestream.toml");
    scorestream::config::Config::from_toml_with_env(Some(&text), &|_| None).unwrap();
}
