//! An IMAP proxy that behaves like Exchange Online where Dovecot does not:
//! it terminates TLS (with the test server's certificate), forwards to
//! Dovecot over TLS, and injects Exchange's faults: throttling replies with
//! a suggested backoff, BYE, a connection reset in the middle of a literal,
//! a message size limit, a line length limit and reserved folder names. It
//! can also SIGKILL the client at chosen points of an APPEND. Everything it
//! does is logged with timestamps for the tests to check.

use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
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
    /// Refuse the Nth APPEND with a server error (it fails, for --retry-failed).
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

    let down = {
        let cw = cw.clone();
        let kill_on_ok = kill_on_ok.clone();
        let shared = shared.clone();
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
                let body = literal.as_deref().unwrap_or_default();
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
                if f.refuse_at_append == Some(n) {
                    reply(format!("{tag} NO [SERVERBUG] Internal error occurred.\r\n")).await?;
                    continue;
                }
                if f.bye_at_append == Some(n) {
                    log(Event::Bye(conn));
                    reply("* BYE Connection is closed. 14\r\n".to_string()).await?;
                    return Ok(());
                }
                if f.max_message.is_some_and(|m| body.len() > m) {
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
