//! Ending what the agent left running in a jail that stays up: every process in
//! the jail's PID namespace but its PID 1 (opencode, started with `--as-pid-1`).
//!
//! Walking `/proc` and killing pid by pid races with the processes it chases: a
//! thread can outlive its group's leader, which then reads as a zombie, and a
//! chain of forks can hop between pids faster than a walk reads them. So a
//! process of ours enters the jail's PID namespace and calls `kill(-1, SIGKILL)`
//! there: the kernel signals every process of that namespace at once, except the
//! caller and PID 1, and a fork under way fails once its parent is signalled.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;

use nix::libc;
use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid, fork};

/// `NS_GET_USERNS` from `<linux/nsfs.h>`: `_IO(0xb7, 0x1)`.
const NS_GET_USERNS: libc::c_ulong = 0xb701;

/// How long the killer may take. Inside the jail it can be signalled by the
/// agent's processes (stopped, killed); past this the caller must end the jail.
const DEADLINE: std::time::Duration = std::time::Duration::from_secs(2);

/// Kills every process in the jail that bubblewrap process `bwrap` runs, except
/// the jail's PID 1. Any error (the jail not found, the killer stopped, killed or
/// out of processes) means the caller must end the whole jail instead.
pub fn kill_all_but_pid1(bwrap: u32) -> std::io::Result<()> {
    let missing = |what: &str| std::io::Error::other(format!("the jail's {what} was not found"));
    let init = jail_init(bwrap).ok_or_else(|| missing("PID 1"))?;
    let pid_ns = pid_namespace_of(init)?.ok_or_else(|| missing("PID namespace"))?;
    // Entering a PID namespace takes CAP_SYS_ADMIN over the user namespace that
    // owns it. Root has that; the unprivileged user who made the jail has it
    // once inside that user namespace, which is the one the ioctl names.
    // SAFETY: NS_GET_USERNS takes no argument and returns a new descriptor or -1.
    let owner = unsafe { libc::ioctl(pid_ns.as_raw_fd(), NS_GET_USERNS) };
    let owner = (owner >= 0).then(|| unsafe { OwnedFd::from_raw_fd(owner) });
    let mut cmd = std::process::Command::new("true");
    let (pid_ns_fd, owner_fd) = (pid_ns.as_raw_fd(), owner.as_ref().map(AsRawFd::as_raw_fd));
    // SAFETY: between fork and exec the closure makes only system calls (setns,
    // fork, kill, waitpid, _exit); it takes no lock, and allocates only to
    // describe a failure, which std then reports as a plain error.
    unsafe {
        cmd.pre_exec(move || enter_and_kill(pid_ns_fd, owner_fd));
    }
    let mut killer = cmd.spawn()?;
    let deadline = std::time::Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = killer.try_wait()? {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = killer.kill();
            let _ = killer.wait();
            return Err(std::io::Error::other("the jail's processes were not ended in time"));
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    drop((pid_ns, owner));
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("the jail's processes could not be ended ({status})")))
    }
}

/// In the forked child: into the jail's PID namespace, then a grandchild (the
/// first process that is in it) signals everything there.
fn enter_and_kill(pid_ns: i32, owner: Option<i32>) -> std::io::Result<()> {
    // SAFETY: the descriptors stay open in the parent until the child has exited.
    let pid_ns = unsafe { std::os::fd::BorrowedFd::borrow_raw(pid_ns) };
    if setns(pid_ns, CloneFlags::CLONE_NEWPID).is_err() {
        let owner = owner.ok_or_else(|| std::io::Error::from(nix::errno::Errno::EPERM))?;
        // SAFETY: as above.
        let owner = unsafe { std::os::fd::BorrowedFd::borrow_raw(owner) };
        setns(owner, CloneFlags::CLONE_NEWUSER)?;
        setns(pid_ns, CloneFlags::CLONE_NEWPID)?;
    }
    // SAFETY: the child is single-threaded after fork; the grandchild only calls
    // kill and _exit.
    match unsafe { fork() }? {
        ForkResult::Child => {
            let killed = kill(Pid::from_raw(-1), Signal::SIGKILL);
            // ESRCH: nothing but PID 1 and us was there.
            let code = i32::from(!matches!(killed, Ok(()) | Err(nix::errno::Errno::ESRCH)));
            // SAFETY: _exit ends the grandchild without running anything of the parent's.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => match waitpid(child, None)? {
            nix::sys::wait::WaitStatus::Exited(_, 0) => Ok(()),
            _ => Err(std::io::Error::other("kill(-1) failed in the jail")),
        },
    }
}

