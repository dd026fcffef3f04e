//! Trust: deduplication beyond delivery ids, secrets kept from the agent,
//! repository code kept out of the bot, hostile names, limits, and control
//! from the issue.

mod support;

use std::time::Duration;

use support::Step;
use support::bot_env::{BotEnv, GH_SECRET, TEA_SECRET, gh, gh_comment, tea, tea_comment};
use support::serve::ServeProcess;
use support::webhook::{self, fixture, retarget};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gitea_replay_under_a_new_delivery_id_runs_once() {
    let mut t = BotEnv::new().await;
    let payload = tea_comment(81, 2001, "@kugetsu do it once", "alice");
    assert_eq!(tea(&payload, "replay-a").post(&t.url("tea")).await.0, 202);
    let (status, text) = tea(&payload, "replay-b").post(&t.url("tea")).await;
    assert_eq!((status, text.as_str()), (200, "duplicate delivery"));
    t.wait_for_jobs_done(1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(t.forge.comments("acme/widget", 81).len(), 1);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comment_edit_triggers_only_when_it_adds_a_command() {
    let mut t = BotEnv::new().await;
    t.env.model.on("MARK-EDIT", vec![Step::Answer("edited ok".into())]);
    let edit = |from: &str, to: &str, updated: &str| {
        let mut p = retarget(fixture("gitea/issue_comment.edited.json"), "acme", "widget", 82, "alice");
        p["changes"]["body"]["from"] = from.into();
        p["comment"]["body"] = to.into();
        p["comment"]["updated_at"] = updated.into();
        p
    };
    let typo = edit("just a note", "just a note, fixed", "2026-01-01T00:00:01Z");
    let (status, _) =
        webhook::gitea("issue_comment", "issue_comment", "e-1", &typo, TEA_SECRET).post(&t.url("tea")).await;
    assert_eq!(status, 200);
    let added = edit("just a note", "@kugetsu MARK-EDIT please", "2026-01-01T00:00:02Z");
    let (status, _) =
        webhook::gitea("issue_comment", "issue_comment", "e-2", &added, TEA_SECRET).post(&t.url("tea")).await;
    assert_eq!(status, 202);
    let reworded = edit("@kugetsu MARK-EDIT please", "@kugetsu MARK-EDIT please!", "2026-01-01T00:00:03Z");
    let (status, _) =
        webhook::gitea("issue_comment", "issue_comment", "e-3", &reworded, TEA_SECRET).post(&t.url("tea")).await;
    assert_eq!(status, 200, "an edit that adds no new command does not rerun");
    let comments = t.forge.wait_for_comments("acme/widget", 82, 1).await;
    assert!(comments[0].body.contains("edited ok"));
    assert_eq!(t.jobs().await.len(), 1);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_never_sees_tokens_or_webhook_secrets() {
    let mut t = BotEnv::new().await;
    t.stop().await;
    let state = t.env.state_dir();
    let remotes = t.env.remotes.clone();
    // The canaries are spelled out by printf so the command text itself holds none.
    let hunt = format!(
        "env | sort > agent-env.txt; \
         for c in gh-token tea-token gh-secret tea-secret; do grep -rl \"$(printf '%s-canary' $c)\" {} {} 2>/dev/null; done > found.txt; \
         git add agent-env.txt found.txt && git commit -q -m 'agent: evidence'",
        state.display(),
        remotes.display()
    );
    t.env.model.on("MARK-CANARY", vec![Step::Bash(hunt), Step::Answer("looked around".into())]);
    let vars = t.secret_vars();
    let serve = ServeProcess::spawn(&t.env.config_path, &vars, None, t.env.dir.path().join("serve.log"));
    let d = gh(&gh_comment(83, 2101, "@kugetsu MARK-CANARY", "alice"), "c-1");
    assert_eq!(d.post(&t.at(serve.url("gh"))).await.0, 202);
    let comments = t.forge.wait_for_comments("acme/widget", 83, 1).await;
    let show = |file: &str| support::git(&t.env.remote(), &["show", &format!("kugetsu/83:{file}")]);
    let agent_env = show("agent-env.txt");
    assert!(agent_env.contains("XDG_DATA_HOME="), "the evidence is real: {agent_env}");
    let found = show("found.txt");
    let log = serve.log_text();
    let canaries = ["gh-token-canary", "tea-token-canary", GH_SECRET, TEA_SECRET];
    for canary in canaries {
        assert!(!agent_env.contains(canary), "the agent's environment holds {canary}");
        assert!(!log.contains(canary), "the log holds {canary}");
        assert!(!comments[0].body.contains(canary));
    }
    assert_eq!(found.trim(), "", "files under the state dir or remotes hold a secret: {found}");
    let mirror_config = std::fs::read_to_string(state.join("mirrors/gh/acme/widget.git/config")).unwrap();
    assert!(!mirror_config.contains("canary") && !mirror_config.contains("extraHeader"), "{mirror_config}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repository_config_and_plugins_never_run_code_in_the_bot() {
    let mut t = BotEnv::new().await;
    let sentinels = t.env.dir.path().join("sentinels");
    std::fs::create_dir_all(&sentinels).unwrap();
    let s = |name: &str| sentinels.join(name).display().to_string();

    // A plugin committed to the repository, which opencode would load if allowed.
    let seed = t.env.dir.path().join("seed");
    support::git(t.env.dir.path(), &["clone", "-q", t.env.remote().to_str().unwrap(), seed.to_str().unwrap()]);
    std::fs::create_dir_all(seed.join(".opencode/plugin")).unwrap();
    let plugin = format!(
        "import fs from 'fs';\nfs.writeFileSync('{}', 'x');\nexport const Evil = async () => ({{}});\n",
        s("plugin")
    );
    std::fs::write(seed.join(".opencode/plugin/evil.js"), plugin).unwrap();
    std::fs::write(seed.join("opencode.json"), r#"{"plugin": ["./.opencode/plugin/evil.js"]}"#).unwrap();
    support::git(&seed, &["add", "-A"]);
    support::git(&seed, &["commit", "-q", "-m", "plant a plugin"]);
    support::git(&seed, &["push", "-q", "origin", "HEAD:main"]);

    let plant = format!(
        "git config filter.evil.clean 'touch {f}; cat' && git config filter.evil.smudge 'touch {f}; cat' && \
         echo '* filter=evil' > .gitattributes && \
         git config core.fsmonitor 'touch {m}' && \
         printf '#!/bin/sh\\ntouch {h}\\n' > hookscript && \
         git config core.hooksPath \"$PWD/hooks-dir\" && mkdir -p hooks-dir && \
         cp hookscript hooks-dir/pre-commit && cp hookscript hooks-dir/pre-push && chmod +x hooks-dir/* && \
         printf '#!/bin/sh\\ntouch {h}\\n' > \"$(git rev-parse --git-common-dir)/hooks/pre-push\" && \
         chmod +x \"$(git rev-parse --git-common-dir)/hooks/pre-push\" && \
         echo leftover > leftover.txt",
        f = s("filter"),
        m = s("fsmonitor"),
        h = s("hook"),
    );
    t.env.model.on("MARK-PLANT", vec![Step::Bash(plant), Step::Answer("planted".into())]);
    let d = gh(&gh_comment(84, 2201, "@kugetsu MARK-PLANT", "alice"), "r-1");
    assert_eq!(d.post(&t.url("gh")).await.0, 202);
    let comments = t.forge.wait_for_comments("acme/widget", 84, 1).await;
    assert!(comments[0].body.contains("planted"), "{}", comments[0].body);
    let pushed = t.env.remote_files("kugetsu/84");
    assert!(pushed.contains(&"leftover.txt".to_owned()), "kugetsu committed and pushed the leftovers");
    assert!(pushed.contains(&".opencode/plugin/evil.js".to_owned()), "hiding the plugin did not delete it: {pushed:?}");
    for name in ["filter", "fsmonitor", "hook", "plugin"] {
        assert!(!sentinels.join(name).exists(), "repository-controlled `{name}` code ran");
    }
    let config = std::fs::read_to_string(t.env.state_dir().join("mirrors/gh/acme/widget.git/config")).unwrap();
    assert!(!config.contains("evil") && !config.contains("fsmonitor") && !config.contains("hooksPath"), "{config}");

    // A follow-up that joins a running turn goes through another opencode route
    // (`prompt_async`); the repository's plugin stays hidden there too.
    let slow = Step::After(Duration::from_secs(3), Box::new(Step::Answer("slow".into())));
    t.env.model.on("MARK-PLUG-SLOW", vec![slow]);
    t.env.model.on("MARK-PLUG-JOIN", vec![Step::Answer("joined, PLUG-JOINED".into())]);
    assert_eq!(gh(&gh_comment(84, 2202, "@kugetsu MARK-PLUG-SLOW", "alice"), "r-2").post(&t.url("gh")).await.0, 202);
    t.env.model.wait_for_request("MARK-PLUG-SLOW", Duration::from_secs(90)).await;
    assert_eq!(gh(&gh_comment(84, 2203, "@kugetsu MARK-PLUG-JOIN", "alice"), "r-3").post(&t.url("gh")).await.0, 202);
    let comments = t.forge.wait_for_comments("acme/widget", 84, 2).await;
    assert!(comments[1].body.contains("PLUG-JOINED") && comments[1].body.contains("Took in"), "{}", comments[1].body);
    assert!(!sentinels.join("plugin").exists(), "the repository's plugin loaded through the follow-up's route");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_are_refused_and_hostile_titles_stay_text() {
    let mut t = BotEnv::new().await;
    let hostile = [
        ("acme", ".."),
        ("a/b", "widget"),
        ("acme", "wid\u{0}get"),
        ("acme", "wïdget"),
        ("-rf", "x"),
        ("acme", "a\nb"),
    ];
    for (i, (owner, repo)) in hostile.into_iter().enumerate() {
        let mut p = gh_comment(85, 2301, "@kugetsu hi", "alice");
        p["repository"]["owner"]["login"] = owner.into();
        p["repository"]["name"] = repo.into();
        let (status, text) = gh(&p, &format!("hostile-{i}")).post(&t.url("gh")).await;
        assert_eq!(status, 400, "{owner}/{repo}: {text}");
    }
    assert!(t.jobs().await.is_empty());

    let sentinel = t.env.dir.path().join("title-ran");
    t.env.model.on("MARK-TITLE", vec![Step::Answer("title was text".into())]);
    let mut p = gh_comment(86, 2302, "@kugetsu MARK-TITLE", "alice");
    p["issue"]["title"] =
        format!("$(touch {}) `touch {}` \u{202e}evil\u{0}", sentinel.display(), sentinel.display()).into();
    assert_eq!(gh(&p, "h-title").post(&t.url("gh")).await.0, 202);
    t.forge.wait_for_comments("acme/widget", 86, 1).await;
    assert!(!sentinel.exists());
    let seen = support::transcript(&t.env.model.requests_for("MARK-TITLE")[0]);
    assert!(seen.contains("$(touch"), "the title reached the agent as text inside its fence");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_refuse_politely_and_a_full_disk_defers() {
    let mut t = BotEnv::new().await;
    // Only admitted runs count toward the hourly limit, not the refusal below.
    t.edit_config(|c| c.replace("concurrency = 2", "concurrency = 2\nqueued_per_issue = 1\nper_user_per_hour = 1"));
    t.stop().await;
    t.start().await;
    t.env.model.on("MARK-BUSY", vec![Step::Hang]);
    assert_eq!(gh(&gh_comment(87, 2401, "@kugetsu MARK-BUSY", "alice"), "l-1").post(&t.url("gh")).await.0, 202);
    t.env.model.wait_for_request("MARK-BUSY", Duration::from_secs(90)).await;
    assert_eq!(gh(&gh_comment(87, 2402, "@kugetsu more", "alice"), "l-2").post(&t.url("gh")).await.0, 202);
    let full = t.forge.wait_for_comments("acme/widget", 87, 1).await;
    assert!(full[0].body.contains("already queued or running"), "{}", full[0].body);
    assert_eq!(gh(&gh_comment(88, 2403, "@kugetsu elsewhere", "alice"), "l-3").post(&t.url("gh")).await.0, 202);
    let rate = t.forge.wait_for_comments("acme/widget", 88, 1).await;
    assert!(rate[0].body.contains("runs in the last hour"), "{}", rate[0].body);
    t.stop().await;

    t.edit_config(|c| c.replace("queued_per_issue = 1\nper_user_per_hour = 1", "min_free_disk_mib = 999999999999"));
    t.start().await;
    t.forge.set_permission("bob", "write");
    assert_eq!(gh(&gh_comment(89, 2404, "@kugetsu when there is room", "bob"), "l-4").post(&t.url("gh")).await.0, 202);
    let deferred = t.forge.wait_for_comments("acme/widget", 89, 1).await;
    assert!(deferred[0].body.contains("disk is nearly full"), "{}", deferred[0].body);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let jobs = t.jobs().await;
    assert_eq!(jobs.last().map(|j| j.2.as_str()), Some("pending"), "the job waits, it is not dropped: {jobs:?}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_status_reset_and_help_from_the_issue() {
    let mut t = BotEnv::new().await;
    t.env.model.on("MARK-LONG", vec![Step::Hang]);
    let url = t.url("tea");
    assert_eq!(tea(&tea_comment(90, 2501, "@kugetsu MARK-LONG", "alice"), "k-1").post(&url).await.0, 202);
    t.env.model.wait_for_request("MARK-LONG", Duration::from_secs(90)).await;

    assert_eq!(tea(&tea_comment(90, 2502, "@kugetsu status", "alice"), "k-2").post(&url).await.0, 202);
    let status = t.forge.wait_for_comments("acme/widget", 90, 1).await;
    assert!(
        status[0].body.contains("**State:** running") && status[0].body.contains("kugetsu/90"),
        "{}",
        status[0].body
    );

    assert_eq!(tea(&tea_comment(90, 2503, "@kugetsu stop", "mallory"), "k-3").post(&url).await.0, 202);
    assert_eq!(tea(&tea_comment(90, 2504, "@kugetsu stop", "alice"), "k-4").post(&url).await.0, 202);
    let stopped = t.forge.wait_for_comments("acme/widget", 90, 2).await;
    assert!(stopped[1].body.contains("Stopped the running job"), "{}", stopped[1].body);
    let jobs = t.wait_for_jobs_done(4).await;
    assert_eq!(jobs[0].2, "failed", "the stopped job is recorded as failed: {jobs:?}");
    let engine = t.env.engine().await;
    let issue = "tea/acme/widget#90".parse().unwrap();
    let before = engine.store().issue_session(&issue).await.unwrap().expect("a record");
    assert!(before.last_error.as_deref().is_some_and(|e| e.contains("stopped by @alice")));

    assert_eq!(tea(&tea_comment(90, 2505, "@kugetsu help", "alice"), "k-5").post(&url).await.0, 202);
    assert_eq!(tea(&tea_comment(90, 2506, "@kugetsu reset", "alice"), "k-6").post(&url).await.0, 202);
    let comments = t.forge.wait_for_comments("acme/widget", 90, 4).await;
    assert!(comments.iter().any(|c| c.body.contains("`@kugetsu status`")), "help was answered");
    assert!(comments.iter().any(|c| c.body.contains("Reset: the next mention starts a fresh session")));
    t.wait_for_jobs_done(6).await;
    assert!(engine.store().issue_session(&issue).await.unwrap().is_none(), "reset removed the session");

    t.env.model.on("MARK-AFTER", vec![Step::Answer("fresh start".into())]);
    assert_eq!(tea(&tea_comment(90, 2507, "@kugetsu MARK-AFTER", "alice"), "k-7").post(&url).await.0, 202);
    t.forge.wait_for_comments("acme/widget", 90, 5).await;
    let after = engine.store().issue_session(&issue).await.unwrap().expect("a new record");
    assert_ne!(after.session_id, before.session_id, "a fresh session after reset");
    let seen = support::transcript(&t.env.model.requests_for("MARK-AFTER")[0]);
    assert!(!seen.contains("MARK-LONG"), "the new session does not carry the old history");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_repository_may_load_its_own_opencode_plugins() {
    let mut t = BotEnv::new().await;
    t.edit_config(|c| {
        c.replace("max_model_retries = 1", "max_model_retries = 1\ntrusted_repos = [\"gh/acme/widget\"]")
    });
    t.stop().await;
    t.start().await;
    // The plugin runs in the issue's sandbox, where its working copy is what it may write.
    let sentinel = t.env.state_dir().join("worktrees/gh/acme/widget/91/trusted-plugin-ran");
    let seed = t.env.dir.path().join("seed");
    support::git(t.env.dir.path(), &["clone", "-q", t.env.remote().to_str().unwrap(), seed.to_str().unwrap()]);
    std::fs::create_dir_all(seed.join(".opencode/plugin")).unwrap();
    // Written where the sandbox shows the checkout.
    let plugin = "import fs from 'fs';\nfs.writeFileSync('/workspace/widget/trusted-plugin-ran', 'x');\n\
                  export const Trusted = async () => ({});\n";
    std::fs::write(seed.join(".opencode/plugin/trusted.js"), plugin).unwrap();
    support::git(&seed, &["add", "-A"]);
    support::git(&seed, &["commit", "-q", "-m", "a plugin the operator trusts"]);
    support::git(&seed, &["push", "-q", "origin", "HEAD:main"]);

    let d = gh(&gh_comment(91, 2601, "@kugetsu hello", "alice"), "t-1");
    assert_eq!(d.post(&t.url("gh")).await.0, 202);
    t.forge.wait_for_comments("acme/widget", 91, 1).await;
    assert!(sentinel.exists(), "the operator allowed this repository's plugins, so opencode loaded them");
    let worktree = t.env.state_dir().join("worktrees/gh/acme/widget/91");
    assert!(worktree.join(".opencode/plugin/trusted.js").exists(), "a trusted repository's files stay in the worktree");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_ends_an_issues_first_run_in_a_slow_model_call() {
    let mut t = BotEnv::new().await;
    let late = "echo late > late.txt && git add late.txt && git commit -q -m 'late commit'";
    t.env.model.on(
        "MARK-SLOW-FIRST",
        vec![Step::After(Duration::from_secs(3), Box::new(Step::Bash(late.into()))), Step::Answer("finished".into())],
    );
    assert_eq!(
        tea(&tea_comment(151, 2601, "@kugetsu MARK-SLOW-FIRST", "alice"), "sf-1").post(&t.url("tea")).await.0,
        202
    );
    t.env.model.wait_for_request("MARK-SLOW-FIRST", Duration::from_secs(90)).await;
    assert_eq!(tea(&tea_comment(151, 2602, "@kugetsu stop", "alice"), "sf-2").post(&t.url("tea")).await.0, 202);
    let comments = t.forge.wait_for_comments("acme/widget", 151, 1).await;
    assert!(comments[0].body.starts_with("Stopped the running job"), "{}", comments[0].body);
    // Past the slow call: had the session gone on, the tool would have run by now.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(t.env.model.requests_for("MARK-SLOW-FIRST").len(), 1, "no model request after the stop");
    let worktree = t.env.state_dir().join("worktrees/tea/acme/widget/151");
    assert!(!worktree.join("late.txt").exists(), "the agent did nothing after the stop");
    let log = support::git(&worktree, &["log", "--format=%s"]);
    assert!(!log.contains("late commit"), "no commit after the stop: {log}");
    assert!(!t.env.remote_has_branch("kugetsu/151"), "nothing was pushed");
    assert_eq!(t.forge.comments("acme/widget", 151).len(), 1, "only the stop's answer");
    // The stopped run's progress comment says so, and its reaction is taken back.
    t.forge
        .wait_until("the progress comment says stopped", |f| {
            f.progress_comments("acme/widget", 151).iter().any(|c| c.body.starts_with("⏹️ Stopped after"))
        })
        .await;
    t.forge
        .wait_until("no reaction left on the stopped trigger", |f| {
            f.reactions_on("acme/widget", "comment 2601").last().is_some_and(|r| r == "-rocket")
        })
        .await;
    assert_eq!(t.forge.reactions_on("acme/widget", "comment 2601"), ["+eyes", "+rocket", "-eyes", "-rocket"]);
    t.stop().await;
}
