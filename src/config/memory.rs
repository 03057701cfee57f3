//! How `memory_budget_bytes` is split between the parts of the process that hold data in
//! proportion to load: librdkafka's fetch and producer queues, RocksDB's block cache and
//! memtables, and the read cache in front of the stores (docs/operations.md, "Memory").
//!
//! Each part is a fixed share of the budget unless its own key is set, which then wins for
//! that part alone. What is not in the budget (code, threads, the HTTP server, rules,
//! per-task bookkeeping, what the C libraries allocate beyond their bounds) is a fixed
//! cost, about 100 MiB as measured.

use super::Config;

/// The default budget (`memory_budget_bytes`): with it the minimal workload (one points
/// rule per event type, churn off) peaks below 150 MB RSS at 100,000 customers
/// (docs/operations.md, "Memory").
pub const DEFAULT_BUDGET: usize = 32 << 20;

/// The smallest budget accepted: it gives the group consumer's queue 1 MiB, one record of
/// the largest size accepted by default (`ingest.max_record_bytes`).
pub const MIN_BUDGET: usize = 16 << 20;

/// Bytes a queued Kafka message costs beyond its key and value, which librdkafka's byte
/// bounds do not count (its message and queue-entry structs, allocator rounding). Message
/// count bounds are derived from byte bounds at one message per this many bytes, so a queue
/// of small records cannot cost much more than its byte bound.
pub const BYTES_PER_QUEUED_MESSAGE: usize = 256;

/// The budget split into its parts, in bytes (counts where named so).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Records fetched ahead by the group consumer (`queued.max.messages.kbytes`).
    pub consumer_queue_bytes: usize,
    /// The same as a message count (`queued.min.messages`).
    pub consumer_queue_messages: usize,
    /// What one partition may return per fetch (`max.partition.fetch.bytes`): a fetch asks
    /// every assigned partition at once, and brokers that ignore the request's total
    /// (`fetch.max.bytes`), such as Tansu, return up to this from each.
    pub consumer_partition_fetch_bytes: usize,
    /// Records fetched ahead by the restore consumer, while restoring only.
    pub restore_queue_bytes: usize,
    /// The same as a message count.
    pub restore_queue_messages: usize,
    /// Outputs produced but not yet acknowledged (`runtime.max_in_flight_bytes`, the
    /// producer's `queue.buffering.max.kbytes`).
    pub producer_queue_bytes: usize,
    /// The same as a record count (`runtime.max_in_flight_records`,
    /// `queue.buffering.max.messages`).
    pub producer_queue_records: usize,
    /// RocksDB block cache of all tasks (`state.block_cache_bytes`).
    pub block_cache_bytes: usize,
    /// RocksDB memtables of all tasks (`state.write_buffer_bytes`), charged to the block
    /// cache, so not in addition to it while it is at most the block cache.
    pub write_buffer_bytes: usize,
    /// The read cache in front of the stores (`state.cache_bytes`).
    pub read_cache_bytes: usize,
}

impl MemoryPlan {
    /// The parts for `config`: shares of its budget, or the keys set for them.
    pub fn of(config: &Config) -> MemoryPlan {
        let sixteenth = config.memory_budget_bytes / 16;
        let state = &config.state;
        let runtime = &config.runtime;
        let consumer_queue_bytes = sixteenth;
        let restore_queue_bytes = 3 * sixteenth;
        let quarter = 4 * sixteenth;
        let producer_queue_bytes = runtime.max_in_flight_bytes.unwrap_or(quarter);
        let block_cache_bytes = state.block_cache_bytes.unwrap_or(quarter);
        MemoryPlan {
            consumer_queue_bytes,
            consumer_queue_messages: messages(consumer_queue_bytes),
            consumer_partition_fetch_bytes: (consumer_queue_bytes / 16).clamp(64 << 10, 1 << 20),
            restore_queue_bytes,
            restore_queue_messages: messages(restore_queue_bytes),
            producer_queue_bytes,
            producer_queue_records: runtime
                .max_in_flight_records
                .unwrap_or_else(|| messages(producer_queue_bytes)),
            block_cache_bytes,
            write_buffer_bytes: state
                .write_buffer_bytes
                .unwrap_or((block_cache_bytes / 2).max(1 << 20)),
            read_cache_bytes: state.cache_bytes.unwrap_or(quarter),
        }
    }

    /// The most the parts hold together (the memtables are inside the block cache unless
    /// set larger): the budget itself unless parts are set on their own keys.
    pub fn total_bytes(&self) -> usize {
        self.consumer_queue_bytes
            + self.restore_queue_bytes
            + self.producer_queue_bytes
            + self.block_cache_bytes.max(self.write_buffer_bytes)
            + self.read_cache_bytes
    }
}

fn messages(bytes: usize) -> usize {
    (bytes / BYTES_PER_QUEUED_MESSAGE).max(1000)
}

impl Config {
    /// How this configuration's memory budget is split ([`MemoryPlan::of`]).
    pub fn memory(&self) -> MemoryPlan {
        MemoryPlan::of(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_budget_is_split_in_sixteenths_and_quarters() {
        let plan = Config::default().memory();
        assert_eq!(
            plan,
            MemoryPlan {
                consumer_queue_bytes: 2 << 20,
                consumer_queue_messages: 8_192,
                consumer_partition_fetch_bytes: 128 << 10,
                restore_queue_bytes: 6 << 20,
                restore_queue_messages: 24_576,
                producer_queue_bytes: 8 << 20,
                producer_queue_records: 32_768,
                block_cache_bytes: 8 << 20,
                write_buffer_bytes: 4 << 20,
                read_cache_bytes: 8 << 20,
            }
        );
        assert_eq!(plan.total_bytes(), 32 << 20);
    }

    #[test]
    fn a_size_set_on_its_own_key_replaces_only_its_share() {
        let text = r#"
            memory_budget_bytes = "1 GiB"
            [state]
            block_cache_bytes = "100 MiB"
            cache_bytes = 0
        "#;
        let plan = Config::from_toml_with_env(Some(text), &|_| None)
            .unwrap()
            .memory();
        assert_eq!(plan.block_cache_bytes, 100 << 20);
        // The memtables follow the block cache they are charged to.
        assert_eq!(plan.write_buffer_bytes, 50 << 20);
        assert_eq!(plan.read_cache_bytes, 0);
        assert_eq!(plan.producer_queue_bytes, 256 << 20);
        assert_eq!(plan.consumer_queue_bytes, 64 << 20);
        // Capped at librdkafka's own default, 1 MiB.
        assert_eq!(plan.consumer_partition_fetch_bytes, 1 << 20);
        assert_eq!(plan.restore_queue_bytes, 192 << 20);
        assert_eq!(plan.total_bytes(), (64 + 192 + 256 + 100) << 20);
    }

    #[test]
    fn a_budget_below_the_minimum_is_an_error() {
        let err = Config::from_toml_with_env(Some("memory_budget_bytes = '1 MiB'"), &|_| None)
            .unwrap_err();
        assert_eq!(err.0[0].key, "memory_budget_bytes", "{err}");
    }
}
