//! Blob files: zstd-compressed raw messages named by the sha256 of the raw bytes.

use std::fmt;
use std::fs::{self, File};
use std::io::{Read as _, Write as _};
use std::path::Path;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// zstd level 3: about the speed of the network and disk, a third of the size
/// of typical mail.
const ZSTD_LEVEL: i32 = 3;

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

/// Compresses `src` into `tmp`, fsyncs it, links it as `dest` and fsyncs
/// the directory, so `dest` is complete and durable when this returns.
/// Returns the stored size and whether this call created `dest`: two
/// connections fetching the same new message race to store it, and only
/// one of them creates it (a link, unlike a rename, refuses to replace).
pub(super) fn write_durably(src: Source<'_>, tmp: &Path, dest: &Path) -> Result<(u64, bool)> {
    let stored_size = stage(src, tmp, dest)?;
    let dir = dest.parent().expect("blob path has a parent");
    let linked = fs::hard_link(tmp, dest);
    let _ = fs::remove_file(tmp);
    let created = match linked {
        Ok(()) => true,
        // Complete already: files only ever appear there whole.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(e) => {
            return Err(e).with_context(|| format!("cannot move blob into {}", dest.display()));
        }
    };
    // Also when another writer won: its directory entry must be durable
    // before our index row points at it.
    sync_dir(dir)?;
    Ok((stored_size, created))
}

/// Writes the compressed blob to `tmp`, fsynced, and makes sure the
/// directory of `dest` exists. Returns the compressed size. A file source
/// is compressed as a stream, never whole in memory.
fn stage(src: Source<'_>, tmp: &Path, dest: &Path) -> Result<u64> {
    {
        let mut file = crate::files::create(tmp, crate::files::PRIVATE_FILE)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        match src {
            Source::Bytes(raw) => {
                let compressed =
                    zstd::bulk::compress(raw, ZSTD_LEVEL).context("zstd compression failed")?;
                file.write_all(&compressed)
                    .with_context(|| format!("cannot write {}", tmp.display()))?;
            }
            Source::File(path) => {
                let input =
                    File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
                zstd::stream::copy_encode(
                    std::io::BufReader::with_capacity(256 * 1024, input),
                    std::io::BufWriter::with_capacity(256 * 1024, &mut file),
                    ZSTD_LEVEL,
                )
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            }
        }
        file.sync_data()
            .with_context(|| format!("cannot fsync {}", tmp.display()))?;
    }
    let dir = dest.parent().expect("blob path has a parent");
    if !dir.exists() {
        crate::files::create_dir_all(dir, crate::files::PRIVATE_DIR)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        sync_dir(dir.parent().expect("objects dir"))?;
    }
    Ok(fs::metadata(tmp)
        .with_context(|| format!("cannot read {}", tmp.display()))?
        .len())
}

/// Like [`write_durably`], but replaces `dest`: for a blob found damaged,
/// whose file holds the wrong bytes or none. Returns the stored size.
pub(super) fn replace_durably(src: Source<'_>, tmp: &Path, dest: &Path) -> Result<u64> {
    let stored_size = stage(src, tmp, dest)?;
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
pub(super) fn read(path: &Path, expected: &BlobHash) -> Result<Vec<u8>, BlobDamaged> {
    let damaged = |fault| BlobDamaged {
        hash: *expected,
        fault,
    };
    let mut compressed = Vec::new();
    if let Err(e) = File::open(path).and_then(|mut f| f.read_to_end(&mut compressed)) {
        return Err(damaged(if e.kind() == std::io::ErrorKind::NotFound {
            BlobFault::Missing
        } else {
            BlobFault::Unreadable(e.to_string())
        }));
    }
    let mut decoder = zstd::stream::read::Decoder::new(&compressed[..])
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
