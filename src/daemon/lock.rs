//! One `captiond run` per catalog: an exclusive `flock` on `<database>.lock` (e.g.
//! `catalog.db.lock`), held for the life of the run. The kernel drops the lock when the process
//! ends, however it ends, so a daemon killed with `kill -9` never leaves a stale lock behind; the
//! file itself stays (removing it would race with the next run opening it) and holds the pid of
//! the last holder, for the refusal message.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::DaemonError;

/// Held while a run owns the catalog; dropping it releases the lock.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    path: PathBuf,
}

/// `<database>.lock`, next to the database.
pub fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    database.with_file_name(name)
}

impl RunLock {
    /// Takes the lock for `database` without waiting; another live run holding it is
    /// [`DaemonError::AlreadyRunning`].
    pub fn acquire(database: &Path) -> Result<RunLock, DaemonError> {
        let path = lock_path(database);
        let io_err = |source| DaemonError::Lock {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io_err)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err)?;
        // `captiond status` probes the lock with a brief shared lock: retry a moment before
        // concluding that another run holds it.
        let mut attempt = try_lock(&file);
        for _ in 0..3 {
            match &attempt {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    attempt = try_lock(&file);
                }
                _ => break,
            }
        }
        if let Err(e) = attempt {
            if e.kind() == std::io::ErrorKind::WouldBlock {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                return Err(DaemonError::AlreadyRunning {
                    database: database.to_path_buf(),
                    lock: path,
                    pid: holder.trim().parse().ok(),
                });
            }
            return Err(io_err(e));
        }
        // Best effort: the pid only serves the message a second run prints.
        let _ = file
            .set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .and_then(|()| file.flush());
        Ok(RunLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The exclusive lock without waiting. std's file locks are `flock` on Unix (per open file
/// description, dropped by the kernel when the process dies) and `LockFileEx` on Windows.
fn try_lock(file: &File) -> std::io::Result<()> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => Err(std::io::ErrorKind::WouldBlock.into()),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// Whether a `captiond run` owns a catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonState {
    NotRunning,
    /// `pid` as the daemon wrote it into its lock file.
    Running {
        pid: Option<u32>,
    },
    /// The lock could not be tested (an unusual filesystem or platform).
    Unknown(String),
}

impl DaemonState {
    pub fn running(&self) -> Option<bool> {
        match self {
            DaemonState::NotRunning => Some(false),
            DaemonState::Running { .. } => Some(true),
            DaemonState::Unknown(_) => None,
        }
    }

    pub fn pid(&self) -> Option<u32> {
        match self {
            DaemonState::Running { pid } => *pid,
            _ => None,
        }
    }
}

/// Tests the run lock of `database` without disturbing it (for `status`, `retry`, `rescan`): the
/// file is opened read-only (never created), a non-blocking *shared* lock is tried and, if
/// granted, released at once. It is refused exactly while a daemon holds its exclusive lock
/// ([`RunLock::acquire`] retries a moment to step around this probe).
pub fn daemon_state(database: &Path) -> DaemonState {
    let path = lock_path(database);
    let mut file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return DaemonState::NotRunning,
        Err(e) => return DaemonState::Unknown(format!("cannot open {}: {e}", path.display())),
    };
    match file.try_lock_shared() {
        Ok(()) => {
            // Closing the file would release it too; this is immediate.
            let _ = file.unlock();
            DaemonState::NotRunning
        }
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            DaemonState::Running {
                pid: text.trim().parse().ok(),
            }
        }
        Err(TryLockError::Error(err)) => {
            DaemonState::Unknown(format!("cannot test the lock {}: {err}", path.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("sub/catalog.db");
        assert_eq!(lock_path(&db), dir.path().join("sub/catalog.db.lock"));
        let first = RunLock::acquire(&db).unwrap();
        // flock locks belong to the open file description, so a second open in the same
        // process conflicts like another process would.
        match RunLock::acquire(&db) {
            Err(DaemonError::AlreadyRunning { pid, lock, .. }) => {
                assert_eq!(pid, Some(std::process::id()));
                assert_eq!(lock, first.path());
            }
            other => panic!("expected AlreadyRunning, got {other:?}"),
        }
        drop(first);
        RunLock::acquire(&db).unwrap();
    }

    #[test]
    fn daemon_lock_is_detected_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("catalog.db");
        assert_eq!(daemon_state(&db), DaemonState::NotRunning);
        // Probing never creates the lock file.
        assert!(!lock_path(&db).exists());
        let lock = RunLock::acquire(&db).unwrap();
        assert_eq!(
            daemon_state(&db),
            DaemonState::Running {
                pid: Some(std::process::id())
            }
        );
        drop(lock);
        assert_eq!(daemon_state(&db), DaemonState::NotRunning);
        // The probe released its shared lock: a daemon can start right after.
        let _again = RunLock::acquire(&db).unwrap();
    }
}
