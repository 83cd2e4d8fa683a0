//! What mailferry says is what is true: every account of a batch in
//! status and the report, failures never shown as done, a private store,
//! outputs that never replace what is not a file, the store the user meant.

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::*;

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
    let json = run(
        &[
            "--store",
            s(&store),
            "status",
            "--json",
            "--accounts",
            s(&batch),
        ],
        &[],
    )
    .json();
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
    let json = run(
        &[
            "--store",
            s(&store),
            "status",
            "--json",
            "--accounts",
            s(&batch),
        ],
        &[],
    )
    .json();
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
}
