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

/// `mailferry --store STORE ARGS…` pointed at the emulator, its index in `work`.
fn in_store(store: &str, work: &std::path::Path, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mailferry"));
    cmd.args(["--store", store]).args(args);
    in_azure(&mut cmd, work);
    cmd
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
    assert!(remote.exists(lease.snapshot.as_deref().unwrap()).unwrap());

    let upload_from = |work: &std::path::Path| {
        let mut cmd = upload_command(
            &server,
            server.port,
            store,
            &csv,
            &["--target-kind", "imap"],
        );
        in_azure(&mut cmd, work);
        Run::of(&mut cmd)
    };
    // Another machine (another working directory) uploads from the store.
    let run = upload_from(elsewhere.path());
    assert_eq!(run.code, 0, "{}", run.stderr);
    // What it says it asked counts the lease's, snapshots' and intents'
    // requests with the blobs': 8 blob reads, an intent per target folder
    // (2) written and removed, the snapshot restored and written, the lease
    // taken and released, at least.
    let said: u64 = run
        .stderr
        .split("object storage: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of requests: {}", run.stderr));
    assert!(said >= 8 + 2 * 2 + 2 + 2, "{said} requests said");
    for target in ["alice-365", "bob-365"] {
        let got = server
            .client(target, &format!("{target}-pw"))
            .messages("INBOX");
        assert_eq!(got.len(), 4, "{target}");
    }
    assert!(elsewhere.path().join("shard-0-of-1/index.sqlite").exists());

    // The first machine's index is older than the store's now: it restores
    // the newer one, and appends nothing twice.
    let run = upload_from(here.path());
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
    // The report of the batch shows each shard's state.
    let page = viewer.path().join("report.html");
    let run = Run::of(in_store(&url, viewer.path(), &["report", "--html"]).arg(&page));
    assert!(run.code <= 1, "{}", run.stderr);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        html.contains(r#"data-shard="0/1" data-value="finished""#),
        "no shard in the report"
    );
    // Certificate checks turned off through the SDKs' switch are said loudly.
    let mut cmd = in_store(&url, viewer.path(), &["status", "--json", "-"]);
    let run = Run::of(cmd.env("AZURE_ALLOW_INVALID_CERTIFICATES", "true"));
    assert!(
        run.stderr
            .contains("WARNING: AZURE_ALLOW_INVALID_CERTIFICATES"),
        "{}",
        run.stderr
    );

    // While one worker runs the shard, a second one is refused.
    let held = Store::open_at(
        &place(&url, here.path(), Shard::new(0, 1).unwrap()),
        Creation::Refused,
    )
    .unwrap();
    let status = status_of(&url, viewer.path());
    assert_eq!(status["shards"][0]["state"], "running", "{status}");
    let run = Run::of(&mut in_store(&url, viewer.path(), &["gc", "--delete"]));
    assert_ne!(run.code, 0, "gc while a shard runs: {}", run.stderr);
    assert!(
        run.stderr.contains("shard 0/1 is running"),
        "{}",
        run.stderr
    );
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
    let run = Run::of(&mut in_store(url, work, &["status", "--json", "-"]));
    assert!(run.code == 0 || run.code == 1, "{}", run.stderr);
    run.json()
}

/// The bytes of every file under `dir`, sorted.
fn files_under(dir: &std::path::Path) -> Vec<Vec<u8>> {
    let mut all: Vec<Vec<u8>> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| std::fs::read(e.path()).unwrap())
        .collect();
    all.sort();
    all
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

/// The two places a store can be, for tests that must hold in both: a
/// directory, and a container in Azurite (with its working directory).
struct Backend {
    name: &'static str,
    /// `--store`'s value.
    store: String,
    work: tempfile::TempDir,
    _dir: Option<tempfile::TempDir>,
}

impl Backend {
    fn both() -> Vec<Backend> {
        let dir = tempfile::tempdir().unwrap();
        vec![
            Backend {
                name: "directory",
                store: dir.path().join("store").to_str().unwrap().to_string(),
                work: tempfile::tempdir().unwrap(),
                _dir: Some(dir),
            },
            Backend {
                name: "azure",
                store: Azurite::shared().container("both"),
                work: tempfile::tempdir().unwrap(),
                _dir: None,
            },
        ]
    }

