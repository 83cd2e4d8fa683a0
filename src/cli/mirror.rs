//! `mailferry mirror`: copy every source folder into the store.

use std::sync::Arc;

use anyhow::Result;

use crate::cli::args::{Cli, MirrorArgs, MirrorOnlyArgs};
use crate::cli::outcome::{Form, emit};
use crate::cli::{load_accounts, open_store, source_layer, ui};
use mailferry::config::Config;
use mailferry::mirror::{self, MirrorOptions, MirrorSummary};
use mailferry::store::Creation;
use mailferry::store::Store;

pub fn run(cli: &Cli, args: &MirrorArgs) -> Result<i32> {
    let mut config = load_accounts(&args.accounts)?;
    config.resolve(
        &source_layer(&args.source),
        &mailferry::config::TargetLayer::default(),
    );
    config.limit_rate(args.link.max_rate);
    let store = open_store(cli, Some(&config), Creation::Allowed)?;
    let summary = mirror_with(cli, &config, &args.mirror, store.clone())?;
    store.close()?;
    crate::cli::say_requests(&store);
    emit(&summary, Form::json(args.json))
}

/// The mirror's options from the accounts file and the command line's
/// knobs (shared with `sync` and `cutover`).
pub fn mirror_options(config: &Config, args: &MirrorOnlyArgs) -> MirrorOptions {
    let mut source = config.source.clone();
    if let Some(c) = args.connections {
        source.connections = c.max(1);
    }
    let mut options = MirrorOptions::new(source);
    options.accounts_at_once = config.accounts_at_once.max(1);
    options.max_bytes_in_flight = args.max_memory_mib.max(1) << 20;
    options.quick = args.quick;
    options.batch_bytes = options.batch_bytes.min(options.max_bytes_in_flight);
    options
}

/// Runs a mirror with the command line's knobs (shared with `sync`).
pub fn mirror_with(
    cli: &Cli,
    config: &Config,
    args: &MirrorOnlyArgs,
    store: Arc<Store>,
) -> Result<MirrorSummary> {
    let options = mirror_options(config, args);
    let progress = ui::progress(cli.quiet, config.accounts.len());
    crate::cli::runtime()?.block_on(mirror::mirror(store, config, &options, progress))
}
