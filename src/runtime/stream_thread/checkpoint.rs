//! The checkpoint's bookkeeping: where each input partition stands, the commit epoch, and
//! the commit point in flight (Kafka Streams keeps this in its task manager and tasks,
//! quix-streams in its `Checkpoint`). Pure data and rules, no Kafka calls: `commit.rs`
//! runs the numbered steps against the consumer and producer, and calls these for the
//! decisions, which the tests below check without a broker.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// An input partition: (source topic index, partition).
pub(super) type InputPartition = (usize, i32);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct PartitionState {
    /// Next offset to commit (last processed + 1); -1 before the first record.
    pub position: i64,
    /// Last committed position; -1 if none this assignment.
    pub committed: i64,
    /// First offset processed this assignment; where a rewind goes if nothing was committed.
    pub base: i64,
}

impl PartitionState {
    pub const NEW: PartitionState = PartitionState {
        position: -1,
        committed: -1,
        base: -1,
    };
}

/// A prepared commit point waiting for its outputs' acknowledgements.
#[derive(Debug)]
pub(super) struct CommitPoint {
    /// Every record of this epoch and earlier ones must be acknowledged first.
    pub epoch: u64,
    /// Input positions → next offset, reached when prepared.
    pub positions: Vec<(InputPartition, i64)>,
    pub prepared: Instant,
}

/// Positions, epochs and the point in flight of one stream thread.
#[derive(Debug, Default)]
pub(super) struct Checkpoint {
    /// Assigned input partitions.
    pub partitions: HashMap<InputPartition, PartitionState>,
    /// The commit epoch of outputs produced now (see `runtime::acks`).
    pub epoch: u64,
    /// The prepared commit point waiting for its acknowledgements, if any.
    pub in_flight: Option<CommitPoint>,
    /// The producer's failed deliveries counted so far (a new one forces a rewind).
    pub failures_seen: u64,
    /// Transactions aborted in a row (`exactly_once`); too many stop the instance.
    pub aborts_in_a_row: u32,
}

impl Checkpoint {
    /// A record at `offset` of `input` is processed now: the position moves past it.
    /// False when the partition is not assigned (revoked during the poll).
    pub fn advance(&mut self, input: InputPartition, offset: i64) -> bool {
        let Some(ps) = self.partitions.get_mut(&input) else {
            return false;
        };
        if ps.base < 0 {
            ps.base = offset;
        }
        ps.position = offset + 1;
        true
    }

    /// `input` is no longer assigned here (revoked or lost): it leaves the partitions and
    /// the point in flight. A point prepared before it was revoked must not commit it
    /// later, when it may be assigned here again: its position was reached by tasks that
    /// are gone, and the tasks created for the new assignment restored without the
    /// uncommitted changelog records behind it, so a late commit would skip inputs whose
    /// effects the new tasks never saw.
    pub fn revoke(&mut self, input: InputPartition) {
        self.partitions.remove(&input);
        if let Some(point) = self.in_flight.as_mut() {
            point.positions.retain(|(k, _)| *k != input);
        }
    }

    /// Step 1's bookkeeping: a point of every position reached that is not committed yet
    /// (`all`: every position reached, after an offset commit failed), closing the current
    /// epoch. A point already in flight is extended: it keeps its preparation time and now
    /// covers this epoch too.
    pub fn prepare(&mut self, all: bool, now: Instant) -> &CommitPoint {
        let positions = self
            .partitions
            .iter()
            .filter(|(_, ps)| ps.position >= 0 && (all || ps.position != ps.committed))
            .map(|(&k, ps)| (k, ps.position))
            .collect();
        let prepared = self.in_flight.take().map_or(now, |p| p.prepared);
        let epoch = self.epoch;
        self.epoch += 1;
        self.in_flight.insert(CommitPoint {
            epoch,
            positions,
            prepared,
        })
    }

    /// Step 2b: whether the point in flight is stuck: no record of its epochs was
    /// acknowledged for `deadline` (`progress`: when one last was, from the ledger), counting
    /// from when it was prepared at the earliest. Then it is abandoned and processing
    /// rewinds. A point whose acknowledgements keep coming is slow, not stuck: abandoning
    /// it would only produce everything again into the same slow broker.
    pub fn overdue(&self, now: Instant, deadline: Duration, progress: Option<Instant>) -> bool {
        self.in_flight.as_ref().is_some_and(|p| {
            let since = progress.map_or(p.prepared, |t| t.max(p.prepared));
            now.saturating_duration_since(since) >= deadline
        })
    }

