//! Each shard's index in object storage: `<prefix>/index/shard-I-of-N.G.W.sqlite`
//! (a consistent snapshot of the worker's local index, written at intervals
//! and at the end of each run; G counts them, W is the writer) and
//! `shard-I-of-N.lease` (who runs the shard, until when, and which snapshot
//! is the latest: a copy the lease does not name is never read).
//!
//! The lease is taken and renewed with conditional writes, so two workers
//! never run one shard at once; a worker that finds another's lease live
//! refuses. A worker killed without releasing it holds it until it expires.
//! A snapshot lags its worker's index by at most an interval: a worker that
//! restores it fetches from the source what came after (storing nothing
//! twice). What a worker sends to a target is said first, in an intent
//! object under `shard-I-of-N.intents/` (see [`super::Intent`]): whoever
//! restores the snapshot marks it pending, and the upload settles it by
//! reading the target back, as after a crash on the same disk. A run's last
//! snapshot holds what its intents said, and removes them.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::remote::{Remote, Version};
use super::{Index, index};
use crate::shard::Shard;

/// What the lease object says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LeaseRecord {
    /// The worker: host, process and a random part.
    pub holder: String,
    /// Unix seconds after which another worker may take the shard.
    pub expires_at: i64,
    /// `running`, or `released` at the end of a run.
    pub state: String,
    /// Counts the snapshots written; a working directory that restored or
    /// wrote the latest knows its index is at least as new.
    pub generation: u64,
    /// When the latest snapshot was written (Unix seconds).
    pub snapshot_at: Option<i64>,
    /// The latest snapshot's object: a name of its own per snapshot, so
    /// that a late upload by a worker that lost the lease never replaces
    /// the one this record names.
    #[serde(default)]
    pub snapshot: Option<String>,
}

/// Another worker runs the shard.
#[derive(Debug, thiserror::Error)]
#[error(
    "shard {shard} of the store {store} is being run by another worker ({holder}) until \
     {expires} UTC; two workers must not run one shard. If that worker is gone (killed, its \
     node lost), its lease expires then and this command can be run again"
)]
pub struct LeaseHeld {
    pub shard: Shard,
    pub store: String,
    pub holder: String,
    pub expires: String,
}

/// The lease on one shard's index, held by this process.
pub struct ShardIndex {
    remote: std::sync::Arc<Remote>,
    shard: Shard,
    holder: String,
    /// The holder's random part, in its snapshots' names.
    tag: String,
    ttl: Duration,
    held: Mutex<(LeaseRecord, Version)>,
    lost: AtomicBool,
    /// Intent objects read at the start and written since: removed once a
    /// snapshot that holds what they say ends the run.
    intents: Mutex<Vec<String>>,
    /// The lease was released when this run took it.
    after_release: bool,
}

pub fn lease_name(shard: Shard) -> String {
    format!("index/shard-{}-of-{}.lease", shard.index, shard.count)
}

/// A snapshot's object: its shard, generation and writer.
pub fn snapshot_name(shard: Shard, generation: u64, writer: &str) -> String {
    format!(
        "index/shard-{}-of-{}.{generation}.{writer}.sqlite",
        shard.index, shard.count
    )
}

/// Where a shard's intents are: what its worker was about to append, each
/// written before the appends it names.
pub fn intents_dir(shard: Shard) -> String {
    format!("index/shard-{}-of-{}.intents", shard.index, shard.count)
}

/// The shard a name under `index/` belongs to.
pub fn shard_of_name(name: &str) -> Option<Shard> {
    let stem = name.strip_prefix("index/shard-")?;
    if !(stem.ends_with(".lease") || stem.ends_with(".sqlite")) {
        return None;
    }
    let (i, rest) = stem.split_once("-of-")?;
    let n = rest.split('.').next()?;
    Shard::new(i.parse().ok()?, n.parse().ok()?).ok()
}

/// The shards whose index the store holds.
pub fn shards_in(remote: &Remote) -> Result<Vec<Shard>> {
    let mut shards: Vec<Shard> = remote
        .list("index")?
        .iter()
        .filter_map(|(name, _)| shard_of_name(name))
        .collect();
    shards.sort_by_key(|s| (s.count, s.index));
    shards.dedup();
    Ok(shards)
}

/// The lease record of `shard`, with its version; `None` when never taken.
pub fn read_lease(remote: &Remote, shard: Shard) -> Result<Option<(LeaseRecord, Version)>> {
    let Some(f) = remote.get(&lease_name(shard))? else {
        return Ok(None);
    };
    let record: LeaseRecord = serde_json::from_slice(&f.bytes).with_context(|| {
        format!(
            "{}/{} is not a mailferry lease",
            remote.url(),
            lease_name(shard)
        )
    })?;
    Ok(Some((record, f.version)))
}

