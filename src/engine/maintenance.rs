//! Listing, destroying and pruning what the engine keeps.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{Engine, EngineError, Layout};
use crate::git::WorkingCopy;
use crate::issue_ref::{IssueRef, RepoRef};
use crate::opencode::SESSION_TITLE_PREFIX;
use crate::store::{History, IssueSession, now_millis};

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    /// A record whose opencode session no longer exists.
    MissingSession { issue: IssueRef, session_id: String },
    /// A record whose worktree no longer exists.
    MissingWorktree { issue: IssueRef, worktree: PathBuf },
    /// A worktree directory that no record points to.
    OrphanWorktree { path: PathBuf },
    /// A session kugetsu created that no record points to.
    OrphanSession { session_id: String, title: String },
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    pub findings: Vec<Finding>,
    /// Whether the findings were removed (`--force`) or only reported.
    pub removed: bool,
    /// Clean-up steps that failed; the rest still went ahead.
    pub warnings: Vec<String>,
    /// Job history older than `bot.retention`.
    pub history: History,
    /// Issues closed longer than `bot.closed_issue_grace` ago whose working copies go.
    pub closed: Vec<IssueRef>,
}

impl Engine {
    pub async fn list(&self) -> Result<Vec<IssueSession>, EngineError> {
        Ok(self.store.issue_sessions().await?)
    }

    /// The `limit` issue records changed last, newest first.
    pub async fn recent_issues(&self, limit: u32) -> Result<Vec<IssueSession>, EngineError> {
        Ok(self.store.recent_issue_sessions(limit).await?)
    }

    /// The issue's record, if kugetsu has worked on it.
    pub async fn issue_record(&self, issue: &IssueRef) -> Result<Option<IssueSession>, EngineError> {
        Ok(self.store.issue_session(issue).await?)
    }

    /// The repository's default branch, as its mirror last fetched it.
    pub async fn default_branch(&self, repo: &RepoRef) -> Result<String, EngineError> {
        let instance = self.instance(repo)?;
        Ok(self.mirror(repo, instance).default_branch(&self.git).await?)
    }

    /// Removes finished jobs, and the deliveries and event identities kept
    /// against replays, from before `before_ms`.
    pub async fn remove_old_history(&self, before_ms: i64) -> Result<crate::store::History, EngineError> {
        Ok(self.store.old_history(before_ms, true).await?)
    }

    /// Marks a run that was cancelled midway as stopped and aborts its session.
    pub async fn stop(&self, issue: &IssueRef, why: &str) -> Result<(), EngineError> {
        let Some(mut record) = self.store.issue_session(issue).await? else { return Ok(()) };
        self.abort_agent(issue).await;
        record.status = crate::store::SessionStatus::Failed;
        record.last_error = Some(why.to_owned());
        record.updated_at = crate::store::now_millis();
        self.store.save_issue_session(&record).await?;
        Ok(())
    }

    /// Aborts the agent's turn on this replica, if one runs, and records nothing:
    /// for a run whose issue another replica has taken over.
    pub async fn abort_agent(&self, issue: &IssueRef) {
        if let Ok(Some(record)) = self.store.issue_session(issue).await
            && let Some(id) = &record.session_id
        {
            // This replica's checkout: the record's is whichever replica made it.
            self.driver.abort(id, &self.layout.worktree(issue)).await;
        }
    }

    /// The opencode servers running now, for `/metrics`.
    pub fn opencode_servers(&self) -> crate::opencode::ServerStats {
        self.driver.servers()
    }

    /// Free space in the state directory, in MiB.
    pub fn free_disk_mib(&self) -> Option<u64> {
        free_disk_mib(&self.config.state_dir).ok()
    }

    /// Removes the issue's worktree, local branch, session and record. The pushed
    /// branch stays on the remote. Returns warnings for steps that could not be done.
    pub async fn destroy(&self, issue: &IssueRef) -> Result<Vec<String>, EngineError> {
        let record = self
            .store
            .issue_session(issue)
            .await?
            .ok_or_else(|| EngineError::BadInput(format!("kugetsu has no record of {issue}")))?;
        let _issue_lock = self.lock_issue(issue).await?;
        let warnings = self.remove_issue(&record).await;
        Ok(warnings)
    }

