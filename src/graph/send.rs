//! One item to its target, exactly once: a create cut short by a crash is
//! looked up by its tag before anything is created again; a changed item
//! is updated in place; what Graph refuses or cannot hold is recorded.

use std::sync::Arc;

use anyhow::Result;
use chrono::{DateTime, NaiveDateTime, Utc};
use reqwest::Method;
use serde_json::{Value, json};

use super::calendar::{self, Exception};
use super::client::{Body, Reply};
use super::contact;
use super::containers::{Container, Mailbox, Refusal, quote, urlencode};
use crate::store::Store;
use crate::store::item_ledger::{ItemReason, ItemState, ItemToSend};
use crate::store::items::ItemKind;

/// The named extended property that carries an item's tag on contacts and
/// events ("Outlook extended properties overview": a named string
/// property in a GUID namespace of our own).
pub const TAG_PROPERTY: &str = "String {6E1C4D2A-8B1F-4C57-9D3E-2A7B5F0C9E14} Name MailferryItem";

pub struct Context<'a> {
    pub store: &'a Arc<Store>,
    pub mailbox: &'a Mailbox<'a>,
    pub invite_attendees: bool,
}

/// What became of one item.
pub enum Sent {
    Created {
        lossy: bool,
    },
    Updated {
        lossy: bool,
    },
    /// An earlier run's create was found at the target; nothing was sent again.
    Reconciled,
    Skipped,
    Failed,
}

/// An item as Graph takes it.
pub struct Built {
    json: Value,
    photo: Option<(String, Vec<u8>)>,
    exceptions: Vec<Exception>,
    losses: Vec<String>,
}

/// The JSON an item is sent as (without its tag), for a read-back to
/// compare with.
pub fn build_json(kind: ItemKind, text: &str) -> Result<Value, String> {
    build(kind, text, false).map(|b| b.json)
}

fn build(kind: ItemKind, text: &str, invite_attendees: bool) -> Result<Built, String> {
    match kind {
        ItemKind::Contact => {
            let card = contact::parse(text).ok_or("the stored vCard cannot be read")?;
            let b = contact::contact(&card);
            Ok(Built {
                json: b.json,
                photo: b.photo,
                exceptions: Vec::new(),
                losses: b.losses,
            })
        }
        ItemKind::Event => {
            let cal = calendar::parse(text).ok_or("the stored iCalendar cannot be read")?;
            let b = calendar::event(&cal, invite_attendees)?;
            Ok(Built {
                json: b.json,
                photo: None,
                exceptions: b.exceptions,
                losses: b.losses,
            })
        }
        ItemKind::Task => {
            let cal = calendar::parse(text).ok_or("the stored iCalendar cannot be read")?;
            let b = calendar::task(&cal)?;
            Ok(Built {
                json: b.json,
                photo: None,
                exceptions: Vec::new(),
                losses: b.losses,
            })
        }
    }
}

/// What applying one exception did.
enum Applied {
    Done,
    /// The target's series has no such instance: named as a loss.
    NotAnInstance(String),
    /// Failed for now, in Graph's words.
    Failed(String),
}

/// What a lookup by tag found.
enum Lookup {
    Found(String),
    Absent,
    Unknown(String),
}

/// How a refusal is recorded.
pub(super) fn reason_of(status: u16) -> ItemReason {
    match status {
        400 | 413 | 422 => ItemReason::Refused,
        401 | 403 | 404 => ItemReason::AccessDenied,
        _ => ItemReason::Unavailable,
    }
}

