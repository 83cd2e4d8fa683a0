//! mailferry's integration tests, one binary: each module is a behaviour
//! of the `mailferry` command against real servers (Dovecot, Cyrus,
//! Courier) started by `support`, with fault proxies where a server
//! cannot be made to misbehave on its own.

mod support;

mod deploy;
mod dns;
mod exchange;
mod export;
mod faults;
mod graph;
mod graph_emulator;
mod hostile;
mod integrity;
mod items;
mod kill9;
mod mirror;
mod oauth;
mod objects;
mod pst;
mod report;
mod servers;
mod shard;
mod store;
mod truth;
mod upload;
mod verify;
mod workflow;
