//! Nothing doubled, nothing lost: a lost index, a target that already holds
//! mail, damaged blobs. Against a real Dovecot over TLS.

use crate::support::*;

const DATE: &str = "03-Mar-2025 10:00:00 +0100";

/// Bodies of every message in a folder, sorted.
fn bodies(server: &Dovecot, user: &str, pw: &str, folder: &str) -> Vec<Vec<u8>> {
    let mut b: Vec<Vec<u8>> = server
        .client(user, pw)
        .messages(folder)
        .into_iter()
        .map(|m| m.body)
        .collect();
    b.sort();
    b
}

fn seed(server: &Dovecot, n: usize) -> Vec<Vec<u8>> {
    let mut alice = server.client("alice", "alice-pw");
    alice.create("Archive");
    let mut out = Vec::new();
    for i in 0..n {
        let m = message(&format!("m{i}"), &format!("m{i}@x"), &format!("body {i}"));
        let folder = if i % 3 == 0 { "Archive" } else { "INBOX" };
        alice.append(folder, "\\Seen", DATE, &m);
        out.push(m);
    }
    // One without a Message-ID: only its bytes can tell it apart.
    let bare = b"From: a@x\r\nSubject: no id\r\n\r\nno message-id here\r\n".to_vec();
    alice.append("INBOX", "", DATE, &bare);
    out.push(bare);
    out
}

const PAIR: (&str, &str, &str, &str) = ("alice", "alice-pw", "alice-365", "alice-365-pw");

