//! Crash safety: `kugetsu serve` is killed with SIGKILL at chosen moments
//! (`KUGETSU_CRASH_AT`), restarted, and the forge and the bare remote must show
//! the job done exactly once.

mod support;

use std::time::Duration;

use support::Step;
use support::bot_env::{BotEnv, gh, gh_comment};
use support::serve::ServeProcess;

async fn survives_a_crash_at(point: &str, number: u64, agent_may_rerun: bool) {
    let mut t = BotEnv::new().await;
    t.stop().await;
    let marker = format!("MARK-CRASH-{number}");
    t.env.model.on(
        &marker,
        vec![
            Step::Bash(format!("echo {point} > crash.txt && git add crash.txt && git commit -q -m 'agent: {point}'")),
            Step::Answer(format!("done despite {point}")),
        ],
    );
    let vars = t.secret_vars();
    let log = t.env.dir.path().join("serve.log");
    let mut serve = ServeProcess::spawn(&t.env.config_path, &vars, Some(point), log.clone());
    let delivery = gh(&gh_comment(number, 70 + number, &format!("@kugetsu {marker}"), "alice"), "crash-1");
    let (status, text) = delivery.post(&t.at(serve.url("gh"))).await;
    assert_eq!(status, 202, "{text}");
    assert!(serve.wait_for_exit(Duration::from_secs(120)), "never reached {point}: {}", serve.log_text());
    let chains_before = t.env.model.requests_for(&marker).len();

    let serve = ServeProcess::spawn(&t.env.config_path, &vars, None, log);
    let jobs = t.wait_for_jobs_done(1).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].2, "done", "{}", serve.log_text());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let comments = t.forge.comments("acme/widget", number);
    assert_eq!(comments.len(), 1, "exactly one comment after a crash at {point}: {comments:?}");
    assert!(comments[0].body.contains(&format!("done despite {point}")), "{:?}", comments[0].body);
    // The run's progress comment, if it made one before the crash, is taken up
    // again or folded from the saved answer: none is left saying it works.
    t.forge
        .wait_until(&format!("no progress comment left working after a crash at {point}"), |f| {
            let all = f.progress_comments("acme/widget", number);
            all.len() <= 1 && all.iter().all(|c| !c.body.starts_with("⏳"))
        })
        .await;
    let branch = format!("kugetsu/{number}");
    assert!(t.env.remote_files(&branch).contains(&"crash.txt".to_owned()), "the work reached the remote");
    if !agent_may_rerun {
        assert_eq!(t.env.model.requests_for(&marker).len(), chains_before, "the agent did not run twice");
    }
    let out = t.env.kugetsu().args(["prune", "--json"]).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("prune report");
    assert_eq!(report["findings"], serde_json::json!([]), "nothing orphaned after a crash at {point}");
    let index_lock =
        t.env.state_dir().join("worktrees/gh/acme/widget").join(number.to_string()).join(".git/index.lock");
    assert!(!index_lock.exists());
    drop(serve);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_right_after_the_job_is_taken() {
    survives_a_crash_at("after-claim", 61, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_git() {
    survives_a_crash_at("after-fetch", 62, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_the_push() {
    survives_a_crash_at("before-push", 63, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_right_after_the_push() {
    survives_a_crash_at("after-push", 64, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_before_the_comment() {
    survives_a_crash_at("before-comment", 65, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_right_after_the_comment() {
    survives_a_crash_at("after-comment", 66, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_the_agent_run() {
    let mut t = BotEnv::new().await;
    t.stop().await;
    t.env.model.on("MARK-MIDRUN", vec![Step::Hang]);
    let vars = t.secret_vars();
    let log = t.env.dir.path().join("serve.log");
    let serve = ServeProcess::spawn(&t.env.config_path, &vars, None, log.clone());
    let delivery = gh(&gh_comment(67, 167, "@kugetsu MARK-MIDRUN", "alice"), "mid-1");
    assert_eq!(delivery.post(&t.at(serve.url("gh"))).await.0, 202);
    t.env.model.wait_for_request("MARK-MIDRUN", Duration::from_secs(120)).await;
    let pid = serve_pid(&serve);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    drop(serve);
    // opencode dies with kugetsu rather than lingering as an orphan.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(t.env.kill_opencode(), 0, "no opencode process outlived kugetsu");

    t.env.model.on("MARK-MIDRUN", vec![Step::Answer("finished after the restart".into())]);
    let serve = ServeProcess::spawn(&t.env.config_path, &vars, None, log);
    t.wait_for_jobs_done(1).await;
    let comments = t.forge.wait_for_comments("acme/widget", 67, 1).await;
    assert!(comments[0].body.contains("finished after the restart"), "{}", serve.log_text());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(t.forge.comments("acme/widget", 67).len(), 1);
}

fn serve_pid(serve: &ServeProcess) -> i32 {
    serve.pid()
}
