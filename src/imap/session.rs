//! An authenticated IMAP session and the commands mailferry sends.
//!
//! Commands go through [`ImapSession::run`], which reads every response up
//! to the command's own tagged reply and fails on NO, BAD or BYE: async-imap's
//! own FETCH stream ends quietly on a tagged NO, and a short answer must
//! never pass for a complete one. Every command is counted, so a run can
//! report its round trips.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use async_imap::imap_proto::{
    AttributeValue, MailboxDatum, NameAttribute, Response, ResponseCode, Status, StatusAttribute,
};
use async_imap::imap_proto::{MessageSection, SectionPath};
use chrono::{DateTime, FixedOffset};
use tokio::net::TcpStream;

use super::wire::{Spill, SpillFailed, Spilled, Wire, WireStats};
use crate::config::{AuthMethod, Compression, Password, ServerSettings};

/// The longest a TCP connect may take, however long the I/O timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A server's refusal, with its own words.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error("{command} refused by the server: {text}")]
    No { command: String, text: String },
    #[error("{command} rejected by the server as malformed: {text}")]
    Bad { command: String, text: String },
    #[error("the server closed the connection: {0}")]
    Bye(String),
    #[error("the connection was lost")]
    ConnectionLost,
    #[error("the server sent nothing for {0:?}")]
    Timeout(Duration),
    #[error("the server sent a response that is not IMAP: {0}")]
    Unparseable(String),
    /// Writing what the server sent to the store's disk failed (a full
    /// disk): the session is unusable, but a new one will not help now.
    #[error("{0}")]
    LocalWrite(String),
    /// The TLS handshake failed for a reason that will not go away by
    /// trying again (a certificate that does not verify, a port that does
    /// not speak TLS).
    #[error("{0}")]
    TlsRefused(String),
    /// The server's name does not resolve, or nothing accepts connections
    /// at its address and port.
    #[error("{0}")]
    Unreachable(String),
}

impl ImapError {
    /// The server could not be reached or the link to it broke (BYE, a
    /// lost or silent connection); not a refusal of a command.
    pub fn is_link_failure(&self) -> bool {
        matches!(
            self,
            ImapError::Bye(_)
                | ImapError::Unreachable(_)
                | ImapError::ConnectionLost
                | ImapError::Timeout(_)
        )
    }
}

/// A TLS failure in words that say what to do about it.
fn tls_advice(e: &std::io::Error, address: &str) -> String {
    use rustls::{CertificateError, Error as Tls};
    let text = e.to_string();
    match e.get_ref().and_then(|i| i.downcast_ref::<Tls>()) {
        Some(Tls::InvalidMessage(_)) => format!(
            "{address} does not speak TLS ({text}): is it a plain-IMAP port such as 143? \
             mailferry connects with implicit TLS, as on port 993"
        ),
        Some(Tls::InvalidCertificate(CertificateError::UnknownIssuer)) => format!(
            "{address}'s certificate is signed by an authority this machine does not trust \
             ({text}): for a private CA, give its certificate with --ca-file (source) or \
             --target-ca-file (target)"
        ),
        Some(Tls::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        )) => format!(
            "{address}'s certificate is for another name ({text}): connect by the name on \
             the certificate"
        ),
        Some(Tls::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        )) => format!("{address}'s certificate has expired ({text})"),
        _ => text,
    }
}

/// async-imap reports a response it cannot parse as the parser's debug
/// output (the input as a list of decimal bytes) and the whole buffer: keep
/// the offending line, as text, cut short.
fn unparseable(e: &std::io::Error) -> Option<ImapError> {
    let text = e.to_string();
    let (_, rest) = text.split_once(" during parsing of \"")?;
    let rest = rest.strip_suffix('"').unwrap_or(rest);
    let line = rest.split("\\r\\n").next().unwrap_or(rest);
    let line = line.split("\\n").next().unwrap_or(line);
    let line = line.replace("\\\"", "\"").replace("\\\\", "\\");
    Some(ImapError::Unparseable(cut(&line, 200)))
}

/// At most `max` bytes of `s`, on a character boundary, with … when cut.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The personal namespace: folder names start with `prefix` (wire form)
/// and nest with `delimiter`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    pub prefix: String,
    pub delimiter: Option<String>,
}

/// A LIST answer as it comes: folders, and their STATUS with LIST-STATUS.
#[derive(Default)]
struct Listing {
    folders: Vec<ListedFolder>,
    statuses: HashMap<String, MailboxStatus>,
}

impl Listing {
    fn absorb(&mut self, r: &Response<'_>) {
        match r {
            Response::MailboxData(MailboxDatum::List(l)) => self.folders.push(ListedFolder {
                wire_name: unescape(&l.name),
                delimiter: l.delimiter.as_ref().map(|d| unescape(d)),
                attributes: l.name_attributes.iter().map(attribute_name).collect(),
                status: None,
            }),
            Response::MailboxData(MailboxDatum::Status { mailbox, status }) => {
                self.statuses.insert(unescape(mailbox), status_from(status));
            }
            _ => {}
        }
    }

    fn folders(mut self) -> Vec<ListedFolder> {
        for f in &mut self.folders {
            f.status = self.statuses.remove(&f.wire_name);
        }
        self.folders
    }
}

/// The first personal namespace of a `NAMESPACE` answer (the text after
/// the word): `(("INBOX." ".")) NIL NIL` gives "INBOX." and ".".
fn parse_personal_namespace(text: &str) -> Option<Namespace> {
    let rest = text.trim_start().strip_prefix("((")?;
    let (prefix, rest) = quoted_string(rest)?;
    let rest = rest.trim_start();
    let delimiter = if rest.len() >= 3 && rest[..3].eq_ignore_ascii_case("NIL") {
        None
    } else {
        Some(quoted_string(rest)?.0)
    };
    Some(Namespace { prefix, delimiter })
}

/// A quoted string at the start of `s` (after spaces), unescaped, and the rest.
fn quoted_string(s: &str) -> Option<(String, &str)> {
    let s = s.trim_start().strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?.1),
            '"' => return Some((out, &s[i + 1..])),
            c => out.push(c),
        }
    }
    None
}

/// What a server says of a mailbox's storage quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageQuota {
    /// No QUOTA extension: the server does not say.
    NotOffered,
    /// QUOTA, and no storage limit set for the mailbox.
    NoneSet,
    /// Bytes used and allowed.
    Limit { used: u64, limit: u64 },
}

pub use crate::outcome::LoginRefused;

/// async-imap hands over a refusal as the debug form of its response
/// (`code: None, info: Some("[AUTHENTICATIONFAILED] Authentication failed.")`):
/// keep only the server's own words.
fn server_words(text: &str) -> String {
    let Some(start) = text.find("info: Some(\"") else {
        return text.to_string();
    };
    let rest = &text[start + 12..];
    let end = rest.rfind("\")").unwrap_or(rest.len());
    rest[..end].replace("\\\"", "\"").replace("\\\\", "\\")
}

/// What the server offers, upper-cased.
#[derive(Debug, Clone, Default)]
pub struct Capabilities(HashSet<String>);

impl Capabilities {
    pub fn has(&self, name: &str) -> bool {
        self.0.contains(&name.to_ascii_uppercase())
    }

    /// The value of a `NAME=value` capability, such as APPENDLIMIT=35882577.
    pub fn value(&self, name: &str) -> Option<&str> {
        let prefix = format!("{}=", name.to_ascii_uppercase());
        self.0.iter().find_map(|c| c.strip_prefix(&prefix))
    }
}

/// A folder as LIST (and, with LIST-STATUS, STATUS) describes it.
#[derive(Debug, Clone)]
pub struct ListedFolder {
    /// The name as the server spells it (modified UTF-7), unescaped.
    pub wire_name: String,
    pub delimiter: Option<String>,
    pub attributes: Vec<String>,
    pub status: Option<MailboxStatus>,
}

impl ListedFolder {
    pub fn is_selectable(&self) -> bool {
        !self.attributes.iter().any(|a| {
            a.eq_ignore_ascii_case("\\Noselect") || a.eq_ignore_ascii_case("\\NonExistent")
        })
    }
}

/// STATUS or SELECT figures for a folder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MailboxStatus {
    pub messages: Option<u32>,
    pub uidnext: Option<u32>,
    pub uidvalidity: Option<u32>,
    pub highestmodseq: Option<u64>,
}

/// What SELECT/EXAMINE reported, plus QRESYNC's answers if asked for.
#[derive(Debug, Clone, Default)]
pub struct Selected {
    pub status: MailboxStatus,
    /// UIDs reported gone by QRESYNC `VANISHED (EARLIER)`.
    pub vanished: Vec<u32>,
    /// Flag changes reported by QRESYNC.
    pub changed: Vec<FetchedMessage>,
}

impl Selected {
    /// Takes in one response to SELECT or EXAMINE.
    fn absorb(&mut self, r: &Response<'_>) {
        match r {
            Response::MailboxData(MailboxDatum::Exists(n)) => self.status.messages = Some(*n),
            Response::Data { outcome, .. } => match &outcome.code {
                Some(ResponseCode::UidValidity(v)) => self.status.uidvalidity = Some(*v),
                Some(ResponseCode::UidNext(v)) => self.status.uidnext = Some(*v),
                Some(ResponseCode::HighestModSeq(v)) => self.status.highestmodseq = Some(*v),
                _ => {}
            },
            Response::Vanished { uids, .. } => {
                for range in uids {
                    self.vanished.extend(range.clone());
                }
            }
            Response::Fetch(_, attrs) => self.changed.push(fetched_from(attrs)),
            _ => {}
        }
    }
}

