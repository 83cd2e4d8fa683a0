//! A .pst message as the RFC 822 bytes the store keeps, with its IMAP
//! flags and date.
//!
//! A PST holds properties, not MIME. The original Internet headers are
//! kept when the file has them (PidTagTransportMessageHeaders), less the
//! ones that describe a MIME structure which no longer exists; otherwise
//! headers are built from the properties. The body is rebuilt from the
//! text, HTML (or HTML encapsulated in RTF) bodies and the attachments.
//! The same file always gives the same bytes (boundaries come from the
//! message's content, not from chance), so a second import adds nothing.

use mail_builder::headers::Header as _;
use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::date::Date;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::raw::Raw;
use mail_builder::headers::text::Text;
use mail_builder::mime::{BodyPart, MimePart};
use outlook_pst::messaging::attachment::AttachmentData;
use outlook_pst::messaging::message::Message;
use sha2::{Digest as _, Sha256};

use super::rtf::html_from_compressed_rtf;
use super::source::{NamedIds, OpenedMessage, Props, Tag, row_ids, rows};

/// A message ready for the store.
pub struct Mail {
    pub bytes: Vec<u8>,
    /// IMAP flags, space-separated.
    pub flags: String,
    /// INTERNALDATE, seconds since the epoch; 0 when the file has none.
    pub date: i64,
}

/// Builds the message; what could not be carried into it (an unreadable
/// attachment, a link to a file elsewhere) is added to `losses`.
pub fn mail(opened: &OpenedMessage, names: &NamedIds, losses: &mut Vec<String>) -> Mail {
    let p = Props::of(opened.message().properties(), names);
    Mail {
        bytes: rfc822(opened.message(), Some(opened), names, losses, 0),
        flags: flags(&p),
        // INTERNALDATE is when it arrived; a draft has only its creation.
        date: [0x0E06, 0x0039, 0x3007]
            .into_iter()
            .find_map(|id| p.time(Tag::Id(id)))
            .map_or(0, |t| t.timestamp()),
    }
}

/// The subject without the PST's prefix marker (U+0001 and a length).
pub fn subject(p: &Props) -> Option<String> {
    let s = p.text(Tag::Id(0x0037))?;
    Some(match s.strip_prefix('\u{1}') {
        Some(rest) => rest.chars().skip(1).collect(),
        None => s,
    })
}

fn flags(p: &Props) -> String {
    let message_flags = p.int(Tag::Id(0x0E07)).unwrap_or(0);
    let mut flags = Vec::new();
    // PidTagLastVerbExecuted: 102 reply, 103 reply to all.
    if matches!(p.int(Tag::Id(0x1081)), Some(102 | 103)) {
        flags.push("\\Answered");
    }
    if message_flags & 0x08 != 0 {
        flags.push("\\Draft"); // mfUnsent
    }
    if p.int(Tag::Id(0x1090)) == Some(2) {
        flags.push("\\Flagged"); // PidTagFlagStatus: followupFlagged
    }
    if message_flags & 0x01 != 0 {
        flags.push("\\Seen"); // mfRead
    }
    flags.join(" ")
}

/// `msg` as RFC 822 bytes. `opened` gives access to its attachments; an
/// attached message has none (outlook-pst hands it over untyped).
fn rfc822(
    msg: &dyn Message,
    opened: Option<&OpenedMessage>,
    names: &NamedIds,
    losses: &mut Vec<String>,
    depth: usize,
) -> Vec<u8> {
    let p = Props::of(msg.properties(), names);
    let mut out = Vec::new();
    headers(&p, msg, &mut out);
    out.extend_from_slice(b"MIME-Version: 1.0\r\n");
    let mut boundaries = Boundaries::new(&p, depth);
    body(&p, msg, opened, names, losses, depth, &mut boundaries).write_part(&mut out);
    out
}

/// Header fields that describe the original MIME structure, replaced by
/// the rebuilt one's.
const MIME_FIELDS: &[&str] = &[
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "content-disposition",
    "content-length",
    "content-id",
    "content-md5",
];

