//! A stand-in for Microsoft Graph v1.0 on loopback: the Outlook contacts,
//! calendars and To Do endpoints mailferry writes to, JSON batching, and
//! Outlook's per-mailbox throttling.
//!
//! Graph cannot run here, so every behaviour below follows a Microsoft
//! page, named in a comment beside it (docs/research/graph.md holds the
//! excerpts); where the page is silent the comment says what was chosen.
//! Its failures are part of the emulation: 401, 403, 404, 400 validation,
//! 429 with `Retry-After`, 424 in batches, and injected 503s and dropped
//! connections after a create was applied.
//!
//! Hand-written HTTP/1.1 over std threads, one thread per connection, with
//! keep-alive: requests are read until the client closes the connection.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use calcard::common::timezone::Tz;
use chrono::{
    DateTime, Datelike, Days, Months, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Utc,
    Weekday,
};
use serde_json::{Map, Value, json};

use super::identity::TokenCheck;

/// MS "Get access without a user" (auth-v2-service): app-only tokens for
/// Graph are asked for with the resource's `.default` scope.
const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";
/// MS "Microsoft Graph service-specific throttling limits" (Outlook service
/// limits): 4 concurrent requests per app and mailbox.
const MAX_IN_FLIGHT: usize = 4;
/// How long a write is held while it counts as in flight, so that the
/// concurrency limit can be met by a client that overlaps its requests.
const HOLD: Duration = Duration::from_millis(5);
/// MS "Combine multiple HTTP requests using JSON batching": at most 20.
const BATCH_MAX: usize = 20;
/// MS "Update profilephoto": "a limit of 4MB on the total size of each REST
/// request, this limits the size of the photo you can add to under 4MB".
const PHOTO_MAX: usize = 4 * 1024 * 1024;
/// MS "Paging Microsoft Graph data in your app": Outlook collections and
/// To Do tasks come 10 at a time unless `$top` says otherwise.
const PAGE: usize = 10;

/// MS "dateTimeTimeZone resource type", "Additional time zones": the names
/// besides Windows' own that the calendar API takes. (The page writes some
/// as "Europe/Kyiv (Kiev)", "Asia/Toshkent (Tashkent)", "Asia/Astana
/// (Almaty)", "Asia/Yangon (Rangoon)": both spellings are here.)
const IANA_ZONES: &[&str] = &[
    "Etc/GMT+12",
    "Etc/GMT+11",
    "Pacific/Honolulu",
    "America/Anchorage",
    "America/Santa_Isabel",
    "America/Los_Angeles",
    "America/Phoenix",
    "America/Chihuahua",
    "America/Denver",
    "America/Guatemala",
    "America/Chicago",
    "America/Mexico_City",
    "America/Regina",
    "America/Bogota",
    "America/New_York",
    "America/Indiana/Indianapolis",
    "America/Caracas",
    "America/Asuncion",
    "America/Halifax",
    "America/Cuiaba",
    "America/La_Paz",
    "America/Santiago",
    "America/St_Johns",
    "America/Sao_Paulo",
    "America/Argentina/Buenos_Aires",
    "America/Cayenne",
    "America/Godthab",
    "America/Montevideo",
    "America/Bahia",
    "Etc/GMT+2",
    "Atlantic/Azores",
    "Atlantic/Cape_Verde",
    "Africa/Casablanca",
    "Etc/GMT",
    "Europe/London",
    "Atlantic/Reykjavik",
    "Europe/Berlin",
    "Europe/Budapest",
    "Europe/Paris",
    "Europe/Warsaw",
    "Africa/Lagos",
    "Africa/Windhoek",
    "Europe/Bucharest",
    "Asia/Beirut",
    "Africa/Cairo",
    "Asia/Damascus",
    "Africa/Johannesburg",
    "Europe/Kyiv",
    "Europe/Kiev",
    "Europe/Istanbul",
    "Asia/Jerusalem",
    "Asia/Amman",
    "Asia/Baghdad",
    "Europe/Kaliningrad",
    "Asia/Riyadh",
    "Africa/Nairobi",
    "Asia/Tehran",
    "Asia/Dubai",
    "Asia/Baku",
    "Europe/Moscow",
    "Indian/Mauritius",
    "Asia/Tbilisi",
    "Asia/Yerevan",
    "Asia/Kabul",
    "Asia/Karachi",
    "Asia/Tashkent",
    "Asia/Kolkata",
    "Asia/Colombo",
    "Asia/Kathmandu",
    "Asia/Almaty",
    "Asia/Dhaka",
    "Asia/Yekaterinburg",
    "Asia/Yangon",
    "Asia/Rangoon",
    "Asia/Bangkok",
    "Asia/Novosibirsk",
    "Asia/Shanghai",
    "Asia/Krasnoyarsk",
    "Asia/Singapore",
    "Australia/Perth",
    "Asia/Taipei",
    "Asia/Ulaanbaatar",
    "Asia/Irkutsk",
    "Asia/Tokyo",
    "Asia/Seoul",
    "Australia/Adelaide",
    "Australia/Darwin",
    "Australia/Brisbane",
    "Australia/Sydney",
    "Pacific/Port_Moresby",
    "Australia/Hobart",
    "Asia/Yakutsk",
    "Pacific/Guadalcanal",
    "Asia/Vladivostok",
    "Pacific/Auckland",
    "Etc/GMT-12",
    "Pacific/Fiji",
    "Asia/Magadan",
    "Pacific/Tongatapu",
    "Pacific/Apia",
    "Pacific/Kiritimati",
];

/// MS "contact resource type": properties and relationships.
const CONTACT_PROPS: &[&str] = &[
    "assistantName",
    "birthday",
    "businessAddress",
    "businessHomePage",
    "businessPhones",
    "categories",
    "changeKey",
    "children",
    "companyName",
    "createdDateTime",
    "department",
    "displayName",
    "emailAddresses",
    "fileAs",
    "generation",
    "givenName",
    "homeAddress",
    "homePhones",
    "id",
    "imAddresses",
    "initials",
    "jobTitle",
    "lastModifiedDateTime",
    "manager",
    "middleName",
    "mobilePhone",
    "nickName",
    "officeLocation",
    "otherAddress",
    "parentFolderId",
    "personalNotes",
    "profession",
    "spouseName",
    "surname",
    "title",
    "yomiCompanyName",
    "yomiGivenName",
    "yomiSurname",
    "extensions",
    "multiValueExtendedProperties",
    "photo",
    "singleValueExtendedProperties",
];

/// MS "contact resource type": the String collections.
const CONTACT_STRING_LISTS: &[&str] = &[
    "businessPhones",
    "homePhones",
    "categories",
    "children",
    "imAddresses",
];

/// MS "event resource type": properties and relationships.
const EVENT_PROPS: &[&str] = &[
    "allowNewTimeProposals",
    "attendees",
    "body",
    "bodyPreview",
    "cancelledOccurrences",
    "categories",
    "changeKey",
    "createdDateTime",
    "end",
    "hasAttachments",
    "hideAttendees",
    "iCalUId",
    "id",
    "importance",
    "isAllDay",
    "isCancelled",
    "isDraft",
    "isOnlineMeeting",
    "isOrganizer",
    "isReminderOn",
    "lastModifiedDateTime",
    "location",
    "locations",
    "onlineMeeting",
    "onlineMeetingProvider",
    "onlineMeetingUrl",
    "organizer",
    "originalEndTimeZone",
    "originalStart",
    "originalStartTimeZone",
    "recurrence",
    "reminderMinutesBeforeStart",
    "responseRequested",
    "responseStatus",
    "sensitivity",
    "seriesMasterId",
    "showAs",
    "start",
    "subject",
    "transactionId",
    "type",
    "webLink",
    "attachments",
    "calendar",
    "extensions",
    "instances",
    "multiValueExtendedProperties",
    "singleValueExtendedProperties",
];

/// MS "todoTask resource type": properties and relationships.
const TASK_PROPS: &[&str] = &[
    "body",
    "bodyLastModifiedDateTime",
    "categories",
    "completedDateTime",
    "createdDateTime",
    "dueDateTime",
    "hasAttachments",
    "id",
    "importance",
    "isReminderOn",
    "lastModifiedDateTime",
    "recurrence",
    "reminderDateTime",
    "startDateTime",
    "status",
    "title",
    "attachments",
    "checklistItems",
    "extensions",
    "linkedResources",
];

/// MS "todoTask resource type": its dateTimeTimeZone properties.
const TASK_TIMES: &[&str] = &[
    "dueDateTime",
    "reminderDateTime",
    "startDateTime",
    "completedDateTime",
];

/// Read-only properties: what a client sends of them is not stored
/// (MS "contact resource type", "event resource type", "todoTask resource
/// type" mark them read-only).
const READ_ONLY: &[&str] = &[
    "id",
    "changeKey",
    "createdDateTime",
    "lastModifiedDateTime",
    "parentFolderId",
    "type",
    "iCalUId",
    "seriesMasterId",
    "originalStart",
    "originalStartTimeZone",
    "originalEndTimeZone",
    "bodyLastModifiedDateTime",
    "@odata.type",
    "@odata.etag",
];

/// A contact folder, calendar or To Do list.
struct Folder {
    id: String,
    name: String,
}

/// A contact, event or task as stored.
struct Item {
    id: String,
    folder: String,
    json: Map<String, Value>,
    /// single-value extended properties: (id, value)
    props: Vec<(String, String)>,
    /// Events only: changed or cancelled occurrences, by original start (UTC).
    overrides: BTreeMap<NaiveDateTime, Override>,
}

enum Override {
    Cancelled,
    /// The fields patched onto the occurrence.
    Changed(Map<String, Value>),
}

struct Mailbox {
    upn: String,
    denied: bool,
    /// Repeated transactionIds create anew: what a client may meet where
    /// Graph's undocumented dedupe does not hold (another payload, a
    /// retention window), so only its own lookup keeps it exact.
    transaction_ids_ignored: bool,
    in_flight: usize,
    max_in_flight: usize,
    /// When each request counted against the window arrived.
    window: VecDeque<Instant>,
    /// [0] is the default "Contacts" folder.
    contact_folders: Vec<Folder>,
    contacts: Vec<Item>,
    photos: HashMap<String, Vec<u8>>,
    /// [0] is the default "Calendar".
    calendars: Vec<Folder>,
    events: Vec<Item>,
    invitations: Vec<String>,
    /// [0] is the default "Tasks" list.
    lists: Vec<Folder>,
    tasks: Vec<Item>,
}

struct State {
    mailboxes: HashMap<String, Mailbox>,
    window_requests: usize,
    window: Duration,
    retry_after: f64,
    fail_after_applying: usize,
    drop_after_applying: usize,
    requests: u64,
    throttled: u64,
    /// Bytes of request and reply bodies, both ways.
    body_bytes: u64,
    log: Vec<(String, String)>,
}

struct Shared {
    port: u16,
    tokens: TokenCheck,
    next_id: AtomicU64,
    state: Mutex<State>,
}

pub struct Graph {
    pub port: u16,
    shared: Arc<Shared>,
}

