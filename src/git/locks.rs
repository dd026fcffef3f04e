//! Stale lock files: git leaves `index.lock` behind when it is killed, and every
//! later git call in that worktree then fails until the file is removed.

use std::os::unix::fs::MetadataExt;

/// Which file: its device and inode, so no path (nor a link swapped into one)
/// is followed to find it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

/// Whether any process has the file open. A lock is only stale when none does;
/// removing a live one would corrupt the index of the git that holds it.
pub fn held_by_a_process(lock: FileId) -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else { return true };
    procs
        .flatten()
        .filter(|p| p.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|p| std::fs::read_dir(p.path().join("fd")).ok())
        .flat_map(|fds| fds.flatten())
        .any(|fd| std::fs::metadata(fd.path()).is_ok_and(|m| FileId { dev: m.dev(), ino: m.ino() } == lock))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_lock_is_held_and_a_closed_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("index.lock");
        let file = std::fs::File::create(&lock).unwrap();
        let meta = std::fs::metadata(&lock).unwrap();
        let id = FileId { dev: meta.dev(), ino: meta.ino() };
        assert!(held_by_a_process(id));
        drop(file);
        assert!(!held_by_a_process(id));
    }
}
