//! Store updates through the task transaction: read-modify-write of a per-customer total
//! (`get` + `put` through the typed view), then one batch commit (changelog records staged,
//! one atomic local write), for the RocksDB and the in-memory backend.
//!
//! `cargo bench --bench state`

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use scorestream::engine::{
    Processor, ProcessorContext, ProcessorError, Record, StoreDecl, TopicRef, TopologyBuilder,
};
use scorestream::state::store::StoreSpec;
use scorestream::state::{
    Backend, CacheBudget, MemoryBackend, RocksBackend, RocksResources, StoreHandle, TaskState,
};

/// The allocator the `scorestream` binary ships with (src/main.rs), so the numbers are the
/// product's: under glibc's malloc these loops spend ~14 % more in allocation.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: u64 = 10_000;
const CUSTOMERS: u64 = 100_000;

struct Noop;
impl Processor for Noop {
    fn process(&mut self, _: &mut ProcessorContext<'_>, _: Record) -> Result<(), ProcessorError> {
        Ok(())
    }
}

/// A small per-customer value (the size of a running total), so the numbers measure the
/// store, not serialization of a large value.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
struct CustomerTotals {
    events: u64,
    value_sum: f64,
    last_event_at: i64,
}

fn handle() -> (StoreHandle<String, CustomerTotals>, Vec<StoreSpec>) {
    let mut b = TopologyBuilder::new();
    b.add_source("src", &[TopicRef::external("in")]);
    b.add_processor("p", || Box::new(Noop), &["src"]);
    let h = b.add_state_store::<String, CustomerTotals>(
        StoreDecl {
            name: "totals".into(),
            logged: true,
        },
        &["p"],
    );
    let t = b.build("bench").unwrap();
    (h, t.store_specs(0))
}

fn run_batch(
    state: &mut TaskState,
    h: &StoreHandle<String, CustomerTotals>,
    start: u64,
    topic: &Arc<str>,
) {
    let mut out = Vec::with_capacity(BATCH as usize);
    for i in start..start + BATCH {
        state.record_position(topic, 0, i as i64);
        let key = format!("c{}", (i * 7919) % CUSTOMERS);
        let mut store = state.view(h).unwrap();
        let mut t = store.get(&key).unwrap().unwrap_or_default();
        t.events += 1;
        t.value_sum += 1.0;
        t.last_event_at = i as i64;
        store.put(&key, &t).unwrap();
    }
    state.prepare_commit(0, &mut out);
    let n = out.len() as i64;
    state.finish_commit(&|_, _| Some(n)).unwrap();
}

fn bench(c: &mut Criterion) {
    let (h, specs) = handle();
    let topic: Arc<str> = Arc::from("in");
    let mut g = c.benchmark_group("store_updates");
    g.throughput(Throughput::Elements(BATCH));
    g.sample_size(20);

    // The defaults `scorestream run` uses (the default memory budget's block cache, write
    // buffers and read cache); then the same with the read cache off.
    let defaults = scorestream::config::Config::default().memory();
    let dir = tempfile::tempdir().unwrap();
    let resources = RocksResources::new(defaults.block_cache_bytes, defaults.write_buffer_bytes);
    for (name, cache) in [
        ("rocksdb_get_put_commit", defaults.read_cache_bytes),
        ("rocksdb_no_read_cache_get_put_commit", 0),
    ] {
        let backend: Box<dyn Backend> = Box::new(
            RocksBackend::open(&dir.path().join(name), &["totals".into()], &resources).unwrap(),
        );
        let mut rocks =
            TaskState::open_with_cache(backend, &specs, 0, CacheBudget::new(cache)).unwrap();
        let mut next = 0;
        g.bench_function(name, |b| {
            b.iter_batched(
                || {
                    next += BATCH;
                    next
                },
                |start| run_batch(&mut rocks, &h, start, &topic),
                BatchSize::SmallInput,
            )
        });
    }

    let mut memory = TaskState::open_with_cache(
        Box::new(MemoryBackend::new(1)),
        &specs,
        0,
        CacheBudget::new(0),
    )
    .unwrap();
    let mut next = 0;
    g.bench_function("memory_get_put_commit", |b| {
        b.iter_batched(
            || {
                next += BATCH;
                next
            },
            |start| run_batch(&mut memory, &h, start, &topic),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
