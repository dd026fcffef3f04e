//! The `kugetsu` command line.

mod doctor;
mod hooks;
mod output;

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::Config;
use crate::engine::{Engine, EngineError, Mode, RunOptions};
use crate::issue_ref::{IssueRef, RepoRef};

#[derive(Debug, Parser)]
#[command(
    name = "kugetsu",
    version,
    about = "Hand forge issues to an opencode agent: one session, worktree and branch per issue"
)]
pub struct Cli {
    /// The configuration file.
    #[arg(long, short, global = true, env = "KUGETSU_CONFIG", default_value = "kugetsu.toml")]
    config: PathBuf,
    /// How log lines are written to stderr: `text`, or `json` (one object a line,
    /// with the job, issue and delivery of every line a job writes).
    #[arg(long, global = true, env = "KUGETSU_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Logs to stderr, filtered by `KUGETSU_LOG` (default `warn,kugetsu=info`).
fn start_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("KUGETSU_LOG").unwrap_or_else(|_| EnvFilter::new("warn,kugetsu=info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        // The spans a line is in carry the job, issue and delivery it is about.
        LogFormat::Json => logs.json().with_current_span(true).with_span_list(true).init(),
        // Colour codes only for people; logs to files or journald stay plain.
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the webhook bot until SIGINT or SIGTERM.
    Serve,
    /// Create the repository's base session, which new issue sessions are forked from.
    Init {
        /// instance/owner/repo
        repo: RepoRef,
        /// A message that primes the base session, e.g. "read CONTRIBUTING.md".
        message: Option<String>,
        /// Replace an existing base session.
        #[arg(long)]
        force: bool,
    },
    /// Give an issue its worktree and session, run a message, push the branch.
    Start(RunArgs),
    /// Run another message in an issue's existing session and worktree.
    Continue(RunArgs),
    /// Every tracked issue with its session, branch, worktree and last run.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Report (or with --force remove) records, worktrees and sessions that lost their other half.
    Prune {
        #[arg(long)]
        force: bool,
        #[arg(long)]
        json: bool,
    },
    /// Check the config, environment, opencode, sandbox, disk and each forge (token,
    /// rights, webhooks), and say how to fix each failure; exits non-zero on any.
    Doctor,
    /// The forge's webhooks that deliver to kugetsu: install or list them.
    #[command(subcommand)]
    Hooks(hooks::HooksCommand),
    /// Remove an issue's worktree, session and record; the pushed branch stays.
    Destroy {
        /// instance/owner/repo#number
        #[arg(required_unless_present = "base", conflicts_with = "base")]
        issue: Option<IssueRef>,
        /// Remove this repository's base session instead.
        #[arg(long, value_name = "INSTANCE/OWNER/REPO")]
        base: Option<RepoRef>,
        /// Do not ask for confirmation.
        #[arg(short = 'y', long = "yes")]
        yes: bool,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// instance/owner/repo#number
    issue: IssueRef,
    /// The message for the agent; `-` reads it from standard input.
    #[arg(required = true, num_args = 1..)]
    message: Vec<String>,
    /// Write the run's full opencode event stream to <state>/sessions/<session>/debug.log.
    #[arg(long)]
    debug: bool,
    #[arg(long)]
    json: bool,
}

impl RunArgs {
    fn message(&self) -> Result<String, EngineError> {
        let text = if self.message == ["-"] {
            std::io::read_to_string(std::io::stdin())
                .map_err(|e| EngineError::BadInput(format!("cannot read stdin: {e}")))?
        } else {
            self.message.join(" ")
        };
        if text.trim().is_empty() {
            return Err(EngineError::BadInput("the message is empty".into()));
        }
        Ok(text)
    }
}

/// Parses arguments, runs the command and maps failures to exit codes
/// (2 bad input, 3 agent failure, 4 infrastructure failure).
/// `logging_started` runs once logs go somewhere.
pub async fn main(logging_started: impl FnOnce()) -> ExitCode {
    let cli = Cli::parse();
    start_logging(cli.log_format);
    logging_started();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

async fn run(cli: Cli) -> Result<(), EngineError> {
    // Doctor reports a config that does not load as one of its findings.
    if let Command::Doctor = cli.command {
        return doctor::run(&cli.config).await;
    }
    let config = Config::load(&cli.config).map_err(|e| EngineError::BadInput(format!("{e:#}")))?;
    match cli.command {
        Command::Serve => {
            return crate::bot::serve(config).await.map_err(|e| EngineError::Infra(format!("{e:#}")));
        }
        // A read of the database: no sandbox check, no opencode.
        Command::List { json } => {
            let store = crate::store::open(&config, false).await?;
            output::print_list(&store.issue_sessions().await?, json);
            return Ok(());
        }
        // The forge's API alone.
        Command::Hooks(command) => return hooks::run(&config, command).await,
        _ => {}
    }
    let engine = Engine::open(config).await?;
    let result = dispatch(&engine, cli.command).await;
    engine.shutdown().await;
    result
}

async fn dispatch(engine: &Engine, command: Command) -> Result<(), EngineError> {
    match command {
        Command::Serve | Command::Hooks(_) | Command::Doctor => {
            return Err(EngineError::BadInput("this command runs on its own, not beside an engine".into()));
        }
        Command::Init { repo, message, force } => {
            let base = engine.init(&repo, message.as_deref(), force).await?;
            println!("base session {} for {}", base.session_id, base.repo);
        }
        Command::Start(args) => run_message(engine, args, Mode::Start).await?,
        Command::Continue(args) => run_message(engine, args, Mode::Continue).await?,
        Command::List { json } => output::print_list(&engine.list().await?, json),
        Command::Prune { force, json } => output::print_prune(&engine.prune(force).await?, json),
        Command::Destroy { issue, base, yes } => {
            let target = issue.as_ref().map_or_else(
                || format!("the base session of {}", base.as_ref().map(ToString::to_string).unwrap_or_default()),
                ToString::to_string,
            );
            confirm(&format!("Destroy {target}? Its worktree and session are removed; pushed branches stay."), yes)?;
            let warnings = match (issue, base) {
                (Some(issue), _) => engine.destroy(&issue).await?,
                (None, Some(repo)) => engine.destroy_base(&repo).await?,
                (None, None) => {
                    return Err(EngineError::BadInput("name an issue or --base".into()));
                }
            };
            for w in &warnings {
                eprintln!("warning: {w}");
            }
            println!("destroyed {target}");
        }
    }
    Ok(())
}

async fn run_message(engine: &Engine, args: RunArgs, mode: Mode) -> Result<(), EngineError> {
    let message = args.message()?;
    let result =
        engine.run(&args.issue, &message, mode, RunOptions { debug: args.debug, ..RunOptions::default() }).await;
    match result {
        Ok(result) => {
            output::print_result(&result, args.json);
            Ok(())
        }
        Err(e) if args.json => {
            output::print_error_json(&e);
            Err(e)
        }
        Err(e) => Err(e),
    }
}

fn confirm(question: &str, yes: bool) -> Result<(), EngineError> {
    if yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(EngineError::BadInput("not confirmed: pass -y to destroy without a prompt".into()));
    }
    print!("{question} [y/N] ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes") { Ok(()) } else { Err(EngineError::BadInput("not confirmed".into())) }
}