/// Folders per pipelined round trip: a few hundred short commands, so that
/// neither side's socket buffers fill while the other is still writing.
pub const PIPELINE_FOLDERS: usize = 100;

/// A folder's figures and every message's UID and flags (see
/// [`ImapSession::flag_listings`]).
#[derive(Debug, Clone, Default)]
pub struct FlagListing {
    pub status: MailboxStatus,
    /// (UID, flags), by UID.
    pub messages: Vec<(u32, Vec<String>)>,
}

/// What an APPEND got back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// APPENDUID (UIDPLUS): the folder's UIDVALIDITY and the new UID.
    pub uid: Option<(u32, u32)>,
}

/// Whether `tag` is one this session gave a command written ahead
/// (`P1`, `P2`, ... up to `written`).
fn ours(tag: &str, written: u64) -> bool {
    tag.strip_prefix('P')
        .and_then(|n| n.parse::<u64>().ok())
        .is_some_and(|n| n >= 1 && n <= written)
}

/// An APPEND written ahead of its answer.
#[must_use = "its answer must be read"]
pub struct AppendAhead {
    tag: async_imap::imap_proto::RequestId,
}

/// What a tagged OK carried that callers need.
#[derive(Debug, Default)]
struct TaggedOk {
    append_uid: Option<(u32, u32)>,
}

/// A command's tagged reply: OK (with what callers need of it), or the
/// server's refusal in its own words.
fn tagged_outcome(
    verb: &str,
    status: &Status,
    outcome: &async_imap::imap_proto::Outcome<'_>,
) -> std::result::Result<TaggedOk, ImapError> {
    let text = outcome.information.as_deref().unwrap_or("");
    let code = outcome
        .code
        .as_ref()
        .map(|c| format!("[{}] ", code_name(c)))
        .unwrap_or_default();
    match status {
        Status::Ok => Ok(TaggedOk {
            append_uid: match &outcome.code {
                Some(ResponseCode::AppendUid(v, uids)) => first_uid(uids).map(|u| (*v, u)),
                _ => None,
            },
        }),
        Status::No => Err(ImapError::No {
            command: verb.to_string(),
            text: format!("{code}{text}"),
        }),
        _ => Err(ImapError::Bad {
            command: verb.to_string(),
            text: format!("{code}{text}"),
        }),
    }
}

enum Step {
    Done(std::result::Result<TaggedOk, ImapError>),
    /// The tagged answer to an APPEND written ahead, before the one awaited.
    Early(String, std::result::Result<TaggedOk, ImapError>),
    Bye(String),
    Continue,
    More,
}

fn first_uid(uids: &[async_imap::imap_proto::rfc4315::UidSetMember]) -> Option<u32> {
    use async_imap::imap_proto::rfc4315::UidSetMember;
    match uids.first()? {
        UidSetMember::Uid(u) => Some(*u),
        UidSetMember::UidRange(r) => Some(*r.start()),
    }
}

/// One FETCH response, with the items mailferry asks for.
#[derive(Debug, Clone, Default)]
pub struct FetchedMessage {
    pub uid: u32,
    pub flags: Option<Vec<String>>,
    pub internal_date: Option<DateTime<FixedOffset>>,
    pub size: Option<u32>,
    pub modseq: Option<u64>,
    /// `BODY[]` (or `BINARY[]`, when that was asked for).
    pub body: Option<Vec<u8>>,
    /// `BODY[HEADER.FIELDS (...)]` or `BODY[HEADER]`.
    pub header_fields: Option<Vec<u8>>,
    /// Partial `BODY[]<offset>` answers: (offset, bytes).
    pub partials: Vec<(u32, Vec<u8>)>,
    /// `BODY[TEXT]` (or a partial of it).
    pub text: Option<Vec<u8>>,
    /// Whether the response named its UID (a FETCH without one is an
    /// unsolicited update; one that says `UID 0` is a broken server).
    pub has_uid: bool,
    /// `BODY[]` that was too large to hold: it is in this file instead
    /// (and `body` is `None`); see [`ImapSession::spill_large_literals`].
    pub spilled: Option<Spilled>,
    /// A partial `BODY[]<offset>` answer too large to hold, in its file.
    pub spilled_partial: Option<(u32, Spilled)>,
}

impl FetchedMessage {
    /// The body's length, in memory or in its file.
    pub fn body_len(&self) -> Option<u64> {
        match (&self.body, &self.spilled) {
            (Some(b), _) => Some(b.len() as u64),
            (None, Some(s)) => Some(s.len),
            (None, None) => None,
        }
    }
}

impl FetchedMessage {
    /// The Message-ID from a `BODY[HEADER.FIELDS (MESSAGE-ID)]` answer, in
    /// the form mail-parser stores it (no angle brackets).
    pub fn message_id(&self) -> Option<String> {
        let raw = self.header_fields.as_deref()?;
        let text = String::from_utf8_lossy(raw);
        let unfolded = text.replace("\r\n ", " ").replace("\r\n\t", " ");
        let line = unfolded.lines().find(|l| {
            l.get(..11)
                .is_some_and(|h| h.eq_ignore_ascii_case("message-id:"))
        })?;
        let value = line[11..].trim();
        let value = value
            .strip_prefix('<')
            .and_then(|v| v.split('>').next())
            .unwrap_or(value)
            .trim();
        (!value.is_empty()).then(|| value.to_string())
    }
}

/// An authenticated connection.
pub struct ImapSession {
    session: async_imap::Session<Wire>,
    caps: Capabilities,
    wire: Arc<WireStats>,
    commands: u64,
    qresync: bool,
    selected: Option<String>,
    io_timeout: Duration,
    spill: Option<Spill>,
    /// A FETCH was left before its end: its answers would be read as the
    /// next command's, so the session is not used again.
    abandoned: bool,
    /// UIDNEXT of the selected folder, as SELECT/EXAMINE said.
    selected_uidnext: Option<u32>,
    /// Tags given to pipelined commands so far.
    pipelined: u64,
    /// Answers that came before the one awaited, by tag.
    early: HashMap<String, std::result::Result<TaggedOk, ImapError>>,
    /// Set-up commands (ID, ENABLE) written with the first command after
    /// login rather than on their own: they cost no round trip.
    setup: Vec<String>,
}

/// UIDs per `UID SEARCH` in a large folder: an answer line of at most a
/// couple of MiB.
const SEARCH_WINDOW: u32 = 200_000;

