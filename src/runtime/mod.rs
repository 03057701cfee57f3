//! The Kafka runtime: start-up topic setup, the consumer group, the processing loop,
//! commits, rebalances and shutdown. The only part of ScoreStream that talks to rdkafka.

pub mod admin;
pub mod client;
pub mod dump;
pub mod hooks;
pub mod partitioner;
#[doc(hidden)]
pub mod producer;
pub mod registry;
mod restore;
mod retry;
mod stream_thread;
mod txn_probe;
pub(crate) mod undecodable;
mod watch;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::BaseProducer;
use tracing::{info, warn};

pub use stream_thread::{now_ms, LocalRead, TRUNCATED_HEADER};

use crate::config::{Config, ProcessingGuarantee};
use crate::engine::{TaskError, Topology};
use crate::metrics::Metrics;

/// Errors that stop the runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Admin(#[from] admin::AdminError),
    #[error("Kafka client error: {0}")]
    Client(#[source] KafkaError),
    #[error(transparent)]
    Task(#[from] TaskError),
    #[error("state: {0}")]
    State(#[source] crate::state::StateError),
    #[error("processing_guarantee = exactly_once needs Kafka transactions, and they failed: {0}. Brokers without full transactions (Tansu, librdkafka's mock cluster) need processing_guarantee = at_least_once, which still never double counts state")]
    Transactions(String),
    #[error("timed out {0}")]
    Timeout(String),
    #[error("the processing thread panicked")]
    Panicked,
}

/// A running instance: one processing thread and its clients.
pub struct RuntimeHandle {
    shutdown: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), RuntimeError>>>,
    query: StateQuery,
    /// Follows the broker and re-creates lost topics while the runtime runs.
    _watch: watch::Watch,
}

/// Reads the running tasks' stores and says who owns a partition (interactive queries).
/// Cheap to clone; safe from any thread (a read waits for the batch being processed).
#[derive(Clone)]
pub struct StateQuery {
    shared: Arc<stream_thread::Shared>,
    registry: Option<Arc<registry::Registry>>,
}

impl StateQuery {
    /// The partition of `topic` a record keyed `key` goes to (Kafka's default partitioner,
    /// which every ScoreStream sink uses); `None` for a topic the runtime does not know.
    pub fn partition_of(&self, topic: &str, key: &[u8]) -> Option<i32> {
        self.shared
            .partition_count(topic)
            .filter(|&n| n > 0)
            .map(|n| partitioner::partition_for_key(key, n))
    }

    /// Reads `key` (encoded as the store encodes keys) from `store` of the task that owns
    /// `partition` of source `topic`, if it runs here.
    pub fn read(
        &self,
        topic: &str,
        partition: i32,
        store: &str,
        key: &[u8],
    ) -> Result<LocalRead, crate::state::StateError> {
        self.shared.read_local(topic, partition, store, key)
    }

    /// The advertised HTTP address of the instance owning `topic`/`partition`, as the
    /// instance registry knows it.
    pub fn owner(&self, topic: &str, partition: i32) -> Option<String> {
        self.registry.as_ref()?.owner(topic, partition)
    }

    /// This instance's advertised HTTP address, when it takes part in the registry.
    pub fn advertised(&self) -> Option<&str> {
        self.registry.as_deref().map(registry::Registry::advertised)
    }

    /// Every live instance and its partitions, as the registry knows them.
    pub fn instances(&self) -> Vec<registry::Announcement> {
        self.registry
            .as_ref()
            .map(|r| r.instances())
            .unwrap_or_default()
    }
}

impl RuntimeHandle {
    /// Asks the loop to stop; it finishes in-flight work, flushes, commits and leaves the
    /// group within `runtime.shutdown_timeout`.
    pub fn shutdown(&self) {
        self.shutdown.store(true, Ordering::Relaxed);
    }

    /// A flag that stops the runtime when set (e.g. from a signal handler).
    pub fn shutdown_flag(&self) -> Arc<AtomicBool> {
        self.shutdown.clone()
    }

    /// Reads of the running tasks' state, for the HTTP listener.
    pub fn query(&self) -> StateQuery {
        self.query.clone()
    }

    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Waits for the loop to end, then withdraws this instance from the registry.
    pub fn join(mut self) -> Result<(), RuntimeError> {
        let result = match self.thread.take() {
            None => Ok(()),
            Some(t) => t.join().map_err(|_| RuntimeError::Panicked)?,
        };
        self.stop_registry();
        result
    }

    fn stop_registry(&self) {
        if let Some(r) = &self.query.registry {
            r.stop();
        }
    }
}

impl Drop for RuntimeHandle {
    fn drop(&mut self) {
        self.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.stop_registry();
    }
}

/// Sets up topics and starts the processing thread.
pub async fn start(
    config: &Config,
    topology: Topology,
    metrics: Metrics,
) -> Result<RuntimeHandle, RuntimeError> {
    start_with(config, topology, metrics, None).await
}

/// [`start`], and when `advertised` (this instance's HTTP address as the other instances
/// reach it) is given, join the instance registry so queries can be forwarded to owners.
pub async fn start_with(
    config: &Config,
    topology: Topology,
    metrics: Metrics,
    advertised: Option<String>,
) -> Result<RuntimeHandle, RuntimeError> {
    let transactional = config.processing_guarantee == ProcessingGuarantee::ExactlyOnce;
    let counts = admin::ensure_topics(
        config,
        &topology,
        &client::admin_config(config),
        config.runtime.startup_timeout,
    )
    .await?;
    info!(topics = counts.len(), "Topics ready.");
    let watch = watch::Watch::start(
        config.clone(),
        client::admin_config(config),
        topology.external_source_topics(),
        admin::plan_topics(config, &topology, &counts),
        metrics.clone(),
    )
    .map_err(RuntimeError::Client)?;
    let changelogs = topology
        .internal_topics()
        .iter()
        .filter(|t| t.kind == crate::engine::InternalTopicKind::Changelog)
        .map(|t| t.name.clone())
        .collect();
    let mut stores = state_context(config, &topology)?;
    if stores.directory.is_some() {
        stores.cache.observe_with(metrics.latency.store_metrics());
    }
    *stores.restorer.get_mut().unwrap_or_else(|e| e.into_inner()) = if !topology.stores().is_empty()
    {
        Some(restore::Restorer::new(
            client::restore_consumer_config(config),
            config.state.restore_batch_records,
            metrics.clone(),
        )?)
    } else {
        None
    };
    let mut producer_config = client::producer_config(config);
    if transactional {
        let id = format!("{}-{}", config.application_id, instance_id(&stores));
        info!(transactional_id = %id, "exactly_once: using a transactional producer.");
        producer_config
            .set("transactional.id", &id)
            .set("transaction.timeout.ms", "60000");
    }
    let delivery = client::DeliveryContext::new(metrics.clone(), changelogs);
    let producer: BaseProducer<client::DeliveryContext> = producer_config
        .create_with_context(delivery.share())
        .map_err(RuntimeError::Client)?;
    if transactional {
        use rdkafka::producer::Producer as _;
        producer
            .init_transactions(
                config
                    .runtime
                    .startup_timeout
                    .min(std::time::Duration::from_secs(60)),
            )
            .map_err(|e| RuntimeError::Transactions(e.to_string()))?;
        if config.runtime.verify_transactions {
            txn_probe::verify(
                &producer,
                &client::restore_consumer_config(config),
                &txn_probe::probe_topic(&config.application_id),
                config.runtime.startup_timeout.min(Duration::from_secs(15)),
            )
            .map_err(RuntimeError::Transactions)?;
        } else {
            warn!("exactly_once: runtime.verify_transactions = false; not checking that this broker hides aborted transactions.");
        }
        producer
            .begin_transaction()
            .map_err(|e| RuntimeError::Transactions(e.to_string()))?;
    }
    let registry = match advertised {
        None => None,
        Some(addr) => {
            info!(advertised = %addr, topic = %registry::registry_topic(&config.application_id), "Joining the instance registry for interactive queries.");
            Some(Arc::new(
                registry::Registry::start(
                    &config.application_id,
                    addr,
                    client::producer_config(config),
                    client::restore_consumer_config(config),
                )
                .map_err(RuntimeError::Client)?,
            ))
        }
    };
    let shared = Arc::new(stream_thread::Shared::new(
        topology,
        metrics,
        config.runtime.clone(),
        stream_thread::OutputProducer {
            producer: producer::ReplaceableProducer::new(producer, producer_config, delivery),
            max_message_bytes: config.ingest.max_record_bytes + 64 * 1024,
            transactional,
        },
        counts,
        stores,
        registry.as_ref().map(|r| r.announcer()),
    ));
    let query = StateQuery {
        shared: shared.clone(),
        registry,
    };
    let shutdown = Arc::new(AtomicBool::new(false));
    let consumer_config = client::consumer_config(config);
    let flag = shutdown.clone();
    let thread = std::thread::Builder::new()
        .name("scorestream-stream".into())
        .spawn(move || stream_thread::run_loop(shared, consumer_config, flag))
        .expect("spawn processing thread");
    Ok(RuntimeHandle {
        shutdown,
        thread: Some(thread),
        query,
        _watch: watch,
    })
}

/// Opens (and locks) the state directory when the topology has stores kept in RocksDB.
fn state_context(
    config: &Config,
    topology: &Topology,
) -> Result<stream_thread::StateContext, RuntimeError> {
    let settings = config.state.clone();
    let on_disk =
        !topology.stores().is_empty() && settings.backend == crate::config::StoreBackend::Rocksdb;
    if !on_disk {
        return Ok(stream_thread::StateContext {
            settings,
            directory: None,
            rocks: None,
            cache: crate::state::CacheBudget::new(0),
            restorer: std::sync::Mutex::new(None),
        });
    }
    let directory = crate::state::StateDirectory::open(&config.state_dir, &config.application_id)
        .map_err(RuntimeError::State)?;
    info!(path = %directory.root().display(), "State directory locked.");
    let rocks =
        crate::state::RocksResources::new(settings.block_cache_bytes, settings.write_buffer_bytes);
    Ok(stream_thread::StateContext {
        cache: crate::state::CacheBudget::new(settings.cache_bytes),
        settings,
        directory: Some(directory),
        rocks: Some(rocks),
        restorer: std::sync::Mutex::new(None),
    })
}

/// A stable id for this instance's transactional producer: kept in the state directory so a
/// restarted instance fences its own zombie; random when there is no state directory.
fn instance_id(stores: &stream_thread::StateContext) -> String {
    let random = || format!("{:016x}", rand::random::<u64>());
    let Some(dir) = &stores.directory else {
        return random();
    };
    let path = dir.root().join(".instance-id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim();
        if !id.is_empty() {
            return id.to_string();
        }
    }
    let id = random();
    if let Err(e) = std::fs::write(&path, &id) {
        tracing::warn!(path = %path.display(), error = %e, "Could not persist the instance id; a restart will not fence its previous producer.");
    }
    id
}
