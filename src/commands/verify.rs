//! `mailferry verify`: re-hash every blob and check that the index and the
//! objects agree ([`crate::store::verify`]), or read the target back
//! (`--target`). Every fault is named; the exit code is 1 if there is any.

use anyhow::Result;

use crate::cli::{Cli, VerifyArgs};
use crate::commands::{EXIT_INCOMPLETE, EXIT_OK, apply_target, load_accounts, open_store};
use crate::store::Creation;
use crate::store::verify::verify;

pub fn run(cli: &Cli, args: &VerifyArgs) -> Result<i32> {
    if args.target {
        return run_target(cli, args);
    }
    let (root, _) = crate::commands::store_to_read(cli, args.accounts.as_deref())?;
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let progress = crate::commands::ui::ByteBar::new(
        !cli.quiet && !args.json,
        "verify [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
    );
    let report = verify(&root, jobs.max(1), &progress)?;
    progress.finish();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for f in &report.faults {
            println!("{}: {} ({})", f.kind, f.path.display(), f.detail);
        }
        if report.writer_active {
            println!(
                "a mirror, upload or import was writing this store while verify ran: {} blob \
                 files it had not recorded yet were left out (in flight, not faults); verify \
                 again when it has finished",
                report.in_flight
            );
        }
        if !report.leftovers.is_empty() {
            println!(
                "{} leftover blob files from a run that was stopped before it recorded their \
                 messages (not faults: nothing points at them). The next `mailferry mirror` \
                 adopts those the source still has; `mailferry gc` lists them and \
                 `mailferry gc --delete` removes them",
                report.leftovers.len()
            );
        }
        if report.marked_for_refetch > 0 {
            println!(
                "{} damaged blobs are marked: the next `mailferry mirror` fetches their \
                 messages again where the source still has them",
                report.marked_for_refetch
            );
        }
        println!(
            "{} blobs ({}) checked in {:.1}s: {}",
            report.blobs_checked,
            crate::format::bytes(report.bytes_checked),
            report.seconds,
            if report.faults.is_empty() {
                "no faults".to_string()
            } else {
                format!("{} faults", report.faults.len())
            }
        );
    }
    Ok(if report.faults.is_empty() {
        EXIT_OK
    } else {
        EXIT_INCOMPLETE
    })
}

/// `verify --target`: read the target folders back.
fn run_target(cli: &Cli, args: &VerifyArgs) -> Result<i32> {
    let accounts = crate::cli::AccountsArgs {
        accounts: args.accounts.clone().expect("clap requires --accounts"),
        only: args.only.clone(),
        accounts_at_once: None,
    };
    let mut config = load_accounts(&accounts)?;
    apply_target(&mut config, &args.target_settings)?;
    let store = open_store(cli, Some(&config), Creation::Refused)?;
    let checked = crate::commands::upload::check_with(cli, &config, store, args.requeue_missing)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&checked)?);
    } else {
        print!("{}", crate::report::target_check(&checked));
    }
    Ok(if checked.all_present() {
        EXIT_OK
    } else {
        EXIT_INCOMPLETE
    })
}
