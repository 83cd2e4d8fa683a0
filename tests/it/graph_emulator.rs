//! Self-tests of the Microsoft Graph emulator (support/graph.rs): what
//! mailferry's Graph client will meet, checked with a small HTTP client of
//! the tests' own, so that the emulator is not graded by the code it grades.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use serde_json::{Value, json};

use crate::support::graph::Graph;
use crate::support::identity::Identity;

const GRAPH: &str = "https://graph.microsoft.com/.default";
const TAG: &str = "String {6E1C4D2A-8B1F-4C57-9D3E-2A7B5F0C9E14} Name MailferryItem";

/// A reply as read off the wire.
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 connection, kept open between requests.
struct Conn {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Conn {
    fn open(port: u16) -> Conn {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Conn { stream, reader }
    }

    /// Sends a request; Err when the server closed without a reply.
    fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, &[u8])>,
    ) -> std::io::Result<Resp> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
        for (n, v) in headers {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        let body = match body {
            Some((kind, bytes)) => {
                head.push_str(&format!("Content-Type: {kind}\r\n"));
                bytes
            }
            None => &[][..],
        };
        if !body.is_empty() || method != "GET" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        self.stream.write_all(&bytes)?;
        let mut status_line = String::new();
        if self.reader.read_line(&mut status_line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("status line {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line)?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (n, v) = line.split_once(':').unwrap();
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
        let length: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse().unwrap())
            .unwrap_or(0);
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body)?;
        Ok(Resp {
            status,
            headers,
            body,
        })
    }
}

/// A test client of one emulator with one token.
struct Client {
    port: u16,
    token: String,
}

impl Client {
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Resp {
        self.try_call(method, path, body).unwrap()
    }

    fn try_call(&self, method: &str, path: &str, body: Option<&Value>) -> std::io::Result<Resp> {
        let bytes = body.map(|b| serde_json::to_vec(b).unwrap());
        let auth = format!("Bearer {}", self.token);
        Conn::open(self.port).send(
            method,
            path,
            &[
                ("Authorization", auth.as_str()),
                ("Prefer", "IdType=\"ImmutableId\""),
            ],
            bytes.as_deref().map(|b| ("application/json", b)),
        )
    }

    fn get(&self, path: &str) -> Resp {
        self.call("GET", path, None)
    }

    fn post(&self, path: &str, body: Value) -> Resp {
        self.call("POST", path, Some(&body))
    }
}

