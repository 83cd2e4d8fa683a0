//! `mailferry import` of Outlook data files (.pst): the mail into the
//! store folder by folder, as an independent reader lists it; contacts,
//! distribution lists and calendars as items that convert for Microsoft
//! Graph; a password-protected, cut or damaged file named, never a crash.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use mail_parser::MimeHeaders as _;
use mailferry::store::Store;

use crate::support::*;

/// The real .pst files of other readers' test suites, beside the clone.
fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/fixtures/pst")
        .join(name)
}

/// pst-extractor's listing of enron.pst: every folder below "Top of
/// Personal Folders" (as a path) with the (sender, subject) of each of
/// its messages.
fn listing() -> BTreeMap<String, Vec<(String, String)>> {
    let text = std::fs::read_to_string(fixture("enron.pst.tree-by-pst-extractor.txt")).unwrap();
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut path: Vec<String> = Vec::new();
    for line in text
        .lines()
        .map(str::trim_end)
        .skip_while(|l| !l.ends_with("/enron.pst"))
        .take_while(|l| !l.contains("processed in"))
    {
        // " |  |- Name": each level is three characters deeper.
        let Some(at) = line.find("|- ") else {
            continue;
        };
        let depth = (at - 1) / 3;
        let name = &line[at + 3..];
        if let Some(message) = name.strip_prefix("Sender: ") {
            let (sender, subject) = message.split_once(", Subject:").unwrap();
            if path
                .first()
                .is_some_and(|top| top == "Top of Personal Folders")
            {
                out.entry(path[1..depth].join("/"))
                    .or_default()
                    .push((sender.trim().to_string(), subject.trim().to_string()));
            }
        } else {
            path.truncate(depth);
            path.push(name.to_string());
            if path[0] == "Top of Personal Folders" && depth > 0 {
                out.entry(path[1..].join("/")).or_default();
            }
        }
    }
    out
}

/// Every stored message of `account`: folder → (From name or address,
/// Subject, raw bytes).
fn stored_mail(store: &Path, account: &str) -> BTreeMap<String, Vec<(String, String, Vec<u8>)>> {
    let reader = Store::open_read_only(store).unwrap();
    let index = reader.index();
    let id = index.find_account(account).unwrap().expect("the account");
    let mut out: BTreeMap<String, Vec<(String, String, Vec<u8>)>> = index
        .folders(id)
        .unwrap()
        .into_iter()
        .map(|f| (f.display_name, Vec::new()))
        .collect();
    for m in index.messages(Some(account), None, false).unwrap() {
        let raw = blob(store, &m.hash);
        let parsed = mail_parser::MessageParser::default()
            .parse(&raw)
            .unwrap_or_else(|| panic!("{} in {} does not parse", m.hash, m.folder));
        // Every message has its Subject field (one of them empty).
        assert!(
            parsed
                .headers()
                .iter()
                .any(|h| h.name().eq_ignore_ascii_case("Subject")),
            "{} in {} has no Subject",
            m.hash,
            m.folder
        );
        let subject = parsed.subject().unwrap_or_default().to_string();
        let from = parsed
            .from()
            .and_then(|a| a.first())
            .and_then(|a| a.name().or(a.address()))
            .unwrap_or_default()
            .to_string();
        assert!(m.internal_date.is_some(), "{subject}: no INTERNALDATE");
        out.entry(m.folder).or_default().push((from, subject, raw));
    }
    out
}

fn items(store: &Path, account: &str) -> Vec<mailferry::store::items::StoredItem> {
    Store::open_read_only(store)
        .unwrap()
        .index()
        .items(account)
        .unwrap()
}

fn text_of(store: &Path, item: &mailferry::store::items::StoredItem) -> String {
    String::from_utf8(blob(store, &item.blob.to_hex())).unwrap()
}

