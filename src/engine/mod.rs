//! The generic, broker-free engine: records, processors, topologies, tasks and a test
//! driver. Knows nothing about customers or Kafka clients.

pub mod builder;
pub mod collector;
pub mod dead_letter;
mod describe;
pub mod partitioner;
pub mod processor;
pub mod record;
pub mod task;
pub mod test_driver;
pub mod topology;

pub use builder::{SinkTarget, TopologyBuilder};
pub use dead_letter::{BadRecords, DeadLetter, ErrorPolicy, OnTooLarge};
pub use processor::{
    Child, Processor, ProcessorContext, ProcessorError, Punctuation, PunctuationType, ScheduleId,
};
pub use record::{Headers, Record, SourcePosition};
pub use task::{SinkRecord, StreamTask, TaskError, TaskId};
pub use test_driver::TopologyTestDriver;
pub use topology::{
    changelog_topic, DeadLetterTopic, InternalTopic, InternalTopicKind, Partitioning, SinkTopic,
    StoreDecl, SubTopology, TopicRef, Topology, TopologyError,
};
