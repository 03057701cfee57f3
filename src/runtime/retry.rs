//! Which Kafka client errors are worth retrying, and a bounded exponential backoff.
//!
//! A broker that restarts, a coordinator that moves, a request that times out: the runtime
//! waits and tries again instead of stopping (DESIGN §6, "a broker outage is survived").
//! Only errors an operator must fix (credentials, authorisation, a fatal client state)
//! stop it.

use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// First retry delay; each failure doubles it up to [`MAX_DELAY`].
const FIRST_DELAY: Duration = Duration::from_millis(200);
/// Longest wait between two attempts.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(10);

/// Errors retrying cannot fix: the operator must act.
pub(crate) fn needs_operator(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::Fatal
            | C::Authentication
            | C::SaslAuthenticationFailed
            | C::TopicAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::TransactionalIdAuthorizationFailed
            | C::DelegationTokenAuthorizationFailed
            | C::InvalidArgument
    )
}

/// True for client errors that may go away by themselves (timeouts, transport failures,
/// coordinator or leader changes); false for those that need the operator.
pub(crate) fn is_transient(e: &KafkaError) -> bool {
    match e {
        KafkaError::ClientCreation(_) | KafkaError::ClientConfig(..) => false,
        KafkaError::Transaction(t) => !t.is_fatal(),
        _ => e.rdkafka_error_code().is_none_or(|c| !needs_operator(c)),
    }
}

/// When to try again after failures: 200 ms, doubling, at most 10 s apart.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    failures: u32,
    next: Option<Instant>,
}

impl Backoff {
    /// May the next attempt run now?
    pub(crate) fn due(&self) -> bool {
        self.next.is_none_or(|t| Instant::now() >= t)
    }

    /// Records a failure; returns how long until the next attempt.
    pub(crate) fn failed(&mut self) -> Duration {
        let delay = FIRST_DELAY
            .saturating_mul(1 << self.failures.min(16))
            .min(MAX_DELAY);
        self.failures = self.failures.saturating_add(1);
        self.next = Some(Instant::now() + delay);
        delay
    }

    /// Failures in a row so far.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }

    pub(crate) fn succeeded(&mut self) {
        *self = Backoff::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_and_transport_failures_are_transient_auth_failures_are_not() {
        for code in [
            RDKafkaErrorCode::OperationTimedOut,
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::CoordinatorNotAvailable,
            RDKafkaErrorCode::NotCoordinator,
        ] {
            assert!(is_transient(&KafkaError::MetadataFetch(code)), "{code:?}");
            assert!(
                is_transient(&KafkaError::OffsetFetch(code)),
                "{code:?} on an offset fetch"
            );
        }
        for code in [
            RDKafkaErrorCode::SaslAuthenticationFailed,
            RDKafkaErrorCode::GroupAuthorizationFailed,
            RDKafkaErrorCode::Fatal,
        ] {
            assert!(!is_transient(&KafkaError::OffsetFetch(code)), "{code:?}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_its_bound_and_resets() {
        let mut b = Backoff::default();
        assert!(b.due());
        let delays: Vec<Duration> = (0..10).map(|_| b.failed()).collect();
        assert_eq!(delays[0], Duration::from_millis(200));
        assert_eq!(delays[1], Duration::from_millis(400));
        assert_eq!(*delays.last().unwrap(), MAX_DELAY);
        assert!(delays.windows(2).all(|w| w[0] <= w[1]));
        assert!(!b.due());
        b.succeeded();
        assert!(b.due());
        assert_eq!(b.failures(), 0);
    }
}
