//! One store test suite, run against the in-memory and the RocksDB backend: typed
//! put/get/delete/scans through the task transaction, atomic commits, reopen, restore
//! bookkeeping, and the replay-skip rule.

use std::collections::HashMap;
use std::sync::Arc;

use scorestream::engine::{
    Processor, ProcessorContext, ProcessorError, Record, SourcePosition, StoreDecl, TaskId,
    TopicRef, TopologyBuilder, TopologyTestDriver,
};
use scorestream::state::changelog::{decode_positions, POSITIONS_HEADER};
use scorestream::state::store::StoreSpec;
use scorestream::state::{
    Backend, MemoryBackend, RocksBackend, RocksResources, StoreHandle, TaskState, WriteSet,
};

/// Builds a topology only to obtain typed handles for stores "a" (String → u64) and
/// "b" ((String, u64) → String), then opens task states over a chosen backend.
struct Fixture {
    a: StoreHandle<String, u64>,
    b: StoreHandle<(String, u64), String>,
    specs: Vec<StoreSpec>,
}

struct Noop;
impl Processor for Noop {
    fn process(&mut self, _: &mut ProcessorContext<'_>, _: Record) -> Result<(), ProcessorError> {
        Ok(())
    }
}

fn fixture() -> Fixture {
    let mut b = TopologyBuilder::new();
    b.add_source("src", &[TopicRef::external("in")]);
    b.add_processor("p", || Box::new(Noop), &["src"]);
    let a = b.add_state_store::<String, u64>(
        StoreDecl {
            name: "a".into(),
            logged: true,
        },
        &["p"],
    );
    let bh = b.add_state_store::<(String, u64), String>(
        StoreDecl {
            name: "b".into(),
            logged: false,
        },
        &["p"],
    );
    let t = b.build("app").unwrap();
    Fixture {
        a,
        b: bh,
        specs: t.store_specs(0),
    }
}

enum Kind {
    Memory,
    Rocks(tempfile::TempDir, RocksResources),
}

impl Kind {
    fn backend(&self, specs: &[StoreSpec]) -> Box<dyn Backend> {
        match self {
            Kind::Memory => Box::new(MemoryBackend::new(specs.len())),
            Kind::Rocks(dir, res) => {
                let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
                Box::new(RocksBackend::open(&dir.path().join("0_0"), &names, res).unwrap())
            }
        }
    }
}

fn kinds() -> Vec<(&'static str, Kind)> {
    vec![
        ("memory", Kind::Memory),
        (
            "rocksdb",
            Kind::Rocks(
                tempfile::tempdir().unwrap(),
                RocksResources::new(8 << 20, 8 << 20),
            ),
        ),
    ]
}

fn commit(
    state: &mut TaskState,
    ends: &HashMap<String, i64>,
) -> Vec<scorestream::engine::SinkRecord> {
    let mut out = Vec::new();
    state.prepare_commit(1000, &mut out);
    state.finish_commit(&|t, _| ends.get(t).copied()).unwrap();
    out
}

#[test]
fn put_get_delete_and_scans_see_uncommitted_writes() {
    let f = fixture();
    for (name, kind) in kinds() {
        let mut s = TaskState::open(kind.backend(&f.specs), &f.specs, 0).unwrap();
        {
            let mut st = s.view(&f.a).unwrap();
            assert_eq!(st.get(&"x".to_string()).unwrap(), None, "{name}");
            st.put(&"x".into(), &1).unwrap();
            st.put(&"y".into(), &2).unwrap();
            assert_eq!(
                st.get(&"x".to_string()).unwrap(),
                Some(1),
                "{name}: read own write"
            );
        }
        commit(&mut s, &HashMap::new());
        {
            let mut st = s.view(&f.a).unwrap();
            assert_eq!(
                st.get(&"y".to_string()).unwrap(),
                Some(2),
                "{name}: committed"
            );
            st.delete(&"y".into()).unwrap();
            assert_eq!(
                st.get(&"y".to_string()).unwrap(),
                None,
                "{name}: own delete"
            );
            st.put(&"z".into(), &3).unwrap();
            let all: Vec<(String, u64)> = st.all().unwrap();
            assert_eq!(
                all,
                vec![("x".into(), 1), ("z".into(), 3)],
                "{name}: merged scan"
            );
        }
        {
            let mut b = s.view(&f.b).unwrap();
            for (board, n) in [
                ("day", 3u64),
                ("day", 1),
                ("week", 2),
                ("day", 2),
                ("da", 9),
            ] {
                b.put(&(board.to_string(), n), &format!("{board}{n}"))
                    .unwrap();
            }
        }
        commit(&mut s, &HashMap::new());
        let mut b = s.view(&f.b).unwrap();
        b.put(&("day".to_string(), 0), &"day0".into()).unwrap();
        let day: Vec<String> = b
            .prefix_scan("day")
            .unwrap()
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert_eq!(
            day,
            ["day0", "day1", "day2", "day3"],
            "{name}: prefix scan in order"
        );
        let range: Vec<u64> = b
            .range(&("day".into(), 1), &("day".into(), 3))
            .unwrap()
            .into_iter()
            .map(|(k, _)| k.1)
            .collect();
        assert_eq!(range, [1, 2], "{name}: half-open range");
        let n = b
            .delete_range(&("day".into(), 0), &("day".into(), 2))
            .unwrap();
        assert_eq!(n, 2, "{name}");
        assert_eq!(b.prefix_scan("day").unwrap().len(), 2, "{name}");
    }
}

