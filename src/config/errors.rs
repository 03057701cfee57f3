//! `[errors]`: what happens to each kind of bad record (Kafka Streams' exception handlers,
//! Arroyo's `bad_data`), and the dead-letter topics' limits. Applied by
//! [`crate::engine::dead_letter`]; every default is the behaviour before it was configurable.

use serde::{Deserialize, Serialize};

use super::{size, Config, ConfigError};
use crate::engine::{ErrorPolicy, OnTooLarge};

/// Room a dead letter needs beyond the largest input: its error headers.
const DEAD_LETTER_HEADROOM: usize = 64 * 1024;

/// What happens to bad records, per reason. Input the normalizer rejects (DESIGN §2) is
/// always dead-lettered.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ErrorSettings {
    /// An event beyond the grace period; absent: the rules file's `settings.late_policy`.
    pub late_event: Option<ErrorPolicy>,
    /// An event type no gamification rule uses, with the rules' `strict_event_types` on.
    pub unknown_event_type: ErrorPolicy,
    /// A record on an internal topic that does not decode (another version, corruption).
    /// `dead_letter` is not offered: it has no input topic to put a dead letter next to.
    pub undecodable_internal: ErrorPolicy,
    /// An output (not a dead letter) the broker refuses as too large. `drop` or `fail` (a
    /// failed delivery: its input is processed again).
    pub oversize_output: ErrorPolicy,
    /// The largest dead letter: the dead-letter topics' `max.message.bytes` and the
    /// producer's `message.max.bytes`; absent: `ingest.max_record_bytes` + 64 KiB.
    #[serde(with = "size::option")]
    pub dead_letter_max_bytes: Option<usize>,
    /// A dead letter the broker refuses as too large: `truncate` (cut to fit, marked with
    /// `scorestream.error.truncated`), `drop` or `fail`.
    pub dead_letter_too_large: OnTooLarge,
}

impl Default for ErrorSettings {
    fn default() -> Self {
        ErrorSettings {
            late_event: None,
            unknown_event_type: ErrorPolicy::DeadLetter,
            undecodable_internal: ErrorPolicy::Drop,
            oversize_output: ErrorPolicy::Fail,
            dead_letter_max_bytes: None,
            dead_letter_too_large: OnTooLarge::Truncate,
        }
    }
}

impl Config {
    /// The largest dead letter, which is also the largest record the producer sends.
    pub fn dead_letter_max_bytes(&self) -> usize {
        self.errors
            .dead_letter_max_bytes
            .unwrap_or(self.ingest.max_record_bytes + DEAD_LETTER_HEADROOM)
    }

    /// `[errors]`: policies offered for their reason, a sensible size.
    pub(super) fn validate_errors(&self, errors: &mut Vec<ConfigError>) {
        let e = &self.errors;
        for (key, policy) in [
            ("errors.undecodable_internal", e.undecodable_internal),
            ("errors.oversize_output", e.oversize_output),
        ] {
            if policy == ErrorPolicy::DeadLetter {
                errors.push(ConfigError {
                    key: key.into(),
                    message: "'dead_letter' is not offered for this reason (the record has no input topic to put a dead letter next to): use 'drop' or 'fail'".into(),
                });
            }
        }
        if e.dead_letter_max_bytes.is_some_and(|b| b < 1024) {
            errors.push(ConfigError {
                key: "errors.dead_letter_max_bytes".into(),
                message: "must be at least 1024".into(),
            });
        }
    }
}
