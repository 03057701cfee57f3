//! A read cache of committed store entries, in front of the backend.
//!
//! Most events update the customer they concern: a get, then a put of the same key. Without
//! a cache every get is a RocksDB lookup through the memtable's skip list and the block
//! cache (half the time of a store update, measured in `benches/state.rs`). Kafka Streams
//! puts a record cache in front of its stores for the same reason.
//!
//! The cache only ever holds what the backend holds: it is filled by reads that missed and by
//! writes once they are committed locally, never by uncommitted writes (those live in the
//! task's dirty map), so dropping a task's uncommitted work never leaves a stale entry.
//!
//! Eviction is generational: entries live in a young and an old map; a hit in the old map
//! moves the entry to the young one; when the young map outgrows half the budget, the old
//! map is dropped and the young one becomes old. Hot keys stay, cold keys go, every
//! operation is O(1), and the bytes held stay under the budget.
//!
//! Keys are hashed with xxh3, seeded at random per cache, in one call per key: std's default
//! SipHash was ~4 % of a store update in `benches/state.rs` (a key is hashed on every read
//! and again when its committed value is cached). The random seed keeps the hash keyed, as
//! std's is: customer ids come from outside, and a fixed function would let anyone compute
//! colliding keys offline.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use crate::metrics::latency::StoreMetrics;

/// Per-entry bookkeeping on top of key and value bytes (map slot, two `Vec` headers).
const ENTRY_OVERHEAD: usize = 64;

/// The memory shared by the caches of every store of every task of an instance. Each store
/// of each task that has cached anything may hold `total / stores` bytes, recomputed as
/// tasks come and go. A store nobody reads by key takes no share and caches nothing: the
/// leaderboards' store when the rules have no boards (counted from the start, it halved
/// the customers' store's cache), and the churn branch's inactivity index, which is written
/// on every event but only ever scanned (its committed writes took a third of the bundled
/// topology's cache, so that a larger budget bought that topology no hits: BENCHMARKS.md
/// stop 29).
#[derive(Debug)]
pub struct CacheBudget {
    total: usize,
    /// Caches holding a share: those that have cached an entry and are not dropped.
    stores: AtomicUsize,
    /// Hits, misses and backend latency of every store drawing on this budget, once the
    /// runtime attaches its metrics.
    metrics: OnceLock<StoreMetrics>,
}

impl CacheBudget {
    pub fn new(total_bytes: usize) -> Arc<CacheBudget> {
        Arc::new(CacheBudget {
            total: total_bytes,
            stores: AtomicUsize::new(0),
            metrics: OnceLock::new(),
        })
    }

    /// Counts cache hits and misses and times backend reads and commits into `metrics`
    /// (the first call wins).
    pub fn observe_with(&self, metrics: StoreMetrics) {
        let _ = self.metrics.set(metrics);
    }

    pub fn metrics(&self) -> Option<&StoreMetrics> {
        self.metrics.get()
    }

    fn share(&self) -> usize {
        self.total / self.stores.load(Ordering::Relaxed).max(1)
    }
}

/// A cached lookup: `None` caches "no such key" (absent keys are looked up too).
pub type Cached = Option<Vec<u8>>;

/// Builds [`KeyHasher`]s with one random seed.
#[derive(Clone, Debug)]
pub struct SeededKeyHash {
    seed: u64,
}

impl SeededKeyHash {
    pub fn random() -> SeededKeyHash {
        SeededKeyHash {
            seed: rand::random(),
        }
    }
}

impl BuildHasher for SeededKeyHash {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher { state: self.seed }
    }
}

/// Hashes byte-string keys: a `Vec<u8>` or `[u8]` key is written as its length, then its
/// bytes in one `write`, which is one xxh3 call seeded with the state so far.
#[derive(Debug)]
pub struct KeyHasher {
    state: u64,
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.state = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.state);
    }

    fn write_usize(&mut self, n: usize) {
        // The length prefix: folded into the seed of the next `write` (golden-ratio mix).
        self.state = (self.state ^ n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.state
    }
}

type KeyMap = HashMap<Vec<u8>, Cached, SeededKeyHash>;

/// The read cache of one store of one task.
pub struct StoreCache {
    budget: Arc<CacheBudget>,
    young: KeyMap,
    old: KeyMap,
    young_bytes: usize,
    old_bytes: usize,
    /// Whether this cache holds a share of the budget (from its first entry on).
    counted: bool,
    /// Whether the store has been read by key: until then committed writes are not
    /// cached (nothing would read them back).
    read: bool,
}

