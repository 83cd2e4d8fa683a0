//! Accounts and server settings.
//!
//! Accounts come from the Microsoft 365 IMAP migration CSV
//! (`EmailAddress,UserName,Password`, optional `UserRoot`) so an admin's
//! existing batch file works as is, or from a TOML file that may also hold
//! the source server settings and take passwords from the environment or a
//! file. Every error names the file and, for CSV, the line.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Rackspace Email's IMAP server, the first source we serve.
pub const DEFAULT_SOURCE_HOST: &str = "secure.emailsrvr.com";
pub const DEFAULT_IMAPS_PORT: u16 = 993;

/// How a client proves who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    /// IMAP LOGIN with user name and password (what Rackspace expects).
    #[default]
    Login,
    /// AUTHENTICATE PLAIN (SASL) with user name and password.
    Plain,
}

/// When to use COMPRESS=DEFLATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// When the server offers it, unless the server is on this machine
    /// (there it only costs CPU on both ends).
    #[default]
    Auto,
    /// Whenever the server offers it.
    Always,
    Never,
}

/// Where and how to reach an IMAP server.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    pub auth: AuthMethod,
    /// Extra trusted CA certificates (PEM), for a private CA.
    pub ca_file: Option<PathBuf>,
    /// Skip certificate verification. Only by an explicit, loudly named option.
    pub danger_accept_invalid_certs: bool,
    /// Simultaneous connections per account.
    pub connections: usize,
    pub compress: Compression,
    /// How long a server may send nothing before its connection counts as dead.
    pub io_timeout: std::time::Duration,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            host: DEFAULT_SOURCE_HOST.to_string(),
            port: DEFAULT_IMAPS_PORT,
            auth: AuthMethod::Login,
            ca_file: None,
            danger_accept_invalid_certs: false,
            connections: 4,
            compress: Compression::Auto,
            io_timeout: std::time::Duration::from_secs(180),
        }
    }
}

/// A password that never shows in logs, panics or debug output.
#[derive(Clone)]
pub struct Password(SecretString);

impl Password {
    pub fn new(s: impl Into<String>) -> Password {
        Password(SecretString::from(s.into()))
    }
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// One mailbox to migrate.
#[derive(Debug, Clone)]
pub struct Account {
    /// The address that names the account everywhere (the CSV's EmailAddress).
    pub name: String,
    /// The login at the source (the CSV's UserName).
    pub username: String,
    pub password: Password,
    /// For admin logins that see many users: the folder under which this
    /// user's mailbox lives (the CSV's UserRoot).
    pub user_root: Option<String>,
    /// Where the account was defined, for error messages ("batch.csv line 4").
    pub origin: String,
}

/// Everything read from the accounts file(s).
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub source: ServerSettings,
    pub accounts: Vec<Account>,
    /// How many accounts are mirrored at the same time.
    pub accounts_at_once: usize,
    pub store: Option<PathBuf>,
}

/// Reads an accounts file: TOML when it ends in `.toml`, else the M365 CSV.
pub fn load(path: &Path) -> Result<Config> {
    let is_toml = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("toml"));
    if is_toml {
        load_toml(path)
    } else {
        let text = std::fs::read(path)
            .with_context(|| format!("cannot read accounts file {}", path.display()))?;
        Ok(Config {
            accounts: parse_csv(&text, &path.display().to_string())?,
            accounts_at_once: 4,
            ..Config::default()
        })
    }
}

