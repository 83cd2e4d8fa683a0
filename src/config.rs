//! Accounts and server settings (the settings themselves, and how the
//! layers that give them are resolved, are in `settings.rs`).
//!
//! Accounts come from the Microsoft 365 IMAP migration CSV
//! (`EmailAddress,UserName,Password`, optional `UserRoot`) so an admin's
//! existing batch file works as is, or from a TOML file that may also hold
//! the source server settings and take passwords from the environment or a
//! file. Every error names the file and, for CSV, the line.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};

use serde::Deserialize;

mod settings;

pub use settings::*;

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
    /// The target mailbox (login at the target); the EmailAddress by default.
    pub target: String,
    /// For targets that take a password rather than OAuth.
    pub target_password: Option<Password>,
    /// This mailbox's size limit at the target, if not the batch's.
    pub quota_bytes: Option<u64>,
    /// A folder of the user's exported contacts, calendars and tasks
    /// (.vcf, .csv, .ics) for `import --accounts` (the CSV's ExportFolder,
    /// the TOML's `exports`), relative to the accounts file.
    pub exports: Option<PathBuf>,
}

/// Everything read from the accounts file(s).
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Resolved: defaults, the accounts file, then the command line
    /// ([`Config::resolve`]).
    pub source: ServerSettings,
    pub target: TargetSettings,
    /// What the accounts file says of the servers, for [`Config::resolve`].
    pub file_source: ServerLayer,
    pub file_target: TargetLayer,
    pub accounts: Vec<Account>,
    /// How many accounts are mirrored at the same time.
    pub accounts_at_once: usize,
    pub store: Option<PathBuf>,
    /// The part of the batch this worker takes (`--shard`); `None`: all of it.
    pub shard: Option<crate::shard::Shard>,
    /// How the accounts file was read, for the user (never a password).
    pub notes: Vec<String>,
}

/// "50 GB", "1.5GiB", "200 MB", "4096": a size in bytes. Units are binary,
/// as Exchange counts them (its 50 GB is 50 × 2³⁰ bytes).
pub fn parse_size(text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| anyhow!("not a size (say e.g. 50GB, 500MB or 1.5 GiB)"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        "t" | "tb" | "tib" => 40,
        // The value is not repeated: a shifted CSV row may put a password here.
        _ => bail!("not a size: unknown unit (use B, KB, MB, GB or TB)"),
    };
    Ok((value * (1u64 << shift) as f64).round() as u64)
}

impl Config {
    /// The servers' settings from defaults, the accounts file and then
    /// `command_line`: the one place where settings meet.
    pub fn resolve(&mut self, source: &ServerLayer, target: &TargetLayer) {
        self.source = ServerSettings::resolve(&[&self.file_source, source]);
        self.target = TargetSettings::resolve(&[&self.file_target, target]);
    }

    /// One cap on bytes per second for the whole run (`--max-rate`):
    /// every connection to the source and the target draws from it.
    pub fn limit_rate(&mut self, per_second: Option<u64>) {
        let cap = per_second.map(crate::rate::RateCap::new);
        self.source.max_rate = cap.clone();
        self.target.server.max_rate = cap;
    }

    /// Puts per-account results back in the accounts file's order (they
    /// finish in any order when accounts run in parallel).
    pub fn sort_in_file_order<T>(&self, items: &mut [T], name: impl Fn(&T) -> &str) {
        let order: HashMap<&str, usize> = self
            .accounts
            .iter()
            .enumerate()
            .map(|(i, a)| (a.name.as_str(), i))
            .collect();
        items.sort_by_key(|x| order.get(name(x)).copied().unwrap_or(usize::MAX));
    }
}

/// Whether secrets named by a TOML file (`password_env`, `_file`) are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Secrets {
    Read,
    /// For commands that only read the store (status, report, verify,
    /// export, gc): they need the accounts and the store, not the
    /// passwords, which may live in an environment cron does not have.
    Skip,
}

