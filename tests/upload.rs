//! `mailferry upload` into a real Dovecot over TLS on loopback: mirror one
//! account, replay it into another, compare.

mod support;

use std::collections::BTreeMap;

use support::*;

const DATE_1: &str = "03-Mar-2025 10:00:00 +0100";
const DATE_2: &str = "15-Jul-2019 23:59:59 -0700";

fn seed(server: &Dovecot) {
    let mut alice = server.client("alice", "alice-pw");
    alice.create("Sent");
    alice.create("Archive");
    alice.create("Archive/2019");
    alice.create("Entw&APw-rfe");
    alice.append("INBOX", "\\Seen", DATE_1, &message("one", "one@x", "first"));
    alice.append(
        "INBOX",
        "\\Flagged $Label1",
        DATE_2,
        &message("two", "two@x", "second"),
    );
    alice.append("INBOX", "", DATE_1, &message("three", "three@x", "third"));
    alice.append("Sent", "\\Seen", DATE_1, &message("sent", "sent@x", "sent"));
    alice.append(
        "Archive",
        "\\Seen \\Answered",
        DATE_2,
        &message("old", "old@x", "old"),
    );
    alice.append(
        "Archive/2019",
        "\\Draft",
        DATE_1,
        &message("older", "older@x", "older"),
    );
    alice.append(
        "Entw&APw-rfe",
        "\\Draft",
        DATE_2,
        &message("draft", "draft@x", "draft"),
    );
}

/// Every message of `user` as (folder → [(bytes, flags, instant)]).
fn mailbox(
    server: &Dovecot,
    user: &str,
    pw: &str,
) -> BTreeMap<String, Vec<(Vec<u8>, String, i64)>> {
    let mut c = server.client(user, pw);
    let mut out = BTreeMap::new();
    for folder in c.folders() {
        let mut msgs: Vec<(Vec<u8>, String, i64)> = c
            .messages(&folder)
            .into_iter()
            .map(|m| {
                let mut f = m.flags.clone();
                f.sort();
                (m.body, f.join(" "), instant(&m.internal_date))
            })
            .collect();
        msgs.sort();
        out.insert(folder, msgs);
    }
    out
}

fn mirrored(
    server: &Dovecot,
    pairs: &[(&str, &str, &str, &str)],
) -> (tempfile::TempDir, std::path::PathBuf) {
    let store = tempfile::tempdir().unwrap();
    let accounts = server.migration_csv(pairs);
    let (run, _) = mirror(server, store.path(), &accounts, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    (store, accounts)
}

#[test]
fn upload_lands_every_message_byte_identical_with_flags_and_dates() {
    let server = Dovecot::start();
    seed(&server);
    let (store, accounts) = mirrored(
        &server,
        &[("alice", "alice-pw", "alice-365", "alice-365-pw")],
    );
    let (run, summary) = upload(&server, store.path(), &accounts, &["--target-kind", "imap"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    assert_eq!(total(&summary, "appended"), 7, "{summary}");
    let source = mailbox(&server, "alice", "alice-pw");
    let target = mailbox(&server, "alice-365", "alice-365-pw");
    assert_eq!(source, target);

    // A re-run appends nothing and does not open a folder.
    let (run, again) = upload(&server, store.path(), &accounts, &["--target-kind", "imap"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(total(&again, "appended"), 0);
    assert_eq!(total(&again, "already_present"), 7);
    // LOGIN, ID, ENABLE, LIST "" "", LIST: nothing per folder.
    assert!(total(&again, "round_trips") <= 6, "{again}");
    assert_eq!(mailbox(&server, "alice-365", "alice-365-pw"), target);
}

#[test]
fn microsoft_365_names_special_folders_the_exchange_way() {
    let server = Dovecot::start();
    seed(&server);
    let (store, accounts) = mirrored(
        &server,
        &[("alice", "alice-pw", "alice-365", "alice-365-pw")],
    );
    let plan = mailferry(&[
        "--store",
        store.path().to_str().unwrap(),
        "plan",
        "--accounts",
        accounts.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let (run, summary) = upload(
        &server,
        store.path(),
        &accounts,
        &["--target-kind", "m365", "--target-auth", "login"],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    assert_eq!(total(&summary, "appended"), 7, "{summary}");
    let target = mailbox(&server, "alice-365", "alice-365-pw");
    let names: Vec<&str> = target.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "Archive",
            "Archive/2019",
            "Entw&APw-rfe",
            "INBOX",
            "Sent Items"
        ],
        "{}",
        plan.stdout
    );
    // Exchange keeps system flags only.
    let inbox = &target["INBOX"];
    assert!(inbox.iter().any(|(_, f, _)| f == "\\Flagged"), "{inbox:?}");
    assert!(!inbox.iter().any(|(_, f, _)| f.contains("$Label1")));
}
