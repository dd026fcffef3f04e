use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    // kugetsu holds forge tokens and webhook secrets in its environment and memory.
    // Not dumpable, it is closed to other processes of its user, the agent included:
    // no reading /proc/<pid>/environ or mem, no ptrace, no core dump with secrets.
    // Its children (git, opencode) become dumpable again when they exec.
    let dumpable = nix::sys::prctl::set_dumpable(false);
    kugetsu::cli::main(move || {
        if let Err(e) = dumpable {
            tracing::warn!(error = %e, "cannot mark the process non-dumpable; same-user processes may read its secrets");
        }
    })
    .await
}
