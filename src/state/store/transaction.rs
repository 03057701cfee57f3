//! [`TaskState`]: the stores of one task and its uncommitted writes — the per-task state
//! transaction.

use std::cell::RefCell;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;

use indexmap::IndexMap;

use super::{KvStore, RawEntries, StoreHandle};
use crate::engine::{Headers, Partitioning, Record, SinkRecord};
use crate::metrics::latency::StoreMetrics;
use crate::state::backend::{Backend, WriteSet};
use crate::state::cache::{CacheBudget, SeededKeyHash, StoreCache};
use crate::state::changelog::{encode_positions, POSITIONS_HEADER};
use crate::state::StateError;

const APPLIED_PREFIX: &str = "applied/";
const CHANGELOG_PREFIX: &str = "changelog/";
/// Read cache of a task opened without a shared budget (tests, tools).
const DEFAULT_TASK_CACHE_BYTES: usize = 8 << 20;

/// What a dirty entry costs beyond its key and value bytes: the map node, two `Vec`
/// headers, allocator rounding.
pub(super) const DIRTY_ENTRY_OVERHEAD: usize = 96;

/// One store of a task, as the task sees it.
#[derive(Clone, Debug)]
pub struct StoreSpec {
    /// Index of the store in the topology's declaration order.
    pub global: usize,
    pub name: String,
    /// Its changelog topic, if logged.
    pub changelog: Option<String>,
}

/// Uncommitted writes of one store, encoded key → encoded value (`None` is a delete).
///
/// A hash map, not an ordered one: every record looks its key up here two or three times
/// (a read checks the dirty and the staged writes, a write the dirty ones), and with a few
/// thousand keys per commit interval an ordered map's ~14 key comparisons per lookup were
/// ~4 % of the minimal topology's instructions (issue 15). Order is restored once, at the
/// commit point: the entries are sorted by key in place (an `IndexMap` keeps them in a
/// `Vec` beside its hash index), which orders the changelog records and, later, the local
/// write batch (RocksDB's memtable inserts a sorted batch far cheaper). Scans merge into an
/// ordered map. Keyed with the read cache's seeded xxh3 (customer ids come from outside).
pub(super) type Pending = IndexMap<Vec<u8>, Option<Vec<u8>>, SeededKeyHash>;

pub(super) fn pending() -> Pending {
    IndexMap::with_hasher(SeededKeyHash::random())
}

/// An empty [`Pending`] with room for `n` writes: the next commit interval's dirty map is
/// sized like the last one's, so it does not grow (rehash, copy its entries) on the way.
fn pending_with_capacity(n: usize) -> Pending {
    IndexMap::with_capacity_and_hasher(n, SeededKeyHash::random())
}

pub(super) struct StoreSlot {
    pub(super) name: String,
    pub(super) changelog: Option<Arc<str>>,
    /// Writes since the last commit point; `None` is a delete.
    pub(super) dirty: Pending,
    /// About what `dirty` holds in bytes: each entry's key and value when first written,
    /// plus [`DIRTY_ENTRY_OVERHEAD`] ([`TaskState::uncommitted_bytes`]).
    pub(super) dirty_bytes: usize,
    /// Writes of a prepared commit point whose changelog records are not acknowledged yet:
    /// not in the backend, but what reads must see (they sit between `dirty` and the
    /// cache). Processing goes on while a commit is in flight. Always in key order (sorted
    /// by [`TaskState::prepare_commit`]), so the local write batch needs no sort of its own.
    pub(super) staged: Pending,
    /// Committed entries read or written recently (reads take `&self`, hence the cell).
    pub(super) cache: RefCell<StoreCache>,
    /// Cache hits and misses, backend read and commit latency (when the runtime measures).
    pub(super) metrics: Option<StoreMetrics>,
    /// Reused for encoding the key of every `get`, `put` and `delete`: a read finds its
    /// entry without allocating, and only a new dirty or cached entry copies the key out.
    pub(super) key_buf: RefCell<Vec<u8>>,
    /// Reused for encoding values; each dirty value is one exact-size copy of it.
    pub(super) value_buf: Vec<u8>,
}

