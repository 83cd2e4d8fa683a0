//! A scripted IMAP server that misbehaves on purpose: no INTERNALDATE or
//! one that cannot be parsed, two different bodies for one UID, UID 0,
//! folder names with line breaks or of 10,000 characters, a size that lies,
//! an endless line, 100,000 folders. It speaks just enough IMAP4rev1 (with
//! CONDSTORE and LIST-STATUS) for mailferry's mirror, over TLS with a
//! certificate minted by the tests, one thread per connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tempfile::TempDir;

use super::{Certs, Run};

/// One message as the server will show it.
#[derive(Clone, Debug)]
pub struct HostileMessage {
    pub uid: u32,
    pub flags: String,
    /// The INTERNALDATE text to send; `None` leaves the item out.
    pub internal_date: Option<String>,
    pub body: Vec<u8>,
    /// RFC822.SIZE to claim instead of the body's length.
    pub claimed_size: Option<u32>,
    /// A second FETCH response for the same UID carrying these bytes.
    pub second_body: Option<Vec<u8>>,
    /// Only the first this-many body fetches get `second_body` (then the
    /// server behaves); `u32::MAX` for always.
    pub second_body_times: u32,
}

impl HostileMessage {
    pub fn new(uid: u32, body: &[u8]) -> HostileMessage {
        HostileMessage {
            uid,
            flags: String::new(),
            internal_date: Some("03-Mar-2025 10:00:00 +0100".into()),
            body: body.to_vec(),
            claimed_size: None,
            second_body: None,
            second_body_times: u32::MAX,
        }
    }
}

#[derive(Clone, Debug)]
pub struct HostileFolder {
    /// The name on the wire (may hold anything: it is sent as a literal
    /// when it is not a plain quoted string).
    pub name: String,
    pub uidvalidity: u32,
    pub messages: Vec<HostileMessage>,
}

impl HostileFolder {
    pub fn new(name: &str, messages: Vec<HostileMessage>) -> HostileFolder {
        HostileFolder {
            name: name.to_string(),
            uidvalidity: 7,
            messages,
        }
    }
}

/// How the server misbehaves beyond its mailbox's content.
#[derive(Clone, Debug, Default)]
pub struct HostileScript {
    /// After login, answer the first LIST with `* ` and this many bytes
    /// without a line end, then go silent.
    pub endless_line: Option<usize>,
}

#[derive(Default)]
struct State {
    folders: Vec<HostileFolder>,
    /// Folder name → position in `folders`.
    by_name: std::collections::HashMap<String, usize>,
    script: HostileScript,
    /// Every command line received (after the tag).
    commands: Vec<String>,
    /// Body fetches per UID, for `second_body_times`.
    body_fetches: std::collections::HashMap<(String, u32), u32>,
}

