//! The one write path: every file and folder mnistlab writes (datasets, models, histories,
//! ONNX exports, checkpoints, TensorBoard runs, pictures, `:save`d scripts, the kernelspec, the
//! data cache) is checked and written here.
//!
//! - A target that exists and is not what the writer makes (a device, FIFO or socket; a folder
//!   where a file is expected; a file where a folder is expected) is refused, untouched.
//! - A symbolic link is followed: the file it points to is replaced in its own folder and the
//!   link stays (the same as `cp` or an editor's save through a link).
//! - The dataset cache is written by `fetch` alone ([`Place::Cache`]); every other writer is
//!   refused there, so a stray `save` cannot corrupt the verified files.
//! - A file is written whole or not at all: a temporary file beside the target, synced, then
//!   renamed over it. On any failure (a full disk, a read-only folder) the temporary file is
//!   removed and the previous file stays whole.
//!
//! The checks ([`file_target`], [`folder_target`]) are also called by statements before they
//! compute anything, so a bad target costs nothing.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// How many symbolic links a path may pass through before it is refused as a loop.
const MAX_LINKS: usize = 40;

/// Why a file or folder was not written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The target exists and is not a regular file.
    #[error("{}: is a {kind}, not a regular file; refusing to replace it (nothing was written)", path.display())]
    NotAFile {
        /// The target (after following links).
        path: PathBuf,
        /// What it is ([`file_kind`]): `FIFO`, `character device`, `folder`, ….
        kind: &'static str,
    },
    /// The target, or a folder on its way, exists and is not a folder.
    #[error("{}: is a {kind}, not a folder; refusing to write into it (nothing was written)", path.display())]
    NotAFolder {
        /// The path that should be a folder.
        path: PathBuf,
        /// What it is ([`file_kind`]).
        kind: &'static str,
    },
    /// The target lies in the dataset cache, which only `fetch` writes.
    #[error(
        "{}: inside the dataset cache {}, which only `fetch` writes; choose a path outside it",
        path.display(),
        cache.display()
    )]
    InCache {
        /// The target.
        path: PathBuf,
        /// The cache folder it lies in.
        cache: PathBuf,
    },
    /// The path passes through too many symbolic links (a loop).
    #[error("{}: too many levels of symbolic links", path.display())]
    LinkLoop {
        /// The path as given.
        path: PathBuf,
    },
    /// The file or folder could not be written (a full disk, a read-only folder, no permission).
    #[error("{}: {source} (nothing was written; any earlier file there is unchanged)", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
}

/// Result of the write path.
pub type Result<T> = std::result::Result<T, WriteError>;

/// Where a writer may write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// Anywhere but the dataset cache: every statement's files.
    OutsideCache,
    /// The dataset cache too: `fetch` alone.
    Cache,
}

/// The dataset cache: `$MNISTLAB_DATA`, else `<user cache dir>/mnistlab`.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("MNISTLAB_DATA") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => default_cache_dir(),
    }
}

/// The cache used when `$MNISTLAB_DATA` is not set.
fn default_cache_dir() -> PathBuf {
    dirs::cache_dir().unwrap_or_else(std::env::temp_dir).join("mnistlab")
}

/// What a file of type `kind` is, in words for errors: `regular file`, `folder`, `FIFO`,
/// `character device`, `block device`, `socket`, `symbolic link` or `special file`. The write
/// path and the budget's read check name files alike through it.
pub fn file_kind(kind: fs::FileType) -> &'static str {
    if kind.is_file() {
        "regular file"
    } else if kind.is_dir() {
        "folder"
    } else if kind.is_fifo() {
        "FIFO"
    } else if kind.is_char_device() {
        "character device"
    } else if kind.is_block_device() {
        "block device"
    } else if kind.is_socket() {
        "socket"
    } else if kind.is_symlink() {
        "symbolic link"
    } else {
        "special file"
    }
}

/// `path` with every symbolic link at its end followed (links inside its folders are left to
/// the operating system, which follows them anyway).
fn follow_links(path: &Path) -> Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target =
                    fs::read_link(&current).map_err(|source| WriteError::Io { path: current.clone(), source })?;
                current = if target.is_absolute() { target } else { parent_of(&current).join(target) };
            }
            _ => return Ok(current),
        }
    }
    Err(WriteError::LinkLoop { path: path.to_path_buf() })
}

