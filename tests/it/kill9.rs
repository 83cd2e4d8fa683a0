//! A repeatable kill -9 campaign: mirror and upload are SIGKILLed at random
//! points, 50 times each, and a final run must leave every message stored
//! (and uploaded) exactly once. The seed is printed on failure and can be
//! set with MAILFERRY_KILL_SEED to replay a campaign.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::support::*;

const DATE: &str = "03-Mar-2025 10:00:00 +0100";
/// Runs killed mid-way, per stage.
const KILLS: usize = 50;
/// Later kills of a round find less and less to do: a few per round.
const KILLS_PER_ROUND: usize = 3;
/// Target mailboxes (one per upload round).
const TARGETS: usize = 50;

/// xorshift64*: enough randomness for kill points, and replayable.
struct Rng(u64);

impl Rng {
    fn new() -> (Rng, u64) {
        let seed = std::env::var("MAILFERRY_KILL_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        (Rng(seed), seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

fn server() -> Dovecot {
    let mut users = vec![("alice".to_string(), "alice-pw".to_string())];
    for r in 0..TARGETS {
        users.push((format!("t{r}"), "pw".to_string()));
    }
    Dovecot::start_with(DovecotConfig {
        users,
        ..DovecotConfig::default()
    })
}

fn seed(server: &Dovecot) {
    let mut alice = server.client("alice", "alice-pw");
    for f in ["Work", "Work/Old", "Sent"] {
        alice.create(f);
    }
    let folders = ["INBOX", "Work", "Work/Old", "Sent"];
    for i in 0..160 {
        let mut m = message(&format!("m{i}"), &format!("m{i}@x"), &format!("body {i}"));
        // Some larger ones, so that batches and literals take a while.
        if i % 10 == 0 {
            m.extend(std::iter::repeat_n(b'z', 60_000));
            m.extend_from_slice(b"\r\n");
        }
        let flags = if i % 3 == 0 { "\\Seen" } else { "" };
        alice.append(folders[i % folders.len()], flags, DATE, &m);
    }
    // The same bytes twice in one folder and once in another.
    let dup = message("dup", "dup@x", "twice");
    alice.append("INBOX", "", DATE, &dup);
    alice.append("INBOX", "", DATE, &dup);
    alice.append("Work", "", DATE, &dup);
}

/// Runs `cmd` and SIGKILLs it after `after` unless it ended first; says
/// how long it took when it did.
fn run_and_kill(mut cmd: std::process::Command, after: Duration) -> Option<Duration> {
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let deadline = started + after;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// Kills runs of `make` at points over `full`, once per round's run; a
/// round's first run that ended by itself (it starts from scratch) says
/// how long a whole run takes now: a machine less busy than when `full`
/// was timed would let the kills come too late.
fn kill_round(
    rng: &mut Rng,
    full: &mut Duration,
    share: (u64, u64),
    make: impl Fn() -> std::process::Command,
) -> usize {
    let mut killed = 0;
    for k in 0..KILLS_PER_ROUND {
        let after = Duration::from_micros(rng.below(full.as_micros() as u64 * share.0 / share.1));
        match run_and_kill(make(), after) {
            None => killed += 1,
            Some(took) if k == 0 => *full = took,
            Some(_) => {}
        }
    }
    killed
}

fn timed(mut cmd: std::process::Command) -> Duration {
    let started = Instant::now();
    let run = Run::of(&mut cmd);
    assert_eq!(run.code, 0, "{}", run.stderr);
    started.elapsed()
}

#[test]
fn fifty_kills_in_each_stage_lose_nothing_and_double_nothing() {
    let server = server();
    seed(&server);
    let (mut rng, seed_value) = Rng::new();
    let why = format!("(replay with MAILFERRY_KILL_SEED={seed_value})");
    let source = contents(&server, "alice", "alice-pw");
    let messages: usize = source.values().map(Vec::len).sum();

    // How long a whole mirror takes: kill points are spread over it.
    let scratch = tempfile::tempdir().unwrap();
    let accounts = server.accounts_csv(&[("alice", "alice-pw")]);
    let mut full = timed(mirror_command(
        &server,
        server.port,
        scratch.path(),
        &accounts,
        &[],
    ));

    // Rounds of a fresh store, a few kills, then a whole run that must
    // leave the store exact, until 50 runs were killed mid-way.
    let mut killed = 0;
    let mut round = 0;
    let mut last_store = None;
    while killed < KILLS {
        round += 1;
        assert!(
            round <= 40,
            "only {killed} of the runs were killed mid-way {why}"
        );
        let store = tempfile::tempdir().unwrap();
        killed += kill_round(&mut rng, &mut full, (1, 1), || {
            mirror_command(&server, server.port, store.path(), &accounts, &[])
        });
        let (run, summary) = mirror(&server, store.path(), &accounts, &[]);
        assert_eq!(run.code, 0, "round {round} {why}: {}", run.stderr);
        let stored: Vec<StoredMessage> = stored_messages(store.path())
            .into_iter()
            .filter(|m| !m.expunged)
            .collect();
        assert_eq!(stored.len(), messages, "round {round} {why}: {summary}");
        let mut by_folder: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
        for m in &stored {
            by_folder
                .entry(m.folder.clone())
                .or_default()
                .push(blob(store.path(), &m.hash));
        }
        for v in by_folder.values_mut() {
            v.sort();
        }
        assert_eq!(by_folder, source, "round {round} {why}");
        let verify = mailferry(&["--store", store.path().to_str().unwrap(), "verify"]);
        assert_eq!(verify.code, 0, "round {round} {why}: {}", verify.stdout);
        last_store = Some(store);
    }

    // Upload: each round into a mailbox of its own, from one store (the
    // ledger is kept per target mailbox).
    let store = last_store.unwrap();
    let timing = tempfile::tempdir().unwrap();
    copy_dir(store.path(), timing.path());
    let mut full = timed(upload_command(
        &server,
        server.port,
        timing.path(),
        &server.migration_csv(&[("alice", "alice-pw", "t0", "pw")]),
        &["--target-kind", "imap"],
    ));
    let mut want = source.clone();
    for v in want.values_mut() {
        // The same bytes twice in a folder go once.
        v.dedup();
    }
    let mut killed = 0;
    let mut round = 0;
    while killed < KILLS {
        round += 1;
        assert!(
            round < TARGETS,
            "only {killed} of the uploads were killed mid-way {why}"
        );
        let target = format!("t{round}");
        let accounts = server.migration_csv(&[("alice", "alice-pw", &target, "pw")]);
        killed += kill_round(&mut rng, &mut full, (4, 5), || {
            upload_command(
                &server,
                server.port,
                store.path(),
                &accounts,
                &["--target-kind", "imap"],
            )
        });
        let (run, summary) = upload(&server, store.path(), &accounts, &["--target-kind", "imap"]);
        assert_eq!(
            run.code, 0,
            "round {round} {why}: {}\n{summary}",
            run.stderr
        );
        assert_eq!(
            contents(&server, &target, "pw"),
            want,
            "round {round} {why}: {summary}"
        );
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    let _ = std::fs::create_dir_all(to);
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}
