//! Ready checkouts, so that a new issue does not pay for a cold start.
//!
//! A new issue's first prompt would otherwise wait for its checkout, for a
//! sandboxed `opencode serve` to start (about 1.5 s) and for opencode's
//! first-prompt bootstrap in that directory (about 1.5 s). `kugetsu serve`
//! keeps `pool.size` checkouts per repository ready instead, each on the default
//! branch, with its opencode started and warmed up ([`Driver::warm`]). A new
//! issue takes one: a rename and a branch switch. Its opencode notices neither,
//! since in the sandbox every checkout of a repository is at the same place.
//!
//! [`Driver::warm`]: crate::opencode::Driver::warm

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use rand::distr::{Alphanumeric, SampleString};

use super::{Engine, EngineError, Layout};
use crate::git::WorkingCopy;
use crate::issue_ref::{IssueRef, RepoRef};

/// What one ready checkout's opencode is taken to hold before any was measured.
const SERVER_MIB_GUESS: u64 = 512;

#[derive(Default)]
pub(super) struct Pool {
    enabled: bool,
    /// Set at shutdown, so no fill starts another server.
    closed: AtomicBool,
    ready: Mutex<HashMap<RepoRef, Vec<Ready>>>,
    /// Repositories being filled: one fill at a time per repository.
    filling: Mutex<HashSet<RepoRef>>,
}

struct Ready {
    dir: PathBuf,
    /// The base session the checkout's opencode home was seeded from.
    base: Option<String>,
    /// Its HEAD: the default branch when it was made.
    head: String,
}

impl Pool {
    fn ready(&self) -> std::sync::MutexGuard<'_, HashMap<RepoRef, Vec<Ready>>> {
        self.ready.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn count(&self, repo: &RepoRef) -> usize {
        self.ready().get(repo).map_or(0, Vec::len)
    }

    fn dirs(&self) -> Vec<PathBuf> {
        self.ready().values().flatten().map(|r| r.dir.clone()).collect()
    }

    /// One ready checkout seeded from `base`, and the checkouts seeded from
    /// another base session, which no issue can use any more.
    fn take(&self, repo: &RepoRef, base: Option<&str>) -> (Option<Ready>, Vec<PathBuf>) {
        let mut ready = self.ready();
        let Some(list) = ready.get_mut(repo) else { return (None, Vec::new()) };
        let (usable, stale): (Vec<Ready>, Vec<Ready>) = list.drain(..).partition(|r| r.base.as_deref() == base);
        *list = usable;
        (list.pop(), stale.into_iter().map(|r| r.dir).collect())
    }

    fn start_filling(&self, repo: &RepoRef) -> Option<Filling<'_>> {
        let mut filling = self.filling.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        filling.insert(repo.clone()).then(|| Filling { pool: self, repo: repo.clone() })
    }
}

/// A fill in progress; the repository is free to fill again when it is dropped.
struct Filling<'a> {
    pool: &'a Pool,
    repo: RepoRef,
}

impl Drop for Filling<'_> {
    fn drop(&mut self) {
        self.pool.filling.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&self.repo);
    }
}

impl Engine {
    /// Keeps ready checkouts from now on. `kugetsu serve` does; a CLI command
    /// exits too soon to use one.
    pub fn with_pool(mut self) -> Self {
        let wanted = self.config.pool.size > 0;
        self.pool.enabled = wanted && self.driver.can_pool();
        if wanted && !self.pool.enabled {
            tracing::info!("no ready checkouts: they need the server driver and the sandbox; new issues start cold");
        }
        self
    }

    /// How many ready checkouts the repository has.
    pub fn ready_checkouts(&self, repo: &RepoRef) -> usize {
        self.pool.count(repo)
    }

    /// Makes ready checkouts: for the configured repositories first, then for
    /// the most recently active, while the pool's memory allows.
    pub async fn start_pool(&self) {
        if !self.pool.enabled {
            return;
        }
        let mut repos = self.config.pool.repos.clone();
        let mut records = self.store.issue_sessions().await.unwrap_or_default();
        records.sort_by_key(|r| std::cmp::Reverse(r.last_run_at.unwrap_or(r.updated_at)));
        for record in records {
            if !repos.contains(record.issue.repo()) {
                repos.push(record.issue.repo().clone());
            }
        }
        for repo in repos {
            if !self.fill_pool(&repo).await {
                break;
            }
        }
    }