/// Parses the Microsoft 365 IMAP migration CSV. `file` names it in errors.
pub fn parse_csv(text: &[u8], file: &str) -> Result<Vec<Account>> {
    let text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::Headers)
        .flexible(true)
        .from_reader(text);
    let headers = reader
        .headers()
        .with_context(|| format!("{file}: cannot read the header line"))?
        .clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
    };
    let email_col = column("EmailAddress").ok_or_else(|| {
        anyhow!(
            "{file} line 1: no EmailAddress column; expected the Microsoft 365 migration \
             header EmailAddress,UserName,Password (found {:?})",
            headers.iter().collect::<Vec<_>>().join(",")
        )
    })?;
    let user_col =
        column("UserName").ok_or_else(|| anyhow!("{file} line 1: no UserName column"))?;
    let pass_col =
        column("Password").ok_or_else(|| anyhow!("{file} line 1: no Password column"))?;
    let root_col = column("UserRoot");

    let mut accounts = Vec::new();
    let mut seen: HashMap<String, u64> = HashMap::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| line_of(text, p.byte())).unwrap_or(0);
                bail!("{file} line {line}: not valid CSV ({})", csv_error_kind(&e));
            }
        };
        // csv's own line numbers drift on CRLF files; count from the byte offset.
        let line = record
            .position()
            .map(|p| line_of(text, p.byte()))
            .unwrap_or(0);
        if record.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        let field = |i: usize| record.get(i).map(str::trim).unwrap_or("");
        let email = field(email_col);
        if email.is_empty() {
            bail!("{file} line {line}: EmailAddress is empty");
        }
        if !email.contains('@') {
            bail!("{file} line {line}: EmailAddress {email:?} is not an e-mail address");
        }
        let username = field(user_col);
        if username.is_empty() {
            bail!("{file} line {line}: UserName is empty for {email}");
        }
        // Passwords are taken as written: spaces may be part of them.
        let password = record.get(pass_col).unwrap_or("");
        if password.is_empty() {
            bail!("{file} line {line}: Password is empty for {email}");
        }
        if let Some(first) = seen.insert(email.to_ascii_lowercase(), line) {
            bail!("{file} line {line}: {email} is already listed on line {first}");
        }
        let user_root = root_col
            .map(field)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        accounts.push(Account {
            name: email.to_string(),
            username: username.to_string(),
            password: Password::new(password),
            user_root,
            origin: format!("{file} line {line}"),
        });
    }
    if accounts.is_empty() {
        bail!("{file}: no accounts (only a header line)");
    }
    Ok(accounts)
}

/// The 1-based line that holds byte `offset` of `text`.
fn line_of(text: &[u8], offset: u64) -> u64 {
    let mut end = (offset as usize).min(text.len());
    // On CRLF files csv may point at the LF that ends the previous line.
    while end < text.len() && (text[end] == b'\r' || text[end] == b'\n') {
        end += 1;
    }
    text[..end].iter().filter(|&&b| b == b'\n').count() as u64 + 1
}

