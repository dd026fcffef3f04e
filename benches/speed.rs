//! kugetsu's speed figures, side by side, from one run on this machine:
//!
//! - one turn, stage by stage, from the delivery to the comment: a new issue with
//!   the repository not yet mirrored, a new issue with the mirror warm, and a
//!   follow-up (median of several), on a 200-file and a 10,000-file repository;
//! - the same follow-up turns done by `opencode run -s` in a plain clone, with the
//!   same fake model and config, and the ratio, on both repositories;
//! - webhook answers under open-loop load (200 deliveries/s for 10 s, a new
//!   connection each, every payload distinct) while 4 agent runs are active;
//! - resident memory of `kugetsu serve` and of the opencode servers;
//! - `kugetsu list` with 10,000 issues tracked.
//!
//! Run with `cargo bench --bench speed` (after `scripts/install-opencode`). The
//! model is the tests' fake, which answers at once, so what is timed is kugetsu,
//! opencode, git and the machine.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kugetsu::bot::Bot;
use kugetsu::stage::Stage;
use support::webhook::{self, fixture, retarget, with_comment};
use support::{EnvOptions, FakeForge, Step, TestEnv};
use tracing_subscriber::prelude::*;

const SECRET: &str = "bench-secret";
const TOKEN: &str = "bench-token";
const FOLLOW_UPS: usize = 5;

/// Stage events (`kugetsu::stage`) as they happen: issue, stage, when.
#[derive(Clone, Default)]
struct StageLog(Arc<Mutex<Vec<(String, String, Instant)>>>);

#[derive(Default)]
struct StageFields {
    issue: String,
    stage: String,
}

impl tracing::field::Visit for StageFields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.record_debug(field, &value);
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}").trim_matches('"').to_owned();
        match field.name() {
            "issue" => self.issue = text,
            "stage" => self.stage = text,
            _ => {}
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for StageLog {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut fields = StageFields::default();
        event.record(&mut fields);
        self.0.lock().unwrap().push((fields.issue, fields.stage, Instant::now()));
    }
}

impl StageLog {
    /// When `issue` first reached each stage after `since`.
    fn since(&self, issue: &str, since: Instant) -> HashMap<String, Instant> {
        let mut reached = HashMap::new();
        for (i, stage, at) in self.0.lock().unwrap().iter() {
            if i == issue && *at >= since {
                reached.entry(stage.clone()).or_insert(*at);
            }
        }
        reached
    }
}

/// One turn's figures: each stage's time after the delivery was sent.
type Turn = Vec<(String, Duration)>;

struct Bench {
    env: TestEnv,
    forge: FakeForge,
    url: webhook::Endpoint,
    stages: StageLog,
}

fn mention(repo: &str, number: u64, comment_id: u64, text: &str) -> webhook::Delivery {
    let payload = retarget(fixture("gitea/issue_comment.created.json"), "acme", repo, number, "alice");
    let payload = with_comment(payload, comment_id, text);
    webhook::gitea("issue_comment", "issue_comment", &format!("bench-{comment_id}"), &payload, SECRET)
}

