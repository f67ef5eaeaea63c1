//! Black-box tests of the sample ERP's HTTP API: each test starts its own
//! server on 127.0.0.1:0 and talks to it with reqwest.

mod catalog;
mod common;
mod events;
mod faults;
mod orders;
mod webhook;
