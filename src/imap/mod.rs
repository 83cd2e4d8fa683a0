//! IMAP client: TCP + rustls + async-imap, LOGIN or AUTHENTICATE PLAIN,
//! COMPRESS=DEFLATE, CONDSTORE/QRESYNC, and modified UTF-7 folder names.

pub mod mutf7;
mod session;
pub mod tls;
mod wire;

pub use session::{
    Capabilities, FetchedMessage, FolderStatus, ImapError, ImapSession, ListedFolder, LoginRefused,
    Selected, parse_internal_date, quote,
};
pub use wire::WireStats;

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
