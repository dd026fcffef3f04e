use std::path::{Path, PathBuf};

use super::bundle::Bundle;
use super::{Commit, Credentials, Git, GitError};

/// A bare clone of one remote repository. Every issue's working copy borrows its
/// objects read-only, so they are fetched once per repository, not once per issue.
#[derive(Debug, Clone)]
pub struct Mirror {
    path: PathBuf,
    url: String,
}

/// The commits a working copy's branch is built on, as the mirror knows them.
#[derive(Debug, Default)]
pub struct Tips {
    /// kugetsu's local branch.
    pub local: Option<String>,
    /// It, the remote branch and the default branch, each once.
    pub all: Vec<String>,
}

impl Mirror {
    pub fn new(path: PathBuf, url: String) -> Self {
        Self { path, url }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn exists(&self) -> bool {
        self.path.join("HEAD").is_file()
    }

    /// Creates the mirror if needed, then fetches every branch.
    ///
    /// A first clone is built in a scratch directory and renamed into place, so a
    /// failed clone (a missing repository, say) leaves nothing behind.
    pub async fn sync(&self, git: &Git, creds: Option<&Credentials>) -> Result<(), GitError> {
        if self.exists() {
            self.restore_config()?;
            return self.fetch(git, &self.path, creds).await;
        }
        let parent = self.path.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(parent).map_err(GitError::Spawn)?;
        let scratch = tempfile::Builder::new().prefix(".clone-").tempdir_in(parent).map_err(GitError::Spawn)?;
        let dir = scratch.path();
        git.run(dir, &["init", "--bare", "-q", "."]).await?;
        git.run(dir, &["config", "remote.origin.url", &self.url]).await?;
        git.run(dir, &["config", "remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*"]).await?;
        self.fetch(git, dir, creds).await?;
        git.run_authenticated(dir, &["remote", "set-head", "origin", "--auto"], self.auth(creds)).await?;
        std::fs::rename(scratch.keep(), &self.path).map_err(GitError::Spawn)?;
        Ok(())
    }

    /// The mirror's config as kugetsu wrote it. An agent without a sandbox (or a
    /// checkout made by `git worktree add` before working copies were repositories
    /// of their own) can reach it and add filters, fsmonitor commands, includes or
    /// an ssh command that kugetsu's own git calls would run; rewriting the file
    /// (and dropping per-worktree config) before kugetsu uses git again undoes that.
    pub fn restore_config(&self) -> Result<(), GitError> {
        let config = format!(
            "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = true\n\
             [remote \"origin\"]\n\turl = {}\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n",
            self.url.replace('\\', "\\\\").replace('"', "\\\"")
        );
        std::fs::write(self.path.join("config"), config).map_err(GitError::Spawn)?;
        // A HEAD that is not a symbolic ref makes git refuse the mirror; kugetsu
        // never reads the mirror's own HEAD, so any valid one will do.
        let head = std::fs::read_to_string(self.path.join("HEAD")).unwrap_or_default();
        let valid = head
            .strip_prefix("ref: refs/heads/")
            .map(str::trim)
            .is_some_and(|branch| !branch.is_empty() && !branch.contains(char::is_whitespace));
        if !valid {
            std::fs::write(self.path.join("HEAD"), "ref: refs/heads/main\n").map_err(GitError::Spawn)?;
        }
        for admin in self.admin_dirs() {
            let _ = std::fs::remove_file(admin.join("config.worktree"));
        }
        Ok(())
    }

    /// `worktrees/<id>` directories where git keeps each worktree's state.
    fn admin_dirs(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(self.path.join("worktrees")) else { return Vec::new() };
        entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect()
    }

    fn auth<'a>(&'a self, creds: Option<&'a Credentials>) -> Option<(&'a Credentials, &'a str)> {
        creds.map(|c| (c, self.url.as_str()))
    }

    async fn fetch(&self, git: &Git, dir: &Path, creds: Option<&Credentials>) -> Result<(), GitError> {
        git.run_authenticated(dir, &["fetch", "-q", "--prune", "--no-tags", "origin"], self.auth(creds)).await.map(drop)
    }

    /// The remote's default branch, as recorded when the mirror was created.
    pub async fn default_branch(&self, git: &Git) -> Result<String, GitError> {
        let full = git.run(&self.path, &["symbolic-ref", "-q", "refs/remotes/origin/HEAD"]).await?;
        Ok(full.trim().trim_start_matches("refs/remotes/origin/").to_owned())
    }

