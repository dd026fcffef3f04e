use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Git, GitError, Mirror};

/// One issue's working copy: a repository of its own on the issue's branch, which
/// borrows the mirror's objects read-only (`objects/info/alternates`).
///
/// The agent owns everything in it, `.git` included, so kugetsu treats it as
/// hostile: it never runs git there with credentials, and work leaves it only as
/// a bundle (plain data) that kugetsu fetches into its own mirror before pushing.
/// Nothing the agent writes there (config, hooks, attributes, `commondir`) is
/// ever read by a git command that kugetsu runs in the mirror.
#[derive(Debug, Clone)]
pub struct WorkingCopy {
    path: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    pub sha: String,
    pub subject: String,
}

impl WorkingCopy {
    pub fn at(path: PathBuf) -> Self {
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn exists(&self) -> bool {
        self.path.join(".git").is_dir()
    }

    /// A checkout made by an older kugetsu with `git worktree add`, whose `.git`
    /// is a file pointing into the mirror.
    pub fn is_legacy(&self) -> bool {
        self.path.join(".git").is_file()
    }

    /// Makes a fresh working copy at `path` with HEAD at `start` (a commit the
    /// mirror has): on a new `branch`, or detached when `branch` is `None`.
    /// `default` names the remote's default branch, kept as `origin/<default>`
    /// so the agent can compare with it.
    pub async fn create(
        git: &Git,
        mirror: &Mirror,
        path: PathBuf,
        branch: Option<&str>,
        start: &str,
        default: Option<(&str, &str)>,
    ) -> Result<Self, GitError> {
        let parent = path.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(parent).map_err(GitError::Spawn)?;
        if path.exists() {
            std::fs::remove_dir_all(&path).map_err(GitError::Spawn)?;
        }
        // Built beside its final place and renamed in, so a crash never leaves a
        // half-made working copy where a run would take it for a real one.
        let scratch = tempfile::Builder::new().prefix(".new-").tempdir_in(parent).map_err(GitError::Spawn)?;
        let dir = scratch.path();
        git.run(dir, &["init", "-q", "."]).await?;
        let objects = std::path::absolute(mirror.path().join("objects")).map_err(GitError::Spawn)?;
        std::fs::write(dir.join(".git/objects/info/alternates"), format!("{}\n", objects.display()))
            .map_err(GitError::Spawn)?;
        match branch {
            Some(branch) => {
                let full = format!("refs/heads/{branch}");
                git.run(dir, &["update-ref", "--end-of-options", &full, start]).await?;
                git.run(dir, &["symbolic-ref", "HEAD", &full]).await?;
            }
            None => {
                git.run(dir, &["update-ref", "--no-deref", "--end-of-options", "HEAD", start]).await?;
            }
        }
        if let Some((name, sha)) = default {
            let tracking = format!("refs/remotes/origin/{name}");
            git.run(dir, &["update-ref", "--end-of-options", &tracking, sha]).await?;
        }
        git.run(dir, &["reset", "-q", "--hard"]).await?;
        std::fs::rename(scratch.keep(), &path).map_err(GitError::Spawn)?;
        Ok(Self { path })
    }

    /// Puts a ready working copy (one no agent has had), whose HEAD is `head`, on
    /// a new `branch` at `start`, with its files to match, and `origin/<default>`
    /// where the mirror has it. Returns whether its files changed.
    pub async fn switch_to(
        &self,
        git: &Git,
        head: &str,
        branch: &str,
        start: &str,
        default: Option<(&str, &str)>,
    ) -> Result<bool, GitError> {
        let moved = start != head;
        match moved {
            // A new branch at HEAD: git leaves the index and the files alone.
            false => git.run(&self.path, &["checkout", "-q", "-b", branch]).await?,
            true => git.run(&self.path, &["checkout", "-q", "-f", "--no-track", "-B", branch, start]).await?,
        };
        if let Some((name, sha)) = default.filter(|(_, sha)| *sha != head) {
            let tracking = format!("refs/remotes/origin/{name}");
            git.run(&self.path, &["update-ref", "--end-of-options", &tracking, sha]).await?;
        }
        Ok(moved)
    }

    /// Rewrites the index with the files' current stat data. Files written in the
    /// same moment as the index are "racily clean" to git, which then reads them
    /// whole at every status until the index is written again.
    pub async fn refresh_index(&self, git: &Git) -> Result<(), GitError> {
        git.run(&self.path, &["update-index", "-q", "--refresh"]).await.map(drop)
    }

    /// Removes the working copy. A legacy worktree is also forgotten by the mirror.
    pub async fn remove(&self, git: &Git, mirror: &Mirror) -> Result<(), GitError> {
        let legacy = self.is_legacy();
        if self.path.exists() {
            std::fs::remove_dir_all(&self.path).map_err(GitError::Spawn)?;
        }
        if legacy && mirror.exists() {
            git.run(mirror.path(), &["worktree", "prune"]).await?;
        }
        Ok(())
    }

    /// Index locks left by a killed git are removed if no process holds them.
    /// They are looked for only in a real `.git` directory, held open while it is
    /// searched, so a link the agent puts in its place meanwhile changes nothing.
    pub fn clear_stale_locks(&self) -> Result<(), GitError> {
        use nix::fcntl::{AtFlags, OFlag};
        use nix::sys::stat::{Mode, SFlag, fstatat};
        use nix::unistd::{UnlinkatFlags, unlinkat};
        let flags = OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
        let Ok(dot_git) = nix::fcntl::open(&self.path.join(".git"), flags, Mode::empty()) else {
            return Ok(());
        };
        for name in ["index.lock", "HEAD.lock"] {
            let Ok(st) = fstatat(&dot_git, name, AtFlags::AT_SYMLINK_NOFOLLOW) else { continue };
            let is_file = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG;
            let id = super::locks::FileId { dev: st.st_dev, ino: st.st_ino };
            if is_file && !super::locks::held_by_a_process(id) {
                tracing::warn!(lock = %self.path.join(".git").join(name).display(), "removing a stale git lock");
                unlinkat(&dot_git, name, UnlinkatFlags::NoRemoveDir)
                    .map_err(|e| GitError::Spawn(std::io::Error::from(e)))?;
            }
        }
        Ok(())
    }

    /// Commits whatever the agent left uncommitted, then writes the commits of
    /// HEAD that are in none of the `known` commits' histories to a bundle at
    /// `out`. One script, so one sandbox start for four git commands.
    pub async fn commit_and_bundle(
        &self,
        git: &Git,
        message: &str,
        known: &[String],
        out: &Path,
    ) -> Result<Committed, GitError> {
        let out = out.to_string_lossy().into_owned();
        let nots: Vec<String> = known.iter().map(|sha| format!("^{sha}")).collect();
        let mut args = vec![message, out.as_str()];
        args.extend(nots.iter().map(String::as_str));
        let printed = git.run_script(&self.path, "commit and bundle", COMMIT_AND_BUNDLE, &args).await?;
        let mut lines = printed.lines();
        // Printed by git in the agent's jail: checked before kugetsu's own git is given it.
        let head = lines
            .next()
            .map(str::trim)
            .filter(|l| is_object_name(l))
            .ok_or_else(|| GitError::Failed { args: "rev-parse HEAD".into(), stderr: "HEAD is not a commit".into() })?;
        let bundle = match lines.next() {
            None => Ok(()),
            Some(line) => Err(line.strip_prefix("no bundle: ").unwrap_or(line).to_owned()),
        };
        Ok(Committed { head: head.to_owned(), bundle })
    }

    /// Takes tracked paths out of the checkout without git counting them as
    /// deleted (skip-worktree), so the agent's commits leave them alone. Used to keep
    /// a repository's own opencode config and plugins away from opencode, which loads
    /// `.opencode/plugins/*` whatever its flags say (opencode issue #49836).
    /// Done once, when the working copy is made, before the agent has touched it.
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
}

/// `$1` the commit message, `$2` the bundle's path, the rest `^<commit>`s.
/// git makes no bundle when HEAD has nothing new: that is said, not failed.
const COMMIT_AND_BUNDLE: &str = r#"set -e
message=$1 out=$2
shift 2
git add -A -- .
git diff --cached --quiet || git commit -q --no-verify -m "$message"
git rev-parse --verify -q 'HEAD^{commit}'
if ! err=$(git bundle create -q "$out" HEAD "$@" 2>&1); then
    printf 'no bundle: %s\n' "$(printf '%s' "$err" | tr '\n' ' ')"
fi
"#;

/// What `commit_and_bundle` left: HEAD, and the bundle or why there is none.
#[derive(Debug)]
pub struct Committed {
    pub head: String,
    pub bundle: Result<(), String>,
}

/// Whether git's answer, which the agent's repository shaped, is an object name.
fn is_object_name(text: &str) -> bool {
    matches!(text.len(), 40 | 64) && text.bytes().all(|b| b.is_ascii_hexdigit())
}