impl Context<'_> {
    fn user(&self) -> &str {
        self.mailbox.user
    }

    /// The ledger's row before a create or update of `item` goes out.
    fn pending(&self, item: &ItemToSend, container: &Container) -> Result<()> {
        self.store.index().item_ledger().mark_pending(
            item.id,
            self.user(),
            &item.blob,
            &self.tag(item),
            &container.id,
        )
    }

    /// The tag a create of this version of `item` carries: its content
    /// hash, bound to the target, kind, collection and UID, so the same
    /// text in two calendars (or two accounts into one mailbox) is two
    /// items at the target, never one taken for the other.
    pub(super) fn tag(&self, item: &ItemToSend) -> String {
        crate::store::BlobHash::of(
            format!(
                "mailferry item\0{}\0{}\0{}\0{}\0{}",
                self.user().to_lowercase(),
                item.kind.as_str(),
                item.collection,
                item.uid,
                item.blob.to_hex()
            )
            .as_bytes(),
        )
        .to_hex()
    }

    /// An update's body: the new fields, and those the version the target
    /// holds had and this one has not, cleared (a PATCH leaves what it
    /// does not name).
    fn cleared(&self, item: &ItemToSend, json: &Value) -> Value {
        let mut patch = json.clone();
        let Some(sent) = item.sent.as_ref().filter(|s| s.blob != item.blob) else {
            return patch;
        };
        let Ok(raw) = self.store.read_blob(&sent.blob) else {
            return patch;
        };
        let Ok(before) = build_json(item.kind, &String::from_utf8_lossy(&raw)) else {
            return patch;
        };
        if let (Some(before), Some(now)) = (before.as_object(), patch.as_object_mut()) {
            for (k, v) in before {
                if !now.contains_key(k) {
                    let empty = match v {
                        Value::Array(_) => json!([]),
                        _ => Value::Null,
                    };
                    now.insert(k.clone(), empty);
                }
            }
        }
        patch
    }

    /// Records `reason` for an item that was not sent or not taken.
    fn refuse(&self, item: &ItemToSend, reason: ItemReason, words: &str) -> Result<Sent> {
        self.store.index().item_ledger().mark_refused(
            item.id,
            self.user(),
            &item.blob,
            &self.tag(item),
            reason,
            words,
        )?;
        Ok(match reason.state() {
            ItemState::Skipped => Sent::Skipped,
            _ => Sent::Failed,
        })
    }

    /// The item as Graph takes it, or what became of it when it cannot go
    /// (its container refused, its text unreadable or not representable).
    pub fn shape(
        &self,
        item: &ItemToSend,
        container: &Result<Container, Refusal>,
    ) -> Result<Result<Built, Sent>> {
        if let Err(r) = container {
            // A folder that cannot be found or made is a failure to try
            // again, never a reason to settle its items as not uploadable.
            let reason = match r.reason.state() {
                ItemState::Skipped => ItemReason::Unavailable,
                _ => r.reason,
            };
            return Ok(Err(self.refuse(item, reason, &r.words)?));
        }
        let text = match self.store.read_blob(&item.blob) {
            Ok(raw) => String::from_utf8_lossy(&raw).into_owned(),
            Err(e) => {
                return Ok(Err(self.refuse(
                    item,
                    ItemReason::Unavailable,
                    &e.to_string(),
                )?));
            }
        };
        Ok(match build(item.kind, &text, self.invite_attendees) {
            Ok(b) => Ok(b),
            Err(words) => Err(self.refuse(item, ItemReason::CannotRepresent, &words)?),
        })
    }

    /// Never sent, or its create refused outright (a 400 creates nothing):
    /// nothing of it can be at the target, so it is created with no lookup
    /// first (and may go in a batch). A row skipped for another reason may
    /// sit over a create an earlier run cut short: it is looked up first.
    pub fn is_fresh(item: &ItemToSend) -> bool {
        item.sent.as_ref().is_none_or(|s| {
            s.state == ItemState::Skipped
                && s.graph_id.is_none()
                && s.reason
                    .as_ref()
                    .is_some_and(|(r, _)| *r == ItemReason::Refused)
        })
    }

    /// Creates fresh items in one `$batch`, then sends their photos and
    /// applies their exceptions.
    pub async fn create_batch(
        &self,
        items: &[(&ItemToSend, &Container, Built)],
    ) -> Result<Vec<Sent>> {
        let mut requests = Vec::with_capacity(items.len());
        for (item, container, built) in items {
            let tag = self.tag(item);
            self.pending(item, container)?;
            requests.push((
                Method::POST,
                self.mailbox.path(&container.items_path),
                Some(tagged(item.kind, &built.json, &tag, &item.name)),
            ));
        }
        let replies = self
            .mailbox
            .client
            .batch(self.mailbox.gate, &requests)
            .await?;
        let mut out = Vec::with_capacity(items.len());
        for ((item, container, built), reply) in items.iter().zip(replies) {
            let id = match self.created_id(item, container, reply).await? {
                Ok(id) => id,
                Err(sent) => {
                    out.push(sent);
                    continue;
                }
            };
            out.push(match self.finish(item, container, &id, built).await? {
                Some(lossy) => Sent::Created { lossy },
                None => Sent::Failed,
            });
        }
        Ok(out)
    }

    /// The id a create's reply gives, looking the item up when the reply
    /// does not say whether it was made.
    async fn created_id(
        &self,
        item: &ItemToSend,
        container: &Container,
        reply: Reply,
    ) -> Result<Result<String, Sent>> {
        Ok(match reply {
            Reply::Answered {
                status: 200 | 201,
                body,
            } => match body["id"].as_str() {
                Some(id) => Ok(id.to_string()),
                None => Err(self.refuse(item, ItemReason::Unavailable, "Graph sent no id")?),
            },
            Reply::Answered { status, .. } => {
                Err(self.refuse(item, reason_of(status), &reply.error_words())?)
            }
            // It may have been made: look; else the next run looks again.
            Reply::Unknown(words) => {
                match self.find(item.kind, container, &self.tag(item)).await? {
                    Lookup::Found(id) => Ok(id),
                    Lookup::Absent | Lookup::Unknown(_) => {
                        Err(self.refuse(item, ItemReason::Unavailable, &words)?)
                    }
                }
            }
        })
    }

    /// Sends one item: looks up a create an earlier run may have made,
    /// updates what is there, or creates it.
    pub async fn send(
        &self,
        item: &ItemToSend,
        container: &Container,
        built: Built,
    ) -> Result<Sent> {
        let tag = self.tag(item);
        let refuse = |reason: ItemReason, words: &str| self.refuse(item, reason, words);
        let built = &built;

        // A create an earlier run may have made: look before making it again.
        let mut graph_id = item.sent.as_ref().and_then(|s| s.graph_id.clone());
        if let Some(s) = &item.sent
            && s.graph_id.is_none()
            && s.state != ItemState::Done
            && !Self::is_fresh(item)
        {
            match self.find(item.kind, container, &s.tag).await? {
                Lookup::Found(id) => {
                    if s.blob == item.blob {
                        let lossy = self.finish(item, container, &id, built).await?;
                        return Ok(match lossy {
                            Some(_) => Sent::Reconciled,
                            None => Sent::Failed,
                        });
                    }
                    graph_id = Some(id);
                    self.store.index().item_ledger().mark_pending(
                        item.id,
                        self.user(),
                        &s.blob,
                        &s.tag,
                        &container.id,
                    )?;
                    self.store.index().item_ledger().mark_done(
                        item.id,
                        self.user(),
                        &s.blob,
                        graph_id.as_deref().expect("found"),
                        &[],
                    )?;
                }
                Lookup::Absent => {}
                Lookup::Unknown(words) => return refuse(ItemReason::Unavailable, &words),
            }
        }

        if let Some(id) = graph_id {
            let patch = self.cleared(item, &built.json);
            self.pending(item, container)?;
            let reply = self
                .mailbox
                .send(
                    Method::PATCH,
                    &self.item_path(item.kind, container, &id),
                    &[],
                    Body::Json(&patch),
                )
                .await?;
            match reply {
                Reply::Answered { status: 200, .. } => {
                    return Ok(match self.finish(item, container, &id, built).await? {
                        Some(lossy) => Sent::Updated { lossy },
                        None => Sent::Failed,
                    });
                }
                // Deleted at the target since: made again below.
                Reply::Answered { status: 404, .. } => {
                    self.store
                        .index()
                        .item_ledger()
                        .forget_graph_id(item.id, self.user())?;
                }
                Reply::Answered { status, .. } => {
                    return refuse(reason_of(status), &reply.error_words());
                }
                Reply::Unknown(words) => return refuse(ItemReason::Unavailable, &words),
            }
        }

        self.pending(item, container)?;
        let body = tagged(item.kind, &built.json, &tag, &item.name);
        let reply = self
            .mailbox
            .send(Method::POST, &container.items_path, &[], Body::Json(&body))
            .await?;
        let id = match self.created_id(item, container, reply).await? {
            Ok(id) => id,
            Err(sent) => return Ok(sent),
        };
        Ok(match self.finish(item, container, &id, built).await? {
            Some(lossy) => Sent::Created { lossy },
            None => Sent::Failed,
        })
    }

    /// After the item itself is at the target: its photo and its series'
    /// exceptions, then the ledger says done. `None` when a step failed for
    /// now (the row is failed with the Graph id; the next run updates it).
    async fn finish(
        &self,
        item: &ItemToSend,
        container: &Container,
        id: &str,
        built: &Built,
    ) -> Result<Option<bool>> {
        let mut losses = built.losses.clone();
        if let Some((kind, bytes)) = &built.photo {
            let reply = self
                .mailbox
                .send(
                    Method::PUT,
                    &format!("{}/photo/$value", self.item_path(item.kind, container, id)),
                    &[],
                    Body::Bytes(kind, bytes),
                )
                .await?;
            if !matches!(
                reply,
                Reply::Answered {
                    status: 200..=204,
                    ..
                }
            ) {
                losses.push(format!("the photo was not taken: {}", reply.error_words()));
            }
        }
        for e in &built.exceptions {
            match self.apply(id, e).await? {
                Applied::Done => {}
                Applied::NotAnInstance(loss) => losses.push(loss),
                Applied::Failed(words) => {
                    // Failed with its Graph id, in one write: the next run
                    // updates the series and applies its exceptions again.
                    self.store.index().item_ledger().mark_failed_at(
                        item.id,
                        self.user(),
                        &item.blob,
                        id,
                        &words,
                    )?;
                    return Ok(None);
                }
            }
        }
        self.store.index().item_ledger().mark_done(
            item.id,
            self.user(),
            &item.blob,
            id,
            &losses,
        )?;
        Ok(Some(!losses.is_empty()))
    }

    /// Cancels or changes one instance of series `id` (MS "List
    /// instances", "Delete event", "Update event"). Idempotent: an instance
    /// already cancelled is not listed, one already changed is changed again.
    async fn apply(&self, id: &str, e: &Exception) -> Result<Applied> {
        let original = e.original();
        let moved_to = match e {
            Exception::Changed { json, .. } => json["start"]["dateTime"]
                .as_str()
                .and_then(|s| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S").ok())
                .map(|t| t.and_utc()),
            Exception::Cancelled { .. } => None,
        };
        // Where the instance is now: at its original start, or (changed by
        // an earlier run) at its new one; a day either side for zones.
        let mut windows = vec![original];
        windows.extend(moved_to.filter(|m| (*m - original).abs() > chrono::Duration::days(1)));
        let mut instance = None;
        for at in windows {
            let (from, to) = (
                iso(at - chrono::Duration::days(1)),
                iso(at + chrono::Duration::days(2)),
            );
            let mut page = match self
                .mailbox
                .send(
                    Method::GET,
                    &format!("/events/{}/instances", urlencode(id)),
                    &[
                        ("startDateTime", from.as_str()),
                        ("endDateTime", to.as_str()),
                        ("$select", "id,originalStart"),
                        ("$top", "100"),
                    ],
                    Body::Empty,
                )
                .await?
            {
                Reply::Answered { status: 200, body } => body,
                other => return Ok(Applied::Failed(other.error_words())),
            };
            loop {
                instance = page["value"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|i| {
                        i["originalStart"]
                            .as_str()
                            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                            .is_some_and(|t| t.with_timezone(&Utc) == original)
                    })
                    .and_then(|i| i["id"].as_str())
                    .map(str::to_string);
                match (&instance, page["@odata.nextLink"].as_str()) {
                    (None, Some(link)) => match self.mailbox.follow(link).await {
                        Ok(p) => page = p,
                        Err(e) => return Ok(Applied::Failed(e.to_string())),
                    },
                    _ => break,
                }
            }
            if instance.is_some() {
                break;
            }
        }
        let Some(instance) = instance else {
            return Ok(match e {
                // Cancelled already, or never an instance: nothing to do.
                Exception::Cancelled { .. } => Applied::Done,
                Exception::Changed { .. } => Applied::NotAnInstance(format!(
                    "the changed instance of {} is not an instance of the rule at the target; \
                     not applied",
                    iso(original)
                )),
            });
        };
        let path = format!("/events/{}", urlencode(&instance));
        let reply = match e {
            Exception::Cancelled { .. } => {
                self.mailbox
                    .send(Method::DELETE, &path, &[], Body::Empty)
                    .await?
            }
            Exception::Changed { json, .. } => {
                self.mailbox
                    .send(Method::PATCH, &path, &[], Body::Json(json))
                    .await?
            }
        };
        Ok(match reply {
            Reply::Answered {
                status: 200..=204 | 404,
                ..
            } => Applied::Done,
            other => Applied::Failed(other.error_words()),
        })
    }

    fn item_path(&self, kind: ItemKind, container: &Container, id: &str) -> String {
        match kind {
            ItemKind::Contact => format!("/contacts/{}", urlencode(id)),
            ItemKind::Event => format!("/events/{}", urlencode(id)),
            ItemKind::Task => format!("{}/{}", container.items_path, urlencode(id)),
        }
    }

    /// Looks an item up by the tag its create carried.
    async fn find(&self, kind: ItemKind, container: &Container, tag: &str) -> Result<Lookup> {
        match kind {
            ItemKind::Contact | ItemKind::Event => {
                let filter = format!(
                    "singleValueExtendedProperties/Any(ep: ep/id eq '{}' and ep/value eq '{}')",
                    quote(TAG_PROPERTY),
                    quote(tag)
                );
                let reply = self
                    .mailbox
                    .send(
                        Method::GET,
                        &container.items_path,
                        &[("$filter", filter.as_str()), ("$select", "id")],
                        Body::Empty,
                    )
                    .await?;
                Ok(match reply {
                    Reply::Answered { status: 200, body } => {
                        match body["value"][0]["id"].as_str() {
                            Some(id) => Lookup::Found(id.to_string()),
                            None => Lookup::Absent,
                        }
                    }
                    other => Lookup::Unknown(other.error_words()),
                })
            }
            ItemKind::Task => {
                // To Do has no filter on linked resources: read the list.
                let mut page = match self
                    .mailbox
                    .send(
                        Method::GET,
                        &container.items_path,
                        &[("$expand", "linkedResources"), ("$top", "100")],
                        Body::Empty,
                    )
                    .await?
                {
                    Reply::Answered { status: 200, body } => body,
                    other => return Ok(Lookup::Unknown(other.error_words())),
                };
                loop {
                    for t in page["value"].as_array().into_iter().flatten() {
                        let ours = t["linkedResources"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|l| l["externalId"] == tag);
                        if ours && let Some(id) = t["id"].as_str() {
                            return Ok(Lookup::Found(id.to_string()));
                        }
                    }
                    match page["@odata.nextLink"].as_str() {
                        Some(link) => match self.mailbox.follow(link).await {
                            Ok(p) => page = p,
                            Err(e) => return Ok(Lookup::Unknown(e.to_string())),
                        },
                        None => return Ok(Lookup::Absent),
                    }
                }
            }
        }
    }
}

/// A create's body with the item's tag: an extended property on contacts
/// and events (and `transactionId` on events), a linked resource on tasks.
fn tagged(kind: ItemKind, json: &Value, tag: &str, name: &str) -> Value {
    let mut body = json.clone();
    match kind {
        ItemKind::Contact | ItemKind::Event => {
            body["singleValueExtendedProperties"] = json!([{ "id": TAG_PROPERTY, "value": tag }]);
            if kind == ItemKind::Event {
                body["transactionId"] = json!(tag);
            }
        }
        ItemKind::Task => {
            body["linkedResources"] = json!([{
                "applicationName": "mailferry",
                "displayName": name,
                "externalId": tag,
            }]);
        }
    }
    body
}

fn iso(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}
