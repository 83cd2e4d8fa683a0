//! Wrong data from hostile or broken servers: a scripted IMAP server
//! (tests/support/hostile.rs) as the source, a real Dovecot as the target
//! where an upload is part of the story.

use crate::support::hostile::{HostileFolder, HostileMessage, HostileScript, HostileServer};
use crate::support::*;

fn msg(subject: &str, id: &str, body: &str) -> Vec<u8> {
    message(subject, id, body)
}

fn store_cmd(store: &std::path::Path, args: &[&str]) -> Run {
    let mut all = vec!["--store", store.to_str().unwrap()];
    all.extend_from_slice(args);
    mailferry(&all)
}

fn upload_into(server: &Dovecot, hostile: &HostileServer, store: &std::path::Path) -> Run {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mailferry"));
    cmd.env_remove("MAILFERRY_STORE")
        .arg("--store")
        .arg(store)
        .args(["upload", "--json", "--accounts"])
        .arg(hostile.accounts())
        .args(target_flags(server));
    Run::of(&mut cmd)
}

#[test]
fn an_unknown_internaldate_stays_unknown_and_the_upload_uses_the_date_header() {
    let with_date = msg("dated", "d@x", "has a date");
    let no_date = msg("nodate", "n@x", "the server sends no INTERNALDATE");
    let bad_date = msg("baddate", "b@x", "the server sends a date nobody can read");
    let mut m2 = HostileMessage::new(2, &no_date);
    m2.internal_date = None;
    let mut m3 = HostileMessage::new(3, &bad_date);
    m3.internal_date = Some("sometime last week".into());
    let hostile = HostileServer::start(
        vec![HostileFolder::new(
            "INBOX",
            vec![HostileMessage::new(1, &with_date), m2, m3],
        )],
        HostileScript::default(),
    );
    let store = tempfile::tempdir().unwrap();
    let (run, summary) = hostile.mirror(store.path(), &[]);
    assert_eq!(run.code, 0, "{}\n{summary}", run.stderr);
    assert_eq!(total(&summary, "dates_unknown"), 2, "{summary}");
    assert!(run.stderr.contains("INTERNALDATE"), "{}", run.stderr);
    let rows = stored_messages(store.path());
    let date_of = |uid: u32| rows.iter().find(|r| r.uid == uid).unwrap().internal_date;
    assert_eq!(date_of(1), Some(instant("03-Mar-2025 10:00:00 +0100")));
    assert_eq!(date_of(2), None, "never 1970");
    assert_eq!(date_of(3), None);

    // Uploaded with the Date header's instant, not 1970 and not today.
    let server = Dovecot::start();
    let run = upload_into(&server, &hostile, store.path());
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    let header_date = instant("03-Mar-2025 10:00:00 +0100");
    for m in server.client("alice-365", "alice-365-pw").messages("INBOX") {
        assert_eq!(
            instant(&m.internal_date),
            header_date,
            "{:?}",
            m.internal_date
        );
    }
}

/// A message of `size` bytes whose byte at `at` (from the start) is `b`.
fn big(id: &str, size: usize, at: usize, b: u8) -> Vec<u8> {
    let mut m = msg("big", id, "");
    let fill = size - m.len() - 2;
    m.extend(std::iter::repeat_n(b'a', fill));
    m.extend_from_slice(b"\r\n");
    if at > 0 {
        m[at] = b;
    }
    m
}