fn headers(p: &Props, msg: &dyn Message, out: &mut Vec<u8>) {
    let transport = p
        .text(Tag::Id(0x007D))
        .map(|h| transport_fields(&h))
        .unwrap_or_default();
    let has = |name: &str| {
        transport
            .iter()
            .any(|f| field_name(f).is_some_and(|n| n.eq_ignore_ascii_case(name)))
    };
    for field in &transport {
        out.extend_from_slice(field.as_bytes());
    }
    let mut put = |name: &str, value: &dyn Fn(&mut Vec<u8>, usize)| {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        value(out, name.len() + 2);
    };
    if !has("Date")
        && let Some(t) = [0x0039, 0x0E06, 0x3007]
            .into_iter()
            .find_map(|id| p.time(Tag::Id(id)))
    {
        put("Date", &|o, c| Date::new(t.timestamp()).write_header(o, c));
    }
    if !has("From") {
        // From is whom it was sent for; Sender, who sent it, if another.
        let from = person(p, [0x0042, 0x0064, 0x0065, 0x5D02]);
        let sender = person(p, [0x0C1A, 0x0C1E, 0x0C1F, 0x5D01]);
        if let Some(from) = from.clone().or(sender.clone()) {
            put("From", &|o, c| address(&from).write_header(o, c));
        }
        if let (Some(from), Some(sender)) = (from, sender)
            && !sender.1.is_empty()
            && !sender.1.eq_ignore_ascii_case(&from.1)
        {
            put("Sender", &|o, c| address(&sender).write_header(o, c));
        }
    }
    if transport.is_empty() {
        let recipients = rows(msg.recipient_table());
        for (kind, name) in [(1, "To"), (2, "Cc"), (3, "Bcc")] {
            let list: Vec<Address> = recipients
                .iter()
                .map(|row| p.with(row))
                .filter(|r| r.int(Tag::Id(0x0C15)).unwrap_or(1) == kind)
                .filter_map(|r| person(&r, [0x3001, 0x3002, 0x3003, 0x39FE]))
                .map(|who| address(&who))
                .collect();
            if !list.is_empty() {
                let list = Address::new_list(list);
                put(name, &|o, c| list.write_header(o, c));
            }
        }
    }
    if !has("Subject")
        && let Some(s) = subject(p)
    {
        put("Subject", &|o, c| Text::new(s.clone()).write_header(o, c));
    }
    if !has("Message-ID")
        && let Some(id) = p.text(Tag::Id(0x1035))
    {
        put("Message-ID", &|o, c| ids(&id).write_header(o, c));
    }
    if transport.is_empty() {
        for (id, name) in [(0x1042, "In-Reply-To"), (0x1039, "References")] {
            if let Some(v) = p.text(Tag::Id(id)) {
                put(name, &|o, c| ids(&v).write_header(o, c));
            }
        }
        let importance = match p.int(Tag::Id(0x0017)) {
            Some(0) => Some("Low"),
            Some(2) => Some("High"),
            _ => None,
        };
        if let Some(i) = importance {
            put("Importance", &|o, c| Raw::new(i).write_header(o, c));
        }
    }
}

/// The transport headers as CRLF-ended lines, without the MIME fields
/// and without lines that are not header fields (some converters leave
/// fragments of folded lines behind).
fn transport_fields(headers: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut keep = false;
    for line in headers.lines() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if keep {
                out.push(format!("{line}\r\n"));
            }
            continue;
        }
        keep = field_name(line)
            .is_some_and(|n| !MIME_FIELDS.contains(&n.to_ascii_lowercase().as_str()));
        if keep {
            out.push(format!("{line}\r\n"));
        }
    }
    out
}

/// The name of a header field line, if it is one (RFC 5322 ftext).
fn field_name(line: &str) -> Option<&str> {
    let (name, _) = line.split_once(':')?;
    (!name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b))).then_some(name)
}

/// A message id list without its angle brackets, for mail-builder.
fn ids(text: &str) -> MessageId<'static> {
    MessageId::new_list(
        text.split_whitespace()
            .map(|id| id.trim_matches(['<', '>']).to_string())
            .filter(|id| !id.is_empty()),
    )
}

