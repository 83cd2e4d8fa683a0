//! `mailferry mirror` against a real Dovecot over TLS on loopback.

use std::collections::{HashMap, HashSet};

use crate::support::*;

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
    assert_store_matches(&server, store.path(), "alice", "alice-pw");
    // The status command agrees.
    let status = mailferry(&[
        "--store",
        store.path().to_str().unwrap(),
        "status",
        "--json",
    ]);
    // Mirrored, not uploaded: the batch is not complete.
    assert_eq!(status.code, 1, "{}", status.stderr);
    assert_eq!(status.json()["accounts"][0]["state"], "in_progress");
    let folders = status.json()["folders"].as_array().unwrap().clone();
    let inbox = folders.iter().find(|f| f["folder"] == "INBOX").unwrap();
    assert_eq!(inbox["stored"], 3);
    assert_eq!(inbox["at_source"], 3);
}

/// Mirror, change things at the source, mirror again: only the changes move.
fn rerun_scenario(server: &Dovecot, extra: &[&str]) {
    let mut alice = seed_basic(server);
    let store = tempfile::tempdir().unwrap();
    let accounts = server.accounts_csv(&[("alice", "alice-pw")]);
    let (run, first) = mirror(server, store.path(), &accounts, extra);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(total(&first, "bodies_fetched"), 5);

    // Nothing changed: nothing fetched, no folder opened.
    let (run, noop) = mirror(server, store.path(), &accounts, extra);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(total(&noop, "bodies_fetched"), 0);
    assert_eq!(total(&noop, "bytes_fetched"), 0);
    assert_eq!(total(&noop, "flags_updated"), 0);
    assert_eq!(total(&noop, "messages_expunged"), 0);

    // New mail, a flag change and an expunge.
    alice.append("INBOX", "", DATE_2, &message("four", "four@x", "fourth"));
    let inbox = alice.messages("INBOX");
    alice.uid_store("INBOX", inbox[0].uid, "+FLAGS (\\Flagged)");
    let archive = alice.messages("Archive");
    let gone = archive[0].clone();
    alice.expunge_uid("Archive", gone.uid);

    let (run, changed) = mirror(server, store.path(), &accounts, extra);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(total(&changed, "bodies_fetched"), 1, "{changed}");
    assert_eq!(total(&changed, "flags_updated"), 1, "{changed}");
    assert_eq!(total(&changed, "messages_expunged"), 1, "{changed}");
    assert_store_matches(server, store.path(), "alice", "alice-pw");

    // The expunged message stays in the store, marked.
    let rows = stored_messages(store.path());
    let kept = rows
        .iter()
        .find(|r| r.folder == "Archive" && r.uid == gone.uid)
        .expect("expunged row kept");
    assert!(kept.expunged);
    assert_eq!(blob(store.path(), &kept.hash), gone.body);

    let (run, noop) = mirror(server, store.path(), &accounts, extra);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(total(&noop, "bodies_fetched"), 0);
    assert_eq!(total(&noop, "flags_updated"), 0);
    assert_eq!(total(&noop, "messages_expunged"), 0);
}

#[test]
fn rerun_fetches_only_new_mail_and_reflects_flags_and_expunges() {
    let server = Dovecot::start();
    rerun_scenario(&server, &["--compress", "always"]);
}

#[test]
fn a_no_op_rerun_costs_one_listing_and_opens_no_folder() {
    let server = Dovecot::start();
    seed_basic(&server);
    let store = tempfile::tempdir().unwrap();
    let accounts = server.accounts_csv(&[("alice", "alice-pw")]);
    let (_, first) = mirror(&server, store.path(), &accounts, &[]);
    // A few messages are worth one connection (two on a slow machine),
    // not one login per folder.
    assert!(total(&first, "connections") <= 2, "{first}");
    let (_, noop) = mirror(&server, store.path(), &accounts, &[]);
    assert_eq!(total(&noop, "folders_checked"), 3);
    assert_eq!(total(&noop, "folders_synced"), 0, "{noop}");
    assert_eq!(total(&noop, "connections"), 1);
    // LOGIN, then LIST-STATUS with ID and ENABLE written ahead of it and
    // NAMESPACE behind it; LOGOUT's answer is not waited for: nothing per
    // folder (the bound is 4; no COMPRESS for a server on this
    // machine).
    assert!(total(&noop, "round_trips") <= 2, "{noop}");
}

