//! End-to-end tests of the engine with real opencode, real git and real SQLite;
//! only the model is fake.

mod support;

use std::time::Duration;

use kugetsu::engine::{EngineError, Finding, Mode, RunOptions};
use kugetsu::issue_ref::IssueRef;
use kugetsu::store::SessionStatus;
use support::{EnvOptions, Step, TestEnv, git, transcript};

fn issue(n: u64) -> IssueRef {
    format!("local/acme/widget#{n}").parse().unwrap()
}

fn commit_file(name: &str, subject: &str) -> Step {
    Step::Bash(format!("echo {name} > {name} && git add {name} && git commit -q -m '{subject}'"))
}

async fn start_commits_in_its_worktree_and_pushes(driver: &'static str) {
    let env = TestEnv::new(driver).await;
    env.model
        .on("MARK-START", vec![commit_file("hello.txt", "agent: add hello"), Step::Answer("Added hello.txt".into())]);
    let engine = env.engine().await;
    let result =
        engine.run(&issue(1), "MARK-START please add a file", Mode::Start, RunOptions::default()).await.unwrap();

    assert_eq!(result.answer, "Added hello.txt");
    assert_eq!(result.branch, "kugetsu/1");
    assert_eq!(result.commits.len(), 1, "{result:?}");
    assert_eq!(result.commits[0].subject, "agent: add hello");
    assert_eq!(result.files_changed, vec!["hello.txt".to_owned()]);
    assert_eq!(result.pushed_to.as_deref(), Some(env.remote().to_str().unwrap()));
    assert!(result.tokens.total() > 0, "{:?}", result.tokens);

    let worktree = env.state_dir().join("worktrees/local/acme/widget/1");
    assert!(worktree.join("hello.txt").exists(), "the commit landed in the issue's worktree");
    assert_eq!(git(&worktree, &["log", "-1", "--format=%s"]).trim(), "agent: add hello");
    assert!(env.remote_files("kugetsu/1").contains(&"hello.txt".to_owned()));
    assert!(!env.remote_files("main").contains(&"hello.txt".to_owned()), "main is untouched");
    let mirror = env.state_dir().join("mirrors/local/acme/widget.git");
    assert_eq!(git(&mirror, &["rev-parse", "--is-bare-repository"]).trim(), "true");

    let record = engine.store().issue_session(&issue(1)).await.unwrap().unwrap();
    assert_eq!(record.status, SessionStatus::Idle);
    assert_eq!(record.session_id.as_deref(), Some(result.session_id.as_str()));
    assert_eq!(record.last_result.as_ref(), Some(&result));
    engine.shutdown().await;
}

#[tokio::test]
async fn server_start_commits_in_its_worktree_and_pushes() {
    start_commits_in_its_worktree_and_pushes("server").await;
}

#[tokio::test]
async fn cli_start_commits_in_its_worktree_and_pushes() {
    start_commits_in_its_worktree_and_pushes("cli").await;
}

async fn continue_reuses_the_session_and_its_history(driver: &'static str) {
    let env = TestEnv::new(driver).await;
    env.model.on("MARK-ONE", vec![Step::Answer("first answer ALPHA".into())]);
    env.model.on("MARK-TWO", vec![commit_file("two.txt", "agent: second"), Step::Answer("second answer".into())]);
    let engine = env.engine().await;
    let first = engine.run(&issue(2), "MARK-ONE remember ALPHA", Mode::Start, RunOptions::default()).await.unwrap();
    let second =
        engine.run(&issue(2), "MARK-TWO what did you say?", Mode::Continue, RunOptions::default()).await.unwrap();

    assert_eq!(first.session_id, second.session_id);
    let seen = transcript(&env.model.requests_for("MARK-TWO")[0]);
    assert!(seen.contains("MARK-ONE remember ALPHA") && seen.contains("first answer ALPHA"), "{seen}");
    assert_eq!(second.commits.len(), 1);
    assert!(env.remote_files("kugetsu/2").contains(&"two.txt".to_owned()));
    engine.shutdown().await;
}

#[tokio::test]
async fn server_continue_reuses_the_session_and_its_history() {
    continue_reuses_the_session_and_its_history("server").await;
}

