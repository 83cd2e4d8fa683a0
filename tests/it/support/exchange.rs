//! An IMAP proxy that behaves like Exchange Online where Dovecot does not:
//! it terminates TLS (with the test server's certificate), forwards to
//! Dovecot over TLS, and speaks Exchange's dialect and faults.
//!
//! The dialect: Exchange's capabilities only (no CONDSTORE, QRESYNC,
//! BINARY, LIST-STATUS, APPENDLIMIT, COMPRESS or QUOTA; UIDPLUS, MOVE, ID,
//! UNSELECT, CHILDREN, IDLE, NAMESPACE, LITERAL+, AUTH=PLAIN AUTH=XOAUTH2
//! SASL-IR); no custom keywords (PERMANENTFLAGS without `\*`, keywords in
//! APPEND and STORE dropped); every message converted on APPEND (a header
//! added, so its size changes and its Message-ID stays). Dovecot behind it
//! has the personal namespace "" with "/" as Exchange does.
//!
//! The faults: throttling replies with a suggested backoff, BYE, a
//! connection reset in the middle of a literal, a message size limit, a
//! line length limit and reserved folder names. It can also SIGKILL the
//! client at chosen points of an APPEND. Everything it does is logged with
//! timestamps for the tests to check.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillPoint {
    /// When the APPEND command line arrives, before the server sees it.
    BeforeAppend,
    /// Halfway through the message literal.
    MidLiteral,
    /// After the server's OK, before the client sees it.
    AfterOk,
}

#[derive(Debug, Clone, Default)]
pub struct ExchangeFaults {
    /// Throttle every Nth APPEND (counted over all connections) once.
    pub throttle_every: Option<usize>,
    pub backoff_ms: u64,
    /// Send BYE and close instead of answering the Nth APPEND.
    pub bye_at_append: Option<usize>,
    /// Drop the connection halfway through the literal of the Nth APPEND.
    pub reset_at_append: Option<usize>,
    /// Refuse the Nth APPEND with a server error, and the same message the
    /// next two times it comes (a client's retries within its run): it
    /// fails, for --retry-failed, and goes through on the fourth try.
    pub refuse_at_append: Option<usize>,
    /// Refuse APPENDs larger than this.
    pub max_message: Option<usize>,
    /// Refuse APPENDs holding a line longer than this.
    pub max_line: Option<usize>,
    /// Refuse CREATE of these names.
    pub reserved: Vec<String>,
    /// SIGKILL the client at this point of the Nth APPEND.
    pub kill: Option<(KillPoint, usize)>,
    /// Never answer the first N LOGIN/AUTHENTICATE commands (the
    /// connection stays open): a server that hangs at login.
    pub stall_logins: usize,
    /// Close the connection instead of answering the first N
    /// LOGIN/AUTHENTICATE commands (counted after the stalled ones).
    pub drop_logins: usize,
    /// Never answer the Nth APPEND (and never pass it on).
    pub stall_append: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// An APPEND reached the proxy (connection, sequence number).
    Append(usize, usize),
    Throttled(usize, Duration),
    Bye(usize),
    Reset(usize),
    TooBig(usize),
    LineTooLong(usize),
    Reserved(String),
    Killed(KillPoint),
    /// A command left unanswered (connection, verb).
    Stalled(usize, String),
    /// A connection closed at login.
    Dropped(usize),
}

pub struct ExchangeProxy {
    pub port: u16,
    pub events: Arc<Mutex<Vec<(Instant, Event)>>>,
    /// The client to SIGKILL for `kill` faults.
    pub client_pid: Arc<AtomicU32>,
    _runtime: tokio::runtime::Runtime,
}

struct Shared {
    faults: ExchangeFaults,
    appends: AtomicUsize,
    logins: AtomicUsize,
    connections: AtomicUsize,
    events: Arc<Mutex<Vec<(Instant, Event)>>>,
    client_pid: Arc<AtomicU32>,
    upstream: u16,
    ca: Vec<u8>,
    /// The message `refuse_at_append` refused, and refusals of it left.
    refused: Mutex<Option<(Vec<u8>, usize)>>,
}

impl ExchangeProxy {
    pub fn start(server: &super::Dovecot, faults: ExchangeFaults) -> ExchangeProxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = server.dir.path();
        let acceptor = tls_acceptor(&dir.join("server.pem"), &dir.join("server.key"));
        let events = Arc::new(Mutex::new(Vec::new()));
        let client_pid = Arc::new(AtomicU32::new(0));
        let shared = Arc::new(Shared {
            faults,
            appends: AtomicUsize::new(0),
            logins: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            events: events.clone(),
            client_pid: client_pid.clone(),
            upstream: server.port,
            ca: std::fs::read(&server.ca_file).unwrap(),
            refused: Mutex::new(None),
        });
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let port = listener.local_addr().unwrap().port();
        runtime.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let shared = shared.clone();
                tokio::spawn(async move {
                    let Ok(client) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let _ = relay(client, shared).await;
                });
            }
        });
        ExchangeProxy {
            port,
            events,
            client_pid,
            _runtime: runtime,
        }
    }

    pub fn events(&self) -> Vec<(Instant, Event)> {
        self.events.lock().unwrap().clone()
    }
}