impl Graph {
    /// Serves /v1.0 on 127.0.0.1:0 for these mailboxes (user principal
    /// names, matched case-insensitively); bearer tokens are checked with
    /// `tokens` for scope "https://graph.microsoft.com/.default".
    pub fn start(tokens: TokenCheck, mailboxes: &[&str]) -> Graph {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            port,
            tokens,
            next_id: AtomicU64::new(1),
            state: Mutex::new(State {
                mailboxes: HashMap::new(),
                // MS "Microsoft Graph service-specific throttling limits":
                // 10,000 API requests in a 10 minute period per mailbox.
                window_requests: 10_000,
                window: Duration::from_secs(600),
                retry_after: 1.0,
                fail_after_applying: 0,
                drop_after_applying: 0,
                requests: 0,
                throttled: 0,
                body_bytes: 0,
                log: Vec::new(),
            }),
        });
        for upn in mailboxes {
            let mailbox = Mailbox {
                upn: upn.to_string(),
                denied: false,
                transaction_ids_ignored: false,
                in_flight: 0,
                max_in_flight: 0,
                window: VecDeque::new(),
                // MS "List contactFolders": the folders under the user's
                // default Contacts folder, which is itself not listed.
                contact_folders: vec![Folder {
                    id: shared.new_id("CF"),
                    name: "Contacts".into(),
                }],
                contacts: Vec::new(),
                photos: HashMap::new(),
                // MS "Get calendar": the user's default calendar.
                calendars: vec![Folder {
                    id: shared.new_id("CA"),
                    name: "Calendar".into(),
                }],
                events: Vec::new(),
                invitations: Vec::new(),
                // MS "todoTaskList resource type": wellknownListName
                // "defaultList" is the user's default "Tasks" list.
                lists: vec![Folder {
                    id: shared.new_id("TL"),
                    name: "Tasks".into(),
                }],
                tasks: Vec::new(),
            };
            shared
                .state
                .lock()
                .unwrap()
                .mailboxes
                .insert(upn.to_lowercase(), mailbox);
        }
        let serving = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let shared = serving.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &shared);
                });
            }
        });
        Graph { port, shared }
    }

    /// "http://127.0.0.1:{port}/v1.0"
    pub fn url(&self) -> String {
        self.shared.url()
    }

    /// Outlook's per-mailbox request window: at most `requests` per
    /// `window` (default 10,000 per 600 s).
    pub fn set_window(&self, requests: usize, window: Duration) {
        let mut s = self.shared.lock();
        s.window_requests = requests;
        s.window = window;
    }

    /// The Retry-After (seconds, may be fractional, e.g. 0.25) sent with
    /// 429s (default 1.0).
    pub fn set_retry_after(&self, seconds: f64) {
        self.shared.lock().retry_after = seconds;
    }

    /// The next `n` create requests (a POST that creates a contact, event
    /// or task) are applied and then answered 503.
    pub fn fail_after_applying(&self, n: usize) {
        self.shared.lock().fail_after_applying = n;
    }

    /// The next `n` create requests are applied and then the connection is
    /// closed without any reply.
    pub fn drop_after_applying(&self, n: usize) {
        self.shared.lock().drop_after_applying = n;
    }

    /// Every request to this mailbox answers 403 ErrorAccessDenied
    /// (an application access policy that leaves it out).
    pub fn deny(&self, mailbox: &str) {
        self.shared.with_mailbox(mailbox, |m| m.denied = true);
    }

    /// Repeated transactionIds create a second event in this mailbox (the
    /// docs do not say what a repeat does; a client must not rely on it).
    pub fn ignore_transaction_ids(&self, mailbox: &str) {
        self.shared
            .with_mailbox(mailbox, |m| m.transaction_ids_ignored = true);
    }

    /// The admin puts the mailbox back in the app's scope.
    pub fn allow(&self, mailbox: &str) {
        self.shared.with_mailbox(mailbox, |m| m.denied = false);
    }

    /// Contacts of a mailbox: (folder display name, "Contacts" for the
    /// default folder; the contact JSON as stored, without extended
    /// properties).
    pub fn contacts(&self, mailbox: &str) -> Vec<(String, Value)> {
        self.shared.with_mailbox(mailbox, |m| {
            m.contacts
                .iter()
                .map(|c| {
                    (
                        folder_name(&m.contact_folders, &c.folder),
                        Value::Object(c.json.clone()),
                    )
                })
                .collect()
        })
    }

    /// What a user does in Outlook: changes a field of a contact, or
    /// deletes the contact (`value` None).
    pub fn user_edits_contact(&self, mailbox: &str, id: &str, field: &str, value: Option<Value>) {
        self.shared.with_mailbox(mailbox, |m| match value {
            Some(v) => {
                if let Some(c) = m.contacts.iter_mut().find(|c| c.id == id) {
                    c.json.insert(field.to_string(), v);
                }
            }
            None => m.contacts.retain(|c| c.id != id),
        })
    }

    /// Events (series masters and single events, not instances):
    /// (calendar name, event JSON as stored).
    pub fn events(&self, mailbox: &str) -> Vec<(String, Value)> {
        self.shared.with_mailbox(mailbox, |m| {
            m.events
                .iter()
                .map(|e| {
                    (
                        folder_name(&m.calendars, &e.folder),
                        Value::Object(e.json.clone()),
                    )
                })
                .collect()
        })
    }

    /// The instances of a series event between two instants, as GET
    /// .../instances returns them (value array, times in UTC), minus
    /// cancelled ones.
    pub fn instances(
        &self,
        mailbox: &str,
        event_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<Value> {
        self.shared.with_mailbox(mailbox, |m| {
            let event = m
                .events
                .iter()
                .find(|e| e.id == event_id)
                .unwrap_or_else(|| panic!("{mailbox} has no event {event_id}"));
            instances_of(event, from.naive_utc(), to.naive_utc())
                .into_iter()
                .map(|i| present(i, None))
                .collect()
        })
    }

    /// Tasks: (list display name, task JSON including linkedResources).
    pub fn tasks(&self, mailbox: &str) -> Vec<(String, Value)> {
        self.shared.with_mailbox(mailbox, |m| {
            m.tasks
                .iter()
                .map(|t| {
                    (
                        folder_name(&m.lists, &t.folder),
                        Value::Object(t.json.clone()),
                    )
                })
                .collect()
        })
    }

    /// A contact's photo bytes, if one was PUT.
    pub fn photo(&self, mailbox: &str, contact_id: &str) -> Option<Vec<u8>> {
        self.shared
            .with_mailbox(mailbox, |m| m.photos.get(contact_id).cloned())
    }

    /// The addresses invitations were sent to (events created or updated
    /// with attendees), in order.
    pub fn invitations(&self, mailbox: &str) -> Vec<String> {
        self.shared.with_mailbox(mailbox, |m| m.invitations.clone())
    }

    /// Every HTTP request received (a $batch counts 1 here).
    pub fn requests(&self) -> u64 {
        self.shared.lock().requests
    }

    /// Bytes of every request's and reply's body, both ways (headers not
    /// counted).
    pub fn body_bytes(&self) -> u64 {
        self.shared.lock().body_bytes
    }

    /// Requests answered 429, those inside a $batch included.
    pub fn throttled(&self) -> u64 {
        self.shared.lock().throttled
    }

    /// The largest number of requests in flight at once for one mailbox,
    /// counting requests inside a $batch, and counting a request that
    /// arrived over the limit (and was answered 429) while it was there.
    pub fn max_in_flight(&self, mailbox: &str) -> usize {
        self.shared.with_mailbox(mailbox, |m| m.max_in_flight)
    }

    /// Every request line seen: (method, path with query, decoded). The
    /// requests inside a $batch follow its own line, as "/v1.0" + their url.
    pub fn log(&self) -> Vec<(String, String)> {
        self.shared.lock().log.clone()
    }
}

fn folder_name(folders: &[Folder], id: &str) -> String {
    folders
        .iter()
        .find(|f| f.id == id)
        .map(|f| f.name.clone())
        .unwrap_or_default()
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1.0", self.port)
    }

    fn with_mailbox<T>(&self, upn: &str, f: impl FnOnce(&mut Mailbox) -> T) -> T {
        let mut s = self.lock();
        let m = s
            .mailboxes
            .get_mut(&upn.to_lowercase())
            .unwrap_or_else(|| panic!("the Graph emulator serves no mailbox {upn}"));
        f(m)
    }

    /// An opaque id like Outlook's (MS "Get immutable identifiers for
    /// Outlook resources": base64-like, case-sensitive), with `-`, `_` and
    /// `=` so that a client must percent-encode it in paths.
    fn new_id(&self, kind: &str) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("AAMkAG{kind}{:04x}-Ab_{n:06}AAA=", self.port)
    }
}

// ---------------------------------------------------------------------------
// HTTP

struct Request {
    method: String,
    /// Path segments after /v1.0, percent-decoded.
    segments: Vec<String>,
    /// Query pairs, form-decoded.
    query: Vec<(String, String)>,
    /// Header names in lower case.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn q(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The zone of `Prefer: outlook.timezone="..."` (MS "Create event",
    /// "List instances": start and end come back in it, else in UTC).
    fn prefer_zone(&self) -> Option<String> {
        self.headers
            .iter()
            .filter(|(n, _)| n == "prefer")
            .flat_map(|(_, v)| v.split(','))
            .find_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("outlook.timezone")
                    .then(|| v.trim().trim_matches('"').to_string())
            })
    }

    fn json_body(&self) -> Result<Map<String, Value>, Reply> {
        // MS "Microsoft Graph error responses and resource types": 400 for
        // a body Graph cannot read.
        let unreadable = || {
            error(
                400,
                "BadRequest",
                "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.",
            )
        };
        let json_type = self
            .header("content-type")
            .is_some_and(|t| t.to_ascii_lowercase().starts_with("application/json"));
        if !json_type {
            return Err(unreadable());
        }
        match serde_json::from_slice::<Value>(&self.body) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(unreadable()),
        }
    }
}

enum Payload {
    Empty,
    Json(Value),
    Bytes(String, Vec<u8>),
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    payload: Payload,
    /// Close the connection without answering.
    drop: bool,
}

impl Reply {
    fn json(status: u16, v: Value) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            payload: Payload::Json(v),
            drop: false,
        }
    }

    fn empty(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            payload: Payload::Empty,
            drop: false,
        }
    }

    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// MS "Microsoft Graph error responses and resource types": the error
/// resource, `{"error": {"code", "message", "innerError"}}`.
fn error(status: u16, code: &str, message: &str) -> Reply {
    Reply::json(
        status,
        json!({"error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
                "request-id": "00000000-0000-0000-0000-000000000000",
            }
        }}),
    )
}

/// MS "Microsoft Graph error responses and resource types": 405 Method Not
/// Allowed, "The HTTP method in the request isn't allowed on the resource".
fn not_allowed() -> Reply {
    error(
        405,
        "BadRequest",
        "The HTTP method in the request isn't allowed on the resource.",
    )
}

fn bad(message: &str) -> Reply {
    error(400, "ErrorInvalidRequest", message)
}

/// MS "Microsoft Graph error responses and resource types": an item that is
/// not there.
fn not_found() -> Reply {
    error(
        404,
        "ErrorItemNotFound",
        "The specified object was not found in the store.",
    )
}

/// A property the type does not have, as OData's reader words it (MS
/// "Microsoft Graph error responses and resource types": 400 Bad Request).
fn unknown_property(name: &str, type_name: &str) -> Reply {
    error(
        400,
        "RequestBodyRead",
        &format!(
            "The property '{name}' does not exist on type 'microsoft.graph.{type_name}'. Make sure to only use property names that are defined by the type or mark the type as open type."
        ),
    )
}

fn bad_literal(value: &Value, type_name: &str) -> Reply {
    let literal = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    error(
        400,
        "RequestBodyRead",
        &format!("Cannot convert the literal '{literal}' to the expected type '{type_name}'."),
    )
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Request Entity Too Large",
        424 => "Failed Dependency",
        429 => "Too Many Requests",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// One connection: requests are read and answered until the client closes
/// it (HTTP/1.1 keep-alive), each body by its Content-Length.
fn serve(conn: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let _ = conn.set_nodelay(true);
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((n, v)) = h.split_once(':') {
                headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        let close = headers
            .iter()
            .any(|(n, v)| n == "connection" && v.eq_ignore_ascii_case("close"));
        shared.lock().body_bytes += length as u64;
        let reply = shared.top(&method, &target, headers, body);
        if reply.drop {
            let _ = out.shutdown(Shutdown::Both);
            return Ok(());
        }
        let sent = write_reply(&mut out, reply, close)?;
        shared.lock().body_bytes += sent as u64;
        if close {
            return Ok(());
        }
    }
}

/// Writes a reply; how many bytes its body held.
fn write_reply(out: &mut TcpStream, reply: Reply, close: bool) -> std::io::Result<usize> {
    let (content_type, body) = match reply.payload {
        Payload::Empty => (None, Vec::new()),
        Payload::Json(v) => (
            Some("application/json".to_string()),
            serde_json::to_vec(&v).unwrap(),
        ),
        Payload::Bytes(t, b) => (Some(t), b),
    };
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    if let Some(t) = content_type {
        head.push_str(&format!("Content-Type: {t}\r\n"));
    }
    // A 204 carries no body and no length.
    if reply.status != 204 {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (n, v) in &reply.headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(&body);
    out.write_all(&bytes)?;
    out.flush()?;
    Ok(body.len())
}

/// %XX decoding (a path segment: `+` stays itself).
fn decode_path(s: &str) -> String {
    decode(s, false)
}

/// application/x-www-form-urlencoded decoding: `+` is a space.
fn decode_form(s: &str) -> String {
    decode(s, true)
}

fn decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if plus_is_space => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes everything but unreserved characters and `$` (for the
/// links this server writes).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'$' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn parse_query(raw: &str) -> Vec<(String, String)> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode_form(k), decode_form(v)),
            None => (decode_form(p), String::new()),
        })
        .collect()
}

/// A target ("/v1.0/users/x?$top=1") as path segments after the version
/// and query pairs; `None` when the version is not v1.0.
fn parse_target(target: &str) -> (Vec<String>, Vec<(String, String)>) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let segments = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(decode_path)
        .collect();
    (segments, parse_query(query))
}

fn logged(target: &str) -> String {
    match target.split_once('?') {
        Some((p, q)) => format!("{}?{}", decode_path(p), decode_form(q)),
        None => decode_path(target),
    }
}

// ---------------------------------------------------------------------------
// Dispatch, authentication, throttling

enum Admission {
    Go(String),
    Done(Reply),
}

