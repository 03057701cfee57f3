//! Bad records as an engine seam, in the spirit of Kafka Streams' exception handlers
//! (`DeserializationExceptionHandler`, `ProductionExceptionHandler` and KIP-1034's dead-letter
//! records): a processor that meets a record it cannot use names the *reason*, and what
//! happens next is an [`ErrorPolicy`] chosen per reason by configuration — send it to the
//! dead-letter topic next to its input, drop it, or fail the task. [`BadRecords::handle`] is
//! the one place that applies the policy, logs (topic, partition, offset, reason) and counts
//! (`scorestream_dead_letters_total{topic, reason}` for dead letters,
//! `scorestream_bad_records_total{reason, action}` for every bad record).
//!
//! A dead letter is the original record unchanged plus the error [`headers`] ([`build`]);
//! it goes to a [`DeadLetter`] sink (`<source topic><suffix>`), whose `max_bytes` sizes the
//! dead-letter topic and whose `on_too_large` says what the record collector does with a
//! dead letter the broker refuses as too large (`engine::collector`).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::processor::{Child, ProcessorContext, ProcessorError};
use super::record::Record;

/// Dead-letter header names, in the style of Kafka Streams' KIP-1034.
pub mod headers {
    pub const REASON: &str = "scorestream.error.reason";
    pub const MESSAGE: &str = "scorestream.error.message";
    pub const SOURCE_TOPIC: &str = "scorestream.source.topic";
    pub const SOURCE_PARTITION: &str = "scorestream.source.partition";
    pub const SOURCE_OFFSET: &str = "scorestream.source.offset";
    /// Set on a dead letter whose value was cut to fit the broker's limit (its value: the
    /// original size in bytes).
    pub const TRUNCATED: &str = "scorestream.error.truncated";
}

/// Builds a dead letter: the original key, value, headers and timestamp unchanged, plus the
/// error headers naming the reason, a readable message and the original position.
pub fn build(original: Record, reason: &str, message: &str) -> Record {
    let mut rec = original;
    rec.headers.push(headers::REASON, reason);
    rec.headers.push(headers::MESSAGE, message);
    if let Some(pos) = rec.source.clone() {
        rec.headers
            .push(headers::SOURCE_TOPIC, pos.topic.as_bytes());
        rec.headers
            .push(headers::SOURCE_PARTITION, pos.partition.to_string());
        rec.headers
            .push(headers::SOURCE_OFFSET, pos.offset.to_string());
    }
    rec
}

/// What happens to a bad record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorPolicy {
    /// To the dead-letter topic next to its input, with the error headers.
    DeadLetter,
    /// Skipped: logged and counted, nothing is sent.
    Drop,
    /// The task fails with an error naming the reason and the record's position, and the
    /// runtime stops (its offset is not committed: a restart meets it again).
    Fail,
}

impl ErrorPolicy {
    /// The `action` label of `scorestream_bad_records_total`.
    pub fn action(self) -> &'static str {
        match self {
            ErrorPolicy::DeadLetter => "dead_lettered",
            ErrorPolicy::Drop => "dropped",
            ErrorPolicy::Fail => "failed",
        }
    }

    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorPolicy::DeadLetter => "dead_letter",
            ErrorPolicy::Drop => "drop",
            ErrorPolicy::Fail => "fail",
        }
    }
}

/// What the record collector does with a dead letter the broker refuses as too large.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnTooLarge {
    /// Cut its value to fit and mark it with [`headers::TRUNCATED`] (once).
    #[default]
    Truncate,
    /// Skip it (logged and counted).
    Drop,
    /// A failed delivery, as for any other output: its input is processed again.
    Fail,
}

/// A dead-letter sink: each record goes to `<its source topic><suffix>` on the same
/// partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    pub suffix: String,
    /// The largest dead letter the topic takes (its `max.message.bytes` when created).
    pub max_bytes: usize,
    pub on_too_large: OnTooLarge,
}

impl DeadLetter {
    /// The limits the record collector applies to each dead letter of this sink.
    pub fn limits(&self) -> DeadLetterLimits {
        DeadLetterLimits {
            max_bytes: self.max_bytes,
            on_too_large: self.on_too_large,
        }
    }
}

/// What a dead letter carries to the record collector of its sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeadLetterLimits {
    pub max_bytes: usize,
    pub on_too_large: OnTooLarge,
}