#[test]
fn commit_emits_changelog_records_with_positions_and_tombstones() {
    let f = fixture();
    for (name, kind) in kinds() {
        let mut s = TaskState::open(kind.backend(&f.specs), &f.specs, 3).unwrap();
        let topic: Arc<str> = Arc::from("in");
        s.record_position(&topic, 3, 41);
        s.view(&f.a).unwrap().put(&"k".into(), &7).unwrap();
        s.view(&f.a).unwrap().delete(&"gone".into()).unwrap();
        s.view(&f.b)
            .unwrap()
            .put(&("x".into(), 1), &"v".into())
            .unwrap();
        let out = commit(&mut s, &[("app-a-changelog".to_string(), 2)].into());
        // Only the logged store "a" has a changelog.
        assert_eq!(out.len(), 2, "{name}");
        assert!(out.iter().all(|r| &*r.topic == "app-a-changelog"));
        assert!(out
            .iter()
            .all(|r| r.partitioning == scorestream::engine::Partitioning::Partition(3)));
        let tomb = out
            .iter()
            .find(|r| r.record.value.is_none())
            .expect("tombstone");
        let pos = decode_positions(tomb.record.headers.last(POSITIONS_HEADER).unwrap()).unwrap();
        assert_eq!(pos, vec![("in".to_string(), 3, 42)], "{name}");
        // The local write recorded where restore continues and what was applied.
        let logs = s.changelogs().unwrap();
        assert_eq!(
            logs,
            vec![(0, "app-a-changelog".to_string(), Some(2))],
            "{name}"
        );
        assert!(s.is_applied("in", 3, 41), "{name}");
        assert!(!s.is_applied("in", 3, 42), "{name}");
    }
}

/// A commit point's changelog records come in key order whatever order the keys were
/// written in (the pending writes are kept in a hash map; issue 15), and a range scan sees
/// exactly the pending writes inside its bounds.
#[test]
fn changelog_records_come_in_key_order_and_scans_keep_their_bounds() {
    let f = fixture();
    for (name, kind) in kinds() {
        let mut s = TaskState::open(kind.backend(&f.specs), &f.specs, 0).unwrap();
        // 500 keys of one length (encoded keys then sort as the strings do) in a scrambled
        // order, a few deleted.
        let keys: Vec<String> = (0..500u64)
            .map(|i| format!("k{:03}", (i * 7919) % 500))
            .collect();
        for (i, k) in keys.iter().enumerate() {
            let mut a = s.view(&f.a).unwrap();
            if i % 50 == 0 {
                a.delete(k).unwrap();
            } else {
                a.put(k, &(i as u64)).unwrap();
            }
            let mut b = s.view(&f.b).unwrap();
            b.put(&(k.clone(), i as u64 % 3), &k.clone()).unwrap();
        }
        let b = s.view(&f.b).unwrap();
        let from = ("k100".to_string(), 0);
        let to = ("k200".to_string(), 0);
        let seen: Vec<String> = b
            .range(&from, &to)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k.0)
            .collect();
        let mut expected: Vec<String> = keys
            .iter()
            .filter(|k| k.starts_with("k1"))
            .cloned()
            .collect();
        expected.sort();
        assert_eq!(seen, expected, "{name}");
        let out = commit(&mut s, &HashMap::new());
        let logged: Vec<&[u8]> = out
            .iter()
            .map(|r| r.record.key.as_deref().unwrap())
            .collect();
        assert_eq!(logged.len(), 500, "{name}");
        assert!(
            logged.windows(2).all(|w| w[0] < w[1]),
            "{name}: not in key order"
        );
    }
}

