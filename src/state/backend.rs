//! The byte-level storage a task's stores live in, and the in-memory implementation.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::StateError;

/// Writes applied together: store data (`None` deletes) and metadata.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct WriteSet {
    /// `(store index, key, value)`.
    pub data: Vec<(usize, Vec<u8>, Option<Vec<u8>>)>,
    /// Metadata entries (input positions, changelog offsets).
    pub meta: Vec<(String, Vec<u8>)>,
}

impl WriteSet {
    pub fn is_empty(&self) -> bool {
        self.data.is_empty() && self.meta.is_empty()
    }
}

/// Storage for one task: several stores (by index) plus a metadata map, written atomically.
pub trait Backend: Send {
    fn get(&self, store: usize, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;

    /// Visits entries with `from <= key < to` (no upper bound when `to` is `None`) in byte
    /// order until `visit` returns false.
    fn scan(
        &self,
        store: usize,
        from: &[u8],
        to: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StateError>;

    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StateError>;

    /// Every metadata entry whose key starts with `prefix`.
    fn meta_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StateError>;

    /// Applies `batch` atomically: after a crash either all of it is visible or none.
    fn write(&mut self, batch: &WriteSet) -> Result<(), StateError>;

    /// An estimate of the number of keys in `store` (for metrics).
    fn approximate_len(&self, store: usize) -> u64;
}

/// Stores kept in `BTreeMap`s: for tests and small deployments. Nothing survives the
/// process; a task restores from its changelog every time it is assigned.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    stores: Vec<BTreeMap<Vec<u8>, Vec<u8>>>,
    meta: BTreeMap<String, Vec<u8>>,
}

impl MemoryBackend {
    pub fn new(stores: usize) -> MemoryBackend {
        MemoryBackend {
            stores: vec![BTreeMap::new(); stores],
            meta: BTreeMap::new(),
        }
    }

    fn store(&self, i: usize) -> Result<&BTreeMap<Vec<u8>, Vec<u8>>, StateError> {
        self.stores
            .get(i)
            .ok_or_else(|| StateError::UnknownStore(format!("#{i}")))
    }
}

impl Backend for MemoryBackend {
    fn get(&self, store: usize, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.store(store)?.get(key).cloned())
    }

    fn scan(
        &self,
        store: usize,
        from: &[u8],
        to: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StateError> {
        let upper = to.map_or(Bound::Unbounded, Bound::Excluded);
        for (k, v) in self
            .store(store)?
            .range::<[u8], _>((Bound::Included(from), upper))
        {
            if !visit(k, v) {
                break;
            }
        }
        Ok(())
    }

    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.meta.get(key).cloned())
    }

    fn meta_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StateError> {
        Ok(self
            .meta
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn write(&mut self, batch: &WriteSet) -> Result<(), StateError> {
        for (s, _, _) in &batch.data {
            self.store(*s)?;
        }
        for (s, k, v) in &batch.data {
            match v {
                Some(v) => self.stores[*s].insert(k.clone(), v.clone()),
                None => self.stores[*s].remove(k),
            };
        }
        self.meta.extend(batch.meta.iter().cloned());
        Ok(())
    }

    fn approximate_len(&self, store: usize) -> u64 {
        self.stores.get(store).map_or(0, |s| s.len() as u64)
    }
}
