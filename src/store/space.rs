//! Keeps sled away from a full or read-only disk, and keeps a store whose
//! disk failed anyway from hanging.
//!
//! sled 0.34 does not recover from a failed write: once a write of its log
//! fails (no space left, a read-only file system), the log's stable point
//! never advances again, so every later flush waits forever, and the flush
//! holds the lock every transaction needs. So each write first checks the
//! data dir's file system ([`SpaceGuard::check`]): less free space than
//! `storage.min_free_bytes` plus what the write adds, or a read-only mount,
//! refuses the write before sled sees it. Writes resume by themselves once
//! space is back. When sled reports an I/O error all the same (the space was
//! taken by something else in between, a failing disk), the store latches
//! into a failed state ([`SpaceGuard::fail`]): writes are refused at once
//! instead of hanging, reads go on, and a restart recovers (every
//! acknowledged write is in the log).
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::StoreError;

/// Free space kept by default (`storage.min_free_bytes`): room for sled's
/// own log writes and segment cleaning, and the index checkpoints beside it.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 256 * 1024 * 1024;

pub struct SpaceGuard {
    /// A path on the file system to watch (sled's directory).
    path: PathBuf,
    min_free: AtomicU64,
    /// Why the store failed, once it has.
    failed: Mutex<Option<String>>,
}

/// What [`disk_state`] found.
#[derive(Debug, Clone, Copy)]
pub struct DiskState {
    /// Bytes an unprivileged writer may still use.
    pub available: u64,
    pub read_only: bool,
}

impl SpaceGuard {
    pub fn new(path: &Path) -> SpaceGuard {
        SpaceGuard {
            path: path.to_path_buf(),
            min_free: AtomicU64::new(DEFAULT_MIN_FREE_BYTES),
            failed: Mutex::new(None),
        }
    }

    pub fn set_min_free(&self, bytes: u64) {
        self.min_free.store(bytes, Ordering::Relaxed);
    }

    /// Refuses a write of about `write_bytes` bytes when the store failed,
    /// the file system is read-only, or the write would leave less than
    /// the reserve free (it counts twice: sled logs a value, and rewrites
    /// it when it cleans segments).
    pub fn check(&self, write_bytes: u64) -> Result<(), StoreError> {
        if let Some(reason) = self.failed() {
            return Err(StoreError::Failed(reason));
        }
        // A file system we cannot ask about is not refused: sled reports
        // real errors itself.
        let Ok(state) = disk_state(&self.path) else {
            return Ok(());
        };
        if state.read_only {
            return Err(StoreError::ReadOnly(self.path.clone()));
        }
        let needed = self
            .min_free
            .load(Ordering::Relaxed)
            .saturating_add(write_bytes.saturating_mul(2));
        if state.available < needed {
            return Err(StoreError::DiskFull {
                path: self.path.clone(),
                available: state.available,
                needed,
            });
        }
        Ok(())
    }

    /// Latches the failed state (the first reason is kept) and returns
    /// the error for the write that hit it: a full or read-only disk by
    /// name, anything else as it came.
    pub fn fail(&self, error: sled::Error) -> StoreError {
        let reason = error.to_string();
        tracing::error!(
            error = %reason,
            "the store hit an I/O error: writes are refused until the server restarts"
        );
        self.failed.lock().get_or_insert(reason);
        match &error {
            sled::Error::Io(io) if io.raw_os_error() == Some(libc::ENOSPC) => {
                StoreError::DiskFull {
                    path: self.path.clone(),
                    available: disk_state(&self.path).map_or(0, |s| s.available),
                    needed: self.min_free.load(Ordering::Relaxed),
                }
            }
            sled::Error::Io(io) if io.raw_os_error() == Some(libc::EROFS) => {
                StoreError::ReadOnly(self.path.clone())
            }
            _ => StoreError::Sled(error),
        }
    }

    /// Latches the failed state for a reason that is not a sled error.
    pub fn fail_with(&self, reason: String) {
        tracing::error!(error = %reason, "the store failed: writes are refused until the server restarts");
        self.failed.lock().get_or_insert(reason);
    }

    pub fn failed(&self) -> Option<String> {
        self.failed.lock().clone()
    }
}

/// Refuses to open a database in `dir` (or to create it there) when the
/// file system holding it, or the nearest directory above it that exists,
/// is read-only: a clear message naming the directory, rather than sled's
/// bare "Read-only file system" from somewhere inside its open.
pub fn refuse_read_only(dir: &Path) -> Result<(), StoreError> {
    let Some(existing) = dir.ancestors().find(|p| p.exists()) else {
        return Ok(());
    };
    match disk_state(existing) {
        Ok(state) if state.read_only => Err(StoreError::ReadOnlyAtOpen(existing.to_path_buf())),
        _ => Ok(()),
    }
}

/// Free space and the read-only flag of the file system holding `path`.
#[cfg(unix)]
pub fn disk_state(path: &Path) -> std::io::Result<DiskState> {
    let st = rustix::fs::statvfs(path)?;
    Ok(DiskState {
        available: st.f_bavail.saturating_mul(st.f_frsize),
        read_only: st.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY),
    })
}

#[cfg(not(unix))]
pub fn disk_state(_path: &Path) -> std::io::Result<DiskState> {
    Err(std::io::Error::other("free space is only checked on Unix"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserve_larger_than_the_disk_refuses_writes_and_a_failure_latches() {
        let dir = tempfile::tempdir().unwrap();
        let guard = SpaceGuard::new(dir.path());
        let state = disk_state(dir.path()).unwrap();
        assert!(state.available > 0 && !state.read_only);
        guard.set_min_free(0);
        guard.check(0).unwrap();
        guard.set_min_free(state.available.saturating_mul(4));
        assert!(matches!(guard.check(0), Err(StoreError::DiskFull { .. })));
        guard.set_min_free(0);
        let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert!(matches!(
            guard.fail(sled::Error::Io(full)),
            StoreError::DiskFull { .. }
        ));
        assert!(matches!(guard.check(0), Err(StoreError::Failed(_))));
    }
}
