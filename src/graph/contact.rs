//! A vCard as a Graph contact (MS "contact resource type"). What a contact
//! has no field for (a fourth e-mail address, a fax number, a URL past the
//! first) is kept in its notes and named as a loss, never dropped silently.

use calcard::vcard::{VCard, VCardEntry, VCardParameterName, VCardProperty, VCardValue};
use calcard::{Entry, Parser};
use serde_json::{Value, json};

/// A contact ready to send, with what the target cannot hold of it.
pub struct ContactBody {
    pub json: Value,
    /// A photo to PUT after the create: its content type and bytes.
    pub photo: Option<(String, Vec<u8>)>,
    pub losses: Vec<String>,
}

/// Graph's working limits on multi-value fields (400 past them;
/// microsoft-graph-docs-contrib#560): 3 addresses, 2 phones per kind.
const MAX_EMAILS: usize = 3;
const MAX_PHONES: usize = 2;
/// "a limit of 4MB on the total size of each REST request" (profilephoto-update).
const MAX_PHOTO: usize = 4 << 20;

pub fn parse(text: &str) -> Option<VCard> {
    match Parser::new(text).entry() {
        Entry::VCard(card) => Some(card),
        _ => None,
    }
}

fn texts(e: &VCardEntry) -> Vec<String> {
    e.values
        .iter()
        .filter_map(|v| v.as_text())
        .map(|s| s.trim().to_string())
        .collect()
}

