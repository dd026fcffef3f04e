//! Confinement for everything the agent can steer: opencode (its file tools and
//! the shell commands it runs) and git in an issue's working copy.
//!
//! With bubblewrap, such a process sees read-only system paths, a private `/tmp`,
//! its own PID namespace (so no other process, kugetsu included, is visible), and
//! just the paths its [`Jail`] names. Nothing else under the state directory exists
//! for it: not the database, not the mirrors' config, not other issues.

mod probe;
mod reap;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tokio::process::Command;

use crate::layout::Layout;

pub use probe::check;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SandboxKind {
    /// Every agent-steered process runs under bubblewrap (`bwrap`).
    #[default]
    Bwrap,
    /// No confinement: the agent can do whatever kugetsu's user can.
    None,
}

/// System paths a sandboxed process may read. Binaries and libraries live here;
/// `/etc` has what resolvers, TLS and git expect. Secrets in `/etc` are hidden
/// by [`HIDDEN`].
const SYSTEM: &[&str] = &["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt"];

/// Host secrets under [`SYSTEM`] that no sandboxed process needs.
const HIDDEN: &[&str] = &["/etc/shadow", "/etc/gshadow", "/etc/ssh", "/etc/sudoers", "/etc/sudoers.d", "/etc/kugetsu"];

/// Where a checkout appears inside its jail: `/workspace/<repository name>`,
/// whatever its issue. A checkout can then be renamed under a running opencode
/// (a ready one handed to a new issue) without opencode seeing its path change,
/// and no agent learns the host's layout.
pub const CHECKOUTS_INSIDE: &str = "/workspace";

/// What one confined process may reach besides the system paths.
#[derive(Debug, Clone, Default)]
pub struct Jail {
    /// Read and write: opencode's files for the issue, scratch space.
    pub writable: Vec<PathBuf>,
    /// Read only: the mirror's objects, opencode itself and its config.
    pub readable: Vec<PathBuf>,
    /// The working directory, as the host names it.
    pub dir: PathBuf,
    /// Where `dir` appears inside, bound read-write; `None`: at its own path,
    /// bound only if `writable` or `readable` names it.
    pub dir_inside: Option<PathBuf>,
}

impl Jail {
    /// A checkout's jail: the checkout read-write at [`CHECKOUTS_INSIDE`], and the
    /// mirror objects it borrows through `objects/info/alternates` read-only.
    pub fn for_checkout(layout: &Layout, dir: &Path) -> Jail {
        let Some(repo) = layout.repo_of_checkout(dir) else {
            return Jail { writable: vec![dir.to_owned()], dir: dir.to_owned(), ..Jail::default() };
        };
        let objects = layout.mirror(&repo).join("objects");
        Jail {
            writable: Vec::new(),
            readable: [objects].into_iter().filter(|o| o.is_dir()).collect(),
            dir: dir.to_owned(),
            dir_inside: Some(Path::new(CHECKOUTS_INSIDE).join(repo.name())),
        }
    }

    /// The working directory as the jailed process sees it.
    pub fn inside(&self) -> &Path {
        self.dir_inside.as_deref().unwrap_or(&self.dir)
    }
}

#[derive(Debug, Clone)]
pub struct Sandbox {
    kind: SandboxKind,
    bwrap: PathBuf,
    /// Files kugetsu must not show even where a system path holds them (its config).
    hidden: Vec<PathBuf>,
}

impl Sandbox {
    pub fn new(kind: SandboxKind, hidden: Vec<PathBuf>) -> Self {
        let bwrap = find_in_path("bwrap").unwrap_or_else(|| PathBuf::from("/usr/bin/bwrap"));
        Self { kind, bwrap, hidden }
    }

    /// The sandbox the configuration asks for; kugetsu's config file is hidden in it.
    pub fn for_config(config: &crate::config::Config) -> Self {
        // The state directory is covered as a whole (a jail's own paths in it are
        // bound again on top), also where it lies under a system path.
        let mut hidden: Vec<PathBuf> = vec![config.state_dir.clone()];
        hidden.extend(config.source.iter().cloned());
        Self::new(config.sandbox, hidden)
    }