    fn place(&self) -> Place {
        if self.name == "directory" {
            Place::Dir(self.store.clone().into())
        } else {
            place(&self.store, self.work.path(), Shard::new(0, 1).unwrap())
        }
    }

    fn cmd(&self, cmd: &mut std::process::Command) {
        in_azure(cmd, self.work.path());
    }

    /// `mailferry --store STORE ARGS…` on this backend.
    fn run(&self, args: &[&str]) -> Run {
        Run::of(&mut in_store(&self.store, self.work.path(), args))
    }

    /// Replaces the stored blob `hash` with `bytes`, or removes it.
    fn damage(&self, hash: &str, bytes: Option<&[u8]>) {
        let name = format!("objects/{}/{}", &hash[..2], &hash[2..]);
        if self.name == "directory" {
            let path = std::path::Path::new(&self.store).join(&name);
            match bytes {
                Some(b) => {
                    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                    std::fs::write(path, b).unwrap()
                }
                None => std::fs::remove_file(path).unwrap(),
            }
        } else {
            let remote = remote(&self.store);
            match bytes {
                Some(b) => {
                    remote.put(&name, b.to_vec()).unwrap();
                }
                None => remote.delete(&name).unwrap(),
            }
        }
    }
}

#[test]
fn in_both_places_blobs_are_the_bytes_given_and_racing_writers_make_one() {
    for b in Backend::both() {
        let store = std::sync::Arc::new(Store::open_at(&b.place(), Creation::Allowed).unwrap());
        // Bytes no mail parser likes: kept as they are.
        let mut odd = b"From: \xff\xfe\r\nSubject: =?bad?=\r\n\r\n\x00\x01".to_vec();
        odd.extend((0..=255u8).cycle().take(70_000));
        let w = store.write_blob(&odd).unwrap();
        assert_eq!(w.hash.to_hex(), sha256_hex(&odd), "{}", b.name);
        assert_eq!(store.read_blob(&w.hash).unwrap(), odd, "{}", b.name);
        for round in 0..10 {
            let body = message(&format!("race {round}"), &format!("r{round}@x"), "same");
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(6));
            let writers: Vec<_> = (0..6)
                .map(|_| {
                    let (store, barrier, body) = (store.clone(), barrier.clone(), body.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        store.write_blob(&body).unwrap()
                    })
                })
                .collect();
            let created = writers
                .into_iter()
                .map(|w| w.join().unwrap())
                .filter(|w| w.created)
                .count();
            assert_eq!(created, 1, "{}: round {round}", b.name);
            assert_eq!(
                store
                    .read_blob(&mailferry::store::BlobHash::of(&body))
                    .unwrap(),
                body,
                "{}",
                b.name
            );
        }
        // A batch holding one content twice (two UIDs) makes it once.
        use mailferry::store::{BlobHash, Source};
        let bodies: Vec<Vec<u8>> = (0..20)
            .map(|i| message(&format!("batch {i}"), &format!("bb{i}@x"), "small"))
            .collect();
        let mut srcs: Vec<(Source<'_>, BlobHash)> = bodies
            .iter()
            .map(|b| (Source::Bytes(b), BlobHash::of(b)))
            .collect();
        srcs.push((Source::Bytes(&bodies[3]), BlobHash::of(&bodies[3])));
        let writes = store.write_blobs(&srcs).unwrap();
        assert_eq!(writes.len(), 21, "{}", b.name);
        assert_eq!(
            writes.iter().filter(|w| w.created).count(),
            20,
            "{}",
            b.name
        );
        assert!(writes[3].created && !writes[20].created, "{}", b.name);
        assert!(writes.iter().all(|w| w.stored_size.is_some()), "{}", b.name);
        store.close().unwrap();
    }
}

