//! `verify --target` for contacts, events and tasks: each item the ledger
//! says is done is read back from Graph and compared, field by field, with
//! what the store's text makes of it. Missing items are named (and, when
//! asked, marked for the next upload); differing fields are named.

use std::sync::Arc;

use anyhow::Result;
use chrono::{DateTime, NaiveDateTime, TimeZone as _, Utc};
use futures::StreamExt as _;
use reqwest::Method;
use serde::Serialize;
use serde_json::Value;

use super::client::{Body, GraphClient, Reply};
use super::containers::{Mailbox, urlencode};
use super::send::build_json;
use crate::config::Account;
use crate::outcome::error_chain;
use crate::store::Store;
use crate::store::item_ledger::{ItemState, ItemToSend};
use crate::store::items::ItemKind;

/// One field that is not at the target as the store has it.
#[derive(Debug, Clone, Serialize)]
pub struct FieldDiff {
    pub kind: ItemKind,
    pub item: String,
    pub field: String,
    pub stored: String,
    pub at_target: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct AccountItemsCheck {
    pub account: String,
    pub target: String,
    pub checked: u64,
    pub matching: u64,
    pub differing: Vec<FieldDiff>,
    /// Items the ledger has as done that the target does not hold.
    pub missing: Vec<String>,
    /// Items not (or not yet) at the target by the ledger: not read back.
    pub not_done: u64,
    pub error: Option<String>,
}

impl AccountItemsCheck {
    pub fn complete(&self) -> bool {
        self.error.is_none()
            && self.missing.is_empty()
            && self.differing.is_empty()
            && self.not_done == 0
    }
}

#[derive(Debug, Default, Serialize)]
pub struct ItemsChecked {
    pub accounts: Vec<AccountItemsCheck>,
    pub requeued: bool,
}

impl ItemsChecked {
    pub fn all_present(&self) -> bool {
        self.accounts.iter().all(AccountItemsCheck::complete)
    }
}

impl std::fmt::Display for ItemsChecked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for a in &self.accounts {
            writeln!(
                f,
                "{}: contacts, events and tasks read back: {} checked, {} as stored, {} differ, \
                 {} missing{}",
                a.account,
                a.checked,
                a.matching,
                a.differing
                    .iter()
                    .map(|d| &d.item)
                    .collect::<std::collections::BTreeSet<_>>()
                    .len(),
                a.missing.len(),
                if a.not_done > 0 {
                    format!(", {} not uploaded (see status)", a.not_done)
                } else {
                    String::new()
                }
            )?;
            for d in &a.differing {
                writeln!(
                    f,
                    "  differs: {} {:?}: {}: stored {:?}, at the target {:?}",
                    d.kind.as_str(),
                    d.item,
                    d.field,
                    d.stored,
                    d.at_target
                )?;
            }
            for m in &a.missing {
                writeln!(
                    f,
                    "  missing: {m}{}",
                    if self.requeued {
                        " (the next upload creates it again)"
                    } else {
                        ""
                    }
                )?;
            }
            if let Some(e) = &a.error {
                writeln!(f, "  not checked: {e}")?;
            }
        }
        Ok(())
    }
}

/// Reads back every account's items that the ledger has at the target.
pub async fn check_items(
    store: Arc<Store>,
    accounts: &[Account],
    client: Arc<GraphClient>,
    requeue: bool,
) -> Result<ItemsChecked> {
    let mut out = ItemsChecked {
        accounts: Vec::new(),
        requeued: requeue,
    };
    for account in accounts {
        let items = store
            .index()
            .item_ledger()
            .items_to_send(&account.name, &account.target)?;
        if items.is_empty() {
            continue;
        }
        let mut a = AccountItemsCheck {
            account: account.name.clone(),
            target: account.target.clone(),
            ..AccountItemsCheck::default()
        };
        if let Err(e) = check_account(&store, account, &client, requeue, &items, &mut a).await {
            a.error = Some(error_chain(&e));
        }
        out.accounts.push(a);
    }
    Ok(out)
}

