//! Start-up topic checks: inputs must exist; internal, dead-letter and output topics are
//! created with the right partition count and configs, or a clear error says why not.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::ClientConfig;
use tracing::{info, warn};

use super::client::LoggingContext;

use crate::config::Config;
use crate::engine::{InternalTopicKind, Topology};

/// Why start-up topic setup failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot create the Kafka admin client: {0}")]
    Client(#[source] KafkaError),
    #[error("Kafka did not answer a metadata request: {0}")]
    Metadata(#[source] KafkaError),
    #[error("input topics do not exist: {}; create them (e.g. `kafka-topics --create --topic {}`) or remove them from `inputs`", .0.join(", "), .0.first().map(String::as_str).unwrap_or(""))]
    MissingInputs(Vec<String>),
    #[error("cannot create topic '{topic}': {reason}")]
    Create { topic: String, reason: String },
    #[error("topic '{topic}' has {actual} partitions but ScoreStream needs {expected}; {hint}")]
    PartitionMismatch {
        topic: String,
        actual: i32,
        expected: i32,
        hint: &'static str,
    },
}

/// What to create: name, partitions, configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPlan {
    pub name: String,
    pub partitions: i32,
    pub configs: BTreeMap<String, String>,
    /// Internal topics must have exactly `partitions`; others just need to exist.
    pub exact: bool,
}

/// Partition counts of every topic the runtime touches, after setup.
pub type PartitionCounts = HashMap<String, i32>;

/// Checks inputs, creates what is missing, returns partition counts. Retries with backoff
/// while the broker is unreachable, until `deadline` passes.
pub async fn ensure_topics(
    config: &Config,
    topology: &Topology,
    admin_config: &ClientConfig,
    deadline: Duration,
) -> Result<PartitionCounts, AdminError> {
    let admin: AdminClient<LoggingContext> = admin_config
        .create_with_context(LoggingContext)
        .map_err(AdminError::Client)?;
    let started = std::time::Instant::now();
    let mut backoff = Duration::from_millis(200);
    let existing = loop {
        match fetch_partition_counts(&admin) {
            Ok(m) => break m,
            Err(e) if started.elapsed() < deadline => {
                warn!(error = %e, retry_in = ?backoff, bootstrap = %config.bootstrap_servers, "Kafka is not reachable yet; retrying.");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
            Err(e) => return Err(AdminError::Metadata(e)),
        }
    };
    let inputs = topology.external_source_topics();
    let missing: Vec<String> = inputs
        .iter()
        .filter(|t| !existing.contains_key(*t))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(AdminError::MissingInputs(missing));
    }
    let plans = plan_topics(config, topology, &existing);
    let to_create: Vec<&TopicPlan> = plans
        .iter()
        .filter(|p| !existing.contains_key(&p.name))
        .collect();
    if !to_create.is_empty() {
        create(&admin, config, &to_create).await?;
    }
    let mut counts = fetch_partition_counts(&admin).map_err(AdminError::Metadata)?;
    for p in &plans {
        // A broker may take a moment to show a new topic in metadata.
        let mut tries = 0;
        while !counts.contains_key(&p.name) && tries < 50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            counts = fetch_partition_counts(&admin).map_err(AdminError::Metadata)?;
            tries += 1;
        }
        match counts.get(&p.name) {
            None => {
                return Err(AdminError::Create {
                    topic: p.name.clone(),
                    reason: "created, but the broker does not list it".into(),
                })
            }
            Some(&actual) if p.exact && actual != p.partitions => {
                return Err(AdminError::PartitionMismatch {
                    topic: p.name.clone(),
                    actual,
                    expected: p.partitions,
                    hint: "internal topics follow the input partition count; reset the application (delete its internal topics) after changing it",
                })
            }
            Some(_) => {}
        }
    }
    Ok(counts)
}

/// The topics ScoreStream owns, derived from the topology and the input partition counts.
pub fn plan_topics(
    config: &Config,
    topology: &Topology,
    existing: &PartitionCounts,
) -> Vec<TopicPlan> {
    let inputs = topology.external_source_topics();
    let max_input = inputs
        .iter()
        .filter_map(|t| existing.get(t))
        .copied()
        .max()
        .unwrap_or(1);
    let internal_partitions = if config.runtime.internal_partitions > 0 {
        config.runtime.internal_partitions
    } else {
        max_input
    };
    let mut plans = Vec::new();
    for t in topology.internal_topics() {
        let mut configs = BTreeMap::new();
        match t.kind {
            InternalTopicKind::Repartition => {
                // Kept until processed, whatever their timestamps (Kafka Streams' KIP-284).
                // A record's timestamp is its event's time: with a time limit, a broker's
                // retention deletes records of events older than it before they are
                // processed (Tansu on SQLite did, at its restart, for a backlog of last
                // year's events: they were never counted). Not -1: Tansu 0.6 compares the
                // age with it as a number and deletes every record.
                configs.insert("cleanup.policy".into(), "delete".into());
                configs.insert("retention.ms".into(), i64::MAX.to_string());
            }
            InternalTopicKind::Changelog => {
                configs.insert("cleanup.policy".into(), "compact".into());
            }
        }
        plans.push(TopicPlan {
            name: t.name.clone(),
            partitions: internal_partitions,
            configs,
            exact: true,
        });
    }
    if config.processing_guarantee == crate::config::ProcessingGuarantee::ExactlyOnce {
        let mut configs = BTreeMap::new();
        configs.insert("cleanup.policy".into(), "delete".into());
        configs.insert("retention.ms".into(), (3600 * 1000i64).to_string());
        plans.push(TopicPlan {
            name: super::txn_probe::probe_topic(&config.application_id),
            partitions: 1,
            configs,
            exact: true,
        });
    }
    // Which instance owns which partition (interactive queries): one compacted partition.
    let mut configs = BTreeMap::new();
    configs.insert("cleanup.policy".into(), "compact".into());
    plans.push(TopicPlan {
        name: super::registry::registry_topic(&config.application_id),
        partitions: 1,
        configs,
        exact: false,
    });
    plans.extend(dead_letter_plans(topology, existing, internal_partitions));
    let outputs = output_plans(config, topology, &plans);
    plans.extend(outputs);
    plans
}

