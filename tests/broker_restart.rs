//! `scorestream run` under a broker that goes away and comes back, as an operator sees it:
//!
//! - a broker that comes back empty (a memory broker restarted, a compose stack restarted
//!   without its Kafka volume) is detected — the local state is ahead of it — loudly and
//!   counted; the local state is wiped and restored from what the broker has, and new
//!   events are processed, never skipped as replays, by an instance restarted on its stale
//!   state directory;
//! - an input topic deleted and re-created while the consumer group's offsets were kept:
//!   the committed offsets are past the partitions' ends (Tansu answers such a fetch with
//!   nothing, no OFFSET_OUT_OF_RANGE), detected, counted and read again from the
//!   beginning, so new events are processed.
//! - the same broker loss under a running instance: its producers (outputs and instance
//!   registry) are replaced, local state ahead of the changelogs is wiped and restored,
//!   and new events are processed. librdkafka 2.12 crashes (SIGSEGV) when a client whose
//!   metadata names a topic the broker lost fetches it from Tansu (its answer's leader
//!   hint carries no topic name or id); the registry's consumer was such a client.

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

/// 300 events, processed exactly by an instance on the `state` directory, which is
/// left running and ready.
fn first_run(s: &mut Setup) -> (Instance, u16) {
    s.produce(300);
    let (mut inst, port) = start(s, "state");
    wait_ready(&mut inst, port, 200, Duration::from_secs(60));
    with_log(&mut inst, || {
        s.wait_exact(Duration::from_secs(60), "first run")
    });
    (inst, port)
}

#[test]
fn an_instance_restarted_on_state_the_broker_lost_restores_what_it_has_and_processes_new_events() {
    let mut s = Setup::new("200ms");
    let (inst, _) = first_run(&mut s);
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

#[test]
fn a_broker_that_lost_everything_under_a_running_instance_is_detected_and_new_events_are_processed()
{
    let mut s = Setup::new("200ms");
    let (mut inst, port) = first_run(&mut s);

    // The broker restarts empty under the running instance, after an outage longer than
    // the group session (as a compose stack restarting). A broker back at once can crash
    // librdkafka 2.12: Tansu answers fetches of topics it does not know with a leader
    // hint carrying no topic name or id, which librdkafka dereferences.
    s.broker.lock().unwrap().stop();
    wait_ready_saying(
        &mut inst,
        port,
        503,
        "does not answer",
        Duration::from_secs(30),
    );
    std::thread::sleep(Duration::from_secs(14));
    let back_at = now_ms();
    let lost = broker_restarts_empty(&mut s);
    s.produce(200);
    with_log(&mut inst, || {
        s.wait_exact_after_loss(
            &lost,
            Duration::from_secs(90),
            "running instance, broker came back empty",
        )
    });
    wait_ready(&mut inst, port, 200, Duration::from_secs(30));
    // The instance registry announces again on the empty broker: its idempotent producer
    // (whose id the broker forgot) and its consumer were replaced.
    with_log(&mut inst, || {
        support::eventually(
            Duration::from_secs(60),
            "a claim announced after the broker came back",
            || claimed_since(port, back_at),
        )
    });
    let (_, metrics) = support::http_get(port, "/metrics").unwrap();
    for kind in ["changelog", "producer"] {
        assert!(
            metrics.contains(&format!(
                "scorestream_state_ahead_of_broker_total{{kind=\"{kind}\"}}"
            )),
            "{kind}: {metrics}"
        );
    }
    let log = inst.stop();
    assert!(log.contains("Local state is ahead of the broker"), "{log}");
    // The broker refuses the old producer id, or (when it handed that id to another
    // client, e.g. the registry's new producer) answers out of sequence: replaced either way.
    assert!(log.contains("producer replaced"), "{log}");
    assert!(
        log.contains("the instance registry has new clients"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}

/// A claim of this instance announced after `since` (epoch ms), as `/instances` lists it.
fn claimed_since(port: u16, since: i64) -> Option<()> {
    let (_, body) = support::http_get(port, "/instances")?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["instances"]
        .as_array()?
        .iter()
        .any(|i| i["this_instance"] == true && i["announced_at_ms"].as_i64() > Some(since))
        .then_some(())
}

/// The broker (SQLite: it keeps its data) is killed and started again at once, within the
/// broker watch's 2 s check, which may never see it down. The instance registry notices
/// anyway (its clients' connection dropped), replaces its clients and claims its
/// partitions again. With a broker that comes back *empty* that is what keeps its
/// idempotent producer (whose id the broker forgot) and its consumer (positioned past the
/// end of the re-created topic) from going stale; such a broker cannot be tested here: a
/// short empty restart also makes the stream consumer fetch topics Tansu lost, which
/// crashes librdkafka 2.12 (docs/operations.md).
#[test]
fn a_broker_restart_shorter_than_the_watch_check_is_noticed_by_the_instance_registry() {
    let mut s = Setup::with_broker(support::tansu::Tansu::start_sqlite(), "200ms");
    let (mut inst, port) = first_run(&mut s);

    let back_at = now_ms();
    s.broker.lock().unwrap().start_again();
    s.produce(200);
    with_log(&mut inst, || {
        s.wait_exact(Duration::from_secs(90), "after a short broker restart")
    });
    with_log(&mut inst, || {
        support::eventually(
            Duration::from_secs(60),
            "a claim announced and read back after the broker restarted",
            || claimed_since(port, back_at),
        )
    });
    let log = inst.stop();
    assert!(
        log.contains("The instance registry lost its broker connection"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    // Whether the watch saw the outage at all is luck; say which case this run was.
    eprintln!(
        "the broker watch {} the restart",
        if log.contains("The Kafka cluster does not answer") {
            "saw"
        } else {
            "did not see"
        }
    );
}

/// A client of the consumer group `group` that never subscribes: it reads and writes the
/// group's committed offsets.
fn group_client(s: &Setup, group: &str) -> rdkafka::consumer::BaseConsumer {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &s.bootstrap)
        .set("group.id", group)
        .create()
        .unwrap()
}

/// The consumer group's committed offsets of `topic` (partition → next offset).
fn group_offsets(s: &Setup, group: &str) -> Vec<(i32, i64)> {
    use rdkafka::consumer::Consumer;
    let consumer = group_client(s, group);
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition(&s.input, p);
    }
    let got = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    got.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            rdkafka::Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect()
}

/// Commits `offsets` of `topic` for `group` (as a group whose offsets outlived the topic).
fn commit_group_offsets(s: &Setup, group: &str, offsets: &[(i32, i64)]) {
    use rdkafka::consumer::{CommitMode, Consumer};
    let consumer = group_client(s, group);
    let mut tpl = rdkafka::TopicPartitionList::new();
    for &(p, o) in offsets {
        tpl.add_partition_offset(&s.input, p, rdkafka::Offset::Offset(o))
            .unwrap();
    }
    consumer.commit(&tpl, CommitMode::Sync).unwrap();
}

/// Deletes the input topic and creates it again, empty.
fn recreate_input(s: &Setup) {
    use rdkafka::admin::{AdminClient, AdminOptions};
    let (bootstrap, input) = (s.bootstrap.clone(), s.input.clone());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let admin: AdminClient<rdkafka::client::DefaultClientContext> =
            rdkafka::ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .create()
                .unwrap();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(20)));
        for r in rt.block_on(admin.delete_topics(&[&input], &opts)).unwrap() {
            r.expect("input deleted");
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while admin
            .inner()
            .fetch_metadata(None, Duration::from_secs(5))
            .unwrap()
            .topics()
            .iter()
            .any(|t| t.name() == input && t.error().is_none())
        {
            assert!(Instant::now() < deadline, "the input never went away");
            std::thread::sleep(Duration::from_millis(200));
        }
    })
    .join()
    .unwrap();
    support::create_topics(&s.bootstrap, &[(s.input.clone(), PARTITIONS)]);
}

