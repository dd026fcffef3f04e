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
        let table = process_table();
        let kib: u64 = tree_of(&table, leader)
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

/// The fields of `/proc/<pid>/stat` that place a process in the tree.
struct StatFields {
    /// A zombie (`Z`) is dead already, only not yet reaped.
    state: char,
    ppid: i32,
    session: i32,
}

fn stat_fields(proc_dir: &std::path::Path) -> Option<StatFields> {
    let stat = std::fs::read_to_string(proc_dir.join("stat")).ok()?;
    // The command name may hold spaces and parentheses; fields resume after the last `)`.
    let mut rest = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = rest.next()?.chars().next()?;
    let mut next = || rest.next()?.parse().ok();
    let ppid = next()?;
    let _pgrp: i32 = next()?;
    Some(StatFields { state, ppid, session: next()? })
}

/// Every process, by pid.
fn process_table() -> HashMap<i32, StatFields> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return HashMap::new() };
    entries
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse().ok()?;
            Some((pid, stat_fields(&e.path())?))
        })
        .collect()
}

/// `root` and every process below it.
fn tree_of(table: &HashMap<i32, StatFields>, root: i32) -> Vec<i32> {
    let mut tree = vec![root];
    let mut next = 0;
    while let Some(&parent) = tree.get(next) {
        tree.extend(table.iter().filter(|(_, f)| f.ppid == parent).map(|(pid, _)| *pid));
        next += 1;
    }
    tree
}

/// The process that runs `opencode serve` for a child spawned as `root`: with a
/// sandbox, bubblewrap's child (opencode is PID 1 of the jail); without one, `root`.
pub fn server_process(root: u32) -> Option<i32> {
    let root = i32::try_from(root).ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{root}/comm")).ok()?;
    if comm.trim() != "bwrap" {
        return Some(root);
    }
    process_table().into_iter().find(|(_, f)| f.ppid == root).map(|(pid, _)| pid)
}

/// Kills what the agent left running below `server`: every descendant outside
/// the server's own session. opencode starts each bash tool call in a session of
/// its own, and no process can move into another session, so background jobs and
/// daemons are found however they forked; in a jail, orphans are re-parented to
/// the server (its PID 1), never out of its tree. Helpers opencode starts itself
/// (language servers) share its session and are left running. Returns how many
/// processes were killed.
pub fn kill_agent_processes(server: i32) -> usize {
    let Some(server_session) = stat_fields(std::path::Path::new(&format!("/proc/{server}"))).map(|f| f.session) else {
        return 0;
    };
    let mut killed = 0;
    // Processes fork while the table is read; passes repeat until one finds none.
    for _ in 0..20 {
        let table = process_table();
        let found: Vec<i32> = tree_of(&table, server)
            .into_iter()
            .filter(|pid| table.get(pid).is_some_and(|f| f.session != server_session && !matches!(f.state, 'Z' | 'X')))
            .collect();
        if found.is_empty() {
            break;
        }
        for pid in found {
            if nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
                killed += 1;
            }
        }
    }
    killed
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
