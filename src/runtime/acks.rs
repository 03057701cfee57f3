//! What the producer still owes us, per commit epoch: the bookkeeping that lets a commit
//! wait for its outputs without stopping processing.
//!
//! Every record a stream thread hands to its producer belongs to the *epoch* in which it
//! was produced; a commit point closes an epoch. The point may be committed once every
//! record of its epoch and of all earlier ones is acknowledged, while records of later
//! epochs are still in flight — this is what Kafka Streams' `RecordCollector` and
//! quix-streams' checkpoint do with a flush, minus the wait.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

/// Changelog partition → the next offset after its last acknowledged record.
pub type Ends = HashMap<(Arc<str>, i32), i64>;

/// Outstanding records and changelog ends per open epoch.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Epoch of `open[0]`; epochs below it are settled (or were abandoned by a rewind).
    first: u64,
    /// Per open epoch from `first`: records not yet acknowledged or failed, and the
    /// changelog ends its acknowledged records reached.
    open: VecDeque<(u64, Ends)>,
    /// Per open epoch (as `open`): when one of its records was last acknowledged or failed.
    progress: VecDeque<Option<Instant>>,
    /// Changelog ends of every settled epoch.
    settled_ends: Ends,
}

impl Ledger {
    fn index(&mut self, epoch: u64) -> Option<usize> {
        let i = usize::try_from(epoch.checked_sub(self.first)?).ok()?;
        while self.open.len() <= i {
            self.open.push_back((0, Ends::new()));
            self.progress.push_back(None);
        }
        Some(i)
    }

    fn slot(&mut self, epoch: u64) -> Option<&mut (u64, Ends)> {
        let i = self.index(epoch)?;
        self.open.get_mut(i)
    }

    /// A record of `epoch` was handed to the producer (or queued for it).
    pub fn sent(&mut self, epoch: u64) {
        if let Some((n, _)) = self.slot(epoch) {
            *n += 1;
        }
    }

    /// A record of `epoch` was acknowledged; for a changelog record, at `changelog`
    /// (topic, partition, offset). Records of abandoned epochs are ignored.
    pub fn acked(&mut self, epoch: u64, changelog: Option<(&str, i32, i64)>) {
        self.acked_at(epoch, changelog, Instant::now());
    }

    /// [`acked`](Self::acked), at `now`.
    pub fn acked_at(&mut self, epoch: u64, changelog: Option<(&str, i32, i64)>, now: Instant) {
        let Some(i) = self.index(epoch) else {
            return;
        };
        self.progress[i] = Some(now);
        let (n, ends) = &mut self.open[i];
        *n = n.saturating_sub(1);
        if let Some((topic, partition, offset)) = changelog {
            match ends
                .iter_mut()
                .find(|((t, p), _)| **t == *topic && *p == partition)
            {
                Some((_, end)) => *end = (*end).max(offset + 1),
                None => {
                    ends.insert((Arc::from(topic), partition), offset + 1);
                }
            }
        }
    }

    /// A record of `epoch` will never be acknowledged (it failed): it no longer holds the
    /// epoch open. The failure itself is counted elsewhere and forces a rewind.
    pub fn failed(&mut self, epoch: u64) {
        self.acked(epoch, None);
    }

    /// True when every record of `epoch` and of every earlier epoch is acknowledged.
    pub fn settled_through(&self, epoch: u64) -> bool {
        let Some(upto) = epoch.checked_sub(self.first) else {
            return true;
        };
        self.open
            .iter()
            .take(
                usize::try_from(upto)
                    .unwrap_or(usize::MAX)
                    .saturating_add(1),
            )
            .all(|(n, _)| *n == 0)
    }

    /// When a record of `epoch` or of an earlier open epoch was last acknowledged (or
    /// failed); `None` if none was since they opened. A commit point whose records keep
    /// being acknowledged is slow, not stuck.
    pub fn progress_through(&self, epoch: u64) -> Option<Instant> {
        let upto = usize::try_from(epoch.checked_sub(self.first)?).unwrap_or(usize::MAX);
        self.progress
            .iter()
            .take(upto.saturating_add(1))
            .flatten()
            .max()
            .copied()
    }