    /// Step 4's bookkeeping, once the point in flight settled: takes it and marks its
    /// positions committed. Returns the point and the positions to commit, without the
    /// partitions revoked since it was prepared (no longer ours to commit).
    pub fn complete(&mut self) -> Option<(CommitPoint, Vec<(InputPartition, i64)>)> {
        let point = self.in_flight.take()?;
        let mut commit = Vec::with_capacity(point.positions.len());
        for &(input, position) in &point.positions {
            if let Some(ps) = self.partitions.get_mut(&input) {
                ps.committed = position;
                commit.push((input, position));
            }
        }
        Some((point, commit))
    }

    /// Every position reached that is not committed (`exactly_once` commits them all in
    /// its transaction).
    pub fn uncommitted(&self) -> Vec<(InputPartition, i64)> {
        self.partitions
            .iter()
            .filter(|(_, ps)| ps.position >= 0 && ps.position != ps.committed)
            .map(|(&k, ps)| (k, ps.position))
            .collect()
    }

    /// Every position reached is now committed (`exactly_once`, after its transaction).
    pub fn mark_all_committed(&mut self) {
        for ps in self.partitions.values_mut() {
            if ps.position >= 0 {
                ps.committed = ps.position;
            }
        }
    }

    /// Step 5's bookkeeping: the point in flight is dropped (nothing of it is committed)
    /// and a new epoch opens, so acknowledgements of the old ones no longer count. Returns
    /// where each partition that moved must be sought back to: its last commit, or the
    /// first offset processed when nothing was committed. Call [`rewound`](Self::rewound)
    /// for each seek done.
    pub fn rewind(&mut self) -> Vec<(InputPartition, i64)> {
        self.in_flight = None;
        self.epoch += 1;
        self.partitions
            .iter()
            .filter_map(|(&k, ps)| {
                let target = if ps.committed >= 0 {
                    ps.committed
                } else {
                    ps.base
                };
                (target >= 0 && ps.position != target).then_some((k, target))
            })
            .collect()
    }

    /// `input` was sought back to its rewind target: its position is the last commit again.
    pub fn rewound(&mut self, input: InputPartition) {
        if let Some(ps) = self.partitions.get_mut(&input) {
            ps.position = if ps.committed >= 0 { ps.committed } else { -1 };
        }
    }

