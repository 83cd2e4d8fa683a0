//! A collection's place in the target mailbox: the contact folder,
//! calendar or To Do list of its name, made when missing. A collection
//! named like the mailbox's own default ("Contacts", "Calendar", "Tasks")
//! goes into that default rather than a second folder of the same name.

use anyhow::{Result, anyhow};
use reqwest::Method;
use serde_json::{Value, json};

use super::client::{Body, GraphClient, MailboxGate, Reply};
use crate::store::item_ledger::ItemReason;
use crate::store::items::ItemKind;

/// Graph's refusal to find or make a container, typed for the ledger.
#[derive(Debug)]
pub struct Refusal {
    pub reason: ItemReason,
    pub words: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.words)
    }
}

impl std::error::Error for Refusal {}

fn refusal(user: &str, what: &str, reply: &Reply) -> anyhow::Error {
    let reason = match reply {
        Reply::Answered { status, .. } => super::send::reason_of(*status),
        Reply::Unknown(_) => ItemReason::Unavailable,
    };
    Refusal {
        reason,
        words: format!("{user}: {what}: {}", reply.error_words()),
    }
    .into()
}

/// One target mailbox and its share of the limits.
pub struct Mailbox<'a> {
    pub client: &'a GraphClient,
    pub gate: &'a MailboxGate,
    pub user: &'a str,
}

/// Where a collection's items go.
#[derive(Debug, Clone)]
pub struct Container {
    /// The path items are created under and looked up in, from the user:
    /// `/contacts`, `/contactFolders/{id}/contacts`, `/calendars/{id}/events`,
    /// `/todo/lists/{id}/tasks`.
    pub items_path: String,
    /// Its id at the target, for the ledger ("" for the default contacts).
    pub id: String,
}

impl Mailbox<'_> {
    pub fn path(&self, rest: &str) -> String {
        format!("/users/{}{rest}", urlencode(self.user))
    }

    pub async fn send(
        &self,
        method: Method,
        rest: &str,
        query: &[(&str, &str)],
        body: Body<'_>,
    ) -> Result<Reply> {
        self.client
            .send(self.gate, method, &self.path(rest), query, body)
            .await
    }

    /// A GET that must succeed: its JSON.
    async fn get(&self, rest: &str, query: &[(&str, &str)]) -> Result<Value> {
        match self.send(Method::GET, rest, query, Body::Empty).await? {
            Reply::Answered { status: 200, body } => Ok(body),
            other => Err(refusal(self.user, rest, &other)),
        }
    }

    /// A POST that makes a folder: its id.
    async fn make(&self, rest: &str, body: Value) -> Result<String> {
        match self
            .send(Method::POST, rest, &[], Body::Json(&body))
            .await?
        {
            Reply::Answered {
                status: 200 | 201,
                body,
            } => body["id"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| anyhow!("Graph made {rest} for {} but sent no id", self.user)),
            other => Err(refusal(self.user, &format!("cannot make {rest}"), &other)),
        }
    }

    pub async fn container(&self, kind: ItemKind, name: &str) -> Result<Container> {
        match kind {
            ItemKind::Contact => {
                if name.eq_ignore_ascii_case("contacts") {
                    return Ok(Container {
                        items_path: "/contacts".into(),
                        id: String::new(),
                    });
                }
                let filter = format!("displayName eq '{}'", quote(name));
                let list = self
                    .get(
                        "/contactFolders",
                        &[("$filter", &filter), ("$select", "id")],
                    )
                    .await?;
                let id = match list["value"][0]["id"].as_str() {
                    Some(id) => id.to_string(),
                    None => {
                        self.make("/contactFolders", json!({ "displayName": name }))
                            .await?
                    }
                };
                Ok(Container {
                    items_path: format!("/contactFolders/{}/contacts", urlencode(&id)),
                    id,
                })
            }
            ItemKind::Event => {
                let id = if name.eq_ignore_ascii_case("calendar") {
                    let c = self.get("/calendar", &[("$select", "id")]).await?;
                    c["id"]
                        .as_str()
                        .ok_or_else(|| anyhow!("{}: the default calendar has no id", self.user))?
                        .to_string()
                } else {
                    let filter = format!("name eq '{}'", quote(name));
                    let list = self
                        .get("/calendars", &[("$filter", &filter), ("$select", "id")])
                        .await?;
                    match list["value"][0]["id"].as_str() {
                        Some(id) => id.to_string(),
                        None => self.make("/calendars", json!({ "name": name })).await?,
                    }
                };
                Ok(Container {
                    items_path: format!("/calendars/{}/events", urlencode(&id)),
                    id,
                })
            }
            ItemKind::Task => {
                // To Do lists take no $filter on their name (todotasklist-list
                // documents none): read them all, they are few.
                let mut next: Option<String> = None;
                let mut id = None;
                loop {
                    let page = match &next {
                        None => self.get("/todo/lists", &[]).await?,
                        Some(link) => self.follow(link).await?,
                    };
                    for l in page["value"].as_array().into_iter().flatten() {
                        let default = l["wellknownListName"] == "defaultList";
                        let named = l["displayName"]
                            .as_str()
                            .is_some_and(|d| d.eq_ignore_ascii_case(name));
                        if named || (default && name.eq_ignore_ascii_case("tasks")) {
                            id = l["id"].as_str().map(str::to_string);
                        }
                    }
                    next = page["@odata.nextLink"].as_str().map(str::to_string);
                    if id.is_some() || next.is_none() {
                        break;
                    }
                }
                let id = match id {
                    Some(id) => id,
                    None => {
                        self.make("/todo/lists", json!({ "displayName": name }))
                            .await?
                    }
                };
                Ok(Container {
                    items_path: format!("/todo/lists/{}/tasks", urlencode(&id)),
                    id,
                })
            }
        }
    }

    /// Reads an `@odata.nextLink` (an absolute address Graph gave).
    pub async fn follow(&self, link: &str) -> Result<Value> {
        let rest = self.client.relative(link)?;
        match self
            .client
            .send(self.gate, Method::GET, &rest, &[], Body::Empty)
            .await?
        {
            Reply::Answered { status: 200, body } => Ok(body),
            other => Err(refusal(self.user, "the next page", &other)),
        }
    }
}

/// A string inside an OData literal: quotes doubled.
pub fn quote(s: &str) -> String {
    s.replace('\'', "''")
}

/// A path segment, percent-encoded (ids hold `=`, `/` and `+`).
pub fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'@' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
