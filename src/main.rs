use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("KUGETSU_LOG").unwrap_or_else(|_| EnvFilter::new("warn,kugetsu=info")))
        .with_writer(std::io::stderr)
        .init();
    kugetsu::cli::main().await
}
