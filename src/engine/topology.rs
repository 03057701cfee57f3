//! A built topology: nodes, sub-topologies derived from the graph, internal topics, and a
//! description in the style of Kafka Streams' `TopologyDescription`. Built by
//! [`super::builder::TopologyBuilder`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use super::dead_letter::{DeadLetter, ErrorPolicy};
use super::processor::Processor;

/// Makes a fresh processor for each task.
pub type ProcessorSupplier = Arc<dyn Fn() -> Box<dyn Processor> + Send + Sync>;

/// A topic named in a topology: external (used as is) or internal (prefixed with the
/// application id when the topology is built).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TopicRef {
    External(String),
    Internal(String),
}

impl TopicRef {
    pub fn external(name: impl Into<String>) -> Self {
        TopicRef::External(name.into())
    }
    pub fn internal(suffix: impl Into<String>) -> Self {
        TopicRef::Internal(suffix.into())
    }
    pub(super) fn resolve(&self, app_id: &str) -> String {
        match self {
            TopicRef::External(n) => n.clone(),
            TopicRef::Internal(s) => format!("{app_id}-{s}"),
        }
    }
}

/// Where a sink writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SinkTopic {
    Fixed(String),
    /// The source topic of the record plus the sink's suffix (e.g. `-dlq`), where the
    /// source is the record's original position when `origins` (the topics that can be) is
    /// not empty, else one of its sub-topology's sources.
    DeadLetter {
        sink: DeadLetter,
        origins: Vec<String>,
    },
}

/// How a sink chooses the partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Partitioning {
    /// murmur2 of the key, as Java clients and Kafka Streams (the key must be set).
    ByKey,
    /// The partition the record was read from (dead letters keep their place).
    SameAsSource,
    /// A fixed partition (changelogs: the task's partition).
    Partition(i32),
}

/// What kind of internal topic, which decides its configs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InternalTopicKind {
    /// Delete policy; written by one sub-topology and read by another.
    Repartition,
    /// Compacted; one partition per task of the owning sub-topology.
    Changelog,
}

/// An internal topic the runtime creates at start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InternalTopic {
    pub name: String,
    pub kind: InternalTopicKind,
    /// The sub-topology that reads it (repartition) or owns it (changelog).
    pub subtopology: usize,
}

/// A dead-letter topic the runtime creates at start-up, next to the topic it mirrors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetterTopic {
    pub name: String,
    /// The topic whose records it holds (it gets that topic's partition count).
    pub source: String,
    /// Its `max.message.bytes`.
    pub max_bytes: usize,
}

/// A state store declared on the topology.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreDecl {
    pub name: String,
    /// Backed by a compacted changelog topic.
    pub logged: bool,
}

#[derive(Clone)]
pub(crate) enum NodeKind {
    Source {
        topics: Vec<String>,
    },
    Processor {
        supplier: ProcessorSupplier,
        stores: Vec<String>,
    },
    Sink {
        topic: SinkTopic,
        partitioning: Partitioning,
    },
}

#[derive(Clone)]
pub(crate) struct Node {
    pub name: String,
    pub kind: NodeKind,
    pub parents: Vec<usize>,
    pub children: Vec<usize>,
}

/// Errors in a topology declaration, reported all at once by [`TopologyBuilder::build`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    #[error("node name '{0}' is used twice")]
    DuplicateName(String),
    #[error("node '{node}' names parent '{parent}', which does not exist")]
    UnknownParent { node: String, parent: String },
    #[error("node '{node}' names parent '{parent}', which is a sink")]
    ParentIsSink { node: String, parent: String },
    #[error("topic '{0}' is read by more than one source")]
    TopicReadTwice(String),
    #[error("store '{store}' is connected to '{processor}', which is not a processor")]
    UnknownStoreUser { store: String, processor: String },
    #[error("processor '{processor}' forwards to '{child}', which is not a node it feeds")]
    UnknownOutput { processor: String, child: String },
    #[error("processor '{processor}' uses store '{store}', which is not connected to it")]
    UnconnectedStore { processor: String, store: String },
    #[error("store name '{0}' is declared twice")]
    DuplicateStore(String),
    #[error("source '{0}' reads no topic")]
    EmptySource(String),
    #[error("{0}")]
    Many(TopologyErrors),
}

/// Several topology errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyErrors(pub Vec<TopologyError>);

impl fmt::Display for TopologyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// One connected part of the graph: its own tasks, one per input partition.
#[derive(Clone, Debug)]
pub struct SubTopology {
    pub id: usize,
    /// Node indices, in declaration order.
    pub(crate) nodes: Vec<usize>,
    /// Topics read by this sub-topology's sources.
    pub source_topics: Vec<String>,
    /// Fixed topics written by its sinks.
    pub sink_topics: Vec<String>,
    /// Stores used by its processors.
    pub stores: Vec<String>,
}

