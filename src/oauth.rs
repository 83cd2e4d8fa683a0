//! OAuth 2.0 tokens from the Microsoft identity platform, for XOAUTH2.
//!
//! - Client credentials (app-only, many mailboxes): a client secret or a
//!   certificate (a signed JWT client assertion), scope
//!   `https://outlook.office365.com/.default`.
//! - Device code (one delegated user): prints the code and the address,
//!   polls until the user has signed in, and keeps the refresh token in a
//!   file only its owner can read.
//!
//! The authority is configurable so that tests point it at a token endpoint
//! on loopback. Tokens are refreshed before they expire; callers ask for a
//! token each time they log in. Secrets and tokens never appear in errors.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;

use crate::config::{OAuthFlow, OAuthSettings, Password};

const APP_SCOPE: &str = "https://outlook.office365.com/.default";
const DELEGATED_SCOPE: &str = "https://outlook.office.com/IMAP.AccessAsUser.All offline_access";

/// An access token and when it stops working.
#[derive(Clone, Debug)]
pub struct AccessToken {
    pub token: Password,
    pub expires_at: Instant,
    /// How long before expiry it should be replaced.
    pub margin: Duration,
}

impl AccessToken {
    /// True when it is time to get a new one.
    pub fn is_stale(&self) -> bool {
        Instant::now() + self.margin >= self.expires_at
    }
}

struct Cached {
    access: Option<AccessToken>,
    refresh: Option<Password>,
}

/// Gets and refreshes tokens; one per run, shared by all connections.
pub struct TokenProvider {
    settings: OAuthSettings,
    http: reqwest::Client,
    cached: tokio::sync::Mutex<Cached>,
    /// Where the device-code prompt goes (stderr in the binary).
    prompt: Box<dyn Fn(&str) + Send + Sync>,
}

#[derive(Deserialize)]
struct TokenReply {
    access_token: Option<String>,
    refresh_token: Option<String>,
    expires_in: Option<u64>,
    error: Option<String>,
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct DeviceCodeReply {
    device_code: Option<String>,
    user_code: Option<String>,
    verification_uri: Option<String>,
    message: Option<String>,
    interval: Option<u64>,
    expires_in: Option<u64>,
    error: Option<String>,
    error_description: Option<String>,
}

impl TokenProvider {
    pub fn new(
        settings: OAuthSettings,
        tls: Arc<rustls::ClientConfig>,
        prompt: Box<dyn Fn(&str) + Send + Sync>,
    ) -> Result<TokenProvider> {
        if settings.tenant.is_empty() || settings.client_id.is_empty() {
            bail!("OAuth needs a tenant and a client id ([target.oauth] tenant, client_id)");
        }
        if settings.flow == OAuthFlow::ClientCredentials
            && settings.client_secret.is_none()
            && settings.certificate.is_none()
        {
            bail!(
                "the client credentials flow needs a client secret (client_secret_env, \
                 client_secret_file) or a certificate (certificate, private_key)"
            );
        }
        let http = reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("mailferry/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot set up the HTTP client")?;
        let refresh = match (&settings.flow, &settings.token_cache) {
            (OAuthFlow::DeviceCode, Some(path)) => read_cache(path)?,
            _ => None,
        };
        Ok(TokenProvider {
            settings,
            http,
            cached: tokio::sync::Mutex::new(Cached {
                access: None,
                refresh,
            }),
            prompt,
        })
    }

    fn endpoint(&self, what: &str) -> String {
        format!(
            "{}/{}/oauth2/v2.0/{what}",
            self.settings.authority.trim_end_matches('/'),
            self.settings.tenant
        )
    }

    fn scope(&self) -> &str {
        self.settings
            .scope
            .as_deref()
            .unwrap_or(match self.settings.flow {
                OAuthFlow::ClientCredentials => APP_SCOPE,
                OAuthFlow::DeviceCode => DELEGATED_SCOPE,
            })
    }