#[test]
fn enron_mail_is_stored_folder_by_folder_as_an_independent_reader_lists_it_and_only_once() {
    let want = listing();
    assert_eq!(want.values().map(Vec::len).sum::<usize>(), 71, "{want:?}");
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let s = store.to_str().unwrap();
    let enron = fixture("enron.pst");
    let args = [
        "--store",
        s,
        "import",
        "--account",
        "alice@contoso.com",
        enron.to_str().unwrap(),
    ];
    let first = mailferry(&args);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(
        first.stderr.contains(
            "enron.pst: 71 messages in 7 folders for account alice@contoso.com (71 added, 0 \
             already stored, 71 new blobs)"
        ),
        "{}",
        first.stderr
    );

    let got = stored_mail(&store, "alice@contoso.com");
    // The same folders ("Top of Personal Folders" dropped, "Deleted Items"
    // kept), each with the same subjects.
    assert_eq!(
        got.keys().collect::<BTreeSet<_>>(),
        want.keys().collect::<BTreeSet<_>>()
    );
    for (folder, messages) in &want {
        let mut expected: Vec<&str> = messages.iter().map(|(_, s)| s.as_str()).collect();
        let mut stored: Vec<&str> = got[folder].iter().map(|(_, s, _)| s.as_str()).collect();
        expected.sort_unstable();
        stored.sort_unstable();
        assert_eq!(stored, expected, "{folder}");
    }
    // Senders: the listing gives PidTagSenderName, the store the original
    // From header; they agree but where Exchange rewrote Notes addresses.
    let from_of = |folder: &str, subject: &str| -> String {
        got[folder]
            .iter()
            .find(|(_, s, _)| s == subject)
            .unwrap_or_else(|| panic!("{subject:?} in {folder}"))
            .0
            .clone()
    };
    let mut agree = 0;
    for (folder, messages) in &want {
        for (sender, subject) in messages {
            agree += usize::from(from_of(folder, subject) == *sender);
        }
    }
    assert!(agree >= 65, "only {agree} of 71 senders agree");
    let tw = "lokay-m/MLOKAY (Non-Privileged)/TW-Commercial Group";
    for (folder, sender, subject) in [
        (
            "lokay-m/MLOKAY (Non-Privileged)",
            "Mailbox - Ftenergy1",
            "Power Mart '01 - Register online for your FREE exhibition pass!",
        ),
        (tw, "Lee  Dennis", "New OBA's"),
        (
            tw,
            "Reames Julie",
            "I/B Link Capacity for November and December 2001",
        ),
        (tw, "dlsmith@pplweb.com", "West Texas Capacity"),
        (
            "lokay-m/MLOKAY (Non-Privileged)/Sent Items",
            "Lokay",
            "Cirque du Soleil - Dralion",
        ),
        (
            "lokay-m/MLOKAY (Non-Privileged)/Personal",
            "Michelle Lokay",
            "Check out page 7!",
        ),
    ] {
        assert!(want[folder].contains(&(sender.to_string(), subject.to_string())));
        assert_eq!(from_of(folder, subject), sender, "{subject}");
    }
    // Attachments come back whole, as MIME parts.
    let oba = &got[tw].iter().find(|(_, s, _)| s == "New OBA's").unwrap().2;
    let oba = mail_parser::MessageParser::default().parse(oba).unwrap();
    let doc = oba
        .attachments()
        .find(|a| a.attachment_name() == Some("OBA_27602_Citizens.doc"))
        .expect("the first .doc");
    assert!(doc.contents().starts_with(&[0xD0, 0xCF, 0x11, 0xE0]));
    assert_eq!(doc.contents().len(), 53760);
    assert!(
        oba.body_text(0)
            .unwrap()
            .contains("The attached OBA's have been submitted")
    );
    let seen = stored_messages(&store)
        .iter()
        .filter(|m| m.flags == "\\Seen")
        .count();
    assert_eq!(seen, 71, "every message of the file was read");

    // The same file again adds nothing.
    let blobs = blob_files(&store).len();
    let again = mailferry(&args);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again
            .stderr
            .contains("(0 added, 71 already stored, 0 new blobs)"),
        "{}",
        again.stderr
    );
    assert_eq!(stored_messages(&store).len(), 71);
    assert_eq!(blob_files(&store).len(), blobs);
}

