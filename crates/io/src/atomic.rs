//! Atomic writes: temporary name beside the destination, fsync, rename.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::IoError;

/// The folder a path lives in (`.` for a bare file name).
fn parent_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// `DIR/.NAME.tmpPID`: hidden, unique per process, beside the destination (same file system,
/// so the rename is atomic).
fn temp_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    parent_of(path).join(format!(".{name}.tmp{}", std::process::id()))
}

/// Removes a temporary file or folder when dropped, unless disarmed.
struct Cleanup {
    path: PathBuf,
    armed: bool,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_dir_all(&self.path);
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Syncs a folder's entry list, so a rename inside it survives a crash.
fn sync_dir(dir: &Path) {
    // Not every platform can open a folder for syncing; the rename is done either way.
    if let Ok(f) = File::open(dir) {
        let _ = f.sync_all();
    }
}

/// Writes `bytes` to `path` atomically (parent folders are created).
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    write_file_with(path, |w| w.write_all(bytes))
}

/// Writes to `path` atomically through a buffered writer: `fill` writes the content; on any
/// error (its own or the OS's) the temporary file is removed and `path` is left as it was.
/// New files are readable by everyone (0644 under the usual umask).
pub fn write_file_with(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<(), IoError> {
    let dir = parent_of(path);
    std::fs::create_dir_all(dir).map_err(IoError::at(dir))?;
    let tmp = temp_name(path);
    let mut guard = Cleanup {
        path: tmp.clone(),
        armed: true,
    };
    let file = File::create(&tmp).map_err(IoError::at(&tmp))?;
    let mut w = BufWriter::new(file);
    fill(&mut w).map_err(IoError::at(path))?;
    let file = w
        .into_inner()
        .map_err(|e| IoError::new(path, e.into_error()))?;
    file.sync_all().map_err(IoError::at(path))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(IoError::at(path))?;
    guard.armed = false;
    sync_dir(dir);
    Ok(())
}

/// Fills the folder `dir` atomically: `fill` writes into an empty temporary folder beside it
/// (use [`write_file`] for each file, so each is synced); then any existing `dir` is removed and
/// the temporary folder renamed to `dir`. On error the temporary folder is removed and `dir` is
/// left as it was.
pub fn write_dir<E: From<IoError>>(
    dir: &Path,
    fill: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), E> {
    let parent = parent_of(dir);
    std::fs::create_dir_all(parent).map_err(IoError::at(parent))?;
    let tmp = temp_name(dir);
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(IoError::at(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(IoError::at(&tmp))?;
    let mut guard = Cleanup {
        path: tmp.clone(),
        armed: true,
    };
    fill(&tmp)?;
    sync_dir(&tmp);
    if dir.exists() {
        // A rename cannot replace a non-empty folder: move the old one aside first, so the
        // window without `dir` is two renames wide and no old file is ever mixed with new ones.
        let old = temp_name(&parent.join(format!(
            "{}.old",
            dir.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
        )));
        std::fs::rename(dir, &old).map_err(IoError::at(dir))?;
        std::fs::rename(&tmp, dir).map_err(IoError::at(dir))?;
        std::fs::remove_dir_all(&old).map_err(IoError::at(&old))?;
    } else {
        std::fs::rename(&tmp, dir).map_err(IoError::at(dir))?;
    }
    guard.armed = false;
    sync_dir(parent);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp"))
            .collect()
    }

    #[test]
    fn a_file_is_replaced_whole() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/a.txt");
        write_file(&p, b"one").unwrap();
        write_file(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert!(leftovers(p.parent().unwrap()).is_empty());
    }

    #[test]
    fn a_failed_write_leaves_no_temporary_file_and_the_old_content() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.txt");
        write_file(&p, b"old").unwrap();
        let err = write_file_with(&p, |w| {
            w.write_all(b"partial")?;
            Err(std::io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("a.txt: disk full"), "{err}");
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert!(leftovers(d.path()).is_empty(), "{:?}", leftovers(d.path()));
    }

    #[cfg(unix)]
    #[test]
    fn new_files_are_world_readable() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("w.bin");
        write_file(&p, b"x").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        // 0644 under the usual umask 022; never narrower than the umask allows for a new file.
        assert_eq!(mode & 0o444, 0o444, "mode {mode:o}");
    }

    #[test]
    fn a_folder_is_replaced_whole_or_not_at_all() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("final");
        write_dir::<IoError>(&dir, |t| {
            write_file(&t.join("a"), b"1")?;
            write_file(&t.join("stale"), b"1")
        })
        .unwrap();
        write_dir::<IoError>(&dir, |t| write_file(&t.join("a"), b"2")).unwrap();
        assert_eq!(std::fs::read(dir.join("a")).unwrap(), b"2");
        assert!(!dir.join("stale").exists(), "old files are not mixed in");
        let failed = write_dir::<IoError>(&dir, |t| {
            write_file(&t.join("a"), b"3")?;
            Err(IoError::new(t, std::io::Error::other("boom")))
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::read(dir.join("a")).unwrap(), b"2");
        assert!(leftovers(d.path()).is_empty(), "{:?}", leftovers(d.path()));
    }
}
