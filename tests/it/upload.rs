//! `mailferry upload` into a real Dovecot over TLS on loopback: mirror one
//! account, replay it into another, compare.

use std::collections::BTreeMap;

use crate::support::*;

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
    let (run, summary) = upload(
        &server,
        store.path(),
        &accounts,
        &["--target-kind", "imap", "-vvv"],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    assert_eq!(total(&summary, "appended"), 7, "{summary}");
    // The target password stays out of trace logs, the summary and the index.
    assert!(
        run.stderr
            .lines()
            .any(|l| l.contains("C: ") && l.contains(" APPEND ")),
        "no trace output to search"
    );
    assert!(!run.stderr.contains("alice-365-pw") && !run.stdout.contains("alice-365-pw"));
    let index = std::fs::read(store.path().join("index.sqlite")).unwrap();
    assert!(!index.windows(12).any(|w| w == b"alice-365-pw"));
    let source = mailbox(&server, "alice", "alice-pw");
    let target = mailbox(&server, "alice-365", "alice-365-pw");
    assert_eq!(source, target);

    // A re-run appends nothing: the ledger says all is there, so it does
    // not even connect.
    let (run, again) = upload(&server, store.path(), &accounts, &["--target-kind", "imap"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(total(&again, "appended"), 0);
    assert_eq!(total(&again, "already_present"), 7);
    assert_eq!(total(&again, "round_trips"), 0, "{again}");
    assert_eq!(total(&again, "connections"), 0, "{again}");
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

#[test]
fn flag_changes_after_upload_are_pushed_and_duplicates_go_once() {
    let server = Dovecot::start();
    seed(&server);
    // The same bytes twice in INBOX: one upload, counted as a duplicate.
    let mut alice = server.client("alice", "alice-pw");
    alice.append("INBOX", "\\Seen", DATE_1, &message("one", "one@x", "first"));
    let (store, accounts) = mirrored(
        &server,
        &[("alice", "alice-pw", "alice-365", "alice-365-pw")],
    );
    let args = ["--target-kind", "imap"];
    let (run, first) = upload(&server, store.path(), &accounts, &args);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(total(&first, "appended"), 7);
    assert_eq!(total(&first, "duplicates"), 1);
    assert_eq!(
        mailbox(&server, "alice-365", "alice-365-pw")["INBOX"].len(),
        3
    );

    // Flags change at the source; mirror, then upload pushes them.
    let inbox = alice.messages("INBOX");
    let third = inbox
        .iter()
        .find(|m| m.body == message("three", "three@x", "third"))
        .unwrap();
    alice.uid_store("INBOX", third.uid, "+FLAGS (\\Answered \\Seen)");
    let two = inbox
        .iter()
        .find(|m| m.flags.contains(&"\\Flagged".to_string()))
        .unwrap();
    alice.uid_store("INBOX", two.uid, "-FLAGS (\\Flagged)");
    let (run, _) = mirror(&server, store.path(), &accounts, &[]);
    assert_eq!(run.code, 0);
    let (run, second) = upload(&server, store.path(), &accounts, &args);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(total(&second, "appended"), 0);
    assert_eq!(total(&second, "flags_pushed"), 2, "{second}");
    let mut source = mailbox(&server, "alice", "alice-pw");
    // The duplicate is uploaded once.
    let inbox = source.get_mut("INBOX").unwrap();
    inbox.dedup_by(|a, b| a.0 == b.0);
    assert_eq!(source, mailbox(&server, "alice-365", "alice-365-pw"));
}

#[test]
fn oversize_messages_are_skipped_with_the_reason_and_the_run_goes_on() {
    let server = Dovecot::start();
    seed(&server);
    let mut big = message("big", "big@x", "");
    big.extend(std::iter::repeat_n(b'x', 2 << 20));
    big.extend_from_slice(b"\r\n");
    server
        .client("alice", "alice-pw")
        .append("INBOX", "", DATE_1, &big);
    let (store, accounts) = mirrored(
        &server,
        &[("alice", "alice-pw", "alice-365", "alice-365-pw")],
    );
    let args = ["--target-kind", "imap", "--max-message-mib", "1"];
    let (run, summary) = upload(&server, store.path(), &accounts, &args);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(total(&summary, "appended"), 7);
    assert_eq!(total(&summary, "skipped"), 1);
    assert_eq!(
        summary["totals"]["skipped_by_reason"]["too large"], 1,
        "{summary}"
    );
    // Kept in the store; not at the target.
    assert!(
        stored_messages(store.path())
            .iter()
            .any(|m| m.hash == sha256_hex(&big))
    );
    let target = mailbox(&server, "alice-365", "alice-365-pw");
    assert!(!target["INBOX"].iter().any(|(b, _, _)| *b == big));
    // Listed by status with the reason.
    let status = mailferry(&[
        "--store",
        store.path().to_str().unwrap(),
        "status",
        "--json",
    ]);
    let text = status.stdout;
    assert!(text.contains("over the target's limit"), "{text}");
    // A later run with a higher limit does not retry it on its own...
    let (_, again) = upload(&server, store.path(), &accounts, &["--target-kind", "imap"]);
    assert_eq!(total(&again, "appended"), 0);
}

#[test]
fn dry_run_says_what_would_go_where_and_changes_nothing() {
    let server = Dovecot::start();
    seed(&server);
    let (store, accounts) = mirrored(
        &server,
        &[("alice", "alice-pw", "alice-365", "alice-365-pw")],
    );
    let (run, summary) = upload(&server, store.path(), &accounts, &["--dry-run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(total(&summary, "would_append"), 7);
    assert_eq!(total(&summary, "appended"), 0);
    assert_eq!(total(&summary, "connections"), 0);
    let planned = summary["accounts"][0]["planned"].to_string();
    assert!(planned.contains("Sent Items"), "{planned}");
    assert!(
        mailbox(&server, "alice-365", "alice-365-pw")
            .values()
            .all(|m| m.is_empty())
    );
    let reader = mailferry::store::Store::open_read_only(store.path()).unwrap();
    assert!(
        reader.index().ledger().is_empty().unwrap(),
        "a dry run records nothing: no target, target folder or entry"
    );
}

#[test]
fn sync_runs_mirror_then_upload() {
    let server = Dovecot::start();
    seed(&server);
    let store = tempfile::tempdir().unwrap();
    let accounts = server.migration_csv(&[("alice", "alice-pw", "alice-365", "alice-365-pw")]);
    let run = mailferry_with(
        &[
            "--store",
            store.path().to_str().unwrap(),
            "sync",
            "--json",
            "--accounts",
            accounts.to_str().unwrap(),
        ],
        &[source_flags(&server), target_flags(&server)],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    let both = run.json();
    assert_eq!(both["mirror"]["totals"]["bodies_fetched"], 7);
    assert_eq!(both["upload"]["totals"]["appended"], 7);
    assert_eq!(
        mailbox(&server, "alice", "alice-pw"),
        mailbox(&server, "alice-365", "alice-365-pw")
    );
}

#[test]
fn sync_every_repeats_and_frees_the_store_between_runs() {
    use std::io::BufRead as _;
    let server = Dovecot::start();
    seed(&server);
    let store = tempfile::tempdir().unwrap();
    let accounts = server.migration_csv(&[("alice", "alice-pw", "alice-365", "alice-365-pw")]);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mailferry"))
        .env_remove("MAILFERRY_STORE")
        .args(["--store", store.path().to_str().unwrap(), "sync", "--json"])
        .args(["--every", "6s", "--runs", "2", "--accounts"])
        .arg(&accounts)
        .args(source_flags(&server))
        .args(target_flags(&server))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["upload"]["totals"]["appended"], 7);
    // Between runs the store is free: another command can take it.
    let (run, _) = upload(&server, store.path(), &accounts, &["--target-kind", "imap"]);
    assert_eq!(
        run.code, 0,
        "the store stayed locked between runs: {}",
        run.stderr
    );
    server.client("alice", "alice-pw").append(
        "INBOX",
        "",
        DATE_1,
        &message("between", "between@x", "arrived between two syncs"),
    );
    let second: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(second["mirror"]["totals"]["bodies_fetched"], 1, "{second}");
    assert_eq!(second["upload"]["totals"]["appended"], 1, "{second}");
    assert!(lines.next().is_none(), "--runs 2 stops after two runs");
    assert!(child.wait().unwrap().success());
    assert_eq!(
        mailbox(&server, "alice", "alice-pw"),
        mailbox(&server, "alice-365", "alice-365-pw")
    );
}

#[test]
fn an_appendlimit_the_server_announces_is_obeyed_without_trying() {
    let server = Dovecot::start_with(DovecotConfig {
        capabilities: Some("+APPENDLIMIT=100000".into()),
        ..DovecotConfig::default()
    });
    seed(&server);
    let mut big = message("big", "big@x", "");
    for _ in 0..2000 {
        big.extend_from_slice(
            b"0123456789012345678901234567890123456789012345678901234567890123456789\r\n",
        );
    }
    server
        .client("alice", "alice-pw")
        .append("INBOX", "", DATE_1, &big);
    let (store, accounts) = mirrored(
        &server,
        &[("alice", "alice-pw", "alice-365", "alice-365-pw")],
    );
    let (run, summary) = upload(
        &server,
        store.path(),
        &accounts,
        &["--target-kind", "imap", "-vv"],
    );
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(total(&summary, "appended"), 7);
    assert_eq!(
        summary["totals"]["skipped_by_reason"]["too large"], 1,
        "{summary}"
    );
    // Never sent: no APPEND of that size went out.
    assert!(
        !run.stderr.contains(&format!("{{{}+}}", big.len())),
        "{}",
        run.stderr
    );
}

#[test]
fn a_parent_folder_that_exists_only_by_its_child_is_created_before_upload() {
    let server = Dovecot::start();
    let mut alice = server.client("alice", "alice-pw");
    alice.create("Work");
    alice.create("Work/Old");
    alice.append("Work", "", DATE_1, &message("w", "w@x", "work"));
    alice.append("Work/Old", "", DATE_1, &message("o", "o@x", "old"));
    // The target has the child only: its parent is listed, \Noselect.
    server
        .client("alice-365", "alice-365-pw")
        .create("Work/Old");
    let (store, accounts) = mirrored(
        &server,
        &[("alice", "alice-pw", "alice-365", "alice-365-pw")],
    );
    let (run, summary) = upload(&server, store.path(), &accounts, &["--target-kind", "imap"]);
    assert_eq!(run.code, 0, "{}\n{summary}", run.stderr);
    assert_eq!(total(&summary, "appended"), 2, "{summary}");
    assert_eq!(
        mailbox(&server, "alice-365", "alice-365-pw"),
        mailbox(&server, "alice", "alice-pw")
    );
}

#[test]
fn two_servers_on_one_host_are_two_targets() {
    // The same mailbox name on two servers of one host: the ledger of the
    // first must not make the second look done.
    let first = Dovecot::start();
    let second = Dovecot::start();
    seed(&first);
    let (store, accounts) = mirrored(
        &first,
        &[("alice", "alice-pw", "alice-365", "alice-365-pw")],
    );
    let (run, one) = upload(&first, store.path(), &accounts, &["--target-kind", "imap"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(total(&one, "appended"), 7, "{one}");
    let (run, two) = upload(&second, store.path(), &accounts, &["--target-kind", "imap"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(total(&two, "appended"), 7, "{two}");
    assert_eq!(total(&two, "already_present"), 0, "{two}");
    assert_eq!(
        mailbox(&second, "alice-365", "alice-365-pw"),
        mailbox(&first, "alice", "alice-pw")
    );
}