/// A path segment as a client must send it (ids hold `=`, `-`, `_`).
fn enc(s: &str) -> String {
    let mut out = String::new();
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

/// A query value as reqwest's `.query()` sends it: form-urlencoded.
fn form(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b' ' => out.push('+'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A token from the identity stand-in's endpoint for `scope`.
fn token(identity: &Identity, scope: &str) -> String {
    let body = format!(
        "client_id={}&client_secret={}&grant_type=client_credentials&scope={}",
        form(&identity.client_id),
        form(&identity.client_secret),
        form(scope)
    );
    let reply = Conn::open(identity.port)
        .send(
            "POST",
            &format!("/{}/oauth2/v2.0/token", identity.tenant),
            &[],
            Some(("application/x-www-form-urlencoded", body.as_bytes())),
        )
        .unwrap();
    assert_eq!(reply.status, 200);
    reply.json()["access_token"].as_str().unwrap().to_string()
}

fn setup(mailboxes: &[&str]) -> (Identity, Graph, Client) {
    let identity = Identity::start("contoso.test", Duration::from_secs(3600));
    let graph = Graph::start(identity.token_check(), mailboxes);
    let client = Client {
        port: graph.port,
        token: token(&identity, GRAPH),
    };
    (identity, graph, client)
}

fn error_code(r: &Resp) -> String {
    r.json()["error"]["code"].as_str().unwrap_or("").to_string()
}

#[test]
fn bearer_tokens_are_checked_for_graphs_scope() {
    let (identity, graph, client) = setup(&["Alice@contoso.test", "bob@contoso.test"]);
    let path = "/v1.0/users/alice@contoso.test/calendar";

    let mut conn = Conn::open(graph.port);
    let none = conn.send("GET", path, &[], None).unwrap();
    assert_eq!(none.status, 401);
    assert_eq!(error_code(&none), "InvalidAuthenticationToken");

    // A token for Exchange's IMAP scope is not one for Graph.
    let outlook = format!(
        "Bearer {}",
        token(&identity, "https://outlook.office365.com/.default")
    );
    let wrong = conn
        .send("GET", path, &[("Authorization", &outlook)], None)
        .unwrap();
    assert_eq!(wrong.status, 401);
    assert_eq!(error_code(&wrong), "InvalidAuthenticationToken");

    // The same connection serves on (keep-alive), any case of the name.
    let bearer = format!("Bearer {}", client.token);
    let ok = conn
        .send(
            "GET",
            "/v1.0/users/ALICE%40contoso.test/calendar",
            &[("Authorization", &bearer)],
            None,
        )
        .unwrap();
    assert_eq!(ok.status, 200);
    assert_eq!(ok.header("Content-Type"), Some("application/json"));
    let calendar = ok.json();
    assert_eq!(calendar["name"], "Calendar");
    assert_eq!(calendar["isDefaultCalendar"], true);

    let minted = format!("Bearer {}", identity.mint_token_for(GRAPH));
    let again = conn
        .send("GET", path, &[("Authorization", &minted)], None)
        .unwrap();
    assert_eq!(again.status, 200);

    let unknown = client.get("/v1.0/users/carol@contoso.test/calendar");
    assert_eq!(unknown.status, 404);
    assert_eq!(error_code(&unknown), "ErrorInvalidUser");
    assert!(
        unknown.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("carol@contoso.test")
    );

    graph.deny("bob@contoso.test");
    let denied = client.get("/v1.0/users/bob@contoso.test/contactFolders?%24top=1");
    assert_eq!(denied.status, 403);
    assert_eq!(error_code(&denied), "ErrorAccessDenied");
    assert_eq!(
        denied.json()["error"]["message"],
        "Access to OData is disabled."
    );

    assert_eq!(graph.requests(), 6);
    assert!(graph.log().contains(&(
        "GET".into(),
        "/v1.0/users/bob@contoso.test/contactFolders?$top=1".into()
    )));
}

#[test]
fn contacts_are_found_by_their_extended_property() {
    let (_identity, graph, client) = setup(&["alice@contoso.test"]);
    let user = "/v1.0/users/alice@contoso.test";

    let folder = client.post(
        &format!("{user}/contactFolders"),
        json!({"displayName": "O'Brien family"}),
    );
    assert_eq!(folder.status, 201);
    let fid = folder.json()["id"].as_str().unwrap().to_string();
    assert!(
        fid.ends_with('=') && fid.contains('-') && fid.contains('_'),
        "{fid}"
    );
    let again = client.post(
        &format!("{user}/contactFolders"),
        json!({"displayName": "o'brien family"}),
    );
    assert_eq!(again.status, 409);
    let filter = form("displayName eq 'O''Brien family'");
    let found = client.get(&format!(
        "{user}/contactFolders?%24filter={filter}&%24select=id"
    ));
    assert_eq!(found.status, 200);
    assert_eq!(found.json()["value"][0]["id"], fid.as_str());

    let contact = json!({
        "givenName": "Jürgen",
        "emailAddresses": [{"address": "j@contoso.test", "name": "J"}],
        "businessPhones": ["+49 30 1"],
        "birthday": "1970-05-17T00:00:00Z",
        "singleValueExtendedProperties": [{"id": TAG, "value": "abc123"}],
    });
    let made = client.post(
        &format!("{user}/contactFolders/{}/contacts", enc(&fid)),
        contact,
    );
    assert_eq!(made.status, 201);
    let made = made.json();
    let id = made["id"].as_str().unwrap().to_string();
    assert_eq!(made["parentFolderId"], fid.as_str());
    assert!(
        made.get("singleValueExtendedProperties").is_none(),
        "{made}"
    );

    let by_tag = |tag: &str, value: &str| {
        let filter = form(&format!(
            "singleValueExtendedProperties/Any(ep: ep/id eq '{tag}' and ep/value eq '{value}')"
        ));
        let r = client.get(&format!(
            "{user}/contactFolders/{}/contacts?%24filter={filter}&%24select=id",
            enc(&fid)
        ));
        assert_eq!(r.status, 200);
        r.json()["value"].as_array().unwrap().clone()
    };
    let hits = by_tag(TAG, "ABC123");
    assert_eq!(hits.len(), 1, "the value matches without case");
    assert_eq!(hits[0], json!({"id": id}));
    assert!(by_tag(&TAG.replace("MailferryItem", "mailferryitem"), "abc123").is_empty());
    assert!(by_tag(TAG, "other").is_empty());
    let unsupported = client.get(&format!(
        "{user}/contacts?%24filter={}",
        form("startswith(givenName,'J')")
    ));
    assert_eq!(unsupported.status, 400);

    for (body, code) in [
        (
            json!({"emailAddresses": [
                {"address": "a@x"}, {"address": "b@x"}, {"address": "c@x"}, {"address": "d@x"}]}),
            "ErrorInvalidRequest",
        ),
        (
            json!({"homePhones": ["1", "2", "3"]}),
            "ErrorInvalidRequest",
        ),
        (json!({"faxNumber": "1"}), "RequestBodyRead"),
        (json!({"birthday": "1970-05-17"}), "RequestBodyRead"),
    ] {
        let r = client.post(&format!("{user}/contacts"), body);
        assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(error_code(&r), code);
    }
    let four = client.post(
        &format!("{user}/contacts"),
        json!({"emailAddresses": [{"address": "a@x"}, {"address": "b@x"}, {"address": "c@x"}, {"address": "d@x"}]}),
    );
    assert!(
        four.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("EmailAddresses has 4 entries")
    );

    let photo_path = format!("{user}/contacts/{}/photo/$value", enc(&id));
    let auth = format!("Bearer {}", client.token);
    let png = Conn::open(graph.port)
        .send(
            "PUT",
            &photo_path,
            &[("Authorization", &auth)],
            Some(("image/png", b"\x89PNG")),
        )
        .unwrap();
    assert_eq!(png.status, 400);
    let jpeg = Conn::open(graph.port)
        .send(
            "PUT",
            &photo_path,
            &[("Authorization", &auth)],
            Some(("image/jpeg", b"\xff\xd8\xff\xe0jpeg")),
        )
        .unwrap();
    assert_eq!(jpeg.status, 200);
    assert_eq!(
        graph.photo("alice@contoso.test", &id),
        Some(b"\xff\xd8\xff\xe0jpeg".to_vec())
    );

    let patched = client.call(
        "PATCH",
        &format!("{user}/contacts/{}", enc(&id)),
        Some(&json!({"surname": "Müller"})),
    );
    assert_eq!(patched.status, 200);
    let gone = client.call(
        "PATCH",
        &format!("{user}/contacts/{}", enc("AAMkAGnothere=")),
        Some(&json!({"surname": "x"})),
    );
    assert_eq!(gone.status, 404);
    assert_eq!(error_code(&gone), "ErrorItemNotFound");

    let stored = graph.contacts("alice@contoso.test");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].0, "O'Brien family");
    assert_eq!(stored[0].1["surname"], "Müller");
    assert_eq!(stored[0].1["givenName"], "Jürgen");
    assert!(stored[0].1.get("singleValueExtendedProperties").is_none());
}

fn weekly_event(tx: &str) -> Value {
    json!({
        "subject": "Weekly sync",
        "start": {"dateTime": "2025-03-17T10:00:00", "timeZone": "W. Europe Standard Time"},
        "end": {"dateTime": "2025-03-17T10:30:00", "timeZone": "W. Europe Standard Time"},
        "recurrence": {
            "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["monday"],
                        "firstDayOfWeek": "monday"},
            "range": {"type": "numbered", "startDate": "2025-03-17", "numberOfOccurrences": 4}
        },
        "isReminderOn": false,
        "transactionId": tx,
        "singleValueExtendedProperties": [{"id": TAG, "value": tx}],
    })
}

