use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use super::Credentials;
use crate::config::GitSettings;
use crate::sandbox::{Jail, Sandbox};

/// Every git call passes refs after `--end-of-options` or `--`, so nothing that
/// reaches argv can be read as an option. Settings below neutralise repository-controlled code paths in git: hooks,
/// fsmonitor and credential helpers from any config file (kugetsu's own helper is
/// added per call, see [`Credentials::hand_to`]).
const HARDENING: &[&str] = &[
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "credential.helper=",
    "-c",
    "protocol.ext.allow=never",
    "-c",
    "advice.detachedHead=false",
    "-c",
    "init.defaultBranch=main",
];

/// Longest stderr excerpt kept in an error; git can be chatty on failures.
const MAX_STDERR: usize = 2000;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot run git: {0}")]
    Spawn(std::io::Error),
    #[error("`git {args}` timed out after {secs} s")]
    Timeout { args: String, secs: u64 },
    #[error("`git {args}` failed: {stderr}")]
    Failed { args: String, stderr: String },
}

impl GitError {
    /// Whether a fetch or push may work if tried again soon: not when the remote
    /// answered that the repository is missing or that our credentials are wrong.
    pub fn may_pass(&self) -> bool {
        match self {
            GitError::Failed { .. } => !self.is_missing_repository() && !self.is_auth_failure(),
            GitError::Timeout { .. } => true,
            GitError::Spawn(_) => false,
        }
    }

    /// Whether the remote refused our credentials.
    pub fn is_auth_failure(&self) -> bool {
        let GitError::Failed { stderr, .. } = self else {
            return false;
        };
        let s = stderr.to_ascii_lowercase();
        ["authentication failed", "could not read username", "403"].iter().any(|needle| s.contains(needle))
    }

    /// Whether the remote said the repository does not exist (or is hidden from us).
    pub fn is_missing_repository(&self) -> bool {
        let GitError::Failed { stderr, .. } = self else {
            return false;
        };
        let s = stderr.to_ascii_lowercase();
        ["not found", "does not appear to be a git repository", "does not exist", "404"]
            .iter()
            .any(|needle| s.contains(needle))
    }
}

#[derive(Clone, Copy)]
enum Program<'a> {
    Git,
    /// A `sh` script of git commands; `label` names it in errors.
    Script {
        label: &'a str,
    },
}

enum Repository {
    Bare,
    WorkTree,
}

/// What kind of repository kugetsu keeps at `dir`, judged by the layout it made:
/// a worktree has `.git`, a bare mirror has `HEAD`; anything else is none yet.
fn repository_at(dir: &Path) -> Option<Repository> {
    if dir.join(".git").exists() {
        Some(Repository::WorkTree)
    } else if dir.join("HEAD").exists() {
        Some(Repository::Bare)
    } else {
        None
    }
}

/// Runs git with a scrubbed environment, a timeout and kill-on-drop.
#[derive(Debug, Clone)]
pub struct Git {
    /// Set for git in a working copy the agent had: it runs in the jail,
    /// so whatever config, hooks or filters the agent planted run confined too.
    jail: Option<(Sandbox, Jail)>,
    timeout: Duration,
    user_name: String,
    user_email: String,
}

impl Git {
    pub fn new(settings: &GitSettings) -> Self {
        Self {
            jail: None,
            timeout: settings.timeout,
            user_name: settings.user_name.clone(),
            user_email: settings.user_email.clone(),
        }
    }

    /// The same git, run inside `jail`. It never gets credentials.
    pub fn confined(&self, sandbox: &Sandbox, jail: Jail) -> Git {
        Git { jail: Some((sandbox.clone(), jail)), ..self.clone() }
    }

    pub async fn run(&self, dir: &Path, args: &[&str]) -> Result<String, GitError> {
        self.exec(dir, args, None, None).await
    }

    /// Runs git with `input` as its standard input.
    pub async fn run_with_input(&self, dir: &Path, args: &[&str], input: std::fs::File) -> Result<String, GitError> {
        self.exec(dir, args, None, Some(input)).await
    }

    /// Runs git; with credentials for `url`, git gets them from kugetsu's credential helper.
    pub async fn run_authenticated(
        &self,
        dir: &Path,
        args: &[&str],
        auth: Option<(&Credentials, &str)>,
    ) -> Result<String, GitError> {
        self.exec(dir, args, auth, None).await
    }

    /// Runs `script` with `sh` in git's environment and jail, `args` as its
    /// positional parameters: several git commands for one sandbox start. Each
    /// git in it gets the hardening as `GIT_CONFIG_*`, which the script cannot
    /// drop: only `-c` outranks it, and the script is kugetsu's.
    pub async fn run_script(&self, dir: &Path, label: &str, script: &str, args: &[&str]) -> Result<String, GitError> {
        let mut argv = vec!["-c", script, "sh"];
        argv.extend_from_slice(args);
        self.exec_program(dir, Program::Script { label }, &argv, None, None).await
    }

    async fn exec(
        &self,
        dir: &Path,
        args: &[&str],
        auth: Option<(&Credentials, &str)>,
        input: Option<std::fs::File>,
    ) -> Result<String, GitError> {
        self.exec_program(dir, Program::Git, args, auth, input).await
    }