impl StoreCache {
    pub fn new(budget: Arc<CacheBudget>) -> StoreCache {
        let hash = SeededKeyHash::random();
        StoreCache {
            budget,
            young: HashMap::with_hasher(hash.clone()),
            old: HashMap::with_hasher(hash),
            young_bytes: 0,
            old_bytes: 0,
            counted: false,
            read: false,
        }
    }

    /// The cached entry for `key`, if cached.
    pub fn get(&mut self, key: &[u8]) -> Option<&Cached> {
        self.read = true;
        if !self.young.contains_key(key) {
            let (k, v) = self.old.remove_entry(key)?;
            let size = entry_size(&k, &v);
            self.old_bytes -= size;
            self.insert_young(k, v, size);
        }
        self.young.get(key)
    }

    /// Remembers the committed value of `key`, once the store has been read by key
    /// ([`get`](Self::get) first). Skipping a store never read leaves nothing stale: its
    /// cache is empty until then.
    pub fn put(&mut self, key: Vec<u8>, value: Cached) {
        if !self.read {
            return;
        }
        if let Some(old) = self.old.remove(key.as_slice()) {
            self.old_bytes -= entry_size(&key, &old);
        }
        let size = entry_size(&key, &value);
        self.insert_young(key, value, size);
    }

    /// Forgets everything (the backend was written behind the cache's back, e.g. restore).
    pub fn clear(&mut self) {
        self.young.clear();
        self.old.clear();
        self.young_bytes = 0;
        self.old_bytes = 0;
    }

    /// Bytes held (keys, values and per-entry overhead).
    pub fn bytes(&self) -> usize {
        self.young_bytes + self.old_bytes
    }

    pub fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn insert_young(&mut self, key: Vec<u8>, value: Cached, size: usize) {
        if !self.counted {
            self.budget.stores.fetch_add(1, Ordering::Relaxed);
            self.counted = true;
        }
        let share = self.budget.share();
        if size > share / 2 {
            // Too big to cache: the key's previous entry (if young) must go too, or the next
            // read would return that older value instead of this one from the backend.
            if let Some(prev) = self.young.remove(key.as_slice()) {
                self.young_bytes -= entry_size(&key, &prev);
            }
            return;
        }
        let key_len = key.len();
        if let Some(prev) = self.young.insert(key, value) {
            self.young_bytes -= ENTRY_OVERHEAD + key_len + prev.map_or(0, |v| v.len());
        }
        self.young_bytes += size;
        if self.young_bytes > share / 2 {
            let empty = HashMap::with_hasher(self.young.hasher().clone());
            self.old = std::mem::replace(&mut self.young, empty);
            self.old_bytes = self.young_bytes;
            self.young_bytes = 0;
        }
    }
}

