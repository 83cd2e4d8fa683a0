//! Human-readable tables for summaries and status.

pub mod html;
pub mod snapshot;

use std::fmt::Write as _;

use crate::format::{bytes, when};
use crate::mirror::MirrorSummary;
pub use snapshot::{AccountState, AccountStatus, Selection, Snapshot};

/// The end-of-run summary of a mirror.
pub fn mirror_summary(s: &MirrorSummary) -> String {
    let mut out = String::new();
    if s.interrupted {
        let _ = writeln!(
            out,
            "INTERRUPTED — run again to continue (the store is safe)\n"
        );
    }
    let _ = writeln!(
        out,
        "{:<32} {:>8} {:>8} {:>9} {:>10} {:>9} {:>8} {:>8} {:>7}",
        "account",
        "folders",
        "changed",
        "fetched",
        "bytes",
        "skipped",
        "expunged",
        "flags",
        "trips"
    );
    for a in &s.accounts {
        let c = &a.counts;
        let _ = writeln!(
            out,
            "{:<32} {:>8} {:>8} {:>9} {:>10} {:>9} {:>8} {:>8} {:>7}",
            a.account,
            c.folders_checked,
            c.folders_synced,
            c.bodies_fetched,
            bytes(c.bytes_fetched),
            c.bodies_skipped_as_stored,
            c.messages_expunged,
            c.flags_updated,
            c.round_trips
        );
        if let Some(e) = &a.error {
            let _ = writeln!(out, "  FAILED: {e}");
        }
        for e in &a.folder_errors {
            let _ = writeln!(out, "  incomplete: {e}");
        }
    }
    let t = &s.totals;
    let complete = s.accounts.iter().filter(|a| a.complete).count();
    let _ = writeln!(
        out,
        "\n{complete} of {} accounts complete in {:.1}s: {} folders checked, {} bodies fetched \
         ({}), {} skipped as already stored, {} fetched but already stored, {} expunged at \
         source, {} flag changes, {} round trips, {} on the wire.",
        s.accounts.len(),
        s.seconds,
        t.folders_checked,
        t.bodies_fetched,
        bytes(t.bytes_fetched),
        t.bodies_skipped_as_stored,
        t.bodies_already_stored,
        t.messages_expunged,
        t.flags_updated,
        t.round_trips,
        bytes(t.wire_bytes_in + t.wire_bytes_out),
    );
    out
}

/// "date | from | subject | size" of a message named in a list.
fn message_line(
    date: &Option<String>,
    from: &Option<String>,
    subject: &Option<String>,
    size: u64,
) -> String {
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    format!(
        "{} | {} | {} | {}",
        or_dash(date),
        or_dash(from),
        or_dash(subject),
        bytes(size)
    )
}

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

/// The end-of-run summary of an upload.
pub fn upload_summary(s: &crate::upload::UploadSummary) -> String {
    let mut out = String::new();
    if s.interrupted {
        let _ = writeln!(
            out,
            "INTERRUPTED — run again to continue (what was in flight is settled then)\n"
        );
    }
    if s.dry_run {
        let _ = writeln!(out, "dry run: nothing was changed\n");
        for a in &s.accounts {
            let _ = writeln!(out, "{} -> {}", a.account, a.target);
            if let Some(e) = &a.error {
                let _ = writeln!(out, "  FAILED: {e}");
            }
            for p in &a.planned {
                let _ = writeln!(
                    out,
                    "  {:>6} messages {:>10}  to {:<32} from {}",
                    p.append,
                    bytes(p.bytes),
                    p.target_folder,
                    p.sources.join(", ")
                );
            }
        }
        let _ = writeln!(
            out,
            "\nwould append {} messages ({})",
            s.totals.would_append,
            bytes(s.totals.would_append_bytes)
        );
        return out;
    }
    let _ = writeln!(
        out,
        "{:<32} {:>9} {:>10} {:>8} {:>8} {:>8} {:>7} {:>7}",
        "account", "appended", "bytes", "earlier", "skipped", "failed", "flags", "trips"
    );
    for a in &s.accounts {
        let c = &a.counts;
        let _ = writeln!(
            out,
            "{:<32} {:>9} {:>10} {:>8} {:>8} {:>8} {:>7} {:>7}",
            a.account,
            c.appended,
            bytes(c.bytes_appended),
            c.already_present,
            c.skipped,
            c.failed,
            c.flags_pushed,
            c.round_trips
        );
        if let Some(e) = &a.error {
            let _ = writeln!(out, "  FAILED: {e}");
        }
        for e in &a.folder_errors {
            let _ = writeln!(out, "  incomplete: {e}");
        }
    }
    let t = &s.totals;
    let reasons: Vec<String> = t
        .skipped_by_reason
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect();
    let otherwise: String = t
        .sent_otherwise
        .iter()
        .map(|(k, v)| format!(", {v} sent with {k}"))
        .collect();
    let complete = s.accounts.iter().filter(|a| a.complete).count();
    let _ = writeln!(
        out,
        "\n{complete} of {} accounts complete in {:.1}s: {} appended ({}), {} at the target from \
         earlier runs{}{otherwise}, {} skipped{}, {} failed, {} flag changes pushed, {} throttled \
         ({} ms waited), {} round trips.",
        s.accounts.len(),
        s.seconds,
        t.appended,
        bytes(t.bytes_appended),
        t.already_present,
        if t.duplicates > 0 {
            format!(
                ", {} extra copies of messages already in the same folder (each uploaded once)",
                t.duplicates
            )
        } else {
            String::new()
        },
        t.skipped,
        if reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", reasons.join(", "))
        },
        t.failed,
        t.flags_pushed,
        t.throttled,
        t.throttle_wait_ms,
        t.round_trips,
    );
    out
}