    /// Whether the producer failed a delivery since the last call (`failures`: its count
    /// so far). Then nothing may be committed before a rewind.
    pub fn failed_since(&mut self, failures: u64) -> bool {
        let failed = failures != self.failures_seen;
        self.failures_seen = failures;
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assigned(inputs: &[InputPartition]) -> Checkpoint {
        let mut c = Checkpoint::default();
        for &i in inputs {
            c.partitions.insert(i, PartitionState::NEW);
        }
        c
    }

    fn sorted(mut v: Vec<(InputPartition, i64)>) -> Vec<(InputPartition, i64)> {
        v.sort_unstable();
        v
    }

    #[test]
    fn a_point_prepared_before_a_partition_was_lost_does_not_commit_it_after_it_comes_back() {
        let mut c = assigned(&[(0, 0), (0, 1)]);
        assert!(c.advance((0, 0), 177));
        assert!(c.advance((0, 1), 92));
        c.prepare(false, Instant::now());
        // The session expires with the point in flight; the partition is assigned again
        // and its new task starts over from the group's committed offset.
        c.revoke((0, 0));
        c.partitions.insert((0, 0), PartitionState::NEW);
        assert!(c.advance((0, 0), 0));
        let (_, commit) = c.complete().unwrap();
        assert_eq!(commit, vec![((0, 1), 93)], "only what is still ours");
        assert_eq!(c.partitions[&(0, 0)].committed, -1);
    }

    #[test]
    fn a_point_covers_the_positions_reached_since_the_last_commit_and_closes_its_epoch() {
        let mut c = assigned(&[(0, 0), (0, 1), (1, 0)]);
        assert!(c.advance((0, 0), 10));
        assert!(c.advance((0, 0), 11));
        assert!(c.advance((0, 1), 3));
        assert!(!c.advance((0, 2), 5), "not assigned");
        let t0 = Instant::now();
        let p = c.prepare(false, t0);
        assert_eq!(p.epoch, 0);
        assert_eq!(sorted(p.positions.clone()), vec![((0, 0), 12), ((0, 1), 4)]);
        assert_eq!(
            c.epoch, 1,
            "outputs produced from now on belong to the next point"
        );

        let (point, commit) = c.complete().expect("in flight");
        assert_eq!(point.epoch, 0);
        assert_eq!(sorted(commit), vec![((0, 0), 12), ((0, 1), 4)]);
        assert!(c.in_flight.is_none());
        // Nothing moved since: the next point commits nothing, unless told to commit all.
        assert!(c.prepare(false, t0).positions.is_empty());
        c.complete();
        assert_eq!(c.prepare(true, t0).positions.len(), 2);
    }

    #[test]
    fn an_extended_point_keeps_its_preparation_time_and_covers_the_later_epoch() {
        let mut c = assigned(&[(0, 0)]);
        c.advance((0, 0), 1);
        let t0 = Instant::now();
        c.prepare(false, t0);
        c.advance((0, 0), 2);
        let p = c.prepare(false, t0 + Duration::from_secs(5));
        assert_eq!((p.epoch, p.prepared), (1, t0));
        assert_eq!(p.positions, vec![((0, 0), 3)]);
    }

    #[test]
    fn a_point_is_overdue_only_when_nothing_was_acknowledged_for_its_deadline() {
        let mut c = assigned(&[(0, 0)]);
        let t0 = Instant::now();
        let deadline = Duration::from_secs(30);
        let ms = |n: u64| Duration::from_millis(n);
        assert!(
            !c.overdue(t0 + deadline * 2, deadline, None),
            "nothing in flight"
        );
        c.advance((0, 0), 0);
        c.prepare(false, t0);
        assert!(!c.overdue(t0 + deadline - ms(1), deadline, None));
        assert!(c.overdue(t0 + deadline, deadline, None));
        // Acknowledgements before it was prepared do not extend it.
        assert!(c.overdue(t0 + deadline, deadline, Some(t0 - ms(500))));
        // Slow but moving: the deadline counts from the last acknowledgement.
        let last = t0 + deadline - ms(100);
        assert!(!c.overdue(t0 + deadline, deadline, Some(last)));
        assert!(!c.overdue(last + deadline - ms(1), deadline, Some(last)));
        assert!(c.overdue(last + deadline, deadline, Some(last)));
    }

    #[test]
    fn partitions_revoked_while_a_point_was_in_flight_are_not_committed() {
        let mut c = assigned(&[(0, 0), (0, 1)]);
        c.advance((0, 0), 7);
        c.advance((0, 1), 9);
        c.prepare(false, Instant::now());
        c.partitions.remove(&(0, 1));
        let (_, commit) = c.complete().unwrap();
        assert_eq!(commit, vec![((0, 0), 8)]);
        assert_eq!(c.partitions[&(0, 0)].committed, 8);
    }

    #[test]
    fn a_rewind_goes_back_to_the_last_commit_or_the_first_offset_and_opens_a_new_epoch() {
        let mut c = assigned(&[(0, 0), (0, 1), (0, 2)]);
        // (0,0): committed at 5, processed on to 9. (0,1): never committed, started at 20.
        // (0,2): nothing processed.
        c.advance((0, 0), 4);
        c.prepare(false, Instant::now());
        c.complete();
        c.advance((0, 0), 8);
        c.advance((0, 1), 20);
        c.advance((0, 1), 21);
        c.prepare(false, Instant::now());
        let epoch = c.epoch;
        let targets = sorted(c.rewind());
        assert_eq!(targets, vec![((0, 0), 5), ((0, 1), 20)]);
        assert!(c.in_flight.is_none(), "nothing of the point is committed");
        assert_eq!(c.epoch, epoch + 1);
        for (input, _) in targets {
            c.rewound(input);
        }
        assert_eq!(c.partitions[&(0, 0)].position, 5);
        assert_eq!(c.partitions[&(0, 1)].position, -1);
        assert_eq!(c.partitions[&(0, 0)].committed, 5, "the commit stays");
        // Back where it was committed: nothing more to rewind there.
        assert!(!c.rewind().iter().any(|(input, _)| *input == (0, 0)));
    }

    /// A failed record no longer holds its epoch open in the ledger (it will never be
    /// acknowledged), so the point looks settled: only the failure count stops it from
    /// being committed, which is why `try_complete` looks at failures before settlement.
    #[test]
    fn a_failed_delivery_settles_its_epoch_but_rewinds_instead_of_committing() {
        let mut ledger = crate::runtime::acks::Ledger::default();
        let mut c = assigned(&[(0, 0)]);
        c.advance((0, 0), 3);
        ledger.sent(c.epoch);
        ledger.sent(c.epoch);
        let epoch = c.prepare(false, Instant::now()).epoch;
        ledger.acked(epoch, None);
        ledger.failed(epoch);
        assert!(ledger.settled_through(epoch));
        assert!(c.failed_since(1), "the failure is seen");
        assert_eq!(c.rewind(), vec![((0, 0), 3)]);
        assert!(c.complete().is_none(), "nothing left to commit");
        assert_eq!(c.partitions[&(0, 0)].committed, -1);
        ledger.abandon_before(c.epoch);
        ledger.sent(c.epoch);
        assert!(!ledger.settled_through(c.epoch));
    }

    #[test]
    fn a_new_delivery_failure_is_seen_once() {
        let mut c = Checkpoint::default();
        assert!(!c.failed_since(0));
        assert!(c.failed_since(2));
        assert!(!c.failed_since(2));
    }
}