#[tokio::test]
async fn cli_continue_reuses_the_session_and_its_history() {
    continue_reuses_the_session_and_its_history("cli").await;
}

#[tokio::test]
async fn start_and_continue_refuse_the_wrong_state() {
    let env = TestEnv::new("server").await;
    let engine = env.engine().await;
    let err = engine.run(&issue(3), "hello", Mode::Continue, RunOptions::default()).await.unwrap_err();
    assert!(matches!(&err, EngineError::BadInput(m) if m.contains("never started")), "{err}");
    engine.run(&issue(3), "hello", Mode::Start, RunOptions::default()).await.unwrap();
    let err = engine.run(&issue(3), "again", Mode::Start, RunOptions::default()).await.unwrap_err();
    assert!(matches!(&err, EngineError::BadInput(m) if m.contains("already started")), "{err}");
    engine.shutdown().await;
}

#[tokio::test]
async fn init_then_start_forks_the_base_session_into_the_worktree() {
    let env = TestEnv::new("server").await;
    env.model.on("MARK-BASE", vec![Step::Answer("conventions noted: BASEFACT".into())]);
    env.model.on("MARK-FORK", vec![commit_file("forked.txt", "agent: forked work"), Step::Answer("done".into())]);
    let engine = env.engine().await;
    let repo = "local/acme/widget".parse().unwrap();
    let base = engine.init(&repo, Some("MARK-BASE read the conventions"), false).await.unwrap();
    let err = engine.init(&repo, None, false).await.unwrap_err();
    assert!(matches!(err, EngineError::BadInput(_)), "a second init needs --force");

    let result = engine.run(&issue(4), "MARK-FORK do the work", Mode::Start, RunOptions::default()).await.unwrap();
    assert_ne!(result.session_id, base.session_id);
    let seen = transcript(&env.model.requests_for("MARK-FORK")[0]);
    assert!(seen.contains("MARK-BASE read the conventions") && seen.contains("BASEFACT"), "{seen}");
    let worktree = env.state_dir().join("worktrees/local/acme/widget/4");
    assert!(worktree.join("forked.txt").exists(), "work landed in the issue's worktree");
    assert!(!base.worktree.join("forked.txt").exists(), "not in the base checkout");
    assert_eq!(git(&base.worktree, &["status", "--porcelain"]).trim(), "");
    assert!(env.remote_files("kugetsu/4").contains(&"forked.txt".to_owned()));

    let replaced = engine.init(&repo, None, true).await.unwrap();
    assert_ne!(replaced.session_id, base.session_id);
    engine.destroy_base(&repo).await.unwrap();
    assert!(engine.store().base_session(&repo).await.unwrap().is_none());
    engine.shutdown().await;
}

