//! Upload through a proxy that behaves like Exchange Online: throttling,
//! BYE, resets mid-literal, size and line limits, reserved names, and the
//! client killed at every point of an APPEND. Nothing may be lost and
//! nothing appended twice.

use std::time::Duration;

use crate::support::exchange::{
    Event, ExchangeFaults, ExchangeProxy, KillPoint, contents_unconverted,
};
use crate::support::*;

const DATE: &str = "03-Mar-2025 10:00:00 +0100";

fn seed(server: &Dovecot, per_folder: usize) {
    let mut alice = server.client("alice", "alice-pw");
    for folder in ["INBOX", "Work", "Files"] {
        if folder != "INBOX" {
            alice.create(folder);
        }
        for i in 0..per_folder {
            let mut body = message(folder, &format!("{folder}-{i}@x"), "");
            for _ in 0..250 {
                body.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, 78));
                body.extend_from_slice(b"\r\n");
            }
            alice.append(folder, "\\Seen", DATE, &body);
        }
    }
}

fn upload_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["--target-kind", "m365", "--target-auth", "login"];
    v.extend_from_slice(extra);
    v
}

#[test]
fn exchange_faults_lose_nothing_duplicate_nothing_and_the_backoff_is_obeyed() {
    let server = Dovecot::start();
    seed(&server, 8);
    let mut alice = server.client("alice", "alice-pw");
    let mut big = message("big", "big@x", "");
    for _ in 0..4000 {
        big.extend(std::iter::repeat_n(b'b', 78));
        big.extend_from_slice(b"\r\n");
    }
    alice.append("INBOX", "", DATE, &big);
    let mut long = message("long line", "long@x", "");
    long.extend(std::iter::repeat_n(b'l', 12_000));
    long.extend_from_slice(b"\r\n");
    alice.append("Work", "", DATE, &long);

    let store = tempfile::tempdir().unwrap();
    let accounts = server.migration_csv(&[("alice", "alice-pw", "alice-365", "alice-365-pw")]);
    let (run, _) = mirror(&server, store.path(), &accounts, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);

    let proxy = ExchangeProxy::start(
        &server,
        ExchangeFaults {
            throttle_every: Some(4),
            backoff_ms: 400,
            bye_at_append: Some(7),
            reset_at_append: Some(11),
            max_message: Some(200_000),
            max_line: Some(10_000),
            reserved: vec!["Files".into()],
            ..ExchangeFaults::default()
        },
    );
    let (run, summary) = upload_via(
        &server,
        proxy.port,
        store.path(),
        &accounts,
        &upload_args(&["--target-connections", "2"]),
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    // Written ahead, what was under way when a connection dropped is
    // settled by reading the target back: each message counted once.
    assert_eq!(
        total(&summary, "appended") + total(&summary, "reconciled"),
        24,
        "{summary}"
    );
    assert_eq!(
        summary["totals"]["skipped_by_reason"]["too large"], 1,
        "{summary}"
    );
    assert_eq!(
        summary["totals"]["skipped_by_reason"]["line too long"], 1,
        "{summary}"
    );
    assert!(total(&summary, "throttled") >= 1);

    // Everything but the two refused messages is there, once.
    let mut want = contents(&server, "alice", "alice-pw");
    want.get_mut("INBOX").unwrap().retain(|b| *b != big);
    want.get_mut("Work").unwrap().retain(|b| *b != long);
    let files = want.remove("Files").unwrap();
    want.insert("Files (migrated)".into(), files);
    assert_eq!(
        contents_unconverted(&server, "alice-365", "alice-365-pw"),
        want
    );

    // After each throttle reply, the throttled connection sent no APPEND
    // before the suggested time but for those already under way when the
    // reply went out (written ahead, they arrive at once), and every other
    // connection of the mailbox at most the one it may have had under way
    // before it heard.
    let events = proxy.events();
    let throttles: Vec<_> = events
        .iter()
        .filter_map(|(t, e)| match e {
            Event::Throttled(c, b) => Some((*t, *c, *b)),
            _ => None,
        })
        .collect();
    assert!(!throttles.is_empty());
    let under_way = Duration::from_millis(100);
    for (at, throttled_conn, backoff) in &throttles {
        let until = *at + *backoff - Duration::from_millis(20);
        let mut late: std::collections::HashMap<usize, Vec<usize>> = Default::default();
        for (t, e) in &events {
            if let Event::Append(conn, n) = e
                && *t > *at + under_way
                && *t < until
            {
                late.entry(*conn).or_default().push(*n);
            }
        }
        assert!(
            !late.contains_key(throttled_conn),
            "connection {throttled_conn} sent APPEND {:?} within its {backoff:?} backoff",
            late[throttled_conn]
        );
        for (conn, appends) in &late {
            assert!(
                appends.len() <= 1,
                "connection {conn} sent APPENDs {appends:?} within another connection's \
                 {backoff:?} backoff"
            );
        }
    }
    assert!(events.iter().any(|(_, e)| matches!(e, Event::Bye(_))));
    assert!(events.iter().any(|(_, e)| matches!(e, Event::Reset(_))));

    // The refused ones are listed by status, with the server's words.
    let status = mailferry(&[
        "--store",
        store.path().to_str().unwrap(),
        "status",
        "--json",
    ]);
    let not_uploaded = status.json()["not_uploaded"].to_string();
    assert!(not_uploaded.contains("message too large"), "{not_uploaded}");
    assert!(not_uploaded.contains("line too long"), "{not_uploaded}");

    // A re-run through the same proxy appends nothing.
    let (run, again) = upload_via(
        &server,
        proxy.port,
        store.path(),
        &accounts,
        &upload_args(&[]),
    );
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(total(&again, "appended"), 0);
}

#[test]
fn killed_at_any_point_of_an_append_the_next_run_leaves_every_message_exactly_once() {
    for (point, at) in [
        (KillPoint::BeforeAppend, 3),
        (KillPoint::MidLiteral, 5),
        (KillPoint::AfterOk, 4),
        (KillPoint::AfterOk, 1),
    ] {
        let server = Dovecot::start();
        seed(&server, 4);
        let store = tempfile::tempdir().unwrap();
        let accounts = server.migration_csv(&[("alice", "alice-pw", "alice-365", "alice-365-pw")]);
        let (run, _) = mirror(&server, store.path(), &accounts, &[]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let proxy = ExchangeProxy::start(
            &server,
            ExchangeFaults {
                kill: Some((point, at)),
                ..ExchangeFaults::default()
            },
        );
        let mut child = upload_command(
            &server,
            proxy.port,
            store.path(),
            &accounts,
            &upload_args(&["--target-connections", "1"]),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
        proxy
            .client_pid
            .store(child.id(), std::sync::atomic::Ordering::SeqCst);
        let status = child.wait().unwrap();
        assert_eq!(
            status.code(),
            None,
            "{point:?}: the proxy should have killed it"
        );
        assert!(
            proxy
                .events()
                .iter()
                .any(|(_, e)| *e == Event::Killed(point)),
            "{point:?}"
        );

        // Again through the same proxy (the same target: host and port);
        // its one kill is spent.
        let (run, summary) = upload_via(
            &server,
            proxy.port,
            store.path(),
            &accounts,
            &upload_args(&[]),
        );
        assert_eq!(run.code, 0, "{point:?}: {}", run.stdout);
        if point == KillPoint::AfterOk {
            // Written ahead, more than the one killed may be pending.
            assert!(total(&summary, "reconciled") >= 1, "{point:?}: {summary}");
        }
        let mut want = contents(&server, "alice", "alice-pw");
        let files = want.remove("Files").unwrap();
        want.insert("Files (migrated)".into(), files);
        assert_eq!(
            contents_unconverted(&server, "alice-365", "alice-365-pw"),
            want,
            "{point:?} at APPEND #{at}"
        );
    }
}

#[test]
fn retry_failed_retries_only_what_failed() {
    let server = Dovecot::start();
    seed(&server, 3);
    let store = tempfile::tempdir().unwrap();
    let accounts = server.migration_csv(&[("alice", "alice-pw", "alice-365", "alice-365-pw")]);
    let (run, _) = mirror(&server, store.path(), &accounts, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let proxy = ExchangeProxy::start(
        &server,
        ExchangeFaults {
            refuse_at_append: Some(2),
            ..ExchangeFaults::default()
        },
    );
    let (run, first) = upload_via(
        &server,
        proxy.port,
        store.path(),
        &accounts,
        &upload_args(&[]),
    );
    assert_eq!(
        run.code, 1,
        "a failed message leaves the account incomplete"
    );
    assert_eq!(total(&first, "appended"), 8);
    assert_eq!(total(&first, "failed"), 1);
    let status = mailferry(&[
        "--store",
        store.path().to_str().unwrap(),
        "status",
        "--json",
    ]);
    assert!(
        status.stdout.contains("Internal error occurred"),
        "{}",
        status.stdout
    );

    // New mail meanwhile is not touched by --retry-failed.
    server
        .client("alice", "alice-pw")
        .append("INBOX", "", DATE, &message("new", "new@x", "new"));
    mirror(&server, store.path(), &accounts, &[]);
    // The same target (host and port): the proxy, whose one refusal is spent.
    let (run, retry) = upload_via(
        &server,
        proxy.port,
        store.path(),
        &accounts,
        &upload_args(&["--retry-failed"]),
    );
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(total(&retry, "appended"), 1);
    assert_eq!(total(&retry, "failed"), 0);
    let (run, rest) = upload_via(
        &server,
        proxy.port,
        store.path(),
        &accounts,
        &upload_args(&[]),
    );
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(total(&rest, "appended"), 1);
    let mut want = contents(&server, "alice", "alice-pw");
    let files = want.remove("Files").unwrap();
    want.insert("Files (migrated)".into(), files);
    assert_eq!(
        contents_unconverted(&server, "alice-365", "alice-365-pw"),
        want
    );
}

#[test]
fn a_folder_name_the_target_refuses_is_renamed_predictably_and_remembered() {
    let server = Dovecot::start();
    seed(&server, 2);
    let store = tempfile::tempdir().unwrap();
    let accounts = server.migration_csv(&[("alice", "alice-pw", "alice-365", "alice-365-pw")]);
    let (run, _) = mirror(&server, store.path(), &accounts, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // A generic target keeps the name "Files"; this one refuses it.
    let proxy = ExchangeProxy::start(
        &server,
        ExchangeFaults {
            reserved: vec!["Files".into()],
            ..ExchangeFaults::default()
        },
    );
    let args = ["--target-kind", "imap"];
    let (run, summary) = upload_via(&server, proxy.port, store.path(), &accounts, &args);
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    assert_eq!(total(&summary, "appended"), 6);
    assert!(
        run.stderr.contains("using Files (migrated)"),
        "{}",
        run.stderr
    );
    let target = contents_unconverted(&server, "alice-365", "alice-365-pw");
    assert_eq!(target["Files (migrated)"].len(), 2);
    assert!(!target.contains_key("Files"));
    // The next run goes to the same place and appends nothing.
    server.client("alice", "alice-pw").append(
        "Files",
        "",
        DATE,
        &message("more", "more@x", "more"),
    );
    mirror(&server, store.path(), &accounts, &[]);
    let (run, again) = upload_via(&server, proxy.port, store.path(), &accounts, &args);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(total(&again, "appended"), 1);
    assert_eq!(
        contents_unconverted(&server, "alice-365", "alice-365-pw")["Files (migrated)"].len(),
        3
    );
}

/// `verify --target` through Exchange's dialect: every message was
/// converted (other bytes, other size), and the check still finds each one
/// by Message-ID and date; requeueing then appends nothing twice, and a
/// message deleted at the target is found missing and put back once.
#[test]
fn the_target_check_finds_converted_messages_and_requeues_only_the_missing() {
    let server = Dovecot::start();
    seed(&server, 3);
    let proxy = ExchangeProxy::start(&server, ExchangeFaults::default());
    let store = tempfile::tempdir().unwrap();
    let accounts = server.migration_csv(&[("alice", "alice-pw", "alice-365", "alice-365-pw")]);
    let (run, _) = mirror(&server, store.path(), &accounts, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (run, up) = upload_via(
        &server,
        proxy.port,
        store.path(),
        &accounts,
        &upload_args(&[]),
    );
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(total(&up, "appended"), 9, "{up}");
    let port = proxy.port.to_string();
    let ca = server.ca_file.to_str().unwrap().to_string();
    let check = |extra: &[&str]| {
        let mut args = vec![
            "--store",
            store.path().to_str().unwrap(),
            "verify",
            "--target",
            "--json",
            "--accounts",
            accounts.to_str().unwrap(),
            "--target-host",
            "localhost",
            "--target-port",
            &port,
            "--target-ca-file",
            &ca,
        ];
        args.extend(upload_args(extra));
        mailferry(&args)
    };
    let run = check(&[]);
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.stdout);
    let c = run.json();
    assert_eq!(c["accounts"][0]["found"], 9, "{c:#}");
    assert_eq!(c["accounts"][0]["missing"], 0, "{c:#}");
    assert_eq!(c["accounts"][0]["extras"], 0, "{c:#}");

    // One message deleted at the target: missing, and back once.
    let mut t = server.client("alice-365", "alice-365-pw");
    let gone = t.messages("Work")[0].uid;
    t.expunge_uid("Work", gone);
    let run = check(&["--requeue-missing"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert_eq!(run.json()["accounts"][0]["missing"], 1);
    let (run, again) = upload_via(
        &server,
        proxy.port,
        store.path(),
        &accounts,
        &upload_args(&[]),
    );
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(total(&again, "appended"), 1, "{again}");
    let mut want = contents(&server, "alice", "alice-pw");
    let files = want.remove("Files").unwrap();
    want.insert("Files (migrated)".into(), files);
    assert_eq!(
        contents_unconverted(&server, "alice-365", "alice-365-pw"),
        want
    );
    assert_eq!(check(&[]).code, 0);
}
