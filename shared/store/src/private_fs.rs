//! Files and directories only their owner can read.
//!
//! Everything the hub keeps under its data directory is personal data or
//! key material (the log, read models, the key vault, signing keys, the
//! development token key), so it is created owner-only — directories 0700,
//! files 0600 — at the moment of creation rather than fixed up later: a
//! file that exists for a moment with the process umask (usually 0644) can
//! be opened by another local user during that moment and read for good.
//! [`tighten_tree`] repairs data directories created by older versions.
//!
//! The modes apply on Unix; elsewhere these functions create files and
//! directories with the platform's defaults.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Mode of directories the hub creates.
pub const DIR_MODE: u32 = 0o700;
/// Mode of files the hub creates.
pub const FILE_MODE: u32 = 0o600;

/// Permission bits for the group and others.
#[cfg(unix)]
const NOT_OWNER: u32 = 0o077;

/// Creates `dir` and any missing parents with mode 0700. An existing `dir`
/// that the group or others can enter is tightened to 0700 (parents that
/// already existed are left alone: they are not the hub's).
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(DIR_MODE);
    }
    builder.create(dir)?;
    tighten(dir, DIR_MODE).map(drop)
}

/// Makes sure `path` exists as a file with mode 0600, creating it empty if
/// missing (for engines such as redb that create their file with the
/// process umask: they then open this one). An existing file readable by
/// the group or others is tightened to 0600.
pub fn ensure_file(path: &Path) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(false);
    owner_only(&mut options);
    drop(options.open(path)?);
    tighten(path, FILE_MODE).map(drop)
}

/// Opens `options` with mode 0600 for files it creates.
pub fn owner_only(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(FILE_MODE);
    }
    options
}

/// Writes `bytes` to `path` atomically and durably, mode 0600: into a
/// temporary file beside it, fsynced, renamed over `path`, and the
/// directory fsynced. A crash leaves either the old file or the new one,
/// never a short or empty one (an empty key file would be a key of no
/// bytes).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let temp = temp_beside(&dir, path)?;
    let result = (|| {
        write_new(&temp, bytes)?;
        std::fs::rename(&temp, path)?;
        sync_dir(&dir)
    })();
    if result.is_err() {
        let _gone = std::fs::remove_file(&temp);
    }
    result
}

/// Like [`write_atomic`], but refuses (`AlreadyExists`) to replace an
/// existing `path`: the file appears whole, or not at all, and two writers
/// racing to create the same key cannot overwrite each other's (the
/// temporary file is linked into place, which fails if the name is taken).
pub fn write_atomic_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let temp = temp_beside(&dir, path)?;
    let result = (|| {
        write_new(&temp, bytes)?;
        std::fs::hard_link(&temp, path)?;
        sync_dir(&dir)
    })();
    let _gone = std::fs::remove_file(&temp);
    result
}

fn temp_beside(dir: &Path, path: &Path) -> io::Result<PathBuf> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path names no file"))?;
    Ok(dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )))
}

/// Creates `path` (which must not exist) owner-only with `bytes`, fsynced.
fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    owner_only(&mut options);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Fsyncs a directory, so a rename or a new file in it survives a crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Whether the group or others have any permission on `path`.
pub fn is_shared(path: &Path) -> io::Result<bool> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::symlink_metadata(path)?.permissions().mode();
        Ok(mode & NOT_OWNER != 0)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(false)
    }
}

/// Sets `path` to `mode` if the group or others have any permission on it;
/// returns whether it changed.
fn tighten(path: &Path, mode: u32) -> io::Result<bool> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if is_shared(path)? {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
            return Ok(true);
        }
        Ok(false)
    }
    #[cfg(not(unix))]
    {
        let _ = (path, mode);
        Ok(false)
    }
}

/// Tightens `root` and everything under it that the group or others may
/// access (directories to 0700, files to 0600); symbolic links are not
/// followed. Returns what was changed, so the caller can warn about it.
pub fn tighten_tree(root: &Path) -> io::Result<Vec<PathBuf>> {
    let mut changed = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(path) = pending.pop() {
        let kind = std::fs::symlink_metadata(&path)?.file_type();
        if kind.is_dir() {
            if tighten(&path, DIR_MODE)? {
                changed.push(path.clone());
            }
            for entry in std::fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
        } else if kind.is_file() && tighten(&path, FILE_MODE)? {
            changed.push(path);
        }
    }
    Ok(changed)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn directories_and_files_are_created_owner_only_whatever_the_umask() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        create_dir_all(&dir).unwrap();
        assert_eq!(mode(&root.path().join("a")), 0o700);
        assert_eq!(mode(&dir), 0o700);
        let file = dir.join("f.redb");
        ensure_file(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        write_atomic(&dir.join("k"), b"secret").unwrap();
        assert_eq!(mode(&dir.join("k")), 0o600);
        assert_eq!(std::fs::read(dir.join("k")).unwrap(), b"secret");
    }

    #[test]
    fn an_atomic_write_replaces_the_old_content_and_leaves_no_temporary_file() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("key");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_new_secret_never_replaces_an_existing_one() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("region.seed");
        write_atomic_new(&path, b"first").unwrap();
        let again = write_atomic_new(&path, b"second").unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_tree_readable_by_others_is_tightened_and_reported() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.join("events.redb"), b"x").unwrap();
        std::fs::set_permissions(
            dir.join("events.redb"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let changed = tighten_tree(&dir).unwrap();
        assert_eq!(changed.len(), 2);
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("events.redb")), 0o600);
        assert!(tighten_tree(&dir).unwrap().is_empty());
    }
}
