//! The store in object storage (Azurite, Microsoft's Azure Storage
//! emulator) as in a directory: the same bytes back, each message stored
//! once, damage found.

use crate::support::azurite::Azurite;
use crate::support::*;
use mailferry::shard::Shard;
use mailferry::store::{Creation, ObjectPlace, Place, Store};

pub fn place(url: &str, work: &std::path::Path, shard: Shard) -> Place {
    Place::Objects(ObjectPlace {
        url: mailferry::store::remote::ObjectUrl::parse(url)
            .unwrap()
            .unwrap(),
        settings: Azurite::shared().settings(),
        work: work.to_path_buf(),
        shard,
        lease: std::time::Duration::from_secs(60),
        snapshot_every: std::time::Duration::from_secs(300),
    })
}

#[test]
fn blobs_in_azure_storage_come_back_byte_for_byte_and_once() {
    let azurite = Azurite::shared();
    let url = azurite.container("batch");
    let work = tempfile::tempdir().unwrap();
    let store = Store::open_at(
        &place(&url, work.path(), Shard::new(0, 1).unwrap()),
        Creation::Allowed,
    )
    .unwrap();
    assert!(store.made());
    let raw = b"Subject: x\r\n\r\nhello \xff\x00 bytes\r\n";
    let w = store.write_blob(raw).unwrap();
    assert_eq!(w.hash.to_hex(), sha256_hex(raw));
    assert!(w.created);
    assert_eq!(store.read_blob(&w.hash).unwrap(), raw);
    let again = store.write_blob(raw).unwrap();
    assert!(
        !again.created,
        "a second write of the same bytes makes nothing"
    );
    store.close().unwrap();
}

/// `cmd` pointed at the emulator, with its index in `work`.
fn in_azure(cmd: &mut std::process::Command, work: &std::path::Path) {
    for (k, v) in Azurite::shared().env() {
        cmd.env(k, v);
    }
    cmd.env("MAILFERRY_WORK_DIR", work)
        .env_remove("MAILFERRY_SHARDS")
        .env_remove("JOB_COMPLETION_INDEX");
}

#[test]
fn a_batch_in_azure_storage_uploads_from_another_machine_once() {
    let server = Dovecot::start();
    let same = message("same", "same@x", "in both mailboxes");
    for user in ["alice", "bob"] {
        let mut c = server.client(user, &format!("{user}-pw"));
        for i in 0..3 {
            c.append(
                "INBOX",
                "",
                DATE,
                &message(&format!("{user} {i}"), &format!("{user}-{i}@x"), "body"),
            );
        }
        c.append("INBOX", "", DATE, &same);
    }
    let csv = server.migration_csv(&[
        ("alice", "alice-pw", "alice-365", "alice-365-pw"),
        ("bob", "bob-pw", "bob-365", "bob-365-pw"),
    ]);
    let url = Azurite::shared().container("mail");
    let store = std::path::Path::new(&url);
    let (here, elsewhere) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());

    let mut cmd = mirror_command(&server, server.port, store, &csv, &[]);
    in_azure(&mut cmd, here.path());
    let run = Run::of(&mut cmd);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("store: {url}")),
        "{}",
        run.stderr
    );
    // Eight messages, seven contents: the one in both mailboxes once.
    let remote = remote(&url);
    let objects = remote.list("objects").unwrap();
    assert_eq!(objects.len(), 7, "{objects:?}");
    let (lease, _) = mailferry::store::shards::read_lease(&remote, Shard::new(0, 1).unwrap())
        .unwrap()
        .expect("the shard's lease");
    assert_eq!(lease.state, "released");
    assert_eq!(lease.generation, 1);
    assert!(remote.exists("index/shard-0-of-1.sqlite").unwrap());

    // Another machine (another working directory) uploads from the store.
    let mut cmd = upload_command(
        &server,
        server.port,
        store,
        &csv,
        &["--target-kind", "imap"],
    );
    in_azure(&mut cmd, elsewhere.path());
    let run = Run::of(&mut cmd);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for target in ["alice-365", "bob-365"] {
        let got = server
            .client(target, &format!("{target}-pw"))
            .messages("INBOX");
        assert_eq!(got.len(), 4, "{target}");
    }
    assert!(elsewhere.path().join("shard-0-of-1/index.sqlite").exists());

    // The first machine's index is older than the store's now: it restores
    // the newer one, and appends nothing twice.
    let mut cmd = upload_command(
        &server,
        server.port,
        store,
        &csv,
        &["--target-kind", "imap"],
    );
    in_azure(&mut cmd, here.path());
    let run = Run::of(&mut cmd);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let counted = |key: &str| -> u64 {
        run.json()["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["counts"][key].as_u64().unwrap())
            .sum()
    };
    assert_eq!(counted("appended"), 0, "{}", run.stdout);
    assert_eq!(
        counted("already_present"),
        8,
        "known from the restored index"
    );
    for target in ["alice-365", "bob-365"] {
        let got = server
            .client(target, &format!("{target}-pw"))
            .messages("INBOX");
        assert_eq!(got.len(), 4, "{target} after a second upload");
    }

    // One view of the batch from the store, on a third machine.
    let viewer = tempfile::tempdir().unwrap();
    let status = status_of(&url, viewer.path());
    assert_eq!(status["complete"], true, "{status}");
    assert_eq!(status["shards"][0]["shard"], "0/1", "{status}");
    assert_eq!(status["shards"][0]["state"], "finished", "{status}");
    let stored: u64 = status["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["stored"].as_u64().unwrap())
        .sum();
    assert_eq!(stored, 8, "{status}");

    // While one worker runs the shard, a second one is refused.
    let held = Store::open_at(
        &place(&url, here.path(), Shard::new(0, 1).unwrap()),
        Creation::Refused,
    )
    .unwrap();
    let status = status_of(&url, viewer.path());
    assert_eq!(status["shards"][0]["state"], "running", "{status}");
    let mut cmd = mirror_command(&server, server.port, store, &csv, &[]);
    in_azure(&mut cmd, elsewhere.path());
    let run = Run::of(&mut cmd);
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("being run by another worker"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains(crate::support::azurite::KEY),
        "no secret shown"
    );
    held.close().unwrap();
    // And a batch split another way is refused, naming the count it has.
    let mut cmd = mirror_command(&server, server.port, store, &csv, &["--shard", "0/2"]);
    in_azure(&mut cmd, elsewhere.path());
    let run = Run::of(&mut cmd);
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("--shards 1"), "{}", run.stderr);
}

/// `status --json` of the store at `url`, read from `work`.
fn status_of(url: &str, work: &std::path::Path) -> serde_json::Value {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mailferry"));
    cmd.args(["--store", url, "status", "--json", "-"]);
    in_azure(&mut cmd, work);
    let run = Run::of(&mut cmd);
    assert!(run.code == 0 || run.code == 1, "{}", run.stderr);
    run.json()
}

fn remote(url: &str) -> mailferry::store::remote::Remote {
    mailferry::store::remote::Remote::new(
        &mailferry::store::remote::ObjectUrl::parse(url)
            .unwrap()
            .unwrap(),
        &Azurite::shared().settings(),
    )
    .unwrap()
}

const DATE: &str = "03-Mar-2025 10:00:00 +0100";
