//! Input record batches the consumer cannot decode: compressed with a codec this build
//! lacks, or corrupt. librdkafka reports one as a consumer error and fetches the same batch
//! again, so the partition cannot advance: that must be loud, counted and visible on
//! `/ready` (DESIGN §5), never a silent stall. rdkafka's consumer error carries only the
//! error code (not the partition), so the log line names the error and the metric
//! `scorestream_consumer_lag_records` shows which partition is stuck.

use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tracing::error;

use crate::metrics::Metrics;

/// How long after the last undecodable batch `/ready` still reports it.
pub const REMEMBERED: Duration = Duration::from_secs(60);
/// At most one log line per this interval (librdkafka retries the fetch several times a second).
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Whether a consumer error means a record batch that cannot be decoded.
pub fn is_undecodable(e: &KafkaError) -> bool {
    matches!(
        e,
        KafkaError::MessageConsumption(code) | KafkaError::MessageConsumptionFatal(code)
            if matches!(
                code,
                RDKafkaErrorCode::BadCompression
                    | RDKafkaErrorCode::NotImplemented
                    | RDKafkaErrorCode::BadMessage
                    | RDKafkaErrorCode::InvalidMessage
                    | RDKafkaErrorCode::InvalidRecord
            )
    )
}

/// Tracks undecodable batches for one stream thread.
#[derive(Default)]
pub struct UndecodableWatch {
    last_seen: Option<Instant>,
    last_logged: Option<Instant>,
    since_logged: u64,
}

impl UndecodableWatch {
    /// Takes a consumer error; true when it was an undecodable batch (counted, logged at
    /// most every 10 s, shown on `/ready`), false for the caller to report.
    pub fn on_error(&mut self, e: &KafkaError, metrics: &Metrics, now: Instant) -> bool {
        if !is_undecodable(e) {
            return false;
        }
        metrics.undecodable_batches.inc();
        metrics.input_undecodable.set(1);
        self.last_seen = Some(now);
        self.since_logged += 1;
        if self
            .last_logged
            .is_none_or(|t| now.duration_since(t) >= LOG_EVERY)
        {
            error!(error = %e, times = self.since_logged, "An input record batch cannot be decoded (corrupt, or compressed with a codec this build lacks); its partition cannot advance until the batch is removed or the consumer skips it (reset the group's offset past it).");
            self.last_logged = Some(now);
            self.since_logged = 0;
        }
        true
    }

    /// Clears the `/ready` condition once no undecodable batch was seen for a while.
    pub fn tick(&mut self, metrics: &Metrics, now: Instant) {
        if self
            .last_seen
            .is_some_and(|t| now.duration_since(t) >= REMEMBERED)
        {
            self.last_seen = None;
            metrics.input_undecodable.set(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_errors_are_told_from_the_rest() {
        let code = |c| KafkaError::MessageConsumption(c);
        assert!(is_undecodable(&code(RDKafkaErrorCode::BadCompression)));
        assert!(is_undecodable(&code(RDKafkaErrorCode::NotImplemented)));
        assert!(is_undecodable(&code(RDKafkaErrorCode::BadMessage)));
        assert!(!is_undecodable(&code(RDKafkaErrorCode::PartitionEOF)));
        assert!(!is_undecodable(&code(
            RDKafkaErrorCode::BrokerTransportFailure
        )));
        assert!(!is_undecodable(&KafkaError::Canceled));
    }

    #[test]
    fn an_undecodable_batch_is_counted_and_shown_for_a_minute() {
        let metrics = Metrics::new();
        let mut w = UndecodableWatch::default();
        let t0 = Instant::now();
        let bad = KafkaError::MessageConsumption(RDKafkaErrorCode::NotImplemented);
        assert!(w.on_error(&bad, &metrics, t0));
        assert!(w.on_error(&bad, &metrics, t0 + Duration::from_millis(250)));
        assert!(!w.on_error(&KafkaError::Canceled, &metrics, t0));
        assert_eq!(metrics.undecodable_batches.get(), 2);
        assert_eq!(metrics.input_undecodable.get(), 1);
        w.tick(&metrics, t0 + Duration::from_secs(30));
        assert_eq!(
            metrics.input_undecodable.get(),
            1,
            "still within the minute"
        );
        w.tick(&metrics, t0 + Duration::from_millis(250) + REMEMBERED);
        assert_eq!(metrics.input_undecodable.get(), 0);
    }
}
