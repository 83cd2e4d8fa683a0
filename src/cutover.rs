//! The cutover verdict: after the final mirror, upload and read-back of a
//! batch, is every account complete, and why not. Also the MX check of
//! the batch's domains, and the record of the cutover in the store.
//!
//! Complete only when, for every account, all three ran clean and every
//! stored message is at the target or skipped for good.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use crate::config::Config;
use crate::dns::MxCheck;
use crate::graph::check::ItemsChecked;
use crate::graph::{ItemOptions, ItemsUploaded};
use crate::mirror::{MirrorOptions, MirrorSummary};
use crate::progress::Progress;
use crate::report::{AccountStatus, Selection, Snapshot};
use crate::store::index::{CutoverRow, now};
use crate::store::{Index, Store};
use crate::upload::check::TargetCheck;
use crate::upload::{UploadOptions, UploadSummary};

/// What the MX check found for one domain.
#[derive(Debug, Clone, Serialize)]
pub struct DomainMx {
    pub domain: String,
    pub records: Vec<(u16, String)>,
    pub points_to_microsoft: bool,
    pub error: Option<String>,
}

impl DomainMx {
    /// What an admin must hear about this domain before the final pass.
    pub fn warning(&self) -> Option<String> {
        if let Some(e) = &self.error {
            Some(e.clone())
        } else if self.records.is_empty() {
            Some(format!(
                "{} has no MX records, so mail for it is not delivered anywhere; point them to \
                 Microsoft 365",
                self.domain
            ))
        } else if !self.points_to_microsoft {
            let records: Vec<String> = self
                .records
                .iter()
                .map(|(p, h)| format!("{p} {h}"))
                .collect();
            Some(format!(
                "the MX records of {} do not point to Microsoft 365 yet ({}); mail still \
                 arrives at the old host, and what arrives after this pass is left behind \
                 until cutover runs again",
                self.domain,
                records.join(", ")
            ))
        } else {
            None
        }
    }
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

/// The batch at the end of the cutover.
#[derive(Debug, Clone, Serialize)]
pub struct Cutover {
    pub started_at: i64,
    pub finished_at: i64,
    pub complete: bool,
    pub mx: Vec<DomainMx>,
    pub accounts: Vec<AccountCutover>,
}

/// How to run the final pass.
pub struct CutoverOptions {
    pub mirror: MirrorOptions,
    pub upload: Arc<UploadOptions>,
    /// For reading the targets back.
    pub check: Arc<UploadOptions>,
    /// The accounts file the batch comes from, for the batch's totals.
    pub accounts_file: PathBuf,
    /// What the MX check found before the pass, if it ran.
    pub mx: Vec<DomainMx>,
    pub started_at: i64,
    /// Where contacts, events and tasks go, when the target names a Graph.
    pub items: Option<Arc<ItemOptions>>,
}

/// The final pass and its verdict: the text shows every step, the JSON is
/// the verdict.
#[derive(Debug, Serialize)]
pub struct CutoverRun {
    #[serde(skip)]
    pub mirrored: MirrorSummary,
    #[serde(skip)]
    pub uploaded: UploadSummary,
    #[serde(skip)]
    pub checked: TargetCheck,
    #[serde(skip)]
    pub items_uploaded: Option<ItemsUploaded>,
    #[serde(skip)]
    pub items_checked: Option<ItemsChecked>,
    #[serde(flatten)]
    pub verdict: Cutover,
    /// A shard's cutover of a batch in object storage: the whole batch as
    /// every shard's latest index says (filled in by the caller once this
    /// shard's index is in the store).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchView>,
}

/// The whole batch across its shards (see [`CutoverRun::batch`]).
#[derive(Debug, Clone, Serialize)]
pub struct BatchView {
    pub accounts: u64,
    pub accounts_complete: u64,
    /// Every account of every shard complete, and no shard stale or missing.
    pub complete: bool,
    pub shards: Vec<crate::report::snapshot::ShardState>,
}

impl BatchView {
    pub fn of(snapshot: &Snapshot) -> BatchView {
        BatchView {
            accounts: snapshot.accounts.len() as u64,
            accounts_complete: snapshot
                .accounts
                .iter()
                .filter(|a| a.state == crate::report::snapshot::AccountState::Complete)
                .count() as u64,
            complete: snapshot.complete,
            shards: snapshot.shards.clone(),
        }
    }
}

impl std::fmt::Display for CutoverRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\n{}\n{}\n",
            self.mirrored, self.uploaded, self.checked
        )?;
        if let Some(i) = &self.items_uploaded {
            writeln!(f, "{i}")?;
        }
        if let Some(i) = &self.items_checked {
            writeln!(f, "{i}")?;
        }
        write!(f, "{}", self.verdict)?;
        if let Some(b) = &self.batch {
            writeln!(
                f,
                "the whole batch (every shard): {} of {} accounts complete{}",
                b.accounts_complete,
                b.accounts,
                if b.complete { ": COMPLETE" } else { "" }
            )?;
            for s in &b.shards {
                writeln!(f, "  shard {}: {}", s.shard, s.state)?;
            }
        }
        Ok(())
    }
}