/// A checked, immutable topology. Cheap to clone.
#[derive(Clone)]
pub struct Topology {
    pub(crate) inner: Arc<TopologyInner>,
}

pub(crate) struct TopologyInner {
    pub app_id: String,
    pub nodes: Vec<Node>,
    pub subtopologies: Vec<SubTopology>,
    pub stores: Vec<StoreDecl>,
    pub internal_topics: Vec<InternalTopic>,
    pub topic_to_subtopology: HashMap<String, usize>,
    pub oversize_output: ErrorPolicy,
}

impl Topology {
    pub(super) fn derive(
        app_id: &str,
        nodes: Vec<Node>,
        stores: Vec<StoreDecl>,
        internal_sources: &[String],
        internal_sinks: &[String],
    ) -> Topology {
        let groups = connected_groups(&nodes);
        let (subtopologies, topic_to_subtopology) = subtopologies_of(&nodes, groups);
        let internal_topics = internal_topics_of(
            app_id,
            &subtopologies,
            &stores,
            internal_sources,
            internal_sinks,
        );
        Topology {
            inner: Arc::new(TopologyInner {
                app_id: app_id.to_string(),
                nodes,
                subtopologies,
                stores,
                internal_topics,
                topic_to_subtopology,
                oversize_output: ErrorPolicy::Fail,
            }),
        }
    }

    /// Sets the oversize-output policy while the topology is still the builder's own.
    pub(super) fn set_oversize_output(&mut self, policy: ErrorPolicy) {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.oversize_output = policy;
        }
    }

    /// What the record collector does with an output, other than a dead letter, that the
    /// broker refuses as too large.
    pub fn oversize_output(&self) -> ErrorPolicy {
        self.inner.oversize_output
    }

    pub fn application_id(&self) -> &str {
        &self.inner.app_id
    }

    pub fn subtopologies(&self) -> &[SubTopology] {
        &self.inner.subtopologies
    }

    /// Internal topics (repartition and changelog) the runtime must create.
    pub fn internal_topics(&self) -> &[InternalTopic] {
        &self.inner.internal_topics
    }

    /// Every topic read by some source, internal or not.
    pub fn source_topics(&self) -> Vec<String> {
        self.inner
            .subtopologies
            .iter()
            .flat_map(|s| s.source_topics.iter().cloned())
            .collect()
    }

    /// Source topics that are not internal: what users must provide.
    pub fn external_source_topics(&self) -> Vec<String> {
        self.source_topics()
            .into_iter()
            .filter(|t| !self.inner.internal_topics.iter().any(|i| &i.name == t))
            .collect()
    }

    /// The topics written by dead-letter sinks, derived from the sources of their
    /// sub-topology (e.g. one `<input>-dlq` per input topic) or from their origins, each
    /// once, with the source it mirrors and the largest dead letter its sink sends.
    pub fn dead_letter_topics(&self) -> Vec<DeadLetterTopic> {
        let mut out: Vec<DeadLetterTopic> = Vec::new();
        for st in &self.inner.subtopologies {
            for &n in &st.nodes {
                let NodeKind::Sink {
                    topic: SinkTopic::DeadLetter { sink, origins },
                    ..
                } = &self.inner.nodes[n].kind
                else {
                    continue;
                };
                let sources = if origins.is_empty() {
                    &st.source_topics
                } else {
                    origins
                };
                for t in sources {
                    let name = format!("{t}{}", sink.suffix);
                    match out.iter_mut().find(|d| d.name == name) {
                        Some(d) => d.max_bytes = d.max_bytes.max(sink.max_bytes),
                        None => out.push(DeadLetterTopic {
                            name,
                            source: t.clone(),
                            max_bytes: sink.max_bytes,
                        }),
                    }
                }
            }
        }
        out
    }

    /// The sub-topology that reads `topic`.
    pub fn subtopology_of(&self, topic: &str) -> Option<usize> {
        self.inner.topic_to_subtopology.get(topic).copied()
    }

    /// The stores of `subtopology`, in the order a task's state indexes them.
    pub fn store_specs(&self, subtopology: usize) -> Vec<crate::state::store::StoreSpec> {
        let Some(st) = self.inner.subtopologies.get(subtopology) else {
            return Vec::new();
        };
        st.stores
            .iter()
            .filter_map(|name| {
                let global = self.inner.stores.iter().position(|d| &d.name == name)?;
                let decl = &self.inner.stores[global];
                Some(crate::state::store::StoreSpec {
                    global,
                    name: name.clone(),
                    changelog: decl
                        .logged
                        .then(|| changelog_topic(&self.inner.app_id, name)),
                })
            })
            .collect()
    }

    /// Index of store `name` in declaration order.
    pub(crate) fn store_index(&self, name: &str) -> Option<usize> {
        self.inner.stores.iter().position(|d| d.name == name)
    }

    pub fn stores(&self) -> &[StoreDecl] {
        &self.inner.stores
    }
}

impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// The nodes connected by parent/child edges or a shared store (union-find), as groups of
/// node indexes by their smallest member: each group is one sub-topology.
fn connected_groups(nodes: &[Node]) -> BTreeMap<usize, Vec<usize>> {
    // Union-find over parent/child edges and shared stores.
    let mut parent: Vec<usize> = (0..nodes.len()).collect();
    fn find(p: &mut [usize], x: usize) -> usize {
        let mut r = x;
        while p[r] != r {
            r = p[r];
        }
        let mut x = x;
        while p[x] != r {
            let next = p[x];
            p[x] = r;
            x = next;
        }
        r
    }
    fn union(p: &mut [usize], a: usize, b: usize) {
        let (ra, rb) = (find(p, a), find(p, b));
        if ra != rb {
            let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
            p[hi] = lo;
        }
    }
    let mut store_users: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for &c in &n.children {
            union(&mut parent, i, c);
        }
        if let NodeKind::Processor { stores, .. } = &n.kind {
            for s in stores {
                if let Some(&other) = store_users.get(s.as_str()) {
                    union(&mut parent, i, other);
                } else {
                    store_users.insert(s.as_str(), i);
                }
            }
        }
    }
    let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for i in 0..nodes.len() {
        let r = find(&mut parent, i);
        groups.entry(r).or_default().push(i);
    }
    groups
}

/// The sub-topologies of `groups` in order, with their sources, sinks and stores, and which
/// sub-topology reads each source topic.
fn subtopologies_of(
    nodes: &[Node],
    groups: BTreeMap<usize, Vec<usize>>,
) -> (Vec<SubTopology>, HashMap<String, usize>) {
    let mut subtopologies = Vec::new();
    let mut topic_to_subtopology = HashMap::new();
    for (id, (_, members)) in groups.into_iter().enumerate() {
        let mut source_topics = Vec::new();
        let mut sink_topics = BTreeSet::new();
        let mut sub_stores = BTreeSet::new();
        for &m in &members {
            match &nodes[m].kind {
                NodeKind::Source { topics } => {
                    for t in topics {
                        topic_to_subtopology.insert(t.clone(), id);
                        source_topics.push(t.clone());
                    }
                }
                NodeKind::Sink {
                    topic: SinkTopic::Fixed(t),
                    ..
                } => {
                    sink_topics.insert(t.clone());
                }
                NodeKind::Sink { .. } => {}
                NodeKind::Processor { stores, .. } => {
                    sub_stores.extend(stores.iter().cloned());
                }
            }
        }
        subtopologies.push(SubTopology {
            id,
            nodes: members,
            source_topics,
            sink_topics: sink_topics.into_iter().collect(),
            stores: sub_stores.into_iter().collect(),
        });
    }
    (subtopologies, topic_to_subtopology)
}

/// The repartition topics read, the changelogs of logged stores, and the internal topics
/// written but not (yet) read by this topology, which are still ours to create.
fn internal_topics_of(
    app_id: &str,
    subtopologies: &[SubTopology],
    stores: &[StoreDecl],
    internal_sources: &[String],
    internal_sinks: &[String],
) -> Vec<InternalTopic> {
    let mut internal_topics = Vec::new();
    for st in subtopologies {
        for t in &st.source_topics {
            if internal_sources.contains(t) {
                internal_topics.push(InternalTopic {
                    name: t.clone(),
                    kind: InternalTopicKind::Repartition,
                    subtopology: st.id,
                });
            }
        }
        for s in &st.stores {
            if stores.iter().any(|d| &d.name == s && d.logged) {
                internal_topics.push(InternalTopic {
                    name: changelog_topic(app_id, s),
                    kind: InternalTopicKind::Changelog,
                    subtopology: st.id,
                });
            }
        }
    }
    // An internal topic written but not (yet) read by this topology is still ours to create.
    for t in internal_sinks {
        if !internal_topics.iter().any(|i| &i.name == t) {
            let writer = subtopologies
                .iter()
                .find(|s| s.sink_topics.contains(t))
                .map_or(0, |s| s.id);
            internal_topics.push(InternalTopic {
                name: t.clone(),
                kind: InternalTopicKind::Repartition,
                subtopology: writer,
            });
        }
    }
    internal_topics
}

/// The changelog topic of a store: `<app-id>-<store>-changelog`.
pub fn changelog_topic(app_id: &str, store: &str) -> String {
    format!("{app_id}-{store}-changelog")
}
