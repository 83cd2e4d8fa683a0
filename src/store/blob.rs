//! Blobs: zstd-compressed raw messages named by the sha256 of the raw
//! bytes, behind the [`Blobs`] trait; [`LocalBlobs`] keeps them as files
//! under `objects/`.

use std::fmt;
use std::fs::{self, File};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, anyhow};
use sha2::{Digest, Sha256};

/// zstd level 1: a blob about a third of the size of typical mail, 0.8 %
/// larger than level 3 made it (100,000 small messages: 532 MB against
/// 528 MB) for some 13 % less of the mirror's CPU, which on small mail is
/// what bounds it.
const ZSTD_LEVEL: i32 = 1;

/// The identity of a message: sha256 of its exact bytes as the server sent them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobHash([u8; 32]);

impl BlobHash {
    pub fn of(raw: &[u8]) -> BlobHash {
        BlobHash(Sha256::digest(raw).into())
    }

    /// A sha256 computed elsewhere (while the bytes streamed to a file).
    pub fn from_digest(digest: [u8; 32]) -> BlobHash {
        BlobHash(digest)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Result<BlobHash> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)
            .with_context(|| format!("{s:?} is not a sha256 blob name"))?;
        Ok(BlobHash(out))
    }
}

impl fmt::Display for BlobHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for BlobHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobHash({})", &self.to_hex()[..12])
    }
}

/// The outcome of [`crate::store::Store::write_blob`].
#[derive(Debug, Clone)]
pub struct BlobWrite {
    pub hash: BlobHash,
    /// Compressed size when the index does not have the blob yet (its row
    /// is to be added); `None` when it has.
    pub stored_size: Option<u64>,
    /// Whether this call created the file (false when another writer, or
    /// a run killed before its index rows, had already put it there).
    pub created: bool,
    /// Whether this call replaced a file found damaged.
    pub repaired: bool,
}

