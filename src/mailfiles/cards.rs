//! Contacts as vCard files (`.vcf`, versions 2.1, 3.0 and 4.0, several
//! cards per file), as Outlook, Apple, Google, Thunderbird and webmail
//! export them.
//!
//! The file is cut at each `BEGIN:VCARD` line and every card is read on
//! its own, so a card cut short or garbled costs that card alone: it is
//! named in a problem (file, line, name) and the others are kept. The
//! parser (calcard) is lenient inside a card: a line it cannot read is
//! skipped, the rest of the card kept.

use calcard::vcard::{VCard, VCardProperty};
use calcard::{Entry, Parser};

use super::{ItemProblem, decode_text, lines_with_numbers};
use crate::store::BlobHash;
use crate::store::items::ProblemKind;

/// One contact read from a file.
#[derive(Debug, Clone)]
pub struct Card {
    /// Its identity in the source: the card's UID, else the sha256 of its
    /// text (a card without UID changed is another card).
    pub uid: String,
    /// The name people know it by: FN, else N, else the first e-mail.
    pub name: String,
    /// The card's own lines, as in the file.
    pub text: String,
    /// Where it starts in the file (1-based), for messages.
    pub line: usize,
    pub parsed: VCard,
}

/// Reads every card of a vCard file; `file` names it in problems.
pub fn read_vcards(bytes: &[u8], file: &str) -> (Vec<Card>, Vec<ItemProblem>) {
    let text = decode_text(bytes);
    let mut cards = Vec::new();
    let mut problems = Vec::new();
    for (line, chunk) in chunks(&text) {
        let problem = |item: Option<&str>, kind: ProblemKind, what: String| ItemProblem {
            file: file.to_string(),
            line,
            item: item.map(str::to_string),
            kind,
            problem: what,
        };
        if !is_begin(chunk.lines().next().unwrap_or_default()) {
            if !chunk.trim().is_empty() {
                problems.push(problem(
                    None,
                    ProblemKind::OutsideText,
                    "text outside any card (no BEGIN:VCARD before it); skipped".into(),
                ));
            }
            continue;
        }
        let fixed = bare_quoted_printable(chunk);
        let mut parser = Parser::new(&fixed);
        let mut found = None;
        loop {
            match parser.entry() {
                Entry::VCard(card) if found.is_none() => found = Some(card),
                Entry::Eof => break,
                Entry::VCard(_) => {}
                Entry::InvalidLine(l) => problems.push(problem(
                    found.as_ref().map(name_of).as_deref(),
                    ProblemKind::UnreadableLine,
                    format!("a line that is not vCard was skipped: {}", cut(&l)),
                )),
                other => problems.push(problem(
                    None,
                    ProblemKind::NotReadable,
                    format!("not read: {other:?}"),
                )),
            }
        }
        let Some(card) = found else {
            problems.push(problem(
                None,
                ProblemKind::NotReadable,
                "no card could be read here; skipped".into(),
            ));
            continue;
        };
        let name = name_of(&card);
        if !has_end(chunk) {
            problems.push(problem(
                Some(&name),
                ProblemKind::CutShort,
                "the card is cut short (no END:VCARD); not imported".into(),
            ));
            continue;
        }
        let uid = match card.uid() {
            Some(uid) if !uid.trim().is_empty() => uid.trim().to_string(),
            _ => BlobHash::of(chunk.as_bytes()).to_hex(),
        };
        cards.push(Card {
            uid,
            name,
            text: chunk.to_string(),
            line,
            parsed: card,
        });
    }
    (cards, problems)
}

fn is_begin(line: &str) -> bool {
    line.trim_end().eq_ignore_ascii_case("BEGIN:VCARD")
}

fn has_end(chunk: &str) -> bool {
    chunk
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .is_some_and(|l| l.trim().eq_ignore_ascii_case("END:VCARD"))
}

/// The file cut before each `BEGIN:VCARD` line, with the chunk's first
/// line number; text before the first card is a chunk of its own.
fn chunks(text: &str) -> Vec<(usize, &str)> {
    let mut starts: Vec<(usize, usize)> = Vec::new();
    for (number, offset, line) in lines_with_numbers(text) {
        if number == 1 || is_begin(line) {
            starts.push((number, offset));
        }
    }
    let mut out = Vec::new();
    for (i, (number, offset)) in starts.iter().enumerate() {
        let end = starts.get(i + 1).map_or(text.len(), |(_, o)| *o);
        out.push((*number, &text[*offset..end]));
    }
    out
}

/// Old phones write `;QUOTED-PRINTABLE` without `ENCODING=`: said the
/// way the parser decodes.
fn bare_quoted_printable(chunk: &str) -> std::borrow::Cow<'_, str> {
    let needs = |line: &str| {
        line.split_once(':').is_some_and(|(head, _)| {
            head.split(';')
                .skip(1)
                .any(|p| p.eq_ignore_ascii_case("QUOTED-PRINTABLE"))
        })
    };
    if !chunk.lines().any(needs) {
        return chunk.into();
    }
    let mut out = String::with_capacity(chunk.len() + 32);
    for line in chunk.split_inclusive('\n') {
        match line.split_once(':') {
            Some((head, rest)) if needs(line) => {
                let params: Vec<String> = head
                    .split(';')
                    .enumerate()
                    .map(|(i, p)| {
                        if i > 0 && p.eq_ignore_ascii_case("QUOTED-PRINTABLE") {
                            "ENCODING=QUOTED-PRINTABLE".to_string()
                        } else {
                            p.to_string()
                        }
                    })
                    .collect();
                out.push_str(&params.join(";"));
                out.push(':');
                out.push_str(rest);
            }
            _ => out.push_str(line),
        }
    }
    out.into()
}

