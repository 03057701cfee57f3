//! librdkafka's own statistics (`statistics.interval.ms`, delivered to the client
//! context's `stats` callback) as a few low-cardinality gauges: what Kafka Streams users
//! read from the Java client's metrics. Labelled by client (`name` of the librdkafka
//! handle: a few per instance), never by topic-partition or broker.

use prometheus::{GaugeVec, IntGaugeVec, Opts, Registry};
use rdkafka::statistics::Statistics;

/// How often clients that feed these gauges report, unless `[kafka.*]` sets
/// `statistics.interval.ms`.
pub const DEFAULT_STATISTICS_INTERVAL_MS: &str = "15000";

/// The gauges, one series per client.
#[derive(Clone)]
pub struct KafkaClientMetrics {
    /// Round-trip time to the slowest broker (its average over the last interval).
    pub broker_rtt: GaugeVec,
    /// Messages waiting in the producer's queues (librdkafka `msg_cnt`).
    pub producer_queue_messages: IntGaugeVec,
    /// Bytes of those messages (`msg_size`).
    pub producer_queue_bytes: IntGaugeVec,
    /// Messages fetched and waiting for the application (the consumer's queue, which each
    /// partition's `fetchq_cnt` reports).
    pub consumer_fetch_queue_messages: IntGaugeVec,
    /// Brokers the client is connected to (state `UP`), of those it knows.
    pub brokers_up: IntGaugeVec,
}

impl KafkaClientMetrics {
    pub(super) fn register(r: &Registry) -> KafkaClientMetrics {
        let int = |name: &str, help: &str| {
            let g = IntGaugeVec::new(Opts::new(name, help), &["client"]).expect("valid metric");
            r.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        let broker_rtt = GaugeVec::new(
            Opts::new(
                "scorestream_kafka_broker_rtt_seconds",
                "librdkafka: average round-trip time to the slowest broker over the last statistics interval, by client.",
            ),
            &["client"],
        )
        .expect("valid metric");
        r.register(Box::new(broker_rtt.clone()))
            .expect("unique metric");
        KafkaClientMetrics {
            broker_rtt,
            producer_queue_messages: int(
                "scorestream_kafka_producer_queue_messages",
                "librdkafka: messages in the producer's queues, not yet acknowledged, by client.",
            ),
            producer_queue_bytes: int(
                "scorestream_kafka_producer_queue_bytes",
                "librdkafka: bytes of the messages in the producer's queues, by client.",
            ),
            consumer_fetch_queue_messages: int(
                "scorestream_kafka_consumer_fetch_queue_messages",
                "librdkafka: messages fetched and waiting to be polled, by client.",
            ),
            brokers_up: int(
                "scorestream_kafka_brokers_up",
                "librdkafka: brokers the client has an open connection to, by client.",
            ),
        }
    }

    /// Sets the gauges from one statistics report.
    pub fn record(&self, s: &Statistics) {
        let client = [s.name.as_str()];
        let rtt_us = s
            .brokers
            .values()
            .filter_map(|b| b.rtt.as_ref())
            .filter(|w| w.cnt > 0)
            .map(|w| w.avg)
            .max()
            .unwrap_or(0);
        self.broker_rtt
            .with_label_values(&client)
            .set(rtt_us as f64 / 1e6);
        self.brokers_up
            .with_label_values(&client)
            .set(s.brokers.values().filter(|b| b.state == "UP").count() as i64);
        match s.client_type.as_str() {
            "producer" => {
                self.producer_queue_messages
                    .with_label_values(&client)
                    .set(i64::try_from(s.msg_cnt).unwrap_or(i64::MAX));
                self.producer_queue_bytes
                    .with_label_values(&client)
                    .set(i64::try_from(s.msg_size).unwrap_or(i64::MAX));
            }
            "consumer" => {
                let fetched: i64 = s
                    .topics
                    .values()
                    .flat_map(|t| t.partitions.values())
                    .filter(|p| p.partition >= 0)
                    .map(|p| p.fetchq_cnt.max(0))
                    // Not a sum: the group consumer forwards every partition's fetch queue
                    // to its one queue, and librdkafka reports that queue's length for
                    // each partition (a sum counted it once per assigned partition).
                    .max()
                    .unwrap_or(0);
                self.consumer_fetch_queue_messages
                    .with_label_values(&client)
                    .set(fetched);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A statistics report as librdkafka writes it (trimmed to the fields read here).
    const PRODUCER: &str = r#"{"name":"rdkafka#producer-1","client_id":"rdkafka","type":"producer",
        "ts":1,"time":1,"age":1,"replyq":0,"msg_cnt":42,"msg_size":4200,"msg_max":100000,
        "msg_size_max":1000000,"tx":0,"tx_bytes":0,"rx":0,"rx_bytes":0,"txmsgs":0,
        "txmsg_bytes":0,"rxmsgs":0,"rxmsg_bytes":0,"simple_cnt":0,"metadata_cache_cnt":1,
        "brokers":{"b1:9092/1":{"name":"b1:9092/1","nodeid":1,"nodename":"b1:9092",
        "source":"configured","state":"UP","stateage":1,"outbuf_cnt":0,"outbuf_msg_cnt":0,
        "waitresp_cnt":0,"waitresp_msg_cnt":0,"tx":1,"txbytes":1,"txerrs":0,"txretries":0,
        "txidle":1,"req_timeouts":0,"rx":1,"rxbytes":1,"rxerrs":0,"rxcorriderrs":0,
        "rxpartial":0,"rxidle":1,"req":{},"zbuf_grow":0,"buf_grow":0,
        "rtt":{"min":1000,"max":9000,"avg":2500,"sum":5000,"cnt":2,"stddev":0,"hdrsize":0,
        "p50":0,"p75":0,"p90":0,"p95":0,"p99":0,"p99_99":0,"outofrange":0},"toppars":{}},
        "b2:9092/2":{"name":"b2:9092/2","nodeid":2,"nodename":"b2:9092",
        "source":"learned","state":"DOWN","stateage":1,"outbuf_cnt":0,"outbuf_msg_cnt":0,
        "waitresp_cnt":0,"waitresp_msg_cnt":0,"tx":1,"txbytes":1,"txerrs":0,"txretries":0,
        "txidle":1,"req_timeouts":0,"rx":1,"rxbytes":1,"rxerrs":0,"rxcorriderrs":0,
        "rxpartial":0,"rxidle":1,"req":{},"zbuf_grow":0,"buf_grow":0,"toppars":{}}},
        "topics":{}}"#;

    #[test]
    fn a_producer_report_sets_rtt_queue_and_brokers_up() {
        let r = Registry::new();
        let m = KafkaClientMetrics::register(&r);
        let s: Statistics = serde_json::from_str(PRODUCER).unwrap();
        m.record(&s);
        let c = ["rdkafka#producer-1"];
        assert_eq!(m.broker_rtt.with_label_values(&c).get(), 0.0025);
        assert_eq!(m.producer_queue_messages.with_label_values(&c).get(), 42);
        assert_eq!(m.producer_queue_bytes.with_label_values(&c).get(), 4200);
        assert_eq!(m.brokers_up.with_label_values(&c).get(), 1);
    }
}
