//! `preflight`: before anything is copied, log in to each account's source
//! and target without changing anything, count what the source holds, and
//! say what will not go well.
//!
//! At the source: LIST, then per folder EXAMINE (read-only) and the size of
//! every message. At the target: LIST, and GETQUOTAROOT where offered.
//! No-go: a login refused on either side (at a Microsoft 365 target that is
//! also what a mailbox that does not exist looks like), a mailbox larger
//! than the target's quota, a folder map that puts two folders in one.
//! Warnings: messages over the target's size limit (they will be skipped),
//! folders over 10,000 items (Outlook slows down). Notes: folders the
//! target will call by another name.

use crate::format::{bytes, message_line};
use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use futures::StreamExt as _;
use serde::Serialize;

use crate::config::{Account, Config, TargetKind};
use crate::imap::{ImapSession, StorageQuota};
use crate::oauth::TokenProvider;
use crate::outcome::error_chain;
use crate::progress::Progress;
use crate::store::index::{BlobMeta, FolderRow};
use crate::upload::mapping::Namespace;

/// Microsoft's guidance: more items than this in one folder slows Outlook.
pub const FOLDER_ITEM_GUIDANCE: u64 = 10_000;

#[derive(Debug, Clone, Serialize)]
pub struct FolderCount {
    pub folder: String,
    pub messages: u64,
    pub bytes: u64,
    /// Its name at the target, and why.
    pub target: Option<String>,
    pub why: String,
}

