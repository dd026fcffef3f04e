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
    kugetsu::cli::main().await
}