#[test]
fn nothing_is_written_locally_before_finish_commit() {
    let f = fixture();
    for (name, kind) in kinds() {
        let specs = f.specs.clone();
        let mut s = TaskState::open(kind.backend(&specs), &specs, 0).unwrap();
        s.record_position(&Arc::from("in"), 0, 9);
        s.view(&f.a).unwrap().put(&"k".into(), &1).unwrap();
        let mut out = Vec::new();
        s.prepare_commit(0, &mut out);
        assert_eq!(out.len(), 1);
        // The producer never acknowledged: the staged batch is dropped with the task.
        assert!(
            s.raw_entries(0).unwrap().is_empty(),
            "{name}: not written yet"
        );
        assert!(!s.is_applied("in", 0, 9), "{name}");
        drop(s);
        if let Kind::Rocks(..) = kind {
            let s = TaskState::open(kind.backend(&specs), &specs, 0).unwrap();
            assert!(
                s.raw_entries(0).unwrap().is_empty(),
                "{name}: nothing on disk"
            );
            assert!(!s.is_applied("in", 0, 9), "{name}");
        }
    }
}

#[test]
fn processing_goes_on_while_a_commit_point_waits_for_its_acknowledgements() {
    let f = fixture();
    for (name, kind) in kinds() {
        let specs = f.specs.clone();
        let mut s = TaskState::open(kind.backend(&specs), &specs, 0).unwrap();
        let topic: Arc<str> = Arc::from("in");
        s.view(&f.a).unwrap().put(&"k".into(), &1).unwrap();
        s.view(&f.a).unwrap().put(&"gone".into(), &5).unwrap();
        s.record_position(&topic, 0, 9);
        let mut first = Vec::new();
        s.prepare_commit(0, &mut first);
        // The commit point is prepared, not written: reads and scans see its values
        // (not what the backend or the cache hold), and new writes go on top of them.
        assert_eq!(
            s.view(&f.a).unwrap().get(&"k".into()).unwrap(),
            Some(1),
            "{name}"
        );
        s.view(&f.a).unwrap().put(&"k".into(), &2).unwrap();
        s.view(&f.a).unwrap().delete(&"gone".into()).unwrap();
        s.record_position(&topic, 0, 10);
        let all = s.view(&f.a).unwrap().all().unwrap();
        assert_eq!(all, vec![("k".to_string(), 2)], "{name}");
        let staged_key = first[0].record.key.clone().unwrap();
        assert!(s.read_raw("a", &staged_key).unwrap().is_some(), "{name}");
        // The first point settles: only its data and position are written.
        s.finish_commit(&|_, _| Some(2)).unwrap();
        let written: HashMap<Vec<u8>, Vec<u8>> = s.raw_entries(0).unwrap().into_iter().collect();
        assert_eq!(written.len(), 2, "{name}: k and gone from the first point");
        assert!(s.is_applied("in", 0, 9), "{name}");
        assert!(
            !s.is_applied("in", 0, 10),
            "{name}: the second point is not written"
        );
        assert_eq!(
            s.view(&f.a).unwrap().get(&"k".into()).unwrap(),
            Some(2),
            "{name}"
        );
        assert_eq!(
            s.view(&f.a).unwrap().get(&"gone".into()).unwrap(),
            None,
            "{name}"
        );
        // The second point: its changelog carries the newer value and the tombstone.
        let second = commit(&mut s, &HashMap::new());
        assert_eq!(second.len(), 2, "{name}");
        assert!(
            second.iter().any(|r| r.record.value.is_none()),
            "{name}: a tombstone"
        );
        assert!(s.is_applied("in", 0, 10), "{name}");
        assert_eq!(
            s.raw_entries(0).unwrap().len(),
            1,
            "{name}: gone is deleted"
        );
    }
}