#[test]
fn without_condstore_qresync_or_list_status_the_fallback_is_correct() {
    let server = Dovecot::start_with(DovecotConfig {
        capabilities: Some(
            "IMAP4rev1 LITERAL+ SASL-IR LOGIN-REFERRALS ID ENABLE IDLE NAMESPACE UIDPLUS CHILDREN UNSELECT"
                .into(),
        ),
        ..DovecotConfig::default()
    });
    rerun_scenario(&server, &[]);
}

#[test]
fn a_recreated_folder_with_new_uidvalidity_is_not_fetched_again() {
    let server = Dovecot::start();
    let mut alice = seed_basic(&server);
    let store = tempfile::tempdir().unwrap();
    let accounts = server.accounts_csv(&[("alice", "alice-pw")]);
    let (run, _) = mirror(&server, store.path(), &accounts, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);

    let old = alice.messages("Archive/2019");
    alice.delete_folder("Archive/2019");
    alice.create("Archive/2019");
    for m in &old {
        alice.append(
            "Archive/2019",
            &m.flags.join(" "),
            &m.internal_date,
            &m.body,
        );
    }
    let (run, again) = mirror(&server, store.path(), &accounts, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(total(&again, "uidvalidity_changes"), 1, "{again}");
    assert_eq!(total(&again, "bodies_fetched"), 0, "{again}");
    assert_eq!(total(&again, "bodies_skipped_as_stored"), old.len() as u64);
    assert_store_matches(&server, store.path(), "alice", "alice-pw");
}

#[test]
fn a_renamed_folder_is_not_fetched_again_and_the_old_name_is_kept() {
    let server = Dovecot::start();
    let mut alice = seed_basic(&server);
    let store = tempfile::tempdir().unwrap();
    let accounts = server.accounts_csv(&[("alice", "alice-pw")]);
    mirror(&server, store.path(), &accounts, &[]);

    alice.rename_folder("Archive", "Old Archive");
    let (run, again) = mirror(&server, store.path(), &accounts, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(total(&again, "bodies_fetched"), 0, "{again}");
    assert_eq!(total(&again, "bodies_skipped_as_stored"), 2, "{again}");
    assert_eq!(total(&again, "folders_deleted"), 2, "{again}");
    assert_store_matches(&server, store.path(), "alice", "alice-pw");

    let status = mailferry(&[
        "--store",
        store.path().to_str().unwrap(),
        "status",
        "--json",
    ]);
    let folders = status.json()["folders"].as_array().unwrap().clone();
    let old = folders.iter().find(|f| f["folder"] == "Archive").unwrap();
    assert_eq!(old["deleted_at_source"], true);
    assert_eq!(old["expunged"], 1, "old rows are kept, marked expunged");
}

#[test]
fn the_same_message_in_two_folders_and_two_accounts_is_one_blob() {
    let server = Dovecot::start();
    let shared = message("shared", "shared@x", "the same bytes everywhere");
    let mut alice = server.client("alice", "alice-pw");
    alice.create("Keep");
    alice.append("INBOX", "", DATE_1, &shared);
    alice.append("Keep", "\\Seen", DATE_1, &shared);
    let mut bob = server.client("bob", "bob-pw");
    bob.append("INBOX", "", DATE_2, &shared);
    let store = tempfile::tempdir().unwrap();
    let accounts = server.accounts_csv(&[("alice", "alice-pw"), ("bob", "bob-pw")]);
    let (run, summary) = mirror(&server, store.path(), &accounts, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let rows = stored_messages(store.path());
    assert_eq!(rows.len(), 3);
    let hashes: HashSet<&str> = rows.iter().map(|r| r.hash.as_str()).collect();
    assert_eq!(hashes, HashSet::from([sha256_hex(&shared).as_str()]));
    assert_eq!(blob_files(store.path()).len(), 1);
    assert_eq!(total(&summary, "blobs_written"), 1, "{summary}");
}

#[test]
fn folder_names_in_modified_utf7_nested_and_with_quotes() {
    let names = [
        ("Entw&APw-rfe", "Entwürfe"),
        ("&BB4EQgQ,BEAEMAQyBDsENQQ9BD0ESwQ1-", "Отправленные"),
        ("Tom &- Jerry", "Tom & Jerry"),
        (
            "Work/Projects 2024/Q1 \"final\"",
            "Work/Projects 2024/Q1 \"final\"",
        ),
    ];
    for separator in ['/', '.'] {
        let server = Dovecot::start_with(DovecotConfig {
            separator,
            ..DovecotConfig::default()
        });
        let mut alice = server.client("alice", "alice-pw");
        let mut expected: HashMap<String, String> = HashMap::new();
        for (i, (wire, display)) in names.iter().enumerate() {
            let wire = wire.replace('/', &separator.to_string());
            let display = display.replace('/', &separator.to_string());
            alice.create(&wire);
            alice.append(
                &wire,
                "",
                DATE_1,
                &message("n", &format!("n{i}@x"), display.as_str()),
            );
            expected.insert(wire, display);
        }
        let store = tempfile::tempdir().unwrap();
        let accounts = server.accounts_csv(&[("alice", "alice-pw")]);
        let (run, summary) = mirror(&server, store.path(), &accounts, &[]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(total(&summary, "bodies_fetched"), names.len() as u64);
        assert_store_matches(&server, store.path(), "alice", "alice-pw");
        let status = mailferry(&[
            "--store",
            store.path().to_str().unwrap(),
            "status",
            "--json",
        ]);
        for f in status.json()["folders"].as_array().unwrap() {
            let wire = f["wire_name"].as_str().unwrap();
            if let Some(display) = expected.get(wire) {
                assert_eq!(
                    f["folder"].as_str().unwrap(),
                    display,
                    "separator {separator}"
                );
                assert_eq!(f["stored"], 1);
            }
        }
        let seen: HashSet<String> = status.json()["folders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["wire_name"].as_str().unwrap().to_string())
            .collect();
        for wire in expected.keys() {
            assert!(
                seen.contains(wire),
                "{wire} missing with separator {separator}"
            );
        }
    }
}

/// Pseudo-random bytes without a dependency.
fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

#[test]
fn malformed_and_huge_messages_are_stored_byte_for_byte() {
    use base64::Engine as _;
    let server = Dovecot::start();
    let mut alice = server.client("alice", "alice-pw");
    let mut long_line = b"Subject: one long line\r\n\r\n".to_vec();
    long_line.extend(std::iter::repeat_n(b'x', 1 << 20));
    long_line.extend_from_slice(b"\r\n");
    let attachment = base64::engine::general_purpose::STANDARD.encode(noise(15 << 20, 7));
    let mut big = b"Subject: big\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n".to_vec();
    for chunk in attachment.as_bytes().chunks(76) {
        big.extend_from_slice(chunk);
        big.extend_from_slice(b"\r\n");
    }
    big.extend_from_slice(b"--b--\r\n");
    assert!(big.len() > 20 << 20);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "bare LF",
            b"Subject: bare\nFrom: a@b\n\nline one\nline two\n".to_vec(),
        ),
        (
            "8-bit headers",
            b"Subject: Gr\xfc\xdfe \xff\xfe\r\nFrom: \xe9t\xe9 <x@y>\r\n\r\nbody \x80\x81\r\n"
                .to_vec(),
        ),
        (
            "no headers",
            b"\r\njust a body, no header at all\r\n".to_vec(),
        ),
        ("garbage", b"\x01\x02 not mail at all \x7f\r\n".to_vec()),
        ("1 MB line", long_line),
        ("20 MB attachment", big),
    ];
    for (_, bytes) in &cases {
        alice.append("INBOX", "", DATE_1, bytes);
    }
    // NUL bytes cannot travel in an APPEND literal: put the file in place.
    let nul = b"Subject: nul\r\nFrom: a@b\r\n\r\nbefore\0after\r\n\0\0\r\n".to_vec();
    server.write_maildir_message("bob", "INBOX", "1700000000.nul.host", &nul);

    let store = tempfile::tempdir().unwrap();
    let accounts = server.accounts_csv(&[("alice", "alice-pw"), ("bob", "bob-pw")]);
    let (run, summary) = mirror(&server, store.path(), &accounts, &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    assert_eq!(total(&summary, "bodies_fetched"), cases.len() as u64 + 1);
    assert_store_matches(&server, store.path(), "alice", "alice-pw");
    for (what, bytes) in &cases {
        if *what != "bare LF" {
            let hash = sha256_hex(bytes);
            assert!(
                stored_messages(store.path()).iter().any(|r| r.hash == hash),
                "{what}: not stored as appended"
            );
        }
    }
    // The NUL message is stored as the file holds it, though Dovecot's
    // BODY[] shows 0x80 in place of each NUL.
    let bob_rows: Vec<StoredMessage> = stored_messages(store.path())
        .into_iter()
        .filter(|r| r.account == "bob@example.com")
        .collect();
    assert_eq!(bob_rows.len(), 1);
    assert_eq!(blob(store.path(), &bob_rows[0].hash), nul);
    let shown = server.client("bob", "bob-pw").messages("INBOX")[0]
        .body
        .clone();
    assert_ne!(shown, nul, "Dovecot should alter NULs in BODY[]");
}

#[test]
fn a_wrong_password_names_the_account_and_the_others_complete() {
    let server = Dovecot::start();
    seed_basic(&server);
    let store = tempfile::tempdir().unwrap();
    let accounts = server.accounts_csv(&[("alice", "alice-pw"), ("bob", "not-bobs-password")]);
    let (run, summary) = mirror(&server, store.path(), &accounts, &[]);
    assert_eq!(run.code, 3, "exit code says some account could not log in");
    let accounts = summary["accounts"].as_array().unwrap();
    let alice = &accounts[0];
    let bob = &accounts[1];
    assert_eq!(alice["complete"], true);
    assert_eq!(bob["complete"], false);
    let error = bob["error"].as_str().unwrap();
    assert!(error.contains("bob@example.com"), "{error}");
    assert!(error.contains("login refused"), "{error}");
    assert!(!run.stdout.contains("not-bobs-password") && !run.stderr.contains("not-bobs-password"));
    assert_store_matches(&server, store.path(), "alice", "alice-pw");
}

#[test]
fn a_certificate_for_another_name_is_refused() {
    let server = Dovecot::start_with(DovecotConfig {
        cert_names: vec!["mail.elsewhere.example".into()],
        ..DovecotConfig::default()
    });
    seed_basic(&server);
    let store = tempfile::tempdir().unwrap();
    let accounts = server.accounts_csv(&[("alice", "alice-pw")]);
    let (run, summary) = mirror(&server, store.path(), &accounts, &[]);
    // 4: the server could not be reached (its certificate is refused).
    assert_eq!(run.code, 4);
    let error = summary["accounts"][0]["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.contains("TLS handshake"), "{error}");
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    assert_eq!(total(&summary, "bodies_fetched"), 0);

    // Only the loudly named option turns verification off.
    let (run, summary) = mirror(
        &server,
        store.path(),
        &accounts,
        &["--danger-accept-invalid-certs"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("NOT checked"));
    assert_eq!(total(&summary, "bodies_fetched"), 5);
}

#[test]
fn killed_mid_mirror_the_next_run_completes_without_duplicates() {
    let server = Dovecot::start();
    let mut alice = server.client("alice", "alice-pw");
    let mut count = 0;
    for folder in ["INBOX", "A", "B"] {
        if folder != "INBOX" {
            alice.create(folder);
        }
        for i in 0..120 {
            let mut body = message(folder, &format!("{folder}-{i}@x"), "");
            body.extend(noise(60_000, i + 1).iter().map(|b| b'a' + b % 26));
            body.extend_from_slice(b"\r\n");
            alice.append(folder, "", DATE_1, &body);
            count += 1;
        }
    }
    let store = tempfile::tempdir().unwrap();
    let accounts = server.accounts_csv(&[("alice", "alice-pw")]);
    let mut child = mirror_command(
        &server,
        server.port,
        store.path(),
        &accounts,
        &["--quiet", "--connections", "2", "--max-memory-mib", "1"],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while blob_files(store.path()).len() < 40 {
        assert!(
            std::time::Instant::now() < deadline,
            "mirror made no progress"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "mirror ended before it was killed"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let committed = stored_messages(store.path()).len();
    assert!(committed < count, "killed too late to test anything");

    let (run, summary) = mirror(&server, store.path(), &accounts, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        total(&summary, "bodies_fetched") as usize,
        count - committed,
        "only what was not committed is fetched again"
    );
    let rows = stored_messages(store.path());
    assert_eq!(rows.len(), count, "no duplicate rows");
    let keys: HashSet<(String, u32)> = rows.iter().map(|r| (r.folder.clone(), r.uid)).collect();
    assert_eq!(keys.len(), count);
    for r in &rows {
        assert_eq!(sha256_hex(&blob(store.path(), &r.hash)), r.hash);
    }
    assert_eq!(
        std::fs::read_dir(store.path().join("tmp")).unwrap().count(),
        0
    );
    assert_store_matches(&server, store.path(), "alice", "alice-pw");
}

#[test]
fn compress_deflate_shrinks_the_wire_when_asked_for() {
    let server = Dovecot::start();
    let mut alice = server.client("alice", "alice-pw");
    let mut body = message("big text", "big@x", "");
    for i in 0..40_000 {
        body.extend_from_slice(format!("line {i} of a very repetitive message\r\n").as_bytes());
    }
    alice.append("INBOX", "", DATE_1, &body);
    let accounts = server.accounts_csv(&[("alice", "alice-pw")]);
    for (mode, compressed) in [("always", true), ("never", false)] {
        let store = tempfile::tempdir().unwrap();
        let (run, s) = mirror(&server, store.path(), &accounts, &["--compress", mode]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let fetched = total(&s, "bytes_fetched");
        let wire = total(&s, "wire_bytes_in");
        assert_eq!(fetched, body.len() as u64);
        if compressed {
            assert!(
                wire < fetched / 4,
                "compressed: {wire} on the wire for {fetched}"
            );
        } else {
            assert!(wire > fetched, "plain: {wire} on the wire for {fetched}");
        }
        assert_store_matches(&server, store.path(), "alice", "alice-pw");
    }
}

#[test]
fn authenticate_plain_works_and_the_client_identifies_itself() {
    let server = Dovecot::start();
    seed_basic(&server);
    let store = tempfile::tempdir().unwrap();
    let accounts = server.accounts_csv(&[("alice", "alice-pw")]);
    let (run, summary) = mirror(&server, store.path(), &accounts, &["--auth", "plain"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(total(&summary, "bodies_fetched"), 5);
    let log = server.log();
    assert!(log.contains("method=PLAIN"), "{log}");
    assert!(log.contains("name=mailferry"), "ID not sent: {log}");
}

#[test]
fn a_message_the_server_will_not_deliver_is_reported_and_fetched_next_run() {
    use std::os::unix::fs::PermissionsExt;
    let server = Dovecot::start();
    seed_basic(&server);
    server.write_maildir_message(
        "alice",
        "INBOX",
        "1700000000.locked.host",
        &message("locked", "locked@x", "unreadable for now"),
    );
    let file = std::fs::read_dir(server.maildir("alice", "INBOX").join("cur"))
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().contains("locked"))
        .unwrap()
        .path();
    // Take read access away from Dovecot's mail user: the message is listed
    // (its size is in the file name) but cannot be read.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o000)).unwrap();
    std::os::unix::fs::chown(&file, Some(0), Some(0)).ok();

    let store = tempfile::tempdir().unwrap();
    let accounts = server.accounts_csv(&[("alice", "alice-pw")]);
    let (run, summary) = mirror(&server, store.path(), &accounts, &[]);
    if run.code == 0 {
        // Not root: the file stays readable to Dovecot; nothing to test.
        assert!(!is_root_for_tests(), "{summary}");
        return;
    }
    assert_eq!(run.code, 1, "{}", run.stderr);
    let account = &summary["accounts"][0];
    assert_eq!(account["complete"], false);
    let errors = account["folder_errors"].to_string();
    assert!(
        errors.contains("INBOX") && errors.contains("did not deliver UID"),
        "{errors}\n{}\n{}",
        run.stderr,
        server.log()
    );
    assert_eq!(
        total(&summary, "bodies_fetched"),
        5,
        "the others are stored"
    );

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (run, again) = mirror(&server, store.path(), &accounts, &[]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(total(&again, "bodies_fetched"), 1, "{again}");
    assert_store_matches(&server, store.path(), "alice", "alice-pw");
}

fn is_root_for_tests() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[test]
fn a_link_that_drops_mid_literal_is_reconnected_and_completes() {
    let server = Dovecot::start();
    let mut alice = server.client("alice", "alice-pw");
    for i in 0..30 {
        let mut body = message("bulk", &format!("bulk{i}@x"), "");
        body.extend(noise(100_000, i + 3).iter().map(|b| b'a' + b % 26));
        body.extend_from_slice(b"\r\n");
        alice.append("INBOX", "", DATE_1, &body);
    }
    // The first three connections die 400 KB into the server's answers.
    let proxy = Proxy::start(
        server.port,
        Faults {
            cuts: 3,
            cut_after: 400_000,
            ..Faults::default()
        },
    );
    let store = tempfile::tempdir().unwrap();
    let accounts = server.accounts_csv(&[("alice", "alice-pw")]);
    let (run, summary) = mirror_via(
        &server,
        proxy.port,
        store.path(),
        &accounts,
        &["--connections", "1"],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    assert!(proxy.cut.load(std::sync::atomic::Ordering::SeqCst) >= 2);
    assert!(total(&summary, "connections") >= 3, "{summary}");
    assert_store_matches(&server, store.path(), "alice", "alice-pw");
}

/// One large message of `size` bytes in alice's INBOX.
fn one_large_message(server: &Dovecot, size: usize) -> usize {
    let mut alice = server.client("alice", "alice-pw");
    let mut body = message("large", "large@x", "");
    body.extend(noise(size, 11).iter().map(|b| b'a' + b % 26));
    body.extend_from_slice(b"\r\n");
    alice.append("INBOX", "", DATE_1, &body);
    body.len()
}

#[test]
fn a_large_message_on_a_link_that_drops_every_megabyte_and_a_half_arrives_whole() {
    let server = Dovecot::start();
    let size = one_large_message(&server, 8_000_000);
    // Every connection dies 1.5 MB into the server's answers: fetched
    // from its first byte each time, the message would never arrive.
    let proxy = Proxy::start(
        server.port,
        Faults {
            cuts: 100,
            cut_after: 1_500_000,
            ..Faults::default()
        },
    );
    let meter = Meter::start(proxy.port);
    let store = tempfile::tempdir().unwrap();
    let accounts = server.accounts_csv(&[("alice", "alice-pw")]);
    let (run, summary) = mirror_via(
        &server,
        meter.port,
        store.path(),
        &accounts,
        &["--connections", "1", "--compress", "never"],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    assert_eq!(summary["accounts"][0]["complete"], true, "{summary}");
    assert_store_matches(&server, store.path(), "alice", "alice-pw");
    assert!(proxy.cut.load(std::sync::atomic::Ordering::SeqCst) >= 5);
    // Each piece went on where the last stopped: at most 1.3 times the
    // message crossed the link (TLS and IMAP framing included).
    let down = meter.take().bytes_down as usize;
    assert!(
        down <= size * 13 / 10,
        "{down} bytes for a {size}-byte message"
    );
    let partials = std::fs::read_dir(store.path().join("partial"))
        .unwrap()
        .count();
    assert_eq!(
        partials, 0,
        "the pieces are gone once the message is stored"
    );
}

#[test]
fn a_large_message_half_fetched_by_a_killed_run_is_continued_by_the_next() {
    let server = Dovecot::start();
    let size = one_large_message(&server, 6_000_000);
    // A slow link that drops every megabyte: the first run is killed once
    // it has kept 2 MB of the message.
    let proxy = Proxy::start(
        server.port,
        Faults {
            cuts: 100,
            cut_after: 1_000_000,
            bytes_per_sec: Some(2_000_000),
            ..Faults::default()
        },
    );
    let store = tempfile::tempdir().unwrap();
    let accounts = server.accounts_csv(&[("alice", "alice-pw")]);
    let mut child = mirror_command(
        &server,
        proxy.port,
        store.path(),
        &accounts,
        &["--connections", "1", "--compress", "never"],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let partial_dir = store.path().join("partial");
    let kept = || -> u64 {
        std::fs::read_dir(&partial_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".state"))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .filter_map(|t| t.split(' ').next().and_then(|n| n.parse().ok()))
            .max()
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while kept() < 2_000_000 {
        assert!(std::time::Instant::now() < deadline, "no pieces kept");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let kept = kept() as usize;
    assert!(stored_messages(store.path()).is_empty());
    // The next run, on a sound link, fetches only what is missing.
    let meter = Meter::start(server.port);
    let (run, summary) = mirror_via(
        &server,
        meter.port,
        store.path(),
        &accounts,
        &["--connections", "1", "--compress", "never"],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    assert_eq!(summary["accounts"][0]["complete"], true, "{summary}");
    assert_store_matches(&server, store.path(), "alice", "alice-pw");
    let down = meter.take().bytes_down as usize;
    assert!(
        down < (size - kept) + size / 10,
        "{down} bytes fetched with {kept} of {size} kept"
    );
}

#[test]
fn max_rate_holds_mirror_and_upload_to_the_rate_asked_for() {
    let server = Dovecot::start();
    let mut alice = server.client("alice", "alice-pw");
    let mut size = 0;
    for i in 0..24 {
        let mut body = message("paced", &format!("paced{i}@x"), "");
        body.extend(noise(100_000, i + 21).iter().map(|b| b'a' + b % 26));
        body.extend_from_slice(b"\r\n");
        size += body.len();
        alice.append("INBOX", "", DATE_1, &body);
    }
    drop(alice);
    let store = tempfile::tempdir().unwrap();
    let csv = server.migration_csv(&[("alice", "alice-pw", "alice-365", "alice-365-pw")]);
    // 2.4 MB at 1 MB/s over four connections together: two seconds and
    // more, however fast the machine (a lower bound only).
    let started = std::time::Instant::now();
    let (run, summary) = mirror(&server, store.path(), &csv, &["--max-rate", "1M"]);
    let took = started.elapsed().as_secs_f64();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(summary["accounts"][0]["complete"], true, "{summary}");
    assert_store_matches(&server, store.path(), "alice", "alice-pw");
    let floor = size as f64 / 1e6 * 0.8;
    assert!(
        took >= floor,
        "mirrored {size} bytes in {took:.2} s at 1 MB/s"
    );
    let started = std::time::Instant::now();
    let (run, summary) = upload(
        &server,
        store.path(),
        &csv,
        &["--target-kind", "imap", "--max-rate", "1M"],
    );
    let took = started.elapsed().as_secs_f64();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(total(&summary, "appended"), 24, "{summary}");
    assert!(
        took >= floor,
        "uploaded {size} bytes in {took:.2} s at 1 MB/s"
    );
    // A rate that is not one is refused, naming it.
    let bad = Run::of(&mut mirror_command(
        &server,
        server.port,
        store.path(),
        &csv,
        &["--max-rate", "fast"],
    ));
    assert_eq!(bad.code, 2, "{}", bad.stderr);
    assert!(bad.stderr.contains("\"fast\""), "{}", bad.stderr);
}

#[test]
fn a_server_that_goes_away_mid_run_fails_the_account_cleanly_and_the_next_run_completes() {
    let server = Dovecot::start();
    let mut alice = server.client("alice", "alice-pw");
    let count = 200;
    for i in 0..count {
        let mut body = message("bulk", &format!("gone{i}@x"), "");
        body.extend(noise(50_000, i + 5).iter().map(|b| b'a' + b % 26));
        body.extend_from_slice(b"\r\n");
        alice.append("INBOX", "", DATE_1, &body);
    }
    drop(alice);
    let proxy = Proxy::start(server.port, Faults::default());
    let store = tempfile::tempdir().unwrap();
    let accounts = server.accounts_csv(&[("alice", "alice-pw")]);
    let child = mirror_command(
        &server,
        proxy.port,
        store.path(),
        &accounts,
        &["--connections", "1", "--max-memory-mib", "1"],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while blob_files(store.path()).len() < 10 {
        assert!(std::time::Instant::now() < deadline, "no progress");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    proxy.go_away();
    let started = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "hung after the server left"
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // 4: the server went away.
    assert_eq!(out.status.code(), Some(4), "{summary}");
    let account = &summary["accounts"][0];
    assert_eq!(account["complete"], false);
    let why = format!("{} {}", account["error"], account["folder_errors"]);
    assert!(
        why.contains("alice@example.com") && why.contains("INBOX"),
        "{why}"
    );
    let committed = stored_messages(store.path()).len();
    assert!(committed < count as usize);
    for r in stored_messages(store.path()) {
        assert_eq!(sha256_hex(&blob(store.path(), &r.hash)), r.hash);
    }

    let (run, summary) = mirror(&server, store.path(), &accounts, &[]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(
        total(&summary, "bodies_fetched") as usize,
        count as usize - committed
    );
    assert_store_matches(&server, store.path(), "alice", "alice-pw");
}

#[test]
fn passwords_never_reach_logs_even_at_trace_level() {
    let server = Dovecot::start();
    seed_basic(&server);
    let store = tempfile::tempdir().unwrap();
    let accounts = server.accounts_csv(&[("alice", "alice-pw"), ("bob", "wrong-bob-secret")]);
    for auth in ["login", "plain"] {
        let (run, _) = mirror(&server, store.path(), &accounts, &["-vvv", "--auth", auth]);
        assert!(
            run.stderr.contains("TRACE") || run.stderr.contains("DEBUG"),
            "no logs at all"
        );
        for secret in ["alice-pw", "wrong-bob-secret"] {
            assert!(!run.stderr.contains(secret), "{auth}: {secret} in the log");
            assert!(
                !run.stdout.contains(secret),
                "{auth}: {secret} in the summary"
            );
        }
        // PLAIN sends base64: that must not show either.
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode("\0alice\0alice-pw");
        assert!(!run.stderr.contains(&b64));
    }
    let index = std::fs::read(store.path().join("index.sqlite")).unwrap();
    assert!(!index.windows(8).any(|w| w == b"alice-pw"));
}

#[test]
fn a_slow_link_never_times_out_but_a_silent_server_does() {
    let server = Dovecot::start();
    let mut alice = server.client("alice", "alice-pw");
    let mut body = message("slow", "slow@x", "");
    body.extend(noise(300_000, 11).iter().map(|b| b'a' + b % 26));
    body.extend_from_slice(b"\r\n");
    alice.append("INBOX", "", DATE_1, &body);
    let accounts = server.accounts_csv(&[("alice", "alice-pw")]);

    // 60 KB/s: the message takes about 5 s, more than the 2 s timeout, but
    // bytes keep arriving.
    let slow = Proxy::start(
        server.port,
        Faults {
            bytes_per_sec: Some(60_000),
            ..Faults::default()
        },
    );
    let store = tempfile::tempdir().unwrap();
    let (run, summary) = mirror_via(
        &server,
        slow.port,
        store.path(),
        &accounts,
        &["--io-timeout", "2", "--compress", "never"],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    assert_eq!(total(&summary, "bodies_fetched"), 1);

    // A server that stops sending mid-message: the run ends, naming why.
    let stall = Proxy::start(
        server.port,
        Faults {
            stall_after: Some(100_000),
            ..Faults::default()
        },
    );
    let store = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let (run, summary) = mirror_via(
        &server,
        stall.port,
        store.path(),
        &accounts,
        &[
            "--io-timeout",
            "2",
            "--connections",
            "1",
            "--compress",
            "never",
        ],
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
    // The first connection hangs; the reconnect goes through and finishes.
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    assert!(run.stderr.contains("sent nothing for 2s"), "{}", run.stderr);
    assert_eq!(total(&summary, "bodies_fetched"), 1);
    assert_store_matches(&server, store.path(), "alice", "alice-pw");
}

#[test]
fn a_write_that_fails_like_a_full_disk_leaves_a_store_the_next_run_completes() {
    let server = Dovecot::start();
    let mut alice = server.client("alice", "alice-pw");
    for i in 0..5 {
        alice.append(
            "INBOX",
            "",
            DATE_1,
            &message("small", &format!("s{i}@x"), "small"),
        );
    }
    // Random bytes do not compress: this blob is bigger than the file limit.
    let mut big = message("big", "big@x", "");
    big.extend(noise(6 << 20, 13).iter().map(|b| b'!' + b % 90));
    big.extend_from_slice(b"\r\n");
    alice.create("Archive");
    alice.append("Archive", "", DATE_1, &big);
    alice.create("Other");
    alice.append("Other", "", DATE_2, &message("other", "other@x", "fine"));
    let store = tempfile::tempdir().unwrap();
    let accounts = server.accounts_csv(&[("alice", "alice-pw")]);

    // Files may not grow past 2 MiB, and SIGXFSZ is ignored so the write
    // fails with an error, as it would on a full disk.
    let mirror_line = mirror_command(&server, server.port, store.path(), &accounts, &[]);
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 2048; exec \"$@\"")
        .arg("sh")
        .arg(mirror_line.get_program())
        .args(mirror_line.get_args())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let errors = summary["accounts"][0]["folder_errors"].to_string();
    assert!(
        errors.contains("Archive") && errors.contains("cannot"),
        "{errors}"
    );
    // Everything else is stored.
    let stored = stored_messages(store.path());
    assert_eq!(stored.len(), 6, "{stored:?}");
    assert!(stored.iter().all(|r| r.folder != "Archive"));

    let (run, again) = mirror(&server, store.path(), &accounts, &[]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(total(&again, "bodies_fetched"), 1);
    assert_store_matches(&server, store.path(), "alice", "alice-pw");
    assert_eq!(
        std::fs::read_dir(store.path().join("tmp")).unwrap().count(),
        0
    );
}
