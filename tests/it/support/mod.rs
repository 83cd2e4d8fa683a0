//! Test support: a real Dovecot on a free loopback port with implicit TLS
//! and a certificate minted here, a small independent IMAP client to seed
//! and inspect it, and helpers to run the mailferry binary and read its store.
//!
//! The seeding client is deliberately separate from mailferry's IMAP code,
//! so the tests never grade mailferry with its own reader.

pub mod azurite;
pub mod courier;
pub mod cyrus;
pub mod dns;
pub mod exchange;
pub mod graph;
pub mod hostile;
pub mod identity;
pub mod moto;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use tempfile::TempDir;

/// A CA and a leaf certificate signed by it.
pub struct Certs {
    pub ca_pem: String,
    pub leaf_pem: String,
    pub leaf_key_pem: String,
}

impl Certs {
    /// A leaf for `names` (DNS names; "127.0.0.1" becomes an IP SAN).
    pub fn mint(names: &[&str]) -> Certs {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "mailferry test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf_key = KeyPair::generate().unwrap();
        let dns: Vec<String> = names
            .iter()
            .filter(|n| n.parse::<std::net::IpAddr>().is_err())
            .map(|s| s.to_string())
            .collect();
        let mut leaf_params = CertificateParams::new(dns).unwrap();
        for n in names {
            if let Ok(ip) = n.parse() {
                leaf_params.subject_alt_names.push(SanType::IpAddress(ip));
            }
        }
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, names[0]);
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
        Certs {
            ca_pem: ca_cert.pem(),
            leaf_pem: leaf.pem(),
            leaf_key_pem: leaf_key.serialize_pem(),
        }
    }
}

/// What the tests need of any IMAP server they start (Dovecot, Cyrus,
/// Courier): where it listens, the CA that signed its certificate, and how
/// it names folders.
pub trait Server {
    fn port(&self) -> u16;
    fn ca_file(&self) -> &Path;
    /// The first name on the server's certificate.
    fn cert_name(&self) -> &str;
    /// A directory of the test run (for CSVs and the like).
    fn dir(&self) -> &Path;
    /// "dovecot", "cyrus" or "courier", for messages.
    fn name(&self) -> &'static str;
    fn separator(&self) -> char;
    /// The personal namespace prefix: "" or "INBOX.".
    fn prefix(&self) -> &'static str;

    /// A user's folder by its name below the namespace ("Archive" is
    /// "INBOX.Archive" on Cyrus); "INBOX" stays.
    fn folder(&self, path: &str) -> String {
        if path == "INBOX" {
            return path.to_string();
        }
        format!(
            "{}{}",
            self.prefix(),
            path.replace('/', &self.separator().to_string())
        )
    }

    fn client(&self, user: &str, password: &str) -> RawImap {
        RawImap::connect(
            self.port(),
            self.ca_file(),
            self.cert_name(),
            user,
            password,
        )
    }

    fn client_xoauth2(&self, user: &str, token: &str) -> RawImap {
        RawImap::connect_xoauth2(self.port(), self.ca_file(), self.cert_name(), user, token)
    }

    /// An accounts CSV for the given users (login = user name).
    fn accounts_csv(&self, users: &[(&str, &str)]) -> PathBuf {
        let mut text = String::from("EmailAddress,UserName,Password\n");
        for (u, p) in users {
            text.push_str(&format!("{u}@example.com,{u},{p}\n"));
        }
        let path = self.dir().join(format!("accounts-{}.csv", users.len()));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// An accounts CSV that mirrors `source` users and uploads each into
    /// `target` users (with the non-Microsoft TargetAddress and
    /// TargetPassword columns).
    fn migration_csv(&self, pairs: &[(&str, &str, &str, &str)]) -> PathBuf {
        let mut text =
            String::from("EmailAddress,UserName,Password,TargetAddress,TargetPassword\n");
        for (src, src_pw, dst, dst_pw) in pairs {
            text.push_str(&format!(
                "{src}@example.com,{src},{src_pw},{dst},{dst_pw}\n"
            ));
        }
        let path = self.dir().join(format!("migration-{}.csv", pairs.len()));
        std::fs::write(&path, text).unwrap();
        path
    }
}

/// Where the servers that conflict with Dovecot (cyrus-imapd,
/// courier-imap) are unpacked: a place every system user can reach, since
/// their daemons drop to their own users. scripts/test.sh downloads the
/// packages there.
pub fn test_servers_dir() -> PathBuf {
    std::env::var_os("MAILFERRY_TEST_SERVERS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/mailferry-test-servers"))
}

