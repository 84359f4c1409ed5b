//! The device's state directory: its DM tree, kept as a whole copy (`tree.json`,
//! replaced atomically) and a journal of what changed since (`tree.journal`, one line
//! per save: the save's [`TreeChange`]s as a JSON array, appended and flushed to disk
//! before the save returns).
//!
//! A save appends only what changed, so its cost follows the change, not the tree: a
//! gateway whose tree holds thousands of end devices does not write them all after
//! each session. When the journal outgrows the whole copy, the next save writes a new
//! whole copy and drops the journal. Each whole copy has a generation of its own, and
//! the journal's first line names the generation it extends, so a journal left beside
//! a newer copy (a crash before it was dropped) is not replayed on it. A crash at any
//! point leaves the tree as of the last save that returned: a line cut short by the
//! crash was never acknowledged and is left out whole.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use gwmo_tree::{Tree, TreeChange};
use serde::{Deserialize, Serialize};

use crate::DeviceError;
use crate::settings::FactoryAccount;

const TREE_FILE: &str = "tree.json";
/// The factory accounts of the configuration the device last started with.
const APPLIED_ACCOUNTS_FILE: &str = "configured-accounts.json";
const JOURNAL_FILE: &str = "tree.journal";

/// The journal is folded into a new whole copy once it is larger than the copy, and
/// never below this size (a small tree is cheap to write whole, a journal of a few
/// lines cheap to replay).
const MIN_JOURNAL_BEFORE_COPY: u64 = 64 * 1024;

/// Where one device keeps its tree.
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
    written: Arc<Mutex<Written>>,
}

/// What this process last wrote: the tree the files hold, and their sizes.
#[derive(Debug, Default)]
struct Written {
    /// `None` until this process wrote a whole copy (or after a failed write): the
    /// next save writes one.
    tree: Option<Tree>,
    generation: u64,
    /// The inode of the copy written: another writer's copy replaces it.
    copy_inode: u64,
    copy_len: u64,
    journal_len: u64,
}

/// A whole copy as written: the tree and its generation (none in copies written
/// before the journal existed, which have no journal either).
#[derive(Serialize)]
struct CopyOut<'t> {
    generation: u64,
    #[serde(flatten)]
    tree: &'t Tree,
}

#[derive(Deserialize)]
struct CopyIn {
    #[serde(default)]
    generation: Option<u64>,
    #[serde(flatten)]
    tree: Tree,
}

/// The journal's first line.
#[derive(Serialize, Deserialize)]
struct JournalHead {
    extends: u64,
}

impl StateDir {
    /// Opens (creating if needed) a state directory.
    pub fn open(dir: &Path) -> Result<StateDir, DeviceError> {
        fs::create_dir_all(dir).map_err(|e| DeviceError::State(dir.to_owned(), e.to_string()))?;
        Ok(StateDir {
            dir: dir.to_owned(),
            written: Arc::default(),
        })
    }

    pub fn tree_path(&self) -> PathBuf {
        self.dir.join(TREE_FILE)
    }

    fn journal_path(&self) -> PathBuf {
        self.dir.join(JOURNAL_FILE)
    }