/// (name, address) of a person from properties [name, address type,
/// address, SMTP address]; the address is empty when the file has only
/// an Exchange one (an X.500 name is no mail address).
fn person(p: &Props, [name, kind, addr, smtp]: [u16; 4]) -> Option<(Option<String>, String)> {
    let name = p.text(Tag::Id(name));
    let addr = p.text(Tag::Id(addr));
    let smtp = p.text(Tag::Id(smtp));
    let is_smtp = p
        .text(Tag::Id(kind))
        .is_none_or(|k| k.eq_ignore_ascii_case("SMTP"));
    let email = smtp
        .or(addr.filter(|a| is_smtp && a.contains('@')))
        .unwrap_or_default();
    (name.is_some() || !email.is_empty()).then(|| (name.filter(|n| *n != email), email))
}

fn address((name, email): &(Option<String>, String)) -> Address<'static> {
    Address::new_address(name.clone(), email.clone())
}

/// Multipart boundaries that depend only on the message: nested messages
/// get their depth in them, each multipart its number.
struct Boundaries {
    seed: String,
    next: usize,
}

impl Boundaries {
    fn new(p: &Props, depth: usize) -> Boundaries {
        let mut h = Sha256::new();
        for id in [0x007D, 0x0037, 0x1035, 0x1000] {
            h.update(p.text(Tag::Id(id)).unwrap_or_default().as_bytes());
            h.update([0]);
        }
        Boundaries {
            seed: format!("{depth}_{}", &hex::encode(h.finalize())[..24]),
            next: 0,
        }
    }

    /// `=_` cannot occur in quoted-printable or base64 text.
    fn multipart(&mut self, kind: &str, parts: Vec<MimePart<'static>>) -> MimePart<'static> {
        self.next += 1;
        let boundary = format!("=_mailferry_{}_{}", self.seed, self.next);
        MimePart::new(
            ContentType::new(kind.to_string()).attribute("boundary", boundary),
            BodyPart::Multipart(parts),
        )
    }
}

fn text_part(kind: &str, text: String) -> MimePart<'static> {
    MimePart::new(
        ContentType::new(kind.to_string()).attribute("charset", "utf-8"),
        BodyPart::Text(text.into()),
    )
}

/// PidTagHtml (bytes in the Internet code page), else the HTML in the
/// compressed RTF body.
fn html(p: &Props) -> Option<String> {
    if let Some(bytes) = p.bytes(Tag::Id(0x1013)) {
        let text = match std::str::from_utf8(bytes) {
            Ok(s) => s.trim_end_matches('\0').to_string(),
            Err(_) => p.decode(bytes),
        };
        return (!text.trim().is_empty()).then_some(text);
    }
    p.text(Tag::Id(0x1013))
        .or_else(|| html_from_compressed_rtf(p.bytes(Tag::Id(0x1009))?))
}