/// The last pass of a batch: a final mirror, an upload and a read-back of
/// every target, then the verdict, recorded in the store. Until the batch
/// has been complete once, what is missing at a target is queued again
/// (ours to put back); after go-live, users delete mail, and a repeated
/// cutover only reports it. `progress` gives each step its own reporter.
pub async fn cutover(
    store: Arc<Store>,
    config: &Config,
    options: CutoverOptions,
    progress: &(dyn Fn() -> Arc<dyn Progress> + Send + Sync),
) -> Result<CutoverRun> {
    let before_go_live = !store.index().went_live()?;
    let run_id = store.index().start_run("cutover")?;
    let mirrored =
        crate::mirror::mirror(store.clone(), config, &options.mirror, progress()).await?;
    let uploaded = crate::upload::upload(store.clone(), config, options.upload, progress()).await?;
    let checked = crate::upload::check::check_targets(
        store.clone(),
        config,
        options.check,
        progress(),
        before_go_live,
    )
    .await?;
    // Contacts, events and tasks, for the accounts that have any.
    let with_items = crate::graph::accounts_with_items(&store, &config.accounts)?;
    let (items_uploaded, items_checked) = match (&options.items, with_items.is_empty()) {
        (Some(items), false) => {
            let up =
                crate::graph::upload_items(store.clone(), &with_items, items.clone(), progress())
                    .await?;
            let back = crate::graph::check::check_items(
                store.clone(),
                &with_items,
                items.client.clone(),
                before_go_live,
            )
            .await?;
            (Some(up), Some(back))
        }
        _ => (None, None),
    };
    let snapshot = Snapshot::read(&store.index())?.select(
        store.shown(),
        &Selection {
            batch: Some((
                options.accounts_file.as_path(),
                config.accounts.iter().map(|a| a.name.clone()).collect(),
            )),
            account: None,
        },
    )?;
    let pass = FinalPass {
        mirrored: &mirrored,
        uploaded: &uploaded,
        checked: &checked,
        items_uploaded: items_uploaded.as_ref(),
        items_checked: items_checked.as_ref(),
        snapshot: &snapshot,
        before_go_live,
    };
    let result = verdict(config, &pass, options.mx, options.started_at, now());
    record(&store.index(), &result, run_id)?;
    Ok(CutoverRun {
        mirrored,
        uploaded,
        checked,
        items_uploaded,
        items_checked,
        verdict: result,
        batch: None,
    })
}

/// Looks up the MX records of every domain the batch's addresses are in.
/// Accounts whose name is not an address are returned apart.
pub async fn check_mx(
    config: &Config,
    resolver: Option<SocketAddr>,
) -> (Vec<DomainMx>, Vec<String>) {
    let mut domains: BTreeSet<String> = BTreeSet::new();
    let mut not_addresses = Vec::new();
    for a in &config.accounts {
        match a.name.rsplit_once('@') {
            Some((_, d)) if !d.is_empty() => {
                domains.insert(d.to_ascii_lowercase());
            }
            _ => not_addresses.push(format!(
                "{} ({}) is not an e-mail address; its domain's MX is not checked",
                a.name, a.origin
            )),
        }
    }
    let mut out = Vec::new();
    for domain in domains {
        out.push(
            match crate::dns::check_mx(&domain, resolver, Duration::from_secs(10)).await {
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
            },
        );
    }
    (out, not_addresses)
}

