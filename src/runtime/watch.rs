//! Watches the broker from a thread of its own, so the processing loop never waits on it:
//! whether the cluster answers, whether every input topic exists, and the topics
//! ScoreStream owns, re-created when the broker lost them (a broker restarted without its
//! storage). `/ready` reads what it finds from the metrics.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::admin::AdminClient;
use rdkafka::ClientConfig;
use tracing::{info, warn};

use super::admin::{self, TopicPlan};
use super::client::{self, LoggingContext};
use crate::config::Config;
use crate::metrics::Metrics;

/// How often the broker is asked.
const INTERVAL: Duration = Duration::from_secs(2);

pub(crate) struct Watch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Watch {
    /// Starts watching: `inputs` must exist, `owned` are re-created when missing.
    pub(crate) fn start(
        config: Config,
        admin_config: ClientConfig,
        inputs: Vec<String>,
        owned: Vec<TopicPlan>,
        metrics: Metrics,
    ) -> Result<Watch, rdkafka::error::KafkaError> {
        let admin: AdminClient<LoggingContext> =
            admin_config.create_with_context(LoggingContext)?;
        let runtime = tokio::runtime::Handle::current();
        metrics.broker_reachable.set(1);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("scorestream-watch".into())
            .spawn(move || {
                let mut next = Instant::now() + INTERVAL;
                while !flag.load(Ordering::Relaxed) {
                    if Instant::now() < next {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                    check(&admin, &config, &inputs, &owned, &metrics, &runtime);
                    next = Instant::now() + INTERVAL;
                }
            })
            .expect("spawn watch thread");
        Ok(Watch {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn check(
    admin: &AdminClient<LoggingContext>,
    config: &Config,
    inputs: &[String],
    owned: &[TopicPlan],
    metrics: &Metrics,
    runtime: &tokio::runtime::Handle,
) {
    let counts = match admin::fetch_partition_counts(admin) {
        Ok(c) => c,
        Err(e) => {
            if metrics.broker_reachable.get() == 1 {
                warn!(error = %e, "The Kafka cluster does not answer; not ready until it does.");
            } else {
                client::report(&e, "");
            }
            metrics.broker_reachable.set(0);
            return;
        }
    };
    if metrics.broker_reachable.get() == 0 {
        info!("The Kafka cluster answers again.");
    }
    metrics.broker_reachable.set(1);
    let missing: Vec<&str> = inputs
        .iter()
        .filter(|t| !counts.contains_key(*t))
        .map(String::as_str)
        .collect();
    metrics.input_topics_missing.set(missing.len() as i64);
    if !missing.is_empty() {
        if let Some(repeated) = client::due(format!("inputs missing {missing:?}")) {
            warn!(topics = %missing.join(","), repeated, "Input topics do not exist on the broker; not ready, nothing to process from them until they are created.");
        }
        // Internal topics follow the inputs' partition count: wait for the inputs.
        return;
    }
    let lost: Vec<&TopicPlan> = owned
        .iter()
        .filter(|p| !counts.contains_key(&p.name))
        .collect();
    if lost.is_empty() {
        return;
    }
    let names: Vec<&str> = lost.iter().map(|p| p.name.as_str()).collect();
    warn!(topics = %names.join(","), "Topics ScoreStream created are gone from the broker (it lost its data, or they were deleted); creating them again. Local state ahead of them is detected and restored when tasks restart.");
    match runtime.block_on(admin::create(admin, config, &lost)) {
        // The stream threads rejoin the group on this: an assignment made while the topics
        // were missing holds none of their partitions, and nothing else asks for a new one.
        Ok(()) => metrics.topics_recreated.inc(),
        Err(e) => {
            if let Some(repeated) = client::due(format!("recreate {}", names.join(","))) {
                warn!(error = %e, repeated, "Could not create them yet; retrying.");
            }
        }
    }
}
