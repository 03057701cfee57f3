//! RocksDB backend: one database per task, one column family per store plus `__meta`, so
//! a single `WriteBatch` carries data and input positions together. Memory is bounded by
//! one block cache and one write buffer manager shared by every task of the process.

use std::path::{Path, PathBuf};

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, Options, ReadOptions, WriteBatch,
    WriteBufferManager, WriteOptions, DB,
};

use super::backend::{Backend, WriteSet};
use super::StateError;
use crate::config::{Config, StoreCompaction, StoreCompression};

const META_CF: &str = "__meta";

/// Memory limits shared by every RocksDB instance of the process.
#[derive(Clone)]
pub struct RocksResources {
    cache: Cache,
    write_buffers: WriteBufferManager,
    write_buffer_size: usize,
    compression: StoreCompression,
    compaction: StoreCompaction,
    mmap_reads: bool,
}

impl RocksResources {
    /// The resources `config` asks for: its memory plan's block cache and write buffers,
    /// and its `state` layout and read settings. What the runtime, the test driver and
    /// the restore bench open their stores with.
    pub fn for_config(config: &Config) -> RocksResources {
        let plan = config.memory();
        RocksResources::new(plan.block_cache_bytes, plan.write_buffer_bytes)
            .with_layout(config.state.compression, config.state.compaction)
            .with_mmap_reads(config.state.mmap_reads)
    }

    /// `block_cache_bytes` for the data blocks of all tasks (filters and indexes stay with
    /// their open tables);
    /// `write_buffer_bytes` for all memtables, charged against the same cache.
    pub fn new(block_cache_bytes: usize, write_buffer_bytes: usize) -> RocksResources {
        let cache = Cache::new_lru_cache(block_cache_bytes.max(1 << 20));
        let write_buffers = WriteBufferManager::new_write_buffer_manager_with_cache(
            write_buffer_bytes.max(1 << 20),
            false,
            cache.clone(),
        );
        RocksResources {
            cache,
            write_buffers,
            // Each store's memtable is a slice of the budget; the manager flushes early
            // when the sum goes over it.
            write_buffer_size: (write_buffer_bytes / 4).clamp(1 << 20, 64 << 20),
            compression: StoreCompression::default(),
            compaction: StoreCompaction::default(),
            mmap_reads: false,
        }
    }

    /// How the stores' files are compressed and compacted. The defaults are Kafka
    /// Streams' (no compression, universal compaction): LZ4 and level compaction cost
    /// 21 % more app CPU per event for the minimal workload and 18 % for the full
    /// topology end to end (BENCHMARKS.md stop 25).
    pub fn with_layout(
        mut self,
        compression: StoreCompression,
        compaction: StoreCompaction,
    ) -> RocksResources {
        self.compression = compression;
        self.compaction = compaction;
        self
    }

    /// Reads table files through a memory map instead of `pread` into the block cache:
    /// no system call, no copy and no checksum per block read. The mapped pages count in
    /// the process's resident memory (they are the page cache's, which a container's
    /// memory limit counts either way). 10 % less app CPU for the minimal workload, peak
    /// RSS +80 MB at 100,000 customers (BENCHMARKS.md stop 26). Off by default.
    pub fn with_mmap_reads(mut self, on: bool) -> RocksResources {
        self.mmap_reads = on;
        self
    }

    fn options(&self) -> Options {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_write_buffer_manager(&self.write_buffers);
        opts.set_write_buffer_size(self.write_buffer_size);
        opts.set_max_write_buffer_number(2);
        opts.set_max_background_jobs(2);
        opts.set_compression_type(match self.compression {
            StoreCompression::None => rocksdb::DBCompressionType::None,
            StoreCompression::Lz4 => rocksdb::DBCompressionType::Lz4,
        });
        opts.set_compaction_style(match self.compaction {
            StoreCompaction::Universal => rocksdb::DBCompactionStyle::Universal,
            StoreCompaction::Level => rocksdb::DBCompactionStyle::Level,
        });
        opts.set_keep_log_file_num(2);
        // With the WAL off (see `RocksBackend::open`), the stores and `__meta` must flush
        // together, or a crash could keep positions that do not match the data.
        opts.set_atomic_flush(true);
        opts.set_allow_mmap_reads(self.mmap_reads);
        // A whole-key bloom filter in the memtable: most reads of a customer never seen
        // before (or not since the last flush) miss, and without it each miss walks the
        // memtable's skip list (~10 % of the minimal topology's CPU, BENCHMARKS.md).
        opts.set_memtable_prefix_bloom_ratio(0.02);
        opts.set_memtable_whole_key_filtering(true);
        opts.set_max_open_files(256);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&self.cache);
        // Filters and indexes live with their open table (RocksDB's default), outside the
        // block cache: in the cache, shared with the memtables' charge, they were evicted
        // and read back for nearly every read of a customer missing the read cache, even
        // pinned in level 0 and at high priority — a filter block's checksum, an index
        // block's LZ4 and the read itself, ~8 % of the minimal workload's app CPU end to
        // end (perf, BENCHMARKS.md stop 24). They are small: ~10 bits per key.
        table.set_cache_index_and_filter_blocks(false);
        table.set_bloom_filter(10.0, false);
        opts.set_block_based_table_factory(&table);
        opts
    }
}