/// What the final pass produced, for [`verdict`].
pub struct FinalPass<'a> {
    pub mirrored: &'a MirrorSummary,
    pub uploaded: &'a UploadSummary,
    pub checked: &'a TargetCheck,
    /// Contacts, events and tasks sent and read back (None: none to send,
    /// or no Graph named).
    pub items_uploaded: Option<&'a ItemsUploaded>,
    pub items_checked: Option<&'a ItemsChecked>,
    /// The store after it.
    pub snapshot: &'a Snapshot,
    /// No cutover was complete before this one: what is missing at the
    /// target is ours to put back (after go-live, users delete mail).
    pub before_go_live: bool,
}

/// Decides, account by account, whether the batch is complete.
pub fn verdict(
    config: &Config,
    pass: &FinalPass,
    mx: Vec<DomainMx>,
    started_at: i64,
    finished_at: i64,
) -> Cutover {
    let accounts: Vec<AccountCutover> = config
        .accounts
        .iter()
        .map(|account| account_verdict(&account.name, pass))
        .collect();
    Cutover {
        started_at,
        finished_at,
        complete: accounts.iter().all(|a| a.complete),
        mx,
        accounts,
    }
}

fn account_verdict(name: &str, pass: &FinalPass) -> AccountCutover {
    let mut open = Vec::new();
    if let Some(m) = pass.mirrored.accounts.iter().find(|a| a.account == name)
        && !m.complete
    {
        open.push(format!(
            "the final mirror did not finish ({})",
            m.error
                .clone()
                .unwrap_or_else(|| m.folder_errors.join("; "))
        ));
    }
    if let Some(u) = pass.uploaded.accounts.iter().find(|a| a.account == name)
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
    let check = pass.checked.accounts.iter().find(|a| a.account == name);
    match check {
        Some(c) if c.error.is_some() => open.push(format!(
            "the target could not be read back ({})",
            c.error.as_deref().unwrap_or_default()
        )),
        Some(c) if pass.before_go_live && (c.missing > 0 || c.to_retry > 0 || c.pending > 0) => {
            open.push(format!(
                "{} messages are not at the target ({} found missing now); run cutover again",
                c.missing.max(c.to_retry) + c.pending,
                c.missing
            ))
        }
        Some(c) if c.to_retry > 0 || c.pending > 0 => open.push(format!(
            "{} messages are not at the target yet; run cutover again",
            c.to_retry + c.pending
        )),
        _ => {}
    }
    let totals = pass
        .snapshot
        .accounts
        .iter()
        .find(|a| a.account == name)
        .cloned()
        .unwrap_or_else(|| AccountStatus {
            account: name.to_string(),
            ..AccountStatus::default()
        });
    if totals.pending > 0 || totals.failed > 0 {
        open.push(format!(
            "{} stored messages are not at the target yet ({} failed)",
            totals.pending + totals.failed,
            totals.failed
        ));
    }
    open.extend(items_verdict(name, pass, &totals));
    AccountCutover {
        account: name.to_string(),
        complete: open.is_empty(),
        open,
        totals,
        missing_at_target: check.map_or(0, |c| c.missing),
        extras_at_target: check.map_or(0, |c| c.extras),
    }
}

