//! The migration workflow against real Dovecot servers: status side by side
//! with what the target really holds, `verify --target`, preflight and
//! cutover.

use std::collections::BTreeMap;
use std::path::Path;

use crate::support::*;

const DATE: &str = "03-Mar-2025 10:00:00 +0100";

/// `mailferry --store STORE <args…> --accounts A` with the target settings
/// pointing at `server`.
fn with_target(server: &Dovecot, store: &Path, accounts: &Path, args: &[&str]) -> Run {
    let mut all: Vec<&str> = vec!["--store", store.to_str().unwrap()];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--accounts", accounts.to_str().unwrap()]);
    mailferry_with(&all, &[target_flags(server)])
}

/// Messages per folder at the target, as an independent client counts them.
fn target_counts(server: &Dovecot, user: &str, pw: &str) -> BTreeMap<String, u64> {
    let mut c = server.client(user, pw);
    let mut out = BTreeMap::new();
    for folder in c.folders() {
        out.insert(folder.clone(), c.messages(&folder).len() as u64);
    }
    out
}

fn seed(server: &Dovecot) {
    let mut a = server.client("alice", "alice-pw");
    a.create("Archive");
    a.create("Sent");
    for i in 0..5 {
        let id = format!("in{i}@x");
        a.append(
            "INBOX",
            "\\Seen",
            DATE,
            &message(&format!("in {i}"), &id, "hello"),
        );
    }
    for i in 0..3 {
        let id = format!("ar{i}@x");
        a.append(
            "Archive",
            "",
            DATE,
            &message(&format!("ar {i}"), &id, "old"),
        );
    }
    a.append("Sent", "\\Seen", DATE, &message("sent", "sent@x", "bye"));
    // A second copy of one INBOX message: uploaded once, counted as a duplicate.
    a.append("INBOX", "", DATE, &message("in 0", "in0@x", "hello"));
    // Too large for the 1 MiB limit the upload is given below.
    let big = message("big attachment", "big@x", &"x".repeat(1_500_000));
    a.append("Archive", "", DATE, &big);
}