/// A commit point prepared again before the first settled (its changelog records failed):
/// the second preparation adds to the staged set, later writes win, and nothing of the
/// first is lost.
#[test]
fn preparing_again_before_finishing_merges_the_staged_writes() {
    let f = fixture();
    for (name, kind) in kinds() {
        let specs = f.specs.clone();
        let mut s = TaskState::open(kind.backend(&specs), &specs, 0).unwrap();
        s.view(&f.a).unwrap().put(&"k".into(), &1).unwrap();
        s.view(&f.a).unwrap().put(&"first".into(), &10).unwrap();
        s.view(&f.a).unwrap().put(&"gone".into(), &5).unwrap();
        let mut out = Vec::new();
        s.prepare_commit(0, &mut out);
        s.view(&f.a).unwrap().put(&"k".into(), &2).unwrap();
        s.view(&f.a).unwrap().put(&"second".into(), &20).unwrap();
        // A new key that sorts before staged ones: the merged staged set is sorted again
        // (`finish_commit` checks its order in debug builds).
        s.view(&f.a).unwrap().put(&"ab".into(), &30).unwrap();
        s.view(&f.a).unwrap().delete(&"gone".into()).unwrap();
        s.prepare_commit(0, &mut out);
        assert_eq!(out.len(), 7, "{name}: each preparation logs its own writes");
        // In key order: keys are length-prefixed.
        let expected = vec![
            ("k".to_string(), 2),
            ("ab".to_string(), 30),
            ("first".to_string(), 10),
            ("second".to_string(), 20),
        ];
        assert_eq!(s.view(&f.a).unwrap().all().unwrap(), expected, "{name}");
        s.finish_commit(&|_, _| Some(7)).unwrap();
        assert_eq!(
            s.raw_entries(0).unwrap().len(),
            4,
            "{name}: gone is deleted"
        );
        assert_eq!(s.view(&f.a).unwrap().all().unwrap(), expected, "{name}");
    }
}

#[test]
fn rocksdb_state_survives_reopen_with_positions() {
    let f = fixture();
    let (_, kind) = kinds().pop().unwrap();
    {
        let mut s = TaskState::open(kind.backend(&f.specs), &f.specs, 0).unwrap();
        s.record_position(&Arc::from("in"), 0, 99);
        for i in 0..1000u64 {
            s.view(&f.a).unwrap().put(&format!("c{i}"), &i).unwrap();
        }
        commit(&mut s, &[("app-a-changelog".to_string(), 1000)].into());
    }
    let mut s = TaskState::open(kind.backend(&f.specs), &f.specs, 0).unwrap();
    assert!(s.is_applied("in", 0, 99));
    assert_eq!(s.changelogs().unwrap()[0].2, Some(1000));
    let st = s.view(&f.a).unwrap();
    assert_eq!(st.get(&"c500".to_string()).unwrap(), Some(500));
    assert_eq!(st.all().unwrap().len(), 1000);
    // Positions are per topic and partition: a later commit moves one, and forgetting one
    // leaves the others.
    s.record_position(&Arc::from("in"), 1, 7);
    s.record_position(&Arc::from("other"), 0, 3);
    commit(&mut s, &HashMap::new());
    assert_eq!(
        [("in", 0), ("in", 1), ("other", 0), ("other", 1)].map(|(t, p)| s.applied_next(t, p)),
        [Some(100), Some(8), Some(4), None]
    );
    s.forget_applied("in", 0);
    assert_eq!(
        [("in", 0), ("in", 1), ("other", 0)].map(|(t, p)| s.applied_next(t, p)),
        [None, Some(8), Some(4)]
    );
    assert!(!s.is_applied("in", 0, 5) && s.is_applied("in", 1, 7) && !s.is_applied("in", 1, 8));
}

#[test]
fn a_write_set_is_atomic_and_restore_batches_record_their_offset() {
    let f = fixture();
    for (name, kind) in kinds() {
        let mut backend = kind.backend(&f.specs);
        // A write naming a store that does not exist fails as a whole.
        let bad = WriteSet {
            data: vec![
                (0, b"k1".to_vec(), Some(b"v".to_vec())),
                (7, b"k2".to_vec(), Some(b"v".to_vec())),
            ],
            meta: vec![],
        };
        assert!(backend.write(&bad).is_err(), "{name}");
        assert_eq!(
            backend.get(0, b"k1").unwrap(),
            None,
            "{name}: no partial write"
        );
        let mut s = TaskState::open(backend, &f.specs, 0).unwrap();
        let positions = [(("in".to_string(), 0), 50)].into_iter().collect();
        let key = scorestream::state::codec::encode_key("a", &"r".to_string()).unwrap();
        let val = scorestream::state::codec::encode_value("a", &5u64).unwrap();
        s.apply_restored(0, vec![(key, Some(val))], 17, &positions)
            .unwrap();
        assert_eq!(s.changelogs().unwrap()[0].2, Some(17), "{name}");
        assert!(s.is_applied("in", 0, 49), "{name}");
        assert_eq!(
            s.view(&f.a).unwrap().get(&"r".to_string()).unwrap(),
            Some(5)
        );
    }
}

