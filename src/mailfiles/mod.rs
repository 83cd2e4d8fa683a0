//! Mail as files: Maildir, mbox (mboxrd) and `.eml`, read by [`import`]
//! and written by [`export`].

pub mod calendar;
pub mod cards;
pub mod contacts_csv;
pub mod export;
pub mod import;
pub mod items;
pub mod pst;

/// A file format of mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One Maildir per folder.
    Maildir,
    /// One mboxrd file per folder.
    Mbox,
    /// One `.eml` file per message.
    Eml,
}

/// One message found on disk.
pub struct Found {
    pub bytes: Vec<u8>,
    /// IMAP flags, space-separated.
    pub flags: String,
    /// Seconds since the epoch; 0 when no date could be read.
    pub date: i64,
}

/// Something wrong with one item of a contacts or calendar file: the
/// item is skipped (or kept without what could not be read), the rest of
/// the file is not.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ItemProblem {
    pub file: String,
    /// The line where the item (or the text at fault) starts, 1-based.
    pub line: usize,
    /// The item's name or UID, where one could be read.
    pub item: Option<String>,
    pub kind: crate::store::items::ProblemKind,
    pub problem: String,
}

impl std::fmt::Display for ItemProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} line {}", self.file, self.line)?;
        if let Some(item) = &self.item {
            write!(f, " ({item})")?;
        }
        write!(f, ": {}", self.problem)
    }
}

/// A text file as Outlook, Excel, phones and webmail write it: UTF-8
/// (with or without a byte-order mark), UTF-16 with a byte-order mark, or
/// else Windows-1252. Never fails: every byte becomes some character.
pub fn decode_text(bytes: &[u8]) -> String {
    if let Some((encoding, bom)) = encoding_rs::Encoding::for_bom(bytes) {
        let (text, _) = encoding.decode_without_bom_handling(&bytes[bom..]);
        return text.into_owned();
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(_) => encoding_rs::WINDOWS_1252.decode(bytes).0.into_owned(),
    }
}

/// Each line of `text` with its 1-based number and byte offset.
fn lines_with_numbers(text: &str) -> impl Iterator<Item = (usize, usize, &str)> {
    text.split_inclusive('\n')
        .scan(0usize, |offset, line| {
            let start = *offset;
            *offset += line.len();
            Some(start)
        })
        .zip(text.split_inclusive('\n'))
        .enumerate()
        .map(|(i, (offset, line))| (i + 1, offset, line))
}

/// Maildir info letters and the IMAP flags they stand for, in ASCII order.
const MAILDIR_FLAGS: &[(char, &str)] = &[
    ('D', "\\Draft"),
    ('F', "\\Flagged"),
    ('R', "\\Answered"),
    ('S', "\\Seen"),
    ('T', "\\Deleted"),
];

/// One mboxrd entry: a `From ` line, the message with `>`-quoted `From `
/// lines, and a blank line.
fn mbox_entry(raw: &[u8], internal_date: i64) -> Vec<u8> {
    let date = chrono::DateTime::from_timestamp(internal_date, 0)
        .unwrap_or_default()
        .format("%a %b %e %H:%M:%S %Y");
    let mut out = format!("From MAILER-DAEMON {date}\n").into_bytes();
    for line in raw.split_inclusive(|&b| b == b'\n') {
        let unquoted = line.iter().position(|&b| b != b'>').unwrap_or(line.len());
        if line[unquoted..].starts_with(b"From ") {
            out.push(b'>');
        }
        out.extend_from_slice(line);
    }
    if !raw.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

/// Splits an mboxrd file: messages start at `From ` lines that follow a
/// blank line (or open the file); one `>` is removed from `>From ` lines.
fn split_mbox(text: &[u8]) -> Vec<Found> {
    // The blank line before the next `From ` separates; it is not mail.
    let finish = |(date, mut body): (i64, Vec<u8>)| {
        if body.ends_with(b"\n") {
            body.pop();
        }
        Found {
            bytes: body,
            flags: String::new(),
            date,
        }
    };
    let mut out = Vec::new();
    let mut current: Option<(i64, Vec<u8>)> = None;
    let mut previous_blank = true;
    for line in text.split_inclusive(|&b| b == b'\n') {
        if previous_blank && line.starts_with(b"From ") {
            if let Some(previous) = current.take() {
                out.push(finish(previous));
            }
            current = Some((from_line_date(line), Vec::new()));
            previous_blank = false;
            continue;
        }
        previous_blank = line == b"\n" || line == b"\r\n";
        if let Some((_, body)) = current.as_mut() {
            let quotes = line.iter().take_while(|&&b| b == b'>').count();
            if quotes > 0 && line[quotes..].starts_with(b"From ") {
                body.extend_from_slice(&line[1..]);
            } else {
                body.extend_from_slice(line);
            }
        }
    }
    out.extend(current.map(finish));
    out
}

/// The asctime date of a `From sender Thu Jan  1 00:00:00 1970` line.
fn from_line_date(line: &[u8]) -> i64 {
    let text = String::from_utf8_lossy(line);
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.len() < 7 {
        return 0;
    }
    let date = words[words.len() - 5..].join(" ");
    chrono::NaiveDateTime::parse_from_str(&date, "%a %b %e %H:%M:%S %Y")
        .map(|d| d.and_utc().timestamp())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mboxrd_quotes_from_lines() {
        let e = mbox_entry(b"Subject: x\r\n\r\nFrom here\r\n>From there\r\n", 0);
        let text = String::from_utf8(e).unwrap();
        assert!(text.starts_with("From MAILER-DAEMON Thu Jan  1 00:00:00 1970\n"));
        assert!(text.contains("\n>From here\r\n>>From there\r\n\n"));
    }

    #[test]
    fn an_mboxrd_entry_splits_back_into_the_same_message() {
        let raw = b"Subject: x\r\n\r\nFrom here\r\n>From there\r\n";
        let mut file = mbox_entry(raw, 86_400);
        file.extend(mbox_entry(b"Subject: y\r\n\r\nbody\r\n", 0));
        let found = split_mbox(&file);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].bytes, raw);
        assert_eq!(found[0].date, 86_400);
    }
}