impl ImapSession {
    /// Connects with TLS, logs in, identifies itself, and turns on
    /// compression and QRESYNC when the server offers them. `password` is
    /// the access token when the method is XOAUTH2.
    pub async fn connect(
        server: &ServerSettings,
        tls: Arc<rustls::ClientConfig>,
        username: &str,
        password: &Password,
    ) -> Result<ImapSession> {
        let address = format!("{}:{}", server.host, server.port);
        // One inactivity timeout for every step: a server that stalls while
        // greeting, in the TLS handshake or at login is as dead as one that
        // stalls mid-FETCH.
        let silence = server.io_timeout;
        let wait = CONNECT_TIMEOUT.min(silence);
        let addrs: Vec<std::net::SocketAddr> = tokio::time::timeout(
            wait,
            tokio::net::lookup_host((server.host.as_str(), server.port)),
        )
        .await
        .map_err(|_| ImapError::Timeout(wait))
        .with_context(|| format!("cannot look up the server name {} (DNS)", server.host))?
        .map_err(|e| {
            ImapError::Unreachable(format!(
                "cannot find the server {}: the name does not resolve (DNS: {e}); check the \
                 host name",
                server.host
            ))
        })?
        .collect();
        let tcp = tokio::time::timeout(wait, TcpStream::connect(&addrs[..]))
            .await
            .map_err(|_| ImapError::Timeout(wait))
            .with_context(|| format!("cannot connect to {address}"))?
            .map_err(|e| ImapError::Unreachable(format!("cannot connect to {address}: {e}")))?;
        tcp.set_nodelay(true).ok();
        let peer = tcp
            .peer_addr()
            .with_context(|| format!("cannot connect to {address}"))?;
        let name = rustls::pki_types::ServerName::try_from(server.host.clone())
            .with_context(|| format!("{:?} is not a valid server name", server.host))?;
        let tls_stream = tokio::time::timeout(
            silence,
            tokio_rustls::TlsConnector::from(tls).connect(name, tcp),
        )
        .await
        .map_err(|_| ImapError::Timeout(silence))
        .with_context(|| format!("TLS handshake with {address}"))?
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => {
                anyhow::Error::from(ImapError::TlsRefused(tls_advice(&e, &address)))
            }
            _ => anyhow::Error::from(e),
        })
        .with_context(|| format!("TLS handshake with {address} failed"))?;
        let wire = Wire::new(tls_stream, server.max_rate.clone());
        let stats = wire.stats();
        let mut client = async_imap::Client::new(wire);
        let greeting = tokio::time::timeout(silence, client.read_response())
            .await
            .map_err(|_| ImapError::Timeout(silence))
            .with_context(|| format!("{address} sent no greeting"))?
            .with_context(|| format!("reading the greeting of {address}"))?
            .ok_or(ImapError::ConnectionLost)
            .with_context(|| format!("{address} closed the connection before its greeting"))?;
        if let Response::Data {
            status: Status::Bye,
            outcome,
        } = greeting.parsed()
        {
            bail!(
                "{address} refused the connection: {}",
                outcome.information.as_deref().unwrap_or("BYE")
            );
        }
        if password.expose().contains(['\r', '\n', '\0']) {
            bail!("the password for {username} holds a line break or NUL, which IMAP cannot send");
        }
        let refused = |e: async_imap::error::Error| -> anyhow::Error {
            match e {
                async_imap::error::Error::No(text) | async_imap::error::Error::Bad(text) => {
                    LoginRefused {
                        username: username.to_string(),
                        server: address.clone(),
                        text: server_words(&text),
                    }
                    .into()
                }
                async_imap::error::Error::Validate(_) => anyhow!(
                    "the user name or password for {username} holds characters IMAP LOGIN cannot send; try --auth plain"
                ),
                // A broken connection stays one, so it is tried again.
                async_imap::error::Error::Io(io) => {
                    anyhow::Error::from(io).context(format!("login at {address} failed"))
                }
                async_imap::error::Error::ConnectionLost => {
                    anyhow::Error::from(ImapError::ConnectionLost)
                        .context(format!("login at {address} failed"))
                }
                other => anyhow!("login at {address} failed: {other}"),
            }
        };
        let login = async {
            match server.auth {
                AuthMethod::Login => client
                    .login_with_capabilities(username, password.expose())
                    .await
                    .map_err(|(e, _)| refused(e)),
                AuthMethod::Plain => client
                    .authenticate("PLAIN", PlainAuth { username, password })
                    .await
                    .map(|s| (s, None))
                    .map_err(|(e, _)| refused(e)),
                AuthMethod::Xoauth2 => client
                    .authenticate(
                        "XOAUTH2",
                        Xoauth2 {
                            username,
                            token: password,
                            answered: false,
                        },
                    )
                    .await
                    .map(|s| (s, None))
                    .map_err(|(e, _)| refused(e)),
            }
        };
        // Login is a few short lines each way: silence for the whole of it
        // is silence.
        let (session, caps) = tokio::time::timeout(silence, login)
            .await
            .map_err(|_| ImapError::Timeout(silence))
            .with_context(|| format!("logging in at {address}"))??;
        let mut imap = ImapSession {
            session,
            caps: Capabilities::default(),
            wire: stats,
            commands: 1,
            qresync: false,
            selected: None,
            io_timeout: server.io_timeout,
            spill: None,
            abandoned: false,
            selected_uidnext: None,
            pipelined: 0,
            early: HashMap::new(),
            setup: Vec::new(),
        };
        imap.caps = match caps {
            Some(c) if c.iter().count() > 1 => capabilities_from(&c),
            _ => imap.capability().await?,
        };
        // ID and ENABLE go with the next command (LIST, COMPRESS, SELECT):
        // no answer of theirs is needed before it is sent.
        let mut setup = Vec::new();
        if imap.caps.has("ID") {
            let version = env!("CARGO_PKG_VERSION");
            setup.push(format!(
                "ID (\"name\" \"mailferry\" \"version\" \"{version}\")"
            ));
        }
        let enable = if imap.caps.has("QRESYNC") {
            Some("ENABLE QRESYNC")
        } else if imap.caps.has("CONDSTORE") {
            Some("ENABLE CONDSTORE")
        } else {
            None
        };
        setup.extend(enable.map(str::to_string));
        imap.setup = setup;
        // A refused ENABLE QRESYNC fails the command it went with.
        imap.qresync = enable == Some("ENABLE QRESYNC");
        let compress = match server.compress {
            Compression::Always => true,
            Compression::Never => false,
            Compression::Auto => !peer.ip().is_loopback(),
        };
        if compress && imap.caps.has("COMPRESS=DEFLATE") {
            imap.run("COMPRESS DEFLATE", |_| Ok(())).await?;
            imap.session.get_mut().start_deflate();
        }
        Ok(imap)
    }

    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// From now on, a message body larger than `threshold` bytes is
    /// written to a file in `dir` as it arrives instead of being held in
    /// memory; it comes back as [`FetchedMessage::spilled`]. The caller
    /// removes the files it is handed.
    pub fn spill_large_literals(&mut self, dir: std::path::PathBuf, threshold: u64) {
        let spill = Spill::new(dir, threshold);
        self.session.get_mut().spill_to(spill.clone());
        self.spill = Some(spill);
    }

    /// Where this connection's large literals go, for a caller that
    /// continues one the connection was cut in the middle of.
    pub fn spill(&self) -> Option<Spill> {
        self.spill.clone()
    }

    /// Swaps a spill token in `m.body` (or in a partial answer) for its file.
    fn resolve_spill(&self, m: &mut FetchedMessage) {
        let Some(spill) = &self.spill else {
            return;
        };
        if let Some(body) = &m.body
            && let Some(file) = spill.take(body)
        {
            m.body = None;
            m.spilled = Some(file);
        }
        if let Some(at) = m.partials.iter().position(|(_, b)| spill.is_token(b)) {
            let (offset, token) = m.partials.remove(at);
            if let Some(file) = spill.take(&token) {
                m.spilled_partial = Some((offset, file));
            }
        }
    }

    pub fn has_condstore(&self) -> bool {
        self.caps.has("CONDSTORE") || self.qresync
    }

    /// The folder opened by the last successful EXAMINE.
    pub fn selected(&self) -> Option<&str> {
        self.selected.as_deref()
    }

    pub fn has_qresync(&self) -> bool {
        self.qresync
    }

    /// Round trips so far: each command waited for is one, and so is each
    /// window of commands sent together ([`ImapSession::pipeline`]).
    pub fn round_trips(&self) -> u64 {
        self.commands
    }

    /// Sends `commands` one after another without waiting (RFC 3501 5.5)
    /// and reads their answers in order: one round trip for all of them.
    /// `on_data` gets the index of the command each untagged response
    /// answers. Each command's outcome is returned; a refusal of one does
    /// not stop the others. Callers keep windows small (a few hundred
    /// short commands) so that neither side's buffers fill while the other
    /// is still writing.
    pub async fn pipeline<F>(
        &mut self,
        commands: &[String],
        mut on_data: F,
    ) -> Result<Vec<std::result::Result<(), ImapError>>>
    where
        F: FnMut(usize, &Response<'_>) -> Result<()>,
    {
        if commands.is_empty() {
            return Ok(Vec::new());
        }
        if self.abandoned {
            return Err(anyhow::Error::from(ImapError::ConnectionLost)
                .context("not sending: an earlier FETCH was left unread"));
        }
        let mut verbs = Vec::with_capacity(commands.len());
        for c in commands {
            let verb = command_verb(c);
            if c.contains(['\r', '\n', '\0']) {
                bail!("refusing to send {verb}: an argument holds a line break or NUL");
            }
            verbs.push(verb);
        }
        let (setup, tags) = self
            .write_with_setup(commands, "pipelined commands")
            .await?;
        let sent: Vec<_> = tags.into_iter().zip(verbs).collect();
        self.commands += 1;
        self.setup_answers(setup).await?;
        let mut outcomes = Vec::with_capacity(commands.len());
        for (i, (tag, verb)) in sent.into_iter().enumerate() {
            match self.read_until_tagged(&tag, verb, |r| on_data(i, r)).await {
                Ok(_) => outcomes.push(Ok(())),
                Err(e) => match e.downcast::<ImapError>() {
                    Ok(refusal @ (ImapError::No { .. } | ImapError::Bad { .. })) => {
                        outcomes.push(Err(refusal))
                    }
                    Ok(other) => return Err(other.into()),
                    Err(e) => return Err(e),
                },
            }
        }
        Ok(outcomes)
    }

    /// Writes the set-up commands still waiting (see `setup`) and then
    /// `commands`, in one write and all with tags of our own (so that an
    /// answer that comes early is known as ours). Returns the set-up's tags
    /// with their commands, whose answers [`Self::setup_answers`] reads
    /// first, and the tags of `commands`.
    #[allow(clippy::type_complexity)]
    async fn write_with_setup(
        &mut self,
        commands: &[String],
        what: &str,
    ) -> Result<(
        Vec<(async_imap::imap_proto::RequestId, String)>,
        Vec<async_imap::imap_proto::RequestId>,
    )> {
        let setup = std::mem::take(&mut self.setup);
        let mut lines = setup.clone();
        lines.extend_from_slice(commands);
        let mut tags = self.write_tagged(&lines, what).await?;
        let own = tags.split_off(setup.len());
        Ok((tags.into_iter().zip(setup).collect(), own))
    }

    /// Writes command lines with tags of our own (async-imap never gives
    /// them) in one write: one packet and one TLS record where they fit,
    /// not one per command. Returns their tags, in order.
    async fn write_tagged(
        &mut self,
        commands: &[String],
        what: &str,
    ) -> Result<Vec<async_imap::imap_proto::RequestId>> {
        use tokio::io::AsyncWriteExt as _;
        let mut lines = Vec::new();
        let mut tags = Vec::with_capacity(commands.len());
        for c in commands {
            self.pipelined += 1;
            let tag = format!("P{}", self.pipelined);
            tracing::debug!(target: "mailferry::imap", "C: {tag} {c}");
            lines.extend_from_slice(format!("{tag} {c}\r\n").as_bytes());
            tags.push(async_imap::imap_proto::RequestId(tag));
        }
        if lines.is_empty() {
            return Ok(tags);
        }
        let timeout = self.io_timeout;
        let wire = self.session.get_mut();
        tokio::time::timeout(timeout, async {
            wire.write_all(&lines).await?;
            wire.flush().await
        })
        .await
        .map_err(|_| ImapError::Timeout(timeout))?
        .with_context(|| format!("sending {what}"))?;
        Ok(tags)
    }

    /// Reads the answers to set-up commands written by
    /// [`Self::write_with_setup`]. A refused ID or ENABLE CONDSTORE costs
    /// nothing; QRESYNC was counted on.
    async fn setup_answers(
        &mut self,
        sent: Vec<(async_imap::imap_proto::RequestId, String)>,
    ) -> Result<()> {
        for (tag, command) in sent {
            let verb = command_verb(&command);
            if let Err(e) = self.read_until_tagged(&tag, verb, |_| Ok(())).await {
                match e.downcast::<ImapError>() {
                    Ok(ImapError::No { .. } | ImapError::Bad { .. })
                        if command != "ENABLE QRESYNC" => {}
                    Ok(other) => return Err(other.into()),
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Bytes received and sent on the wire so far.
    pub fn wire_bytes(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.wire.bytes_in.load(Relaxed),
            self.wire.bytes_out.load(Relaxed),
        )
    }

    async fn capability(&mut self) -> Result<Capabilities> {
        let mut caps = HashSet::new();
        self.run("CAPABILITY", |r| {
            if let Response::Capabilities(list) = r {
                for c in list {
                    caps.insert(capability_name(c));
                }
            }
            Ok(())
        })
        .await?;
        Ok(Capabilities(caps))
    }

    /// Sends `command` and feeds every untagged response to `on_data` until
    /// the command's tagged reply, which must be OK. An error from `on_data`
    /// is returned after the reply has been read, so the session stays usable.
    pub async fn run<F>(&mut self, command: &str, on_data: F) -> Result<()>
    where
        F: FnMut(&Response<'_>) -> Result<()>,
    {
        let (tag, verb) = self.send(command).await?;
        self.read_until_tagged(&tag, verb, on_data).await?;
        Ok(())
    }

    /// Sends one command line; returns its tag and its name for messages.
    async fn send(&mut self, command: &str) -> Result<(async_imap::imap_proto::RequestId, String)> {
        let verb = command_verb(command);
        if self.abandoned {
            return Err(
                anyhow::Error::from(ImapError::ConnectionLost).context(format!(
                    "not sending {verb}: an earlier FETCH was left unread"
                )),
            );
        }
        // A line break inside a command would end it early and smuggle the
        // rest in as another command (a folder name from a hostile server).
        if command.contains(['\r', '\n', '\0']) {
            bail!("refusing to send {verb}: an argument holds a line break or NUL");
        }
        self.commands += 1;
        // Never LOGIN or AUTHENTICATE (async-imap's own calls send those):
        // what goes here is logged.
        let (setup, mut tags) = self.write_with_setup(&[command.to_string()], &verb).await?;
        self.setup_answers(setup).await?;
        let tag = tags.pop().expect("one command written");
        Ok((tag, verb))
    }

    /// The next response, waiting as long as bytes keep arriving (a large
    /// message on a slow link takes long), at most `io_timeout` of silence.
    /// Waiting again after a check is safe: the stream keeps what it has
    /// read in its own buffer. Calls `on_response` with it.
    async fn next_response<T>(
        &mut self,
        verb: &str,
        on_response: impl FnOnce(&Response<'_>) -> T,
    ) -> Result<T> {
        let check = (self.io_timeout / 4).min(Duration::from_secs(15));
        let (mut silent, mut seen) = (Duration::ZERO, self.wire_bytes().0);
        let response = loop {
            if let Ok(r) = tokio::time::timeout(check, self.session.read_response()).await {
                break r;
            }
            let now = self.wire_bytes().0;
            if now != seen {
                (silent, seen) = (Duration::ZERO, now);
            } else {
                silent += check;
                if silent >= self.io_timeout {
                    return Err(ImapError::Timeout(self.io_timeout).into());
                }
            }
        };
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                // The local disk, not the server: not a connection error.
                if let Some(local) = e.get_ref().and_then(|i| i.downcast_ref::<SpillFailed>()) {
                    return Err(ImapError::LocalWrite(local.to_string()).into());
                }
                if let Some(parse) = unparseable(&e) {
                    return Err(
                        anyhow::Error::from(parse).context(format!("reading the answer to {verb}"))
                    );
                }
                return Err(anyhow::Error::from(e).context(format!("reading the answer to {verb}")));
            }
        }
        .ok_or(ImapError::ConnectionLost)?;
        Ok(on_response(response.parsed()))
    }

    /// Feeds untagged responses to `on_data` until the tagged reply to
    /// `tag`, which must be OK. An error from `on_data` is returned after the
    /// reply has been read, so the session stays usable.
    async fn read_until_tagged<F>(
        &mut self,
        tag: &async_imap::imap_proto::RequestId,
        verb: String,
        mut on_data: F,
    ) -> Result<TaggedOk>
    where
        F: FnMut(&Response<'_>) -> Result<()>,
    {
        if let Some(answer) = self.early.remove(&tag.0) {
            return Ok(answer?);
        }
        let mut callback_error = None;
        loop {
            let written = self.pipelined;
            let step = self
                .next_response(&verb, |r| match r {
                    Response::Done {
                        tag: t,
                        status,
                        outcome,
                    } if t == tag => Step::Done(tagged_outcome(&verb, status, outcome)),
                    // A server may answer commands written together out of
                    // order (RFC 3501 5.5), or a proxy in front of it may.
                    Response::Done {
                        tag: t,
                        status,
                        outcome,
                    } if ours(&t.0, written) => {
                        Step::Early(t.0.clone(), tagged_outcome(&verb, status, outcome))
                    }
                    Response::Data {
                        status: Status::Bye,
                        outcome,
                    } => Step::Bye(outcome.information.as_deref().unwrap_or("").to_string()),
                    Response::Continue { .. } => Step::Continue,
                    other => {
                        if callback_error.is_none()
                            && let Err(e) = on_data(other)
                        {
                            callback_error = Some(e);
                        }
                        Step::More
                    }
                })
                .await?;
            match step {
                Step::Done(Ok(ok)) => {
                    return match callback_error {
                        Some(e) => Err(e),
                        None => Ok(ok),
                    };
                }
                Step::Done(Err(e)) => return Err(e.into()),
                Step::Early(t, outcome) => {
                    self.early.insert(t, outcome);
                }
                Step::Bye(text) => return Err(ImapError::Bye(text).into()),
                Step::Continue | Step::More => {}
            }
        }
    }

    /// The APPEND command line for `body`, up to its literal: a BINARY
    /// literal for bytes a plain literal cannot carry (NUL), or with
    /// `plain_nul` a plain one where the server lacks BINARY.
    fn append_line(
        &self,
        folder: &str,
        flags: &str,
        internal_date: Option<&str>,
        body: &[u8],
        plain_nul: bool,
        non_sync: bool,
    ) -> Result<String> {
        let has_nul = body.contains(&0);
        let binary = has_nul && self.caps.has("BINARY");
        if has_nul && !binary && !plain_nul {
            bail!(
                "the message holds NUL bytes, which this server cannot take \
                 (no BINARY extension)"
            );
        }
        let date = internal_date
            .map(|d| format!("\"{d}\" "))
            .unwrap_or_default();
        Ok(format!(
            "APPEND {} ({flags}) {date}{}{{{}{}}}",
            quote(folder),
            if binary { "~" } else { "" },
            body.len(),
            if non_sync { "+" } else { "" }
        ))
    }

    /// Leaves the connection unused from now on (answers owed to it, or a
    /// command cut short); it is closed, not logged out.
    pub fn abandon(&mut self) {
        self.abandoned = true;
        self.session.get_ref().reset_on_close();
    }

    /// Whether APPENDs can be written ahead of their answers: the server
    /// takes non-synchronising literals (LITERAL+, RFC 7888), so no
    /// go-ahead is awaited per message.
    pub fn appends_ahead(&self) -> bool {
        self.caps.has("LITERAL+")
    }

    /// Writes an APPEND (command and message) without reading its answer;
    /// [`ImapSession::append_answer`] reads the answers in the order they
    /// were written. Only where [`ImapSession::appends_ahead`].
    pub async fn append_ahead(
        &mut self,
        folder: &str,
        flags: &str,
        internal_date: Option<&str>,
        body: &[u8],
        plain_nul: bool,
    ) -> Result<AppendAhead> {
        use tokio::io::AsyncWriteExt as _;
        if self.abandoned {
            return Err(anyhow::Error::from(ImapError::ConnectionLost)
                .context("not sending APPEND: an earlier FETCH was left unread"));
        }
        if !self.setup.is_empty() {
            let (setup, _) = self.write_with_setup(&[], "ID and ENABLE").await?;
            self.setup_answers(setup).await?;
        }
        let line = self.append_line(folder, flags, internal_date, body, plain_nul, true)?;
        if line.contains(['\r', '\n', '\0']) {
            bail!("refusing to send APPEND: an argument holds a line break or NUL");
        }
        self.pipelined += 1;
        let tag = format!("P{}", self.pipelined);
        tracing::debug!(target: "mailferry::imap", "C: {tag} {line}");
        let head = format!("{tag} {line}\r\n");
        // Small messages go in one write with their command line (one TLS
        // record where they fit); large ones in chunks, each given
        // `io_timeout`, so that only silence times out on a slow link.
        let mut parts: Vec<&[u8]> = Vec::new();
        let small;
        if body.len() <= 16 * 1024 {
            let mut one = Vec::with_capacity(head.len() + body.len() + 2);
            one.extend_from_slice(head.as_bytes());
            one.extend_from_slice(body);
            one.extend_from_slice(b"\r\n");
            small = one;
            parts.push(&small);
        } else {
            parts.push(head.as_bytes());
            parts.extend(body.chunks(64 * 1024));
            parts.push(b"\r\n");
        }
        let timeout = self.io_timeout;
        let wire = self.session.get_mut();
        for part in parts {
            tokio::time::timeout(timeout, wire.write_all(part))
                .await
                .map_err(|_| ImapError::Timeout(timeout))?
                .context("sending a message")?;
        }
        tokio::time::timeout(timeout, wire.flush())
            .await
            .map_err(|_| ImapError::Timeout(timeout))?
            .context("sending a message")?;
        Ok(AppendAhead {
            tag: async_imap::imap_proto::RequestId(tag),
        })
    }

    /// Reads the answer to an APPEND written ahead; answers come in the
    /// order the APPENDs were written. `waited` counts a round trip: the
    /// caller says when this read is the first after a window was written.
    pub async fn append_answer(&mut self, ahead: &AppendAhead, waited: bool) -> Result<Appended> {
        if waited {
            self.commands += 1;
        }
        let ok = self
            .read_until_tagged(&ahead.tag, "APPEND".to_string(), |_| Ok(()))
            .await?;
        Ok(Appended { uid: ok.append_uid })
    }

    /// The answer to an APPEND written ahead if it has already come, so
    /// that a throttle is heard before more is written; `None` without
    /// waiting if not. Giving up at the first wait loses nothing: the
    /// stream keeps what it has read, and an answer to another APPEND
    /// read on the way is kept for its turn.
    pub async fn append_answer_now(&mut self, ahead: &AppendAhead) -> Option<Result<Appended>> {
        let read = self.read_until_tagged(&ahead.tag, "APPEND".to_string(), |_| Ok(()));
        let ok = tokio::time::timeout(Duration::ZERO, read).await.ok()?;
        Some(ok.map(|ok| Appended { uid: ok.append_uid }))
    }

    /// APPENDs a message with its flags and INTERNALDATE, bytes unchanged.
    /// Uses LITERAL+ when offered (no wait for the server's go-ahead) and a
    /// BINARY literal for bytes a plain literal cannot carry (NUL); with
    /// `plain_nul`, a server without BINARY gets them in a plain literal.
    pub async fn append(
        &mut self,
        folder: &str,
        flags: &str,
        internal_date: Option<&str>,
        body: &[u8],
        plain_nul: bool,
    ) -> Result<Appended> {
        let non_sync = self.caps.has("LITERAL+");
        let command = self.append_line(folder, flags, internal_date, body, plain_nul, non_sync)?;
        let (tag, verb) = self.send(&command).await?;
        if !non_sync {
            // The server says go ahead, or refuses at once (too big, ...).
            loop {
                let step = self
                    .next_response(&verb, |r| match r {
                        Response::Continue { .. } => Ok(true),
                        Response::Done {
                            tag: t,
                            status,
                            outcome,
                        } if *t == tag => Err((
                            if matches!(status, Status::No) {
                                "NO"
                            } else {
                                "BAD"
                            },
                            format!(
                                "{}{}",
                                outcome
                                    .code
                                    .as_ref()
                                    .map(|c| format!("[{}] ", code_name(c)))
                                    .unwrap_or_default(),
                                outcome.information.as_deref().unwrap_or("")
                            ),
                        )),
                        Response::Data {
                            status: Status::Bye,
                            outcome,
                        } => Err((
                            "BYE",
                            outcome.information.as_deref().unwrap_or("").to_string(),
                        )),
                        _ => Ok(false),
                    })
                    .await?;
                match step {
                    Ok(true) => break,
                    Ok(false) => continue,
                    Err(("BYE", text)) => return Err(ImapError::Bye(text).into()),
                    Err(("NO", text)) => {
                        return Err(ImapError::No {
                            command: verb,
                            text,
                        }
                        .into());
                    }
                    Err((_, text)) => {
                        return Err(ImapError::Bad {
                            command: verb,
                            text,
                        }
                        .into());
                    }
                }
            }
        }
        self.write_literal(body).await?;
        let ok = self.read_until_tagged(&tag, verb, |_| Ok(())).await?;
        Ok(Appended { uid: ok.append_uid })
    }

    /// Writes literal bytes and the CRLF that ends the command, giving up
    /// only when nothing moves for `io_timeout`.
    async fn write_literal(&mut self, body: &[u8]) -> Result<()> {
        use tokio::io::AsyncWriteExt as _;
        let timeout = self.io_timeout;
        for chunk in body.chunks(64 * 1024).chain(std::iter::once(&b"\r\n"[..])) {
            tokio::time::timeout(timeout, self.session.get_mut().write_all(chunk))
                .await
                .map_err(|_| ImapError::Timeout(timeout))?
                .context("sending a message")?;
        }
        tokio::time::timeout(timeout, self.session.get_mut().flush())
            .await
            .map_err(|_| ImapError::Timeout(timeout))?
            .context("sending a message")?;
        Ok(())
    }

    /// Leaves the selected folder (UNSELECT, or CLOSE, which expunges
    /// nothing after EXAMINE). Some servers refuse an APPEND into a folder
    /// the connection has open read-only.
    pub async fn unselect(&mut self) -> Result<()> {
        if self.selected.is_none() {
            return Ok(());
        }
        let verb = if self.caps.has("UNSELECT") {
            "UNSELECT"
        } else {
            "CLOSE"
        };
        self.run(verb, |_| Ok(())).await?;
        self.selected = None;
        self.selected_uidnext = None;
        Ok(())
    }

    /// Opens a folder read-write.
    pub async fn select(&mut self, folder: &str) -> Result<Selected> {
        self.open(folder, "SELECT", None).await
    }

    /// CREATE; a folder that already exists is fine. Servers word that
    /// refusal differently (Courier: "Cannot create this folder."), so it
    /// is judged by `[ALREADYEXISTS]` or by LIST showing the folder, never
    /// by the words.
    pub async fn create(&mut self, folder: &str) -> Result<()> {
        let refusal = match self
            .run(&format!("CREATE {}", quote(folder)), |_| Ok(()))
            .await
        {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        let Some(ImapError::No { text, .. }) = refusal.downcast_ref::<ImapError>() else {
            return Err(refusal);
        };
        if text.contains("[ALREADYEXISTS]") {
            return Ok(());
        }
        if self.lists_selectable(folder).await? {
            return Ok(());
        }
        Err(refusal)
    }

    /// Whether `LIST "" folder` shows the folder, able to hold mail.
    pub async fn lists_selectable(&mut self, folder: &str) -> Result<bool> {
        let mut found = false;
        self.run(&format!("LIST \"\" {}", quote(folder)), |r| {
            if let Response::MailboxData(MailboxDatum::List(l)) = r
                && unescape(&l.name) == folder
            {
                let listed = ListedFolder {
                    wire_name: String::new(),
                    delimiter: None,
                    attributes: l.name_attributes.iter().map(attribute_name).collect(),
                    status: None,
                };
                found = listed.is_selectable();
            }
            Ok(())
        })
        .await?;
        Ok(found)
    }

    /// The personal namespace (RFC 2342): where the user's folders live
    /// ("INBOX." on Cyrus and Courier, "" on Dovecot and Exchange) and the
    /// hierarchy delimiter. Without NAMESPACE: no prefix, and the
    /// delimiter of `LIST "" ""`.
    pub async fn personal_namespace(&mut self) -> Result<Namespace> {
        if self.caps.has("NAMESPACE") {
            let slot = self.session.get_ref().namespace_slot();
            slot.lock().unwrap().take();
            self.run("NAMESPACE", |_| Ok(())).await?;
            let answer = slot.lock().unwrap().take();
            if let Some(ns) = answer.as_deref().and_then(parse_personal_namespace) {
                return Ok(ns);
            }
        }
        Ok(Namespace {
            prefix: String::new(),
            delimiter: self.delimiter().await?,
        })
    }

    /// The hierarchy delimiter of the personal namespace (`LIST "" ""`).
    pub async fn delimiter(&mut self) -> Result<Option<String>> {
        let mut delimiter = None;
        self.run("LIST \"\" \"\"", |r| {
            if let Response::MailboxData(MailboxDatum::List(l)) = r {
                delimiter = l.delimiter.as_ref().map(|d| unescape(d));
            }
            Ok(())
        })
        .await?;
        Ok(delimiter)
    }

    /// `UID STORE set change` (for example `+FLAGS.SILENT (\\Seen)`).
    pub async fn uid_store(&mut self, uid_set: &str, change: &str) -> Result<()> {
        self.run(&format!("UID STORE {uid_set} {change}"), |_| Ok(()))
            .await
    }

    /// Lists every folder (under `root` when given), with STATUS figures in
    /// the same round trip when the server has LIST-STATUS.
    pub async fn list(&mut self, root: Option<&str>) -> Result<Vec<ListedFolder>> {
        let command = self.list_command(root);
        let mut listing = Listing::default();
        self.run(&command, |r| {
            listing.absorb(r);
            Ok(())
        })
        .await?;
        Ok(listing.folders())
    }

    /// [`Self::list`] and [`Self::personal_namespace`] in one round trip:
    /// NAMESPACE (or `LIST "" ""` for the delimiter) is written behind the
    /// listing. A namespace the server will not tell is asked for again on
    /// its own, and its error is the second value.
    pub async fn list_and_namespace(
        &mut self,
        root: Option<&str>,
    ) -> Result<(Vec<ListedFolder>, Result<Namespace>)> {
        let has_namespace = self.caps.has("NAMESPACE");
        let second = if has_namespace {
            "NAMESPACE"
        } else {
            "LIST \"\" \"\""
        };
        let slot = self.session.get_ref().namespace_slot();
        slot.lock().unwrap().take();
        let mut listing = Listing::default();
        let mut delimiter = None;
        let outcomes = self
            .pipeline(&[self.list_command(root), second.to_string()], |i, r| {
                match (i, r) {
                    (0, r) => listing.absorb(r),
                    (_, Response::MailboxData(MailboxDatum::List(l))) => {
                        delimiter = l.delimiter.as_ref().map(|d| unescape(d));
                    }
                    _ => {}
                }
                Ok(())
            })
            .await?;
        let mut outcomes = outcomes.into_iter();
        if let Some(Err(refusal)) = outcomes.next() {
            return Err(anyhow::Error::from(refusal));
        }
        let answered = matches!(outcomes.next(), Some(Ok(())));
        let namespace = match (answered, has_namespace) {
            (true, true) => match slot.lock().unwrap().take().as_deref() {
                Some(text) => parse_personal_namespace(text),
                None => None,
            },
            (true, false) => Some(Namespace {
                prefix: String::new(),
                delimiter,
            }),
            (false, _) => None,
        };
        let namespace = match namespace {
            Some(ns) => Ok(ns),
            None => self.personal_namespace().await,
        };
        Ok((listing.folders(), namespace))
    }

    fn list_command(&self, root: Option<&str>) -> String {
        let mut returns = Vec::new();
        if self.caps.has("SPECIAL-USE") {
            returns.push("SPECIAL-USE".to_string());
        }
        if self.caps.has("LIST-STATUS") {
            returns.push(format!("STATUS ({})", self.status_items()));
        }
        let pattern = match root {
            Some(r) => quote(&format!("{}*", r)),
            None => "\"*\"".to_string(),
        };
        if returns.is_empty() {
            format!("LIST \"\" {pattern}")
        } else {
            format!("LIST \"\" {pattern} RETURN ({})", returns.join(" "))
        }
    }

    fn status_items(&self) -> &'static str {
        if self.has_condstore() {
            "MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ"
        } else {
            "MESSAGES UIDNEXT UIDVALIDITY"
        }
    }

    /// STATUS of many folders, [`PIPELINE_FOLDERS`] per round trip; a
    /// folder the server refuses gets its refusal.
    pub async fn statuses(
        &mut self,
        folders: &[String],
    ) -> Result<Vec<std::result::Result<MailboxStatus, ImapError>>> {
        let items = self.status_items();
        let mut out = Vec::with_capacity(folders.len());
        for window in folders.chunks(PIPELINE_FOLDERS) {
            let commands: Vec<String> = window
                .iter()
                .map(|f| format!("STATUS {} ({items})", quote(f)))
                .collect();
            let mut found = vec![MailboxStatus::default(); window.len()];
            let outcomes = self
                .pipeline(&commands, |i, r| {
                    if let Response::MailboxData(MailboxDatum::Status { status, .. }) = r {
                        found[i] = status_from(status);
                    }
                    Ok(())
                })
                .await?;
            out.extend(outcomes.into_iter().zip(found).map(|(o, s)| o.map(|()| s)));
        }
        Ok(out)
    }

    /// Opens each folder read-only and lists every message's UID and flags
    /// (`EXAMINE` + `UID FETCH 1:* (UID FLAGS)`), [`PIPELINE_FOLDERS`]
    /// folders per round trip: how a server without CONDSTORE tells what
    /// changed. Where EXAMINE gives no UIDNEXT (Courier), the listing has
    /// none: [`ImapSession::statuses`] tells it.
    pub async fn flag_listings(
        &mut self,
        folders: &[String],
    ) -> Result<Vec<std::result::Result<FlagListing, ImapError>>> {
        let mut out: Vec<std::result::Result<FlagListing, ImapError>> =
            Vec::with_capacity(folders.len());
        for window in folders.chunks(PIPELINE_FOLDERS) {
            let mut commands = Vec::with_capacity(window.len() * 2);
            for f in window {
                commands.push(format!("EXAMINE {}", quote(f)));
                commands.push("UID FETCH 1:* (UID FLAGS)".to_string());
            }
            let mut found: Vec<FlagListing> = vec![FlagListing::default(); window.len()];
            let outcomes = self
                .pipeline(&commands, |i, r| {
                    let listing = &mut found[i / 2];
                    match r {
                        Response::MailboxData(MailboxDatum::Exists(n)) => {
                            listing.status.messages = Some(*n)
                        }
                        Response::Data { outcome, .. } => match &outcome.code {
                            Some(ResponseCode::UidValidity(v)) => {
                                listing.status.uidvalidity = Some(*v)
                            }
                            Some(ResponseCode::UidNext(v)) => listing.status.uidnext = Some(*v),
                            _ => {}
                        },
                        Response::Fetch(_, attrs) if i % 2 == 1 => {
                            let m = fetched_from(attrs);
                            if m.has_uid {
                                listing.messages.push((m.uid, m.flags.unwrap_or_default()));
                            }
                        }
                        _ => {}
                    }
                    Ok(())
                })
                .await?;
            let mut outcomes = outcomes.into_iter();
            for (f, mut listing) in window.iter().zip(found) {
                let (examined, fetched) = (outcomes.next(), outcomes.next());
                match (examined, fetched) {
                    (Some(Err(e)), _) => {
                        out.push(Err(e));
                        continue;
                    }
                    // An empty folder: some servers refuse `1:*` there.
                    (_, Some(Err(e))) if listing.status.messages != Some(0) => {
                        out.push(Err(e));
                        continue;
                    }
                    _ => {}
                }
                listing.messages.sort_unstable_by_key(|(uid, _)| *uid);
                listing.messages.dedup_by_key(|(uid, _)| *uid);
                self.selected = Some(f.clone());
                self.selected_uidnext = listing.status.uidnext;
                out.push(Ok(listing));
            }
        }
        Ok(out)
    }

    /// STATUS of one folder.
    pub async fn status(&mut self, folder: &str) -> Result<MailboxStatus> {
        let mut found = MailboxStatus::default();
        let command = format!("STATUS {} ({})", quote(folder), self.status_items());
        self.run(&command, |r| {
            if let Response::MailboxData(MailboxDatum::Status { status, .. }) = r {
                found = status_from(status);
            }
            Ok(())
        })
        .await?;
        Ok(found)
    }

    /// Opens a folder read-only. With QRESYNC and a known state, the server
    /// reports what vanished and which flags changed since `known_modseq`.
    pub async fn examine(&mut self, folder: &str, qresync: Option<(u32, u64)>) -> Result<Selected> {
        self.open(folder, "EXAMINE", qresync).await
    }

    fn open_command(&self, folder: &str, verb: &str, qresync: Option<(u32, u64)>) -> String {
        let mut command = format!("{verb} {}", quote(folder));
        match qresync {
            Some((uidvalidity, modseq)) if self.qresync => {
                command.push_str(&format!(" (QRESYNC ({uidvalidity} {modseq}))"))
            }
            _ if self.has_condstore() => command.push_str(" (CONDSTORE)"),
            _ => {}
        }
        command
    }

    async fn open(
        &mut self,
        folder: &str,
        verb: &str,
        qresync: Option<(u32, u64)>,
    ) -> Result<Selected> {
        let command = self.open_command(folder, verb, qresync);
        let mut selected = Selected::default();
        self.selected = None;
        self.run(&command, |r| {
            selected.absorb(r);
            Ok(())
        })
        .await
        .with_context(|| format!("cannot open folder {}", super::mutf7::display(folder)))?;
        self.selected = Some(folder.to_string());
        self.selected_uidnext = selected.status.uidnext;
        Ok(selected)
    }

    /// [`Self::examine`] of a folder nothing is known of, with the listing
    /// of all its messages (`UID FETCH 1:* (items)`) written behind it: one
    /// round trip for both. The listing is `None` when the server refused
    /// it (some refuse `1:*` in an empty folder): list after the EXAMINE.
    /// A refused EXAMINE leaves no folder selected (RFC 3501 6.3.1), so the
    /// listing behind it cannot answer for another folder.
    /// Each listed message is kept as a `T` made from it as it arrives
    /// (a compact row; a whole folder's `FetchedMessage`s would be large).
    pub async fn examine_and_list<T: From<FetchedMessage>>(
        &mut self,
        folder: &str,
        items: &str,
    ) -> Result<(Selected, Option<Vec<T>>)> {
        let commands = [
            self.open_command(folder, "EXAMINE", None),
            format!("UID FETCH 1:* ({items})"),
        ];
        let mut selected = Selected::default();
        let mut listed = Vec::new();
        self.selected = None;
        let outcomes = self
            .pipeline(&commands, |i, r| {
                match (i, r) {
                    (0, r) => selected.absorb(r),
                    (_, Response::Fetch(_, attrs)) => {
                        let m = fetched_from(attrs);
                        // Without UID: an unsolicited flag update.
                        if m.has_uid {
                            listed.push(T::from(m));
                        }
                    }
                    _ => {}
                }
                Ok(())
            })
            .await
            .with_context(|| format!("cannot open folder {}", super::mutf7::display(folder)))?;
        let mut outcomes = outcomes.into_iter();
        if let Some(Err(refused)) = outcomes.next() {
            return Err(anyhow::Error::from(refused).context(format!(
                "cannot open folder {}",
                super::mutf7::display(folder)
            )));
        }
        self.selected = Some(folder.to_string());
        self.selected_uidnext = selected.status.uidnext;
        let listing = match outcomes.next() {
            Some(Ok(())) => Some(listed),
            _ => None,
        };
        Ok((selected, listing))
    }

    /// `UID FETCH uid_set (items)` whose answers the caller reads one at a
    /// time with [`FetchStream::next`], so it can store or wait between
    /// messages instead of holding the whole answer.
    pub async fn uid_fetch_stream(
        &mut self,
        uid_set: &str,
        items: &str,
    ) -> Result<FetchStream<'_>> {
        let (tag, verb) = self.send(&format!("UID FETCH {uid_set} ({items})")).await?;
        Ok(FetchStream {
            session: self,
            tag,
            verb,
            finished: false,
        })
    }

    /// `UID FETCH uid_set (items) [modifiers]`, calling `on_message` for
    /// each message as it arrives. Returns the UIDs reported VANISHED.
    pub async fn uid_fetch<F>(
        &mut self,
        uid_set: &str,
        items: &str,
        modifiers: Option<&str>,
        mut on_message: F,
    ) -> Result<Vec<u32>>
    where
        F: FnMut(FetchedMessage) -> Result<()>,
    {
        let mut command = format!("UID FETCH {uid_set} ({items})");
        if let Some(m) = modifiers {
            command.push_str(&format!(" ({m})"));
        }
        let mut vanished = Vec::new();
        let spill = self.spill.clone();
        self.run(&command, |r| {
            match r {
                Response::Fetch(_, attrs) => {
                    let mut m = fetched_from(attrs);
                    if let (Some(spill), Some(body)) = (&spill, &m.body)
                        && let Some(file) = spill.take(body)
                    {
                        m.body = None;
                        m.spilled = Some(file);
                    }
                    // A FETCH without UID is an unsolicited flag update
                    // for a message we did not ask about.
                    if m.has_uid {
                        on_message(m)?;
                    }
                }
                Response::Vanished { uids, .. } => {
                    for range in uids {
                        vanished.extend(range.clone());
                    }
                }
                _ => {}
            }
            Ok(())
        })
        .await?;
        Ok(vanished)
    }

    /// `UID SEARCH ALL`: every UID in the selected folder.
    /// Every UID of the selected folder. A folder whose UIDs run past
    /// [`SEARCH_WINDOW`] is searched window by window, so that no answer
    /// line comes near the line bound ([`super::MAX_LINE`]).
    pub async fn uid_search_all(&mut self) -> Result<Vec<u32>> {
        let mut uids = Vec::new();
        let commands: Vec<String> = match self.selected_uidnext {
            Some(next) if next > SEARCH_WINDOW => (0..next.div_ceil(SEARCH_WINDOW))
                .map(|i| {
                    let from = i * SEARCH_WINDOW + 1;
                    // The last window is open-ended: mail may arrive meanwhile.
                    if from + SEARCH_WINDOW >= next {
                        format!("UID SEARCH UID {from}:*")
                    } else {
                        format!("UID SEARCH UID {from}:{}", from + SEARCH_WINDOW - 1)
                    }
                })
                .collect(),
            _ => vec!["UID SEARCH ALL".to_string()],
        };
        for command in commands {
            self.run(&command, |r| {
                if let Response::MailboxData(MailboxDatum::Search(found)) = r {
                    uids.extend_from_slice(found);
                }
                Ok(())
            })
            .await?;
        }
        // `n:*` answers with the last message even when it is below n.
        uids.sort_unstable();
        uids.dedup();
        Ok(uids)
    }

    /// The mailbox's storage quota, where the server offers QUOTA (RFC
    /// 2087/9208): the tightest root that limits storage.
    pub async fn storage_quota(&mut self) -> Result<StorageQuota> {
        use async_imap::imap_proto::rfc2087::QuotaResourceName;
        if !self.capabilities().has("QUOTA") {
            return Ok(StorageQuota::NotOffered);
        }
        let mut tightest: Option<(u64, u64)> = None;
        self.run("GETQUOTAROOT INBOX", |r| {
            if let Response::Quota(q) = r {
                for res in &q.resources {
                    if res.name == QuotaResourceName::Storage {
                        // STORAGE counts units of 1024 octets.
                        let (used, limit) = (res.usage << 10, res.limit << 10);
                        let left = limit.saturating_sub(used);
                        if tightest.is_none_or(|(u, l)| l.saturating_sub(u) > left) {
                            tightest = Some((used, limit));
                        }
                    }
                }
            }
            Ok(())
        })
        .await?;
        Ok(match tightest {
            Some((used, limit)) => StorageQuota::Limit { used, limit },
            None => StorageQuota::NoneSet,
        })
    }

    pub async fn logout(mut self) {
        if self.abandoned {
            // Owed answers or cut mid-command: LOGOUT would not be read as one.
            return;
        }
        // Nothing is owed after LOGOUT: its answer is not waited for (a
        // round trip at the end of every account), the connection is closed
        // once the line is out.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            use tokio::io::AsyncWriteExt as _;
            self.write_tagged(&["LOGOUT".to_string()], "LOGOUT").await?;
            self.session.get_mut().shutdown().await?;
            anyhow::Ok(())
        })
        .await;
    }
}

/// A FETCH being answered; see [`ImapSession::uid_fetch_stream`]. Read it
/// to its end (`Ok(None)` or an error) before the session is used again.
pub struct FetchStream<'a> {
    session: &'a mut ImapSession,
    tag: async_imap::imap_proto::RequestId,
    verb: String,
    finished: bool,
}

