//! docker-compose.yml keeps its data and looks after its services: the broker's log
//! directory, Prometheus' series and the replicas' state are named volumes, every
//! long-running service restarts unless stopped and has a healthcheck (the replicas' asks
//! `/ready`; tests/ops_tansu.rs runs that command against live instances). The file is read
//! as a Compose implementation reads it (anchors and merge keys resolved). CI also validates
//! it with `docker-compose config -q`; tests/deploy_files.rs checks the replicas' wiring.

use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn compose_keeps_the_brokers_data_and_restarts_and_checks_every_service() {
    // The file as a Compose implementation reads it (YAML anchors and merge keys resolved),
    // through PyYAML (installed with kubernetes-validate by scripts/install-deps.sh).
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)",
            &format!("{ROOT}/docker-compose.yml"),
        ])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let compose: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let services = compose["services"].as_object().unwrap();
    assert!(services.len() >= 8, "{:?}", services.keys());
    // The long-running services come back after a crash or a reboot and say when they are
    // healthy; the one-shot ones do neither.
    for (name, service) in services {
        let one_shot = ["kafka-init", "generate"].contains(&name.as_str());
        assert_eq!(
            service["restart"].as_str(),
            (!one_shot).then_some("unless-stopped"),
            "{name}"
        );
        assert_eq!(
            service["healthcheck"]["test"].is_array(),
            !one_shot,
            "{name}"
        );
    }
    // The broker's log directory is a named volume, with a fixed cluster id for the storage
    // formatted on it; so are the replicas' state and Prometheus' series.
    let volumes = |name: &str| -> Vec<String> {
        services[name]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    let kafka = &services["kafka"]["environment"];
    assert!(volumes("kafka").contains(&format!(
        "kafka-data:{}",
        kafka["KAFKA_LOG_DIRS"].as_str().unwrap()
    )));
    assert_eq!(
        kafka["CLUSTER_ID"].as_str().map(str::len),
        Some(22),
        "a base64 UUID"
    );
    assert!(volumes("prometheus").contains(&"prometheus-data:/prometheus".to_string()));
    for n in 1..=3 {
        let replica = &services[&format!("scorestream-{n}")];
        assert!(
            replica["healthcheck"]["test"][3]
                .as_str()
                .is_some_and(|t| t.contains("/dev/tcp/127.0.0.1/8080") && t.contains("GET /ready")),
            "replica {n}'s healthcheck asks /ready (tests/ops_tansu.rs runs it against one)"
        );
    }
    for volume in ["kafka-data", "prometheus-data", "state-1"] {
        assert!(
            compose["volumes"].get(volume).is_some(),
            "{volume} is declared"
        );
    }
}