#[test]
fn contacts_a_distribution_list_and_a_recurring_series_become_items_for_graph() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let s = store.to_str().unwrap();
    let file = fixture("dist-list.pst");
    let args = [
        "--store",
        s,
        "import",
        "--account",
        "bob@contoso.com",
        file.to_str().unwrap(),
    ];
    let run = mailferry(&args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "2 contacts (a distribution list with its members in the notes), 1 event, 0 tasks \
             (3 added, 0 updated, 0 unchanged); no problems"
        ),
        "{}",
        run.stderr
    );
    let stored = items(&store, "bob@contoso.com");
    let named = |name: &str| {
        stored
            .iter()
            .find(|i| i.name == name)
            .unwrap_or_else(|| panic!("{name} in {stored:?}"))
    };

    // The contact: its name and its address, a named property.
    let contact = named("contact name 1");
    assert_eq!(
        (contact.kind.as_str(), contact.collection.as_str()),
        ("contact", "Contacts")
    );
    let card = mailferry::graph::contact::parse(&text_of(&store, contact)).unwrap();
    let json = mailferry::graph::contact::contact(&card).json;
    assert_eq!(json["displayName"], "contact name 1");
    assert_eq!(json["givenName"], "contact");
    assert_eq!(
        json["emailAddresses"][0]["address"],
        "contact1@rjohnson.id.au"
    );

    // The list: a contact of its name whose notes name its three members.
    let list = named("test dist list");
    assert_eq!(list.kind.as_str(), "contact");
    let card = mailferry::graph::contact::parse(&text_of(&store, list)).unwrap();
    let notes = mailferry::graph::contact::contact(&card).json["personalNotes"]
        .as_str()
        .unwrap()
        .to_string();
    for member in [
        "contact name 1 <contact1@rjohnson.id.au>",
        "dist name 1 <dist1@rjohnson.id.au>",
        "dist name 2 <dist2@rjohnson.id.au>",
    ] {
        assert!(notes.contains(member), "{member} in {notes}");
    }
    assert!(
        notes.contains("distribution list with 3 members"),
        "{notes}"
    );

    // The weekly series: its zone, its rule, the instance deleted and the
    // two moved, read from the recurrence blob.
    let series = named("Test appointment");
    assert_eq!(
        (series.kind.as_str(), series.collection.as_str()),
        ("event", "Calendar")
    );
    let cal = mailferry::graph::calendar::parse(&text_of(&store, series)).unwrap();
    let event = mailferry::graph::calendar::event(&cal, false).unwrap();
    assert_eq!(
        event.json["start"]["timeZone"], "Pacific Standard Time",
        "{}",
        event.json
    );
    assert_eq!(event.json["start"]["dateTime"], "2016-08-02T08:00:00");
    assert_eq!(event.json["end"]["dateTime"], "2016-08-02T08:30:00");
    let pattern = &event.json["recurrence"]["pattern"];
    assert_eq!(pattern["type"], "weekly", "{}", event.json);
    assert_eq!(pattern["daysOfWeek"], serde_json::json!(["tuesday"]));
    assert_eq!(event.json["recurrence"]["range"]["type"], "noEnd");
    assert_eq!(event.json["isReminderOn"], true);
    assert_eq!(event.json["reminderMinutesBeforeStart"], 15);
    let mut exceptions: Vec<(String, bool)> = event
        .exceptions
        .iter()
        .map(|e| {
            let cancelled = matches!(e, mailferry::graph::calendar::Exception::Cancelled { .. });
            (e.original().to_rfc3339(), cancelled)
        })
        .collect();
    exceptions.sort();
    assert_eq!(
        exceptions,
        [
            ("2016-08-09T15:00:00+00:00".to_string(), true),
            ("2016-08-23T15:00:00+00:00".to_string(), false),
            ("2016-08-30T15:00:00+00:00".to_string(), false),
        ]
    );

    // Its mail folders are there (empty); its calendar and contacts
    // folders are no mail folders.
    let mail = stored_mail(&store, "bob@contoso.com");
    assert!(
        mail.contains_key("Inbox") && mail.contains_key("Deleted Items"),
        "{:?}",
        mail.keys()
    );
    assert!(!mail.contains_key("Calendar") && !mail.contains_key("Contacts"));

    let again = mailferry(&args);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stderr.contains("(0 added, 0 updated, 3 unchanged)"),
        "{}",
        again.stderr
    );
    assert_eq!(items(&store, "bob@contoso.com").len(), 3);
}

