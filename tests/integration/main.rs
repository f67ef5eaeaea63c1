//! Integration tests: real servers on 127.0.0.1 ephemeral ports (sample ERP, adapter, a BAP
//! stand-in recording callbacks), driven over HTTP. One binary, several modules.

mod architecture;
mod backend_auth;
mod bad_input;
mod bap;
mod bap_postgres;
mod check;
mod common;
mod delivery;
mod demo;
mod durability;
mod gateway;
mod interop;
mod journey;
mod lims;
mod listeners;
mod logs;
mod mapping_tests;
mod memory;
mod onboarding;
mod ownership;
mod paginate;
mod polling;
mod postgres;
mod postgres_leases;
mod reload;
mod render;
mod retry_after;
mod schemas;
mod store_contract;
mod trust;
mod ultra;
mod unsolicited;