#[test]
fn an_input_re_created_with_the_group_offsets_kept_is_read_again_from_its_beginning() {
    let mut s = Setup::new("200ms");
    let (inst, _) = first_run(&mut s);
    inst.stop();
    let text = std::fs::read_to_string(&s.config).unwrap();
    let group = text
        .lines()
        .find_map(|l| l.strip_prefix("application_id = \""))
        .and_then(|l| l.strip_suffix('"'))
        .unwrap()
        .to_string();
    let kept = group_offsets(&s, &group);
    let least = kept.iter().map(|&(_, o)| o).filter(|&o| o > 0).min();
    let least = least.expect("the first run committed input offsets");

    // The input is deleted and created again, empty; the group's offsets are kept (Tansu
    // drops them with the topic: they are put back, as a broker that keeps them would).
    recreate_input(&s);
    commit_group_offsets(&s, &group, &kept);
    assert_eq!(group_offsets(&s, &group), kept);
    // Fewer new events than any partition's kept offset: every partition that has any
    // ends below it, where a consumer at the kept offset reads nothing.
    let fresh = (least - 1).clamp(1, 150) as u64;
    s.produce(fresh);

    // The changelogs are intact: the totals are those of every event, old and new.
    let (mut inst, port) = start(&s, "state");
    with_log(&mut inst, || {
        s.wait_exact(
            Duration::from_secs(90),
            "input re-created with the group's offsets kept",
        )
    });
    wait_ready(&mut inst, port, 200, Duration::from_secs(30));
    let (_, metrics) = support::http_get(port, "/metrics").unwrap();
    assert!(
        metrics.contains(r#"scorestream_state_ahead_of_broker_total{kind="input"}"#),
        "{metrics}"
    );
    let log = inst.stop();
    assert!(
        log.contains("An input partition's position is past its end"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}

/// Milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