/// Where a blob's raw bytes come from: memory, or a file they were
/// spilled to as they arrived (a large message).
#[derive(Clone, Copy)]
pub enum Source<'a> {
    Bytes(&'a [u8]),
    File(&'a Path),
}

/// Where blobs are kept. The store reaches blob bytes only through this,
/// so that another place (object storage) can stand in for the directory
/// without mirror, upload or verify knowing.
pub trait Blobs: Send + Sync {
    /// Stores `src` as the blob `hash`, durably before it returns. An
    /// existing blob is kept, unless `replace` (it was found damaged).
    fn put(&self, src: Source<'_>, hash: &BlobHash, replace: bool) -> Result<Put>;
    /// Stores several new blobs, every one durable when it returns. A
    /// place may make them durable together, which costs far less than one
    /// by one when they are many small messages.
    fn put_all(&self, items: &[(Source<'_>, BlobHash)]) -> Result<Vec<Put>> {
        items
            .iter()
            .map(|(src, hash)| self.put(*src, hash, false))
            .collect()
    }
    /// The blob's raw bytes, checked against its name while they are read.
    fn get(&self, hash: &BlobHash) -> Result<Vec<u8>, BlobDamaged>;
    /// Is a blob of that name there (sound or not)?
    fn exists(&self, hash: &BlobHash) -> bool;
    /// Everything in the blob area: blobs, and entries that are not.
    fn list(&self) -> Result<Vec<Listed>>;
    /// Removes blobs (leftovers no row names).
    fn remove(&self, hashes: &[BlobHash]) -> Result<()>;
    /// Where the blob is, for messages to people.
    fn location(&self, hash: &BlobHash) -> PathBuf;
    /// Checks the blob without keeping its bytes; returns its stored size.
    fn check(&self, hash: &BlobHash) -> Result<u64, BlobFault> {
        self.get(hash)
            .map(|raw| raw.len() as u64)
            .map_err(|e| e.fault)
    }
    /// Requests made to a remote place so far (0 for a directory).
    fn requests(&self) -> u64 {
        0
    }
}

/// What [`Blobs::put`] did.
#[derive(Debug, Clone, Copy)]
pub struct Put {
    /// Compressed size.
    pub stored_size: u64,
    /// This call made the blob (false when it was there already, put by
    /// another writer or a run killed before its index rows).
    pub created: bool,
}

/// An entry of [`Blobs::list`].
#[derive(Debug, Clone)]
pub enum Listed {
    Blob {
        hash: BlobHash,
        location: PathBuf,
        stored_size: u64,
    },
    /// Not a blob name: nothing mailferry wrote.
    Stray(PathBuf),
}

/// Blobs as files: `objects/ab/cdef…`, staged in `tmp/`.
pub struct LocalBlobs {
    objects: PathBuf,
    tmp: PathBuf,
    tmp_counter: AtomicU64,
}

impl LocalBlobs {
    pub fn new(root: &Path) -> LocalBlobs {
        LocalBlobs {
            objects: root.join("objects"),
            tmp: root.join("tmp"),
            tmp_counter: AtomicU64::new(0),
        }
    }
}

impl LocalBlobs {
    fn tmp_for(&self, hash: &BlobHash) -> PathBuf {
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        self.tmp.join(format!(
            "{}-{}-{}",
            std::process::id(),
            n,
            &hash.to_hex()[..16]
        ))
    }
}

impl Blobs for LocalBlobs {
    fn put(&self, src: Source<'_>, hash: &BlobHash, replace: bool) -> Result<Put> {
        let (tmp, dest) = (self.tmp_for(hash), self.location(hash));
        if replace {
            let stored_size = replace_durably(src, &tmp, &dest)?;
            return Ok(Put {
                stored_size,
                created: false,
            });
        }
        self.put_all(&[(src, *hash)]).map(|mut puts| puts.remove(0))
    }

    /// Every blob is written and moved into place first; then one flush
    /// makes the lot durable (`syncfs` on Linux: one journal commit and
    /// one cache flush instead of two fsyncs per blob). The caller's index
    /// rows are written only after this returns.
    fn put_all(&self, items: &[(Source<'_>, BlobHash)]) -> Result<Vec<Put>> {
        let mut puts = Vec::with_capacity(items.len());
        let mut staged = Vec::new();
        let mut dirs = std::collections::BTreeSet::new();
        for (src, hash) in items {
            let (tmp, dest) = (self.tmp_for(hash), self.location(hash));
            // Files are closed at once: a batch may hold a thousand messages.
            let unnamed = stage_unnamed(*src, &dest)
                .and_then(|staged| match staged {
                    Some((file, size)) => Ok(place_unnamed(&file, &tmp, &dest)?.map(|c| (size, c))),
                    None => Ok(None),
                })
                .with_context(|| format!("cannot store blob {hash}"))?;
            let (stored_size, created) = match unnamed {
                Some(done) => done,
                None => {
                    let (_, stored_size) = stage(*src, &tmp, &dest)
                        .with_context(|| format!("cannot store blob {hash}"))?;
                    (stored_size, place(&tmp, &dest)?)
                }
            };
            puts.push(Put {
                stored_size,
                created,
            });
            dirs.insert(dest.parent().expect("blob path has a parent").to_path_buf());
            staged.push(dest);
        }
        make_durable(&self.objects, staged, &dirs)?;
        Ok(puts)
    }

    fn get(&self, hash: &BlobHash) -> Result<Vec<u8>, BlobDamaged> {
        read(&self.location(hash), hash)
    }

    fn exists(&self, hash: &BlobHash) -> bool {
        self.location(hash).exists()
    }

    fn list(&self) -> Result<Vec<Listed>> {
        let mut out = Vec::new();
        for dir in fs::read_dir(&self.objects)
            .with_context(|| format!("cannot read {}", self.objects.display()))?
        {
            let dir = dir?;
            let prefix = dir.file_name().to_string_lossy().to_string();
            if !dir.file_type()?.is_dir() {
                out.push(Listed::Stray(dir.path()));
                continue;
            }
            for file in fs::read_dir(dir.path())? {
                let file = file?;
                let name = format!("{prefix}{}", file.file_name().to_string_lossy());
                match BlobHash::from_hex(&name) {
                    Ok(hash) if prefix.len() == 2 => out.push(Listed::Blob {
                        hash,
                        location: file.path(),
                        stored_size: file.metadata().map_or(0, |m| m.len()),
                    }),
                    _ => out.push(Listed::Stray(file.path())),
                }
            }
        }
        Ok(out)
    }

    fn remove(&self, hashes: &[BlobHash]) -> Result<()> {
        let mut dirs = std::collections::BTreeSet::new();
        for hash in hashes {
            let path = self.location(hash);
            fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
            if let Some(d) = path.parent() {
                dirs.insert(d.to_path_buf());
            }
        }
        for d in dirs {
            if let Ok(f) = File::open(&d) {
                let _ = f.sync_all();
            }
        }
        Ok(())
    }

    fn location(&self, hash: &BlobHash) -> PathBuf {
        let hex = hash.to_hex();
        self.objects.join(&hex[..2]).join(&hex[2..])
    }

    /// Decompresses and hashes in a stream, so a large blob costs no
    /// more memory than its compressed bytes.
    fn check(&self, hash: &BlobHash) -> Result<u64, BlobFault> {
        let compressed = match fs::read(self.location(hash)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(BlobFault::Missing),
            Err(e) => return Err(BlobFault::Unreadable(e.to_string())),
            Ok(c) => c,
        };
        check_compressed(&compressed, hash)?;
        Ok(compressed.len() as u64)
    }
}

/// Moves the staged blob `tmp` into place as `dest`. Returns whether
/// this call created `dest`: two connections fetching the same new message
/// race to store it, and only one creates it (a link, unlike a rename,
/// refuses to replace). A file already there is replaced by ours all the
/// same: the index does not know it yet, and a crash of the machine before
/// an earlier flush may have left it short.
fn place(tmp: &Path, dest: &Path) -> Result<bool> {
    match fs::hard_link(tmp, dest) {
        Ok(()) => {
            let _ = fs::remove_file(tmp);
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            if let Err(e) = fs::rename(tmp, dest) {
                let _ = fs::remove_file(tmp);
                return Err(e).with_context(|| format!("cannot move blob into {}", dest.display()));
            }
            Ok(false)
        }
        Err(e) => {
            let _ = fs::remove_file(tmp);
            Err(e).with_context(|| format!("cannot move blob into {}", dest.display()))
        }
    }
}

/// Makes placed blobs durable: their bytes, and their names in `dirs`.
/// One blob: its file and directory fsynced. More: one `syncfs` of the
/// file system under `objects` on Linux, else each file and each
/// directory once.
fn make_durable(
    objects: &Path,
    files: Vec<PathBuf>,
    dirs: &std::collections::BTreeSet<PathBuf>,
) -> Result<()> {
    #[cfg(target_os = "linux")]
    if files.len() > 1 {
        let fs_handle =
            File::open(objects).with_context(|| format!("cannot open {}", objects.display()))?;
        return rustix::fs::syncfs(&fs_handle)
            .map_err(std::io::Error::from)
            .with_context(|| format!("cannot flush the blobs under {}", objects.display()));
    }
    let _ = objects;
    for file in files {
        File::open(&file)
            .and_then(|f| f.sync_data())
            .with_context(|| format!("cannot fsync {}", file.display()))?;
    }
    for dir in dirs {
        sync_dir(dir)?;
    }
    Ok(())
}

/// zstd contexts, kept between messages (setting one up costs about as
/// much as compressing a small message) and at most one per core in use at
/// once: compressing is CPU work, so more at once only wait for a core,
/// and each context keeps 1-4 MB once it has seen a large message (one per
/// thread, and one more per large message, held 16 MB at the peak of a
/// 70,000-message mirror).
struct Compressors {
    /// Idle contexts, and how many exist.
    pool: std::sync::Mutex<(Vec<zstd::zstd_safe::CCtx<'static>>, usize)>,
    returned: std::sync::Condvar,
    most: usize,
}

static COMPRESSORS: std::sync::LazyLock<Compressors> = std::sync::LazyLock::new(|| Compressors {
    pool: Default::default(),
    returned: std::sync::Condvar::new(),
    most: std::thread::available_parallelism().map_or(2, |n| n.get()),
});

/// A context taken from [`COMPRESSORS`], given back when dropped.
struct Compressor(Option<zstd::zstd_safe::CCtx<'static>>);

impl Compressor {
    /// Waits while every context is in use.
    fn take() -> Result<Compressor> {
        let all = &*COMPRESSORS;
        let mut pool = all.pool.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(c) = pool.0.pop() {
                return Ok(Compressor(Some(c)));
            }
            if pool.1 < all.most {
                let mut c = zstd::zstd_safe::CCtx::try_create().context("zstd set-up failed")?;
                c.set_parameter(zstd::zstd_safe::CParameter::CompressionLevel(ZSTD_LEVEL))
                    .map_err(zstd_error)?;
                pool.1 += 1;
                return Ok(Compressor(Some(c)));
            }
            pool = all.returned.wait(pool).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn context(&mut self) -> &mut zstd::zstd_safe::CCtx<'static> {
        self.0.as_mut().expect("held until dropped")
    }
}

impl Drop for Compressor {
    fn drop(&mut self) {
        let all = &*COMPRESSORS;
        if let Some(c) = self.0.take() {
            all.pool.lock().unwrap_or_else(|e| e.into_inner()).0.push(c);
            all.returned.notify_one();
        }
    }
}

fn zstd_error(code: usize) -> anyhow::Error {
    anyhow!(
        "zstd compression failed: {}",
        zstd::zstd_safe::get_error_name(code)
    )
}

pub(super) fn compress(raw: &[u8]) -> Result<Vec<u8>> {
    let mut c = Compressor::take()?;
    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(raw.len()));
    // compress2 starts a new frame whatever the context did before.
    c.context().compress2(&mut out, raw).map_err(zstd_error)?;
    Ok(out)
}

/// Writes the compressed blob to `tmp` (not yet fsynced: see
/// [`make_durable`]) and makes sure the directory of `dest` exists.
/// Returns the file, still open, and the compressed size. A file source is
/// compressed as a stream, never whole in memory.
fn stage(src: Source<'_>, tmp: &Path, dest: &Path) -> Result<(File, u64)> {
    let mut file = crate::files::create(tmp, crate::files::PRIVATE_FILE)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    let stored_size = write_compressed(src, &mut file, tmp)?;
    ensure_dir(dest)?;
    Ok((file, stored_size))
}

/// The blob's directory, made (and made durable) the first time.
fn ensure_dir(dest: &Path) -> Result<()> {
    let dir = dest.parent().expect("blob path has a parent");
    if !dir.exists() {
        crate::files::create_dir_all(dir, crate::files::PRIVATE_DIR)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        sync_dir(dir.parent().expect("objects dir"))?;
    }
    Ok(())
}

/// [`stage`] into a file with no name yet (O_TMPFILE) in the blob's own
/// directory: no staging name to make and remove, so a blob costs one
/// directory entry, not three changes. `None` where the file system does
/// not offer it.
#[cfg(target_os = "linux")]
fn stage_unnamed(src: Source<'_>, dest: &Path) -> Result<Option<(File, u64)>> {
    use rustix::fs::{Mode, OFlags};
    ensure_dir(dest)?;
    let dir = dest.parent().expect("blob path has a parent");
    let Ok(fd) = rustix::fs::open(
        dir,
        OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC,
        Mode::from_bits_truncate(crate::files::PRIVATE_FILE),
    ) else {
        return Ok(None);
    };
    let mut file = File::from(fd);
    let stored_size = write_compressed(src, &mut file, dir)?;
    Ok(Some((file, stored_size)))
}

#[cfg(not(target_os = "linux"))]
fn stage_unnamed(_: Source<'_>, _: &Path) -> Result<Option<(File, u64)>> {
    Ok(None)
}

/// [`place`] for an unnamed file: linked in as `dest` (through
/// /proc/self/fd, which needs no privilege). Where `dest` exists, it gets
/// a name in `tmp` first and replaces `dest` from there. `None` when it
/// cannot be linked at all (no /proc): the caller stages a named copy.
#[cfg(target_os = "linux")]
fn place_unnamed(file: &File, tmp: &Path, dest: &Path) -> Result<Option<bool>> {
    use rustix::fs::{AtFlags, CWD};
    use std::os::fd::AsRawFd as _;
    let me = format!("/proc/self/fd/{}", file.as_raw_fd());
    let link = |to: &Path| rustix::fs::linkat(CWD, &me, CWD, to, AtFlags::SYMLINK_FOLLOW);
    match link(dest) {
        Ok(()) => Ok(Some(true)),
        Err(rustix::io::Errno::EXIST) => {
            if link(tmp).is_err() {
                return Ok(None);
            }
            if let Err(e) = fs::rename(tmp, dest) {
                let _ = fs::remove_file(tmp);
                return Err(e).with_context(|| format!("cannot move blob into {}", dest.display()));
            }
            Ok(Some(false))
        }
        Err(_) => Ok(None),
    }
}

#[cfg(not(target_os = "linux"))]
fn place_unnamed(_: &File, _: &Path, _: &Path) -> Result<Option<bool>> {
    Ok(None)
}

/// Writes `src` compressed into `file` (named `what` in errors); returns
/// the compressed size.
pub(super) fn write_compressed(src: Source<'_>, file: &mut File, what: &Path) -> Result<u64> {
    let tmp = what;
    let stored_size = match src {
        Source::Bytes(raw) => {
            let compressed = compress(raw)?;
            file.write_all(&compressed)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            compressed.len() as u64
        }
        Source::File(path) => {
            let input =
                File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
            let mut c = Compressor::take()?;
            let mut encoder = zstd::stream::write::Encoder::with_context(
                std::io::BufWriter::with_capacity(256 * 1024, &mut *file),
                c.context(),
            );
            std::io::copy(
                &mut std::io::BufReader::with_capacity(256 * 1024, input),
                &mut encoder,
            )
            .and_then(|_| encoder.finish())
            .and_then(|mut out| out.flush())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
            file.metadata()
                .with_context(|| format!("cannot read {}", tmp.display()))?
                .len()
        }
    };
    Ok(stored_size)
}

/// Replaces `dest` durably: for a blob found damaged, whose file holds the
/// wrong bytes or none. Returns the stored size.
fn replace_durably(src: Source<'_>, tmp: &Path, dest: &Path) -> Result<u64> {
    let (file, stored_size) = stage(src, tmp, dest)?;
    file.sync_data()
        .with_context(|| format!("cannot fsync {}", tmp.display()))?;
    if let Err(e) = fs::rename(tmp, dest) {
        let _ = fs::remove_file(tmp);
        return Err(e)
            .with_context(|| format!("cannot replace the damaged blob {}", dest.display()));
    }
    sync_dir(dest.parent().expect("blob path has a parent"))?;
    Ok(stored_size)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot fsync directory {}", dir.display()))
}

/// What is wrong with a stored blob. A damaged blob is reported with its
/// message and skipped; the next mirror fetches the message again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobFault {
    /// The index lists it; the file is gone.
    Missing,
    /// The file is there but cannot be read (permissions, I/O error).
    Unreadable(String),
    /// The file is not zstd data, or does not decompress.
    Corrupt(String),
    /// The file decompresses to bytes whose sha256 is not its name.
    WrongContent { actual: BlobHash },
}

impl BlobFault {
    /// A stable one-word name for the index and summaries.
    pub fn kind(&self) -> &'static str {
        match self {
            BlobFault::Missing => "missing",
            BlobFault::Unreadable(_) => "unreadable",
            BlobFault::Corrupt(_) => "corrupt",
            BlobFault::WrongContent { .. } => "wrong-content",
        }
    }
}

impl fmt::Display for BlobFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlobFault::Missing => f.write_str("the file is missing"),
            BlobFault::Unreadable(e) => write!(f, "the file cannot be read: {e}"),
            BlobFault::Corrupt(e) => write!(f, "the file is corrupt: {e}"),
            BlobFault::WrongContent { actual } => {
                write!(f, "the file holds other bytes (they hash to {actual})")
            }
        }
    }
}

/// A blob that could not be read back as the bytes it is named after.
#[derive(Debug, Clone, thiserror::Error)]
#[error("stored message {hash} is damaged: {fault}")]
pub struct BlobDamaged {
    pub hash: BlobHash,
    pub fault: BlobFault,
}

/// Reads and decompresses the blob file at `path`, checking while it
/// decompresses that the bytes hash to `expected` (no second pass).
fn read(path: &Path, expected: &BlobHash) -> Result<Vec<u8>, BlobDamaged> {
    let mut compressed = Vec::new();
    if let Err(e) = File::open(path).and_then(|mut f| f.read_to_end(&mut compressed)) {
        return Err(BlobDamaged {
            hash: *expected,
            fault: if e.kind() == std::io::ErrorKind::NotFound {
                BlobFault::Missing
            } else {
                BlobFault::Unreadable(e.to_string())
            },
        });
    }
    decode(&compressed, expected)
}

/// Decompresses a blob's stored bytes, checking while it decompresses
/// that they hash to `expected` (no second pass).
pub(super) fn decode(compressed: &[u8], expected: &BlobHash) -> Result<Vec<u8>, BlobDamaged> {
    let damaged = |fault| BlobDamaged {
        hash: *expected,
        fault,
    };
    let mut decoder = zstd::stream::read::Decoder::new(compressed)
        .map_err(|e| damaged(BlobFault::Corrupt(format!("not zstd data: {e}"))))?;
    let mut raw = Vec::with_capacity(compressed.len() * 3);
    let mut hasher = Sha256::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match decoder.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&chunk[..n]);
                raw.extend_from_slice(&chunk[..n]);
            }
            Err(e) => return Err(damaged(BlobFault::Corrupt(e.to_string()))),
        }
    }
    let actual = BlobHash(hasher.finalize().into());
    if actual != *expected {
        return Err(damaged(BlobFault::WrongContent { actual }));
    }
    Ok(raw)
}

/// Checks a blob's stored bytes against its name without keeping the
/// raw bytes (decompressed and hashed as a stream).
pub(super) fn check_compressed(compressed: &[u8], hash: &BlobHash) -> Result<(), BlobFault> {
    let mut decoder = zstd::stream::read::Decoder::new(compressed)
        .map_err(|e| BlobFault::Corrupt(format!("not zstd data: {e}")))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match decoder.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) => return Err(BlobFault::Corrupt(format!("does not decompress: {e}"))),
        }
    }
    let actual = BlobHash(hasher.finalize().into());
    if actual == *hash {
        Ok(())
    } else {
        Err(BlobFault::WrongContent { actual })
    }
}
