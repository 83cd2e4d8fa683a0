//! The local store: content-addressed blobs plus the SQLite index.
//!
//! ```text
//! STORE/
//!   index.sqlite   the index (see `index.rs` and schema/*.sql)
//!   objects/ab/…   zstd-compressed raw messages named by the sha256 of the raw bytes
//!   tmp/           staging for blobs before they are linked into objects/
//!   LOCK           held (advisory lock) by the one process that writes the store
//! ```
//!
//! In object storage (`az://container/prefix`, `s3://bucket/prefix`), the
//! blobs are `prefix/objects/ab/…` and each shard's index lives in a local
//! working directory during a run, with its snapshots and lease in
//! `prefix/index/` (see `remote.rs` and `shards.rs`).
//!
//! A blob is durable before any index row points at it: it is written to
//! `tmp/`, fsynced, linked into `objects/` (a link never replaces, so two
//! writers of the same new blob create it once), and its directory fsynced. Only
//! then does the caller insert the rows that name it.

mod blob;
pub mod index;
pub mod item_ledger;
pub mod items;
pub mod ledger;
mod partial;
pub mod remote;
pub mod shards;
pub mod verify;

pub use blob::{BlobDamaged, BlobFault, BlobHash, BlobWrite, Blobs, Listed, LocalBlobs, Source};
pub use index::Index;
pub use partial::{Assembled, Partial};

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::files;
use crate::shard::Shard;
use remote::{ObjectBlobs, ObjectUrl, Remote};
use shards::ShardIndex;

/// Where a store is.
#[derive(Clone)]
pub enum Place {
    /// A directory holding the index and the blobs.
    Dir(PathBuf),
    /// Blobs and every shard's index snapshot in object storage; this
    /// worker's index in a local working directory while it runs.
    Objects(ObjectPlace),
}

/// A store in object storage, as one worker sees it.
#[derive(Clone)]
pub struct ObjectPlace {
    pub url: ObjectUrl,
    /// `object_store` settings (credentials among them: never shown).
    pub settings: Vec<(String, String)>,
    /// The local working directory; the shard's index is in a directory
    /// of its own under it.
    pub work: PathBuf,
    pub shard: Shard,
    /// How long the shard's lease lasts unless renewed (every third of it).
    pub lease: Duration,
    /// How often the index is written to the store during a run.
    pub snapshot_every: Duration,
}

impl ObjectPlace {
    /// This shard's local directory: index, lock, staging.
    pub fn shard_dir(&self) -> PathBuf {
        self.work.join(format!(
            "shard-{}-of-{}",
            self.shard.index, self.shard.count
        ))
    }
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Dir(p) => write!(f, "{}", p.display()),
            Place::Objects(o) => write!(f, "{}", o.url),
        }
    }
}

impl std::fmt::Debug for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Place({self})")
    }
}

/// The shard's index in object storage while a run holds it.
struct Shared {
    lease: Arc<ShardIndex>,
    /// The threads that renew the lease and write snapshots at intervals,
    /// each stopped by dropping its sender.
    threads: Mutex<Vec<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)>>,
}

/// Runs `work` every `every` on a thread of its own until the sender is
/// dropped; `work` returning false ends it early.
fn every(
    name: &str,
    every: Duration,
    mut work: impl FnMut() -> bool + Send + 'static,
) -> Result<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)> {
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(every)
            {
                if !work() {
                    return;
                }
            }
        })
        .with_context(|| format!("cannot start the {name} thread"))?;
    Ok((stop, thread))
}

/// What a worker is about to send to a target, written to object storage
/// before it is sent. A directory's index records each send before it goes
/// out and is there after a crash; a worker's local index may be lost with
/// its node, and the snapshot a new worker restores may be older than what
/// was sent. Each run's last snapshot holds what its intents said, and they
/// are removed then.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    Appends(ledger::Appends),
    Items(item_ledger::ItemIntent),
}