    /// Makes ready checkouts of `repo` until it has `pool.size`. `false` when
    /// no more can be made for any repository: the pool's memory is full, or the
    /// pool is off or closed.
    pub async fn fill_pool(&self, repo: &RepoRef) -> bool {
        if !self.pool.enabled {
            return false;
        }
        if self.instance(repo).is_err() {
            return true;
        }
        let Some(_filling) = self.pool.start_filling(repo) else { return true };
        while self.pool.count(repo) < self.config.pool.size {
            if self.pool.closed.load(Ordering::SeqCst) {
                return false;
            }
            if !self.pool_has_room().await {
                tracing::info!(%repo, limit_mib = self.config.pool.memory_mib, "the pool's memory is full");
                return false;
            }
            match self.make_ready(repo).await {
                Ok(ready) => {
                    tracing::info!(target: "kugetsu::pool", %repo, dir = %ready.dir.display(), "a checkout is ready");
                    self.pool.ready().entry(repo.clone()).or_default().push(ready);
                }
                Err(e) => {
                    tracing::warn!(%repo, error = %e, "could not make a ready checkout");
                    return true;
                }
            }
        }
        true
    }

    pub(super) fn close_pool(&self) {
        self.pool.closed.store(true, Ordering::SeqCst);
    }

    /// Whether one more ready checkout fits in `pool.memory_mib`, taking it to
    /// hold as much as the largest one measured.
    async fn pool_has_room(&self) -> bool {
        let (mut held, mut largest) = (0, None);
        for dir in self.pool.dirs() {
            let mib = self.driver.resident_mib(&dir).await.unwrap_or(0);
            held += mib;
            largest = largest.max(Some(mib));
        }
        held + largest.unwrap_or(SERVER_MIB_GUESS) <= self.config.pool.memory_mib
    }

    async fn make_ready(&self, repo: &RepoRef) -> Result<Ready, EngineError> {
        let instance = self.instance(repo)?;
        let mirror = self.mirror(repo, instance);
        let id = Alphanumeric.sample_string(&mut rand::rng(), 10).to_lowercase();
        let dir = self.layout.ready_checkout(repo, &id);
        let head = {
            let _lock = self.lock_mirror(repo).await?;
            // An existing mirror is fresh enough: taking the checkout fetches.
            if !mirror.exists() {
                let creds = self.credentials(instance).await?;
                self.sync_mirror(repo, &mirror, creds.as_ref()).await?;
            }
            let default = mirror.default_branch(&self.git).await?;
            let sha = mirror
                .resolve(&self.git, &format!("refs/remotes/origin/{default}"))
                .await?
                .ok_or_else(|| EngineError::Infra(format!("{repo} has no branch `{default}`")))?;
            let copy = WorkingCopy::create(&self.git, &mirror, dir.clone(), None, &sha, Some((&default, &sha))).await?;
            self.hide_project_config(repo, &copy, &self.git).await?;
            sha
        };
        let base = self.store.base_session(repo).await?.map(|b| b.session_id);
        if let Err(e) = self.driver.warm(&dir).await {
            self.discard_checkout(&dir).await;
            return Err(e.into());
        }
        // Seconds after the checkout was written, so no file is racily clean any
        // more. Its opencode has run there: git there runs in a jail.
        let copy = WorkingCopy::at(dir.clone());
        if let Err(e) = copy.refresh_index(&self.working_copy_git(&copy, None)).await {
            tracing::warn!(error = %e, "could not refresh a ready checkout's index");
        }
        Ok(Ready { dir, base, head })
    }

    /// Hands a ready checkout of the issue's repository to the issue: renamed to
    /// the issue's place, on `branch` at `start`. `None` when there is none, or
    /// taking it failed; the caller then makes a checkout as before.
    /// Called with the mirror locked.
    pub(super) async fn take_ready(
        &self,
        issue: &IssueRef,
        branch: &str,
        start: &str,
        default: Option<(&str, &str)>,
    ) -> Option<WorkingCopy> {
        let path = self.layout.worktree(issue);
        // The issue's opencode files (its sessions) outlive a lost checkout; a
        // ready checkout's files would have to replace them.
        if !self.pool.enabled || self.layout.opencode_home(&path).is_none_or(|home| home.exists()) {
            return None;
        }
        let base = self.store.base_session(issue.repo()).await.ok()?.map(|b| b.session_id);
        let (ready, stale) = self.pool.take(issue.repo(), base.as_deref());
        for dir in stale {
            self.discard_checkout(&dir).await;
        }
        let ready = ready?;
        match self.adopt(issue.repo(), &ready, &path, branch, start, default).await {
            Ok(copy) => Some(copy),
            Err(e) => {
                tracing::warn!(error = %e, "could not take a ready checkout; making a new one");
                self.discard_checkout(&ready.dir).await;
                self.discard_checkout(&path).await;
                None
            }
        }
    }