#[test]
fn status_equals_the_target_and_verify_target_finds_what_went_missing() {
    let server = Dovecot::start();
    seed(&server);
    let store = tempfile::tempdir().unwrap();
    let accounts = server.migration_csv(&[("alice", "alice-pw", "alice-365", "alice-365-pw")]);
    let (run, _) = mirror(&server, store.path(), &accounts, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (run, summary) = upload(
        &server,
        store.path(),
        &accounts,
        &["--target-kind", "imap", "--max-message-mib", "1"],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    assert_eq!(total(&summary, "appended"), 9, "{summary}");

    // status --json, per target folder, equals what the target holds.
    let status = mailferry(&[
        "--store",
        store.path().to_str().unwrap(),
        "status",
        "--json",
    ]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    let snap = status.json();
    let held = target_counts(&server, "alice-365", "alice-365-pw");
    let mut ledger = BTreeMap::new();
    for t in snap["targets"].as_array().unwrap() {
        let n = t["uploaded"].as_u64().unwrap() + t["already_present"].as_u64().unwrap();
        ledger.insert(t["folder"].as_str().unwrap().to_string(), n);
    }
    let held_nonempty: BTreeMap<String, u64> = held.into_iter().filter(|(_, n)| *n > 0).collect();
    assert_eq!(ledger, held_nonempty, "{snap:#}");

    // Per source folder, side by side.
    let folder = |name: &str| find_in(&snap["folders"], "folder", name);
    let inbox = folder("INBOX");
    assert_eq!(inbox["at_source"], 6);
    assert_eq!(inbox["stored"], 6);
    assert_eq!(inbox["uploaded"], 6, "both copies are at the target as one");
    assert_eq!(inbox["pending"], 0);
    let archive = folder("Archive");
    assert_eq!(archive["stored"], 4);
    assert_eq!(archive["uploaded"], 3);
    assert_eq!(archive["skipped"], 1);
    assert_eq!(archive["pending"], 0);
    assert_eq!(archive["target"], "alice-365");
    let account = &snap["accounts"][0];
    assert_eq!(account["account"], "alice@example.com");
    assert_eq!(account["stored"], 11);
    assert_eq!(
        account["uploaded"], 10,
        "the duplicate copy counts as uploaded"
    );
    assert_eq!(account["skipped"], 1);
    assert_eq!(account["pending"], 0);
    assert_eq!(snap["not_uploaded"][0]["subject"], "big attachment");

    // The one-line summary says the same.
    let lines = mailferry(&[
        "--store",
        store.path().to_str().unwrap(),
        "status",
        "--summary",
    ]);
    let line = lines
        .stdout
        .lines()
        .find(|l| l.starts_with("alice@example.com"))
        .unwrap_or_else(|| panic!("{}", lines.stdout));
    let numbers: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(numbers[1], "complete", "{line}");
    assert_eq!(numbers[2], "100%", "{line}");
    assert_eq!(&numbers[3..5], ["11", "11"], "{line}");

    // Everything is there.
    let check = with_target(
        &server,
        store.path(),
        &accounts,
        &["verify", "--target", "--json"],
    );
    assert_eq!(check.code, 0, "{}\n{}", check.stderr, check.stdout);
    let c = check.json();
    assert_eq!(c["accounts"][0]["expected"], 9, "{c:#}");
    assert_eq!(c["accounts"][0]["found"], 9, "{c:#}");
    assert_eq!(c["accounts"][0]["missing"], 0);
    assert_eq!(c["accounts"][0]["extras"], 0);

    // Someone deletes a message and a whole folder at the target, and
    // new mail arrives there.
    let mut t = server.client("alice-365", "alice-365-pw");
    let inbox_uids: Vec<u32> = t.messages("INBOX").iter().map(|m| m.uid).collect();
    t.expunge_uid("INBOX", inbox_uids[2]);
    t.delete_folder("Sent");
    t.append(
        "INBOX",
        "",
        DATE,
        &message("new mail", "new@x", "arrived at the target"),
    );
    drop(t);
    let check = with_target(
        &server,
        store.path(),
        &accounts,
        &["verify", "--target", "--json"],
    );
    assert_eq!(check.code, 1, "{}\n{}", check.stderr, check.stdout);
    let c = check.json();
    let a = &c["accounts"][0];
    assert_eq!(a["missing"], 2, "{c:#}");
    assert_eq!(a["extras"], 1, "{c:#}");
    let sent = find_in(&a["folders"], "folder", "Sent");
    assert_eq!(sent["folder_missing"], true);
    assert_eq!(sent["missing"][0]["subject"], "sent");
    // Reported only: an upload now would not bring them back.
    assert_eq!(a["to_retry"], 0, "{c:#}");
    let (run, again) = upload(&server, store.path(), &accounts, &["--target-kind", "imap"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(total(&again, "appended"), 0, "{again}");
    // Asked to, the check marks them for the next upload.
    let check = with_target(
        &server,
        store.path(),
        &accounts,
        &["verify", "--target", "--requeue-missing", "--json"],
    );
    assert_eq!(check.code, 1, "{}", check.stdout);
    assert_eq!(check.json()["accounts"][0]["to_retry"], 2);
    // Checked again before an upload: still not complete, nothing new missing.
    let text = with_target(&server, store.path(), &accounts, &["verify", "--target"]);
    assert_eq!(text.code, 1, "{}", text.stdout);
    assert!(text.stdout.contains("2 to append again"), "{}", text.stdout);

    // The next upload puts both back, and the check passes again.
    let (run, again) = upload(&server, store.path(), &accounts, &["--target-kind", "imap"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    assert_eq!(total(&again, "appended"), 2, "{again}");
    let check = with_target(
        &server,
        store.path(),
        &accounts,
        &["verify", "--target", "--json"],
    );
    assert_eq!(check.code, 0, "{}\n{}", check.stderr, check.stdout);
    assert_eq!(check.json()["accounts"][0]["found"], 9);
    let held = target_counts(&server, "alice-365", "alice-365-pw");
    assert_eq!(held["INBOX"], 6, "{held:?}");
    assert_eq!(held["Sent"], 1, "{held:?}");
}

fn users(names: &[&str]) -> DovecotConfig {
    DovecotConfig {
        users: names
            .iter()
            .map(|n| (n.to_string(), format!("{n}-pw")))
            .collect(),
        ..DovecotConfig::default()
    }
}

#[test]
fn preflight_says_go_or_no_go_per_account_and_why() {
    let server = Dovecot::start_with(users(&[
        "alice",
        "alice-365",
        "bob",
        "bob-365",
        "carol",
        "carol-365",
        "dave",
    ]));
    let mut a = server.client("alice", "alice-pw");
    a.create("Sent");
    a.create("Files");
    a.create("Huge");
    a.append("INBOX", "\\Seen", DATE, &message("hello", "h@x", "hi"));
    a.append("Sent", "\\Seen", DATE, &message("sent", "s@x", "bye"));
    let big = message("the <big> & heavy one", "big@x", &"x".repeat(1_500_000));
    a.append("INBOX", "", DATE, &big);
    drop(a);
    // A folder over Microsoft's 10,000 items guidance, written as Maildir
    // files (far faster than 10,001 APPENDs).
    let many: Vec<(String, Vec<u8>)> = (0..10_001)
        .map(|i| {
            let m = message(&format!("n{i}"), &format!("n{i}@x"), "x");
            (format!("{i}.host"), m)
        })
        .collect();
    server.write_maildir_messages("alice", "Huge", &many);
    let mut b = server.client("bob", "bob-pw");
    for i in 0..20 {
        b.append(
            "INBOX",
            "",
            DATE,
            &message(&format!("b{i}"), &format!("b{i}@x"), &"y".repeat(500)),
        );
    }
    drop(b);
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("batch.csv");
    std::fs::write(
        &csv,
        "EmailAddress,UserName,Password,TargetAddress,TargetPassword,Quota\n\
         alice@example.com,alice,alice-pw,alice-365,alice-365-pw,\n\
         bob@example.com,bob,bob-pw,bob-365,bob-365-pw,8 KB\n\
         carol@example.com,carol,not-her-password,carol-365,carol-365-pw,\n\
         dave@example.com,dave,dave-pw,dave-365,dave-365-pw,\n",
    )
    .unwrap();
    let store = dir.path().join("store");
    let mut target = target_flags(&server);
    target[1] = "m365".into();
    target.extend(["--target-auth", "login", "--max-message-mib", "1"].map(String::from));
    let preflight = |extra: &[&str]| {
        let mut args = vec![
            "--store",
            store.to_str().unwrap(),
            "preflight",
            "--accounts",
            csv.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        mailferry_with(&args, &[source_flags(&server), target.clone()])
    };
    let before = target_counts(&server, "alice-365", "alice-365-pw");
    let run = preflight(&["--json"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stderr, run.stdout);
    let p = run.json();
    let account = |name: &str| find_in(&p["accounts"], "account", name);

    let alice = account("alice@example.com");
    assert_eq!(alice["go"], true, "{alice:#}");
    assert_eq!(alice["messages"], 3 + 10_001);
    assert_eq!(alice["too_large"][0]["subject"], "the <big> & heavy one");
    assert!(alice["too_large"][0]["size"].as_u64().unwrap() > 1 << 20);
    let warnings = alice["warnings"].to_string();
    assert!(
        warnings.contains("\\\"Huge\\\" holds 10001 messages"),
        "{warnings}"
    );
    assert!(warnings.contains("1 message is over"), "{warnings}");
    let renamed = alice["renamed"].to_string();
    assert!(
        renamed.contains("Sent Items") && renamed.contains("Files (migrated)"),
        "{renamed}"
    );

    let bob = account("bob@example.com");
    assert_eq!(bob["go"], false);
    assert_eq!(bob["quota_bytes"], 8192);
    assert!(
        bob["no_go"][0].as_str().unwrap().contains("over its quota"),
        "{bob:#}"
    );

    let carol = account("carol@example.com");
    assert_eq!(carol["go"], false);
    assert_eq!(carol["source_ok"], false);
    assert_eq!(carol["target_ok"], true);
    let why = carol["no_go"].to_string();
    assert!(
        why.contains("source carol") && why.contains("login refused"),
        "{why}"
    );
    assert!(!run.stdout.contains("not-her-password") && !run.stderr.contains("not-her-password"));

    let dave = account("dave@example.com");
    assert_eq!(dave["go"], false);
    assert_eq!(dave["source_ok"], true);
    assert!(
        dave["no_go"]
            .to_string()
            .contains("target mailbox dave-365"),
        "{dave:#}"
    );

    // The text form says the same, and nothing changed at the target.
    let text = preflight(&[]);
    assert_eq!(text.code, 1);
    assert!(
        text.stdout.contains("alice@example.com -> alice-365: GO"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("bob@example.com -> bob-365: NO-GO"));
    assert!(
        text.stdout.contains("1 of 4 accounts GO, 3 NO-GO"),
        "{}",
        text.stdout
    );
    assert_eq!(target_counts(&server, "alice-365", "alice-365-pw"), before);
    // Before the first mirror there is no store: preflight makes none (a
    // mistyped --store must not become a new store) and says so.
    assert!(
        text.stderr.contains("this preflight is not recorded"),
        "{}",
        text.stderr
    );
    assert!(!store.exists());
}

/// `mailferry --store S cutover --json` for `accounts`, source and target
/// both on `server`, with `extra` flags.
fn cutover(server: &Dovecot, store: &Path, accounts: &Path, extra: &[&str]) -> Run {
    let mut command = vec!["cutover", "--json"];
    command.extend_from_slice(extra);
    both_ends(server, store, accounts, &command)
}

/// `mailferry --store S <command…> --accounts A`, with `server` as both
/// the source and a plain IMAP target.
fn both_ends(server: &Dovecot, store: &Path, accounts: &Path, command: &[&str]) -> Run {
    let mut all: Vec<&str> = vec!["--store", store.to_str().unwrap()];
    all.extend_from_slice(command);
    all.extend_from_slice(&["--accounts", accounts.to_str().unwrap()]);
    mailferry_with(&all, &[source_flags(server), target_flags(server)])
}

#[test]
fn cutover_end_to_end_on_two_accounts() {
    use crate::support::dns::DnsServer;
    let server = Dovecot::start();
    let mut a = server.client("alice", "alice-pw");
    a.create("Archive");
    for i in 0..4 {
        a.append(
            "INBOX",
            "\\Seen",
            DATE,
            &message(&format!("a{i}"), &format!("a{i}@x"), "a"),
        );
    }
    a.append("Archive", "", DATE, &message("old", "old@x", "old"));
    let mut b = server.client("bob", "bob-pw");
    for i in 0..3 {
        b.append(
            "INBOX",
            "",
            DATE,
            &message(&format!("b{i}"), &format!("b{i}@x"), "b"),
        );
    }
    let store = tempfile::tempdir().unwrap();
    let accounts = server.migration_csv(&[
        ("alice", "alice-pw", "alice-365", "alice-365-pw"),
        ("bob", "bob-pw", "bob-365", "bob-365-pw"),
    ]);
    // The initial copy.
    let (run, _) = mirror(&server, store.path(), &accounts, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (run, _) = upload(&server, store.path(), &accounts, &["--target-kind", "imap"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // Mail keeps arriving at the old host until the MX records change.
    a.append(
        "INBOX",
        "",
        DATE,
        &message("late", "late@x", "arrived before the switch"),
    );
    b.append("INBOX", "", DATE, &message("late b", "lateb@x", "also"));

    // MX still at Rackspace: --require-mx stops before anything moves.
    let rackspace = DnsServer::start(&[(
        "example.com",
        &[(10, "mx1.emailsrvr.com"), (20, "mx2.emailsrvr.com")],
    )]);
    let resolver = rackspace.addr().to_string();
    let run = cutover(
        &server,
        store.path(),
        &accounts,
        &["--check-mx", "--resolver", &resolver, "--require-mx"],
    );
    assert_eq!(run.code, 1, "{}\n{}", run.stderr, run.stdout);
    assert!(
        run.stderr
            .contains("MX records of example.com do not point to Microsoft 365")
            && run.stderr.contains("10 mx1.emailsrvr.com"),
        "{}",
        run.stderr
    );
    assert_eq!(
        target_counts(&server, "alice-365", "alice-365-pw")["INBOX"],
        4
    );
    let status = mailferry(&[
        "--store",
        store.path().to_str().unwrap(),
        "status",
        "--json",
    ]);
    assert!(status.json()["cutover"].is_null());

    // MX switched: the final pass moves the late mail and records the batch.
    let microsoft = DnsServer::start(&[(
        "example.com",
        &[(0, "example-com.mail.protection.outlook.com")],
    )]);
    let resolver = microsoft.addr().to_string();
    let run = cutover(
        &server,
        store.path(),
        &accounts,
        &["--check-mx", "--resolver", &resolver],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    let c = run.json();
    assert_eq!(c["complete"], true, "{c:#}");
    assert_eq!(c["mx"][0]["points_to_microsoft"], true);
    for (i, (name, stored)) in [("alice@example.com", 6), ("bob@example.com", 4)]
        .iter()
        .enumerate()
    {
        let acc = &c["accounts"][i];
        assert_eq!(acc["account"], *name);
        assert_eq!(acc["complete"], true, "{acc:#}");
        assert_eq!(acc["totals"]["stored"], *stored, "{acc:#}");
        assert_eq!(acc["totals"]["uploaded"], *stored, "{acc:#}");
        assert_eq!(acc["totals"]["pending"], 0);
    }
    assert_eq!(
        target_counts(&server, "alice-365", "alice-365-pw")["INBOX"],
        5
    );
    assert_eq!(target_counts(&server, "bob-365", "bob-365-pw")["INBOX"], 4);
    let status = mailferry(&[
        "--store",
        store.path().to_str().unwrap(),
        "status",
        "--json",
    ]);
    let snap = status.json();
    assert_eq!(snap["cutover"]["complete"], true, "{snap:#}");
    assert!(snap["last_runs"]["cutover"].is_i64());
    let text = mailferry(&["--store", store.path().to_str().unwrap(), "status"]);
    assert!(text.stdout.contains("cutover: COMPLETE"), "{}", text.stdout);

    // Again: harmless, nothing appended twice.
    let run = cutover(&server, store.path(), &accounts, &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    assert_eq!(
        target_counts(&server, "alice-365", "alice-365-pw")["INBOX"],
        5
    );
    assert_eq!(target_counts(&server, "bob-365", "bob-365-pw")["INBOX"], 4);

    // After go-live a user deletes a message at the target: a repeated
    // cutover reports it but does not bring it back.
    let mut t = server.client("bob-365", "bob-365-pw");
    let uid = t.messages("INBOX")[1].uid;
    t.expunge_uid("INBOX", uid);
    drop(t);
    let run = cutover(&server, store.path(), &accounts, &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    let c = run.json();
    assert_eq!(c["accounts"][1]["complete"], true, "{c:#}");
    assert_eq!(c["accounts"][1]["missing_at_target"], 1);
    assert_eq!(target_counts(&server, "bob-365", "bob-365-pw")["INBOX"], 3);
    // Put back on purpose, it comes back once.
    let check = with_target(
        &server,
        store.path(),
        &accounts,
        &["verify", "--target", "--requeue-missing"],
    );
    assert_eq!(check.code, 1, "{}", check.stdout);
    let run = cutover(&server, store.path(), &accounts, &[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    assert_eq!(target_counts(&server, "bob-365", "bob-365-pw")["INBOX"], 4);
}

#[test]
fn two_accounts_into_one_mailbox_and_a_folder_left_out() {
    let server = Dovecot::start();
    let mut a = server.client("alice", "alice-pw");
    a.create("Junk");
    a.append("INBOX", "", DATE, &message("a", "a@x", "from alice"));
    a.append("Junk", "", DATE, &message("spam", "spam@x", "left behind"));
    let mut b = server.client("bob", "bob-pw");
    b.append("INBOX", "", DATE, &message("b", "b@x", "from bob"));
    b.append("INBOX", "", DATE, &message("b2", "b2@x", "from bob too"));
    drop((a, b));
    let store = tempfile::tempdir().unwrap();
    // Both go into alice-365 (a shared mailbox, say).
    let accounts = server.migration_csv(&[
        ("alice", "alice-pw", "alice-365", "alice-365-pw"),
        ("bob", "bob-pw", "alice-365", "alice-365-pw"),
    ]);
    let map = server.dir.path().join("map.csv");
    std::fs::write(
        &map,
        "Account,SourceFolder,TargetFolder\nalice@example.com,Junk,\n",
    )
    .unwrap();
    let run = cutover(
        &server,
        store.path(),
        &accounts,
        &["--map", map.to_str().unwrap()],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    let c = run.json();
    assert_eq!(
        c["complete"], true,
        "the left-out folder is not pending: {c:#}"
    );
    assert_eq!(c["accounts"][0]["totals"]["left_out"], 1);
    assert_eq!(c["accounts"][0]["totals"]["pending"], 0);
    let held = target_counts(&server, "alice-365", "alice-365-pw");
    assert_eq!(held["INBOX"], 3, "{held:?}");
    assert!(!held.contains_key("Junk"), "{held:?}");
    // Each account answers for what it placed: no double counting.
    let check = with_target(
        &server,
        store.path(),
        &accounts,
        &["verify", "--target", "--json"],
    );
    assert_eq!(check.code, 0, "{}\n{}", check.stderr, check.stdout);
    let c = check.json();
    assert_eq!(c["accounts"][0]["expected"], 1, "{c:#}");
    assert_eq!(c["accounts"][1]["expected"], 2, "{c:#}");
    assert_eq!(c["accounts"][0]["extras"], 0, "{c:#}");
    assert_eq!(c["accounts"][1]["extras"], 0, "{c:#}");
    let status = mailferry(&["--store", store.path().to_str().unwrap(), "status"]);
    assert!(
        status.stdout.contains("Junk (left out by the map)"),
        "{}",
        status.stdout
    );
}

#[test]
fn preflight_takes_the_quota_the_target_announces() {
    let server = Dovecot::start_with(DovecotConfig {
        quota_storage: Some("200k".into()),
        ..DovecotConfig::default()
    });
    // The same server is the source: its mail is written past the quota.
    let mail: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| {
            let body = "z".repeat(100_000);
            (
                format!("{i}.host"),
                message(&format!("m{i}"), &format!("m{i}@x"), &body),
            )
        })
        .collect();
    server.write_maildir_messages("alice", "INBOX", &mail);
    // Some of the target's quota is already used.
    let mut t = server.client("bob-365", "bob-365-pw");
    t.append(
        "INBOX",
        "",
        DATE,
        &message("there", "there@x", &"q".repeat(150_000)),
    );
    drop(t);
    let store = tempfile::tempdir().unwrap();
    let accounts = server.migration_csv(&[
        ("alice", "alice-pw", "alice-365", "alice-365-pw"),
        ("bob", "bob-pw", "bob-365", "bob-365-pw"),
    ]);
    let run = both_ends(&server, store.path(), &accounts, &["preflight", "--json"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stderr, run.stdout);
    let p = run.json();
    let alice = &p["accounts"][0];
    assert_eq!(alice["quota_bytes"], 200 * 1024, "{alice:#}");
    assert_eq!(alice["quota_from"], "the target's QUOTA");
    assert_eq!(
        alice["go"], false,
        "300 KB of mail into a 200 KiB quota: {alice:#}"
    );
    // bob has no mail of his own, but the target is already most of the way full.
    let bob = &p["accounts"][1];
    assert_eq!(bob["messages"], 0);
    assert!(
        bob["target_used_bytes"].as_u64().unwrap() >= 150_000,
        "{bob:#}"
    );
    assert_eq!(bob["go"], true, "{bob:#}");

    // A folder map that leaves INBOX behind brings alice under the quota.
    let map = store.path().join("map.csv");
    std::fs::write(
        &map,
        "Account,SourceFolder,TargetFolder\nalice@example.com,INBOX,\n",
    )
    .unwrap();
    let map_arg = map.to_str().unwrap();
    let run = both_ends(
        &server,
        store.path(),
        &accounts,
        &["preflight", "--json", "--map", map_arg],
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    let alice = &run.json()["accounts"][0];
    assert_eq!(alice["go"], true, "{alice:#}");
    assert!(alice["folders"][0]["target"].is_null(), "{alice:#}");
}

#[test]
fn preflight_after_an_upload_does_not_count_our_own_mail_twice() {
    let server = Dovecot::start_with(DovecotConfig {
        quota_storage: Some("200k".into()),
        ..DovecotConfig::default()
    });
    let body = "w".repeat(120_000);
    let mail = vec![("0.host".to_string(), message("big", "big@x", &body))];
    server.write_maildir_messages("alice", "INBOX", &mail);
    let store = tempfile::tempdir().unwrap();
    let accounts = server.migration_csv(&[("alice", "alice-pw", "alice-365", "alice-365-pw")]);
    let preflight = || {
        let run = both_ends(&server, store.path(), &accounts, &["preflight", "--json"]);
        assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
        run.json()["accounts"][0].clone()
    };
    assert_eq!(preflight()["go"], true);
    let (run, _) = mirror(&server, store.path(), &accounts, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (run, _) = upload(&server, store.path(), &accounts, &["--target-kind", "imap"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // The target now uses 120 KB, all of it ours: still GO, not 240 KB.
    let again = preflight();
    assert!(
        again["target_used_bytes"].as_u64().unwrap() >= 120_000,
        "{again:#}"
    );
    assert_eq!(again["go"], true, "{again:#}");
    // With a store, status shows when preflight last ran.
    let status = mailferry(&[
        "--store",
        store.path().to_str().unwrap(),
        "status",
        "--json",
    ]);
    assert!(
        status.json()["last_runs"]["preflight"].is_i64(),
        "{}",
        status.stdout
    );
}