/// Marks pending in `store`'s index what the shard's intents name, unless
/// the run before ended (its last snapshot holds them). An intent that
/// cannot be read is named, passed over and kept.
fn replay_intents(store: &Store, lease: &ShardIndex) -> Result<()> {
    for (name, bytes) in lease.intents()? {
        if lease.after_release() {
            lease.covered(&name);
            continue;
        }
        match serde_json::from_slice::<Intent>(&bytes) {
            Ok(intent) => {
                let index = store.index();
                let marked = match &intent {
                    Intent::Appends(a) => index.ledger().replay(a),
                    Intent::Items(i) => index.item_ledger().replay(i),
                }
                .with_context(|| format!("cannot replay the intent {}/{name}", store.shown()))?;
                lease.covered(&name);
                tracing::debug!("{name}: {marked} entries pending");
            }
            // Kept for a version that reads it.
            Err(e) => tracing::warn!(
                "{}/{name} is not an intent this version reads ({e}); passed over and kept",
                store.shown()
            ),
        }
    }
    Ok(())
}

/// An open store, locked for writing by this process.
pub struct Store {
    root: PathBuf,
    index: Arc<Mutex<Index>>,
    /// What people are shown: the directory, or the object-storage address.
    shown: String,
    shared: Option<Shared>,
    /// The store held message files but no index (deleted, truncated): a
    /// new one was started.
    lost_index: bool,
    /// This open made a new store.
    made: bool,
    /// Files and directories of an older, readable store made private.
    made_private: u64,
    blobs: Box<dyn Blobs>,
    // Held for the life of the store; the lock goes with the file handle.
    _lock: File,
}

impl Store {
    /// Opens the store at `root` and takes its lock. A new store is made
    /// only where `creation` allows it and `root` is absent (its parent
    /// existing) or an empty directory: a mistyped path is an error, not
    /// a new empty store that the next mirror fills from scratch.
    pub fn open(root: &Path, creation: Creation) -> Result<Store> {
        let made = match store_state(root)? {
            StoreState::Store => false,
            StoreState::Absent | StoreState::Empty if creation == Creation::Allowed => true,
            StoreState::Absent | StoreState::Empty => return Err(no_store(root)),
            StoreState::NoParent => bail!(
                "cannot make a store at {}: its parent directory does not exist (check \
                 --store, MAILFERRY_STORE or the accounts file's `store`)",
                root.display()
            ),
            StoreState::Foreign => bail!(
                "{} is not empty and is not a mailferry store (no index.sqlite, no \
                 objects/): check --store, MAILFERRY_STORE or the accounts file's `store`",
                root.display()
            ),
        };
        files::create_dir_all(&root.join("objects"), files::PRIVATE_DIR).with_context(|| {
            format!(
                "cannot create store directory {}",
                root.join("objects").display()
            )
        })?;
        if made {
            // An empty directory given for a new store becomes private too.
            fs::set_permissions(root, fs::Permissions::from_mode(files::PRIVATE_DIR))
                .with_context(|| format!("cannot make {} private", root.display()))?;
        }
        let mut store = Store::open_dir(root, None)?;
        store.made = made;
        Ok(store)
    }

