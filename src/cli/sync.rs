//! `mailferry sync`: mirror, then upload, from one accounts file; with
//! `--every`, again and again for the incremental syncs before cutover.

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::cli::args::{Cli, SyncArgs};
use crate::cli::outcome::{Form, Synced, emit};
use crate::cli::{load_accounts, open_store, source_layer, target_layer};
use mailferry::store::Creation;

pub fn run(cli: &Cli, args: &SyncArgs) -> Result<i32> {
    let mut config = load_accounts(&args.accounts)?;
    config.resolve(&source_layer(&args.source), &target_layer(&args.target)?);
    config.limit_rate(args.link.max_rate);
    let Some(every) = args.every else {
        return once(cli, args, &config);
    };
    let mut done = 0u64;
    loop {
        let started = Instant::now();
        // A run that cannot start (the store busy with a manual upload, the
        // network down) is reported; the schedule goes on.
        let code = once(cli, args, &config).unwrap_or_else(|e| {
            eprintln!("sync failed: {e:#}");
            crate::cli::exit_code_of_error(&e)
        });
        done += 1;
        if args.runs.is_some_and(|n| done >= n) || mailferry::stop::requested().is_some() {
            return Ok(code);
        }
        let next = every.saturating_sub(started.elapsed());
        if !args.json {
            println!(
                "\nnext sync in {} (at {}); Ctrl-C stops (the store is safe at any moment)\n",
                humantime::format_duration(Duration::from_secs(next.as_secs())),
                (chrono::Utc::now() + next).format("%Y-%m-%d %H:%M UTC")
            );
        }
        // Asleep, a stop ends the schedule at once.
        let until = Instant::now() + next;
        while Instant::now() < until {
            if mailferry::stop::requested().is_some() {
                return Ok(code);
            }
            std::thread::sleep(Duration::from_millis(200).min(until - Instant::now()));
        }
    }
}

/// One mirror and upload. The store is opened for this run only, so other
/// commands can use it between runs.
fn once(cli: &Cli, args: &SyncArgs, config: &mailferry::config::Config) -> Result<i32> {
    let store = open_store(cli, Some(config), Creation::Allowed)?;
    let mirrored = super::mirror::mirror_with(cli, config, &args.mirror, store.clone())?;
    // An account whose mirror failed still uploads what the store holds.
    let uploaded = super::upload::upload_with(cli, config, &args.upload, store.clone())?;
    store.close()?;
    crate::cli::say_requests(&store);
    // Free before the summary is out: whoever reads it may take the store.
    drop(store);
    let synced = Synced {
        mirror: mirrored,
        upload: uploaded,
    };
    emit(
        &synced,
        if args.json {
            Form::JsonLine
        } else {
            Form::Text
        },
    )
}
