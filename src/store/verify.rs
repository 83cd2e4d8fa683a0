//! Verify: re-hash every blob and check that the index and the blobs
//! agree. Every fault is named.
//!
//! Faults: a row whose blob is missing; a blob whose bytes do not hash to
//! its name (or do not decompress); an entry whose name is not a blob
//! name; a damaged index. A blob no row points at is a leftover of a
//! stopped run, not a fault: counted, and removed by `gc`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use anyhow::Result;
use serde::Serialize;

use super::{BlobFault, BlobHash, Index, Listed, Store};
use crate::progress::Progress;

/// What kind of fault [`verify`] found.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// A row names a blob that is not there.
    Missing,
    /// A blob whose bytes are not those it is named after.
    Corrupt,
    /// Something in the blob area that is not a blob.
    Stray,
    /// SQLite's integrity check failed.
    IndexDamaged,
}

impl FaultKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Missing => "missing",
            FaultKind::Corrupt => "corrupt",
            FaultKind::Stray => "stray",
            FaultKind::IndexDamaged => "index-damaged",
        }
    }
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Fault {
    pub kind: FaultKind,
    pub path: PathBuf,
    pub detail: String,
}

/// What [`verify`] found.
#[derive(Debug, Serialize)]
pub struct Verified {
    pub blobs_checked: u64,
    pub bytes_checked: u64,
    pub faults: Vec<Fault>,
    /// Blobs no index row names, left by a run that was stopped between
    /// writing a blob and recording its message: not faults. The next
    /// mirror adopts those whose messages the source still has; `gc`
    /// removes them.
    pub leftovers: Vec<PathBuf>,
    /// A mirror, upload or import was writing the store meanwhile.
    pub writer_active: bool,
    /// Blobs without a row yet, written by that writer as it ran.
    pub in_flight: u64,
    /// Damaged blobs marked so that the next mirror fetches them again.
    pub marked_for_refetch: u64,
    pub seconds: f64,
}

/// Checks the store at `root` with `jobs` threads; `progress` hears the
/// total (`planned`) and each blob's stored bytes (`moved`), under the
/// account name "".
pub fn verify(root: &Path, jobs: usize, progress: &dyn Progress) -> Result<Verified> {
    let started = std::time::Instant::now();
    let store = Store::open_whole(root)?;
    let index = store.index();
    let checked = check(
        &[index],
        store.blobs(),
        store.writer_active(),
        jobs,
        progress,
    )?;
    // Damaged blobs are marked so that the next mirror fetches them again
    // (still holding writers off).
    let mut marked_for_refetch = 0;
    if !checked.damaged.is_empty() && !store.writer_active() {
        let writable = Index::open(index.path())?;
        for (hash, fault) in &checked.damaged {
            writable.mark_blob_damaged(hash, fault)?;
            marked_for_refetch += 1;
        }
    }
    Ok(checked.into_verified(store.writer_active(), marked_for_refetch, started))
}

/// [`verify`] of a store in object storage: every blob there against
/// every shard's latest index snapshot. A damaged blob is marked in the
/// index of each shard that names it, taking that shard's lease for the
/// moment (a shard a worker is running is left for the next verify).
pub fn verify_objects(
    place: &super::ObjectPlace,
    jobs: usize,
    progress: &dyn Progress,
) -> Result<Verified> {
    let started = std::time::Instant::now();
    let view = super::shards::View::read(place, "verify")?;
    let writer_active = view.writer_active();
    let blobs = view.blobs();
    let all: Vec<&Index> = view.indexes().map(|(_, i)| i).collect();
    let checked = check(&all, &blobs, writer_active, jobs, progress)?;
    let mut marked_for_refetch = 0;
    for (copy, index) in view.indexes() {
        let named: Vec<_> = checked
            .damaged
            .iter()
            .filter(|(h, _)| index.blob_damaged(h).ok().flatten().is_some())
            .collect();
        // Only a shard whose last run ended: a running one is its
        // worker's, and a stale one's newer index may be on its node.
        if named.is_empty() || copy.state != super::shards::ShardState::Finished {
            continue;
        }
        let mut one = place.clone();
        one.shard = copy.shard;
        one.work = place
            .work
            .join(format!("verify-mark-{}", std::process::id()));
        let marked = (|| {
            let store = match Store::open_objects(&one, super::Creation::Refused) {
                Ok(s) => s,
                // A worker took it meanwhile: the next verify marks them.
                Err(e) if e.downcast_ref::<super::shards::LeaseHeld>().is_some() => return Ok(0),
                Err(e) => return Err(e),
            };
            for (hash, fault) in &named {
                store.index().mark_blob_damaged(hash, fault)?;
            }
            store.close()?;
            Ok::<_, anyhow::Error>(named.len() as u64)
        })();
        let _ = std::fs::remove_dir_all(&one.work);
        marked_for_refetch += marked?;
    }
    Ok(checked.into_verified(writer_active, marked_for_refetch, started))
}

/// What [`check`] found.
struct Checked {
    faults: Vec<Fault>,
    damaged: Vec<(BlobHash, BlobFault)>,
    leftovers: Vec<PathBuf>,
    in_flight: u64,
    blobs_checked: u64,
    bytes_checked: u64,
}

