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

/// ripgrep for opencode's grep and glob tools, first on opencode's PATH. It runs
/// the system's ripgrep with none of opencode's environment (the server's
/// password, provider keys); and since opencode finds it on PATH, it never looks
/// for (or downloads) one in its data directory, which the agent can write.
const RIPGREP: &str = "#!/bin/sh\n# Written by kugetsu: ripgrep without opencode's environment.\n\
for rg in /usr/bin/rg /usr/local/bin/rg /bin/rg; do\n\
  [ -x \"$rg\" ] && exec env -i PATH=/usr/bin:/bin LANG=C.UTF-8 \"$rg\" \"$@\"\n\
done\n\
echo 'ripgrep is not installed (apt install ripgrep)' >&2\nexit 127\n";

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
    ripgrep: PathBuf,
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
        let ripgrep = layout.opencode_bin().join("rg");
        let nodump = layout.opencode_bin().join("nodump.so");
        let mut shared: Vec<PathBuf> = config_files.iter().filter(|p| p.exists()).cloned().collect();
        // npm installs opencode as a link to a self-contained binary: that file is
        // all it needs, and anything beside it stays hidden.
        shared.extend(resolve_binary(binary));
        shared.push(layout.opencode_bin());
        let config_dir = config_files.first().cloned().unwrap_or_default();
        Self { sandbox, layout, shared, shell, ripgrep, nodump, config_dir, ready: Arc::new(OnceCell::new()) }
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

    /// Ends what the agent left running in the jail of the server `spawned`.
    /// `false` when that failed and the server must be stopped, which ends its
    /// whole jail at once.
    pub async fn end_leftovers(&self, spawned: u32) -> bool {
        match self.sandbox.end_all_but_pid1(spawned).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "could not end what the agent left running; stopping its server");
                false
            }
        }
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

    /// The checkout at `dir` as its opencode sees it, which is what opencode's
    /// API calls `directory`. In a sandbox every checkout of a repository is at
    /// the same place, the base checkout too, and stays there when renamed.
    pub fn inside(&self, dir: &Path) -> PathBuf {
        self.sandbox.dir_inside(&Jail::for_checkout(&self.layout, dir)).to_owned()
    }

    /// Whether a checkout keeps its running opencode when renamed.
    pub fn renames_keep_servers(&self) -> bool {
        self.sandbox.kind() != crate::sandbox::SandboxKind::None
    }

    fn jail(&self, dir: &Path, home: &Path) -> Jail {
        let mut jail = Jail::for_checkout(&self.layout, dir);
        jail.writable.push(home.to_owned());
        jail.readable.extend(self.shared.iter().cloned());
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
            dir_inside: None,
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
        write_once(&self.ripgrep, RIPGREP.as_bytes(), 0o555)
            .map_err(|e| RunError::infra(format!("cannot write opencode's ripgrep: {e}")))?;
        write_once(&self.nodump, NODUMP, 0o444)
            .map_err(|e| RunError::infra(format!("cannot write {}: {e}", self.nodump.display())))?;
        // opencode reads what it caches (model lists, binaries) when it starts, and
        // the agent can write there: every start begins with an empty cache.
        // remove_dir_all takes a link planted in its place for what it is.
        let cache = env.home_vars(home).into_iter().find(|(var, _)| *var == "XDG_CACHE_HOME").map(|(_, dir)| dir);
        if let Some(cache) = cache
            && let Err(e) = std::fs::remove_dir_all(&cache)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(RunError::infra(format!("cannot empty {}: {e}", cache.display())));
        }
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
        let path = env.vars().find(|(k, _)| *k == "PATH").map(|(_, v)| v.clone()).unwrap_or_default();
        let mut dirs = vec![self.layout.opencode_bin()];
        dirs.extend(std::env::split_paths(&path));
        if let Ok(path) = std::env::join_paths(dirs) {
            cmd.env("PATH", path);
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// ripgrep's `--pre` runs a program per file with ripgrep's own environment,
    /// which shows what ripgrep was given.
    fn environment_seen_by_ripgrep(rg: &[&str]) -> String {
        let dir = tempfile::tempdir().unwrap();
        let dump = dir.path().join("dump");
        std::fs::write(&dump, "#!/bin/sh\nenv\n").unwrap();
        std::fs::set_permissions(&dump, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        std::fs::write(dir.path().join("file"), "x").unwrap();
        let out = std::process::Command::new(rg[0])
            .args(&rg[1..])
            .args(["--pre", &dump.to_string_lossy(), "=", "file"])
            .current_dir(dir.path())
            .env("OPENCODE_SERVER_PASSWORD", "the-server-password")
            .output()
            .expect("ripgrep runs (scripts/test installs it)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn the_ripgrep_opencode_runs_gets_none_of_its_environment() {
        let dir = tempfile::tempdir().unwrap();
        let wrapper = dir.path().join("rg");
        write_once(&wrapper, RIPGREP.as_bytes(), 0o555).unwrap();
        let direct = environment_seen_by_ripgrep(&["rg"]);
        assert!(direct.contains("the-server-password"), "control: ripgrep passes its environment on: {direct}");
        let wrapped = environment_seen_by_ripgrep(&[&wrapper.to_string_lossy()]);
        assert!(wrapped.contains("PATH="), "control: the wrapper ran ripgrep: {wrapped}");
        assert!(!wrapped.contains("the-server-password"), "{wrapped}");
    }
}