enum FetchStep {
    Message(Box<FetchedMessage>),
    Done(std::result::Result<(), ImapError>),
    Bye(String),
    Other,
}

impl Drop for FetchStream<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.session.abandoned = true;
        }
    }
}

impl FetchStream<'_> {
    /// The next message with a UID, `Ok(None)` after the server's OK, or
    /// the server's refusal (NO, BAD, BYE) as an error.
    pub async fn next(&mut self) -> Result<Option<FetchedMessage>> {
        loop {
            if self.finished {
                return Ok(None);
            }
            let (tag, verb) = (&self.tag, &self.verb);
            let step = self
                .session
                .next_response(verb, |r| match r {
                    Response::Done {
                        tag: t,
                        status,
                        outcome,
                    } if t == tag => {
                        FetchStep::Done(tagged_outcome(verb, status, outcome).map(|_| ()))
                    }
                    Response::Data {
                        status: Status::Bye,
                        outcome,
                    } => FetchStep::Bye(outcome.information.as_deref().unwrap_or("").to_string()),
                    Response::Fetch(_, attrs) => FetchStep::Message(Box::new(fetched_from(attrs))),
                    _ => FetchStep::Other,
                })
                .await;
            let step = match step {
                Ok(s) => s,
                Err(e) => {
                    self.finished = true;
                    return Err(e);
                }
            };
            match step {
                FetchStep::Message(mut m) if m.has_uid => {
                    self.session.resolve_spill(&mut m);
                    return Ok(Some(*m));
                }
                FetchStep::Message(_) | FetchStep::Other => {}
                FetchStep::Done(result) => {
                    self.finished = true;
                    return result.map(|()| None).map_err(Into::into);
                }
                FetchStep::Bye(text) => {
                    self.finished = true;
                    return Err(ImapError::Bye(text).into());
                }
            }
        }
    }
}

