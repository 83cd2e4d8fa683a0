//! `mailferry import` of contacts, calendars and tasks (vCard, iCalendar)
//! into a mailbox's place in the store: kept once, updated not doubled,
//! every item that cannot be read named with its file and line, the rest
//! kept; and the mailbox still mirrors afterwards.

use std::path::{Path, PathBuf};

use crate::support::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/items")
        .join(name)
}

fn items(store: &Path, account: &str) -> Vec<mailferry::store::items::StoredItem> {
    mailferry::store::Store::open_read_only(store)
        .unwrap()
        .index()
        .items(account)
        .unwrap()
}

fn count(items: &[mailferry::store::items::StoredItem], kind: &str) -> usize {
    items.iter().filter(|i| i.kind.as_str() == kind).count()
}

#[test]
fn contacts_calendars_and_tasks_are_imported_once_and_what_cannot_be_read_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let s = store.to_str().unwrap();
    let files: Vec<PathBuf> = [
        "outlook-2.1.vcf",
        "apple-3.0.vcf",
        "broken.vcf",
        "outlook.csv",
        "outlook.ics",
        "tasks.ics",
        "broken.ics",
    ]
    .iter()
    .map(|f| fixture(f))
    .collect();
    let mut args = vec!["--store", s, "import", "--account", "alice@example.com"];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));

    let first = mailferry(&args);
    // Problems make the import incomplete; everything readable is in.
    assert_eq!(first.code, 1, "{}", first.stderr);
    for named in [
        "not imported: broken.vcf line 7 (Cut Short): the card is cut short",
        "not imported: broken.ics line 4 (Launch window): uses the time zone \"Mars/Olympus_Mons\"",
        "not imported: broken.ics line 10 (Odd rule): its recurrence rule",
        "outlook-2.1.vcf: 2 contacts (2 added, 0 updated, 0 unchanged)",
        "tasks.ics: 2 tasks (2 added, 0 updated, 0 unchanged)",
        "not imported: outlook.csv line 4: a row with no name, company or e-mail address",
    ] {
        assert!(
            first.stderr.contains(named),
            "{named:?} in {}",
            first.stderr
        );
    }
    let stored = items(&store, "alice@example.com");
    assert_eq!(count(&stored, "contact"), 2 + 2 + 3 + 2, "{stored:?}");
    let from_csv = stored
        .iter()
        .find(|i| i.name == "Contoso Facilities")
        .unwrap();
    assert_eq!(from_csv.collection, "outlook");
    assert_eq!(count(&stored, "event"), 2 + 1, "{stored:?}");
    assert_eq!(count(&stored, "task"), 2, "{stored:?}");
    let series = stored.iter().find(|i| i.name == "Weekly sync").unwrap();
    assert_eq!(series.collection, "Calendar");

    // status counts them beside the mailbox's mail (none yet), and says
    // none is uploaded yet.
    let status = mailferry(&["--store", s, "status", "--json", "-"]);
    let json: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    let alice = json["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["account"] == "alice@example.com")
        .unwrap();
    assert_eq!(alice["items"]["contacts"], 9, "{alice}");
    assert_eq!(alice["items"]["events"], 3, "{alice}");
    assert_eq!(alice["items"]["tasks"], 2, "{alice}");
    // broken.vcf 2, broken.ics 4, outlook.csv 1.
    assert_eq!(alice["items"]["problems"], 2 + 4 + 1, "{alice}");
    assert_eq!(alice["items_uploaded"]["untried"], 14, "{alice}");
    assert_eq!(alice["items_uploaded"]["done"], 0, "{alice}");
    let text = mailferry(&["--store", s, "status"]);
    assert!(
        text.stdout
            .contains("9 contacts, 3 events, 2 tasks stored; 0 uploaded, 14 not uploaded yet"),
        "{}",
        text.stdout
    );

    // The customer's report says the same.
    let page = dir.path().join("report.html");
    let report = mailferry(&["--store", s, "report", "--html", page.to_str().unwrap()]);
    assert_eq!(report.code, 0, "{}", report.stderr);
    let html = std::fs::read_to_string(&page).unwrap();
    for (field, n) in [
        ("contacts", 9),
        ("events", 3),
        ("tasks", 2),
        ("item_problems", 7),
    ] {
        let attr =
            format!(r#"data-account="alice@example.com" data-field="{field}" data-value="{n}""#);
        assert!(html.contains(&attr), "{attr} in the report");
    }

    // The same files again: nothing added, nothing changed.
    let again = mailferry(&args);
    assert!(
        again.stderr.contains("(0 added, 0 updated, 2 unchanged)"),
        "{}",
        again.stderr
    );
    assert_eq!(items(&store, "alice@example.com").len(), stored.len());

    // A changed card (same UID) is the same contact with new text.
    let edited_dir = dir.path().join("edited");
    std::fs::create_dir(&edited_dir).unwrap();
    let edited = edited_dir.join("apple-3.0.vcf");
    let text = std::fs::read_to_string(fixture("apple-3.0.vcf")).unwrap();
    std::fs::write(
        &edited,
        text.replace("Met at WWDC", "Met at the Cupertino office"),
    )
    .unwrap();
    let changed = mailferry(&[
        "--store",
        s,
        "import",
        "--account",
        "alice@example.com",
        edited.to_str().unwrap(),
    ]);
    assert_eq!(changed.code, 0, "{}", changed.stderr);
    assert!(
        changed.stderr.contains("(0 added, 1 updated, 1 unchanged)"),
        "{}",
        changed.stderr
    );
    let after = items(&store, "alice@example.com");
    assert_eq!(after.len(), stored.len());
    let johnny = |list: &[mailferry::store::items::StoredItem]| {
        list.iter()
            .find(|i| i.name == "Johnny Appleseed")
            .unwrap()
            .blob
    };
    assert_ne!(johnny(&after), johnny(&stored));

    // Every file and item is a blob verify checks.
    let verified = mailferry(&["--store", s, "verify", "--json"]);
    assert_eq!(verified.code, 0, "{}", verified.stdout);
    let report: serde_json::Value = serde_json::from_str(&verified.stdout).unwrap();
    // Files (7, and the edited one), items (9 + 3 + 2, and the edited card).
    assert_eq!(
        report["blobs_checked"].as_u64().unwrap(),
        (7 + 1) + (9 + 3 + 2) + 1
    );
}

#[test]
fn contacts_without_a_mailbox_named_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let file = fixture("google-3.0.vcf");
    let run = mailferry(&[
        "--store",
        store.to_str().unwrap(),
        "import",
        file.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("google-3.0.vcf holds contacts or calendars"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("--account"), "{}", run.stderr);
    assert!(!store.exists(), "nothing was made");
}

#[test]
fn a_mailbox_whose_contacts_came_first_still_mirrors() {
    let server = alice_with_one_message();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let s = store.to_str().unwrap();
    let vcf = fixture("thunderbird-4.0.vcf");
    let imported = mailferry(&[
        "--store",
        s,
        "import",
        "--account",
        "alice@example.com",
        vcf.to_str().unwrap(),
    ]);
    assert_eq!(imported.code, 0, "{}", imported.stderr);
    let accounts = server.migration_csv(&[("alice", "alice-pw", "alice-365", "x")]);
    let (run, _) = mirror(&server, &store, &accounts, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_store_matches(&server, &store, "alice", "alice-pw");
    assert_eq!(items(&store, "alice@example.com").len(), 1);
}

#[test]
fn a_batch_imports_every_users_export_folder_and_names_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let exports = dir.path().join("exports/alice");
    std::fs::create_dir_all(exports.join("older")).unwrap();
    std::fs::copy(fixture("outlook.ics"), exports.join("calendar.ics")).unwrap();
    std::fs::copy(
        fixture("google-3.0.vcf"),
        exports.join("older/contacts.vcf"),
    )
    .unwrap();
    std::fs::write(exports.join("readme.txt"), "not an export").unwrap();
    let batch = dir.path().join("batch.csv");
    std::fs::write(
        &batch,
        "EmailAddress,UserName,Password,ExportFolder\n\
         alice@example.com,alice,pw,exports/alice\n\
         bob@example.com,bob,pw,exports/bob\n\
         carol@example.com,carol,pw,\n",
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
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("the export folder")
            && run.stderr.contains("exports/bob does not exist"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("batch.csv line 3"), "{}", run.stderr);
    let alice = items(&store, "alice@example.com");
    assert_eq!(count(&alice, "event"), 2, "{alice:?}");
    assert_eq!(count(&alice, "contact"), 2, "{alice:?}");
    assert!(items(&store, "bob@example.com").is_empty());
}