fn body(
    p: &Props,
    msg: &dyn Message,
    opened: Option<&OpenedMessage>,
    names: &NamedIds,
    losses: &mut Vec<String>,
    depth: usize,
    boundaries: &mut Boundaries,
) -> MimePart<'static> {
    let text = p.text(Tag::Id(0x1000));
    let html = html(p);
    let mut inline = Vec::new();
    let mut attached = Vec::new();
    let nodes = row_ids(msg.attachment_table());
    match opened {
        None if !nodes.is_empty() => losses.push(format!(
            "the attached message {:?} has {} attachments of its own, which are not read \
             (outlook-pst gives no access to them)",
            subject(p).unwrap_or_default(),
            nodes.len()
        )),
        None => {}
        Some(opened) => {
            for (n, node) in nodes.into_iter().enumerate() {
                let a = match opened.attachment(node) {
                    Ok(a) => a,
                    Err(e) => {
                        losses.push(format!("attachment {} cannot be read: {e}", n + 1));
                        continue;
                    }
                };
                let ap = p.with(a.properties());
                let name = [0x3707, 0x3704, 0x3001]
                    .into_iter()
                    .find_map(|id| ap.text(Tag::Id(id)))
                    .unwrap_or_else(|| format!("attachment-{}", n + 1));
                match a.data() {
                    Some(AttachmentData::Binary(data)) => {
                        let kind = ap
                            .text(Tag::Id(0x370E))
                            .filter(|k| k.contains('/'))
                            .unwrap_or_else(|| guess_type(&name).to_string());
                        let cid = ap
                            .text(Tag::Id(0x3712))
                            .map(|c| c.trim_matches(['<', '>']).to_string());
                        let part = MimePart::new(
                            ContentType::new(kind).attribute("name", name.clone()),
                            BodyPart::Binary(data.buffer().to_vec().into()),
                        );
                        match cid {
                            Some(cid)
                                if html
                                    .as_ref()
                                    .is_some_and(|h| h.contains(&format!("cid:{cid}"))) =>
                            {
                                inline.push(
                                    part.header(
                                        "Content-Disposition",
                                        ContentType::new("inline").attribute("filename", name),
                                    )
                                    .cid(cid),
                                );
                            }
                            _ => attached.push(part.attachment(name)),
                        }
                    }
                    Some(AttachmentData::Message(inner)) => {
                        let bytes = rfc822(inner.as_ref(), None, names, losses, depth + 1);
                        let encoding = if bytes.is_ascii() { "7bit" } else { "8bit" };
                        let file = format!("{}.eml", name.trim_end_matches(".msg"));
                        attached.push(
                            MimePart::new("message/rfc822", BodyPart::Binary(bytes.into()))
                                .transfer_encoding(encoding)
                                .attachment(file),
                        );
                    }
                    None => losses.push(match ap.int(Tag::Id(0x3705)) {
                        // afByReference, afByReferenceOnly, afByWebReference
                        Some(2 | 4 | 7) => format!(
                            "attachment {name:?} is a link to {}, not a copy; not carried over",
                            ap.text(Tag::Id(0x370D))
                                .or(ap.text(Tag::Id(0x3708)))
                                .unwrap_or_else(|| "a file outside this file".into())
                        ),
                        _ => format!("attachment {name:?} holds no data; not carried over"),
                    }),
                }
            }
        }
    }
    let readable = match (text, html) {
        (Some(t), Some(h)) => boundaries.multipart(
            "multipart/alternative",
            vec![text_part("text/plain", t), text_part("text/html", h)],
        ),
        (Some(t), None) => text_part("text/plain", t),
        (None, Some(h)) => text_part("text/html", h),
        (None, None) => text_part("text/plain", String::new()),
    };
    let readable = if inline.is_empty() {
        readable
    } else {
        inline.insert(0, readable);
        boundaries.multipart("multipart/related", inline)
    };
    if attached.is_empty() {
        readable
    } else {
        attached.insert(0, readable);
        boundaries.multipart("multipart/mixed", attached)
    }
}

/// A media type for a file name, when the file gives none.
fn guess_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("pdf") => "application/pdf",
        Some("doc" | "dot") => "application/msword",
        Some("docx") => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        Some("xls") => "application/vnd.ms-excel",
        Some("xlsx") => "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        Some("ppt") => "application/vnd.ms-powerpoint",
        Some("pptx") => "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        Some("txt") => "text/plain",
        Some("htm" | "html") => "text/html",
        Some("csv") => "text/csv",
        Some("ics") => "text/calendar",
        Some("vcf") => "text/vcard",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("gif") => "image/gif",
        Some("bmp") => "image/bmp",
        Some("tif" | "tiff") => "image/tiff",
        Some("zip") => "application/zip",
        Some("eml") => "message/rfc822",
        Some("msg") => "application/vnd.ms-outlook",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_headers_lose_their_mime_fields_and_stray_fragments() {
        let fields = transport_fields(
            "Date: Mon, 1 Jan 2001 10:00:00 -0500\nContent-Type: multipart/mixed;\n\tboundary=\"x\"\n\
             Subject: Hello\r\n world\r\n17: 04:44 -0500\nnot a field\nMIME-Version: 1.0\n\n",
        );
        assert_eq!(
            fields.concat(),
            "Date: Mon, 1 Jan 2001 10:00:00 -0500\r\nSubject: Hello\r\n world\r\n17: 04:44 -0500\r\n"
        );
    }

    #[test]
    fn file_names_give_a_media_type() {
        assert_eq!(guess_type("OBA_2760.DOC"), "application/msword");
        assert_eq!(guess_type("noext"), "application/octet-stream");
    }
}