/// The folder holding `path` (`.` for a bare name).
fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `path` made absolute with its existing part resolved (links, `..`), the rest appended as
/// written with `.` and `..` folded, for comparing against the cache.
fn resolved(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")).join(path)
    };
    let mut existing = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = fs::canonicalize(existing) {
            let mut out = real;
            for part in rest.iter().rev() {
                match part {
                    Component::ParentDir => {
                        out.pop();
                    }
                    Component::CurDir => {}
                    other => out.push(other.as_os_str()),
                }
            }
            return out;
        }
        match (existing.parent(), existing.components().next_back()) {
            (Some(parent), Some(last)) => {
                rest.push(last);
                existing = parent;
            }
            _ => return absolute,
        }
    }
}

/// Refuses `path` when it lies in the dataset cache and `place` does not allow it.
fn check_place(path: &Path, place: Place) -> Result<()> {
    if place == Place::Cache {
        return Ok(());
    }
    let target = resolved(path);
    for cache in [cache_dir(), default_cache_dir()] {
        let cache_real = resolved(&cache);
        if target.starts_with(&cache_real) {
            return Err(WriteError::InCache { path: path.to_path_buf(), cache });
        }
    }
    Ok(())
}

/// Checks that the folders on the way to `dir` are folders (or do not exist yet).
fn check_ancestors(dir: &Path) -> Result<()> {
    for ancestor in dir.ancestors().filter(|a| !a.as_os_str().is_empty()) {
        match fs::metadata(ancestor) {
            Ok(meta) if meta.is_dir() => return Ok(()),
            Ok(meta) => {
                return Err(WriteError::NotAFolder { path: ancestor.to_path_buf(), kind: file_kind(meta.file_type()) });
            }
            Err(_) => continue,
        }
    }
    Ok(())
}

