//! `mailferry cutover`: the last pass of a batch, after its MX records point
//! to Microsoft 365. Optionally checks MX first, then runs a final mirror,
//! an upload and `verify --target`, and records the verdict
//! ([`mailferry::cutover::cutover`]). Running it again repeats the checks (a no-op
//! mirror and upload cost a few round trips) and records the new outcome.

use anyhow::{Result, bail};

use crate::cli::args::{Cli, CutoverArgs};
use crate::cli::outcome::{Form, emit};
use crate::cli::{EXIT_INCOMPLETE, load_accounts, open_store, source_layer, target_layer};
use mailferry::cutover::{CutoverOptions, check_mx, cutover};
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
    let options = CutoverOptions {
        mirror: super::mirror::mirror_options(&config, &args.mirror),
        upload: super::upload::upload_options(&config, &args.upload)?,
        check: super::upload::check_options(&config)?,
        accounts_file: args.accounts.accounts.clone(),
        mx,
        started_at,
        items: crate::cli::upload::graph_client(&config)?.map(|client| {
            std::sync::Arc::new(mailferry::graph::ItemOptions {
                client,
                invite_attendees: args.upload.invite_attendees,
                accounts_at_once: config.accounts_at_once,
            })
        }),
    };
    let accounts = config.accounts.len();
    let quiet = cli.quiet;
    let run = crate::cli::runtime()?.block_on(cutover(store.clone(), &config, options, &|| {
        crate::cli::ui::progress(quiet, accounts)
    }))?;
    store.close()?;
    crate::cli::say_requests(&store);
    let mut run = run;
    // One shard of a batch in object storage: the whole batch too, from
    // every shard's index (this one's now written), over the whole file.
    if let (Some(_), mailferry::store::Place::Objects(place)) =
        (config.shard, crate::cli::store_place(cli, Some(&config))?)
    {
        let all = mailferry::config::load_without_secrets(&args.accounts.accounts)?;
        let batch = mailferry::report::Snapshot::gather_objects(
            &place,
            &mailferry::report::Selection {
                batch: Some((
                    args.accounts.accounts.as_path(),
                    all.accounts.iter().map(|a| a.name.clone()).collect(),
                )),
                account: None,
            },
        )?;
        run.batch = Some(mailferry::cutover::BatchView::of(&batch));
    }
    emit(&run, Form::json(args.json))
}
