//! placeholder
pub mod partitioner;
