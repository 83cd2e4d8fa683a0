//! A tiny authoritative DNS server on loopback for MX look-ups.
//!
//! It speaks the RFC 1035 wire format written out by hand here, so that the
//! tests never grade mailferry's resolver (hickory) with hickory's own
//! encoder. UDP and TCP listen on the same port of 127.0.0.1, as a real
//! nameserver does, so a client may fall back to TCP after a truncated
//! UDP reply.
//!
//! Answers: the configured MX records for a configured domain (any case);
//! NOERROR with no answers for its other types; NXDOMAIN for every other
//! name; SERVFAIL for the names in `servfail`. The server stops on drop.

use std::collections::{HashMap, HashSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

const TYPE_MX: u16 = 15;
const CLASS_IN: u16 = 1;
const RCODE_FORMERR: u16 = 1;
const RCODE_SERVFAIL: u16 = 2;
const RCODE_NXDOMAIN: u16 = 3;
const RCODE_NOTIMP: u16 = 4;

/// What the server knows.
#[derive(Clone, Debug, Default)]
pub struct DnsConfig {
    /// domain → (preference, exchange); names without a trailing dot.
    pub mx: HashMap<String, Vec<(u16, String)>>,
    /// Domains answered with SERVFAIL.
    pub servfail: HashSet<String>,
    /// Answer every UDP query with an empty, truncated (TC) reply, so that
    /// only TCP gets the records.
    pub truncate_udp: bool,
}

impl DnsConfig {
    /// A config with these domains and their MX records.
    pub fn with_mx(zones: &[(&str, &[(u16, &str)])]) -> DnsConfig {
        let mut config = DnsConfig::default();
        for (domain, records) in zones {
            config.mx.insert(
                domain.to_string(),
                records.iter().map(|(p, e)| (*p, e.to_string())).collect(),
            );
        }
        config
    }
}

/// Over which transport a query came.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// One query as received: name (as sent, without the trailing dot), type
/// and transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsQuery {
    pub name: String,
    pub qtype: u16,
    pub transport: Transport,
}

/// A running server; stopped (threads joined) on drop.
pub struct DnsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    queries: Arc<Mutex<Vec<DnsQuery>>>,
    threads: Vec<JoinHandle<()>>,
}

impl DnsServer {
    /// Serves MX records for these domains: `&[("contoso.com", &[(0,
    /// "contoso-com.mail.protection.outlook.com")])]`.
    pub fn start(zones: &[(&str, &[(u16, &str)])]) -> DnsServer {
        DnsServer::start_with(DnsConfig::with_mx(zones))
    }

    pub fn start_with(config: DnsConfig) -> DnsServer {
        let (udp, tcp) = bind_pair();
        let addr = udp.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(Mutex::new(Vec::new()));
        let zone = Arc::new(Zone::new(config));

        udp.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let udp_thread = {
            let (stop, queries, zone) = (stop.clone(), queries.clone(), zone.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::SeqCst) {
                    let (n, peer) = match udp.recv_from(&mut buf) {
                        Ok(x) => x,
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                        {
                            continue;
                        }
                        Err(_) => continue,
                    };
                    if let Some(reply) = zone.answer(&buf[..n], Transport::Udp, &queries) {
                        let _ = udp.send_to(&reply, peer);
                    }
                }
            })
        };

        tcp.set_nonblocking(true).unwrap();
        let tcp_thread = {
            let (stop, queries, zone) = (stop.clone(), queries.clone(), zone.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match tcp.accept() {
                        Ok((stream, _)) => {
                            // One at a time is plenty for a test resolver.
                            serve_tcp(stream, &zone, &queries, &stop);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };

        DnsServer {
            addr,
            stop,
            queries,
            threads: vec![udp_thread, tcp_thread],
        }
    }

    /// Where to send queries (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every query received so far.
    pub fn queries(&self) -> Vec<DnsQuery> {
        self.queries.lock().unwrap().clone()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// A UDP socket on loopback that reads nothing and never answers: a
/// resolver that is down without saying so. Nothing listens on TCP.
pub struct SilentDns {
    socket: UdpSocket,
}

impl SilentDns {
    pub fn start() -> SilentDns {
        SilentDns {
            socket: UdpSocket::bind("127.0.0.1:0").unwrap(),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap()
    }
}

/// A UDP socket and a TCP listener on the same free port of 127.0.0.1.
fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)) {
            return (udp, tcp);
        }
    }
    panic!("no port of 127.0.0.1 was free for both UDP and TCP");
}

fn serve_tcp(
    mut stream: TcpStream,
    zone: &Zone,
    queries: &Mutex<Vec<DnsQuery>>,
    stop: &AtomicBool,
) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(20)));
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::SeqCst) {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
        // Each message is prefixed with its length (RFC 1035 4.2.2).
        while pending.len() >= 2 {
            let len = u16::from_be_bytes([pending[0], pending[1]]) as usize;
            if pending.len() < 2 + len {
                break;
            }
            let message: Vec<u8> = pending.drain(..2 + len).skip(2).collect();
            if let Some(reply) = zone.answer(&message, Transport::Tcp, queries) {
                let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&reply);
                if stream.write_all(&framed).is_err() {
                    return;
                }
            }
        }
    }
}