impl Shared {
    fn top(
        &self,
        method: &str,
        target: &str,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Reply {
        {
            let mut s = self.lock();
            s.requests += 1;
            s.log.push((method.to_string(), logged(target)));
        }
        let (segments, query) = parse_target(target);
        let mut req = Request {
            method: method.to_ascii_uppercase(),
            segments,
            query,
            headers,
            body,
        };
        // MS "Microsoft Graph error responses and resource types": 401
        // Unauthorized, "Required authentication information is either
        // missing or not valid for the resource" (wrong audience included).
        let token = req
            .header("authorization")
            .and_then(|a| {
                a.get(..7)
                    .filter(|p| p.eq_ignore_ascii_case("bearer "))
                    .map(|_| a[7..].trim().to_string())
            })
            .unwrap_or_default();
        if token.is_empty() {
            return error(401, "InvalidAuthenticationToken", "Access token is empty.");
        }
        if !self.tokens.check(&token, GRAPH_SCOPE) {
            return error(
                401,
                "InvalidAuthenticationToken",
                "Access token validation failure. Invalid audience, or the token has expired.",
            );
        }
        if req.segments.first().map(String::as_str) != Some("v1.0") {
            // MS "Use the Microsoft Graph API": the version follows the host.
            return error(400, "BadRequest", "Invalid version.");
        }
        req.segments.remove(0);
        let mut reply = if req.segments.len() == 1 && req.segments[0] == "$batch" {
            if req.method != "POST" {
                not_allowed()
            } else {
                self.batch(&req)
            }
        } else {
            self.single(&req)
        };
        // MS "Get immutable identifiers for Outlook resources": the
        // preference is acknowledged (ids here never change anyway).
        let immutable = req
            .headers
            .iter()
            .any(|(n, v)| n == "prefer" && v.contains("IdType=\"ImmutableId\""));
        if immutable {
            reply
                .headers
                .push(("Preference-Applied".into(), "IdType=\"ImmutableId\"".into()));
        }
        reply
    }

    /// One request outside a batch: admitted against its mailbox's limits,
    /// applied, held while in flight (writes), released.
    fn single(&self, req: &Request) -> Reply {
        match self.admit(req) {
            Admission::Done(r) => r,
            Admission::Go(key) => {
                let reply = self.execute(&key, req);
                if req.method != "GET" {
                    std::thread::sleep(HOLD);
                }
                self.release(&key);
                reply
            }
        }
    }

    fn admit(&self, req: &Request) -> Admission {
        let segs: Vec<&str> = req.segments.iter().map(String::as_str).collect();
        let upn = match segs.as_slice() {
            ["users", upn, ..] => upn.to_string(),
            [first, ..] => {
                // MS "Microsoft Graph error responses and resource types":
                // 400 for a request Graph cannot route.
                return Admission::Done(error(
                    400,
                    "BadRequest",
                    &format!("Resource not found for the segment '{first}'."),
                ));
            }
            [] => return Admission::Done(error(400, "BadRequest", "Invalid request.")),
        };
        let key = upn.to_lowercase();
        let mut s = self.lock();
        let (limit, window, retry_after) = (s.window_requests, s.window, s.retry_after);
        let Some(m) = s.mailboxes.get_mut(&key) else {
            // A user the tenant does not have (graph.md §7: 404 for a user
            // not found; the code is Exchange's ErrorInvalidUser).
            return Admission::Done(error(
                404,
                "ErrorInvalidUser",
                &format!("The requested user '{upn}' is invalid."),
            ));
        };
        if m.denied {
            // MS "Limiting application permissions to specific Exchange
            // Online mailboxes": a mailbox outside the application access
            // policy answers ErrorAccessDenied, "Access to OData is disabled."
            return Admission::Done(error(
                403,
                "ErrorAccessDenied",
                "Access to OData is disabled.",
            ));
        }
        // MS "Microsoft Graph service-specific throttling limits" (Outlook):
        // 10,000 requests per 10 minutes and 4 concurrent requests per app
        // and mailbox; MS "Microsoft Graph throttling guidance": requests
        // made while throttled still count against the usage limits.
        let now = Instant::now();
        while m
            .window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            m.window.pop_front();
        }
        m.window.push_back(now);
        m.in_flight += 1;
        m.max_in_flight = m.max_in_flight.max(m.in_flight);
        let mut retry_after = retry_after;
        let over = if m.window.len() > limit {
            // The throttling guidance: "wait the number of seconds specified
            // in the Retry-After header": the time until the window has room.
            let oldest_in_the_way = m.window[m.window.len() - limit];
            let room_in = window.saturating_sub(now.duration_since(oldest_in_the_way));
            retry_after = retry_after.max(room_in.as_secs_f64());
            Some("Application is over its MailboxRequests limit.")
        } else if m.in_flight > MAX_IN_FLIGHT {
            Some("Application is over its MailboxConcurrency limit.")
        } else {
            None
        };
        if let Some(message) = over {
            m.in_flight -= 1;
            s.throttled += 1;
            // MS "Microsoft Graph throttling guidance": 429 Too Many
            // Requests with a Retry-After header (seconds, possibly with a
            // fraction, e.g. "Retry-After: 2.128").
            let mut r = error(429, "ApplicationThrottled", message);
            r.headers
                .push(("Retry-After".into(), format!("{retry_after}")));
            return Admission::Done(r);
        }
        Admission::Go(key)
    }

    fn release(&self, key: &str) {
        if let Some(m) = self.lock().mailboxes.get_mut(key) {
            m.in_flight -= 1;
        }
    }

    /// Applies one admitted request, then the failures asked for.
    fn execute(&self, key: &str, req: &Request) -> Reply {
        let mut s = self.lock();
        let rest: Vec<&str> = req.segments[2..].iter().map(String::as_str).collect();
        let m = s.mailboxes.get_mut(key).expect("admitted");
        let (mut reply, created) = self.route(m, &rest, req);
        if created && reply.ok() {
            if s.fail_after_applying > 0 {
                s.fail_after_applying -= 1;
                // MS "Microsoft Graph error responses and resource types":
                // 503 Service Unavailable (serviceNotAvailable); MS Q&A
                // "Outlook Graph API returning 503s while processing
                // requests": the write was still applied.
                reply = error(
                    503,
                    "serviceNotAvailable",
                    "The service is temporarily unavailable. Please retry later.",
                );
            } else if s.drop_after_applying > 0 {
                s.drop_after_applying -= 1;
                reply.drop = true;
            }
        }
        reply
    }

    /// A mailbox's request: the reply, and whether it created a contact,
    /// event or task (for the failures injected after a create).
    fn route(&self, m: &mut Mailbox, rest: &[&str], req: &Request) -> (Reply, bool) {
        let method = req.method.as_str();
        let created = |r: Reply| {
            let ok = r.status == 201;
            (r, ok)
        };
        let r = match (method, rest) {
            // MS "Get user": the mailbox's user.
            ("GET", []) => Reply::json(
                200,
                select(
                    json!({"id": self.new_id("US"), "userPrincipalName": m.upn, "mail": m.upn}),
                    req,
                ),
            ),
            // Contacts
            ("GET", ["contactFolders"]) => self.list_contact_folders(m, req),
            ("POST", ["contactFolders"]) => self.create_contact_folder(m, req),
            ("GET", ["contactFolders", id]) => {
                match m.contact_folders[1..].iter().find(|f| f.id == *id) {
                    Some(f) => Reply::json(
                        200,
                        select(contact_folder_json(f, &m.contact_folders[0].id), req),
                    ),
                    None => not_found(),
                }
            }
            ("GET", ["contacts"]) => {
                let default = m.contact_folders[0].id.clone();
                self.list_items(m, Kind::Contact, &default, req)
            }
            ("POST", ["contacts"]) => {
                let default = m.contact_folders[0].id.clone();
                return created(self.create_contact(m, &default, req));
            }
            ("GET", ["contactFolders", fid, "contacts"]) => {
                if !m.contact_folders.iter().any(|f| f.id == *fid) {
                    not_found()
                } else {
                    self.list_items(m, Kind::Contact, fid, req)
                }
            }
            ("POST", ["contactFolders", fid, "contacts"]) => {
                if !m.contact_folders.iter().any(|f| f.id == *fid) {
                    not_found()
                } else {
                    return created(self.create_contact(m, fid, req));
                }
            }
            (_, ["contacts", id, "photo", "$value"])
            | (_, ["contactFolders", _, "contacts", id, "photo", "$value"]) => {
                self.photo(m, id, req)
            }
            (_, ["contacts", id]) | (_, ["contactFolders", _, "contacts", id]) => {
                self.contact(m, id, req)
            }
            // Calendars and events
            ("GET", ["calendar"]) => {
                Reply::json(200, select(calendar_json(&m.calendars[0], true), req))
            }
            ("GET", ["calendars"]) => self.list_calendars(m, req),
            ("POST", ["calendars"]) => self.create_calendar(m, req),
            ("GET", ["calendars", id]) => match m.calendars.iter().find(|c| c.id == *id) {
                Some(c) => Reply::json(
                    200,
                    select(calendar_json(c, c.id == m.calendars[0].id), req),
                ),
                None => not_found(),
            },
            // MS "List events" (user-list-events) and MS "Create event"
            // (user-post-events): /events is the user's default calendar.
            ("GET", ["events"]) | ("GET", ["calendar", "events"]) => {
                let default = m.calendars[0].id.clone();
                self.list_items(m, Kind::Event, &default, req)
            }
            ("POST", ["events"]) | ("POST", ["calendar", "events"]) => {
                let default = m.calendars[0].id.clone();
                return created(self.create_event(m, &default, req));
            }
            ("GET", ["calendars", cid, "events"]) => {
                if !m.calendars.iter().any(|c| c.id == *cid) {
                    not_found()
                } else {
                    self.list_items(m, Kind::Event, cid, req)
                }
            }
            ("POST", ["calendars", cid, "events"]) => {
                if !m.calendars.iter().any(|c| c.id == *cid) {
                    not_found()
                } else {
                    return created(self.create_event(m, cid, req));
                }
            }
            ("GET", ["events", id, "instances"])
            | ("GET", ["calendar", "events", id, "instances"])
            | ("GET", ["calendars", _, "events", id, "instances"]) => {
                self.list_instances(m, id, req)
            }
            (_, ["events", id])
            | (_, ["calendar", "events", id])
            | (_, ["calendars", _, "events", id]) => self.event(m, id, req),
            // To Do
            ("GET", ["todo", "lists"]) => {
                let lists: Vec<Value> = m
                    .lists
                    .iter()
                    .enumerate()
                    .map(|(i, l)| list_json(l, i == 0))
                    .collect();
                self.page(req, lists)
            }
            ("POST", ["todo", "lists"]) => self.create_list(m, req),
            ("GET", ["todo", "lists", id]) => match m.lists.iter().position(|l| l.id == *id) {
                Some(i) => Reply::json(200, select(list_json(&m.lists[i], i == 0), req)),
                None => not_found(),
            },
            ("GET", ["todo", "lists", lid, "tasks"]) => self.list_tasks(m, lid, req),
            ("POST", ["todo", "lists", lid, "tasks"]) => {
                return created(self.create_task(m, lid, req));
            }
            (_, ["todo", "lists", lid, "tasks", id]) => self.task(m, lid, id, req),
            // MS "Microsoft Graph error responses and resource types": 400
            // for a segment Graph does not know, 405 Method Not Allowed for
            // a method the resource does not take.
            _ => {
                let known = [
                    "contactFolders",
                    "contacts",
                    "calendar",
                    "calendars",
                    "events",
                    "todo",
                ];
                match rest.first() {
                    Some(seg) if !known.contains(seg) => error(
                        400,
                        "BadRequest",
                        &format!("Resource not found for the segment '{seg}'."),
                    ),
                    _ => error(
                        405,
                        "BadRequest",
                        &format!("The {method} method is not allowed on this resource."),
                    ),
                }
            }
        };
        (r, false)
    }
}

// ---------------------------------------------------------------------------
// Query options: $select, $top/$skip paging, $filter

/// MS "Use query parameters to customize responses" ($select): only the
/// properties named, and always the id.
fn select(v: Value, req: &Request) -> Value {
    let Some(list) = req.q("$select") else {
        return v;
    };
    let wanted: Vec<&str> = list.split(',').map(str::trim).collect();
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(k, _)| {
                    k == "id"
                        || k.starts_with("@odata")
                        || wanted.iter().any(|w| w.eq_ignore_ascii_case(k))
                })
                .collect(),
        ),
        other => other,
    }
}

/// What a `$filter` asks for.
enum Filter {
    /// `prop eq 'literal'`
    Eq(String, String),
    /// `singleValueExtendedProperties/Any(ep: ep/id eq '{id}' and ep/value eq '{v}')`
    Property(String, String),
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Str(String),
    Open,
    Close,
    Colon,
}

/// OData's lexical forms as far as the filters here need them: words
/// (names and paths), string literals with doubled quotes, ( ) and :.
fn tokens(s: &str) -> Option<Vec<Token>> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Token::Open);
                i += 1;
            }
            ')' => {
                out.push(Token::Close);
                i += 1;
            }
            ':' => {
                out.push(Token::Colon);
                i += 1;
            }
            '\'' => {
                let mut lit = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return None,
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            lit.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(c) => {
                            lit.push(*c);
                            i += 1;
                        }
                    }
                }
                out.push(Token::Str(lit));
            }
            _ => {
                let mut w = String::new();
                while let Some(&c) = chars.get(i) {
                    if c.is_whitespace() || "():'".contains(c) {
                        break;
                    }
                    w.push(c);
                    i += 1;
                }
                out.push(Token::Word(w));
            }
        }
    }
    Some(out)
}

fn is_word(t: &Token, w: &str) -> bool {
    matches!(t, Token::Word(x) if x.eq_ignore_ascii_case(w))
}

/// MS "Get singleValueLegacyExtendedProperty" ("Get resource instances
/// filtered by extended property") and MS "Use query parameters" ($filter
/// with eq): the two forms the emulator understands. Anything else is 400.
fn parse_filter(s: &str) -> Result<Filter, Reply> {
    let invalid = || error(400, "BadRequest", &format!("Invalid filter clause: {s}"));
    let t = tokens(s).ok_or_else(invalid)?;
    if let [Token::Word(p), eq, Token::Str(v)] = t.as_slice()
        && is_word(eq, "eq")
    {
        return Ok(Filter::Eq(p.clone(), v.clone()));
    }
    if let [
        Token::Word(any),
        Token::Open,
        Token::Word(var),
        Token::Colon,
        a @ ..,
    ] = t.as_slice()
        && any.eq_ignore_ascii_case("singleValueExtendedProperties/any")
        && let [
            Token::Word(p1),
            eq1,
            Token::Str(v1),
            and,
            Token::Word(p2),
            eq2,
            Token::Str(v2),
            Token::Close,
        ] = a
        && is_word(eq1, "eq")
        && is_word(eq2, "eq")
        && is_word(and, "and")
    {
        let id_path = format!("{var}/id");
        let value_path = format!("{var}/value");
        let is = |p: &str, q: &str| p.eq_ignore_ascii_case(q);
        if is(p1, &id_path) && is(p2, &value_path) {
            return Ok(Filter::Property(v1.clone(), v2.clone()));
        }
        if is(p2, &id_path) && is(p1, &value_path) {
            return Ok(Filter::Property(v2.clone(), v1.clone()));
        }
    }
    Err(error(
        400,
        "ErrorInvalidUrlQueryFilter",
        &format!("The query filter '{s}' is not supported."),
    ))
}

