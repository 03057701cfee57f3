//! The binary as a user runs it: `describe`, `demo` (the README's first command, smaller),
//! and configuration errors reported all at once.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs the binary with a deadline; kills it (by PID) if it overruns.
fn run(args: &[&str], env: &[(&str, &str)], timeout: Duration) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_scorestream"))
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn scorestream");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).unwrap();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).unwrap();
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("scorestream {args:?} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (
        status.code().unwrap_or(-1),
        out.join().unwrap(),
        err.join().unwrap(),
    )
}

#[test]
fn describe_prints_the_ingest_subtopology() {
    let (code, out, _) = run(
        &["describe"],
        &[("SCORESTREAM_APPLICATION_ID", "acme")],
        Duration::from_secs(30),
    );
    assert_eq!(code, 0);
    assert!(
        out.starts_with("Topologies:\n   Sub-topology: 0\n"),
        "{out}"
    );
    assert!(
        out.contains("Sink: events-by-customer (topic: acme-events-by-customer)"),
        "{out}"
    );
    assert!(
        out.contains("Sink: dead-letter (topic: <source topic>-dlq)"),
        "{out}"
    );
}

#[test]
fn describe_draws_the_topology_as_mermaid() {
    let (code, out, _) = run(
        &["describe", "--format", "mermaid"],
        &[("SCORESTREAM_APPLICATION_ID", "acme")],
        Duration::from_secs(30),
    );
    assert_eq!(code, 0);
    assert!(out.starts_with("flowchart LR\n"), "{out}");
    let subgraphs = out
        .lines()
        .filter(|l| l.trim_start().starts_with("subgraph st"))
        .count();
    let ends = out.lines().filter(|l| l.trim() == "end").count();
    assert_eq!((subgraphs, ends), (3, 3), "{out}");
    for needle in [
        r#"(["acme-events-by-customer"])"#,
        r#"[("customer-state")]"#,
        r#"[("leaderboards")]"#,
        r#"(["customer-events"])"#,
    ] {
        assert!(out.contains(needle), "{needle}:\n{out}");
    }
    // The repartition topic links the sink of one sub-topology to the source of the next.
    let topic = out
        .lines()
        .find(|l| l.contains(r#"(["acme-events-by-customer"])"#))
        .and_then(|l| l.trim().split('(').next())
        .unwrap()
        .to_string();
    assert!(out.contains(&format!("--> {topic}\n")), "{out}");
    assert!(out.contains(&format!("  {topic} --> n")), "{out}");
    let (code, _, err) = run(
        &["describe", "--format", "svg"],
        &[],
        Duration::from_secs(30),
    );
    assert_ne!(code, 0);
    assert!(err.contains("mermaid"), "{err}");
}

#[test]
fn demo_runs_to_completion_on_the_embedded_broker() {
    let (code, out, err) = run(
        &[
            "demo",
            "--events",
            "3000",
            "--rate",
            "3000",
            "--bad-ratio",
            "0.05",
        ],
        &[],
        Duration::from_secs(120),
    );
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("] sent="), "live summary lines: {out}");
    assert!(
        out.contains("Sample of scorestream-demo-events-by-customer"),
        "{out}"
    );
    assert!(out.contains("reason="), "dead-letter sample: {out}");
    let done = out
        .lines()
        .find(|l| l.starts_with("Done: sent 3000"))
        .expect(&out);
    // Every event is accounted for: re-keyed + dead-lettered = sent.
    let nums: Vec<u64> = done
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let (sent, bad, consumed, rekeyed, dead) = (nums[0], nums[1], nums[2], nums[3], nums[4]);
    assert_eq!(consumed, sent);
    assert_eq!(rekeyed + dead, sent);
    assert_eq!(dead, bad);
    // The gamification results were read back: points, and a published leaderboard.
    assert!(done.contains("points_awarded="), "{done}");
    assert!(done.contains("leaderboard_updated="), "{done}");
    let standings = out.split("Final standings:").nth(1).expect(&out);
    assert!(
        standings.contains("leaderboard xp all_time:"),
        "{standings}"
    );
    assert!(standings.contains("#1 "), "{standings}");
}

#[test]
fn invalid_configuration_lists_every_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "application_id = 'has space'\ninputs = []\n[runtime]\ncommit_interval = '0s'\n",
    )
    .unwrap();
    let (code, _, err) = run(
        &["run", "--config", path.to_str().unwrap()],
        &[("SCORESTREAM_PROCESSING_GUARANTEE", "sometimes")],
        Duration::from_secs(30),
    );
    assert_eq!(code, 2);
    for key in [
        "application_id",
        "inputs",
        "runtime.commit_interval",
        "SCORESTREAM_PROCESSING_GUARANTEE",
    ] {
        assert!(err.contains(key), "{key} missing from:\n{err}");
    }
}

