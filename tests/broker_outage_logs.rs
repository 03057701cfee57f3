//! `scorestream run` under a broker that goes away, as an operator sees it: a clean run logs
//! no ERROR; an outage is logged once per cause (at most every 10 s), as warnings, and
//! `/ready` answers 503 while it lasts.
//!
//! (The broker coming back empty — issue 16, item 5 — is in `broker_restart.rs`.)

mod support;

use std::time::{Duration, Instant};

use support::exact::Setup;
use support::instance::Instance;

fn start(s: &Setup, state: &str) -> (Instance, u16) {
    let port = support::free_port();
    (
        Instance::start_on_port(&s.config, &s.state_dir(state), port),
        port,
    )
}

/// Waits until `/ready` answers `status`; returns its body.
fn wait_ready(inst: &mut Instance, port: u16, status: u16, timeout: Duration) -> String {
    wait_ready_saying(inst, port, status, "", timeout)
}

/// Waits until `/ready` answers `status` with a body containing `needle`.
fn wait_ready_saying(
    inst: &mut Instance,
    port: u16,
    status: u16,
    needle: &str,
    timeout: Duration,
) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let got = support::http_get(port, "/ready");
        if let Some((s, body)) = &got {
            if *s == status && body.contains(needle) {
                return body.clone();
            }
        }
        if let Ok(Some(exit)) = inst.child.try_wait() {
            panic!("scorestream exited ({exit}):\n{}", inst.log());
        }
        assert!(
            Instant::now() < deadline,
            "/ready never answered {status} within {timeout:?} (last {got:?}):\n{}",
            inst.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn error_lines(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains(" ERROR ")).collect()
}

/// A log line without its time stamp and numbers: repeats of one cause look the same.
fn shape(line: &str) -> String {
    line.split_once(' ')
        .map_or(line, |(_, rest)| rest)
        .chars()
        .filter(|c| !c.is_ascii_digit())
        .collect()
}

#[test]
fn an_outage_is_logged_once_per_cause_and_a_clean_run_logs_no_error() {
    let mut s = Setup::new("200ms");
    s.produce(200);
    let (mut inst, port) = start(&s, "state");
    wait_ready(&mut inst, port, 200, Duration::from_secs(60));
    s.wait_exact(Duration::from_secs(60), "before the outage");
    let clean = inst.log();
    assert!(
        error_lines(&clean).is_empty(),
        "a clean run logged errors:\n{clean}"
    );

    let before = clean.len();
    s.broker.lock().unwrap().stop();
    wait_ready_saying(
        &mut inst,
        port,
        503,
        "does not answer",
        Duration::from_secs(20),
    );
    std::thread::sleep(Duration::from_secs(25));
    let outage = inst.log()[before..].to_string();
    let log = inst.stop();
    assert!(!log.contains("panicked"), "{log}");

    // A broker that is down is not something the operator fixes in ScoreStream: warnings.
    assert!(
        error_lines(&outage).is_empty(),
        "errors logged for an outage:\n{outage}"
    );
    // Each cause once, then at most once every 10 s: ~3 times in 25 s.
    let mut counts = std::collections::BTreeMap::new();
    for line in outage.lines() {
        *counts.entry(shape(line)).or_insert(0u32) += 1;
    }
    let repeated: Vec<_> = counts.iter().filter(|(_, n)| **n > 4).collect();
    assert!(
        repeated.is_empty(),
        "repeated more than 4 times in 25 s: {repeated:#?}\n{outage}"
    );
    assert!(
        outage.lines().count() <= 40,
        "{} lines for a 25 s outage:\n{outage}",
        outage.lines().count()
    );
}