fn first_text(card: &VCard, p: VCardProperty) -> Option<String> {
    card.property(&p)
        .map(|e| texts(e).join(" ").trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The entry's TYPE words, lower case (`work`, `cell`, `pref`...).
fn types(e: &VCardEntry) -> Vec<String> {
    e.parameters(&VCardParameterName::Type)
        .filter_map(|v| v.as_text())
        .flat_map(|t| t.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect()
}

/// Builds the contact; `extra_notes` are appended to its notes.
pub fn contact(card: &VCard) -> ContactBody {
    let mut c = serde_json::Map::new();
    let mut losses = Vec::new();
    let mut overflow: Vec<String> = Vec::new();
    let set = |c: &mut serde_json::Map<String, Value>, k: &str, v: Option<String>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            c.insert(k.to_string(), Value::String(v));
        }
    };
    if let Some(n) = card.property(&VCardProperty::N) {
        let parts = texts(n);
        let part = |i: usize| parts.get(i).cloned();
        set(&mut c, "surname", part(0));
        set(&mut c, "givenName", part(1));
        set(&mut c, "middleName", part(2));
        set(&mut c, "title", part(3));
        set(&mut c, "generation", part(4));
    }
    set(&mut c, "displayName", first_text(card, VCardProperty::Fn));
    set(
        &mut c,
        "nickName",
        first_text(card, VCardProperty::Nickname),
    );
    set(&mut c, "jobTitle", first_text(card, VCardProperty::Title));
    set(&mut c, "profession", first_text(card, VCardProperty::Role));
    if let Some(org) = card.property(&VCardProperty::Org) {
        let parts = texts(org);
        set(&mut c, "companyName", parts.first().cloned());
        set(
            &mut c,
            "department",
            Some(parts.iter().skip(1).cloned().collect::<Vec<_>>().join(", ")),
        );
    }

    let mut emails = Vec::new();
    for e in card.properties(&VCardProperty::Email) {
        for address in texts(e).into_iter().filter(|a| !a.is_empty()) {
            if emails.len() < MAX_EMAILS {
                emails.push(json!({ "address": address, "name": address }));
            } else {
                losses.push(format!("e-mail address {address} kept in the notes"));
                overflow.push(format!("E-mail: {address}"));
            }
        }
    }
    if !emails.is_empty() {
        c.insert("emailAddresses".into(), Value::Array(emails));
    }

    let (mut business, mut home, mut mobile) = (Vec::new(), Vec::new(), None::<String>);
    for e in card.properties(&VCardProperty::Tel) {
        let number = texts(e).join(" ");
        let number = number
            .strip_prefix("tel:")
            .unwrap_or(&number)
            .trim()
            .to_string();
        if number.is_empty() {
            continue;
        }
        let t = types(e);
        let has = |w: &str| t.iter().any(|x| x == w);
        let slot = if has("fax") || has("pager") {
            None
        } else if has("cell") || has("mobile") || has("iphone") {
            if mobile.is_none() {
                mobile = Some(number.clone());
                continue;
            }
            None
        } else if has("work") {
            (business.len() < MAX_PHONES).then_some(&mut business)
        } else {
            (home.len() < MAX_PHONES).then_some(&mut home)
        };
        match slot {
            Some(list) => list.push(Value::String(number)),
            None => {
                let label = if t.is_empty() {
                    "phone".to_string()
                } else {
                    t.join(" ")
                };
                losses.push(format!("{label} number {number} kept in the notes"));
                overflow.push(format!("Phone ({label}): {number}"));
            }
        }
    }
    if !business.is_empty() {
        c.insert("businessPhones".into(), Value::Array(business));
    }
    if !home.is_empty() {
        c.insert("homePhones".into(), Value::Array(home));
    }
    set(&mut c, "mobilePhone", mobile);

    for e in card.properties(&VCardProperty::Adr) {
        let p = texts(e);
        let part = |i: usize| p.get(i).cloned().unwrap_or_default();
        // ADR: PO box; extended; street; locality; region; code; country.
        let street = [part(0), part(1), part(2)]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        let address = json!({
            "street": street, "city": part(3), "state": part(4),
            "postalCode": part(5), "countryOrRegion": part(6),
        });
        let t = types(e);
        let key = if t.iter().any(|x| x == "work") {
            "businessAddress"
        } else if t.iter().any(|x| x == "home") {
            "homeAddress"
        } else {
            "otherAddress"
        };
        if c.contains_key(key) {
            let flat = p
                .iter()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect::<Vec<_>>();
            losses.push(format!("a second {key} kept in the notes"));
            overflow.push(format!("Address: {}", flat.join(", ")));
        } else {
            c.insert(key.into(), address);
        }
    }

    let mut urls = card
        .properties(&VCardProperty::Url)
        .map(|e| texts(e).join(""))
        .filter(|u| !u.is_empty());
    set(&mut c, "businessHomePage", urls.next());
    for u in urls {
        losses.push(format!("web page {u} kept in the notes"));
        overflow.push(format!("Web: {u}"));
    }
    let ims: Vec<Value> = card
        .properties(&VCardProperty::Impp)
        .map(|e| texts(e).join(""))
        .filter(|u| !u.is_empty())
        .map(Value::String)
        .collect();
    if !ims.is_empty() {
        c.insert("imAddresses".into(), Value::Array(ims));
    }
    let categories: Vec<Value> = card
        .properties(&VCardProperty::Categories)
        .flat_map(texts)
        .filter(|s| !s.is_empty())
        .map(Value::String)
        .collect();
    if !categories.is_empty() {
        c.insert("categories".into(), Value::Array(categories));
    }
    if let Some(b) = card.property(&VCardProperty::Bday) {
        match b.values.first() {
            Some(VCardValue::PartialDateTime(d)) => match (d.year, d.month, d.day) {
                // Midnight UTC of the day: the date stays the date (graph.md §1).
                (Some(y), Some(m), Some(day)) => {
                    c.insert(
                        "birthday".into(),
                        Value::String(format!("{y:04}-{m:02}-{day:02}T00:00:00Z")),
                    );
                }
                _ => {
                    losses.push("a birthday without its year kept in the notes".into());
                    overflow.push(format!(
                        "Birthday: {}",
                        [
                            d.month.map(|m| format!("{m:02}")),
                            d.day.map(|x| format!("{x:02}"))
                        ]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join("-")
                    ));
                }
            },
            Some(v) => {
                if let Some(t) = v.as_text() {
                    losses.push("a birthday that is not a date kept in the notes".into());
                    overflow.push(format!("Birthday: {t}"));
                }
            }
            None => {}
        }
    }

    let mut notes: Vec<String> = card
        .properties(&VCardProperty::Note)
        .map(|e| {
            e.values
                .iter()
                .filter_map(|v| v.as_text())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .filter(|s| !s.trim().is_empty())
        .collect();
    if !overflow.is_empty() {
        notes.push(overflow.join("\n"));
    }
    if !notes.is_empty() {
        c.insert("personalNotes".into(), Value::String(notes.join("\n\n")));
    }

    let mut photo = None;
    if let Some(p) = card.property(&VCardProperty::Photo) {
        match p.values.first() {
            Some(VCardValue::Binary(data)) => {
                let kind = data
                    .content_type
                    .clone()
                    .unwrap_or_else(|| sniff(&data.data).to_string());
                if kind != "image/jpeg" {
                    losses.push(format!(
                        "a photo in {kind} not uploaded (Graph takes image/jpeg)"
                    ));
                } else if data.data.len() > MAX_PHOTO {
                    losses.push(format!(
                        "a photo of {} bytes not uploaded (Graph takes up to 4 MB)",
                        data.data.len()
                    ));
                } else {
                    photo = Some((kind, data.data.clone()));
                }
            }
            Some(v) => {
                if let Some(url) = v.as_text() {
                    losses.push(format!("a photo by link ({url}) not uploaded"));
                }
            }
            None => {}
        }
    }
    if !c.contains_key("displayName") {
        let name = [
            c.get("givenName").and_then(|v| v.as_str()),
            c.get("surname").and_then(|v| v.as_str()),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
        let name = if name.is_empty() {
            c.get("companyName")
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .or_else(|| {
                    c.get("emailAddresses")
                        .and_then(|v| v[0]["address"].as_str())
                        .map(str::to_string)
                })
                .unwrap_or_default()
        } else {
            name
        };
        set(&mut c, "displayName", Some(name));
    }
    ContactBody {
        json: Value::Object(c),
        photo,
        losses,
    }
}

fn sniff(bytes: &[u8]) -> &'static str {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        "image/jpeg"
    } else if bytes.starts_with(b"\x89PNG") {
        "image/png"
    } else if bytes.starts_with(b"GIF8") {
        "image/gif"
    } else {
        "an unknown format"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(text: &str) -> ContactBody {
        contact(&parse(text).expect("a card"))
    }

    #[test]
    fn names_numbers_and_addresses_go_to_their_fields() {
        let b = body(
            "BEGIN:VCARD\r\nVERSION:3.0\r\nN:Müller;Jürgen;K.;Dr.;\r\nFN:Dr. Jürgen Müller\r\n\
             ORG:Contoso GmbH;Einkauf;Nord\r\nTITLE:Leiter\r\n\
             TEL;TYPE=WORK,VOICE:+49 30 1\r\nTEL;TYPE=CELL:+49 170 2\r\nTEL;TYPE=HOME:+49 30 3\r\n\
             TEL;TYPE=FAX:+49 30 4\r\n\
             EMAIL;TYPE=INTERNET:a@contoso.example\r\nEMAIL:b@contoso.example\r\n\
             EMAIL:c@contoso.example\r\nEMAIL:d@contoso.example\r\n\
             ADR;TYPE=WORK:;;Hauptstr. 1;Berlin;BE;10115;Germany\r\n\
             BDAY:1970-05-17\r\nNOTE:Met in 2009.\r\nEND:VCARD\r\n",
        );
        let j = &b.json;
        assert_eq!(j["givenName"], "Jürgen");
        assert_eq!(j["surname"], "Müller");
        assert_eq!(j["title"], "Dr.");
        assert_eq!(j["displayName"], "Dr. Jürgen Müller");
        assert_eq!(j["companyName"], "Contoso GmbH");
        assert_eq!(j["department"], "Einkauf, Nord");
        assert_eq!(j["businessPhones"], json!(["+49 30 1"]));
        assert_eq!(j["homePhones"], json!(["+49 30 3"]));
        assert_eq!(j["mobilePhone"], "+49 170 2");
        assert_eq!(j["emailAddresses"].as_array().unwrap().len(), 3);
        assert_eq!(j["businessAddress"]["city"], "Berlin");
        assert_eq!(j["businessAddress"]["street"], "Hauptstr. 1");
        assert_eq!(j["birthday"], "1970-05-17T00:00:00Z");
        let notes = j["personalNotes"].as_str().unwrap();
        assert!(notes.starts_with("Met in 2009."), "{notes}");
        assert!(notes.contains("E-mail: d@contoso.example"), "{notes}");
        assert!(notes.contains("+49 30 4"), "{notes}");
        assert_eq!(b.losses.len(), 2, "{:?}", b.losses);
    }

    #[test]
    fn a_card_with_only_an_address_is_named_by_it() {
        let b = body("BEGIN:VCARD\r\nVERSION:3.0\r\nEMAIL:x@contoso.example\r\nEND:VCARD\r\n");
        assert_eq!(b.json["displayName"], "x@contoso.example");
        assert!(b.losses.is_empty());
    }
}