/// The unpacked tree of `package`, unpacked from its downloaded .deb on
/// first use (into a fresh directory, then renamed: test binaries and the
/// tests of one binary race, so the directory is the caller's own).
pub fn unpacked_server(package: &str) -> PathBuf {
    let base = test_servers_dir();
    let tree = base.join(package);
    if tree.join(".unpacked").exists() {
        return tree;
    }
    let deb = std::fs::read_dir(&base)
        .ok()
        .and_then(|d| {
            d.flatten().map(|e| e.path()).find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
            })
        })
        .unwrap_or_else(|| {
            panic!(
                "{package} is not downloaded to {}: run scripts/test.sh (it runs \
                 `apt-get download {package}` there)",
                base.display()
            )
        });
    static UNPACKS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = UNPACKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = base.join(format!(".{package}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let status = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&tmp)
        .status()
        .expect("dpkg-deb");
    assert!(status.success(), "cannot unpack {}", deb.display());
    std::fs::write(tmp.join(".unpacked"), b"").unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    if std::fs::rename(&tmp, &tree).is_err() {
        // Another test was first.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    assert!(
        tree.join(".unpacked").exists(),
        "{} not unpacked",
        tree.display()
    );
    tree
}

/// Until the server spawned as `child` (not whatever else may hold the
/// port) greets over TLS with the certificate minted for it.
pub fn wait_for_greeting(
    child: &mut Child,
    port: u16,
    ca_file: &Path,
    cert_name: &str,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the server exited ({status})"));
        }
        if tls_stream(port, ca_file, cert_name)
            .and_then(|mut s| {
                let mut line = Vec::new();
                BufReader::new(&mut s).read_until(b'\n', &mut line)?;
                Ok(line)
            })
            .is_ok_and(|line| line.starts_with(b"* OK"))
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("no IMAP greeting on {port}"))
}

/// How to build a Dovecot.
pub struct DovecotConfig {
    pub users: Vec<(String, String)>,
    pub separator: char,
    /// Replace the post-login capability list (to hide CONDSTORE etc.).
    pub capabilities: Option<String>,
    /// Names on the server certificate.
    pub cert_names: Vec<String>,
    /// Accept XOAUTH2 tokens, checked at this introspection URL; a token
    /// is good for every mailbox of the domain it names.
    pub oauth_introspection: Option<String>,
    /// Give every mailbox a storage quota (Dovecot's "100k", "10M"), and
    /// offer QUOTA.
    pub quota_storage: Option<String>,
    /// Maildir with LAYOUT=fs: folder names may hold dots (the default
    /// Maildir++ layout refuses them).
    pub fs_layout: bool,
}

impl Default for DovecotConfig {
    fn default() -> Self {
        DovecotConfig {
            users: vec![
                ("alice".into(), "alice-pw".into()),
                ("bob".into(), "bob-pw".into()),
                ("alice-365".into(), "alice-365-pw".into()),
                ("bob-365".into(), "bob-365-pw".into()),
            ],
            separator: '/',
            capabilities: None,
            cert_names: vec!["localhost".into(), "127.0.0.1".into()],
            oauth_introspection: None,
            quota_storage: None,
            fs_layout: false,
        }
    }
}