    async fn adopt(
        &self,
        repo: &RepoRef,
        ready: &Ready,
        path: &Path,
        branch: &str,
        start: &str,
        default: Option<(&str, &str)>,
    ) -> Result<WorkingCopy, EngineError> {
        let io = |what: &str, e: std::io::Error| EngineError::Infra(format!("cannot {what} {}: {e}", path.display()));
        // Made the issue's before it takes the issue's place, as a new working
        // copy is, so a crash never leaves a half-made one there. Its opencode
        // has run in it: from now on, git there runs in a jail.
        let copy = WorkingCopy::at(ready.dir.clone());
        let git = self.working_copy_git(&copy, None);
        if copy.switch_to(&git, &ready.head, branch, start, default).await? {
            self.hide_project_config(repo, &copy, &git).await?;
        }
        // Not a working copy (the caller checked), so at most a half-made leftover.
        if path.exists() {
            std::fs::remove_dir_all(path).map_err(|e| io("clear", e))?;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io("make the parent of", e))?;
        }
        std::fs::rename(&ready.dir, path).map_err(|e| io("move a ready checkout to", e))?;
        self.driver.moved(&ready.dir, path).await?;
        Ok(WorkingCopy::at(path.to_owned()))
    }

    /// Stops a checkout's opencode and removes the checkout and its opencode
    /// files. For ready checkouts only, which no record names and no run uses;
    /// it takes no lock, so it may run with the mirror locked.
    async fn discard_checkout(&self, dir: &Path) {
        if let Err(e) = self.remove_opencode_home(dir).await {
            tracing::warn!(error = %e, "could not remove a ready checkout's opencode files");
        }
        if let Err(e) = std::fs::remove_dir_all(dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %dir.display(), error = %e, "could not remove a ready checkout");
        }
    }

    /// Removes the ready checkouts an earlier process left (their opencode ended
    /// with it). Before any run or fill, so nothing live is taken for a leftover.
    pub async fn remove_leftover_ready_checkouts(&self) {
        for (_, dir) in self.worktree_dirs().into_iter().filter(|(_, dir)| Layout::is_ready_checkout(dir)) {
            self.discard_checkout(&dir).await;
        }
        let homes = super::maintenance::checkout_dirs(&self.layout.opencode_homes_root());
        // A home whose checkout is gone (a crash between the two renames).
        for (_, home) in homes.into_iter().filter(|(_, home)| Layout::is_ready_checkout(home)) {
            if let Err(e) = std::fs::remove_dir_all(&home) {
                tracing::warn!(dir = %home.display(), error = %e, "could not remove a ready checkout's opencode files");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkout_seeded_from_another_base_session_is_never_handed_out() {
        let pool = Pool::default();
        let repo: RepoRef = "g/o/r".parse().unwrap();
        let ready =
            |dir: &str, base: Option<&str>| Ready { dir: dir.into(), base: base.map(str::to_owned), head: "c0".into() };
        pool.ready().insert(repo.clone(), vec![ready("/a", None), ready("/b", Some("ses_1")), ready("/c", None)]);
        let (taken, stale) = pool.take(&repo, Some("ses_1"));
        assert_eq!(taken.map(|r| r.dir), Some(PathBuf::from("/b")));
        assert_eq!(stale, vec![PathBuf::from("/a"), PathBuf::from("/c")], "made before the base changed");
        assert_eq!(pool.count(&repo), 0);
        assert!(pool.take(&repo, None).0.is_none(), "nothing is left to take");
    }

    #[test]
    fn a_repository_is_filled_by_one_task_at_a_time() {
        let pool = Pool::default();
        let repo: RepoRef = "g/o/r".parse().unwrap();
        let first = pool.start_filling(&repo);
        assert!(first.is_some());
        assert!(pool.start_filling(&repo).is_none(), "a second fill waits its turn");
        drop(first);
        assert!(pool.start_filling(&repo).is_some(), "the repository is free again");
    }
}
