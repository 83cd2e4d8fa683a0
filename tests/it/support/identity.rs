//! A stand-in for the Microsoft identity platform on loopback: the OAuth 2.0
//! token endpoint (client credentials with a secret, device code, refresh
//! tokens) and an introspection endpoint for Dovecot's oauth2 passdb.
//!
//! It answers as the real one does where mailferry can tell: the same
//! paths, form fields, JSON replies and error shapes (`invalid_client`,
//! `authorization_pending`). Tokens are opaque, last `lifetime`, and are
//! valid for every mailbox of one domain (an app-only token for a tenant).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct State {
    /// A registered certificate credential: (RSA public key PEM, SHA-1 thumbprint, base64url).
    certificate: Option<(Vec<u8>, String)>,
    /// access token → when it stops working
    tokens: HashMap<String, Instant>,
    /// access token → the `scope` it was issued for (what the identity
    /// platform writes into the token's audience)
    scopes: HashMap<String, String>,
    refresh_tokens: Vec<String>,
    /// refresh token → the scope of the grant it continues
    refresh_scopes: HashMap<String, String>,
    issued: u64,
    /// device codes → polls left before the user "signs in"
    device_codes: HashMap<String, u32>,
    /// device codes → the scope asked for in the devicecode request
    device_scopes: HashMap<String, String>,
    /// Every request: path and form, for assertions.
    requests: Vec<(String, HashMap<String, String>)>,
}

pub struct Identity {
    pub port: u16,
    pub tenant: String,
    pub client_id: String,
    pub client_secret: String,
    state: Arc<Mutex<State>>,
}

impl Identity {
    /// Tokens for `domain`, lasting `lifetime`.
    pub fn start(domain: &str, lifetime: Duration) -> Identity {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State::default()));
        let id = Identity {
            port,
            tenant: "contoso-test-tenant".into(),
            client_id: "11111111-2222-3333-4444-555555555555".into(),
            client_secret: format!("secret-{}", uuid_like()),
            state: state.clone(),
        };
        let (tenant, client_id, secret, domain) = (
            id.tenant.clone(),
            id.client_id.clone(),
            id.client_secret.clone(),
            domain.to_string(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let state = state.clone();
                let (tenant, client_id, secret, domain) = (
                    tenant.clone(),
                    client_id.clone(),
                    secret.clone(),
                    domain.clone(),
                );
                std::thread::spawn(move || {
                    let _ = serve(
                        conn, &state, &tenant, &client_id, &secret, &domain, lifetime,
                    );
                });
            }
        });
        id
    }

    pub fn authority(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn introspection_url(&self) -> String {
        format!("http://127.0.0.1:{}/introspect", self.port)
    }

    /// Registers an app certificate: client assertions signed with its key
    /// are accepted in place of the secret.
    pub fn register_certificate(&self, public_key_pem: &[u8], thumbprint_b64url: &str) {
        self.state.lock().unwrap().certificate =
            Some((public_key_pem.to_vec(), thumbprint_b64url.to_string()));
    }

    /// A token for the tests' own client, not counted as issued.
    pub fn mint_token(&self) -> String {
        let token = format!("test-{}", uuid_like());
        self.state
            .lock()
            .unwrap()
            .tokens
            .insert(token.clone(), Instant::now() + Duration::from_secs(3600));
        token
    }

    /// A token for the tests' own client issued for `scope` (e.g.
    /// "https://graph.microsoft.com/.default"), not counted as issued.
    pub fn mint_token_for(&self, scope: &str) -> String {
        let token = self.mint_token();
        self.state
            .lock()
            .unwrap()
            .scopes
            .insert(token.clone(), scope.to_string());
        token
    }

    /// A checker of the access tokens this endpoint issued, for a resource
    /// server (the Graph emulator) to accept or refuse bearer tokens.
    pub fn token_check(&self) -> TokenCheck {
        TokenCheck {
            state: self.state.clone(),
        }
    }

    /// Access tokens issued so far.
    pub fn issued(&self) -> u64 {
        self.state.lock().unwrap().issued
    }

    /// Every access and refresh token issued (to search logs for them).
    pub fn all_tokens(&self) -> Vec<String> {
        let s = self.state.lock().unwrap();
        s.tokens
            .keys()
            .cloned()
            .chain(s.refresh_tokens.iter().cloned())
            .collect()
    }

    pub fn requests(&self) -> Vec<(String, HashMap<String, String>)> {
        self.state.lock().unwrap().requests.clone()
    }
}

/// What a resource server asks of the identity platform's tokens: issued,
/// not expired, and for its own resource (the `.default` scope the client
/// asked for; MS "Get access without a user": the scope names the resource).
#[derive(Clone)]
pub struct TokenCheck {
    state: Arc<Mutex<State>>,
}

impl TokenCheck {
    /// True when `token` was issued, has not expired, and was issued for
    /// exactly `scope`.
    pub fn check(&self, token: &str, scope: &str) -> bool {
        let s = self.state.lock().unwrap();
        s.tokens.get(token).is_some_and(|exp| Instant::now() < *exp)
            && s.scopes.get(token).is_some_and(|sc| sc == scope)
    }
}

fn uuid_like() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}{:x}", t, std::process::id())
}

