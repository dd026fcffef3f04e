//! opencode's shared config directory, made ready before any jail sees it.
//!
//! Every checkout's jail shows opencode's config directory read-only, so that no
//! agent can plant a plugin there for the others. opencode, though, writes into
//! it when it first loads a project (`opencode/.gitignore`, `package.json`, and
//! an install of `@opencode-ai/plugin`), and stops with `EROFS` if it cannot.
//! So once, before the first agent runs, opencode is started in a jail of its
//! own where that directory is writable, with no repository and no prompt.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::jail::Jails;
use super::{OpencodeEnv, RunError};

/// Whether opencode has already written what it needs into `config_dir`.
pub fn is_ready(config_dir: &Path) -> bool {
    let dir = config_dir.join("opencode");
    dir.join(".gitignore").is_file()
        && std::fs::read_to_string(dir.join("node_modules/.package-lock.json"))
            .is_ok_and(|lock| lock.contains("@opencode-ai/plugin"))
}

/// Lets opencode set up `config_dir`, waiting at most `timeout`.
pub async fn prepare(
    jails: &Jails,
    binary: &Path,
    env: &OpencodeEnv,
    config_dir: &Path,
    scratch_root: &Path,
    timeout: Duration,
) -> Result<(), RunError> {
    if is_ready(config_dir) {
        return Ok(());
    }
    tracing::info!(dir = %config_dir.display(), "letting opencode set up its config directory (once)");
    std::fs::create_dir_all(scratch_root)
        .map_err(|e| RunError::infra(format!("cannot create {}: {e}", scratch_root.display())))?;
    let scratch = tempfile::Builder::new()
        .prefix("setup-")
        .tempdir_in(scratch_root)
        .map_err(|e| RunError::infra(format!("cannot make a scratch directory: {e}")))?;
    let cmd = jails.setup(binary, env, scratch.path(), config_dir)?;
    // Held to the end: dropping it stops opencode.
    let directory = scratch.path().to_owned();
    let server = super::launch::launch(cmd, binary, Stdio::null(), timeout, &reqwest::Client::new(), directory)
        .await?
        .ok_or_else(|| RunError::infra("opencode exited while setting up its config directory"))?;
    // Loading a project is what makes opencode set up its config directory.
    server.api.sessions().await?;
    let deadline = Instant::now() + timeout;
    while !is_ready(config_dir) {
        if Instant::now() > deadline {
            return Err(RunError::infra(format!(
                "opencode did not finish setting up {} within {} (it installs @opencode-ai/plugin from the npm \
                 registry, which must be reachable once)",
                config_dir.display(),
                humantime::format_duration(timeout)
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}
