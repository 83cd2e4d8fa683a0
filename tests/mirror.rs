//! `mailferry mirror` against a real Dovecot over TLS on loopback.

mod support;

use std::collections::{HashMap, HashSet};

use support::*;

const DATE_1: &str = "03-Mar-2025 10:00:00 +0100";
const DATE_2: &str = "15-Jul-2019 23:59:59 -0700";

fn seed_basic(server: &Dovecot) -> RawImap {
    let mut alice = server.client("alice", "alice-pw");
    alice.create("Archive");
    alice.create("Archive/2019");
    alice.append("INBOX", "\\Seen", DATE_1, &message("one", "one@x", "first"));
    alice.append(
        "INBOX",
        "\\Flagged $Label1",
        DATE_2,
        &message("two", "two@x", "second"),
    );
    alice.append("INBOX", "", DATE_1, &message("three", "three@x", "third"));
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
    alice
}

/// Checks that every message on the server for `user` is stored byte for
/// byte, with its flags and INTERNALDATE instant, and nothing else is live.
fn assert_store_matches_server(server: &Dovecot, store: &std::path::Path, user: &str, pw: &str) {
    let mut client = server.client(user, pw);
    let account = format!("{user}@example.com");
    let stored: Vec<StoredMessage> = stored_messages(store)
        .into_iter()
        .filter(|m| m.account == account && !m.expunged)
        .collect();
    let mut server_count = 0;
    for name in client.folders() {
        for m in client.messages(&name) {
            server_count += 1;
            let row = stored
                .iter()
                .find(|s| s.folder == name && s.uid == m.uid)
                .unwrap_or_else(|| panic!("{name} UID {} is not stored", m.uid));
            assert_eq!(row.hash, sha256_hex(&m.body), "{name} UID {}: hash", m.uid);
            assert_eq!(
                blob(store, &row.hash),
                m.body,
                "{name} UID {}: bytes",
                m.uid
            );
            let mut flags = m.flags.clone();
            flags.sort();
            assert_eq!(row.flags, flags.join(" "), "{name} UID {}: flags", m.uid);
            assert_eq!(
                row.internal_date,
                instant(&m.internal_date),
                "{name} UID {}: date",
                m.uid
            );
        }
    }
    assert_eq!(
        stored.len(),
        server_count,
        "live rows vs messages on the server"
    );
}

#[test]
fn first_mirror_stores_every_message_byte_for_byte_with_flags_and_dates() {
    let server = Dovecot::start();
    seed_basic(&server);
    let store = tempfile::tempdir().unwrap();
    let accounts = server.accounts_csv(&[("alice", "alice-pw")]);
    let (run, summary) = mirror(&server, store.path(), &accounts, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(total(&summary, "bodies_fetched"), 5);
    assert_eq!(total(&summary, "folders_checked"), 3);
    assert_store_matches_server(&server, store.path(), "alice", "alice-pw");
    // The status command agrees.
    let status = mailferry(&[
        "--store",
        store.path().to_str().unwrap(),
        "status",
        "--json",
    ]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    let folders = status.json()["folders"].as_array().unwrap().clone();
    let inbox = folders.iter().find(|f| f["folder"] == "INBOX").unwrap();
    assert_eq!(inbox["stored"], 3);
    assert_eq!(inbox["at_source"], 3);
}