/// MS "Get singleValueLegacyExtendedProperty": "the Name part of the id
/// is case-sensitive"; the type and GUID are not.
fn same_property_id(a: &str, b: &str) -> bool {
    let split = |s: &str| -> Option<(String, String, String)> {
        let mut parts = s.trim().splitn(4, ' ');
        let (ty, guid, kw, name) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        kw.eq_ignore_ascii_case("name")
            .then(|| (ty.to_lowercase(), guid.to_lowercase(), name.to_string()))
    };
    match (split(a), split(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a.eq_ignore_ascii_case(b),
    }
}

/// MS "Outlook extended properties overview": the id formats
/// "{type} {guid} Name {name}", "{type} {guid} Id {hex}", "{type} 0x{tag}".
fn valid_property_id(id: &str) -> bool {
    let types = [
        "String",
        "Integer",
        "Boolean",
        "SystemTime",
        "Binary",
        "Long",
        "Double",
        "Float",
        "CLSID",
        "Short",
        "Currency",
        "ApplicationTime",
        "Object",
        "Error",
        "Null",
    ];
    let parts: Vec<&str> = id.splitn(4, ' ').collect();
    let typed = parts
        .first()
        .is_some_and(|t| types.iter().any(|x| x.eq_ignore_ascii_case(t)));
    let guid = |g: &str| {
        let g = g.trim_start_matches('{').trim_end_matches('}');
        g.len() == 36 && g.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
    };
    typed
        && match parts.as_slice() {
            [_, tag] => tag.starts_with("0x") && u32::from_str_radix(&tag[2..], 16).is_ok(),
            [_, g, kw, name] if kw.eq_ignore_ascii_case("name") => guid(g) && !name.is_empty(),
            [_, g, kw, hex] if kw.eq_ignore_ascii_case("id") => {
                guid(g) && hex.starts_with("0x") && u32::from_str_radix(&hex[2..], 16).is_ok()
            }
            _ => false,
        }
}

/// MS "Create single-value extended property": `[{"id", "value"}]`.
fn read_properties(v: &Value) -> Result<Vec<(String, String)>, Reply> {
    let Value::Array(list) = v else {
        return Err(bad_literal(
            v,
            "Collection(microsoft.graph.singleValueLegacyExtendedProperty)",
        ));
    };
    let mut out = Vec::new();
    for p in list {
        let (Some(id), Some(value)) = (p["id"].as_str(), p["value"].as_str()) else {
            return Err(bad(
                "A single-value extended property needs a string id and value.",
            ));
        };
        if let Some(k) = p
            .as_object()
            .and_then(|o| o.keys().find(|k| !["id", "value"].contains(&k.as_str())))
        {
            return Err(unknown_property(k, "singleValueLegacyExtendedProperty"));
        }
        if !valid_property_id(id) {
            return Err(bad(&format!(
                "The extended property id '{id}' is not valid."
            )));
        }
        out.push((id.to_string(), value.to_string()));
    }
    Ok(out)
}

/// Upserts by id (MS "Create single-value extended property": a PATCH
/// adds or updates the properties of an existing item).
fn merge_properties(into: &mut Vec<(String, String)>, new: Vec<(String, String)>) {
    for (id, value) in new {
        match into.iter_mut().find(|(i, _)| same_property_id(i, &id)) {
            Some(slot) => slot.1 = value,
            None => into.push((id, value)),
        }
    }
}

impl Shared {
    /// MS "Paging Microsoft Graph data in your app": a page of `$top`
    /// items (10 unless asked) and an absolute `@odata.nextLink` carrying
    /// `$skip` while more remain.
    fn page(&self, req: &Request, items: Vec<Value>) -> Reply {
        let top = match req.q("$top").map(str::parse::<usize>) {
            None => PAGE,
            Some(Ok(n)) if n > 0 => n.min(1000),
            Some(_) => return error(400, "BadRequest", "Invalid $top value."),
        };
        let skip = match req.q("$skip").map(str::parse::<usize>) {
            None => 0,
            Some(Ok(n)) => n,
            Some(_) => return error(400, "BadRequest", "Invalid $skip value."),
        };
        let total = items.len();
        let value: Vec<Value> = items
            .into_iter()
            .skip(skip)
            .take(top)
            .map(|v| select(v, req))
            .collect();
        let mut out = json!({ "value": value });
        if skip + top < total {
            let path: Vec<String> = req.segments.iter().map(|s| encode(s)).collect();
            let mut query: Vec<String> = req
                .query
                .iter()
                .filter(|(k, _)| {
                    !k.eq_ignore_ascii_case("$skip") && !k.eq_ignore_ascii_case("$top")
                })
                .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                .collect();
            query.push(format!("$top={top}"));
            query.push(format!("$skip={}", skip + top));
            out["@odata.nextLink"] = json!(format!(
                "{}/{}?{}",
                self.url(),
                path.join("/"),
                query.join("&")
            ));
        }
        Reply::json(200, out)
    }
}

// ---------------------------------------------------------------------------
// Contacts

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Contact,
    Event,
}

fn now_stamp() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn contact_folder_json(f: &Folder, parent: &str) -> Value {
    json!({"id": f.id, "displayName": f.name, "parentFolderId": parent})
}

fn calendar_json(c: &Folder, default: bool) -> Value {
    json!({"id": c.id, "name": c.name, "isDefaultCalendar": default, "canEdit": true})
}

fn list_json(l: &Folder, default: bool) -> Value {
    json!({
        "id": l.id,
        "displayName": l.name,
        "isOwner": true,
        "isShared": false,
        "wellknownListName": if default { "defaultList" } else { "none" },
    })
}

/// Names compared as Exchange compares folder names: without case (the
/// pages do not say; Outlook will not hold "Work" and "work" side by side).
fn named(filter: &Option<Filter>, prop: &str, name: &str) -> Result<bool, Reply> {
    match filter {
        None => Ok(true),
        Some(Filter::Eq(p, v)) if p.eq_ignore_ascii_case(prop) => Ok(v.eq_ignore_ascii_case(name)),
        Some(_) => Err(error(
            400,
            "ErrorInvalidUrlQueryFilter",
            "The query filter contains one or more invalid nodes.",
        )),
    }
}

impl Shared {
    /// MS "List contactFolders": the folders under the default Contacts
    /// folder, with `$filter=displayName eq '...'`.
    fn list_contact_folders(&self, m: &Mailbox, req: &Request) -> Reply {
        let filter = match req.q("$filter").map(parse_filter).transpose() {
            Ok(f) => f,
            Err(r) => return r,
        };
        let mut out = Vec::new();
        for f in &m.contact_folders[1..] {
            match named(&filter, "displayName", &f.name) {
                Ok(true) => out.push(contact_folder_json(f, &m.contact_folders[0].id)),
                Ok(false) => {}
                Err(r) => return r,
            }
        }
        self.page(req, out)
    }

    /// MS "Create ContactFolder" (user-post-contactfolders): 201 with the
    /// folder. A second folder of the same name is refused as Exchange does
    /// (MS "Microsoft Graph error responses and resource types": 409
    /// Conflict; the code ErrorFolderExists is Exchange's).
    fn create_contact_folder(&self, m: &mut Mailbox, req: &Request) -> Reply {
        let body = match req.json_body() {
            Ok(b) => b,
            Err(r) => return r,
        };
        for k in body.keys() {
            if !["displayName", "parentFolderId", "@odata.type"].contains(&k.as_str()) {
                return unknown_property(k, "contactFolder");
            }
        }
        let Some(name) = body.get("displayName").and_then(Value::as_str) else {
            return bad("The displayName of a contact folder is required.");
        };
        if m.contact_folders[1..]
            .iter()
            .any(|f| f.name.eq_ignore_ascii_case(name))
        {
            return error(
                409,
                "ErrorFolderExists",
                "A folder with the specified name already exists.",
            );
        }
        let f = Folder {
            id: self.new_id("CF"),
            name: name.to_string(),
        };
        let out = contact_folder_json(&f, &m.contact_folders[0].id);
        m.contact_folders.push(f);
        Reply::json(201, out)
    }

    /// MS "List contacts" / MS "List events" with MS "Get
    /// singleValueLegacyExtendedProperty" filters: the items of one folder
    /// or calendar, those with the extended property when filtered.
    fn list_items(&self, m: &Mailbox, kind: Kind, folder: &str, req: &Request) -> Reply {
        let filter = match req.q("$filter").map(parse_filter).transpose() {
            Ok(f) => f,
            Err(r) => return r,
        };
        let items = match kind {
            Kind::Contact => &m.contacts,
            Kind::Event => &m.events,
        };
        let mut out = Vec::new();
        for item in items.iter().filter(|i| i.folder == folder) {
            let keep = match &filter {
                None => true,
                // Case: the Name part of the id matches exactly, the value
                // without case ("Get singleValueLegacyExtendedProperty").
                Some(Filter::Property(id, value)) => item
                    .props
                    .iter()
                    .any(|(i, v)| same_property_id(i, id) && v.eq_ignore_ascii_case(value)),
                Some(Filter::Eq(p, v)) => match item.json.get(p.as_str()) {
                    Some(Value::String(s)) => s.eq_ignore_ascii_case(v),
                    Some(_) => false,
                    None if CONTACT_PROPS.contains(&p.as_str())
                        || EVENT_PROPS.contains(&p.as_str()) =>
                    {
                        false
                    }
                    None => {
                        return error(
                            400,
                            "BadRequest",
                            &format!("Could not find a property named '{p}'."),
                        );
                    }
                },
            };
            if keep {
                out.push(match kind {
                    Kind::Contact => with_expanded(item, req),
                    Kind::Event => present(with_expanded(item, req), req.prefer_zone().as_deref()),
                });
            }
        }
        self.page(req, out)
    }

    /// MS "Create contact" (contactfolder-post-contacts, user-post-contacts):
    /// 201 with the contact; MS "Create single-value extended property":
    /// "The response does not include any newly created extended
    /// properties" (they are stored all the same).
    fn create_contact(&self, m: &mut Mailbox, folder: &str, req: &Request) -> Reply {
        let body = match req.json_body() {
            Ok(b) => b,
            Err(r) => return r,
        };
        if let Err(r) = check_contact(&body) {
            return r;
        }
        let props = match body.get("singleValueExtendedProperties") {
            Some(v) => match read_properties(v) {
                Ok(p) => p,
                Err(r) => return r,
            },
            None => Vec::new(),
        };
        let id = self.new_id("CO");
        let mut json = stored(body);
        let stamp = now_stamp();
        json.insert("id".into(), json!(id));
        json.insert("parentFolderId".into(), json!(folder));
        json.insert("createdDateTime".into(), json!(stamp));
        json.insert("lastModifiedDateTime".into(), json!(stamp));
        json.insert("changeKey".into(), json!(self.new_id("CK")));
        let out = Value::Object(json.clone());
        m.contacts.push(Item {
            id,
            folder: folder.to_string(),
            json,
            props,
            overrides: BTreeMap::new(),
        });
        Reply::json(201, out)
    }

    /// MS "Get contact", "Update contact" (200 with the contact; absent
    /// items are 404 ErrorItemNotFound), "Delete contact" (204).
    fn contact(&self, m: &mut Mailbox, id: &str, req: &Request) -> Reply {
        let Some(pos) = m.contacts.iter().position(|c| c.id == id) else {
            return not_found();
        };
        match req.method.as_str() {
            "GET" => Reply::json(200, select(with_expanded(&m.contacts[pos], req), req)),
            "PATCH" => {
                let body = match req.json_body() {
                    Ok(b) => b,
                    Err(r) => return r,
                };
                if let Err(r) = check_contact(&body) {
                    return r;
                }
                let props = match body.get("singleValueExtendedProperties") {
                    Some(v) => match read_properties(v) {
                        Ok(p) => p,
                        Err(r) => return r,
                    },
                    None => Vec::new(),
                };
                let mut merged = m.contacts[pos].json.clone();
                merged.extend(stored(body));
                // The limits hold for the contact as it ends up.
                if let Err(r) = check_contact(&merged) {
                    return r;
                }
                merged.insert("lastModifiedDateTime".into(), json!(now_stamp()));
                merged.insert("changeKey".into(), json!(self.new_id("CK")));
                let c = &mut m.contacts[pos];
                c.json = merged;
                merge_properties(&mut c.props, props);
                Reply::json(200, Value::Object(c.json.clone()))
            }
            "DELETE" => {
                let c = m.contacts.remove(pos);
                m.photos.remove(&c.id);
                Reply::empty(204)
            }
            _ => not_allowed(),
        }
    }

    /// MS "Update profilephoto": PUT (or PATCH) the binary image with
    /// `Content-Type: image/jpeg` (the only type the page lists), under
    /// 4 MB, 200 OK; MS "Get profilePhoto": GET .../$value the bytes.
    fn photo(&self, m: &mut Mailbox, id: &str, req: &Request) -> Reply {
        if !m.contacts.iter().any(|c| c.id == id) {
            return not_found();
        }
        match req.method.as_str() {
            "GET" => match m.photos.get(id) {
                Some(bytes) => Reply {
                    status: 200,
                    headers: Vec::new(),
                    payload: Payload::Bytes("image/jpeg".into(), bytes.clone()),
                    drop: false,
                },
                None => error(404, "ErrorItemNotFound", "The photo wasn't found."),
            },
            "PUT" | "PATCH" => {
                let kind = req
                    .header("content-type")
                    .map(|t| {
                        t.split(';')
                            .next()
                            .unwrap_or("")
                            .trim()
                            .to_ascii_lowercase()
                    })
                    .unwrap_or_default();
                if kind != "image/jpeg" {
                    return error(
                        400,
                        "ErrorInvalidImage",
                        &format!(
                            "The photo content type '{kind}' is not supported; send image/jpeg."
                        ),
                    );
                }
                if req.body.len() >= PHOTO_MAX {
                    return error(
                        413,
                        "RequestEntityTooLarge",
                        "The request is larger than 4 MB.",
                    );
                }
                if req.body.is_empty() {
                    return bad("The photo is empty.");
                }
                m.photos.insert(id.to_string(), req.body.clone());
                Reply::empty(200)
            }
            _ => not_allowed(),
        }
    }
}

/// What a create or update stores: the body without its read-only
/// properties and extended properties (kept beside the JSON).
fn stored(mut body: Map<String, Value>) -> Map<String, Value> {
    body.remove("singleValueExtendedProperties");
    body.remove("multiValueExtendedProperties");
    for k in READ_ONLY {
        body.remove(*k);
    }
    body
}

