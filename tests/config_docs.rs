//! docs/configuration.md and config/scorestream.example.toml cannot drift from the
//! configuration types. Both ways for the doc: every key the program knows (the default
//! configuration, serialized) is documented with its real default, and every documented key
//! is accepted by the file parser with the documented type (and rejected with a wrong one);
//! the environment variables the configuration reads are exactly the documented ones, each
//! overriding its documented key. The example loads, covers every key, and differs from the
//! defaults exactly where its comments say so.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use scorestream::config::Config;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Keys whose default is absent (`Option::None` is not serialized, so `Config::default()`
/// cannot name them): documented with the default "(none)".
const ABSENT_BY_DEFAULT: [&str; 14] = [
    "runtime.max_in_flight_records",
    "runtime.max_in_flight_bytes",
    "state.block_cache_bytes",
    "state.write_buffer_bytes",
    "state.cache_bytes",
    "ingest.mapping_file",
    "errors.late_event",
    "errors.dead_letter_max_bytes",
    "gamification.rules_file",
    "churn.rules_file",
    "churn.model_file",
    "http.advertised_addr",
    "http.webhook_token",
    "http.webhook_topic",
];

/// The librdkafka passthrough maps are documented as `kafka.<section>.<property>`.
const PROPERTY: &str = "<property>";

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{ROOT}/{path}")).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Key path (`runtime.commit_interval`, `kafka.producer.compression.type`) → value.
fn flatten(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, toml::Value>) {
    for (k, v) in table {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => flatten(&path, t, out),
            v => {
                out.insert(path, v.clone());
            }
        }
    }
}

fn flat(config: &Config) -> BTreeMap<String, toml::Value> {
    let table: toml::Table = toml::to_string(config).unwrap().parse().unwrap();
    let mut out = BTreeMap::new();
    flatten("", &table, &mut out);
    out
}

/// Key path → default as the doc writes it (TOML text, or "(none)").
fn real_defaults() -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = flat(&Config::default())
        .into_iter()
        .map(|(k, v)| (k, v.to_string()))
        .collect();
    let table: toml::Table = toml::to_string(&Config::default())
        .unwrap()
        .parse()
        .unwrap();
    for section in table["kafka"].as_table().unwrap().keys() {
        out.insert(format!("kafka.{section}.{PROPERTY}"), "(none)".into());
    }
    for k in ABSENT_BY_DEFAULT {
        assert!(!out.contains_key(k), "{k} has a default now: document it");
        out.insert(k.to_string(), "(none)".into());
    }
    out
}

/// One documented key.
#[derive(Debug)]
struct Row {
    ty: String,
    default: String,
    env: Option<String>,
}

/// What docs/configuration.md says: the key tables (by their `key` column) and the
/// environment table (variable → key).
fn documented() -> (BTreeMap<String, Row>, BTreeMap<String, String>) {
    let text = read("docs/configuration.md");
    let (mut keys, mut env) = (BTreeMap::new(), BTreeMap::new());
    let mut header: Vec<String> = Vec::new();
    for line in text.lines() {
        if !line.starts_with('|') {
            header.clear();
            continue;
        }
        let cells: Vec<String> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect();
        if header.is_empty() {
            header = cells;
            continue;
        }
        if cells[0].starts_with("---") {
            continue;
        }
        let col = |name: &str| {
            let i = header
                .iter()
                .position(|h| h == name)
                .unwrap_or_else(|| panic!("table {header:?} has no '{name}' column"));
            cells[i].trim_matches('`').to_string()
        };
        match header[0].as_str() {
            "key" => {
                let env_cell = col("env override");
                let row = Row {
                    ty: col("type"),
                    default: col("default"),
                    env: (env_cell != "—").then_some(env_cell),
                };
                assert!(
                    keys.insert(col("key"), row).is_none(),
                    "{} documented twice",
                    col("key")
                );
            }
            "variable" => {
                env.insert(col("variable"), col("key"));
            }
            _ => {}
        }
    }
    (keys, env)
}

