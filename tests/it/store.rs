//! The store's rules as a user meets them: one writer, versioned index,
//! clear errors for bad input.

use crate::support::*;

#[test]
fn a_second_writer_gets_a_clear_error() {
    let store = tempfile::tempdir().unwrap();
    let _held =
        mailferry::store::Store::open(store.path(), mailferry::store::Creation::Allowed).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("a.csv");
    std::fs::write(&csv, "EmailAddress,UserName,Password\na@x.com,a,pw\n").unwrap();
    let run = mailferry(&[
        "--store",
        store.path().to_str().unwrap(),
        "mirror",
        "--accounts",
        csv.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 5, "5: the store is in use");
    assert!(
        run.stderr.contains("in use by another mailferry process"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_index_from_a_newer_mailferry_is_refused_not_rewritten() {
    let store = tempfile::tempdir().unwrap();
    drop(mailferry::store::Store::open(store.path(), mailferry::store::Creation::Allowed).unwrap());
    // What a newer mailferry would leave: SQLite's user_version (the
    // schema version) is the big-endian u32 at byte 60 of the file.
    let index = store.path().join("index.sqlite");
    set_user_version(&index, 99);
    let err = match mailferry::store::Store::open(store.path(), mailferry::store::Creation::Allowed)
    {
        Ok(_) => panic!("a newer index was opened"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("schema version 99"), "{err}");
    let run = mailferry(&["--store", store.path().to_str().unwrap(), "status"]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("newer than this mailferry"),
        "{}",
        run.stderr
    );
    assert_eq!(user_version(&index), 99, "left as it was");
}

#[test]
fn a_bad_csv_row_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("batch.csv");
    std::fs::write(
        &csv,
        "EmailAddress,UserName,Password\r\na@x.com,a,pw\r\nnot-an-address,b,secret-b\r\n",
    )
    .unwrap();
    let run = mailferry(&[
        "--store",
        dir.path().join("s").to_str().unwrap(),
        "mirror",
        "--accounts",
        csv.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("batch.csv line 3"), "{}", run.stderr);
    assert!(!run.stderr.contains("secret-b"));
}

#[test]
fn blobs_are_named_by_the_sha256_of_their_raw_bytes() {
    let store_dir = tempfile::tempdir().unwrap();
    let store =
        mailferry::store::Store::open(store_dir.path(), mailferry::store::Creation::Allowed)
            .unwrap();
    let raw = b"Subject: x\r\n\r\nhello\r\n";
    let w = store.write_blob(raw).unwrap();
    assert_eq!(w.hash.to_hex(), sha256_hex(raw));
    assert_eq!(blob(store_dir.path(), &w.hash.to_hex()), raw);
    assert_eq!(store.read_blob(&w.hash).unwrap(), raw);
}

#[test]
fn connections_racing_to_store_the_same_message_create_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(
        mailferry::store::Store::open(dir.path(), mailferry::store::Creation::Allowed).unwrap(),
    );
    for round in 0..40 {
        let body = message(
            &format!("race {round}"),
            &format!("r{round}@x"),
            "same bytes",
        );
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
        let writers: Vec<_> = (0..8)
            .map(|_| {
                let (store, barrier, body) = (store.clone(), barrier.clone(), body.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    store.write_blob(&body).unwrap()
                })
            })
            .collect();
        let results: Vec<_> = writers.into_iter().map(|w| w.join().unwrap()).collect();
        let created = results.iter().filter(|w| w.created).count();
        assert_eq!(created, 1, "round {round}: {results:?}");
        // Every writer can still give the index its row.
        assert!(results.iter().all(|w| w.stored_size.is_some()));
        assert_eq!(blob(dir.path(), &sha256_hex(&body)), body);
    }
    assert_eq!(blob_files(dir.path()).len(), 40);
    let leftovers = std::fs::read_dir(dir.path().join("tmp")).unwrap().count();
    assert_eq!(leftovers, 0, "no staging files stay behind");
}

#[test]
fn a_batch_of_blobs_is_stored_whole_and_heals_a_file_a_crash_left_short() {
    use mailferry::store::{BlobHash, Source};
    let dir = tempfile::tempdir().unwrap();
    let store =
        mailferry::store::Store::open(dir.path(), mailferry::store::Creation::Allowed).unwrap();
    let bodies: Vec<Vec<u8>> = (0..50)
        .map(|i| message(&format!("batch {i}"), &format!("b{i}@x"), "small"))
        .collect();
    // A machine that crashed before a batch's flush can leave a blob's
    // name with no bytes behind it; the index never heard of it.
    let short = BlobHash::of(&bodies[7]);
    let hex = short.to_hex();
    let at = dir.path().join("objects").join(&hex[..2]);
    std::fs::create_dir_all(&at).unwrap();
    std::fs::write(at.join(&hex[2..]), b"").unwrap();
    let mut srcs: Vec<(Source<'_>, BlobHash)> = bodies
        .iter()
        .map(|b| (Source::Bytes(b), BlobHash::of(b)))
        .collect();
    // The same message twice in one batch (two UIDs, one content).
    srcs.push((Source::Bytes(&bodies[3]), BlobHash::of(&bodies[3])));
    let writes = store.write_blobs(&srcs).unwrap();
    assert_eq!(writes.len(), 51);
    assert_eq!(writes.iter().filter(|w| w.created).count(), 49);
    assert!(!writes[7].created && !writes[50].created);
    assert!(writes.iter().all(|w| w.stored_size.is_some()));
    for body in &bodies {
        assert_eq!(&blob(dir.path(), &sha256_hex(body)), body);
        assert_eq!(&store.read_blob(&BlobHash::of(body)).unwrap(), body);
    }
    assert_eq!(blob_files(dir.path()).len(), 50);
    let leftovers = std::fs::read_dir(dir.path().join("tmp")).unwrap().count();
    assert_eq!(leftovers, 0, "no staging files stay behind");
}

fn user_version(index: &std::path::Path) -> u32 {
    let bytes = std::fs::read(index).unwrap();
    u32::from_be_bytes(bytes[60..64].try_into().unwrap())
}

fn set_user_version(index: &std::path::Path, version: u32) {
    use std::io::{Seek as _, SeekFrom, Write as _};
    // The store was closed: SQLite checkpointed its WAL into the file.
    assert!(!index.with_extension("sqlite-wal").exists());
    let mut f = std::fs::OpenOptions::new().write(true).open(index).unwrap();
    f.seek(SeekFrom::Start(60)).unwrap();
    f.write_all(&version.to_be_bytes()).unwrap();
}
