//! Contacts as CSV, in the columns Outlook's "Comma Separated Values"
//! export writes (English names; Rackspace Webmail's export for Outlook
//! writes the same), or Thunderbird's, Google's or a plain Name/Email
//! list's, comma, semicolon or tab separated, in UTF-8, UTF-16 or
//! Windows-1252. Each row becomes a vCard 3.0 text, so contacts from
//! CSV and from vCard files travel the same way from here on.

use std::collections::{HashMap, HashSet};

use super::cards::Card;
use super::{ItemProblem, decode_text};
use crate::store::BlobHash;
use crate::store::items::ProblemKind;

/// Columns of Outlook's export that name a contact.
const IDENTITY: &[&str] = &["First Name", "Last Name", "E-mail Address", "Company"];

/// Other exports' names for Outlook's columns: Thunderbird's CSV, Google's
/// "Google CSV", and the plain Name/Email lists webmails (Roundcube and
/// others) write; Rackspace Webmail offers exports for several clients.
const ALIASES: &[(&str, &str)] = &[
    ("Given Name", "First Name"),
    ("Additional Name", "Middle Name"),
    ("Family Name", "Last Name"),
    ("Primary Email", "E-mail Address"),
    ("Email", "E-mail Address"),
    ("E-mail", "E-mail Address"),
    ("Email Address", "E-mail Address"),
    ("E-mail 1 - Value", "E-mail Address"),
    ("Secondary Email", "E-mail 2 Address"),
    ("E-mail 2 - Value", "E-mail 2 Address"),
    ("E-mail 3 - Value", "E-mail 3 Address"),
    ("Organization", "Company"),
    ("Organization 1 - Name", "Company"),
    ("Organization 1 - Title", "Job Title"),
    ("Organization 1 - Department", "Department"),
    ("Work Phone", "Business Phone"),
    ("Mobile Number", "Mobile Phone"),
    ("Fax Number", "Business Fax"),
    ("Pager Number", "Pager"),
    ("Web Page 1", "Web Page"),
    ("Website 1 - Value", "Web Page"),
    ("Note", "Notes"),
    ("Display Name", "Name"),
];

