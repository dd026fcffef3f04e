//! Where each checkout's opencode runs: its own home (sessions, caches) and its
//! own sandbox, which sees that checkout and nothing else of kugetsu's.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use std::sync::Arc;
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::OnceCell;

use super::{OpencodeEnv, RunError};
use crate::layout::Layout;
use crate::sandbox::{Jail, Sandbox};

/// The agent's shell. opencode runs its bash tool as `$SHELL -c <command>` with its
/// own environment, which holds the server's password; the shell drops it.
const SHELL: &str = "#!/bin/sh\n# Written by kugetsu: the agent's shell, without opencode's server password.\n\
unset OPENCODE_SERVER_PASSWORD LD_PRELOAD\nexec /bin/bash \"$@\"\n";

/// Preloaded into opencode so that it is non-dumpable: its environment (the
/// server's password, provider keys) cannot be read through `/proc` by the
/// agent's processes. Built from `src/sandbox/nodump.c` by `build.rs`.
const NODUMP: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/nodump.so"));

#[derive(Debug, Clone)]
pub struct Jails {
    sandbox: Sandbox,
    layout: Layout,
    /// Read-only for every checkout: opencode itself, its config, the shell.
    shared: Vec<PathBuf>,
    shell: PathBuf,
    nodump: PathBuf,
    /// opencode's global config directory, read-only in every checkout's jail.
    config_dir: PathBuf,
    /// Set once opencode has set up `config_dir` (see [`super::setup`]).
    ready: Arc<OnceCell<()>>,
}

impl Jails {
    /// `config_files[0]` is opencode's config directory; the rest are files it reads.
    pub fn new(sandbox: Sandbox, layout: Layout, binary: &Path, config_files: &[PathBuf]) -> Self {
        let shell = layout.opencode_bin().join("shell");
        let nodump = layout.opencode_bin().join("nodump.so");
        let mut shared: Vec<PathBuf> = config_files.iter().filter(|p| p.exists()).cloned().collect();
        // npm installs opencode as a link to a self-contained binary: that file is
        // all it needs, and anything beside it stays hidden.
        shared.extend(resolve_binary(binary));
        shared.push(layout.opencode_bin());
        let config_dir = config_files.first().cloned().unwrap_or_default();
        Self { sandbox, layout, shared, shell, nodump, config_dir, ready: Arc::new(OnceCell::new()) }
    }

    /// Lets opencode set up its config directory, once per process, before it
    /// runs in a jail that shows the directory read-only. A failure is logged:
    /// the runs that follow then fail with opencode's own error.
    pub async fn ensure_ready(&self, binary: &Path, env: &OpencodeEnv, timeout: Duration) {
        self.ready
            .get_or_init(|| async {
                let scratch = self.layout.opencode_setup();
                if let Err(e) = super::setup::prepare(self, binary, env, &self.config_dir, &scratch, timeout).await {
                    tracing::error!(error = %e, "opencode's config directory is not ready; agent runs may fail");
                }
            })
            .await;
    }

    /// The opencode home of the checkout at `dir`.
    pub fn home(&self, dir: &Path) -> Result<PathBuf, RunError> {
        self.layout.opencode_home(dir).ok_or_else(|| {
            RunError::new(
                super::FailureKind::Unsupported,
                format!("{} is not a checkout kugetsu made, so opencode cannot run there", dir.display()),
            )
        })
    }

    /// The home of the repository's base checkout, which issue sessions are forked from.
    pub fn base_home(&self, dir: &Path) -> Option<PathBuf> {
        let repo = self.layout.repo_of_checkout(dir)?;
        self.layout.opencode_home(&self.layout.base_worktree(&repo))
    }

    /// The repository's base checkout.
    pub fn base_dir(&self, dir: &Path) -> Option<PathBuf> {
        Some(self.layout.base_worktree(&self.layout.repo_of_checkout(dir)?))
    }

