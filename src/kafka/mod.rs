//! Kafka integration: the consumer-group source (`source/kafka.rs`), the topic sinks
//! (`sink/kafka.rs`), and the `produce` helper's keying and topic creation.
//!
//! The files live next to their peers in `src/source/` and `src/sink/`; they are mounted here so
//! the Kafka code lands without touching the shared `source`/`sink` module roots.

#[path = "../source/kafka.rs"]
pub mod source;

#[path = "../sink/kafka.rs"]
pub mod sink;

pub mod produce;
pub mod state;

pub use source::{KafkaConfig, KafkaSource, PartitionOffset};