/// A running Dovecot; stopped (and waited for) on drop.
pub struct Dovecot {
    pub dir: TempDir,
    pub port: u16,
    pub ca_file: PathBuf,
    pub separator: char,
    /// The first name on the server's certificate.
    pub cert_name: String,
    child: Child,
    uid: u32,
    gid: u32,
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn current_user() -> (String, u32, u32) {
    let out = |arg: &str| {
        String::from_utf8(Command::new("id").arg(arg).output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string()
    };
    (
        out("-un"),
        out("-u").parse().unwrap(),
        out("-g").parse().unwrap(),
    )
}

impl Dovecot {
    pub fn start() -> Dovecot {
        Dovecot::start_with(DovecotConfig::default())
    }

    pub fn start_with(config: DovecotConfig) -> Dovecot {
        // The port is free when picked, but another test may take it before
        // Dovecot binds it: then start afresh on another one.
        let mut last = String::new();
        for _ in 0..5 {
            match Dovecot::start_once(&config) {
                Ok(server) => return server,
                Err(why) => last = why,
            }
        }
        panic!("dovecot did not come up after 5 tries: {last}");
    }

    fn start_once(config: &DovecotConfig) -> Result<Dovecot, String> {
        let dovecot = which("dovecot").expect(
            "dovecot is not installed: run `apt-get install -y dovecot-imapd dovecot-core` \
             (scripts/test.sh does this)",
        );
        let dir = tempfile::Builder::new()
            .prefix("mailferry-dovecot-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let d = dir.path();
        for sub in ["run", "state", "mail", "home"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
            std::fs::set_permissions(d.join(sub), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let names: Vec<&str> = config.cert_names.iter().map(String::as_str).collect();
        let certs = Certs::mint(&names);
        std::fs::write(d.join("server.pem"), &certs.leaf_pem).unwrap();
        std::fs::write(d.join("server.key"), &certs.leaf_key_pem).unwrap();
        std::fs::write(d.join("ca.pem"), &certs.ca_pem).unwrap();
        let passwd: String = config
            .users
            .iter()
            .map(|(u, p)| format!("{u}:{{PLAIN}}{p}::::::\n"))
            .collect();
        std::fs::write(d.join("passwd"), passwd).unwrap();

        let (user_name, my_uid, my_gid) = current_user();
        let (internal, login, uid, gid) = if is_root() {
            ("dovecot".to_string(), "dovenull".to_string(), 65534, 65534)
        } else {
            (user_name.clone(), user_name, my_uid, my_gid)
        };
        for sub in ["mail", "home"] {
            chown(&d.join(sub), uid, gid);
        }
        let (mechanisms, oauth_passdb) = match &config.oauth_introspection {
            Some(url) => {
                std::fs::write(
                    d.join("oauth2.conf"),
                    format!(
                        "introspection_url = {url}\nintrospection_mode = post\n\
                         username_attribute = username\nusername_format = %d\n\
                         active_attribute = active\nactive_value = true\n"
                    ),
                )
                .unwrap();
                (
                    "plain login xoauth2 oauthbearer",
                    format!(
                        "passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {}/oauth2.conf\n}}\n",
                        d.display()
                    ),
                )
            }
            None => ("plain login", String::new()),
        };
        let port = free_port();
        let caps = config
            .capabilities
            .as_ref()
            .map(|c| format!("  imap_capability = {c}\n"))
            .unwrap_or_default();
        let (quota_plugin, imap_quota_plugin, quota_settings) = match &config.quota_storage {
            Some(limit) => (
                " quota",
                " imap_quota",
                format!(
                    "plugin {{\n  quota = maildir:User quota\n  quota_rule = *:storage={limit}\n}}\n"
                ),
            ),
            None => ("", "", String::new()),
        };
        let conf = format!(
            r#"base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
instance_name = mailferry-test-{port}
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{d}/server.pem
ssl_key = <{d}/server.key
auth_mechanisms = {mechanisms}
disable_plaintext_auth = no
first_valid_uid = 0
default_internal_user = {internal}
default_login_user = {login}
mail_location = maildir:{d}/mail/%u{layout}
mail_plugins = $mail_plugins{quota_plugin}
{quota_settings}namespace inbox {{
  inbox = yes
  separator = {sep}
}}
{oauth_passdb}passdb {{
  driver = passwd-file
  args = {d}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={d}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = {port}
    ssl = yes
  }}
}}
protocol imap {{
  mail_plugins = $mail_plugins imap_zlib{imap_quota_plugin}
  mail_max_userip_connections = 50
  imap_id_log = *
{caps}}}
"#,
            d = d.display(),
            sep = config.separator,
            layout = if config.fs_layout { ":LAYOUT=fs" } else { "" },
        );
        std::fs::write(d.join("dovecot.conf"), conf).unwrap();
        let child = Command::new(dovecot)
            .arg("-F")
            .arg("-c")
            .arg(d.join("dovecot.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start dovecot");
        let server = Dovecot {
            ca_file: d.join("ca.pem"),
            dir,
            port,
            separator: config.separator,
            cert_name: config.cert_names[0].clone(),
            child,
            uid,
            gid,
        };
        let mut server = server;
        match server.wait_for_greeting() {
            Ok(()) => Ok(server),
            Err(why) => {
                server.stop();
                Err(why)
            }
        }
    }

    /// Until this Dovecot (not whatever else may hold the port) greets over
    /// TLS with the certificate minted for it.
    fn wait_for_greeting(&mut self) -> Result<(), String> {
        wait_for_greeting(&mut self.child, self.port, &self.ca_file, &self.cert_name)
            .map_err(|why| format!("{why}: {}", self.log()))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }

    /// The Maildir of a folder ("INBOX" or a name using the separator).
    pub fn maildir(&self, user: &str, folder: &str) -> PathBuf {
        let root = self.dir.path().join("mail").join(user);
        if folder == "INBOX" {
            root
        } else {
            root.join(format!(".{}", folder.replace(self.separator, ".")))
        }
    }

    /// Drops a message file straight into a Maildir (bytes no IMAP APPEND
    /// could carry, such as NUL).
    pub fn write_maildir_message(&self, user: &str, folder: &str, name: &str, bytes: &[u8]) {
        self.write_maildir_messages(user, folder, &[(name.to_string(), bytes.to_vec())]);
    }

    /// Many messages at once (one ownership fix-up at the end).
    pub fn write_maildir_messages(&self, user: &str, folder: &str, messages: &[(String, Vec<u8>)]) {
        let md = self.maildir(user, folder);
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(md.join(sub)).unwrap();
        }
        // S= and W= in the name let Dovecot answer RFC822.SIZE without
        // opening the file (W counts CRLF line ends).
        for (name, bytes) in messages {
            let lf = bytes.iter().filter(|&&b| b == b'\n').count();
            let crlf = bytes.windows(2).filter(|w| w == b"\r\n").count();
            let vsize = bytes.len() + lf - crlf;
            let path = md
                .join("cur")
                .join(format!("{name},S={},W={vsize}:2,", bytes.len()));
            std::fs::write(&path, bytes).unwrap();
        }
        chown_tree(&self.dir.path().join("mail"), self.uid, self.gid);
    }

    pub fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                _ if Instant::now() > deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

impl Server for Dovecot {
    fn port(&self) -> u16 {
        self.port
    }
    fn ca_file(&self) -> &Path {
        &self.ca_file
    }
    fn cert_name(&self) -> &str {
        &self.cert_name
    }
    fn dir(&self) -> &Path {
        self.dir.path()
    }
    fn name(&self) -> &'static str {
        "dovecot"
    }
    fn separator(&self) -> char {
        self.separator
    }
    fn prefix(&self) -> &'static str {
        ""
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
    }
}

fn chown(path: &Path, uid: u32, gid: u32) {
    let _ = std::os::unix::fs::chown(path, Some(uid), Some(gid));
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    chown(path, uid, gid);
    if path.is_dir() {
        for e in std::fs::read_dir(path).unwrap().flatten() {
            chown_tree(&e.path(), uid, gid);
        }
    }
}

pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// One untagged response: its text with literals cut out, and the literals.
#[derive(Debug, Clone)]
pub struct Untagged {
    pub text: String,
    pub literals: Vec<Vec<u8>>,
}

/// A message as the server shows it.
#[derive(Debug, Clone)]
pub struct ServerMessage {
    pub uid: u32,
    pub flags: Vec<String>,
    pub internal_date: String,
    pub body: Vec<u8>,
}

/// A minimal blocking IMAP client for seeding and inspecting Dovecot.
pub struct RawImap {
    reader: BufReader<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>,
    tag: u32,
}

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection to 127.0.0.1:`port` that trusts only `ca_file`.
fn tls_stream(port: u16, ca_file: &Path, name: &str) -> std::io::Result<TlsStream> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca_file)?;
    for cert in rustls_pemfile_certs(&pem) {
        roots.add(cert).map_err(std::io::Error::other)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(std::io::Error::other)?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let server_name =
        rustls::pki_types::ServerName::try_from(name.to_string()).map_err(std::io::Error::other)?;
    let conn = rustls::ClientConnection::new(Arc::new(config), server_name)
        .map_err(std::io::Error::other)?;
    let tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    // No Nagle: a literal written after the server's go-ahead would wait
    // for the delayed ACK of the command line (~40 ms per APPEND).
    tcp.set_nodelay(true)?;
    Ok(rustls::StreamOwned::new(conn, tcp))
}

impl RawImap {
    pub fn connect(port: u16, ca_file: &Path, name: &str, user: &str, password: &str) -> RawImap {
        let mut client = RawImap::connect_only(port, ca_file, name);
        client
            .command(&format!("LOGIN {} {}", quote(user), quote(password)))
            .unwrap();
        client
    }

