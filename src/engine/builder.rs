//! [`TopologyBuilder`]: declaring sources, processors, sinks and stores by name, checked
//! all at once when built.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::dead_letter::{DeadLetter, ErrorPolicy};
use super::processor::Processor;
use super::topology::{
    Node, NodeKind, Partitioning, ProcessorSupplier, SinkTopic, StoreDecl, TopicRef, Topology,
    TopologyError, TopologyErrors,
};

/// Builds a [`Topology`]. Nodes name their parents, as in Kafka Streams' `Topology` API.
#[derive(Default)]
pub struct TopologyBuilder {
    nodes: Vec<(String, PendingKind, Vec<String>)>,
    stores: Vec<StoreDecl>,
    /// `(store, processor)` connections, resolved at build time.
    store_users: Vec<(String, String)>,
    /// `(processor, child)`: the children a processor says it forwards to, checked at build
    /// time instead of when a task first looks them up.
    outputs: Vec<(String, String)>,
    /// `(processor, store)`: the stores a processor says it uses, checked at build time
    /// instead of when a task first reads one it was not given.
    uses: Vec<(String, String)>,
    /// What the record collector does with an output (not a dead letter) too large.
    oversize_output: Option<ErrorPolicy>,
}

enum PendingKind {
    Source(Vec<TopicRef>),
    Processor(ProcessorSupplier),
    Sink(SinkTarget, Partitioning),
}

/// A sink's target before internal names are resolved.
#[derive(Clone, Debug)]
pub enum SinkTarget {
    Topic(TopicRef),
    /// Dead letters next to their input: the record's source topic plus the sink's suffix.
    /// `origins`: the topics its records can come from when that is not this
    /// sub-topology's sources (a dead letter raised after a repartition hop carries the
    /// position it *originally* came from), so the dead-letter topics can be planned; empty
    /// for the sub-topology's own sources.
    DeadLetter {
        sink: DeadLetter,
        origins: Vec<TopicRef>,
    },
}

impl SinkTarget {
    /// A dead-letter sink for records of this sub-topology's own sources.
    pub fn dead_letter(sink: DeadLetter) -> Self {
        SinkTarget::DeadLetter {
            sink,
            origins: Vec::new(),
        }
    }
}

