//! The device's state directory: its DM tree as JSON, replaced atomically so that a
//! crash at any point leaves either the old tree or the new one, never a mix.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

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
/// over `path` and flushes the directory entry.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other("no file name"))?;
    let temporary = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let mut file = File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temporary, path)?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

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
