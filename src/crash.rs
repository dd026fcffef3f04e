//! Deliberate crash points for the crash-safety tests: when `KUGETSU_CRASH_AT`
//! names a point, the process kills itself with SIGKILL there, as a power cut
//! or the OOM killer would. Unset (always, in production) they do nothing.

/// The environment variable that arms one crash point.
pub const CRASH_AT_VAR: &str = "KUGETSU_CRASH_AT";

pub fn point(name: &str) {
    if std::env::var(CRASH_AT_VAR).is_ok_and(|armed| armed == name) {
        tracing::warn!(point = name, "crashing on purpose");
        let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGKILL);
    }
}