pub struct HostileServer {
    pub port: u16,
    pub ca_file: PathBuf,
    dir: TempDir,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl HostileServer {
    pub fn start(folders: Vec<HostileFolder>, script: HostileScript) -> HostileServer {
        let dir = tempfile::tempdir().unwrap();
        let certs = Certs::mint(&["localhost", "127.0.0.1"]);
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, &certs.ca_pem).unwrap();
        let config = Arc::new(server_config(&certs));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut state = State {
            folders,
            script,
            ..State::default()
        };
        state.reindex();
        let state = Arc::new(Mutex::new(state));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            while !sp.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((tcp, _)) => {
                        tcp.set_nonblocking(false).unwrap();
                        let (config, st, sp) = (config.clone(), st.clone(), sp.clone());
                        std::thread::spawn(move || {
                            let conn = rustls::ServerConnection::new(config).unwrap();
                            let tls = rustls::StreamOwned::new(conn, tcp);
                            let _ = serve(tls, st, sp);
                        });
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
        });
        HostileServer {
            port,
            ca_file,
            dir,
            state,
            stop,
        }
    }

    /// Commands received so far, without tags.
    pub fn commands(&self) -> Vec<String> {
        self.state.lock().unwrap().commands.clone()
    }

    pub fn clear_commands(&self) {
        self.state.lock().unwrap().commands.clear();
    }

    /// Changes the mailbox between runs.
    pub fn with_folders(&self, f: impl FnOnce(&mut Vec<HostileFolder>)) {
        let mut st = self.state.lock().unwrap();
        f(&mut st.folders);
        st.reindex();
    }

    /// An accounts CSV for the one account this server has, uploaded into
    /// the test Dovecot's `alice-365`.
    pub fn accounts(&self) -> PathBuf {
        let path = self.dir.path().join("accounts.csv");
        std::fs::write(
            &path,
            "EmailAddress,UserName,Password,TargetAddress,TargetPassword\n\
             alice@example.com,alice,alice-pw,alice-365,alice-365-pw\n",
        )
        .unwrap();
        path
    }

    /// `mailferry mirror --json` against this server.
    pub fn mirror_command(&self, store: &Path, extra: &[&str]) -> std::process::Command {
        // scripts/bench-folders.sh may time another build of mailferry.
        let bin = std::env::var_os("MAILFERRY_BENCH_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_mailferry").into());
        let mut cmd = std::process::Command::new(bin);
        cmd.env_remove("MAILFERRY_STORE")
            .arg("--store")
            .arg(store)
            .args(["mirror", "--json", "--accounts"])
            .arg(self.accounts())
            .args(["--host", "localhost", "--port", &self.port.to_string()])
            .arg("--ca-file")
            .arg(&self.ca_file)
            .args(extra);
        cmd
    }

    pub fn mirror(&self, store: &Path, extra: &[&str]) -> (Run, serde_json::Value) {
        let run = Run::of(&mut self.mirror_command(store, extra));
        let json = serde_json::from_str(&run.stdout).unwrap_or(serde_json::Value::Null);
        (run, json)
    }
}

impl Drop for HostileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

impl State {
    fn reindex(&mut self) {
        self.by_name = self
            .folders
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.clone(), i))
            .collect();
    }

    fn folder(&self, name: &str) -> Option<HostileFolder> {
        self.by_name.get(name).map(|&i| self.folders[i].clone())
    }
}

fn server_config(certs: &Certs) -> rustls::ServerConfig {
    use rustls::pki_types::pem::PemObject;
    let chain = rustls::pki_types::CertificateDer::pem_slice_iter(certs.leaf_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key =
        rustls::pki_types::PrivateKeyDer::from_pem_slice(certs.leaf_key_pem.as_bytes()).unwrap();
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap()
}

type Tls = rustls::StreamOwned<rustls::ServerConnection, TcpStream>;

const CAPS: &str = "IMAP4rev1 LITERAL+ UIDPLUS CONDSTORE LIST-STATUS ID";

/// A mailbox name as an IMAP string: quoted when it can be, else a literal.
fn astring(name: &str) -> Vec<u8> {
    if name.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        let mut q = String::from("\"");
        for c in name.chars() {
            if c == '"' || c == '\\' {
                q.push('\\');
            }
            q.push(c);
        }
        q.push('"');
        q.into_bytes()
    } else {
        let mut out = format!("{{{}}}\r\n", name.len()).into_bytes();
        out.extend_from_slice(name.as_bytes());
        out
    }
}

/// The first argument of a command: a quoted string or an atom.
fn first_arg(rest: &str) -> String {
    let rest = rest.trim_start();
    if let Some(q) = rest.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = q.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.extend(chars.next()),
                '"' => break,
                c => out.push(c),
            }
        }
        out
    } else {
        rest.split_whitespace().next().unwrap_or("").to_string()
    }
}

