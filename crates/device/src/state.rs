//! The device's state directory: its DM tree as JSON, replaced atomically so that a
//! crash at any point leaves either the old tree or the new one, never a mix.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use gwmo_tree::Tree;

use crate::DeviceError;

const TREE_FILE: &str = "tree.json";

/// Where one device keeps its tree.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// Opens (creating if needed) a state directory.
    pub fn open(dir: &Path) -> Result<StateDir, DeviceError> {
        fs::create_dir_all(dir).map_err(|e| DeviceError::State(dir.to_owned(), e.to_string()))?;
        Ok(StateDir {
            dir: dir.to_owned(),
        })
    }

    pub fn tree_path(&self) -> PathBuf {
        self.dir.join(TREE_FILE)
    }

    /// The stored tree, or `None` on first start.
    pub fn load_tree(&self) -> Result<Option<Tree>, DeviceError> {
        let path = self.tree_path();
        let text = match fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(DeviceError::State(path, e.to_string())),
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|e| DeviceError::State(path, format!("not a DM tree: {e}")))
    }

    pub fn save_tree(&self, tree: &Tree) -> Result<(), DeviceError> {
        let path = self.tree_path();
        let text = serde_json::to_vec(tree)
            .map_err(|e| DeviceError::State(path.clone(), e.to_string()))?;
        write_atomically(&path, &text).map_err(|e| DeviceError::State(path, e.to_string()))
    }
}

/// Writes `bytes` to a temporary file beside `path`, flushes it to disk, renames it
/// over `path` and flushes the directory entry. Each write has a temporary of its
/// own, so that two writers of one file (two agents on one state directory, a
/// process and its restart) never rename each other's: the last rename wins whole.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("no file name"))?;
    let temporary = dir.join(format!(
        ".{}.{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    let written = File::create(&temporary).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_all()
    });
    if let Err(error) = written.and_then(|()| fs::rename(&temporary, path)) {
        let _ = fs::remove_file(&temporary);
        return Err(error);
    }
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_writers_of_one_file_never_break_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tree.json");
        std::thread::scope(|scope| {
            for writer in [b'a', b'b'] {
                let path = &path;
                scope.spawn(move || {
                    for _ in 0..200 {
                        write_atomically(path, &[writer; 64]).unwrap();
                    }
                });
            }
        });
        let kept = fs::read(&path).unwrap();
        assert!(kept == [b'a'; 64] || kept == [b'b'; 64]);
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_corrupt_tree_is_an_error_not_a_blank_device() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        fs::write(state.tree_path(), b"{ truncated").unwrap();
        let error = state.load_tree().unwrap_err();
        assert!(error.to_string().contains("not a DM tree"), "{error}");
    }

    #[test]
    fn first_start_has_no_tree() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            StateDir::open(&dir.path().join("new"))
                .unwrap()
                .load_tree()
                .unwrap()
                .is_none()
        );
    }
}