#[test]
fn in_both_places_verify_names_a_corrupt_and_a_missing_blob_and_mirror_mends_them() {
    let server = Dovecot::start();
    let mut alice = server.client("alice", "alice-pw");
    for i in 0..5 {
        let body = "text ".repeat(100 + i);
        alice.append("INBOX", "", DATE, &message("v", &format!("v{i}@x"), &body));
    }
    let csv = server.accounts_csv(&[("alice", "alice-pw")]);
    for b in Backend::both() {
        let store = std::path::Path::new(&b.store);
        let mut cmd = mirror_command(&server, server.port, store, &csv, &[]);
        b.cmd(&mut cmd);
        let run = Run::of(&mut cmd);
        assert_eq!(run.code, 0, "{}: {}", b.name, run.stderr);
        let verify = |b: &Backend| b.run(&["verify", "--json"]);
        let sound = verify(&b);
        assert_eq!(
            sound.code, 0,
            "{}: {}{}",
            b.name, sound.stdout, sound.stderr
        );
        assert_eq!(sound.json()["blobs_checked"], 5, "{}", b.name);

        let hashes: Vec<String> = (0..5)
            .map(|i| sha256_hex(&message("v", &format!("v{i}@x"), &"text ".repeat(100 + i))))
            .collect();
        b.damage(&hashes[0], Some(b"not what it was"));
        b.damage(&hashes[1], None);
        let bad = verify(&b);
        assert_eq!(bad.code, 1, "{}: {}{}", b.name, bad.stdout, bad.stderr);
        let faults = bad.json()["faults"].as_array().unwrap().clone();
        assert_eq!(faults.len(), 2, "{}: {faults:?}", b.name);
        for (kind, hash) in [("corrupt", &hashes[0]), ("missing", &hashes[1])] {
            let f = faults
                .iter()
                .find(|f| f["kind"] == kind)
                .unwrap_or_else(|| panic!("{}: no {kind} in {faults:?}", b.name));
            let path = f["path"].as_str().unwrap();
            assert!(path.ends_with(&hash[2..]), "{}: {path}", b.name);
            assert!(
                path.starts_with(&b.store),
                "{}: {path} names the store",
                b.name
            );
        }
        assert_eq!(bad.json()["marked_for_refetch"], 2, "{}", b.name);

        // The next mirror fetches both again; the store is whole.
        let mut cmd = mirror_command(&server, server.port, store, &csv, &[]);
        b.cmd(&mut cmd);
        let run = Run::of(&mut cmd);
        assert_eq!(run.code, 0, "{}: {}", b.name, run.stderr);
        let mended = verify(&b);
        assert_eq!(
            mended.code, 0,
            "{}: {}{}",
            b.name, mended.stdout, mended.stderr
        );

        // A blob nobody names (a run stopped before its rows): a leftover,
        // not a fault; gc lists it and removes it when asked.
        let raw = b"Subject: orphan\r\n\r\nnobody points at me\r\n";
        let orphan = sha256_hex(raw);
        b.damage(&orphan, Some(&zstd::encode_all(&raw[..], 3).unwrap()));
        let seen = verify(&b);
        assert_eq!(seen.code, 0, "{}: {}", b.name, seen.stdout);
        let leftovers = seen.json()["leftovers"].as_array().unwrap().clone();
        assert_eq!(leftovers.len(), 1, "{}: {leftovers:?}", b.name);
        assert!(leftovers[0].as_str().unwrap().ends_with(&orphan[2..]));
        let gc = |delete: bool| {
            b.run(if delete {
                &["gc", "--json", "--delete"][..]
            } else {
                &["gc", "--json"][..]
            })
        };
        let listed = gc(false);
        assert_eq!(listed.code, 0, "{}: {}", b.name, listed.stderr);
        assert_eq!(listed.json()["leftovers"].as_array().unwrap().len(), 1);
        let removed = gc(true);
        assert_eq!(removed.code, 0, "{}: {}", b.name, removed.stderr);
        let after = verify(&b);
        assert_eq!(
            after.json()["leftovers"].as_array().unwrap().len(),
            0,
            "{}",
            b.name
        );
        assert_eq!(after.json()["blobs_checked"], 5, "{}: mail kept", b.name);
    }
}