impl TopologyBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a source reading `topics`.
    pub fn add_source(&mut self, name: &str, topics: &[TopicRef]) -> &mut Self {
        self.nodes.push((
            name.to_string(),
            PendingKind::Source(topics.to_vec()),
            Vec::new(),
        ));
        self
    }

    /// Adds a processor made by `supplier` (once per task), fed by `parents`.
    pub fn add_processor<F>(&mut self, name: &str, supplier: F, parents: &[&str]) -> &mut Self
    where
        F: Fn() -> Box<dyn Processor> + Send + Sync + 'static,
    {
        self.nodes.push((
            name.to_string(),
            PendingKind::Processor(Arc::new(supplier)),
            parents.iter().map(|s| s.to_string()).collect(),
        ));
        self
    }

    /// Adds a sink fed by `parents`.
    pub fn add_sink(
        &mut self,
        name: &str,
        target: SinkTarget,
        partitioning: Partitioning,
        parents: &[&str],
    ) -> &mut Self {
        self.nodes.push((
            name.to_string(),
            PendingKind::Sink(target, partitioning),
            parents.iter().map(|s| s.to_string()).collect(),
        ));
        self
    }

    /// Declares the children `processor` forwards to (its outputs): [`Self::build`] fails
    /// if one is not a node fed by `processor`, rather than the task failing at start.
    pub fn declare_outputs(&mut self, processor: &str, children: &[&str]) -> &mut Self {
        for c in children {
            self.outputs.push((processor.to_string(), c.to_string()));
        }
        self
    }

    /// Declares the stores `processor` uses: [`Self::build`] fails if one is not a store
    /// connected to `processor`, rather than the task failing on its first read.
    pub fn declare_stores(&mut self, processor: &str, stores: &[&str]) -> &mut Self {
        for s in stores {
            self.uses.push((processor.to_string(), s.to_string()));
        }
        self
    }

    /// What the record collector does with an output, other than a dead letter, that the
    /// broker refuses as too large (default [`ErrorPolicy::Fail`]: a failed delivery).
    pub fn on_oversize_output(&mut self, policy: ErrorPolicy) -> &mut Self {
        self.oversize_output = Some(policy);
        self
    }

    /// Declares a store holding `K → V` and connects it to the processors that use it
    /// (declared before or after). Returns the typed handle the processors' factories
    /// capture. Processors sharing a store always land in the same sub-topology.
    pub fn add_state_store<K, V>(
        &mut self,
        store: StoreDecl,
        processors: &[&str],
    ) -> crate::state::StoreHandle<K, V> {
        let handle = crate::state::StoreHandle::new(self.stores.len(), &store.name);
        for p in processors {
            self.store_users.push((store.name.clone(), p.to_string()));
        }
        self.stores.push(store);
        handle
    }

    /// Resolves names (internal topics get the `app_id` prefix), checks the graph and
    /// derives sub-topologies. Every error is reported, not only the first.
    pub fn build(&self, app_id: &str) -> Result<Topology, TopologyError> {
        let mut errors = Vec::new();
        let index = self.check_declarations(&mut errors);
        let mut nodes: Vec<Node> = Vec::with_capacity(self.nodes.len());
        let mut read_by: BTreeMap<String, usize> = BTreeMap::new();
        for (i, (name, kind, parents)) in self.nodes.iter().enumerate() {
            let kind = match kind {
                PendingKind::Source(topics) => {
                    if topics.is_empty() {
                        errors.push(TopologyError::EmptySource(name.clone()));
                    }
                    let topics: Vec<String> = topics.iter().map(|t| t.resolve(app_id)).collect();
                    for t in &topics {
                        if read_by.insert(t.clone(), i).is_some() {
                            errors.push(TopologyError::TopicReadTwice(t.clone()));
                        }
                    }
                    NodeKind::Source { topics }
                }
                PendingKind::Processor(supplier) => NodeKind::Processor {
                    supplier: supplier.clone(),
                    stores: self.stores_of(name),
                },
                PendingKind::Sink(target, partitioning) => NodeKind::Sink {
                    topic: match target {
                        SinkTarget::Topic(t) => SinkTopic::Fixed(t.resolve(app_id)),
                        SinkTarget::DeadLetter { sink, origins } => SinkTopic::DeadLetter {
                            sink: sink.clone(),
                            origins: origins.iter().map(|t| t.resolve(app_id)).collect(),
                        },
                    },
                    partitioning: *partitioning,
                },
            };
            let parent_ids = self.parent_indexes(name, parents, &index, &mut errors);
            nodes.push(Node {
                name: name.clone(),
                kind,
                parents: parent_ids,
                children: Vec::new(),
            });
        }
        match errors.len() {
            0 => {}
            1 => return Err(errors.remove(0)),
            _ => return Err(TopologyError::Many(TopologyErrors(errors))),
        }
        for i in 0..nodes.len() {
            for p in nodes[i].parents.clone() {
                nodes[p].children.push(i);
            }
        }
        let (internal_sources, internal_sinks) = self.internal_topics(app_id);
        let mut topology = Topology::derive(
            app_id,
            nodes,
            self.stores.clone(),
            &internal_sources,
            &internal_sinks,
        );
        if let Some(policy) = self.oversize_output {
            topology.set_oversize_output(policy);
        }
        Ok(topology)
    }

    /// The stores connected to processor `name`, each once. Connections name declared
    /// stores only (add_state_store makes both).
    fn stores_of(&self, name: &str) -> Vec<String> {
        let mut stores: Vec<String> = Vec::new();
        for (store, user) in &self.store_users {
            if user == name && !stores.contains(store) {
                stores.push(store.clone());
            }
        }
        stores
    }

    /// The indexes of node `name`'s `parents`; a parent that does not exist or is a sink
    /// is an error.
    fn parent_indexes(
        &self,
        name: &str,
        parents: &[String],
        index: &HashMap<&str, usize>,
        errors: &mut Vec<TopologyError>,
    ) -> Vec<usize> {
        let mut parent_ids = Vec::new();
        for p in parents {
            match index.get(p.as_str()) {
                None => errors.push(TopologyError::UnknownParent {
                    node: name.to_string(),
                    parent: p.clone(),
                }),
                Some(&pi) => {
                    if matches!(self.nodes[pi].1, PendingKind::Sink(..)) {
                        errors.push(TopologyError::ParentIsSink {
                            node: name.to_string(),
                            parent: p.clone(),
                        });
                    } else {
                        parent_ids.push(pi);
                    }
                }
            }
        }
        parent_ids
    }

    /// Node names are unique, store names too, store connections name processors, every
    /// declared output is a node fed by its processor and every declared store is connected
    /// to it. Returns the node index by name.
    fn check_declarations(&self, errors: &mut Vec<TopologyError>) -> HashMap<&str, usize> {
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (i, (name, _, _)) in self.nodes.iter().enumerate() {
            if index.insert(name.as_str(), i).is_some() {
                errors.push(TopologyError::DuplicateName(name.clone()));
            }
        }
        let mut seen_stores = std::collections::HashSet::new();
        for d in &self.stores {
            if !seen_stores.insert(d.name.as_str()) {
                errors.push(TopologyError::DuplicateStore(d.name.clone()));
            }
        }
        for (store, processor) in &self.store_users {
            let ok = matches!(
                index.get(processor.as_str()).map(|&i| &self.nodes[i].1),
                Some(PendingKind::Processor(..))
            );
            if !ok {
                errors.push(TopologyError::UnknownStoreUser {
                    store: store.clone(),
                    processor: processor.clone(),
                });
            }
        }
        for (processor, child) in &self.outputs {
            let fed = index
                .get(child.as_str())
                .is_some_and(|&i| self.nodes[i].2.iter().any(|p| p == processor));
            if !fed {
                errors.push(TopologyError::UnknownOutput {
                    processor: processor.clone(),
                    child: child.clone(),
                });
            }
        }
        for (processor, store) in &self.uses {
            if !self
                .store_users
                .contains(&(store.clone(), processor.clone()))
            {
                errors.push(TopologyError::UnconnectedStore {
                    processor: processor.clone(),
                    store: store.clone(),
                });
            }
        }
        index
    }

    /// The internal topics read (repartition sources) and written, with their full names.
    fn internal_topics(&self, app_id: &str) -> (Vec<String>, Vec<String>) {
        let internal_sinks = self
            .nodes
            .iter()
            .filter_map(|(_, k, _)| match k {
                PendingKind::Sink(SinkTarget::Topic(t @ TopicRef::Internal(_)), _) => {
                    Some(t.resolve(app_id))
                }
                _ => None,
            })
            .collect::<Vec<_>>();
        let internal_sources: Vec<String> = self
            .nodes
            .iter()
            .filter_map(|(_, k, _)| match k {
                PendingKind::Source(topics) => Some(topics),
                _ => None,
            })
            .flatten()
            .filter(|t| matches!(t, TopicRef::Internal(_)))
            .map(|t| t.resolve(app_id))
            .collect();
        (internal_sources, internal_sinks)
    }
}
