//! The Beckn protocol: actions, ACK/NACK and error codes, context rules, schemas, trust.

pub mod ack;
pub mod action;
pub mod context;
pub mod domain;
pub mod error;
pub mod onboarding;
pub mod order_ref;
pub mod participant;
pub mod redact;
pub mod registry;
pub mod rotation;
pub mod schema;
pub mod signing;
pub mod subscribe;
pub mod trust;
pub(crate) mod verify_batch;