#[test]
fn re_pointing_after_a_new_uidvalidity_is_confirmed_or_not_done() {
    let same_small = msg("s", "small@x", "the same small message");
    let same_big = big("big@x", 100_000, 0, 0);
    let changed_small = msg("c", "changed@x", "the body before");
    // Re-pointing samples the bytes at 32 KiB (and elsewhere): a change
    // there is seen; one between the samples would not be.
    let changed_big = big("changed-big@x", 100_000, 32 * 1024 + 100, b'Z');
    let original_big = big("changed-big@x", 100_000, 0, 0);
    assert_eq!(changed_big.len(), original_big.len());
    let messages = |small: &[u8], big: &[u8]| {
        vec![
            HostileMessage::new(1, &same_small),
            HostileMessage::new(2, &same_big),
            HostileMessage::new(3, small),
            HostileMessage::new(4, big),
        ]
    };
    let hostile = HostileServer::start(
        vec![HostileFolder::new(
            "INBOX",
            messages(&changed_small, &original_big),
        )],
        HostileScript::default(),
    );
    let store = tempfile::tempdir().unwrap();
    let (run, summary) = hostile.mirror(store.path(), &[]);
    assert_eq!(run.code, 0, "{}\n{summary}", run.stderr);

    // A new UIDVALIDITY; two messages keep Message-ID, size and date but
    // not their bytes (one in its first line of text, one deep inside).
    let changed_small_now = msg("c", "changed@x", "the body after!");
    assert_eq!(changed_small_now.len(), changed_small.len());
    hostile.with_folders(|f| {
        f[0].uidvalidity = 8;
        f[0].messages = messages(&changed_small_now, &changed_big);
    });
    let (run, summary) = hostile.mirror(store.path(), &[]);
    assert_eq!(run.code, 0, "{}\n{summary}", run.stderr);
    assert_eq!(total(&summary, "bodies_skipped_as_stored"), 2, "{summary}");
    assert_eq!(total(&summary, "bodies_fetched"), 2, "{summary}");
    let live: Vec<StoredMessage> = stored_messages(store.path())
        .into_iter()
        .filter(|m| !m.expunged)
        .collect();
    let hash_of = |uid: u32| live.iter().find(|m| m.uid == uid).unwrap().hash.clone();
    assert_eq!(hash_of(1), sha256_hex(&same_small));
    assert_eq!(hash_of(2), sha256_hex(&same_big));
    assert_eq!(hash_of(3), sha256_hex(&changed_small_now));
    assert_eq!(hash_of(4), sha256_hex(&changed_big));
}

#[test]
fn two_different_bodies_for_one_uid_are_fetched_again_or_reported() {
    let good = msg("good", "g@x", "the real one");
    let flaky = msg("flaky", "f@x", "what the server means");
    let liar = msg("liar", "l@x", "never the same twice");
    let mut m2 = HostileMessage::new(2, &flaky);
    m2.second_body = Some(msg("flaky", "f@x", "a stray copy of something else"));
    m2.second_body_times = 1;
    let mut m3 = HostileMessage::new(3, &liar);
    m3.second_body = Some(msg("liar", "l@x", "a different story every time"));
    let hostile = HostileServer::start(
        vec![HostileFolder::new(
            "INBOX",
            vec![HostileMessage::new(1, &good), m2, m3],
        )],
        HostileScript::default(),
    );
    let store = tempfile::tempdir().unwrap();
    let (run, summary) = hostile.mirror(store.path(), &[]);
    assert_eq!(run.code, 1, "{}\n{summary}", run.stderr);
    let errors = summary["accounts"][0]["folder_errors"].to_string();
    assert!(
        errors.contains("two different bodies") && errors.contains("UID 3"),
        "{errors}"
    );
    let rows = stored_messages(store.path());
    let hashes: Vec<&str> = rows.iter().map(|r| r.hash.as_str()).collect();
    assert!(hashes.contains(&sha256_hex(&good).as_str()));
    // Asked alone, the flaky one came once: that copy is kept.
    assert!(hashes.contains(&sha256_hex(&flaky).as_str()), "{rows:?}");
    assert!(
        !rows.iter().any(|r| r.uid == 3),
        "the liar is not guessed at"
    );
}