/// The item's JSON with `$expand=singleValueExtendedProperties($filter=id
/// eq '...')` honoured (MS "Get singleValueLegacyExtendedProperty").
fn with_expanded(item: &Item, req: &Request) -> Value {
    let mut json = item.json.clone();
    if let Some(expand) = req.q("$expand") {
        let expand = expand.trim();
        let name = "singleValueExtendedProperties";
        if expand.len() >= name.len() && expand[..name.len()].eq_ignore_ascii_case(name) {
            let inner = expand[name.len()..].trim();
            let wanted = inner
                .strip_prefix('(')
                .and_then(|i| i.strip_suffix(')'))
                .and_then(|i| {
                    let i = i.trim();
                    i.get(..8).filter(|p| p.eq_ignore_ascii_case("$filter="))?;
                    match parse_filter(&i[8..]) {
                        Ok(Filter::Eq(p, v)) if p.eq_ignore_ascii_case("id") => Some(v),
                        _ => None,
                    }
                });
            let props: Vec<Value> = item
                .props
                .iter()
                .filter(|(i, _)| wanted.as_deref().is_none_or(|w| same_property_id(i, w)))
                .map(|(i, v)| json!({"id": i, "value": v}))
                .collect();
            json.insert(name.into(), Value::Array(props));
        }
    }
    Value::Object(json)
}

/// MS "contact resource type" and the limits reported in GitHub
/// microsoft-graph-docs-contrib#560 ("Personal contacts: property limits").
fn check_contact(body: &Map<String, Value>) -> Result<(), Reply> {
    for (k, v) in body {
        if k.starts_with("@odata") {
            continue;
        }
        if !CONTACT_PROPS.contains(&k.as_str()) {
            return Err(unknown_property(k, "contact"));
        }
        if v.is_null() {
            continue;
        }
        match k.as_str() {
            "emailAddresses" => {
                let Value::Array(list) = v else {
                    return Err(bad_literal(v, "Collection(microsoft.graph.emailAddress)"));
                };
                for e in list {
                    let Value::Object(o) = e else {
                        return Err(bad_literal(e, "microsoft.graph.emailAddress"));
                    };
                    if let Some(x) = o
                        .keys()
                        .find(|x| !["name", "address"].contains(&x.as_str()))
                    {
                        return Err(unknown_property(x, "emailAddress"));
                    }
                }
                // #560: "The multi value property EmailAddresses has 4
                // entries, that exceeds the max allowed value of 3".
                if list.len() > 3 {
                    return Err(error(
                        400,
                        "ErrorInvalidRequest",
                        &format!(
                            "The multi value property EmailAddresses has {} entries, that exceeds the max allowed value of 3",
                            list.len()
                        ),
                    ));
                }
            }
            k if CONTACT_STRING_LISTS.contains(&k) => {
                let Value::Array(list) = v else {
                    return Err(bad_literal(v, "Collection(Edm.String)"));
                };
                if let Some(x) = list.iter().find(|x| !x.is_string()) {
                    return Err(bad_literal(x, "Edm.String"));
                }
                // #560: "The multi value property BusinessPhones has 3
                // entries, that exceeds the max allowed value of 2"; home
                // phones are taken to be limited alike (not reported).
                let limit = match k {
                    "businessPhones" => Some("BusinessPhones"),
                    "homePhones" => Some("HomePhones"),
                    _ => None,
                };
                if let Some(name) = limit
                    && list.len() > 2
                {
                    return Err(error(
                        400,
                        "ErrorInvalidRequest",
                        &format!(
                            "The multi value property {name} has {} entries, that exceeds the max allowed value of 2",
                            list.len()
                        ),
                    ));
                }
            }
            "homeAddress" | "businessAddress" | "otherAddress" => {
                // MS "physicalAddress resource type".
                let Value::Object(o) = v else {
                    return Err(bad_literal(v, "microsoft.graph.physicalAddress"));
                };
                let fields = ["street", "city", "state", "countryOrRegion", "postalCode"];
                if let Some(x) = o
                    .keys()
                    .find(|x| !fields.contains(&x.as_str()) && !x.starts_with("@odata"))
                {
                    return Err(unknown_property(x, "physicalAddress"));
                }
                if let Some(x) = o.values().find(|x| !x.is_string() && !x.is_null()) {
                    return Err(bad_literal(x, "Edm.String"));
                }
            }
            "birthday" => {
                // "birthday: DateTimeOffset ... ISO 8601 format and is
                // always in UTC time", e.g. 2014-01-01T00:00:00Z.
                let ok = v
                    .as_str()
                    .is_some_and(|s| DateTime::parse_from_rfc3339(s).is_ok());
                if !ok {
                    return Err(bad_literal(v, "Edm.DateTimeOffset"));
                }
            }
            "singleValueExtendedProperties"
            | "multiValueExtendedProperties"
            | "extensions"
            | "photo" => {}
            _ => typed(v.is_string(), v, "Edm.String")?,
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Time zones and dateTimeTimeZone

/// MS "dateTimeTimeZone resource type": "any of the time zones currently
/// supported by Windows, as well as the other time zones supported by the
/// calendar API" (the Additional time zones list).
fn zone(name: &str) -> Option<Tz> {
    let windows = name == "UTC" || name.ends_with(" Standard Time");
    if !windows && !IANA_ZONES.contains(&name) {
        return None;
    }
    Tz::from_str(name).ok()
}

fn zone_refused(name: &str) -> Reply {
    // The error Outlook gives for a zone it does not know (MS
    // "dateTimeTimeZone resource type": create or update may refuse zones).
    error(
        400,
        "TimeZoneNotSupportedException",
        &format!(
            "A valid TimeZone value must be specified. The following TimeZone value is not supported: '{name}'."
        ),
    )
}

/// A local time in `tz` as UTC: the earlier of two in a repeated hour, an
/// hour later in a skipped one.
fn to_utc(tz: &Tz, local: NaiveDateTime) -> NaiveDateTime {
    match tz.from_local_datetime(&local).earliest() {
        Some(t) => t.naive_utc(),
        None => tz
            .from_local_datetime(&(local + chrono::Duration::hours(1)))
            .earliest()
            .map(|t| t.naive_utc())
            .unwrap_or(local),
    }
}

/// MS "dateTimeTimeZone resource type": dateTime is "{date}T{time}", e.g.
/// 2017-08-29T04:00:00.0000000; a `Z` is taken only with timeZone UTC.
fn parse_local(s: &str, zone_name: &str) -> Option<NaiveDateTime> {
    let s = match s.strip_suffix('Z') {
        Some(rest) if zone_name == "UTC" => rest,
        Some(_) => return None,
        None => s,
    };
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").ok()
}

/// A dateTimeTimeZone value: (local time, zone name, zone).
fn date_time_zone(v: &Value, what: &str) -> Result<(NaiveDateTime, String, Tz), Reply> {
    let Value::Object(o) = v else {
        return Err(bad_literal(v, "microsoft.graph.dateTimeTimeZone"));
    };
    if let Some(k) = o
        .keys()
        .find(|k| !["dateTime", "timeZone"].contains(&k.as_str()) && !k.starts_with("@odata"))
    {
        return Err(unknown_property(k, "dateTimeTimeZone"));
    }
    let name = o.get("timeZone").and_then(Value::as_str).unwrap_or("");
    let Some(tz) = zone(name) else {
        return Err(zone_refused(name));
    };
    let Some(local) = o
        .get("dateTime")
        .and_then(Value::as_str)
        .and_then(|s| parse_local(s, name))
    else {
        return Err(bad(&format!(
            "{what}: dateTime must be a date and time like 2017-08-29T04:00:00.0000000."
        )));
    };
    Ok((local, name.to_string(), tz))
}

fn graph_time(t: NaiveDateTime) -> String {
    format!("{}.0000000", t.format("%Y-%m-%dT%H:%M:%S"))
}

/// MS "event resource type" / "List instances": start and end come back
/// in UTC unless `Prefer: outlook.timezone` names a zone (MS "Create
/// event", example 1). All-day events keep their midnights (they float).
/// To Do's dateTimeTimeZone fields alike (MS "todoTask resource type": "By
/// default, it is in UTC. You can provide a custom time zone in the request
/// header"; 3P RogerSelwyn/MS365-ToDo#29 saw a UTC-shifted dueDateTime).
fn present(v: Value, prefer: Option<&str>) -> Value {
    let Value::Object(mut o) = v else { return v };
    let (target_name, target) = match prefer.and_then(|p| zone(p).map(|z| (p.to_string(), z))) {
        Some((n, z)) => (n, z),
        None => ("UTC".to_string(), Tz::from_str("UTC").expect("UTC")),
    };
    let all_day = o.get("isAllDay") == Some(&Value::Bool(true));
    for key in ["start", "end"].iter().chain(TASK_TIMES) {
        let Some(Value::Object(dt)) = o.get(*key) else {
            continue;
        };
        let name = dt.get("timeZone").and_then(Value::as_str).unwrap_or("UTC");
        let Some(tz) = zone(name) else { continue };
        let Some(local) = dt
            .get("dateTime")
            .and_then(Value::as_str)
            .and_then(|s| parse_local(s, name))
        else {
            continue;
        };
        let shown = if all_day {
            local
        } else {
            let utc = to_utc(&tz, local);
            target.from_utc_datetime(&utc).naive_local()
        };
        o.insert(
            (*key).to_string(),
            json!({"dateTime": graph_time(shown), "timeZone": target_name}),
        );
    }
    Value::Object(o)
}

// ---------------------------------------------------------------------------
// Events

/// A value of the wrong JSON type, as OData's reader refuses it.
fn typed(ok: bool, v: &Value, type_name: &str) -> Result<(), Reply> {
    if ok {
        Ok(())
    } else {
        Err(bad_literal(v, type_name))
    }
}

fn check_enum(v: &Value, allowed: &[&str], type_name: &str) -> Result<(), Reply> {
    match v.as_str() {
        Some(s) if allowed.contains(&s) => Ok(()),
        _ => Err(bad_literal(v, type_name)),
    }
}

/// MS "event resource type": what a create or update may carry, checked
/// property by property (the whole event is checked by [`check_event`]).
fn check_event_fields(body: &Map<String, Value>) -> Result<(), Reply> {
    for (k, v) in body {
        if k.starts_with("@odata") {
            continue;
        }
        if !EVENT_PROPS.contains(&k.as_str()) {
            return Err(unknown_property(k, "event"));
        }
        if v.is_null() {
            continue;
        }
        match k.as_str() {
            "importance" => {
                check_enum(v, &["low", "normal", "high"], "microsoft.graph.importance")?
            }
            "sensitivity" => check_enum(
                v,
                &["normal", "personal", "private", "confidential"],
                "microsoft.graph.sensitivity",
            )?,
            "showAs" => check_enum(
                v,
                &[
                    "free",
                    "tentative",
                    "busy",
                    "oof",
                    "workingElsewhere",
                    "unknown",
                ],
                "microsoft.graph.freeBusyStatus",
            )?,
            "body" => check_body(v)?,
            "isAllDay"
            | "isReminderOn"
            | "responseRequested"
            | "allowNewTimeProposals"
            | "isOnlineMeeting"
            | "hideAttendees" => typed(v.is_boolean(), v, "Edm.Boolean")?,
            "reminderMinutesBeforeStart" => typed(v.is_i64(), v, "Edm.Int32")?,
            "subject" | "transactionId" => typed(v.is_string(), v, "Edm.String")?,
            "categories" => typed(
                v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
                v,
                "Collection(Edm.String)",
            )?,
            "location" => typed(v.is_object(), v, "microsoft.graph.location")?,
            "attendees" => {
                // MS "attendee resource type": emailAddress and type
                // (required, optional, resource).
                let Value::Array(list) = v else {
                    return Err(bad_literal(v, "Collection(microsoft.graph.attendee)"));
                };
                for a in list {
                    if a["emailAddress"]["address"]
                        .as_str()
                        .is_none_or(str::is_empty)
                    {
                        return Err(bad("An attendee needs an emailAddress with an address."));
                    }
                    if let Some(t) = a.get("type").filter(|t| !t.is_null()) {
                        check_enum(
                            t,
                            &["required", "optional", "resource"],
                            "microsoft.graph.attendeeType",
                        )?;
                    }
                }
            }
            "singleValueExtendedProperties" => {
                read_properties(v)?;
            }
            _ => {}
        }
    }
    Ok(())
}

/// MS "itemBody resource type": contentType text or html.
fn check_body(v: &Value) -> Result<(), Reply> {
    let Value::Object(o) = v else {
        return Err(bad_literal(v, "microsoft.graph.itemBody"));
    };
    if let Some(k) = o
        .keys()
        .find(|k| !["content", "contentType"].contains(&k.as_str()) && !k.starts_with("@odata"))
    {
        return Err(unknown_property(k, "itemBody"));
    }
    if let Some(t) = o.get("contentType").filter(|t| !t.is_null()) {
        check_enum(t, &["text", "html"], "microsoft.graph.bodyType")?;
    }
    Ok(())
}

/// MS "event resource type": start and end (dateTimeTimeZone, see
/// [`date_time_zone`]); the end not before the start (Exchange's
/// ErrorCalendarEndDateIsEarlierThanStartDate, MS EWS "ResponseCode");
/// "If isAllDay is set to true, regardless of whether it's a single-day or
/// multi-day event, start and end time must be set to midnight and be in
/// the same time zone"; the recurrence checked by [`check_recurrence`].
fn check_event(ev: &Map<String, Value>) -> Result<(), Reply> {
    let (Some(start), Some(end)) = (
        ev.get("start").filter(|v| !v.is_null()),
        ev.get("end").filter(|v| !v.is_null()),
    ) else {
        return Err(bad("An event needs both start and end."));
    };
    let (start_local, start_zone, start_tz) = date_time_zone(start, "start")?;
    let (end_local, end_zone, end_tz) = date_time_zone(end, "end")?;
    if to_utc(&end_tz, end_local) < to_utc(&start_tz, start_local) {
        return Err(error(
            400,
            "ErrorCalendarEndDateIsEarlierThanStartDate",
            "The end date occurs before the start date.",
        ));
    }
    if ev.get("isAllDay") == Some(&Value::Bool(true)) {
        let midnight = |t: NaiveDateTime| t.time() == chrono::NaiveTime::MIN;
        if !midnight(start_local) || !midnight(end_local) || start_zone != end_zone {
            return Err(bad(
                "If isAllDay is set to true, start and end time must be set to midnight and be in the same time zone.",
            ));
        }
    }
    if let Some(r) = ev.get("recurrence").filter(|r| !r.is_null()) {
        check_recurrence(r, Some(start_local.date()))?;
    }
    Ok(())
}

const DAYS: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];
const INDEXES: [&str; 5] = ["first", "second", "third", "fourth", "last"];
const PATTERNS: [&str; 6] = [
    "daily",
    "weekly",
    "absoluteMonthly",
    "relativeMonthly",
    "absoluteYearly",
    "relativeYearly",
];

/// MS "patternedRecurrence resource type", MS "recurrencePattern resource
/// type" ("Include only the properties that you need ... Any property that
/// you include that does not have a supported value would result in an
/// error"; the table of required properties per type) and MS
/// "recurrenceRange resource type" (startDate "must correspond to the date
/// value of the start property"; endDate for endDate, numberOfOccurrences
/// > 0 for numbered).
fn check_recurrence(r: &Value, start_date: Option<NaiveDate>) -> Result<(), Reply> {
    let Value::Object(o) = r else {
        return Err(bad_literal(r, "microsoft.graph.patternedRecurrence"));
    };
    if let Some(k) = o
        .keys()
        .find(|k| !["pattern", "range"].contains(&k.as_str()) && !k.starts_with("@odata"))
    {
        return Err(unknown_property(k, "patternedRecurrence"));
    }
    let Some(Value::Object(p)) = o.get("pattern") else {
        return Err(bad("A recurrence needs a pattern."));
    };
    let Some(Value::Object(range)) = o.get("range") else {
        return Err(bad("A recurrence needs a range."));
    };
    let pattern_keys = [
        "type",
        "interval",
        "daysOfWeek",
        "firstDayOfWeek",
        "index",
        "month",
        "dayOfMonth",
    ];
    if let Some(k) = p
        .keys()
        .find(|k| !pattern_keys.contains(&k.as_str()) && !k.starts_with("@odata"))
    {
        return Err(unknown_property(k, "recurrencePattern"));
    }
    let ty = p.get("type").cloned().unwrap_or(Value::Null);
    check_enum(&ty, &PATTERNS, "microsoft.graph.recurrencePatternType")?;
    let ty = ty.as_str().unwrap_or("");
    match p.get("interval").and_then(Value::as_i64) {
        Some(n) if (1..=999).contains(&n) => {}
        _ => {
            return Err(bad(
                "The recurrence pattern's interval must be a number from 1 to 999.",
            ));
        }
    }
    let days: Vec<&str> = match p.get("daysOfWeek") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => {
            let mut out = Vec::new();
            for d in list {
                check_enum(d, &DAYS, "microsoft.graph.dayOfWeek")?;
                out.push(d.as_str().unwrap_or(""));
            }
            out
        }
        Some(v) => return Err(bad_literal(v, "Collection(microsoft.graph.dayOfWeek)")),
    };
    if let Some(v) = p.get("firstDayOfWeek").filter(|v| !v.is_null()) {
        check_enum(v, &DAYS, "microsoft.graph.dayOfWeek")?;
    }
    if let Some(v) = p.get("index").filter(|v| !v.is_null()) {
        check_enum(v, &INDEXES, "microsoft.graph.weekIndex")?;
    }
    let int = |k: &str| -> Result<Option<i64>, Reply> {
        match p.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| bad_literal(v, "Edm.Int32")),
        }
    };
    let month = int("month")?;
    let day_of_month = int("dayOfMonth")?;
    // 0 is what Graph itself sends back for an unused month or day.
    if month.is_some_and(|m| !(0..=12).contains(&m)) {
        return Err(bad("The recurrence pattern's month must be from 1 to 12."));
    }
    if day_of_month.is_some_and(|d| !(0..=31).contains(&d)) {
        return Err(bad(
            "The recurrence pattern's dayOfMonth must be from 1 to 31.",
        ));
    }
    let need = |ok: bool, what: &str| -> Result<(), Reply> {
        if ok {
            Ok(())
        } else {
            Err(bad(&format!("A {ty} recurrence pattern requires {what}.")))
        }
    };
    let has_month = month.is_some_and(|m| m >= 1);
    let has_day = day_of_month.is_some_and(|d| d >= 1);
    match ty {
        "weekly" => {
            need(!days.is_empty(), "daysOfWeek")?;
            need(
                p.get("firstDayOfWeek").is_some_and(|v| !v.is_null()),
                "firstDayOfWeek",
            )?;
        }
        "absoluteMonthly" => need(has_day, "dayOfMonth")?,
        "relativeMonthly" => need(!days.is_empty(), "daysOfWeek")?,
        "absoluteYearly" => {
            need(has_day, "dayOfMonth")?;
            need(has_month, "month")?;
        }
        "relativeYearly" => {
            need(!days.is_empty(), "daysOfWeek")?;
            need(has_month, "month")?;
        }
        _ => {}
    }
    let range_keys = [
        "type",
        "startDate",
        "endDate",
        "numberOfOccurrences",
        "recurrenceTimeZone",
    ];
    if let Some(k) = range
        .keys()
        .find(|k| !range_keys.contains(&k.as_str()) && !k.starts_with("@odata"))
    {
        return Err(unknown_property(k, "recurrenceRange"));
    }
    let rty = range.get("type").cloned().unwrap_or(Value::Null);
    check_enum(
        &rty,
        &["endDate", "noEnd", "numbered"],
        "microsoft.graph.recurrenceRangeType",
    )?;
    let date = |k: &str| -> Result<Option<NaiveDate>, Reply> {
        match range.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_str()
                .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
                .map(Some)
                .ok_or_else(|| bad_literal(v, "Edm.Date")),
        }
    };
    let Some(first) = date("startDate")? else {
        return Err(bad("The recurrence range requires startDate."));
    };
    if let Some(s) = start_date
        && s != first
    {
        return Err(bad(&format!(
            "The recurrence range's startDate {first} must be the date of the event's start ({s})."
        )));
    }
    match rty.as_str() {
        Some("endDate") => match date("endDate")? {
            Some(e) if e >= first => {}
            Some(_) => {
                return Err(bad(
                    "The recurrence range's endDate is before its startDate.",
                ));
            }
            None => return Err(bad("An endDate recurrence range requires endDate.")),
        },
        Some("numbered") => match range.get("numberOfOccurrences").and_then(Value::as_i64) {
            Some(n) if n > 0 => {}
            _ => {
                return Err(bad(
                    "A numbered recurrence range requires numberOfOccurrences greater than 0.",
                ));
            }
        },
        _ => {}
    }
    if let Some(z) = range.get("recurrenceTimeZone").and_then(Value::as_str)
        && zone(z).is_none()
    {
        return Err(zone_refused(z));
    }
    Ok(())
}