    /// Logs in with XOAUTH2 and a bearer token.
    pub fn connect_xoauth2(
        port: u16,
        ca_file: &Path,
        name: &str,
        user: &str,
        token: &str,
    ) -> RawImap {
        use base64::Engine as _;
        let mut client = RawImap::connect_only(port, ca_file, name);
        let ir = base64::engine::general_purpose::STANDARD
            .encode(format!("user={user}\x01auth=Bearer {token}\x01\x01"));
        client
            .command(&format!("AUTHENTICATE XOAUTH2 {ir}"))
            .unwrap();
        client
    }

    fn connect_only(port: u16, ca_file: &Path, name: &str) -> RawImap {
        let stream = tls_stream(port, ca_file, name)
            .unwrap_or_else(|e| panic!("cannot connect to 127.0.0.1:{port}: {e}"));
        stream
            .sock
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut client = RawImap {
            reader: BufReader::new(stream),
            tag: 0,
        };
        let greeting = client.read_line();
        assert!(greeting.starts_with(b"* OK"), "greeting: {greeting:?}");
        client
    }

    fn read_line(&mut self) -> Vec<u8> {
        let mut line = Vec::new();
        self.reader.read_until(b'\n', &mut line).unwrap();
        assert!(!line.is_empty(), "server closed the connection");
        line
    }

    /// Sends a command; returns untagged responses, or the tagged line if not OK.
    pub fn command(&mut self, cmd: &str) -> Result<Vec<Untagged>, String> {
        self.command_bytes(cmd.as_bytes(), None)
    }

    fn command_bytes(
        &mut self,
        cmd: &[u8],
        literal: Option<&[u8]>,
    ) -> Result<Vec<Untagged>, String> {
        self.tag += 1;
        let tag = format!("T{}", self.tag);
        let stream = self.reader.get_mut();
        stream.write_all(tag.as_bytes()).unwrap();
        stream.write_all(b" ").unwrap();
        stream.write_all(cmd).unwrap();
        if let Some(lit) = literal {
            stream.write_all(lit).unwrap();
        }
        stream.write_all(b"\r\n").unwrap();
        stream.flush().unwrap();
        let mut out = Vec::new();
        let mut current = Untagged {
            text: String::new(),
            literals: Vec::new(),
        };
        loop {
            let line = self.read_line();
            let text = String::from_utf8_lossy(&line).to_string();
            if current.text.is_empty() && text.starts_with(&format!("{tag} ")) {
                return if text[tag.len() + 1..].starts_with("OK") {
                    Ok(out)
                } else {
                    Err(text.trim_end().to_string())
                };
            }
            let trimmed = text.trim_end_matches("\r\n");
            if let Some(n) = literal_len(trimmed) {
                let mut buf = vec![0u8; n];
                self.reader.read_exact(&mut buf).unwrap();
                current.text.push_str(trimmed);
                current.literals.push(buf);
                continue;
            }
            current.text.push_str(trimmed);
            out.push(std::mem::replace(
                &mut current,
                Untagged {
                    text: String::new(),
                    literals: Vec::new(),
                },
            ));
        }
    }