    /// Locks the store's directory and opens its index; for a shard in
    /// object storage, first restores its latest snapshot (`lease`).
    fn open_dir(root: &Path, lease: Option<&ShardIndex>) -> Result<Store> {
        for dir in [root.to_path_buf(), root.join("tmp")] {
            files::create_dir_all(&dir, files::PRIVATE_DIR)
                .with_context(|| format!("cannot create store directory {}", dir.display()))?;
        }
        let lock_path = root.join("LOCK");
        let mut lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(files::PRIVATE_FILE)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(StoreLocked {
                    root: root.to_path_buf(),
                    lock: lock_path,
                }
                .into());
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", lock_path.display()));
            }
        }
        // A store made before stores were private is made private once,
        // under the lock, so no other writer is renaming files meanwhile.
        let opened_up = fs::metadata(root)
            .with_context(|| format!("cannot read {}", root.display()))?
            .permissions()
            .mode()
            & 0o077
            != 0;
        let made_private = if opened_up {
            files::make_private(root)
                .with_context(|| format!("cannot make {} private", root.display()))?
        } else {
            0
        };
        // The PID is for people looking at a stuck store; the lock is what counts.
        lock.set_len(0).ok();
        let _ = writeln!(lock, "{}", std::process::id());
        clean_tmp(&root.join("tmp"));
        partial::clean_stale(&root.join("partial"));
        if let Some(lease) = lease {
            lease.restore(root)?;
        }
        let index_path = index_path(root);
        let no_index = std::fs::metadata(&index_path).map_or(true, |m| m.len() == 0);
        let lost_index = no_index && lease.is_none() && has_objects(&root.join("objects"));
        if no_index {
            // SQLite gives its -wal and -shm files the index's mode.
            files::create(&index_path, files::PRIVATE_FILE)
                .with_context(|| format!("cannot create {}", index_path.display()))?;
        }
        let index = Index::open(&index_path)?;
        Ok(Store {
            root: root.to_path_buf(),
            index: Arc::new(Mutex::new(index)),
            shown: root.display().to_string(),
            shared: None,
            lost_index,
            made: false,
            made_private,
            blobs: Box::new(LocalBlobs::new(root)),
            _lock: lock,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The store as people name it: its directory, or its address.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Opens the store at `place` (see [`Store::open`] and
    /// [`Store::open_objects`]).
    pub fn open_at(place: &Place, creation: Creation) -> Result<Store> {
        match place {
            Place::Dir(root) => Store::open(root, creation),
            Place::Objects(o) => Store::open_objects(o, creation),
        }
    }

    /// Opens a store in object storage for one shard: takes the shard's
    /// lease (refusing while another worker holds it), restores the
    /// shard's latest index snapshot into the working directory unless the
    /// index there is as new, and from then on renews the lease and writes
    /// a snapshot every `snapshot_every` until [`Store::close`].
    pub fn open_objects(place: &ObjectPlace, creation: Creation) -> Result<Store> {
        let remote = Arc::new(Remote::new(&place.url, &place.settings)?);
        let root = place.shard_dir();
        files::create_dir_all(&root, files::PRIVATE_DIR)
            .with_context(|| format!("cannot create the working directory {}", root.display()))?;
        let belongs = root.join("STORE");
        match fs::read_to_string(&belongs) {
            Ok(url) if url.trim() != place.url.as_str() => bail!(
                "the working directory {} holds the index of another store ({}), not {}: give \
                 each store its own --work-dir",
                root.display(),
                url.trim(),
                place.url
            ),
            Ok(_) => {}
            Err(_) => fs::write(&belongs, format!("{}\n", place.url))
                .with_context(|| format!("cannot write {}", belongs.display()))?,
        }
        let shards = shards::shards_in(&remote)?;
        let made = shards.is_empty() && !remote.any("objects")?;
        if made && creation == Creation::Refused {
            bail!(
                "there is no store at {} (no index snapshot, no objects/): check --store, \
                 MAILFERRY_STORE or the accounts file's `store`, and the credentials in the \
                 environment; a store is made by the first `mirror`, `sync`, `cutover` or \
                 `import`",
                place.url
            );
        }
        // The lease's requests give up well within its life.
        let lease_remote = Arc::new(Remote::with_timeout(&place.url, &place.settings, "30s")?);
        let lease = Arc::new(ShardIndex::take(lease_remote, place.shard, place.lease)?);
        // Renewed from now on, a restore of a large snapshot included; a
        // lease taken over by another worker stops this run, as a signal
        // would: two workers must not go on with one shard.
        let renewing = {
            let lease = lease.clone();
            every(
                "mailferry-lease",
                (place.lease / 3).max(Duration::from_secs(1)),
                move || match lease.renew() {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::error!("{e:#}");
                        if lease.lost() {
                            eprintln!("error: {e:#}; stopping");
                            crate::stop::request(crate::stop::Signal::Terminate);
                            return false;
                        }
                        true
                    }
                },
            )?
        };
        let opened = (|| {
            let mut store = Store::open_dir(&root, Some(&lease))?;
            store.blobs = Box::new(ObjectBlobs::new(remote.clone(), &root.join("tmp")));
            store.made = made;
            store.shown = place.url.to_string();
            Ok::<_, anyhow::Error>(store)
        })();
        let mut store = match opened {
            Ok(s) => s,
            Err(e) => {
                drop(renewing.0);
                let _ = renewing.1.join();
                let _ = lease.release();
                return Err(e);
            }
        };
        // What a worker that died was about to append, beyond its snapshot.
        if let Err(e) = replay_intents(&store, &lease) {
            drop(renewing.0);
            let _ = renewing.1.join();
            let _ = lease.release();
            return Err(e);
        }
        let snapshots = {
            let (lease, index, root) = (lease.clone(), index_path(&root), root.clone());
            every(
                "mailferry-snapshot",
                place.snapshot_every.max(Duration::from_secs(1)),
                move || match lease.snapshot(&index, &root, false) {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::error!("{e:#}");
                        !lease.lost()
                    }
                },
            )?
        };
        store.shared = Some(Shared {
            lease,
            threads: Mutex::new(vec![renewing, snapshots]),
        });
        Ok(store)
    }

    /// Ends a run on a store in object storage: writes the shard's index
    /// snapshot and releases its lease. Nothing to do for a directory.
    /// Dropping the store does the same, without saying what failed.
    pub fn close(&self) -> Result<()> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        let threads =
            std::mem::take(&mut *shared.threads.lock().unwrap_or_else(|e| e.into_inner()));
        if threads.is_empty() {
            return Ok(());
        }
        for (stop, thread) in threads {
            drop(stop);
            let _ = thread.join();
        }
        shared
            .lease
            .snapshot(&index_path(&self.root), &self.root, true)
    }

    /// Says `intent` before its APPENDs where the index lives in object
    /// storage (a directory's index records each one before it is sent,
    /// and is there after a crash; a worker's disk may not be).
    pub fn intend(&self, intent: &Intent) -> Result<()> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        let body = serde_json::to_vec(intent).context("cannot write an intent")?;
        shared.lease.write_intent(body)
    }

    /// Requests made to object storage so far (0 for a directory): blobs,
    /// and the lease, snapshots and intents (a client of their own).
    pub fn remote_requests(&self) -> u64 {
        self.blobs.requests() + self.shared.as_ref().map_or(0, |s| s.lease.requests())
    }

    /// True when this open made a new, empty store.
    pub fn made(&self) -> bool {
        self.made
    }

    /// How many files and directories of a store that other local users
    /// could read this open made private (0 for a store that was).
    pub fn made_private(&self) -> u64 {
        self.made_private
    }

    /// True when the store held message files but its index was missing
    /// or empty, so this open started a new one: what was uploaded is not
    /// in it (see [`index::LOST_INDEX_ADVICE`]).
    pub fn lost_index(&self) -> bool {
        self.lost_index
    }

    /// The index, for one short piece of work at a time.
    pub fn index(&self) -> MutexGuard<'_, Index> {
        // A panic while holding the index leaves SQLite consistent (transactions
        // roll back), so a poisoned lock is still usable.
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where the blob named `hash` lives, for messages to people.
    pub fn blob_location(&self, hash: &BlobHash) -> PathBuf {
        self.blobs.location(hash)
    }

    /// Writes `raw` durably as a blob unless the index already has it. A
    /// blob the index marks damaged is written anew (replacing the bad
    /// file) and its mark cleared. Blocking: call from a blocking thread.
    pub fn write_blob(&self, raw: &[u8]) -> Result<BlobWrite> {
        self.write_blob_from(Source::Bytes(raw), BlobHash::of(raw))
    }

    /// [`Store::write_blob`] for a message spilled to `path` as it arrived,
    /// whose sha256 was computed then; compressed as a stream.
    pub fn write_blob_file(&self, path: &Path, hash: BlobHash) -> Result<BlobWrite> {
        self.write_blob_from(Source::File(path), hash)
    }

    fn write_blob_from(&self, src: Source<'_>, hash: BlobHash) -> Result<BlobWrite> {
        self.write_blobs(&[(src, hash)]).map(|mut w| w.remove(0))
    }

    /// [`Store::write_blob`] for many messages at once: the new blobs are
    /// made durable together (see [`Blobs::put_all`]), so that a batch of
    /// small messages costs one flush. Each message's outcome, in order.
    pub fn write_blobs(&self, srcs: &[(Source<'_>, BlobHash)]) -> Result<Vec<BlobWrite>> {
        let mut out = Vec::with_capacity(srcs.len());
        let (mut new, mut new_at) = (Vec::new(), Vec::new());
        for &(src, hash) in srcs {
            let damaged = self.index().blob_damaged(&hash)?;
            if damaged == Some(true) {
                let put = self.blobs.put(src, &hash, true)?;
                self.index().blob_repaired(&hash, put.stored_size)?;
            } else if damaged.is_none() {
                new_at.push(out.len());
                new.push((src, hash));
            }
            out.push(BlobWrite {
                hash,
                stored_size: None,
                created: false,
                repaired: damaged == Some(true),
            });
        }
        for (put, at) in self.blobs.put_all(&new)?.into_iter().zip(new_at) {
            out[at].stored_size = Some(put.stored_size);
            out[at].created = put.created;
        }
        Ok(out)
    }

    /// Blob files that no index row names: left by a run stopped between
    /// storing a message and recording it. With the store's lock held, no
    /// writer can be about to record them.
    pub fn leftovers(&self) -> Result<Vec<Leftover>> {
        // Shards share the blobs: a blob this shard's index does not name
        // may be another's, and removing it would lose mail.
        if self.shared.is_some() {
            bail!(
                "the leftovers of a store in object storage are those no shard's index names \
                 (see `shards::leftovers`), not those of one shard"
            );
        }
        let mut out = Vec::new();
        for listed in self.blobs.list()? {
            if let Listed::Blob {
                hash,
                location,
                stored_size,
            } = listed
                && self.index().blob_damaged(&hash)?.is_none()
            {
                out.push(Leftover {
                    hash,
                    path: location,
                    bytes: stored_size,
                });
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Removes leftovers found by [`Store::leftovers`].
    pub fn remove_leftovers(&self, leftovers: &[Leftover]) -> Result<()> {
        let hashes: Vec<BlobHash> = leftovers.iter().map(|l| l.hash).collect();
        self.blobs.remove(&hashes)
    }

    /// The pieces so far of a large message arriving in pieces (empty when
    /// none came yet, or what came does not check out).
    pub fn partial(&self, folder_id: i64, uidvalidity: u32, uid: u32) -> Result<Partial> {
        Partial::open(
            &self.root.join("partial"),
            &partial_name(folder_id, uidvalidity, uid),
        )
    }

    /// Whether an earlier run left pieces of that message.
    pub fn has_partial(&self, folder_id: i64, uidvalidity: u32, uid: u32) -> bool {
        let name = partial_name(folder_id, uidvalidity, uid);
        self.root
            .join("partial")
            .join(format!("{name}.state"))
            .exists()
    }

    /// Where large messages are spilled while they arrive (see
    /// [`crate::imap::Spill`]); cleared at every open.
    pub fn spill_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Reads and decompresses a blob, checking that its bytes hash to
    /// its name. A damaged blob is a [`BlobDamaged`] error.
    pub fn read_blob(&self, hash: &BlobHash) -> Result<Vec<u8>, BlobDamaged> {
        self.blobs.get(hash)
    }
}

impl Drop for Store {
    /// A run that ends without [`Store::close`] (an error, a panic) still
    /// leaves its shard's latest index in the store and the lease free.
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::error!("{e:#}");
        }
    }
}

/// A blob file no index row names.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Leftover {
    #[serde(skip)]
    pub hash: BlobHash,
    pub path: PathBuf,
    /// Its size on disk (compressed).
    pub bytes: u64,
}

/// Another process writes the store.
#[derive(Debug, thiserror::Error)]
#[error(
    "the store {} is in use by another mailferry process (lock {} is held); wait for it to \
     finish",
    root.display(),
    lock.display()
)]
pub struct StoreLocked {
    pub root: PathBuf,
    pub lock: PathBuf,
}

