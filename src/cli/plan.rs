//! `mailferry plan`: each account's folder map, from the store (run
//! `mirror` first). `--write-map` writes it as CSV to edit and pass to
//! `upload --map`.

use anyhow::Result;

use crate::cli::EXIT_OK;
use crate::cli::args::{Cli, PlanArgs};
use crate::cli::outcome::{Form, Outcome, emit};
use mailferry::store::Store;
use mailferry::upload::mapping::{FolderPlan, MapFile, Namespace, plan};

impl Outcome for FolderPlan {
    fn exit_code(&self) -> i32 {
        EXIT_OK
    }
}

pub fn run(cli: &Cli, args: &PlanArgs) -> Result<i32> {
    let config = crate::cli::load_accounts(&args.accounts)?;
    let kind = args.target_kind.unwrap_or(config.target.kind);
    let root = crate::cli::store_path(cli, Some(&config));
    let store = Store::open_read_only(&root)?;
    let overrides = args.map.as_deref().map(MapFile::load).transpose()?;
    let namespace = Namespace {
        prefix: args.target_prefix.clone(),
        delimiter: args.target_separator.clone(),
    };
    let planned = plan(
        store.index(),
        &config,
        kind,
        &namespace,
        overrides.as_ref(),
        args.merge_folders,
    )?;
    if let Some(path) = &args.write_map {
        planned.write_map(path)?;
        eprintln!("wrote {}", path.display());
    }
    emit(&planned, Form::json(args.json))
}