/// Values of a documented type the parser must accept, and one it must reject.
fn samples(ty: &str) -> (Vec<toml::Value>, toml::Value) {
    use toml::Value::{Array, Boolean, Integer, String as S};
    if let Some(list) = ty.strip_prefix("enum:") {
        let values = list
            .split(',')
            .map(|v| S(v.trim().trim_matches('`').to_string()))
            .collect();
        return (values, S("no_such_value".into()));
    }
    match ty {
        "string" => (vec![S("x-1".into())], Integer(1)),
        "path" => (vec![S("/tmp/x".into())], Integer(1)),
        "host:port" => (vec![S("example:1".into())], Integer(1)),
        "integer" => (vec![Integer(5)], S("5".into())),
        "boolean" => (vec![Boolean(true), Boolean(false)], S("yes".into())),
        "duration" => (vec![S("30s".into())], Integer(30)),
        "size" => (vec![S("2 MiB".into()), Integer(2048)], Boolean(true)),
        "list of strings" => (
            vec![Array(vec![S("customer-events".into())])],
            S("customer-events".into()),
        ),
        other => panic!("unknown documented type '{other}'"),
    }
}

/// Parses (serde only, no validation) a file that sets just `key` to `value`.
fn parse_one(key: &str, value: toml::Value) -> Result<Config, String> {
    let mut path: Vec<String> = key.split('.').map(str::to_string).collect();
    if path.last().map(String::as_str) == Some(PROPERTY) {
        *path.last_mut().unwrap() = "client.id".into();
    }
    let mut v = value;
    for segment in path.iter().rev() {
        let mut t = toml::Table::new();
        t.insert(segment.clone(), v);
        v = toml::Value::Table(t);
    }
    v.try_into::<Config>().map_err(|e| e.to_string())
}

