//! `report --html`: one self-contained page for the customer. Inline CSS,
//! no script, nothing fetched from anywhere; it prints as it shows.
//!
//! Every number also `status --json` prints carries `data-account`,
//! `data-field` (and for folder rows `data-folder`) plus the exact value in
//! `data-value`, so a test or a script can read the page back.
//!
//! Everything that comes from mail or from a server (subjects, senders,
//! folder names, reasons, account names) goes through [`escape`].

use std::fmt::Write as _;

use super::{AccountState, AccountStatus, Snapshot, bytes, when};
use crate::store::index::{FolderStatus, NotUploaded};

/// Longest subject or sender shown, in characters; the rest is cut with "…".
const MAX_TEXT: usize = 400;

/// HTML-escapes text for element content and quoted attribute values alike.
/// Control characters (which have no business in a subject line) become
/// U+FFFD so that nothing invisible reaches the page.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' => out.push(' '),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// [`escape`] after cutting to [`MAX_TEXT`] characters.
fn escape_cut(s: &str) -> String {
    if s.chars().count() <= MAX_TEXT {
        return escape(s);
    }
    let cut: String = s.chars().take(MAX_TEXT).collect();
    format!("{}…", escape(&cut))
}

/// 12345 → "12,345".
fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The Date header (RFC 3339 in the index) in UTC like every other time on
/// the page; anything unparseable as it is.
fn mail_date(d: Option<&str>) -> String {
    match d {
        None => "—".into(),
        Some(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|d| {
                d.with_timezone(&chrono::Utc)
                    .format("%Y-%m-%d %H:%M UTC")
                    .to_string()
            })
            .unwrap_or_else(|_| escape_cut(s)),
    }
}

/// How one folder's (or account's) stored messages stand at the target.
struct Split {
    /// Not complete (a failure, or not all settled): never shown as 100%.
    capped: bool,
    stored: u64,
    uploaded: u64,
    already_present: u64,
    skipped: u64,
    failed: u64,
    pending: u64,
}

impl Split {
    fn of_account(a: &AccountStatus) -> Split {
        Split {
            capped: a.state != AccountState::Complete,
            stored: a.stored,
            uploaded: a.uploaded,
            already_present: a.already_present,
            skipped: a.skipped,
            failed: a.failed,
            pending: a.pending,
        }
    }

    fn of_folder(f: &FolderStatus) -> Split {
        Split {
            capped: f.last_error.is_some(),
            stored: f.stored,
            uploaded: f.uploaded,
            already_present: f.already_present,
            skipped: f.skipped,
            failed: f.failed,
            pending: f.pending,
        }
    }

    /// The same rule as [`AccountStatus::percent_done`], floored as `status` shows it.
    fn percent_done(&self) -> u64 {
        AccountStatus {
            stored: self.stored,
            uploaded: self.uploaded,
            already_present: self.already_present,
            skipped: self.skipped,
            folders: 1,
            state: if self.capped {
                AccountState::InProgress
            } else {
                AccountState::Complete
            },
            ..AccountStatus::default()
        }
        .percent_done()
        .floor() as u64
    }
}

/// The bar segments, in order: class, legend label, value.
fn segments(s: &Split) -> [(&'static str, &'static str, u64); 5] {
    [
        ("up", "Uploaded", s.uploaded),
        ("present", "Already at the target", s.already_present),
        ("skip", "Skipped", s.skipped),
        ("fail", "Failed", s.failed),
        ("pending", "Not yet uploaded", s.pending),
    ]
}