impl ShardIndex {
    /// Takes the lease of `shard` for `ttl`, renewed while the run goes on.
    pub fn take(remote: std::sync::Arc<Remote>, shard: Shard, ttl: Duration) -> Result<ShardIndex> {
        // A batch split another way would put an account's ledger in a
        // shard this worker never reads, and upload it twice.
        if let Some(other) = shards_in(&remote)?
            .into_iter()
            .find(|s| s.count != shard.count)
        {
            bail!(
                "the store {} holds the index of this batch split into {} shards, and this run \
                 asks for {} (shard {shard}); a batch keeps the number of shards it began with: \
                 run with --shards {} (or MAILFERRY_SHARDS={})",
                remote.url(),
                other.count,
                shard.count,
                other.count,
                other.count
            );
        }
        let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
        let holder = format!("{}/pid {}/{tag}", hostname(), std::process::id());
        let held = |record: LeaseRecord, version: Version, after_release: bool| ShardIndex {
            remote: remote.clone(),
            shard,
            holder: holder.clone(),
            tag: tag.clone(),
            ttl,
            held: Mutex::new((record, version)),
            lost: AtomicBool::new(false),
            intents: Mutex::new(Vec::new()),
            after_release,
        };
        for _ in 0..5 {
            let current = read_lease(&remote, shard)?;
            let now = index::now();
            // Ours already: a write whose answer was lost went through.
            if let Some((rec, v)) = &current
                && rec.holder == holder
                && rec.state == "running"
            {
                return Ok(held(rec.clone(), v.clone(), false));
            }
            if let Some((rec, _)) = &current
                && rec.state == "running"
                && rec.expires_at > now
            {
                return Err(LeaseHeld {
                    shard,
                    store: remote.url().to_string(),
                    holder: rec.holder.clone(),
                    expires: chrono::DateTime::from_timestamp(rec.expires_at, 0)
                        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                        .unwrap_or_default(),
                }
                .into());
            }
            let record = LeaseRecord {
                holder: holder.clone(),
                expires_at: now + ttl.as_secs() as i64,
                state: "running".into(),
                generation: current.as_ref().map_or(0, |(r, _)| r.generation),
                snapshot_at: current.as_ref().and_then(|(r, _)| r.snapshot_at),
                snapshot: current.as_ref().and_then(|(r, _)| r.snapshot.clone()),
            };
            let version = current.as_ref().map(|(_, v)| v);
            if let Some(v) = remote.put_if(&lease_name(shard), to_json(&record), version)? {
                let released = current.as_ref().is_some_and(|(r, _)| r.state == "released");
                return Ok(held(record, v, released));
            }
            // Another worker wrote the lease meanwhile: look again.
        }
        bail!(
            "cannot take the lease of shard {shard} in {}: other workers keep changing it",
            remote.url()
        )
    }

    pub fn shard(&self) -> Shard {
        self.shard
    }

    /// The lease was taken over: this run's index must not be written
    /// over the new holder's.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    /// Writes the lease record changed by `change`, if it is still ours.
    fn rewrite(&self, change: impl FnOnce(&mut LeaseRecord)) -> Result<()> {
        if self.lost() {
            bail!(self.lost_error());
        }
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let mut record = held.0.clone();
        change(&mut record);
        let written =
            match self
                .remote
                .put_if(&lease_name(self.shard), to_json(&record), Some(&held.1))
            {
                Ok(w) => w,
                // A broken connection: the write may have been done. If the
                // lease now says what was written, it was.
                Err(e) => match read_lease(&self.remote, self.shard)? {
                    Some((now, v)) if now == record => Some(v),
                    _ => return Err(e),
                },
            };
        // Refused: unless a write of ours whose answer was lost made the
        // lease what this one would have (it was made again, and refused).
        let written = match written {
            None => match read_lease(&self.remote, self.shard)? {
                Some((now, v)) if now == record => Some(v),
                _ => None,
            },
            some => some,
        };
        match written {
            Some(v) => {
                *held = (record, v);
                Ok(())
            }
            None => {
                self.lost.store(true, Ordering::Relaxed);
                bail!(self.lost_error())
            }
        }
    }

    fn lost_error(&self) -> String {
        format!(
            "the lease of shard {} in {} was taken by another worker while this run went on (it \
             was not renewed in time); this run's index is not written over theirs",
            self.shard,
            self.remote.url()
        )
    }