#[test]
fn a_repeated_transaction_id_creates_one_event() {
    let (_identity, graph, client) = setup(&["alice@contoso.test"]);
    let user = "/v1.0/users/alice@contoso.test";
    let cal = client.post(&format!("{user}/calendars"), json!({"name": "Work"}));
    assert_eq!(cal.status, 201);
    let cid = cal.json()["id"].as_str().unwrap().to_string();
    let listed = client.get(&format!(
        "{user}/calendars?%24filter={}&%24select=id",
        form("name eq 'Work'")
    ));
    assert_eq!(listed.json()["value"][0]["id"], cid.as_str());

    let events = format!("{user}/calendars/{}/events", enc(&cid));
    let first = client.post(&events, weekly_event("tx-1"));
    assert_eq!(first.status, 201);
    let first = first.json();
    assert_eq!(first["type"], "seriesMaster");
    assert!(first["iCalUId"].is_string());
    // Returned in UTC by default: 10:00 in Berlin in March is 09:00 UTC.
    assert_eq!(
        first["start"],
        json!({"dateTime": "2025-03-17T09:00:00.0000000", "timeZone": "UTC"})
    );
    let second = client.post(&events, weekly_event("tx-1"));
    assert_eq!(second.status, 201);
    assert_eq!(second.json()["id"], first["id"]);
    let stored = graph.events("alice@contoso.test");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].0, "Work");
    assert_eq!(stored[0].1["start"]["timeZone"], "W. Europe Standard Time");

    let id = first["id"].as_str().unwrap();
    let changed = client.call(
        "PATCH",
        &format!("{user}/events/{}", enc(id)),
        Some(&json!({"transactionId": "tx-2"})),
    );
    assert_eq!(changed.status, 400);
    let with_people = client.call(
        "PATCH",
        &format!("{user}/events/{}", enc(id)),
        Some(&json!({"attendees": [{"emailAddress": {"address": "dan@contoso.test"}, "type": "required"}]})),
    );
    assert_eq!(with_people.status, 200);
    assert_eq!(
        graph.invitations("alice@contoso.test"),
        ["dan@contoso.test"]
    );

    let mut mars = weekly_event("tx-3");
    mars["start"]["timeZone"] = json!("Mars/Olympus_Mons");
    let r = client.post(&events, mars);
    assert_eq!(r.status, 400);
    assert_eq!(error_code(&r), "TimeZoneNotSupportedException");
    let mut moved = weekly_event("tx-4");
    moved["recurrence"]["range"]["startDate"] = json!("2025-03-18");
    assert_eq!(client.post(&events, moved).status, 400);
    let mut fifth = weekly_event("tx-5");
    fifth["recurrence"]["pattern"]["index"] = json!("fifth");
    assert_eq!(client.post(&events, fifth).status, 400);
    let holiday = json!({
        "subject": "Holiday", "isAllDay": true,
        "start": {"dateTime": "2025-05-01T00:00:00", "timeZone": "Europe/Berlin"},
        "end": {"dateTime": "2025-05-02T09:00:00", "timeZone": "Europe/Berlin"},
    });
    assert_eq!(client.post(&events, holiday).status, 400);
    let unknown = json!({
        "subject": "x", "colour": "red",
        "start": {"dateTime": "2025-05-01T09:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2025-05-01T10:00:00", "timeZone": "UTC"},
    });
    let r = client.post(&events, unknown);
    assert_eq!(r.status, 400);
    assert_eq!(error_code(&r), "RequestBodyRead");
    assert_eq!(graph.events("alice@contoso.test").len(), 1);
}

