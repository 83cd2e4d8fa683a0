//! Servers that stall or drop connections: nothing hangs, one bad
//! connection does not cost an account its run, nothing goes twice.
//! A real Dovecot behind the IMAP-aware fault proxy.

use std::time::{Duration, Instant};

use crate::support::exchange::{Event, ExchangeFaults, ExchangeProxy, contents_unconverted};
use crate::support::*;

const DATE: &str = "03-Mar-2025 10:00:00 +0100";
const PAIR: (&str, &str, &str, &str) = ("alice", "alice-pw", "alice-365", "alice-365-pw");

fn seed(server: &Dovecot, n: usize) {
    let mut alice = server.client("alice", "alice-pw");
    alice.create("Work");
    for i in 0..n {
        let folder = if i % 2 == 0 { "INBOX" } else { "Work" };
        let m = message(&format!("m{i}"), &format!("m{i}@x"), &format!("body {i}"));
        alice.append(folder, "", DATE, &m);
    }
}

fn stalled(proxy: &ExchangeProxy, verb: &str) -> usize {
    proxy
        .events()
        .iter()
        .filter(|(_, e)| matches!(e, Event::Stalled(_, v) if v == verb))
        .count()
}

#[test]
fn a_server_that_stalls_at_login_costs_one_timeout_not_the_run() {
    let server = Dovecot::start();
    seed(&server, 6);
    let accounts = server.migration_csv(&[PAIR]);
    let store = tempfile::tempdir().unwrap();

    // Mirror: the first login is never answered.
    let proxy = ExchangeProxy::start(
        &server,
        ExchangeFaults {
            stall_logins: 1,
            ..ExchangeFaults::default()
        },
    );
    let started = Instant::now();
    let (run, summary) = mirror_via(
        &server,
        proxy.port,
        store.path(),
        &accounts,
        &["--io-timeout", "2"],
    );
    assert_eq!(run.code, 0, "{}\n{summary}", run.stderr);
    assert_eq!(total(&summary, "bodies_fetched"), 6);
    assert_eq!(stalled(&proxy, "LOGIN"), 1);
    assert!(started.elapsed() < Duration::from_secs(60));

    // Upload: the same at the target.
    let proxy = ExchangeProxy::start(
        &server,
        ExchangeFaults {
            stall_logins: 1,
            ..ExchangeFaults::default()
        },
    );
    let started = Instant::now();
    let (run, summary) = upload_via(
        &server,
        proxy.port,
        store.path(),
        &accounts,
        &["--target-kind", "imap", "--target-io-timeout", "2"],
    );
    assert_eq!(run.code, 0, "{}\n{summary}", run.stderr);
    assert_eq!(total(&summary, "appended"), 6);
    assert_eq!(stalled(&proxy, "LOGIN"), 1);
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(
        contents_unconverted(&server, "alice-365", "alice-365-pw"),
        contents(&server, "alice", "alice-pw")
    );
}

#[test]
fn a_login_that_stalls_every_time_ends_with_a_timeout_error() {
    let server = Dovecot::start();
    seed(&server, 2);
    let accounts = server.migration_csv(&[PAIR]);
    let store = tempfile::tempdir().unwrap();
    let proxy = ExchangeProxy::start(
        &server,
        ExchangeFaults {
            stall_logins: 100,
            ..ExchangeFaults::default()
        },
    );
    let started = Instant::now();
    let (run, summary) = mirror_via(
        &server,
        proxy.port,
        store.path(),
        &accounts,
        &["--io-timeout", "1"],
    );
    // 4: the server could not be reached (it never answered the login).
    assert_eq!(run.code, 4, "{}\n{summary}", run.stderr);
    let error = summary["accounts"][0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("sent nothing"), "{summary}");
    // Four tries of one second each, and the waits between them.
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_stalled_append_times_out_and_the_message_lands_once() {
    let server = Dovecot::start();
    seed(&server, 8);
    let accounts = server.migration_csv(&[PAIR]);
    let store = tempfile::tempdir().unwrap();
    let (run, _) = mirror(&server, store.path(), &accounts, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let proxy = ExchangeProxy::start(
        &server,
        ExchangeFaults {
            stall_append: Some(3),
            ..ExchangeFaults::default()
        },
    );
    let started = Instant::now();
    let (run, summary) = upload_via(
        &server,
        proxy.port,
        store.path(),
        &accounts,
        &[
            "--target-kind",
            "imap",
            "--target-io-timeout",
            "2",
            "--target-connections",
            "1",
        ],
    );
    assert_eq!(run.code, 0, "{}\n{summary}", run.stderr);
    assert_eq!(stalled(&proxy, "APPEND"), 1);
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(
        contents_unconverted(&server, "alice-365", "alice-365-pw"),
        contents(&server, "alice", "alice-pw")
    );
}

#[test]
fn connections_dropped_at_login_do_not_fail_the_account() {
    let server = Dovecot::start();
    seed(&server, 6);
    let accounts = server.migration_csv(&[PAIR]);
    let store = tempfile::tempdir().unwrap();
    let proxy = ExchangeProxy::start(
        &server,
        ExchangeFaults {
            drop_logins: 2,
            ..ExchangeFaults::default()
        },
    );
    let (run, summary) = mirror_via(&server, proxy.port, store.path(), &accounts, &[]);
    assert_eq!(run.code, 0, "{}\n{summary}", run.stderr);
    assert_eq!(total(&summary, "bodies_fetched"), 6);
    let dropped = proxy
        .events()
        .iter()
        .filter(|(_, e)| matches!(e, Event::Dropped(_)))
        .count();
    assert_eq!(dropped, 2);
    let proxy = ExchangeProxy::start(
        &server,
        ExchangeFaults {
            drop_logins: 2,
            ..ExchangeFaults::default()
        },
    );
    let (run, summary) = upload_via(
        &server,
        proxy.port,
        store.path(),
        &accounts,
        &["--target-kind", "imap"],
    );
    assert_eq!(run.code, 0, "{}\n{summary}", run.stderr);
    assert_eq!(total(&summary, "appended"), 6);
}
