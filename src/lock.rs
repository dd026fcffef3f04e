//! Advisory file locks, so that the CLI and a running `kugetsu serve` never work on
//! the same mirror or issue at once, even from different processes.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::Path;
use std::time::Duration;

/// Held for as long as it lives; the OS releases the lock when the file closes,
/// which also happens when the process dies.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

fn open_lock_file(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).truncate(false).write(true).open(path)
}

/// Waits for the lock without blocking the async runtime.
pub async fn lock_exclusive(path: &Path) -> io::Result<FileLock> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let file = open_lock_file(&path)?;
        file.lock()?;
        Ok(FileLock { _file: file })
    })
    .await
    .map_err(io::Error::other)?
}

/// Takes the lock if it is free; `None` if someone else holds it.
pub fn try_lock_exclusive(path: &Path) -> io::Result<Option<FileLock>> {
    let file = open_lock_file(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(FileLock { _file: file })),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// Takes the lock if it is free, or frees up within `wait`; `None` otherwise.
///
/// A process forked anywhere in this process holds a copy of every descriptor
/// until it execs, flock'd ones included, so a lock released a moment ago can
/// still look held: a short wait keeps that from passing for a busy issue.
pub async fn try_lock_exclusive_within(path: &Path, wait: Duration) -> io::Result<Option<FileLock>> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        if let Some(lock) = try_lock_exclusive(path)? {
            return Ok(Some(lock));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_until_release() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b.lock");
        let first = try_lock_exclusive(&path).unwrap();
        assert!(first.is_some());
        assert!(try_lock_exclusive(&path).unwrap().is_none());
        drop(first);
        assert!(try_lock_exclusive(&path).unwrap().is_some());
    }

    #[tokio::test]
    async fn a_lock_released_during_the_wait_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.lock");
        let held = try_lock_exclusive(&path).unwrap();
        let refused = try_lock_exclusive_within(&path, Duration::from_millis(60)).await.unwrap();
        assert!(refused.is_none(), "a lock held throughout the wait is refused");
        let release = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(held);
        });
        let taken = try_lock_exclusive_within(&path, Duration::from_secs(5)).await.unwrap();
        assert!(taken.is_some());
        release.await.unwrap();
    }
}