fn weekday(name: &str) -> Weekday {
    match name {
        "sunday" => Weekday::Sun,
        "monday" => Weekday::Mon,
        "tuesday" => Weekday::Tue,
        "wednesday" => Weekday::Wed,
        "thursday" => Weekday::Thu,
        "friday" => Weekday::Fri,
        _ => Weekday::Sat,
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    let first = NaiveDate::from_ymd_opt(year, month, 1).expect("month");
    let next = first + Months::new(1);
    (next - first).num_days() as u32
}

/// MS "recurrencePattern resource type" (index): "on which instance of the
/// allowed days specified in daysOfWeek the event occurs, counted from the
/// first instance in the month"; with several days, "the first day that
/// satisfies the pattern".
fn nth_in_month(year: i32, month: u32, days: &[Weekday], index: &str) -> Option<NaiveDate> {
    let all: Vec<NaiveDate> = (1..=days_in_month(year, month))
        .filter_map(|d| NaiveDate::from_ymd_opt(year, month, d))
        .filter(|d| days.contains(&d.weekday()))
        .collect();
    match index {
        "second" => all.get(1).copied(),
        "third" => all.get(2).copied(),
        "fourth" => all.get(3).copied(),
        "last" => all.last().copied(),
        _ => all.first().copied(),
    }
}

/// The day `day` of a month, or its last day when shorter (the pages do not
/// say; Outlook puts "day 31" on the last day of shorter months).
fn day_clamped(year: i32, month: u32, day: u32) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(year, month, day.min(days_in_month(year, month)))
}

/// The local dates of a series' occurrences from its start through `last`
/// (MS "recurrencePattern resource type" for the six pattern types,
/// interval, daysOfWeek, firstDayOfWeek, index, month, dayOfMonth; MS
/// "recurrenceRange resource type" for endDate, noEnd and numbered).
/// Capped at 100,000 periods.
fn series_dates(recurrence: &Value, start: NaiveDate, last: NaiveDate) -> Vec<NaiveDate> {
    let p = &recurrence["pattern"];
    let r = &recurrence["range"];
    let ty = p["type"].as_str().unwrap_or("daily");
    let interval = p["interval"].as_i64().unwrap_or(1).max(1) as u64;
    let days: Vec<Weekday> = p["daysOfWeek"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(weekday)
        .collect();
    let first_day = weekday(p["firstDayOfWeek"].as_str().unwrap_or("sunday"));
    let index = p["index"].as_str().unwrap_or("first");
    let month = p["month"].as_u64().unwrap_or(0) as u32;
    let day_of_month = p["dayOfMonth"].as_u64().unwrap_or(0) as u32;
    let range_start = r["startDate"]
        .as_str()
        .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
        .unwrap_or(start)
        .max(start);
    let end_date = match r["type"].as_str() {
        Some("endDate") => r["endDate"]
            .as_str()
            .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()),
        _ => None,
    };
    let count = match r["type"].as_str() {
        Some("numbered") => r["numberOfOccurrences"].as_u64(),
        _ => None,
    };
    let last = end_date.map_or(last, |e| e.min(last));
    let week_start = start
        - Days::new(
            (7 + start.weekday().num_days_from_sunday() - first_day.num_days_from_sunday()) as u64
                % 7,
        );
    let month_start = NaiveDate::from_ymd_opt(start.year(), start.month(), 1).expect("month");
    let mut out = Vec::new();
    for k in 0..100_000u64 {
        let (period_start, mut candidates): (NaiveDate, Vec<NaiveDate>) = match ty {
            "daily" => {
                let d = start + Days::new(k * interval);
                (d, vec![d])
            }
            "weekly" => {
                let ws = week_start + Days::new(7 * interval * k);
                let c = (0..7)
                    .map(|i| ws + Days::new(i))
                    .filter(|d| days.contains(&d.weekday()))
                    .collect();
                (ws, c)
            }
            "absoluteMonthly" | "relativeMonthly" => {
                let Some(ms) = month_start.checked_add_months(Months::new((k * interval) as u32))
                else {
                    break;
                };
                let d = if ty == "absoluteMonthly" {
                    day_clamped(ms.year(), ms.month(), day_of_month)
                } else {
                    nth_in_month(ms.year(), ms.month(), &days, index)
                };
                (ms, d.into_iter().collect())
            }
            _ => {
                let year = start.year() + (k * interval) as i32;
                let Some(ys) = NaiveDate::from_ymd_opt(year, 1, 1) else {
                    break;
                };
                let m = month.clamp(1, 12);
                let d = if ty == "absoluteYearly" {
                    day_clamped(year, m, day_of_month)
                } else {
                    nth_in_month(year, m, &days, index)
                };
                (ys, d.into_iter().collect())
            }
        };
        if period_start > last {
            break;
        }
        candidates.sort();
        for d in candidates {
            if d < range_start {
                continue;
            }
            if d > last {
                return out;
            }
            out.push(d);
            if count.is_some_and(|n| out.len() as u64 >= n) {
                return out;
            }
        }
    }
    out
}

/// An instance id: stable, from the master's id and the original start
/// (MS "event resource type": an occurrence has its own id).
fn instance_id(master: &str, original: NaiveDateTime) -> String {
    format!(
        "{}_OC{}=",
        master.trim_end_matches('='),
        original.format("%Y%m%dT%H%M%S")
    )
}

fn parse_instance_id(id: &str) -> Option<(String, NaiveDateTime)> {
    let core = id.strip_suffix('=')?;
    let (master, stamp) = core.rsplit_once("_OC")?;
    let t = NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%S").ok()?;
    Some((format!("{master}="), t))
}

/// A series' occurrences (original start in UTC, local start date) through
/// `last_utc` plus a margin.
fn occurrences(master: &Item, through: NaiveDateTime) -> Vec<(NaiveDateTime, NaiveDate)> {
    let j = &master.json;
    let Some(rec) = j.get("recurrence").filter(|r| !r.is_null()) else {
        return Vec::new();
    };
    let Ok((start_local, _, tz)) = date_time_zone(&j["start"], "start") else {
        return Vec::new();
    };
    let last = (through + chrono::Duration::days(2)).date();
    series_dates(rec, start_local.date(), last)
        .into_iter()
        .map(|d| (to_utc(&tz, d.and_time(start_local.time())), d))
        .collect()
}

/// One occurrence as an event: the master's fields, its own start and end
/// (the master's wall-clock times on that day), then any changes patched
/// onto it (MS "event resource type": type occurrence or exception,
/// originalStart, seriesMasterId).
fn instance_json(master: &Item, original: NaiveDateTime, date: NaiveDate) -> Option<Value> {
    let j = &master.json;
    let (start_local, start_zone, _) = date_time_zone(&j["start"], "start").ok()?;
    let (end_local, end_zone, _) = date_time_zone(&j["end"], "end").ok()?;
    let shift = date - start_local.date();
    let mut o = j.clone();
    o.remove("transactionId");
    o.insert("recurrence".into(), Value::Null);
    o.insert("id".into(), json!(instance_id(&master.id, original)));
    o.insert("seriesMasterId".into(), json!(master.id));
    o.insert("type".into(), json!("occurrence"));
    o.insert(
        "originalStart".into(),
        json!(
            original
                .and_utc()
                .to_rfc3339_opts(SecondsFormat::Secs, true)
        ),
    );
    o.insert(
        "iCalUId".into(),
        json!(format!(
            "{}{}",
            j["iCalUId"].as_str().unwrap_or(""),
            original.format("%Y%m%dT%H%M%S")
        )),
    );
    o.insert(
        "start".into(),
        json!({"dateTime": graph_time(start_local + shift), "timeZone": start_zone}),
    );
    o.insert(
        "end".into(),
        json!({"dateTime": graph_time(end_local + shift), "timeZone": end_zone}),
    );
    match master.overrides.get(&original) {
        Some(Override::Cancelled) => return None,
        Some(Override::Changed(fields)) => {
            o.extend(fields.clone());
            o.insert("type".into(), json!("exception"));
        }
        None => {}
    }
    Some(Value::Object(o))
}

