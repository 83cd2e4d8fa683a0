//! Stage 2 into Microsoft Graph: the contacts, events and tasks stored
//! beside each mailbox's mail go into its contact folders, calendars and
//! To Do lists, exactly once (the items' ledger, store/item_ledger.rs).
//!
//! Per account: the items that need work (never sent, changed since,
//! left pending by a crash, failed before) are read from the ledger; each
//! collection's container is found or made once; then each item is sent
//! by [`send`], at most 4 at a time per mailbox ([`client`]). No source
//! connection is needed; a run with nothing to do sends nothing.

pub mod calendar;
pub mod check;
pub mod client;
pub mod contact;
mod containers;
mod send;
mod zones;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Result;
use futures::StreamExt as _;
use serde::Serialize;

use crate::config::{Account, OAuthFlow, OAuthSettings};
use crate::outcome::error_chain;
use crate::progress::Progress;
use crate::store::Intent;
use crate::store::Store;
use crate::store::item_ledger::{IntendedItem, ItemIntent};
use crate::store::item_ledger::{ItemReason, ItemState, ItemToSend};
use crate::store::items::ItemKind;
use client::GraphClient;

pub use crate::config::GRAPH_URL;

/// The OAuth settings for Graph from the target's: the same app
/// registration, Graph's resource. App-only: `https://graph.microsoft.com/.default`
/// (every application permission consented for Graph; docs/research/graph.md §8).
/// Delegated: the three permissions by name, with their own token cache.
pub fn token_settings(target: &OAuthSettings) -> OAuthSettings {
    let mut s = target.clone();
    s.scope = Some(match s.flow {
        OAuthFlow::ClientCredentials => "https://graph.microsoft.com/.default".into(),
        OAuthFlow::DeviceCode => "https://graph.microsoft.com/Contacts.ReadWrite \
                                  https://graph.microsoft.com/Calendars.ReadWrite \
                                  https://graph.microsoft.com/Tasks.ReadWrite offline_access"
            .into(),
    });
    s.token_cache = s.token_cache.map(|p| {
        let mut name = p.into_os_string();
        name.push(".graph");
        name.into()
    });
    s
}

/// Knobs of an items upload.
pub struct ItemOptions {
    pub client: Arc<GraphClient>,
    /// Add attendees to events, which makes Graph send them invitations
    /// (it cannot be told not to): off unless asked for by name.
    pub invite_attendees: bool,
    pub accounts_at_once: usize,
}

/// What one account's items upload did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct AccountItems {
    pub account: String,
    pub target: String,
    pub created: u64,
    pub updated: u64,
    /// Found at the target from an earlier run that was cut short.
    pub reconciled: u64,
    pub unchanged: u64,
    pub skipped: u64,
    pub failed: u64,
    /// Items the target took without all of their fields.
    pub with_losses: u64,
    /// Why the account stopped early, if it did.
    pub error: Option<String>,
}

impl AccountItems {
    pub fn is_clean(&self) -> bool {
        self.failed == 0 && self.error.is_none()
    }
}

/// What an items upload did, with the requests it cost.
#[derive(Debug, Default, Serialize)]
pub struct ItemsUploaded {
    pub accounts: Vec<AccountItems>,
    /// HTTP requests sent (a `$batch` is one).
    pub requests: u64,
    /// Requests as Graph counts them against its limits (each in a batch).
    pub graph_requests: u64,
    pub throttled: u64,
}

impl ItemsUploaded {
    pub fn is_clean(&self) -> bool {
        self.accounts.iter().all(AccountItems::is_clean)
    }
}