fn serve(
    conn: TcpStream,
    state: &Mutex<State>,
    tenant: &str,
    client_id: &str,
    secret: &str,
    domain: &str,
    lifetime: Duration,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_string();
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let form = parse_form(&String::from_utf8_lossy(&body));
    let mut s = state.lock().unwrap();
    s.requests.push((path.clone(), form.clone()));
    let token_path = format!("/{tenant}/oauth2/v2.0/token");
    let device_path = format!("/{tenant}/oauth2/v2.0/devicecode");
    let (status, json) = if path == "/introspect" {
        let active = form
            .get("token")
            .and_then(|t| s.tokens.get(t))
            .is_some_and(|exp| Instant::now() < *exp);
        let reply = if active {
            format!(r#"{{"active": true, "username": "app@{domain}"}}"#)
        } else {
            r#"{"active": false}"#.to_string()
        };
        (200, reply)
    } else if path == device_path {
        let code = format!("dc-{}", uuid_like());
        s.device_codes.insert(code.clone(), 2);
        let scope = form.get("scope").cloned().unwrap_or_default();
        s.device_scopes.insert(code.clone(), scope);
        (
            200,
            format!(
                r#"{{"device_code": "{code}", "user_code": "ABCD-1234", "verification_uri": "https://microsoft.com/devicelogin", "interval": 1, "expires_in": 60, "message": "To sign in, use a web browser to open the page https://microsoft.com/devicelogin and enter the code ABCD-1234 to authenticate."}}"#
            ),
        )
    } else if path == token_path {
        let grant = form.get("grant_type").map(String::as_str).unwrap_or("");
        if form.get("client_id").map(String::as_str) != Some(client_id) {
            (400, r#"{"error": "unauthorized_client", "error_description": "AADSTS700016: Application not found in the directory."}"#.to_string())
        } else {
            match grant {
                "client_credentials" => {
                    let audience =
                        format!("http://127.0.0.1:{}{token_path}", conn.local_addr()?.port());
                    if form.get("client_secret").map(String::as_str) == Some(secret)
                        || assertion_ok(&s, &form, client_id, &audience)
                    {
                        let scope = form.get("scope").cloned().unwrap_or_default();
                        issue(&mut s, lifetime, false, &scope)
                    } else {
                        (401, r#"{"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."}"#.to_string())
                    }
                }
                "urn:ietf:params:oauth:grant-type:device_code" => {
                    let code = form.get("device_code").cloned().unwrap_or_default();
                    match s.device_codes.get_mut(&code) {
                        Some(0) => {
                            s.device_codes.remove(&code);
                            let scope = s.device_scopes.remove(&code).unwrap_or_default();
                            issue(&mut s, lifetime, true, &scope)
                        }
                        Some(n) => {
                            *n -= 1;
                            (400, r#"{"error": "authorization_pending", "error_description": "AADSTS70016: OAuth 2.0 device flow error. Authorization is pending."}"#.to_string())
                        }
                        None => (400, r#"{"error": "expired_token", "error_description": "AADSTS70020: The provided value for the input parameter 'device_code' is not valid."}"#.to_string()),
                    }
                }
                "refresh_token" => {
                    let known = form
                        .get("refresh_token")
                        .is_some_and(|r| s.refresh_tokens.contains(r));
                    if known {
                        // The scope asked for now, else the grant's own.
                        let scope = form.get("scope").cloned().unwrap_or_else(|| {
                            form.get("refresh_token")
                                .and_then(|r| s.refresh_scopes.get(r))
                                .cloned()
                                .unwrap_or_default()
                        });
                        issue(&mut s, lifetime, true, &scope)
                    } else {
                        (400, r#"{"error": "invalid_grant", "error_description": "AADSTS70000: The provided grant is not valid."}"#.to_string())
                    }
                }
                _ => (400, r#"{"error": "unsupported_grant_type"}"#.to_string()),
            }
        }
    } else {
        (404, r#"{"error": "not_found"}"#.to_string())
    };
    drop(s);
    let reason = if status == 200 { "OK" } else { "Bad Request" };
    let mut conn = conn;
    write!(
        conn,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{json}",
        json.len()
    )?;
    conn.flush()
}

/// A client assertion as the identity platform checks it: RS256 signed by
/// the registered key, x5t naming the certificate, aud = the token endpoint,
/// iss = sub = the client id, not expired.
fn assertion_ok(
    s: &State,
    form: &HashMap<String, String>,
    client_id: &str,
    audience: &str,
) -> bool {
    let (Some((public_pem, thumbprint)), Some(kind), Some(jwt)) = (
        &s.certificate,
        form.get("client_assertion_type"),
        form.get("client_assertion"),
    ) else {
        return false;
    };
    if kind != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
        return false;
    }
    let Ok(header) = jsonwebtoken::decode_header(jwt) else {
        return false;
    };
    if header.x5t.as_deref() != Some(thumbprint.as_str()) {
        return false;
    }
    let Ok(key) = jsonwebtoken::DecodingKey::from_rsa_pem(public_pem) else {
        return false;
    };
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[client_id]);
    validation.sub = Some(client_id.to_string());
    jsonwebtoken::decode::<serde_json::Value>(jwt, &key, &validation).is_ok()
}

fn issue(s: &mut State, lifetime: Duration, refresh: bool, scope: &str) -> (u16, String) {
    s.issued += 1;
    let token = format!("at-{}-{}", s.issued, uuid_like());
    s.tokens.insert(token.clone(), Instant::now() + lifetime);
    s.scopes.insert(token.clone(), scope.to_string());
    let refresh_part = if refresh {
        let r = format!("rt-{}-{}", s.issued, uuid_like());
        s.refresh_tokens.push(r.clone());
        s.refresh_scopes.insert(r.clone(), scope.to_string());
        format!(r#", "refresh_token": "{r}""#)
    } else {
        String::new()
    };
    (
        200,
        format!(
            r#"{{"token_type": "Bearer", "expires_in": {}, "access_token": "{token}"{refresh_part}}}"#,
            lifetime.as_secs().max(1)
        ),
    )
}

fn parse_form(body: &str) -> HashMap<String, String> {
    body.split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            Some((decode(k), decode(v)))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}
