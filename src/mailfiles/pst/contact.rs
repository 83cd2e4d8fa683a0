//! Outlook contacts (IPM.Contact) and distribution lists (IPM.DistList) as
//! vCard 3.0 text, which then takes the path of an imported .vcf file.
//!
//! Microsoft Graph has no contact groups, so a distribution list becomes a
//! contact of its name whose notes list its members: nothing of it is
//! lost, and the user can rebuild the group from it.

use base64::Engine as _;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use outlook_pst::messaging::attachment::AttachmentData;

use super::lines::Lines;
use super::source::{KEYWORDS, OpenedMessage, PSETID_ADDRESS, Props, Tag, row_ids};

/// A contact's vCard. `opened` gives its photo, if it has one.
pub fn contact(p: &Props, opened: &OpenedMessage, uid: &str) -> String {
    let t = |id: u16| p.text(Tag::Id(id));
    let mut l = Lines::default();
    l.raw("BEGIN", "VCARD");
    l.raw("VERSION", "3.0");
    l.text("UID", uid);
    let emails: Vec<String> = [
        (0x8083, 0x8082, 0x8084),
        (0x8093, 0x8092, 0x8094),
        (0x80A3, 0x80A2, 0x80A4),
    ]
    .into_iter()
    .filter_map(|(address, kind, original)| email(p, address, kind, original))
    .collect();
    let (given, surname, middle) = (t(0x3A06), t(0x3A11), t(0x3A44));
    let spelled = [&given, &middle, &surname]
        .into_iter()
        .flatten()
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
    let name = t(0x3001)
        .or((!spelled.is_empty()).then_some(spelled))
        .or(p.text(Tag::Named(PSETID_ADDRESS, 0x8005))) // PidLidFileUnder
        .or(super::mail::subject(p))
        .or(emails.first().cloned())
        .unwrap_or_else(|| "?".into());
    l.text("FN", &name);
    l.parts("N", &[surname, given, middle, t(0x3A45), t(0x3A05)]);
    l.text_opt("NICKNAME", t(0x3A4F).as_deref());
    let (company, department) = (t(0x3A16), t(0x3A18));
    if company.is_some() || department.is_some() {
        l.parts("ORG", &[company, department]);
    }
    l.text_opt("TITLE", t(0x3A17).as_deref());
    l.text_opt("ROLE", t(0x3A46).as_deref());
    for e in &emails {
        l.text("EMAIL;TYPE=INTERNET", e);
    }
    for (id, kind) in [
        (0x3A1A, "PREF,VOICE"),
        (0x3A08, "WORK,VOICE"),
        (0x3A1B, "WORK,VOICE"),
        (0x3A09, "HOME,VOICE"),
        (0x3A2F, "HOME,VOICE"),
        (0x3A1C, "CELL,VOICE"),
        (0x3A24, "WORK,FAX"),
        (0x3A25, "HOME,FAX"),
        (0x3A23, "FAX"),
        (0x3A21, "PAGER"),
        (0x3A1E, "CAR,VOICE"),
        (0x3A1F, "VOICE"),
    ] {
        l.text_opt(&format!("TEL;TYPE={kind}"), t(id).as_deref());
    }
    let named = |lid: u32| p.text(Tag::Named(PSETID_ADDRESS, lid));
    // PO box, street, city, region, code, country. Work: PidLidWorkAddress*,
    // else the business address tags.
    let work = [
        named(0x804A),
        named(0x8045),
        named(0x8046),
        named(0x8047),
        named(0x8048),
        named(0x8049),
    ];
    let work = if work.iter().any(Option::is_some) {
        work
    } else {
        [
            t(0x3A2B),
            t(0x3A29),
            t(0x3A27),
            t(0x3A28),
            t(0x3A2A),
            t(0x3A26),
        ]
    };
    let home = [
        t(0x3A5E),
        t(0x3A5D),
        t(0x3A59),
        t(0x3A5C),
        t(0x3A5B),
        t(0x3A5A),
    ];
    let other = [
        t(0x3A64),
        t(0x3A63),
        t(0x3A5F),
        t(0x3A62),
        t(0x3A61),
        t(0x3A60),
    ];
    for (kind, [pobox, street, city, region, code, country]) in [
        ("ADR;TYPE=WORK", work),
        ("ADR;TYPE=HOME", home),
        ("ADR", other),
    ] {
        if [&pobox, &street, &city, &region, &code, &country]
            .iter()
            .any(|v| v.is_some())
        {
            l.parts(kind, &[pobox, None, street, city, region, code, country]);
        }
    }
    for url in [t(0x3A51), t(0x3A50)].into_iter().flatten() {
        l.text("URL", &url);
    }
    if let Some(day) = p.time(Tag::Id(0x3A42)).map(date_of) {
        l.raw("BDAY", &day.format("%Y-%m-%d").to_string());
    }
    let categories = p.texts(KEYWORDS);
    if !categories.is_empty() {
        let escaped: Vec<String> = categories.iter().map(|c| super::lines::escape(c)).collect();
        l.raw("CATEGORIES", &escaped.join(","));
    }
    l.text_opt("NOTE", t(0x1000).as_deref());
    if let Some(jpeg) = photo(p, opened) {
        l.raw(
            "PHOTO;ENCODING=b;TYPE=JPEG",
            &base64::engine::general_purpose::STANDARD.encode(jpeg),
        );
    }
    l.raw("END", "VCARD");
    l.finish()
}

