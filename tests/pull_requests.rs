//! Pull requests end to end: real opencode and git, the fake forge keeping
//! the pull requests as GitHub and Gitea do.

mod support;

use serde_json::json;
use support::Step;
use support::bot_env::{BotEnv, gh, gh_comment, tea, tea_comment};
use support::transcript;
use support::webhook::{Delivery, fixture, retarget, with_comment};

const REPO: &str = "acme/widget";

fn mention(instance: &str, number: u64, comment_id: u64, body: &str, delivery: &str) -> Delivery {
    match instance {
        "gh" => gh(&gh_comment(number, comment_id, body, "alice"), delivery),
        _ => tea(&tea_comment(number, comment_id, body, "alice"), delivery),
    }
}

/// A comment on a pull request, as each forge delivers it: GitHub's issue has a
/// `pull_request` key; Gitea's captured pull request comment is used as it is.
fn mention_on_pull(instance: &str, number: u64, comment_id: u64, body: &str, delivery: &str) -> Delivery {
    match instance {
        "gh" => {
            let mut payload = gh_comment(number, comment_id, body, "alice");
            payload["issue"]["pull_request"] = json!({
                "url": format!("https://forge.example.com/repos/{REPO}/pulls/{number}"),
                "html_url": format!("https://forge.example.com/{REPO}/pull/{number}"),
                "diff_url": format!("https://forge.example.com/{REPO}/pull/{number}.diff"),
                "patch_url": format!("https://forge.example.com/{REPO}/pull/{number}.patch"),
                "merged_at": null
            });
            gh(&payload, delivery)
        }
        _ => {
            let payload =
                retarget(fixture("gitea/issue_comment.created.pull_request.json"), "acme", "widget", number, "alice");
            let payload = with_comment(payload, comment_id, body);
            support::webhook::gitea(
                "issue_comment",
                "pull_request_comment",
                delivery,
                &payload,
                support::bot_env::TEA_SECRET,
            )
        }
    }
}

fn committing(marker: &str, file: &str) -> Vec<Step> {
    vec![
        Step::Bash(format!("echo {marker} > {file} && git add {file} && git commit -q -m 'agent: {file}'")),
        Step::Answer(format!("Wrote {file}. {marker}-ANSWER")),
    ]
}