/// FN, else N (given and family name), else the first e-mail, else "?".
fn name_of(card: &VCard) -> String {
    let text = |p: &VCardProperty| -> Vec<String> {
        card.property(p)
            .map(|e| {
                e.values
                    .iter()
                    .filter_map(|v| v.as_text())
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    };
    let full = text(&VCardProperty::Fn).join(" ");
    if !full.is_empty() {
        return full;
    }
    // N is family;given;additional;prefix;suffix.
    let n = text(&VCardProperty::N);
    if !n.is_empty() {
        let mut parts = n.clone();
        if parts.len() > 1 {
            parts.swap(0, 1);
        }
        return parts.join(" ");
    }
    text(&VCardProperty::Email)
        .into_iter()
        .next()
        .unwrap_or_else(|| "?".to_string())
}

fn cut(line: &str) -> String {
    let line = line.trim();
    match line.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> (Vec<Card>, Vec<ItemProblem>) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/items")
            .join(name);
        read_vcards(&std::fs::read(&path).unwrap(), name)
    }

    fn text(card: &Card, property: VCardProperty) -> Vec<String> {
        card.parsed
            .property(&property)
            .map(|e| {
                e.values
                    .iter()
                    .filter_map(|v| v.as_text().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn outlook_vcard_2_1_quoted_printable_in_windows_1252_is_read() {
        let (cards, problems) = fixture("outlook-2.1.vcf");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(cards.len(), 2);
        assert_eq!(cards[0].name, "Jürgen Müller");
        assert_eq!(text(&cards[0], VCardProperty::N)[..2], ["Müller", "Jürgen"]);
        let note = text(&cards[0], VCardProperty::Note).join("");
        assert!(
            note.contains("seit 2009.\r\nBitte nur vormittags"),
            "{note:?}"
        );
        let photo = cards[0].parsed.property(&VCardProperty::Photo).unwrap();
        assert!(matches!(
            photo.values.first(),
            Some(calcard::vcard::VCardValue::Binary(_))
        ));
        // No UID: the card's text names it, so the same card is the same item.
        assert_eq!(
            cards[1].uid,
            BlobHash::of(cards[1].text.as_bytes()).to_hex()
        );
        assert_eq!(cards[1].line, 19);
    }

    #[test]
    fn apple_google_and_thunderbird_cards_keep_their_names_and_uids() {
        let (apple, problems) = fixture("apple-3.0.vcf");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            apple.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["Johnny Appleseed", "Contoso Help Desk"]
        );
        assert_eq!(apple[0].uid, "5D1B3C2E-9A4F-4E8B-8C6D-2F3E4A5B6C7D");
        assert_eq!(
            text(&apple[0], VCardProperty::Note),
            ["Met at WWDC, asked about the migration."]
        );

        let (google, problems) = fixture("google-3.0.vcf");
        assert!(problems.is_empty(), "{problems:?}");
        // A card with neither FN nor N is known by its address.
        assert_eq!(google[1].name, "noreply-billing@contoso.example");
        assert_eq!(google[0].text.lines().next(), Some("BEGIN:VCARD"));

        let (thunderbird, problems) = fixture("thunderbird-4.0.vcf");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            thunderbird[0].uid,
            "urn:uuid:4fbe8971-0bc3-424c-9c26-36c3e1eff6b1"
        );
        let note = text(&thunderbird[0], VCardProperty::Note).join("");
        assert!(note.ends_with("long notes fold across lines."), "{note:?}");
    }

    #[test]
    fn a_broken_card_is_named_and_the_others_are_kept() {
        let (cards, problems) = fixture("broken.vcf");
        assert_eq!(
            cards.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["First Intact", "After The Cut", "René Dupont"],
            "{problems:?}"
        );
        let said: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(said.len(), 2, "{said:?}");
        assert!(
            said[0].starts_with("broken.vcf line 1: text outside any card"),
            "{said:?}"
        );
        assert_eq!(
            said[1],
            "broken.vcf line 7 (Cut Short): the card is cut short (no END:VCARD); not imported"
        );
    }

    #[test]
    fn a_file_in_windows_1252_is_read_as_such() {
        let (cards, problems) = fixture("webmail-1252.vcf");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(cards[0].name, "Jürgen Weiß");
    }

    #[test]
    fn utf16_with_a_byte_order_mark_is_read() {
        let card = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Zoë\r\nEND:VCARD\r\n";
        let mut bytes = vec![0xFF, 0xFE];
        bytes.extend(card.encode_utf16().flat_map(|u| u.to_le_bytes()));
        let (cards, problems) = read_vcards(&bytes, "unicode.vcf");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(cards[0].name, "Zoë");
    }
}
