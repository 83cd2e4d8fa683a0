//! `mailferry export`: Maildir, eml and mbox files that hold the stored
//! bytes, with flags and dates, under safe and distinct folder paths.

use std::collections::BTreeSet;
use std::path::Path;

use crate::support::*;

const DATE: &str = "15-Jul-2019 23:59:59 -0700";

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn seeded_store() -> (Dovecot, tempfile::TempDir, Vec<Vec<u8>>) {
    let server = Dovecot::start();
    let mut alice = server.client("alice", "alice-pw");
    alice.create("Work");
    alice.create("Work/2024");
    alice.create("a_b");
    alice.create("cur");
    let mut bodies = Vec::new();
    for (i, folder) in ["INBOX", "Work", "Work/2024", "a_b", "cur"]
        .iter()
        .enumerate()
    {
        let body = message(
            folder,
            &format!("e{i}@x"),
            "From the start\r\n>From quoted\r\nend",
        );
        alice.append(folder, "\\Seen \\Flagged", DATE, &body);
        bodies.push(body);
    }
    let store = tempfile::tempdir().unwrap();
    let accounts = server.accounts_csv(&[("alice", "alice-pw")]);
    let (run, _) = mirror(&server, store.path(), &accounts, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    (server, store, bodies)
}

#[test]
fn maildir_and_eml_hold_the_exact_bytes_with_flags_and_dates() {
    let (_server, store, bodies) = seeded_store();
    let want: BTreeSet<Vec<u8>> = bodies.iter().cloned().collect();
    for format in ["maildir", "eml"] {
        let out = tempfile::tempdir().unwrap();
        let run = mailferry(&[
            "--store",
            store.path().to_str().unwrap(),
            "export",
            "--format",
            format,
            out.path().to_str().unwrap(),
        ]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let all = files(out.path());
        let got: BTreeSet<Vec<u8>> = all.iter().map(|p| std::fs::read(p).unwrap()).collect();
        assert_eq!(got, want, "{format}");
        assert_eq!(all.len(), bodies.len());
        for p in &all {
            let modified = std::fs::metadata(p).unwrap().modified().unwrap();
            let secs = modified
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            assert_eq!(secs, instant(DATE), "{}", p.display());
            if format == "maildir" {
                assert!(p.to_str().unwrap().ends_with(":2,FS"), "{}", p.display());
                assert_eq!(p.parent().unwrap().file_name().unwrap(), "cur");
            }
        }
        // Nested folders nest; a folder named like a Maildir part is renamed.
        let account = out.path().join("alice@example.com");
        assert!(account.join("Work").join("2024").exists(), "{format}");
        assert!(account.join("cur_").exists(), "{format}");
        assert!(account.join("a_b").exists(), "{format}");
    }
}

#[test]
fn mbox_quotes_from_lines_reversibly() {
    let (_server, store, bodies) = seeded_store();
    let out = tempfile::tempdir().unwrap();
    let run = mailferry(&[
        "--store",
        store.path().to_str().unwrap(),
        "export",
        "--format",
        "mbox",
        "--folder",
        "Work",
        out.path().to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mbox = std::fs::read(out.path().join("alice@example.com").join("Work.mbox")).unwrap();
    // Undo mboxrd: drop the From line and the trailing blank line, remove
    // one '>' from quoted From lines.
    let text = mbox.strip_prefix(b"From MAILER-DAEMON ").unwrap();
    let body_start = text.iter().position(|&b| b == b'\n').unwrap() + 1;
    let body = &text[body_start..text.len() - 1];
    let mut restored = Vec::new();
    for line in body.split_inclusive(|&b| b == b'\n') {
        let quotes = line.iter().take_while(|&&b| b == b'>').count();
        if quotes > 0 && line[quotes..].starts_with(b"From ") {
            restored.extend_from_slice(&line[1..]);
        } else {
            restored.extend_from_slice(line);
        }
    }
    let mut want = bodies[1].clone();
    if !want.ends_with(b"\n") {
        want.push(b'\n');
    }
    assert_eq!(restored, want);
}

#[test]
fn every_folder_gets_its_own_mbox_and_every_message_is_counted() {
    let server = Dovecot::start_with(DovecotConfig {
        fs_layout: true,
        ..DovecotConfig::default()
    });
    let mut alice = server.client("alice", "alice-pw");
    // `a.b` and `a.c` once both became a.mbox, the second truncating the first.
    let folders = ["a.b", "a.c", "x", "x.mbox", "x.mbox/y", "X"];
    let mut n = 0;
    for (i, f) in folders.iter().enumerate() {
        alice.create(f);
        for j in 0..=i {
            alice.append(f, "", DATE, &message(f, &format!("{i}.{j}@x"), "text"));
            n += 1;
        }
    }
    let store = tempfile::tempdir().unwrap();
    let accounts = server.accounts_csv(&[("alice", "alice-pw")]);
    let (run, _) = mirror(&server, store.path(), &accounts, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out = tempfile::tempdir().unwrap();
    let run = mailferry(&[
        "--store",
        store.path().to_str().unwrap(),
        "export",
        "--format",
        "mbox",
        out.path().to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("exported {n} of {n} messages")),
        "{}",
        run.stderr
    );
    let mboxes = files(out.path());
    assert_eq!(mboxes.len(), folders.len(), "{mboxes:?}");
    let mut entries = 0;
    for p in &mboxes {
        let text = std::fs::read(p).unwrap();
        entries += text
            .split(|&b| b == b'\n')
            .filter(|l| l.starts_with(b"From MAILER-DAEMON "))
            .count();
    }
    assert_eq!(entries, n, "messages in all mbox files");
}

#[test]
fn export_then_import_gives_back_every_message_byte_for_byte() {
    let (_server, store, _bodies) = seeded_store();
    let original: BTreeSet<String> = stored_messages(store.path())
        .into_iter()
        .map(|m| m.hash)
        .collect();
    for format in ["maildir", "eml", "mbox"] {
        let out = tempfile::tempdir().unwrap();
        let run = mailferry(&[
            "--store",
            store.path().to_str().unwrap(),
            "export",
            "--format",
            format,
            out.path().to_str().unwrap(),
        ]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let fresh = tempfile::tempdir().unwrap();
        let dir = out.path().join("alice@example.com");
        for _ in 0..2 {
            // Twice: a second import adds nothing.
            let run = mailferry(&[
                "--store",
                fresh.path().to_str().unwrap(),
                "import",
                dir.to_str().unwrap(),
                "--account",
                "old@example.com",
            ]);
            assert_eq!(run.code, 0, "{format}: {}", run.stderr);
        }
        let rows = stored_messages(fresh.path());
        assert_eq!(rows.len(), original.len(), "{format}: {rows:?}");
        let imported: BTreeSet<String> = rows.iter().map(|m| m.hash.clone()).collect();
        assert_eq!(imported, original, "{format}");
        assert!(rows.iter().all(|r| r.account == "old@example.com"));
        if format != "mbox" {
            assert!(
                rows.iter().all(|r| r.internal_date == Some(instant(DATE))),
                "{format}"
            );
        }
        if format == "maildir" {
            assert!(
                rows.iter().all(|r| r.flags == "\\Flagged \\Seen"),
                "{rows:?}"
            );
        }
        let folders: BTreeSet<String> = rows.iter().map(|r| r.folder.clone()).collect();
        assert!(folders.contains("Work/2024"), "{format}: {folders:?}");
    }
}

#[test]
fn an_import_never_mixes_with_a_mirrored_account() {
    let (server, store, _bodies) = seeded_store();
    let out = tempfile::tempdir().unwrap();
    let s = store.path().to_str().unwrap();
    let o = out.path().to_str().unwrap();
    let run = mailferry(&["--store", s, "export", "--format", "eml", o]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let before = stored_messages(store.path());
    // Into the name a mirror fills: refused, the store untouched.
    let dir = out.path().join("alice@example.com");
    let d = dir.to_str().unwrap();
    let run = mailferry(&["--store", s, "import", d, "--account", "alice@example.com"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("already holds alice@example.com as an account mirrored from"),
        "{}",
        run.stderr
    );
    assert_eq!(stored_messages(store.path()).len(), before.len());
    // Under its own name it goes in; a mirror of that name is then refused.
    let run = mailferry(&["--store", s, "import", d, "--account", "bob@example.com"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let accounts = server.accounts_csv(&[("bob", "bob-pw")]);
    let (run, summary) = mirror(&server, store.path(), &accounts, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        summary.to_string().contains("as mail imported from files"),
        "{summary}"
    );
    let after = stored_messages(store.path());
    assert!(
        after.iter().all(|m| !m.expunged),
        "nothing taken for expunged"
    );
}

#[test]
fn an_import_uploaded_into_a_filled_mailbox_leaves_flags_alone() {
    let (server, store, _bodies) = seeded_store();
    let s = store.path().to_str().unwrap();
    let accounts = server.migration_csv(&[("alice", "alice-pw", "alice-365", "alice-365-pw")]);
    let (run, _) = upload(&server, store.path(), &accounts, &["--target-kind", "imap"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let flags = |server: &Dovecot| {
        let mut c = server.client("alice-365", "alice-365-pw");
        let mut all = Vec::new();
        for folder in c.folders() {
            for m in c.messages(&folder) {
                all.push((folder.clone(), m.flags.join(" ")));
            }
        }
        all.sort();
        all
    };
    let before = flags(&server);
    assert!(
        before.iter().all(|(_, f)| f.contains("\\Seen")),
        "{before:?}"
    );
    // The same mail as .eml files (no flags), imported and sent to the
    // same mailbox.
    let out = tempfile::tempdir().unwrap();
    let run = mailferry(&[
        "--store",
        s,
        "export",
        "--format",
        "eml",
        out.path().to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let dir = out.path().join("alice@example.com");
    let name = "import:alice@example.com";
    let run = mailferry(&[
        "--store",
        s,
        "import",
        dir.to_str().unwrap(),
        "--account",
        name,
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let csv = store.path().join("import.csv");
    std::fs::write(
        &csv,
        format!(
            "EmailAddress,UserName,Password,TargetAddress,TargetPassword\n\
             {name},unused,unused,alice-365,alice-365-pw\n"
        ),
    )
    .unwrap();
    let (run, summary) = upload(&server, store.path(), &csv, &["--target-kind", "imap"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // Export names a folder called "cur" apart from Maildir's own "cur", so
    // that one arrives as a folder of its own; the rest is already there.
    assert_eq!(total(&summary, "already_present"), 4, "{summary}");
    assert_eq!(total(&summary, "flags_pushed"), 0, "{summary}");
    let after = flags(&server);
    assert!(
        before.iter().all(|m| after.contains(m)),
        "{before:?}\n{after:?}"
    );
    // And the mirrored account's next upload has nothing to undo.
    let (run, again) = upload(&server, store.path(), &accounts, &["--target-kind", "imap"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(total(&again, "flags_pushed"), 0, "{again}");
}