impl std::fmt::Display for ItemsUploaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for a in &self.accounts {
            write!(
                f,
                "{}: contacts, events and tasks: {} created, {} updated, {} found from an \
                 earlier run, {} unchanged",
                a.account, a.created, a.updated, a.reconciled, a.unchanged
            )?;
            if a.skipped > 0 {
                write!(f, ", {} not uploadable (see status)", a.skipped)?;
            }
            if a.failed > 0 {
                write!(f, ", {} FAILED (run upload again)", a.failed)?;
            }
            if a.with_losses > 0 {
                write!(f, "; {} without some of their fields", a.with_losses)?;
            }
            writeln!(f)?;
            if let Some(e) = &a.error {
                writeln!(f, "  stopped: {e}")?;
            }
        }
        writeln!(
            f,
            "Microsoft Graph: {} HTTP requests ({} as Graph counts them), {} throttled",
            self.requests, self.graph_requests, self.throttled
        )
    }
}

/// The batch's accounts that hold contacts, events or tasks in the store.
pub fn accounts_with_items(store: &Store, accounts: &[Account]) -> Result<Vec<Account>> {
    let counts = store.index().item_counts()?;
    Ok(accounts
        .iter()
        .filter(|a| {
            counts
                .iter()
                .any(|(n, c)| n.eq_ignore_ascii_case(&a.name) && c.has_items())
        })
        .cloned()
        .collect())
}

/// Does this item need a request? Never sent, changed since, cut short,
/// or failed before; skipped items wait until they change.
fn needs_work(item: &ItemToSend) -> bool {
    match &item.sent {
        None => true,
        Some(s) => match s.state {
            ItemState::Pending | ItemState::Failed => true,
            ItemState::Done | ItemState::Skipped => s.blob != item.blob,
        },
    }
}

/// Uploads the items of every account that has any.
pub async fn upload_items(
    store: Arc<Store>,
    accounts: &[Account],
    options: Arc<ItemOptions>,
    progress: Arc<dyn Progress>,
) -> Result<ItemsUploaded> {
    let results: Vec<AccountItems> = futures::stream::iter(accounts.iter().cloned())
        .map(|account| {
            let (store, options, progress) = (store.clone(), options.clone(), progress.clone());
            async move {
                let mut done = AccountItems {
                    account: account.name.clone(),
                    target: account.target.clone(),
                    ..AccountItems::default()
                };
                if let Err(e) = upload_account(&store, &account, &options, &mut done).await {
                    let words = error_chain(&e);
                    progress.warn(&account.name, &words);
                    done.error = Some(words);
                }
                done
            }
        })
        .buffer_unordered(options.accounts_at_once.max(1))
        .collect()
        .await;
    let mut results: Vec<AccountItems> = results
        .into_iter()
        .filter(|a| {
            a.error.is_some()
                || a.created + a.updated + a.reconciled + a.unchanged + a.skipped + a.failed > 0
        })
        .collect();
    results.sort_by(|a, b| a.account.cmp(&b.account));
    Ok(ItemsUploaded {
        accounts: results,
        requests: options.client.counts.requests.load(Ordering::Relaxed),
        graph_requests: options.client.counts.graph_requests.load(Ordering::Relaxed),
        throttled: options.client.counts.throttled.load(Ordering::Relaxed),
    })
}

