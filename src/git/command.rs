use std::fmt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use tokio::process::Command;

use crate::config::GitSettings;

/// Every git call passes refs after `--end-of-options` or `--`, so nothing that
/// reaches argv can be read as an option. Settings below neutralise repository-controlled code paths in git: hooks,
/// fsmonitor and credential helpers from any config file.
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

/// HTTP credentials for one push or fetch. They reach git only through its
/// environment (`GIT_CONFIG_*`), never argv, a URL or a config file.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: SecretString,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).finish_non_exhaustive()
    }
}

impl Credentials {
    fn header_env(&self, url: &str) -> Option<[(String, String); 3]> {
        let scheme_end = url.find("://")?;
        let host_end = url[scheme_end + 3..].find('/').map_or(url.len(), |i| scheme_end + 3 + i);
        let origin = &url[..host_end];
        if !origin.starts_with("http") {
            return None;
        }
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            self.username,
            self.password.expose_secret()
        ));
        Some([
            ("GIT_CONFIG_COUNT".into(), "1".into()),
            ("GIT_CONFIG_KEY_0".into(), format!("http.{origin}/.extraHeader")),
            ("GIT_CONFIG_VALUE_0".into(), format!("Authorization: Basic {basic}")),
        ])
    }
}

/// Runs git with a scrubbed environment, a timeout and kill-on-drop.
#[derive(Debug, Clone)]
pub struct Git {
    timeout: Duration,
    user_name: String,
    user_email: String,
}

impl Git {
    pub fn new(settings: &GitSettings) -> Self {
        Self {
            timeout: settings.timeout,
            user_name: settings.user_name.clone(),
            user_email: settings.user_email.clone(),
        }
    }

    pub async fn run(&self, dir: &Path, args: &[&str]) -> Result<String, GitError> {
        self.run_authenticated(dir, args, None).await
    }

    /// Runs git; with credentials for `url`, git sends them as an HTTP header.
    pub async fn run_authenticated(
        &self,
        dir: &Path,
        args: &[&str],
        auth: Option<(&Credentials, &str)>,
    ) -> Result<String, GitError> {
        let mut cmd = Command::new("git");
        cmd.current_dir(dir)
            .args(HARDENING)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir)
            .env("LC_ALL", "C")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_AUTHOR_NAME", &self.user_name)
            .env("GIT_AUTHOR_EMAIL", &self.user_email)
            .env("GIT_COMMITTER_NAME", &self.user_name)
            .env("GIT_COMMITTER_EMAIL", &self.user_email)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(vars) = auth.and_then(|(creds, url)| creds.header_env(url)) {
            cmd.envs(vars);
        }
        let shown = args.join(" ");
        let child = cmd.spawn().map_err(GitError::Spawn)?;
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

    #[test]
    fn credentials_become_a_header_for_the_origin_only() {
        let creds = Credentials { username: "bot".into(), password: SecretString::from("s3cret") };
        let env = creds.header_env("https://git.example.com/acme/widget.git").unwrap();
        assert_eq!(env[1].1, "http.https://git.example.com/.extraHeader");
        assert!(env[2].1.starts_with("Authorization: Basic "));
        assert!(!format!("{creds:?}").contains("s3cret"));
        assert!(creds.header_env("/srv/git/acme/widget.git").is_none());
    }
}
