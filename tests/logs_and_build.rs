//! What operators see of a process before any event flows: `--version` and the
//! `scorestream_build_info` gauge name the git commit (build.rs, "unknown" outside a git
//! checkout); `--log-format json` / `SCORESTREAM_LOG_FORMAT=json` writes one JSON object
//! per line with the event's fields; librdkafka properties from `SCORESTREAM_KAFKA_*`
//! variables reach the clients and secret values never reach the log.

use std::path::Path;
use std::process::{Command, Output};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn git_head() -> String {
    let out = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(ROOT)
        .output()
        .expect("git");
    assert!(out.status.success(), "the tests run in a git checkout");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn scorestream(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_scorestream"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("SCORESTREAM_LOG_FORMAT")
        .envs(env.iter().copied())
        .output()
        .expect("spawn scorestream")
}

#[test]
fn version_and_build_info_name_the_git_commit() {
    let head = git_head();
    let out = scorestream(&["--version"], &[]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("scorestream {} (commit {head})", env!("CARGO_PKG_VERSION"))
    );
    let metrics = scorestream::metrics::Metrics::new().render();
    let series = format!(
        "scorestream_build_info{{commit=\"{head}\",version=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION")
    );
    assert!(metrics.contains(&series), "{series} not in:\n{metrics}");
}

/// Compiles build.rs on its own and runs it in `dir` with `env`; its `rustc-env` line.
fn build_script_commit(dir: &Path, env: &[(&str, &str)]) -> String {
    let exe = dir.join("build-script");
    let status = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .args(["--edition", "2021", "-o"])
        .arg(&exe)
        .arg(Path::new(ROOT).join("build.rs"))
        .status()
        .expect("rustc");
    assert!(status.success());
    let out = Command::new(&exe)
        .current_dir(dir)
        .env_remove("SCORESTREAM_GIT_COMMIT")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        // git must not find a repository above the temporary directory either.
        .env("GIT_CEILING_DIRECTORIES", dir.parent().unwrap())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("cargo:rustc-env=SCORESTREAM_GIT_COMMIT="))
        .unwrap_or_else(|| panic!("no commit in {stdout}"))
        .to_string()
}

#[test]
fn outside_a_git_checkout_the_commit_is_unknown_or_given() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(build_script_commit(dir.path(), &[]), "unknown");
    // A Docker build passes it as a build argument.
    assert_eq!(
        build_script_commit(dir.path(), &[("SCORESTREAM_GIT_COMMIT", "0123456789ab")]),
        "0123456789ab"
    );
}

/// A config whose admin client cannot be created (a bad librdkafka value, set from the
/// environment), so `run` logs its start-up and fails at once, without a broker.
fn run_failing_fast(log_format: (&str, &str), extra_args: &[&str]) -> (Output, String) {
    let state = tempfile::tempdir().unwrap();
    let mut args = extra_args.to_vec();
    args.push("run");
    let env = [
        log_format,
        ("SCORESTREAM_STATE_DIR", state.path().to_str().unwrap()),
        ("SCORESTREAM_HTTP_ADDR", "127.0.0.1:0"),
        ("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9"),
        ("SCORESTREAM_KAFKA_COMMON__SASL_PASSWORD", "hunter2-secret"),
        (
            "SCORESTREAM_KAFKA_CONSUMER__GROUP_INSTANCE_ID",
            "scorestream-0",
        ),
        ("SCORESTREAM_KAFKA_ADMIN__SOCKET_TIMEOUT_MS", "soon"),
    ];
    let out = scorestream(&args, &env);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stderr)
}

#[test]
fn json_logs_keep_fields_and_env_properties_reach_librdkafka_without_their_secrets() {
    for (log_format, flag) in [
        (("SCORESTREAM_LOG_FORMAT", "json"), &[][..]),
        (
            ("SCORESTREAM_LOG_FORMAT", "text"),
            &["--log-format", "json"][..],
        ),
    ] {
        let (out, stderr) = run_failing_fast(log_format, flag);
        assert!(!out.status.success(), "{stderr}");
        let lines: Vec<serde_json::Value> = stderr
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        // Each property set from the environment is logged, fields at the top level.
        let set: Vec<&serde_json::Value> = lines
            .iter()
            .filter(|l| l["message"] == "librdkafka property set from the environment.")
            .collect();
        assert_eq!(set.len(), 3, "{stderr}");
        let instance = set
            .iter()
            .find(|l| l["property"] == "group.instance.id")
            .expect("group.instance.id logged");
        assert_eq!(instance["level"], "INFO");
        assert_eq!(instance["section"], "consumer");
        assert_eq!(
            instance["variable"],
            "SCORESTREAM_KAFKA_CONSUMER__GROUP_INSTANCE_ID"
        );
        assert_eq!(instance["value"], "scorestream-0");
        let password = set
            .iter()
            .find(|l| l["property"] == "sasl.password")
            .expect("sasl.password logged");
        assert_eq!(password["value"], "<redacted>");
        assert!(!stderr.contains("hunter2"), "the secret leaked:\n{stderr}");
        // The admin property reached librdkafka, which refused its value: start-up stops
        // with an error line naming it.
        let error = lines
            .iter()
            .find(|l| l["level"] == "ERROR")
            .unwrap_or_else(|| panic!("no error line in {stderr}"));
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| m.contains("socket.timeout.ms")),
            "{error}"
        );
        assert!(lines.iter().all(|l| l["timestamp"].is_string()
            && l["target"].is_string()
            && l.get("fields").is_none()));
    }
}

#[test]
fn text_logs_are_the_default_and_an_unknown_format_is_refused() {
    let (out, stderr) = run_failing_fast(("RUST_LOG_STYLE", "never"), &[]);
    assert!(!out.status.success());
    assert!(
        stderr.contains("librdkafka property set from the environment.")
            && !stderr.trim_start().starts_with('{')
            && !stderr.contains("hunter2"),
        "{stderr}"
    );
    let out = scorestream(&["--log-format", "xml", "describe"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("possible values: text, json"));
}