    pub fn create(&mut self, folder: &str) {
        self.command(&format!("CREATE {}", quote(folder))).unwrap();
    }

    /// APPENDs a message with flags and an INTERNALDATE; returns its UID.
    pub fn append(&mut self, folder: &str, flags: &str, date: &str, body: &[u8]) -> u32 {
        // A synchronising literal: not every server has LITERAL+ (Courier).
        let cmd = format!(
            "APPEND {} ({flags}) \"{date}\" {{{}}}\r\n",
            quote(folder),
            body.len()
        );
        self.tag += 1;
        let tag = format!("T{}", self.tag);
        let stream = self.reader.get_mut();
        stream.write_all(format!("{tag} ").as_bytes()).unwrap();
        stream.write_all(cmd.as_bytes()).unwrap();
        stream.flush().unwrap();
        let go_ahead = String::from_utf8_lossy(&self.read_line()).to_string();
        assert!(go_ahead.starts_with('+'), "APPEND refused: {go_ahead}");
        let stream = self.reader.get_mut();
        stream.write_all(body).unwrap();
        stream.write_all(b"\r\n").unwrap();
        stream.flush().unwrap();
        loop {
            let line = String::from_utf8_lossy(&self.read_line()).to_string();
            if line.starts_with(&format!("{tag} ")) {
                assert!(line.contains(" OK "), "APPEND failed: {line}");
                let uid = line
                    .split("APPENDUID ")
                    .nth(1)
                    .and_then(|r| r.split([' ', ']']).nth(1))
                    .and_then(|u| u.parse().ok())
                    .expect("APPENDUID");
                return uid;
            }
        }
    }

    pub fn select(&mut self, folder: &str) -> Vec<Untagged> {
        self.command(&format!("SELECT {}", quote(folder))).unwrap()
    }

    /// Every message of a folder as the server shows it: `BODY.PEEK[]`.
    pub fn messages(&mut self, folder: &str) -> Vec<ServerMessage> {
        self.select(folder);
        let responses = self
            .command("UID FETCH 1:* (UID FLAGS INTERNALDATE BODY.PEEK[])")
            .unwrap();
        let mut out: Vec<ServerMessage> = responses
            .into_iter()
            .filter(|r| r.text.contains(" FETCH "))
            .map(|r| ServerMessage {
                uid: between(&r.text, "UID ", &[' ', ')']).parse().unwrap(),
                flags: between(&r.text, "FLAGS (", &[')'])
                    .split_whitespace()
                    .filter(|f| *f != "\\Recent")
                    .map(String::from)
                    .collect(),
                internal_date: between(&r.text, "INTERNALDATE \"", &['"']).to_string(),
                body: r.literals.into_iter().next().unwrap_or_default(),
            })
            .collect();
        out.sort_by_key(|m| m.uid);
        out
    }

    pub fn uid_store(&mut self, folder: &str, uid: u32, change: &str) {
        self.select(folder);
        self.command(&format!("UID STORE {uid} {change}")).unwrap();
    }

    pub fn expunge_uid(&mut self, folder: &str, uid: u32) {
        self.uid_store(folder, uid, "+FLAGS.SILENT (\\Deleted)");
        self.command(&format!("UID EXPUNGE {uid}")).unwrap();
    }

    /// Leaves the selected folder: UNSELECT, or (Courier has none) opening
    /// INBOX read-only instead.
    fn leave_folder(&mut self) {
        if self.command("UNSELECT").is_err() {
            self.command("EXAMINE INBOX").unwrap();
        }
    }

    pub fn delete_folder(&mut self, folder: &str) {
        self.leave_folder();
        self.command(&format!("DELETE {}", quote(folder))).unwrap();
    }

    pub fn rename_folder(&mut self, from: &str, to: &str) {
        self.leave_folder();
        self.command(&format!("RENAME {} {}", quote(from), quote(to)))
            .unwrap();
    }