#[test]
fn validate_lists_configuration_and_rule_errors_together() {
    let (code, out, err) = run(&["validate"], &[], Duration::from_secs(30));
    assert_eq!(code, 0, "the bundled rules and defaults are valid: {err}");
    assert!(
        out.contains("leaderboards") && out.ends_with("OK\n"),
        "{out}"
    );

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "application_id = \"a b\"\n").unwrap();
    let rules = dir.path().join("r.toml");
    std::fs::write(
        &rules,
        "[settings]\ntime_zone = \"Mars/Olympus\"\n\n[points.x]\nevent_type = \"recharge\"\npoint_type = \"nope\"\nbase = 1\n",
    )
    .unwrap();
    let (code, _, err) = run(
        &[
            "validate",
            "--config",
            config.to_str().unwrap(),
            "--rules",
            rules.to_str().unwrap(),
        ],
        &[],
        Duration::from_secs(30),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("application_id"), "{err}");
    assert!(err.contains("settings.time_zone"), "{err}");
    assert!(err.contains("points.x.point_type"), "{err}");
    assert!(
        err.contains(rules.to_str().unwrap()),
        "names the rules file: {err}"
    );
}

#[test]
fn validate_checks_the_files_a_broken_configuration_names_and_claims_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    // A typo (with a neighbour that has a semantic error the typo must not hide).
    std::fs::write(
        &rules,
        "[points.x]\nevent_type = \"recharge\"\npoint_type = \"nope\"\nbase = 1\ncolour = \"red\"\n",
    )
    .unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "aplication_id = \"x\"\nhttp_addr = \"nonsense\"\nstate_dir = {:?}\n[runtime]\ncommit_interval = \"0s\"\n[gamification]\nrules_file = {:?}\n[kafka.common]\n\"sasl.pasword\" = \"x\"\n",
            rules.to_str().unwrap(), // a file, not a directory
            rules.to_str().unwrap()
        ),
    )
    .unwrap();
    let (code, out, err) = run(
        &["validate", "--config", config.to_str().unwrap()],
        &[],
        Duration::from_secs(30),
    );
    assert_eq!(code, 2, "{err}");
    assert_eq!(out, "", "no success summary for a broken setup");
    for needle in [
        "aplication_id",
        "did you mean `application_id`",
        "runtime.commit_interval",
        "http_addr: 'nonsense' is not host:port",
        "state_dir",
        "not a directory",
        "kafka.common.\"sasl.pasword\"",
        "No such configuration property",
        // The rules file the configuration names, not the bundled one.
        rules.to_str().unwrap(),
        "points.x.colour",
        "did you mean `",
        "points.x.point_type",
    ] {
        assert!(err.contains(needle), "{needle} missing from:\n{err}");
    }
}

#[test]
fn a_toml_syntax_error_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("broken.toml");
    std::fs::write(&config, "[runtime\ncommit_interval = 1\n").unwrap();
    for cmd in ["validate", "run"] {
        let (code, out, err) = run(
            &[cmd, "--config", config.to_str().unwrap()],
            &[],
            Duration::from_secs(30),
        );
        assert_eq!(code, 2, "{cmd}: {err}");
        assert!(!out.contains("OK"), "{out}");
        assert!(
            err.contains(&format!("{}: ", config.display())) && !err.contains("<file>"),
            "{cmd}: {err}"
        );
    }
    let (_, _, err) = run(
        &["validate", "--config", config.to_str().unwrap()],
        &[],
        Duration::from_secs(30),
    );
    assert!(err.contains("were not checked"), "{err}");
}
