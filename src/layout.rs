use std::path::{Path, PathBuf};

use crate::issue_ref::{IssueRef, RepoRef};

/// Where everything lives under the state directory. Paths are built only from
/// validated refs, so no payload can steer them outside it.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

/// Name of a repository's base-session checkout, beside its issue worktrees
/// (which are named by number, so the two never collide).
pub const BASE_WORKTREE: &str = "base";

const READY_PREFIX: &str = ".ready-";

impl Layout {
    pub fn new(root: &Path) -> Self {
        Self { root: root.to_owned() }
    }

    pub fn database(&self) -> PathBuf {
        self.root.join("kugetsu.db")
    }

    /// This state directory's replica id (see [`crate::store::ReplicaStore`]).
    pub fn replica_id(&self) -> PathBuf {
        self.root.join("replica-id")
    }

    pub fn mirror(&self, repo: &RepoRef) -> PathBuf {
        with_suffix(self.root.join("mirrors").join(repo.rel_path()), ".git")
    }

    pub fn mirror_lock(&self, repo: &RepoRef) -> PathBuf {
        self.lock("mirrors", &repo.rel_path())
    }

    pub fn issue_lock(&self, issue: &IssueRef) -> PathBuf {
        self.lock("issues", &issue.rel_path())
    }

    fn lock(&self, kind: &str, rel: &Path) -> PathBuf {
        with_suffix(self.root.join("locks").join(kind).join(rel), ".lock")
    }

    pub fn worktrees_root(&self) -> PathBuf {
        self.root.join("worktrees")
    }

    pub fn worktree(&self, issue: &IssueRef) -> PathBuf {
        self.worktrees_root().join(issue.rel_path())
    }

    pub fn base_worktree(&self, repo: &RepoRef) -> PathBuf {
        self.worktrees_root().join(repo.rel_path()).join(BASE_WORKTREE)
    }

    /// A ready checkout of the repository (see `engine::pool`), beside its issue
    /// checkouts; the leading dot keeps it apart from them and from `base`.
    pub fn ready_checkout(&self, repo: &RepoRef, id: &str) -> PathBuf {
        self.worktrees_root().join(repo.rel_path()).join(format!("{READY_PREFIX}{id}"))
    }

    pub fn is_ready_checkout(path: &Path) -> bool {
        path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(READY_PREFIX))
    }

    /// The repository a checkout under the worktrees root belongs to.
    pub fn repo_of_checkout(&self, dir: &Path) -> Option<RepoRef> {
        let rel = dir.strip_prefix(self.worktrees_root()).ok()?;
        if !rel.components().all(|c| matches!(c, std::path::Component::Normal(_))) {
            return None;
        }
        let parts: Vec<&str> = rel.iter().map(|p| p.to_str()).collect::<Option<_>>()?;
        match parts.as_slice() {
            [instance, owner, name, _checkout] => format!("{instance}/{owner}/{name}").parse().ok(),
            _ => None,
        }
    }

    /// Where opencode keeps its files (sessions, caches, its HOME) for one checkout:
    /// each issue has its own, so no agent can read another's transcripts.
    pub fn opencode_home(&self, checkout: &Path) -> Option<PathBuf> {
        self.repo_of_checkout(checkout)?;
        let rel = checkout.strip_prefix(self.worktrees_root()).ok()?;
        Some(self.opencode_homes_root().join(rel))
    }

    pub fn opencode_homes_root(&self) -> PathBuf {
        self.root.join("opencode").join("homes")
    }

    /// Files kugetsu writes for opencode to read, such as the agent's shell.
    pub fn opencode_bin(&self) -> PathBuf {
        self.root.join("opencode").join("bin")
    }

    /// Scratch space for opencode setting up its config directory.
    pub fn opencode_setup(&self) -> PathBuf {
        self.root.join("opencode").join("setup")
    }

    /// Per-session files such as `--debug` logs.
    pub fn sessions_dir(&self) -> PathBuf {
        self.root.join("sessions")
    }
}

/// Appends to the last component; `set_extension` would eat a `.` inside a repo name.
fn with_suffix(path: PathBuf, suffix: &str) -> PathBuf {
    let mut os = path.into_os_string();
    os.push(suffix);
    PathBuf::from(os)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_repo_names_keep_distinct_paths() {
        let layout = Layout::new(Path::new("/s"));
        let a: RepoRef = "g/o/a.b".parse().unwrap();
        let b: RepoRef = "g/o/a.c".parse().unwrap();
        assert_eq!(layout.mirror(&a), PathBuf::from("/s/mirrors/g/o/a.b.git"));
        assert_ne!(layout.mirror(&a), layout.mirror(&b));
        assert_eq!(layout.mirror_lock(&a), PathBuf::from("/s/locks/mirrors/g/o/a.b.lock"));
    }

    #[test]
    fn each_checkout_has_its_own_opencode_home_and_nothing_else_has_one() {
        let layout = Layout::new(Path::new("/s"));
        let issue = Path::new("/s/worktrees/g/o/r/7");
        assert_eq!(layout.repo_of_checkout(issue), Some("g/o/r".parse().unwrap()));
        assert_eq!(layout.opencode_home(issue), Some(PathBuf::from("/s/opencode/homes/g/o/r/7")));
        assert_eq!(
            layout.opencode_home(Path::new("/s/worktrees/g/o/r/base")),
            Some("/s/opencode/homes/g/o/r/base".into())
        );
        assert_eq!(layout.opencode_home(Path::new("/s/worktrees/g/o/r")), None);
        assert_eq!(layout.opencode_home(Path::new("/s/mirrors/g/o/r/7")), None);
        assert_eq!(layout.opencode_home(Path::new("/elsewhere/g/o/r/7")), None);
        assert_eq!(layout.opencode_home(Path::new("/s/worktrees/g/o/r/..")), None);
    }
}
