//! A large message arriving in pieces, kept in `partial/` until it is
//! whole: a link that drops every few megabytes still brings a large
//! message in, each piece continuing where the last one stopped, also
//! across runs.
//!
//! Beside the bytes, a state file names how many of them are known good
//! and their sha256; a file longer than that (a piece that was being
//! written when the process died) is cut back, and one whose prefix does
//! not hash to the state is started again.

use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// Partial files untouched this long are given up on when a store opens
/// (their folder was deleted, or the message expunged).
const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// One message's bytes so far.
pub struct Partial {
    path: PathBuf,
    state: PathBuf,
    file: File,
    len: u64,
    hasher: Sha256,
    has_0x80: bool,
}

/// A whole message assembled from pieces.
pub struct Assembled {
    pub path: PathBuf,
    pub len: u64,
    pub sha256: [u8; 32],
    pub has_0x80: bool,
}

impl Partial {
    /// The message's partial file in `dir`, continued from its last known
    /// good byte, or empty.
    pub(super) fn open(dir: &Path, name: &str) -> Result<Partial> {
        crate::files::create_dir_all(dir, crate::files::PRIVATE_DIR)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(name);
        let state = dir.join(format!("{name}.state"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let mut partial = Partial {
            path,
            state,
            file,
            len: 0,
            hasher: Sha256::new(),
            has_0x80: false,
        };
        if let Some((len, sha256)) = read_state(&partial.state) {
            partial.check_prefix(len, &sha256)?;
        }
        partial
            .file
            .set_len(partial.len)
            .and_then(|()| partial.file.seek(SeekFrom::Start(partial.len)).map(drop))
            .with_context(|| format!("cannot cut back {}", partial.path.display()))?;
        Ok(partial)
    }

    /// Keeps the first `len` bytes if they hash to `sha256`; else none.
    fn check_prefix(&mut self, len: u64, sha256: &[u8; 32]) -> Result<()> {
        let on_disk = self.file.metadata()?.len();
        if on_disk < len {
            return Ok(());
        }
        let (mut hasher, mut has_0x80) = (Sha256::new(), false);
        let mut left = len;
        let mut buf = vec![0u8; 256 * 1024];
        self.file.seek(SeekFrom::Start(0))?;
        while left > 0 {
            let n = self.file.read(&mut buf[..left.min(256 * 1024) as usize])?;
            if n == 0 {
                return Ok(());
            }
            hasher.update(&buf[..n]);
            has_0x80 |= buf[..n].contains(&0x80);
            left -= n as u64;
        }
        if hasher.clone().finalize().as_slice() == sha256 {
            (self.len, self.hasher, self.has_0x80) = (len, hasher, has_0x80);
        }
        Ok(())
    }

    /// Bytes known good so far: the offset the next piece starts at.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends the first `n` bytes of the file at `src` (a piece that came
    /// to a file), durably.
    pub fn append_file(&mut self, src: &Path, n: u64) -> Result<()> {
        let mut input =
            File::open(src).with_context(|| format!("cannot read {}", src.display()))?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut left = n;
        while left > 0 {
            let got = input.read(&mut buf[..left.min(256 * 1024) as usize])?;
            if got == 0 {
                bail!("{} holds fewer than {n} bytes", src.display());
            }
            self.write(&buf[..got])?;
            left -= got as u64;
        }
        self.commit()
    }

    /// Appends a piece held in memory, durably.
    pub fn append(&mut self, bytes: &[u8]) -> Result<()> {
        self.write(bytes)?;
        self.commit()
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all(bytes)
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        self.hasher.update(bytes);
        self.has_0x80 |= bytes.contains(&0x80);
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Makes the bytes durable, then the state that vouches for them.
    fn commit(&mut self) -> Result<()> {
        self.file
            .sync_data()
            .with_context(|| format!("cannot fsync {}", self.path.display()))?;
        let tmp = self.state.with_extension("state-new");
        let text = format!(
            "{} {}\n",
            self.len,
            hex::encode(self.hasher.clone().finalize())
        );
        let mut f = crate::files::create(&tmp, crate::files::PRIVATE_FILE)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_data())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        fs::rename(&tmp, &self.state)
            .with_context(|| format!("cannot write {}", self.state.display()))
    }

    /// The message is whole: its file is read once more and must hash to
    /// what was appended (the bytes on disk are the bytes that came). The
    /// caller stores it and removes the file.
    pub fn finish(self) -> Result<Assembled> {
        let sha256: [u8; 32] = self.hasher.finalize().into();
        let mut on_disk = Sha256::new();
        let mut input = File::open(&self.path)
            .with_context(|| format!("cannot read {}", self.path.display()))?;
        std::io::copy(&mut input, &mut on_disk)
            .with_context(|| format!("cannot read {}", self.path.display()))?;
        let _ = fs::remove_file(&self.state);
        if <[u8; 32]>::from(on_disk.finalize()) != sha256 {
            let _ = fs::remove_file(&self.path);
            bail!(
                "the pieces of a large message in {} do not read back as they were \
                 written; it is fetched again",
                self.path.display()
            );
        }
        Ok(Assembled {
            path: self.path,
            len: self.len,
            sha256,
            has_0x80: self.has_0x80,
        })
    }

    /// Gives the message's pieces up (it is gone from the server).
    pub fn discard(self) {
        let _ = fs::remove_file(&self.state);
        let _ = fs::remove_file(&self.path);
    }
}

fn read_state(path: &Path) -> Option<(u64, [u8; 32])> {
    let text = fs::read_to_string(path).ok()?;
    let (len, hash) = text.trim().split_once(' ')?;
    let mut sha256 = [0u8; 32];
    hex::decode_to_slice(hash, &mut sha256).ok()?;
    Some((len.parse().ok()?, sha256))
}

/// Removes partial files nobody continued for [`STALE_AFTER`].
pub(super) fn clean_stale(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_AFTER);
        if stale {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_survive_a_restart_and_bytes_nobody_vouched_for_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let whole: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let mut p = Partial::open(dir.path(), "1-2-3").unwrap();
        p.append(&whole[..100_000]).unwrap();
        p.append(&whole[100_000..200_000]).unwrap();
        drop(p);
        // A piece being written when the process died: on disk, not vouched for.
        let data = dir.path().join("1-2-3");
        let mut f = OpenOptions::new().append(true).open(&data).unwrap();
        f.write_all(b"torn").unwrap();
        drop(f);
        let mut p = Partial::open(dir.path(), "1-2-3").unwrap();
        assert_eq!(p.len(), 200_000);
        p.append(&whole[200_000..]).unwrap();
        let done = p.finish().unwrap();
        assert_eq!(fs::read(&done.path).unwrap(), whole);
        assert_eq!(done.sha256, <[u8; 32]>::from(Sha256::digest(&whole)));
        assert!(!dir.path().join("1-2-3.state").exists());

        // Bytes that changed on disk since they were vouched for: start again.
        let mut p = Partial::open(dir.path(), "4-5-6").unwrap();
        p.append(&whole[..1000]).unwrap();
        drop(p);
        let data = dir.path().join("4-5-6");
        let mut bytes = fs::read(&data).unwrap();
        bytes[10] ^= 1;
        fs::write(&data, bytes).unwrap();
        let p = Partial::open(dir.path(), "4-5-6").unwrap();
        assert!(p.is_empty());
        assert_eq!(fs::metadata(&data).unwrap().len(), 0);
    }
}