    async fn remove_issue(&self, record: &IssueSession) -> Vec<String> {
        let mut warnings = Vec::new();
        let repo = record.issue.repo();
        if let (Some(id), Some(dir)) = (&record.session_id, self.worktree_dir_for_lookup(record))
            && let Err(e) = self.driver.delete_session(id, &dir).await
        {
            warnings.push(format!("session {id} was not deleted: {e}"));
        }
        if let Err(e) = self.remove_checkout(repo, &record.worktree, Some(&record.branch)).await {
            warnings.push(format!("worktree {} was not removed: {e}", record.worktree.display()));
        }
        if let Err(e) = self.remove_opencode_home(&record.worktree).await {
            warnings.push(e);
        }
        if let Err(e) = self.store.delete_issue_session(&record.issue).await {
            warnings.push(format!("record was not deleted: {e:#}"));
        }
        warnings
    }

    pub(super) async fn remove_checkout(
        &self,
        repo: &RepoRef,
        path: &Path,
        branch: Option<&str>,
    ) -> Result<(), EngineError> {
        let mirror = match self.instance(repo) {
            Ok(instance) => self.mirror(repo, instance),
            // An instance removed from the config: there is no mirror to tidy.
            Err(_) => crate::git::Mirror::new(self.layout.mirror(repo), String::new()),
        };
        let _lock = self.lock_mirror(repo).await?;
        WorkingCopy::at(path.to_owned()).remove(&self.git, &mirror).await?;
        if let (Some(branch), true) = (branch, mirror.exists()) {
            mirror.delete_local_branch(&self.git, branch).await?;
        }
        Ok(())
    }

