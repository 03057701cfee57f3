//! Normalize + validate + encode throughput per core on seed-shaped events (issue target:
//! ≥ 1,000,000 events/s per core), and the cost of one maximal wide object: a record at the
//! 1 MiB limit holding ~90,000 distinct top-level keys (issue 16, item 3: the duplicate-key
//! check must stay linear in the member count).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode, Throughput};
use scorestream::generator::{Generator, GeneratorConfig};
use scorestream::ingest::mapping::NormalizerConfig;
use scorestream::ingest::{Normalizer, RawInput};
use std::hint::black_box;
use std::time::Duration;

/// The allocator the `scorestream` binary ships with (src/main.rs), so the numbers are the
/// product's: under glibc's malloc these loops spend ~14 % more in allocation.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A valid event as wide as the record size limit allows: ~90,000 short distinct keys.
fn wide_object(limit: usize) -> (usize, Vec<u8>) {
    let mut text =
        String::from(r#"{"customer_id":"c-1","event_type":"data_usage","timestamp":1717199000"#);
    let mut keys = 0;
    loop {
        let member = format!(r#","k{keys}":1"#);
        if text.len() + member.len() + 1 > limit {
            break;
        }
        text.push_str(&member);
        keys += 1;
    }
    text.push('}');
    (keys, text.into_bytes())
}

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

    let limit = NormalizerConfig::default().max_record_bytes;
    let (keys, wide) = wide_object(limit);
    let mut group = c.benchmark_group("ingest-wide");
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .throughput(Throughput::Elements(1));
    group.bench_function(
        format!(
            "normalize one maximal wide object ({} B, {keys} keys)",
            wide.len()
        ),
        |b| {
            b.iter(|| {
                let ev = n
                    .normalize(&RawInput {
                        topic: "customer-events",
                        value: Some(&wide),
                        kafka_timestamp_ms: Some(now),
                        now_ms: now,
                    })
                    .expect("valid");
                black_box(ev.attributes.len())
            })
        },
    );
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
