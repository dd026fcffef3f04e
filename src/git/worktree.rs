use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Git, GitError, Mirror};

/// One issue's checkout, on the issue's own branch.
#[derive(Debug, Clone)]
pub struct Worktree {
    path: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    pub sha: String,
    pub subject: String,
}

impl Worktree {
    pub fn at(path: PathBuf) -> Self {
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn exists(&self) -> bool {
        self.path.join(".git").exists()
    }

    /// Checks out `branch` in a new worktree. An existing local branch is reused (a
    /// worktree lost behind our back keeps its work); otherwise the branch is cut
    /// from `start_point`.
    pub async fn create(
        git: &Git,
        mirror: &Mirror,
        path: PathBuf,
        branch: Option<&str>,
        start_point: &str,
    ) -> Result<Self, GitError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(GitError::Spawn)?;
        }
        // A directory left by a crash would make `worktree add` fail.
        git.run(mirror.path(), &["worktree", "prune"]).await?;
        if path.exists() {
            std::fs::remove_dir_all(&path).map_err(GitError::Spawn)?;
        }
        let path_str = path.to_string_lossy().into_owned();
        match branch {
            None => {
                git.run(mirror.path(), &["worktree", "add", "-q", "--detach", "--", &path_str, start_point]).await?;
            }
            Some(branch) => {
                let full = format!("refs/heads/{branch}");
                let exists =
                    git.run(mirror.path(), &["rev-parse", "-q", "--verify", "--end-of-options", &full]).await.is_ok();
                let mut args = vec!["worktree", "add", "-q"];
                if !exists {
                    args.extend(["-b", branch]);
                }
                args.extend(["--", &path_str]);
                args.push(if exists { branch } else { start_point });
                git.run(mirror.path(), &args).await?;
            }
        }
        Ok(Self { path })
    }

    /// Removes the checkout and git's record of it; the branch stays in the mirror.
    pub async fn remove(&self, git: &Git, mirror: &Mirror) -> Result<(), GitError> {
        let path_str = self.path.to_string_lossy().into_owned();
        if mirror.exists() {
            // Ignore failure: the worktree may already be unknown to git.
            let _ = git.run(mirror.path(), &["worktree", "remove", "--force", "--", &path_str]).await;
        }
        if self.path.exists() {
            std::fs::remove_dir_all(&self.path).map_err(GitError::Spawn)?;
        }
        if mirror.exists() {
            git.run(mirror.path(), &["worktree", "prune"]).await?;
        }
        Ok(())
    }

    /// Makes the worktree safe for kugetsu's own git calls after the agent had it:
    /// the mirror's config is restored, the `.git` link points back at the mirror
    /// (the agent could aim it at a repository with hostile config), and index
    /// locks left by a killed git are removed if no process holds them.
    pub fn reclaim(&self, mirror: &Mirror) -> Result<(), GitError> {
        mirror.restore_config()?;
        let Some(admin) = mirror.admin_dir_of(&self.path) else {
            return Err(GitError::Failed {
                args: "worktree".into(),
                stderr: format!("{} is not a worktree of {}", self.path.display(), mirror.path().display()),
            });
        };
        std::fs::write(self.path.join(".git"), format!("gitdir: {}\n", admin.display())).map_err(GitError::Spawn)?;
        for lock in [admin.join("index.lock"), admin.join("HEAD.lock")] {
            if lock.exists() && !super::locks::held_by_a_process(&lock) {
                tracing::warn!(lock = %lock.display(), "removing a stale git lock");
                std::fs::remove_file(&lock).map_err(GitError::Spawn)?;
            }
        }
        Ok(())
    }

    pub async fn head(&self, git: &Git) -> Result<String, GitError> {
        Ok(git.run(&self.path, &["rev-parse", "HEAD"]).await?.trim().to_owned())
    }

    /// Commits whatever the agent left uncommitted; `None` when the tree was clean.
    pub async fn commit_leftovers(&self, git: &Git, message: &str) -> Result<Option<String>, GitError> {
        let status = git.run(&self.path, &["status", "--porcelain", "--untracked-files=all"]).await?;
        if status.trim().is_empty() {
            return Ok(None);
        }
        git.run(&self.path, &["add", "-A", "--", "."]).await?;
        git.run(&self.path, &["commit", "-q", "--no-verify", "-m", message]).await?;
        self.head(git).await.map(Some)
    }

    /// Takes tracked paths out of the checkout without git counting them as
    /// deleted (skip-worktree), so the agent's commits leave them alone. Used to keep
    /// a repository's own opencode config and plugins away from opencode, which loads
    /// `.opencode/plugins/*` whatever its flags say (opencode issue #49836).
    pub async fn hide_paths(&self, git: &Git, paths: &[&str]) -> Result<(), GitError> {
        let mut args = vec!["ls-files", "-z", "--"];
        args.extend_from_slice(paths);
        let listed = git.run(&self.path, &args).await?;
        let files: Vec<&str> = listed.split('\0').filter(|f| !f.is_empty()).collect();
        if files.is_empty() {
            return Ok(());
        }
        let mut args = vec!["update-index", "--skip-worktree", "--"];
        args.extend(files.iter().copied());
        git.run(&self.path, &args).await?;
        for path in paths {
            let full = self.path.join(path);
            let removed = if full.is_dir() { std::fs::remove_dir_all(&full) } else { std::fs::remove_file(&full) };
            if let Err(e) = removed
                && e.kind() != std::io::ErrorKind::NotFound
            {
                return Err(GitError::Spawn(e));
            }
        }
        Ok(())
    }

    /// Whether HEAD contains `commit`.
    pub async fn contains(&self, git: &Git, commit: &str) -> bool {
        git.run(&self.path, &["merge-base", "--is-ancestor", "--end-of-options", commit, "HEAD"]).await.is_ok()
    }

    /// Commits in `since..HEAD`, oldest first.
    pub async fn commits_since(&self, git: &Git, since: &str) -> Result<Vec<Commit>, GitError> {
        let range = format!("{since}..HEAD");
        let out = git.run(&self.path, &["log", "--reverse", "--format=%H%x09%s", &range, "--"]).await?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(sha, subject)| Commit { sha: sha.to_owned(), subject: subject.to_owned() })
            .collect())
    }

    pub async fn files_changed_since(&self, git: &Git, since: &str) -> Result<Vec<String>, GitError> {
        let out = git
            .run(&self.path, &["diff", "--no-ext-diff", "--no-textconv", "--name-only", since, "HEAD", "--"])
            .await?;
        Ok(out.lines().map(str::to_owned).collect())
    }
}