struct Zone {
    /// Lowercase domain → records.
    mx: HashMap<String, Vec<(u16, String)>>,
    servfail: HashSet<String>,
    truncate_udp: bool,
}

impl Zone {
    fn new(config: DnsConfig) -> Zone {
        let key = |d: &str| d.trim_end_matches('.').to_ascii_lowercase();
        Zone {
            mx: config.mx.iter().map(|(d, r)| (key(d), r.clone())).collect(),
            servfail: config.servfail.iter().map(|d| key(d)).collect(),
            truncate_udp: config.truncate_udp,
        }
    }

    /// The reply to one query message, or None for garbage too short to
    /// carry an id.
    fn answer(
        &self,
        query: &[u8],
        transport: Transport,
        queries: &Mutex<Vec<DnsQuery>>,
    ) -> Option<Vec<u8>> {
        if query.len() < 12 {
            return None;
        }
        let id = [query[0], query[1]];
        let flags = u16::from_be_bytes([query[2], query[3]]);
        if flags & 0x8000 != 0 {
            return None; // a response, not a query
        }
        let opcode = (flags >> 11) & 0xF;
        let rd = flags & 0x0100;
        let qdcount = u16::from_be_bytes([query[4], query[5]]);
        // QR, the opcode and RD copied, AA (we are the authority), RA.
        let reply_flags = 0x8000 | (opcode << 11) | 0x0400 | rd | 0x0080;
        let header = |flags: u16, qd: u16, an: u16| {
            let mut h = id.to_vec();
            for v in [flags, qd, an, 0, 0] {
                h.extend_from_slice(&v.to_be_bytes());
            }
            h
        };
        if opcode != 0 {
            return Some(header(reply_flags | RCODE_NOTIMP, 0, 0));
        }
        let Some((name, question_end)) = (qdcount == 1).then(|| read_name(query, 12)).flatten()
        else {
            return Some(header(reply_flags | RCODE_FORMERR, 0, 0));
        };
        if query.len() < question_end + 4 {
            return Some(header(reply_flags | RCODE_FORMERR, 0, 0));
        }
        let qtype = u16::from_be_bytes([query[question_end], query[question_end + 1]]);
        let qclass = u16::from_be_bytes([query[question_end + 2], query[question_end + 3]]);
        // The question exactly as asked (case included: resolvers may
        // randomise it and check the echo).
        let question = &query[12..question_end + 4];
        queries.lock().unwrap().push(DnsQuery {
            name: name.clone(),
            qtype,
            transport,
        });

        let key = name.to_ascii_lowercase();
        let (rcode, records): (u16, &[(u16, String)]) = if self.servfail.contains(&key) {
            (RCODE_SERVFAIL, &[])
        } else {
            match self.mx.get(&key) {
                None => (RCODE_NXDOMAIN, &[]),
                Some(r) if qtype == TYPE_MX && qclass == CLASS_IN => (0, r.as_slice()),
                Some(_) => (0, &[]),
            }
        };
        if transport == Transport::Udp && self.truncate_udp && !records.is_empty() {
            // TC set, answers left out: "ask again over TCP".
            let mut reply = header(reply_flags | 0x0200, 1, 0);
            reply.extend_from_slice(question);
            return Some(reply);
        }
        let mut reply = header(reply_flags | rcode, 1, records.len() as u16);
        reply.extend_from_slice(question);
        for (preference, exchange) in records {
            let mut rdata = preference.to_be_bytes().to_vec();
            write_name(&mut rdata, exchange);
            // Owner: a compression pointer to the question's name at 12.
            reply.extend_from_slice(&[0xC0, 0x0C]);
            reply.extend_from_slice(&TYPE_MX.to_be_bytes());
            reply.extend_from_slice(&CLASS_IN.to_be_bytes());
            reply.extend_from_slice(&300u32.to_be_bytes());
            reply.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
            reply.extend_from_slice(&rdata);
        }
        Some(reply)
    }
}

/// Reads an uncompressed name at `at`: (dotted name without the trailing
/// dot, offset after it). Queries carry no compression pointers.
fn read_name(message: &[u8], mut at: usize) -> Option<(String, usize)> {
    let mut labels = Vec::new();
    loop {
        let len = *message.get(at)? as usize;
        at += 1;
        if len == 0 {
            return Some((labels.join("."), at));
        }
        if len > 63 {
            return None; // a pointer or a reserved label type
        }
        let label = message.get(at..at + len)?;
        labels.push(String::from_utf8_lossy(label).into_owned());
        at += len;
    }
}

/// Appends `name` ("mx1.example.com", a trailing dot allowed; "" or "." is
/// the root) as uncompressed labels.
fn write_name(out: &mut Vec<u8>, name: &str) {
    for label in name
        .trim_end_matches('.')
        .split('.')
        .filter(|l| !l.is_empty())
    {
        assert!(label.len() <= 63, "label too long: {label}");
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
}
