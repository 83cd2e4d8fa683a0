//! Server settings, and their one resolution: defaults, then the
//! accounts file's, then the command line's, each layer naming only what
//! it sets ([`TargetLayer`], [`SourceLayer`]).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Rackspace Email's IMAP server, the first source we serve.
pub const DEFAULT_SOURCE_HOST: &str = "secure.emailsrvr.com";
pub const DEFAULT_IMAPS_PORT: u16 = 993;

/// How a client proves who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    /// IMAP LOGIN with user name and password (what Rackspace expects).
    #[default]
    Login,
    /// AUTHENTICATE PLAIN (SASL) with user name and password.
    Plain,
    /// AUTHENTICATE XOAUTH2 with an OAuth 2.0 access token (Microsoft 365).
    Xoauth2,
}

/// When to use COMPRESS=DEFLATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
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

/// A setting spelled by name, the same way in the TOML and on the
/// command line: the names are serde's, listed with a line of help each.
pub trait Named: Sized {
    /// Every name, with what it means.
    const CHOICES: &'static [(&'static str, &'static str)];

    /// The value of `name`, as the TOML would read it.
    fn from_name(name: &str) -> Result<Self, String>;
}

macro_rules! named {
    ($t:ty, $($name:literal => $help:literal),+ $(,)?) => {
        impl Named for $t {
            const CHOICES: &'static [(&'static str, &'static str)] = &[$(($name, $help)),+];

            fn from_name(name: &str) -> Result<Self, String> {
                use serde::de::IntoDeserializer as _;
                let de: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
                    name.into_deserializer();
                <$t>::deserialize(de).map_err(|e| e.to_string())
            }
        }
    };
}

named!(AuthMethod,
    "login" => "IMAP LOGIN with user name and password",
    "plain" => "AUTHENTICATE PLAIN (SASL) with user name and password",
    "xoauth2" => "AUTHENTICATE XOAUTH2 with an OAuth 2.0 access token (Microsoft 365)",
);
named!(Compression,
    "auto" => "when the server offers it, unless the server is on this machine",
    "always" => "whenever the server offers it",
    "never" => "never",
);
named!(TargetKind,
    "m365" => "Exchange Online: XOAUTH2, Exchange's folder names and limits",
    "imap" => "any IMAP server, with its own folder names and limits",
);
named!(OAuthFlow,
    "client_credentials" => "app-only: the client credentials grant, for many mailboxes",
    "device_code" => "delegated: one user signs in with a code shown here",
);

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
    /// The process's cap on bytes per second (`--max-rate`), shared by
    /// every connection to the source and the target.
    pub max_rate: Option<std::sync::Arc<crate::rate::RateCap>>,
}