async fn upload_account(
    store: &Arc<Store>,
    account: &Account,
    options: &ItemOptions,
    done: &mut AccountItems,
) -> Result<()> {
    let items = store
        .index()
        .item_ledger()
        .items_to_send(&account.name, &account.target)?;
    let (work, unchanged): (Vec<ItemToSend>, Vec<ItemToSend>) =
        items.into_iter().partition(needs_work);
    done.unchanged = unchanged.len() as u64;
    if work.is_empty() {
        return Ok(());
    }
    let gate = options.client.gate(&account.target);
    let mailbox = containers::Mailbox {
        client: &options.client,
        gate: &gate,
        user: &account.target,
    };
    // One lookup per collection with work; a lookup that fails stops
    // only that collection's items (and is said once for the account).
    let mut found: HashMap<(ItemKind, String), Result<containers::Container, containers::Refusal>> =
        HashMap::new();
    for item in &work {
        let key = (item.kind, item.collection.clone());
        if let std::collections::hash_map::Entry::Vacant(slot) = found.entry(key) {
            let c = mailbox
                .container(item.kind, &item.collection)
                .await
                .map_err(|e| match e.downcast::<containers::Refusal>() {
                    Ok(r) => r,
                    Err(e) => containers::Refusal {
                        reason: ItemReason::Unavailable,
                        words: error_chain(&e),
                    },
                });
            if let Err(r) = &c
                && done.error.is_none()
            {
                done.error = Some(r.words.clone());
            }
            slot.insert(c);
        }
    }
    let ctx = send::Context {
        store,
        mailbox: &mailbox,
        invite_attendees: options.invite_attendees,
    };
    // Said before anything is sent, for a worker that takes the shard over.
    let intended: Vec<IntendedItem> = work
        .iter()
        .filter_map(|item| {
            let container = found[&(item.kind, item.collection.clone())].as_ref().ok()?;
            Some(IntendedItem {
                kind: item.kind.as_str().into(),
                collection: item.collection.clone(),
                uid: item.uid.clone(),
                blob: item.blob.to_hex(),
                tag: ctx.tag(item),
                container_id: container.id.clone(),
            })
        })
        .collect();
    if !intended.is_empty() {
        store.intend(&Intent::Items(ItemIntent {
            account: account.name.clone(),
            target: account.target.clone(),
            items: intended,
        }))?;
    }
    // In chunks of a batch's size, 4 chunks at a time (a chained batch
    // holds one of the mailbox's 4 slots): fresh creates go in one
    // `$batch`, the rest (lookups, updates) one by one.
    let chunks: Vec<Result<Vec<send::Sent>>> = futures::stream::iter(work.chunks(client::BATCH))
        .map(|chunk| send_chunk(&ctx, chunk, &found))
        .buffer_unordered(client::IN_FLIGHT_PER_MAILBOX)
        .collect()
        .await;
    let mut outcomes = Vec::with_capacity(work.len());
    for c in chunks {
        outcomes.extend(c?.into_iter().map(Ok::<_, anyhow::Error>));
    }
    for o in outcomes {
        match o? {
            send::Sent::Created { lossy } => {
                done.created += 1;
                done.with_losses += lossy as u64;
            }
            send::Sent::Updated { lossy } => {
                done.updated += 1;
                done.with_losses += lossy as u64;
            }
            send::Sent::Reconciled => done.reconciled += 1,
            send::Sent::Skipped => done.skipped += 1,
            send::Sent::Failed => done.failed += 1,
        }
    }
    Ok(())
}

/// One chunk of an account's work: prepared, fresh creates batched, the
/// rest sent one after another.
async fn send_chunk(
    ctx: &send::Context<'_>,
    chunk: &[ItemToSend],
    found: &HashMap<(ItemKind, String), Result<containers::Container, containers::Refusal>>,
) -> Result<Vec<send::Sent>> {
    let mut out = Vec::with_capacity(chunk.len());
    let mut fresh = Vec::new();
    let mut others = Vec::new();
    for item in chunk {
        let container = &found[&(item.kind, item.collection.clone())];
        match ctx.shape(item, container)? {
            Err(sent) => out.push(sent),
            Ok(built) => {
                let container = container.as_ref().expect("prepared");
                if send::Context::is_fresh(item) {
                    fresh.push((item, container, built));
                } else {
                    others.push((item, container, built));
                }
            }
        }
    }
    if fresh.len() > 1 {
        out.extend(ctx.create_batch(&fresh).await?);
    } else {
        others.extend(fresh);
    }
    for (item, container, built) in others {
        out.push(ctx.send(item, container, built).await?);
    }
    Ok(out)
}