fn tls_acceptor(cert: &Path, key: &Path) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

async fn connect_upstream(
    shared: &Shared,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&shared.ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(("127.0.0.1", shared.upstream)).await?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
}

/// One line, and the literal it announces (if any): `(line, literal)`.
async fn read_unit<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
) -> std::io::Result<Option<(Vec<u8>, Option<Vec<u8>>)>> {
    let mut line = Vec::new();
    if r.read_until(b'\n', &mut line).await? == 0 {
        return Ok(None);
    }
    let literal = match literal_len(&line) {
        Some(n) => {
            let mut buf = vec![0; n];
            r.read_exact(&mut buf).await?;
            Some(buf)
        }
        None => None,
    };
    Ok(Some((line, literal)))
}

fn literal_len(line: &[u8]) -> Option<usize> {
    let s = std::str::from_utf8(line).ok()?.trim_end();
    let open = s.rfind('{')?;
    let inner = s[open + 1..].strip_suffix('}')?;
    inner.trim_end_matches('+').parse().ok()
}

fn kill(shared: &Shared, point: KillPoint) {
    let pid = shared.client_pid.load(Ordering::SeqCst);
    shared
        .events
        .lock()
        .unwrap()
        .push((Instant::now(), Event::Killed(point)));
    if pid != 0 {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
}

/// Exchange Online's capabilities before and after login.
const CAPABILITY: &str = "IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR UIDPLUS MOVE ID UNSELECT CHILDREN IDLE NAMESPACE LITERAL+";
const CAPABILITY_AFTER_LOGIN: &str = "IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR UIDPLUS MOVE ID UNSELECT CHILDREN IDLE NAMESPACE LITERAL+ CLIENTACCESSRULES CLIENTNETWORKPRESENCELOCATION BACKENDAUTHENTICATE";

/// What Exchange adds to every message it stores (its conversion changes
/// the bytes and keeps the Message-ID).
pub const CONVERSION_HEADER: &[u8] = b"X-MS-Exchange-Organization-Converted: True\r\n";

/// A server line as Exchange would send it: its capabilities, and
/// PERMANENTFLAGS without keywords or `\*`.
fn in_dialect(line: &[u8], logged_in: bool) -> Vec<u8> {
    let Ok(text) = std::str::from_utf8(line) else {
        return line.to_vec();
    };
    let caps = if logged_in {
        CAPABILITY_AFTER_LOGIN
    } else {
        CAPABILITY
    };
    if text.starts_with("* CAPABILITY ") {
        return format!("* CAPABILITY {caps}\r\n").into_bytes();
    }
    let mut out = text.to_string();
    if let Some(start) = out.find("[CAPABILITY ")
        && let Some(end) = out[start..].find(']')
    {
        out.replace_range(start..start + end + 1, &format!("[CAPABILITY {caps}]"));
    }
    if let Some(start) = out.find("[PERMANENTFLAGS (")
        && let Some(end) = out[start..].find(")]")
    {
        let inner = &out[start + "[PERMANENTFLAGS (".len()..start + end];
        let system: Vec<&str> = inner
            .split_whitespace()
            .filter(|f| f.starts_with('\\') && *f != "\\*")
            .collect();
        let replaced = format!("[PERMANENTFLAGS ({})]", system.join(" "));
        out.replace_range(start..start + end + 2, &replaced);
    }
    out.into_bytes()
}

/// The first `(flags)` list of a command, past its mailbox name for an
/// APPEND, without keywords: Exchange keeps none.
fn without_keywords(line: &str) -> String {
    let mut from = 0;
    if line.to_ascii_uppercase().contains(" APPEND ") {
        // tag APPEND mailbox ...: skip the mailbox, quoted or not.
        let after = line.to_ascii_uppercase().find(" APPEND ").unwrap() + 8;
        let rest = &line[after..];
        from = after
            + if let Some(q) = rest.strip_prefix('"') {
                let mut escaped = false;
                q.char_indices()
                    .find(|&(_, c)| {
                        let closes = c == '"' && !escaped;
                        escaped = c == '\\' && !escaped;
                        closes
                    })
                    .map(|(i, _)| i + 2)
                    .unwrap_or(rest.len())
            } else {
                rest.find(' ').unwrap_or(rest.len())
            };
    }
    let (Some(open), Some(close)) = (
        line[from..].find('(').map(|i| i + from),
        line[from..].find(')').map(|i| i + from),
    ) else {
        return line.to_string();
    };
    if close < open {
        return line.to_string();
    }
    let kept: Vec<&str> = line[open + 1..close]
        .split_whitespace()
        .filter(|f| f.starts_with('\\'))
        .collect();
    format!(
        "{}({}){}",
        &line[..open],
        kept.join(" "),
        &line[close + 1..]
    )
}

async fn relay(
    client: tokio_rustls::server::TlsStream<TcpStream>,
    shared: Arc<Shared>,
) -> std::io::Result<()> {
    let conn = shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
    let upstream = connect_upstream(&shared).await?;
    let (cr, cw) = tokio::io::split(client);
    let (ur, uw) = tokio::io::split(upstream);
    let cw = Arc::new(tokio::sync::Mutex::new(cw));
    let uw = Arc::new(tokio::sync::Mutex::new(uw));
    // Tags of APPENDs in flight whose OK should kill the client.
    let kill_on_ok: Arc<Mutex<Vec<String>>> = Arc::default();
    let logged_in = Arc::new(AtomicBool::new(false));

    let down = {
        let cw = cw.clone();
        let kill_on_ok = kill_on_ok.clone();
        let shared = shared.clone();
        let logged_in = logged_in.clone();
        async move {
            let mut ur = BufReader::new(ur);
            while let Some((line, literal)) = read_unit(&mut ur).await? {
                let tag = String::from_utf8_lossy(&line)
                    .split(' ')
                    .next()
                    .unwrap_or("")
                    .to_string();
                if kill_on_ok.lock().unwrap().contains(&tag) {
                    kill(&shared, KillPoint::AfterOk);
                    return Ok::<(), std::io::Error>(());
                }
                let line = in_dialect(&line, logged_in.load(Ordering::SeqCst));
                let mut w = cw.lock().await;
                w.write_all(&line).await?;
                if let Some(l) = literal {
                    w.write_all(&l).await?;
                }
                w.flush().await?;
            }
            Ok(())
        }
    };

    let up = async move {
        let mut cr = BufReader::new(cr);
        loop {
            let Some((line, literal)) = read_unit(&mut cr).await? else {
                return Ok(());
            };
            let text = String::from_utf8_lossy(&line).to_string();
            let mut words = text.split_whitespace();
            let tag = words.next().unwrap_or("").to_string();
            let verb = words.next().unwrap_or("").to_ascii_uppercase();
            let f = &shared.faults;
            let reply = |w: String| {
                let cw = cw.clone();
                async move {
                    let mut c = cw.lock().await;
                    c.write_all(w.as_bytes()).await?;
                    c.flush().await
                }
            };
            if verb == "LOGIN" || verb == "AUTHENTICATE" {
                logged_in.store(true, Ordering::SeqCst);
                let n = shared.logins.fetch_add(1, Ordering::SeqCst) + 1;
                let log = |e: Event| shared.events.lock().unwrap().push((Instant::now(), e));
                if n <= f.stall_logins {
                    log(Event::Stalled(conn, verb.clone()));
                    // Hold the connection open and say nothing.
                    loop {
                        if read_unit(&mut cr).await?.is_none() {
                            return Ok(());
                        }
                    }
                }
                if n <= f.stall_logins + f.drop_logins {
                    log(Event::Dropped(conn));
                    return Ok(());
                }
            }
            if verb == "CREATE" {
                let arg = text.trim_end()[tag.len() + 1 + verb.len()..].trim();
                let name = arg
                    .strip_prefix('"')
                    .and_then(|a| a.strip_suffix('"'))
                    .unwrap_or(arg)
                    .replace("\\\"", "\"")
                    .replace("\\\\", "\\");
                if f.reserved.iter().any(|r| r.eq_ignore_ascii_case(&name)) {
                    shared
                        .events
                        .lock()
                        .unwrap()
                        .push((Instant::now(), Event::Reserved(name)));
                    reply(format!("{tag} NO [CANNOT] Folder name is reserved.\r\n")).await?;
                    continue;
                }
            }
            if verb == "APPEND" {
                let n = shared.appends.fetch_add(1, Ordering::SeqCst) + 1;
                let log = |e: Event| shared.events.lock().unwrap().push((Instant::now(), e));
                log(Event::Append(conn, n));
                // mailferry and the tests' client use LITERAL+, so the
                // message arrived with its command line.
                let mut literal = literal;
                if f.stall_append == Some(n) {
                    log(Event::Stalled(conn, verb.clone()));
                    loop {
                        if read_unit(&mut cr).await?.is_none() {
                            return Ok(());
                        }
                    }
                }
                if f.kill == Some((KillPoint::BeforeAppend, n)) {
                    kill(&shared, KillPoint::BeforeAppend);
                    return Ok(());
                }
                if f.kill == Some((KillPoint::MidLiteral, n)) || f.reset_at_append == Some(n) {
                    // Forward the command and half the literal, then cut.
                    let body = literal.take().unwrap_or_default();
                    let mut u = uw.lock().await;
                    u.write_all(&line).await?;
                    u.write_all(&body[..body.len() / 2]).await?;
                    u.flush().await?;
                    drop(u);
                    if f.reset_at_append == Some(n) {
                        log(Event::Reset(conn));
                    } else {
                        kill(&shared, KillPoint::MidLiteral);
                    }
                    return Ok(());
                }
                // Exchange converts what it stores: the bytes change, the
                // Message-ID stays.
                let mut converted = CONVERSION_HEADER.to_vec();
                converted.extend_from_slice(literal.as_deref().unwrap_or_default());
                let body = &converted[..];
                let line = {
                    let text = without_keywords(&text);
                    let open = text.rfind('{').unwrap_or(text.len());
                    format!("{}{{{}+}}\r\n", &text[..open], body.len()).into_bytes()
                };
                // The rest of the command line after the literal (CRLF).
                let mut rest = Vec::new();
                cr.read_until(b'\n', &mut rest).await?;
                if f.throttle_every
                    .is_some_and(|every| n.is_multiple_of(every))
                {
                    let backoff = Duration::from_millis(f.backoff_ms);
                    log(Event::Throttled(conn, backoff));
                    reply(format!(
                        "{tag} NO [UNAVAILABLE] Request is throttled. Suggested Backoff Time: {} milliseconds\r\n",
                        f.backoff_ms
                    ))
                    .await?;
                    continue;
                }
                let refuse = {
                    let mut refused = shared.refused.lock().unwrap();
                    if f.refuse_at_append == Some(n) {
                        *refused = Some((body.to_vec(), 2));
                        true
                    } else if let Some((b, left)) = refused.as_mut()
                        && *left > 0
                        && b.as_slice() == body
                    {
                        *left -= 1;
                        true
                    } else {
                        false
                    }
                };
                if refuse {
                    reply(format!("{tag} NO [SERVERBUG] Internal error occurred.\r\n")).await?;
                    continue;
                }
                if f.bye_at_append == Some(n) {
                    log(Event::Bye(conn));
                    reply("* BYE Connection is closed. 14\r\n".to_string()).await?;
                    return Ok(());
                }
                if f.max_message
                    .is_some_and(|m| body.len() - CONVERSION_HEADER.len() > m)
                {
                    log(Event::TooBig(n));
                    reply(format!(
                        "{tag} NO [TOOBIG] APPEND failed: message too large.\r\n"
                    ))
                    .await?;
                    continue;
                }
                if f.max_line
                    .is_some_and(|m| body.split(|&b| b == b'\n').any(|l| l.len() > m))
                {
                    log(Event::LineTooLong(n));
                    reply(format!(
                        "{tag} NO [LIMIT] APPEND failed: line too long.\r\n"
                    ))
                    .await?;
                    continue;
                }
                if f.kill == Some((KillPoint::AfterOk, n)) {
                    kill_on_ok.lock().unwrap().push(tag.clone());
                }
                let mut u = uw.lock().await;
                u.write_all(&line).await?;
                u.write_all(body).await?;
                u.write_all(&rest).await?;
                u.flush().await?;
                continue;
            }
            let line = if verb == "UID" && text.to_ascii_uppercase().contains(" STORE ") {
                without_keywords(&text).into_bytes()
            } else {
                line
            };
            let mut u = uw.lock().await;
            u.write_all(&line).await?;
            if let Some(l) = literal {
                u.write_all(&l).await?;
            }
            u.flush().await?;
        }
    };
    tokio::select! {
        r = down => r,
        r = up => r,
    }
}

/// What the proxy's Exchange holds for `user`, each message with the
/// conversion taken off again (it must be there: every message was
/// converted), sorted: comparable with the source's `contents`.
pub fn contents_unconverted(
    server: &super::Dovecot,
    user: &str,
    pw: &str,
) -> std::collections::BTreeMap<String, Vec<Vec<u8>>> {
    let mut all = super::contents(server, user, pw);
    for (folder, bodies) in all.iter_mut() {
        for body in bodies.iter_mut() {
            assert!(
                body.starts_with(CONVERSION_HEADER),
                "a message in {folder} was not converted on APPEND"
            );
            body.drain(..CONVERSION_HEADER.len());
        }
        bodies.sort();
    }
    all
}