impl ServerSettings {
    /// The server as the ledger names a target: host and port, so that two
    /// servers on one host are two targets. The IMAPS port is left out, so
    /// ledgers written before the port counted keep their meaning.
    pub fn address(&self) -> String {
        if self.port == 993 {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
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
            max_rate: None,
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

/// What kind of server the upload goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    /// Exchange Online: outlook.office365.com, XOAUTH2, Exchange's folder
    /// names and limits.
    #[default]
    M365,
    /// Any IMAP server, with its own folder names and limits.
    Imap,
}

/// How to get OAuth 2.0 tokens from the Microsoft identity platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OAuthFlow {
    /// App-only: the client credentials grant, for many mailboxes.
    #[default]
    ClientCredentials,
    /// Delegated: one user signs in with a code shown here.
    DeviceCode,
}

/// OAuth 2.0 settings for XOAUTH2 targets.
#[derive(Debug, Clone, Default)]
pub struct OAuthSettings {
    /// `https://login.microsoftonline.com` unless pointed elsewhere (tests).
    pub authority: String,
    pub tenant: String,
    pub client_id: String,
    pub client_secret: Option<Password>,
    /// PEM certificate and private key, for a certificate credential.
    pub certificate: Option<PathBuf>,
    pub private_key: Option<PathBuf>,
    pub flow: OAuthFlow,
    /// Default: `https://outlook.office365.com/.default` (client credentials)
    /// or `https://outlook.office.com/IMAP.AccessAsUser.All offline_access`.
    pub scope: Option<String>,
    /// Where the device-code flow keeps its refresh token (mode 0600).
    pub token_cache: Option<PathBuf>,
}

pub const M365_AUTHORITY: &str = "https://login.microsoftonline.com";
pub const M365_IMAP_HOST: &str = "outlook.office365.com";

/// Where the upload goes.
#[derive(Debug, Clone)]
pub struct TargetSettings {
    pub kind: TargetKind,
    pub server: ServerSettings,
    /// Messages larger than this are skipped (kept in the store, reported).
    /// Microsoft 365: 35 MiB unless the admin raised it (up to 150 MiB).
    pub max_message_bytes: Option<u64>,
    /// The mailbox size limit preflight checks against, unless an account
    /// has its own or the target's QUOTA says otherwise; `None`: the kind's
    /// default ([`TargetSettings::quota_limit`]).
    pub quota_bytes: Option<u64>,
    pub oauth: Option<OAuthSettings>,
    /// Where contacts, events and tasks go (Microsoft Graph's root): Graph
    /// for Microsoft 365, nowhere for an IMAP target unless named.
    pub graph_url: Option<String>,
}

/// Microsoft Graph's v1.0 root.
pub const GRAPH_URL: &str = "https://graph.microsoft.com/v1.0";

/// Exchange Online's default mailbox quota.
pub const DEFAULT_QUOTA_BYTES: u64 = 50 << 30;

impl TargetSettings {
    /// The quota to plan against when neither the account nor the target
    /// says: what was configured, else Microsoft 365's 50 GB (Exchange
    /// counts in binary units); a generic IMAP target has no known limit.
    pub fn quota_limit(&self) -> Option<u64> {
        self.quota_bytes.or(match self.kind {
            TargetKind::M365 => Some(DEFAULT_QUOTA_BYTES),
            TargetKind::Imap => None,
        })
    }
}

impl Default for TargetSettings {
    fn default() -> Self {
        TargetSettings {
            kind: TargetKind::M365,
            server: ServerSettings {
                host: M365_IMAP_HOST.to_string(),
                auth: AuthMethod::Xoauth2,
                ..ServerSettings::default()
            },
            max_message_bytes: Some(35 << 20),
            quota_bytes: None,
            oauth: None,
            graph_url: Some(GRAPH_URL.to_string()),
        }
    }
}

/// What one layer (the accounts file, the command line) says of a server:
/// `None` where it says nothing.
#[derive(Debug, Clone, Default)]
pub struct ServerLayer {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub auth: Option<AuthMethod>,
    pub ca_file: Option<PathBuf>,
    /// Only ever turned on, by a loudly named option.
    pub danger_accept_invalid_certs: bool,
    pub connections: Option<usize>,
    pub compress: Option<Compression>,
    pub io_timeout: Option<Duration>,
}

/// What one layer says of the target.
#[derive(Debug, Clone, Default)]
pub struct TargetLayer {
    pub kind: Option<TargetKind>,
    pub server: ServerLayer,
    pub max_message_bytes: Option<u64>,
    pub quota_bytes: Option<u64>,
    /// Set when the layer names any OAuth setting.
    pub oauth: Option<OAuthLayer>,
    pub graph_url: Option<String>,
}

/// What one layer says of OAuth.
#[derive(Debug, Clone, Default)]
pub struct OAuthLayer {
    pub authority: Option<String>,
    pub tenant: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<Password>,
    pub certificate: Option<PathBuf>,
    pub private_key: Option<PathBuf>,
    pub flow: Option<OAuthFlow>,
    pub scope: Option<String>,
    pub token_cache: Option<PathBuf>,
}

/// The last layer that names a value, else none.
fn last<T: Clone, L>(layers: &[&L], get: impl Fn(&L) -> Option<T>) -> Option<T> {
    layers.iter().rev().find_map(|l| get(l))
}

impl ServerSettings {
    /// The source's settings: defaults, then each layer in order (a later
    /// layer wins where it names a value).
    pub fn resolve(layers: &[&ServerLayer]) -> ServerSettings {
        Self::resolve_over(ServerSettings::default(), layers)
    }

