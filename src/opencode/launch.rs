//! Starting `opencode serve` and learning where it listens.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rand::distr::{Alphanumeric, SampleString};
use secrecy::SecretString;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

use super::api::Api;
use super::process::{ProcessGroup, die_with_parent};
use super::{RunError, spawn_error};

/// A started `opencode serve`: its process and the API it listens on.
pub struct Listening {
    pub child: Child,
    pub group: ProcessGroup,
    pub api: Api,
}

/// Starts `opencode serve` from `cmd` (an opencode command made by [`super::Jails`])
/// with a fresh password, and waits at most `timeout` until it says where it
/// listens. `None` when it exits first.
pub async fn launch(
    mut cmd: tokio::process::Command,
    binary: &Path,
    stderr: Stdio,
    timeout: Duration,
    http: &reqwest::Client,
    directory: PathBuf,
) -> Result<Option<Listening>, RunError> {
    let password = Alphanumeric.sample_string(&mut rand::rng(), 40);
    cmd.args(["serve", "--hostname", "127.0.0.1", "--port", "0"])
        .env("OPENCODE_SERVER_PASSWORD", &password)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .process_group(0)
        .kill_on_drop(true);
    die_with_parent(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| spawn_error(binary, &e))?;
    let group = ProcessGroup::of(&child);
    let stdout = child.stdout.take().ok_or_else(|| RunError::infra("opencode serve has no stdout"))?;
    let base = tokio::time::timeout(timeout, listening_url(stdout))
        .await
        .map_err(|_| RunError::infra("opencode serve did not start listening in time"))?;
    Ok(base.map(|base| Listening {
        child,
        group,
        api: Api::new(http.clone(), base, SecretString::from(password), directory),
    }))
}

/// Reads `opencode serve`'s stdout until it says where it listens, then keeps
/// draining it so the pipe never fills.
async fn listening_url(stdout: tokio::process::ChildStdout) -> Option<String> {
    let mut lines = BufReader::new(stdout).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(at) = line.find("http://") {
            let url = line[at..].trim().trim_end_matches('/').to_owned();
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return Some(url);
        }
    }
    None
}
