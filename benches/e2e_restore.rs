//! End-to-end restore (not criterion): 1,000,000 customers' game states are written to the
//! `customer-state` changelog of a fresh application on a real broker, then restored from
//! the broker into RocksDB with the default state settings, as a new owner with an empty
//! disk would. Prints the time, the rate and the process's peak RSS.
//!
//! Needs a broker: `scripts/load-ingest.sh 1000000 e2e_restore` starts Tansu and runs this
//! with `SCORESTREAM_BENCH_BOOTSTRAP` set; without it, it explains and exits 0.
//! `SCORESTREAM_BENCH_EVENTS` sets the key count; `SCORESTREAM_BENCH_EXTRA_TOML` is merged over
//! the default configuration (e.g. `state.compression`, `state.compaction`).

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use scorestream::config::Config;
use scorestream::engine::changelog_topic;
use scorestream::gamification::CustomerGameState;
use scorestream::runtime::dump::restore_all;
use scorestream::runtime::RuntimeError;
use scorestream::state::codec::{encode_key, encode_value};
use scorestream::state::{Backend, RocksBackend, RocksResources};
use scorestream::topology;
use scorestream::topology::game::{StoredGameState, STATE_STORE as TOTALS_STORE};

const PARTITIONS: i32 = 4;

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let Ok(bootstrap) = std::env::var("SCORESTREAM_BENCH_BOOTSTRAP") else {
        println!("e2e_restore needs a broker: run scripts/load-ingest.sh 1000000 e2e_restore");
        return;
    };
    let keys: u64 = std::env::var("SCORESTREAM_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let app_id = format!("restore-bench-{:08x}", rand::random::<u32>());
    // `SCORESTREAM_BENCH_EXTRA_TOML`, e.g. `[state]` settings, over the defaults.
    let base = match std::env::var("SCORESTREAM_BENCH_EXTRA_TOML") {
        Ok(text) => Config::from_toml_with_env(Some(&text), &|_| None)
            .expect("SCORESTREAM_BENCH_EXTRA_TOML is not a valid configuration"),
        Err(_) => Config::default(),
    };
    let mut config = Config {
        application_id: app_id.clone(),
        bootstrap_servers: bootstrap.clone(),
        ..base
    };
    config.runtime.replication_factor = 1;
    let parts = topology::Components::load(&config).unwrap();
    let topology = topology::build_topology(&config, &parts, None).unwrap();
    let totals_log = changelog_topic(&app_id, TOTALS_STORE);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let topics: Vec<String> = topology
        .internal_topics()
        .iter()
        .map(|t| t.name.clone())
        .chain(config.inputs.iter().cloned())
        .collect();
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(1)))
        .collect();
    for r in rt
        .block_on(admin.create_topics(new.iter(), &AdminOptions::new()))
        .unwrap()
    {
        r.unwrap();
    }

    println!("writing {keys} changelog records to {totals_log} ({PARTITIONS} partitions)");
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "500000")
        .create()
        .unwrap();
    for i in 0..keys {
        let key = encode_key(TOTALS_STORE, &format!("customer-{i:07}")).unwrap();
        let value = encode_value(
            TOTALS_STORE,
            &StoredGameState::V3({
                let mut s = CustomerGameState::default();
                s.profile.events = i % 50 + 1;
                s.profile.value_milli = (i % 1000) as i64 * 1000;
                s.profile.first_event_at = Some(1_700_000_000_000);
                s.profile.last_event_at = Some(1_700_000_000_000 + i as i64);
                s.points.insert("xp".into(), (i % 500) as i64);
                s
            }),
        )
        .unwrap();
        let mut rec = BaseRecord::<[u8], [u8]>::to(&totals_log)
            .key(&key)
            .payload(&value)
            .partition((i % PARTITIONS as u64) as i32);
        loop {
            match producer.send(rec) {
                Ok(()) => break,
                Err((_, back)) => {
                    rec = back;
                    producer.poll(Duration::from_millis(1));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120)).unwrap();
    drop(producer);
    let rss_before = peak_rss_mb();

    let dir = tempfile::tempdir().unwrap();
    let resources = RocksResources::for_config(&config);
    let root = dir.path().to_path_buf();
    let make = move |id: scorestream::engine::TaskId,
                     specs: &[scorestream::state::store::StoreSpec]|
          -> Result<Box<dyn Backend>, RuntimeError> {
        let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
        Ok(Box::new(
            RocksBackend::open(&root.join(id.to_string()), &names, &resources)
                .map_err(RuntimeError::State)?,
        ))
    };
    let mut restored_keys = 0u64;
    let started = Instant::now();
    let applied = restore_all(
        &config,
        &topology,
        Duration::from_secs(600),
        &make,
        &mut |state| {
            if let Some(i) = state
                .store_names()
                .iter()
                .position(|n| *n == "customer-state")
            {
                restored_keys += state.raw_entries(i).map_or(0, |e| e.len() as u64);
            }
            Ok(())
        },
    )
    .unwrap();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "restored {applied} records ({restored_keys} keys read back) in {secs:.2} s = {:.0} records/s",
        applied as f64 / secs
    );
    println!(
        "peak RSS: {:.0} MB after producing, {:.0} MB after restoring 1 store of {keys} customers (default state settings)",
        rss_before,
        peak_rss_mb()
    );
    let (sst, all) = disk_bytes(dir.path());
    println!(
        "on disk: {:.1} MB in table files, {:.1} MB in all files ({:?} compression, {:?} compaction)",
        sst as f64 / 1e6,
        all as f64 / 1e6,
        config.state.compression,
        config.state.compaction
    );
    assert_eq!(restored_keys, keys, "every key restored");
}

/// Bytes of RocksDB table files (`*.sst`) and of all files under `dir`.
fn disk_bytes(dir: &std::path::Path) -> (u64, u64) {
    let (mut sst, mut all) = (0, 0);
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            let (s, a) = disk_bytes(&path);
            sst += s;
            all += a;
        } else if let Ok(meta) = entry.metadata() {
            all += meta.len();
            if path.extension().is_some_and(|e| e == "sst") {
                sst += meta.len();
            }
        }
    }
    (sst, all)
}