/// XOAUTH2: `user=…^Aauth=Bearer …^A^A`. A server that refuses sends a
/// JSON error as a second challenge, which gets an empty answer.
struct Xoauth2<'a> {
    username: &'a str,
    token: &'a Password,
    answered: bool,
}

impl async_imap::Authenticator for Xoauth2<'_> {
    type Response = Vec<u8>;
    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        if std::mem::replace(&mut self.answered, true) {
            return Vec::new();
        }
        format!(
            "user={}\x01auth=Bearer {}\x01\x01",
            self.username,
            self.token.expose()
        )
        .into_bytes()
    }
}

struct PlainAuth<'a> {
    username: &'a str,
    password: &'a Password,
}

impl async_imap::Authenticator for PlainAuth<'_> {
    type Response = Vec<u8>;
    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        let mut r = Vec::new();
        r.push(0);
        r.extend_from_slice(self.username.as_bytes());
        r.push(0);
        r.extend_from_slice(self.password.expose().as_bytes());
        r
    }
}

fn capabilities_from(caps: &async_imap::types::Capabilities) -> Capabilities {
    use async_imap::types::Capability;
    Capabilities(
        caps.iter()
            .map(|c| match c {
                Capability::Imap4rev1 => "IMAP4REV1".to_string(),
                Capability::Auth(a) => format!("AUTH={}", a.to_ascii_uppercase()),
                Capability::Atom(a) => a.to_ascii_uppercase(),
            })
            .collect(),
    )
}

