//! `mailferry cutover`: the last pass of a batch, after its MX records point
//! to Microsoft 365. Optionally checks MX first, then runs a final mirror,
//! an upload and `verify --target`, and records the verdict
//! ([`mailferry::cutover`]). Running it again repeats the checks (a no-op
//! mirror and upload cost a few round trips) and records the new outcome.

use anyhow::{Result, bail};

use crate::cli::args::{Cli, CutoverArgs};
use crate::cli::outcome::{CutoverRun, Form, emit};
use crate::cli::{EXIT_INCOMPLETE, load_accounts, open_store, source_layer, target_layer};
use mailferry::cutover::{FinalPass, check_mx, record, verdict};
use mailferry::report::Snapshot;
use mailferry::store::Creation;
use mailferry::store::index::now;

pub fn run(cli: &Cli, args: &CutoverArgs) -> Result<i32> {
    if args.upload.dry_run {
        bail!("cutover has no --dry-run; use `upload --dry-run` to see what would go");
    }
    let mut config = load_accounts(&args.accounts)?;
    config.resolve(&source_layer(&args.source), &target_layer(&args.target)?);
    let started_at = now();

    let mx = if args.check_mx {
        let (mx, not_addresses) = crate::cli::runtime()?.block_on(check_mx(&config, args.resolver));
        for w in not_addresses
            .into_iter()
            .chain(mx.iter().filter_map(|d| d.warning()))
        {
            eprintln!("WARNING: {w}");
        }
        mx
    } else {
        Vec::new()
    };
    if args.require_mx && mx.iter().any(|d| !d.points_to_microsoft) {
        eprintln!("--require-mx: stopping before the final pass; nothing was changed");
        return Ok(EXIT_INCOMPLETE);
    }

    let store = open_store(cli, Some(&config), Creation::Allowed)?;
    let before_go_live = !store.index().went_live()?;
    let run_id = store.index().start_run("cutover")?;
    let mirrored = super::mirror::mirror_with(cli, &config, &args.mirror, store.clone())?;
    let uploaded = super::upload::upload_with(cli, &config, &args.upload, store.clone())?;
    let checked = super::upload::check_with(cli, &config, store.clone(), before_go_live)?;
    let snapshot = Snapshot::gather(
        store.root(),
        &store.index(),
        &mailferry::report::Selection {
            batch: Some((
                args.accounts.accounts.as_path(),
                config.accounts.iter().map(|a| a.name.clone()).collect(),
            )),
            account: None,
        },
    )?;
    let pass = FinalPass {
        mirrored: &mirrored,
        uploaded: &uploaded,
        checked: &checked,
        snapshot: &snapshot,
        before_go_live,
    };
    let result = verdict(&config, &pass, mx, started_at, now());
    record(&store.index(), &result, run_id)?;
    emit(
        &CutoverRun {
            mirrored,
            uploaded,
            checked,
            verdict: result,
        },
        Form::json(args.json),
    )
}