/// UIDs of `set` (`1:*`, `4`, `2:5,9`) among `all`.
fn uids_in(set: &str, all: &[u32]) -> Vec<u32> {
    let max = all.iter().copied().max().unwrap_or(0);
    let num = |s: &str| {
        if s == "*" {
            max
        } else {
            s.parse().unwrap_or(0)
        }
    };
    let mut out = Vec::new();
    for part in set.split(',') {
        let (a, b) = match part.split_once(':') {
            Some((a, b)) => (num(a), num(b)),
            None => (num(part), num(part)),
        };
        let (lo, hi) = (a.min(b), a.max(b));
        out.extend(all.iter().copied().filter(|u| *u >= lo && *u <= hi));
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The `BODY.PEEK[section]<start.len>` items asked for: (section, partial).
fn body_sections(items: &str) -> Vec<(String, Option<(u32, u32)>)> {
    let mut out = Vec::new();
    let mut rest = items;
    while let Some(i) = rest.find("BODY.PEEK[").or_else(|| rest.find("BODY[")) {
        let after = &rest[i..];
        let open = after.find('[').unwrap();
        let close = after.find(']').unwrap();
        let section = after[open + 1..close].to_string();
        let mut tail = &after[close + 1..];
        let partial = tail.strip_prefix('<').and_then(|p| {
            let end = p.find('>')?;
            let (a, b) = p[..end].split_once('.')?;
            tail = &p[end + 1..];
            Some((a.parse().ok()?, b.parse().ok()?))
        });
        if partial.is_none() {
            tail = &after[close + 1..];
        }
        out.push((section, partial));
        rest = tail;
    }
    out
}

fn header_of(body: &[u8]) -> &[u8] {
    match body.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => &body[..i + 4],
        None => body,
    }
}

fn message_id_field(body: &[u8]) -> Vec<u8> {
    let header = String::from_utf8_lossy(header_of(body)).to_string();
    let line = header
        .split("\r\n")
        .find(|l| l.to_ascii_lowercase().starts_with("message-id:"));
    match line {
        Some(l) => format!("{l}\r\n\r\n").into_bytes(),
        None => b"\r\n".to_vec(),
    }
}

fn serve(tls: Tls, state: Arc<Mutex<State>>, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    let mut r = BufReader::new(tls);
    let w = |r: &mut BufReader<Tls>, bytes: &[u8]| -> std::io::Result<()> {
        r.get_mut().write_all(bytes)?;
        r.get_mut().flush()
    };
    w(
        &mut r,
        format!("* OK [CAPABILITY {CAPS}] hostile ready\r\n").as_bytes(),
    )?;
    let mut selected: Option<String> = None;
    loop {
        if stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        let (tag, rest) = text.split_once(' ').unwrap_or((&text, ""));
        let tag = tag.to_string();
        let (verb, args) = rest.split_once(' ').unwrap_or((rest, ""));
        let verb = verb.to_ascii_uppercase();
        state.lock().unwrap().commands.push(rest.to_string());
        let ok = |what: &str| format!("{tag} OK {what} done\r\n").into_bytes();
        match verb.as_str() {
            "CAPABILITY" => {
                w(&mut r, format!("* CAPABILITY {CAPS}\r\n").as_bytes())?;
                w(&mut r, &ok("CAPABILITY"))?;
            }
            "LOGIN" | "ID" | "NOOP" | "ENABLE" | "CHECK" => {
                if verb == "LOGIN" {
                    w(
                        &mut r,
                        format!("{tag} OK [CAPABILITY {CAPS}] Logged in\r\n").as_bytes(),
                    )?;
                } else {
                    w(&mut r, &ok(&verb))?;
                }
            }
            "LOGOUT" => {
                w(&mut r, b"* BYE bye\r\n")?;
                w(&mut r, &ok("LOGOUT"))?;
                return Ok(());
            }
            "LIST" => {
                let endless = state.lock().unwrap().script.endless_line;
                if let Some(n) = endless {
                    w(&mut r, b"* ")?;
                    let chunk = vec![b'x'; 64 * 1024];
                    let mut sent = 0;
                    while sent < n {
                        let k = chunk.len().min(n - sent);
                        if w(&mut r, &chunk[..k]).is_err() {
                            return Ok(());
                        }
                        sent += k;
                    }
                    // Silence, until the client gives up.
                    let mut sink = [0u8; 1024];
                    while r.get_mut().read(&mut sink).unwrap_or(0) > 0 {}
                    return Ok(());
                }
                let with_status = args.to_ascii_uppercase().contains("RETURN");
                let mut out = Vec::new();
                if args.trim_end().ends_with("\"\"") {
                    out.extend_from_slice(b"* LIST (\\Noselect) \"/\" \"\"\r\n");
                } else {
                    let st = state.lock().unwrap();
                    for f in &st.folders {
                        out.extend_from_slice(b"* LIST () \"/\" ");
                        out.extend_from_slice(&astring(&f.name));
                        out.extend_from_slice(b"\r\n");
                        if with_status {
                            out.extend_from_slice(b"* STATUS ");
                            out.extend_from_slice(&astring(&f.name));
                            out.extend_from_slice(status_items(f).as_bytes());
                            out.extend_from_slice(b"\r\n");
                        }
                    }
                }
                out.extend_from_slice(&ok("LIST"));
                w(&mut r, &out)?;
            }
            "STATUS" => {
                let name = first_arg(args);
                let folder = state.lock().unwrap().folder(&name);
                match folder {
                    Some(f) => {
                        let mut out = b"* STATUS ".to_vec();
                        out.extend_from_slice(&astring(&f.name));
                        out.extend_from_slice(status_items(&f).as_bytes());
                        out.extend_from_slice(b"\r\n");
                        out.extend_from_slice(&ok("STATUS"));
                        w(&mut r, &out)?;
                    }
                    None => w(&mut r, format!("{tag} NO no such folder\r\n").as_bytes())?,
                }
            }
            "EXAMINE" | "SELECT" => {
                let name = first_arg(args);
                let folder = state.lock().unwrap().folder(&name);
                match folder {
                    Some(f) => {
                        selected = Some(name);
                        let next = f.messages.iter().map(|m| m.uid).max().unwrap_or(0) + 1;
                        let out = format!(
                            "* {} EXISTS\r\n* OK [UIDVALIDITY {}] v\r\n* OK [UIDNEXT {next}] n\r\n\
                             * OK [HIGHESTMODSEQ {}] m\r\n{tag} OK [READ-ONLY] {verb} done\r\n",
                            f.messages.len(),
                            f.uidvalidity,
                            modseq(&f)
                        );
                        w(&mut r, out.as_bytes())?;
                    }
                    None => {
                        selected = None;
                        w(&mut r, format!("{tag} NO no such folder\r\n").as_bytes())?;
                    }
                }
            }
            "UID" => {
                let (sub, rest) = args.split_once(' ').unwrap_or((args, ""));
                let Some(name) = selected.clone() else {
                    w(
                        &mut r,
                        format!("{tag} BAD no folder selected\r\n").as_bytes(),
                    )?;
                    continue;
                };
                let folder = state.lock().unwrap().folder(&name);
                let Some(folder) = folder else {
                    w(&mut r, format!("{tag} NO folder gone\r\n").as_bytes())?;
                    continue;
                };
                let all: Vec<u32> = folder.messages.iter().map(|m| m.uid).collect();
                match sub.to_ascii_uppercase().as_str() {
                    "SEARCH" => {
                        // ALL, or `UID a:b`.
                        let found = match rest.to_ascii_uppercase().strip_prefix("UID ") {
                            Some(set) => uids_in(set.trim(), &all),
                            None => all.clone(),
                        };
                        let list: Vec<String> = found.iter().map(u32::to_string).collect();
                        let out =
                            format!("* SEARCH {}\r\n{tag} OK SEARCH done\r\n", list.join(" "));
                        w(&mut r, out.as_bytes())?;
                    }
                    "FETCH" => {
                        let (set, items) = rest.split_once(' ').unwrap_or((rest, ""));
                        let items = items.to_ascii_uppercase();
                        if items.contains("CHANGEDSINCE") {
                            // Nothing changes on this server between runs.
                            w(&mut r, &ok("FETCH"))?;
                            continue;
                        }
                        let sections = body_sections(&items);
                        let wants_body = sections.iter().any(|(s, p)| s.is_empty() && p.is_none());
                        let asked: std::collections::HashSet<u32> =
                            uids_in(set, &all).into_iter().collect();
                        let mut out = Vec::new();
                        for (seq, m) in folder.messages.iter().enumerate() {
                            if !asked.contains(&m.uid) {
                                continue;
                            }
                            let mut bodies = vec![&m.body];
                            if wants_body && let Some(second) = &m.second_body {
                                let mut st = state.lock().unwrap();
                                let n = st.body_fetches.entry((name.clone(), m.uid)).or_insert(0);
                                *n += 1;
                                if *n <= m.second_body_times {
                                    bodies.push(second);
                                }
                            }
                            for body in bodies {
                                out.extend_from_slice(
                                    format!("* {} FETCH (UID {}", seq + 1, m.uid).as_bytes(),
                                );
                                if items.contains("FLAGS") {
                                    out.extend_from_slice(
                                        format!(" FLAGS ({})", m.flags).as_bytes(),
                                    );
                                }
                                if items.contains("INTERNALDATE")
                                    && let Some(d) = &m.internal_date
                                {
                                    out.extend_from_slice(
                                        format!(" INTERNALDATE \"{d}\"").as_bytes(),
                                    );
                                }
                                if items.contains("RFC822.SIZE") {
                                    let size = m.claimed_size.unwrap_or(body.len() as u32);
                                    out.extend_from_slice(
                                        format!(" RFC822.SIZE {size}").as_bytes(),
                                    );
                                }
                                if items.contains("MODSEQ") {
                                    out.extend_from_slice(b" MODSEQ (1)");
                                }
                                for (section, partial) in &sections {
                                    let header = header_of(body);
                                    let whole: Vec<u8> = match section.as_str() {
                                        "" => body.clone(),
                                        "HEADER" => header.to_vec(),
                                        "TEXT" => body[header.len()..].to_vec(),
                                        s if s.starts_with("HEADER.FIELDS") => {
                                            message_id_field(body)
                                        }
                                        _ => Vec::new(),
                                    };
                                    let (name, data) = match partial {
                                        Some((start, len)) => {
                                            let a = (*start as usize).min(whole.len());
                                            let b = (a + *len as usize).min(whole.len());
                                            (
                                                format!("BODY[{section}]<{start}>"),
                                                whole[a..b].to_vec(),
                                            )
                                        }
                                        None => (format!("BODY[{section}]"), whole),
                                    };
                                    out.extend_from_slice(
                                        format!(" {name} {{{}}}\r\n", data.len()).as_bytes(),
                                    );
                                    out.extend_from_slice(&data);
                                }
                                out.extend_from_slice(b")\r\n");
                            }
                            if out.len() > 1 << 20 {
                                w(&mut r, &out)?;
                                out.clear();
                            }
                        }
                        out.extend_from_slice(&ok("FETCH"));
                        w(&mut r, &out)?;
                    }
                    _ => w(
                        &mut r,
                        format!("{tag} BAD unknown UID command\r\n").as_bytes(),
                    )?,
                }
            }
            "CLOSE" | "UNSELECT" => {
                selected = None;
                w(&mut r, &ok(&verb))?;
            }
            _ => w(&mut r, format!("{tag} BAD unknown command\r\n").as_bytes())?,
        }
    }
}

fn modseq(f: &HostileFolder) -> u64 {
    f.messages.len() as u64 + 1
}

fn status_items(f: &HostileFolder) -> String {
    let next = f.messages.iter().map(|m| m.uid).max().unwrap_or(0) + 1;
    format!(
        " (MESSAGES {} UIDNEXT {next} UIDVALIDITY {} HIGHESTMODSEQ {})",
        f.messages.len(),
        f.uidvalidity,
        modseq(f)
    )
}