/// Whether the app may write one kind of item in a mailbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "access", content = "detail")]
pub enum Access {
    Granted,
    /// 403 (an application access policy or RBAC scope leaves the mailbox
    /// out, or the permission is not consented), or 401, or 404 (no
    /// Exchange Online mailbox): the words say which.
    Refused(String),
    /// No answer that says (Graph unavailable, no token).
    Unknown(String),
}

/// What the app may do in one mailbox through Graph.
#[derive(Debug, Clone, Serialize)]
pub struct GraphAccess {
    pub contacts: Access,
    pub calendars: Access,
    pub tasks: Access,
}

/// Probes each workload with one cheap read per mailbox (docs/research/
/// graph.md §7): `contactFolders`, `calendars` and `todo/lists`, `$top=1`.
pub async fn probe(client: &GraphClient, user: &str) -> GraphAccess {
    let gate = client.gate(user);
    let mailbox = containers::Mailbox {
        client,
        gate: &gate,
        user,
    };
    let one = |rest: &'static str| {
        let mailbox = &mailbox;
        async move {
            match mailbox
                .send(
                    reqwest::Method::GET,
                    rest,
                    &[("$top", "1")],
                    client::Body::Empty,
                )
                .await
            {
                Ok(client::Reply::Answered { status: 200, .. }) => Access::Granted,
                Ok(reply @ client::Reply::Answered { .. }) => Access::Refused(reply.error_words()),
                Ok(reply @ client::Reply::Unknown(_)) => Access::Unknown(reply.error_words()),
                Err(e) => Access::Unknown(error_chain(&e)),
            }
        }
    };
    let (contacts, calendars, tasks) = futures::join!(
        one("/contactFolders"),
        one("/calendars"),
        one("/todo/lists")
    );
    let mut access = GraphAccess {
        contacts,
        calendars,
        tasks,
    };
    if let Some(roles) = client.token_roles().await {
        writable(&mut access, &roles);
    }
    access
}

/// A read that went through says nothing of writing: where the token
/// names its permissions, one without the ReadWrite permission (granted
/// in Entra; Exchange RBAC grants do not show here) is refused.
fn writable(access: &mut GraphAccess, roles: &[String]) {
    let has = |p: &str| roles.iter().any(|r| r.eq_ignore_ascii_case(p));
    for (a, write, all) in [
        (&mut access.contacts, "Contacts.ReadWrite", None),
        (&mut access.calendars, "Calendars.ReadWrite", None),
        (
            &mut access.tasks,
            "Tasks.ReadWrite.All",
            Some("Tasks.ReadWrite"),
        ),
    ] {
        let names_this_kind = roles.iter().any(|r| {
            let r = r.to_ascii_lowercase();
            r.starts_with(&write.split('.').next().unwrap_or("").to_ascii_lowercase())
        });
        if *a == Access::Granted && names_this_kind && !has(write) && !all.is_some_and(has) {
            *a = Access::Refused(format!(
                "the app's token carries {} but not {write}",
                roles.join(", ")
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_only_grant_is_not_taken_for_a_write() {
        let mut a = GraphAccess {
            contacts: Access::Granted,
            calendars: Access::Granted,
            tasks: Access::Granted,
        };
        let roles = [
            "Contacts.Read",
            "Calendars.ReadWrite",
            "Tasks.ReadWrite.All",
        ]
        .map(String::from);
        writable(&mut a, &roles);
        assert!(matches!(&a.contacts, Access::Refused(w) if w.contains("Contacts.ReadWrite")));
        assert_eq!(a.calendars, Access::Granted);
        assert_eq!(a.tasks, Access::Granted);
        // A token that names no permission of a kind (granted through
        // Exchange RBAC) is left to the probe.
        let mut b = GraphAccess {
            contacts: Access::Granted,
            calendars: Access::Granted,
            tasks: Access::Granted,
        };
        writable(&mut b, &["User.Read.All".to_string()]);
        assert_eq!(b.contacts, Access::Granted);
    }
}
