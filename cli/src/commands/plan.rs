//! `mailferry plan`: each account's folder map, from the store (run
//! `mirror` first). `--write-map` writes it as CSV to edit and pass to
//! `upload --map`.

use anyhow::{Context, Result, anyhow};

use crate::cli::{Cli, PlanArgs};
use crate::commands::{EXIT_OK, load_accounts};
use mailferry::store::Store;
use mailferry::upload::{MapEntry, MapFile, mapping};

pub fn run(cli: &Cli, args: &PlanArgs) -> Result<i32> {
    let config = load_accounts(&args.accounts)?;
    let kind = args.target_kind.unwrap_or(config.target.kind);
    let root = crate::commands::store_path(cli, Some(&config));
    let store = Store::open_read_only(&root)?;
    let index = store.index();
    let overrides = args.map.as_deref().map(MapFile::load).transpose()?;
    let mut maps: Vec<(String, Vec<MapEntry>)> = Vec::new();
    for account in &config.accounts {
        let id = index.find_account(&account.name)?.ok_or_else(|| {
            anyhow!(
                "{} ({}): nothing in the store yet; run `mailferry mirror` first",
                account.name,
                account.origin
            )
        })?;
        let folders: Vec<_> = index
            .folders(id)?
            .into_iter()
            .filter(|f| f.deleted_at.is_none())
            .collect();
        let source_prefix = mapping::source_prefix(&folders, index.personal_prefix(id)?.as_deref());
        let map = mapping::map_account(
            &account.name,
            &folders,
            &source_prefix,
            kind,
            &mapping::Namespace {
                prefix: args.target_prefix.clone(),
                delimiter: args.target_separator.clone(),
            },
            overrides.as_ref(),
            args.merge_folders,
        )?;
        maps.push((account.name.clone(), map));
    }
    if let Some(path) = &args.write_map {
        let mut w = csv::Writer::from_path(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        w.write_record(["Account", "SourceFolder", "TargetFolder"])?;
        for (account, map) in &maps {
            for e in map {
                w.write_record([
                    account.as_str(),
                    &e.source,
                    e.target.as_deref().unwrap_or(""),
                ])?;
            }
        }
        w.flush()?;
        eprintln!("wrote {}", path.display());
    }
    if args.json {
        let out: Vec<_> = maps
            .iter()
            .map(|(a, m)| serde_json::json!({ "account": a, "folders": m }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", mailferry::upload::plan_table(&maps));
    }
    Ok(EXIT_OK)
}
