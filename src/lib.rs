//! beckn-adapter: a config-driven Beckn protocol adapter.
//!
//! A request travels `server` -> `roles::bpp` (checks: `beckn::trust`, `beckn::schema`,
//! `beckn::domain`) -> ACK -> `engine` (steps via `backend`, `mapping`) -> `beckn::context`
//! -> `delivery`. Flows are compiled by `compile` from the files `config` reads.

pub mod backend;
pub mod beckn;
pub mod compile;
pub mod config;
pub mod delivery;
pub mod engine;
pub mod mapping;
pub mod roles;
pub mod server;
pub mod store;