/// The output topics (written, not read, by the topology) not already in `planned`, each
/// once, created with `runtime.output_partitions` when missing.
fn output_plans(config: &Config, topology: &Topology, planned: &[TopicPlan]) -> Vec<TopicPlan> {
    let internal: Vec<&str> = planned.iter().map(|p| p.name.as_str()).collect::<Vec<_>>();
    let mut outputs = Vec::new();
    for st in topology.subtopologies() {
        for t in &st.sink_topics {
            let planned = outputs.iter().any(|p: &TopicPlan| &p.name == t);
            if !planned && !internal.contains(&t.as_str()) && topology.subtopology_of(t).is_none() {
                outputs.push(TopicPlan {
                    name: t.clone(),
                    partitions: config.runtime.output_partitions,
                    configs: BTreeMap::new(),
                    exact: false,
                });
            }
        }
    }
    outputs
}

/// One dead-letter topic per topic its sinks mirror, with that topic's partition count
/// (`internal_partitions` when it is not known) and the sink's largest dead letter.
fn dead_letter_plans(
    topology: &Topology,
    existing: &PartitionCounts,
    internal_partitions: i32,
) -> Vec<TopicPlan> {
    let mut plans = Vec::new();
    for dlq in topology.dead_letter_topics() {
        let partitions = existing
            .get(&dlq.source)
            .copied()
            .unwrap_or(internal_partitions);
        let mut configs = BTreeMap::new();
        configs.insert("cleanup.policy".into(), "delete".into());
        configs.insert("max.message.bytes".into(), dlq.max_bytes.to_string());
        plans.push(TopicPlan {
            name: dlq.name,
            partitions,
            configs,
            exact: true,
        });
    }
    plans
}

pub(crate) fn fetch_partition_counts(
    admin: &AdminClient<LoggingContext>,
) -> Result<PartitionCounts, KafkaError> {
    let md = admin.inner().fetch_metadata(None, Duration::from_secs(5))?;
    Ok(md
        .topics()
        .iter()
        .filter(|t| t.error().is_none() && !t.partitions().is_empty())
        .map(|t| (t.name().to_string(), t.partitions().len() as i32))
        .collect())
}

pub(crate) async fn create(
    admin: &AdminClient<LoggingContext>,
    config: &Config,
    plans: &[&TopicPlan],
) -> Result<(), AdminError> {
    let new_topics: Vec<NewTopic<'_>> = plans
        .iter()
        .map(|p| {
            let mut t = NewTopic::new(
                &p.name,
                p.partitions,
                TopicReplication::Fixed(config.runtime.replication_factor),
            );
            for (k, v) in &p.configs {
                t = t.set(k, v);
            }
            t
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(new_topics.iter(), &opts)
        .await
        .map_err(|e| AdminError::Create {
            topic: plans
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            reason: e.to_string(),
        })?;
    for r in results {
        match r {
            Ok(name) => info!(topic = %name, "Created topic."),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                info!(topic = %name, "Topic already exists.")
            }
            Err((name, code)) => {
                let reason = match code {
                    RDKafkaErrorCode::TopicAuthorizationFailed
                    | RDKafkaErrorCode::ClusterAuthorizationFailed => format!(
                        "{code}: the principal needs CREATE permission on topic '{name}' (or create it beforehand)"
                    ),
                    RDKafkaErrorCode::InvalidConfig | RDKafkaErrorCode::PolicyViolation => {
                        format!("{code}: the broker refused one of the topic configs or the replication factor ({}); set runtime.replication_factor or create the topic by hand", config.runtime.replication_factor)
                    }
                    RDKafkaErrorCode::InvalidReplicationFactor => format!(
                        "{code}: replication factor {} is not possible on this cluster; set runtime.replication_factor",
                        config.runtime.replication_factor
                    ),
                    other => other.to_string(),
                };
                return Err(AdminError::Create {
                    topic: name,
                    reason,
                });
            }
        }
    }
    Ok(())
}