/// `plan`: the folder map of each account.
pub fn plan(maps: &[(String, Vec<crate::upload::MapEntry>)]) -> String {
    let mut out = String::new();
    for (account, map) in maps {
        let _ = writeln!(out, "{account}:");
        for e in map {
            let _ = writeln!(
                out,
                "  {:<36} -> {:<36} ({})",
                e.source,
                e.target.as_deref().unwrap_or("(not uploaded)"),
                e.why
            );
        }
    }
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
                message_line(&n.date, &n.from, &n.subject, n.size),
                n.reason
            );
        }
    }
    out
}

/// `verify --target`: per account and folder, what was found where.
pub fn target_check(c: &crate::upload::check::TargetCheck) -> String {
    let mut out = String::new();
    for a in &c.accounts {
        let _ = writeln!(
            out,
            "{} at {}: {} expected, {} found, {} missing, {} extra at the target{}",
            a.account,
            a.target,
            a.expected,
            a.found,
            a.missing,
            a.extras,
            if a.pending + a.to_retry > 0 {
                format!(
                    "; {} to append again and {} pending: run upload",
                    a.to_retry, a.pending
                )
            } else {
                String::new()
            }
        );
        if let Some(e) = &a.error {
            let _ = writeln!(out, "  NOT CHECKED: {e}");
        }
        for f in &a.folders {
            let _ = writeln!(
                out,
                "  {:<36} {:>7} expected {:>7} by UID {:>6} by Message-ID {:>5} other {:>5} \
                 missing {:>5} extra{}",
                f.folder,
                f.expected,
                f.found_by_uid,
                f.found_by_message_id,
                f.found_otherwise,
                f.missing.len(),
                f.extras,
                if f.folder_missing {
                    "  (FOLDER GONE)"
                } else {
                    ""
                }
            );
            for m in &f.missing {
                let _ = writeln!(
                    out,
                    "    missing: {}",
                    message_line(&m.date, &m.from, &m.subject, m.size)
                );
            }
        }
    }
    let missing: u64 = c.accounts.iter().map(|a| a.missing).sum();
    let unsettled: u64 = c.accounts.iter().map(|a| a.to_retry + a.pending).sum();
    let failed = c.accounts.iter().filter(|a| a.error.is_some()).count();
    let _ = writeln!(
        out,
        "\n{} of {} accounts checked in {:.1}s: {}",
        c.accounts.len() - failed,
        c.accounts.len(),
        c.seconds,
        if failed > 0 {
            "some accounts could not be checked".to_string()
        } else if missing > 0 && c.requeued {
            format!("{missing} missing; the next upload appends them again")
        } else if missing > 0 {
            format!(
                "{missing} missing (deleted at the target?); `verify --target \
                 --requeue-missing` marks them for the next upload"
            )
        } else if unsettled > 0 {
            format!("{unsettled} messages are not at the target yet; run upload")
        } else {
            "every message the ledger has is at the target".to_string()
        }
    );
    out
}

/// `preflight`: per account, go or no-go and why, then the counts.
pub fn preflight(p: &crate::preflight::Preflight) -> String {
    let mut out = String::new();
    for a in &p.accounts {
        let _ = writeln!(
            out,
            "{} -> {}: {}",
            a.account,
            a.target,
            if a.go { "GO" } else { "NO-GO" }
        );
        for why in &a.no_go {
            let _ = writeln!(out, "  no-go: {why}");
        }
        if a.source_ok {
            let _ = writeln!(
                out,
                "  source: {} folders, {} messages, {}; quota at the target {}{}",
                a.folders.len(),
                a.messages,
                bytes(a.bytes),
                match a.quota_bytes {
                    Some(q) => format!("{} ({})", bytes(q), a.quota_from),
                    None => a.quota_from.clone(),
                },
                a.target_used_bytes
                    .map(|u| format!(", {} already used there", bytes(u)))
                    .unwrap_or_default()
            );
        }
        for w in &a.warnings {
            let _ = writeln!(out, "  warning: {w}");
        }
        for t in &a.too_large {
            let _ = writeln!(
                out,
                "    too large: {} | {}",
                t.folder,
                message_line(&t.date, &t.from, &t.subject, t.size)
            );
        }
        for (from, to, why) in &a.renamed {
            let _ = writeln!(out, "  renamed at the target: {from:?} -> {to:?} ({why})");
        }
        for f in &a.folders {
            let _ = writeln!(
                out,
                "    {:<36} {:>8} messages {:>10}",
                f.folder,
                f.messages,
                bytes(f.bytes)
            );
        }
    }
    let go = p.accounts.iter().filter(|a| a.go).count();
    let _ = writeln!(
        out,
        "\n{go} of {} accounts GO, {} NO-GO ({:.1}s)",
        p.accounts.len(),
        p.accounts.len() - go,
        p.seconds
    );
    out
}
