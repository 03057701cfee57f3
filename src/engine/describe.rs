//! How a [`Topology`] describes itself: text in the style of Kafka Streams'
//! `TopologyDescription`, and a Mermaid flowchart.

use std::fmt::Write as _;

use super::topology::{NodeKind, SinkTopic, Topology};

impl Topology {
    /// A text description in the style of Kafka Streams' `TopologyDescription`.
    pub fn describe(&self) -> String {
        let mut s = String::from("Topologies:\n");
        for st in &self.inner.subtopologies {
            let _ = writeln!(s, "   Sub-topology: {}", st.id);
            for &n in &st.nodes {
                let node = &self.inner.nodes[n];
                let names = |ids: &[usize]| {
                    ids.iter()
                        .map(|&i| self.inner.nodes[i].name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                match &node.kind {
                    NodeKind::Source { topics } => {
                        let _ = writeln!(
                            s,
                            "    Source: {} (topics: [{}])",
                            node.name,
                            topics.join(", ")
                        );
                    }
                    NodeKind::Processor { stores, .. } => {
                        let _ = writeln!(
                            s,
                            "    Processor: {} (stores: [{}])",
                            node.name,
                            stores.join(", ")
                        );
                    }
                    NodeKind::Sink { topic, .. } => {
                        let t = sink_label(topic);
                        let _ = writeln!(s, "    Sink: {} (topic: {})", node.name, t);
                    }
                }
                if !node.children.is_empty() {
                    let _ = writeln!(s, "      --> {}", names(&node.children));
                }
                if !node.parents.is_empty() {
                    let _ = writeln!(s, "      <-- {}", names(&node.parents));
                }
            }
            s.push('\n');
        }
        s
    }

    /// The topology as a Mermaid flowchart: one subgraph per sub-topology, topics as
    /// stadium nodes, stores as cylinders (paste into any Markdown that renders Mermaid).
    pub fn describe_mermaid(&self) -> String {
        let mut s = String::from("flowchart LR\n");
        let mut topics: Vec<String> = Vec::new();
        let topic_id = |t: &str, topics: &mut Vec<String>| {
            let i = topics.iter().position(|x| x == t).unwrap_or_else(|| {
                topics.push(t.to_string());
                topics.len() - 1
            });
            format!("t{i}")
        };
        let mut edges = Vec::new();
        let mut stores = Vec::new();
        for st in &self.inner.subtopologies {
            let _ = writeln!(s, "  subgraph st{}[\"sub-topology {}\"]", st.id, st.id);
            for &n in &st.nodes {
                let node = &self.inner.nodes[n];
                let label = node.name.replace('"', "'");
                match &node.kind {
                    NodeKind::Source { topics: ts } => {
                        let _ = writeln!(s, "    n{n}[/\"{label}\"/]");
                        for t in ts {
                            edges.push(format!("  {} --> n{n}", topic_id(t, &mut topics)));
                        }
                    }
                    NodeKind::Processor { stores: ss, .. } => {
                        let _ = writeln!(s, "    n{n}[\"{label}\"]");
                        for store in ss {
                            stores.push(format!(
                                "  n{n} <--> s_{}[(\"{store}\")]",
                                store.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
                            ));
                        }
                    }
                    NodeKind::Sink { topic, .. } => {
                        let _ = writeln!(s, "    n{n}[\\\"{label}\"\\]");
                        let t = sink_label(topic);
                        edges.push(format!("  n{n} --> {}", topic_id(&t, &mut topics)));
                    }
                }
                for &c in &node.children {
                    edges.push(format!("  n{n} --> n{c}"));
                }
            }
            s.push_str("  end\n");
        }
        for (i, t) in topics.iter().enumerate() {
            let _ = writeln!(s, "  t{i}([\"{}\"])", t.replace('"', "'"));
        }
        for line in stores.iter().chain(&edges) {
            s.push_str(line);
            s.push('\n');
        }
        s
    }
}

/// The topic a sink writes, as descriptions show it.
fn sink_label(topic: &SinkTopic) -> String {
    match topic {
        SinkTopic::Fixed(t) => t.clone(),
        SinkTopic::DeadLetter { sink, origins } if origins.is_empty() => {
            format!("<source topic>{}", sink.suffix)
        }
        SinkTopic::DeadLetter { sink, .. } => format!("<original input topic>{}", sink.suffix),
    }
}
