//! `exactly_once` start-up check. A broker can accept every transactional request and still
//! not give transactional isolation: Tansu 0.6 answers `InitProducerId`, `AddPartitionsToTxn`,
//! `EndTxn` and `TxnOffsetCommit`, but an aborted transaction's records stay visible to
//! `read_committed` consumers, and librdkafka's mock cluster does the same (DESIGN §6). On such
//! a broker a transaction aborted after a failed delivery, or left open by a crash, would
//! publish its outputs anyway — `exactly_once` would be a false promise, so the instance
//! refuses to start. Two probe records — one aborted, then one committed — read back
//! `read_committed` tell the two kinds of broker apart before any input is touched.

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::{Message, Offset, TopicPartitionList};
use tracing::info;

/// The one-partition topic the probe writes to (created with the other internal topics).
pub fn probe_topic(application_id: &str) -> String {
    format!("{application_id}-transaction-probe")
}

/// Aborts one probe record and commits another on `producer` (initialised, no transaction
/// open), then reads them back with a `read_committed` consumer built from
/// `consumer_config`. Leaves no transaction open.
pub fn verify<C: ProducerContext<DeliveryOpaque = usize>>(
    producer: &BaseProducer<C>,
    consumer_config: &ClientConfig,
    topic: &str,
    timeout: Duration,
) -> Result<(), String> {
    let started = Instant::now();
    let deadline = started + timeout;
    let nonce = rand::random::<u64>();
    let aborted = format!("aborted-{nonce:016x}");
    let committed = format!("committed-{nonce:016x}");
    for (payload, commit) in [(&aborted, false), (&committed, true)] {
        producer
            .begin_transaction()
            .map_err(|e| format!("could not begin a probe transaction: {e}"))?;
        let record = BaseRecord::<str, str, usize>::with_opaque_to(topic, 0)
            .partition(0)
            .key("probe")
            .payload(payload);
        producer
            .send(record)
            .map_err(|(e, _)| format!("could not send a probe record to {topic}: {e}"))?;
        if commit {
            producer.commit_transaction(remaining(deadline))
        } else {
            producer
                .flush(remaining(deadline))
                .and_then(|()| producer.abort_transaction(remaining(deadline)))
        }
        .map_err(|e| format!("could not end a probe transaction: {e}"))?;
    }

    let mut config = consumer_config.clone();
    config
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "false")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest");
    let consumer: BaseConsumer<super::client::LoggingContext> = config
        .create_with_context(super::client::LoggingContext)
        .map_err(|e| format!("could not create the probe consumer: {e}"))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .map_err(|e| e.to_string())?;
    consumer
        .assign(&tpl)
        .map_err(|e| format!("could not assign {topic}: {e}"))?;
    let mut saw_aborted = false;
    while Instant::now() < deadline {
        match consumer.poll(remaining(deadline).min(Duration::from_millis(200))) {
            Some(Ok(m)) if m.payload() == Some(aborted.as_bytes()) => saw_aborted = true,
            Some(Ok(m)) if m.payload() == Some(committed.as_bytes()) => {
                if saw_aborted {
                    return Err(format!(
                        "a read_committed consumer saw the record of an aborted transaction on \
                         {topic}: this broker does not hide aborted transactions (Tansu and \
                         librdkafka's mock cluster do not)"
                    ));
                }
                info!(
                    topic,
                    ms = started.elapsed().as_millis() as u64,
                    "exactly_once: the broker hides aborted transactions and shows committed ones."
                );
                return Ok(());
            }
            Some(Err(KafkaError::PartitionEOF(_))) | Some(Ok(_)) | None => {}
            Some(Err(e)) => return Err(format!("reading the probe back from {topic}: {e}")),
        }
    }
    Err(format!(
        "a read_committed consumer did not see a committed transaction's record on {topic} \
         within {timeout:?}: this broker does not write transaction markers"
    ))
}

fn remaining(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1))
}