/// What keeps an account's contacts, events and tasks from being complete.
fn items_verdict(name: &str, pass: &FinalPass, totals: &AccountStatus) -> Vec<String> {
    let mut open = Vec::new();
    let i = &totals.items;
    if !i.has_items() {
        return open;
    }
    if pass.items_uploaded.is_none() {
        open.push(format!(
            "{} contacts, {} events and {} tasks are stored, and this target names no Microsoft \
             Graph to take them",
            i.contacts, i.events, i.tasks
        ));
        return open;
    }
    if let Some(a) = pass
        .items_uploaded
        .and_then(|u| u.accounts.iter().find(|a| a.account == name))
        && let Some(e) = &a.error
    {
        open.push(format!("contacts, events and tasks: {e}"));
    }
    if let Some(c) = pass
        .items_checked
        .and_then(|c| c.accounts.iter().find(|a| a.account == name))
    {
        if let Some(e) = &c.error {
            open.push(format!(
                "contacts, events and tasks could not be read back ({e})"
            ));
        }
        if pass.before_go_live && !c.differing.is_empty() {
            let items: std::collections::BTreeSet<&str> =
                c.differing.iter().map(|d| d.item.as_str()).collect();
            open.push(format!(
                "{} contacts, events or tasks differ at the target from the store ({}); \
                 `verify --target` names the fields",
                items.len(),
                items.into_iter().take(3).collect::<Vec<_>>().join(", ")
            ));
        }
        if pass.before_go_live && !c.missing.is_empty() {
            open.push(format!(
                "{} contacts, events or tasks were missing at the target (queued again); run \
                 cutover again",
                c.missing.len()
            ));
        }
    }
    let u = &totals.items_uploaded;
    if !u.settled() {
        open.push(format!(
            "{} contacts, events or tasks are not at the target yet ({} failed, {} pending, {} \
             changed since, {} never sent)",
            u.failed + u.pending + u.outdated + u.untried,
            u.failed,
            u.pending,
            u.outdated,
            u.untried
        ));
    }
    open
}

/// Records the cutover in the store (the last one decides go-live) and
/// closes its run.
pub fn record(index: &Index, cutover: &Cutover, run_id: i64) -> Result<()> {
    let json = serde_json::to_string(cutover)?;
    index.record_cutover(&CutoverRow {
        started_at: cutover.started_at,
        finished_at: Some(cutover.finished_at),
        complete: cutover.complete,
        summary: Some(json.clone()),
    })?;
    index.finish_run(run_id, &json)
}

/// The batch's verdict, per account.
impl std::fmt::Display for Cutover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for d in &self.mx {
            writeln!(
                f,
                "MX {}: {}",
                d.domain,
                match (&d.error, d.points_to_microsoft) {
                    (Some(e), _) => format!("not checked ({e})"),
                    (None, true) => "points to Microsoft 365".to_string(),
                    (None, false) => "does NOT point to Microsoft 365 yet".to_string(),
                }
            )?;
        }
        for a in &self.accounts {
            let t = &a.totals;
            writeln!(
                f,
                "{}: {} — {} stored, {} uploaded, {} already there, {} skipped, {} failed, {} pending",
                a.account,
                if a.complete {
                    "complete"
                } else {
                    "NOT complete"
                },
                t.stored,
                t.uploaded,
                t.already_present,
                t.skipped,
                t.failed,
                t.pending
            )?;
            for why in &a.open {
                writeln!(f, "  open: {why}")?;
            }
            if a.complete && a.missing_at_target > 0 {
                writeln!(
                    f,
                    "  note: {} messages are no longer at the target (deleted there since the \
                 cutover?); `verify --target --requeue-missing` and `upload` would put them back",
                    a.missing_at_target
                )?;
            }
        }
        let done = self.accounts.iter().filter(|a| a.complete).count();
        let wrong_mx: Vec<&str> = self
            .mx
            .iter()
            .filter(|d| !d.points_to_microsoft)
            .map(|d| d.domain.as_str())
            .collect();
        if !wrong_mx.is_empty() {
            writeln!(
                f,
                "\nnote: MX of {} is not (known to be) Microsoft 365: mail arriving at the old host \
             after this pass is not copied; run cutover again once MX has switched",
                wrong_mx.join(", ")
            )?;
        }
        writeln!(
            f,
            "\ncutover {} at {}: {done} of {} accounts complete{}",
            if self.complete {
                "COMPLETE"
            } else {
                "NOT complete"
            },
            crate::format::when(Some(self.finished_at)),
            self.accounts.len(),
            if self.complete {
                ""
            } else {
                "; fix what is open and run cutover again (it is safe to repeat)"
            }
        )?;
        Ok(())
    }
}