    fn resolve_over(base: ServerSettings, layers: &[&ServerLayer]) -> ServerSettings {
        ServerSettings {
            host: last(layers, |l| l.host.clone()).unwrap_or(base.host),
            port: last(layers, |l| l.port).unwrap_or(base.port),
            auth: last(layers, |l| l.auth).unwrap_or(base.auth),
            ca_file: last(layers, |l| l.ca_file.clone()).or(base.ca_file),
            danger_accept_invalid_certs: base.danger_accept_invalid_certs
                || layers.iter().any(|l| l.danger_accept_invalid_certs),
            connections: last(layers, |l| l.connections)
                .unwrap_or(base.connections)
                .max(1),
            compress: last(layers, |l| l.compress).unwrap_or(base.compress),
            io_timeout: last(layers, |l| l.io_timeout)
                .unwrap_or(base.io_timeout)
                .max(Duration::from_secs(1)),
            max_rate: base.max_rate,
        }
    }
}

impl TargetSettings {
    /// The target's settings: defaults, then each layer in order (a later
    /// layer wins where it names a value). The kind, wherever it comes
    /// from, decides what a layer leaves unsaid: Microsoft 365 logs in with
    /// XOAUTH2 and takes messages up to 35 MiB; an IMAP server logs in with
    /// LOGIN and has no size limit but the one it announces.
    pub fn resolve(layers: &[&TargetLayer]) -> TargetSettings {
        let kind = last(layers, |l| l.kind).unwrap_or_default();
        let defaults = match kind {
            TargetKind::M365 => TargetSettings::default(),
            TargetKind::Imap => TargetSettings {
                kind,
                server: ServerSettings {
                    auth: AuthMethod::Login,
                    ..TargetSettings::default().server
                },
                max_message_bytes: None,
                graph_url: None,
                ..TargetSettings::default()
            },
        };
        let servers: Vec<&ServerLayer> = layers.iter().map(|l| &l.server).collect();
        let oauths: Vec<&OAuthLayer> = layers.iter().filter_map(|l| l.oauth.as_ref()).collect();
        TargetSettings {
            kind,
            server: ServerSettings::resolve_over(defaults.server, &servers),
            max_message_bytes: last(layers, |l| l.max_message_bytes).or(defaults.max_message_bytes),
            quota_bytes: last(layers, |l| l.quota_bytes),
            graph_url: last(layers, |l| l.graph_url.clone()).or(defaults.graph_url),
            oauth: (!oauths.is_empty()).then(|| OAuthSettings {
                authority: last(&oauths, |o| o.authority.clone())
                    .unwrap_or_else(|| M365_AUTHORITY.to_string()),
                tenant: last(&oauths, |o| o.tenant.clone()).unwrap_or_default(),
                client_id: last(&oauths, |o| o.client_id.clone()).unwrap_or_default(),
                client_secret: last(&oauths, |o| o.client_secret.clone()),
                certificate: last(&oauths, |o| o.certificate.clone()),
                private_key: last(&oauths, |o| o.private_key.clone()),
                flow: last(&oauths, |o| o.flow).unwrap_or_default(),
                scope: last(&oauths, |o| o.scope.clone()),
                token_cache: last(&oauths, |o| o.token_cache.clone()),
            }),
        }
    }
}

/// Where the store is: the command line's `--store`, else the
/// environment's `MAILFERRY_STORE`, else the accounts file's `store`, else
/// `./mailferry-store`. When two of them name different directories, the
/// second value says which won and which were not used.
pub fn store_root(
    command_line: Option<PathBuf>,
    environment: Option<PathBuf>,
    file: Option<PathBuf>,
) -> (PathBuf, Option<String>) {
    let named: Vec<(&str, PathBuf)> = [
        ("--store", command_line),
        (
            "MAILFERRY_STORE",
            environment.filter(|p| !p.as_os_str().is_empty()),
        ),
        ("the accounts file's `store`", file),
    ]
    .into_iter()
    .filter_map(|(from, p)| p.map(|p| (from, p)))
    .collect();
    let Some((from, chosen)) = named.first().cloned() else {
        return (PathBuf::from("mailferry-store"), None);
    };
    let others: Vec<String> = named[1..]
        .iter()
        .filter(|(_, p)| *p != chosen)
        .map(|(f, p)| format!("{f} ({})", p.display()))
        .collect();
    let note = (!others.is_empty()).then(|| {
        format!(
            "the store is {} from {from}; not used: {}",
            chosen.display(),
            others.join(", ")
        )
    });
    (chosen, note)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_is_the_command_lines_then_the_environments_then_the_files() {
        let p = |s: &str| Some(PathBuf::from(s));
        assert_eq!(
            store_root(None, None, None).0,
            PathBuf::from("mailferry-store")
        );
        assert_eq!(store_root(None, None, p("/f")), (PathBuf::from("/f"), None));
        let (root, note) = store_root(None, p("/e"), p("/f"));
        assert_eq!(root, PathBuf::from("/e"));
        assert!(
            note.unwrap()
                .contains("not used: the accounts file's `store` (/f)")
        );
        let (root, note) = store_root(p("/c"), p("/e"), p("/c"));
        assert_eq!(root, PathBuf::from("/c"));
        assert!(note.unwrap().ends_with("not used: MAILFERRY_STORE (/e)"));
        assert_eq!(
            store_root(p("/c"), p(""), None),
            (PathBuf::from("/c"), None)
        );
    }

    fn layer(kind: Option<TargetKind>, auth: Option<AuthMethod>, mib: Option<u64>) -> TargetLayer {
        TargetLayer {
            kind,
            server: ServerLayer {
                auth,
                ..ServerLayer::default()
            },
            max_message_bytes: mib.map(|m| m << 20),
            ..TargetLayer::default()
        }
    }

    /// Every combination of where the kind, the login and the size limit
    /// come from resolves the same way, whichever layer gives them.
    #[test]
    fn the_target_resolves_the_same_from_the_file_or_the_command_line() {
        use AuthMethod::{Login, Plain, Xoauth2};
        use TargetKind::{Imap, M365};
        const MIB35: Option<u64> = Some(35 << 20);
        // (file: kind, auth, MiB), (command line: kind, auth, MiB) => (kind, auth, limit)
        #[allow(clippy::type_complexity)]
        let table: &[(
            (Option<TargetKind>, Option<AuthMethod>, Option<u64>),
            (Option<TargetKind>, Option<AuthMethod>, Option<u64>),
            (TargetKind, AuthMethod, Option<u64>),
        )] = &[
            (
                (None, None, None),
                (None, None, None),
                (M365, Xoauth2, MIB35),
            ),
            (
                (Some(Imap), None, None),
                (None, None, None),
                (Imap, Login, None),
            ),
            (
                (None, None, None),
                (Some(Imap), None, None),
                (Imap, Login, None),
            ),
            (
                (Some(M365), None, None),
                (Some(Imap), None, None),
                (Imap, Login, None),
            ),
            (
                (Some(Imap), None, None),
                (Some(M365), None, None),
                (M365, Xoauth2, MIB35),
            ),
            (
                (Some(Imap), Some(Xoauth2), None),
                (None, None, None),
                (Imap, Xoauth2, None),
            ),
            (
                (None, None, None),
                (Some(Imap), Some(Xoauth2), None),
                (Imap, Xoauth2, None),
            ),
            (
                (Some(Imap), Some(Plain), None),
                (None, Some(Login), None),
                (Imap, Login, None),
            ),
            (
                (None, Some(Login), None),
                (None, None, None),
                (M365, Login, MIB35),
            ),
            (
                (None, None, Some(50)),
                (None, None, None),
                (M365, Xoauth2, Some(50 << 20)),
            ),
            (
                (None, None, Some(50)),
                (Some(Imap), None, None),
                (Imap, Login, Some(50 << 20)),
            ),
            (
                (Some(Imap), None, None),
                (None, None, Some(1)),
                (Imap, Login, Some(1 << 20)),
            ),
            (
                (None, None, Some(50)),
                (None, None, Some(1)),
                (M365, Xoauth2, Some(1 << 20)),
            ),
        ];
        for (file, cli, want) in table {
            let file_layer = layer(file.0, file.1, file.2);
            let cli_layer = layer(cli.0, cli.1, cli.2);
            let got = TargetSettings::resolve(&[&file_layer, &cli_layer]);
            assert_eq!(
                (got.kind, got.server.auth, got.max_message_bytes),
                *want,
                "file {file:?}, command line {cli:?}"
            );
            // The same settings given by one layer alone resolve alike
            // when the other says nothing.
            let alone = TargetSettings::resolve(&[&TargetLayer::default(), &file_layer]);
            let in_file = TargetSettings::resolve(&[&file_layer]);
            assert_eq!(
                (alone.kind, alone.server.auth, alone.max_message_bytes),
                (in_file.kind, in_file.server.auth, in_file.max_message_bytes)
            );
        }
    }

    #[test]
    fn a_later_layer_wins_each_value_it_names_and_only_those() {
        let file = TargetLayer {
            server: ServerLayer {
                host: Some("imap.example.com".into()),
                port: Some(1993),
                connections: Some(8),
                ..ServerLayer::default()
            },
            oauth: Some(OAuthLayer {
                tenant: Some("contoso".into()),
                client_id: Some("app".into()),
                ..OAuthLayer::default()
            }),
            ..TargetLayer::default()
        };
        let cli = TargetLayer {
            server: ServerLayer {
                port: Some(2993),
                danger_accept_invalid_certs: true,
                ..ServerLayer::default()
            },
            oauth: Some(OAuthLayer {
                flow: Some(OAuthFlow::DeviceCode),
                ..OAuthLayer::default()
            }),
            ..TargetLayer::default()
        };
        let got = TargetSettings::resolve(&[&file, &cli]);
        assert_eq!(got.server.host, "imap.example.com");
        assert_eq!(got.server.port, 2993);
        assert_eq!(got.server.connections, 8);
        assert!(got.server.danger_accept_invalid_certs);
        let oauth = got
            .oauth
            .expect("oauth from the file, flow from the command line");
        assert_eq!(
            (oauth.tenant.as_str(), oauth.client_id.as_str()),
            ("contoso", "app")
        );
        assert_eq!(oauth.flow, OAuthFlow::DeviceCode);
        assert_eq!(oauth.authority, M365_AUTHORITY);
        let source = ServerSettings::resolve(&[&ServerLayer::default()]);
        assert_eq!(source.host, DEFAULT_SOURCE_HOST);
        assert!(!source.danger_accept_invalid_certs);
    }
}
