//! Requests to Microsoft Graph, within Outlook's limits per app and
//! mailbox: at most 4 in flight, at most 10,000 per 10 minutes, and a pause
//! for the whole mailbox when Graph answers 429 or 503 with `Retry-After`
//! (docs/research/graph.md §6). A refused token is fetched anew once.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use reqwest::Method;
use serde_json::Value;
use tokio::sync::{Mutex, Semaphore};

use crate::oauth::TokenProvider;
use crate::rate::RateCap;

/// Outlook's limits per app and mailbox.
pub const IN_FLIGHT_PER_MAILBOX: usize = 4;
pub const REQUESTS_PER_WINDOW: usize = 10_000;
pub const WINDOW: Duration = Duration::from_secs(600);

/// Requests in one `$batch` (JSON batching: "up to 20").
pub const BATCH: usize = 20;

/// How often a read is tried when Graph answers 5xx or nothing.
const PATIENCE: u32 = 8;
/// How often a request is tried when Graph answers 429: it was not
/// applied, so waiting is always safe, and Graph says how long.
const PATIENCE_THROTTLED: u32 = 30;

/// What a request line and its headers (a bearer token among them) or a
/// reply's status line and headers weigh beyond what is counted, near
/// enough for `--max-rate`.
const HEAD_BYTES: usize = 512;

/// A reply, or what made it unknowable.
#[derive(Debug)]
pub enum Reply {
    /// Graph answered: its status and JSON body (Null when empty).
    Answered { status: u16, body: Value },
    /// No answer that says whether a write was applied: the connection
    /// broke, it timed out, or Graph said 5xx (a 503 may still have been
    /// applied). A create must be looked up before it is sent again.
    Unknown(String),
}

impl Reply {
    /// Graph's own words of an error reply: `code: message`.
    pub fn error_words(&self) -> String {
        match self {
            Reply::Answered { status, body } => {
                let code = body["error"]["code"].as_str().unwrap_or("");
                let message = body["error"]["message"].as_str().unwrap_or("");
                match (code.is_empty(), message.is_empty()) {
                    (true, true) => format!("HTTP {status}"),
                    _ => format!("HTTP {status} {code}: {message}"),
                }
            }
            Reply::Unknown(why) => why.clone(),
        }
    }
}

/// What a request carries.
#[derive(Clone, Copy)]
pub enum Body<'a> {
    Empty,
    Json(&'a Value),
    /// A photo: its content type and bytes.
    Bytes(&'a str, &'a [u8]),
}

/// One mailbox's share of the limits, shared by all its requests.
pub struct MailboxGate {
    in_flight: Semaphore,
    sent: Mutex<VecDeque<Instant>>,
    paused_until: Mutex<Option<Instant>>,
}

impl Default for MailboxGate {
    fn default() -> Self {
        MailboxGate {
            in_flight: Semaphore::new(IN_FLIGHT_PER_MAILBOX),
            sent: Mutex::new(VecDeque::new()),
            paused_until: Mutex::new(None),
        }
    }
}

impl MailboxGate {
    /// Waits out a pause Graph asked for, then for room in the window.
    async fn admit(&self) {
        loop {
            let until = *self.paused_until.lock().await;
            match until {
                Some(t) if t > Instant::now() => tokio::time::sleep_until(t.into()).await,
                _ => break,
            }
        }
        loop {
            let mut sent = self.sent.lock().await;
            let now = Instant::now();
            while sent
                .front()
                .is_some_and(|t| now.duration_since(*t) >= WINDOW)
            {
                sent.pop_front();
            }
            if sent.len() < REQUESTS_PER_WINDOW {
                sent.push_back(now);
                return;
            }
            let wait = WINDOW - now.duration_since(*sent.front().expect("full window"));
            drop(sent);
            tokio::time::sleep(wait).await;
        }
    }

    async fn pause(&self, d: Duration) {
        let mut until = self.paused_until.lock().await;
        let t = Instant::now() + d;
        if until.is_none_or(|u| u < t) {
            *until = Some(t);
        }
    }
}

/// Counts of a run's requests, for the summary and the benchmark.
#[derive(Debug, Default)]
pub struct RequestCounts {
    /// HTTP requests sent (a `$batch` is one).
    pub requests: AtomicU64,
    /// Requests Graph counts: each one inside a `$batch` too.
    pub graph_requests: AtomicU64,
    pub throttled: AtomicU64,
}

