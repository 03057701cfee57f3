//! Every problem in a configuration file serde rejected, each under its key path.

use super::{suggest, Config, ConfigError, ConfigErrors};

/// The key of a problem with the whole text (a TOML syntax error); [`Config::check_file`]
/// replaces it with the file's path.
pub const WHOLE_FILE: &str = "<file>";

/// Every problem in a file serde rejected: serde stops at the first, so each key is tried
/// on its own (with defaults for the rest), descending into tables, to name them all. Also
/// returns the configuration made of the keys that did parse, if any, to validate further.
pub(super) fn file_errors(text: &str, first: toml::de::Error) -> (ConfigErrors, Option<Config>) {
    let Ok(mut table) = text.parse::<toml::Table>() else {
        // Not even TOML: the parser's message has the line and column.
        let e = ConfigError {
            key: WHOLE_FILE.into(),
            message: first.to_string().trim().to_string(),
        };
        return (ConfigErrors(vec![e]), None);
    };
    let mut errors = Vec::new();
    for (k, v) in &table {
        probe_key(&mut vec![k.as_str()], v, &mut errors);
    }
    if errors.is_empty() {
        errors.push(ConfigError {
            key: WHOLE_FILE.into(),
            message: first.to_string().trim().to_string(),
        });
        return (ConfigErrors(errors), None);
    }
    fn remove(t: &mut toml::Table, path: &[&str]) {
        match path {
            [] => {}
            [last] => {
                t.remove(*last);
            }
            [first, rest @ ..] => {
                if let Some(toml::Value::Table(inner)) = t.get_mut(*first) {
                    remove(inner, rest);
                }
            }
        }
    }
    for e in &errors {
        remove(&mut table, &e.key.split('.').collect::<Vec<_>>());
    }
    let rest = toml::Value::Table(table).try_into::<Config>().ok();
    (ConfigErrors(errors), rest)
}

/// Checks `value` at `path` alone; on failure, narrows down into a table's keys.
fn probe_key<'a>(path: &mut Vec<&'a str>, value: &'a toml::Value, errors: &mut Vec<ConfigError>) {
    let mut single = value.clone();
    for k in path.iter().rev() {
        let mut t = toml::Table::new();
        t.insert((*k).to_string(), single);
        single = toml::Value::Table(t);
    }
    let Err(e) = single.try_into::<Config>() else {
        return;
    };
    let before = errors.len();
    if let toml::Value::Table(t) = value {
        for (k, v) in t {
            path.push(k.as_str());
            probe_key(path, v, errors);
            path.pop();
        }
    }
    if errors.len() == before {
        let message = e.to_string();
        // The key path is given separately; drop serde's trailing "in `path`" line.
        let first = message.lines().next().unwrap_or("").trim();
        errors.push(ConfigError {
            key: path.join("."),
            message: suggest::unknown_field(first).unwrap_or_else(|| first.to_string()),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;

    #[test]
    fn every_bad_key_in_the_file_is_reported_with_its_path() {
        let text = r#"
            aplication_id = "x"
            inputs = "customer-events"
            [runtime]
            commit_interval = "soon"
            max_in_flight_records = 10
            comit = true
            [state]
            cache_bytes = "lots"
            [http]
            forward_timeout = 5
            [kafka.common]
            "security.protocol" = "SASL_SSL"
            [gamification]
            results_topic = ""
        "#;
        let errs = Config::from_toml_with_env(Some(text), &|_| None)
            .unwrap_err()
            .0;
        let keys: Vec<&str> = errs.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "aplication_id",
                "http.forward_timeout",
                "inputs",
                "runtime.comit",
                "runtime.commit_interval",
                "state.cache_bytes",
                // Found by validating the keys that did parse.
                "gamification.results_topic",
            ],
            "{errs:?}"
        );
        assert!(
            errs[0].message.contains("did you mean `application_id`"),
            "{errs:?}"
        );
        assert!(errs[5].message.contains("lots"), "{errs:?}");
        let syntax = Config::from_toml_with_env(Some("[runtime\nx = 1"), &|_| None).unwrap_err();
        assert_eq!(syntax.0.len(), 1);
        assert_eq!(syntax.0[0].key, "<file>");
    }
}
