//! Human-readable tables for summaries and status.

pub mod html;
pub mod snapshot;

use std::fmt::Write as _;

use crate::format::{bytes, when};
pub use snapshot::{AccountState, AccountStatus, Selection, Snapshot};

/// A count the source never reported: "-".
fn maybe(n: Option<u32>) -> String {
    n.map(|n| n.to_string()).unwrap_or_else(|| "-".into())
}

/// `status --summary`: one line per account, for batches of hundreds.
pub fn account_lines(snap: &Snapshot) -> String {
    let mut out = String::new();
    let width = snap
        .accounts
        .iter()
        .map(|a| a.account.len())
        .max()
        .unwrap_or(7)
        .max(7);
    let _ = writeln!(
        out,
        "{:<width$} {:<12} {:>5} {:>9} {:>9} {:>10} {:>9} {:>8} {:>8} {:>7} {:>8}",
        "account",
        "state",
        "done",
        "at source",
        "stored",
        "size",
        "uploaded",
        "present",
        "skipped",
        "failed",
        "pending"
    );
    for a in &snap.accounts {
        let _ = writeln!(
            out,
            "{:<width$} {:<12} {:>4.0}% {:>9} {:>9} {:>10} {:>9} {:>8} {:>8} {:>7} {:>8}",
            a.account,
            a.state.label(),
            a.percent_done().floor(),
            a.at_source,
            a.stored,
            bytes(a.stored_bytes),
            a.uploaded,
            a.already_present,
            a.skipped,
            a.failed,
            a.pending
        );
    }
    for a in &snap.accounts {
        if let Some(line) = error_line(a) {
            let _ = writeln!(out, "{}: {line}", a.account);
        }
    }
    if snap.accounts.is_empty() {
        let _ = writeln!(out, "the store holds no folders yet");
    }
    let _ = writeln!(out, "{}", batch_line(snap));
    out
}

/// The account's last failure, with when it happened and when the same
/// stage last ended well.
fn error_line(a: &AccountStatus) -> Option<String> {
    let (stage, run) = a.last_error()?;
    let err = run.error.as_ref()?;
    Some(format!(
        "{} FAILED {} ({}): {}; last good {}: {}",
        match stage {
            crate::store::index::Stage::Mirror => "mirror",
            crate::store::index::Stage::Upload => "upload",
        },
        when(Some(run.last_attempt_at)),
        err.kind.as_str(),
        err.text,
        match stage {
            crate::store::index::Stage::Mirror => "mirror",
            crate::store::index::Stage::Upload => "upload",
        },
        when(run.last_ok_at)
    ))
}

/// One line on the whole batch: complete or not, and why not.
fn batch_line(snap: &Snapshot) -> String {
    let count = |s: AccountState| snap.accounts.iter().filter(|a| a.state == s).count();
    let total = snap.accounts.len();
    if snap.complete {
        return format!("batch: COMPLETE ({total} of {total} accounts)");
    }
    format!(
        "batch: NOT complete: {} of {total} accounts complete, {} in progress, {} failed, {} \
         not mirrored",
        count(AccountState::Complete),
        count(AccountState::InProgress),
        count(AccountState::Failed),
        count(AccountState::NotMirrored)
    )
}

/// When each phase last ran, and the last cutover.
pub fn phases(snap: &Snapshot) -> String {
    let r = &snap.last_runs;
    let mut out = format!(
        "last preflight: {}   last mirror: {}   last upload: {}\n",
        when(r.preflight),
        when(r.mirror),
        when(r.upload)
    );
    if let Some(c) = &snap.cutover {
        let _ = writeln!(
            out,
            "cutover: {} (started {}, finished {})",
            if c.complete {
                "COMPLETE"
            } else {
                "not complete"
            },
            when(Some(c.started_at)),
            when(c.finished_at)
        );
    }
    for s in &snap.shards {
        let said = match s.state.as_str() {
            "missing" => "MISSING: no index snapshot in the store (never run, or removed); its \
                          accounts are not shown as they are"
                .to_string(),
            "stale" => format!(
                "STALE: its worker stopped without ending its run (killed?); index as of {}",
                when(s.snapshot_at)
            ),
            "running" => format!(
                "running on {}; index as of {}",
                s.holder.as_deref().unwrap_or("?"),
                when(s.snapshot_at)
            ),
            _ => format!("finished; index as of {}", when(s.snapshot_at)),
        };
        let _ = writeln!(out, "shard {}: {said}", s.shard);
    }
    out
}

