use std::io::IsTerminal;
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("KUGETSU_LOG").unwrap_or_else(|_| EnvFilter::new("warn,kugetsu=info")))
        .with_writer(std::io::stderr)
        // Colour codes only for people; logs to files or journald stay plain.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    // kugetsu holds forge tokens and webhook secrets in its environment and memory.
    // Not dumpable, it is closed to other processes of its user, the agent included:
    // no reading /proc/<pid>/environ or mem, no ptrace, no core dump with secrets.
    // Its children (git, opencode) become dumpable again when they exec.
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        tracing::warn!(error = %e, "cannot mark the process non-dumpable; same-user processes may read its secrets");
    }
    kugetsu::cli::main().await
}
