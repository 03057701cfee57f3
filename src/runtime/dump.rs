//! Reading the committed state of every task straight from the changelogs, with exactly
//! the rules restore uses: what a new instance with an empty disk would rebuild. Used by
//! `scorestream state dump` and by the crash tests.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::TopicPartitionList;

use super::restore::{committed_offsets, Restorer};
use super::{client, RuntimeError};
use crate::config::Config;
use crate::engine::{InternalTopicKind, StreamTask, TaskId, Topology};
use crate::metrics::Metrics;
use crate::state::store::StoreSpec;
use crate::state::{Backend, MemoryBackend, TaskState};

/// Raw entries per store name, in key order within each task partition.
pub type StoreDump = BTreeMap<String, crate::state::store::RawEntries>;

/// Restores every partition of every logged store into memory and returns the entries.
pub fn dump_changelogs(
    config: &Config,
    topology: &Topology,
    timeout: Duration,
) -> Result<StoreDump, RuntimeError> {
    let mut out = StoreDump::new();
    restore_all(
        config,
        topology,
        timeout,
        &|_, specs| Ok(Box::new(MemoryBackend::new(specs.len()))),
        &mut |state| {
            for (i, name) in state.store_names().into_iter().enumerate() {
                let entries = state.raw_entries(i).map_err(RuntimeError::State)?;
                out.entry(name.to_string()).or_default().extend(entries);
            }
            Ok(())
        },
    )?;
    Ok(out)
}

/// Makes the backend a task partition is restored into.
pub type BackendFactory<'a> =
    &'a dyn Fn(TaskId, &[StoreSpec]) -> Result<Box<dyn Backend>, RuntimeError>;

/// Restores every task partition of every logged store (with the restore rules) into
/// backends from `make`, handing each finished state to `done`. Returns the number of
/// changelog records applied.
pub fn restore_all(
    config: &Config,
    topology: &Topology,
    timeout: Duration,
    make: BackendFactory<'_>,
    done: &mut dyn FnMut(&TaskState) -> Result<(), RuntimeError>,
) -> Result<u64, RuntimeError> {
    let metrics = Metrics::new();
    let deadline = Instant::now() + timeout;
    let group: BaseConsumer<client::LoggingContext> = client::consumer_config(config)
        .create_with_context(client::LoggingContext)
        .map_err(RuntimeError::Client)?;
    let mut restorer = Restorer::new(
        client::restore_consumer_config(config),
        config.state.restore_batch_records,
        metrics.clone(),
    )?;
    let mut expected = 0;
    for changelog in topology
        .internal_topics()
        .iter()
        .filter(|t| t.kind == InternalTopicKind::Changelog)
    {
        let sub = changelog.subtopology;
        let meta = group
            .fetch_metadata(Some(&changelog.name), Duration::from_secs(10))
            .map_err(RuntimeError::Client)?;
        let partitions = meta
            .topics()
            .first()
            .map_or(0, |t| t.partitions().len() as i32);
        for p in 0..partitions {
            let id = TaskId {
                subtopology: sub,
                partition: p,
            };
            if restorer.contains(&id) {
                continue;
            }
            let specs = topology.store_specs(sub);
            let state =
                TaskState::open(make(id, &specs)?, &specs, p).map_err(RuntimeError::State)?;
            let mut task = StreamTask::new(topology, sub, p);
            task.attach_state(state);
            let mut tpl = TopicPartitionList::new();
            for t in &topology.subtopologies()[sub].source_topics {
                tpl.add_partition(t, p);
            }
            let committed = committed_offsets(&group, tpl, Duration::from_secs(10))?;
            restorer.add(task, committed)?;
            expected += 1;
        }
    }
    let mut finished = 0;
    while finished < expected {
        if Instant::now() >= deadline {
            return Err(RuntimeError::Timeout(format!(
                "reading changelogs: {finished} of {expected} task partitions finished"
            )));
        }
        for task in restorer.poll(Duration::from_millis(100))? {
            finished += 1;
            if let Some(state) = task.state() {
                done(state)?;
            }
        }
    }
    Ok(metrics.restore_records.get())
}
