//! mailferry moves whole mailboxes from an IMAP host into Microsoft 365 in
//! two stages: `mirror` copies every folder into a local content-addressed
//! store, and `upload` replays that store into the target.
//!
//! Layout: [`config`] reads accounts; [`imap`] speaks IMAP; [`oauth`] gets
//! Microsoft 365 tokens; [`store`] keeps blobs and the SQLite index;
//! [`mirror`] is stage 1 and [`upload`] stage 2; [`commands`] holds one
//! module per command of the binary; [`report`] prints results. Around
//! them, the workflow: [`preflight`] checks a batch before it starts,
//! [`upload::check`] reads the target back, [`dns`] looks at MX records
//! for the cutover.

pub mod config;
mod counts;
pub mod cutover;
pub mod dns;
pub mod files;
pub mod format;
pub mod graph;
pub mod imap;
pub mod mailfiles;
pub mod mirror;
pub mod oauth;
pub mod outcome;
pub mod preflight;
pub mod progress;
pub mod rate;
pub mod report;
pub mod shard;
pub mod stop;
pub mod store;
pub mod upload;
