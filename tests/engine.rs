//! The engine through its public API and the `TopologyTestDriver`: forwarding, sinks,
//! repartitioning, sub-topology derivation, description, errors, punctuation by stream
//! time and by wall-clock time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::prelude::*;
use scorestream::engine::*;
use scorestream::runtime::partitioner::partition_for_key;

const T0: i64 = 1_700_000_000_000;

fn rec(key: &str, value: &str, ts: i64) -> Record {
    Record::new(value.as_bytes().to_vec(), ts).with_key(key.as_bytes().to_vec())
}

fn text(r: &Record) -> String {
    String::from_utf8(r.value.clone().unwrap_or_default()).unwrap()
}

/// Uppercases values; "bad..." goes to the `dlq` child when it has one.
struct Upper {
    dlq: Option<Child>,
    out: Option<Child>,
}
impl Processor for Upper {
    fn init(&mut self, ctx: &mut ProcessorContext<'_>) -> Result<(), ProcessorError> {
        self.dlq = ctx.child("dlq").ok();
        self.out = ctx.child("out").ok();
        Ok(())
    }
    fn process(&mut self, ctx: &mut ProcessorContext<'_>, r: Record) -> Result<(), ProcessorError> {
        if text(&r).starts_with("bad") {
            if let Some(d) = self.dlq {
                ctx.forward_to(d, r);
                return Ok(());
            }
        }
        let up = Record {
            value: Some(text(&r).to_uppercase().into_bytes()),
            ..r
        };
        match self.out {
            Some(o) => ctx.forward_to(o, up),
            None => ctx.forward(up),
        }
        Ok(())
    }
}

fn upper() -> Box<dyn Processor> {
    Box::new(Upper {
        dlq: None,
        out: None,
    })
}

/// Re-keys by the value's first `:`-separated field.
struct Rekey;
impl Processor for Rekey {
    fn process(&mut self, ctx: &mut ProcessorContext<'_>, r: Record) -> Result<(), ProcessorError> {
        let v = text(&r);
        let key = v.split(':').next().unwrap_or_default().to_string();
        ctx.forward(r.with_key(key.into_bytes()));
        Ok(())
    }
}

type Log = Arc<Mutex<Vec<String>>>;

/// Records what happens to it, punctuates as configured.
struct Recorder {
    log: Log,
    every: Duration,
    kind: PunctuationType,
    cancel_after: Option<usize>,
    schedule: Option<ScheduleId>,
    fired: usize,
}
impl Processor for Recorder {
    fn init(&mut self, ctx: &mut ProcessorContext<'_>) -> Result<(), ProcessorError> {
        self.schedule = Some(ctx.schedule(self.every, self.kind));
        self.log.lock().unwrap().push("init".into());
        Ok(())
    }
    fn process(&mut self, ctx: &mut ProcessorContext<'_>, r: Record) -> Result<(), ProcessorError> {
        let pos = ctx.position().map(|p| p.to_string()).unwrap_or_default();
        self.log
            .lock()
            .unwrap()
            .push(format!("process {} at {pos}", text(&r)));
        ctx.forward(r);
        Ok(())
    }
    fn punctuate(
        &mut self,
        ctx: &mut ProcessorContext<'_>,
        p: Punctuation,
    ) -> Result<(), ProcessorError> {
        self.fired += 1;
        self.log
            .lock()
            .unwrap()
            .push(format!("punctuate {:?} {}", p.kind, p.time - T0));
        ctx.forward(Record::new(format!("tick-{}", self.fired), p.time));
        if Some(self.fired) == self.cancel_after {
            ctx.cancel(self.schedule.unwrap());
        }
        Ok(())
    }
    fn close(&mut self, ctx: &mut ProcessorContext<'_>) -> Result<(), ProcessorError> {
        self.log.lock().unwrap().push("close".into());
        ctx.forward(Record::new("bye", 0));
        Ok(())
    }
}

fn recorder_topology(
    log: &Log,
    every: Duration,
    kind: PunctuationType,
    cancel_after: Option<usize>,
) -> Topology {
    let mut b = TopologyBuilder::new();
    b.add_source("src", &[TopicRef::external("in")]);
    let l = log.clone();
    b.add_processor(
        "rec",
        move || {
            Box::new(Recorder {
                log: l.clone(),
                every,
                kind,
                cancel_after,
                schedule: None,
                fired: 0,
            })
        },
        &["src"],
    );
    b.add_sink(
        "sink",
        SinkTarget::Topic(TopicRef::external("out")),
        Partitioning::SameAsSource,
        &["rec"],
    );
    b.build("app").unwrap()
}