pub struct GraphClient {
    http: reqwest::Client,
    base: String,
    tokens: Arc<TokenProvider>,
    pub counts: RequestCounts,
    /// One gate per target mailbox (lower case): two accounts going into
    /// one mailbox share its 4 slots.
    gates: std::sync::Mutex<std::collections::HashMap<String, Arc<MailboxGate>>>,
    /// The process's `--max-rate`, which Graph's requests draw from too.
    cap: Option<Arc<RateCap>>,
}

impl GraphClient {
    pub fn new(
        base: &str,
        tokens: Arc<TokenProvider>,
        tls: Arc<rustls::ClientConfig>,
        cap: Option<Arc<RateCap>>,
    ) -> Result<GraphClient> {
        let http = reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .timeout(Duration::from_secs(120))
            .pool_max_idle_per_host(64)
            .user_agent(concat!("mailferry/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot set up the HTTP client for Microsoft Graph")?;
        Ok(GraphClient {
            http,
            base: base.trim_end_matches('/').to_string(),
            tokens,
            counts: RequestCounts::default(),
            gates: Default::default(),
            cap,
        })
    }

    /// The application permissions (`roles`) the app's token carries, when
    /// it is a JWT that says (Microsoft's are; None otherwise). A read
    /// probe cannot tell Contacts.Read from Contacts.ReadWrite; this can.
    pub async fn token_roles(&self) -> Option<Vec<String>> {
        use base64::Engine as _;
        let token = self.tokens.access_token().await.ok()?;
        let payload = token.token.expose().split('.').nth(1)?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .ok()?;
        let claims: Value = serde_json::from_slice(&bytes).ok()?;
        Some(
            claims["roles"]
                .as_array()?
                .iter()
                .filter_map(|r| r.as_str().map(str::to_string))
                .collect(),
        )
    }

    /// The gate of a target mailbox, shared by everything sent to it.
    pub fn gate(&self, mailbox: &str) -> Arc<MailboxGate> {
        self.gates
            .lock()
            .expect("not poisoned")
            .entry(mailbox.to_lowercase())
            .or_default()
            .clone()
    }

    /// A link Graph gave (`@odata.nextLink`) as a path under the root.
    pub fn relative(&self, link: &str) -> Result<String> {
        link.strip_prefix(&self.base)
            .map(str::to_string)
            .ok_or_else(|| anyhow::anyhow!("Graph sent a link outside {}: {link}", self.base))
    }

    /// Sends one request for a mailbox, waiting as its gate says and as
    /// Graph asks (429, 503 with `Retry-After`); `path` is relative to the
    /// version root (`/users/...`). Errors are only for a token that cannot
    /// be had; everything Graph says is in the reply.
    pub async fn send(
        &self,
        gate: &MailboxGate,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Body<'_>,
    ) -> Result<Reply> {
        let mut renewed = false;
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            gate.admit().await;
            let permit = gate.in_flight.acquire().await.expect("never closed");
            let token = self.tokens.access_token().await?;
            let mut request = self
                .http
                .request(method.clone(), format!("{}{path}", self.base))
                .bearer_auth(token.token.expose())
                // Ids that survive a move between folders (outlook-immutable-id).
                .header("Prefer", "IdType=\"ImmutableId\"");
            if !query.is_empty() {
                request = request.query(query);
            }
            let mut weight = HEAD_BYTES + path.len() + token.token.expose().len();
            match body {
                Body::Empty => {}
                Body::Json(b) => {
                    let json = serde_json::to_vec(b).context("a Graph request as JSON")?;
                    weight += json.len();
                    request = request
                        .header("Content-Type", "application/json")
                        .body(json);
                }
                Body::Bytes(kind, bytes) => {
                    weight += bytes.len();
                    request = request.header("Content-Type", kind).body(bytes.to_vec());
                }
            }
            self.pace(weight).await;
            self.counts.requests.fetch_add(1, Ordering::Relaxed);
            self.counts.graph_requests.fetch_add(1, Ordering::Relaxed);
            let response = request.send().await;
            let response = match response {
                Ok(r) => r,
                Err(e) => {
                    // Nothing says whether a write got through.
                    if method == Method::GET && attempt < PATIENCE {
                        drop(permit);
                        tokio::time::sleep(backoff(attempt)).await;
                        continue;
                    }
                    return Ok(Reply::Unknown(format!(
                        "no answer from Microsoft Graph: {}",
                        crate::outcome::error_chain(&anyhow::Error::new(e))
                    )));
                }
            };
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("Retry-After")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let text = self.read_text(response).await;
            // Held until the reply is read: the request is in flight till then.
            drop(permit);
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            match status {
                401 if !renewed => {
                    renewed = true;
                    self.tokens.forget(&token).await;
                    continue;
                }
                // Throttled: not applied; wait as told and send again.
                429 if attempt < PATIENCE_THROTTLED => {
                    self.wait(gate, retry_after, attempt).await;
                    continue;
                }
                500..=599 => {
                    // A write may have been applied (graph.md §6): only a
                    // read is simply sent again.
                    if method == Method::GET && attempt < PATIENCE {
                        self.wait(gate, retry_after, attempt).await;
                        continue;
                    }
                    if let Some(d) = retry_after {
                        gate.pause(d).await;
                    }
                    return Ok(Reply::Unknown(
                        Reply::Answered { status, body }.error_words(),
                    ));
                }
                _ => return Ok(Reply::Answered { status, body }),
            }
        }
    }