    fn jail(&self, dir: &Path, home: &Path) -> Jail {
        let mut jail = Jail::for_checkout(&self.layout, dir);
        jail.writable.push(home.to_owned());
        jail.readable.extend(self.shared.iter().cloned());
        // Issue sessions are forked from the base session in its own directory;
        // the base checkout holds only the repository's default branch.
        if let Some(base) = self.base_dir(dir).filter(|base| base != dir && base.is_dir()) {
            jail.readable.push(base);
        }
        jail
    }

    /// `opencode` in `scratch` (no checkout) with opencode's config directory
    /// writable, for [`super::setup::prepare`] only.
    pub fn setup(
        &self,
        binary: &Path,
        env: &OpencodeEnv,
        scratch: &Path,
        config_dir: &Path,
    ) -> Result<Command, RunError> {
        let jail = Jail {
            writable: vec![scratch.to_owned(), config_dir.to_owned()],
            readable: self.shared.clone(),
            dir: scratch.to_owned(),
        };
        self.command(binary, env, scratch, jail)
    }

    /// `opencode` for the checkout at `dir`: confined, with that checkout's home
    /// and nothing of kugetsu's environment but what `env` lists.
    pub fn opencode(&self, binary: &Path, env: &OpencodeEnv, dir: &Path) -> Result<Command, RunError> {
        let home = self.home(dir)?;
        let jail = self.jail(dir, &home);
        self.command(binary, env, &home, jail)
    }

    /// opencode in `jail`, with its files under `home`.
    fn command(&self, binary: &Path, env: &OpencodeEnv, home: &Path, jail: Jail) -> Result<Command, RunError> {
        let program = resolve_binary(binary).ok_or_else(|| {
            let missing = std::io::Error::new(std::io::ErrorKind::NotFound, "not found");
            super::spawn_error(binary, &missing)
        })?;
        write_once(&self.shell, SHELL.as_bytes(), 0o555)
            .map_err(|e| RunError::infra(format!("cannot write the agent's shell: {e}")))?;
        write_once(&self.nodump, NODUMP, 0o444)
            .map_err(|e| RunError::infra(format!("cannot write {}: {e}", self.nodump.display())))?;
        for dir in env.home_dirs(home) {
            // The agent may have put a link here; following it would make
            // directories wherever it points, outside its jail.
            if std::fs::symlink_metadata(&dir).is_ok_and(|m| !m.is_dir()) {
                std::fs::remove_file(&dir)
                    .map_err(|e| RunError::infra(format!("cannot remove {}: {e}", dir.display())))?;
            }
            std::fs::create_dir_all(&dir)
                .map_err(|e| RunError::infra(format!("cannot create {}: {e}", dir.display())))?;
        }
        let mut cmd = self.sandbox.command(&program, &jail);
        cmd.env_clear();
        cmd.envs(env.vars());
        cmd.envs(env.home_vars(home));
        cmd.env("SHELL", &self.shell);
        cmd.env("LD_PRELOAD", &self.nodump);
        cmd.current_dir(&jail.dir);
        Ok(cmd)
    }
}

/// Writes `bytes` to `path` with `mode` unless it already holds them; written
/// beside and renamed in, so a running jail never sees half a file.
fn write_once(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if std::fs::read(path).is_ok_and(|held| held == bytes) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let scratch = path.with_extension("new");
    std::fs::write(&scratch, bytes)?;
    std::fs::set_permissions(&scratch, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&scratch, path)
}

/// The binary's real path: a bare name is looked up in PATH, links are followed,
/// so the sandbox can show the file itself.
fn resolve_binary(binary: &Path) -> Option<PathBuf> {
    let found = if binary.components().count() > 1 {
        binary.to_owned()
    } else {
        let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/bin:/bin"));
        std::env::split_paths(&path).map(|dir| dir.join(binary)).find(|p| p.is_file())?
    };
    std::fs::canonicalize(found).ok().filter(|p| p.is_file())
}
