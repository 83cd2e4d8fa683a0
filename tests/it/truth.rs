//! What mailferry says is what is true: every account of a batch in
//! status and the report, failures never shown as done, a private store,
//! outputs that never replace what is not a file, the store the user meant.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

const DATE: &str = "03-Mar-2025 10:00:00 +0100";

fn seed(server: &Dovecot, user: &str, pw: &str, n: usize) {
    let mut c = server.client(user, pw);
    c.create("Archive");
    for i in 0..n {
        let folder = if i % 2 == 0 { "INBOX" } else { "Archive" };
        c.append(
            folder,
            "\\Seen",
            DATE,
            &message(&format!("{user} {i}"), &format!("{user}-{i}@x"), "body"),
        );
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn run(args: &[&str], more: &[Vec<String>]) -> Run {
    mailferry_with(args, more)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `status --json --accounts batch`.
fn batch_status(store: &Path, batch: &Path) -> serde_json::Value {
    mailferry(&[
        "--store",
        s(store),
        "status",
        "--json",
        "--accounts",
        s(batch),
    ])
    .json()
}

fn account<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["account"] == name)
        .unwrap_or_else(|| panic!("no account {name} in {status:#}"))
}

#[test]
fn every_account_of_the_batch_is_shown_and_a_failure_is_never_complete() {
    let server = Dovecot::start();
    seed(&server, "alice", "alice-pw", 4);
    seed(&server, "bob", "bob-pw", 2);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    // bob's password is wrong; carol is in the batch but never run.
    let batch = write(
        dir.path(),
        "batch.csv",
        "EmailAddress,UserName,Password,TargetAddress,TargetPassword\n\
         alice@example.com,alice,alice-pw,alice-365,alice-365-pw\n\
         bob@example.com,bob,wrong,bob-365,bob-365-pw\n\
         carol@example.com,carol,carol-pw,carol-365,x\n",
    );
    let src = source_flags(&server);
    let dst = target_flags(&server);
    let m = run(
        &["--store", s(&store), "mirror", "--accounts", s(&batch)],
        &[
            src.clone(),
            vec!["--only".into(), "alice@example.com".into()],
            vec!["--only".into(), "bob@example.com".into()],
        ],
    );
    assert_ne!(m.code, 0, "{}", m.stderr);
    let u = run(
        &["--store", s(&store), "upload", "--accounts", s(&batch)],
        &[
            dst.clone(),
            vec!["--only".into(), "alice@example.com".into()],
        ],
    );
    assert_eq!(u.code, 0, "{}{}", u.stdout, u.stderr);

    let st = run(
        &[
            "--store",
            s(&store),
            "status",
            "--json",
            "--accounts",
            s(&batch),
        ],
        &[],
    );
    assert_eq!(st.code, 1, "a batch with a failed account is not complete");
    let json = st.json();
    assert_eq!(json["complete"], false);
    assert_eq!(json["accounts"].as_array().unwrap().len(), 3, "{json:#}");
    assert_eq!(account(&json, "alice@example.com")["state"], "complete");
    let bob = account(&json, "bob@example.com");
    assert_eq!(bob["state"], "failed", "{bob:#}");
    assert_eq!(bob["mirror"]["error"]["kind"], "login");
    assert!(
        bob["mirror"]["error"]["text"]
            .as_str()
            .unwrap()
            .contains("Authentication failed"),
        "the server's words: {bob:#}"
    );
    assert!(bob["mirror"]["last_ok_at"].is_null());
    assert!(!bob.to_string().contains("wrong"), "no password: {bob}");
    assert_eq!(account(&json, "carol@example.com")["state"], "not_mirrored");

    // Without the accounts file, the failed account is still there.
    let st = run(&["--store", s(&store), "status", "--summary"], &[]);
    assert_eq!(st.code, 1);
    assert!(st.stdout.contains("bob@example.com"), "{}", st.stdout);
    assert!(st.stdout.contains("FAILED"), "{}", st.stdout);
    assert!(st.stdout.contains("batch: NOT complete"), "{}", st.stdout);

    // alice's password changes at the source: her earlier mirror does not
    // make her look done.
    let later = write(
        dir.path(),
        "later.csv",
        "EmailAddress,UserName,Password,TargetAddress,TargetPassword\n\
         alice@example.com,alice,changed,alice-365,alice-365-pw\n",
    );
    let m = run(
        &["--store", s(&store), "mirror", "--accounts", s(&later)],
        std::slice::from_ref(&src),
    );
    assert_ne!(m.code, 0);
    let json = batch_status(&store, &batch);
    let alice = account(&json, "alice@example.com");
    assert_eq!(alice["state"], "failed", "{alice:#}");
    assert!(alice["mirror"]["last_ok_at"].is_i64(), "{alice:#}");
    assert!(alice["mirror"]["last_attempt_at"].as_i64() >= alice["mirror"]["last_ok_at"].as_i64());
    let text = run(
        &["--store", s(&store), "status", "--accounts", s(&batch)],
        &[],
    );
    assert!(
        !text.stdout.contains("100% at the target"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("mirror FAILED"), "{}", text.stdout);

    // A refused login at the target is a failure too, not "pending".
    let bad_target = write(
        dir.path(),
        "bad-target.csv",
        "EmailAddress,UserName,Password,TargetAddress,TargetPassword\n\
         alice@example.com,alice,alice-pw,alice-365,nope\n",
    );
    let m = run(
        &["--store", s(&store), "mirror", "--accounts", s(&bad_target)],
        &[src],
    );
    assert_eq!(m.code, 0, "{}", m.stderr);
    server.client("alice", "alice-pw").append(
        "INBOX",
        "",
        DATE,
        &message("new", "new@x", "arrived later"),
    );
    run(
        &["--store", s(&store), "mirror", "--accounts", s(&bad_target)],
        &[source_flags(&server)],
    );
    let u = run(
        &["--store", s(&store), "upload", "--accounts", s(&bad_target)],
        &[dst],
    );
    assert_ne!(u.code, 0);
    let json = batch_status(&store, &batch);
    let alice = account(&json, "alice@example.com");
    assert_eq!(alice["state"], "failed", "{alice:#}");
    assert_eq!(alice["upload"]["error"]["kind"], "login", "{alice:#}");
    assert_eq!(alice["pending"], 1, "{alice:#}");

    // The report shows the same.
    let page = dir.path().join("r.html");
    let r = run(
        &[
            "--store",
            s(&store),
            "report",
            "--html",
            s(&page),
            "--accounts",
            s(&batch),
        ],
        &[],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let html = std::fs::read_to_string(&page).unwrap();
    for (who, state) in [
        ("alice@example.com", "failed"),
        ("bob@example.com", "failed"),
        ("carol@example.com", "not_mirrored"),
    ] {
        assert!(
            html.contains(&format!(
                r#"data-account="{who}" data-field="state" data-value="{state}""#
            )),
            "{who} {state}"
        );
    }
    assert!(html.contains(r#"data-field="last_error""#));
}

#[test]
fn an_unchanged_folder_is_still_checked() {
    let server = Dovecot::start();
    seed(&server, "alice", "alice-pw", 2);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let csv = server.accounts_csv(&[("alice", "alice-pw")]);
    let checked = || -> Vec<i64> {
        let json = run(&["--store", s(&store), "status", "--json"], &[]).json();
        json["folders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["last_checked_at"].as_i64().unwrap())
            .collect()
    };
    mirror(&server, &store, &csv, &[]);
    let first = checked();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (_, again) = mirror(&server, &store, &csv, &[]);
    assert_eq!(again["totals"]["bodies_fetched"], 0, "{again:#}");
    let second = checked();
    assert_eq!(first.len(), 2);
    assert!(
        first.iter().zip(&second).all(|(a, b)| b > a),
        "{first:?} -> {second:?}"
    );
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

/// Every directory under `root` is `dir` and every file `file`.
fn assert_modes(root: &Path, dir: u32, file: u32) -> usize {
    let mut seen = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            assert_eq!(mode(&p), dir, "{}", p.display());
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            assert_eq!(mode(&p), file, "{}", p.display());
            seen += 1;
        }
    }
    seen
}

/// `mailferry args…` with umask 000, as a careless cron job would have it.
fn with_open_umask(args: &[&str]) -> Run {
    Run::of(
        Command::new("sh")
            .arg("-c")
            .arg("umask 000; exec \"$0\" \"$@\"")
            .arg(env!("CARGO_BIN_EXE_mailferry"))
            .args(args)
            .env_remove("MAILFERRY_STORE"),
    )
}

#[test]
fn the_store_and_what_comes_out_of_it_are_private_whatever_the_umask() {
    let server = Dovecot::start();
    seed(&server, "alice", "alice-pw", 3);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let csv = server.accounts_csv(&[("alice", "alice-pw")]);
    let src = source_flags(&server);
    let mut args = vec!["--store", s(&store), "mirror", "--accounts", s(&csv)];
    args.extend(src.iter().map(String::as_str));
    let m = with_open_umask(&args);
    assert_eq!(m.code, 0, "{}", m.stderr);
    // index, its WAL while open or not, LOCK, three blobs
    assert!(assert_modes(&store, 0o700, 0o600) >= 5);

    let page = dir.path().join("report.html");
    let r = with_open_umask(&["--store", s(&store), "report", "--html", s(&page)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(mode(&page), 0o600);
    let json = dir.path().join("status.json");
    with_open_umask(&["--store", s(&store), "status", "--json", s(&json)]);
    assert_eq!(mode(&json), 0o600);
    for format in ["maildir", "mbox", "eml"] {
        let out = dir.path().join(format!("export-{format}"));
        let e = with_open_umask(&["--store", s(&store), "export", "--format", format, s(&out)]);
        assert_eq!(e.code, 0, "{}", e.stderr);
        assert!(assert_modes(&out, 0o700, 0o600) >= 2, "{format}");
    }
    // Asked for: readable by the group and others.
    let shared = dir.path().join("shared");
    with_open_umask(&[
        "--store",
        s(&store),
        "export",
        "--format",
        "eml",
        "--file-mode",
        "644",
        s(&shared),
    ]);
    assert!(assert_modes(&shared, 0o755, 0o644) >= 3);

    // A store made by an older mailferry, readable by all, is made private
    // by the next run that writes it, which says so.
    Command::new("chmod")
        .args(["-R", "go+rX"])
        .arg(&store)
        .status()
        .unwrap();
    assert_eq!(mode(&store), 0o755);
    let m = with_open_umask(&args);
    assert_eq!(m.code, 0, "{}", m.stderr);
    assert!(m.stderr.contains("are now private"), "{}", m.stderr);
    assert_modes(&store, 0o700, 0o600);
}

#[test]
fn outputs_never_replace_what_is_not_a_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let mail = dir.path().join("mail");
    std::fs::create_dir_all(mail.join("cur")).unwrap();
    std::fs::create_dir_all(mail.join("new")).unwrap();
    std::fs::write(
        mail.join("cur").join("1.eml:2,S"),
        message("hi", "hi@x", "text"),
    )
    .unwrap();
    let store = dir.path().join("store");
    let i = mailferry(&["--store", s(&store), "import", s(&mail)]);
    assert_eq!(i.code, 0, "{}", i.stderr);

    // `-` is standard output.
    let r = mailferry(&["--store", s(&store), "report", "--html", "-"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.starts_with("<!DOCTYPE html>"),
        "{}",
        &r.stdout[..50.min(r.stdout.len())]
    );
    let st = mailferry(&["--store", s(&store), "status", "--json", "-"]);
    assert_eq!(st.json()["accounts"].as_array().unwrap().len(), 1);

    // A named pipe (as /dev/stdout is, under a pipe) is written into and
    // stays a pipe.
    let fifo = dir.path().join("pipe");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).unwrap())
    };
    let r = mailferry(&["--store", s(&store), "report", "--html", s(&fifo)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let got = reader.join().unwrap();
    assert!(got.contains("</html>"));
    let ft = std::fs::symlink_metadata(&fifo).unwrap().file_type();
    use std::os::unix::fs::FileTypeExt as _;
    assert!(ft.is_fifo(), "the pipe is still a pipe");

    // A directory is refused by name.
    let r = mailferry(&["--store", s(&store), "report", "--html", s(dir.path())]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("is a directory"), "{}", r.stderr);
}

#[test]
fn a_store_is_made_only_where_one_was_meant() {
    let server = Dovecot::start();
    seed(&server, "alice", "alice-pw", 2);
    let dir = tempfile::tempdir().unwrap();
    let csv = server.accounts_csv(&[("alice", "alice-pw")]);
    let src = source_flags(&server);
    let dst = target_flags(&server);

    // A typo: upload, status, verify, export find no store and make none.
    let typo = dir.path().join("stroe");
    for args in [
        vec!["upload", "--accounts", s(&csv)],
        vec!["status"],
        vec!["verify"],
        vec!["report", "--html", "r.html"],
    ] {
        let mut all = vec!["--store", s(&typo)];
        all.extend(args.iter().copied());
        let more = if args[0] == "upload" {
            vec![dst.clone()]
        } else {
            Vec::new()
        };
        let r = run(&all, &more);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("there is no store at"),
            "{args:?}: {}",
            r.stderr
        );
        assert!(!typo.exists(), "{args:?} made a store");
    }
    // A mirror whose parent directory is missing, or into a directory
    // that holds something else, makes nothing.
    let deep = dir.path().join("no-such-dir").join("store");
    let r = run(
        &["--store", s(&deep), "mirror", "--accounts", s(&csv)],
        std::slice::from_ref(&src),
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("parent directory does not exist"),
        "{}",
        r.stderr
    );
    let foreign = dir.path().join("documents");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("thesis.txt"), "mine").unwrap();
    let r = run(
        &["--store", s(&foreign), "mirror", "--accounts", s(&csv)],
        std::slice::from_ref(&src),
    );
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("not a mailferry store"), "{}", r.stderr);
    assert_eq!(std::fs::read_dir(&foreign).unwrap().count(), 1);

    // The first mirror makes it and says where; the next says where too.
    let store = dir.path().join("store");
    let r = run(
        &["--store", s(&store), "mirror", "--accounts", s(&csv)],
        std::slice::from_ref(&src),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let shown = std::fs::canonicalize(&store).unwrap();
    assert!(
        r.stderr
            .contains(&format!("store: {} (new)", shown.display())),
        "{}",
        r.stderr
    );

    // --store beats MAILFERRY_STORE, which beats the TOML's `store`; when
    // they disagree the run says which won.
    let toml = write(
        dir.path(),
        "batch.toml",
        &format!(
            "store = {:?}\n[[account]]\nemail = \"alice@example.com\"\nusername = \"alice\"\npassword = \"alice-pw\"\n",
            s(&store)
        ),
    );
    let r = Run::of(
        Command::new(env!("CARGO_BIN_EXE_mailferry"))
            .args(["--store", s(&typo), "status", "--accounts", s(&toml)])
            .env("MAILFERRY_STORE", dir.path().join("elsewhere")),
    );
    assert_eq!(r.code, 2, "the typo wins and is not there");
    assert!(r.stderr.contains("from --store"), "{}", r.stderr);
    assert!(r.stderr.contains("MAILFERRY_STORE"), "{}", r.stderr);
    assert!(r.stderr.contains("accounts file's `store`"), "{}", r.stderr);
    // status, verify, report and export read the TOML's store.
    let r = mailferry(&["status", "--json", "--accounts", s(&toml)]);
    assert_eq!(
        account(&r.json(), "alice@example.com")["stored"],
        2,
        "{}",
        r.stderr
    );
    let r = mailferry(&["verify", "--accounts", s(&toml)]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let out = dir.path().join("eml");
    let r = mailferry(&["export", "--format", "eml", "--accounts", s(&toml), s(&out)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = mailferry(&["report", "--html", "-", "--accounts", s(&toml)]);
    assert!(r.stdout.contains("alice@example.com"), "{}", r.stderr);
    // Reading the store needs no password: a password_env that cron does
    // not set is no obstacle to status.
    let cron = write(
        dir.path(),
        "cron.toml",
        &format!(
            "store = {:?}\n[[account]]\nemail = \"alice@example.com\"\npassword_env = \"TRUTH_UNSET_PW\"\n",
            s(&store)
        ),
    );
    let r = mailferry(&["status", "--summary", "--accounts", s(&cron)]);
    assert!(r.stdout.contains("alice@example.com"), "{}", r.stderr);
    let r = mailferry(&["mirror", "--accounts", s(&cron)]);
    assert_eq!(r.code, 2, "a run that logs in still needs it");
    assert!(
        r.stderr.contains("TRUTH_UNSET_PW, which is not set"),
        "{}",
        r.stderr
    );
}

/// Waits until `store` holds at least `n` blobs (the run is under way).
fn wait_for_blobs(store: &Path, n: usize) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while blob_files(store).len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "the run never got going"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn signal(child: &std::process::Child, name: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{name}");
}

fn finish(child: std::process::Child) -> (Run, std::time::Duration) {
    let started = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    (
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        },
        started.elapsed(),
    )
}

/// alice with `n` messages of about 20 KB, so that a slow link takes a while.
fn seed_big(server: &Dovecot, n: usize) {
    let mut c = server.client("alice", "alice-pw");
    let body = "z".repeat(20_000);
    for i in 0..n {
        c.append(
            "INBOX",
            "",
            DATE,
            &message(&format!("big {i}"), &format!("big-{i}@x"), &body),
        );
    }
}

/// alice's 40 messages of 20 KB behind a link of 100 KB/s: a run that
/// takes a while.
struct SlowLink {
    server: Dovecot,
    _dir: tempfile::TempDir,
    store: PathBuf,
    csv: PathBuf,
    proxy: Proxy,
}

impl SlowLink {
    fn new() -> SlowLink {
        let server = Dovecot::start();
        seed_big(&server, 40);
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let csv = server.accounts_csv(&[("alice", "alice-pw")]);
        let proxy = Proxy::start(
            server.port,
            Faults {
                bytes_per_sec: Some(100_000),
                ..Faults::default()
            },
        );
        SlowLink {
            server,
            _dir: dir,
            store,
            csv,
            proxy,
        }
    }

    fn spawn_mirror(&self, extra: &[&str]) -> std::process::Child {
        mirror_command(&self.server, self.proxy.port, &self.store, &self.csv, extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }
}

#[test]
fn ctrl_c_stops_a_mirror_cleanly_and_the_next_run_continues() {
    let slow = SlowLink::new();
    let (server, store, csv) = (&slow.server, slow.store.clone(), slow.csv.clone());
    let child = slow.spawn_mirror(&["--connections", "1"]);
    wait_for_blobs(&store, 3);
    signal(&child, "INT");
    let (run, took) = finish(child);
    assert_eq!(run.code, 130, "{}", run.stderr);
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
    assert!(
        run.stderr.contains("interrupted — run again to continue"),
        "{}",
        run.stderr
    );
    let summary = run.json();
    assert_eq!(summary["interrupted"], true);
    assert_eq!(
        summary["accounts"][0]["error_kind"], "interrupted",
        "{summary:#}"
    );
    let fetched = summary["totals"]["bodies_fetched"].as_u64().unwrap();
    assert!(fetched < 40, "stopped before the end: {fetched}");
    // status says so, and never 100%.
    let st = mailferry(&["--store", s(&store), "status", "--json"]);
    assert_eq!(st.json()["accounts"][0]["state"], "failed");
    assert_eq!(
        st.json()["accounts"][0]["mirror"]["error"]["kind"],
        "interrupted"
    );
    // verify finds nothing wrong, and the next run fetches only the rest.
    let v = mailferry(&["--store", s(&store), "verify"]);
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
    let (again, summary) = mirror(server, &store, &csv, &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let rest = summary["totals"]["bodies_fetched"].as_u64().unwrap();
    assert!(rest + fetched <= 40 + 1, "{fetched} then {rest}");
    assert_store_matches(server, &store, "alice", "alice-pw");
}

#[test]
fn sigterm_stops_an_upload_cleanly_and_nothing_is_doubled() {
    let server = Dovecot::start();
    seed_big(&server, 40);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let csv = server.migration_csv(&[("alice", "alice-pw", "alice-365", "alice-365-pw")]);
    let (run, _) = mirror(&server, &store, &csv, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let slow = Proxy::start(
        server.port,
        Faults {
            bytes_per_sec: Some(100_000),
            ..Faults::default()
        },
    );
    let child = upload_command(
        &server,
        slow.port,
        &store,
        &csv,
        &["--target-kind", "imap", "--target-connections", "1"],
    )
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while server
        .client("alice-365", "alice-365-pw")
        .messages("INBOX")
        .len()
        < 3
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the upload never got going"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    signal(&child, "TERM");
    let (run, took) = finish(child);
    assert_eq!(run.code, 143, "{}", run.stderr);
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
    let summary = run.json();
    assert_eq!(summary["interrupted"], true, "{summary:#}");
    let sent = server
        .client("alice-365", "alice-365-pw")
        .messages("INBOX")
        .len();
    assert!(sent < 40, "stopped before the end: {sent}");
    let (again, _) = upload(&server, &store, &csv, &["--target-kind", "imap"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let mut ids: Vec<String> = server
        .client("alice-365", "alice-365-pw")
        .messages("INBOX")
        .iter()
        .map(|m| header(&m.body, "Message-ID"))
        .collect();
    ids.sort();
    let before = ids.len();
    let all = ids.clone();
    ids.dedup();
    assert_eq!(
        (before, ids.len()),
        (40, 40),
        "every message once: {all:?}\nfirst run: {}\n{}\nsecond run: {}\n{}",
        run.stdout,
        run.stderr,
        again.stdout,
        again.stderr
    );
}

#[test]
fn a_second_ctrl_c_stops_at_once_and_the_store_stays_sound() {
    let slow = SlowLink::new();
    let (server, store, csv) = (&slow.server, slow.store.clone(), slow.csv.clone());
    let child = slow.spawn_mirror(&[]);
    wait_for_blobs(&store, 2);
    signal(&child, "INT");
    signal(&child, "INT");
    let (run, took) = finish(child);
    assert_eq!(run.code, 130, "{}", run.stderr);
    assert!(took < std::time::Duration::from_secs(5), "{took:?}");
    let v = mailferry(&["--store", s(&store), "verify"]);
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
    let (again, _) = mirror(server, &store, &csv, &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_store_matches(server, &store, "alice", "alice-pw");
}

#[test]
fn exit_codes_tell_a_wrong_password_from_an_outage_and_a_busy_store() {
    let server = Dovecot::start();
    seed(&server, "alice", "alice-pw", 2);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let good = server.migration_csv(&[("alice", "alice-pw", "alice-365", "alice-365-pw")]);
    let wrong = write(
        dir.path(),
        "wrong.csv",
        "EmailAddress,UserName,Password,TargetAddress,TargetPassword\n\
         alice@example.com,alice,nope,alice-365,nope\n",
    );
    // 3: a login refused, at the source or at the target.
    let (run, _) = mirror(&server, &store, &wrong, &[]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    let (run, _) = mirror(&server, &store, &good, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (run, _) = upload(&server, &store, &wrong, &["--target-kind", "imap"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    // 4: nothing answers at the address.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (run, _) = mirror_via(&server, closed, &store, &good, &["--io-timeout", "2"]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    // 5: another process writes the store.
    let held = mailferry::store::Store::open(&store, mailferry::store::Creation::Refused).unwrap();
    let (run, _) = {
        let run = Run::of(&mut mirror_command(
            &server,
            server.port,
            &store,
            &good,
            &[],
        ));
        (run, ())
    };
    assert_eq!(run.code, 5, "{}", run.stderr);
    drop(held);
    // 2: bad input.
    let bad = write(dir.path(), "bad.csv", "Name,Pass\nx,y\n");
    let run = mailferry(&["--store", s(&store), "mirror", "--accounts", s(&bad)]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    // --help documents them.
    let help = mailferry(&["--help"]);
    for code in ["3 ", "4 ", "5 ", "130"] {
        assert!(
            help.stdout.contains(code),
            "--help lacks {code}: {}",
            help.stdout
        );
    }
}

/// The value of header `name` in `raw`.
fn header(raw: &[u8], name: &str) -> String {
    let text = String::from_utf8_lossy(raw);
    text.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[test]
fn csvs_as_excel_saves_them_are_read_and_a_stray_space_is_pointed_out() {
    let server = Dovecot::start();
    seed(&server, "alice", "alice-pw", 2);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    // Excel's "Unicode text": UTF-16LE with a BOM, tab separated.
    let text = "EmailAddress\tUserName\tPassword\r\nalice@example.com\talice\talice-pw\r\n";
    let mut bytes = vec![0xFF, 0xFE];
    for u in text.encode_utf16() {
        bytes.extend_from_slice(&u.to_le_bytes());
    }
    let unicode = dir.path().join("unicode.txt");
    std::fs::write(&unicode, bytes).unwrap();
    let src = source_flags(&server);
    let r = run(
        &["--store", s(&store), "mirror", "--accounts", s(&unicode)],
        std::slice::from_ref(&src),
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("read as UTF-16"), "{}", r.stderr);
    assert!(r.stderr.contains("separated by tabs"), "{}", r.stderr);
    // A semicolon CSV whose password cell gained a trailing space.
    let semi = write(
        dir.path(),
        "semi.csv",
        "EmailAddress;UserName;Password\r\nalice@example.com;alice;alice-pw \r\n",
    );
    let r = run(
        &["--store", s(&store), "mirror", "--accounts", s(&semi)],
        std::slice::from_ref(&src),
    );
    assert_eq!(r.code, 3, "the login is refused: {}", r.stderr);
    assert!(r.stderr.contains("separated by semicolons"), "{}", r.stderr);
    assert!(
        r.stderr.contains(
            "semi.csv line 2: the Password of alice@example.com begins or ends with a space"
        ),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("alice-pw"), "never the password");
    // A file that is not the migration CSV says how to save it.
    let other = write(
        dir.path(),
        "other.csv",
        "Name|Mail\r\nAlice|alice@example.com\r\n",
    );
    let r = run(
        &["--store", s(&store), "mirror", "--accounts", s(&other)],
        &[src],
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("CSV UTF-8 (comma delimited)"),
        "{}",
        r.stderr
    );
}

#[test]
fn connection_errors_say_what_to_do() {
    let server = Dovecot::start();
    seed(&server, "alice", "alice-pw", 1);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let csv = server.migration_csv(&[("alice", "alice-pw", "alice-365", "alice-365-pw")]);
    let port = server.port.to_string();
    let mirror_with = |flags: &[&str]| {
        let mut args = vec!["--store", s(&store), "mirror", "--accounts", s(&csv)];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--io-timeout", "3"]);
        mailferry(&args)
    };
    // A plain-IMAP port, as 143 is: it greets in clear text.
    let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let plain_port = plain.local_addr().unwrap().port().to_string();
    std::thread::spawn(move || {
        for conn in plain.incoming().flatten() {
            let mut conn = conn;
            use std::io::Write as _;
            let _ = conn.write_all(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n");
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    });
    let r = mirror_with(&["--host", "localhost", "--port", &plain_port]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains("does not speak TLS"), "{}", r.stderr);
    assert!(
        r.stderr.contains("plain-IMAP port such as 143"),
        "{}",
        r.stderr
    );
    // A private CA, not given.
    let r = mirror_with(&["--host", "localhost", "--port", &port]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains("--ca-file"), "{}", r.stderr);
    // A host name that does not resolve is named.
    let r = mirror_with(&["--host", "imap.no-such-host.invalid", "--port", &port]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("cannot find the server imap.no-such-host.invalid"),
        "{}",
        r.stderr
    );
    // An identity endpoint that does not answer is named by its URL.
    let (run, _) = mirror(&server, &store, &csv, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let authority = format!("http://127.0.0.1:{closed}");
    let r = Run::of(
        upload_command(
            &server,
            server.port,
            &store,
            &csv,
            &[
                "--target-kind",
                "imap",
                "--target-auth",
                "xoauth2",
                "--tenant",
                "contoso",
                "--client-id",
                "00000000-0000-0000-0000-000000000001",
                "--client-secret-env",
                "TRUTH_SECRET",
                "--oauth-authority",
                &authority,
            ],
        )
        .env("TRUTH_SECRET", "s3cret-value"),
    );
    assert_eq!(r.code, 4, "{}\n{}", r.stdout, r.stderr);
    let all = format!("{}{}", r.stdout, r.stderr);
    assert!(
        all.contains(&format!("cannot reach the identity endpoint {authority}/")),
        "{all}"
    );
    assert!(!all.contains("s3cret-value"));
}

#[test]
fn logs_state_totals_and_names_are_matched_without_case() {
    let server = Dovecot::start();
    seed(&server, "alice", "alice-pw", 3);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let csv = server.accounts_csv(&[("alice", "alice-pw")]);
    // Not a terminal: log lines, and the last one says what moved.
    let (run, _) = mirror(&server, &store, &csv, &[]);
    assert!(
        run.stderr
            .contains("alice@example.com: done, 3/3 messages,"),
        "{}",
        run.stderr
    );
    let st = mailferry(&[
        "--store",
        s(&store),
        "status",
        "--json",
        "--account",
        "ALICE@Example.COM",
    ]);
    assert_eq!(st.json()["accounts"][0]["account"], "alice@example.com");
    let st = mailferry(&[
        "--store",
        s(&store),
        "status",
        "--account",
        "alcie@example.com",
    ]);
    assert_eq!(st.code, 2);
    assert!(
        st.stderr.contains("no account alcie@example.com"),
        "{}",
        st.stderr
    );
    let out = dir.path().join("out");
    let e = mailferry(&[
        "--store",
        s(&store),
        "export",
        "--format",
        "maildir",
        "--account",
        "Alice@Example.com",
        s(&out),
    ]);
    assert_eq!(e.code, 0, "{}", e.stderr);
    let e = mailferry(&[
        "--store",
        s(&store),
        "export",
        "--format",
        "eml",
        "--account",
        "alcie@example.com",
        s(&dir.path().join("none")),
    ]);
    assert_eq!(e.code, 2);
    assert!(
        e.stderr.contains("has no account alcie@example.com"),
        "{}",
        e.stderr
    );

    // An export into a folder that holds an earlier one: refused, unless
    // --update (which removes copies of what changed) or --force.
    let files = |d: &Path| -> Vec<String> {
        let mut v = Vec::new();
        let mut stack = vec![d.to_path_buf()];
        while let Some(p) = stack.pop() {
            for e in std::fs::read_dir(&p).unwrap().flatten() {
                if e.path().is_dir() {
                    stack.push(e.path());
                } else {
                    v.push(e.file_name().to_string_lossy().to_string());
                }
            }
        }
        v.sort();
        v
    };
    let before = files(&out);
    assert_eq!(before.len(), 3);
    let again = [
        "--store",
        s(&store),
        "export",
        "--format",
        "maildir",
        s(&out),
    ];
    let e = mailferry(&again);
    assert_eq!(e.code, 2);
    assert!(e.stderr.contains("is not empty"), "{}", e.stderr);
    // A flag changes at the source: the Maildir file's name changes.
    let mut c = server.client("alice", "alice-pw");
    c.select("INBOX");
    c.command("UID STORE 1 -FLAGS (\\Seen)").unwrap();
    drop(c);
    mirror(&server, &store, &csv, &[]);
    let mut update = again.to_vec();
    update.push("--update");
    let e = mailferry(&update);
    assert_eq!(e.code, 0, "{}", e.stderr);
    assert!(e.stderr.contains("removed 1 files"), "{}", e.stderr);
    let after = files(&out);
    assert_eq!(after.len(), 3, "{after:?}");
    assert_ne!(before, after);
}

#[test]
fn import_says_what_it_added_and_what_it_already_had() {
    let dir = tempfile::tempdir().unwrap();
    let mail = dir.path().join("old-mail");
    std::fs::create_dir_all(&mail).unwrap();
    std::fs::write(mail.join("1.eml"), message("one", "one@x", "first")).unwrap();
    let store = dir.path().join("store");
    let import = || {
        mailferry(&[
            "--store",
            s(&store),
            "import",
            s(&mail),
            "--account",
            "old@x",
        ])
    };
    let r = import();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("added 1 messages, 0 already stored"),
        "{}",
        r.stderr
    );
    let r = import();
    assert!(
        r.stderr.contains("added 0 messages, 1 already stored"),
        "{}",
        r.stderr
    );
    // A file added (sorting before the first): nothing already stored is
    // displaced, and the new one is added.
    std::fs::write(mail.join("0.eml"), message("zero", "zero@x", "before")).unwrap();
    let r = import();
    assert!(
        r.stderr.contains("added 1 messages, 1 already stored"),
        "{}",
        r.stderr
    );
    let stored = stored_messages(&store);
    assert_eq!(stored.len(), 2, "{stored:?}");
}