    /// Pushes the lease's expiry `ttl` ahead.
    pub fn renew(&self) -> Result<()> {
        let until = index::now() + self.ttl.as_secs() as i64;
        self.rewrite(|r| r.expires_at = until)
    }

    /// Restores the shard's latest snapshot into `root` unless the index
    /// there is that snapshot or newer (this directory wrote or restored
    /// it). Returns whether it restored one.
    pub fn restore(&self, root: &Path) -> Result<bool> {
        let (generation, snapshot) = {
            let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            (held.0.generation, held.0.snapshot.clone())
        };
        let marker = root.join("SNAPSHOT");
        let here: Option<u64> = std::fs::read_to_string(&marker)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        let index_path = root.join("index.sqlite");
        let has_index = std::fs::metadata(&index_path).is_ok_and(|m| m.len() > 0);
        let Some(snapshot) = snapshot.filter(|_| generation > 0) else {
            return Ok(false);
        };
        if has_index && here == Some(generation) {
            return Ok(false);
        }
        let incoming = root.join("index.sqlite.restore");
        if !self.remote.get_file(&snapshot, &incoming)? {
            // The lease names a snapshot that is not there: deleted by hand.
            let _ = std::fs::remove_file(&incoming);
            bail!(
                "{}/{snapshot} is gone, though the shard's lease names it; restore it from a \
                 backup, or remove {} to begin this shard's index anew",
                self.remote.url(),
                lease_name(self.shard)
            );
        }
        for stale in ["index.sqlite-wal", "index.sqlite-shm"] {
            let _ = std::fs::remove_file(root.join(stale));
        }
        std::fs::rename(&incoming, &index_path).with_context(|| {
            format!("cannot put the restored index at {}", index_path.display())
        })?;
        crate::files::sync_dir(root)?;
        write_marker(&marker, generation)?;
        Ok(true)
    }

    /// Writes a snapshot of the index at `index` (`root`, its directory,
    /// holds the staging copy) as an object of its own, then names it in
    /// the lease and removes the one before; `released` ends the lease
    /// (the end of a run).
    pub fn snapshot(&self, index: &Path, root: &Path, released: bool) -> Result<()> {
        // Ours still, before the upload.
        self.renew()?;
        // The intents this copy holds: those known before it is taken (one
        // written while it is taken stays, for the next worker to read).
        let covered = released.then(|| {
            self.intents
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        });
        let staged = root.join("snapshot.sqlite.tmp");
        let _ = std::fs::remove_file(&staged);
        Index::snapshot_file(index, &staged)?;
        let (generation, before) = {
            let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            (held.0.generation + 1, held.0.snapshot.clone())
        };
        let name = snapshot_name(self.shard, generation, &self.tag);
        let result = self.remote.put_file(&name, &staged);
        let _ = std::fs::remove_file(&staged);
        result?;
        let now = index::now();
        let until = now + self.ttl.as_secs() as i64;
        if let Err(e) = self.rewrite(|r| {
            r.generation = generation;
            r.snapshot_at = Some(now);
            r.snapshot = Some(name.clone());
            if released {
                r.state = "released".into();
                r.expires_at = now;
            } else {
                r.expires_at = until;
            }
        }) {
            // Not named by the lease: nobody will read it.
            let _ = self.remote.delete(&name);
            return Err(e);
        }
        if let Some(before) = before.filter(|b| *b != name) {
            let _ = self.remote.delete(&before);
        }
        if let Some(done) = covered {
            // The run's last snapshot holds what they said; one left behind
            // (a failed removal) is passed over by the next run.
            for intent in done {
                let _ = self.remote.delete(&intent);
            }
            self.intents
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
        }
        write_marker(&root.join("SNAPSHOT"), generation)
    }

    /// Writes `body` as an intent object of its own, before the work it
    /// names: a worker that takes the shard over after this one dies
    /// learns from it what the snapshot it restores does not say yet.
    pub fn write_intent(&self, body: Vec<u8>) -> Result<()> {
        if self.lost() {
            bail!(self.lost_error());
        }
        let mut intents = self.intents.lock().unwrap_or_else(|e| e.into_inner());
        let name = format!(
            "{}/{}-{}-{:06}.json",
            intents_dir(self.shard),
            index::now(),
            self.tag,
            intents.len()
        );
        self.remote.put(&name, body)?;
        intents.push(name);
        Ok(())
    }