/// Reads an accounts file: TOML when it ends in `.toml`, else the M365 CSV.
pub fn load(path: &Path) -> Result<Config> {
    load_with(path, Secrets::Read)
}

/// [`load`] without reading the secrets a TOML file names (its accounts
/// carry empty passwords): for commands that only read the store.
pub fn load_without_secrets(path: &Path) -> Result<Config> {
    load_with(path, Secrets::Skip)
}

fn load_with(path: &Path, secrets: Secrets) -> Result<Config> {
    let is_toml = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("toml"));
    if is_toml {
        load_toml(path, secrets)
    } else {
        let text = std::fs::read(path)
            .with_context(|| format!("cannot read accounts file {}", path.display()))?;
        let mut notes = Vec::new();
        let mut accounts = parse_csv_noting(&text, &path.display().to_string(), &mut notes)?;
        let base = path.parent().unwrap_or(Path::new("."));
        for a in &mut accounts {
            a.exports = a.exports.take().map(|p| base.join(p));
        }
        Ok(Config {
            accounts,
            accounts_at_once: 4,
            notes,
            ..Config::default()
        })
    }
}

/// What an Excel user should do with a file mailferry cannot read.
const SAVE_AS_CSV: &str = "if it comes from Excel, save it as \"CSV UTF-8 (comma delimited)\"";

/// Parses the Microsoft 365 IMAP migration CSV. `file` names it in errors.
pub fn parse_csv(text: &[u8], file: &str) -> Result<Vec<Account>> {
    parse_csv_noting(text, file, &mut Vec::new())
}

/// The text of a CSV as UTF-8: UTF-16 (Excel's "Unicode text", with or
/// without its byte order mark) is decoded, and a UTF-8 BOM dropped.
fn csv_text<'a>(
    text: &'a [u8],
    file: &str,
    notes: &mut Vec<String>,
) -> Result<std::borrow::Cow<'a, [u8]>> {
    let (big_endian, body) = match text {
        [0xFF, 0xFE, rest @ ..] => (false, rest),
        [0xFE, 0xFF, rest @ ..] => (true, rest),
        // "E\0m\0": UTF-16LE without a BOM.
        [a, 0, b, 0, ..] if *a != 0 && *b != 0 => (false, text),
        _ => return Ok(text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text).into()),
    };
    let units = body.chunks_exact(2).map(|p| {
        if big_endian {
            u16::from_be_bytes([p[0], p[1]])
        } else {
            u16::from_le_bytes([p[0], p[1]])
        }
    });
    let decoded: String = char::decode_utf16(units)
        .collect::<Result<_, _>>()
        .map_err(|_| anyhow!("{file}: looks like UTF-16 but is not valid UTF-16; {SAVE_AS_CSV}"))?;
    notes.push(format!("{file}: read as UTF-16 (Excel's \"Unicode text\")"));
    Ok(decoded.into_bytes().into())
}