/// The jail's PID 1: the first process below `bwrap` that is PID 1 of its own
/// namespace (as root, bubblewrap keeps one more process of its own in between).
fn jail_init(bwrap: u32) -> Option<i32> {
    let mut below = vec![i32::try_from(bwrap).ok()?];
    for _ in 0..3 {
        let children: Vec<i32> = below.iter().flat_map(|p| children_of(*p)).collect();
        if let Some(init) = children.iter().copied().find(|p| is_namespace_init(*p)) {
            return Some(init);
        }
        below = children;
    }
    None
}

fn children_of(pid: i32) -> Vec<i32> {
    let tasks = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    tasks.split_whitespace().filter_map(|p| p.parse().ok()).collect()
}

/// Whether `pid` is PID 1 in its innermost namespace (`NSpid: <host pid> … 1`).
fn is_namespace_init(pid: i32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("NSpid:")).is_some_and(|ids| {
        let ids: Vec<&str> = ids.split_whitespace().collect();
        ids.len() > 1 && ids.last() == Some(&"1")
    })
}

/// The PID namespace of `init`, opened while a pidfd shows `init` alive, so the
/// pid cannot have passed to another process meanwhile; never kugetsu's own.
fn pid_namespace_of(init: i32) -> std::io::Result<Option<File>> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, init, 0) };
    if pidfd < 0 {
        return Ok(None);
    }
    // SAFETY: the descriptor was just returned to us and is owned here alone.
    let pidfd = unsafe { OwnedFd::from_raw_fd(i32::try_from(pidfd).map_err(std::io::Error::other)?) };
    let Ok(ns) = File::open(format!("/proc/{init}/ns/pid")) else { return Ok(None) };
    let ours = std::fs::metadata("/proc/self/ns/pid")?;
    let theirs = ns.metadata()?;
    if (theirs.dev(), theirs.ino()) == (ours.dev(), ours.ino()) || !is_namespace_init(init) {
        return Ok(None);
    }
    // SAFETY: signal 0 through a pidfd only checks that its process still lives.
    let alive =
        unsafe { libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_fd().as_raw_fd(), 0, std::ptr::null::<u8>(), 0) }
            == 0;
    Ok(alive.then_some(ns))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn jail_members(init: i32) -> Vec<i32> {
        let mut all = vec![init];
        let mut next = 0;
        while let Some(&p) = all.get(next) {
            all.extend(children_of(p));
            next += 1;
        }
        all
    }

    #[test]
    fn everything_in_the_jail_but_its_pid_1_ends() {
        let mut jail = std::process::Command::new("bwrap")
            .args(["--unshare-user", "--disable-userns", "--unshare-pid", "--as-pid-1", "--die-with-parent"])
            .args(["--new-session", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"])
            .args(["sh", "-c", "setsid sleep 300 & (sleep 300 &); while :; do sleep 1; done"])
            .spawn()
            .expect("bwrap runs");
        let mut init = None;
        for _ in 0..100 {
            init = jail_init(jail.id()).filter(|i| jail_members(*i).len() >= 4);
            if init.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let init = init.expect("control: the jail's processes are running");
        kill_all_but_pid1(jail.id()).expect("the jail is emptied");
        std::thread::sleep(Duration::from_millis(300));
        let left: Vec<String> = jail_members(init)[1..]
            .iter()
            .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/cmdline")).ok())
            .filter(|c| c.contains("300"))
            .collect();
        assert!(left.is_empty(), "still running: {left:?}");
        assert!(jail_init(jail.id()) == Some(init), "PID 1 lives on");
        let _ = jail.kill();
        let _ = jail.wait();
        // No jail to empty is an error, so the caller ends the server instead.
        let mut plain = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        assert!(kill_all_but_pid1(plain.id()).is_err());
        let _ = plain.kill();
        let _ = plain.wait();
    }
}