/// The start of an instance, in UTC.
fn start_utc(v: &Value) -> Option<NaiveDateTime> {
    let (local, _, tz) = date_time_zone(&v["start"], "start").ok()?;
    Some(to_utc(&tz, local))
}

/// MS "List instances": "the occurrences and exceptions of the event in
/// the specified time range" (those starting in it here), without the
/// occurrences cancelled from the series (MS "event resource type",
/// instances), ordered by start.
fn instances_of(master: &Item, from: NaiveDateTime, to: NaiveDateTime) -> Vec<Value> {
    // Exceptions may have moved from far away: look through the latest.
    let through = master
        .overrides
        .keys()
        .next_back()
        .map_or(to, |k| (*k).max(to));
    let mut out: Vec<(NaiveDateTime, Value)> = occurrences(master, through)
        .into_iter()
        .filter_map(|(orig, date)| instance_json(master, orig, date))
        .filter_map(|v| {
            let s = start_utc(&v)?;
            (from <= s && s < to).then_some((s, v))
        })
        .collect();
    out.sort_by_key(|(s, _)| *s);
    out.into_iter().map(|(_, v)| v).collect()
}

/// Finds an instance id: (index of its master, original start).
fn find_instance(m: &Mailbox, id: &str) -> Option<(usize, NaiveDateTime, NaiveDate)> {
    let (master_id, original) = parse_instance_id(id)?;
    let pos = m.events.iter().position(|e| e.id == master_id)?;
    let (_, date) = occurrences(&m.events[pos], original)
        .into_iter()
        .find(|(o, _)| *o == original)?;
    match m.events[pos].overrides.get(&original) {
        Some(Override::Cancelled) => None,
        _ => Some((pos, original, date)),
    }
}

fn record_invitations(m: &mut Mailbox, body: &Map<String, Value>) {
    // MS "Create event": "When you create an event that includes attendees,
    // the server sends invitations to all attendees ... can't be
    // configured"; MS "Update event" sends updates alike.
    for a in body
        .get("attendees")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(address) = a["emailAddress"]["address"].as_str() {
            m.invitations.push(address.to_string());
        }
    }
}

impl Shared {
    /// MS "List calendars" with `$filter=name eq '...'`.
    fn list_calendars(&self, m: &Mailbox, req: &Request) -> Reply {
        let filter = match req.q("$filter").map(parse_filter).transpose() {
            Ok(f) => f,
            Err(r) => return r,
        };
        let mut out = Vec::new();
        for (i, c) in m.calendars.iter().enumerate() {
            match named(&filter, "name", &c.name) {
                Ok(true) => out.push(calendar_json(c, i == 0)),
                Ok(false) => {}
                Err(r) => return r,
            }
        }
        self.page(req, out)
    }

    /// MS "Create calendar" (user-post-calendars): 201 with the calendar;
    /// a second calendar of the same name is 409 ErrorFolderExists (MS
    /// "Microsoft Graph error responses and resource types": 409 Conflict).
    fn create_calendar(&self, m: &mut Mailbox, req: &Request) -> Reply {
        let body = match req.json_body() {
            Ok(b) => b,
            Err(r) => return r,
        };
        // MS "calendar resource type".
        let props = [
            "name",
            "color",
            "hexColor",
            "isDefaultCalendar",
            "changeKey",
            "canShare",
            "canViewPrivateItems",
            "canEdit",
            "owner",
            "allowedOnlineMeetingProviders",
            "defaultOnlineMeetingProvider",
            "isTallyingResponses",
            "isRemovable",
            "id",
            "singleValueExtendedProperties",
            "multiValueExtendedProperties",
        ];
        if let Some(k) = body
            .keys()
            .find(|k| !props.contains(&k.as_str()) && !k.starts_with("@odata"))
        {
            return unknown_property(k, "calendar");
        }
        let Some(name) = body.get("name").and_then(Value::as_str) else {
            return bad("The name of a calendar is required.");
        };
        if m.calendars
            .iter()
            .any(|c| c.name.eq_ignore_ascii_case(name))
        {
            return error(
                409,
                "ErrorFolderExists",
                "A folder with the specified name already exists.",
            );
        }
        let c = Folder {
            id: self.new_id("CA"),
            name: name.to_string(),
        };
        let out = calendar_json(&c, false);
        m.calendars.push(c);
        Reply::json(201, out)
    }

    /// MS "Create event" (calendar-post-events, user-post-events): 201 with
    /// the event, type singleInstance or seriesMaster; a repeated
    /// transactionId creates nothing (MS "event resource type":
    /// transactionId is "for the server to avoid redundant POST operations
    /// in case of client retries"; 3P blog.rykoma.net: the resend is
    /// answered 201 and no new event appears; here with the first event).
    fn create_event(&self, m: &mut Mailbox, calendar: &str, req: &Request) -> Reply {
        let body = match req.json_body() {
            Ok(b) => b,
            Err(r) => return r,
        };
        if let Err(r) = check_event_fields(&body).and_then(|_| check_event(&body)) {
            return r;
        }
        let prefer = req.prefer_zone();
        if let Some(t) = body.get("transactionId").and_then(Value::as_str)
            && !m.transaction_ids_ignored
            && let Some(existing) = m
                .events
                .iter()
                .find(|e| e.json.get("transactionId").and_then(Value::as_str) == Some(t))
        {
            return Reply::json(
                201,
                present(Value::Object(existing.json.clone()), prefer.as_deref()),
            );
        }
        let props = match body.get("singleValueExtendedProperties") {
            Some(v) => match read_properties(v) {
                Ok(p) => p,
                Err(r) => return r,
            },
            None => Vec::new(),
        };
        record_invitations(m, &body);
        let id = self.new_id("EV");
        let recurring = body.get("recurrence").is_some_and(|r| !r.is_null());
        let mut json = stored(body);
        let stamp = now_stamp();
        let zone_of = |k: &str| json[k]["timeZone"].clone();
        let (start_zone, end_zone) = (zone_of("start"), zone_of("end"));
        json.insert("id".into(), json!(id));
        json.insert(
            "type".into(),
            json!(if recurring {
                "seriesMaster"
            } else {
                "singleInstance"
            }),
        );
        json.insert(
            "iCalUId".into(),
            json!(format!(
                "040000008200E00074C5B7101A82E008{:032X}",
                self.next_id.fetch_add(1, Ordering::Relaxed)
            )),
        );
        // MS "event resource type": originalStartTimeZone and
        // originalEndTimeZone keep the zones the event was created with.
        json.insert("originalStartTimeZone".into(), start_zone);
        json.insert("originalEndTimeZone".into(), end_zone);
        json.insert("createdDateTime".into(), json!(stamp));
        json.insert("lastModifiedDateTime".into(), json!(stamp));
        json.insert("changeKey".into(), json!(self.new_id("CK")));
        // MS "Create event" sample responses: reminders on, 15 minutes,
        // unless the event says otherwise.
        json.entry("isReminderOn").or_insert(json!(true));
        json.entry("reminderMinutesBeforeStart")
            .or_insert(json!(15));
        json.entry("isAllDay").or_insert(json!(false));
        let out = present(Value::Object(json.clone()), prefer.as_deref());
        m.events.push(Item {
            id,
            folder: calendar.to_string(),
            json,
            props,
            overrides: BTreeMap::new(),
        });
        Reply::json(201, out)
    }

    /// MS "Get event", MS "Update event" (200; merged), MS "Delete event"
    /// (204), for series masters, single events and instances: a PATCH on
    /// an occurrence makes it an exception, a DELETE cancels it (MS "event
    /// resource type": cancelled occurrences leave `instances`).
    fn event(&self, m: &mut Mailbox, id: &str, req: &Request) -> Reply {
        let prefer = req.prefer_zone();
        if let Some(pos) = m.events.iter().position(|e| e.id == id) {
            return match req.method.as_str() {
                "GET" => Reply::json(
                    200,
                    select(
                        present(with_expanded(&m.events[pos], req), prefer.as_deref()),
                        req,
                    ),
                ),
                "PATCH" => {
                    let body = match req.json_body() {
                        Ok(b) => b,
                        Err(r) => return r,
                    };
                    if let Err(r) = check_event_fields(&body) {
                        return r;
                    }
                    // MS "event resource type": "After you set transactionId
                    // when creating an event, you cannot change
                    // transactionId in a subsequent update."
                    if let Some(t) = body.get("transactionId")
                        && m.events[pos].json.get("transactionId") != Some(t)
                    {
                        return bad("The transactionId of an event cannot be changed.");
                    }
                    let props = match body.get("singleValueExtendedProperties") {
                        Some(v) => match read_properties(v) {
                            Ok(p) => p,
                            Err(r) => return r,
                        },
                        None => Vec::new(),
                    };
                    let mut merged = m.events[pos].json.clone();
                    merged.extend(stored(body.clone()));
                    if let Err(r) = check_event(&merged) {
                        return r;
                    }
                    let recurring = merged.get("recurrence").is_some_and(|r| !r.is_null());
                    merged.insert(
                        "type".into(),
                        json!(if recurring {
                            "seriesMaster"
                        } else {
                            "singleInstance"
                        }),
                    );
                    merged.insert("lastModifiedDateTime".into(), json!(now_stamp()));
                    merged.insert("changeKey".into(), json!(self.new_id("CK")));
                    record_invitations(m, &body);
                    let e = &mut m.events[pos];
                    e.json = merged;
                    merge_properties(&mut e.props, props);
                    Reply::json(
                        200,
                        present(Value::Object(e.json.clone()), prefer.as_deref()),
                    )
                }
                "DELETE" => {
                    m.events.remove(pos);
                    Reply::empty(204)
                }
                _ => not_allowed(),
            };
        }
        let Some((pos, original, date)) = find_instance(m, id) else {
            return not_found();
        };
        match req.method.as_str() {
            "GET" => match instance_json(&m.events[pos], original, date) {
                Some(v) => Reply::json(200, select(present(v, prefer.as_deref()), req)),
                None => not_found(),
            },
            "PATCH" => {
                let body = match req.json_body() {
                    Ok(b) => b,
                    Err(r) => return r,
                };
                if let Err(r) = check_event_fields(&body) {
                    return r;
                }
                // An occurrence has no recurrence of its own (MS "event
                // resource type": recurrence is the series').
                if body.get("recurrence").is_some_and(|r| !r.is_null()) {
                    return bad("An occurrence of a series cannot have a recurrence.");
                }
                let mut fields = match m.events[pos].overrides.get(&original) {
                    Some(Override::Changed(f)) => f.clone(),
                    _ => Map::new(),
                };
                let mut patch = stored(body.clone());
                patch.remove("recurrence");
                patch.remove("transactionId");
                fields.extend(patch);
                let Some(Value::Object(mut merged)) = instance_json(&m.events[pos], original, date)
                else {
                    return not_found();
                };
                merged.extend(fields.clone());
                merged.insert("recurrence".into(), Value::Null);
                if let Err(r) = check_event(&merged) {
                    return r;
                }
                record_invitations(m, &body);
                m.events[pos]
                    .overrides
                    .insert(original, Override::Changed(fields));
                match instance_json(&m.events[pos], original, date) {
                    Some(v) => Reply::json(200, present(v, prefer.as_deref())),
                    None => not_found(),
                }
            }
            "DELETE" => {
                m.events[pos]
                    .overrides
                    .insert(original, Override::Cancelled);
                Reply::empty(204)
            }
            _ => not_allowed(),
        }
    }