#[test]
fn chain_forwards_in_order_and_clones_to_every_child() {
    let mut b = TopologyBuilder::new();
    b.add_source("src", &[TopicRef::external("in")]);
    b.add_processor("up", upper, &["src"]);
    b.add_sink(
        "a",
        SinkTarget::Topic(TopicRef::external("out-a")),
        Partitioning::SameAsSource,
        &["up"],
    );
    b.add_sink(
        "b",
        SinkTarget::Topic(TopicRef::external("out-b")),
        Partitioning::SameAsSource,
        &["up"],
    );
    let mut d = TopologyTestDriver::new(b.build("app").unwrap(), T0);
    for v in ["x", "y", "z"] {
        d.pipe("in", rec("k", v, T0)).unwrap();
    }
    let a: Vec<String> = d.read_output("out-a").iter().map(text).collect();
    let b: Vec<String> = d.read_output("out-b").iter().map(text).collect();
    assert_eq!(a, ["X", "Y", "Z"]);
    assert_eq!(b, a);
    assert!(d.read_output("out-a").is_empty(), "read_output drains");
}

#[test]
fn named_children_and_dead_letter_suffix_sink_keep_partition() {
    let t = upper_with_dead_letters(&[TopicRef::external("orders"), TopicRef::external("calls")]);
    assert_eq!(
        t.dead_letter_topics()
            .into_iter()
            .map(|d| (d.name, d.source))
            .collect::<Vec<_>>(),
        [
            ("orders-dlq".to_string(), "orders".to_string()),
            ("calls-dlq".to_string(), "calls".to_string())
        ]
    );
    let mut d = TopologyTestDriver::with_partitions(t, 3, T0);
    d.pipe_to_partition("orders", 2, rec("k", "bad one", T0))
        .unwrap();
    d.pipe_to_partition("calls", 1, rec("k", "fine", T0))
        .unwrap();
    let dead = d.read_output_with_partitions("orders-dlq");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, 2);
    assert_eq!(text(&dead[0].1), "bad one");
    assert_eq!(
        d.read_output("good").iter().map(text).collect::<Vec<_>>(),
        ["FINE"]
    );
    assert!(d.read_output("calls-dlq").is_empty());
}

/// With a broker's size limit, the driver applies the runtime's oversize policy (the same
/// code, `engine::collector`): a dead letter is cut to fit and marked with its original
/// size, on its partition; any other record too large fails its delivery.
#[test]
fn with_a_size_limit_the_driver_cuts_dead_letters_and_fails_other_records_as_the_runtime_does() {
    let t = upper_with_dead_letters(&[TopicRef::external("orders")]);
    let max = 4096;
    let mut d = TopologyTestDriver::with_partitions(t, 3, T0).with_max_message_bytes(max);
    let bad = format!("bad {}", "x".repeat(10_000));
    d.pipe_to_partition("orders", 2, rec("k", &bad, T0))
        .unwrap();
    let dead = d.read_output_with_partitions("orders-dlq");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, 2);
    assert!(dead[0].1.size_hint() <= max, "{}", dead[0].1.size_hint());
    assert!(text(&dead[0].1).starts_with("bad xxx"));
    let original = bad.len().to_string();
    assert_eq!(
        dead[0]
            .1
            .headers
            .last_str(scorestream::engine::collector::TRUNCATED_HEADER),
        Some(original.as_str())
    );
    assert!(d.failed_deliveries().is_empty());

    d.pipe_to_partition("orders", 1, rec("k", &"y".repeat(10_000), T0))
        .unwrap();
    assert!(d.read_output("good").is_empty());
    assert_eq!(d.failed_deliveries().len(), 1);
    // Within the limit, nothing changes.
    d.pipe_to_partition("orders", 1, rec("k", "fine", T0))
        .unwrap();
    assert_eq!(
        d.read_output("good").iter().map(text).collect::<Vec<_>>(),
        ["FINE"]
    );
}

#[test]
fn unknown_child_names_processor_and_child() {
    struct Needy;
    impl Processor for Needy {
        fn init(&mut self, ctx: &mut ProcessorContext<'_>) -> Result<(), ProcessorError> {
            ctx.child("nope").map(|_| ())
        }
        fn process(
            &mut self,
            _: &mut ProcessorContext<'_>,
            _: Record,
        ) -> Result<(), ProcessorError> {
            Ok(())
        }
    }
    let mut b = TopologyBuilder::new();
    b.add_source("src", &[TopicRef::external("in")]);
    b.add_processor("needy", || Box::new(Needy), &["src"]);
    let mut d = TopologyTestDriver::new(b.build("app").unwrap(), T0);
    let err = d.pipe("in", rec("k", "v", T0)).unwrap_err().to_string();
    assert!(err.contains("needy") && err.contains("nope"), "{err}");
}