async fn a_first_run_opens_one_draft_and_the_pull_request_continues_the_issue(instance: &str, number: u64) {
    let mut t = BotEnv::new().await;
    t.env.model.on("MARK-ONE", committing("MARK-ONE", "one.txt"));
    t.env.model.on("MARK-TWO", committing("MARK-TWO", "two.txt"));
    t.env.model.on("MARK-ON-PR", vec![Step::Answer("answered on the pull request".into())]);

    assert_eq!(mention(instance, number, 701, "@kugetsu fix it MARK-ONE", "p-1").post(&t.url(instance)).await.0, 202);
    let comments = t.forge.wait_for_comments(REPO, number, 1).await;
    let pulls = t.forge.pulls(REPO);
    assert_eq!(pulls.len(), 1, "one pull request: {pulls:?}");
    let (pr, title, body, pull) = &pulls[0];
    assert_eq!((pull.head.as_str(), pull.base.as_str()), (format!("kugetsu/{number}").as_str(), "main"));
    assert!(pull.draft && pull.open, "a draft by default: {pull:?}");
    if instance == "tea" {
        assert!(title.starts_with("WIP: "), "Gitea has no drafts; a WIP: title is one: {title}");
    } else {
        assert!(!title.starts_with("WIP"), "GitHub has drafts: {title}");
    }
    assert!(body.starts_with(&format!("Closes #{number}.")), "{body}");
    assert!(body.contains("MARK-ONE-ANSWER") && body.contains("agent: one.txt"), "the run is summed up: {body}");
    assert!(body.contains(&format!("<!-- kugetsu:pull-request issue={number} -->")), "{body}");
    let first = &comments[0].body;
    assert!(first.contains(&format!("[#{pr}]")) && first.contains("opened now"), "the answer links the PR: {first}");
    assert!(!first.contains("/compare/"), "{first}");

    assert_eq!(mention(instance, number, 702, "@kugetsu more MARK-TWO", "p-2").post(&t.url(instance)).await.0, 202);
    let comments = t.forge.wait_for_comments(REPO, number, 2).await;
    assert_eq!(t.forge.pulls(REPO).len(), 1, "a second run opens none");
    let second = &comments[1].body;
    assert!(second.contains(&format!("[#{pr}]")) && !second.contains("opened now"), "{second}");
    assert!(t.env.remote_files(&format!("kugetsu/{number}")).contains(&"two.txt".to_owned()));

    // On the pull request: the issue's session goes on, and the answer is posted there.
    let on_pr = mention_on_pull(instance, *pr, 703, "@kugetsu what did you do? MARK-ON-PR", "p-3");
    assert_eq!(on_pr.post(&t.url(instance)).await.0, 202);
    let on_pr_comments = t.forge.wait_for_comments(REPO, *pr, 1).await;
    assert!(on_pr_comments[0].body.contains("answered on the pull request"), "{}", on_pr_comments[0].body);
    let seen = transcript(&t.env.model.requests_for("MARK-ON-PR")[0]);
    assert!(seen.contains("MARK-ONE-ANSWER"), "the model sees the issue's first turn: {seen}");
    assert!(seen.contains(&format!("pull request #{pr}")), "{seen}");
    assert_eq!(t.forge.comments(REPO, number).len(), 2, "nothing more on the issue");
    assert_eq!(t.forge.pulls(REPO).len(), 1);
    let out = t.env.kugetsu().args(["list", "--json"]).output().unwrap();
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let issues: Vec<&str> = list.as_array().unwrap().iter().filter_map(|i| i["issue"].as_str()).collect();
    assert_eq!(issues, vec![format!("{instance}/{REPO}#{number}").as_str()], "one session, the issue's");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_first_run_opens_one_draft_and_the_pull_request_continues_the_issue() {
    a_first_run_opens_one_draft_and_the_pull_request_continues_the_issue("gh", 61).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitea_first_run_opens_one_draft_and_the_pull_request_continues_the_issue() {
    a_first_run_opens_one_draft_and_the_pull_request_continues_the_issue("tea", 62).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modes_off_and_ready_per_repository_and_a_closed_pull_request_stays_closed() {
    let more = r#"
[instances.gh.repos."acme/widget"]
pull_requests = "ready"
"#;
    let mut t = BotEnv::with(more, Vec::new()).await;
    t.edit_config(|text| text.replace("[instances.tea]\n", "[instances.tea]\npull_requests = \"off\"\n"));
    t.stop().await;
    t.start().await;
    t.env.model.on("MARK-OFF", committing("MARK-OFF", "off.txt"));
    t.env.model.on("MARK-READY", committing("MARK-READY", "ready.txt"));
    t.env.model.on("MARK-AFTER", committing("MARK-AFTER", "after.txt"));

    // Off on the Gitea instance: a compare link, as before pull requests.
    assert_eq!(mention("tea", 63, 801, "@kugetsu MARK-OFF", "m-1").post(&t.url("tea")).await.0, 202);
    let off = t.forge.wait_for_comments(REPO, 63, 1).await;
    assert!(off[0].body.contains("/compare/main...kugetsu/63"), "{}", off[0].body);
    assert!(t.forge.pulls(REPO).is_empty(), "mode off opens none");

    // Ready for this repository on GitHub, over the instance's default (draft).
    assert_eq!(mention("gh", 64, 802, "@kugetsu MARK-READY", "m-2").post(&t.url("gh")).await.0, 202);
    t.forge.wait_for_comments(REPO, 64, 1).await;
    let pulls = t.forge.pulls(REPO);
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    let (pr, _, _, pull) = pulls[0].clone();
    assert!(!pull.draft, "ready, not a draft: {pull:?}");

    // A person closes it: the next run pushes to the branch, opens nothing, reopens nothing, and says so.
    t.forge.close_pull(REPO, pr, false);
    assert_eq!(mention("gh", 64, 803, "@kugetsu again MARK-AFTER", "m-3").post(&t.url("gh")).await.0, 202);
    let comments = t.forge.wait_for_comments(REPO, 64, 2).await;
    let after = &comments[1].body;
    assert!(after.contains(&format!("[#{pr}]")) && after.contains("was closed; I leave it closed"), "{after}");
    let pulls = t.forge.pulls(REPO);
    assert_eq!(pulls.len(), 1, "no second pull request: {pulls:?}");
    assert!(!pulls[0].3.open, "not reopened");
    assert!(t.env.remote_files("kugetsu/64").contains(&"after.txt".to_owned()));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_opened_by_a_person_is_adopted_and_after_a_merge_the_next_commits_get_a_new_one() {
    let mut t = BotEnv::new().await;
    t.env.model.on("MARK-FIRST-65", committing("MARK-FIRST-65", "a.txt"));
    t.env.model.on("MARK-AFTER-MERGE", committing("MARK-AFTER-MERGE", "c.txt"));
    assert_eq!(mention("gh", 65, 901, "@kugetsu go MARK-FIRST-65", "a-1").post(&t.url("gh")).await.0, 202);
    t.forge.wait_for_comments(REPO, 65, 1).await;
    let pulls = t.forge.pulls(REPO);
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    let first = pulls[0].0;

    // A person merges it; the next run with commits opens a new one.
    t.forge.close_pull(REPO, first, true);
    assert_eq!(mention("gh", 65, 902, "@kugetsu more MARK-AFTER-MERGE", "a-2").post(&t.url("gh")).await.0, 202);
    let comments = t.forge.wait_for_comments(REPO, 65, 2).await;
    let pulls = t.forge.pulls(REPO);
    assert_eq!(pulls.len(), 2, "{pulls:?}");
    let second = pulls[1].0;
    assert!(
        comments[1].body.contains(&format!("[#{second}]")) && comments[1].body.contains("opened now"),
        "{}",
        comments[1].body
    );

    // Another issue, whose branch a person opened a pull request for first: adopted, not duplicated.
    t.env.model.on("MARK-ADOPT", committing("MARK-ADOPT", "d.txt"));
    t.forge.add_issue(REPO, 66);
    // The branch must exist for the forge to take a pull request from it.
    let remote = t.env.remote();
    support::git(&remote, &["branch", "kugetsu/66", "main"]);
    let theirs = t.forge.open_pull_as(REPO, "kugetsu/66", "main", "alice");
    assert_eq!(mention("gh", 66, 903, "@kugetsu go MARK-ADOPT", "a-3").post(&t.url("gh")).await.0, 202);
    let comments = t.forge.wait_for_comments(REPO, 66, 1).await;
    let body = &comments[0].body;
    assert!(body.contains(&format!("[#{theirs}]")) && !body.contains("opened now"), "adopted: {body}");
    assert_eq!(t.forge.pulls(REPO).len(), 3, "no duplicate");
    let (_, _, _, pull) = t.forge.pulls(REPO).into_iter().find(|p| p.0 == theirs).expect("theirs");
    assert!(pull.open && !pull.draft, "left as the person made it: {pull:?}");
    t.stop().await;
}