#[test]
fn weekly_series_instances_follow_the_zone_and_a_deleted_occurrence_goes() {
    let (_identity, graph, client) = setup(&["alice@contoso.test"]);
    let user = "/v1.0/users/alice@contoso.test";
    let made = client.post(&format!("{user}/events"), weekly_event("tx-w"));
    assert_eq!(made.status, 201);
    let master = made.json()["id"].as_str().unwrap().to_string();
    let instances_path = format!(
        "{user}/events/{}/instances?startDateTime={}&endDateTime={}&%24select={}",
        enc(&master),
        form("2025-03-16T00:00:00Z"),
        form("2025-04-30T00:00:00Z"),
        form("id,originalStart,type,start")
    );
    let list = |path: &str| -> Vec<Value> {
        let r = client.get(path);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        r.json()["value"].as_array().unwrap().clone()
    };
    let all = list(&instances_path);
    let starts: Vec<&str> = all
        .iter()
        .map(|i| i["originalStart"].as_str().unwrap())
        .collect();
    // Summer time begins on 30 March 2025: 10:00 local is 09:00Z, then 08:00Z.
    assert_eq!(
        starts,
        [
            "2025-03-17T09:00:00Z",
            "2025-03-24T09:00:00Z",
            "2025-03-31T08:00:00Z",
            "2025-04-07T08:00:00Z"
        ]
    );
    assert!(all.iter().all(|i| i["type"] == "occurrence"));

    let second = all[1]["id"].as_str().unwrap();
    let deleted = client.call("DELETE", &format!("{user}/events/{}", enc(second)), None);
    assert_eq!(deleted.status, 204);
    let again = client.call("DELETE", &format!("{user}/events/{}", enc(second)), None);
    assert_eq!(again.status, 404);
    let third = all[2]["id"].as_str().unwrap();
    let changed = client.call(
        "PATCH",
        &format!("{user}/events/{}", enc(third)),
        Some(&json!({"subject": "Weekly sync (moved)",
                     "start": {"dateTime": "2025-03-31T14:00:00", "timeZone": "W. Europe Standard Time"},
                     "end": {"dateTime": "2025-03-31T14:30:00", "timeZone": "W. Europe Standard Time"}})),
    );
    assert_eq!(
        changed.status,
        200,
        "{}",
        String::from_utf8_lossy(&changed.body)
    );
    assert_eq!(changed.json()["type"], "exception");

    let now = list(&instances_path);
    assert_eq!(now.len(), 3);
    assert_eq!(now[0]["id"], all[0]["id"], "instance ids are stable");
    assert_eq!(now[1]["id"], all[2]["id"]);
    assert_eq!(now[1]["type"], "exception");
    assert_eq!(now[1]["originalStart"], "2025-03-31T08:00:00Z");
    assert_eq!(now[1]["start"]["dateTime"], "2025-03-31T12:00:00.0000000");

    let from = Utc.with_ymd_and_hms(2025, 3, 1, 0, 0, 0).unwrap();
    let to = Utc.with_ymd_and_hms(2025, 5, 1, 0, 0, 0).unwrap();
    let kept = graph.instances("alice@contoso.test", &master, from, to);
    assert_eq!(kept.len(), 3);
    assert_eq!(kept[1]["subject"], "Weekly sync (moved)");

    let no_window = client.get(&format!("{user}/events/{}/instances", enc(&master)));
    assert_eq!(no_window.status, 400);

    // The last Friday of each month, from 31 January, three times.
    let last_friday = json!({
        "subject": "Month end",
        "start": {"dateTime": "2025-01-31T17:00:00", "timeZone": "America/New_York"},
        "end": {"dateTime": "2025-01-31T18:00:00", "timeZone": "America/New_York"},
        "recurrence": {
            "pattern": {"type": "relativeMonthly", "interval": 1, "daysOfWeek": ["friday"], "index": "last"},
            "range": {"type": "numbered", "startDate": "2025-01-31", "numberOfOccurrences": 3}
        },
    });
    let made = client.post(&format!("{user}/events"), last_friday);
    assert_eq!(made.status, 201);
    let id = made.json()["id"].as_str().unwrap().to_string();
    let from = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
    let to = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let fridays: Vec<String> = graph
        .instances("alice@contoso.test", &id, from, to)
        .iter()
        .map(|i| i["originalStart"].as_str().unwrap().to_string())
        .collect();
    // New York is UTC-5 until 9 March, UTC-4 after.
    assert_eq!(
        fridays,
        [
            "2025-01-31T22:00:00Z",
            "2025-02-28T22:00:00Z",
            "2025-03-28T21:00:00Z"
        ]
    );
}