    /// Closes every epoch up to `epoch` (which must be settled), folding their changelog
    /// ends into the settled ones.
    pub fn close_through(&mut self, epoch: u64) {
        while self.first <= epoch {
            self.progress.pop_front();
            if let Some((_, ends)) = self.open.pop_front() {
                for (k, v) in ends {
                    let e = self.settled_ends.entry(k).or_insert(v);
                    *e = (*e).max(v);
                }
            }
            self.first += 1;
        }
    }

    /// Abandons every open epoch below `next` (a rewind after a failed delivery: what they
    /// produced is reprocessed); late acknowledgements of theirs are ignored.
    pub fn abandon_before(&mut self, next: u64) {
        self.open.clear();
        self.progress.clear();
        self.first = self.first.max(next);
    }

    /// The next offset after the last acknowledged record of changelog `topic`/`partition`
    /// among settled epochs.
    pub fn changelog_end(&self, topic: &str, partition: i32) -> Option<i64> {
        self.settled_ends
            .iter()
            .find(|((t, p), _)| **t == *topic && *p == partition)
            .map(|(_, e)| *e)
    }

    /// Forgets a changelog partition's end (a task starting there records only ends
    /// acknowledged from now on: after a broker lost its data, offsets start again lower).
    pub fn forget_changelog_end(&mut self, topic: &str, partition: i32) {
        self.settled_ends
            .retain(|(t, p), _| !(**t == *topic && *p == partition));
        for (_, ends) in &mut self.open {
            ends.retain(|(t, p), _| !(**t == *topic && *p == partition));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_epoch_settles_only_when_it_and_every_earlier_one_is_acknowledged() {
        let mut l = Ledger::default();
        l.sent(0);
        l.sent(0);
        l.sent(1);
        assert!(!l.settled_through(0));
        // A later epoch acknowledged first does not settle an earlier one.
        l.acked(1, None);
        assert!(!l.settled_through(0));
        assert!(!l.settled_through(1));
        l.acked(0, None);
        l.failed(0);
        assert!(l.settled_through(0));
        assert!(l.settled_through(1));
    }

    #[test]
    fn an_empty_epoch_is_settled() {
        let l = Ledger::default();
        assert!(l.settled_through(0));
        assert!(l.settled_through(7));
    }

    #[test]
    fn changelog_ends_count_only_from_closed_epochs() {
        let mut l = Ledger::default();
        l.sent(0);
        l.sent(1);
        l.acked(1, Some(("c", 0, 41)));
        l.acked(0, Some(("c", 0, 40)));
        assert_eq!(l.changelog_end("c", 0), None, "nothing closed yet");
        l.close_through(0);
        // Epoch 1's record is acknowledged but belongs to the next commit point.
        assert_eq!(l.changelog_end("c", 0), Some(41));
        l.close_through(1);
        assert_eq!(l.changelog_end("c", 0), Some(42));
        l.forget_changelog_end("c", 0);
        assert_eq!(l.changelog_end("c", 0), None);
    }

    #[test]
    fn progress_counts_acknowledgements_of_the_epoch_and_earlier_ones_only() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + std::time::Duration::from_secs(s);
        let mut l = Ledger::default();
        l.sent(0);
        l.sent(0);
        l.sent(1);
        l.sent(2);
        assert_eq!(l.progress_through(1), None);
        l.acked_at(0, None, at(1));
        l.acked_at(2, None, at(5));
        // A later epoch's acknowledgement is no progress of the earlier ones.
        assert_eq!(l.progress_through(1), Some(at(1)));
        l.acked_at(1, None, at(3));
        assert_eq!(l.progress_through(1), Some(at(3)));
        assert_eq!(l.progress_through(2), Some(at(5)));
        l.acked_at(0, None, at(4));
        l.close_through(0);
        // Closed epochs no longer count.
        assert_eq!(l.progress_through(1), Some(at(3)));
        l.abandon_before(3);
        assert_eq!(l.progress_through(3), None);
    }

    #[test]
    fn acknowledgements_of_abandoned_epochs_are_ignored() {
        let mut l = Ledger::default();
        l.sent(0);
        l.sent(1);
        l.abandon_before(2);
        assert!(l.settled_through(1));
        l.sent(2);
        // A late acknowledgement of an abandoned epoch must not settle epoch 2.
        l.acked(1, Some(("c", 0, 5)));
        assert!(!l.settled_through(2));
        l.acked(2, None);
        assert!(l.settled_through(2));
        l.close_through(2);
        assert_eq!(l.changelog_end("c", 0), None);
    }
}
