//! CI repair end to end: failing checks on kugetsu's own pushes continue the
//! issue's session, within the repository's attempts, and nothing else does.

mod support;

use serde_json::Value;
use support::Step;
use support::bot_env::{BotEnv, GH_SECRET, TEA_SECRET, gh, gh_comment, tea, tea_comment};
use support::webhook::{self, Delivery, fixture};

const REPO: &str = "acme/widget";

fn head(t: &BotEnv, branch: &str) -> String {
    support::git(&t.env.remote(), &["rev-parse", &format!("refs/heads/{branch}")]).trim().to_owned()
}

fn in_widget(mut p: Value) -> Value {
    let r = &mut p["repository"];
    r["name"] = "widget".into();
    r["full_name"] = REPO.into();
    r["owner"]["login"] = "acme".into();
    r["owner"]["username"] = "acme".into();
    p
}

/// Gitea's commit status hook (built from its schema; see tests/fixtures/README.md).
fn gitea_status(sha: &str, state: &str, delivery: &str) -> Delivery {
    gitea_status_of("ci/build", sha, state, delivery)
}

fn gitea_status_of(context: &str, sha: &str, state: &str, delivery: &str) -> Delivery {
    let mut p = in_widget(fixture("gitea/status.failure.json"));
    p["context"] = context.into();
    p["sha"] = sha.into();
    p["commit"]["id"] = sha.into();
    p["state"] = state.into();
    webhook::gitea("status", "status", delivery, &p, TEA_SECRET)
}

/// GitHub's `check_run` completing with `conclusion`, from the captured delivery.
fn github_check_run(sha: &str, conclusion: &str, delivery: &str) -> Delivery {
    let mut p = in_widget(fixture("github/check_run.rerequested.json"));
    p["action"] = "completed".into();
    p["check_run"]["head_sha"] = sha.into();
    p["check_run"]["name"] = "tests".into();
    p["check_run"]["conclusion"] = conclusion.into();
    webhook::github("check_run", delivery, &p, GH_SECRET)
}

/// A first run that commits, so the issue has a branch, a pushed head and a pull request.
async fn first_run(t: &BotEnv, instance: &str, issue: u64) -> u64 {
    let marker = format!("MARK-START-{issue}");
    t.env.model.on(
        &marker,
        vec![
            Step::Bash(format!("echo 1 > n{issue}.txt && git add n{issue}.txt && git commit -q -m 'agent: start'")),
            Step::Answer(format!("Started. START-{issue}")),
        ],
    );
    let text = format!("@kugetsu start {marker}");
    let d = match instance {
        "gh" => gh(&gh_comment(issue, issue * 10, &text, "alice"), &format!("s-{issue}")),
        _ => tea(&tea_comment(issue, issue * 10, &text, "alice"), &format!("s-{issue}")),
    };
    assert_eq!(d.post(&t.url(instance)).await.0, 202);
    t.forge.wait_for_comments(REPO, issue, 1).await;
    let pulls = t.forge.pulls(REPO);
    pulls.iter().find(|p| p.3.head == format!("kugetsu/{issue}")).expect("a pull request").0
}

