//! Files that hold customers' mail: created private (directories 0700,
//! files 0600) whatever the umask, and outputs written without ever
//! replacing something that is not a regular file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

/// Mode of every directory the store or an export creates.
pub const PRIVATE_DIR: u32 = 0o700;
/// Mode of every file the store, an export or a report creates.
pub const PRIVATE_FILE: u32 = 0o600;

/// Who may read what a command writes outside the store (exports and
/// reports): the owner only, unless the user asked for a wider mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputMode(pub u32);

impl Default for OutputMode {
    fn default() -> Self {
        OutputMode(PRIVATE_FILE)
    }
}

impl OutputMode {
    /// Parses an octal mode such as `644` or `0640`.
    pub fn parse(text: &str) -> Result<OutputMode, String> {
        let digits = text.trim_start_matches("0o");
        match u32::from_str_radix(digits, 8) {
            Ok(m) if m <= 0o777 => Ok(OutputMode(m)),
            _ => Err(format!(
                "'{text}' is not a file mode: give octal digits such as 600 or 644"
            )),
        }
    }

    pub fn file(self) -> u32 {
        self.0
    }

    /// A directory lets in whoever may read its files.
    pub fn dir(self) -> u32 {
        let m = self.0 | 0o700;
        m | ((m & 0o044) >> 2)
    }
}

/// Creates `path` and any missing parents with `mode`, whatever the umask.
/// Directories that already exist keep their mode.
pub fn create_dir_all(path: &Path, mode: u32) -> io::Result<()> {
    let mut missing: Vec<&Path> = Vec::new();
    let mut p = path;
    while !p.as_os_str().is_empty() && fs::symlink_metadata(p).is_err() {
        missing.push(p);
        match p.parent() {
            Some(parent) => p = parent,
            None => break,
        }
    }
    for dir in missing.into_iter().rev() {
        match fs::DirBuilder::new().mode(mode).create(dir) {
            Ok(()) => fs::set_permissions(dir, fs::Permissions::from_mode(mode))?,
            // Another thread or process made it first.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Opens `path` for writing, created (or truncated) with `mode` whatever
/// the umask.
pub fn create(path: &Path, mode: u32) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    Ok(file)
}

/// Like [`create`], but fails if `path` exists.
pub fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    Ok(file)
}

/// Where a command's output goes: `-` is standard output.
pub fn is_stdout(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Writes a whole output (a report, a JSON status) to `path`: `-` is
/// standard output; a regular file (or a new name) is replaced atomically
/// (a temporary file beside it, synced, renamed over it), so a reader sees
/// the old content or the new; anything else (a device such as
/// /dev/stdout, a pipe) is written into, never replaced. A symbolic link
/// is followed: the file it names is replaced, the link stays.
pub fn write_output(path: &Path, bytes: &[u8], mode: OutputMode) -> Result<()> {
    if is_stdout(path) {
        let mut out = io::stdout().lock();
        out.write_all(bytes)
            .and_then(|()| out.flush())
            .context("cannot write to standard output")?;
        return Ok(());
    }
    let target = resolve_links(path)?;
    match fs::metadata(&target) {
        Ok(m) if m.is_dir() => bail!("{} is a directory, not a file", path.display()),
        Ok(m) if !m.is_file() => {
            // A device, a pipe, a socket: write into it as a shell's `>` would.
            let mut f = OpenOptions::new()
                .write(true)
                .open(&target)
                .with_context(|| format!("cannot open {}", path.display()))?;
            return f
                .write_all(bytes)
                .with_context(|| format!("cannot write {}", path.display()));
        }
        _ => {}
    }
    replace_atomically(&target, bytes, mode.file())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// `path` with every symbolic link along its last component followed.
fn resolve_links(path: &Path) -> Result<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let to = fs::read_link(&p)
                    .with_context(|| format!("cannot read the link {}", p.display()))?;
                p = match p.parent() {
                    Some(dir) if to.is_relative() => dir.join(to),
                    _ => to,
                };
            }
            _ => return Ok(p),
        }
    }
    bail!("{}: too many levels of symbolic links", path.display())
}

fn replace_atomically(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| {
        let mut f = create(&tmp, mode)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Makes every directory under `root` (itself included) 0700 and every
/// file 0600. Returns how many were changed.
pub fn make_private(root: &Path) -> io::Result<u64> {
    let mut changed = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = fs::symlink_metadata(&p)?;
        let want = if m.is_dir() {
            PRIVATE_DIR
        } else if m.is_file() {
            PRIVATE_FILE
        } else {
            continue;
        };
        if m.permissions().mode() & 0o777 != want {
            fs::set_permissions(&p, fs::Permissions::from_mode(want))?;
            changed += 1;
        }
        if m.is_dir() {
            for e in fs::read_dir(&p)? {
                stack.push(e?.path());
            }
        }
    }
    Ok(changed)
}

/// Makes a directory's entries durable (a file renamed into it).
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot fsync directory {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_modes_parse_as_octal_and_open_directories_to_readers() {
        assert_eq!(OutputMode::parse("644").unwrap(), OutputMode(0o644));
        assert_eq!(OutputMode::parse("0640").unwrap().dir(), 0o750);
        assert_eq!(OutputMode::default().dir(), 0o700);
        assert!(OutputMode::parse("999").is_err());
        assert!(OutputMode::parse("1777").is_err());
    }

    #[test]
    fn a_symlink_is_followed_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.html");
        fs::write(&real, "old").unwrap();
        let link = dir.path().join("link.html");
        std::os::unix::fs::symlink("real.html", &link).unwrap();
        write_output(&link, b"new", OutputMode::default()).unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read_to_string(&real).unwrap(), "new");
        assert_eq!(
            fs::metadata(&real).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn a_directory_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_output(dir.path(), b"x", OutputMode::default()).unwrap_err();
        assert!(format!("{err:#}").contains("is a directory"), "{err:#}");
    }
}