/// The read cache in front of the backend never answers with anything but the latest
/// write: uncommitted writes win over it, committed ones replace it, a restore (written
/// behind its back) invalidates it, and dropping uncommitted work leaves it unchanged.
#[test]
fn cached_reads_follow_commits_restores_and_dropped_work() {
    let f = fixture();
    for (name, kind) in kinds() {
        let ends: HashMap<String, i64> = HashMap::new();
        let key = "k".to_string();
        {
            let mut s = TaskState::open(kind.backend(&f.specs), &f.specs, 0).unwrap();
            assert_eq!(s.view(&f.a).unwrap().get(&key).unwrap(), None, "{name}");
            s.view(&f.a).unwrap().put(&key, &1).unwrap();
            assert_eq!(s.view(&f.a).unwrap().get(&key).unwrap(), Some(1), "{name}");
            commit(&mut s, &ends);
            assert_eq!(s.view(&f.a).unwrap().get(&key).unwrap(), Some(1), "{name}");
            s.view(&f.a).unwrap().put(&key, &2).unwrap();
            commit(&mut s, &ends);
            assert_eq!(s.view(&f.a).unwrap().get(&key).unwrap(), Some(2), "{name}");
            s.view(&f.a).unwrap().delete(&key).unwrap();
            commit(&mut s, &ends);
            assert_eq!(s.view(&f.a).unwrap().get(&key).unwrap(), None, "{name}");

            let encoded = scorestream::state::codec::encode_key("a", &key).unwrap();
            let val = scorestream::state::codec::encode_value("a", &7u64).unwrap();
            s.apply_restored(0, vec![(encoded, Some(val))], 1, &HashMap::new())
                .unwrap();
            assert_eq!(
                s.view(&f.a).unwrap().get(&key).unwrap(),
                Some(7),
                "{name}: restore seen"
            );
            // Uncommitted: visible to this task, then dropped with it.
            s.view(&f.a).unwrap().put(&key, &99).unwrap();
            assert_eq!(s.view(&f.a).unwrap().get(&key).unwrap(), Some(99), "{name}");
            if matches!(kind, Kind::Memory) {
                continue;
            }
        }
        let s = TaskState::open(kind.backend(&f.specs), &f.specs, 0).unwrap();
        let mut s = s;
        assert_eq!(
            s.view(&f.a).unwrap().get(&key).unwrap(),
            Some(7),
            "{name}: uncommitted write dropped"
        );
    }
}

/// A processor counting per key through a typed store; the driver commits after each record.
struct Count {
    store: StoreHandle<String, u64>,
}
impl Processor for Count {
    fn process(&mut self, ctx: &mut ProcessorContext<'_>, r: Record) -> Result<(), ProcessorError> {
        let k = String::from_utf8(r.key.clone().unwrap_or_default()).unwrap();
        let mut s = ctx.store(&self.store)?;
        let n = s.get(&k)?.unwrap_or(0) + 1;
        s.put(&k, &n)?;
        Ok(())
    }
}

/// A source feeding the counting processor "count", connected to store "counts"; with
/// `sneaky`, a second processor holds the same handle without being connected.
fn count_topology(sneaky: bool) -> (scorestream::engine::Topology, StoreHandle<String, u64>) {
    let mut b = TopologyBuilder::new();
    b.add_source("src", &[TopicRef::external("in")]);
    let h = b.add_state_store::<String, u64>(
        StoreDecl {
            name: "counts".into(),
            logged: true,
        },
        &["count"],
    );
    let h2 = h.clone();
    b.add_processor(
        "count",
        move || Box::new(Count { store: h2.clone() }),
        &["src"],
    );
    if sneaky {
        let h3 = h.clone();
        b.add_processor(
            "sneaky",
            move || Box::new(Count { store: h3.clone() }),
            &["src"],
        );
    }
    (b.build("app").unwrap(), h)
}