impl Drop for StoreCache {
    fn drop(&mut self) {
        if self.counted {
            self.budget.stores.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

fn entry_size(key: &[u8], value: &Cached) -> usize {
    ENTRY_OVERHEAD + key.len() + value.as_ref().map_or(0, |v| v.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cache of a store that has been read by key (a miss), so it caches commits.
    fn read_store(budget: Arc<CacheBudget>) -> StoreCache {
        let mut c = StoreCache::new(budget);
        assert!(c.get(b"").is_none());
        c
    }

    #[test]
    fn a_store_never_read_by_key_caches_nothing_and_takes_no_share() {
        let budget = CacheBudget::new(1 << 20);
        let mut index = StoreCache::new(budget.clone());
        index.put(b"k".to_vec(), Some(vec![1]));
        index.put(b"gone".to_vec(), None);
        assert_eq!((index.len(), index.bytes()), (0, 0));
        assert_eq!(budget.stores.load(Ordering::Relaxed), 0, "took a share");
        // Read once, it caches what is read and what is committed from then on.
        assert!(index.get(b"k").is_none());
        index.put(b"k".to_vec(), Some(vec![2]));
        assert_eq!(index.get(b"k"), Some(&Some(vec![2])));
        assert_eq!(budget.stores.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn hits_what_was_put_and_misses_what_was_not() {
        let mut c = read_store(CacheBudget::new(1 << 20));
        c.put(b"a".to_vec(), Some(b"1".to_vec()));
        c.put(b"gone".to_vec(), None);
        assert_eq!(c.get(b"a"), Some(&Some(b"1".to_vec())));
        assert_eq!(c.get(b"gone"), Some(&None));
        assert_eq!(c.get(b"b"), None);
        c.put(b"a".to_vec(), Some(b"22".to_vec()));
        assert_eq!(c.get(b"a"), Some(&Some(b"22".to_vec())));
    }

    #[test]
    fn stays_within_its_share_of_the_budget_and_keeps_hot_keys() {
        let budget = CacheBudget::new(64 * 1024);
        let mut c = read_store(budget.clone());
        // A store in use takes its half of the budget; one never used takes nothing.
        let mut other_store = read_store(budget.clone());
        other_store.put(b"x".to_vec(), None);
        let _unused_store = StoreCache::new(budget);
        let share = 32 * 1024;
        for i in 0..10_000u32 {
            c.put(i.to_be_bytes().to_vec(), Some(vec![0; 100]));
            // Key 7 is read all the time; it must survive every rotation.
            assert!(
                c.get(&7u32.to_be_bytes()).is_some() || i < 7,
                "hot key evicted at {i}"
            );
            assert!(
                c.bytes() <= share,
                "{} bytes over a {share}-byte share",
                c.bytes()
            );
        }
        assert!(
            c.len() > 50,
            "cache keeps a useful number of entries: {}",
            c.len()
        );
        assert!(c.get(&0u32.to_be_bytes()).is_none(), "cold key evicted");
    }

    #[test]
    fn byte_accounting_survives_overwrites_and_promotions() {
        let mut c = read_store(CacheBudget::new(1 << 20));
        c.put(b"k".to_vec(), Some(vec![0; 10]));
        c.put(b"k".to_vec(), Some(vec![0; 30]));
        assert_eq!(c.bytes(), ENTRY_OVERHEAD + 1 + 30);
        c.put(b"k".to_vec(), None);
        assert_eq!(c.bytes(), ENTRY_OVERHEAD + 1);
        c.clear();
        assert_eq!((c.bytes(), c.len()), (0, 0));
    }

    #[test]
    fn a_value_too_big_to_cache_evicts_the_keys_older_entry() {
        // A 1000-byte budget: 500 bytes a generation. Small values are cached, big ones are
        // not, and a big one must not leave the key's older small value behind (a stale read).
        let mut c = read_store(CacheBudget::new(1000));
        for (round, len) in [10, 600, 20, 700, 0, 900].into_iter().enumerate() {
            let value = Some(vec![round as u8; len]);
            c.put(b"k".to_vec(), value.clone());
            match c.get(b"k") {
                Some(cached) => assert_eq!(cached, &value, "round {round}: stale value"),
                None => assert!(
                    len > 400,
                    "round {round}: a {len}-byte value was not cached"
                ),
            }
            assert!(c.bytes() <= 500, "round {round}: {} bytes", c.bytes());
        }
        // Also when the older entry was promoted from the old generation on a read: four
        // more entries rotate the generations, the read brings `k` back to the young one.
        c.put(b"k".to_vec(), Some(vec![1; 50]));
        for i in 0..4u8 {
            c.put(vec![i], Some(vec![0; 40]));
        }
        assert_eq!(c.get(b"k"), Some(&Some(vec![1; 50])));
        c.put(b"k".to_vec(), Some(vec![2; 800]));
        assert_eq!(c.get(b"k"), None, "a stale entry survived a too-big put");
    }

    #[test]
    fn only_stores_that_cached_something_share_the_budget() {
        let budget = CacheBudget::new(1 << 20);
        let mut a = read_store(budget.clone());
        let b = StoreCache::new(budget.clone());
        a.put(b"k".to_vec(), Some(vec![1]));
        assert_eq!(budget.share(), 1 << 20, "an unused store took a share");
        let mut c = read_store(budget.clone());
        c.put(b"k".to_vec(), None);
        assert_eq!(budget.share(), 1 << 19);
        drop((b, c));
        assert_eq!(budget.share(), 1 << 20, "a dropped store kept its share");
        drop(a);
        assert_eq!(budget.stores.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn an_entry_larger_than_half_the_share_is_not_cached() {
        let mut c = read_store(CacheBudget::new(1000));
        c.put(b"big".to_vec(), Some(vec![0; 600]));
        assert!(c.get(b"big").is_none());
    }
}
