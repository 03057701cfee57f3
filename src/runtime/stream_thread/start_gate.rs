//! The instance's stream threads start processing together. Each thread joins the group
//! with its own consumer, and the first to join can be handed every partition while the
//! others are still joining. Were it to process them at once, it could run far ahead in
//! event time of the partitions its siblings take over a moment later: a backlog of
//! unkeyed events spread over several partitions then reaches a customer's task further
//! out of order than one thread reading them all in one loop, and beyond the grace period
//! those events are dead-lettered as late. So no thread creates its tasks until every
//! thread of the instance has had its first assignment (an empty one counts), or until a
//! deadline, after which the threads that have partitions go on without the rest.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tracing::{info, warn};

/// Shared by the stream threads of one instance.
#[derive(Debug)]
pub(crate) struct StartGate {
    /// One flag per thread: it has had its first assignment.
    arrived: Vec<AtomicBool>,
    deadline: Instant,
    /// Set once the gate has opened: from then on a check is one load, no clock read.
    open: AtomicBool,
}

impl StartGate {
    /// A gate for `threads` stream threads that opens at the latest `timeout` from now.
    pub(crate) fn new(threads: usize, timeout: Duration) -> StartGate {
        StartGate {
            arrived: (0..threads.max(1))
                .map(|_| AtomicBool::new(false))
                .collect(),
            deadline: Instant::now() + timeout,
            open: AtomicBool::new(false),
        }
    }

    /// Stream thread `thread` has had an assignment (later ones change nothing).
    pub(crate) fn arrive(&self, thread: usize) {
        if let Some(flag) = self.arrived.get(thread) {
            flag.store(true, Ordering::Release);
        }
    }

    /// Whether the threads may create their tasks and process: every thread has had its
    /// first assignment, or the deadline has passed. Logs the opening once.
    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire) || self.is_open_at(Instant::now())
    }

    fn is_open_at(&self, now: Instant) -> bool {
        let threads = self.arrived.len();
        let waiting = self
            .arrived
            .iter()
            .filter(|f| !f.load(Ordering::Acquire))
            .count();
        if waiting > 0 && now < self.deadline {
            return false;
        }
        if !self.open.swap(true, Ordering::AcqRel) && threads > 1 {
            if waiting == 0 {
                info!(
                    threads,
                    "Every stream thread has its partitions: processing starts."
                );
            } else {
                warn!(
                    threads,
                    waiting,
                    "Stream threads still without an assignment at the start deadline: the others start processing without them."
                );
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_when_every_thread_has_had_its_first_assignment() {
        let gate = StartGate::new(3, Duration::from_secs(60));
        assert!(!gate.is_open());
        gate.arrive(0);
        // A second assignment of the same thread does not count for another thread.
        gate.arrive(0);
        gate.arrive(2);
        assert!(!gate.is_open());
        gate.arrive(1);
        assert!(gate.is_open());
        // Later rebalances leave it open.
        gate.arrive(1);
        assert!(gate.is_open());
    }

    #[test]
    fn opens_at_the_deadline_without_the_missing_threads() {
        let gate = StartGate::new(2, Duration::from_secs(5));
        gate.arrive(1);
        let now = Instant::now();
        assert!(!gate.is_open_at(now));
        assert!(gate.is_open_at(now + Duration::from_secs(6)));
        // Once open, it stays open, without another look at the clock.
        assert!(gate.is_open());
    }

    #[test]
    fn one_thread_opens_on_its_first_assignment() {
        let gate = StartGate::new(1, Duration::from_secs(60));
        assert!(!gate.is_open());
        gate.arrive(0);
        assert!(gate.is_open());
        // A thread number the gate does not know is ignored, not a panic.
        StartGate::new(1, Duration::from_secs(60)).arrive(7);
    }
}