fn repartition_topology() -> Topology {
    let mut b = TopologyBuilder::new();
    b.add_source("src", &[TopicRef::external("in")]);
    b.add_processor("rekey", || Box::new(Rekey), &["src"]);
    b.add_sink(
        "to-by-key",
        SinkTarget::Topic(TopicRef::internal("by-key")),
        Partitioning::ByKey,
        &["rekey"],
    );
    b.add_source("by-key-src", &[TopicRef::internal("by-key")]);
    b.add_processor("up", upper, &["by-key-src"]);
    b.add_state_store::<String, u64>(
        StoreDecl {
            name: "counts".into(),
            logged: true,
        },
        &["up"],
    );
    b.add_state_store::<String, u64>(
        StoreDecl {
            name: "scratch".into(),
            logged: false,
        },
        &["up"],
    );
    b.add_sink(
        "out",
        SinkTarget::Topic(TopicRef::external("out")),
        Partitioning::SameAsSource,
        &["up"],
    );
    b.build("app").unwrap()
}

#[test]
fn repartition_splits_subtopologies_and_routes_by_murmur2() {
    let t = repartition_topology();
    assert_eq!(t.subtopologies().len(), 2);
    assert_eq!(t.external_source_topics(), ["in"]);
    let internal: Vec<(String, InternalTopicKind)> = t
        .internal_topics()
        .iter()
        .map(|i| (i.name.clone(), i.kind))
        .collect();
    assert_eq!(
        internal,
        [
            ("app-by-key".to_string(), InternalTopicKind::Repartition),
            (
                "app-counts-changelog".to_string(),
                InternalTopicKind::Changelog
            )
        ]
    );
    let mut d = TopologyTestDriver::with_partitions(t, 4, T0);
    for i in 0..40 {
        d.pipe_to_partition(
            "in",
            i % 4,
            rec("", &format!("cust{}:{i}", i % 7), T0 + i as i64),
        )
        .unwrap();
    }
    let out = d.read_output_with_partitions("out");
    assert_eq!(out.len(), 40);
    for (p, r) in &out {
        let key = r.key.clone().unwrap();
        assert_eq!(
            *p,
            partition_for_key(&key, 4),
            "task partition for {:?}",
            String::from_utf8_lossy(&key)
        );
    }
    let repartitioned = d.read_output_with_partitions("app-by-key");
    assert_eq!(
        repartitioned.len(),
        40,
        "the internal topic is observable too"
    );
    let task = TaskId {
        subtopology: 1,
        partition: partition_for_key(b"cust3", 4),
    };
    assert!(d.stream_time(task).is_some());
}

#[test]
fn stores_pull_processors_into_one_subtopology() {
    let mut b = TopologyBuilder::new();
    b.add_source("s1", &[TopicRef::external("a")]);
    b.add_processor("p1", upper, &["s1"]);
    b.add_source("s2", &[TopicRef::external("b")]);
    b.add_processor("p2", upper, &["s2"]);
    b.add_source("s3", &[TopicRef::external("c")]);
    b.add_processor("p3", upper, &["s3"]);
    b.add_state_store::<String, u64>(
        StoreDecl {
            name: "shared".into(),
            logged: true,
        },
        &["p1", "p2"],
    );
    let t = b.build("app").unwrap();
    let subs: Vec<Vec<String>> = t
        .subtopologies()
        .iter()
        .map(|s| s.source_topics.clone())
        .collect();
    assert_eq!(
        subs,
        [
            vec!["a".to_string(), "b".to_string()],
            vec!["c".to_string()]
        ]
    );
}

#[test]
fn describe_matches_kafka_streams_format() {
    let expected = "\
Topologies:
   Sub-topology: 0
    Source: src (topics: [in])
      --> rekey
    Processor: rekey (stores: [])
      --> to-by-key
      <-- src
    Sink: to-by-key (topic: app-by-key)
      <-- rekey

   Sub-topology: 1
    Source: by-key-src (topics: [app-by-key])
      --> up
    Processor: up (stores: [counts, scratch])
      --> out
      <-- by-key-src
    Sink: out (topic: out)
      <-- up

";
    assert_eq!(repartition_topology().describe(), expected);
}