/// The stores of one task and its uncommitted writes.
pub struct TaskState {
    backend: Box<dyn Backend>,
    stores: Vec<StoreSlot>,
    /// (global store index, local index): a task has a few stores, and a short list
    /// looked up on every `view` beats a SipHash map.
    by_global: Vec<(usize, usize)>,
    partition: i32,
    /// Next offset per input partition whose effects are already in the backend:
    /// (topic, partition, next offset). Checked on every record; a task reads one
    /// partition of a few topics, so a short list beats hashing the topic name.
    applied: Vec<(String, i32, i64)>,
    /// Next offset per input partition processed since the last commit point: a task
    /// reads one partition of a few topics, so a short list (looked up on every record)
    /// beats a map.
    positions: Vec<(Arc<str>, i32, i64)>,
    /// Input positions of the prepared commit point, written with its data.
    staged_positions: Vec<(Arc<str>, i32, i64)>,
}

impl TaskState {
    /// Opens the state of the task owning `partition` over `backend`, whose store indexes
    /// follow `specs`, with a read cache of its own (8 MiB).
    pub fn open(
        backend: Box<dyn Backend>,
        specs: &[StoreSpec],
        partition: i32,
    ) -> Result<TaskState, StateError> {
        Self::open_with_cache(
            backend,
            specs,
            partition,
            CacheBudget::new(DEFAULT_TASK_CACHE_BYTES),
        )
    }

    /// [`open`](Self::open), with the read caches drawing on an instance-wide budget.
    pub fn open_with_cache(
        backend: Box<dyn Backend>,
        specs: &[StoreSpec],
        partition: i32,
        cache: Arc<CacheBudget>,
    ) -> Result<TaskState, StateError> {
        let mut applied = Vec::new();
        for (k, v) in backend.meta_with_prefix(APPLIED_PREFIX)? {
            if let (Some((topic, p)), Some(offset)) =
                (k[APPLIED_PREFIX.len()..].rsplit_once('/'), decode_i64(&v))
            {
                if let Ok(p) = p.parse() {
                    *applied_entry(&mut applied, topic, p, offset) = offset;
                }
            }
        }
        Ok(TaskState {
            backend,
            stores: specs
                .iter()
                .map(|s| StoreSlot {
                    name: s.name.clone(),
                    changelog: s.changelog.as_deref().map(Arc::from),
                    dirty: pending(),
                    dirty_bytes: 0,
                    staged: pending(),
                    cache: RefCell::new(StoreCache::new(cache.clone())),
                    metrics: cache.metrics().cloned(),
                    key_buf: RefCell::new(Vec::new()),
                    value_buf: Vec::new(),
                })
                .collect(),
            by_global: specs
                .iter()
                .enumerate()
                .map(|(i, s)| (s.global, i))
                .collect(),
            partition,
            applied,
            positions: Vec::new(),
            staged_positions: Vec::new(),
        })
    }

    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// Store names in local index order.
    pub fn store_names(&self) -> Vec<&str> {
        self.stores.iter().map(|s| s.name.as_str()).collect()
    }

    /// True when the record at `offset` was already applied to the stored state (a replay
    /// after a crash between the local write and the offset commit).
    pub fn is_applied(&self, topic: &str, partition: i32, offset: i64) -> bool {
        self.applied_next(topic, partition)
            .is_some_and(|next| offset < next)
    }

    /// The next offset of input `topic`/`partition` whose effects are not stored yet (what
    /// [`is_applied`](Self::is_applied) compares with), if any is recorded.
    pub fn applied_next(&self, topic: &str, partition: i32) -> Option<i64> {
        self.applied
            .iter()
            .find(|(t, p, _)| *p == partition && t == topic)
            .map(|&(_, _, next)| next)
    }

    /// Every stored input position (topic, partition, next offset not applied yet).
    pub fn applied_positions(&self) -> &[(String, i32, i64)] {
        &self.applied
    }

    /// Forgets the stored position of input `topic`/`partition`: that partition is shorter
    /// than it (the broker lost it, or it was re-created), so its records are new, not
    /// replays. The next commit stores the position reached from there.
    pub fn forget_applied(&mut self, topic: &str, partition: i32) {
        self.applied
            .retain(|(t, p, _)| !(*p == partition && t == topic));
    }

    /// Notes that the record at `offset` was processed in the current batch.
    pub fn record_position(&mut self, topic: &Arc<str>, partition: i32, offset: i64) {
        let found = self
            .positions
            .iter_mut()
            .find(|(t, p, _)| *p == partition && (Arc::ptr_eq(t, topic) || **t == **topic));
        match found {
            Some((_, _, next)) => *next = (*next).max(offset + 1),
            None => self.positions.push((topic.clone(), partition, offset + 1)),
        }
    }