    /// Ends every process in the jail of `spawned` (a process [`Sandbox::command`]
    /// started) but the jail's PID 1. Without a sandbox there is no jail to empty.
    pub async fn end_all_but_pid1(&self, spawned: u32) -> std::io::Result<()> {
        match self.kind {
            SandboxKind::None => Ok(()),
            SandboxKind::Bwrap => tokio::task::spawn_blocking(move || reap::kill_all_but_pid1(spawned))
                .await
                .map_err(std::io::Error::other)?,
        }
    }

    pub fn kind(&self) -> SandboxKind {
        self.kind
    }

    /// The jail's working directory as a process run in it sees it.
    pub fn dir_inside<'a>(&self, jail: &'a Jail) -> &'a Path {
        match self.kind {
            SandboxKind::None => &jail.dir,
            SandboxKind::Bwrap => jail.inside(),
        }
    }

    /// A command that runs `program` confined to `jail`. The caller sets its
    /// arguments and environment as for an unconfined one.
    pub fn command(&self, program: impl AsRef<OsStr>, jail: &Jail) -> Command {
        match self.kind {
            SandboxKind::None => {
                let mut cmd = Command::new(program);
                cmd.current_dir(&jail.dir);
                cmd
            }
            SandboxKind::Bwrap => {
                let mut cmd = Command::new(&self.bwrap);
                cmd.args(self.bwrap_args(jail)).arg("--").arg(program);
                cmd
            }
        }
    }

    /// What no jail shows: host secrets, kugetsu's config file and state directory.
    fn masked(&self) -> impl Iterator<Item = &Path> {
        HIDDEN.iter().map(Path::new).chain(self.hidden.iter().map(PathBuf::as_path))
    }

    fn bwrap_args(&self, jail: &Jail) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = [
            "--unshare-user",
            // No namespaces of its own inside: each is kernel surface the agent
            // needs for no task, and a way to regain capabilities there.
            "--disable-userns",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            // No bwrap init is left inside holding the environment it was given,
            // and nothing inside keeps a capability, so no process in a jail can
            // read another's /proc/<pid>/environ once that one is non-dumpable.
            "--as-pid-1",
            "--cap-drop",
            "ALL",
            "--die-with-parent",
            "--new-session",
        ]
        .iter()
        .map(Into::into)
        .collect();
        let triple = |flag: &str, from: &Path, to: &Path| {
            [std::ffi::OsString::from(flag), from.as_os_str().to_owned(), to.as_os_str().to_owned()]
        };
        for path in SYSTEM.iter().map(Path::new) {
            match std::fs::symlink_metadata(path) {
                // Merged-/usr systems link /bin to usr/bin: keep the link, not a copy.
                Ok(meta) if meta.is_symlink() => {
                    if let Ok(target) = std::fs::read_link(path) {
                        args.extend(triple("--symlink", &target, path));
                    }
                }
                Ok(_) => args.extend(triple("--ro-bind", path, path)),
                Err(_) => {}
            }
        }
        // Before the jail's own binds: a state directory under /tmp or /etc must
        // not be covered by these.
        args.extend(["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"].iter().map(Into::into));
        for path in self.masked() {
            if path.is_dir() {
                args.extend(["--tmpfs".into(), path.as_os_str().to_owned()]);
            } else if path.exists() {
                args.extend(["--ro-bind".into(), "/dev/null".into(), path.as_os_str().to_owned()]);
            }
        }
        for path in &jail.readable {
            args.extend(triple("--ro-bind", path, path));
        }
        for path in &jail.writable {
            args.extend(triple("--bind", path, path));
        }
        if let Some(inside) = &jail.dir_inside {
            args.extend(triple("--bind", &jail.dir, inside));
        }
        // Hidden files again, in case a readable directory above one showed it.
        for path in self.masked() {
            if path.is_file() {
                args.extend(["--ro-bind".into(), "/dev/null".into(), path.as_os_str().to_owned()]);
            }
        }
        args.extend(["--chdir".into(), jail.inside().as_os_str().to_owned()]);
        args
    }
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file())
}