    /// Sends up to [`BATCH`] JSON requests (paths under the root) as one
    /// `$batch` (MS "Combine multiple HTTP requests using JSON batching"),
    /// chained with `dependsOn` so that they run one after another: a batch
    /// then holds one of the mailbox's 4 slots, never more (Outlook counts
    /// a batch's parallel requests against the 4). A request the chain did
    /// not reach (424, its predecessor failed) or Graph throttled is sent
    /// again in the next round, after the `Retry-After` it carries; the
    /// replies come back in the order of `requests`.
    pub async fn batch(
        &self,
        gate: &MailboxGate,
        requests: &[(Method, String, Option<Value>)],
    ) -> Result<Vec<Reply>> {
        assert!(requests.len() <= BATCH, "a $batch holds at most {BATCH}");
        let mut replies: Vec<Option<Reply>> = requests.iter().map(|_| None).collect();
        let mut renewed = false;
        let mut attempt = 0u32;
        loop {
            let open: Vec<usize> = (0..requests.len())
                .filter(|i| replies[*i].is_none())
                .collect();
            if open.is_empty() {
                break;
            }
            attempt += 1;
            for _ in &open {
                gate.admit().await;
            }
            let permit = gate.in_flight.acquire().await.expect("never closed");
            let token = self.tokens.access_token().await?;
            let body = serde_json::json!({
                "requests": open.iter().enumerate().map(|(k, &i)| {
                    let (method, url, body) = &requests[i];
                    let mut r = serde_json::json!({
                        "id": i.to_string(), "method": method.as_str(), "url": url,
                    });
                    if k > 0 {
                        r["dependsOn"] = serde_json::json!([open[k - 1].to_string()]);
                    }
                    // A batch's own headers do not reach its requests: each
                    // asks for immutable ids itself (outlook-immutable-id).
                    r["headers"] = serde_json::json!({"Prefer": "IdType=\"ImmutableId\""});
                    if let Some(b) = body {
                        r["body"] = b.clone();
                        r["headers"]["Content-Type"] = serde_json::json!("application/json");
                    }
                    r
                }).collect::<Vec<_>>()
            });
            let body = serde_json::to_vec(&body).context("a Graph $batch as JSON")?;
            self.pace(HEAD_BYTES + token.token.expose().len() + body.len())
                .await;
            self.counts.requests.fetch_add(1, Ordering::Relaxed);
            self.counts
                .graph_requests
                .fetch_add(open.len() as u64, Ordering::Relaxed);
            let response = self
                .http
                .post(format!("{}/$batch", self.base))
                .bearer_auth(token.token.expose())
                .header("Prefer", "IdType=\"ImmutableId\"")
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await;
            let (status, text, retry_after) = match response {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let retry_after = r
                        .headers()
                        .get("Retry-After")
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_retry_after);
                    (status, self.read_text(r).await, retry_after)
                }
                Err(e) => {
                    let why = format!(
                        "no answer from Microsoft Graph: {}",
                        crate::outcome::error_chain(&anyhow::Error::new(e))
                    );
                    for &i in &open {
                        replies[i] = Some(Reply::Unknown(why.clone()));
                    }
                    break;
                }
            };
            drop(permit);
            let outer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            match status {
                // Either is a batch answered item by item (graph.md §5).
                200 | 424 => {}
                401 if !renewed => {
                    renewed = true;
                    self.tokens.forget(&token).await;
                    continue;
                }
                429 if attempt < PATIENCE_THROTTLED => {
                    self.wait(gate, retry_after, attempt).await;
                    continue;
                }
                _ => {
                    let words = Reply::Answered {
                        status,
                        body: outer,
                    }
                    .error_words();
                    for &i in &open {
                        replies[i] = Some(Reply::Unknown(words.clone()));
                    }
                    break;
                }
            }
            let mut again: Option<Duration> = None;
            let mut throttled = 0;
            let mut chained_out = false;
            for r in outer["responses"].as_array().into_iter().flatten() {
                let Some(i) = r["id"].as_str().and_then(|id| id.parse::<usize>().ok()) else {
                    continue;
                };
                if !open.contains(&i) {
                    continue;
                }
                let status = r["status"].as_u64().unwrap_or(0) as u16;
                let body = r["body"].clone();
                match status {
                    429 if attempt < PATIENCE_THROTTLED => {
                        throttled += 1;
                        let d = r["headers"]["Retry-After"]
                            .as_str()
                            .map(str::to_string)
                            .or_else(|| r["headers"]["Retry-After"].as_f64().map(|f| f.to_string()))
                            .and_then(|v| parse_retry_after(&v))
                            .unwrap_or_else(|| backoff(attempt));
                        again = Some(again.map_or(d, |a| a.max(d)));
                    }
                    // Not reached: its predecessor in the chain failed.
                    424 => chained_out = true,
                    500..=599 => {
                        replies[i] = Some(Reply::Unknown(
                            Reply::Answered { status, body }.error_words(),
                        ))
                    }
                    _ => replies[i] = Some(Reply::Answered { status, body }),
                }
            }
            if let Some(d) = again {
                self.counts
                    .throttled
                    .fetch_add(throttled, Ordering::Relaxed);
                self.wait(gate, Some(d), attempt).await;
                self.counts.throttled.fetch_sub(1, Ordering::Relaxed);
            } else if !chained_out || attempt >= PATIENCE_THROTTLED + BATCH as u32 {
                // A request the batch did not answer: nothing says it ran.
                for &i in &open {
                    if replies[i].is_none() {
                        replies[i] = Some(Reply::Unknown("not answered in the $batch".into()));
                    }
                }
            }
        }
        Ok(replies
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Reply::Unknown("not sent".into())))
            .collect())
    }

    /// Waits while `--max-rate` is in debt, then charges `bytes` to it.
    async fn pace(&self, bytes: usize) {
        if let Some(cap) = &self.cap {
            cap.pace(bytes).await;
        }
    }

    /// A reply's body as text, each chunk charged to `--max-rate` as it
    /// comes; empty when the reply breaks off (as unreadable as none).
    async fn read_text(&self, mut response: reqwest::Response) -> String {
        self.pace(HEAD_BYTES).await;
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    self.pace(chunk.len()).await;
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(_) => return String::new(),
            }
        }
        String::from_utf8(body)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    async fn wait(&self, gate: &MailboxGate, retry_after: Option<Duration>, attempt: u32) {
        self.counts.throttled.fetch_add(1, Ordering::Relaxed);
        gate.pause(retry_after.unwrap_or_else(|| backoff(attempt)))
            .await;
    }
}

/// Without `Retry-After`: 1, 2, 4 ... 32 seconds.
fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(1 << attempt.saturating_sub(1).min(5))
}

/// `Retry-After` in seconds, which Graph may send with a fraction
/// ("Retry-After: 2.128", throttling guidance); an HTTP date is not used
/// by Graph.
fn parse_retry_after(v: &str) -> Option<Duration> {
    let secs: f64 = v.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(3600.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_whole_and_fractional_seconds() {
        assert_eq!(parse_retry_after("10"), Some(Duration::from_secs(10)));
        assert_eq!(
            parse_retry_after(" 2.128"),
            Some(Duration::from_millis(2128))
        );
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