    /// The commit `name` (a full ref) points at, if it exists.
    pub async fn resolve(&self, git: &Git, name: &str) -> Result<Option<String>, GitError> {
        let commit = format!("{name}^{{commit}}");
        match git.run(&self.path, &["rev-parse", "-q", "--verify", "--end-of-options", &commit]).await {
            Ok(sha) => Ok(Some(sha.trim().to_owned())),
            Err(GitError::Failed { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The commit a remote branch pointed at when we last fetched, if it exists.
    pub async fn remote_branch_sha(&self, git: &Git, branch: &str) -> Result<Option<String>, GitError> {
        self.resolve(git, &format!("refs/remotes/origin/{branch}")).await
    }

    /// Pushes `branch`, refusing if the remote branch is no longer at `expected`
    /// (`None`: it must not exist yet), so kugetsu never overwrites someone else's push.
    pub async fn push_branch(
        &self,
        git: &Git,
        branch: &str,
        expected: Option<&str>,
        creds: Option<&Credentials>,
    ) -> Result<(), GitError> {
        let full = format!("refs/heads/{branch}");
        let lease = format!("--force-with-lease={full}:{}", expected.unwrap_or(""));
        let refspec = format!("{full}:{full}");
        git.run_authenticated(
            &self.path,
            &["push", "-q", "--no-verify", &lease, "--end-of-options", "origin", &refspec],
            self.auth(creds),
        )
        .await?;
        // Keep the remote-tracking ref in step, as a fetch would.
        let tracking = format!("refs/remotes/origin/{branch}");
        git.run(&self.path, &["update-ref", "--end-of-options", &tracking, &full]).await.map(drop)
    }

    pub async fn delete_local_branch(&self, git: &Git, branch: &str) -> Result<(), GitError> {
        let full = format!("refs/heads/{branch}");
        if git.run(&self.path, &["rev-parse", "-q", "--verify", "--end-of-options", &full]).await.is_err() {
            return Ok(());
        }
        git.run(&self.path, &["update-ref", "-d", "--end-of-options", &full]).await.map(drop)
    }

    /// The commits the mirror holds for `branch`: its local branch, the remote
    /// branch and the remote's default branch, those that exist.
    pub async fn tips(&self, git: &Git, branch: &str) -> Result<Tips, GitError> {
        let (local, remote) = (format!("refs/heads/{branch}"), format!("refs/remotes/origin/{branch}"));
        let args =
            ["for-each-ref", "--format=%(refname) %(objectname)", "--", &local, &remote, "refs/remotes/origin/HEAD"];
        let listed = git.run(&self.path, &args).await?;
        let mut tips = Tips::default();
        // Patterns also match refs below them, which a branch name cannot have.
        for (name, sha) in listed.lines().filter_map(|l| l.split_once(' ')) {
            if name == local {
                tips.local = Some(sha.to_owned());
            }
            if [local.as_str(), remote.as_str(), "refs/remotes/origin/HEAD"].contains(&name)
                && !tips.all.iter().any(|t| t == sha)
            {
                tips.all.push(sha.to_owned());
            }
        }
        Ok(tips)
    }

    /// Whether the mirror has `sha` as a commit.
    pub async fn has_commit(&self, git: &Git, sha: &str) -> bool {
        let object = format!("{sha}^{{commit}}");
        git.run(&self.path, &["cat-file", "-e", "--end-of-options", &object]).await.is_ok()
    }

    /// Points the local `branch` at `sha`, a commit the mirror has.
    pub async fn set_branch(&self, git: &Git, branch: &str, sha: &str) -> Result<(), GitError> {
        let full = format!("refs/heads/{branch}");
        git.run(&self.path, &["update-ref", "--end-of-options", &full, sha]).await.map(drop)
    }

    /// Takes the commits in a bundle written from an issue's working copy and
    /// points the local `branch` at its `HEAD`. Reading a bundle runs nothing from
    /// the repository it came from. Its pack goes through `index-pack --strict`,
    /// which checks every object as it arrives: `git fetch` from a bundle does
    /// not, whatever `fetch.fsckObjects` says (measured with git 2.47).
    pub async fn import_bundle(&self, git: &Git, bundle: Bundle, branch: &str) -> Result<(), GitError> {
        let Bundle { head, pack } = bundle;
        let head = head.as_str();
        git.run_with_input(&self.path, &["index-pack", "--strict", "--fix-thin", "--stdin"], pack).await?;
        // Everything `head` reaches must be here now, or the branch would name a broken history.
        git.run(&self.path, &["rev-list", "--objects", "--quiet", "--not", "--all", "--not", "--end-of-options", head])
            .await?;
        self.set_branch(git, branch, head).await
    }

    /// Whether `ancestor` is in the history of `commit`.
    pub async fn is_ancestor(&self, git: &Git, ancestor: &str, commit: &str) -> bool {
        git.run(&self.path, &["merge-base", "--is-ancestor", "--end-of-options", ancestor, commit]).await.is_ok()
    }

    /// Commits in `since..until`, oldest first.
    pub async fn commits_between(&self, git: &Git, since: &str, until: &str) -> Result<Vec<Commit>, GitError> {
        let range = format!("{since}..{until}");
        let out =
            git.run(&self.path, &["log", "--reverse", "--format=%H%x09%s", "--end-of-options", &range, "--"]).await?;
        Ok(out
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(sha, subject)| Commit { sha: sha.to_owned(), subject: subject.to_owned() })
            .collect())
    }

    pub async fn files_changed_between(&self, git: &Git, since: &str, until: &str) -> Result<Vec<String>, GitError> {
        let out = git
            .run(
                &self.path,
                &["diff", "--no-ext-diff", "--no-textconv", "--name-only", "--end-of-options", since, until, "--"],
            )
            .await?;
        Ok(out.lines().map(str::to_owned).collect())
    }
}
