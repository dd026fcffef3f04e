//! CI results: a failed commit status (GitHub and Gitea/Forgejo `status`) or
//! check (GitHub `check_run`, `check_suite`), normalised to the commit it is on.
//! Which issue that commit belongs to is the store's to say: only commits
//! kugetsu pushed count.

use serde::{Deserialize, Serialize};

use super::{NormalizeError, Normalized, is_valid_login};
use crate::config::ForgeKind;
use crate::issue_ref::{InstanceName, RepoRef};

/// A commit whose CI failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChecksFailed {
    pub delivery_id: String,
    pub repo: RepoRef,
    pub sha: String,
    /// The check or status context that failed, as the delivery named it.
    pub check: String,
    /// Who reported it (a CI app or its token's account).
    pub sender: String,
    /// One per commit, check and state, so a delivery sent again is stored
    /// once; one repair per commit is the worker's to keep.
    pub identity: String,
}

#[derive(Debug, Deserialize)]
struct Payload {
    action: Option<String>,
    /// `status`: the commit, its state and context.
    sha: Option<String>,
    state: Option<String>,
    context: Option<String>,
    check_run: Option<Check>,
    check_suite: Option<Check>,
    repository: Option<super::wire::Repository>,
    sender: Option<super::wire::User>,
}

#[derive(Debug, Deserialize)]
struct Check {
    head_sha: String,
    conclusion: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

/// GitHub: `status`, `check_run`, `check_suite`; Gitea and Forgejo: `status`
/// (HookEventStatus, whose payload is `CommitStatusPayload` in modules/structs/hook.go).
pub fn is_checks_event(kind: ForgeKind, event: &str) -> bool {
    match kind {
        ForgeKind::Github => matches!(event, "status" | "check_run" | "check_suite"),
        ForgeKind::Gitea | ForgeKind::Forgejo => event == "status",
    }
}

/// A status is failed in `failure` or `error` (both forges); a check when it
/// completed with `failure` or `timed_out` (GitHub's check conclusions).
pub fn normalize(
    instance: &InstanceName,
    event: &str,
    delivery_id: &str,
    body: &[u8],
) -> Result<Normalized, NormalizeError> {
    let payload: Payload = serde_json::from_slice(body)?;
    let ignored = |why: String| Ok(Normalized::Ignored(why));
    let (sha, check) = match event {
        "status" => {
            if !matches!(payload.state.as_deref(), Some("failure" | "error")) {
                return ignored(format!("a commit status `{}` needs nothing", payload.state.as_deref().unwrap_or("")));
            }
            (payload.sha, payload.context.unwrap_or_default())
        }
        _ => {
            let Some(check) = payload.check_run.or(payload.check_suite) else {
                return ignored("no check in the payload".to_owned());
            };
            let failed = matches!(check.conclusion.as_deref(), Some("failure" | "timed_out"));
            if payload.action.as_deref() != Some("completed") || !failed {
                return ignored("a check that did not fail".to_owned());
            }
            (Some(check.head_sha), check.name.unwrap_or_else(|| "check suite".to_owned()))
        }
    };
    let (Some(sha), Some(repo), Some(sender)) = (sha, payload.repository, payload.sender) else {
        return ignored("no commit, repository or sender in the payload".to_owned());
    };
    if sha.len() < 7 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        return ignored("the commit is not a commit id".to_owned());
    }
    if !is_valid_login(&sender.login) {
        return Err(NormalizeError::Login);
    }
    let repo = RepoRef::new(instance.clone(), &repo.owner.login, &repo.name)?;
    let identity = format!(
        "{}:{}/{}:checks:{}:{event}:{check}",
        repo.instance(),
        repo.owner().to_ascii_lowercase(),
        repo.name().to_ascii_lowercase(),
        sha.to_ascii_lowercase()
    );
    Ok(Normalized::ChecksFailed(Box::new(ChecksFailed {
        delivery_id: delivery_id.to_owned(),
        repo,
        sha: sha.to_ascii_lowercase(),
        check,
        sender: sender.login,
        identity,
    })))
}