    /// MS "List instances": startDateTime and endDateTime are required.
    fn list_instances(&self, m: &Mailbox, id: &str, req: &Request) -> Reply {
        let Some(master) = m.events.iter().find(|e| e.id == id) else {
            return not_found();
        };
        let when = |k: &str| {
            req.q(k).and_then(|s| {
                DateTime::parse_from_rfc3339(s)
                    .map(|t| t.naive_utc())
                    .ok()
                    .or_else(|| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").ok())
            })
        };
        let (Some(from), Some(to)) = (when("startDateTime"), when("endDateTime")) else {
            return error(
                400,
                "ErrorInvalidParameter",
                "This request requires a time window specified by the query string parameters StartDateTime and EndDateTime.",
            );
        };
        let prefer = req.prefer_zone();
        let list = instances_of(master, from, to)
            .into_iter()
            .map(|v| present(v, prefer.as_deref()))
            .collect();
        self.page(req, list)
    }
}

// ---------------------------------------------------------------------------
// To Do

/// MS "todoTask resource type" and MS "linkedResource resource type".
fn check_task(body: &Map<String, Value>, creating: bool) -> Result<(), Reply> {
    for (k, v) in body {
        if k.starts_with("@odata") {
            continue;
        }
        if !TASK_PROPS.contains(&k.as_str()) {
            return Err(unknown_property(k, "todoTask"));
        }
        if v.is_null() {
            continue;
        }
        match k.as_str() {
            "status" => check_enum(
                v,
                &[
                    "notStarted",
                    "inProgress",
                    "completed",
                    "waitingOnOthers",
                    "deferred",
                ],
                "microsoft.graph.taskStatus",
            )?,
            "importance" => {
                check_enum(v, &["low", "normal", "high"], "microsoft.graph.importance")?
            }
            "body" => check_body(v)?,
            "title" => typed(v.is_string(), v, "Edm.String")?,
            "isReminderOn" => typed(v.is_boolean(), v, "Edm.Boolean")?,
            "categories" => typed(
                v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
                v,
                "Collection(Edm.String)",
            )?,
            "recurrence" => check_recurrence(v, None)?,
            k if TASK_TIMES.contains(&k) => {
                date_time_zone(v, k)?;
            }
            "linkedResources" => {
                // MS "Update todoTask" lists no linkedResources: they are
                // added inline on create (MS "Create todoTask") or through
                // their own collection.
                if !creating {
                    return Err(bad(
                        "linkedResources cannot be updated through the task; use its linkedResources collection.",
                    ));
                }
                let Value::Array(list) = v else {
                    return Err(bad_literal(v, "Collection(microsoft.graph.linkedResource)"));
                };
                let fields = [
                    "applicationName",
                    "displayName",
                    "externalId",
                    "webUrl",
                    "id",
                ];
                for l in list {
                    let Value::Object(o) = l else {
                        return Err(bad_literal(l, "microsoft.graph.linkedResource"));
                    };
                    if let Some(x) = o
                        .keys()
                        .find(|x| !fields.contains(&x.as_str()) && !x.starts_with("@odata"))
                    {
                        return Err(unknown_property(x, "linkedResource"));
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

impl Shared {
    /// MS "Create todoTaskList": 201 with the list (displayName).
    fn create_list(&self, m: &mut Mailbox, req: &Request) -> Reply {
        let body = match req.json_body() {
            Ok(b) => b,
            Err(r) => return r,
        };
        // MS "todoTaskList resource type".
        let props = [
            "displayName",
            "isOwner",
            "isShared",
            "wellknownListName",
            "id",
            "extensions",
        ];
        if let Some(k) = body
            .keys()
            .find(|k| !props.contains(&k.as_str()) && !k.starts_with("@odata"))
        {
            return unknown_property(k, "todoTaskList");
        }
        let Some(name) = body.get("displayName").and_then(Value::as_str) else {
            return bad("The displayName of a task list is required.");
        };
        let l = Folder {
            id: self.new_id("TL"),
            name: name.to_string(),
        };
        let out = list_json(&l, false);
        m.lists.push(l);
        Reply::json(201, out)
    }

    /// MS "Create todoTask": 201 with the task; inline linkedResources are
    /// created with it, each with an id (MS "linkedResource resource type").
    fn create_task(&self, m: &mut Mailbox, list: &str, req: &Request) -> Reply {
        if !m.lists.iter().any(|l| l.id == list) {
            return not_found();
        }
        let body = match req.json_body() {
            Ok(b) => b,
            Err(r) => return r,
        };
        if let Err(r) = check_task(&body, true) {
            return r;
        }
        let id = self.new_id("TK");
        let mut json = stored(body);
        let stamp = now_stamp();
        if let Some(Value::Array(links)) = json.get_mut("linkedResources") {
            for l in links.iter_mut() {
                let n = self.next_id.fetch_add(1, Ordering::Relaxed);
                l["id"] = json!(format!("{:08x}-7321-4cba-9ba0-{:012x}", self.port, n));
            }
        }
        json.insert("id".into(), json!(id));
        json.insert("createdDateTime".into(), json!(stamp));
        json.insert("lastModifiedDateTime".into(), json!(stamp));
        // MS "List tasks" sample: the defaults a new task shows.
        json.entry("status").or_insert(json!("notStarted"));
        json.entry("importance").or_insert(json!("normal"));
        json.entry("isReminderOn").or_insert(json!(false));
        json.entry("body")
            .or_insert(json!({"content": "", "contentType": "text"}));
        let out = present(Value::Object(json.clone()), req.prefer_zone().as_deref());
        m.tasks.push(Item {
            id,
            folder: list.to_string(),
            json,
            props: Vec::new(),
            overrides: BTreeMap::new(),
        });
        Reply::json(201, out)
    }

    /// MS "List tasks": `$top` pages with an absolute nextLink,
    /// `$expand=linkedResources` to read the linked resources; no `$filter`
    /// on linkedResources (graph.md §4: none documented), which is 400.
    fn list_tasks(&self, m: &Mailbox, list: &str, req: &Request) -> Reply {
        if !m.lists.iter().any(|l| l.id == list) {
            return not_found();
        }
        if let Some(f) = req.q("$filter") {
            let message = if f.to_ascii_lowercase().contains("linkedresources") {
                "Filtering on linkedResources is not supported."
            } else {
                "The query filter is not supported by the emulator."
            };
            return error(400, "ErrorInvalidUrlQueryFilter", message);
        }
        let prefer = req.prefer_zone();
        let tasks = m
            .tasks
            .iter()
            .filter(|t| t.folder == list)
            .map(|t| present(task_json(t, req), prefer.as_deref()))
            .collect();
        self.page(req, tasks)
    }

    /// MS "Get todoTask", "Update todoTask" (200), "Delete todoTask" (204).
    fn task(&self, m: &mut Mailbox, list: &str, id: &str, req: &Request) -> Reply {
        let Some(pos) = m.tasks.iter().position(|t| t.id == id && t.folder == list) else {
            return not_found();
        };
        let prefer = req.prefer_zone();
        match req.method.as_str() {
            "GET" => Reply::json(
                200,
                select(
                    present(task_json(&m.tasks[pos], req), prefer.as_deref()),
                    req,
                ),
            ),
            "PATCH" => {
                let body = match req.json_body() {
                    Ok(b) => b,
                    Err(r) => return r,
                };
                if let Err(r) = check_task(&body, false) {
                    return r;
                }
                let t = &mut m.tasks[pos];
                t.json.extend(stored(body));
                t.json
                    .insert("lastModifiedDateTime".into(), json!(now_stamp()));
                let mut out = t.json.clone();
                out.remove("linkedResources");
                Reply::json(200, present(Value::Object(out), prefer.as_deref()))
            }
            "DELETE" => {
                m.tasks.remove(pos);
                Reply::empty(204)
            }
            _ => not_allowed(),
        }
    }
}

/// A task as read: linkedResources only when expanded (a relationship;
/// MS "Use query parameters": $expand).
fn task_json(t: &Item, req: &Request) -> Value {
    let mut json = t.json.clone();
    let expanded = req.q("$expand").is_some_and(|e| {
        e.split(',')
            .any(|x| x.trim().eq_ignore_ascii_case("linkedResources"))
    });
    if !expanded {
        json.remove("linkedResources");
    } else {
        json.entry("linkedResources").or_insert(json!([]));
    }
    Value::Object(json)
}

// ---------------------------------------------------------------------------
// JSON batching

struct Inner {
    id: String,
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Value>,
    depends_on: Vec<String>,
}

impl Shared {
    /// MS "Combine multiple HTTP requests using JSON batching": at most 20
    /// requests with unique ids, relative urls, a Content-Type with every
    /// body, `dependsOn` (a failed dependency answers 424); the batch is
    /// 200 with every response, "in any order" (here the reverse of the
    /// requests'); MS "Microsoft Graph throttling guidance": each request
    /// is "evaluated individually against the applicable throttling limits"
    /// and fails with 429 inside the batch; MS "Microsoft Graph
    /// service-specific throttling limits" and MS Q&A "Send 4 requests at
    /// the same time, but still get 'Application is over its
    /// MailboxConcurrency limit.'": requests without dependsOn run in
    /// parallel, so a fifth one to a mailbox is throttled.
    fn batch(&self, outer: &Request) -> Reply {
        let invalid = |m: &str| error(400, "BadRequest", m);
        let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&outer.body) else {
            return invalid("Invalid batch payload format.");
        };
        let Some(Value::Array(list)) = body.get("requests") else {
            return invalid("Invalid batch payload format: no requests.");
        };
        if list.len() > BATCH_MAX {
            return invalid(&format!(
                "The number of requests in a batch ({}) exceeds the limit of {BATCH_MAX}.",
                list.len()
            ));
        }
        let mut inner = Vec::new();
        let mut seen = HashSet::new();
        for r in list {
            let id = match &r["id"] {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return invalid("Every request in a batch needs an id."),
            };
            if !seen.insert(id.clone()) {
                return invalid(&format!(
                    "Request id '{id}' is not unique within the batch."
                ));
            }
            let (Some(method), Some(url)) = (r["method"].as_str(), r["url"].as_str()) else {
                return invalid(&format!("Request '{id}' needs a method and a url."));
            };
            let headers = r["headers"]
                .as_object()
                .map(|h| {
                    h.iter()
                        .map(|(k, v)| {
                            (k.to_ascii_lowercase(), v.as_str().unwrap_or("").to_string())
                        })
                        .collect()
                })
                .unwrap_or_default();
            let depends_on = match &r["dependsOn"] {
                Value::Null => Vec::new(),
                Value::Array(d) => d
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect(),
                _ => {
                    return invalid(&format!(
                        "Request '{id}': dependsOn must be an array of ids."
                    ));
                }
            };
            inner.push(Inner {
                id,
                method: method.to_ascii_uppercase(),
                url: url.to_string(),
                headers,
                body: r.get("body").filter(|b| !b.is_null()).cloned(),
                depends_on,
            });
        }
        for r in &inner {
            if let Some(d) = r.depends_on.iter().find(|d| !seen.contains(*d)) {
                return invalid(&format!(
                    "Request '{}' depends on an unknown request '{d}'.",
                    r.id
                ));
            }
        }
        // Waves: those whose dependencies are answered run together.
        let mut answered: HashMap<String, u16> = HashMap::new();
        let mut responses: Vec<Value> = Vec::new();
        let mut pending: Vec<&Inner> = inner.iter().collect();
        let mut drop = false;
        while !pending.is_empty() {
            let (ready, rest): (Vec<&Inner>, Vec<&Inner>) = pending
                .into_iter()
                .partition(|r| r.depends_on.iter().all(|d| answered.contains_key(d)));
            if ready.is_empty() {
                return invalid("The dependsOn of the batch's requests form a cycle.");
            }
            pending = rest;
            let mut wave = Vec::new();
            for r in ready {
                let failed = r
                    .depends_on
                    .iter()
                    .any(|d| !(200..300).contains(&answered[d]));
                if failed {
                    let reply = error(
                        424,
                        "FailedDependency",
                        "A request this request depends on failed.",
                    );
                    answered.insert(r.id.clone(), 424);
                    responses.push(batch_response(&r.id, reply));
                } else {
                    wave.push(r);
                }
            }
            for (id, reply) in self.wave(&wave) {
                answered.insert(id.clone(), reply.status);
                drop |= reply.drop;
                responses.push(batch_response(&id, reply));
            }
        }
        if drop {
            return Reply {
                drop: true,
                ..Reply::empty(200)
            };
        }
        responses.reverse();
        Reply::json(200, json!({ "responses": responses }))
    }

    /// Requests that run side by side: each is admitted in turn (a fifth
    /// to one mailbox is throttled), then applied, held, released.
    fn wave(&self, wave: &[&Inner]) -> Vec<(String, Reply)> {
        let mut replies: Vec<(String, Option<Reply>)> = Vec::new();
        let mut admitted: Vec<(usize, String, Request)> = Vec::new();
        for r in wave {
            let target = if r.url.starts_with('/') {
                format!("/v1.0{}", r.url)
            } else {
                format!("/v1.0/{}", r.url)
            };
            self.lock().log.push((r.method.clone(), logged(&target)));
            let reply = if r.url.starts_with("http:") || r.url.starts_with("https:") {
                Some(error(
                    400,
                    "BadRequest",
                    "The url of a batch request must be relative.",
                ))
            } else if r.body.is_some() && !r.headers.iter().any(|(n, _)| n == "content-type") {
                Some(error(
                    400,
                    "BadRequest",
                    "Content-Type header is required when a body is present.",
                ))
            } else {
                None
            };
            if reply.is_some() {
                replies.push((r.id.clone(), reply));
                continue;
            }
            let (mut segments, query) = parse_target(&target);
            segments.remove(0);
            if segments.first().is_some_and(|s| s == "$batch") {
                replies.push((
                    r.id.clone(),
                    Some(error(400, "BadRequest", "A batch cannot hold a batch.")),
                ));
                continue;
            }
            let content_type = r
                .headers
                .iter()
                .find(|(n, _)| n == "content-type")
                .map(|(_, v)| v.to_ascii_lowercase())
                .unwrap_or_default();
            // A body that is not JSON travels base64-encoded ("JSON
            // batching": non-JSON bodies).
            let body = match &r.body {
                None => Vec::new(),
                Some(Value::String(s)) if !content_type.starts_with("application/json") => {
                    use base64::Engine as _;
                    base64::engine::general_purpose::STANDARD
                        .decode(s)
                        .unwrap_or_else(|_| s.as_bytes().to_vec())
                }
                Some(v) => serde_json::to_vec(v).unwrap(),
            };
            // Each request carries its own headers; the batch's do not
            // reach it (its token was checked on the batch).
            let req = Request {
                method: r.method.clone(),
                segments,
                query,
                headers: r.headers.clone(),
                body,
            };
            match self.admit(&req) {
                Admission::Done(reply) => replies.push((r.id.clone(), Some(reply))),
                Admission::Go(key) => {
                    admitted.push((replies.len(), key, req));
                    replies.push((r.id.clone(), None));
                }
            }
        }
        let mut writes = false;
        for (slot, key, req) in &admitted {
            writes |= req.method != "GET";
            replies[*slot].1 = Some(self.execute(key, req));
        }
        if writes {
            std::thread::sleep(HOLD);
        }
        for (_, key, _) in &admitted {
            self.release(key);
        }
        replies
            .into_iter()
            .map(|(id, r)| (id, r.expect("answered")))
            .collect()
    }
}

/// One response of a batch: `{id, status, headers, body}`.
fn batch_response(id: &str, reply: Reply) -> Value {
    let mut headers = Map::new();
    for (n, v) in &reply.headers {
        headers.insert(n.clone(), json!(v));
    }
    let mut out = json!({"id": id, "status": reply.status});
    match reply.payload {
        Payload::Empty => {}
        Payload::Json(v) => {
            headers.insert("Content-Type".into(), json!("application/json"));
            out["body"] = v;
        }
        Payload::Bytes(t, b) => {
            use base64::Engine as _;
            headers.insert("Content-Type".into(), json!(t));
            out["body"] = json!(base64::engine::general_purpose::STANDARD.encode(b));
        }
    }
    out["headers"] = Value::Object(headers);
    out
}