    /// The typed view of a store, if it belongs to this task.
    pub fn view<K, V>(
        &mut self,
        handle: &StoreHandle<K, V>,
    ) -> Result<KvStore<'_, K, V>, StateError> {
        let local = self
            .by_global
            .iter()
            .find(|(global, _)| *global == handle.index)
            .map(|&(_, local)| local)
            .ok_or_else(|| StateError::UnknownStore(handle.name().to_string()))?;
        Ok(KvStore {
            slot: &mut self.stores[local],
            backend: self.backend.as_ref(),
            local,
            _types: PhantomData,
        })
    }

    /// About how many bytes the writes since the last commit point hold (they are copied
    /// again into changelog records when the point is prepared). The runtime prepares a
    /// point early when its tasks' writes reach its share of the memory budget.
    pub fn uncommitted_bytes(&self) -> usize {
        self.stores.iter().map(|s| s.dirty_bytes).sum()
    }

    /// Turns buffered writes into changelog records (appended to `out`) and stages them with
    /// the input positions reached: a commit point. Nothing is written locally until
    /// [`finish_commit`](Self::finish_commit); meanwhile reads see the staged values and
    /// processing goes on. Preparing again before finishing (a commit that failed) adds
    /// to the same staged set.
    pub fn prepare_commit(&mut self, timestamp: i64, out: &mut Vec<SinkRecord>) {
        // In (topic, partition) order, as the header and the metadata always were.
        self.positions
            .sort_unstable_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        let header: Option<Arc<[u8]>> = (!self.positions.is_empty()).then(|| {
            encode_positions(self.positions.iter().map(|(t, p, o)| (&**t, *p, *o))).into()
        });
        let dirty: usize = self.stores.iter().map(|s| s.dirty.len()).sum();
        out.reserve(dirty);
        for store in self.stores.iter_mut() {
            let capacity = store.dirty.len();
            let mut dirty = std::mem::replace(&mut store.dirty, pending_with_capacity(capacity));
            store.dirty_bytes = 0;
            // The commit point's one sort: changelog records in key order (as they always
            // were; the dirty map was ordered before), and the staged entries stay in it
            // for `finish_commit`'s local batch.
            dirty.sort_unstable_keys();
            if let Some(topic) = &store.changelog {
                for (key, value) in &dirty {
                    let mut headers = Headers::new();
                    if let Some(h) = &header {
                        headers.push_shared(POSITIONS_HEADER, h.clone());
                    }
                    out.push(SinkRecord {
                        topic: topic.clone(),
                        partitioning: Partitioning::Partition(self.partition),
                        record: Record {
                            key: Some(key.clone()),
                            value: value.clone(),
                            headers,
                            timestamp,
                            source: None,
                        },
                        dead_letter: None,
                    });
                }
            }
            if store.staged.is_empty() {
                // No commit in flight (the usual case): the dirty map becomes the staged
                // one whole, instead of being rebuilt entry by entry.
                store.staged = dirty;
            } else {
                // Later writes win, as they do in `dirty`. New keys land at the end: sorted
                // again (a retried commit point only).
                store.staged.extend(dirty);
                store.staged.sort_unstable_keys();
            }
        }
        for (topic, p, next) in std::mem::take(&mut self.positions) {
            match self
                .staged_positions
                .iter_mut()
                .find(|(t, q, _)| *q == p && **t == *topic)
            {
                Some((_, _, cur)) => *cur = (*cur).max(next),
                None => self.staged_positions.push((topic, p, next)),
            }
        }
    }

    /// After every output and changelog record of the prepared commit point is
    /// acknowledged: writes its staged data and input positions in one atomic batch, with
    /// each logged store's changelog end offset from `changelog_end(topic, partition)` (the
    /// next offset after the commit point's last changelog record).
    pub fn finish_commit(
        &mut self,
        changelog_end: &dyn Fn(&str, i32) -> Option<i64>,
    ) -> Result<(), StateError> {
        let mut staged = WriteSet::default();
        for (i, store) in self.stores.iter_mut().enumerate() {
            let from = staged.data.len();
            // In key order (the staged entries are sorted at the commit point): RocksDB's
            // memtable inserts a sorted batch far cheaper than a shuffled one (its skip list
            // resumes from the previous insert's position).
            staged.data.extend(
                std::mem::replace(&mut store.staged, pending())
                    .into_iter()
                    .map(|(k, v)| (i, k, v)),
            );
            debug_assert!(staged.data[from..].is_sorted_by(|a, b| a.1 <= b.1));
            if let Some(end) = store
                .changelog
                .as_deref()
                .and_then(|t| changelog_end(t, self.partition))
            {
                staged.meta.push((
                    format!("{CHANGELOG_PREFIX}{}", store.name),
                    end.to_be_bytes().to_vec(),
                ));
            }
        }
        let mut positions = std::mem::take(&mut self.staged_positions);
        positions.sort_unstable_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        for (topic, p, next) in &positions {
            staged.meta.push((
                format!("{APPLIED_PREFIX}{topic}/{p}"),
                next.to_be_bytes().to_vec(),
            ));
        }
        if staged.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        self.backend.write(&staged)?;
        if let Some(m) = self.stores.first().and_then(|s| s.metrics.as_ref()) {
            m.commit.observe(started.elapsed().as_secs_f64());
        }
        for (store, key, value) in staged.data {
            self.stores[store].cache.get_mut().put(key, value);
        }
        for (topic, p, next) in positions {
            *applied_entry(&mut self.applied, &topic, p, next) = next;
        }
        Ok(())
    }

    /// Logged stores with their changelog topic and the offset restore starts from
    /// (`None`: the beginning, no local state).
    pub fn changelogs(&self) -> Result<Vec<(usize, String, Option<i64>)>, StateError> {
        let mut out = Vec::new();
        for (i, s) in self.stores.iter().enumerate() {
            if let Some(topic) = &s.changelog {
                let from = self
                    .backend
                    .get_meta(&format!("{CHANGELOG_PREFIX}{}", s.name))?
                    .and_then(|v| decode_i64(&v));
                out.push((i, topic.to_string(), from));
            }
        }
        Ok(out)
    }

    /// Applies restored changelog records of local store `store` in one atomic batch and
    /// records `next_offset` as where the next restore continues. `positions` are the
    /// input positions of the applied records (the furthest per partition is kept).
    pub fn apply_restored(
        &mut self,
        store: usize,
        records: Vec<(Vec<u8>, Option<Vec<u8>>)>,
        next_offset: i64,
        positions: &HashMap<(String, i32), i64>,
    ) -> Result<(), StateError> {
        self.stores[store].cache.get_mut().clear();
        let name = &self.stores[store].name;
        let mut set = WriteSet {
            data: records.into_iter().map(|(k, v)| (store, k, v)).collect(),
            meta: vec![(
                format!("{CHANGELOG_PREFIX}{name}"),
                next_offset.to_be_bytes().to_vec(),
            )],
        };
        for ((topic, p), next) in positions {
            let cur = applied_entry(&mut self.applied, topic, *p, *next);
            *cur = (*cur).max(*next);
            set.meta.push((
                format!("{APPLIED_PREFIX}{topic}/{p}"),
                cur.to_be_bytes().to_vec(),
            ));
        }
        self.backend.write(&set)
    }

    /// Estimated keys per store, by name.
    pub fn approximate_sizes(&self) -> Vec<(&str, u64)> {
        self.stores
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.as_str(), self.backend.approximate_len(i)))
            .collect()
    }

    /// The current value of `key` (encoded) in the store named `store`, uncommitted writes
    /// included — what the task itself would read. For interactive queries.
    pub fn read_raw(&self, store: &str, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let local = self
            .stores
            .iter()
            .position(|s| s.name == store)
            .ok_or_else(|| StateError::UnknownStore(store.to_string()))?;
        let slot = &self.stores[local];
        if let Some(raw) = slot.dirty.get(key).or_else(|| slot.staged.get(key)) {
            return Ok(raw.clone());
        }
        self.backend.get(local, key)
    }

    /// Every committed entry of local store `store`, raw (for dumps and checks).
    pub fn raw_entries(&self, store: usize) -> Result<RawEntries, StateError> {
        let mut out = Vec::new();
        self.backend.scan(store, &[], None, &mut |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            true
        })?;
        Ok(out)
    }
}

/// The next applied offset of `topic`/`partition`, inserted as `initial` if absent.
fn applied_entry<'a>(
    applied: &'a mut Vec<(String, i32, i64)>,
    topic: &str,
    partition: i32,
    initial: i64,
) -> &'a mut i64 {
    let i = match applied
        .iter()
        .position(|(t, p, _)| *p == partition && t == topic)
    {
        Some(i) => i,
        None => {
            applied.push((topic.to_string(), partition, initial));
            applied.len() - 1
        }
    };
    &mut applied[i].2
}

fn decode_i64(v: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(v.try_into().ok()?))
}