/// Reads every contact of an Outlook-style CSV; `file` names it in
/// problems. A row that names no one is skipped and named.
pub fn read_contacts_csv(bytes: &[u8], file: &str) -> (Vec<Card>, Vec<ItemProblem>) {
    let text = decode_text(bytes);
    let problem = |line: usize, item: Option<String>, kind, what: String| ItemProblem {
        file: file.to_string(),
        line,
        item,
        kind,
        problem: what,
    };
    let header_line = text.lines().next().unwrap_or_default();
    let delimiter = [b',', b';', b'\t']
        .into_iter()
        .max_by_key(|d| header_line.matches(*d as char).count())
        .unwrap_or(b',');
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .trim(csv::Trim::Headers)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = match reader.headers() {
        Ok(h) => h
            .iter()
            .map(|s| s.trim_matches('\u{feff}').to_string())
            .collect(),
        Err(e) => {
            return (
                Vec::new(),
                vec![problem(
                    1,
                    None,
                    ProblemKind::NotReadable,
                    format!("no header line: {e}"),
                )],
            );
        }
    };
    // Another export's column names become Outlook's, where Outlook's
    // own is not there.
    let mut headers = headers;
    for h in headers.iter_mut() {
        if let Some((_, outlook)) = ALIASES.iter().find(|(a, _)| a.eq_ignore_ascii_case(h)) {
            *h = outlook.to_string();
        }
    }
    if !IDENTITY
        .iter()
        .chain(&["Name"])
        .any(|c| headers.iter().any(|h| h.eq_ignore_ascii_case(c)))
    {
        return (
            Vec::new(),
            vec![problem(
                1,
                None,
                ProblemKind::NotReadable,
                format!(
                    "the header names none of {}: not a contacts export in Outlook's columns",
                    IDENTITY.join(", ")
                ),
            )],
        );
    }
    let column: HashMap<String, usize> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| (h.to_ascii_lowercase(), i))
        .collect();
    let mut cards = Vec::new();
    let mut problems = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for row in reader.records() {
        let row = match row {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                problems.push(problem(
                    line,
                    None,
                    ProblemKind::NotReadable,
                    format!("not valid CSV ({e}); skipped"),
                ));
                continue;
            }
        };
        let line = row.position().map_or(0, |p| p.line() as usize);
        let get = |name: &str| -> String {
            column
                .get(&name.to_ascii_lowercase())
                .and_then(|i| row.get(*i))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        let (given, middle, family) = (get("First Name"), get("Middle Name"), get("Last Name"));
        let email = get("E-mail Address");
        let company = get("Company");
        let full: Vec<&str> = [given.as_str(), middle.as_str(), family.as_str()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect();
        let display = get("Name");
        let name = if !display.is_empty() {
            display
        } else if !full.is_empty() {
            full.join(" ")
        } else if !company.is_empty() {
            company.clone()
        } else {
            email.clone()
        };
        if name.is_empty() {
            if row.iter().any(|f| !f.trim().is_empty()) {
                problems.push(problem(
                    line,
                    None,
                    ProblemKind::NotReadable,
                    "a row with no name, company or e-mail address; skipped".into(),
                ));
            }
            continue;
        }
        // No UID in a CSV: a contact is known by its name and first
        // address, so an edited phone number updates it, not doubles it.
        let key = format!(
            "{}|{}|{}",
            name.to_lowercase(),
            email.to_lowercase(),
            company.to_lowercase()
        );
        let base = format!("csv:{}", &BlobHash::of(key.as_bytes()).to_hex()[..32]);
        let mut uid = base.clone();
        let mut n = 1;
        while !seen.insert(uid.clone()) {
            n += 1;
            uid = format!("{base}#{n}");
        }
        let mut v = String::from("BEGIN:VCARD\r\nVERSION:3.0\r\n");
        let mut prop = |name: &str, value: String| {
            v.push_str(name);
            v.push(':');
            v.push_str(&value);
            v.push_str("\r\n");
        };
        prop("UID", escape(&uid));
        prop("FN", escape(&name));
        prop(
            "N",
            [
                family.as_str(),
                given.as_str(),
                middle.as_str(),
                &get("Title"),
                &get("Suffix"),
            ]
            .map(escape)
            .join(";"),
        );
        for (column, property) in [
            ("Nickname", "NICKNAME"),
            ("Job Title", "TITLE"),
            ("Birthday", "BDAY"),
            ("Web Page", "URL"),
            ("Notes", "NOTE"),
        ] {
            let value = get(column);
            if !value.is_empty() {
                prop(property, escape(&value));
            }
        }
        if !company.is_empty() || !get("Department").is_empty() {
            prop(
                "ORG",
                format!("{};{}", escape(&company), escape(&get("Department"))),
            );
        }
        for column in ["E-mail Address", "E-mail 2 Address", "E-mail 3 Address"] {
            let value = get(column);
            if !value.is_empty() {
                prop("EMAIL;TYPE=INTERNET", escape(&value));
            }
        }
        for (column, types) in [
            ("Business Phone", "WORK,VOICE"),
            ("Business Phone 2", "WORK,VOICE"),
            ("Home Phone", "HOME,VOICE"),
            ("Home Phone 2", "HOME,VOICE"),
            ("Mobile Phone", "CELL"),
            ("Business Fax", "WORK,FAX"),
            ("Home Fax", "HOME,FAX"),
            ("Other Phone", "VOICE"),
            ("Pager", "PAGER"),
        ] {
            let value = get(column);
            if !value.is_empty() {
                prop(&format!("TEL;TYPE={types}"), escape(&value));
            }
        }
        for (prefix, kind) in [("Business", "WORK"), ("Home", "HOME"), ("Other", "OTHER")] {
            let parts = ["Street", "City", "State", "Postal Code", "Country/Region"]
                .map(|p| get(&format!("{prefix} {p}")));
            if parts.iter().any(|p| !p.is_empty()) {
                prop(
                    &format!("ADR;TYPE={kind}"),
                    format!(";;{}", parts.map(|p| escape(&p)).join(";")),
                );
            }
        }
        v.push_str("END:VCARD\r\n");
        let parsed = match calcard::Parser::new(&v).entry() {
            calcard::Entry::VCard(card) => card,
            other => {
                problems.push(problem(
                    line,
                    Some(name),
                    ProblemKind::NotReadable,
                    format!("cannot be made a contact ({other:?}); skipped"),
                ));
                continue;
            }
        };
        cards.push(Card {
            uid,
            name,
            text: v,
            line,
            parsed,
        });
    }
    (cards, problems)
}

