//! How a run ended, in terms both the store (which keeps it) and the
//! commands (which turn it into exit codes) share. Neutral: it imports no
//! other module; which errors are which kind is told by
//! `imap::failure_kind`, next to the IMAP error type.

/// A login the server refused: wrong user name or password, or a locked account.
#[derive(Debug, thiserror::Error)]
#[error("login refused for {username} at {server}: {text}")]
pub struct LoginRefused {
    pub username: String,
    pub server: String,
    pub text: String,
}

/// A server (an identity endpoint, say) that could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unreachable(pub String);

/// Credentials a server refused (a client secret, a certificate).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CredentialsRefused(pub String);

/// Work left undone because the user stopped the run.
#[derive(Debug, thiserror::Error)]
#[error("interrupted before it finished; run again to continue")]
pub struct Interrupted;

/// Why an account's run stopped, as far as a script needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The server refused the login (password, locked account).
    Login,
    /// The server could not be reached, or the connection broke.
    Connect,
    /// The run was stopped (Ctrl-C, SIGTERM) before the account finished.
    Interrupted,
    Other,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Login => "login",
            FailureKind::Connect => "connect",
            FailureKind::Interrupted => "interrupted",
            FailureKind::Other => "other",
        }
    }

    pub fn parse(s: &str) -> FailureKind {
        match s {
            "login" => FailureKind::Login,
            "connect" => FailureKind::Connect,
            "interrupted" => FailureKind::Interrupted,
            _ => FailureKind::Other,
        }
    }
}

/// An error and its causes on one line.
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let mut s = cause.to_string();
        // Some errors quote whole responses (mail content): keep the gist.
        if s.len() > 800 {
            let mut cut = 800;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
            s.push('…');
        }
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}