#[test]
fn builder_reports_every_mistake_at_once() {
    let mut b = TopologyBuilder::new();
    b.add_source("src", &[TopicRef::external("in")]);
    b.add_source("src2", &[TopicRef::external("in")]);
    b.add_processor("p", upper, &["src", "ghost"]);
    b.add_processor("p", upper, &["src"]);
    b.add_sink(
        "sink",
        SinkTarget::Topic(TopicRef::external("o")),
        Partitioning::ByKey,
        &["p"],
    );
    b.add_processor("after-sink", upper, &["sink"]);
    b.add_processor("q", upper, &["src"]);
    b.add_state_store::<String, u64>(
        StoreDecl {
            name: "s".into(),
            logged: true,
        },
        &[],
    );
    let err = match b.build("app") {
        Err(TopologyError::Many(e)) => e.0,
        other => panic!("expected many errors, got {:?}", other.map(|_| ())),
    };
    let text: Vec<String> = err.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        text,
        [
            "node name 'p' is used twice",
            "topic 'in' is read by more than one source",
            "node 'p' names parent 'ghost', which does not exist",
            "node 'after-sink' names parent 'sink', which is a sink",
        ]
    );
}

#[test]
fn stream_time_punctuation_fires_once_per_advance_and_never_without_records() {
    let log: Log = Default::default();
    let t = recorder_topology(
        &log,
        Duration::from_secs(10),
        PunctuationType::StreamTime,
        None,
    );
    let mut d = TopologyTestDriver::new(t, T0);
    d.advance_wall_clock(Duration::from_secs(3600)).unwrap();
    assert!(log.lock().unwrap().is_empty(), "no task, no punctuation");
    for (v, ts) in [
        ("a", 0),
        ("b", 5_000),
        ("c", 12_000),
        ("late", 1_000),
        ("d", 35_000),
    ] {
        d.pipe("in", rec("k", v, T0 + ts)).unwrap();
    }
    let task = TaskId {
        subtopology: 0,
        partition: 0,
    };
    assert_eq!(
        d.stream_time(task),
        Some(T0 + 35_000),
        "stream time never goes backwards"
    );
    let got: Vec<String> = log.lock().unwrap().clone();
    assert_eq!(
        got,
        [
            "init",
            "process a at in-0@0",
            "process b at in-0@1",
            "process c at in-0@2",
            "punctuate StreamTime 12000",
            "process late at in-0@3",
            "process d at in-0@4",
            "punctuate StreamTime 35000",
        ]
    );
    let out: Vec<String> = d.read_output("out").iter().map(text).collect();
    assert_eq!(out, ["a", "b", "c", "tick-1", "late", "d", "tick-2"]);
}

#[test]
fn wall_clock_punctuation_fires_without_input_and_once_per_advance() {
    let log: Log = Default::default();
    let t = recorder_topology(
        &log,
        Duration::from_secs(60),
        PunctuationType::WallClock,
        None,
    );
    let mut d = TopologyTestDriver::new(t, T0);
    d.pipe("in", rec("k", "first", T0)).unwrap();
    d.advance_wall_clock(Duration::from_secs(59)).unwrap();
    assert_eq!(d.read_output("out").len(), 1, "not due yet");
    d.advance_wall_clock(Duration::from_secs(1)).unwrap();
    d.advance_wall_clock(Duration::from_secs(600)).unwrap();
    let ticks: Vec<String> = d.read_output("out").iter().map(text).collect();
    assert_eq!(
        ticks,
        ["tick-1", "tick-2"],
        "one per advance, missed intervals skipped"
    );
    d.advance_wall_clock(Duration::from_secs(59)).unwrap();
    assert!(
        d.read_output("out").is_empty(),
        "next due 60 s after the last due time"
    );
}

#[test]
fn cancelled_schedules_stop_and_close_output_is_kept() {
    let log: Log = Default::default();
    let t = recorder_topology(
        &log,
        Duration::from_secs(1),
        PunctuationType::WallClock,
        Some(2),
    );
    let mut d = TopologyTestDriver::new(t, T0);
    d.pipe("in", rec("k", "x", T0)).unwrap();
    for _ in 0..5 {
        d.advance_wall_clock(Duration::from_secs(1)).unwrap();
    }
    let ticks: Vec<String> = d.read_output("out").iter().map(text).collect();
    assert_eq!(ticks, ["x", "tick-1", "tick-2"]);
    let rest = d.close().unwrap();
    let closing: Vec<String> = rest["out"].iter().map(|(_, r)| text(r)).collect();
    assert_eq!(closing, ["bye"]);
    assert_eq!(
        log.lock().unwrap().last().map(String::as_str),
        Some("close")
    );
}