#[test]
fn a_fifth_request_in_flight_is_throttled() {
    let (_identity, graph, client) = setup(&["alice@contoso.test", "bob@contoso.test"]);
    graph.set_retry_after(0.25);
    let client = Arc::new(client);
    let mut throttled = Vec::new();
    for _round in 0..5 {
        let barrier = Arc::new(Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let (client, barrier) = (client.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let body = serde_json::to_vec(&json!({"givenName": format!("P{i}")})).unwrap();
                    let auth = format!("Bearer {}", client.token);
                    let mut conn = Conn::open(client.port);
                    barrier.wait();
                    conn.send(
                        "POST",
                        "/v1.0/users/alice@contoso.test/contacts",
                        &[("Authorization", &auth)],
                        Some(("application/json", &body)),
                    )
                    .unwrap()
                })
            })
            .collect();
        let replies: Vec<Resp> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert!(replies.iter().all(|r| r.status == 201 || r.status == 429));
        throttled.extend(replies.into_iter().filter(|r| r.status == 429));
        if !throttled.is_empty() {
            break;
        }
    }
    let r = throttled
        .first()
        .expect("8 POSTs at once: some are throttled");
    assert_eq!(r.header("Retry-After"), Some("0.25"));
    assert_eq!(error_code(r), "ApplicationThrottled");
    assert_eq!(
        r.json()["error"]["message"],
        "Application is over its MailboxConcurrency limit."
    );
    assert!(graph.throttled() >= 1);
    assert!(graph.max_in_flight("alice@contoso.test") > 4);
    assert_eq!(graph.max_in_flight("bob@contoso.test"), 0);

    // The request window: throttled requests count too.
    graph.set_window(3, Duration::from_secs(60));
    let path = "/v1.0/users/bob@contoso.test/calendar";
    let statuses: Vec<u16> = (0..5).map(|_| client.get(path).status).collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    let r = client.get(path);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("MailboxRequests")
    );
    graph.set_window(10_000, Duration::from_secs(600));
    assert_eq!(client.get(path).status, 200);
}