fn capability_name(c: &async_imap::imap_proto::Capability<'_>) -> String {
    use async_imap::imap_proto::Capability;
    match c {
        Capability::Imap4rev1 => "IMAP4REV1".to_string(),
        Capability::Auth(a) => format!("AUTH={}", a.to_ascii_uppercase()),
        Capability::Atom(a) => a.to_ascii_uppercase(),
    }
}

/// The command's name for messages, never its arguments (which may name a
/// folder with odd characters or, for LOGIN, a password).
fn command_verb(command: &str) -> String {
    let mut words = command.split(' ');
    let first = words.next().unwrap_or("");
    if first.eq_ignore_ascii_case("UID") {
        format!("UID {}", words.next().unwrap_or(""))
    } else {
        first.to_string()
    }
}

fn code_name(code: &ResponseCode<'_>) -> String {
    match code {
        ResponseCode::Alert => "ALERT".into(),
        ResponseCode::Parse => "PARSE".into(),
        ResponseCode::ReadOnly => "READ-ONLY".into(),
        ResponseCode::TryCreate => "TRYCREATE".into(),
        other => {
            let s = format!("{other:?}");
            s.split(['(', ' '])
                .next()
                .unwrap_or("")
                .to_ascii_uppercase()
        }
    }
}

fn attribute_name(a: &NameAttribute<'_>) -> String {
    match a {
        NameAttribute::NoInferiors => "\\Noinferiors".into(),
        NameAttribute::NoSelect => "\\Noselect".into(),
        NameAttribute::Marked => "\\Marked".into(),
        NameAttribute::Unmarked => "\\Unmarked".into(),
        NameAttribute::All => "\\All".into(),
        NameAttribute::Archive => "\\Archive".into(),
        NameAttribute::Drafts => "\\Drafts".into(),
        NameAttribute::Flagged => "\\Flagged".into(),
        NameAttribute::Junk => "\\Junk".into(),
        NameAttribute::Sent => "\\Sent".into(),
        NameAttribute::Trash => "\\Trash".into(),
        NameAttribute::Extension(e) => e.to_string(),
        other => format!("{other:?}"),
    }
}