/// May [`Store::open`] make a new store?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Creation {
    /// A command that fills a store from nothing (mirror, import, and
    /// sync and cutover, which mirror first).
    Allowed,
    /// A command that needs what a store already holds.
    Refused,
}

enum StoreState {
    Store,
    Absent,
    NoParent,
    Empty,
    Foreign,
}

fn store_state(root: &Path) -> Result<StoreState> {
    match fs::read_dir(root) {
        Ok(entries) => {
            let names: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
            if names.is_empty() {
                Ok(StoreState::Empty)
            } else if names.iter().any(|n| n == "index.sqlite" || n == "objects") {
                Ok(StoreState::Store)
            } else {
                Ok(StoreState::Foreign)
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = match root.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            Ok(if parent.is_dir() {
                StoreState::Absent
            } else {
                StoreState::NoParent
            })
        }
        Err(e) => Err(e).with_context(|| format!("cannot read the store {}", root.display())),
    }
}

/// The error for a command that needs a store where there is none.
pub fn no_store(root: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "there is no store at {} (no index.sqlite, no objects/): check --store, \
         MAILFERRY_STORE or the accounts file's `store`; a store is made by the first \
         `mirror`, `sync`, `cutover` or `import`",
        root.display()
    )
}

/// Is there a store at `root` (an index or an objects directory)?
pub fn exists(root: &Path) -> bool {
    matches!(store_state(root), Ok(StoreState::Store))
}

