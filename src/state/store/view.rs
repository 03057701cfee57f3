//! [`KvStore`]: the typed view of one store that processors read and write through.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::transaction::{StoreSlot, DIRTY_ENTRY_OVERHEAD};
use crate::state::backend::Backend;
use crate::state::codec::{
    decode_key, decode_value, encode_key, encode_key_into, encode_value_into, prefix_end,
};
use crate::state::StateError;

/// A typed view of one store for the duration of a `process`/`punctuate` call. Reads see
/// the task's own uncommitted writes.
pub struct KvStore<'a, K, V> {
    pub(super) slot: &'a mut StoreSlot,
    pub(super) backend: &'a dyn Backend,
    pub(super) local: usize,
    pub(super) _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> KvStore<'_, K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    pub fn get(&self, key: &K) -> Result<Option<V>, StateError> {
        let mut k = self.slot.key_buf.borrow_mut();
        encode_key_into(&self.slot.name, key, &mut k)?;
        let decode = |raw: &Option<Vec<u8>>| {
            raw.as_deref()
                .map(|v| decode_value(&self.slot.name, v))
                .transpose()
        };
        if let Some(raw) = self
            .slot
            .dirty
            .get(k.as_slice())
            .or_else(|| self.slot.staged.get(k.as_slice()))
        {
            return decode(raw);
        }
        let mut cache = self.slot.cache.borrow_mut();
        let metrics = self.slot.metrics.as_ref();
        if let Some(raw) = cache.get(&k) {
            if let Some(m) = metrics {
                m.cache_hits.inc();
            }
            return decode(raw);
        }
        let started = metrics.map(|_| std::time::Instant::now());
        let raw = self.backend.get(self.local, &k)?;
        if let (Some(m), Some(t)) = (metrics, started) {
            m.cache_misses.inc();
            m.read.observe(t.elapsed().as_secs_f64());
        }
        let value = decode(&raw);
        cache.put(k.clone(), raw);
        value
    }

    pub fn put(&mut self, key: &K, value: &V) -> Result<(), StateError> {
        let slot = &mut *self.slot;
        let k = slot.key_buf.get_mut();
        encode_key_into(&slot.name, key, k)?;
        encode_value_into(&slot.name, value, &mut slot.value_buf)?;
        match slot.dirty.get_mut(k.as_slice()) {
            // Written before in this commit interval: overwrite in place.
            Some(Some(v)) => {
                v.clear();
                v.extend_from_slice(&slot.value_buf);
            }
            Some(deleted) => *deleted = Some(slot.value_buf.clone()),
            None => {
                slot.dirty_bytes += k.len() + slot.value_buf.len() + DIRTY_ENTRY_OVERHEAD;
                slot.dirty.insert(k.clone(), Some(slot.value_buf.clone()));
            }
        }
        Ok(())
    }

    pub fn delete(&mut self, key: &K) -> Result<(), StateError> {
        let slot = &mut *self.slot;
        let k = slot.key_buf.get_mut();
        encode_key_into(&slot.name, key, k)?;
        match slot.dirty.get_mut(k.as_slice()) {
            Some(entry) => *entry = None,
            None => {
                slot.dirty_bytes += k.len() + DIRTY_ENTRY_OVERHEAD;
                slot.dirty.insert(k.clone(), None);
            }
        }
        Ok(())
    }

    /// Entries whose key starts with the encoding of `prefix` (the leading fields of a
    /// tuple key), in key order.
    pub fn prefix_scan<P: Serialize + ?Sized>(
        &self,
        prefix: &P,
    ) -> Result<Vec<(K, V)>, StateError> {
        let from = encode_key(&self.slot.name, prefix)?;
        let to = prefix_end(&from);
        self.scan_bytes(from, to)
    }

    /// Entries with `from <= key < to`, in key order.
    pub fn range(&self, from: &K, to: &K) -> Result<Vec<(K, V)>, StateError> {
        let from = encode_key(&self.slot.name, from)?;
        let to = encode_key(&self.slot.name, to)?;
        self.scan_bytes(from, Some(to))
    }

    /// Every entry, in key order.
    pub fn all(&self) -> Result<Vec<(K, V)>, StateError> {
        self.scan_bytes(Vec::new(), None)
    }

    /// Deletes every entry with `from <= key < to`; returns how many.
    pub fn delete_range(&mut self, from: &K, to: &K) -> Result<usize, StateError> {
        let from = encode_key(&self.slot.name, from)?;
        let to = encode_key(&self.slot.name, to)?;
        let keys = self.merged(from, Some(to))?;
        let n = keys.len();
        for (k, _) in keys {
            self.slot.dirty_bytes += k.len() + DIRTY_ENTRY_OVERHEAD;
            self.slot.dirty.insert(k, None);
        }
        Ok(n)
    }

    fn merged(
        &self,
        from: Vec<u8>,
        to: Option<Vec<u8>>,
    ) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, StateError> {
        let mut merged = BTreeMap::new();
        self.backend
            .scan(self.local, &from, to.as_deref(), &mut |k, v| {
                merged.insert(k.to_vec(), v.to_vec());
                true
            })?;
        // Staged (prepared, not yet written) writes over the backend, then this batch's.
        // Pending writes are unordered: each is checked against the range.
        let in_range = |k: &[u8]| k >= from.as_slice() && to.as_deref().is_none_or(|to| k < to);
        for layer in [&self.slot.staged, &self.slot.dirty] {
            for (k, v) in layer.iter().filter(|(k, _)| in_range(k)) {
                match v {
                    Some(v) => merged.insert(k.clone(), v.clone()),
                    None => merged.remove(k),
                };
            }
        }
        Ok(merged)
    }

    fn scan_bytes(&self, from: Vec<u8>, to: Option<Vec<u8>>) -> Result<Vec<(K, V)>, StateError> {
        self.merged(from, to)?
            .into_iter()
            .map(|(k, v)| {
                Ok((
                    decode_key(&self.slot.name, &k)?,
                    decode_value(&self.slot.name, &v)?,
                ))
            })
            .collect()
    }
}