fn keyed(k: &str) -> Record {
    Record {
        key: Some(k.as_bytes().to_vec()),
        value: Some(b"v".to_vec()),
        headers: Default::default(),
        timestamp: 1,
        source: None,
    }
}

#[test]
fn processors_reach_stores_only_through_connected_handles() {
    let (t, _) = count_topology(true);
    let mut d = TopologyTestDriver::new(t, 0);
    let err = d.pipe("in", keyed("a")).unwrap_err().to_string();
    assert!(err.contains("not connected to store 'counts'"), "{err}");
}

#[test]
fn the_driver_commits_counts_and_replays_are_skipped() {
    let (topology, h_out) = count_topology(false);
    let mut d = TopologyTestDriver::new(topology.clone(), 0);
    for k in ["a", "b", "a"] {
        d.pipe("in", keyed(k)).unwrap();
    }
    let log = d.read_output("app-counts-changelog");
    assert_eq!(log.len(), 3, "one changelog record per commit and key");
    let id = TaskId {
        subtopology: 0,
        partition: 0,
    };
    let state = d.task_state(id).unwrap();
    assert!(state.is_applied("in", 0, 2));
    assert_eq!(
        state.view(&h_out).unwrap().get(&"a".to_string()).unwrap(),
        Some(2)
    );

    // A task over the same committed state skips a replayed record and applies a new one.
    let mut task = scorestream::engine::StreamTask::new(&topology, 0, 0);
    let specs = topology.store_specs(0);
    let mut backend = MemoryBackend::new(specs.len());
    let committed = d.task_state(id).unwrap();
    let mut set = WriteSet::default();
    for (k, v) in committed.raw_entries(0).unwrap() {
        set.data.push((0, k, Some(v)));
    }
    set.meta
        .push(("applied/in/0".into(), 3i64.to_be_bytes().to_vec()));
    backend.write(&set).unwrap();
    task.attach_state(TaskState::open(Box::new(backend), &specs, 0).unwrap());
    task.init(0).unwrap();
    let at = |offset| Record {
        key: Some(b"a".to_vec()),
        value: None,
        headers: Default::default(),
        timestamp: 1,
        source: Some(SourcePosition {
            topic: Arc::from("in"),
            partition: 0,
            offset,
        }),
    };
    assert!(
        !task.process("in", at(1), 0).unwrap(),
        "offset 1 was applied"
    );
    assert!(task.process("in", at(3), 0).unwrap(), "offset 3 is new");
    let v = task
        .state_mut()
        .unwrap()
        .view(&h_out)
        .unwrap()
        .get(&"a".to_string());
    assert_eq!(v.unwrap(), Some(3));
}

/// With the runtime's metrics attached to the cache budget, reads count as hits or misses
/// (a miss is timed as a backend read) and each local commit is timed.
#[test]
fn cache_hits_misses_and_store_latency_are_measured() {
    let f = fixture();
    let metrics = scorestream::metrics::Metrics::new();
    let budget = scorestream::state::CacheBudget::new(1 << 20);
    budget.observe_with(metrics.latency.store_metrics());
    let mut s = TaskState::open_with_cache(
        Box::new(MemoryBackend::new(f.specs.len())),
        &f.specs,
        0,
        budget,
    )
    .unwrap();
    // A miss; from it on the store caches its committed writes.
    assert_eq!(s.view(&f.a).unwrap().get(&"k".into()).unwrap(), None);
    s.view(&f.a).unwrap().put(&"k".into(), &1).unwrap();
    commit(&mut s, &HashMap::new());
    let st = s.view(&f.a).unwrap();
    assert_eq!(st.get(&"k".into()).unwrap(), Some(1)); // cached by the commit: a hit
    assert_eq!(st.get(&"other".into()).unwrap(), None); // a miss, then cached as absent
    assert_eq!(st.get(&"other".into()).unwrap(), None); // a hit
    let l = &metrics.latency;
    assert_eq!((l.cache_hits.get(), l.cache_misses.get()), (2, 2));
    let reads = l.store_op.with_label_values(&["read"]).get_sample_count();
    let commits = l.store_op.with_label_values(&["commit"]).get_sample_count();
    assert_eq!((reads, commits), (2, 1));
}