impl Bench {
    /// One mention that makes the agent run a command, commit, push and answer.
    async fn turn(&self, repo: &str, number: u64, comment_id: u64) -> Turn {
        let marker = format!("TURN-{repo}-{comment_id}");
        let steps = vec![Step::Bash(format!("echo {marker} >> notes.txt")), Step::Answer("done".into())];
        self.env.model.on(&marker, steps);
        let before = self.forge.comments(&format!("acme/{repo}"), number).len();
        let delivery = mention(repo, number, comment_id, &format!("@kugetsu {marker}"));
        let sent = Instant::now();
        let (status, text) = delivery.post(&self.url).await;
        let answered = sent.elapsed();
        assert_eq!(status, 202, "{text}");
        self.forge.wait_for_comments(&format!("acme/{repo}"), number, before + 1).await;
        let issue = format!("tea/acme/{repo}#{number}");
        let deadline = Instant::now() + Duration::from_secs(10);
        let reached = loop {
            let reached = self.stages.since(&issue, sent);
            if reached.contains_key(Stage::Commented.name()) || Instant::now() > deadline {
                break reached;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let model = self.env.model.arrivals_for(&marker);
        let mut turn: Turn = vec![("webhook answered".into(), answered)];
        for stage in Stage::ALL {
            if let Some(at) = reached.get(stage.name()) {
                turn.push((stage.name().into(), at.duration_since(sent)));
            }
            if stage == Stage::SessionReady {
                if let Some(first) = model.first() {
                    turn.push(("first model request".into(), first.duration_since(sent)));
                }
                if let Some(last) = model.last() {
                    turn.push(("last model request".into(), last.duration_since(sent)));
                }
            }
        }
        turn
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// The median of each stage over several turns.
fn median_turn(turns: &[Turn]) -> Turn {
    turns[0]
        .iter()
        .map(|(stage, _)| {
            let samples: Vec<Duration> =
                turns.iter().filter_map(|t| t.iter().find(|(s, _)| s == stage).map(|(_, d)| *d)).collect();
            (stage.clone(), median(samples))
        })
        .collect()
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

fn print_turns(title: &str, columns: &[(&str, &Turn)]) {
    println!("\n{title}: time after the delivery was sent");
    print!("  {:<22}", "stage");
    for (name, _) in columns {
        print!(" {name:>22}");
    }
    println!();
    for (stage, _) in columns[0].1 {
        print!("  {stage:<22}");
        for (_, turn) in columns {
            let cell = turn.iter().find(|(s, _)| s == stage).map_or("-".to_owned(), |(_, d)| ms(*d));
            print!(" {cell:>22}");
        }
        println!();
    }
}

/// A repository of `files` small files in the bare remotes.
fn make_repository(env: &TestEnv, name: &str, files: usize) {
    let bare = support::make_remote(&env.remotes, "acme", name);
    let work = env.dir.path().join(format!("seed-{name}"));
    support::git(env.dir.path(), &["clone", "-q", &bare.to_string_lossy(), &work.to_string_lossy()]);
    for i in 0..files {
        let dir = work.join(format!("src/m{:03}", i / 100));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("f{i:05}.rs")), format!("pub fn f{i}() -> u32 {{ {i} }}\n")).unwrap();
    }
    support::git(&work, &["add", "-A"]);
    support::git(&work, &["commit", "-q", "-m", "many files"]);
    support::git(&work, &["push", "-q", "origin", "HEAD:main"]);
}

/// The same follow-up turns by `opencode run -s` in a plain clone: the earlier way.
fn opencode_run_turns(env: &TestEnv, repo: &str, count: usize) -> Vec<Duration> {
    let plain = env.dir.path().join(format!("plain-{repo}"));
    let remote = env.remotes.join(format!("acme/{repo}.git"));
    support::git(env.dir.path(), &["clone", "-q", &remote.to_string_lossy(), &plain.to_string_lossy()]);
    let home = env.dir.path().join(format!("plain-home-{repo}"));
    let opencode = |args: &[&str]| {
        let mut cmd = std::process::Command::new(support::opencode_bin());
        // opencode takes its directory from PWD when set, which the bench inherits.
        cmd.current_dir(&plain)
            .env("PWD", &plain)
            .args(args)
            .env("HOME", home.join("home"))
            .env("XDG_DATA_HOME", home.join("data"))
            .env("XDG_STATE_HOME", home.join("state"))
            .env("XDG_CACHE_HOME", home.join("cache"))
            .env("XDG_CONFIG_HOME", support::package_dir())
            .env("OPENCODE_CONFIG", env.dir.path().join("opencode.json"))
            .env("OPENCODE_CONFIG_CONTENT", kugetsu::opencode::HEADLESS_CONFIG)
            .env("OPENCODE_DISABLE_MODELS_FETCH", "1")
            .env("OPENCODE_DISABLE_AUTOUPDATE", "1")
            .stdin(std::process::Stdio::null());
        let out = cmd.output().expect("opencode runs");
        assert!(out.status.success(), "opencode run failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let start = format!("PLAIN-START-{repo}");
    env.model.on(&start, vec![Step::Answer("started".into())]);
    let first = opencode(&["run", "--format", "json", &start]);
    let session = first
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v["sessionID"].as_str().map(str::to_owned))
        .expect("opencode run names its session");
    (0..count)
        .map(|i| {
            let marker = format!("PLAIN-TURN-{repo}-{i}");
            let steps = vec![Step::Bash(format!("echo {marker} >> notes.txt")), Step::Answer("done".into())];
            env.model.on(&marker, steps);
            let started = Instant::now();
            opencode(&["run", "--format", "json", "-s", &session, &marker]);
            started.elapsed()
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "  {label:<36} n={:<5} p50={:>6.2} ms  p99={:>6.2} ms  max={:>7.2} ms",
        samples.len(),
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
    );
}

/// Webhook answer times at `rate` deliveries per second for `seconds`, each on a
/// new connection, alternating a stored job and an ignored comment.
async fn acks_under_load(url: &str, rate: u32, seconds: u32) -> (Vec<Duration>, Vec<Duration>) {
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let url = url.to_owned();
    let start = tokio::time::Instant::now();
    let period = Duration::from_secs(1) / rate;
    let mut tasks = Vec::new();
    for i in 0..u64::from(rate * seconds) {
        let (trigger, number) = (i % 2 == 0, 1000 + i / 2);
        let text = if trigger { "@kugetsu queued behind the busy runs" } else { "a comment without a mention" };
        let delivery = mention("small", number, 100_000 + i, text);
        let (client, url) = (client.clone(), url.clone());
        let due = start + period * u32::try_from(i).unwrap();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(due).await;
            let sent = Instant::now();
            let (status, text) = delivery.post_with(&client, url.as_str()).await;
            assert_eq!(status, if trigger { 202 } else { 200 }, "{text}");
            (trigger, sent.elapsed())
        }));
    }
    let (mut stored, mut ignored) = (Vec::new(), Vec::new());
    for task in tasks {
        let (trigger, took) = task.await.unwrap();
        if trigger { stored.push(took) } else { ignored.push(took) }
    }
    (stored, ignored)
}

fn resident_mib(pid: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

async fn wait_for_ready(bot: &Bot, repo: &str) {
    let repo = format!("tea/acme/{repo}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while bot.engine().ready_checkouts(&repo) == 0 {
        assert!(Instant::now() < deadline, "no ready checkout of {repo}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The repository's ready checkout and its opencode home.
fn ready_checkout(env: &TestEnv, repo: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let root = env.state_dir().join("worktrees/tea/acme").join(repo);
    let dir = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(".ready-")))
        .expect("a ready checkout");
    let home = env.state_dir().join("opencode/homes/tea/acme").join(repo).join(dir.file_name().unwrap());
    (dir, home)
}

/// Space used by the files under `dir`, by their allocated blocks.
fn disk_mib(dir: &std::path::Path) -> f64 {
    use std::os::unix::fs::MetadataExt;
    let mut bytes = 0u64;
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            }
            bytes += meta.blocks() * 512;
        }
    }
    bytes as f64 / (1024.0 * 1024.0)
}

/// Resident memory of the opencode server whose home is `home`.
fn opencode_servers_of(home: &std::path::Path) -> f64 {
    opencode_servers_where(&format!("XDG_DATA_HOME={}", home.join("data").display())).1
}

/// Resident memory of the opencode servers under `state`: (count, total MiB).
fn opencode_servers(state: &std::path::Path) -> (usize, f64) {
    opencode_servers_where(&format!("XDG_DATA_HOME={}/", state.join("opencode/homes").display()))
}

/// The opencode servers with an environment variable starting with `marker`.
fn opencode_servers_where(marker: &str) -> (usize, f64) {
    let mut found = (0, 0.0);
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
        let is_server = std::fs::read_to_string(entry.path().join("cmdline")).is_ok_and(|c| c.contains("serve"))
            && std::fs::read_to_string(entry.path().join("comm")).is_ok_and(|c| !c.starts_with("bwrap"));
        if is_server && environ.split(|b| *b == 0).any(|v| v.starts_with(marker.as_bytes())) {
            found = (found.0 + 1, found.1 + resident_mib(&pid));
        }
    }
    found
}