/// Checks that `path` may be written as a file: returns the file to replace (the link's target
/// when `path` is a symbolic link). Writes nothing.
pub fn file_target(path: &Path, place: Place) -> Result<PathBuf> {
    let real = follow_links(path)?;
    check_ancestors(&parent_of(&real))?;
    match fs::symlink_metadata(&real) {
        Ok(meta) => {
            if !meta.file_type().is_file() {
                return Err(WriteError::NotAFile { path: real, kind: file_kind(meta.file_type()) });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(WriteError::Io { path: real, source }),
    }
    check_place(&real, place)?;
    Ok(real)
}

/// Checks that `path` may be written as a folder: returns the folder (the link's target when
/// `path` is a symbolic link). Writes nothing.
pub fn folder_target(path: &Path, place: Place) -> Result<PathBuf> {
    let real = follow_links(path)?;
    check_ancestors(&real)?;
    check_place(&real, place)?;
    Ok(real)
}

/// Checks `dir` as a folder target and makes it (with its parents); returns it.
pub fn create_folder(dir: &Path, place: Place) -> Result<PathBuf> {
    let real = folder_target(dir, place)?;
    fs::create_dir_all(&real).map_err(|source| WriteError::Io { path: real.clone(), source })?;
    Ok(real)
}

/// Writes `bytes` to `path` whole or not at all (see the module's doc); returns the file
/// written (the link's target when `path` is a symbolic link).
pub fn write_file(path: &Path, bytes: &[u8], place: Place) -> Result<PathBuf> {
    write_files(&[(path.to_path_buf(), bytes)], place).map(|mut written| written.remove(0))
}

/// Writes each `(path, bytes)` whole or not at all, and all of them or none: every file is
/// written to a temporary file first, and only when all are written are they renamed into
/// place. Returns the files written.
pub fn write_files(files: &[(PathBuf, &[u8])], place: Place) -> Result<Vec<PathBuf>> {
    let mut temps = Vec::with_capacity(files.len());
    for (path, bytes) in files {
        let real = file_target(path, place)?;
        let dir = parent_of(&real);
        fs::create_dir_all(&dir).map_err(|source| WriteError::Io { path: dir.clone(), source })?;
        // A replaced file keeps its permissions; a new one is readable by all.
        let mode = fs::metadata(&real).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0o644);
        // Named `.tmp…` (tempfile's default), which `tests/checkpoint.rs` watches for.
        let mut tmp = tempfile::Builder::new()
            .permissions(fs::Permissions::from_mode(mode))
            .tempfile_in(&dir)
            .map_err(|source| WriteError::Io { path: real.clone(), source })?;
        tmp.write_all(bytes)
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(|source| WriteError::Io { path: real.clone(), source })?;
        temps.push((tmp, real));
    }
    let mut written = Vec::with_capacity(temps.len());
    for (tmp, real) in temps {
        // Checked again just before the rename: something may have appeared there meanwhile.
        file_target(&real, place)?;
        tmp.persist(&real).map_err(|e| WriteError::Io { path: real.clone(), source: e.error })?;
        written.push(real);
    }
    Ok(written)
}

/// Creates the new file `path` for appending (it must not exist yet); for logs written record
/// by record, such as TensorBoard's event files.
pub fn create_new_file(path: &Path, place: Place) -> Result<fs::File> {
    let real = file_target(path, place)?;
    create_folder(&parent_of(&real), place)?;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&real)
        .map_err(|source| WriteError::Io { path: real, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn fifo(path: &Path) {
        let status = std::process::Command::new("mkfifo").arg(path).status().unwrap();
        assert!(status.success());
    }

    #[test]
    fn a_fifo_is_refused_and_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pipe");
        fifo(&path);
        let err = write_file(&path, b"x", Place::OutsideCache).unwrap_err();
        assert!(err.to_string().contains("is a FIFO, not a regular file"), "{err}");
        assert!(fs::symlink_metadata(&path).unwrap().file_type().is_fifo());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
    }

    #[test]
    fn a_folder_where_a_file_is_expected_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_file(dir.path(), b"x", Place::OutsideCache).unwrap_err();
        assert!(matches!(err, WriteError::NotAFile { kind: "folder", .. }), "{err}");
        let file = dir.path().join("f");
        fs::write(&file, b"keep").unwrap();
        let err = folder_target(&file, Place::OutsideCache).unwrap_err();
        assert!(matches!(err, WriteError::NotAFolder { .. }), "{err}");
        let err = write_file(&file.join("inside.bin"), b"x", Place::OutsideCache).unwrap_err();
        assert!(matches!(err, WriteError::NotAFolder { .. }), "{err}");
        assert_eq!(fs::read(&file).unwrap(), b"keep");
    }

    #[test]
    fn a_link_is_followed_and_stays() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("sub").join("real.bin");
        fs::create_dir(dir.path().join("sub")).unwrap();
        fs::write(&real, b"old").unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o600)).unwrap();
        let link = dir.path().join("link.bin");
        symlink("sub/real.bin", &link).unwrap();
        let written = write_file(&link, b"new", Place::OutsideCache).unwrap();
        assert_eq!(written, dir.path().join("sub").join("real.bin"));
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(fs::read(&real).unwrap(), b"new");
        assert_eq!(fs::metadata(&real).unwrap().permissions().mode() & 0o777, 0o600);
        // A link to a FIFO is refused like the FIFO.
        let pipe = dir.path().join("pipe");
        fifo(&pipe);
        let to_pipe = dir.path().join("to-pipe");
        symlink(&pipe, &to_pipe).unwrap();
        assert!(matches!(write_file(&to_pipe, b"x", Place::OutsideCache), Err(WriteError::NotAFile { .. })));
        // A loop is named as one.
        let a = dir.path().join("a");
        symlink(dir.path().join("b"), &a).unwrap();
        symlink(&a, dir.path().join("b")).unwrap();
        assert!(matches!(write_file(&a, b"x", Place::OutsideCache), Err(WriteError::LinkLoop { .. })));
    }

    #[test]
    fn several_files_are_written_all_or_none() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good");
        let pipe = dir.path().join("pipe");
        fifo(&pipe);
        let err = write_files(&[(good.clone(), b"a".as_slice()), (pipe.clone(), b"b")], Place::OutsideCache);
        assert!(err.is_err());
        assert!(!good.exists(), "the first file is not written when the second is refused");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn new_files_for_appending_are_never_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run").join("events");
        let mut file = create_new_file(&path, Place::OutsideCache).unwrap();
        file.write_all(b"1").unwrap();
        assert!(create_new_file(&path, Place::OutsideCache).is_err());
        assert_eq!(fs::read(&path).unwrap(), b"1");
    }

    #[test]
    fn resolving_folds_missing_parts() {
        let dir = tempfile::tempdir().unwrap();
        let real = fs::canonicalize(dir.path()).unwrap();
        assert_eq!(resolved(&dir.path().join("x/../y/./z")), real.join("y").join("z"));
    }
}
