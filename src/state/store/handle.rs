//! [`StoreHandle`]: a store declared on a topology, typed by its key and value.

use std::marker::PhantomData;
use std::sync::Arc;

/// A store declared on a topology, typed by its key and value. Obtained from
/// [`crate::engine::TopologyBuilder::add_state_store`] at build time and moved into the
/// processor factories; [`crate::engine::ProcessorContext::store`] turns it into a
/// [`KvStore`]. No lookup by name and no cast at run time.
pub struct StoreHandle<K, V> {
    pub(crate) index: usize,
    name: Arc<str>,
    _types: PhantomData<fn() -> (K, V)>,
}

impl<K, V> StoreHandle<K, V> {
    pub(crate) fn new(index: usize, name: &str) -> Self {
        StoreHandle {
            index,
            name: Arc::from(name),
            _types: PhantomData,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl<K, V> Clone for StoreHandle<K, V> {
    fn clone(&self) -> Self {
        StoreHandle {
            index: self.index,
            name: self.name.clone(),
            _types: PhantomData,
        }
    }
}

impl<K, V> std::fmt::Debug for StoreHandle<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreHandle({}#{})", self.name, self.index)
    }
}