    /// Every selectable folder's name, unquoted.
    pub fn folders(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        for r in self.command("LIST \"\" \"*\"").unwrap() {
            if r.text.contains("\\Noselect") || r.text.contains("\\NonExistent") {
                continue;
            }
            // * LIST (attrs) "sep" name
            let after_attrs = &r.text[r.text.find(") ").unwrap() + 2..];
            let after_sep = if let Some(rest) = after_attrs.strip_prefix("NIL ") {
                rest
            } else {
                let close = after_attrs[1..].find('"').unwrap() + 2;
                &after_attrs[close + 1..]
            };
            let name = if let Some(lit) = r.literals.first() {
                String::from_utf8(lit.clone()).unwrap()
            } else if let Some(q) = after_sep.strip_prefix('"') {
                q.strip_suffix('"')
                    .unwrap()
                    .replace("\\\"", "\"")
                    .replace("\\\\", "\\")
            } else {
                after_sep.to_string()
            };
            out.push(name);
        }
        out
    }
}

fn literal_len(line: &str) -> Option<usize> {
    let open = line.rfind('{')?;
    let inner = line[open + 1..].strip_suffix('}')?;
    let inner = inner.strip_suffix('+').unwrap_or(inner);
    inner.parse().ok().filter(|_| !line[..open].ends_with('\\'))
}

fn between<'a>(text: &'a str, start: &str, ends: &[char]) -> &'a str {
    let from = text
        .find(start)
        .map(|i| i + start.len())
        .unwrap_or(text.len());
    let rest = &text[from..];
    let to = rest.find(ends).unwrap_or(rest.len());
    &rest[..to]
}

pub fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

/// A simple RFC 5322 message.
pub fn message(subject: &str, message_id: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Sender <sender@example.org>\r\nTo: rcpt@example.com\r\nSubject: {subject}\r\n\
         Message-ID: <{message_id}>\r\nDate: Mon, 3 Mar 2025 10:00:00 +0100\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

/// Every folder of a mailbox and its message bodies, sorted: what a test
/// compares between source and target.
pub fn contents(
    server: &(impl Server + ?Sized),
    user: &str,
    pw: &str,
) -> std::collections::BTreeMap<String, Vec<Vec<u8>>> {
    let mut c = server.client(user, pw);
    let mut out = std::collections::BTreeMap::new();
    for folder in c.folders() {
        let mut bodies: Vec<Vec<u8>> = c.messages(&folder).into_iter().map(|m| m.body).collect();
        bodies.sort();
        out.insert(folder, bodies);
    }
    out
}

/// Running the mailferry binary.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Runs `cmd` to the end.
    pub fn of(cmd: &mut Command) -> Run {
        let out = cmd.output().unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        }
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

pub fn mailferry(args: &[&str]) -> Run {
    Run::of(
        Command::new(env!("CARGO_BIN_EXE_mailferry"))
            .args(args)
            .env_remove("MAILFERRY_STORE"),
    )
}

/// A Dovecot whose alice has one message in INBOX.
pub fn alice_with_one_message() -> Dovecot {
    let server = Dovecot::start();
    server.client("alice", "alice-pw").append(
        "INBOX",
        "",
        "03-Mar-2025 10:00:00 +0100",
        &message("hi", "hi@x", "hello"),
    );
    server
}

/// The element of a JSON array whose `key` is `value`; panics naming both.
pub fn find_in(array: &serde_json::Value, key: &str, value: &str) -> serde_json::Value {
    array
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {array}"))
        .iter()
        .find(|x| x[key] == value)
        .unwrap_or_else(|| panic!("no {key} = {value} in {array:#}"))
        .clone()
}

/// `--host … --port … --ca-file …`: `server` as the source.
pub fn source_flags(server: &(impl Server + ?Sized)) -> Vec<String> {
    let port = server.port().to_string();
    let ca = server.ca_file().to_string_lossy().to_string();
    ["--host", "localhost", "--port", &port, "--ca-file", &ca]
        .map(String::from)
        .to_vec()
}

/// `server` as a plain IMAP target (password logins).
pub fn target_flags(server: &(impl Server + ?Sized)) -> Vec<String> {
    let port = server.port().to_string();
    let ca = server.ca_file().to_string_lossy().to_string();
    [
        "--target-kind",
        "imap",
        "--target-host",
        "localhost",
        "--target-port",
        &port,
        "--target-ca-file",
        &ca,
    ]
    .map(String::from)
    .to_vec()
}

/// Runs mailferry with `args` followed by `more` (owned flags).
pub fn mailferry_with(args: &[&str], more: &[Vec<String>]) -> Run {
    let mut all: Vec<&str> = args.to_vec();
    for m in more {
        all.extend(m.iter().map(String::as_str));
    }
    mailferry(&all)
}

/// The `mailferry mirror --json` command line against `port`, to spawn.
pub fn mirror_command(
    server: &(impl Server + ?Sized),
    port: u16,
    store: &Path,
    accounts: &Path,
    extra: &[&str],
) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailferry"));
    cmd.env_remove("MAILFERRY_STORE")
        .arg("--store")
        .arg(store)
        .args(["mirror", "--json", "--accounts"])
        .arg(accounts)
        .args([
            "--host",
            "localhost",
            "--port",
            &port.to_string(),
            "--ca-file",
        ])
        .arg(server.ca_file())
        .args(extra);
    cmd
}

/// `mailferry mirror --json` against `server`; returns the run and its summary.
pub fn mirror(
    server: &(impl Server + ?Sized),
    store: &Path,
    accounts: &Path,
    extra: &[&str],
) -> (Run, serde_json::Value) {
    mirror_via(server, server.port(), store, accounts, extra)
}

