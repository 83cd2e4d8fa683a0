//! IMAP client: TCP + rustls + async-imap, LOGIN or AUTHENTICATE PLAIN,
//! COMPRESS=DEFLATE, CONDSTORE/QRESYNC, and modified UTF-7 folder names.

pub mod mutf7;
mod session;
pub mod tls;
mod wire;

pub use session::{
    AppendAhead, Appended, Capabilities, FetchStream, FetchedMessage, FlagListing, ImapError,
    ImapSession, ListedFolder, LoginRefused, MailboxStatus, Namespace, Selected, StorageQuota,
    parse_internal_date, quote,
};
pub use wire::{CutLiteral, MAX_LINE, Spill, SpillFile, Spilled, WireStats};

/// What kind of failure `e` is: a refused login, a server that cannot be
/// reached or a connection that broke (TLS refusals included), or else.
/// (Identity endpoints that cannot be reached come as
/// [`crate::outcome::Unreachable`] from `oauth`.)
pub fn failure_kind(e: &anyhow::Error) -> crate::outcome::FailureKind {
    for cause in e.chain() {
        if cause
            .downcast_ref::<crate::outcome::LoginRefused>()
            .is_some()
            || cause
                .downcast_ref::<crate::outcome::CredentialsRefused>()
                .is_some()
        {
            return crate::outcome::FailureKind::Login;
        }
        if cause
            .downcast_ref::<crate::outcome::Interrupted>()
            .is_some()
        {
            return crate::outcome::FailureKind::Interrupted;
        }
    }
    let connect = e.chain().any(|c| {
        c.is::<crate::outcome::Unreachable>()
            || c.downcast_ref::<std::io::Error>().is_some_and(|io| {
                use std::io::ErrorKind::*;
                matches!(
                    io.kind(),
                    ConnectionRefused
                        | ConnectionReset
                        | ConnectionAborted
                        | NotConnected
                        | BrokenPipe
                        | TimedOut
                        | UnexpectedEof
                        | HostUnreachable
                        | NetworkUnreachable
                )
            })
            || c.downcast_ref::<ImapError>()
                .is_some_and(|e| e.is_link_failure() || matches!(e, ImapError::TlsRefused(_)))
    });
    if connect {
        crate::outcome::FailureKind::Connect
    } else {
        crate::outcome::FailureKind::Other
    }
}

/// Errors after which the session is unusable and a new one may succeed: a
/// broken or silent connection, BYE, a response that is not IMAP. Refusals
/// (a wrong password, a certificate that does not verify) are not.
pub fn is_connection_error(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some()
            || c.downcast_ref::<ImapError>()
                .is_some_and(|e| e.is_link_failure() || matches!(e, ImapError::Unparseable(_)))
    }) && !e.chain().any(|c| {
        c.downcast_ref::<LoginRefused>().is_some()
            || matches!(
                c.downcast_ref::<ImapError>(),
                Some(ImapError::TlsRefused(_))
            )
    })
}

/// Tries that [`connect_retrying`] makes, and the wait before the first
/// retry (doubled each time).
const CONNECT_TRIES: u32 = 4;
const FIRST_BACKOFF: std::time::Duration = std::time::Duration::from_millis(500);

/// Runs `connect` until it succeeds, it fails other than by a broken
/// connection, or it has failed [`CONNECT_TRIES`] times; waits 0.5 s, 1 s,
/// 2 s between tries. One dropped or stalled connection must not cost a
/// whole account its run.
pub async fn connect_retrying<T, F, Fut>(mut connect: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut wait = FIRST_BACKOFF;
    let mut tries = 1;
    loop {
        match connect().await {
            Ok(s) => return Ok(s),
            Err(e) if tries < CONNECT_TRIES && is_connection_error(&e) => {
                tracing::info!("connection failed ({e:#}); trying again in {wait:?}");
                tokio::time::sleep(wait).await;
                wait *= 2;
                tries += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// A compact UID set: `1:5,7,9:12`.
pub fn uid_set(sorted: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn uid_sets_are_compact() {
        assert_eq!(super::uid_set(&[1, 2, 3, 5, 7, 8, 9, 20]), "1:3,5,7:9,20");
        assert_eq!(super::uid_set(&[4]), "4");
    }
}