    async fn exec_program(
        &self,
        dir: &Path,
        program: Program<'_>,
        args: &[&str],
        auth: Option<(&Credentials, &str)>,
        input: Option<std::fs::File>,
    ) -> Result<String, GitError> {
        let name = match program {
            Program::Git => "git",
            Program::Script { .. } => "sh",
        };
        let mut cmd = match (&self.jail, auth) {
            (Some((sandbox, jail)), None) => sandbox.command(name, jail),
            (Some(_), Some(_)) => {
                return Err(GitError::Spawn(std::io::Error::other("credentials are never used in a sandbox")));
            }
            (None, _) => Command::new(name),
        };
        cmd.current_dir(dir).env_clear();
        let dir_abs = std::path::absolute(dir).map_err(GitError::Spawn)?;
        // In a jail, the working directory may show at another path.
        let seen = match &self.jail {
            Some((sandbox, jail)) if std::path::absolute(&jail.dir).is_ok_and(|d| d == dir_abs) => {
                sandbox.dir_inside(jail).to_owned()
            }
            _ => dir_abs.clone(),
        };
        // Never discover a repository: a mirror whose HEAD the agent broke must
        // fail, not send our token with the config of a repository planted above it.
        cmd.env("GIT_CEILING_DIRECTORIES", seen.parent().unwrap_or(&seen));
        match repository_at(&dir_abs) {
            Some(Repository::Bare) => {
                cmd.env("GIT_DIR", &seen);
            }
            Some(Repository::WorkTree) => {
                cmd.env("GIT_DIR", seen.join(".git")).env("GIT_WORK_TREE", &seen);
            }
            None => {}
        }
        match program {
            Program::Git => {
                cmd.args(HARDENING);
            }
            Program::Script { .. } => {
                let pairs: Vec<(&str, &str)> =
                    HARDENING.iter().filter(|a| **a != "-c").filter_map(|kv| kv.split_once('=')).collect();
                cmd.env("GIT_CONFIG_COUNT", pairs.len().to_string());
                for (i, (key, value)) in pairs.iter().enumerate() {
                    cmd.env(format!("GIT_CONFIG_KEY_{i}"), key).env(format!("GIT_CONFIG_VALUE_{i}"), value);
                }
            }
        }
        cmd.env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &seen)
            .env("LC_ALL", "C")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            // A working copy's config could name a promisor remote whose command
            // runs when an object is missing; kugetsu never wants objects fetched lazily.
            .env("GIT_NO_LAZY_FETCH", "1")
            .env("GIT_AUTHOR_NAME", &self.user_name)
            .env("GIT_AUTHOR_EMAIL", &self.user_email)
            .env("GIT_COMMITTER_NAME", &self.user_name)
            .env("GIT_COMMITTER_EMAIL", &self.user_email)
            .stdin(input.map_or_else(Stdio::null, Stdio::from))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let handoff = match auth {
            Some((creds, url)) => creds.hand_to(&mut cmd, url).map_err(GitError::Spawn)?,
            None => None,
        };
        cmd.args(args);
        let shown = match program {
            Program::Git => args.join(" "),
            Program::Script { label } => format!("({label})"),
        };
        let child = cmd.spawn().map_err(GitError::Spawn)?;
        drop(handoff);
        let output = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| GitError::Timeout { args: shown.clone(), secs: self.timeout.as_secs() })?
            .map_err(GitError::Spawn)?;
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        let mut stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        if stderr.len() > MAX_STDERR {
            let cut = stderr.floor_char_boundary(MAX_STDERR);
            stderr.truncate(cut);
            stderr.push('…');
        }
        if stderr.is_empty() {
            stderr = format!("exit status {}", output.status);
        }
        Err(GitError::Failed { args: shown, stderr })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repository whose own config names a hooks directory and an fsmonitor.
    async fn planted_repository(git: &Git) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        git.run(dir.path(), &["init", "-q"]).await.unwrap();
        for (key, value) in [("core.hooksPath", "planted-hooks"), ("core.fsmonitor", "planted-monitor")] {
            git.run(dir.path(), &["config", key, value]).await.unwrap();
        }
        dir
    }

    #[tokio::test]
    async fn each_git_in_a_script_is_hardened_as_one_run_alone_is() {
        let git = Git::new(&GitSettings::default());
        let repo = planted_repository(&git).await;
        let script = "git config core.hooksPath; git config core.fsmonitor";
        let hardened = git.run_script(repo.path(), "read", script, &[]).await.unwrap();
        assert_eq!(hardened.lines().collect::<Vec<_>>(), ["/dev/null", "false"]);
        let alone = git.run(repo.path(), &["config", "core.hooksPath"]).await.unwrap();
        assert_eq!(alone.trim(), "/dev/null");
        // The positive control: git without kugetsu's environment reads the planted values.
        let plain = git.run_script(repo.path(), "read", &format!("unset GIT_CONFIG_COUNT; {script}"), &[]).await;
        assert_eq!(plain.unwrap().lines().collect::<Vec<_>>(), ["planted-hooks", "planted-monitor"]);
    }

    #[tokio::test]
    async fn a_failing_script_names_itself_in_the_error() {
        let git = Git::new(&GitSettings::default());
        let repo = planted_repository(&git).await;
        let err = git.run_script(repo.path(), "the label", "echo said >&2; exit 3", &[]).await.unwrap_err();
        assert_eq!(err.to_string(), "`git (the label)` failed: said");
    }
}
