//! beckn-adapter: a config-driven Beckn protocol adapter.
//!
//! A request travels `server` -> `roles::bpp` (checks: `intake`, `beckn::trust`,
//! `beckn::schema`, `beckn::domain`) -> ACK -> `engine` (steps via `backend`, `mapping`)
//! -> `beckn::context` -> `delivery`. Flows are compiled by `compile` from the files `config` reads.
//! `dry_run` runs one action offline (`render`), `mapping_test` checks mappings (`test`).
//! `app` assembles all of it into the running adapter, for `serve`, the demo and the tests.

pub mod app;
pub mod backend;
pub mod beckn;
pub mod clock;
pub mod compile;
pub mod config;
pub mod delivery;
#[cfg(feature = "demo")]
pub mod demo;
pub mod dry_run;
pub mod engine;
pub mod intake;
pub mod mapping;
pub mod mapping_test;
pub mod reload;
pub mod roles;
pub mod server;
pub mod sinks;
pub mod store;
pub mod telemetry;
