use std::collections::HashMap;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Kills a whole process group when dropped: opencode starts helpers (shells,
/// language servers) that would outlive a kill of the main process alone.
#[derive(Debug)]
pub struct ProcessGroup {
    pgid: Option<i32>,
}

impl ProcessGroup {
    /// `child` must have been spawned with `process_group(0)`.
    pub fn of(child: &tokio::process::Child) -> Self {
        Self { pgid: child.id().and_then(|id| i32::try_from(id).ok()) }
    }

    pub fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }

    /// Resident memory of the group's leader and every process below it, in
    /// MiB. Below, not in the group: in a jail, opencode runs in a session of its own.
    pub fn resident_mib(&self) -> u64 {
        let Some(leader) = self.pgid else { return 0 };
        let kib: u64 = tree_of(&parents(), leader)
            .into_iter()
            .filter_map(|pid| resident_kib(std::path::Path::new(&format!("/proc/{pid}"))))
            .sum();
        kib / 1024
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The parent of the process whose `/proc` entry is `proc_dir`.
fn parent_of(proc_dir: &std::path::Path) -> Option<i32> {
    let stat = std::fs::read_to_string(proc_dir.join("stat")).ok()?;
    // The command name may hold spaces and parentheses; fields resume after the last `)`.
    stat[stat.rfind(')')? + 1..].split_whitespace().nth(1)?.parse().ok()
}

/// Every process's parent, by pid.
fn parents() -> HashMap<i32, i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return HashMap::new() };
    entries
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse().ok()?;
            Some((pid, parent_of(&e.path())?))
        })
        .collect()
}

/// `root` and every process below it.
fn tree_of(parents: &HashMap<i32, i32>, root: i32) -> Vec<i32> {
    let mut tree = vec![root];
    let mut next = 0;
    while let Some(&parent) = tree.get(next) {
        tree.extend(parents.iter().filter(|(_, p)| **p == parent).map(|(pid, _)| *pid));
        next += 1;
    }
    tree
}

fn resident_kib(proc_dir: &std::path::Path) -> Option<u64> {
    let status = std::fs::read_to_string(proc_dir.join("status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Makes the child die with kugetsu: if kugetsu is killed (SIGKILL, OOM), an
/// orphaned `opencode serve` would otherwise keep its port and memory forever.
pub fn die_with_parent(cmd: &mut tokio::process::Command) {
    // SAFETY: the closure runs between fork and exec and only calls prctl(2),
    // which is async-signal-safe; it allocates nothing and takes no locks.
    unsafe {
        cmd.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from));
    }
}