#[test]
fn a_password_protected_file_is_refused_by_name_before_anything_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let protected = fixture("passworded.pst");
    let good = fixture("dist-list.pst");
    let run = mailferry(&[
        "--store",
        store.to_str().unwrap(),
        "import",
        "--account",
        "carol@contoso.com",
        good.to_str().unwrap(),
        protected.to_str().unwrap(),
    ]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("passworded.pst is a password-protected Outlook data file"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    // Refused before the store was opened: not even the good file is in.
    assert!(!store.exists(), "{}", run.stderr);

    // Contacts need their mailbox named.
    let run = mailferry(&[
        "--store",
        store.to_str().unwrap(),
        "import",
        good.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("dist-list.pst holds contacts") && run.stderr.contains("--account")
    );
}

#[test]
fn a_cut_or_damaged_file_is_named_and_what_can_be_read_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let whole = std::fs::read(fixture("enron.pst")).unwrap();
    let store = dir.path().join("store");
    let s = store.to_str().unwrap();

    let cut = dir.path().join("cut.pst");
    std::fs::write(&cut, &whole[..whole.len() / 2]).unwrap();
    let run = mailferry(&[
        "--store",
        s,
        "import",
        "--account",
        "dan@contoso.com",
        cut.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("cut.pst cannot be read as an Outlook data file (.pst)")
            && run.stderr.contains("cut short"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    assert!(!store.exists());

    // 512 bytes overwritten inside a message's data: that message is
    // named with its folder and subject, the 70 others are stored.
    let mut damaged = whole.clone();
    damaged[1_180_000..1_180_512].fill(0xFF);
    let file = dir.path().join("damaged.pst");
    std::fs::write(&file, &damaged).unwrap();
    let run = mailferry(&[
        "--store",
        s,
        "import",
        "--account",
        "dan@contoso.com",
        file.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    let problems: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("problem: "))
        .collect();
    assert_eq!(problems.len(), 1, "{}", run.stderr);
    assert!(
        problems[0].starts_with(
            "problem: damaged.pst, folder \"lokay-m/MLOKAY (Non-Privileged)/Systems\", \"eRequest\""
        ) && problems[0].contains("cannot be read"),
        "{}",
        problems[0]
    );
    assert_eq!(stored_messages(&store).len(), 70);
    // The problem is kept with the mailbox's record of the file.
    let status = mailferry(&["--store", s, "status", "--json", "-"]).json();
    let dan = find_in(&status["accounts"], "account", "dan@contoso.com");
    assert_eq!(dan["items"]["problems"], 1, "{dan}");
}

#[test]
fn an_export_folder_brings_the_contacts_and_calendars_of_a_pst_not_its_mail() {
    let dir = tempfile::tempdir().unwrap();
    let exports = dir.path().join("exports/erin");
    std::fs::create_dir_all(&exports).unwrap();
    std::os::unix::fs::symlink(fixture("dist-list.pst"), exports.join("Outlook.PST")).unwrap();
    std::os::unix::fs::symlink(fixture("enron.pst"), exports.join("archive.pst")).unwrap();
    let batch = dir.path().join("batch.csv");
    std::fs::write(
        &batch,
        "EmailAddress,UserName,Password,ExportFolder\nerin@contoso.com,erin,pw,exports/erin\n",
    )
    .unwrap();
    let store = dir.path().join("store");
    let run = mailferry(&[
        "--store",
        store.to_str().unwrap(),
        "import",
        "--accounts",
        batch.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let erin = items(&store, "erin@contoso.com");
    let kinds: Vec<&str> = erin.iter().map(|i| i.kind.as_str()).collect();
    assert_eq!(kinds, ["contact", "contact", "event"], "{erin:?}");
    // The mailbox's mail comes from its mirror: the file's is named, not
    // stored, and the account stays free to be mirrored.
    assert!(
        run.stderr.contains("archive.pst: 71 messages not imported"),
        "{}",
        run.stderr
    );
    assert!(stored_messages(&store).is_empty());
    let reader = Store::open_read_only(&store).unwrap();
    assert_eq!(
        reader.index().account_origin("erin@contoso.com").unwrap(),
        None,
        "not an imported-mail account"
    );
}

/// A .pst of a mailbox the store mirrors: its contacts, calendars and
/// tasks go in, its mail does not (the mirror holds that mail), and the
/// summary says so; the mailbox still mirrors afterwards.
#[test]
fn a_pst_of_a_mirrored_mailbox_brings_its_items_and_leaves_its_mail() {
    let server = alice_with_one_message();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let s = store.to_str().unwrap();
    let accounts = server.migration_csv(&[("alice", "alice-pw", "alice-365", "x")]);
    let (run, _) = mirror(&server, &store, &accounts, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for file in ["dist-list.pst", "enron.pst"] {
        let imported = mailferry(&[
            "--store",
            s,
            "import",
            "--account",
            "alice@example.com",
            fixture(file).to_str().unwrap(),
        ]);
        assert_eq!(imported.code, 0, "{file}: {}", imported.stderr);
        if file == "enron.pst" {
            assert!(
                imported.stderr.contains("71 messages not imported"),
                "{}",
                imported.stderr
            );
        }
    }
    assert_eq!(items(&store, "alice@example.com").len(), 3);
    let (run, _) = mirror(&server, &store, &accounts, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_store_matches(&server, &store, "alice", "alice-pw");
}