impl Checked {
    fn into_verified(
        mut self,
        writer_active: bool,
        marked_for_refetch: u64,
        started: std::time::Instant,
    ) -> Verified {
        self.faults.sort();
        self.leftovers.sort();
        Verified {
            leftovers: self.leftovers,
            blobs_checked: self.blobs_checked,
            bytes_checked: self.bytes_checked,
            faults: self.faults,
            writer_active,
            in_flight: self.in_flight,
            marked_for_refetch,
            seconds: started.elapsed().as_secs_f64(),
        }
    }
}

/// Checks every blob that `indexes` list (one store's, or every shard's)
/// in `blobs`, with `jobs` threads.
fn check(
    indexes: &[&Index],
    blobs: &dyn super::Blobs,
    writer_active: bool,
    jobs: usize,
    progress: &dyn Progress,
) -> Result<Checked> {
    let mut faults = Vec::new();
    for index in indexes {
        if let Err(e) = index.check_integrity() {
            faults.push(Fault {
                kind: FaultKind::IndexDamaged,
                path: index.path().to_path_buf(),
                detail: format!("{e:#}"),
            });
        }
    }
    // The blob area first, then the index: a blob that is listed and whose
    // row is committed in between is known, not a leftover.
    let mut found: Vec<(BlobHash, PathBuf)> = Vec::new();
    for listed in blobs.list()? {
        match listed {
            Listed::Blob { hash, location, .. } => found.push((hash, location)),
            Listed::Stray(path) => faults.push(Fault {
                kind: FaultKind::Stray,
                path,
                detail: "not a blob name".into(),
            }),
        }
    }
    // Shards share blobs: each is checked once.
    let mut listed: Vec<(BlobHash, u64)> = Vec::new();
    let mut seen = HashSet::new();
    for index in indexes {
        for (hash, size) in index.blob_sizes()? {
            if seen.insert(hash) {
                listed.push((hash, size));
            }
        }
        // Rows that name a blob the blobs table lacks (the foreign key
        // should make this impossible; a damaged index may not).
        for h in index.blobs_named_but_not_listed()? {
            faults.push(Fault {
                kind: FaultKind::Missing,
                path: BlobHash::from_hex(&h)
                    .map_or_else(|_| PathBuf::from(&h), |b| blobs.location(&b)),
                detail: "a message row names a blob the index does not list".into(),
            });
        }
    }
    let unlisted: Vec<(BlobHash, PathBuf)> = found
        .into_iter()
        .filter(|(h, _)| !seen.contains(h))
        .collect();
    progress.planned("", listed.len() as u64, listed.iter().map(|(_, s)| s).sum());
    let next = AtomicUsize::new(0);
    let checked_bytes = AtomicU64::new(0);
    let bad = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| {
                while let Some((hash, size)) = listed.get(next.fetch_add(1, Ordering::Relaxed)) {
                    match blobs.check(hash) {
                        Ok(stored) => {
                            checked_bytes.fetch_add(stored, Ordering::Relaxed);
                            progress.moved("", 1, stored);
                        }
                        Err(fault) => {
                            progress.moved("", 1, *size);
                            bad.lock().unwrap().push((*hash, fault));
                        }
                    }
                }
            });
        }
    });
    let damaged: Vec<(BlobHash, BlobFault)> = bad.into_inner().unwrap();
    for (hash, fault) in &damaged {
        faults.push(Fault {
            kind: if *fault == BlobFault::Missing {
                FaultKind::Missing
            } else {
                FaultKind::Corrupt
            },
            path: blobs.location(hash),
            detail: fault.to_string(),
        });
    }

    // Blobs without a row: rows committed since the index was read are
    // fine; while a writer runs, the rest may be its work in progress.
    let mut in_flight = 0u64;
    let mut leftovers = Vec::new();
    'blob: for (hash, path) in unlisted {
        for index in indexes {
            if index.blob_damaged(&hash)?.is_some() {
                continue 'blob;
            }
        }
        if writer_active {
            in_flight += 1;
        } else {
            leftovers.push(path);
        }
    }
    Ok(Checked {
        faults,
        damaged,
        leftovers,
        in_flight,
        blobs_checked: listed.len() as u64,
        bytes_checked: checked_bytes.into_inner(),
    })
}

impl std::fmt::Display for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for fault in &self.faults {
            writeln!(
                f,
                "{}: {} ({})",
                fault.kind,
                fault.path.display(),
                fault.detail
            )?;
        }
        if self.writer_active {
            writeln!(
                f,
                "a mirror, upload or import was writing this store while verify ran: {} blob \
                 files it had not recorded yet were left out (in flight, not faults); verify \
                 again when it has finished",
                self.in_flight
            )?;
        }
        if !self.leftovers.is_empty() {
            writeln!(
                f,
                "{} leftover blob files from a run that was stopped before it recorded their \
                 messages (not faults: nothing points at them). The next `mailferry mirror` \
                 adopts those the source still has; `mailferry gc` lists them and \
                 `mailferry gc --delete` removes them",
                self.leftovers.len()
            )?;
        }
        if self.marked_for_refetch > 0 {
            writeln!(
                f,
                "{} damaged blobs are marked: the next `mailferry mirror` fetches their \
                 messages again where the source still has them",
                self.marked_for_refetch
            )?;
        }
        writeln!(
            f,
            "{} blobs ({}) checked in {:.1}s: {}",
            self.blobs_checked,
            crate::format::bytes(self.bytes_checked),
            self.seconds,
            if self.faults.is_empty() {
                "no faults".to_string()
            } else {
                format!("{} faults", self.faults.len())
            }
        )?;
        Ok(())
    }
}