/// A task's stores in one RocksDB database.
pub struct RocksBackend {
    db: DB,
    stores: Vec<String>,
    path: PathBuf,
    write_options: WriteOptions,
}

impl RocksBackend {
    /// Opens (creating if needed) the database at `path` with a column family per store.
    pub fn open(
        path: &Path,
        stores: &[String],
        resources: &RocksResources,
    ) -> Result<RocksBackend, StateError> {
        let opts = resources.options();
        let cfs = stores
            .iter()
            .map(String::as_str)
            .chain([META_CF])
            .map(|name| ColumnFamilyDescriptor::new(name, resources.options()))
            .collect::<Vec<_>>();
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(|e| rocks_error(path, e))?;
        let mut write_options = WriteOptions::default();
        // No write-ahead log, as in Kafka Streams: the changelog is what makes a commit
        // durable. A crash loses the batches written since the last flush; with
        // `atomic_flush` every column family (the data and `__meta`'s positions) is
        // flushed at the same point, so what survives is an earlier commit, whole, and
        // restore brings the task forward from the changelog (docs/state.md). The WAL
        // was ~2 % of the topology's instructions per event and wrote every byte twice.
        write_options.disable_wal(true);
        Ok(RocksBackend {
            db,
            stores: stores.to_vec(),
            path: path.to_path_buf(),
            write_options,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn cf(&self, name: &str) -> Result<&rocksdb::ColumnFamily, StateError> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| StateError::UnknownStore(name.to_string()))
    }

    fn store_cf(&self, store: usize) -> Result<&rocksdb::ColumnFamily, StateError> {
        let name = self
            .stores
            .get(store)
            .ok_or_else(|| StateError::UnknownStore(format!("#{store}")))?;
        self.cf(name)
    }

    fn err(&self, e: rocksdb::Error) -> StateError {
        rocks_error(&self.path, e)
    }
}

fn rocks_error(path: &Path, e: rocksdb::Error) -> StateError {
    StateError::Rocks {
        path: path.to_path_buf(),
        message: e.into_string(),
    }
}

impl Backend for RocksBackend {
    fn get(&self, store: usize, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        let cf = self.store_cf(store)?;
        self.db
            .get_pinned_cf(cf, key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| self.err(e))
    }

    fn scan(
        &self,
        store: usize,
        from: &[u8],
        to: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StateError> {
        let cf = self.store_cf(store)?;
        let mut ro = ReadOptions::default();
        if let Some(to) = to {
            ro.set_iterate_upper_bound(to.to_vec());
        }
        let mut it = self.db.raw_iterator_cf_opt(cf, ro);
        it.seek(from);
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if !visit(k, v) {
                return Ok(());
            }
            it.next();
        }
        it.status().map_err(|e| self.err(e))
    }

    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StateError> {
        let cf = self.cf(META_CF)?;
        self.db
            .get_pinned_cf(cf, key.as_bytes())
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| self.err(e))
    }

    fn meta_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StateError> {
        let cf = self.cf(META_CF)?;
        let mut out = Vec::new();
        let mut it = self.db.raw_iterator_cf(cf);
        it.seek(prefix.as_bytes());
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if !k.starts_with(prefix.as_bytes()) {
                break;
            }
            out.push((String::from_utf8_lossy(k).into_owned(), v.to_vec()));
            it.next();
        }
        it.status().map_err(|e| self.err(e))?;
        Ok(out)
    }

    fn write(&mut self, set: &WriteSet) -> Result<(), StateError> {
        let mut batch = WriteBatch::default();
        // Entries come grouped by store: look each column family up once per run of them.
        let mut current: Option<(usize, &rocksdb::ColumnFamily)> = None;
        for (store, key, value) in &set.data {
            let cf = match current {
                Some((s, cf)) if s == *store => cf,
                _ => {
                    let cf = self.store_cf(*store)?;
                    current = Some((*store, cf));
                    cf
                }
            };
            match value {
                Some(v) => batch.put_cf(cf, key, v),
                None => batch.delete_cf(cf, key),
            }
        }
        let meta = self.cf(META_CF)?;
        for (k, v) in &set.meta {
            batch.put_cf(meta, k.as_bytes(), v);
        }
        self.db
            .write_opt(batch, &self.write_options)
            .map_err(|e| self.err(e))
    }

    fn approximate_len(&self, store: usize) -> u64 {
        self.store_cf(store)
            .ok()
            .and_then(|cf| {
                self.db
                    .property_int_value_cf(cf, "rocksdb.estimate-num-keys")
                    .ok()
                    .flatten()
            })
            .unwrap_or(0)
    }
}