/// Parses the migration CSV, adding to `notes` what a user should know
/// about how it was read (UTF-16, separators, spaces around passwords).
pub fn parse_csv_noting(text: &[u8], file: &str, notes: &mut Vec<String>) -> Result<Vec<Account>> {
    let decoded = csv_text(text, file, notes)?;
    let text: &[u8] = &decoded;
    // Excel writes `;` in many locales, and tabs as "Unicode text": the
    // separator is the one under which the header names EmailAddress.
    let has_email = |delimiter: u8| {
        let mut r = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .flexible(true)
            .from_reader(text);
        r.headers().is_ok_and(|h| {
            h.iter()
                .any(|f| f.trim().eq_ignore_ascii_case("EmailAddress"))
        })
    };
    let delimiter = [b',', b';', b'\t']
        .into_iter()
        .find(|d| has_email(*d))
        .unwrap_or(b',');
    match delimiter {
        b';' => notes.push(format!("{file}: fields separated by semicolons")),
        b'\t' => notes.push(format!("{file}: fields separated by tabs")),
        _ => {}
    }
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .trim(csv::Trim::Headers)
        .flexible(true)
        .from_reader(text);
    let headers = reader
        .headers()
        .map_err(|e| {
            anyhow!(
                "{file}: cannot read the header line ({}); {SAVE_AS_CSV}",
                csv_error_kind(&e)
            )
        })?
        .clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
    };
    // The first line is named only by its shape: in a file without a header
    // it is an account, password included.
    let email_col = column("EmailAddress").ok_or_else(|| {
        anyhow!(
            "{file} line 1: no EmailAddress column (the line has {} comma-separated fields); \
             the file must start with the Microsoft 365 migration header \
             EmailAddress,UserName,Password; {SAVE_AS_CSV}",
            headers.len()
        )
    })?;
    let user_col =
        column("UserName").ok_or_else(|| anyhow!("{file} line 1: no UserName column"))?;
    let pass_col =
        column("Password").ok_or_else(|| anyhow!("{file} line 1: no Password column"))?;
    let root_col = column("UserRoot");
    // Not in Microsoft's format: optional extras for other targets.
    let target_col = column("TargetAddress");
    let target_pass_col = column("TargetPassword");
    let quota_col = column("Quota");
    let exports_col = column("ExportFolder");

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
            // Not quoted: in a row whose columns are shifted it may be a password.
            bail!(
                "{file} line {line}: EmailAddress (field {}) is not an e-mail address; are the \
                 fields in the order of the header?",
                email_col + 1
            );
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
        if password.trim() != password {
            notes.push(format!(
                "WARNING: {file} line {line}: the Password of {email} begins or ends with a \
                 space; it is used as written (a spreadsheet may have added it; if the login \
                 is refused, remove it)"
            ));
        }
        if let Some(first) = seen.insert(email.to_ascii_lowercase(), line) {
            bail!("{file} line {line}: {email} is already listed on line {first}");
        }
        let user_root = root_col
            .map(field)
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let target = target_col
            .map(field)
            .filter(|s| !s.is_empty())
            .unwrap_or(email)
            .to_string();
        let target_password = target_pass_col
            .and_then(|c| record.get(c))
            .filter(|s| !s.is_empty())
            .map(Password::new);
        let quota_bytes = quota_col
            .map(field)
            .filter(|s| !s.is_empty())
            .map(|q| parse_size(q).map_err(|e| anyhow!("{file} line {line}: Quota: {e}")))
            .transpose()?;
        let exports = exports_col
            .map(field)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from);
        accounts.push(Account {
            name: email.to_string(),
            username: username.to_string(),
            password: Password::new(password),
            user_root,
            origin: format!("{file} line {line}"),
            target,
            target_password,
            quota_bytes,
            exports,
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
        csv::ErrorKind::Utf8 { .. } => format!("not UTF-8; {SAVE_AS_CSV}"),
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
    target: Option<TomlTarget>,
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
    /// Seconds of silence before a connection counts as dead.
    io_timeout: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlTarget {
    kind: Option<TargetKind>,
    host: Option<String>,
    port: Option<u16>,
    auth: Option<AuthMethod>,
    ca_file: Option<PathBuf>,
    connections: Option<usize>,
    compress: Option<Compression>,
    io_timeout: Option<u64>,
    max_message_mib: Option<u64>,
    quota: Option<String>,
    oauth: Option<TomlOAuth>,
    graph_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlOAuth {
    authority: Option<String>,
    tenant: String,
    client_id: String,
    client_secret: Option<String>,
    client_secret_env: Option<String>,
    client_secret_file: Option<PathBuf>,
    certificate: Option<PathBuf>,
    private_key: Option<PathBuf>,
    flow: Option<OAuthFlow>,
    scope: Option<String>,
    token_cache: Option<PathBuf>,
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
    target: Option<String>,
    target_password: Option<String>,
    target_password_env: Option<String>,
    target_password_file: Option<PathBuf>,
    quota: Option<String>,
    exports: Option<PathBuf>,
}

/// One secret from exactly one of: the value, an environment variable, a
/// file's first line. `None` when none is given.
fn secret(
    secrets: Secrets,
    origin: &str,
    what: &str,
    base: &Path,
    value: Option<String>,
    env: Option<String>,
    file: Option<PathBuf>,
) -> Result<Option<Password>> {
    if secrets == Secrets::Skip {
        let named = value.is_some() || env.is_some() || file.is_some();
        return Ok(named.then(|| Password::new(String::new())));
    }
    let s = match (value, env, file) {
        (Some(p), None, None) => p,
        (None, Some(var), None) => std::env::var(&var)
            .map_err(|_| anyhow!("{origin}: {what}_env names {var}, which is not set"))?,
        (None, None, Some(pf)) => {
            let pf = base.join(pf);
            let p = std::fs::read_to_string(&pf)
                .with_context(|| format!("{origin}: cannot read {what}_file {}", pf.display()))?;
            p.lines().next().unwrap_or("").to_string()
        }
        (None, None, None) => return Ok(None),
        _ => bail!("{origin}: give only one of {what}, {what}_env, {what}_file"),
    };
    if s.is_empty() {
        bail!("{origin}: the {what} is empty");
    }
    Ok(Some(Password::new(s)))
}

fn load_toml(path: &Path, secrets: Secrets) -> Result<Config> {
    let file = path.display().to_string();
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read config file {file}"))?;
    let parsed: TomlFile = toml::from_str(&text).map_err(|e| {
        // toml's message quotes the offending line, which may hold a
        // password: keep only the position and the reason.
        let (line, _) = e.span().map(|s| line_col(&text, s.start)).unwrap_or((0, 0));
        anyhow!(
            "{file} line {line}: {}",
            toml_reason(&text, line, e.message())
        )
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut config = Config {
        store: parsed.store.map(|p| base.join(p)),
        accounts_at_once: parsed.accounts_at_once.unwrap_or(4).max(1),
        ..Config::default()
    };
    if let Some(s) = parsed.source {
        config.file_source = ServerLayer {
            host: s.host,
            port: s.port,
            auth: s.auth,
            ca_file: s.ca_file.map(|p| base.join(p)),
            danger_accept_invalid_certs: false,
            connections: s.connections,
            compress: s.compress,
            io_timeout: s.io_timeout.map(std::time::Duration::from_secs),
        };
    }
    if let Some(t) = parsed.target {
        config.file_target = toml_target(t, base, &file, secrets)?;
    }
    config.resolve(&ServerLayer::default(), &TargetLayer::default());
    let mut seen: HashMap<String, String> = HashMap::new();
    for (i, a) in parsed.accounts.into_iter().enumerate() {
        let origin = format!("{file} [[account]] #{} ({})", i + 1, a.email);
        let password = secret(
            secrets,
            &origin,
            "password",
            base,
            a.password,
            a.password_env,
            a.password_file,
        )?
        .ok_or_else(|| anyhow!("{origin}: no password, password_env or password_file"))?;
        let target_password = secret(
            secrets,
            &origin,
            "target_password",
            base,
            a.target_password,
            a.target_password_env,
            a.target_password_file,
        )?;
        if let Some(first) = seen.insert(a.email.to_ascii_lowercase(), origin.clone()) {
            bail!("{origin}: {} is already defined by {first}", a.email);
        }
        let quota_bytes = a
            .quota
            .as_deref()
            .map(|q| parse_size(q).map_err(|e| anyhow!("{origin}: quota {q:?}: {e}")))
            .transpose()?;
        config.accounts.push(Account {
            username: a.username.unwrap_or_else(|| a.email.clone()),
            target: a.target.unwrap_or_else(|| a.email.clone()),
            name: a.email,
            password,
            user_root: a.user_root,
            origin,
            target_password,
            quota_bytes,
            exports: a.exports.map(|p| base.join(p)),
        });
    }
    if let Some(csv_path) = parsed.accounts_csv {
        let csv_path = base.join(csv_path);
        let text = std::fs::read(&csv_path)
            .with_context(|| format!("{file}: cannot read accounts_csv {}", csv_path.display()))?;
        let csv_base = csv_path.parent().unwrap_or(Path::new(".")).to_path_buf();
        for mut a in parse_csv_noting(&text, &csv_path.display().to_string(), &mut config.notes)? {
            a.exports = a.exports.take().map(|p| csv_base.join(p));
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

fn toml_target(t: TomlTarget, base: &Path, file: &str, secrets: Secrets) -> Result<TargetLayer> {
    let quota_bytes = t
        .quota
        .as_deref()
        .map(|q| parse_size(q).map_err(|e| anyhow!("{file} [target]: quota {q:?}: {e}")))
        .transpose()?;
    let oauth = match t.oauth {
        None => None,
        Some(o) => {
            let origin = format!("{file} [target.oauth]");
            Some(OAuthLayer {
                authority: o.authority,
                tenant: Some(o.tenant),
                client_id: Some(o.client_id),
                client_secret: secret(
                    secrets,
                    &origin,
                    "client_secret",
                    base,
                    o.client_secret,
                    o.client_secret_env,
                    o.client_secret_file,
                )?,
                certificate: o.certificate.map(|p| base.join(p)),
                private_key: o.private_key.map(|p| base.join(p)),
                flow: o.flow,
                scope: o.scope,
                token_cache: o.token_cache.map(|p| base.join(p)),
            })
        }
    };
    Ok(TargetLayer {
        kind: t.kind,
        server: ServerLayer {
            host: t.host,
            port: t.port,
            auth: t.auth,
            ca_file: t.ca_file.map(|p| base.join(p)),
            danger_accept_invalid_certs: false,
            connections: t.connections,
            compress: t.compress,
            io_timeout: t.io_timeout.map(std::time::Duration::from_secs),
        },
        max_message_bytes: t.max_message_mib.map(|m| m << 20),
        quota_bytes,
        oauth,
        graph_url: t.graph_url,
    })
}

/// toml's reason for an error, unless the line sets a secret: then the
/// reason may quote its value (`invalid type: integer `123456``), so only
/// the key and what it must be are said.
fn toml_reason(text: &str, line: usize, reason: &str) -> String {
    let key = text
        .lines()
        .nth(line.saturating_sub(1))
        .and_then(|l| l.split_once('='))
        .map(|(k, _)| k.trim().trim_matches('"').to_ascii_lowercase())
        .unwrap_or_default();
    if ["password", "secret", "token"]
        .iter()
        .any(|s| key.contains(s))
    {
        format!("{key} must be a quoted string (the value is not shown)")
    } else {
        reason.to_string()
    }
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
    fn sizes_are_binary_and_a_bad_quota_names_its_line() {
        assert_eq!(parse_size("50GB").unwrap(), 50 << 30);
        assert_eq!(parse_size("1.5 GiB").unwrap(), 3 << 29);
        assert_eq!(parse_size("200 mb").unwrap(), 200 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 PB").is_err());
        let text = b"EmailAddress,UserName,Password,Quota\na@x.com,a,pw,100GB\nb@x.com,b,pw,\n\
                     c@x.com,c,pw,huge\n";
        let err = parse_csv(text, "batch.csv").unwrap_err().to_string();
        assert!(
            err.contains("batch.csv line 4") && err.contains("Quota") && !err.contains("huge"),
            "{err}"
        );
        let ok = parse_csv(&text[..text.len() - 18], "batch.csv").unwrap();
        assert_eq!(ok[0].quota_bytes, Some(100 << 30));
        assert_eq!(ok[1].quota_bytes, None);
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

    #[test]
    fn no_error_ever_quotes_a_password() {
        let secret = "Sup3rS3cret";
        // No header: the first line is an account.
        let no_header = format!("a@x.com,a,{secret}\nb@x.com,b,{secret}\n");
        // Shifted columns: the password lands in EmailAddress.
        let shifted = format!("EmailAddress,UserName,Password\n{secret},a@x.com,a\n");
        // A password in the Quota column.
        let quota = format!("EmailAddress,UserName,Password,Quota\na@x.com,a,pw,{secret}\n");
        let quota_unit = "EmailAddress,UserName,Password,Quota\na@x.com,a,pw,12Sup3rS3cret\n";
        for text in [no_header, shifted, quota, quota_unit.to_string()] {
            let err = format!("{:#}", parse_csv(text.as_bytes(), "f.csv").unwrap_err());
            assert!(err.contains("f.csv line"), "{err}");
            assert!(!err.contains(secret), "{err}");
        }
        // A TOML password written as a number.
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("m.toml");
        for (key, value) in [("password", "123456789"), ("client_secret", "987654321")] {
            let text = if key == "password" {
                format!("[[account]]\nemail = \"a@x.com\"\n{key} = {value}\n")
            } else {
                format!("[target.oauth]\ntenant = \"t\"\nclient_id = \"c\"\n{key} = {value}\n")
            };
            std::fs::write(&cfg, text).unwrap();
            let err = format!("{:#}", load(&cfg).unwrap_err());
            assert!(err.contains("line"), "{err}");
            assert!(!err.contains(value), "{err}");
        }
    }

    fn utf16le(text: &str, bom: bool) -> Vec<u8> {
        let mut out = if bom { vec![0xFF, 0xFE] } else { Vec::new() };
        for u in text.encode_utf16() {
            out.extend_from_slice(&u.to_le_bytes());
        }
        out
    }

    #[test]
    fn csvs_as_excel_makes_them_are_read_and_said_so() {
        let comma = "EmailAddress,UserName,Password\r\na@x.com,a,pw-a\r\n";
        let semicolon = "EmailAddress;UserName;Password\r\na@x.com;a;pw-a\r\n";
        let tab = "EmailAddress\tUserName\tPassword\r\na@x.com\ta\tpw-a\r\n";
        for (bytes, said) in [
            (comma.as_bytes().to_vec(), vec![]),
            (semicolon.as_bytes().to_vec(), vec!["semicolons"]),
            (tab.as_bytes().to_vec(), vec!["tabs"]),
            (utf16le(tab, true), vec!["UTF-16", "tabs"]),
            (utf16le(comma, false), vec!["UTF-16"]),
        ] {
            let mut notes = Vec::new();
            let accounts = parse_csv_noting(&bytes, "b.csv", &mut notes).unwrap();
            assert_eq!(accounts.len(), 1);
            assert_eq!(accounts[0].name, "a@x.com");
            assert_eq!(accounts[0].password.expose(), "pw-a");
            assert_eq!(notes.len(), said.len(), "{notes:?}");
            for (n, s) in notes.iter().zip(said) {
                assert!(n.contains(s), "{n}");
            }
        }
    }

    #[test]
    fn a_header_that_does_not_parse_says_how_to_save_the_file() {
        let err = parse_csv(b"Name|Login|Secret\nx|y|z\n", "b.csv")
            .unwrap_err()
            .to_string();
        assert!(err.contains("CSV UTF-8 (comma delimited)"), "{err}");
        // Latin-1 from Excel's plain "CSV (comma delimited)".
        let err = parse_csv(
            b"EmailAddress,UserName,Password\nj@x.com,j,p\xe4ss\n",
            "b.csv",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("b.csv line 2"), "{err}");
        assert!(err.contains("CSV UTF-8"), "{err}");
        assert!(!err.contains("p\u{e4}ss"));
    }

    #[test]
    fn spaces_around_a_password_are_warned_of_and_kept() {
        let mut notes = Vec::new();
        let a = parse_csv_noting(
            b"EmailAddress,UserName,Password\na@x.com,a,secret-pw \n",
            "b.csv",
            &mut notes,
        )
        .unwrap();
        assert_eq!(a[0].password.expose(), "secret-pw ");
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("b.csv line 2"), "{}", notes[0]);
        assert!(notes[0].contains("begins or ends with a space"));
        assert!(!notes[0].contains("secret-pw"), "never the password");
    }
}