/// A vCard 3.0 text value: backslash, comma, semicolon and line ends escaped.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.replace("\r\n", "\n").chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ',' => out.push_str("\\,"),
            ';' => out.push_str("\\;"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use calcard::vcard::VCardProperty;

    fn texts(card: &Card, p: VCardProperty) -> Vec<Vec<String>> {
        card.parsed
            .entries
            .iter()
            .filter(|e| e.name == p)
            .map(|e| {
                e.values
                    .iter()
                    .filter_map(|v| v.as_text().map(str::to_string))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn outlooks_columns_become_a_contact_with_every_field() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/items/outlook.csv");
        let (cards, problems) = read_contacts_csv(&std::fs::read(path).unwrap(), "outlook.csv");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(
            problems[0].to_string(),
            "outlook.csv line 4: a row with no name, company or e-mail address; skipped"
        );
        assert_eq!(
            cards.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["Jürgen Müller", "Contoso Facilities"]
        );
        let j = &cards[0];
        assert_eq!(texts(j, VCardProperty::N)[0][..2], ["Müller", "Jürgen"]);
        assert_eq!(
            texts(j, VCardProperty::Email),
            [["juergen@contoso.example"], ["jm@home.example"]]
        );
        assert_eq!(texts(j, VCardProperty::Tel).len(), 2);
        assert_eq!(
            texts(j, VCardProperty::Note),
            [["Call before noon, please; thanks.\nSecond line."]]
        );
        assert_eq!(texts(j, VCardProperty::Org), [["Contoso", "Purchasing"]]);
        let adr = &texts(j, VCardProperty::Adr)[0];
        assert!(adr.contains(&"Berlin".to_string()), "{adr:?}");
        // The same row in another export is the same contact.
        let (again, _) = read_contacts_csv(
            &std::fs::read(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/items/outlook.csv"),
            )
            .unwrap(),
            "copy.csv",
        );
        assert_eq!(again[0].uid, j.uid);
    }

    #[test]
    fn semicolons_and_a_header_that_names_no_contact() {
        let semi = "First Name;Last Name;E-mail Address\r\nAnne;Smith;anne@example.co.uk\r\n";
        let (cards, problems) = read_contacts_csv(semi.as_bytes(), "semi.csv");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(cards[0].name, "Anne Smith");
        let (cards, problems) =
            read_contacts_csv(b"EmailAddress,Password\r\na,b\r\n", "accounts.csv");
        assert!(cards.is_empty());
        assert!(
            problems[0].problem.contains("not a contacts export"),
            "{problems:?}"
        );
    }

    #[test]
    fn thunderbird_google_and_plain_webmail_columns_are_read_too() {
        let thunderbird = "First Name,Last Name,Display Name,Nickname,Primary Email,\
                           Secondary Email,Work Phone,Mobile Number,Organization\r\n\
                           Anne,Smith,Anne S.,,anne@x.example,anne2@x.example,+1 555 1,+1 555 2,Contoso\r\n";
        let (cards, problems) = read_contacts_csv(thunderbird.as_bytes(), "tb.csv");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(cards[0].name, "Anne S.");
        for expected in [
            "EMAIL;TYPE=INTERNET:anne@x.example",
            "EMAIL;TYPE=INTERNET:anne2@x.example",
            "TEL;TYPE=WORK,VOICE:+1 555 1",
            "TEL;TYPE=CELL:+1 555 2",
            "ORG:Contoso;",
        ] {
            assert!(
                cards[0].text.contains(expected),
                "{expected} in {}",
                cards[0].text
            );
        }
        let google = "Name,Given Name,Family Name,E-mail 1 - Value,Organization 1 - Name\r\n\
                      Ben Ode,Ben,Ode,ben@x.example,Fabrikam\r\n";
        let (cards, problems) = read_contacts_csv(google.as_bytes(), "google.csv");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(cards[0].name, "Ben Ode");
        assert!(cards[0].text.contains("N:Ode;Ben;"), "{}", cards[0].text);
        let plain = "Name,Email\r\nMr Smith,jsmith@x.example\r\n";
        let (cards, problems) = read_contacts_csv(plain.as_bytes(), "plain.csv");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(cards[0].name, "Mr Smith");
    }
}