/// `kugetsu list` with `count` issues tracked: the median of three whole runs of
/// the command, start-up included.
async fn list_with_issues(env: &TestEnv, count: u64) -> Duration {
    use kugetsu::store::{IssueSession, SessionStatus, SqliteStore, Store};
    let store = SqliteStore::open(&env.state_dir().join("kugetsu.db")).await.unwrap();
    for number in 1..=count {
        let issue: kugetsu::issue_ref::IssueRef = format!("tea/acme/listed#{number}").parse().unwrap();
        let now = kugetsu::store::now_millis();
        let record = IssueSession {
            branch: format!("kugetsu/{number}"),
            worktree: env.state_dir().join(format!("worktrees/tea/acme/listed/{number}")),
            issue,
            session_id: Some(format!("ses_{number:026}")),
            status: SessionStatus::Idle,
            last_pushed_sha: None,
            last_result: None,
            last_error: None,
            created_at: now,
            updated_at: now,
            last_run_at: Some(now),
        };
        store.save_issue_session(&record).await.unwrap();
    }
    drop(store);
    let runs = (0..3)
        .map(|_| {
            let started = Instant::now();
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_kugetsu"))
                .arg("--config")
                .arg(&env.config_path)
                .arg("list")
                .env("TOKEN", TOKEN)
                .env("SECRET", SECRET)
                .env("LOCAL_WEBHOOK_SECRET", SECRET)
                .output()
                .expect("kugetsu list runs");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("#{count}")));
            started.elapsed()
        })
        .collect();
    median(runs)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let stages = StageLog::default();
    let only_stages = tracing_subscriber::filter::filter_fn(|m| m.target() == "kugetsu::stage");
    tracing_subscriber::registry().with(stages.clone().with_filter(only_stages)).init();

    let forge = FakeForge::start().await;
    forge.set_permission("alice", "write");
    forge.set_permission(support::fake_forge::BOT_LOGIN, "admin");
    forge.accept_token(TOKEN, support::fake_forge::BOT_LOGIN);
    let extra = format!(
        "\n[bot]\nlisten = \"127.0.0.1:0\"\n\n[instances.tea]\nkind = \"gitea\"\napi_url = \"{}\"\ngit_url = \"{{remotes}}\"\ntoken_env = \"TOKEN\"\nwebhook_secret_env = \"SECRET\"\n",
        forge.gitea_api()
    );
    let env = TestEnv::with(EnvOptions { extra, run_timeout: "10m", ..EnvOptions::default() }).await;
    let text = std::fs::read_to_string(&env.config_path)
        .unwrap()
        .replace("{remotes}", env.remotes.to_str().unwrap())
        .replace("concurrency = 2", "concurrency = 4")
        .replace("[pool]\nsize = 0", "[pool]\nsize = 1");
    std::fs::write(&env.config_path, text).unwrap();
    make_repository(&env, "small", 200);
    make_repository(&env, "big", 10_000);
    let config = env.config_with_env(&[("SECRET", SECRET), ("LOCAL_WEBHOOK_SECRET", SECRET), ("TOKEN", TOKEN)]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bot = Bot::start(config, listener).await.expect("bot starts");
    let url = webhook::Endpoint { url: format!("http://{}/webhooks/tea", bot.addr), forge: forge.clone() };
    let bench = Bench { env, forge, url, stages };

    // `KUGETSU_BENCH_ONLY=acks` (or `turns`, `list`) runs one part, for quicker tries.
    let only = std::env::var("KUGETSU_BENCH_ONLY").ok();
    let wants = |part: &str| only.as_deref().is_none_or(|o| o == part);

    if wants("turns") {
        let mut follow_up_totals = HashMap::new();
        // Comment ids are the forge's, unique across repositories.
        for (repo, files, ids) in [("small", 200, 0), ("big", 10_000, 1_000)] {
            let cold = bench.turn(repo, 1, ids + 1).await;
            // The first run's repository gets a ready checkout once the run is over.
            wait_for_ready(&bot, repo).await;
            let warm = bench.turn(repo, 2, ids + 2).await;
            // Follow-ups are timed with the pool full again, as on a quiet bot.
            wait_for_ready(&bot, repo).await;
            let mut follow_ups = Vec::new();
            for i in 0..FOLLOW_UPS as u64 {
                follow_ups.push(bench.turn(repo, 2, ids + 10 + i).await);
            }
            let follow_up = median_turn(&follow_ups);
            let totals: Vec<Duration> = follow_ups.iter().filter_map(|t| t.last().map(|(_, d)| *d)).collect();
            follow_up_totals.insert(repo, totals);
            print_turns(
                &format!("one turn (a bash command, commit, push, comment), {files} files"),
                &[
                    ("new issue, cold", &cold),
                    ("new issue, ready checkout", &warm),
                    (&format!("follow-up (median of {FOLLOW_UPS})"), &follow_up),
                ],
            );
        }

        for (repo, files) in [("small", 200), ("big", 10_000)] {
            println!("\nthe same follow-up turn, {files} files");
            let plain = opencode_run_turns(&bench.env, repo, 3);
            let kugetsu = median(follow_up_totals.remove(repo).unwrap_or_default());
            let earlier = median(plain.clone());
            println!("  kugetsu, delivery → comment (commit and push included)  {:>8}", ms(kugetsu));
            println!("  `opencode run --format json -s <id>` (median of {})       {:>8}", plain.len(), ms(earlier));
            let ratio = earlier.as_secs_f64() / kugetsu.as_secs_f64();
            println!("  ratio                                                     {ratio:>7.1}×");
        }

        println!("\nready checkouts (one per repository, made again after each is taken)");
        for repo in ["small", "big"] {
            wait_for_ready(&bot, repo).await;
            let (dir, home) = ready_checkout(&bench.env, repo);
            let server = opencode_servers_of(&home);
            println!(
                "  {repo:<6} opencode serve {:>5.0} MiB resident; checkout {:>6.1} MiB and opencode files {:>5.1} MiB on disk",
                server,
                disk_mib(&dir),
                disk_mib(&home)
            );
        }
    }

    let in_process = resident_mib("self");
    bot.shutdown().await;

    if wants("acks") {
        // From here the bot runs as deployed, `kugetsu serve` in a process of its own,
        // so the answers timed are its own, not shared with the fakes and the load.
        let vars: Vec<(String, String)> = [("SECRET", SECRET), ("LOCAL_WEBHOOK_SECRET", SECRET), ("TOKEN", TOKEN)]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .chain([("KUGETSU_LOG".to_owned(), "info".to_owned())])
            .collect();
        let log = bench.env.dir.path().join("serve.log");
        let serve = support::serve::ServeProcess::spawn(&bench.env.config_path, &vars, None, log);
        let url = webhook::Endpoint { url: serve.url("tea"), forge: bench.forge.clone() };
        // Four runs that never finish hold every worker while deliveries arrive.
        bench.env.model.on("BUSY", vec![Step::Hang]);
        for number in 900..904 {
            let d = mention("small", number, number, "@kugetsu BUSY");
            assert_eq!(d.post(&url).await.0, 202);
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while bench.env.model.arrivals_for("BUSY").len() < 4 {
            assert!(Instant::now() < deadline, "the four runs never started");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Its start-up made ready checkouts of both repositories; the load waits for them.
        // (Alone, this part has no mirrors yet at start-up, so no ready checkouts.)
        let ready = if wants("turns") { 2 } else { 0 };
        while serve.log_text().matches("a checkout is ready").count() < ready {
            assert!(Instant::now() < deadline, "no ready checkouts: {}", serve.log_text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!(
            "\nwebhook answers by `kugetsu serve`, 200 deliveries/s for 10 s, new connection each, 4 agent runs active"
        );
        let (stored, ignored) = acks_under_load(&url.url, 200, 10).await;
        report("verified, stored as a job (202)", stored);
        report("verified, not triggering (200)", ignored);

        println!("\nresident memory");
        println!(
            "  `kugetsu serve`, after the load                     {:>7.0} MiB",
            resident_mib(&serve.pid().to_string())
        );
        println!("  the bench process (the bot in-process, and the fakes) {:>7.0} MiB", in_process);
        let (servers, mib) = opencode_servers(&bench.env.state_dir());
        println!("  opencode serve, {servers} running                        {mib:>7.0} MiB");
        drop(serve);
    }

    if wants("list") {
        // The servers just stopped give back gigabytes; the list is timed on a quiet machine.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let listed = list_with_issues(&bench.env, 10_000).await;
        println!("\n`kugetsu list`, 10,000 issues tracked (median of 3, process start included)  {}", ms(listed));
    }
}