/// The CSV error without its record contents (which may hold a password).
fn csv_error_kind(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "not UTF-8".to_string(),
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("{len} fields where {expected_len} were expected"),
        csv::ErrorKind::Io(io) => io.to_string(),
        _ => "malformed record".to_string(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlFile {
    store: Option<PathBuf>,
    accounts_at_once: Option<usize>,
    /// A Microsoft 365 migration CSV with (more) accounts, relative to this file.
    accounts_csv: Option<PathBuf>,
    source: Option<TomlServer>,
    #[serde(default, rename = "account")]
    accounts: Vec<TomlAccount>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlServer {
    host: Option<String>,
    port: Option<u16>,
    auth: Option<AuthMethod>,
    ca_file: Option<PathBuf>,
    connections: Option<usize>,
    compress: Option<Compression>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlAccount {
    email: String,
    username: Option<String>,
    password: Option<String>,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    user_root: Option<String>,
}

fn load_toml(path: &Path) -> Result<Config> {
    let file = path.display().to_string();
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read config file {file}"))?;
    let parsed: TomlFile = toml::from_str(&text).map_err(|e| {
        // toml's message quotes the offending line, which may hold a
        // password: keep only the position and the reason.
        let (line, _) = e.span().map(|s| line_col(&text, s.start)).unwrap_or((0, 0));
        anyhow!("{file} line {line}: {}", e.message())
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut config = Config {
        store: parsed.store.map(|p| base.join(p)),
        accounts_at_once: parsed.accounts_at_once.unwrap_or(4).max(1),
        ..Config::default()
    };
    if let Some(s) = parsed.source {
        if let Some(h) = s.host {
            config.source.host = h;
        }
        if let Some(p) = s.port {
            config.source.port = p;
        }
        if let Some(a) = s.auth {
            config.source.auth = a;
        }
        config.source.ca_file = s.ca_file.map(|p| base.join(p));
        if let Some(c) = s.connections {
            config.source.connections = c.max(1);
        }
        if let Some(c) = s.compress {
            config.source.compress = c;
        }
    }
    let mut seen: HashMap<String, String> = HashMap::new();
    for (i, a) in parsed.accounts.into_iter().enumerate() {
        let origin = format!("{file} [[account]] #{} ({})", i + 1, a.email);
        let password = match (a.password, a.password_env, a.password_file) {
            (Some(p), None, None) => p,
            (None, Some(var), None) => std::env::var(&var)
                .map_err(|_| anyhow!("{origin}: password_env names {var}, which is not set"))?,
            (None, None, Some(pf)) => {
                let pf = base.join(pf);
                let p = std::fs::read_to_string(&pf).with_context(|| {
                    format!("{origin}: cannot read password_file {}", pf.display())
                })?;
                p.trim_end_matches(['\r', '\n']).to_string()
            }
            (None, None, None) => {
                bail!("{origin}: no password, password_env or password_file")
            }
            _ => bail!("{origin}: give only one of password, password_env, password_file"),
        };
        if password.is_empty() {
            bail!("{origin}: the password is empty");
        }
        if let Some(first) = seen.insert(a.email.to_ascii_lowercase(), origin.clone()) {
            bail!("{origin}: {} is already defined by {first}", a.email);
        }
        config.accounts.push(Account {
            username: a.username.unwrap_or_else(|| a.email.clone()),
            name: a.email,
            password: Password::new(password),
            user_root: a.user_root,
            origin,
        });
    }
    if let Some(csv_path) = parsed.accounts_csv {
        let csv_path = base.join(csv_path);
        let text = std::fs::read(&csv_path)
            .with_context(|| format!("{file}: cannot read accounts_csv {}", csv_path.display()))?;
        for a in parse_csv(&text, &csv_path.display().to_string())? {
            if let Some(first) = seen.insert(a.name.to_ascii_lowercase(), a.origin.clone()) {
                bail!("{}: {} is already defined by {first}", a.origin, a.name);
            }
            config.accounts.push(a);
        }
    }
    if config.accounts.is_empty() {
        bail!("{file}: no accounts ([[account]] tables or accounts_csv)");
    }
    Ok(config)
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = offset - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_m365_csv_with_user_root_and_bom() {
        let text = b"\xEF\xBB\xBFEmailAddress,UserName,Password,UserRoot\r\n\
                     a@example.com,a@example.com,p a ss,\r\n\
                     b@example.com,admin,secret,/users/b\r\n";
        let accounts = parse_csv(text, "batch.csv").unwrap();
        assert_eq!(accounts.len(), 2);
        assert_eq!(accounts[0].password.expose(), "p a ss");
        assert_eq!(accounts[1].username, "admin");
        assert_eq!(accounts[1].user_root.as_deref(), Some("/users/b"));
        assert_eq!(accounts[1].origin, "batch.csv line 3");
    }

    #[test]
    fn a_bad_row_names_the_file_and_line() {
        let text = b"EmailAddress,UserName,Password\na@x.com,a,pw\n,b,pw\n";
        let err = parse_csv(text, "batch.csv").unwrap_err().to_string();
        assert_eq!(err, "batch.csv line 3: EmailAddress is empty");

        let text = b"EmailAddress,UserName,Password\na@x.com,a,pw\na@x.com,b,pw2\n";
        let err = parse_csv(text, "batch.csv").unwrap_err().to_string();
        assert!(err.contains("line 3") && err.contains("line 2"), "{err}");

        let text = b"Email,User,Pass\na@x.com,a,pw\n";
        let err = parse_csv(text, "batch.csv").unwrap_err().to_string();
        assert!(
            err.starts_with("batch.csv line 1: no EmailAddress column"),
            "{err}"
        );
    }

    #[test]
    fn csv_errors_never_quote_the_password() {
        let text = b"EmailAddress,UserName,Password\na@x.com,a,hunter2\nb@x.com,b\n";
        let err = parse_csv(text, "f.csv").unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("f.csv line 3"), "{err}");
    }

    #[test]
    fn password_debug_is_redacted() {
        let p = Password::new("hunter2");
        assert!(!format!("{p:?}").contains("hunter2"));
    }

    #[test]
    fn toml_accounts_take_passwords_from_env_and_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "from-file\n").unwrap();
        // SAFETY: this test is the only one touching this variable.
        unsafe { std::env::set_var("MAILFERRY_TEST_PW_1", "from-env") };
        let cfg = dir.path().join("m.toml");
        std::fs::write(
            &cfg,
            r#"
[source]
host = "imap.example.net"
port = 1993
connections = 2

[[account]]
email = "a@x.com"
password_env = "MAILFERRY_TEST_PW_1"

[[account]]
email = "b@x.com"
username = "bee"
password_file = "pw"
"#,
        )
        .unwrap();
        let c = load(&cfg).unwrap();
        assert_eq!(c.source.host, "imap.example.net");
        assert_eq!(c.source.port, 1993);
        assert_eq!(c.source.connections, 2);
        assert_eq!(c.accounts[0].password.expose(), "from-env");
        assert_eq!(c.accounts[0].username, "a@x.com");
        assert_eq!(c.accounts[1].password.expose(), "from-file");
        assert_eq!(c.accounts[1].username, "bee");
    }

    #[test]
    fn toml_errors_name_the_line_not_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("m.toml");
        std::fs::write(
            &cfg,
            "[[account]]\nemail = \"a@x.com\"\npassword = \"hunter2\"\nbogus = 1\n",
        )
        .unwrap();
        let err = load(&cfg).unwrap_err().to_string();
        assert!(err.contains("line 4"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