    /// A token good for a while yet, fetching a new one when needed.
    pub async fn access_token(&self) -> Result<AccessToken> {
        let mut cached = self.cached.lock().await;
        if let Some(t) = &cached.access
            && !t.is_stale()
        {
            return Ok(t.clone());
        }
        let reply = match self.settings.flow {
            OAuthFlow::ClientCredentials => self.client_credentials().await?,
            OAuthFlow::DeviceCode => match cached.refresh.clone() {
                Some(refresh) => match self.refresh(&refresh).await {
                    Ok(r) => r,
                    // A refresh token can expire or be revoked: sign in again.
                    Err(e) => {
                        tracing::warn!("refreshing the token failed ({e:#}); signing in again");
                        self.device_code().await?
                    }
                },
                None => self.device_code().await?,
            },
        };
        let token = reply
            .access_token
            .ok_or_else(|| anyhow!("the token endpoint sent no access_token"))?;
        let lifetime = Duration::from_secs(reply.expires_in.unwrap_or(3600).max(1));
        let access = AccessToken {
            token: Password::new(token),
            expires_at: Instant::now() + lifetime,
            margin: (lifetime / 4).min(Duration::from_secs(300)),
        };
        if let Some(r) = reply.refresh_token {
            let r = Password::new(r);
            if let Some(path) = &self.settings.token_cache {
                write_cache(path, &r)?;
            }
            cached.refresh = Some(r);
        }
        cached.access = Some(access.clone());
        Ok(access)
    }

    /// A resource server refused `rejected` (revoked, or the clock ran
    /// ahead of its lifetime): forget it, so the next ask fetches anew.
    pub async fn forget(&self, rejected: &AccessToken) {
        let mut cached = self.cached.lock().await;
        if cached
            .access
            .as_ref()
            .is_some_and(|t| t.token.expose() == rejected.token.expose())
        {
            cached.access = None;
        }
    }

    async fn post(&self, url: &str, form: &[(&str, &str)]) -> Result<TokenReply> {
        let response = self
            .http
            .post(url)
            .form(form)
            .send()
            .await
            .map_err(|e| request_failed("token request", url, &e))?;
        let status = response.status();
        let reply: TokenReply = response
            .json()
            .await
            .map_err(|_| anyhow!("token endpoint {url} answered {status} with no usable JSON"))?;
        if let Some(error) = &reply.error {
            return Err(crate::outcome::CredentialsRefused(format!(
                "token endpoint {url} refused: {error}: {}",
                reply.error_description.as_deref().unwrap_or("")
            ))
            .into());
        }
        if !status.is_success() {
            bail!("token endpoint {url} answered {status}");
        }
        Ok(reply)
    }

    async fn client_credentials(&self) -> Result<TokenReply> {
        let url = self.endpoint("token");
        let mut form = vec![
            ("client_id", self.settings.client_id.as_str()),
            ("scope", self.scope()),
            ("grant_type", "client_credentials"),
        ];
        let assertion;
        if let Some(secret) = &self.settings.client_secret {
            form.push(("client_secret", secret.expose()));
        } else {
            assertion = self.client_assertion(&url)?;
            form.push((
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ));
            form.push(("client_assertion", assertion.expose()));
        }
        self.post(&url, &form).await
    }