    /// The intents earlier workers of the shard left, oldest first, as
    /// (name, bytes). Each is removed at the end of this run only once
    /// [`ShardIndex::covered`] says its effects are in this run's index.
    pub fn intents(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let mut names: Vec<String> = self
            .remote
            .list(&intents_dir(self.shard))?
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        names.sort();
        let mut out = Vec::new();
        for name in names {
            // Removed meanwhile by nobody else (the lease is ours): skip.
            if let Some(f) = self.remote.get(&name)? {
                out.push((name, f.bytes));
            }
        }
        Ok(out)
    }

    /// The intent `name` is held by this run's index (replayed, or said
    /// by a run that ended): removed after this run's last snapshot.
    pub fn covered(&self, name: &str) {
        let mut known = self.intents.lock().unwrap_or_else(|e| e.into_inner());
        if !known.iter().any(|k| k == name) {
            known.push(name.to_string());
        }
    }

    /// The run before this one ended and wrote its last snapshot: every
    /// intent there is already in it (left only by a failed removal).
    pub fn after_release(&self) -> bool {
        self.after_release
    }

    /// Ends the lease without a snapshot (nothing was written).
    pub fn release(&self) -> Result<()> {
        let now = index::now();
        self.rewrite(|r| {
            r.state = "released".into();
            r.expires_at = now;
        })
    }

    /// Requests this lease's client made (lease, snapshots, intents).
    pub fn requests(&self) -> u64 {
        self.remote.requests()
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }
}

/// What a shard's lease and snapshot say of it, for a reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardState {
    /// Its last run ended and wrote its index.
    Finished,
    /// A worker holds it now; its index is as of the last snapshot.
    Running,
    /// Its worker stopped without ending its run (killed, its node lost):
    /// the snapshot may lag what it did.
    Stale,
    /// No snapshot in the store.
    Missing,
}

impl ShardState {
    pub fn as_str(self) -> &'static str {
        match self {
            ShardState::Finished => "finished",
            ShardState::Running => "running",
            ShardState::Stale => "stale",
            ShardState::Missing => "missing",
        }
    }
}

/// One shard as a reader sees it: its lease and its latest snapshot.
pub struct ShardCopy {
    pub shard: Shard,
    pub state: ShardState,
    pub lease: Option<LeaseRecord>,
    /// The snapshot, opened read-only (`None` when missing).
    pub index: Option<Index>,
}

/// Every shard of a store in object storage, their latest snapshots read
/// into a directory of the working directory (removed when dropped): what
/// `status`, `report`, `verify` and `export` read.
pub struct View {
    pub remote: std::sync::Arc<Remote>,
    pub shards: Vec<ShardCopy>,
    dir: std::path::PathBuf,
}

