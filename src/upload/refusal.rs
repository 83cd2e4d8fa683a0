//! What a server's refusal of an APPEND means for the message.
//!
//! Decided by the response code (RFC 5530) first and by wordings servers
//! are known to use second. A refusal that will never change for these
//! bytes is permanent (the message is skipped, with the server's words);
//! one that may pass later (quota, a busy or broken server, words nobody
//! has seen) fails the message for the next run to try again.

use std::time::Duration;

use super::throttle::is_throttled;
use crate::store::ledger::SkipReason;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Busy: wait (this long, if the server said) and send it again.
    Throttled(Option<Duration>),
    /// `[TRYCREATE]`: the folder is gone; create it and send again.
    NoFolder,
    /// The server takes no bare LF or CR (Cyrus): CRLF line ends would pass.
    BareNewlines,
    /// Never, as these bytes are.
    Permanent,
    /// The mailbox is full: when someone deletes mail, on a later run.
    OverQuota,
    /// Perhaps in a moment (a server's passing fault, such as Cyrus's
    /// "System I/O error" on a mailbox another connection just made), else
    /// on a later run.
    Temporary,
}

/// Response codes that are about the message itself.
const PERMANENT_CODES: &[&str] = &["[TOOBIG]", "[LIMIT]", "[PARSE]", "[CANNOT]"];

/// Wordings of refusals of the message itself, in lower case.
const PERMANENT_WORDS: &[&str] = &[
    "too large",
    "too big",
    "exceeds the maximum",
    "size exceeds",
    "message exceeds",
    "line too long",
    "line is too long",
    "contains nul",
    "nul character",
    "invalid header",
    "header/body separator",
    "8-bit header",
    "8bit header",
    "non-rfc2047",
    "invalid message",
    "malformed",
];

pub fn classify(text: &str) -> Refusal {
    let lower = text.to_ascii_lowercase();
    if let Some(backoff) = is_throttled(text) {
        return Refusal::Throttled(backoff);
    }
    if text.contains("[TRYCREATE]") {
        return Refusal::NoFolder;
    }
    // Quota frees up when someone deletes mail: not the message's fault.
    if text.contains("[OVERQUOTA]") || lower.contains("quota") {
        return Refusal::OverQuota;
    }
    if lower.contains("bare newline") || lower.contains("bare lf") || lower.contains("bare cr") {
        return Refusal::BareNewlines;
    }
    if PERMANENT_CODES.iter().any(|c| text.contains(c))
        || PERMANENT_WORDS.iter().any(|w| lower.contains(w))
    {
        return Refusal::Permanent;
    }
    Refusal::Temporary
}

/// What a refusal for good of a message of `size` bytes is, for the
/// ledger: judged once, here, from the server's words, which are kept.
pub fn skip_reason(text: &str, size: u64) -> SkipReason {
    let lower = text.to_ascii_lowercase();
    let words = text.to_string();
    if lower.contains("bare newline") || lower.contains("bare lf") || lower.contains("bare cr") {
        SkipReason::BareLineEnds(words)
    } else if lower.contains("line too long")
        || lower.contains("line is too long")
        || lower.contains("line length")
    {
        SkipReason::LineTooLong(words)
    } else if text.contains("[TOOBIG]")
        || ["too large", "too big", "exceeds", "size"]
            .iter()
            .any(|w| lower.contains(w))
    {
        SkipReason::TooLarge {
            size,
            limit: None,
            said: Some(words),
        }
    } else {
        SkipReason::Rejected(words)
    }
}

/// Whether `body` has a line end other than CRLF.
pub fn has_bare_line_ends(body: &[u8]) -> bool {
    body.iter().enumerate().any(|(i, &b)| match b {
        b'\n' => i == 0 || body[i - 1] != b'\r',
        b'\r' => body.get(i + 1) != Some(&b'\n'),
        _ => false,
    })
}

/// `body` with every bare LF and bare CR made CRLF; nothing else changes.
pub fn crlf_line_ends(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 32);
    for (i, &b) in body.iter().enumerate() {
        match b {
            b'\n' if i == 0 || body[i - 1] != b'\r' => out.extend_from_slice(b"\r\n"),
            b'\r' if body.get(i + 1) != Some(&b'\n') => out.extend_from_slice(b"\r\n"),
            _ => out.push(b),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_for_good_is_told_by_kind_and_keeps_the_words() {
        use crate::store::ledger::ReasonKind;
        let kind = |text| skip_reason(text, 10).kind();
        assert_eq!(kind("NO [TOOBIG] message too large"), ReasonKind::TooLarge);
        assert_eq!(
            kind("NO [LIMIT] APPEND failed: line too long."),
            ReasonKind::LineTooLong
        );
        assert_eq!(
            kind("NO Message contains bare newlines"),
            ReasonKind::BareLineEnds
        );
        assert_eq!(kind("NO [PARSE] invalid header"), ReasonKind::Rejected);
        assert_eq!(
            skip_reason("NO [PARSE] invalid header", 10).to_string(),
            "NO [PARSE] invalid header"
        );
    }

    #[test]
    fn refusals_are_told_apart_by_code_then_words() {
        assert_eq!(
            classify("Message contains bare newlines"),
            Refusal::BareNewlines
        );
        assert_eq!(classify("[TOOBIG] Message too large"), Refusal::Permanent);
        assert_eq!(
            classify("[LIMIT] Mail size is too large"),
            Refusal::Permanent
        );
        assert_eq!(
            classify("Message contains NUL characters"),
            Refusal::Permanent
        );
        assert_eq!(
            classify("[TRYCREATE] Mailbox doesn't exist: X"),
            Refusal::NoFolder
        );
        assert_eq!(
            classify("[OVERQUOTA] Quota exceeded (mailbox for user is full)"),
            Refusal::OverQuota
        );
        assert_eq!(classify("Over quota"), Refusal::OverQuota);
        assert_eq!(classify("[SERVERBUG] Internal error"), Refusal::Temporary);
        assert!(matches!(
            classify("[UNAVAILABLE] Request is throttled. Suggested Backoff Time: 10 milliseconds"),
            Refusal::Throttled(Some(_))
        ));
    }

    #[test]
    fn line_ends_become_crlf_and_nothing_else_changes() {
        assert!(has_bare_line_ends(b"a\nb"));
        assert!(has_bare_line_ends(b"a\rb"));
        assert!(has_bare_line_ends(b"\nb"));
        assert!(!has_bare_line_ends(b"a\r\nb\r\n"));
        assert_eq!(crlf_line_ends(b"a\nb\r\nc\rd\n"), b"a\r\nb\r\nc\r\nd\r\n");
        assert_eq!(crlf_line_ends(b"\n\n"), b"\r\n\r\n");
        assert_eq!(crlf_line_ends(b"x\r\n"), b"x\r\n");
    }
}