    /// A JWT signed with the app's certificate key, as the identity
    /// platform expects for certificate credentials.
    fn client_assertion(&self, audience: &str) -> Result<Password> {
        use base64::Engine as _;
        use sha1::Digest as _;
        let cert_path = self.settings.certificate.as_ref().expect("checked in new");
        let key_path = self.settings.private_key.as_ref().unwrap_or(cert_path);
        let cert_pem = std::fs::read(cert_path)
            .with_context(|| format!("cannot read certificate {}", cert_path.display()))?;
        let der = {
            use rustls::pki_types::pem::PemObject as _;
            rustls::pki_types::CertificateDer::from_pem_slice(&cert_pem)
                .with_context(|| format!("{} holds no PEM certificate", cert_path.display()))?
        };
        let key_pem = std::fs::read(key_path)
            .with_context(|| format!("cannot read private key {}", key_path.display()))?;
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(&key_pem)
            .with_context(|| format!("{} holds no RSA private key", key_path.display()))?;
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.x5t =
            Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha1::Sha1::digest(&der)));
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let claims = serde_json::json!({
            "aud": audience,
            "iss": self.settings.client_id,
            "sub": self.settings.client_id,
            "jti": uuid::Uuid::new_v4().to_string(),
            "nbf": now,
            "exp": now + 600,
        });
        let jwt = jsonwebtoken::encode(&header, &claims, &key)
            .context("cannot sign the client assertion")?;
        Ok(Password::new(jwt))
    }

    async fn refresh(&self, refresh: &Password) -> Result<TokenReply> {
        let url = self.endpoint("token");
        self.post(
            &url,
            &[
                ("client_id", self.settings.client_id.as_str()),
                ("scope", self.scope()),
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.expose()),
            ],
        )
        .await
    }

    async fn device_code(&self) -> Result<TokenReply> {
        let url = self.endpoint("devicecode");
        let response = self
            .http
            .post(&url)
            .form(&[
                ("client_id", self.settings.client_id.as_str()),
                ("scope", self.scope()),
            ])
            .send()
            .await
            .map_err(|e| request_failed("device code request", &url, &e))?;
        let code: DeviceCodeReply = response
            .json()
            .await
            .map_err(|_| anyhow!("{url} answered with no usable JSON"))?;
        if let Some(error) = code.error {
            bail!(
                "{url} refused: {error}: {}",
                code.error_description.unwrap_or_default()
            );
        }
        let device_code = code
            .device_code
            .ok_or_else(|| anyhow!("{url} sent no device_code"))?;
        let message = code.message.unwrap_or_else(|| {
            format!(
                "To sign in, open {} and enter the code {}",
                code.verification_uri
                    .as_deref()
                    .unwrap_or("the sign-in page"),
                code.user_code.as_deref().unwrap_or("?")
            )
        });
        (self.prompt)(&message);
        let mut interval = Duration::from_secs(code.interval.unwrap_or(5).max(1));
        let deadline = Instant::now() + Duration::from_secs(code.expires_in.unwrap_or(900));
        let token_url = self.endpoint("token");
        loop {
            tokio::time::sleep(interval).await;
            if Instant::now() > deadline {
                bail!("the device code expired before anyone signed in");
            }
            let response = self
                .http
                .post(&token_url)
                .form(&[
                    ("client_id", self.settings.client_id.as_str()),
                    ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                    ("device_code", device_code.as_str()),
                ])
                .send()
                .await
                .map_err(|e| request_failed("token request", &token_url, &e))?;
            let reply: TokenReply = response
                .json()
                .await
                .map_err(|_| anyhow!("{token_url} answered with no usable JSON"))?;
            match reply.error.as_deref() {
                None => return Ok(reply),
                Some("authorization_pending") => {}
                Some("slow_down") => interval += Duration::from_secs(5),
                Some(other) => bail!(
                    "signing in failed: {other}: {}",
                    reply.error_description.unwrap_or_default()
                ),
            }
        }
    }
}

/// reqwest's error without the URL's query (none here carries a secret,
/// but the rule is simple: never echo a request).
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(url) = e.url() {
        s = s.replace(url.as_str(), "");
    }
    s
}

/// A request to `url` that failed: an endpoint that cannot be reached is
/// said so with the deepest cause (refused, DNS, timeout), typed for the
/// exit code.
fn request_failed(what: &str, url: &str, e: &reqwest::Error) -> anyhow::Error {
    if e.is_connect() || e.is_timeout() {
        let mut cause: &dyn std::error::Error = e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        let why = if e.is_timeout() {
            "no answer in time".to_string()
        } else {
            cause.to_string()
        };
        return crate::outcome::Unreachable(format!(
            "cannot reach the identity endpoint {url} ({why}); check the network and \
             --oauth-authority"
        ))
        .into();
    }
    anyhow!("{what} to {url} failed: {}", without_url(e))
}

fn read_cache(path: &Path) -> Result<Option<Password>> {
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => Ok(Some(Password::new(s.trim().to_string()))),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read token cache {}", path.display())),
    }
}

/// Writes the refresh token so that only the owner can read it.
fn write_cache(path: &Path, refresh: &Password) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    use std::os::unix::fs::PermissionsExt as _;
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write token cache {}", tmp.display()))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(refresh.expose().as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot write token cache {}", path.display()))?;
    Ok(())
}