fn repairing(marker: &str, file: &str) -> Vec<Step> {
    vec![
        Step::Bash(format!("echo fixed > {file} && git add {file} && git commit -q -m 'agent: fix CI'")),
        Step::Answer(format!("Fixed the build. {marker}")),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitea_failing_statuses_on_kugetsus_head_get_two_repairs_then_one_notice() {
    let more = r#"
[instances.tea.repos."acme/widget"]
ci_fix = { max_attempts = 2 }
"#;
    let mut t = BotEnv::with(more, Vec::new()).await;
    let pull = first_run(&t, "tea", 81).await;
    // The model answers a repair prompt by the check's context name it carries.
    t.env.model.on("ci/build", repairing("REPAIR-ANSWER", "fix.txt"));

    // A failure on a commit kugetsu did not push starts nothing.
    let main = head(&t, "main");
    t.forge.set_status(REPO, &main, "ci/build", "failure", "Build failed");
    let (status, text) = gitea_status(&main, "failure", "c-0").post(&t.url("tea")).await;
    assert_eq!((status, text.as_str()), (200, "ignored: not a commit kugetsu pushed"));
    // Nor does a success on kugetsu's head.
    let first = head(&t, "kugetsu/81");
    assert_eq!(gitea_status(&first, "success", "c-ok").post(&t.url("tea")).await.0, 200);

    // First failure: one repair, answered on the pull request.
    t.forge.set_status(REPO, &first, "ci/build", "failure", "Build failed: 3 tests");
    assert_eq!(gitea_status(&first, "failure", "c-1").post(&t.url("tea")).await.0, 202);
    let answers = t.forge.wait_for_comments(REPO, pull, 1).await;
    assert!(answers[0].body.contains("REPAIR-ANSWER"), "{}", answers[0].body);
    let seen = support::transcript(&t.env.model.requests_for("ci/build")[0]);
    assert!(seen.contains("name: ci/build") && seen.contains("Build failed: 3 tests"), "{seen}");
    assert!(seen.contains(&format!("https://ci.example.com/{REPO}/ci/build/{first}")), "{seen}");
    assert!(seen.contains("START-81"), "the repair continues the issue's session: {seen}");
    let second = head(&t, "kugetsu/81");
    assert_ne!(first, second, "the repair was pushed");
    // The same failure delivered again is stored once; a check that fails later
    // on a commit the repair has pushed past starts nothing.
    assert_eq!(gitea_status(&first, "failure", "c-1b").post(&t.url("tea")).await.0, 200);
    t.forge.set_status(REPO, &first, "ci/lint", "failure", "lint failed");
    let (status, text) = gitea_status_of("ci/lint", &first, "failure", "c-1c").post(&t.url("tea")).await;
    assert_eq!((status, text.as_str()), (200, "ignored: not a commit kugetsu pushed"));

    // Second failure, on the repair's push: a second repair.
    t.env.model.on("Build failed again", repairing("REPAIR-TWO", "fix2.txt"));
    t.forge.set_status(REPO, &second, "ci/build", "failure", "Build failed again");
    assert_eq!(gitea_status(&second, "failure", "c-2").post(&t.url("tea")).await.0, 202);
    t.forge.wait_for_comments(REPO, pull, 2).await;
    let third = head(&t, "kugetsu/81");
    assert_ne!(second, third);

    // Third: nothing runs, and it says why, once.
    let runs_before = t.env.model.requests_for("ci/build").len();
    t.forge.set_status(REPO, &third, "ci/build", "failure", "Still failing");
    assert_eq!(gitea_status(&third, "failure", "c-3").post(&t.url("tea")).await.0, 202);
    let answers = t.forge.wait_for_comments(REPO, pull, 3).await;
    assert!(
        answers[2].body.contains("after 2 repair attempts") && answers[2].body.contains("`ci/build`"),
        "{}",
        answers[2].body
    );
    t.wait_for_jobs_done(4).await;
    assert_eq!(t.env.model.requests_for("ci/build").len(), runs_before, "no third repair ran");
    assert_eq!(head(&t, "kugetsu/81"), third);
    assert_eq!(t.forge.comments(REPO, 81).len(), 1, "repairs answer on the pull request, not the issue");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_check_runs_repair_only_where_turned_on_and_a_label_or_stop_ends_it() {
    let more = r#"
[instances.gh.repos."acme/widget"]
ci_fix = { max_attempts = 3 }
"#;
    let mut t = BotEnv::with(more, Vec::new()).await;
    let pull = first_run(&t, "gh", 82).await;
    t.env.model.on("tests report", repairing("CHECK-REPAIR", "check.txt"));
    let first = head(&t, "kugetsu/82");
    t.forge.add_check_run(REPO, &first, "tests", "failure", "2 failed: parser::flaky");
    assert_eq!(github_check_run(&first, "failure", "k-1").post(&t.url("gh")).await.0, 202);
    let answers = t.forge.wait_for_comments(REPO, pull, 1).await;
    assert!(answers[0].body.contains("CHECK-REPAIR"), "{}", answers[0].body);
    let seen = support::transcript(&t.env.model.requests_for("tests report")[0]);
    assert!(seen.contains("name: tests") && seen.contains("2 failed: parser::flaky"), "the check's output: {seen}");

    // `@kugetsu stop` ends repairs until a person asks again.
    let stop = gh(&gh_comment(82, 821, "@kugetsu stop", "alice"), "k-stop");
    assert_eq!(stop.post(&t.url("gh")).await.0, 202);
    t.forge.wait_for_comments(REPO, 82, 2).await;
    let second = head(&t, "kugetsu/82");
    t.forge.add_check_run(REPO, &second, "tests", "failure", "still red");
    assert_eq!(github_check_run(&second, "failure", "k-2").post(&t.url("gh")).await.0, 202);
    t.wait_for_jobs_done(4).await;
    assert_eq!(t.env.model.requests_for("still red").len(), 0, "stopped: no repair");

    // A person asks again: repairs are back, unless the label says no.
    t.env.model.on("MARK-AGAIN", repairing("AGAIN", "again.txt"));
    let again = gh(&gh_comment(82, 822, "@kugetsu go on MARK-AGAIN", "alice"), "k-again");
    assert_eq!(again.post(&t.url("gh")).await.0, 202);
    t.forge.wait_for_comments(REPO, 82, 3).await;
    let third = head(&t, "kugetsu/82");
    t.forge.label_event(REPO, pull, "kugetsu:no-ci-fix", true, "alice");
    t.forge.add_check_run(REPO, &third, "tests", "failure", "red once more");
    assert_eq!(github_check_run(&third, "failure", "k-3").post(&t.url("gh")).await.0, 202);
    t.wait_for_jobs_done(6).await;
    assert_eq!(t.env.model.requests_for("red once more").len(), 0, "the label turns repairs off");
    // Control: without the label, the next failure on that commit repairs.
    t.forge.label_event(REPO, pull, "kugetsu:no-ci-fix", false, "alice");
    t.env.model.on("red for real", repairing("LAST-REPAIR", "last.txt"));
    t.forge.add_check_run(REPO, &third, "lint", "failure", "red for real");
    let mut lint = github_check_run(&third, "failure", "k-4");
    lint = {
        let mut p: Value = serde_json::from_slice(&lint.body).unwrap();
        p["check_run"]["name"] = "lint".into();
        webhook::github("check_run", "k-4", &p, GH_SECRET)
    };
    assert_eq!(lint.post(&t.url("gh")).await.0, 202);
    let answers = t.forge.wait_for_comments(REPO, pull, 2).await;
    assert!(answers[1].body.contains("LAST-REPAIR"), "{}", answers[1].body);
    t.stop().await;

    // Off in a repository without `ci_fix`: the tea instance has none.
    let mut t = BotEnv::new().await;
    first_run(&t, "tea", 83).await;
    let head83 = head(&t, "kugetsu/83");
    t.forge.set_status(REPO, &head83, "ci/build", "failure", "Build failed");
    assert_eq!(gitea_status(&head83, "failure", "o-1").post(&t.url("tea")).await.0, 202);
    t.wait_for_jobs_done(2).await;
    assert_eq!(t.env.model.requests_for("ci/build").len(), 0, "CI repair is opt-in per repository");
    t.stop().await;
}
