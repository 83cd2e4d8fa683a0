//! Blob files: zstd-compressed raw messages named by the sha256 of the raw bytes.

use std::fmt;
use std::fs::{self, File};
use std::io::{Read as _, Write as _};
use std::path::Path;

use anyhow::{Context, Result, bail};
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
}

/// Compresses `raw` into `tmp`, fsyncs it, links it as `dest` and fsyncs
/// the directory, so `dest` is complete and durable when this returns.
/// Returns the stored size and whether this call created `dest`: two
/// connections fetching the same new message race to store it, and only
/// one of them creates it (a link, unlike a rename, refuses to replace).
pub(super) fn write_durably(raw: &[u8], tmp: &Path, dest: &Path) -> Result<(u64, bool)> {
    let compressed = zstd::bulk::compress(raw, ZSTD_LEVEL).context("zstd compression failed")?;
    {
        let mut file =
            File::create(tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        file.write_all(&compressed)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        file.sync_data()
            .with_context(|| format!("cannot fsync {}", tmp.display()))?;
    }
    let dir = dest.parent().expect("blob path has a parent");
    if !dir.exists() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        sync_dir(dir.parent().expect("objects dir"))?;
    }
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
    Ok((compressed.len() as u64, created))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot fsync directory {}", dir.display()))
}

/// Reads and decompresses the blob file at `path`.
pub(super) fn read(path: &Path) -> Result<Vec<u8>> {
    let mut compressed = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut compressed))
        .with_context(|| format!("cannot read blob {}", path.display()))?;
    let mut raw = Vec::new();
    let mut decoder = zstd::stream::read::Decoder::new(&compressed[..])
        .with_context(|| format!("blob {} is not zstd data", path.display()))?;
    if let Err(e) = decoder.read_to_end(&mut raw) {
        bail!("blob {} is corrupt: {e}", path.display());
    }
    Ok(raw)
}