#[test]
fn todo_tasks_page_with_next_links() {
    let (_identity, graph, client) = setup(&["alice@contoso.test"]);
    let user = "/v1.0/users/alice@contoso.test";
    let lists = client.get(&format!("{user}/todo/lists")).json();
    assert_eq!(lists["value"][0]["displayName"], "Tasks");
    assert_eq!(lists["value"][0]["wellknownListName"], "defaultList");
    let list = client.post(
        &format!("{user}/todo/lists"),
        json!({"displayName": "Chores"}),
    );
    assert_eq!(list.status, 201);
    let lid = list.json()["id"].as_str().unwrap().to_string();
    let tasks = format!("{user}/todo/lists/{}/tasks", enc(&lid));
    for i in 0..25 {
        let r = client.post(
            &tasks,
            json!({
                "title": format!("Task {i}"),
                "importance": "high",
                "dueDateTime": {"dateTime": "2025-04-15T00:00:00", "timeZone": "W. Europe Standard Time"},
                "linkedResources": [{"applicationName": "mailferry", "displayName": "x",
                                     "externalId": format!("ext-{i}")}],
            }),
        );
        assert_eq!(r.status, 201);
    }
    for bad in [
        json!({"title": "x", "status": "done"}),
        json!({"title": "x", "importance": "urgent"}),
        json!({"title": "x", "dueDateTime": {"dateTime": "2025-04-15T00:00:00", "timeZone": "Nowhere"}}),
    ] {
        assert_eq!(client.post(&tasks, bad).status, 400);
    }

    let mut seen = Vec::new();
    let mut next = Some(format!("{tasks}?%24expand=linkedResources&%24top=10"));
    let mut pages = 0;
    while let Some(path) = next {
        let page = client.get(&path);
        assert_eq!(page.status, 200, "{}", String::from_utf8_lossy(&page.body));
        let page = page.json();
        pages += 1;
        for t in page["value"].as_array().unwrap() {
            let link = &t["linkedResources"][0];
            assert!(link["id"].is_string());
            seen.push(link["externalId"].as_str().unwrap().to_string());
        }
        next = page["@odata.nextLink"].as_str().map(|l| {
            let rest = l
                .strip_prefix(&format!("http://127.0.0.1:{}", graph.port))
                .unwrap_or_else(|| panic!("absolute link {l}"));
            assert!(l.starts_with(&graph.url()));
            rest.to_string()
        });
    }
    assert_eq!(pages, 3);
    seen.sort();
    let mut want: Vec<String> = (0..25).map(|i| format!("ext-{i}")).collect();
    want.sort();
    assert_eq!(seen, want);

    let plain = client.get(&tasks).json();
    assert_eq!(plain["value"].as_array().unwrap().len(), 10);
    assert!(plain["value"][0].get("linkedResources").is_none());
    assert!(plain["@odata.nextLink"].is_string());
    let filtered = client.get(&format!(
        "{tasks}?%24filter={}",
        form("linkedResources/any(l: l/externalId eq 'ext-1')")
    ));
    assert_eq!(filtered.status, 400);

    let stored = graph.tasks("alice@contoso.test");
    assert_eq!(stored.len(), 25);
    assert!(stored.iter().all(|(list, _)| list == "Chores"));
    assert_eq!(stored[0].1["linkedResources"][0]["externalId"], "ext-0");
}

