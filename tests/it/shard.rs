//! `--shard I/N` and a Kubernetes Indexed Job's `JOB_COMPLETION_INDEX`
//! with `--shards N`: several workers split one batch, each account in
//! exactly one shard, the same one on every run.

use mailferry::shard::Shard;

use crate::support::*;

const DATE_1: &str = "03-Mar-2025 10:00:00 +0100";

/// The accounts a mirror's summary names.
fn accounts_of(summary: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = summary["accounts"]
        .as_array()
        .unwrap_or_else(|| panic!("no accounts in {summary}"))
        .iter()
        .map(|a| a["account"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn shards_split_a_batch_and_an_indexed_job_takes_the_same_part() {
    let server = Dovecot::start();
    for user in ["alice", "bob"] {
        let mut c = server.client(user, &format!("{user}-pw"));
        let id = format!("{user}-sharded@x");
        c.append("INBOX", "", DATE_1, &message("sharded", &id, user));
    }
    let csv = server.migration_csv(&[
        ("alice", "alice-pw", "alice-365", "alice-365-pw"),
        ("bob", "bob-pw", "bob-365", "bob-365-pw"),
    ]);
    let store = tempfile::tempdir().unwrap();
    let all = ["alice@example.com", "bob@example.com"];

    // Each shard mirrors its own accounts, and together they are the batch.
    let mut seen = Vec::new();
    for i in 0..2u32 {
        let shard = format!("{i}/2");
        let mut cmd = mirror_command(
            &server,
            server.port,
            store.path(),
            &csv,
            &["--shard", &shard],
        );
        let run = Run::of(cmd.env_remove("MAILFERRY_SHARDS"));
        assert_eq!(run.code, 0, "{}", run.stderr);
        let summary: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        let names = accounts_of(&summary);
        for name in &names {
            assert_eq!(Shard::of(name, 2), i, "{name} mirrored by shard {shard}");
        }
        assert!(
            run.stderr.contains(&format!("shard {shard}")),
            "{}",
            run.stderr
        );
        // As a pod of an Indexed Job: the same accounts.
        let mut cmd = mirror_command(&server, server.port, store.path(), &csv, &[]);
        cmd.env("JOB_COMPLETION_INDEX", i.to_string())
            .env("MAILFERRY_SHARDS", "2");
        let job = Run::of(&mut cmd);
        assert_eq!(job.code, 0, "{}", job.stderr);
        let again: serde_json::Value = serde_json::from_str(&job.stdout).unwrap();
        assert_eq!(accounts_of(&again), names);
        seen.extend(names);
    }
    seen.sort();
    assert_eq!(seen, all);
    assert_eq!(stored_messages(store.path()).len(), 2);

    // An upload by shard moves only its own accounts' mail.
    for i in 0..2u32 {
        let (run, _) = upload(
            &server,
            store.path(),
            &csv,
            &["--target-kind", "imap", "--shard", &format!("{i}/2")],
        );
        assert_eq!(run.code, 0, "{}", run.stderr);
        for (source, target) in [("alice", "alice-365"), ("bob", "bob-365")] {
            let uploaded = server
                .client(target, &format!("{target}-pw"))
                .messages("INBOX")
                .len();
            let done = Shard::of(&format!("{source}@example.com"), 2) <= i;
            assert_eq!(uploaded, usize::from(done), "{target} after shard {i}/2");
        }
    }

    // What cannot be a shard is refused, naming what was wrong.
    let refused = |extra: &[&str], env: &[(&str, &str)], says: &str| {
        let mut cmd = mirror_command(&server, server.port, store.path(), &csv, extra);
        cmd.env_remove("MAILFERRY_SHARDS")
            .env_remove("JOB_COMPLETION_INDEX");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let run = Run::of(&mut cmd);
        assert_ne!(run.code, 0, "{extra:?} {env:?}: {}", run.stderr);
        assert!(
            run.stderr.contains(says),
            "{extra:?} {env:?}: {}",
            run.stderr
        );
    };
    refused(&["--shard", "2/2"], &[], "\"2/2\"");
    refused(&["--shard", "0/2", "--shards", "3"], &[], "disagree");
    refused(&["--shards", "2"], &[], "JOB_COMPLETION_INDEX");
    refused(
        &[],
        &[("MAILFERRY_SHARDS", "2"), ("JOB_COMPLETION_INDEX", "2")],
        "JOB_COMPLETION_INDEX 2",
    );
    refused(
        &["--shards", "2"],
        &[("JOB_COMPLETION_INDEX", "x")],
        "\"x\"",
    );
    // The store's own verify is not per account: a shard there is refused.
    let run = mailferry(&[
        "--store",
        store.path().to_str().unwrap(),
        "verify",
        "--shard",
        "0/2",
    ]);
    assert_ne!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("verify --target"), "{}", run.stderr);
}
