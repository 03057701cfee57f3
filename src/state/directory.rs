//! The on-disk layout of an application's state: `<state.dir>/<application-id>/<task-id>/`,
//! locked so two processes never share it, with stale task directories removed after a
//! delay.

use std::collections::HashSet;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use super::StateError;
use crate::engine::TaskId;

/// Marker file touched when a task is closed; its age decides when the directory goes.
const LAST_OWNED: &str = ".last-owned";

/// An application's state directory, locked for this process while the value lives.
pub struct StateDirectory {
    root: PathBuf,
    _lock: File,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl StateDirectory {
    /// Creates and locks `<state_dir>/<app_id>`. Fails with [`StateError::Locked`] when
    /// another process holds it.
    pub fn open(state_dir: &Path, app_id: &str) -> Result<StateDirectory, StateError> {
        let root = state_dir.join(app_id);
        fs::create_dir_all(&root).map_err(io(&root))?;
        let lock_path = root.join(".lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(StateError::Locked { path: root }),
            Err(fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
        }
        Ok(StateDirectory { root, _lock: lock })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where task `id` keeps its stores.
    pub fn task_path(&self, id: TaskId) -> PathBuf {
        self.root.join(id.to_string())
    }

    /// Records that this process stopped owning `id` now.
    pub fn mark_released(&self, id: TaskId) {
        let dir = self.task_path(id);
        if !dir.is_dir() {
            return;
        }
        let marker = dir.join(LAST_OWNED);
        if let Err(e) = File::create(&marker) {
            warn!(task = %id, path = %marker.display(), error = %e, "Could not mark a task directory as released.");
        }
    }

    /// Task ids that have a directory here.
    pub fn task_dirs(&self) -> Vec<TaskId> {
        let Ok(entries) = fs::read_dir(&self.root) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .filter_map(|e| parse_task_id(&e.file_name().to_string_lossy()))
            .collect()
    }

    /// Deletes directories of tasks not in `owned` that were released more than `delay`
    /// ago (or never marked, e.g. after a crash, and untouched for `delay`). Returns them.
    pub fn clean_stale(&self, owned: &HashSet<TaskId>, delay: Duration) -> Vec<TaskId> {
        let now = SystemTime::now();
        let mut removed = Vec::new();
        for id in self.task_dirs() {
            if owned.contains(&id) {
                continue;
            }
            let dir = self.task_path(id);
            let marker = dir.join(LAST_OWNED);
            let touched = fs::metadata(&marker)
                .or_else(|_| fs::metadata(&dir))
                .and_then(|m| m.modified());
            let age = touched
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .unwrap_or_default();
            if age < delay {
                continue;
            }
            match fs::remove_dir_all(&dir) {
                Ok(()) => {
                    info!(task = %id, path = %dir.display(), idle_secs = age.as_secs(), "Deleted the state of a task this instance no longer owns.");
                    removed.push(id);
                }
                Err(e) => {
                    warn!(task = %id, path = %dir.display(), error = %e, "Could not delete stale task state.")
                }
            }
        }
        removed
    }

    /// Deletes task `id`'s stores: its local state is not trusted any more (it is ahead of
    /// what the broker holds). The task restores from the beginning when opened again.
    pub fn wipe_task(&self, id: TaskId) -> Result<(), StateError> {
        let dir = self.task_path(id);
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&dir)(e)),
            _ => Ok(()),
        }
    }

    /// Deletes every task directory (for `reset`).
    pub fn wipe(&self) -> Result<(), StateError> {
        for id in self.task_dirs() {
            let dir = self.task_path(id);
            fs::remove_dir_all(&dir).map_err(io(&dir))?;
        }
        Ok(())
    }
}

fn parse_task_id(s: &str) -> Option<TaskId> {
    let (a, b) = s.split_once('_')?;
    Some(TaskId {
        subtopology: a.parse().ok()?,
        partition: b.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_process_lock_fails_clearly_and_stale_dirs_go() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDirectory::open(tmp.path(), "app").unwrap();
        // flock is per open file description, so a second open in this process conflicts
        // exactly as another process would.
        match StateDirectory::open(tmp.path(), "app") {
            Err(StateError::Locked { path }) => assert!(path.ends_with("app")),
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("locked twice"),
        }
        let a = TaskId {
            subtopology: 1,
            partition: 0,
        };
        let b = TaskId {
            subtopology: 1,
            partition: 1,
        };
        fs::create_dir_all(dir.task_path(a)).unwrap();
        fs::create_dir_all(dir.task_path(b)).unwrap();
        dir.mark_released(a);
        let owned: HashSet<TaskId> = [b].into();
        assert!(dir
            .clean_stale(&owned, Duration::from_secs(3600))
            .is_empty());
        assert_eq!(dir.clean_stale(&owned, Duration::ZERO), vec![a]);
        assert_eq!(dir.task_dirs(), vec![b]);
        drop(dir);
        StateDirectory::open(tmp.path(), "app").expect("lock released on drop");
    }
}
