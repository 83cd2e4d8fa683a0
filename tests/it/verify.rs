//! `mailferry verify` finds a flipped byte, a deleted blob and an orphan,
//! names each, and exits non-zero; a sound store passes.

use crate::support::*;

const DATE: &str = "03-Mar-2025 10:00:00 +0100";

#[test]
fn verify_names_corrupt_missing_and_orphaned_blobs() {
    let server = Dovecot::start();
    let mut alice = server.client("alice", "alice-pw");
    for i in 0..6 {
        alice.append(
            "INBOX",
            "",
            DATE,
            &message("v", &format!("v{i}@x"), &"text ".repeat(200)),
        );
    }
    let store = tempfile::tempdir().unwrap();
    let accounts = server.accounts_csv(&[("alice", "alice-pw")]);
    let (run, _) = mirror(&server, store.path(), &accounts, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let s = store.path().to_str().unwrap();

    let ok = mailferry(&["--store", s, "verify", "--json"]);
    assert_eq!(ok.code, 0, "{}", ok.stdout);
    assert_eq!(ok.json()["blobs_checked"], 6);
    assert_eq!(ok.json()["faults"].as_array().unwrap().len(), 0);

    let rows = stored_messages(store.path());
    let path = |h: &str| store.path().join("objects").join(&h[..2]).join(&h[2..]);
    // A flipped byte in the middle of one blob.
    let corrupt = path(&rows[0].hash);
    let mut bytes = std::fs::read(&corrupt).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&corrupt, bytes).unwrap();
    // Another deleted.
    let missing = path(&rows[1].hash);
    std::fs::remove_file(&missing).unwrap();
    // A valid blob no row points at.
    let raw = b"Subject: orphan\r\n\r\nnobody points at me\r\n";
    let orphan = path(&sha256_hex(raw));
    std::fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    std::fs::write(&orphan, zstd::encode_all(&raw[..], 3).unwrap()).unwrap();

    let bad = mailferry(&["--store", s, "verify"]);
    assert_eq!(bad.code, 1, "{}", bad.stdout);
    for (kind, p) in [("corrupt", &corrupt), ("missing", &missing)] {
        let line = format!("{kind}: {}", p.display());
        assert!(bad.stdout.contains(&line), "{line} not in:\n{}", bad.stdout);
    }
    // The orphan is a leftover of a stopped run, not a fault, and verify
    // names the command that exists to remove it.
    assert!(bad.stdout.contains("2 faults"), "{}", bad.stdout);
    assert!(
        bad.stdout.contains("1 leftover blob files"),
        "{}",
        bad.stdout
    );
    assert!(
        bad.stdout.contains("`mailferry gc --delete`"),
        "{}",
        bad.stdout
    );
    let json = mailferry(&["--store", s, "verify", "--json"]).json();
    assert_eq!(json["leftovers"][0], orphan.to_str().unwrap());

    // gc lists it, and removes it only when asked.
    let listed = mailferry(&["--store", s, "gc"]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert!(
        listed.stdout.contains(orphan.to_str().unwrap()),
        "{}",
        listed.stdout
    );
    assert!(orphan.exists());
    let removed = mailferry(&["--store", s, "gc", "--delete", "--json"]);
    assert_eq!(removed.code, 0, "{}", removed.stderr);
    assert_eq!(removed.json()["leftovers"].as_array().unwrap().len(), 1);
    assert!(!orphan.exists());
    // Recorded blobs stay, also the damaged and the missing ones' rows.
    assert!(corrupt.exists());
    let again = mailferry(&["--store", s, "verify"]);
    assert!(again.stdout.contains("2 faults"), "{}", again.stdout);
    assert!(!again.stdout.contains("leftover"), "{}", again.stdout);
    // No message names a command mailferry does not have.
    let help = mailferry(&["--help"]);
    for out in [&bad.stdout, &bad.stderr, &listed.stdout] {
        for word in out.split('`').skip(1).step_by(2) {
            if let Some(cmd) = word.strip_prefix("mailferry ") {
                let name = cmd.split_whitespace().next().unwrap();
                assert!(
                    help.stdout.contains(&format!("  {name} ")),
                    "`{word}` in {out}"
                );
            }
        }
    }
}