#[test]
fn processor_errors_name_the_processor_and_position() {
    struct Fails;
    impl Processor for Fails {
        fn process(
            &mut self,
            _: &mut ProcessorContext<'_>,
            r: Record,
        ) -> Result<(), ProcessorError> {
            if text(&r) == "boom" {
                return Err(ProcessorError::Failed("cannot".into()));
            }
            Ok(())
        }
    }
    let mut b = TopologyBuilder::new();
    b.add_source("src", &[TopicRef::external("in")]);
    b.add_processor("fragile", || Box::new(Fails), &["src"]);
    let mut d = TopologyTestDriver::new(b.build("app").unwrap(), T0);
    d.pipe("in", rec("k", "ok", T0)).unwrap();
    let err = d.pipe("in", rec("k", "boom", T0)).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("fragile") && msg.contains("in-0@1") && msg.contains("cannot"),
        "{msg}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever the partition count: each record comes out once, each key in one partition,
    /// in order per key.
    #[test]
    fn repartition_preserves_records_and_per_key_order(
        partitions in 1i32..8,
        keys in prop::collection::vec(0u8..20, 1..200),
    ) {
        let mut d = TopologyTestDriver::with_partitions(repartition_topology(), partitions, T0);
        for (i, k) in keys.iter().enumerate() {
            d.pipe_to_partition("in", (i as i32) % partitions, rec("", &format!("k{k}:{i}"), T0)).unwrap();
        }
        let out = d.read_output_with_partitions("out");
        prop_assert_eq!(out.len(), keys.len());
        let mut part_of = std::collections::HashMap::new();
        let mut last = std::collections::HashMap::new();
        for (p, r) in &out {
            let v = text(r);
            let (k, i) = v.split_once(':').unwrap();
            let i: usize = i.parse().unwrap();
            prop_assert_eq!(*part_of.entry(k.to_string()).or_insert(*p), *p);
            if let Some(prev) = last.insert(k.to_string(), i) {
                prop_assert!(prev < i, "order of {} broken: {} then {}", k, prev, i);
            }
        }
    }
}

#[test]
fn declared_outputs_are_checked_when_built() {
    let mut b = TopologyBuilder::new();
    b.add_source("src", &[TopicRef::external("in")]);
    b.add_processor("p", upper, &["src"]);
    b.add_processor("q", upper, &["src"]);
    b.add_sink(
        "out",
        SinkTarget::Topic(TopicRef::external("o")),
        Partitioning::ByKey,
        &["p"],
    );
    b.declare_outputs("p", &["out"]);
    assert!(b.build("app").is_ok(), "a declared output that exists");
    // A child that does not exist, and one that exists but is fed by another processor.
    b.declare_outputs("p", &["missing"]);
    b.declare_outputs("q", &["out"]);
    let err = match b.build("app") {
        Err(TopologyError::Many(e)) => e.0,
        other => panic!("expected two errors, got {:?}", other.map(|_| ())),
    };
    let text: Vec<String> = err.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        text,
        [
            "processor 'p' forwards to 'missing', which is not a node it feeds",
            "processor 'q' forwards to 'out', which is not a node it feeds",
        ]
    );
}

/// `<source topic>-dlq`, sized as the bundled topology's by default.
/// `upper` over `sources`, its results to `good` and its dead letters to `<source>-dlq`,
/// each on the record's own partition.
fn upper_with_dead_letters(sources: &[TopicRef]) -> scorestream::engine::Topology {
    let mut b = TopologyBuilder::new();
    b.add_source("src", sources);
    b.add_processor("up", upper, &["src"]);
    b.add_sink(
        "out",
        SinkTarget::Topic(TopicRef::external("good")),
        Partitioning::SameAsSource,
        &["up"],
    );
    b.add_sink(
        "dlq",
        SinkTarget::dead_letter(dead_letter_sink()),
        Partitioning::SameAsSource,
        &["up"],
    );
    b.build("app").unwrap()
}

fn dead_letter_sink() -> scorestream::engine::DeadLetter {
    scorestream::engine::DeadLetter {
        suffix: "-dlq".into(),
        max_bytes: (1 << 20) + 64 * 1024,
        on_too_large: scorestream::engine::OnTooLarge::Truncate,
    }
}
