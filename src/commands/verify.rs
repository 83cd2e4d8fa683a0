//! `mailferry verify`: re-hash every blob and check that the index and the
//! objects agree. Every fault is named; the exit code is 1 if there is any.
//!
//! Faults: a row whose blob file is missing; a blob whose bytes do not hash
//! to its name (or do not decompress); a file whose name is not a blob
//! name. A blob file no row points at is a leftover of a stopped run, not
//! a fault: counted, and removed by `gc`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cli::{Cli, VerifyArgs};
use crate::commands::{EXIT_INCOMPLETE, EXIT_OK, apply_target, load_accounts, open_store};
use crate::store::Creation;
use crate::store::{BlobFault, BlobHash, Index, blob_path};

#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Fault {
    /// missing, corrupt, stray or index-damaged
    pub kind: &'static str,
    pub path: PathBuf,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct Verified {
    pub blobs_checked: u64,
    pub bytes_checked: u64,
    pub faults: Vec<Fault>,
    /// Blob files no index row names, left by a run that was stopped
    /// between writing a blob and recording its message: not faults. The
    /// next mirror adopts those whose messages the source still has;
    /// `mailferry gc --delete` removes them.
    pub leftovers: Vec<PathBuf>,
    /// A mirror, upload or import was writing the store meanwhile.
    pub writer_active: bool,
    /// Blob files without a row yet, written by that writer as it ran.
    pub in_flight: u64,
    /// Damaged blobs marked so that the next mirror fetches them again.
    pub marked_for_refetch: u64,
    pub seconds: f64,
}

pub fn run(cli: &Cli, args: &VerifyArgs) -> Result<i32> {
    if args.target {
        return run_target(cli, args);
    }
    let (root, _) = crate::commands::store_to_read(cli, args.accounts.as_deref())?;
    let jobs = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let bar = (!cli.quiet && !args.json).then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "verify [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
            )
            .expect("template")
            .progress_chars("=> "),
        );
        bar
    });
    let report = verify(&root, jobs.max(1), bar.as_ref())?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for f in &report.faults {
            println!("{}: {} ({})", f.kind, f.path.display(), f.detail);
        }
        if report.writer_active {
            println!(
                "a mirror, upload or import was writing this store while verify ran: {} blob \
                 files it had not recorded yet were left out (in flight, not faults); verify \
                 again when it has finished",
                report.in_flight
            );
        }
        if !report.leftovers.is_empty() {
            println!(
                "{} leftover blob files from a run that was stopped before it recorded their \
                 messages (not faults: nothing points at them). The next `mailferry mirror` \
                 adopts those the source still has; `mailferry gc` lists them and \
                 `mailferry gc --delete` removes them",
                report.leftovers.len()
            );
        }
        if report.marked_for_refetch > 0 {
            println!(
                "{} damaged blobs are marked: the next `mailferry mirror` fetches their \
                 messages again where the source still has them",
                report.marked_for_refetch
            );
        }
        println!(
            "{} blobs ({}) checked in {:.1}s: {}",
            report.blobs_checked,
            crate::format::bytes(report.bytes_checked),
            report.seconds,
            if report.faults.is_empty() {
                "no faults".to_string()
            } else {
                format!("{} faults", report.faults.len())
            }
        );
    }
    Ok(if report.faults.is_empty() {
        EXIT_OK
    } else {
        EXIT_INCOMPLETE
    })
}

/// `verify --target`: read the target folders back.
fn run_target(cli: &Cli, args: &VerifyArgs) -> Result<i32> {
    let accounts = crate::cli::AccountsArgs {
        accounts: args.accounts.clone().expect("clap requires --accounts"),
        only: args.only.clone(),
        accounts_at_once: None,
    };
    let mut config = load_accounts(&accounts)?;
    apply_target(&mut config, &args.target_settings)?;
    let store = open_store(cli, Some(&config), Creation::Refused)?;
    let checked = crate::commands::upload::check_with(cli, &config, store, args.requeue_missing)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&checked)?);
    } else {
        print!("{}", crate::report::target_check(&checked));
    }
    Ok(if checked.all_present() {
        EXIT_OK
    } else {
        EXIT_INCOMPLETE
    })
}

