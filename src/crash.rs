//! Deliberate crash points for the crash-safety tests: when `KUGETSU_CRASH_AT`
//! names a point, the process kills itself with SIGKILL there, as a power cut
//! or the OOM killer would; when `KUGETSU_PAUSE_AT` does, it stops itself there
//! (SIGSTOP), once, as a stalled VM would, until it is sent SIGCONT. Unset
//! (always, in production) they do nothing.

/// The environment variable that arms one crash point.
pub const CRASH_AT_VAR: &str = "KUGETSU_CRASH_AT";

/// The environment variable that arms one pause point.
pub const PAUSE_AT_VAR: &str = "KUGETSU_PAUSE_AT";

pub fn point(name: &str) {
    if std::env::var(CRASH_AT_VAR).is_ok_and(|armed| armed == name) {
        tracing::warn!(point = name, "crashing on purpose");
        let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGKILL);
    }
    static PAUSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if std::env::var(PAUSE_AT_VAR).is_ok_and(|armed| armed == name)
        && !PAUSED.swap(true, std::sync::atomic::Ordering::SeqCst)
    {
        tracing::warn!(point = name, "pausing on purpose");
        let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGSTOP);
        tracing::warn!(point = name, "going on after the pause");
    }
}