    /// The stored tree, or `None` on first start. Only reads: a running device may
    /// be writing meanwhile (a new whole copy replacing the one read is noticed, and
    /// the tree read again).
    pub fn load_tree(&self) -> Result<Option<Tree>, DeviceError> {
        let path = self.tree_path();
        let state_error = |e: io::Error| DeviceError::State(path.clone(), e.to_string());
        loop {
            let copy = match File::open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(state_error(e)),
            };
            let identity = copy.metadata().map_err(state_error)?.ino();
            let text = io::read_to_string(copy).map_err(state_error)?;
            let CopyIn {
                generation,
                mut tree,
            } = serde_json::from_str(&text)
                .map_err(|e| DeviceError::State(path.clone(), format!("not a DM tree: {e}")))?;
            let journal = match fs::read(self.journal_path()) {
                Ok(journal) => journal,
                Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(DeviceError::State(self.journal_path(), e.to_string())),
            };
            if fs::metadata(&path).map_err(state_error)?.ino() != identity {
                continue;
            }
            self.replay(&mut tree, generation, &journal)?;
            return Ok(Some(tree));
        }
    }

    /// Makes the journal's saves on `tree`, the copy of `generation`, when the journal
    /// extends that copy. What follows the last line break was cut short by a crash
    /// and is left out whole; a whole line that is no list of changes is an error.
    fn replay(
        &self,
        tree: &mut Tree,
        generation: Option<u64>,
        journal: &[u8],
    ) -> Result<(), DeviceError> {
        let Some(end) = journal.iter().rposition(|byte| *byte == b'\n') else {
            return Ok(());
        };
        let mut lines = journal[..end].split(|byte| *byte == b'\n');
        let head = lines
            .next()
            .and_then(|line| serde_json::from_slice::<JournalHead>(line).ok());
        if head.is_none_or(|head| Some(head.extends) != generation) {
            return Ok(());
        }
        for (number, line) in lines.enumerate() {
            let changes: Vec<TreeChange> = serde_json::from_slice(line).map_err(|e| {
                DeviceError::State(
                    self.journal_path(),
                    format!("line {} is not a list of tree changes: {e}", number + 2),
                )
            })?;
            for change in changes {
                tree.apply(change);
            }
        }
        Ok(())
    }

    /// Stores `tree`: what changed since the last save, appended to the journal, or a
    /// whole copy when this process has written none yet or the journal has grown
    /// past it.
    /// The factory accounts of the configuration the device last started with, if it
    /// recorded them (a state from before this record has none).
    pub fn load_applied_accounts(&self) -> Result<Option<Vec<FactoryAccount>>, DeviceError> {
        self.load_record(APPLIED_ACCOUNTS_FILE)
    }

    /// Records the factory accounts of the configuration the device started with.
    pub fn save_applied_accounts(&self, accounts: &[FactoryAccount]) -> Result<(), DeviceError> {
        self.save_record(APPLIED_ACCOUNTS_FILE, &accounts)
    }

    /// A record kept as JSON in file `name` of the directory; `None` if there is none.
    pub fn load_record<T: serde::de::DeserializeOwned>(
        &self,
        name: &str,
    ) -> Result<Option<T>, DeviceError> {
        let path = self.dir.join(name);
        let text = match fs::read(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(DeviceError::State(path, error.to_string())),
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|error| DeviceError::State(path, error.to_string()))
    }

    /// Replaces record `name` atomically.
    pub fn save_record<T: Serialize + ?Sized>(
        &self,
        name: &str,
        record: &T,
    ) -> Result<(), DeviceError> {
        let path = self.dir.join(name);
        let text = serde_json::to_vec(record)
            .map_err(|error| DeviceError::State(path.clone(), error.to_string()))?;
        write_atomically(&path, &text).map_err(|error| DeviceError::State(path, error.to_string()))
    }

    /// Removes file `name` of the directory, if it is there.
    pub fn remove_file(&self, name: &str) -> Result<(), DeviceError> {
        let path = self.dir.join(name);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(DeviceError::State(path, error.to_string())),
        }
    }

    /// The path of file `name` of the directory.
    pub fn file_path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn save_tree(&self, tree: &Tree) -> Result<(), DeviceError> {
        let mut guard = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        let written = &mut *guard;
        let journal_limit = written.copy_len.max(MIN_JOURNAL_BEFORE_COPY);
        let journal_len = written.journal_len;
        let journal_usable =
            journal_len < journal_limit && written.tree.is_some() && self.files_as_written(written);
        match written.tree.as_mut() {
            Some(base) if journal_usable => {
                let changes = tree.changes_since(base);
                if changes.is_empty() {
                    return Ok(());
                }
                let head = (journal_len == 0).then_some(JournalHead {
                    extends: written.generation,
                });
                let appended = self.append(head, &changes);
                let Ok(len) = appended else {
                    // A line may be on disk in part: the next save writes a whole copy.
                    written.tree = None;
                    return appended.map(|_| ());
                };
                written.journal_len += len;
                for change in changes {
                    base.apply(change);
                }
                Ok(())
            }
            _ => {
                written.tree = None;
                let path = self.tree_path();
                let generation = rand::random();
                let text = serde_json::to_vec(&CopyOut { generation, tree })
                    .map_err(|e| DeviceError::State(path.clone(), e.to_string()))?;
                let copy_inode = write_atomically(&path, &text)
                    .and_then(|()| fs::metadata(&path))
                    .map_err(|e| DeviceError::State(path.clone(), e.to_string()))?
                    .ino();
                // A crash before the journal is gone leaves it naming the copy before.
                match fs::remove_file(self.journal_path()) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => {
                        return Err(DeviceError::State(self.journal_path(), e.to_string()));
                    }
                    _ => {}
                }
                *written = Written {
                    tree: Some(tree.clone()),
                    generation,
                    copy_inode,
                    copy_len: text.len() as u64,
                    journal_len: 0,
                };
                Ok(())
            }
        }
    }

    /// Whether the files are as this process left them. Another process on the same
    /// directory (a restart while the old process still runs) changes them; then the
    /// next save writes a whole copy, and the last save wins whole, as when every save
    /// was one.
    fn files_as_written(&self, written: &Written) -> bool {
        let journal_len = match fs::metadata(self.journal_path()) {
            Ok(journal) => journal.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(_) => return false,
        };
        let copy_inode = fs::metadata(self.tree_path()).map(|copy| copy.ino());
        journal_len == written.journal_len && copy_inode.ok() == Some(written.copy_inode)
    }

    /// Appends `changes` to the journal as one line, after `head` when the journal is
    /// new; on disk when this returns (with the journal's directory entry when it is
    /// new). Returns the bytes written.
    fn append(
        &self,
        head: Option<JournalHead>,
        changes: &[TreeChange],
    ) -> Result<u64, DeviceError> {
        let path = self.journal_path();
        let state_error = |e: serde_json::Error| DeviceError::State(path.clone(), e.to_string());
        let mut lines = Vec::new();
        if let Some(head) = &head {
            serde_json::to_writer(&mut lines, head).map_err(state_error)?;
            lines.push(b'\n');
        }
        serde_json::to_writer(&mut lines, changes).map_err(state_error)?;
        lines.push(b'\n');
        let appended = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut journal| {
                journal.write_all(&lines)?;
                journal.sync_data()
            })
            .and_then(|()| match head {
                Some(_) => File::open(&self.dir)?.sync_all(),
                None => Ok(()),
            });
        appended.map_err(|e| DeviceError::State(path.clone(), e.to_string()))?;
        Ok(lines.len() as u64)
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

    /// A gateway's tree with `devices` end devices in its inventory.
    fn large_tree(devices: usize) -> Tree {
        let mut tree = Tree::default();
        for device in 0..devices {
            tree.set_leaf(
                &format!("./GwMO/Inventory/dev{device}/Name"),
                "x",
                gwmo_tree::Format::Chr,
            )
            .unwrap();
        }
        tree
    }

    /// A state directory holding `large_tree(devices)` as a whole copy.
    fn saved(devices: usize) -> (tempfile::TempDir, StateDir, Tree) {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let tree = large_tree(devices);
        state.save_tree(&tree).unwrap();
        (dir, state, tree)
    }

    /// The tree in `dir`, as a device starting there reads it.
    fn reloaded(dir: &tempfile::TempDir) -> Option<Tree> {
        StateDir::open(dir.path()).unwrap().load_tree().unwrap()
    }

    fn set(tree: &mut Tree, uri: &str, value: &str) {
        tree.set_leaf(uri, value, gwmo_tree::Format::Chr).unwrap();
    }

    #[test]
    fn a_save_appends_what_changed_and_nothing_when_nothing_did() {
        let (dir, state, mut tree) = saved(1000);
        let copy = fs::read(state.tree_path()).unwrap();
        assert!(!state.journal_path().exists());

        set(&mut tree, "./GwMO/Inventory/dev7/Name", "y");
        state.save_tree(&tree).unwrap();
        let journal = fs::read(state.journal_path()).unwrap();
        assert!(
            journal.len() < 200 && journal.len() * 100 < copy.len(),
            "{} bytes journaled for one leaf of a {}-byte tree",
            journal.len(),
            copy.len()
        );
        assert_eq!(fs::read(state.tree_path()).unwrap(), copy, "copy untouched");
        state.save_tree(&tree).unwrap();
        assert_eq!(fs::read(state.journal_path()).unwrap(), journal);

        let read = reloaded(&dir);
        assert_eq!(read.as_ref(), Some(&tree));
    }

    #[test]
    fn a_journal_cut_short_anywhere_gives_the_tree_of_a_save_that_returned() {
        let (dir, state, mut tree) = saved(20);
        let mut saves = vec![tree.clone()];
        for step in 0..5 {
            // Several changes in one save: they come back all or none.
            set(&mut tree, &format!("./GwMO/Inventory/dev{step}/Name"), "y");
            set(&mut tree, &format!("./New/N{step}"), "z");
            tree.remove(&format!("./GwMO/Inventory/dev{}", step + 10))
                .unwrap();
            state.save_tree(&tree).unwrap();
            saves.push(tree.clone());
        }
        let journal = fs::read(state.journal_path()).unwrap();
        for cut in 0..=journal.len() {
            fs::write(state.journal_path(), &journal[..cut]).unwrap();
            let read = reloaded(&dir).unwrap();
            // The first line names the copy; each one after it is a save.
            let lines = journal[..cut].iter().filter(|b| **b == b'\n').count();
            let saves_whole = lines.saturating_sub(1);
            assert_eq!(read, saves[saves_whole], "journal cut at byte {cut}");
        }
    }

    #[test]
    fn the_journal_folds_into_a_new_copy_once_it_outgrows_the_copy() {
        let (dir, state, mut tree) = saved(10);
        let mut folded = false;
        for step in 0..2000 {
            set(&mut tree, "./Counter", &step.to_string());
            // A crash between the new copy and the journal's removal leaves the old
            // journal beside the new copy: it names the copy before, and is not
            // replayed on this one.
            let before = fs::read(state.journal_path()).ok();
            state.save_tree(&tree).unwrap();
            if !state.journal_path().exists() {
                folded = true;
                fs::write(state.journal_path(), before.unwrap()).unwrap();
                let read = reloaded(&dir);
                assert_eq!(read.as_ref(), Some(&tree));
                fs::remove_file(state.journal_path()).unwrap();
                break;
            }
            let journal_len = fs::metadata(state.journal_path()).unwrap().len();
            assert!(
                journal_len <= MIN_JOURNAL_BEFORE_COPY + 100,
                "{journal_len}"
            );
        }
        assert!(folded, "the journal never became a copy");
        assert_eq!(reloaded(&dir), Some(tree));
    }

    #[test]
    fn two_processes_saving_in_turn_leave_the_last_save_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = (
            StateDir::open(dir.path()).unwrap(),
            StateDir::open(dir.path()).unwrap(),
        );
        let (mut one, mut other) = (large_tree(5), large_tree(5));
        first.save_tree(&one).unwrap();
        second.save_tree(&other).unwrap();
        for step in 0..6 {
            set(&mut one, "./Writer", &format!("first {step}"));
            first.save_tree(&one).unwrap();
            assert_eq!(reloaded(&dir), Some(one.clone()));
            set(&mut other, "./Writer", &format!("second {step}"));
            // Gone after the first step: a removal that finds nothing changes nothing.
            let _ = other.remove("./GwMO/Inventory/dev1");
            second.save_tree(&other).unwrap();
            assert_eq!(reloaded(&dir), Some(other.clone()));
        }
    }

    #[test]
    fn a_whole_line_that_is_no_change_is_an_error_not_a_lost_change() {
        let (_dir, state, mut tree) = saved(2);
        set(&mut tree, "./A", "1");
        state.save_tree(&tree).unwrap();
        let mut journal = OpenOptions::new()
            .append(true)
            .open(state.journal_path())
            .unwrap();
        journal.write_all(b"{\"not\": \"a change\"}\n").unwrap();
        let error = state.load_tree().unwrap_err();
        assert!(error.to_string().contains("line 3"), "{error}");
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
