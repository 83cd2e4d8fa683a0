//! `mailferry sync`: mirror, then upload, from one accounts file; with
//! `--every`, again and again for the incremental syncs before cutover.

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::cli::{Cli, SyncArgs};
use crate::commands::{apply_source, apply_target, load_accounts, open_store};
use crate::store::Creation;

pub fn run(cli: &Cli, args: &SyncArgs) -> Result<i32> {
    let mut config = load_accounts(&args.accounts)?;
    apply_source(&mut config, &args.source);
    apply_target(&mut config, &args.target)?;
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
            crate::commands::exit_code_of_error(&e)
        });
        done += 1;
        if args.runs.is_some_and(|n| done >= n) || crate::stop::requested().is_some() {
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
            if crate::stop::requested().is_some() {
                return Ok(code);
            }
            std::thread::sleep(Duration::from_millis(200).min(until - Instant::now()));
        }
    }
}

/// One mirror and upload. The store is opened for this run only, so other
/// commands can use it between runs.
fn once(cli: &Cli, args: &SyncArgs, config: &crate::config::Config) -> Result<i32> {
    let store = open_store(cli, Some(config), Creation::Allowed)?;
    let mirrored = super::mirror::mirror_with(cli, config, &args.mirror, store.clone())?;
    // An account whose mirror failed still uploads what the store holds.
    let uploaded = super::upload::upload_with(cli, config, &args.upload, store)?;
    if args.json {
        let both = serde_json::json!({ "mirror": mirrored, "upload": uploaded });
        println!("{}", serde_json::to_string(&both)?);
    } else {
        print!("{}", crate::report::mirror_summary(&mirrored));
        println!();
        print!("{}", crate::report::upload_summary(&uploaded));
    }
    Ok(crate::commands::exit_code(
        mirrored.all_complete() && uploaded.all_complete(),
        mirrored
            .accounts
            .iter()
            .map(|a| a.error_kind)
            .chain(uploaded.accounts.iter().map(|a| a.error_kind)),
    ))
}