/// The counters of bad records (cloned from the application's metrics; the engine knows
/// nothing else of them).
#[derive(Clone)]
pub struct BadRecordCounters {
    /// `{topic, reason}`: records sent to a dead-letter topic.
    pub dead_letters: prometheus::IntCounterVec,
    /// `{reason, action}`: every bad record, whatever its policy did.
    pub bad_records: prometheus::IntCounterVec,
}

/// Where a bad record came from, for logs and errors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl Position {
    fn of(record: &Record) -> Position {
        match &record.source {
            Some(p) => Position {
                topic: p.topic.to_string(),
                partition: p.partition,
                offset: p.offset,
            },
            None => Position {
                topic: String::new(),
                partition: -1,
                offset: -1,
            },
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "topic '{}', partition {}, offset {}",
            self.topic, self.partition, self.offset
        )
    }
}

/// A bad record whose reason's policy is `fail`: the task stops on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad record ({reason}) at {at}: {message} (its error policy is 'fail')")]
pub struct BadRecordError {
    pub reason: String,
    pub at: Position,
    pub message: String,
}

/// Applies error policies: the one place bad records are routed, logged and counted.
#[derive(Clone, Default)]
pub struct BadRecords {
    counters: Option<BadRecordCounters>,
}

impl BadRecords {
    pub fn new(counters: Option<BadRecordCounters>) -> Self {
        BadRecords { counters }
    }

    /// Applies `policy` to `record` (its `source` is the position it is reported at) for
    /// `reason`: dead-letters it to `child` with the error headers, drops it, or returns
    /// the error that fails the task. Logged and counted in every case.
    /// `child` is `None` where no dead-letter sink is offered (configuration refuses
    /// `dead_letter` there); a dead letter without one fails the task.
    pub fn handle(
        &self,
        ctx: &mut ProcessorContext<'_>,
        child: Option<Child>,
        record: Record,
        policy: ErrorPolicy,
        reason: &str,
        message: &str,
    ) -> Result<(), ProcessorError> {
        let at = Position::of(&record);
        let policy = match (policy, child) {
            (ErrorPolicy::DeadLetter, None) => ErrorPolicy::Fail,
            _ => policy,
        };
        self.report(&at, policy, reason, message);
        match (policy, child) {
            (ErrorPolicy::DeadLetter, Some(child)) => {
                ctx.forward_to(child, build(record, reason, message));
                Ok(())
            }
            (ErrorPolicy::Drop, _) => Ok(()),
            _ => Err(ProcessorError::BadRecord(Box::new(BadRecordError {
                reason: reason.to_string(),
                at,
                message: message.to_string(),
            }))),
        }
    }

    /// Logs and counts one bad record at `at`.
    pub fn report(&self, at: &Position, policy: ErrorPolicy, reason: &str, message: &str) {
        let Position {
            topic,
            partition,
            offset,
        } = at;
        let action = policy.action();
        macro_rules! log {
            ($level:ident, $text:literal) => {
                tracing::$level!(topic, partition, offset, reason, action, message, $text)
            };
        }
        match policy {
            ErrorPolicy::Fail => log!(error, "Bad record; failing the task."),
            // Nothing else keeps a dropped record: the log says it was there.
            ErrorPolicy::Drop => log!(warn, "Bad record dropped."),
            // The dead letter itself keeps it (bad input can be a large share of traffic).
            ErrorPolicy::DeadLetter => log!(debug, "Record dead-lettered."),
        }
        if let Some(c) = &self.counters {
            if policy == ErrorPolicy::DeadLetter {
                c.dead_letters.with_label_values(&[topic, reason]).inc();
            }
            c.bad_records.with_label_values(&[reason, action]).inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::engine::SourcePosition;

    #[test]
    fn a_dead_letter_keeps_the_record_and_adds_the_error_headers_after_its_own() {
        let mut r = Record::new(b"{bad".to_vec(), 7).with_header("traceparent", "t");
        r.key = Some(b"k".to_vec());
        r.source = Some(SourcePosition {
            topic: Arc::from("in"),
            partition: 2,
            offset: 40,
        });
        let d = build(r.clone(), "invalid_json", "expected value");
        assert_eq!((d.key, d.value, d.timestamp), (r.key, r.value, 7));
        let h: Vec<(&str, &[u8])> = d.headers.iter().collect();
        assert_eq!(
            h,
            [
                ("traceparent", &b"t"[..]),
                (headers::REASON, b"invalid_json"),
                (headers::MESSAGE, b"expected value"),
                (headers::SOURCE_TOPIC, b"in"),
                (headers::SOURCE_PARTITION, b"2"),
                (headers::SOURCE_OFFSET, b"40"),
            ]
        );
    }
}