#[test]
fn in_both_places_a_mirror_killed_mid_write_is_continued_whole_by_the_next() {
    use std::time::{Duration, Instant};
    let server = Dovecot::start();
    let mut alice = server.client("alice", "alice-pw");
    let mut distinct = std::collections::HashSet::new();
    for i in 0..240 {
        let mut m = message(&format!("k{i}"), &format!("k{i}@x"), &format!("body {i}"));
        if i % 8 == 0 {
            m.extend(std::iter::repeat_n(b'q', 120_000));
            m.extend_from_slice(b"\r\n");
        }
        distinct.insert(sha256_hex(&m));
        alice.append("INBOX", "", DATE, &m);
    }
    let csv = server.accounts_csv(&[("alice", "alice-pw")]);
    for b in Backend::both() {
        let store = std::path::Path::new(&b.store);
        let command = || {
            let mut cmd = mirror_command(&server, server.port, store, &csv, &[]);
            b.cmd(&mut cmd);
            // A killed worker's hold on its shard lapses quickly here.
            cmd.env("MAILFERRY_LEASE", "2s");
            cmd.stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null());
            cmd
        };
        // Killed at three points of the first run, each time sooner after
        // the start than a whole run takes.
        let mut kills = 0;
        for after in [150, 400, 800] {
            let mut child = command().spawn().unwrap();
            let deadline = Instant::now() + Duration::from_millis(after);
            while Instant::now() < deadline && child.try_wait().unwrap().is_none() {
                std::thread::sleep(Duration::from_millis(5));
            }
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap();
                kills += 1;
            }
            child.wait().unwrap();
            // Another worker may take the shard only once the lease lapses.
            std::thread::sleep(Duration::from_millis(2_100));
        }
        assert!(kills >= 1, "{}: no run was killed mid-way", b.name);
        let mut last = command();
        last.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let run = Run::of(&mut last);
        assert_eq!(run.code, 0, "{}: {}", b.name, run.stderr);
        let verified = b.run(&["verify", "--json"]);
        assert_eq!(verified.code, 0, "{}: {}", b.name, verified.stdout);
        let v = verified.json();
        assert_eq!(v["blobs_checked"], distinct.len(), "{}: {v}", b.name);
        assert_eq!(v["faults"].as_array().unwrap().len(), 0, "{}: {v}", b.name);
        let status = b.run(&["status", "--json", "-"]).json();
        assert_eq!(status["accounts"][0]["stored"], 240, "{}: {status}", b.name);
    }
}

#[test]
fn in_both_places_export_writes_every_stored_message_byte_for_byte() {
    let server = Dovecot::start();
    let mut sent = Vec::new();
    for user in ["alice", "bob"] {
        let mut c = server.client(user, &format!("{user}-pw"));
        for i in 0..3 {
            let mut m = message(&format!("{user} {i}"), &format!("{user}-x{i}@x"), "body");
            m.extend_from_slice(b"bare\nLF and \xe9 8-bit\r\n");
            c.append("INBOX", "", DATE, &m);
        }
        // The bytes as the server serves them (it may have rewritten some).
        sent.extend(c.messages("INBOX").into_iter().map(|m| m.body));
    }
    let csv = server.accounts_csv(&[("alice", "alice-pw"), ("bob", "bob-pw")]);
    for b in Backend::both() {
        // Two shards, so that the export reads two indexes.
        for shard in ["0/2", "1/2"] {
            let mut cmd = mirror_command(
                &server,
                server.port,
                std::path::Path::new(&b.store),
                &csv,
                &["--shard", shard],
            );
            b.cmd(&mut cmd);
            let run = Run::of(&mut cmd);
            assert_eq!(run.code, 0, "{}: {}", b.name, run.stderr);
        }
        let out = tempfile::tempdir().unwrap();
        let eml = out.path().join("eml");
        let run = b.run(&["export", "--format", "eml", eml.to_str().unwrap()]);
        assert_eq!(run.code, 0, "{}: {}", b.name, run.stderr);
        let got = files_under(out.path());
        let mut want = sent.clone();
        want.sort();
        assert_eq!(got.len(), want.len(), "{}", b.name);
        assert!(
            got == want,
            "{}: the exported bytes differ from those sent",
            b.name
        );
    }
}