/// The index file of the store at `root`.
fn index_path(root: &Path) -> PathBuf {
    root.join("index.sqlite")
}

fn has_objects(objects: &Path) -> bool {
    fs::read_dir(objects).is_ok_and(|mut d| d.next().is_some())
}

/// A store opened for reading, without its lock: a writer may be running
/// (status, report, plan) — or, for [`Store::open_whole`], holding off
/// writers while a reader goes through all of it (verify, export).
pub struct StoreReader {
    root: PathBuf,
    index: Index,
    blobs: LocalBlobs,
    hold: Option<ReadHold>,
}

impl Store {
    /// Opens the store at `root` for reading; a mirror may be writing it.
    pub fn open_read_only(root: &Path) -> Result<StoreReader> {
        Ok(StoreReader {
            root: root.to_path_buf(),
            index: Index::open_read_only(&index_path(root))?,
            blobs: LocalBlobs::new(root),
            hold: None,
        })
    }

    /// Opens the store at `root` for reading all of it: no writer may
    /// start until the reader is dropped; one already running is told by
    /// [`StoreReader::writer_active`].
    pub fn open_whole(root: &Path) -> Result<StoreReader> {
        // The hold comes first: files a writer is making right now are then
        // told apart from leftovers.
        let hold = hold_for_reading(root);
        let mut reader = Store::open_read_only(root)?;
        reader.hold = Some(hold);
        Ok(reader)
    }
}