#[tokio::test]
async fn two_issues_run_at_once_without_touching_each_other() {
    let env = TestEnv::new("server").await;
    env.model.on("MARK-A", vec![commit_file("a.txt", "agent: a"), Step::Answer("did a".into())]);
    env.model.on("MARK-B", vec![commit_file("b.txt", "agent: b"), Step::Answer("did b".into())]);
    let engine = env.engine().await;
    let (five, six) = (issue(5), issue(6));
    let (a, b) = tokio::join!(
        engine.run(&five, "MARK-A", Mode::Start, RunOptions::default()),
        engine.run(&six, "MARK-B", Mode::Start, RunOptions::default()),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(a.session_id, b.session_id);
    assert_eq!(a.files_changed, vec!["a.txt".to_owned()]);
    assert_eq!(b.files_changed, vec!["b.txt".to_owned()]);
    let files_a = env.remote_files("kugetsu/5");
    let files_b = env.remote_files("kugetsu/6");
    assert!(files_a.contains(&"a.txt".to_owned()) && !files_a.contains(&"b.txt".to_owned()));
    assert!(files_b.contains(&"b.txt".to_owned()) && !files_b.contains(&"a.txt".to_owned()));
    engine.shutdown().await;
}

#[tokio::test]
async fn destroy_removes_worktree_session_and_record_but_keeps_the_branch() {
    let env = TestEnv::new("server").await;
    let engine = env.engine().await;
    let result = engine.run(&issue(7), "hello", Mode::Start, RunOptions::default()).await.unwrap();
    let worktree = env.state_dir().join("worktrees/local/acme/widget/7");
    assert!(env.opencode_sessions(&worktree).contains(&result.session_id));

    let warnings = engine.destroy(&issue(7)).await.unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(!worktree.exists());
    assert!(engine.store().issue_session(&issue(7)).await.unwrap().is_none());
    // The issue's sessions lived in its own opencode home, which is gone with it.
    let home = env.state_dir().join("opencode/homes/local/acme/widget/7");
    assert!(!home.exists(), "{} is left", home.display());
    assert!(env.remote_has_branch("kugetsu/7"), "the pushed branch stays");
    let err = engine.destroy(&issue(7)).await.unwrap_err();
    assert!(matches!(err, EngineError::BadInput(_)));
    engine.shutdown().await;
}

#[tokio::test]
async fn prune_catches_a_session_deleted_behind_our_back() {
    let env = TestEnv::new("server").await;
    let engine = env.engine().await;
    let result = engine.run(&issue(8), "hello", Mode::Start, RunOptions::default()).await.unwrap();
    let worktree = env.state_dir().join("worktrees/local/acme/widget/8");
    let out = env.opencode(&worktree).args(["session", "delete", &result.session_id]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stray = env.state_dir().join("worktrees/local/acme/widget/99");
    std::fs::create_dir_all(&stray).unwrap();

    let report = engine.prune(false).await.unwrap();
    assert!(
        report.findings.contains(&Finding::MissingSession { issue: issue(8), session_id: result.session_id.clone() }),
        "{report:?}"
    );
    assert!(report.findings.contains(&Finding::OrphanWorktree { path: stray.clone() }), "{report:?}");
    assert!(engine.store().issue_session(&issue(8)).await.unwrap().is_some(), "a dry run removes nothing");

    let report = engine.prune(true).await.unwrap();
    assert!(report.removed && report.findings.len() >= 2);
    assert!(engine.store().issue_session(&issue(8)).await.unwrap().is_none());
    assert!(!stray.exists() && !worktree.exists());
    assert!(engine.prune(false).await.unwrap().findings.is_empty());
    engine.shutdown().await;
}

#[tokio::test]
async fn a_session_deleted_behind_our_back_fails_the_next_run_clearly() {
    let env = TestEnv::new("server").await;
    let engine = env.engine().await;
    let result = engine.run(&issue(12), "hello", Mode::Start, RunOptions::default()).await.unwrap();
    let worktree = env.state_dir().join("worktrees/local/acme/widget/12");
    let out = env.opencode(&worktree).args(["session", "delete", &result.session_id]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    env.model.on("MARK-AFTER-DELETE", vec![Step::Answer("answered a deleted session".into())]);
    let err = engine.run(&issue(12), "MARK-AFTER-DELETE", Mode::Continue, RunOptions::default()).await.unwrap_err();
    assert!(err.to_string().contains("was deleted"), "{err}");
    assert!(env.model.requests_for("MARK-AFTER-DELETE").is_empty(), "nothing was answered in its place");
    engine.shutdown().await;
}

async fn debug_writes_the_event_log(driver: &'static str) {
    let env = TestEnv::new(driver).await;
    env.model.on("MARK-DEBUG", vec![Step::Answer("DEBUGGED".into())]);
    let engine = env.engine().await;
    let result = engine
        .run(&issue(9), "MARK-DEBUG", Mode::Start, RunOptions { debug: true, ..RunOptions::default() })
        .await
        .unwrap();
    let log = env.state_dir().join("sessions").join(&result.session_id).join("debug.log");
    // The event stream may trail the reply by a moment.
    for _ in 0..50 {
        if std::fs::read_to_string(&log).is_ok_and(|t| t.contains("DEBUGGED")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(text.contains("DEBUGGED") && text.contains(&result.session_id), "{text}");
    engine.shutdown().await;
}

#[tokio::test]
async fn server_debug_writes_the_event_log() {
    debug_writes_the_event_log("server").await;
}

#[tokio::test]
async fn cli_debug_writes_the_event_log() {
    debug_writes_the_event_log("cli").await;
}

#[tokio::test]
async fn cli_driver_refuses_to_fork_with_a_clear_error() {
    let env = TestEnv::new("cli").await;
    let engine = env.engine().await;
    let repo = "local/acme/widget".parse().unwrap();
    engine.init(&repo, Some("prime it"), false).await.unwrap();
    let err = engine.run(&issue(10), "work", Mode::Start, RunOptions::default()).await.unwrap_err();
    assert!(matches!(&err, EngineError::BadInput(m) if m.contains("cannot fork")), "{err}");
    let record = engine.store().issue_session(&issue(10)).await.unwrap().unwrap();
    assert_eq!(record.status, SessionStatus::Failed);
    engine.destroy(&issue(10)).await.unwrap();
}

#[tokio::test]
async fn missing_opencode_fails_clearly_and_the_next_run_recovers() {
    let missing = EnvOptions { opencode: Some("/nonexistent/opencode".into()), ..EnvOptions::default() };
    let env = TestEnv::with(missing).await;
    let engine = env.engine().await;
    let err = engine.run(&issue(11), "hello", Mode::Start, RunOptions::default()).await.unwrap_err();
    assert!(matches!(&err, EngineError::Infra(m) if m.contains("cannot start opencode")), "{err}");
    let record = engine.store().issue_session(&issue(11)).await.unwrap().unwrap();
    assert_eq!(record.status, SessionStatus::Failed);

    let fixed = std::fs::read_to_string(&env.config_path)
        .unwrap()
        .replace("/nonexistent/opencode", support::opencode_bin().to_str().unwrap());
    std::fs::write(&env.config_path, fixed).unwrap();
    let engine = env.engine().await;
    let result = engine.run(&issue(11), "hello again", Mode::Continue, RunOptions::default()).await.unwrap();
    assert_eq!(result.answer, "ok");
    engine.shutdown().await;
}

#[tokio::test]
async fn opencode_killed_mid_run_fails_clearly_and_the_next_run_recovers() {
    let env = TestEnv::new("server").await;
    env.model.on("MARK-HANG", vec![Step::Hang]);
    let engine = std::sync::Arc::new(env.engine().await);
    let running = {
        let engine = engine.clone();
        tokio::spawn(async move { engine.run(&issue(12), "MARK-HANG", Mode::Start, RunOptions::default()).await })
    };
    env.model.wait_for_request("MARK-HANG", Duration::from_secs(60)).await;
    assert!(env.kill_opencode() > 0, "found the opencode server to kill");
    let err = running.await.unwrap().unwrap_err();
    assert!(matches!(&err, EngineError::Interrupted(m) if m.contains("opencode")), "{err}");

    // Seen once on CI under load: the next run found the issue lock still held for
    // a moment. The bot waits for a busy issue; say who held it, and require that
    // it passes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let result = loop {
        match engine.run(&issue(12), "after the crash", Mode::Continue, RunOptions::default()).await {
            Err(EngineError::Busy(why)) if tokio::time::Instant::now() < deadline => {
                eprintln!("{why}; held by: {:?}", holders_of(&env.state_dir().join("locks")));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => break other.unwrap(),
        }
    };
    assert_eq!(result.answer, "ok");
    engine.destroy(&issue(12)).await.unwrap();
    engine.shutdown().await;
}

async fn model_errors_fail_the_run_and_leave_state_usable(driver: &'static str) {
    let env = TestEnv::new(driver).await;
    env.model.on("MARK-ERR", vec![Step::Error(500)]);
    let engine = env.engine().await;
    let err = engine.run(&issue(13), "MARK-ERR", Mode::Start, RunOptions::default()).await.unwrap_err();
    assert!(matches!(&err, EngineError::Agent(m) if m.contains("model keeps failing")), "{err}");
    let record = engine.store().issue_session(&issue(13)).await.unwrap().unwrap();
    assert_eq!(record.status, SessionStatus::Failed);
    assert!(record.session_id.is_some(), "the session is kept for the next try");

    let result = engine.run(&issue(13), "try again", Mode::Continue, RunOptions::default()).await.unwrap();
    assert_eq!(Some(result.session_id), record.session_id);
    engine.shutdown().await;
}

#[tokio::test]
async fn server_model_errors_fail_the_run_and_leave_state_usable() {
    model_errors_fail_the_run_and_leave_state_usable("server").await;
}

#[tokio::test]
async fn cli_model_errors_fail_the_run_and_leave_state_usable() {
    model_errors_fail_the_run_and_leave_state_usable("cli").await;
}

async fn a_silent_model_times_out_and_is_aborted(driver: &'static str) {
    let env = TestEnv::with(EnvOptions { driver, run_timeout: "20s", ..EnvOptions::default() }).await;
    env.model.on("MARK-SILENT", vec![Step::Hang]);
    let engine = env.engine().await;
    let err = engine.run(&issue(14), "MARK-SILENT", Mode::Start, RunOptions::default()).await.unwrap_err();
    assert!(matches!(&err, EngineError::Agent(m) if m.contains("took longer than")), "{err}");
    let result = engine.run(&issue(14), "are you there?", Mode::Continue, RunOptions::default()).await.unwrap();
    assert_eq!(result.answer, "ok");
    engine.destroy(&issue(14)).await.unwrap();
    engine.shutdown().await;
}

#[tokio::test]
async fn server_a_silent_model_times_out_and_is_aborted() {
    a_silent_model_times_out_and_is_aborted("server").await;
}

#[tokio::test]
async fn cli_a_silent_model_times_out_and_is_aborted() {
    a_silent_model_times_out_and_is_aborted("cli").await;
}

#[tokio::test]
async fn a_stale_index_lock_left_by_a_crash_does_not_block_the_next_run() {
    let env = TestEnv::new("server").await;
    env.model.on("MARK-LOCK", vec![Step::Bash("echo x > locked.txt".into()), Step::Answer("wrote".into())]);
    let engine = env.engine().await;
    engine.run(&issue(15), "hello", Mode::Start, RunOptions::default()).await.unwrap();
    let admin = env.state_dir().join("worktrees/local/acme/widget/15/.git");
    assert!(admin.is_dir(), "the working copy keeps its own index");
    std::fs::write(admin.join("index.lock"), "").unwrap();
    let result = engine.run(&issue(15), "MARK-LOCK", Mode::Continue, RunOptions::default()).await.unwrap();
    assert_eq!(result.files_changed, vec!["locked.txt".to_owned()]);
    assert!(!admin.join("index.lock").exists());
    engine.shutdown().await;
}

/// Processes with a file under `dir` open, as `pid comm -> path`.
fn holders_of(dir: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path())
                && target.starts_with(dir)
            {
                let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
                found.push(format!("{} {} -> {}", entry.file_name().to_string_lossy(), comm.trim(), target.display()));
            }
        }
    }
    found
}

/// Pushes a commit that is not kugetsu's to `branch` on the test remote.
fn push_foreign(env: &TestEnv, branch: &str) {
    let clone = env.dir.path().join(format!("foreign-{}", branch.replace('/', "-")));
    git(env.dir.path(), &["clone", "-q", env.remote().to_str().unwrap(), clone.to_str().unwrap()]);
    std::fs::write(clone.join("foreign.txt"), "someone else's work\n").unwrap();
    git(&clone, &["add", "foreign.txt"]);
    git(&clone, &["commit", "-q", "-m", "someone else"]);
    git(&clone, &["push", "-q", "origin", &format!("HEAD:refs/heads/{branch}")]);
}

#[tokio::test]
async fn a_foreign_push_is_never_overwritten_and_a_fresh_start_builds_on_the_pushed_branch() {
    let env = TestEnv::new("server").await;
    let engine = env.engine().await;
    // A first run that fails before it pushes leaves the worktree and no push.
    env.model.on("MARK-FAIL-FIRST", vec![Step::Error(500)]);
    engine.run(&issue(20), "MARK-FAIL-FIRST", Mode::Start, RunOptions::default()).await.unwrap_err();
    assert!(!env.remote_has_branch("kugetsu/20"));
    // Then someone else creates the issue's branch.
    push_foreign(&env, "kugetsu/20");
    env.model.on(
        "MARK-FOREIGN",
        vec![
            Step::Bash("echo mine > mine.txt && git add mine.txt && git commit -q -m mine".into()),
            Step::Answer("done".into()),
        ],
    );
    let err = engine.run(&issue(20), "MARK-FOREIGN", Mode::Continue, RunOptions::default()).await.unwrap_err();
    assert!(err.to_string().contains("did not overwrite"), "kugetsu's first push expects no branch: {err}");
    let files = env.remote_files("kugetsu/20");
    assert!(files.contains(&"foreign.txt".to_owned()) && !files.contains(&"mine.txt".to_owned()), "{files:?}");

    // After a reset, the fresh worktree starts from the pushed branch, so the
    // first push adds to it instead of replacing it.
    engine.destroy(&issue(20)).await.unwrap();
    env.model.on(
        "MARK-AGAIN",
        vec![
            Step::Bash("echo again > again.txt && git add again.txt && git commit -q -m again".into()),
            Step::Answer("ok".into()),
        ],
    );
    let result = engine.run(&issue(20), "MARK-AGAIN", Mode::Start, RunOptions::default()).await.unwrap();
    assert!(result.pushed_to.is_some(), "{result:?}");
    let files = env.remote_files("kugetsu/20");
    assert!(files.contains(&"foreign.txt".to_owned()) && files.contains(&"again.txt".to_owned()), "{files:?}");
    engine.shutdown().await;
}

#[tokio::test]
async fn a_fresh_opencode_config_directory_is_set_up_before_the_first_jailed_run() {
    // Jails show opencode's config directory read-only, and opencode stops with
    // EROFS where it cannot write its `.gitignore` there (measured with 1.18.33):
    // kugetsu lets it set the directory up first, in a jail of its own.
    let env = TestEnv::new("server").await;
    let fresh = env.dir.path().join("fresh-config");
    let warm = support::package_dir().join("opencode");
    std::fs::create_dir_all(fresh.join("opencode")).unwrap();
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(warm.join(file), fresh.join("opencode").join(file)).unwrap();
    }
    let copied = std::process::Command::new("cp")
        .args(["-r", warm.join("node_modules").to_str().unwrap(), fresh.join("opencode").to_str().unwrap()])
        .status()
        .unwrap();
    assert!(copied.success());
    assert!(!fresh.join("opencode/.gitignore").exists(), "control: opencode has not set it up");
    let text = std::fs::read_to_string(&env.config_path).unwrap();
    let text = text.replace(&support::package_dir().display().to_string(), &fresh.display().to_string());
    std::fs::write(&env.config_path, text).unwrap();
    env.model.on("MARK-FRESH", vec![Step::Answer("fresh ok".into())]);
    let engine = env.engine().await;
    let result = engine.run(&issue(30), "MARK-FRESH", Mode::Start, RunOptions::default()).await.unwrap();
    assert_eq!(result.answer, "fresh ok");
    assert!(fresh.join("opencode/.gitignore").exists(), "opencode set its config directory up");
    engine.shutdown().await;
}

#[tokio::test]
async fn commits_that_never_reached_the_mirror_are_taken_with_the_next_run() {
    // What a kill of kugetsu between the agent's commit and the hand-over leaves:
    // the working copy is ahead of the mirror when the next run starts.
    let env = TestEnv::new("server").await;
    let engine = env.engine().await;
    env.model.on("MARK-FIRST", vec![commit_file("first.txt", "first"), Step::Answer("one".into())]);
    engine.run(&issue(31), "MARK-FIRST", Mode::Start, RunOptions::default()).await.unwrap();
    let worktree = env.state_dir().join("worktrees/local/acme/widget/31");
    std::fs::write(worktree.join("stranded.txt"), "made before a crash\n").unwrap();
    git(&worktree, &["add", "stranded.txt"]);
    git(&worktree, &["-c", "user.name=a", "-c", "user.email=a@b", "commit", "-q", "-m", "stranded"]);
    env.model.on("MARK-NEXT", vec![commit_file("next.txt", "next"), Step::Answer("two".into())]);
    let result = engine.run(&issue(31), "MARK-NEXT", Mode::Continue, RunOptions::default()).await.unwrap();
    assert_eq!(result.answer, "two");
    let files = env.remote_files("kugetsu/31");
    for file in ["first.txt", "stranded.txt", "next.txt"] {
        assert!(files.contains(&file.to_owned()), "{file} reached the remote: {files:?}");
    }
    engine.shutdown().await;
}
