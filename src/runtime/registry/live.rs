//! Reading the registry once, to its end: who runs now (`scorestream reset` asks).

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use super::{registry_topic, Announcement, Owners};
use crate::runtime::client::LoggingContext;
use crate::runtime::now_ms;

/// Reads the whole registry topic once (to its end) and returns the instances whose claims
/// are fresh: the members running now, whatever the broker says of the group. Used by
/// `scorestream reset` to refuse while any instance runs. `consumer` must report partition
/// EOF (`enable.partition.eof`).
pub fn live_instances(
    consumer: ClientConfig,
    application_id: &str,
    timeout: Duration,
) -> Result<Vec<Announcement>, String> {
    let topic = registry_topic(application_id);
    let consumer: BaseConsumer<LoggingContext> = consumer
        .create_with_context(LoggingContext)
        .map_err(|e| e.to_string())?;
    let exists = consumer
        .fetch_metadata(Some(&topic), timeout)
        .map_err(|e| format!("cannot read topic metadata: {e}"))?
        .topics()
        .iter()
        .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty());
    if !exists {
        return Ok(Vec::new());
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Beginning)
        .map_err(|e| e.to_string())?;
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let mut owners = Owners::default();
    let deadline = Instant::now() + timeout;
    loop {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                if let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) {
                    let value = m.payload().and_then(|p| serde_json::from_slice(p).ok());
                    owners.apply(key, value);
                }
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => return Err(format!("reading {topic}: {e}")),
            None if Instant::now() > deadline => {
                return Err(format!("reading {topic}: no end within {timeout:?}"))
            }
            None => {}
        }
    }
    Ok(owners.instances(now_ms()).into_iter().cloned().collect())
}