/// A distribution list as a contact of its name, its members in its notes.
pub fn distribution_list(p: &Props, uid: &str) -> (String, usize) {
    let name = p
        .text(Tag::Named(PSETID_ADDRESS, 0x8053)) // PidLidDistributionListName
        .or(p.text(Tag::Id(0x3001)))
        .or(super::mail::subject(p))
        .unwrap_or_else(|| "?".into());
    // PidLidDistributionListOneOffMembers: one-off entry ids (name and
    // address) for the members; else the members themselves.
    let mut members: Vec<String> = p
        .binaries(Tag::Named(PSETID_ADDRESS, 0x8054))
        .into_iter()
        .filter_map(|id| one_off(p, id))
        .collect();
    if members.is_empty() {
        members = p
            .binaries(Tag::Named(PSETID_ADDRESS, 0x8055))
            .into_iter()
            .filter_map(|id| one_off(p, id))
            .collect();
    }
    let mut note = format!(
        "Outlook distribution list with {} members (Microsoft 365 contacts have no groups):",
        members.len()
    );
    for m in &members {
        note.push_str("\r\n");
        note.push_str(m);
    }
    if let Some(body) = p.text(Tag::Id(0x1000)) {
        note.push_str("\r\n\r\n");
        note.push_str(&body);
    }
    let mut l = Lines::default();
    l.raw("BEGIN", "VCARD");
    l.raw("VERSION", "3.0");
    l.text("UID", uid);
    l.text("FN", &name);
    l.raw("N", ";;;;");
    l.text("NOTE", &note);
    l.raw("END", "VCARD");
    (l.finish(), members.len())
}

/// "Name <address>" of a one-off entry id (MS-OXCDATA 2.2.5.1).
fn one_off(p: &Props, id: &[u8]) -> Option<String> {
    const ONE_OFF: [u8; 16] = [
        0x81, 0x2B, 0x1F, 0xA4, 0xBE, 0xA3, 0x10, 0x19, 0x9D, 0x6E, 0x00, 0xDD, 0x01, 0x0F, 0x54,
        0x02,
    ];
    if id.get(4..20)? != ONE_OFF {
        return None;
    }
    // Flags (2 bytes) after the version: U, "strings are UTF-16", is the
    // high bit of the second byte.
    let unicode = id.get(23)? & 0x80 != 0;
    let mut strings = Vec::new();
    let mut rest = id.get(24..)?;
    for _ in 0..3 {
        let (s, used) = if unicode {
            let end = rest.chunks_exact(2).position(|c| c == [0, 0])?;
            let units: Vec<u16> = rest[..end * 2]
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            (String::from_utf16_lossy(&units), end * 2 + 2)
        } else {
            let end = rest.iter().position(|&b| b == 0)?;
            (p.decode(&rest[..end]), end + 1)
        };
        strings.push(s);
        rest = &rest[used..];
    }
    let (name, address) = (&strings[0], &strings[2]);
    Some(
        match (name.is_empty(), address.is_empty() || name == address) {
            (false, false) => format!("{name} <{address}>"),
            (false, true) => name.clone(),
            (true, _) => address.clone(),
        },
    )
}

/// E-mail address n of a contact: its SMTP address, or the original one
/// when the file keeps only an Exchange (X.500) name.
fn email(p: &Props, address: u32, kind: u32, original: u32) -> Option<String> {
    let named = |lid: u32| p.text(Tag::Named(PSETID_ADDRESS, lid));
    let is_smtp = named(kind).is_none_or(|k| k.eq_ignore_ascii_case("SMTP"));
    let looks_like = |a: &String| a.contains('@') && !a.contains(char::is_whitespace);
    named(address)
        .filter(|a| is_smtp && looks_like(a))
        .or(named(original).filter(looks_like))
}

/// The calendar date an Outlook date-only value stands for: stored as
/// local midnight, either as such or in UTC; the nearest midnight is it.
pub fn date_of(t: DateTime<Utc>) -> NaiveDate {
    (t + Duration::hours(12)).date_naive()
}

/// The contact's picture: the attachment marked PidTagAttachmentContactPhoto.
fn photo(p: &Props, opened: &OpenedMessage) -> Option<Vec<u8>> {
    for node in row_ids(opened.message().attachment_table()) {
        let Ok(a) = opened.attachment(node) else {
            continue;
        };
        if p.with(a.properties()).flag(Tag::Id(0x7FFF)) != Some(true) {
            continue;
        }
        if let Some(AttachmentData::Binary(b)) = a.data()
            && b.buffer().starts_with(&[0xFF, 0xD8])
        {
            return Some(b.buffer().to_vec());
        }
    }
    None
}