fn status_from(attrs: &[StatusAttribute]) -> MailboxStatus {
    let mut s = MailboxStatus::default();
    for a in attrs {
        match a {
            StatusAttribute::Messages(n) => s.messages = Some(*n),
            StatusAttribute::UidNext(n) => s.uidnext = Some(*n),
            StatusAttribute::UidValidity(n) => s.uidvalidity = Some(*n),
            StatusAttribute::HighestModSeq(n) => s.highestmodseq = Some(*n),
            _ => {}
        }
    }
    s
}

fn fetched_from(attrs: &[AttributeValue<'_>]) -> FetchedMessage {
    let mut m = FetchedMessage::default();
    for a in attrs {
        match a {
            AttributeValue::Uid(u) => {
                m.uid = *u;
                m.has_uid = true;
            }
            AttributeValue::Flags(f) => m.flags = Some(f.iter().map(|s| s.to_string()).collect()),
            AttributeValue::InternalDate(d) => m.internal_date = parse_internal_date(d),
            AttributeValue::Rfc822Size(n) => m.size = Some(*n),
            AttributeValue::ModSeq(n) => m.modseq = Some(*n),
            AttributeValue::Rfc822(data) => m.body = data.as_ref().map(|d| d.to_vec()),
            AttributeValue::BodySection {
                section,
                index,
                data,
            } => match section {
                None if index.is_some() => m.partials.push((
                    index.unwrap_or(0),
                    data.as_deref().unwrap_or_default().to_vec(),
                )),
                None => m.body = Some(data.as_deref().unwrap_or_default().to_vec()),
                Some(SectionPath::Full(MessageSection::Header)) => {
                    m.header_fields = data.as_ref().map(|d| d.to_vec())
                }
                Some(SectionPath::Full(MessageSection::Text)) => {
                    m.text = Some(data.as_deref().unwrap_or_default().to_vec())
                }
                _ => {}
            },
            _ => {}
        }
    }
    m
}

/// Parses an IMAP date-time such as ` 7-Jul-1996 02:44:25 -0700`.
pub fn parse_internal_date(s: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_str(s.trim_start(), "%d-%b-%Y %H:%M:%S %z").ok()
}

/// A folder name as an IMAP quoted string.
pub fn quote(name: &str) -> String {
    let mut q = String::with_capacity(name.len() + 2);
    q.push('"');
    for c in name.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// imap-proto hands quoted strings over with their escapes in place.
fn unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_personal_namespace_is_read_from_the_answer() {
        let ns = |t| parse_personal_namespace(t);
        assert_eq!(
            ns(r#"(("INBOX." ".")) NIL (("" "."))"#),
            Some(Namespace {
                prefix: "INBOX.".into(),
                delimiter: Some(".".into())
            })
        );
        assert_eq!(
            ns(r#"(("" "/")) NIL NIL"#),
            Some(Namespace {
                prefix: "".into(),
                delimiter: Some("/".into())
            })
        );
        assert_eq!(
            ns(r##"(("" "\\")("#public/" "\\")) NIL NIL"##),
            Some(Namespace {
                prefix: "".into(),
                delimiter: Some("\\".into())
            })
        );
        assert_eq!(
            ns(r#"(("" NIL)) NIL NIL"#),
            Some(Namespace {
                prefix: "".into(),
                delimiter: None
            })
        );
        assert_eq!(ns("NIL NIL NIL"), None);
    }

    #[test]
    fn a_refusal_keeps_only_the_servers_words() {
        assert_eq!(
            server_words(
                r#"code: None, info: Some("[AUTHENTICATIONFAILED] Authentication failed.")"#
            ),
            "[AUTHENTICATIONFAILED] Authentication failed."
        );
        assert_eq!(server_words("Logins are off"), "Logins are off");
    }

    #[test]
    fn internal_dates_parse_with_their_offset() {
        let d = parse_internal_date(" 7-Jul-1996 02:44:25 -0700").unwrap();
        assert_eq!(d.timestamp(), 836_732_665);
        assert_eq!(d.offset().local_minus_utc(), -7 * 3600);
        assert!(parse_internal_date("garbage").is_none());
    }

    #[test]
    fn quoting_escapes_quotes_and_backslashes() {
        assert_eq!(quote(r#"a "b" \c"#), r#""a \"b\" \\c""#);
        assert_eq!(unescape(r#"a \"b\" \\c"#), r#"a "b" \c"#);
    }

    #[test]
    fn a_response_that_cannot_be_parsed_is_shown_as_its_line() {
        // What async-imap hands over for `* 42 LOL nonsense`.
        let raw = std::io::Error::other(format!(
            "{:?} during parsing of {:?}",
            nom_like_error(b"* 42 LOL nonsense\r\n"),
            "* 42 LOL nonsense\r\n* 43 more \"quoted\"\r\n"
        ));
        let e = unparseable(&raw).expect("recognised");
        let text = e.to_string();
        assert_eq!(
            text,
            "the server sent a response that is not IMAP: * 42 LOL nonsense"
        );
        assert!(!text.contains("[42, 32"));
        let long = std::io::Error::other(format!("Error during parsing of {:?}", "x".repeat(5000)));
        assert!(unparseable(&long).unwrap().to_string().len() < 300);
        assert!(unparseable(&std::io::Error::other("broken pipe")).is_none());
    }

    /// The shape of nom's error debug output: bytes as decimals.
    fn nom_like_error(input: &[u8]) -> String {
        format!("Error(Error {{ input: {input:?}, code: Tag }})")
    }

    #[test]
    fn command_names_in_errors_never_carry_arguments() {
        assert_eq!(command_verb("LOGIN bob hunter2"), "LOGIN");
        assert_eq!(command_verb("UID FETCH 1:* (FLAGS)"), "UID FETCH");
    }
}