#[test]
fn uid_zero_line_breaks_in_names_and_huge_names_are_reported_not_dropped() {
    let long_name = format!("Projects/{}", "x".repeat(10_000));
    let hostile = HostileServer::start(
        vec![
            HostileFolder::new(
                "INBOX",
                vec![
                    HostileMessage::new(0, &msg("zero", "z@x", "UID 0")),
                    HostileMessage::new(1, &msg("one", "o@x", "fine")),
                ],
            ),
            HostileFolder::new(
                "Evil\r\nA001 DELETE INBOX",
                vec![HostileMessage::new(1, &msg("e", "e@x", "e"))],
            ),
            HostileFolder::new(
                &long_name,
                vec![HostileMessage::new(1, &msg("l", "l@x", "l"))],
            ),
        ],
        HostileScript::default(),
    );
    let store = tempfile::tempdir().unwrap();
    let (run, summary) = hostile.mirror(store.path(), &[]);
    assert_eq!(run.code, 1, "{}\n{summary}", run.stderr);
    let errors = summary["accounts"][0]["folder_errors"].to_string();
    assert!(errors.contains("UID 0"), "{errors}");
    assert!(errors.contains("line break"), "{errors}");
    // The line break never reached the server inside a command.
    assert!(
        !hostile.commands().iter().any(|c| c.contains("DELETE")),
        "{:?}",
        hostile.commands()
    );
    // The rest is stored: INBOX's good message and the long-named folder.
    assert_eq!(stored_messages(store.path()).len(), 2);
    // A second run says so again (the folder is not taken as complete).
    let (run, _) = hostile.mirror(store.path(), &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);

    // Export handles the 10,000-character name.
    let out = tempfile::tempdir().unwrap();
    for format in ["maildir", "mbox", "eml"] {
        let dir = out.path().join(format);
        let r = store_cmd(
            store.path(),
            &["export", "--format", format, dir.to_str().unwrap()],
        );
        assert_eq!(r.code, 0, "{format}: {}", r.stderr);
        assert!(
            r.stderr.contains("exported 2 of 2"),
            "{format}: {}",
            r.stderr
        );
    }
}

#[test]
fn an_endless_line_fails_the_connection_with_a_clear_error() {
    let hostile = HostileServer::start(
        vec![HostileFolder::new("INBOX", vec![])],
        HostileScript {
            endless_line: Some(50 << 20),
        },
    );
    let store = tempfile::tempdir().unwrap();
    let (run, summary) = hostile.mirror(store.path(), &["--io-timeout", "10"]);
    assert_eq!(run.code, 1, "{}\n{summary}", run.stderr);
    let error = summary["accounts"][0]["error"].to_string();
    assert!(error.contains("line of more than 4 MiB"), "{summary}");
}

#[test]
fn folders_whose_fallback_names_meet_stay_apart() {
    // " " becomes "_" by the map; "~" is refused by the target and its
    // fallback would be "_" too.
    let hostile = HostileServer::start(
        vec![
            HostileFolder::new(" ", vec![HostileMessage::new(1, &msg("a", "a@x", "a"))]),
            HostileFolder::new("~", vec![HostileMessage::new(1, &msg("b", "b@x", "b"))]),
        ],
        HostileScript::default(),
    );
    let store = tempfile::tempdir().unwrap();
    let (run, summary) = hostile.mirror(store.path(), &[]);
    assert_eq!(run.code, 0, "{}\n{summary}", run.stderr);
    let server = Dovecot::start();
    let proxy = crate::support::exchange::ExchangeProxy::start(
        &server,
        crate::support::exchange::ExchangeFaults {
            reserved: vec!["~".into()],
            ..Default::default()
        },
    );
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mailferry"));
    cmd.env_remove("MAILFERRY_STORE")
        .arg("--store")
        .arg(store.path())
        .args(["upload", "--json", "--accounts"])
        .arg(hostile.accounts())
        .args(["--target-kind", "imap", "--target-host", "localhost"])
        .args(["--target-port", &proxy.port.to_string(), "--target-ca-file"])
        .arg(&server.ca_file);
    let run = Run::of(&mut cmd);
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    let mut target = server.client("alice-365", "alice-365-pw");
    let mut folders: Vec<(String, usize)> = target
        .folders()
        .into_iter()
        .filter(|f| f != "INBOX")
        .map(|f| {
            let n = target.messages(&f).len();
            (f, n)
        })
        .collect();
    folders.sort();
    assert_eq!(
        folders,
        vec![("_".to_string(), 1), ("_ (2)".to_string(), 1)]
    );
}