#[test]
fn an_upload_after_the_index_was_lost_appends_nothing_twice() {
    let server = Dovecot::start();
    seed(&server, 12);
    let accounts = server.migration_csv(&[PAIR]);
    let store = tempfile::tempdir().unwrap();
    let (run, _) = mirror(&server, store.path(), &accounts, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (run, first) = upload(&server, store.path(), &accounts, &["--target-kind", "imap"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(total(&first, "appended"), 13);
    let before = contents(&server, "alice-365", "alice-365-pw");

    // The index is gone: a new one is built by mirroring again, and its
    // ledger knows nothing of the target.
    for name in ["index.sqlite", "index.sqlite-wal", "index.sqlite-shm"] {
        let _ = std::fs::remove_file(store.path().join(name));
    }
    let (run, _) = mirror(&server, store.path(), &accounts, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (run, again) = upload(&server, store.path(), &accounts, &["--target-kind", "imap"]);
    assert_eq!(run.code, 0, "{}\n{again}", run.stderr);
    assert_eq!(total(&again, "appended"), 0, "{again}");
    assert_eq!(total(&again, "found_at_target"), 13, "{again}");
    assert_eq!(contents(&server, "alice-365", "alice-365-pw"), before);

    // Found messages are in the ledger now: the next run has nothing to do.
    let (run, third) = upload(&server, store.path(), &accounts, &["--target-kind", "imap"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(total(&third, "appended"), 0);
    assert_eq!(total(&third, "connections"), 0, "{third}");
}

#[test]
fn mail_an_earlier_tool_put_in_the_target_is_recognised_not_doubled() {
    let server = Dovecot::start();
    let sent = seed(&server, 9);
    // An earlier migration placed part of the mail: some byte for byte,
    // one converted (as Exchange does: same Message-ID and date, other
    // bytes), and one that merely shares a Message-ID with another date.
    let mut target = server.client("alice-365", "alice-365-pw");
    target.create("Archive");
    target.append("INBOX", "", DATE, &sent[1]);
    target.append("INBOX", "", DATE, &sent[2]);
    target.append("Archive", "", DATE, &sent[3]);
    target.append("INBOX", "", DATE, &sent[9]); // the one without Message-ID
    let converted = String::from_utf8(sent[4].clone())
        .unwrap()
        .replace("From: Sender", "X-Converted: yes\r\nFrom: Sender")
        .into_bytes();
    target.append("INBOX", "", DATE, &converted);
    let other_date = String::from_utf8(sent[5].clone())
        .unwrap()
        .replace("body 5", "a different message with the same id")
        .into_bytes();
    target.append("INBOX", "", "01-Jan-2020 00:00:00 +0000", &other_date);
    drop(target);

    let accounts = server.migration_csv(&[PAIR]);
    let store = tempfile::tempdir().unwrap();
    let (run, _) = mirror(&server, store.path(), &accounts, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (run, summary) = upload(&server, store.path(), &accounts, &["--target-kind", "imap"]);
    assert_eq!(run.code, 0, "{}\n{summary}", run.stderr);
    // 1, 2, 3, 9 byte for byte and 4 converted are there; 5 with another
    // date is another message.
    assert_eq!(total(&summary, "found_at_target"), 5, "{summary}");
    assert_eq!(total(&summary, "appended"), 10 - 5, "{summary}");
    let inbox = bodies(&server, "alice-365", "alice-365-pw", "INBOX");
    let archive = bodies(&server, "alice-365", "alice-365-pw", "Archive");
    for (i, m) in sent.iter().enumerate() {
        let want = if i % 3 == 0 && i < 9 {
            &archive
        } else {
            &inbox
        };
        let copies = want.iter().filter(|b| *b == m).count();
        let expected = usize::from(i != 4);
        assert_eq!(copies, expected, "message {i} at the target {copies} times");
    }
    assert!(inbox.contains(&converted) && inbox.contains(&other_date));
    assert_eq!(
        inbox.len() + archive.len(),
        10 + 1,
        "one extra: the other message"
    );
}

/// Overwrites a blob file with `bytes` as they are.
fn damage(store: &std::path::Path, hash: &str, bytes: Option<&[u8]>) {
    let path = store.join("objects").join(&hash[..2]).join(&hash[2..]);
    match bytes {
        None => std::fs::remove_file(&path).unwrap(),
        Some(b) => std::fs::write(&path, b).unwrap(),
    }
}

#[test]
fn a_damaged_blob_is_named_and_skipped_and_the_next_mirror_fetches_it_again() {
    let server = Dovecot::start();
    let sent = seed(&server, 12);
    let accounts = server.migration_csv(&[PAIR]);
    let store = tempfile::tempdir().unwrap();
    let (run, _) = mirror(&server, store.path(), &accounts, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);

    // Three messages of INBOX, in the middle of it: one file gone, one not
    // zstd at all, one a valid zstd file of other bytes.
    let inbox: Vec<StoredMessage> = stored_messages(store.path())
        .into_iter()
        .filter(|m| m.folder == "INBOX")
        .collect();
    assert!(inbox.len() >= 8);
    let (gone, garbage, impostor) = (&inbox[2], &inbox[4], &inbox[6]);
    damage(store.path(), &gone.hash, None);
    damage(store.path(), &garbage.hash, Some(b"not a blob at all"));
    let other = zstd::encode_all(&b"Subject: impostor\r\n\r\nnot the message\r\n"[..], 3).unwrap();
    damage(store.path(), &impostor.hash, Some(&other));

    let (run, up) = upload(&server, store.path(), &accounts, &["--target-kind", "imap"]);
    assert_eq!(run.code, 1, "incomplete: {}\n{up}", run.stderr);
    assert_eq!(total(&up, "appended"), 13 - 3, "{up}");
    assert_eq!(total(&up, "failed"), 3, "{up}");
    for m in [gone, garbage, impostor] {
        assert!(
            run.stderr.contains(&m.hash),
            "{} not named: {}",
            m.hash,
            run.stderr
        );
    }
    let at_target = contents(&server, "alice-365", "alice-365-pw");
    let everything: Vec<&Vec<u8>> = at_target.values().flatten().collect();
    assert!(
        !everything
            .iter()
            .any(|b| b.windows(8).any(|w| w == b"impostor"))
    );
    for m in [gone, garbage, impostor] {
        assert!(!everything.iter().any(|b| sha256_hex(b) == m.hash));
    }
    let status = mailferry(&[
        "--store",
        store.path().to_str().unwrap(),
        "status",
        "--json",
    ]);
    assert!(status.stdout.contains("damaged"), "{}", status.stdout);

    // Export names what it could not write and writes the rest.
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("eml");
    let export = mailferry(&[
        "--store",
        store.path().to_str().unwrap(),
        "export",
        "--format",
        "eml",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(export.code, 1, "{}", export.stderr);
    assert_eq!(
        export.stderr.matches("not exported:").count(),
        3,
        "{}",
        export.stderr
    );
    let written = walkdir::WalkDir::new(&dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .count();
    assert_eq!(written, 13 - 3);

    // The next mirror fetches the three again, and the upload completes.
    let (run, again) = mirror(&server, store.path(), &accounts, &[]);
    assert_eq!(run.code, 0, "{}\n{again}", run.stderr);
    assert_eq!(total(&again, "blobs_repaired"), 3, "{again}");
    for m in [gone, garbage, impostor] {
        let bytes = blob(store.path(), &m.hash);
        assert_eq!(sha256_hex(&bytes), m.hash);
        assert!(sent.contains(&bytes));
    }
    let (run, up) = upload(&server, store.path(), &accounts, &["--target-kind", "imap"]);
    assert_eq!(run.code, 0, "{}\n{up}", run.stderr);
    assert_eq!(total(&up, "appended"), 3, "{up}");
    assert_eq!(
        contents(&server, "alice-365", "alice-365-pw"),
        contents(&server, "alice", "alice-pw")
    );
}

fn store_cmd(store: &std::path::Path, args: &[&str]) -> Run {
    let mut all = vec!["--store", store.to_str().unwrap()];
    all.extend_from_slice(args);
    mailferry(&all)
}

#[test]
fn a_damaged_index_is_refused_and_an_empty_one_is_explained() {
    let server = Dovecot::start();
    seed(&server, 30);
    let accounts = server.migration_csv(&[PAIR]);
    let store = tempfile::tempdir().unwrap();
    let (run, _) = mirror(&server, store.path(), &accounts, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let index = store.path().join("index.sqlite");
    let pristine = std::fs::read(&index).unwrap();
    assert!(pristine.len() >= 4 * 4096, "{} bytes", pristine.len());

    // Garbage over every page but the first (which holds the schema).
    let mut damaged = pristine.clone();
    for b in &mut damaged[4096..] {
        *b = 0x5a;
    }
    std::fs::write(&index, &damaged).unwrap();
    let run = Run::of(&mut mirror_command(
        &server,
        server.port,
        store.path(),
        &accounts,
        &[],
    ));
    assert_eq!(
        run.code, 2,
        "a mirror on a damaged index must not report success"
    );
    assert!(
        run.stderr.contains("appends nothing twice"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("is damaged"), "{}", run.stderr);
    assert!(run.stderr.contains("objects/"), "{}", run.stderr);
    for cmd in [
        &["status"][..],
        &["verify"],
        &["export", "--format", "eml", "/nonexistent/x"],
    ] {
        let r = store_cmd(store.path(), cmd);
        assert_eq!(r.code, 2, "{cmd:?}: {}{}", r.stdout, r.stderr);
        assert!(r.stderr.contains("is damaged"), "{cmd:?}: {}", r.stderr);
    }
    // The damaged file is left as it was.
    assert_eq!(std::fs::read(&index).unwrap(), damaged);

    // A 0-byte index says what happened and what is at stake.
    std::fs::write(&index, b"").unwrap();
    let r = store_cmd(store.path(), &["status"]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("0 bytes") && r.stderr.contains("read"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("older mailferry"), "{}", r.stderr);
    let (run, summary) = mirror(&server, store.path(), &accounts, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("WARNING") && run.stderr.contains("index"),
        "{}",
        run.stderr
    );
    // Rebuilt from the source; every body is in the store already.
    assert_eq!(total(&summary, "blobs_written"), 0, "{summary}");
}

#[test]
fn verify_and_export_during_a_mirror_say_so_and_report_no_false_faults() {
    let server = Dovecot::start();
    let mut alice = server.client("alice", "alice-pw");
    for i in 0..40 {
        let mut m = message(&format!("m{i}"), &format!("m{i}@x"), "");
        m.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, 400_000));
        m.extend_from_slice(b"\r\n");
        alice.append("INBOX", "", DATE, &m);
    }
    drop(alice);
    let accounts = server.migration_csv(&[PAIR]);
    let store = tempfile::tempdir().unwrap();
    // A slow link keeps the mirror writing while verify and export run.
    let proxy = Proxy::start(
        server.port,
        Faults {
            bytes_per_sec: Some(2_000_000),
            ..Faults::default()
        },
    );
    let mut child = mirror_command(
        &server,
        proxy.port,
        store.path(),
        &accounts,
        &["--connections", "1"],
    )
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    // Some messages recorded, more to come.
    let recorded = |store: &std::path::Path| {
        store.join("index.sqlite").exists()
            && std::panic::catch_unwind(|| stored_messages(store).len()).unwrap_or(0) >= 5
    };
    while !recorded(store.path()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the mirror recorded nothing"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let verify = store_cmd(store.path(), &["verify", "--json"]);
    let out = tempfile::tempdir().unwrap();
    let export = store_cmd(
        store.path(),
        &["export", "--format", "eml", out.path().to_str().unwrap()],
    );
    let still_running = child.try_wait().unwrap().is_none();
    let status = child.wait().unwrap();
    assert!(status.success());
    assert!(
        still_running,
        "the mirror ended before verify and export were done"
    );

    assert_eq!(verify.code, 0, "{}{}", verify.stdout, verify.stderr);
    let report = verify.json();
    assert_eq!(report["faults"].as_array().unwrap().len(), 0, "{report}");
    assert_eq!(report["writer_active"], true, "{report}");
    assert_eq!(export.code, 1, "{}", export.stderr);
    assert!(
        export.stderr.contains("was writing this store"),
        "{}",
        export.stderr
    );

    // Afterwards both are whole and quiet.
    let verify = store_cmd(store.path(), &["verify", "--json"]);
    assert_eq!(verify.code, 0, "{}", verify.stdout);
    assert_eq!(verify.json()["writer_active"], false);
    assert_eq!(verify.json()["blobs_checked"], 40);
}
