//! The Kafka runtime: start-up topic setup, the consumer group, the processing loop,
//! commits, rebalances and shutdown. The only part of ScoreStream that talks to rdkafka.

pub(crate) mod acks;
pub mod admin;
pub mod client;
pub mod dump;
pub mod hooks;
/// Kafka's default partitioner; lives in the engine, which the test driver shares.
pub use crate::engine::partitioner;
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

/// A running instance: its stream threads and their clients.
pub struct RuntimeHandle {
    shutdown: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Result<(), RuntimeError>>>,
    /// Store metrics and removal of stale task directories, across the stream threads.
    housekeeping: Option<JoinHandle<()>>,
    query: StateQuery,
    /// Follows the broker and re-creates lost topics while the runtime runs.
    _watch: watch::Watch,
}

/// Reads the running tasks' stores and says who owns a partition (interactive queries).
/// Cheap to clone; safe from any thread (a read waits for the batch being processed by
/// the stream thread that owns the task).
#[derive(Clone)]
pub struct StateQuery {
    threads: Arc<[Arc<stream_thread::Shared>]>,
    registry: Option<Arc<registry::Registry>>,
}

impl StateQuery {
    /// The partition of `topic` a record keyed `key` goes to (Kafka's default partitioner,
    /// which every ScoreStream sink uses); `None` for a topic the runtime does not know.
    pub fn partition_of(&self, topic: &str, key: &[u8]) -> Option<i32> {
        self.threads
            .first()?
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
        // The thread that runs (or restores, or is about to start) the task answers.
        for shared in self.threads.iter() {
            match shared.read_local(topic, partition, store, key)? {
                LocalRead::NotOwned => continue,
                found => return Ok(found),
            }
        }
        Ok(LocalRead::NotOwned)
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

    /// True once any stream thread has ended (a thread that fails stops the others).
    pub fn is_finished(&self) -> bool {
        self.threads.is_empty() || self.threads.iter().any(JoinHandle::is_finished)
    }

    /// Waits for every stream thread to end, then withdraws this instance from the
    /// registry. The first thread's error, if any, is the result.
    pub fn join(mut self) -> Result<(), RuntimeError> {
        let mut result = Ok(());
        for t in std::mem::take(&mut self.threads) {
            let r = t.join().unwrap_or(Err(RuntimeError::Panicked));
            if result.is_ok() {
                result = r;
            }
        }
        self.shutdown();
        if let Some(h) = self.housekeeping.take() {
            let _ = h.join();
        }
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
        for t in std::mem::take(&mut self.threads) {
            let _ = t.join();
        }
        if let Some(h) = self.housekeeping.take() {
            let _ = h.join();
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
    // Before any client or store allocates: glibc's malloc (RocksDB, librdkafka) keeps one
    // arena per stream thread instead of one per allocating thread.
    crate::os_memory::limit_malloc_arenas(config.runtime.threads());
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
    let threads = config.runtime.threads();
    warn_split_tasks(&topology, &counts, threads);
    let stores = state_context(config, &topology)?;
    if stores.directory.is_some() {
        stores.cache.observe_with(metrics.latency.store_metrics());
    }
    let registry = match advertised {
        None => None,
        Some(addr) => Some(join_registry(config, addr, &metrics)?),
    };
    let instance = transactional.then(|| instance_id(&stores));
    // One announcer for the instance: its threads' claims are merged into one.
    let announcer = registry.as_ref().map(|r| r.announcer());
    let shared = thread_states(
        config,
        &topology,
        &metrics,
        &counts,
        &stores,
        announcer.as_ref(),
        instance.as_deref(),
    )?;
    let threads: Arc<[Arc<stream_thread::Shared>]> = shared.into();
    let query = StateQuery {
        threads: threads.clone(),
        registry,
    };
    let shutdown = Arc::new(AtomicBool::new(false));
    let handles = spawn_stream_threads(config, &threads, &shutdown);
    let housekeeping = spawn_housekeeping(&shutdown, &threads);
    Ok(RuntimeHandle {
        shutdown,
        threads: handles,
        housekeeping: Some(housekeeping),
        query,
        _watch: watch,
    })
}

/// The state of each stream thread: its producer (transactional with an `instance` id
/// under exactly-once), its restorer, its share of the stores and of the gauges, and its
/// announcer.
fn thread_states(
    config: &Config,
    topology: &Topology,
    metrics: &Metrics,
    counts: &admin::PartitionCounts,
    stores: &stream_thread::StateContext,
    announcer: Option<&registry::Announcer>,
    instance: Option<&str>,
) -> Result<Vec<Arc<stream_thread::Shared>>, RuntimeError> {
    let transactional = instance.is_some();
    let threads = config.runtime.threads();
    let changelogs = changelog_topics(topology);
    // Uncommitted writes share the read cache's budget, half of it split over the threads
    // (at least 1 MiB each): a commit point comes early when a thread's reach its share.
    let write_set_limit = (config.memory().read_cache_bytes / 2 / threads).max(1 << 20);
    // The threads start processing together, once each has its first assignment; a
    // thread the group has not answered within a session timeout is not waited for.
    let start = Arc::new(stream_thread::StartGate::new(
        threads,
        config.runtime.session_timeout,
    ));
    let mut shared = Vec::with_capacity(threads);
    for (thread, gauges) in stream_thread::ThreadGauges::split(metrics, threads)
        .into_iter()
        .enumerate()
    {
        let producer = thread_producer(config, metrics, &changelogs, thread, threads, instance)?;
        let restorer = thread_restorer(config, topology, metrics, thread, threads)?;
        shared.push(Arc::new(
            stream_thread::Shared::new(
                thread,
                gauges,
                topology.clone(),
                metrics.clone(),
                config.runtime.clone(),
                stream_thread::OutputProducer {
                    producer,
                    max_message_bytes: config.dead_letter_max_bytes(),
                    transactional,
                },
                counts.clone(),
                stores.for_thread(restorer),
                announcer.map(|a| a.for_thread(thread)),
            )
            .with_write_set_limit(write_set_limit)
            .with_start_gate(start.clone()),
        ));
    }
    Ok(shared)
}

/// The changelog topics of the topology's stores.
fn changelog_topics(topology: &Topology) -> std::collections::HashSet<String> {
    topology
        .internal_topics()
        .iter()
        .filter(|t| t.kind == crate::engine::InternalTopicKind::Changelog)
        .map(|t| t.name.clone())
        .collect()
}

/// This instance in the registry of instances, so queries can be forwarded to owners.
fn join_registry(
    config: &Config,
    addr: String,
    metrics: &Metrics,
) -> Result<Arc<registry::Registry>, RuntimeError> {
    info!(advertised = %addr, topic = %registry::registry_topic(&config.application_id), "Joining the instance registry for interactive queries.");
    Ok(Arc::new(
        registry::Registry::start(
            &config.application_id,
            addr,
            client::registry_producer_config(config),
            client::registry_consumer_config(config),
            metrics.broker_reachable.clone(),
        )
        .map_err(RuntimeError::Client)?,
    ))
}

/// The changelog restorer of stream thread `thread` of `threads`, with its share of the
/// restore gauges; none when the topology has no stores.
fn thread_restorer(
    config: &Config,
    topology: &Topology,
    metrics: &Metrics,
    thread: usize,
    threads: usize,
) -> Result<Option<restore::Restorer>, RuntimeError> {
    if topology.stores().is_empty() {
        return Ok(None);
    }
    let [restoring, remaining] = [&metrics.tasks_restoring, &metrics.restore_remaining]
        .map(|g| crate::metrics::GaugeShare::split(g, threads).remove(thread));
    Ok(Some(
        restore::Restorer::new(
            thread_client(client::restore_consumer_config(config), thread, threads),
            config.state.restore_batch_records,
            metrics.clone(),
        )?
        .with_shares(restoring, remaining),
    ))
}

/// One OS thread per stream thread, each running its loop; one failing stops them all.
fn spawn_stream_threads(
    config: &Config,
    threads: &Arc<[Arc<stream_thread::Shared>]>,
    shutdown: &Arc<AtomicBool>,
) -> Vec<JoinHandle<Result<(), RuntimeError>>> {
    threads
        .iter()
        .enumerate()
        .map(|(i, shared)| {
            let shared = shared.clone();
            let consumer_config = thread_client(client::consumer_config(config), i, threads.len());
            let flag = shutdown.clone();
            std::thread::Builder::new()
                .name(format!("scorestream-stream-{i}"))
                .spawn(move || {
                    let result = stream_thread::run_loop(shared, consumer_config, flag.clone());
                    // One thread failing stops the instance (its tasks would sit unprocessed).
                    if result.is_err() {
                        flag.store(true, Ordering::Relaxed);
                    }
                    result
                })
                .expect("spawn a stream thread")
        })
        .collect()
}

/// Store metrics and removal of stale task directories every 10 s, until `shutdown`.
fn spawn_housekeeping(
    shutdown: &Arc<AtomicBool>,
    threads: &Arc<[Arc<stream_thread::Shared>]>,
) -> JoinHandle<()> {
    let flag = shutdown.clone();
    let threads = threads.clone();
    std::thread::Builder::new()
        .name("scorestream-housekeeping".into())
        .spawn(move || {
            let mut last = std::time::Instant::now();
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                if last.elapsed() >= Duration::from_secs(10) {
                    last = std::time::Instant::now();
                    stream_thread::housekeeping(&threads);
                }
            }
        })
        .expect("spawn the housekeeping thread")
}

/// A client of stream thread `thread` of `threads`: its own `client.id`, so the broker and
/// the group tell the threads apart, and its share of the memory plan's queue bounds
/// (each thread has its own consumers and producer; together they keep to the budget).
fn thread_client(
    mut c: rdkafka::ClientConfig,
    thread: usize,
    threads: usize,
) -> rdkafka::ClientConfig {
    if let Some(id) = c.get("client.id").map(str::to_string) {
        c.set("client.id", format!("{id}-{thread}"));
    }
    for key in [
        "queued.max.messages.kbytes",
        "queued.min.messages",
        "queue.buffering.max.messages",
        "queue.buffering.max.kbytes",
    ] {
        let shared = c.get(key).and_then(|v| v.parse::<usize>().ok());
        if let Some(n) = shared {
            c.set(key, (n / threads.max(1)).max(1).to_string());
        }
    }
    c
}

/// The producer of stream thread `thread` of `threads`: the in-flight limits are shared
/// among the threads; under `exactly_once` each thread has its own transactional id
/// (thread 0 keeps the instance's, so upgrading from one thread still fences).
fn thread_producer(
    config: &Config,
    metrics: &Metrics,
    changelogs: &std::collections::HashSet<String>,
    thread: usize,
    threads: usize,
    instance: Option<&str>,
) -> Result<producer::ReplaceableProducer, RuntimeError> {
    let mut producer_config = thread_client(client::producer_config(config), thread, threads);
    if let Some(instance) = instance {
        let id = match thread {
            0 => format!("{}-{instance}", config.application_id),
            n => format!("{}-{instance}-{n}", config.application_id),
        };
        info!(transactional_id = %id, thread, "exactly_once: using a transactional producer.");
        producer_config
            .set("transactional.id", &id)
            .set("transaction.timeout.ms", "60000");
    }
    let delivery = client::DeliveryContext::new(metrics.clone(), changelogs.clone());
    let producer: BaseProducer<client::DeliveryContext> = producer_config
        .create_with_context(delivery.share())
        .map_err(RuntimeError::Client)?;
    if instance.is_some() {
        use rdkafka::producer::Producer as _;
        producer
            .init_transactions(config.runtime.startup_timeout.min(Duration::from_secs(60)))
            .map_err(|e| RuntimeError::Transactions(e.to_string()))?;
        if thread == 0 && config.runtime.verify_transactions {
            txn_probe::verify(
                &producer,
                &client::restore_consumer_config(config),
                &txn_probe::probe_topic(&config.application_id),
                config.runtime.startup_timeout.min(Duration::from_secs(15)),
            )
            .map_err(RuntimeError::Transactions)?;
        } else if thread == 0 {
            warn!("exactly_once: runtime.verify_transactions = false; not checking that this broker hides aborted transactions.");
        }
        producer
            .begin_transaction()
            .map_err(|e| RuntimeError::Transactions(e.to_string()))?;
    }
    Ok(producer::ReplaceableProducer::new(
        producer,
        producer_config,
        delivery,
    ))
}

/// Kafka's group assignment is per topic (range): a task whose source topics differ in
/// partition count can have its partitions on different members. Said once at start-up.
fn warn_split_tasks(
    topology: &Topology,
    counts: &std::collections::HashMap<String, i32>,
    threads: usize,
) {
    for sub in 0..topology.subtopologies().len() {
        let sources: Vec<(String, i32)> = topology
            .source_topics()
            .into_iter()
            .filter(|t| topology.subtopology_of(t) == Some(sub))
            .map(|t| {
                let n = counts.get(&t).copied().unwrap_or(0);
                (t, n)
            })
            .collect();
        let first = sources.first().map(|(_, n)| *n);
        if sources.iter().any(|(_, n)| Some(*n) != first) {
            let listed: Vec<String> = sources.iter().map(|(t, n)| format!("{t}={n}")).collect();
            warn!(subtopology = sub, partitions = %listed.join(","), threads, "The source topics of one sub-topology differ in partition count: with more than one member (instances x stream threads) the group's per-topic assignment can split its tasks. Give them the same partition count (co-partitioning).");
        }
    }
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
    let directory = Arc::new(
        crate::state::StateDirectory::open(&config.state_dir, &config.application_id)
            .map_err(RuntimeError::State)?,
    );
    info!(path = %directory.root().display(), "State directory locked.");
    let plan = config.memory();
    let rocks = crate::state::RocksResources::for_config(config);
    Ok(stream_thread::StateContext {
        cache: crate::state::CacheBudget::new(plan.read_cache_bytes),
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
