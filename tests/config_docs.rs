//! docs/configuration.md cannot drift from the configuration types: every key the program
//! knows (the default configuration, serialized) is documented with its real default, every
//! documented key exists, and the example configuration loads.

use std::collections::BTreeMap;

use scorestream::config::Config;

/// Key path → default, as TOML text; maps (`kafka.*`) as `<section>.<property>`.
fn defaults() -> BTreeMap<String, String> {
    let table: toml::Table = toml::to_string(&Config::default())
        .unwrap()
        .parse()
        .unwrap();
    let mut out = BTreeMap::new();
    for (k, v) in &table {
        match v {
            toml::Value::Table(t) if k == "kafka" => {
                for section in t.keys() {
                    out.insert(format!("kafka.{section}.<property>"), "(none)".into());
                }
            }
            toml::Value::Table(t) => {
                for (k2, v2) in t {
                    out.insert(format!("{k}.{k2}"), v2.to_string());
                }
            }
            v => {
                out.insert(k.clone(), v.to_string());
            }
        }
    }
    // Keys whose default is absent (Option::None is not serialized).
    for k in [
        "ingest.mapping_file",
        "gamification.rules_file",
        "churn.rules_file",
        "churn.model_file",
        "http.advertised_addr",
        "http.webhook_token",
        "http.webhook_topic",
    ] {
        out.entry(k.to_string()).or_insert_with(|| "(none)".into());
    }
    out
}

/// Key → default cell of every table row of the doc whose first cell is a key.
fn documented() -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/configuration.md"
    ))
    .unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 || !cells[1].starts_with('`') {
            continue;
        }
        let key = cells[1].trim_matches('`');
        // The environment table's first column is a variable, not a key.
        if key.chars().next().is_some_and(|c| c.is_ascii_uppercase()) {
            continue;
        }
        let default = cells[2].trim_matches('`');
        out.insert(key.to_string(), default.to_string());
    }
    out
}

#[test]
fn every_key_is_documented_with_its_default_and_nothing_else_is() {
    let (real, doc) = (defaults(), documented());
    let mut problems = Vec::new();
    for (k, v) in &real {
        match doc.get(k) {
            None => problems.push(format!("{k} (default {v}) is not documented")),
            Some(d) if d != v => problems.push(format!("{k}: documented default {d}, real {v}")),
            Some(_) => {}
        }
    }
    for k in doc.keys().filter(|k| !real.contains_key(*k)) {
        problems.push(format!("{k} is documented but is not a configuration key"));
    }
    assert!(real.len() > 40, "{real:?}");
    assert!(
        problems.is_empty(),
        "docs/configuration.md:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_example_configuration_loads_and_sets_every_section() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/scorestream.example.toml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let config = Config::from_toml_with_env(Some(&text), &|_| None)
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let table: toml::Table = text.parse().unwrap();
    for section in [
        "runtime",
        "state",
        "ingest",
        "gamification",
        "churn",
        "http",
        "kafka",
    ] {
        assert!(
            table.contains_key(section),
            "[{section}] missing from the example"
        );
    }
    // What its comments say it changes.
    assert_eq!(config.runtime.replication_factor, 3);
    assert_eq!(config.inputs.len(), 5);
    assert_eq!(config.webhook_topic(), "app-events");
    assert_eq!(config.kafka.producer["compression.type"], "lz4");
    assert_eq!(
        config.state.cache_bytes,
        Config::default().state.cache_bytes
    );
}