/// The same through another port (a proxy in front of `server`).
pub fn mirror_via(
    server: &(impl Server + ?Sized),
    port: u16,
    store: &Path,
    accounts: &Path,
    extra: &[&str],
) -> (Run, serde_json::Value) {
    let run = Run::of(&mut mirror_command(server, port, store, accounts, extra));
    let json = run.json();
    (run, json)
}

/// `mailferry upload --json` into `server` (a plain IMAP target with
/// password logins unless `extra` says otherwise).
pub fn upload(
    server: &(impl Server + ?Sized),
    store: &Path,
    accounts: &Path,
    extra: &[&str],
) -> (Run, serde_json::Value) {
    upload_via(server, server.port(), store, accounts, extra)
}

pub fn upload_via(
    server: &(impl Server + ?Sized),
    port: u16,
    store: &Path,
    accounts: &Path,
    extra: &[&str],
) -> (Run, serde_json::Value) {
    let run = Run::of(&mut upload_command(server, port, store, accounts, extra));
    let json = run.json();
    (run, json)
}

/// The `mailferry upload --json` command line into `port`, to spawn.
pub fn upload_command(
    server: &(impl Server + ?Sized),
    port: u16,
    store: &Path,
    accounts: &Path,
    extra: &[&str],
) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailferry"));
    cmd.env_remove("MAILFERRY_STORE")
        .arg("--store")
        .arg(store)
        .args(["upload", "--json", "--accounts"])
        .arg(accounts)
        .args([
            "--target-host",
            "localhost",
            "--target-port",
            &port.to_string(),
        ])
        .arg("--target-ca-file")
        .arg(server.ca_file())
        .args(extra);
    cmd
}

/// Totals of a mirror summary, by name.
pub fn total(summary: &serde_json::Value, name: &str) -> u64 {
    summary["totals"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no total {name} in {summary}"))
}

/// One row of the store's index, joined for tests.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub account: String,
    pub folder: String,
    pub uid: u32,
    pub hash: String,
    pub flags: String,
    /// None: the server gave no readable INTERNALDATE.
    pub internal_date: Option<i64>,
    pub expunged: bool,
}

/// Every message of `user` on `server` is stored byte for byte, with its
/// flags and INTERNALDATE instant, and nothing else is live.
pub fn assert_store_matches(server: &impl Server, store: &Path, user: &str, pw: &str) {
    let mut client = server.client(user, pw);
    let account = format!("{user}@example.com");
    let stored: Vec<StoredMessage> = stored_messages(store)
        .into_iter()
        .filter(|m| m.account == account && !m.expunged)
        .collect();
    let mut on_server = 0;
    for name in client.folders() {
        for m in client.messages(&name) {
            on_server += 1;
            let row = stored
                .iter()
                .find(|s| s.folder == name && s.uid == m.uid)
                .unwrap_or_else(|| panic!("{}: {name} UID {} is not stored", server.name(), m.uid));
            assert_eq!(row.hash, sha256_hex(&m.body), "{name} UID {}: hash", m.uid);
            assert_eq!(
                blob(store, &row.hash),
                m.body,
                "{name} UID {}: bytes",
                m.uid
            );
            let mut flags = m.flags.clone();
            flags.sort();
            assert_eq!(row.flags, flags.join(" "), "{name} UID {}: flags", m.uid);
            assert_eq!(
                row.internal_date,
                Some(instant(&m.internal_date)),
                "{name} UID {}: date",
                m.uid
            );
        }
    }
    assert_eq!(
        stored.len(),
        on_server,
        "{}: live rows vs messages",
        server.name()
    );
}

pub fn stored_messages(store: &Path) -> Vec<StoredMessage> {
    let reader = mailferry::store::Store::open_read_only(store).unwrap();
    let mut rows: Vec<StoredMessage> = reader
        .index()
        .messages(None, None, true)
        .unwrap()
        .into_iter()
        .map(|m| StoredMessage {
            account: m.account,
            folder: m.wire_folder,
            uid: m.uid,
            hash: m.hash,
            flags: m.flags,
            internal_date: m.internal_date,
            expunged: m.expunged,
        })
        .collect();
    rows.sort_by(|a, b| (&a.account, &a.folder, a.uid).cmp(&(&b.account, &b.folder, b.uid)));
    rows
}

