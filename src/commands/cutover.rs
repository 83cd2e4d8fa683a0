//! `mailferry cutover`: the last pass of a batch, after its MX records point
//! to Microsoft 365. Optionally checks MX first, then runs a final mirror,
//! an upload and `verify --target`, and records the batch in the index's
//! `cutovers` table: complete only when, for every account, all three ran
//! clean and every stored message is at the target or skipped for good.
//! Running it again repeats the checks (a no-op mirror and upload cost a
//! few round trips) and records the new outcome.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Result, bail};
use serde::Serialize;

use crate::cli::{Cli, CutoverArgs};
use crate::commands::{EXIT_INCOMPLETE, apply_source, apply_target, load_accounts, open_store};
use crate::dns::MxCheck;
use crate::report::{AccountStatus, Snapshot};
use crate::store::Creation;
use crate::store::index::now;

/// What the MX check found for one domain.
#[derive(Debug, Clone, Serialize)]
pub struct DomainMx {
    pub domain: String,
    pub records: Vec<(u16, String)>,
    pub points_to_microsoft: bool,
    pub error: Option<String>,
}

/// One account at the end of the cutover.
#[derive(Debug, Clone, Serialize)]
pub struct AccountCutover {
    pub account: String,
    pub complete: bool,
    /// Why not, in sentences.
    pub open: Vec<String>,
    pub totals: AccountStatus,
    pub missing_at_target: u64,
    pub extras_at_target: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cutover {
    pub started_at: i64,
    pub finished_at: i64,
    pub complete: bool,
    pub mx: Vec<DomainMx>,
    pub accounts: Vec<AccountCutover>,
}

pub fn run(cli: &Cli, args: &CutoverArgs) -> Result<i32> {
    if args.upload.dry_run {
        bail!("cutover has no --dry-run; use `upload --dry-run` to see what would go");
    }
    let mut config = load_accounts(&args.accounts)?;
    apply_source(&mut config, &args.source);
    apply_target(&mut config, &args.target)?;
    let started_at = now();

    let mx = if args.check_mx {
        check_mx(&config, args.resolver)?
    } else {
        Vec::new()
    };
    for d in &mx {
        if let Some(e) = &d.error {
            eprintln!("WARNING: {e}");
        } else if d.records.is_empty() {
            eprintln!(
                "WARNING: {} has no MX records, so mail for it is not delivered anywhere; \
                 point them to Microsoft 365",
                d.domain
            );
        } else if !d.points_to_microsoft {
            let records: Vec<String> = d.records.iter().map(|(p, h)| format!("{p} {h}")).collect();
            eprintln!(
                "WARNING: the MX records of {} do not point to Microsoft 365 yet ({}); mail \
                 still arrives at the old host, and what arrives after this pass is left \
                 behind until cutover runs again",
                d.domain,
                records.join(", ")
            );
        }
    }
    if args.require_mx && mx.iter().any(|d| !d.points_to_microsoft) {
        eprintln!("--require-mx: stopping before the final pass; nothing was changed");
        return Ok(EXIT_INCOMPLETE);
    }

    let store = open_store(cli, Some(&config), Creation::Allowed)?;
    // Until the batch has been complete once, what is missing at the target
    // is ours to put back; after go-live, users delete mail, and a repeated
    // cutover must not bring it back: it is reported only.
    let before_go_live = !store.index().went_live()?;
    let run_id = store.index().start_run("cutover")?;
    let mirrored = super::mirror::mirror_with(cli, &config, &args.mirror, store.clone())?;
    let uploaded = super::upload::upload_with(cli, &config, &args.upload, store.clone())?;
    let checked = super::upload::check_with(cli, &config, store.clone(), before_go_live)?;
    let snap = Snapshot::gather(
        store.root(),
        &store.index(),
        &crate::report::Selection {
            batch: Some((
                args.accounts.accounts.as_path(),
                config.accounts.iter().map(|a| a.name.clone()).collect(),
            )),
            account: None,
        },
    )?;

    let mut accounts = Vec::new();
    for account in &config.accounts {
        let mut open = Vec::new();
        let name = &account.name;
        if let Some(m) = mirrored.accounts.iter().find(|a| &a.account == name)
            && !m.complete
        {
            open.push(format!(
                "the final mirror did not finish ({})",
                m.error
                    .clone()
                    .unwrap_or_else(|| m.folder_errors.join("; "))
            ));
        }
        if let Some(u) = uploaded.accounts.iter().find(|a| &a.account == name)
            && !u.complete
        {
            open.push(format!(
                "the upload did not finish ({})",
                u.error.clone().unwrap_or_else(|| {
                    let mut why = u.folder_errors.clone();
                    if u.counts.failed > 0 {
                        why.push(format!("{} messages failed", u.counts.failed));
                    }
                    why.join("; ")
                })
            ));
        }
        let check = checked.accounts.iter().find(|a| &a.account == name);
        match check {
            Some(c) if c.error.is_some() => open.push(format!(
                "the target could not be read back ({})",
                c.error.as_deref().unwrap_or_default()
            )),
            Some(c) if before_go_live && (c.missing > 0 || c.to_retry > 0 || c.pending > 0) => open
                .push(format!(
                    "{} messages are not at the target ({} found missing now); run cutover again",
                    c.missing.max(c.to_retry) + c.pending,
                    c.missing
                )),
            Some(c) if c.to_retry > 0 || c.pending > 0 => open.push(format!(
                "{} messages are not at the target yet; run cutover again",
                c.to_retry + c.pending
            )),
            _ => {}
        }
        let totals = snap
            .accounts
            .iter()
            .find(|a| &a.account == name)
            .cloned()
            .unwrap_or_else(|| AccountStatus {
                account: name.clone(),
                ..AccountStatus::default()
            });
        if totals.pending > 0 || totals.failed > 0 {
            open.push(format!(
                "{} stored messages are not at the target yet ({} failed)",
                totals.pending + totals.failed,
                totals.failed
            ));
        }
        accounts.push(AccountCutover {
            account: name.clone(),
            complete: open.is_empty(),
            open,
            totals,
            missing_at_target: check.map_or(0, |c| c.missing),
            extras_at_target: check.map_or(0, |c| c.extras),
        });
    }
    let result = Cutover {
        started_at,
        finished_at: now(),
        complete: accounts.iter().all(|a| a.complete),
        mx,
        accounts,
    };
    {
        let index = store.index();
        let json = serde_json::to_string(&result)?;
        index.record_cutover(&crate::store::index::CutoverRow {
            started_at: result.started_at,
            finished_at: Some(result.finished_at),
            complete: result.complete,
            summary: Some(json.clone()),
        })?;
        index.finish_run(run_id, &json)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        print!("{}", crate::report::mirror_summary(&mirrored));
        println!();
        print!("{}", crate::report::upload_summary(&uploaded));
        println!();
        print!("{}", crate::report::target_check(&checked));
        println!();
        print!("{}", crate::report::cutover(&result));
    }
    Ok(crate::commands::exit_code(
        result.complete,
        mirrored
            .accounts
            .iter()
            .map(|a| a.error_kind)
            .chain(uploaded.accounts.iter().map(|a| a.error_kind)),
    ))
}

/// Looks up the MX records of every domain the batch's addresses are in.
fn check_mx(
    config: &crate::config::Config,
    resolver: Option<std::net::SocketAddr>,
) -> Result<Vec<DomainMx>> {
    let mut domains: BTreeSet<String> = BTreeSet::new();
    for a in &config.accounts {
        match a.name.rsplit_once('@') {
            Some((_, d)) if !d.is_empty() => {
                domains.insert(d.to_ascii_lowercase());
            }
            _ => eprintln!(
                "WARNING: {} ({}) is not an e-mail address; its domain's MX is not checked",
                a.name, a.origin
            ),
        }
    }
    let runtime = crate::commands::runtime()?;
    Ok(domains
        .into_iter()
        .map(|domain| {
            match runtime.block_on(crate::dns::check_mx(
                &domain,
                resolver,
                Duration::from_secs(10),
            )) {
                Ok(MxCheck {
                    records,
                    points_to_microsoft,
                    ..
                }) => DomainMx {
                    domain,
                    records,
                    points_to_microsoft,
                    error: None,
                },
                Err(e) => DomainMx {
                    error: Some(format!("{e:#}")),
                    domain,
                    records: Vec::new(),
                    points_to_microsoft: false,
                },
            }
        })
        .collect())
}