impl View {
    /// Reads every shard of the store at `place` (`what`: the command, for
    /// the directory's name).
    pub fn read(place: &super::ObjectPlace, what: &str) -> Result<View> {
        let remote = std::sync::Arc::new(Remote::new(&place.url, &place.settings)?);
        let Some(count) = shards_in(&remote)?.iter().map(|s| s.count).max() else {
            bail!(
                "there is no store at {} (no shard index in it): check --store, \
                 MAILFERRY_STORE or the accounts file's `store`, and the credentials in the \
                 environment",
                place.url
            );
        };
        // What a reader that was killed left (a copy of every index).
        if let Ok(entries) = std::fs::read_dir(&place.work) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                let pid = name
                    .rsplit_once('-')
                    .and_then(|(kind, pid)| {
                        ["status", "verify", "export", "gc", "verify-mark"]
                            .contains(&kind)
                            .then(|| pid.parse::<u32>().ok())
                    })
                    .flatten();
                if let Some(pid) = pid
                    && pid != std::process::id()
                    && !Path::new(&format!("/proc/{pid}")).exists()
                {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = place.work.join(format!("{what}-{}", std::process::id()));
        crate::files::create_dir_all(&dir, crate::files::PRIVATE_DIR)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let mut view = View {
            remote,
            shards: Vec::new(),
            dir,
        };
        for i in 0..count {
            let shard = Shard::new(i, count)?;
            let lease = read_lease(&view.remote, shard)?.map(|(r, _)| r);
            let copy = view.dir.join(format!("shard-{i}-of-{count}.sqlite"));
            let have = match lease.as_ref().and_then(|l| l.snapshot.as_deref()) {
                Some(name) => view.remote.get_file(name, &copy)?,
                None => false,
            };
            let now = index::now();
            let state = match &lease {
                _ if !have => ShardState::Missing,
                Some(l) if l.state == "running" && l.expires_at > now => ShardState::Running,
                Some(l) if l.state == "running" => ShardState::Stale,
                _ => ShardState::Finished,
            };
            let index = if have {
                Some(Index::open_read_only(&copy)?)
            } else {
                None
            };
            view.shards.push(ShardCopy {
                shard,
                state,
                lease,
                index,
            });
        }
        Ok(view)
    }

    /// The indexes read (shards with a snapshot).
    pub fn indexes(&self) -> impl Iterator<Item = (&ShardCopy, &Index)> {
        self.shards
            .iter()
            .filter_map(|c| c.index.as_ref().map(|i| (c, i)))
    }

    /// A worker runs some shard now.
    pub fn writer_active(&self) -> bool {
        self.shards.iter().any(|c| c.state == ShardState::Running)
    }

    /// The store's blobs, for reading.
    pub fn blobs(&self) -> super::remote::ObjectBlobs {
        super::remote::ObjectBlobs::new(self.remote.clone(), &self.dir)
    }
}

impl Drop for View {
    fn drop(&mut self) {
        // The indexes first: their files are in the directory.
        for c in &mut self.shards {
            c.index = None;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `gc` of a store in object storage: the blobs no shard's index names.
/// Every shard must have finished its last run (a running, stale or
/// missing one may name blobs its snapshot does not); every shard's lease
/// is held meanwhile, so no worker starts. With `delete`, they are removed.
pub fn leftovers(place: &super::ObjectPlace, delete: bool) -> Result<Vec<super::Leftover>> {
    let remote = std::sync::Arc::new(Remote::new(&place.url, &place.settings)?);
    let before = View::read(place, "gc")?;
    let unsound: Vec<String> = before
        .shards
        .iter()
        .filter(|c| c.state != ShardState::Finished)
        .map(|c| format!("shard {} is {}", c.shard, c.state.as_str()))
        .collect();
    if !unsound.is_empty() {
        bail!(
            "gc needs every shard of {} finished, and {}: a blob its index does not show yet \
             may be its mail. Let it finish (or run it again), then gc",
            place.url,
            unsound.join(", ")
        );
    }
    let shards: Vec<Shard> = before.shards.iter().map(|c| c.shard).collect();
    drop(before);
    let mut held = Vec::new();
    for shard in shards {
        match ShardIndex::take(remote.clone(), shard, place.lease) {
            Ok(l) => held.push(l),
            Err(e) => {
                for l in &held {
                    let _ = l.release();
                }
                return Err(e);
            }
        }
    }
    // Renewed while gc works (a large store takes longer than a lease).
    let held = std::sync::Arc::new(held);
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let renewer = {
        let held = held.clone();
        let tick = (place.lease / 3).max(std::time::Duration::from_secs(1));
        std::thread::spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
                for l in held.iter() {
                    let _ = l.renew();
                }
            }
        })
    };
    let result = (|| {
        // Read again under the leases: the latest snapshots.
        let view = View::read(place, "gc")?;
        let mut named = std::collections::HashSet::new();
        for (_, index) in view.indexes() {
            // Every row of the blobs table, damaged ones too.
            for (hash, _) in index.blob_sizes()? {
                named.insert(hash);
            }
        }
        let blobs = view.blobs();
        let mut out = Vec::new();
        for listed in super::Blobs::list(&blobs)? {
            if let super::Listed::Blob {
                hash,
                location,
                stored_size,
            } = listed
                && !named.contains(&hash)
            {
                out.push(super::Leftover {
                    hash,
                    path: location,
                    bytes: stored_size,
                });
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        if let Some(l) = held.iter().find(|l| l.lost()) {
            bail!(
                "gc stopped before removing anything: the lease of shard {} was taken by a \
                 worker meanwhile",
                l.shard()
            );
        }
        if delete {
            let hashes: Vec<_> = out.iter().map(|l| l.hash).collect();
            super::Blobs::remove(&blobs, &hashes)?;
        }
        Ok(out)
    })();
    drop(stop);
    let _ = renewer.join();
    for l in held.iter() {
        let _ = l.release();
    }
    result
}

fn write_marker(path: &Path, generation: u64) -> Result<()> {
    std::fs::write(path, format!("{generation}\n"))
        .with_context(|| format!("cannot write {}", path.display()))
}

fn to_json(record: &LeaseRecord) -> Vec<u8> {
    serde_json::to_vec_pretty(record).expect("a lease record serializes")
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "unknown-host".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_names_give_their_shard() {
        let s = Shard::new(2, 4).unwrap();
        assert_eq!(shard_of_name(&lease_name(s)), Some(s));
        assert_eq!(shard_of_name(&snapshot_name(s, 7, "ab12cd34")), Some(s));
        assert_eq!(shard_of_name("index/shard-4-of-4.1.x.sqlite"), None);
        assert_eq!(shard_of_name("index/notes.txt"), None);
    }
}