/// A message the target will not take.
#[derive(Debug, Clone, Serialize)]
pub struct TooLarge {
    pub folder: String,
    pub uid: u32,
    pub size: u64,
    pub date: Option<String>,
    pub from: Option<String>,
    pub subject: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AccountPreflight {
    pub account: String,
    pub target: String,
    pub go: bool,
    /// Why not: each reason in a sentence.
    pub no_go: Vec<String>,
    pub warnings: Vec<String>,
    /// Folders the target will call by another name.
    pub renamed: Vec<(String, String, String)>,
    pub folders: Vec<FolderCount>,
    pub messages: u64,
    pub bytes: u64,
    /// `None`: no limit set or known.
    pub quota_bytes: Option<u64>,
    /// Where the quota came from: the target's QUOTA, the account, the batch.
    pub quota_from: String,
    /// What the target mailbox already uses (where it says).
    pub target_used_bytes: Option<u64>,
    pub too_large: Vec<TooLarge>,
    pub source_ok: bool,
    pub target_ok: bool,
    /// Contacts, events and tasks stored for the mailbox, and whether the
    /// app may write them there (checked when there are any).
    pub items: crate::store::items::ItemCounts,
    pub graph: Option<crate::graph::GraphAccess>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Preflight {
    pub accounts: Vec<AccountPreflight>,
    pub seconds: f64,
}

impl Preflight {
    pub fn all_go(&self) -> bool {
        self.accounts.iter().all(|a| a.go)
    }
}

pub struct PreflightOptions {
    pub tokens: Option<Arc<TokenProvider>>,
    /// The folder map and merge setting the upload will use.
    pub map_file: Option<crate::upload::MapFile>,
    pub merge_folders: bool,
    /// Bytes the store's ledger already placed in each target mailbox: they
    /// are in what the target says it uses, and must not count twice.
    pub already_uploaded: std::collections::HashMap<String, u64>,
    /// Where contacts, events and tasks go, and what the store holds of
    /// them per account (lower-case name): only those accounts are probed.
    pub graph: Option<Arc<crate::graph::client::GraphClient>>,
    pub items: std::collections::HashMap<String, crate::store::items::ItemCounts>,
}

pub async fn preflight(
    config: &Config,
    options: &PreflightOptions,
    progress: Arc<dyn Progress>,
) -> Result<Preflight> {
    let started = std::time::Instant::now();
    let source_tls = crate::imap::tls::client_config(
        config.source.ca_file.as_deref(),
        config.source.danger_accept_invalid_certs,
    )?;
    let target_tls = crate::imap::tls::client_config(
        config.target.server.ca_file.as_deref(),
        config.target.server.danger_accept_invalid_certs,
    )?;
    let accounts = futures::stream::iter(config.accounts.iter())
        .map(|account| {
            let (source_tls, target_tls) = (source_tls.clone(), target_tls.clone());
            let progress = progress.clone();
            async move {
                progress.account_started(&account.name);
                let a = check_account(config, options, account, source_tls, target_tls).await;
                // A NO-GO is an answer, not a failure: the summary says why.
                progress.account_finished(&account.name, None);
                a
            }
        })
        .buffered(config.accounts_at_once.max(1))
        .collect()
        .await;
    Ok(Preflight {
        accounts,
        seconds: started.elapsed().as_secs_f64(),
    })
}

async fn check_account(
    config: &Config,
    options: &PreflightOptions,
    account: &Account,
    source_tls: Arc<rustls::ClientConfig>,
    target_tls: Arc<rustls::ClientConfig>,
) -> AccountPreflight {
    let target = &config.target;
    let mut out = unchecked(config, account);
    // The target first: its namespace names the folders.
    let mut namespace = Namespace::flat(match target.kind {
        TargetKind::M365 => "/",
        TargetKind::Imap => ".",
    });
    let checked = check_target(config, options, account, target_tls).await;
    note_target(&mut out, checked, account, target, &mut namespace);
    let counted = count_source(config, account, source_tls).await;
    note_source(&mut out, counted, account, target, options, &namespace);
    judge(&mut out, account, target, options);
    check_graph(&mut out, account, options).await;
    out.go = out.no_go.is_empty();
    out
}

/// Probes Graph for a mailbox that has contacts, events or tasks to go:
/// a kind of item the app may not write there is a NO-GO.
async fn check_graph(out: &mut AccountPreflight, account: &Account, options: &PreflightOptions) {
    let Some(items) = options.items.get(&account.name.to_lowercase()) else {
        return;
    };
    out.items = items.clone();
    let Some(client) = &options.graph else {
        out.no_go.push(
            "contacts, events or tasks are stored for this mailbox, and the target names no \
             Microsoft Graph to take them (--graph-url), or no OAuth settings"
                .into(),
        );
        return;
    };
    let access = crate::graph::probe(client, &account.target).await;
    for (n, what, permission, a) in [
        (
            items.contacts,
            "contacts",
            "Contacts.ReadWrite",
            &access.contacts,
        ),
        (
            items.events,
            "events",
            "Calendars.ReadWrite",
            &access.calendars,
        ),
        (items.tasks, "tasks", "Tasks.ReadWrite.All", &access.tasks),
    ] {
        if n == 0 {
            continue;
        }
        match a {
            crate::graph::Access::Granted => {}
            crate::graph::Access::Refused(words) => out.no_go.push(format!(
                "Microsoft Graph refuses to let the app write {what} in {} ({words}); grant the \
                 application permission {permission} with admin consent, and check that no \
                 application access policy or RBAC scope leaves this mailbox out",
                account.target
            )),
            crate::graph::Access::Unknown(words) => out.no_go.push(format!(
                "could not ask Microsoft Graph whether the app may write {what} in {}: {words}",
                account.target
            )),
        }
    }
    out.graph = Some(access);
}

/// An account's preflight before anything is checked: the quota it
/// would be held to, and where that figure comes from.
fn unchecked(config: &Config, account: &Account) -> AccountPreflight {
    let target = &config.target;
    AccountPreflight {
        account: account.name.clone(),
        target: account.target.clone(),
        go: false,
        no_go: Vec::new(),
        warnings: Vec::new(),
        renamed: Vec::new(),
        folders: Vec::new(),
        messages: 0,
        bytes: 0,
        quota_bytes: account.quota_bytes.or(target.quota_limit()),
        quota_from: if account.quota_bytes.is_some() {
            format!("this account's quota, {}", account.origin)
        } else if target.quota_bytes.is_some() {
            "the batch's quota".to_string()
        } else if target.quota_limit().is_some() {
            "Microsoft 365's default".to_string()
        } else {
            "not known: the target does not announce QUOTA".to_string()
        },
        target_used_bytes: None,
        too_large: Vec::new(),
        source_ok: false,
        target_ok: false,
        items: Default::default(),
        graph: None,
    }
}

/// What the target check found: the namespace is moved into
/// `namespace`, the quota and the login into `out`.
fn note_target(
    out: &mut AccountPreflight,
    checked: Result<(crate::imap::Namespace, StorageQuota)>,
    account: &Account,
    target: &crate::config::TargetSettings,
    namespace: &mut Namespace,
) {
    match checked {
        Ok((ns, quota)) => {
            out.target_ok = true;
            namespace.prefix = crate::imap::mutf7::display(&ns.prefix);
            if let Some(d) = ns.delimiter {
                namespace.delimiter = d;
            }
            match quota {
                StorageQuota::Limit { used, limit } => {
                    out.quota_bytes = Some(limit);
                    out.quota_from = "the target's QUOTA".to_string();
                    out.target_used_bytes = Some(used);
                }
                // The server says: no limit. A quota the admin set for the
                // account or the batch still counts.
                StorageQuota::NoneSet if account.quota_bytes.is_none() => {
                    out.quota_bytes = target.quota_bytes;
                    out.quota_from = match target.quota_bytes {
                        Some(_) => "the batch's quota (the target's QUOTA sets none)".to_string(),
                        None => "no quota set (the target's QUOTA)".to_string(),
                    };
                }
                StorageQuota::NoneSet | StorageQuota::NotOffered => {}
            }
        }
        // The error names the mailbox already.
        Err(e) => {
            let refused = e
                .chain()
                .any(|c| c.downcast_ref::<crate::imap::LoginRefused>().is_some());
            out.no_go.push(if refused {
                format!(
                    "{} (wrong credentials, no access for the app, or the mailbox does not \
                     exist)",
                    error_chain(&e)
                )
            } else {
                error_chain(&e)
            })
        }
    }
}

/// What the source count found, mapped to the target's folders.
fn note_source(
    out: &mut AccountPreflight,
    counted: Result<(FolderCounts, Vec<TooLarge>, String)>,
    account: &Account,
    target: &crate::config::TargetSettings,
    options: &PreflightOptions,
    namespace: &Namespace,
) {
    match counted {
        Ok((folders, too_large, source_prefix)) => {
            out.source_ok = true;
            out.too_large = too_large;
            let rows: Vec<FolderRow> = folders
                .iter()
                .enumerate()
                .map(|(i, (listed, _, _))| FolderRow {
                    id: i as i64,
                    wire_name: listed.wire_name.clone(),
                    display_name: crate::imap::mutf7::display(&listed.wire_name),
                    delimiter: listed.delimiter.clone(),
                    attributes: listed.attributes.join(" "),
                    uidvalidity: None,
                    uidnext: None,
                    highestmodseq: None,
                    source_count: None,
                    synced_uid: 0,
                    deleted_at: None,
                })
                .collect();
            let map = crate::upload::mapping::map_account(
                &account.name,
                &rows,
                &crate::imap::mutf7::display(&source_prefix),
                target.kind,
                namespace,
                options.map_file.as_ref(),
                options.merge_folders,
            );
            let map = match map {
                Ok(m) => m,
                Err(e) => {
                    out.no_go.push(format!("{e:#}"));
                    Vec::new()
                }
            };
            for (row, (_, messages, bytes)) in rows.iter().zip(&folders) {
                let entry = map.iter().find(|e| e.source_folder_id == row.id);
                let target_name = entry.and_then(|e| e.target.clone());
                let same = |t: &str| {
                    let src = row.delimiter.as_deref().unwrap_or("");
                    let path = if src.is_empty() {
                        row.display_name.clone()
                    } else {
                        row.display_name.replace(src, &namespace.delimiter)
                    };
                    // Moving between namespaces is no renaming.
                    let moved = entry.is_some_and(|e| {
                        e.why.starts_with("under the target's")
                            || e.why.starts_with("without the source's")
                    });
                    t == path || moved
                };
                if let Some(t) = &target_name
                    && !same(t)
                {
                    out.renamed.push((
                        row.display_name.clone(),
                        t.clone(),
                        entry.map(|e| e.why.clone()).unwrap_or_default(),
                    ));
                }
                if *messages > FOLDER_ITEM_GUIDANCE {
                    out.warnings.push(format!(
                        "folder {:?} holds {messages} messages, over the {FOLDER_ITEM_GUIDANCE} \
                         Microsoft advises per folder for Outlook to stay fast",
                        row.display_name
                    ));
                }
                out.messages += messages;
                out.bytes += bytes;
                out.folders.push(FolderCount {
                    folder: row.display_name.clone(),
                    messages: *messages,
                    bytes: *bytes,
                    target: target_name,
                    why: entry.map(|e| e.why.clone()).unwrap_or_default(),
                });
            }
        }
        Err(e) => out
            .no_go
            .push(format!("source {}: {}", account.username, error_chain(&e))),
    }
}

/// Oversized messages and the quota: warnings and the last no-goes.
fn judge(
    out: &mut AccountPreflight,
    account: &Account,
    target: &crate::config::TargetSettings,
    options: &PreflightOptions,
) {
    if !out.too_large.is_empty() {
        let limit = target.max_message_bytes.unwrap_or(u64::MAX);
        let n = out.too_large.len();
        out.warnings.push(format!(
            "{n} {} over the target's {} limit and will be skipped (kept in the store)",
            if n == 1 { "message is" } else { "messages are" },
            crate::format::bytes(limit)
        ));
    }
    out.folders.sort_by(|a, b| a.folder.cmp(&b.folder));
    out.renamed.sort();
    // Folders the map leaves behind do not count against the quota.
    let moving: u64 = out
        .folders
        .iter()
        .filter(|f| f.target.is_some())
        .map(|f| f.bytes)
        .sum();
    let ours = options
        .already_uploaded
        .get(&account.target)
        .copied()
        .unwrap_or(0);
    let needed = match out.target_used_bytes {
        Some(used) => moving + used.saturating_sub(ours),
        None => moving,
    };
    if let Some(quota) = out.quota_bytes
        && out.source_ok
        && needed > quota
    {
        out.no_go.push(format!(
            "the mailbox needs {} at the target, over its quota of {} ({}); raise the quota \
             (an archive mailbox or a larger licence) or leave mail behind with a folder map",
            crate::format::bytes(needed),
            crate::format::bytes(quota),
            out.quota_from
        ));
    }
}

/// Logs in to the target and reads its separator and quota; changes nothing.
async fn check_target(
    config: &Config,
    options: &PreflightOptions,
    account: &Account,
    tls: Arc<rustls::ClientConfig>,
) -> Result<(crate::imap::Namespace, StorageQuota)> {
    let mut s = crate::upload::target_login(
        &config.target.server,
        options.tokens.as_deref(),
        tls,
        account,
    )
    .await?;
    let namespace = s.imap.personal_namespace().await?;
    let quota = s
        .imap
        .storage_quota()
        .await
        .unwrap_or(StorageQuota::NotOffered);
    s.imap.logout().await;
    Ok((namespace, quota))
}

type FolderCounts = Vec<(crate::imap::ListedFolder, u64, u64)>;

/// Every selectable folder with its message count and bytes, the
/// messages over the target's size limit, and the personal prefix.
async fn count_source(
    config: &Config,
    account: &Account,
    tls: Arc<rustls::ClientConfig>,
) -> Result<(FolderCounts, Vec<TooLarge>, String)> {
    let mut s =
        ImapSession::connect(&config.source, tls, &account.username, &account.password).await?;
    let (listed, namespace) = s
        .list_and_namespace(account.user_root.as_deref())
        .await
        .context("cannot list folders")?;
    let prefix = namespace?.prefix;
    let limit = config.target.max_message_bytes;
    let mut out = Vec::new();
    let mut too_large = Vec::new();
    for folder in listed.into_iter().filter(|f| f.is_selectable()) {
        let selected = s.examine(&folder.wire_name, None).await?;
        let mut sizes: Vec<(u32, u64)> = Vec::new();
        if selected.status.messages != Some(0) {
            s.uid_fetch("1:*", "UID RFC822.SIZE", None, |m| {
                sizes.push((m.uid, m.size.map(u64::from).unwrap_or(0)));
                Ok(())
            })
            .await?;
        }
        let name = crate::imap::mutf7::display(&folder.wire_name);
        if let Some(limit) = limit {
            let mut big: Vec<u32> = sizes
                .iter()
                .filter(|(_, size)| *size > limit)
                .map(|(uid, _)| *uid)
                .collect();
            big.sort_unstable();
            if !big.is_empty() {
                let mut found = Vec::new();
                s.uid_fetch(
                    &crate::imap::uid_set(&big),
                    "UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (DATE FROM SUBJECT MESSAGE-ID)]",
                    None,
                    |m| {
                        let meta = BlobMeta::parse(m.header_fields.as_deref().unwrap_or(b""));
                        found.push(TooLarge {
                            folder: name.clone(),
                            uid: m.uid,
                            size: m.size.map(u64::from).unwrap_or(0),
                            date: meta.date,
                            from: meta.from,
                            subject: meta.subject,
                        });
                        Ok(())
                    },
                )
                .await?;
                found.sort_by_key(|t| t.uid);
                too_large.extend(found);
            }
        }
        let bytes = sizes.iter().map(|(_, s)| s).sum();
        out.push((folder, sizes.len() as u64, bytes));
    }
    s.logout().await;
    Ok((out, too_large, prefix))
}

/// `preflight`: per account, go or no-go and why, then the counts.
impl std::fmt::Display for Preflight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = String::new();
        for a in &self.accounts {
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
            if !a.items.is_empty() {
                let _ = writeln!(
                    out,
                    "  stored for Microsoft Graph: {} contacts, {} events, {} tasks{}",
                    a.items.contacts,
                    a.items.events,
                    a.items.tasks,
                    if a.graph.is_some() {
                        "; Graph checked"
                    } else {
                        ""
                    }
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
        let go = self.accounts.iter().filter(|a| a.go).count();
        let _ = writeln!(
            out,
            "\n{go} of {} accounts GO, {} NO-GO ({:.1}s)",
            self.accounts.len(),
            self.accounts.len() - go,
            self.seconds
        );
        f.write_str(&out)
    }
}