/// The uncommitted write set is measured (the runtime commits early when it reaches its
/// share of the memory budget): it grows with new keys, not with rewrites of a key, and
/// a commit point empties it.
#[test]
fn uncommitted_bytes_follow_the_write_set() {
    let f = fixture();
    for (name, kind) in kinds() {
        let specs = f.specs.clone();
        let mut s = TaskState::open(kind.backend(&specs), &specs, 0).unwrap();
        assert_eq!(s.uncommitted_bytes(), 0, "{name}");
        s.view(&f.a).unwrap().put(&"k".into(), &1).unwrap();
        let one = s.uncommitted_bytes();
        assert!(one > 0, "{name}");
        s.view(&f.a).unwrap().put(&"k".into(), &2).unwrap();
        assert_eq!(
            s.uncommitted_bytes(),
            one,
            "{name}: a rewrite of the same key"
        );
        for i in 0..100u64 {
            s.view(&f.b)
                .unwrap()
                .put(&("x".into(), i), &"v".repeat(100))
                .unwrap();
        }
        assert!(
            s.uncommitted_bytes() >= one + 100 * 100,
            "{name}: {} bytes for 100 values of 100 bytes",
            s.uncommitted_bytes()
        );
        s.view(&f.a).unwrap().delete(&"other".into()).unwrap();
        let mut out = Vec::new();
        s.prepare_commit(0, &mut out);
        assert_eq!(
            s.uncommitted_bytes(),
            0,
            "{name}: a commit point takes them"
        );
    }
}

/// Files of one column family below level 0 (what a level compaction has written).
fn files_below_level_0(path: &std::path::Path, cf: &str) -> u64 {
    let cfs = rocksdb::DB::list_cf(&rocksdb::Options::default(), path).unwrap();
    let db = rocksdb::DB::open_cf_for_read_only(&rocksdb::Options::default(), path, &cfs, false)
        .unwrap();
    let handle = db.cf_handle(cf).unwrap();
    (1..7)
        .map(|l| {
            db.property_int_value_cf(handle, format!("rocksdb.num-files-at-level{l}").as_str())
                .unwrap()
                .unwrap_or(0)
        })
        .sum()
}

/// `state.compression`, `state.compaction` and `state.mmap_reads` may change between runs
/// of one state directory: the stores written with LZ4 and level compaction (the defaults
/// before stop 25) open with no compression and universal compaction, read through a memory
/// map, and back again, with every entry.
#[test]
fn rocksdb_stores_open_after_a_change_of_compression_compaction_and_reads() {
    use scorestream::config::{StoreCompaction, StoreCompression};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("0_0");
    let names = vec!["a".to_string()];
    let open = |compression, compaction, mmap| {
        let res = RocksResources::new(1 << 20, 1 << 20)
            .with_layout(compression, compaction)
            .with_mmap_reads(mmap);
        RocksBackend::open(&path, &names, &res).unwrap()
    };
    let value = |round: u32, i: u32| format!("{round}:{i}:{}", "x".repeat(150)).into_bytes();
    let write_rounds = |b: &mut RocksBackend, rounds: std::ops::Range<u32>| {
        for round in rounds {
            let data = (0..5_000u32)
                .map(|i| (0, format!("k{i:06}").into_bytes(), Some(value(round, i))))
                .collect();
            b.write(&WriteSet { data, meta: vec![] }).unwrap();
        }
    };
    let check = |b: &RocksBackend, round: u32| {
        for i in (0..5_000u32).step_by(7) {
            let got = b.get(0, format!("k{i:06}").as_bytes()).unwrap();
            assert_eq!(got, Some(value(round, i)), "k{i:06} after round {round}");
        }
    };
    {
        // ~20 MB through 1 MiB memtables: flushes, and compactions below level 0.
        let mut b = open(StoreCompression::Lz4, StoreCompaction::Level, false);
        write_rounds(&mut b, 0..25);
        check(&b, 24);
    }
    assert!(
        files_below_level_0(&path, "a") > 0,
        "no level compaction ran"
    );
    {
        let mut b = open(StoreCompression::None, StoreCompaction::Universal, true);
        check(&b, 24);
        write_rounds(&mut b, 25..40);
        check(&b, 39);
    }
    let b = open(StoreCompression::Lz4, StoreCompaction::Level, false);
    check(&b, 39);
}