/// The raw bytes of a blob, read straight from its file.
pub fn blob(store: &Path, hash: &str) -> Vec<u8> {
    let path = store.join("objects").join(&hash[..2]).join(&hash[2..]);
    let compressed = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    zstd::decode_all(&compressed[..]).unwrap()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Every blob file in the store.
pub fn blob_files(store: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(dirs) = std::fs::read_dir(store.join("objects")) else {
        return out;
    };
    for dir in dirs.flatten() {
        if let Ok(files) = std::fs::read_dir(dir.path()) {
            out.extend(files.flatten().map(|f| f.path()));
        }
    }
    out
}

/// An IMAP date-time as a Unix instant.
pub fn instant(date: &str) -> i64 {
    chrono::DateTime::parse_from_str(date.trim_start(), "%d-%b-%Y %H:%M:%S %z")
        .unwrap()
        .timestamp()
}

/// What a [`Proxy`] does to the bytes from the server.
#[derive(Clone, Copy, Default)]
pub struct Faults {
    /// Cut this many connections (the first ones) ...
    pub cuts: usize,
    /// ... after this many bytes from the server: a link that drops mid-literal.
    pub cut_after: usize,
    /// Stop forwarding (without closing) after this many bytes on the first
    /// connection: a server that hangs.
    pub stall_after: Option<usize>,
    /// Forward at most this many bytes per second: a slow link.
    pub bytes_per_sec: Option<usize>,
}

/// A TCP proxy in front of a server that injects [`Faults`];
/// [`Proxy::go_away`] drops every connection and refuses new ones (a server
/// that is gone).
pub struct Proxy {
    pub port: u16,
    pub cut: Arc<std::sync::atomic::AtomicUsize>,
    gone: Arc<std::sync::atomic::AtomicBool>,
}

impl Proxy {
    pub fn start(upstream: u16, faults: Faults) -> Proxy {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicUsize::new(0));
        let gone = Arc::new(AtomicBool::new(false));
        let (counter, stop) = (cut.clone(), gone.clone());
        std::thread::spawn(move || {
            let mut accepted = 0;
            while !stop.load(Ordering::SeqCst) {
                let client = match listener.accept() {
                    Ok((c, _)) => c,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let mut down = Faults {
                    bytes_per_sec: faults.bytes_per_sec,
                    stall_after: if accepted == 0 {
                        faults.stall_after
                    } else {
                        None
                    },
                    ..Faults::default()
                };
                accepted += 1;
                if counter.load(Ordering::SeqCst) < faults.cuts {
                    counter.fetch_add(1, Ordering::SeqCst);
                    down.cuts = 1;
                    down.cut_after = faults.cut_after;
                }
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (stop1, stop2) = (stop.clone(), stop.clone());
                let up = Faults {
                    bytes_per_sec: faults.bytes_per_sec,
                    ..Faults::default()
                };
                std::thread::spawn(move || pipe(c2, s2, up, stop1));
                std::thread::spawn(move || pipe(server, client, down, stop2));
            }
        });
        Proxy { port, cut, gone }
    }

    /// Drops every connection and refuses new ones.
    pub fn go_away(&self) {
        self.gone.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.go_away();
    }
}

fn pipe(
    mut from: TcpStream,
    mut to: TcpStream,
    faults: Faults,
    gone: Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::Ordering;
    from.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let chunk = faults
        .bytes_per_sec
        .map(|r| (r / 50).max(1))
        .unwrap_or(16 * 1024);
    let mut buf = vec![0u8; chunk.min(16 * 1024)];
    let mut sent = 0usize;
    while !gone.load(Ordering::SeqCst) {
        if faults.stall_after.is_some_and(|s| sent >= s) {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(_) => break,
        };
        if faults.cuts > 0 && sent + n > faults.cut_after {
            let _ = to.write_all(&buf[..faults.cut_after - sent]);
            break;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n;
        if faults.bytes_per_sec.is_some() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = from.shutdown(std::net::Shutdown::Both);
}

/// What went through a [`Meter`]: bytes each way and round trips (each
/// time the client speaks after the server did; a TLS handshake counts as
/// it goes). The same measure for every client, whatever it logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Metered {
    pub bytes_up: u64,
    pub bytes_down: u64,
    pub round_trips: u64,
}

/// A TCP relay in front of a server that counts what a client costs it.
pub struct Meter {
    pub port: u16,
    counts: Arc<std::sync::Mutex<(Metered, bool)>>,
}

impl Meter {
    pub fn start(upstream: u16) -> Meter {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // (counts, whether the server spoke last)
        let counts: Arc<std::sync::Mutex<(Metered, bool)>> =
            Arc::new(std::sync::Mutex::new((Metered::default(), true)));
        let shared = counts.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                // A relay must not add Nagle's waits of its own.
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                for (from, to, up) in [
                    (
                        client.try_clone().unwrap(),
                        server.try_clone().unwrap(),
                        true,
                    ),
                    (server, client, false),
                ] {
                    let counts = shared.clone();
                    std::thread::spawn(move || {
                        let (mut from, mut to) = (from, to);
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            {
                                let mut c = counts.lock().unwrap();
                                if up {
                                    if c.1 {
                                        c.0.round_trips += 1;
                                    }
                                    c.1 = false;
                                    c.0.bytes_up += n as u64;
                                } else {
                                    c.1 = true;
                                    c.0.bytes_down += n as u64;
                                }
                            }
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Meter { port, counts }
    }

    /// What went through since the last reset, and a fresh start.
    pub fn take(&self) -> Metered {
        let mut c = self.counts.lock().unwrap();
        std::mem::replace(&mut *c, (Metered::default(), true)).0
    }
}