impl StoreReader {
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    pub fn blobs(&self) -> &dyn Blobs {
        &self.blobs
    }

    /// Reads and decompresses a blob, checking that its bytes hash to its name.
    pub fn read_blob(&self, hash: &BlobHash) -> Result<Vec<u8>, BlobDamaged> {
        self.blobs.get(hash)
    }

    /// A mirror, upload or import was writing the store when this reader
    /// began (only known for [`Store::open_whole`]).
    pub fn writer_active(&self) -> bool {
        self.hold.as_ref().is_some_and(|h| h.writer_active)
    }
}

/// A reader's hold on a store (verify, export). When no writer holds the
/// store it takes a shared lock, so none can start until the reader is
/// done; when one does, the reader works from a snapshot and must say so.
struct ReadHold {
    _lock: Option<File>,
    /// A mirror, upload or import was writing the store when the reader began.
    writer_active: bool,
}

/// Takes a [`ReadHold`] on the store at `root`.
fn hold_for_reading(root: &Path) -> ReadHold {
    let Ok(file) = File::open(root.join("LOCK")) else {
        // Never written to by this version, or read-only media: no writer.
        return ReadHold {
            _lock: None,
            writer_active: false,
        };
    };
    match file.try_lock_shared() {
        Ok(()) => ReadHold {
            _lock: Some(file),
            writer_active: false,
        },
        Err(fs::TryLockError::WouldBlock) => ReadHold {
            _lock: None,
            writer_active: true,
        },
        Err(fs::TryLockError::Error(_)) => ReadHold {
            _lock: None,
            writer_active: false,
        },
    }
}

fn partial_name(folder_id: i64, uidvalidity: u32, uid: u32) -> String {
    format!("{folder_id}-{uidvalidity}-{uid}")
}

/// Removes staging files left by a killed process: they were never renamed,
/// so nothing points at them.
fn clean_tmp(tmp: &Path) {
    if let Ok(entries) = fs::read_dir(tmp) {
        for entry in entries.flatten() {
            let _ = fs::remove_file(entry.path());
        }
    }
}