#[test]
fn a_batch_answers_424_for_a_failed_dependency() {
    let (_identity, graph, client) = setup(&["alice@contoso.test"]);
    let four =
        json!([{"address": "a@x"}, {"address": "b@x"}, {"address": "c@x"}, {"address": "d@x"}]);
    let json_type = json!({"Content-Type": "application/json"});
    let before = graph.requests();
    let r = client.post(
        "/v1.0/$batch",
        json!({"requests": [
            {"id": "1", "method": "POST", "url": "/users/alice@contoso.test/contacts",
             "headers": json_type, "body": {"emailAddresses": four}},
            {"id": "2", "method": "POST", "url": "/users/alice@contoso.test/contacts",
             "dependsOn": ["1"], "headers": json_type, "body": {"givenName": "B"}},
            {"id": "3", "method": "GET", "url": "users/alice@contoso.test/calendar"},
            {"id": "4", "method": "POST", "url": "/users/alice@contoso.test/contacts",
             "body": {"givenName": "no type"}},
        ]}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(graph.requests(), before + 1);
    let responses = r.json()["responses"].as_array().unwrap().clone();
    let status = |id: &str| {
        responses
            .iter()
            .find(|x| x["id"] == id)
            .unwrap_or_else(|| panic!("no response {id}"))["status"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(status("1"), 400);
    assert_eq!(status("2"), 424);
    assert_eq!(status("3"), 200);
    assert_eq!(status("4"), 400);
    assert!(graph.contacts("alice@contoso.test").is_empty());

    let many: Vec<Value> = (0..21)
        .map(|i| json!({"id": i.to_string(), "method": "GET", "url": "/users/alice@contoso.test/calendar"}))
        .collect();
    assert_eq!(
        client
            .post("/v1.0/$batch", json!({ "requests": many }))
            .status,
        400
    );
    let twice = json!({"requests": [
        {"id": "1", "method": "GET", "url": "/users/alice@contoso.test/calendar"},
        {"id": "1", "method": "GET", "url": "/users/alice@contoso.test/calendars"},
    ]});
    assert_eq!(client.post("/v1.0/$batch", twice).status, 400);

    // Six creates side by side: four run, two are over the mailbox's
    // concurrency and come back 429 with their own Retry-After.
    let six: Vec<Value> = (0..6)
        .map(|i| {
            json!({"id": format!("c{i}"), "method": "POST",
                        "url": "/users/alice@contoso.test/contacts",
                        "headers": json_type, "body": {"givenName": format!("C{i}")}})
        })
        .collect();
    let r = client.post("/v1.0/$batch", json!({ "requests": six }));
    assert_eq!(r.status, 200);
    let responses = r.json()["responses"].as_array().unwrap().clone();
    let created = responses.iter().filter(|x| x["status"] == 201).count();
    let throttled: Vec<&Value> = responses.iter().filter(|x| x["status"] == 429).collect();
    assert_eq!((created, throttled.len()), (4, 2));
    assert_eq!(throttled[0]["headers"]["Retry-After"], "1");
    assert_eq!(graph.contacts("alice@contoso.test").len(), 4);
    assert!(graph.max_in_flight("alice@contoso.test") >= 5);
    assert!(
        graph
            .log()
            .iter()
            .any(|(m, p)| m == "POST" && p == "/v1.0/users/alice@contoso.test/contacts")
    );
}

#[test]
fn creates_that_fail_after_applying_are_still_there() {
    let (_identity, graph, client) = setup(&["alice@contoso.test"]);
    let path = "/v1.0/users/alice@contoso.test/contacts";
    graph.fail_after_applying(1);
    let r = client.post(path, json!({"givenName": "A"}));
    assert_eq!(r.status, 503);
    assert_eq!(graph.contacts("alice@contoso.test").len(), 1);

    graph.drop_after_applying(1);
    let dropped = client.try_call("POST", path, Some(&json!({"givenName": "B"})));
    assert!(dropped.is_err(), "no reply after the create");
    assert_eq!(graph.contacts("alice@contoso.test").len(), 2);

    assert_eq!(client.post(path, json!({"givenName": "C"})).status, 201);
    // A failed validation is not a create: the next create fails instead.
    graph.fail_after_applying(1);
    assert_eq!(client.post(path, json!({"nope": 1})).status, 400);
    assert_eq!(client.post(path, json!({"givenName": "D"})).status, 503);
    let names: Vec<String> = graph
        .contacts("alice@contoso.test")
        .iter()
        .map(|(_, c)| c["givenName"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["A", "B", "C", "D"]);
}

/// reqwest, as mailferry's client uses it: pooled keep-alive connections,
/// `.query()` (form encoding: `+` for a space, `%2B` for a plus, `%27` for a
/// quote), JSON bodies, ids percent-encoded in the path.
#[test]
fn reqwest_pooled_requests_and_query_encoding_are_read() {
    let (_identity, graph, client) = setup(&["alice@contoso.test"]);
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .unwrap();
    let base = format!("{}/users/alice@contoso.test", graph.url());
    let tag = "it's a tag+1 & more";
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let made: Value = http
            .post(format!("{base}/contacts"))
            .bearer_auth(&client.token)
            .header("Prefer", "IdType=\"ImmutableId\"")
            .json(&json!({"givenName": "R",
                          "singleValueExtendedProperties": [{"id": TAG, "value": tag}]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = made["id"].as_str().unwrap().to_string();
        let filter = format!(
            "singleValueExtendedProperties/Any(ep: ep/id eq '{TAG}' and ep/value eq '{}')",
            tag.replace('\'', "''")
        );
        for _ in 0..10 {
            let reply = http
                .get(format!("{base}/contacts"))
                .bearer_auth(&client.token)
                .query(&[("$filter", filter.as_str()), ("$select", "id")])
                .send()
                .await
                .unwrap();
            assert_eq!(reply.status(), 200);
            let body: Value = reply.json().await.unwrap();
            assert_eq!(body["value"][0]["id"], id.as_str(), "{body}");
        }
        let patched = http
            .patch(format!("{base}/contacts/{}", enc(&id)))
            .bearer_auth(&client.token)
            .json(&json!({"surname": "S"}))
            .send()
            .await
            .unwrap();
        assert_eq!(patched.status(), 200);
    });
    assert_eq!(graph.contacts("alice@contoso.test")[0].1["surname"], "S");
    assert!(
        graph
            .log()
            .iter()
            .any(|(_, p)| p.contains("ep/value eq 'it''s a tag+1 & more'"))
    );
}