/// Writes a migration CSV named `name` mapping each source `s{i}` to `{to}{i}`.
fn batch_csv(server: &Dovecot, name: &str, to: &str) -> std::path::PathBuf {
    let mut text = String::from("EmailAddress,UserName,Password,TargetAddress,TargetPassword\n");
    for i in 0..12 {
        text.push_str(&format!("s{i}@example.com,s{i},pw,{to}{i},pw\n"));
    }
    let path = server.dir().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts `cmd` and SIGKILLs it once `after` has passed; true when it was
/// still running then (killed mid-way).
fn kill_after(mut cmd: std::process::Command, after: std::time::Duration) -> bool {
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    running
}

/// Per account, what status says, without the target's name (the
/// single-machine run uploads into other mailboxes).
fn per_account(status: &serde_json::Value) -> Vec<serde_json::Value> {
    let mut out: Vec<serde_json::Value> = status["accounts"]
        .as_array()
        .unwrap_or_else(|| panic!("no accounts in {status}"))
        .iter()
        .map(|a| {
            let mut keep = serde_json::Map::new();
            for k in [
                "account",
                "folders",
                "at_source",
                "stored",
                "stored_bytes",
                "uploaded",
                "already_present",
                "skipped",
                "failed",
                "pending",
                "state",
            ] {
                assert!(!a[k].is_null(), "no {k} in {a}");
                keep.insert(k.into(), a[k].clone());
            }
            serde_json::Value::Object(keep)
        })
        .collect();
    out.sort_by_key(|a| a["account"].as_str().unwrap().to_string());
    out
}

#[test]
fn twelve_accounts_on_four_shards_with_one_killed_and_moved_land_once() {
    use std::time::Duration;
    let mut users = Vec::new();
    for i in 0..12 {
        for prefix in ["s", "t", "b"] {
            users.push((format!("{prefix}{i}"), "pw".to_string()));
        }
    }
    let server = Dovecot::start_with(DovecotConfig {
        users,
        ..DovecotConfig::default()
    });
    // The same message in every mailbox: stored once across the shards.
    let everywhere = message("to all staff", "all-staff@x", "the same for all");
    let mut distinct = std::collections::HashSet::from([sha256_hex(&everywhere)]);
    for i in 0..12 {
        let mut c = server.client(&format!("s{i}"), "pw");
        c.append("INBOX", "", DATE, &everywhere);
        for j in 0..40 {
            let mut m = message(&format!("s{i} m{j}"), &format!("s{i}-{j}@x"), "body");
            if j % 5 == 0 {
                m.extend(std::iter::repeat_n(b'w', 80_000));
                m.extend_from_slice(b"\r\n");
            }
            c.append("INBOX", "", DATE, &m);
        }
    }
    for i in 0..12 {
        for m in server.client(&format!("s{i}"), "pw").messages("INBOX") {
            distinct.insert(sha256_hex(&m.body));
        }
    }
    let sharded_csv = batch_csv(&server, "sharded.csv", "t");
    let single_csv = batch_csv(&server, "single.csv", "b");
    // The shard with the most accounts is the one killed.
    let mut per_shard = [0; 4];
    for i in 0..12 {
        per_shard[Shard::of(&format!("s{i}@example.com"), 4) as usize] += 1;
    }
    let victim = (0..4).max_by_key(|&s| per_shard[s]).unwrap() as u32;

    // One machine, one store directory: the baseline.
    let single = tempfile::tempdir().unwrap();
    let (run, _) = mirror(&server, single.path(), &single_csv, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (run, _) = upload(
        &server,
        single.path(),
        &single_csv,
        &["--target-kind", "imap"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let baseline = mailferry(&[
        "--store",
        single.path().to_str().unwrap(),
        "status",
        "--json",
        "-",
    ])
    .json();

    // Four workers at once on one store in Azure storage.
    let url = Azurite::shared().container("four");
    let store = std::path::Path::new(&url);
    let works: Vec<tempfile::TempDir> = (0..5).map(|_| tempfile::tempdir().unwrap()).collect();
    let moved = works[4].path();
    let stage = |make: &dyn Fn(&str, &std::path::Path) -> std::process::Command| {
        let killed = std::thread::scope(|scope| {
            let mut killer = None;
            let mut others = Vec::new();
            for s in 0..4u32 {
                let mut cmd = make(&format!("{s}/4"), works[s as usize].path());
                cmd.env("MAILFERRY_LEASE", "3s");
                if s == victim {
                    killer = Some(scope.spawn(move || kill_after(cmd, Duration::from_millis(700))));
                } else {
                    others.push(scope.spawn(move || Run::of(&mut cmd)));
                }
            }
            for o in others {
                let run = o.join().unwrap();
                assert_eq!(run.code, 0, "{}", run.stderr);
            }
            killer.unwrap().join().unwrap()
        });
        assert!(killed, "shard {victim} was still running when killed");
        // "Elsewhere": another working directory, once the lease lapsed.
        std::thread::sleep(Duration::from_millis(3_200));
        let mut cmd = make(&format!("{victim}/4"), moved);
        let run = Run::of(&mut cmd);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert!(
            run.stderr.contains(&format!("shard {victim}/4")),
            "{}",
            run.stderr
        );
    };
    stage(&|shard, work| {
        let mut cmd = mirror_command(
            &server,
            server.port,
            store,
            &sharded_csv,
            &["--shard", shard],
        );
        in_azure(&mut cmd, work);
        cmd
    });
    stage(&|shard, work| {
        let mut cmd = upload_command(
            &server,
            server.port,
            store,
            &sharded_csv,
            &["--target-kind", "imap", "--shard", shard],
        );
        in_azure(&mut cmd, work);
        cmd
    });

    // Every message landed once, in its own mailbox.
    for i in 0..12 {
        let mut want: Vec<Vec<u8>> = server
            .client(&format!("s{i}"), "pw")
            .messages("INBOX")
            .into_iter()
            .map(|m| m.body)
            .collect();
        let mut got: Vec<Vec<u8>> = server
            .client(&format!("t{i}"), "pw")
            .messages("INBOX")
            .into_iter()
            .map(|m| m.body)
            .collect();
        want.sort();
        got.sort();
        assert_eq!(got.len(), want.len(), "t{i}");
        assert!(got == want, "t{i} holds other messages than s{i}");
    }
    // Each content once in the store, the shared one too.
    assert_eq!(remote(&url).list("objects").unwrap().len(), distinct.len());
    // The batch's status from the store equals the single machine's.
    let viewer = tempfile::tempdir().unwrap();
    let merged = status_of(&url, viewer.path());
    assert_eq!(merged["complete"], true, "{merged}");
    assert_eq!(baseline["complete"], true, "{baseline}");
    assert_eq!(per_account(&merged), per_account(&baseline));
    let states: Vec<&str> = merged["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["finished"; 4], "{merged}");
    // Each run's last snapshot holds what its intents said: none is left.
    let left: Vec<String> = remote(&url)
        .list("index")
        .unwrap()
        .into_iter()
        .map(|(name, _)| name)
        .filter(|name| name.contains(".intents/"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_shards_cutover_gives_the_whole_batch_as_every_shard_left_it() {
    let server = Dovecot::start();
    let mut names = Vec::new();
    for user in ["alice", "bob"] {
        server.client(user, &format!("{user}-pw")).append(
            "INBOX",
            "",
            DATE,
            &message(user, &format!("{user}-c@x"), "x"),
        );
        names.push(format!("{user}@example.com"));
    }
    let csv = server.migration_csv(&[
        ("alice", "alice-pw", "alice-365", "alice-365-pw"),
        ("bob", "bob-pw", "bob-365", "bob-365-pw"),
    ]);
    let url = Azurite::shared().container("cutover");
    let work = tempfile::tempdir().unwrap();
    let run_shard = |i: u32| {
        let shard = format!("{i}/2");
        let mut args = vec![
            "--store".to_string(),
            url.clone(),
            "cutover".into(),
            "--json".into(),
            "--shard".into(),
            shard.clone(),
            "--accounts".into(),
            csv.to_str().unwrap().into(),
        ];
        args.extend(source_flags(&server));
        args.extend(target_flags(&server));
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mailferry"));
        cmd.args(&args);
        in_azure(&mut cmd, &work.path().join(format!("w{i}")));
        let run = Run::of(&mut cmd);
        assert!(run.code <= 1, "{}", run.stderr);
        run.json()
    };
    // Shards in the order their accounts fall: the first has its own done
    // and the other's shard not run yet.
    let first = Shard::of(&names[0], 2);
    let one = run_shard(first);
    assert_eq!(one["complete"], true, "its own accounts: {one:#}");
    assert_eq!(one["batch"]["accounts"], 2, "{one:#}");
    assert_eq!(one["batch"]["complete"], false, "{one:#}");
    let other = one["batch"]["shards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["shard"] != format!("{first}/2"))
        .cloned()
        .unwrap();
    if Shard::of(&names[1], 2) != first {
        assert_eq!(other["state"], "missing", "{one:#}");
        assert_eq!(one["batch"]["accounts_complete"], 1, "{one:#}");
        let two = run_shard(1 - first);
        assert_eq!(two["batch"]["accounts_complete"], 2, "{two:#}");
        assert_eq!(two["batch"]["complete"], true, "{two:#}");
    } else {
        // Both accounts in one shard: the other shard never runs.
        assert_eq!(one["batch"]["accounts_complete"], 2, "{one:#}");
    }
}

#[test]
fn a_running_worker_writes_its_index_to_the_store_at_intervals_and_keeps_its_lease() {
    let url = Azurite::shared().container("intervals");
    let work = tempfile::tempdir().unwrap();
    let shard = Shard::new(1, 3).unwrap();
    let Place::Objects(mut p) = place(&url, work.path(), shard) else {
        unreachable!()
    };
    p.snapshot_every = std::time::Duration::from_secs(1);
    p.lease = std::time::Duration::from_secs(3);
    let store = Store::open_at(&Place::Objects(p), Creation::Allowed).unwrap();
    let remote = remote(&url);
    let lease = || {
        mailferry::store::shards::read_lease(&remote, shard)
            .unwrap()
            .unwrap()
            .0
    };
    assert_eq!(lease().generation, 0, "no snapshot yet");
    std::thread::sleep(std::time::Duration::from_millis(3_500));
    let running = lease();
    assert_eq!(running.state, "running");
    assert!(running.generation >= 2, "{running:?}");
    // Renewed: past its first expiry, still live.
    assert!(
        running.expires_at > mailferry::store::index::now(),
        "{running:?}"
    );
    assert!(remote.exists(running.snapshot.as_deref().unwrap()).unwrap());
    store.close().unwrap();
    let ended = lease();
    assert_eq!(ended.state, "released");
    assert_eq!(ended.generation, running.generation + 1);
    // Each snapshot is an object of its own; the one before is removed.
    let copies: Vec<String> = remote
        .list("index")
        .unwrap()
        .into_iter()
        .map(|(name, _)| name)
        .filter(|n| n.ends_with(".sqlite"))
        .collect();
    assert_eq!(copies, [ended.snapshot.clone().unwrap()], "{copies:?}");
}

#[test]
fn a_wrong_storage_key_is_a_clear_error_that_never_shows_the_key() {
    let server = alice_with_one_message();
    let csv = server.accounts_csv(&[("alice", "alice-pw")]);
    let url = Azurite::shared().container("wrong-key");
    let work = tempfile::tempdir().unwrap();
    let wrong = "d3JvbmctYnV0LXdlbGwtZm9ybWVkLWtleS1mb3ItdGhlLXRlc3Q=";
    let mut cmd = mirror_command(&server, server.port, std::path::Path::new(&url), &csv, &[]);
    in_azure(&mut cmd, work.path());
    cmd.env("AZURE_STORAGE_ACCOUNT_KEY", wrong);
    let run = Run::of(&mut cmd);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains(&url), "names the store: {}", run.stderr);
    assert!(
        run.stderr.contains("403"),
        "says what the service said: {}",
        run.stderr
    );
    assert!(!run.stderr.contains(wrong) && !run.stdout.contains(wrong));
}

#[test]
fn in_s3_too_a_store_keeps_each_content_once_exactly_and_one_worker_per_shard() {
    use crate::support::moto::Moto;
    let s3 = Moto::shared();
    let url = s3.bucket("batch");
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("md");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    let mut sent = Vec::new();
    for i in 0..3 {
        let m = message(&format!("s3 {i}"), &format!("s3-{i}@x"), "bare\nLF \u{e9}");
        std::fs::write(maildir.join("cur").join(format!("{i}.mail:2,S")), &m).unwrap();
        sent.push(m);
    }
    // The same content a second time.
    std::fs::write(maildir.join("cur").join("3.mail:2,S"), &sent[0]).unwrap();
    let work = dir.path().join("work");
    let run = |args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mailferry"));
        cmd.args(["--store", &url]).args(args);
        for (k, v) in s3.env() {
            cmd.env(k, v);
        }
        cmd.env("MAILFERRY_WORK_DIR", &work);
        Run::of(&mut cmd)
    };
    let imported = run(&[
        "import",
        maildir.to_str().unwrap(),
        "--account",
        "s3@example.com",
    ]);
    assert_eq!(imported.code, 0, "{}", imported.stderr);
    let verified = run(&["verify", "--json"]);
    assert_eq!(verified.code, 0, "{}", verified.stdout);
    assert_eq!(verified.json()["blobs_checked"], 3);
    let out = dir.path().join("eml");
    let exported = run(&["export", "--format", "eml", out.to_str().unwrap()]);
    assert_eq!(exported.code, 0, "{}", exported.stderr);
    let got = files_under(&out);
    // import keeps one message per content in a folder.
    let mut want = sent.clone();
    want.sort();
    assert_eq!(got.len(), want.len(), "files exported: {}", exported.stderr);
    assert!(
        got == want,
        "the exported bytes differ from the files imported"
    );

    // One worker per shard, with S3's conditional writes.
    let held = Store::open_at(
        &Place::Objects(ObjectPlace {
            url: mailferry::store::remote::ObjectUrl::parse(&url)
                .unwrap()
                .unwrap(),
            settings: s3.settings(),
            work: dir.path().join("elsewhere"),
            shard: Shard::new(0, 1).unwrap(),
            lease: std::time::Duration::from_secs(60),
            snapshot_every: std::time::Duration::from_secs(300),
        }),
        Creation::Refused,
    )
    .unwrap();
    let refused = run(&[
        "import",
        maildir.to_str().unwrap(),
        "--account",
        "s3@example.com",
    ]);
    assert_ne!(refused.code, 0, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("being run by another worker"),
        "{}",
        refused.stderr
    );
    assert!(!refused.stderr.contains("s3-secret-never-shown"));
    held.close().unwrap();
}

#[test]
fn a_worker_whose_lease_is_taken_stops_and_writes_nothing_over_the_new_holder() {
    let server = Dovecot::start();
    let mut alice = server.client("alice", "alice-pw");
    for i in 0..100 {
        let body = "x".repeat(20_000);
        alice.append(
            "INBOX",
            "",
            DATE,
            &message(&format!("t{i}"), &format!("t{i}@x"), &body),
        );
    }
    let csv = server.accounts_csv(&[("alice", "alice-pw")]);
    let url = Azurite::shared().container("taken");
    let work = tempfile::tempdir().unwrap();
    // Slow enough (about 10 s) for the lease to be renewed a few times.
    let mut cmd = mirror_command(
        &server,
        server.port,
        std::path::Path::new(&url),
        &csv,
        &["--max-rate", "200k"],
    );
    in_azure(&mut cmd, work.path());
    cmd.env("MAILFERRY_LEASE", "3s");
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let remote = remote(&url);
    let shard = Shard::new(0, 1).unwrap();
    let started = std::time::Instant::now();
    while mailferry::store::shards::read_lease(&remote, shard)
        .unwrap()
        .is_none()
    {
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(1_500));
    // Another worker takes the shard over (as after an expiry).
    let thief = serde_json::json!({
        "holder": "elsewhere/pid 1/thief",
        "expires_at": mailferry::store::index::now() + 600,
        "state": "running",
        "generation": 0,
        "snapshot_at": null,
        "snapshot": null,
    });
    remote
        .put(
            "index/shard-0-of-1.lease",
            serde_json::to_vec(&thief).unwrap(),
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("taken by another worker"), "{stderr}");
    let (now, _) = mailferry::store::shards::read_lease(&remote, shard)
        .unwrap()
        .unwrap();
    assert_eq!(
        now.holder, "elsewhere/pid 1/thief",
        "the new holder's lease stands"
    );
    assert_eq!(
        now.snapshot, None,
        "no snapshot written over the new holder's"
    );
}
