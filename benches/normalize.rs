//! Normalize + validate + encode throughput per core on seed-shaped events (issue target:
//! ≥ 1,000,000 events/s per core).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use scorestream::generator::{Generator, GeneratorConfig};
use scorestream::ingest::mapping::NormalizerConfig;
use scorestream::ingest::{Normalizer, RawInput};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    let now = 1_717_200_000_000;
    let mut g = Generator::new(GeneratorConfig {
        bad_ratio: 0.0,
        ..GeneratorConfig::default()
    });
    let events: Vec<(&'static str, Vec<u8>)> = (0..1000)
        .map(|_| {
            let e = g.next_event(now);
            (e.topic, e.value)
        })
        .collect();
    let avg = events.iter().map(|(_, v)| v.len()).sum::<usize>() / events.len();
    let n = Normalizer::new(NormalizerConfig::default());
    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function(format!("normalize+encode ({avg} B avg, seed mix)"), |b| {
        let mut buf = Vec::with_capacity(512);
        b.iter_batched_ref(
            || (),
            |_| {
                for (topic, value) in &events {
                    let ev = n
                        .normalize(&RawInput {
                            topic,
                            value: Some(value),
                            kafka_timestamp_ms: Some(now),
                            now_ms: now,
                        })
                        .expect("valid");
                    buf.clear();
                    ev.encode_into(&mut buf);
                    black_box(&buf);
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("serde_json::Value parse only (reference)", |b| {
        b.iter(|| {
            for (_, value) in &events {
                black_box(serde_json::from_slice::<serde_json::Value>(value).unwrap());
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