    /// Stops the checkout's opencode and removes its files (sessions, caches).
    pub(super) async fn remove_opencode_home(&self, checkout: &Path) -> Result<(), String> {
        self.driver.release(checkout).await;
        let Some(home) = self.layout.opencode_home(checkout) else { return Ok(()) };
        match std::fs::remove_dir_all(&home) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("opencode's files in {} were not removed: {e}", home.display())),
        }
    }

    pub async fn destroy_base(&self, repo: &RepoRef) -> Result<Vec<String>, EngineError> {
        let base = self
            .store
            .base_session(repo)
            .await?
            .ok_or_else(|| EngineError::BadInput(format!("{repo} has no base session")))?;
        let mut warnings = Vec::new();
        if base.worktree.join(".git").exists()
            && let Err(e) = self.driver.delete_session(&base.session_id, &base.worktree).await
        {
            warnings.push(format!("session {} was not deleted: {e}", base.session_id));
        }
        if let Err(e) = self.remove_checkout(repo, &base.worktree, None).await {
            warnings.push(format!("worktree {} was not removed: {e}", base.worktree.display()));
        }
        self.store.delete_base_session(repo).await?;
        Ok(warnings)
    }

    /// The issues closed more than `bot.closed_issue_grace` ago that have not run
    /// since; with `remove`, their working copies are removed. Their sessions,
    /// opencode files, branches and records stay: a run after a reopen makes the
    /// working copy again from the issue's branch and goes on in the same session.
    pub async fn closed_worktrees(&self, remove: bool) -> Result<Vec<IssueRef>, EngineError> {
        let grace = i64::try_from(self.config.bot.closed_issue_grace.as_millis()).unwrap_or(i64::MAX);
        let mut closed = Vec::new();
        for issue in self.store.closed_issues(now_millis().saturating_sub(grace)).await? {
            // With replicas the mark stays, so most have no copy here to remove.
            if self.keeps_checkpoints() && !self.layout.worktree(&issue).exists() {
                continue;
            }
            if remove {
                // A run holds it: it is no longer idle since its close; look again later.
                let Ok(_lock) = self.lock_issue(&issue).await else { continue };
                let path = self.layout.worktree(&issue);
                self.driver.release(&path).await;
                self.remove_checkout(issue.repo(), &path, None).await?;
                // Other replicas may hold copies too: with them, the mark stays for theirs.
                if !self.keeps_checkpoints() {
                    self.store.forget_closed(&issue).await?;
                }
            }
            closed.push(issue);
        }
        Ok(closed)
    }

    /// Finds records whose session or worktree is gone, and worktrees or sessions
    /// that no record points to; with `force`, removes them.
    pub async fn prune(&self, force: bool) -> Result<PruneReport, EngineError> {
        let mut report = PruneReport { removed: force, ..PruneReport::default() };
        let retention = i64::try_from(self.config.bot.retention.as_millis()).unwrap_or(i64::MAX);
        report.history = self.store.old_history(now_millis().saturating_sub(retention), force).await?;
        report.closed = self.closed_worktrees(force).await?;
        let records = self.store.issue_sessions().await?;
        let bases = self.store.base_sessions().await?;
        // Records are shared: one replica's disk says nothing of the others' copies.
        let judged: &[crate::store::IssueSession] = match self.keeps_checkpoints() {
            true => {
                report.warnings.push("the database is shared with other replicas: records are left alone".into());
                &[]
            }
            false => &records,
        };
        for record in judged {
            let findings = self.check_record(record).await;
            if findings.is_empty() {
                continue;
            }
            if force {
                report.warnings.extend(self.remove_issue(record).await);
            }
            report.findings.extend(findings);
        }
        // A record names the copy of the replica that made it; this replica's is where its layout puts it.
        let mut known_paths: HashSet<PathBuf> =
            records.iter().flat_map(|r| [r.worktree.clone(), self.layout.worktree(&r.issue)]).collect();
        known_paths.extend(bases.iter().map(|b| b.worktree.clone()));
        for (repo, path) in self.worktree_dirs() {
            // Ready checkouts belong to `kugetsu serve`'s pool, which removes its own leftovers.
            if known_paths.contains(&path) || Layout::is_ready_checkout(&path) {
                continue;
            }
            if force && let Err(e) = self.remove_checkout(&repo, &path, None).await {
                report.warnings.push(format!("{}: {e}", path.display()));
            }
            report.findings.push(Finding::OrphanWorktree { path });
        }
        let known_ids: HashSet<&str> = records
            .iter()
            .filter_map(|r| r.session_id.as_deref())
            .chain(bases.iter().map(|b| b.session_id.as_str()))
            .collect();
        let mut seen_repos = HashSet::new();
        for record in records.iter().filter(|r| seen_repos.insert(r.issue.repo().clone())) {
            let Some(dir) = self.worktree_dir_for_lookup(record) else {
                continue;
            };
            let sessions = match self.driver.list_sessions(&dir).await {
                Ok(s) => s,
                Err(e) => {
                    report.warnings.push(format!("cannot list sessions of {}: {e}", record.issue.repo()));
                    continue;
                }
            };
            for session in sessions {
                if !session.title.starts_with(SESSION_TITLE_PREFIX) || known_ids.contains(session.id.as_str()) {
                    continue;
                }
                if force && let Err(e) = self.driver.delete_session(&session.id, &dir).await {
                    report.warnings.push(format!("session {}: {e}", session.id));
                }
                report.findings.push(Finding::OrphanSession { session_id: session.id, title: session.title });
            }
        }
        Ok(report)
    }

    async fn check_record(&self, record: &IssueSession) -> Vec<Finding> {
        let mut findings = Vec::new();
        if !record.worktree.join(".git").exists() {
            findings.push(Finding::MissingWorktree { issue: record.issue.clone(), worktree: record.worktree.clone() });
        }
        if let (Some(id), Some(dir)) = (&record.session_id, self.worktree_dir_for_lookup(record))
            && let Ok(false) = self.driver.session_exists(id, &dir).await
        {
            findings.push(Finding::MissingSession { issue: record.issue.clone(), session_id: id.clone() });
        }
        findings
    }

    /// Every `worktrees/<instance>/<owner>/<repo>/<entry>` directory on disk.
    pub(super) fn worktree_dirs(&self) -> Vec<(RepoRef, PathBuf)> {
        checkout_dirs(&self.layout.worktrees_root())
    }
}

/// Every `<root>/<instance>/<owner>/<repo>/<entry>` directory on disk: the
/// checkouts under the worktrees root, or their opencode homes.
pub(super) fn checkout_dirs(root: &Path) -> Vec<(RepoRef, PathBuf)> {
    let mut found = Vec::new();
    for instance in subdirs(root) {
        for owner in subdirs(&instance) {
            for repo_dir in subdirs(&owner) {
                let repo = format!("{}/{}/{}", file_name(&instance), file_name(&owner), file_name(&repo_dir));
                let Ok(repo) = repo.parse::<RepoRef>() else {
                    continue;
                };
                found.extend(subdirs(&repo_dir).into_iter().map(|p| (repo.clone(), p)));
            }
        }
    }
    found
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
    dirs.sort();
    dirs
}

fn file_name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Free space, for an unprivileged user, on the file system that holds `dir`, in MiB.
pub fn free_disk_mib(dir: &std::path::Path) -> nix::Result<u64> {
    let stat = nix::sys::statvfs::statvfs(dir)?;
    Ok(stat.blocks_available().saturating_mul(stat.fragment_size()) / (1024 * 1024))
}
