//! `scorestream run` under a broker that goes away and comes back, as an operator sees it:
//!
//! - a broker that comes back empty (a memory broker restarted, a compose stack restarted
//!   without its Kafka volume) is detected — the local state is ahead of it — loudly and
//!   counted; the local state is wiped and restored from what the broker has, and new
//!   events are processed, never skipped as replays, by an instance restarted on its stale
//!   state directory.
//!
//! Not here: the same under a running instance. It passes with the producer replacement
//! (runtime::producer) and fails without it, but in about 2 runs of 5 the instance dies
//! of SIGSEGV inside librdkafka 2.12 right after the empty broker is back and restores
//! start (Tansu's answers for topics it lost; see the branch history of this file).

mod support;

use std::time::{Duration, Instant};

use support::exact::{Setup, PARTITIONS};
use support::instance::Instance;

fn start(s: &Setup, state: &str) -> (Instance, u16) {
    let port = support::free_port();
    let addr = format!("127.0.0.1:{port}");
    // `SCORESTREAM_TEST_LOG=scorestream=debug` to see more of the instance on a failure.
    let log = std::env::var("SCORESTREAM_TEST_LOG").unwrap_or_else(|_| "info".into());
    let inst = Instance::start_with_env(
        &s.config,
        &s.state_dir(state),
        &[("SCORESTREAM_HTTP_ADDR", &addr), ("RUST_LOG", &log)],
    );
    (inst, port)
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

/// `check` runs, and on a failure the instance's log (and exit status, if it ended) is
/// printed with the panic.
fn with_log<T>(inst: &mut Instance, check: impl FnOnce() -> T) -> T {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(check)) {
        Ok(v) => v,
        Err(e) => {
            let exit = inst.child.try_wait();
            eprintln!("the instance ({exit:?}) logged:\n{}", inst.log());
            std::panic::resume_unwind(e)
        }
    }
}

/// The broker restarts empty, and its inputs are created again: the events sent before
/// are gone from it (they leave the expected totals, see `wait_exact_after_loss`).
fn broker_restarts_empty(s: &mut Setup) -> support::exact::Totals {
    s.broker.lock().unwrap().start_again();
    support::create_topics(&s.bootstrap, &[(s.input.clone(), PARTITIONS)]);
    std::mem::take(&mut s.expected)
}

#[test]
fn an_instance_restarted_on_state_the_broker_lost_restores_what_it_has_and_processes_new_events() {
    let mut s = Setup::new("200ms");
    s.produce(300);
    let (mut inst, port) = start(&s, "state");
    wait_ready(&mut inst, port, 200, Duration::from_secs(60));
    with_log(&mut inst, || {
        s.wait_exact(Duration::from_secs(60), "first run")
    });
    inst.stop();

    // Stopped, the broker restarts empty; the instance starts again on its state
    // directory, whose stores and positions are ahead of everything the broker has.
    s.broker.lock().unwrap().stop();
    let lost = broker_restarts_empty(&mut s);
    s.produce(150);
    let (mut inst, port) = start(&s, "state");
    wait_ready(&mut inst, port, 200, Duration::from_secs(60));
    with_log(&mut inst, || {
        s.wait_exact_after_loss(
            &lost,
            Duration::from_secs(60),
            "restarted on a stale state directory",
        )
    });
    let (_, metrics) = support::http_get(port, "/metrics").unwrap();
    assert!(
        metrics.contains(r#"scorestream_state_ahead_of_broker_total{kind="changelog"}"#),
        "{metrics}"
    );
    let log = inst.stop();
    assert!(log.contains("Local state is ahead of the broker"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}