#[test]
fn every_key_is_documented_with_its_default_and_nothing_else_is() {
    let (real, (doc, _)) = (real_defaults(), documented());
    let mut problems = Vec::new();
    for (k, v) in &real {
        match doc.get(k) {
            None => problems.push(format!("{k} (default {v}) is not documented")),
            Some(row) if row.default != *v => {
                problems.push(format!("{k}: documented default {}, real {v}", row.default))
            }
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
fn documented_types_are_the_ones_the_parser_accepts() {
    let (doc, _) = documented();
    let mut problems = Vec::new();
    for (key, row) in &doc {
        let (good, bad) = samples(&row.ty);
        for v in good {
            if let Err(e) = parse_one(key, v.clone()) {
                problems.push(format!("{key} ({}): {v} rejected: {e}", row.ty));
            }
        }
        if parse_one(key, bad.clone()).is_ok() {
            problems.push(format!("{key} ({}): {bad} accepted", row.ty));
        }
    }
    assert!(
        problems.is_empty(),
        "docs/configuration.md types:\n  {}",
        problems.join("\n  ")
    );
}

/// A documented variable family such as `SCORESTREAM_KAFKA_COMMON__<PROPERTY>`: found by
/// listing the environment, not asked for by name.
fn is_family(var: &str) -> bool {
    var.ends_with("<PROPERTY>")
}

/// Configuration keys whose value differs between `a` and `b`.
fn changed_keys(a: &Config, b: &Config) -> Vec<String> {
    let (a, b) = (flat(a), flat(b));
    a.keys()
        .chain(b.keys())
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[test]
fn the_documented_environment_variables_are_the_ones_read_and_override_their_keys() {
    let (doc, env_table) = documented();
    // Every variable the configuration asks the environment for.
    let asked = RefCell::new(BTreeSet::new());
    Config::from_toml_with_env(None, &|k| {
        asked.borrow_mut().insert(k.to_string());
        None
    })
    .unwrap();
    let asked = asked.into_inner();
    let in_tables: BTreeMap<String, String> = doc
        .iter()
        .filter_map(|(k, row)| Some((row.env.clone()?, k.clone())))
        .collect();
    assert_eq!(
        in_tables, env_table,
        "the environment table and the key tables' env column disagree"
    );
    assert_eq!(
        env_table
            .keys()
            .filter(|v| !is_family(v))
            .cloned()
            .collect::<BTreeSet<_>>(),
        asked,
        "documented variables vs the ones the configuration reads"
    );
    let defaults = flat(&Config::default());
    for (var, key) in env_table.iter().filter(|(v, _)| !is_family(v)) {
        // A value of the key's documented type that is not its default.
        let value = samples(&doc[key].ty)
            .0
            .into_iter()
            .map(|v| v.as_str().expect("env overrides are strings").to_string())
            .find(|v| defaults.get(key).and_then(|d| d.as_str()) != Some(v.as_str()))
            .unwrap();
        let config = Config::from_toml_with_env(None, &|k| (k == var).then(|| value.clone()))
            .unwrap_or_else(|e| panic!("{var}={value}: {e}"));
        let changed = changed_keys(&config, &Config::default());
        assert_eq!(
            changed,
            std::slice::from_ref(key),
            "{var}={value} changed {changed:?}"
        );
        assert_eq!(flat(&config)[key].as_str(), Some(value.as_str()), "{var}");
    }
}

#[test]
fn the_kafka_variable_family_sets_each_documented_section_and_nothing_else() {
    let (_, env_table) = documented();
    let families: Vec<(&String, &String)> =
        env_table.iter().filter(|(v, _)| is_family(v)).collect();
    // One family per `[kafka.*]` table.
    let sections: BTreeSet<String> = real_defaults()
        .keys()
        .filter(|k| k.ends_with(PROPERTY))
        .cloned()
        .collect();
    assert_eq!(
        families
            .iter()
            .map(|(_, k)| (*k).clone())
            .collect::<BTreeSet<_>>(),
        sections
    );
    // Over a file that sets the property too: the variable wins, dots from underscores.
    for (var, key) in families {
        let section = key
            .strip_prefix("kafka.")
            .and_then(|k| k.strip_suffix(&format!(".{PROPERTY}")))
            .unwrap();
        let file = format!("[kafka.{section}]\n\"client.rack\" = \"from-file\"\n");
        let name = var.replace("<PROPERTY>", "CLIENT_RACK");
        let vars = [(name.clone(), "from-env".to_string())];
        let config = Config::from_toml_with_env_vars(Some(&file), &|_| None, &vars)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let changed = changed_keys(&config, &Config::default());
        let property = format!("kafka.{section}.client.rack");
        assert_eq!(
            changed,
            std::slice::from_ref(&property),
            "{name} changed {changed:?}"
        );
        assert_eq!(
            flat(&config)[&property].as_str(),
            Some("from-env"),
            "{name}"
        );
    }
    // Outside the scheme: an error naming the variable, not silently ignored.
    let bad = [(
        "SCORESTREAM_KAFKA_SASL_PASSWORD".to_string(),
        "x".to_string(),
    )];
    let err = Config::from_toml_with_env_vars(None, &|_| None, &bad).unwrap_err();
    assert_eq!(err.0[0].key, "SCORESTREAM_KAFKA_SASL_PASSWORD", "{err}");
}

/// What the example sets, what it shows commented out, and which keys its comments say
/// differ from the defaults.
struct Example {
    text: String,
    set: BTreeSet<String>,
    commented: BTreeMap<String, toml::Value>,
    marked_changed: BTreeSet<String>,
}

fn example() -> Example {
    let text = read("config/scorestream.example.toml");
    let mut ex = Example {
        text: String::new(),
        set: BTreeSet::new(),
        commented: BTreeMap::new(),
        marked_changed: BTreeSet::new(),
    };
    let mut section = String::new();
    let mut comments: Vec<String> = Vec::new();
    let path = |section: &str, key: &str| {
        if section.is_empty() {
            key.to_string()
        } else {
            format!("{section}.{key}")
        }
    };
    for line in text.lines().map(str::trim) {
        if line.is_empty() {
            comments.clear();
        } else if line.starts_with('[') {
            section = line.trim_matches(['[', ']']).to_string();
            comments.clear();
        } else if let Some(comment) = line.strip_prefix('#') {
            // A commented-out `key = value` line, or prose.
            match comment.trim().parse::<toml::Table>() {
                Ok(t) if t.len() == 1 && !t.values().next().unwrap().is_table() => {
                    let (k, v) = t.into_iter().next().unwrap();
                    ex.commented.insert(path(&section, &k), v);
                    // Its explanation ends here, like a set key's.
                    comments.clear();
                }
                _ => comments.push(comment.trim().to_string()),
            }
        } else {
            let t: toml::Table = line.parse().unwrap_or_else(|e| panic!("{line}: {e}"));
            let key = path(&section, t.keys().next().unwrap());
            if comments
                .first()
                .is_some_and(|c| c.starts_with("Changed from the default"))
            {
                ex.marked_changed.insert(key.clone());
            }
            ex.set.insert(key);
            comments.clear();
        }
    }
    ex.text = text;
    ex
}

#[test]
fn the_example_configuration_loads_and_sets_every_section() {
    let ex = example();
    let config = Config::from_toml_with_env(Some(&ex.text), &|_| None)
        .unwrap_or_else(|e| panic!("config/scorestream.example.toml: {e}"));
    let table: toml::Table = ex.text.parse().unwrap();
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
    // What its comments say it changes, spot-checked through the loaded configuration.
    assert_eq!(config.runtime.replication_factor, 3);
    assert_eq!(config.inputs.len(), 5);
    assert_eq!(config.webhook_topic(), "app-events");
    assert_eq!(config.kafka.producer["compression.type"], "lz4");
}

#[test]
fn the_example_differs_from_the_defaults_exactly_where_its_comments_say() {
    let ex = example();
    let loaded = flat(&Config::from_toml_with_env(Some(&ex.text), &|_| None).unwrap());
    let defaults = flat(&Config::default());
    let differing: BTreeSet<String> = loaded
        .keys()
        .chain(defaults.keys())
        .filter(|k| loaded.get(*k) != defaults.get(*k))
        .cloned()
        .collect();
    assert!(!ex.marked_changed.is_empty());
    assert_eq!(
        differing, ex.marked_changed,
        "keys that differ from the defaults vs keys marked \"Changed from the default\""
    );
}

#[test]
fn the_example_shows_every_key_and_its_commented_out_keys_parse() {
    let ex = example();
    let table: toml::Table = ex.text.parse().unwrap();
    let mut missing = Vec::new();
    for key in real_defaults().keys() {
        let shown = match key.strip_suffix(&format!(".{PROPERTY}")) {
            // A passthrough map: its section header is there.
            Some(section) => {
                let (kafka, name) = section.split_once('.').unwrap();
                table[kafka].get(name).is_some()
            }
            None => ex.set.contains(key) || ex.commented.contains_key(key),
        };
        if !shown {
            missing.push(key.clone());
        }
    }
    assert!(
        missing.is_empty(),
        "config/scorestream.example.toml lacks {missing:?}"
    );
    // Uncommented, the commented-out keys are valid too (names and types).
    assert!(ex.commented.contains_key("gamification.rules_file"));
    for (key, value) in &ex.commented {
        let mut all = table.clone();
        let mut t = &mut all;
        let segments: Vec<&str> = match key.split_once("kafka.") {
            Some(("", rest)) => {
                let (section, property) = rest.split_once('.').unwrap();
                vec!["kafka", section, property]
            }
            _ => key.split('.').collect(),
        };
        for s in &segments[..segments.len() - 1] {
            t = t
                .entry(s.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .unwrap();
        }
        t.insert(segments.last().unwrap().to_string(), value.clone());
        if let Err(e) = toml::Value::Table(all).try_into::<Config>() {
            panic!("commented-out `{key}` does not parse: {e}");
        }
    }
}