/// Folders for the many-folders test; `MAILFERRY_FOLDERS` raises it (the
/// benchmark in scripts/bench-folders.sh runs 100,000 in release mode).
fn folder_count() -> usize {
    std::env::var("MAILFERRY_FOLDERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

#[test]
fn many_folders_cost_one_round_trip_when_nothing_changed() {
    let n = folder_count();
    let mut folders: Vec<HostileFolder> = (0..n)
        .map(|i| HostileFolder::new(&format!("F{i:06}"), vec![]))
        .collect();
    folders[n / 2].messages.push(HostileMessage::new(
        1,
        &msg("one", "one@x", "in the middle"),
    ));
    let hostile = HostileServer::start(folders, HostileScript::default());
    let store = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let (run, first) = hostile.mirror(store.path(), &[]);
    let first_secs = started.elapsed().as_secs_f64();
    assert_eq!(run.code, 0, "{}\n{first}", run.stderr);
    assert_eq!(total(&first, "folders_new"), n as u64);
    assert_eq!(total(&first, "bodies_fetched"), 1);

    hostile.clear_commands();
    let started = std::time::Instant::now();
    let (run, again) = hostile.mirror(store.path(), &[]);
    let again_secs = started.elapsed().as_secs_f64();
    assert_eq!(run.code, 0, "{}\n{again}", run.stderr);
    assert_eq!(total(&again, "folders_checked"), n as u64, "{again}");
    assert_eq!(total(&again, "folders_synced"), 0, "{again}");
    // LOGIN, CAPABILITY/ID and one LIST-STATUS; no folder is opened.
    let opened = hostile
        .commands()
        .iter()
        .filter(|c| c.starts_with("EXAMINE") || c.starts_with("STATUS"))
        .count();
    assert_eq!(opened, 0);
    assert!(total(&again, "round_trips") <= 5, "{again}");
    // For the benchmark script; never asserted on.
    println!("BENCH folders={n} first_mirror_s={first_secs:.2} noop_mirror_s={again_secs:.2}");
}

/// Peak resident memory (VmHWM) of a child while it runs, in bytes.
fn peak_rss(mut child: std::process::Child) -> (std::process::ExitStatus, u64) {
    let path = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    loop {
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Some(line) = text.lines().find(|l| l.starts_with("VmHWM:"))
        {
            let kib: u64 = line
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            peak = peak.max(kib * 1024);
        }
        if let Some(status) = child.try_wait().unwrap() {
            return (status, peak);
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

#[test]
fn sizes_that_lie_do_not_take_memory_past_the_budget() {
    // 24 messages of 4 MiB each, every one declared as 100 bytes.
    let messages: Vec<HostileMessage> = (1..=24u32)
        .map(|uid| {
            let mut body = msg("big", &format!("big{uid}@x"), "");
            body.extend(std::iter::repeat_n(b'a' + (uid % 26) as u8, 4 << 20));
            body.extend_from_slice(b"\r\n");
            let mut m = HostileMessage::new(uid, &body);
            m.claimed_size = Some(100);
            m
        })
        .collect();
    let hostile = HostileServer::start(
        vec![HostileFolder::new("INBOX", messages)],
        HostileScript::default(),
    );
    let store = tempfile::tempdir().unwrap();
    let child = hostile
        .mirror_command(store.path(), &["--max-memory-mib", "16"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (status, peak) = peak_rss(child);
    assert!(status.success());
    assert_eq!(stored_messages(store.path()).len(), 24);
    println!("peak RSS {} MiB", peak >> 20);
    // 96 MiB arrived; held at once: the 16 MiB budget, one message in
    // the parser and its copy, and the program itself.
    assert!(peak < 80 << 20, "peak RSS {} MiB", peak >> 20);
}

#[test]
fn one_large_message_goes_through_a_file_not_memory() {
    // 48 MiB in one message: held whole it costs that (and more) in RSS.
    let mut body = msg("huge", "huge@x", "");
    for i in 0..(48 << 20) / 64 {
        body.extend_from_slice(format!("{i:062}\r\n").as_bytes());
    }
    let hostile = HostileServer::start(
        vec![HostileFolder::new(
            "INBOX",
            vec![
                HostileMessage::new(1, &body),
                HostileMessage::new(2, &msg("small", "s@x", "small")),
            ],
        )],
        HostileScript::default(),
    );
    let store = tempfile::tempdir().unwrap();
    let child = hostile
        .mirror_command(store.path(), &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (status, peak) = peak_rss(child);
    assert!(status.success());
    println!("peak RSS {} MiB", peak >> 20);
    let rows = stored_messages(store.path());
    let huge = rows.iter().find(|r| r.uid == 1).unwrap();
    assert_eq!(huge.hash, sha256_hex(&body));
    assert_eq!(blob(store.path(), &huge.hash), body);
    // Nothing left behind in tmp/.
    assert_eq!(
        std::fs::read_dir(store.path().join("tmp")).unwrap().count(),
        0
    );
    assert!(
        peak < 40 << 20,
        "peak RSS {} MiB for a 48 MiB message",
        peak >> 20
    );
}

#[test]
fn a_different_second_body_after_the_first_was_stored_is_still_caught() {
    // Declared sizes of 1 byte make every message go to the store as soon
    // as it arrives, before its second copy does.
    let liar = msg("liar", "l@x", "first story");
    let mut m1 = HostileMessage::new(1, &liar);
    m1.claimed_size = Some(1);
    m1.second_body = Some(msg("liar", "l@x", "second story"));
    let once = msg("once", "o@x", "stray copy once");
    let mut m2 = HostileMessage::new(2, &once);
    m2.claimed_size = Some(1);
    m2.second_body = Some(msg("once", "o@x", "a stray copy"));
    m2.second_body_times = 1;
    let hostile = HostileServer::start(
        vec![HostileFolder::new("INBOX", vec![m1, m2])],
        HostileScript::default(),
    );
    let store = tempfile::tempdir().unwrap();
    let (run, summary) = hostile.mirror(store.path(), &[]);
    assert_eq!(run.code, 1, "{}\n{summary}", run.stderr);
    let errors = summary["accounts"][0]["folder_errors"].to_string();
    assert!(
        errors.contains("two different bodies") && errors.contains("UID 1"),
        "{errors}"
    );
    assert!(!errors.contains("UID 2"), "{errors}");
    let rows = stored_messages(store.path());
    let uid2 = rows.iter().find(|r| r.uid == 2).expect("UID 2 stored");
    assert_eq!(uid2.hash, sha256_hex(&once));
}

#[test]
fn a_folder_with_uids_past_the_search_window_is_searched_in_windows() {
    let messages = |uids: &[u32]| -> Vec<HostileMessage> {
        uids.iter()
            .map(|&u| HostileMessage::new(u, &msg("m", &format!("{u}@x"), &format!("uid {u}"))))
            .collect()
    };
    let hostile = HostileServer::start(
        vec![HostileFolder::new(
            "INBOX",
            messages(&[1, 250_000, 450_001]),
        )],
        HostileScript::default(),
    );
    let store = tempfile::tempdir().unwrap();
    let (run, summary) = hostile.mirror(store.path(), &[]);
    assert_eq!(run.code, 0, "{}\n{summary}", run.stderr);
    // One message goes; the count no longer adds up, and a search settles it.
    hostile.with_folders(|f| f[0].messages.retain(|m| m.uid != 250_000));
    hostile.clear_commands();
    let (run, summary) = hostile.mirror(store.path(), &[]);
    assert_eq!(run.code, 0, "{}\n{summary}", run.stderr);
    assert_eq!(total(&summary, "messages_expunged"), 1, "{summary}");
    let searches: Vec<String> = hostile
        .commands()
        .into_iter()
        .filter(|c| c.starts_with("UID SEARCH"))
        .collect();
    assert_eq!(
        searches,
        vec![
            "UID SEARCH UID 1:200000",
            "UID SEARCH UID 200001:400000",
            "UID SEARCH UID 400001:*"
        ]
    );
    let live: Vec<u32> = stored_messages(store.path())
        .iter()
        .filter(|m| !m.expunged)
        .map(|m| m.uid)
        .collect();
    assert_eq!(live, vec![1, 450_001]);
}
