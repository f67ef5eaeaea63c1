//! What every role does to a message arriving and a message leaving, before and after its own
//! work: the body read under a size limit, the content type, the checks against the Beckn core
//! schemas and the domain rules (a failure is a NACK naming the first violation's path), the
//! error bodies sent instead of a result, and payload logging.
//!
//! Nothing here runs flows or queues messages: that is the roles' (and the engine's and the
//! outbox's) business. A role hands in what its flow checks against as plain [`validate::Rules`].

pub mod answer;
pub mod body;
pub mod content_type;
pub mod message;
pub mod nack;
pub mod payloads;
pub mod validate;
