//! A restored task starts processing at the committed offsets its restore filtered with,
//! wherever librdkafka's fetch position stands. Pausing a task's inputs for its restore
//! drops the records librdkafka had fetched already; with nothing consumed from the
//! partition yet, it resumed after them: those inputs were never applied (the crash suite
//! with two stream threads lost exactly the records between the committed offset and the
//! first one processed).
//!
//! Its own test binary: the hooks it sets are global to the process.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::Message;
use scorestream::engine::{
    Child, Partitioning, Processor, ProcessorContext, ProcessorError, Record, SinkTarget,
    StoreDecl, TopicRef, TopologyBuilder,
};
use scorestream::metrics::Metrics;
use scorestream::runtime::{self, hooks};
use scorestream::state::StoreHandle;

/// Counts records per key in a logged store and forwards each record.
struct Count {
    store: StoreHandle<String, u64>,
    out: Option<Child>,
}

impl Processor for Count {
    fn init(&mut self, ctx: &mut ProcessorContext<'_>) -> Result<(), ProcessorError> {
        self.out = Some(ctx.child("out")?);
        Ok(())
    }
    fn process(&mut self, ctx: &mut ProcessorContext<'_>, r: Record) -> Result<(), ProcessorError> {
        let key = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned();
        let mut counts = ctx.store(&self.store)?;
        let n = counts.get(&key)?.unwrap_or(0);
        counts.put(&key, &(n + 1))?;
        ctx.forward_to(self.out.unwrap(), r);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_fetched_before_a_restore_paused_them_are_processed() {
    let mock = support::mock::Mock::start();
    let bootstrap = mock.bootstrap();
    let (input, output) = (support::random_topic("in"), support::random_topic("out"));
    let (n, partitions) = (600, 4);
    let records: Vec<support::Outgoing> = (0..n)
        .map(|i| {
            (
                input.clone(),
                Some(format!("k{}", i % 20).into_bytes()),
                format!("event-{i}").into_bytes(),
                Some(i % partitions),
            )
        })
        .collect();

    let mut config = support::app_config(&bootstrap, &[&input]);
    config.runtime.commit_interval = Duration::from_millis(200);
    let mut b = TopologyBuilder::new();
    b.add_source("src", &[TopicRef::external(&input)]);
    let store = b.add_state_store::<String, u64>(
        StoreDecl {
            name: "counts".into(),
            logged: true,
        },
        &["count"],
    );
    b.add_processor(
        "count",
        move || {
            Box::new(Count {
                store: store.clone(),
                out: None,
            })
        },
        &["src"],
    );
    b.add_sink(
        "out",
        SinkTarget::Topic(TopicRef::external(&output)),
        Partitioning::SameAsSource,
        &["count"],
    );
    let topology = b.build(&config.application_id).unwrap();
    // The mock cluster does not implement CreateTopics: create what the runtime would.
    let existing = [(input.clone(), partitions)].into_iter().collect();
    mock.create_topic(&input, partitions);
    for plan in runtime::admin::plan_topics(&config, &topology, &existing) {
        mock.create_topic(&plan.name, plan.partitions);
    }
    support::produce_many(&bootstrap, &records);

    // Each task is created slowly, after its inputs were paused: meanwhile librdkafka
    // fetches the inputs of the tasks created after it, which are paused only then.
    hooks::set(|p| {
        if p == hooks::Point::CreateTask {
            std::thread::sleep(Duration::from_millis(700));
        }
    });
    let handle = runtime::start(&config, topology, Metrics::new())
        .await
        .unwrap_or_else(|e| panic!("runtime starts: {e}"));

    let (b, t) = (bootstrap.clone(), output.clone());
    let outs = tokio::task::spawn_blocking(move || {
        support::eventually(Duration::from_secs(40), "every record processed", || {
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
    assert_eq!(seen.len(), n as usize, "distinct records processed");
    assert!(
        seen.values().all(|&c| c == 1),
        "a record was processed twice"
    );
}