/// `status`: per account, one line per folder with the source and the
/// target side by side.
pub fn status_table(snap: &Snapshot) -> String {
    let mut out = phases(snap);
    for a in &snap.accounts {
        let _ = writeln!(
            out,
            "\n{}{}: {}, {} folders, {} at source, {} stored ({}), {:.0}% at the target",
            a.account,
            a.target
                .as_deref()
                .filter(|t| *t != a.account)
                .map(|t| format!(" -> {t}"))
                .unwrap_or_default(),
            a.state.label(),
            a.folders,
            a.at_source,
            a.stored,
            bytes(a.stored_bytes),
            a.percent_done().floor()
        );
        if let Some(line) = error_line(a) {
            let _ = writeln!(out, "  {line}");
        }
        if !a.items.is_empty() {
            let _ = writeln!(out, "  {}", items_line(a));
            for n in &a.item_notices {
                let _ = writeln!(out, "    {}", notice_line(n));
            }
        }
        let _ = writeln!(
            out,
            "  {:<32} {:>9} {:>8} {:>8} {:>10} {:>8} {:>7} {:>7} {:>6} {:>7}  last checked",
            "folder",
            "at source",
            "stored",
            "expunged",
            "size",
            "uploaded",
            "present",
            "skipped",
            "failed",
            "pending"
        );
        for f in snap.folders.iter().filter(|f| f.account == a.account) {
            let name = if f.deleted_at_source {
                format!("{} (deleted at source)", f.folder)
            } else if f.left_out {
                format!("{} (left out by the map)", f.folder)
            } else {
                f.folder.clone()
            };
            let _ = writeln!(
                out,
                "  {:<32} {:>9} {:>8} {:>8} {:>10} {:>8} {:>7} {:>7} {:>6} {:>7}  {}",
                name,
                maybe(f.at_source),
                f.stored,
                f.expunged,
                bytes(f.stored_bytes),
                f.uploaded,
                f.already_present,
                f.skipped,
                f.failed,
                f.pending,
                when(f.last_checked_at)
            );
            if let Some(e) = &f.last_error {
                let _ = writeln!(out, "    FAILED: {e}");
            }
        }
    }
    if snap.accounts.is_empty() {
        let _ = writeln!(out, "\nthe store holds no folders yet");
    }
    let _ = writeln!(out, "\n{}", batch_line(snap));
    out
}

/// `status`, upload side: the ledger per target folder, then every message
/// that did not go, with the reason.
pub fn target_table(
    targets: &[crate::store::index::TargetFolderStatus],
    not_uploaded: &[crate::store::index::NotUploaded],
) -> String {
    let mut out = String::new();
    if targets.is_empty() {
        return out;
    }
    let mut mailbox = "";
    for t in targets {
        if t.target != mailbox {
            mailbox = &t.target;
            let _ = writeln!(out, "\n{} at {}:", t.target, t.host);
            let _ = writeln!(
                out,
                "  {:<40} {:>9} {:>8} {:>8} {:>7} {:>8}",
                "target folder", "uploaded", "present", "skipped", "failed", "pending"
            );
        }
        let _ = writeln!(
            out,
            "  {:<40} {:>9} {:>8} {:>8} {:>7} {:>8}",
            t.folder, t.uploaded, t.already_present, t.skipped, t.failed, t.pending
        );
    }
    if !not_uploaded.is_empty() {
        let _ = writeln!(out, "\nnot uploaded:");
        for n in not_uploaded {
            let _ = writeln!(
                out,
                "  {} {}/{}: {}: {}",
                n.state,
                n.target,
                n.folder,
                crate::format::message_line(&n.date, &n.from, &n.subject, n.size),
                n.reason
            );
        }
    }
    out
}

/// One line on an account's contacts, events and tasks: stored, and where
/// they stand at the target.
pub fn items_line(a: &AccountStatus) -> String {
    let (i, u) = (&a.items, &a.items_uploaded);
    let mut line = format!(
        "contacts, events and tasks: {} contacts, {} events, {} tasks stored",
        i.contacts, i.events, i.tasks
    );
    let mut parts = vec![format!("{} uploaded", u.done)];
    for (n, what) in [
        (u.outdated, "changed since (the next upload updates them)"),
        (u.pending, "pending"),
        (u.failed, "FAILED"),
        (u.skipped, "not uploadable"),
        (u.untried, "not uploaded yet"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    line.push_str("; ");
    line.push_str(&parts.join(", "));
    if u.with_losses > 0 {
        line.push_str(&format!(
            "; {} uploaded without some of their fields",
            u.with_losses
        ));
    }
    if i.problems > 0 {
        line.push_str(&format!(
            "; {} could not be read from their files",
            i.problems
        ));
    }
    line
}

/// One item that is not at the target as stored, with why.
pub fn notice_line(n: &crate::store::item_ledger::ItemNotice) -> String {
    use crate::store::item_ledger::ItemState;
    let state = match n.state {
        ItemState::Done => "uploaded without some fields",
        ItemState::Pending => "pending",
        ItemState::Skipped => "not uploadable",
        ItemState::Failed => "failed",
    };
    let detail = n.detail.replace('\n', "; ");
    format!(
        "{} {:?} ({}): {state}: {detail}",
        n.kind.as_str(),
        n.name,
        n.collection
    )
}
