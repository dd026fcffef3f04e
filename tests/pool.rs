//! Ready checkouts: `kugetsu serve` keeps a checkout per repository with its
//! opencode started and warmed up, and a new issue takes it.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::Step;
use support::bot_env::{BotEnv, tea, tea_comment};

const REPO: &str = "tea/acme/widget";

/// A bot whose pool keeps one ready checkout of acme/widget from start-up.
async fn bot_with_pool() -> BotEnv {
    let mut t = BotEnv::new().await;
    t.stop().await;
    t.edit_config(|text| text.replace("[pool]\nsize = 0\n", &format!("[pool]\nsize = 1\nrepos = [\"{REPO}\"]\n")));
    t.start().await;
    t
}

fn checkouts_root(t: &BotEnv) -> PathBuf {
    t.env.state_dir().join("worktrees/tea/acme/widget")
}

/// The ready checkouts on disk.
fn ready_dirs(t: &BotEnv) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(checkouts_root(t)) else { return Vec::new() };
    let mut dirs: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(".ready-")))
        .collect();
    dirs.sort();
    dirs
}

async fn wait_for_ready(t: &BotEnv, count: usize) {
    let repo = REPO.parse().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while t.bot().engine().ready_checkouts(&repo) < count {
        assert!(tokio::time::Instant::now() < deadline, "no ready checkout after 90 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The opencode server whose home is `home`, by the `XDG_DATA_HOME` it was started with.
fn server_of_home(home: &Path) -> Option<u32> {
    let var = format!("XDG_DATA_HOME={}", home.join("data").display());
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let environ = std::fs::read(entry.path().join("environ")).ok()?;
        let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
        let found = environ.split(|b| *b == 0).any(|v| v == var.as_bytes()) && !comm.starts_with("bwrap");
        found.then_some(pid)
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_issue_takes_the_ready_checkout_and_its_warm_opencode() {
    let mut t = bot_with_pool().await;
    wait_for_ready(&t, 1).await;
    let ready = ready_dirs(&t);
    assert_eq!(ready.len(), 1, "{ready:?}");
    let ready_home = t.env.state_dir().join("opencode/homes/tea/acme/widget").join(ready[0].file_name().unwrap());
    let server = server_of_home(&ready_home).expect("the ready checkout's opencode runs");
    assert!(t.env.model.requests().is_empty(), "warming up called no model: {:?}", t.env.model.requests());

    t.env.model.on(
        "MARK-POOL",
        vec![
            Step::Bash("pwd > where.txt && git add where.txt && git commit -q -m 'agent: where'".into()),
            Step::Answer("POOLANSWER".into()),
        ],
    );
    let delivery = tea(&tea_comment(5, 701, "@kugetsu where are you? MARK-POOL", "alice"), "p-1");
    assert_eq!(delivery.post(&t.url("tea")).await.0, 202);
    let comments = t.forge.wait_for_comments("acme/widget", 5, 1).await;
    assert!(comments[0].body.contains("POOLANSWER"), "{}", comments[0].body);

    let issue_dir = checkouts_root(&t).join("5");
    let written = std::fs::read_to_string(issue_dir.join("where.txt")).unwrap();
    assert_eq!(written.trim(), "/workspace/widget", "the agent sees its checkout at the same place as ever");
    assert!(t.env.remote_files("kugetsu/5").contains(&"where.txt".to_owned()));
    // The server that was warmed up for the ready checkout is the issue's: its view
    // of the checkout holds what the agent wrote.
    let seen_by_server = PathBuf::from(format!("/proc/{server}/root/workspace/widget/where.txt"));
    assert_eq!(std::fs::read_to_string(&seen_by_server).unwrap(), written);
    assert!(!ready[0].exists(), "the ready checkout became the issue's");

    wait_for_ready(&t, 1).await;
    let refilled = ready_dirs(&t);
    assert_eq!(refilled.len(), 1, "{refilled:?}");
    assert_ne!(refilled, ready, "a new ready checkout replaces the one taken");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_replaces_the_ready_checkouts_an_earlier_process_left() {
    let mut t = bot_with_pool().await;
    wait_for_ready(&t, 1).await;
    let before = ready_dirs(&t);
    assert_eq!(before.len(), 1, "control: a ready checkout was made: {before:?}");
    t.stop().await;
    assert!(before[0].exists(), "control: stopping leaves it on disk");
    t.start().await;
    wait_for_ready(&t, 1).await;
    let after = ready_dirs(&t);
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(after, before);
    let homes = t.env.state_dir().join("opencode/homes/tea/acme/widget");
    assert!(!homes.join(before[0].file_name().unwrap()).exists(), "its opencode files went with it");
    t.stop().await;
}

/// The agent of an issue attacks the repository's ready checkout, which the next
/// issue will take: it must not be able to see or change it.
#[tokio::test(flavor = "multi_thread")]
async fn an_agent_cannot_reach_the_ready_checkout_the_next_issue_takes() {
    let mut t = bot_with_pool().await;
    wait_for_ready(&t, 1).await;
    t.env.model.on("MARK-FIRST", vec![Step::Answer("first".into())]);
    assert_eq!(tea(&tea_comment(6, 801, "@kugetsu MARK-FIRST", "alice"), "a-1").post(&t.url("tea")).await.0, 202);
    t.forge.wait_for_comments("acme/widget", 6, 1).await;
    wait_for_ready(&t, 1).await;
    let target = ready_dirs(&t).pop().expect("a ready checkout for the next issue");
    let script = format!(
        "ls -a /workspace > seen.txt; ls -a {root} >> seen.txt 2>&1; \
         echo planted > {target}/README.md 2>> seen.txt; echo own > own.txt",
        root = checkouts_root(&t).display(),
        target = target.display(),
    );
    t.env.model.on("MARK-ATTACK", vec![Step::Bash(script), Step::Answer("attacked".into())]);
    assert_eq!(tea(&tea_comment(6, 802, "@kugetsu MARK-ATTACK", "alice"), "a-2").post(&t.url("tea")).await.0, 202);
    t.forge.wait_for_comments("acme/widget", 6, 2).await;
    let issue_dir = checkouts_root(&t).join("6");
    assert_eq!(std::fs::read_to_string(issue_dir.join("own.txt")).unwrap().trim(), "own", "control: the attack ran");
    let seen = std::fs::read_to_string(issue_dir.join("seen.txt")).unwrap();
    assert!(seen.contains("widget"), "control: the agent listed /workspace: {seen}");
    assert!(!seen.contains(".ready-"), "the agent saw a ready checkout: {seen}");
    assert_eq!(std::fs::read_to_string(target.join("README.md")).unwrap(), "# widget\n", "it was changed");
    t.stop().await;
}

/// An agent that deletes its checkout's `.git` loses the checkout, not its
/// session: the next run makes a checkout and keeps the issue's opencode files,
/// and the ready checkout stays for a new issue.
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_checkout_keeps_its_session_and_leaves_the_ready_checkout_alone() {
    let mut t = bot_with_pool().await;
    wait_for_ready(&t, 1).await;
    t.env.model.on("MARK-REMEMBER", vec![Step::Answer("the word is PELICAN".into())]);
    t.env.model.on("MARK-BREAK", vec![Step::Bash("rm -rf .git".into()), Step::Answer("broken".into())]);
    t.env.model.on("MARK-AGAIN", vec![Step::Answer("still here".into())]);
    let say = |id: u64, text: &str| tea(&tea_comment(8, id, text, "alice"), &format!("l-{id}"));
    assert_eq!(say(901, "@kugetsu MARK-REMEMBER").post(&t.url("tea")).await.0, 202);
    t.forge.wait_for_comments("acme/widget", 8, 1).await;
    wait_for_ready(&t, 1).await;
    assert_eq!(say(902, "@kugetsu MARK-BREAK").post(&t.url("tea")).await.0, 202);
    t.forge.wait_for_comments("acme/widget", 8, 2).await;
    assert!(!checkouts_root(&t).join("8/.git").exists(), "control: the agent removed its .git");
    let ready = ready_dirs(&t);
    assert_eq!(ready.len(), 1, "{ready:?}");

    assert_eq!(say(903, "@kugetsu MARK-AGAIN").post(&t.url("tea")).await.0, 202);
    let comments = t.forge.wait_for_comments("acme/widget", 8, 3).await;
    assert!(comments[2].body.contains("still here"), "{}", comments[2].body);
    let seen = support::transcript(&t.env.model.requests_for("MARK-AGAIN")[0]);
    assert!(seen.contains("PELICAN"), "the run continued the issue's session: {seen}");
    assert_eq!(ready_dirs(&t), ready, "the ready checkout was left for a new issue");
    t.stop().await;
}

/// The default branch moved after the ready checkout was made: the issue starts
/// from where it is now, and the repository's opencode config stays hidden.
#[tokio::test(flavor = "multi_thread")]
async fn a_ready_checkout_made_before_a_push_starts_the_issue_at_the_new_default_branch() {
    let mut t = bot_with_pool().await;
    wait_for_ready(&t, 1).await;
    let ready = ready_dirs(&t);
    let seed = t.env.dir.path().join("seed");
    support::git(t.env.dir.path(), &["clone", "-q", t.env.remote().to_str().unwrap(), seed.to_str().unwrap()]);
    std::fs::write(seed.join("pushed-later.txt"), "new\n").unwrap();
    std::fs::write(seed.join("opencode.json"), "{}\n").unwrap();
    support::git(&seed, &["add", "-A"]);
    support::git(&seed, &["commit", "-q", "-m", "pushed after the checkout was made ready"]);
    support::git(&seed, &["push", "-q", "origin", "HEAD:main"]);

    t.env.model.on("MARK-MOVED", vec![Step::Bash("ls -a > seen.txt".into()), Step::Answer("looked".into())]);
    assert_eq!(tea(&tea_comment(9, 951, "@kugetsu MARK-MOVED", "alice"), "m-1").post(&t.url("tea")).await.0, 202);
    let comments = t.forge.wait_for_comments("acme/widget", 9, 1).await;
    assert!(comments[0].body.contains("looked"), "{}", comments[0].body);
    let seen = std::fs::read_to_string(checkouts_root(&t).join("9/seen.txt")).unwrap();
    assert!(seen.contains("pushed-later.txt"), "the issue starts at the new default branch: {seen}");
    assert!(!seen.contains("opencode.json"), "the repository's opencode config is hidden: {seen}");
    let pushed = t.env.remote_files("kugetsu/9");
    assert!(pushed.contains(&"opencode.json".to_owned()), "hiding it did not delete it: {pushed:?}");
    assert!(!ready[0].exists(), "the ready checkout was the one taken");
    t.stop().await;
}
