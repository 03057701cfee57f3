//! Records polled before their task runs are held and read again once it starts, however it
//! starts. A partition assigned while its task cannot be created yet (the broker seemed
//! down, or creating tasks backs off after a transient error) is fetched all the same; a
//! stateless task then starts at once, without a restore, and its held records were dropped:
//! the events a producer sent right after a broker restart were never processed (the
//! intermittent stall of `broker_outage`'s SQLite restart tests).
//!
//! Its own test binary: the hooks it sets are global to the process.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::Message;
use scorestream::engine::{
    Child, Partitioning, Processor, ProcessorContext, ProcessorError, Record, SinkTarget, TopicRef,
    TopologyBuilder,
};
use scorestream::metrics::Metrics;
use scorestream::runtime::{self, hooks};

/// Forwards every record unchanged.
struct Forward {
    out: Option<Child>,
}

impl Processor for Forward {
    fn init(&mut self, ctx: &mut ProcessorContext<'_>) -> Result<(), ProcessorError> {
        self.out = Some(ctx.child("out")?);
        Ok(())
    }
    fn process(&mut self, ctx: &mut ProcessorContext<'_>, r: Record) -> Result<(), ProcessorError> {
        ctx.forward_to(self.out.unwrap(), r);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_polled_before_a_stateless_task_exists_are_processed_once_it_starts() {
    let mock = support::mock::Mock::start();
    let bootstrap = mock.bootstrap();
    let (input, output) = (support::random_topic("in"), support::random_topic("out"));
    let n = 300;
    let records: Vec<support::Outgoing> = (0..n)
        .map(|i| {
            (
                input.clone(),
                None,
                format!("event-{i}").into_bytes(),
                Some(i % 3),
            )
        })
        .collect();

    let mut config = support::app_config(&bootstrap, &[&input]);
    config.runtime.commit_interval = Duration::from_millis(200);
    // One stream thread on the mock cluster (see tests/runtime_mock.rs `test_config`).
    config.runtime.stream_threads = 1;
    let mut b = TopologyBuilder::new();
    b.add_source("src", &[TopicRef::external(&input)]);
    b.add_processor("forward", || Box::new(Forward { out: None }), &["src"]);
    b.add_sink(
        "out",
        SinkTarget::Topic(TopicRef::external(&output)),
        Partitioning::SameAsSource,
        &["forward"],
    );
    let topology = b.build(&config.application_id).unwrap();
    // The mock cluster does not implement CreateTopics: create what the runtime would.
    let existing = [(input.clone(), 3)].into_iter().collect();
    mock.create_topic(&input, 3);
    for plan in runtime::admin::plan_topics(&config, &topology, &existing) {
        mock.create_topic(&plan.name, plan.partitions);
    }
    support::produce_many(&bootstrap, &records);

    // No task is created until a record of its partition was polled and held.
    let held = Arc::new(AtomicBool::new(false));
    let flag = held.clone();
    hooks::set(move |p| {
        if p == hooks::Point::HoldRecord {
            flag.store(true, Ordering::Relaxed);
        }
    });
    hooks::defer_task_creation(true);
    let handle = runtime::start(&config, topology, Metrics::new())
        .await
        .unwrap_or_else(|e| panic!("runtime starts: {e}"));
    let polled = held.clone();
    tokio::task::spawn_blocking(move || {
        support::eventually(Duration::from_secs(30), "a record held", || {
            polled.load(Ordering::Relaxed).then_some(())
        })
    })
    .await
    .unwrap();
    hooks::defer_task_creation(false);

    let (b, t) = (bootstrap.clone(), output.clone());
    let outs = tokio::task::spawn_blocking(move || {
        support::eventually(Duration::from_secs(30), "every record forwarded", || {
            let outs = support::consume_all(&b, &t, Duration::from_secs(10));
            (outs.len() >= n as usize).then_some(outs)
        })
    })
    .await
    .unwrap();
    hooks::clear();
    handle.shutdown();
    tokio::task::spawn_blocking(move || handle.join())
        .await
        .unwrap()
        .unwrap();

    let mut seen: HashMap<Vec<u8>, usize> = HashMap::new();
    for m in &outs {
        *seen.entry(m.payload().unwrap().to_vec()).or_default() += 1;
    }
    assert_eq!(seen.len(), n as usize, "distinct records forwarded");
    assert!(
        seen.values().all(|&c| c == 1),
        "a record was forwarded twice"
    );
}