/// Checks the store at `root` with `jobs` threads.
pub fn verify(root: &Path, jobs: usize, bar: Option<&indicatif::ProgressBar>) -> Result<Verified> {
    let started = std::time::Instant::now();
    // No writer may start while this runs; if one is running, files it is
    // writing right now are told apart from garbage below.
    let hold = crate::store::hold_for_reading(root);
    let index_path = root.join("index.sqlite");
    let index = Index::open_read_only(&index_path)?;
    let mut faults = Vec::new();
    if let Err(e) =
        crate::store::index::check_sound(index.connection(), &index_path, "integrity_check")
    {
        faults.push(Fault {
            kind: "index-damaged",
            path: index_path.clone(),
            detail: format!("{e:#}"),
        });
    }
    // Files first, then the index: a file that is listed and whose row is
    // committed in between is known, not orphaned.
    let objects = root.join("objects");
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for dir in
        std::fs::read_dir(&objects).with_context(|| format!("cannot read {}", objects.display()))?
    {
        let dir = dir?;
        let prefix = dir.file_name().to_string_lossy().to_string();
        if !dir.file_type()?.is_dir() {
            faults.push(stray(dir.path()));
            continue;
        }
        for file in std::fs::read_dir(dir.path())? {
            let file = file?;
            let name = format!("{prefix}{}", file.file_name().to_string_lossy());
            if BlobHash::from_hex(&name).is_err() || prefix.len() != 2 {
                faults.push(stray(file.path()));
            } else {
                files.push((name, file.path()));
            }
        }
    }
    let mut blobs: Vec<(String, u64)> = Vec::new();
    {
        let mut stmt = index
            .connection()
            .prepare("SELECT hash, stored_size FROM blobs ORDER BY hash")?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
            let (h, s) = row?;
            blobs.push((h, s as u64));
        }
    }
    // Rows that name a blob the blobs table lacks (the foreign key should
    // make this impossible; a damaged index may not).
    {
        let mut stmt = index.connection().prepare(
            "SELECT DISTINCT m.blob_hash FROM messages m LEFT JOIN blobs b ON b.hash = m.blob_hash
             WHERE b.hash IS NULL",
        )?;
        for row in stmt.query_map([], |r| r.get::<_, String>(0))? {
            let h = row?;
            faults.push(Fault {
                kind: "missing",
                path: blob_path(root, &h),
                detail: "a message row names a blob the index does not list".into(),
            });
        }
    }
    let known: HashSet<&str> = blobs.iter().map(|(h, _)| h.as_str()).collect();
    let unlisted: Vec<(String, PathBuf)> = files
        .into_iter()
        .filter(|(name, _)| !known.contains(name.as_str()))
        .collect();
    if let Some(bar) = bar {
        bar.set_length(blobs.iter().map(|(_, s)| s).sum());
    }
    let next = AtomicUsize::new(0);
    let checked_bytes = AtomicU64::new(0);
    let found = Mutex::new(Vec::new());
    let damaged = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((hash, _)) = blobs.get(i) else { break };
                    let path = blob_path(root, hash);
                    let fault = match std::fs::read(&path) {
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            Some(BlobFault::Missing)
                        }
                        Err(e) => Some(BlobFault::Unreadable(e.to_string())),
                        Ok(compressed) => {
                            checked_bytes.fetch_add(compressed.len() as u64, Ordering::Relaxed);
                            if let Some(bar) = bar {
                                bar.inc(compressed.len() as u64);
                            }
                            check(&compressed, hash).err()
                        }
                    };
                    if let Some(f) = fault {
                        found.lock().unwrap().push(Fault {
                            kind: if f == BlobFault::Missing {
                                "missing"
                            } else {
                                "corrupt"
                            },
                            path: path.clone(),
                            detail: f.to_string(),
                        });
                        damaged.lock().unwrap().push((hash.clone(), f));
                    }
                }
            });
        }
    });
    faults.extend(found.into_inner().unwrap());

    // Files without a row: rows committed since the index was read are
    // fine; while a writer runs, the rest may be its work in progress.
    let mut in_flight = 0u64;
    let mut leftovers = Vec::new();
    {
        let mut stmt = index
            .connection()
            .prepare("SELECT 1 FROM blobs WHERE hash = ?1")?;
        for (name, path) in unlisted {
            if stmt.exists([&name])? {
                continue;
            }
            if hold.writer_active {
                in_flight += 1;
                continue;
            }
            leftovers.push(path);
        }
    }
    drop(index);

    // Damaged blobs are marked so that the next mirror fetches them again.
    let damaged = damaged.into_inner().unwrap();
    let mut marked_for_refetch = 0;
    if !damaged.is_empty() && !hold.writer_active {
        let writable = Index::open(&index_path)?;
        for (hash, fault) in &damaged {
            writable.mark_blob_damaged(&BlobHash::from_hex(hash)?, fault)?;
            marked_for_refetch += 1;
        }
    }
    faults.sort();
    leftovers.sort();
    Ok(Verified {
        leftovers,
        blobs_checked: blobs.len() as u64,
        bytes_checked: checked_bytes.into_inner(),
        faults,
        writer_active: hold.writer_active,
        in_flight,
        marked_for_refetch,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Decompresses and hashes in a stream, so a large blob costs no more
/// memory than its compressed bytes.
fn check(compressed: &[u8], hash: &str) -> std::result::Result<(), BlobFault> {
    use sha2::Digest as _;
    use std::io::Read as _;
    let mut decoder = zstd::stream::read::Decoder::new(compressed)
        .map_err(|e| BlobFault::Corrupt(format!("not zstd data: {e}")))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match decoder.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) => return Err(BlobFault::Corrupt(format!("does not decompress: {e}"))),
        }
    }
    let actual = hex::encode(hasher.finalize());
    if actual == hash {
        Ok(())
    } else {
        Err(BlobFault::WrongContent {
            actual: BlobHash::from_hex(&actual).expect("a sha256 in hex"),
        })
    }
}

fn stray(path: PathBuf) -> Fault {
    Fault {
        kind: "stray",
        path,
        detail: "not a blob name".into(),
    }
}