/// A stacked horizontal bar: each segment's width is its share of the
/// folder's stored messages.
fn bar(s: &Split) -> String {
    let whole: u64 = segments(s)
        .iter()
        .map(|(_, _, n)| n)
        .sum::<u64>()
        .max(s.stored);
    if whole == 0 {
        return r#"<div class="bar empty" title="No messages"><span class="none">no messages</span></div>"#
            .into();
    }
    let mut out = String::from(r#"<div class="bar" role="img" aria-label=""#);
    let label: Vec<String> = segments(s)
        .iter()
        .filter(|(_, _, n)| *n > 0)
        .map(|(_, name, n)| format!("{name}: {}", count(*n)))
        .collect();
    out.push_str(&escape(&label.join(", ")));
    out.push_str(r#"">"#);
    for (class, name, n) in segments(s) {
        if n == 0 {
            continue;
        }
        let pct = n as f64 * 100.0 / whole as f64;
        let _ = write!(
            out,
            r#"<span class="seg {class}" style="width:{pct:.3}%" title="{name}: {}"></span>"#,
            count(n)
        );
    }
    out.push_str("</div>");
    out
}

fn legend() -> String {
    let mut out = String::from(r#"<div class="legend">"#);
    for (class, name, _) in segments(&Split {
        capped: false,
        stored: 0,
        uploaded: 0,
        already_present: 0,
        skipped: 0,
        failed: 0,
        pending: 0,
    }) {
        let _ = write!(
            out,
            r#"<span class="key"><span class="swatch {class}"></span>{name}</span>"#
        );
    }
    out.push_str("</div>");
    out
}

/// A number cell with its markers: `data-value` holds the exact value.
fn num_cell(attrs: &str, field: &str, n: u64, text: &str, class: &str) -> String {
    format!(
        r#"<td class="num{class}" {attrs} data-field="{field}" data-value="{n}">{text}</td>"#,
        class = if class.is_empty() {
            String::new()
        } else {
            format!(" {class}")
        },
    )
}

/// Emphasis for a skipped or failed count that is not zero.
fn alert(field: &str, n: u64) -> &'static str {
    match (field, n) {
        (_, 0) => "zero",
        ("skipped", _) => "warn",
        ("failed", _) => "bad",
        _ => "",
    }
}

/// The state as `status --json` names it.
fn state_key(s: AccountState) -> &'static str {
    match s {
        AccountState::NotMirrored => "not_mirrored",
        AccountState::Failed => "failed",
        AccountState::InProgress => "in_progress",
        AccountState::Complete => "complete",
    }
}

/// The account's last failure in the server's words, when and since when.
fn error_box(a: &AccountStatus) -> String {
    let Some((stage, run)) = a.last_error() else {
        return String::new();
    };
    let Some(err) = &run.error else {
        return String::new();
    };
    let stage = match stage {
        crate::store::index::Stage::Mirror => "mirror",
        crate::store::index::Stage::Upload => "upload",
    };
    format!(
        r#"<div class="errorbox" data-account="{acct}" data-field="last_error"><strong>The last {stage} failed</strong> ({at}): {text}<br><span class="sub">Last {stage} that ended well: {ok}</span></div>
"#,
        acct = escape(&a.account),
        at = when(Some(run.last_attempt_at)),
        text = escape_cut(&err.text),
        ok = when(run.last_ok_at),
    )
}

/// The status of an account, in a word, and its badge class.
fn account_state(a: &AccountStatus) -> (String, &'static str) {
    match a.state {
        AccountState::Failed => {
            let why = a
                .last_error()
                .and_then(|(_, r)| r.error.as_ref())
                .map(|e| match e.kind {
                    crate::outcome::FailureKind::Login => "login refused",
                    crate::outcome::FailureKind::Connect => "server unreachable",
                    crate::outcome::FailureKind::Interrupted => "interrupted",
                    crate::outcome::FailureKind::Other => "error",
                })
                .unwrap_or("folder not checked");
            return (format!("Failed: {why}"), "bad");
        }
        AccountState::NotMirrored => return ("Not mirrored".into(), "idle"),
        AccountState::InProgress | AccountState::Complete => {}
    }
    if a.failed > 0 {
        (format!("{} failed", count(a.failed)), "bad")
    } else if a.target.is_none() && a.stored > 0 {
        ("Not uploaded yet".into(), "idle")
    } else if a.pending > 0 || a.state != AccountState::Complete {
        ("In progress".into(), "busy")
    } else if a.skipped > 0 {
        (format!("Complete · {} skipped", count(a.skipped)), "warn")
    } else {
        ("Complete".into(), "good")
    }
}

const CSS: &str = r#"
:root{--ink:#1d2733;--muted:#5d6b7a;--line:#dde3ea;--soft:#f4f6f9;--accent:#0b5cad;
--up:#2e7d32;--present:#8bc34a;--skip:#f2a900;--fail:#c62828;--pending:#cfd8dc}
*{box-sizing:border-box}
html{-webkit-print-color-adjust:exact;print-color-adjust:exact}
body{margin:0;background:#eef1f5;color:var(--ink);
font:14px/1.45 "Segoe UI","Helvetica Neue",Helvetica,Arial,"DejaVu Sans",sans-serif}
.page{max-width:1200px;margin:0 auto;padding:32px 40px 48px;background:#fff;min-height:100vh}
header.top{display:flex;justify-content:space-between;align-items:flex-end;gap:24px;
border-bottom:3px solid var(--accent);padding-bottom:16px;margin-bottom:24px}
h1{font-size:26px;margin:0 0 4px;font-weight:600;letter-spacing:-.01em}
h2{font-size:18px;margin:0;font-weight:600}
h3{font-size:14px;margin:20px 0 8px;font-weight:600;color:var(--muted);text-transform:uppercase;
letter-spacing:.04em}
.sub{color:var(--muted)}
.stamp{text-align:right;color:var(--muted);font-size:13px;white-space:nowrap}
.errorbox{border-left:4px solid var(--fail);background:#fdecea;padding:8px 12px;margin:8px 0 12px}
.tag.bad{background:#fdecea;color:var(--fail)}
.cards{display:grid;grid-template-columns:repeat(6,1fr);gap:12px;margin:0 0 20px}
.card{border:1px solid var(--line);border-radius:6px;padding:10px 14px;background:var(--soft)}
.card .label{font-size:12px;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
.card .big{font-size:22px;font-weight:600;font-variant-numeric:tabular-nums}
.card .small{font-size:12px;color:var(--muted)}
.phases{display:grid;grid-template-columns:repeat(4,1fr);gap:12px;margin:0 0 28px}
.phase{border-left:4px solid var(--accent);padding:6px 12px;background:var(--soft)}
.phase .label{font-size:12px;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
.phase .time{font-weight:600;font-variant-numeric:tabular-nums}
.phase.never{border-left-color:var(--pending)}
.phase.never .time{color:var(--muted);font-weight:400}
table{width:100%;border-collapse:collapse;margin:0 0 8px}
th,td{padding:6px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:middle}
th{font-size:12px;font-weight:600;color:var(--muted);background:var(--soft);
border-bottom:2px solid var(--line);white-space:nowrap}
th.num,td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.zero{color:#a3adb8}
td.warn{color:#9a6700;font-weight:600}
td.bad{color:var(--fail);font-weight:600}
tr{break-inside:avoid}
tfoot td{font-weight:600;border-top:2px solid var(--line);border-bottom:none}
.name{overflow-wrap:anywhere}
.name .to{display:block;font-size:12px;color:var(--muted)}
.tag{display:inline-block;font-size:11px;padding:0 6px;border-radius:8px;background:#eceff1;
color:var(--muted);margin-left:6px;vertical-align:1px}
.badge{display:inline-block;font-size:12px;font-weight:600;padding:2px 10px;border-radius:10px;
white-space:nowrap}
.badge.good{background:#e3f1e4;color:#1b5e20}
.badge.warn{background:#fff3d6;color:#7a5200}
.badge.bad{background:#fbe3e3;color:#9b1c1c}
.badge.busy{background:#e2edf9;color:#0b4a8b}
.badge.idle{background:#eceff1;color:#455a64}
.bar{display:flex;height:14px;width:100%;border-radius:3px;overflow:hidden;
background:var(--pending)}
.bar .seg{display:block;height:100%;min-width:2px}
.bar.empty{background:repeating-linear-gradient(45deg,#f1f3f5,#f1f3f5 4px,#e6e9ed 4px,#e6e9ed 8px);
align-items:center;justify-content:center}
.bar .none{font-size:10px;color:var(--muted);line-height:14px}
.up{background:var(--up)}.present{background:var(--present)}.skip{background:var(--skip)}
.fail{background:var(--fail)}.pending{background:var(--pending)}
table.grid{table-layout:fixed}
table.grid th.num{white-space:normal;vertical-align:bottom}
.pct{font-size:12px;color:var(--muted);font-variant-numeric:tabular-nums}
.legend{display:flex;flex-wrap:wrap;gap:6px 18px;font-size:12px;color:var(--muted);margin:4px 0 12px}
.legend .key{display:inline-flex;align-items:center;gap:6px}
.swatch{display:inline-block;width:12px;height:12px;border-radius:2px}
section.account{margin:32px 0 0;padding-top:20px;border-top:1px solid var(--line)}
.acct-head{display:flex;justify-content:space-between;align-items:center;gap:16px;margin-bottom:6px}
.acct-head .facts{color:var(--muted);font-size:13px}
table.misses td{font-size:13px;vertical-align:top}
table.misses td.subject{overflow-wrap:anywhere;max-width:340px}
table.misses td.from{overflow-wrap:anywhere;max-width:220px}
table.misses td.reason{overflow-wrap:anywhere;max-width:240px}
.state{font-size:11px;font-weight:700;text-transform:uppercase;letter-spacing:.04em}
.state.skipped{color:#9a6700}.state.failed{color:var(--fail)}
.ok-note{color:var(--up);font-size:13px;margin:4px 0 0}
.note{font-size:12px;color:var(--muted);margin:8px 0 0}
a{color:var(--accent);text-decoration:none}
footer{margin-top:40px;padding-top:12px;border-top:1px solid var(--line);font-size:12px;color:var(--muted)}
@media print{
body{background:#fff;font-size:11px}
.page{max-width:none;padding:0;min-height:0}
h1{font-size:20px}
.card .big{font-size:18px}
th{font-size:10px}
section.account{break-before:auto}
.acct-head,h3{break-after:avoid}
a{color:inherit}
@page{size:A4 landscape;margin:14mm}
}
"#;

/// The whole page.
pub fn render(snap: &Snapshot) -> String {
    let generated = when(Some(snap.generated_at));
    let n = snap.accounts.len();
    let accounts_word = if n == 1 { "account" } else { "accounts" };
    let title = format!("Mailbox migration report — {n} {accounts_word} — {generated}");
    let mut out = String::with_capacity(16 * 1024);
    let _ = write!(
        out,
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="mailferry {version}">
<title>{title}</title>
<style>{CSS}</style>
</head>
<body>
<div class="page">
<header class="top">
<div><h1>Mailbox migration report</h1>
<div class="sub"><span data-field="account_count" data-value="{n}">{n}</span> {accounts_word} · generated <span data-field="generated_at" data-value="{gen_raw}">{generated}</span></div></div>
<div class="stamp">{cutover_badge}</div>
</header>
"#,
        version = env!("CARGO_PKG_VERSION"),
        title = escape(&title),
        gen_raw = snap.generated_at,
        cutover_badge = cutover_badge(snap),
    );
    totals_cards(&mut out, snap);
    phases(&mut out, snap);
    shards(&mut out, snap);
    overview(&mut out, snap);
    for (i, a) in snap.accounts.iter().enumerate() {
        account_section(&mut out, snap, i, a);
    }
    orphans(&mut out, snap);
    let _ = write!(
        out,
        r#"<footer>Produced by mailferry {version} from the migration store on {generated}. Every message stays in that store, including those listed as skipped or failed. Message dates are shown in UTC.</footer>
</div>
</body>
</html>
"#,
        version = env!("CARGO_PKG_VERSION"),
    );
    out
}

fn cutover_badge(snap: &Snapshot) -> String {
    match &snap.cutover {
        None => r#"<span class="badge idle" data-field="cutover_state" data-value="none">Cutover not started</span>"#.into(),
        Some(c) if c.complete => format!(
            r#"<span class="badge good" data-field="cutover_state" data-value="complete">Cutover complete</span><br>finished {}"#,
            when(c.finished_at)
        ),
        Some(c) => format!(
            r#"<span class="badge busy" data-field="cutover_state" data-value="incomplete">Cutover not complete</span><br>started {}"#,
            when(Some(c.started_at))
        ),
    }
}

/// Batch-wide totals (sums over the accounts), as cards.
fn totals_cards(out: &mut String, snap: &Snapshot) {
    let sum = |f: fn(&AccountStatus) -> u64| snap.accounts.iter().map(f).sum::<u64>();
    let stored = sum(|a| a.stored);
    let at_target = sum(|a| a.uploaded) + sum(|a| a.already_present);
    let cards: [(&str, &str, u64, String); 6] = [
        (
            "Mailboxes",
            "folders",
            n_u64(snap.accounts.len()),
            format!("{} folders", count(sum(|a| a.folders))),
        ),
        (
            "Messages stored",
            "stored",
            stored,
            bytes(sum(|a| a.stored_bytes)),
        ),
        (
            "At the target",
            "at_target",
            at_target,
            format!(
                "{} uploaded, {} already there",
                count(sum(|a| a.uploaded)),
                count(sum(|a| a.already_present))
            ),
        ),
        (
            "Skipped",
            "skipped",
            sum(|a| a.skipped),
            "refused by the target".into(),
        ),
        (
            "Failed",
            "failed",
            sum(|a| a.failed),
            "to be retried".into(),
        ),
        (
            "Not yet uploaded",
            "pending",
            sum(|a| a.pending),
            "waiting for the next run".into(),
        ),
    ];
    out.push_str(r#"<div class="cards">"#);
    for (label, field, value, small) in cards {
        let _ = write!(
            out,
            r#"<div class="card"><div class="label">{label}</div><div class="big" data-total="{field}" data-value="{value}">{}</div><div class="small">{small}</div></div>"#,
            count(value),
        );
    }
    out.push_str("</div>\n");
}

fn n_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// When each phase last ran.
fn phases(out: &mut String, snap: &Snapshot) {
    let r = &snap.last_runs;
    out.push_str(r#"<div class="phases">"#);
    for (label, key, t) in [
        ("Preflight", "preflight", r.preflight),
        ("Mirror (copy from source)", "mirror", r.mirror),
        ("Upload (to the target)", "upload", r.upload),
        ("Cutover", "cutover", r.cutover),
    ] {
        let _ = write!(
            out,
            r#"<div class="phase{never}"><div class="label">{label}</div><div class="time" data-phase="{key}" data-value="{raw}">{shown}</div></div>"#,
            never = if t.is_none() { " never" } else { "" },
            raw = t.map(|t| t.to_string()).unwrap_or_default(),
            shown = match t {
                Some(_) => when(t),
                None => "not run yet".into(),
            },
        );
    }
    out.push_str("</div>\n");
}

/// A store in object storage: each shard's state, so that a missing or
/// stale one is seen before the totals are believed.
fn shards(out: &mut String, snap: &Snapshot) {
    if snap.shards.is_empty() {
        return;
    }
    out.push_str(r#"<div class="phases">"#);
    for s in &snap.shards {
        let (class, said) = match s.state.as_str() {
            "missing" => (" never", "missing: no index in the store".to_string()),
            "stale" => (
                " never",
                format!(
                    "stale: stopped without ending its run; as of {}",
                    when(s.snapshot_at)
                ),
            ),
            "running" => ("", format!("running; as of {}", when(s.snapshot_at))),
            _ => ("", format!("finished; as of {}", when(s.snapshot_at))),
        };
        let _ = write!(
            out,
            r#"<div class="phase{class}"><div class="label">Shard {shard}</div><div class="time" data-shard="{shard}" data-value="{state}">{said}</div></div>"#,
            shard = escape(&s.shard),
            state = escape(&s.state),
            said = escape(&said),
        );
    }
    out.push_str("</div>\n");
}

/// The column titles shared by the overview and the folder tables, after
/// the name and bar columns: (field, title).
const COLUMNS: [(&str, &str); 9] = [
    ("at_source", "At source"),
    ("stored", "Stored"),
    ("stored_bytes", "Size"),
    ("expunged", "Removed at source"),
    ("uploaded", "Uploaded"),
    ("already_present", "Already there"),
    ("skipped", "Skipped"),
    ("failed", "Failed"),
    ("pending", "Not yet uploaded"),
];

/// Column widths, the same in every table so that the bars line up.
const COLGROUP: &str = r#"<colgroup><col style="width:19%"><col style="width:21%"><col span="9" style="width:6.67%"></colgroup>"#;

fn column_heads(first: &str) -> String {
    let mut out = format!("{COLGROUP}<thead><tr><th>{first}</th><th>Progress</th>");
    for (_, title) in COLUMNS {
        let _ = write!(out, r#"<th class="num">{title}</th>"#);
    }
    out.push_str("</tr></thead>");
    out
}

/// The nine number cells of a row. `at_source` is None when the source
/// never reported a count.
fn number_cells(attrs: &str, at_source: Option<u64>, values: [u64; 8]) -> String {
    let mut out = String::new();
    match at_source {
        Some(n) => out.push_str(&num_cell(attrs, "at_source", n, &count(n), "")),
        None => {
            let _ = write!(
                out,
                r#"<td class="num zero" {attrs} data-field="at_source" data-value="">—</td>"#
            );
        }
    }
    for ((field, _), n) in COLUMNS[1..].iter().zip(values) {
        let text = if *field == "stored_bytes" {
            bytes(n)
        } else {
            count(n)
        };
        let class = match *field {
            "skipped" | "failed" => alert(field, n),
            "expunged" | "pending" if n == 0 => "zero",
            _ => "",
        };
        out.push_str(&num_cell(attrs, field, n, &text, class));
    }
    out
}

fn account_values(a: &AccountStatus) -> [u64; 8] {
    [
        a.stored,
        a.stored_bytes,
        a.expunged,
        a.uploaded,
        a.already_present,
        a.skipped,
        a.failed,
        a.pending,
    ]
}

fn progress_cell(s: &Split) -> String {
    let pct = if s.stored == 0 {
        "nothing to upload".to_string()
    } else {
        format!("{}% done", s.percent_done())
    };
    format!(
        r#"<td class="barcell">{}<div class="pct">{pct}</div></td>"#,
        bar(s)
    )
}

/// One row per account, linking to its section.
fn overview(out: &mut String, snap: &Snapshot) {
    out.push_str("<h3>Mailboxes</h3>\n");
    if snap.accounts.is_empty() {
        out.push_str(r#"<p class="sub">The store holds no mailboxes yet.</p>"#);
        return;
    }
    out.push_str(&legend());
    out.push_str(r#"<table class="grid overview">"#);
    out.push_str(&column_heads("Mailbox"));
    out.push_str("<tbody>");
    for (i, a) in snap.accounts.iter().enumerate() {
        let attrs = format!(r#"data-account="{}""#, escape(&a.account));
        let (state, class) = account_state(a);
        let _ = write!(
            out,
            r##"<tr><td class="name"><a href="#account-{i}"><bdi>{name}</bdi></a><span class="to"><span data-account="{acct}" data-field="folders" data-value="{folders}">{folders_text}</span> folders</span><span class="badge {class}" data-account="{acct}" data-field="state" data-value="{state_key}">{state}</span></td>{progress}{cells}</tr>"##,
            state_key = state_key(a.state),
            name = escape(&a.account),
            acct = escape(&a.account),
            folders = a.folders,
            folders_text = count(a.folders),
            progress = progress_cell(&Split::of_account(a)),
            cells = number_cells(&attrs, Some(a.at_source), account_values(a)),
        );
    }
    out.push_str("</tbody></table>\n");
    out.push_str(
        r#"<p class="note">Stored: messages copied from the source into the migration store. Removed at source: messages deleted at the source after they were copied; they stay in the store but are not uploaded. Skipped: refused by the target for good (for example too large), listed below with the reason. Failed: to be retried.</p>"#,
    );
}

/// One account: its folders with bars, then what did not go.
fn account_section(out: &mut String, snap: &Snapshot, i: usize, a: &AccountStatus) {
    let (state, class) = account_state(a);
    let target = match a.target.as_deref() {
        Some(t) if t != a.account => format!(" → <bdi>{}</bdi>", escape(t)),
        _ => String::new(),
    };
    let _ = write!(
        out,
        r#"<section class="account" id="account-{i}">
<div class="acct-head"><div><h2><bdi>{name}</bdi>{target}</h2>
<div class="facts">{folders} folders · {stored} messages stored ({size}) · {done}% done · last checked at the source {checked}</div></div>
<span class="badge {class}">{state}</span></div>
{error}"#,
        error = error_box(a),
        name = escape(&a.account),
        folders = count(a.folders),
        stored = count(a.stored),
        size = bytes(a.stored_bytes),
        done = Split::of_account(a).percent_done(),
        checked = when(a.last_checked_at),
    );
    if !a.items.is_empty() {
        let acct = escape(&a.account);
        let field = |name: &str, n: u64, one: &str, many: &str| {
            format!(
                r#"<span data-account="{acct}" data-field="{name}" data-value="{n}">{} {}</span>"#,
                count(n),
                if n == 1 { one } else { many }
            )
        };
        let u = &a.items_uploaded;
        let mut at_target = vec![field("items_done", u.done, "uploaded", "uploaded")];
        for (name, n, what) in [
            ("items_outdated", u.outdated, "changed since"),
            ("items_pending", u.pending, "pending"),
            ("items_failed", u.failed, "failed"),
            ("items_skipped", u.skipped, "not uploadable"),
            ("items_untried", u.untried, "not uploaded yet"),
            (
                "items_with_losses",
                u.with_losses,
                "uploaded without some fields",
            ),
        ] {
            if n > 0 {
                at_target.push(field(name, n, what, what));
            }
        }
        let _ = write!(
            out,
            r#"<p class="sub">Also stored for this mailbox, for Microsoft Graph: {}, {}, {}{}. At the target: {}.</p>"#,
            field("contacts", a.items.contacts, "contact", "contacts"),
            field("events", a.items.events, "event", "events"),
            field("tasks", a.items.tasks, "task", "tasks"),
            if a.items.problems > 0 {
                format!(
                    "; {} could not be read from their files",
                    field("item_problems", a.items.problems, "item", "items")
                )
            } else {
                String::new()
            },
            at_target.join(", ")
        );
        if !a.item_notices.is_empty() {
            out.push_str(r#"<ul class="sub item-notices">"#);
            for n in &a.item_notices {
                let _ = write!(out, "<li>{}</li>", escape(&crate::report::notice_line(n)));
            }
            out.push_str("</ul>");
        }
    }
    out.push_str("<h3>Folders</h3>");
    out.push_str(&legend());
    out.push_str(r#"<table class="grid folders">"#);
    out.push_str(&column_heads("Folder"));
    out.push_str("<tbody>");
    let acct = escape(&a.account);
    for f in snap.folders.iter().filter(|f| f.account == a.account) {
        let attrs = format!(
            r#"data-account="{acct}" data-folder="{}""#,
            escape(&f.folder)
        );
        let to = match f.target_folder.as_deref() {
            Some(t) => format!(r#"<span class="to">→ <bdi>{}</bdi></span>"#, escape(t)),
            None if f.left_out => {
                r#"<span class="to">left out of the migration by the folder map</span>"#.into()
            }
            None => r#"<span class="to">not mapped to the target yet</span>"#.into(),
        };
        let deleted = if f.deleted_at_source {
            r#"<span class="tag">deleted at source</span>"#.to_string()
        } else {
            String::new()
        };
        let deleted = match &f.last_error {
            Some(e) => format!(
                r#"{deleted}<span class="tag bad" data-field="folder_error">not checked: {}</span>"#,
                escape_cut(e)
            ),
            None => deleted,
        };
        let _ = write!(
            out,
            r#"<tr><td class="name"><bdi>{name}</bdi>{deleted}{to}</td>{progress}{cells}</tr>"#,
            name = escape(&f.folder),
            progress = progress_cell(&Split::of_folder(f)),
            cells = number_cells(
                &attrs,
                f.at_source.map(u64::from),
                [
                    f.stored,
                    f.stored_bytes,
                    f.expunged,
                    f.uploaded,
                    f.already_present,
                    f.skipped,
                    f.failed,
                    f.pending,
                ]
            ),
        );
    }
    out.push_str("</tbody></table>\n");

    let misses: Vec<&NotUploaded> = match a.target.as_deref() {
        Some(t) => snap.not_uploaded.iter().filter(|n| n.target == t).collect(),
        None => Vec::new(),
    };
    not_uploaded_table(out, &a.account, &misses, a.skipped + a.failed);
    out.push_str("</section>\n");
}

/// The messages that did not reach the target, with the reason.
fn not_uploaded_table(out: &mut String, account: &str, misses: &[&NotUploaded], expected: u64) {
    let _ = write!(
        out,
        r#"<h3>Messages not uploaded (<span data-account="{}" data-field="not_uploaded" data-value="{n}">{n}</span>)</h3>"#,
        escape(account),
        n = misses.len(),
    );
    if misses.is_empty() {
        if expected == 0 {
            out.push_str(r#"<p class="ok-note">None: no message was skipped or failed.</p>"#);
        }
        return;
    }
    out.push_str(
        r#"<table class="misses"><thead><tr><th>State</th><th>Folder</th><th>Date</th><th>From</th><th>Subject</th><th class="num">Size</th><th>Reason</th></tr></thead><tbody>"#,
    );
    for n in misses {
        let state = if n.state == "failed" {
            "failed"
        } else {
            "skipped"
        };
        let _ = write!(
            out,
            r#"<tr class="miss" data-account="{acct}" data-state="{state}"><td><span class="state {state}">{state_text}</span></td><td class="name"><bdi>{folder}</bdi></td><td class="num">{date}</td><td class="from"><bdi>{from}</bdi></td><td class="subject"><bdi>{subject}</bdi></td><td class="num" data-value="{size_raw}">{size}</td><td class="reason">{reason}</td></tr>"#,
            acct = escape(account),
            state_text = escape(&n.state),
            folder = escape(&n.folder),
            date = mail_date(n.date.as_deref()),
            from = n
                .from
                .as_deref()
                .map(escape_cut)
                .unwrap_or_else(|| "—".into()),
            subject = n
                .subject
                .as_deref()
                .map(escape_cut)
                .unwrap_or_else(|| "(no subject)".into()),
            size_raw = n.size,
            size = bytes(n.size),
            reason = escape_cut(&n.reason),
        );
    }
    out.push_str("</tbody></table>\n");
}

/// Messages whose target mailbox belongs to no account on the page (a
/// target renamed since): still listed, never dropped.
fn orphans(out: &mut String, snap: &Snapshot) {
    let known: Vec<&str> = snap
        .accounts
        .iter()
        .filter_map(|a| a.target.as_deref())
        .collect();
    let rest: Vec<&NotUploaded> = snap
        .not_uploaded
        .iter()
        .filter(|n| !known.contains(&n.target.as_str()))
        .collect();
    if rest.is_empty() {
        return;
    }
    let mut targets: Vec<&str> = rest.iter().map(|n| n.target.as_str()).collect();
    targets.dedup();
    for t in targets {
        let mine: Vec<&NotUploaded> = rest.iter().copied().filter(|n| n.target == t).collect();
        let _ = write!(
            out,
            r#"<section class="account"><div class="acct-head"><h2>Target mailbox <bdi>{}</bdi></h2></div>"#,
            escape(t)
        );
        not_uploaded_table(out, t, &mine, 1);
        out.push_str("</section>\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_quotes_and_controls() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(escape("a\u{1b}b\tc"), "a\u{FFFD}b c");
    }

    #[test]
    fn groups_thousands() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1234567), "1,234,567");
    }

    fn folder(account: &str, name: &str, stored: u64, done: u64, failed: u64) -> FolderStatus {
        FolderStatus {
            account: account.into(),
            folder: name.into(),
            wire_name: name.into(),
            at_source: Some(stored as u32),
            stored,
            expunged: 1,
            stored_bytes: stored * 40_000,
            deleted_at_source: false,
            left_out: false,
            last_checked_at: Some(1_750_000_000),
            last_error: None,
            target: Some(format!("{account}-365")),
            target_folder: Some(name.replace('.', "/")),
            uploaded: done,
            already_present: 2,
            skipped: 1,
            failed,
            pending: stored - done - 2 - 1 - failed,
        }
    }

    fn sample() -> Snapshot {
        let mut folders = vec![
            folder("carol@example.com", "INBOX", 1200, 900, 7),
            folder("carol@example.com", "</td><script>x()</script>", 40, 30, 0),
            folder("carol@example.com", "Sent \u{202e}txt.exe", 5, 2, 0),
        ];
        folders[2].deleted_at_source = true;
        folders[2].at_source = None;
        let miss = |state: &str, subject: &str| NotUploaded {
            target: "carol@example.com-365".into(),
            folder: "INBOX".into(),
            state: state.into(),
            kind: None,
            reason: "NO [LIMIT] <too big> & rejected".into(),
            date: Some("2024-02-29T23:30:00-05:00".into()),
            from: Some("\"Eve <eve@evil>\" <eve@example.org>".into()),
            subject: Some(subject.into()),
            size: 36 << 20,
            blob: "00".into(),
        };
        Snapshot {
            store: "/srv/store".into(),
            complete: false,
            accounts_file: None,
            generated_at: 1_750_000_000,
            last_runs: super::super::snapshot::LastRuns {
                preflight: Some(1_749_000_000),
                mirror: Some(1_749_900_000),
                upload: Some(1_749_990_000),
                cutover: Some(1_749_999_000),
            },
            accounts: super::super::snapshot::account_totals(&folders),
            folders,
            targets: Vec::new(),
            not_uploaded: vec![
                miss("skipped", "<img src=x onerror=alert(1)> &amp; more"),
                miss("failed", &"very long ".repeat(100)),
            ],
            cutover: Some(super::super::snapshot::CutoverRecord {
                started_at: 1_749_999_000,
                finished_at: None,
                complete: false,
                summary: serde_json::Value::Null,
            }),
            shards: Vec::new(),
        }
    }

    #[test]
    fn page_carries_markers_and_no_markup_from_mail() {
        let page = render(&sample());
        assert!(page.contains(
            "<title>Mailbox migration report — 1 account — 2025-06-15 15:06 UTC</title>"
        ));
        assert!(!page.contains("<script"));
        assert!(!page.contains("<img"));
        assert!(page.contains("&lt;img src=x onerror=alert(1)&gt; &amp;amp; more"));
        assert!(page.contains(r#"data-folder="&lt;/td&gt;&lt;script&gt;x()&lt;/script&gt;" data-field="stored" data-value="40""#));
        assert!(page.contains(
            r#"data-account="carol@example.com" data-field="failed" data-value="7">7</td>"#
        ));
        assert!(page.contains(
            r#"data-account="carol@example.com" data-field="stored" data-value="1245">1,245</td>"#
        ));
        assert!(page.contains(r#"data-field="at_source" data-value="">—</td>"#));
        assert!(page.contains("2024-03-01 04:30 UTC"));
        assert!(page.contains(r#"data-value="incomplete""#));
        assert!(page.contains("deleted at source"));
        assert!(page.contains("…"));
    }

    #[test]
    fn long_text_is_cut() {
        let s = "x".repeat(MAX_TEXT + 10);
        assert_eq!(escape_cut(&s).chars().count(), MAX_TEXT + 1);
    }
}