async fn check_account(
    store: &Arc<Store>,
    account: &Account,
    client: &GraphClient,
    requeue: bool,
    items: &[ItemToSend],
    out: &mut AccountItemsCheck,
) -> Result<()> {
    let gate = client.gate(&account.target);
    let mailbox = Mailbox {
        client,
        gate: &gate,
        user: &account.target,
    };
    let done: Vec<(&ItemToSend, String, Option<String>)> = items
        .iter()
        .filter_map(|i| {
            let s = i.sent.as_ref()?;
            let id = s.graph_id.clone()?;
            (s.state == ItemState::Done && s.blob == i.blob)
                .then(|| (i, id, s.container_id.clone()))
        })
        .collect();
    out.not_done = (items.len() - done.len()) as u64;
    let read: Vec<Result<(&ItemToSend, Reply)>> = futures::stream::iter(done.iter())
        .map(|(item, id, list)| {
            let path = match item.kind {
                ItemKind::Contact => format!("/contacts/{}", urlencode(id)),
                ItemKind::Event => format!("/events/{}", urlencode(id)),
                ItemKind::Task => format!(
                    "/todo/lists/{}/tasks/{}",
                    urlencode(list.as_deref().unwrap_or("")),
                    urlencode(id)
                ),
            };
            let mailbox = &mailbox;
            async move {
                let reply = mailbox.send(Method::GET, &path, &[], Body::Empty).await?;
                Ok((*item, reply))
            }
        })
        .buffer_unordered(super::client::IN_FLIGHT_PER_MAILBOX)
        .collect()
        .await;
    for r in read {
        let (item, reply) = r?;
        out.checked += 1;
        let found = match reply {
            Reply::Answered { status: 200, body } => body,
            Reply::Answered { status: 404, .. } => {
                out.missing
                    .push(format!("{} {:?}", item.kind.as_str(), item.name));
                if requeue {
                    store
                        .index()
                        .item_ledger()
                        .mark_missing(item.id, &account.target)?;
                }
                continue;
            }
            other => anyhow::bail!("{}: {}", account.target, other.error_words()),
        };
        let text = String::from_utf8_lossy(&store.read_blob(&item.blob)?).into_owned();
        let Ok(expected) = build_json(item.kind, &text) else {
            continue;
        };
        let mut diffs = Vec::new();
        compare("", &expected, &found, &mut diffs);
        if diffs.is_empty() {
            out.matching += 1;
        }
        out.differing.extend(
            diffs
                .into_iter()
                .map(|(field, stored, at_target)| FieldDiff {
                    kind: item.kind,
                    item: item.name.clone(),
                    field,
                    stored,
                    at_target,
                }),
        );
    }
    Ok(())
}

/// Fields of `expected` (what was sent) that `found` does not hold alike.
/// Times are compared as instants, addresses without case, text without
/// surrounding space; fields Graph adds are not looked at.
fn compare(path: &str, expected: &Value, found: &Value, diffs: &mut Vec<(String, String, String)>) {
    let name = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match expected {
        Value::Object(map) if map.contains_key("dateTime") && map.contains_key("timeZone") => {
            let (a, b) = (instant(expected), instant(found));
            if a.is_none() || a != b {
                diffs.push((path.to_string(), show(expected), show(found)));
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                // The item's body may come back as HTML; its text is checked by eye.
                if k == "body" {
                    continue;
                }
                compare(&name(k), v, &found[k.as_str()], diffs);
            }
        }
        Value::Array(list) => {
            let other = found.as_array().cloned().unwrap_or_default();
            if list.len() != other.len() {
                diffs.push((path.to_string(), show(expected), show(found)));
                return;
            }
            for (i, (e, f)) in list.iter().zip(other.iter()).enumerate() {
                compare(&format!("{path}[{i}]"), e, f, diffs);
            }
        }
        Value::String(s) => {
            let same = match found.as_str() {
                Some(f) if path.ends_with("birthday") => s.get(..10) == f.get(..10),
                Some(f) if path.contains("address") => s.trim().eq_ignore_ascii_case(f.trim()),
                Some(f) => s.trim() == f.trim(),
                None => false,
            };
            if !same {
                diffs.push((path.to_string(), s.clone(), show(found)));
            }
        }
        other => {
            if other != found {
                diffs.push((path.to_string(), show(other), show(found)));
            }
        }
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "(nothing)".into(),
        other => other.to_string(),
    }
}

/// A `dateTimeTimeZone` as an instant (Graph may answer in UTC or with
/// seven digits of fractions).
fn instant(v: &Value) -> Option<DateTime<Utc>> {
    use std::str::FromStr as _;
    let text = v["dateTime"].as_str()?;
    let local = NaiveDateTime::parse_from_str(text.get(..19)?, "%Y-%m-%dT%H:%M:%S").ok()?;
    let zone = v["timeZone"].as_str().unwrap_or("UTC");
    if zone.eq_ignore_ascii_case("UTC") {
        return Some(local.and_utc());
    }
    let tz = calcard::common::timezone::Tz::from_str(zone).ok()?;
    tz.from_local_datetime(&local)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}
