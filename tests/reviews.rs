//! Pull request reviews end to end: real captured review payloads, real
//! opencode and git, the fake forge keeping reviews and threads.

mod support;

use serde_json::{Value, json};
use support::bot_env::{BotEnv, GH_SECRET, TEA_SECRET, gh, gh_comment, tea, tea_comment};
use support::webhook::{self, Delivery, fixture};
use support::{Step, transcript};

const REPO: &str = "acme/widget";

/// A captured pull request event pointed at `acme/widget` pull request `pull`, sent by `author`.
fn on_pull(name: &str, pull: u64, author: &str) -> Value {
    let mut p = fixture(name);
    let r = &mut p["repository"];
    r["name"] = "widget".into();
    r["full_name"] = REPO.into();
    r["owner"]["login"] = "acme".into();
    r["owner"]["username"] = "acme".into();
    r["html_url"] = format!("https://forge.example.com/{REPO}").into();
    r["default_branch"] = "main".into();
    p["pull_request"]["number"] = pull.into();
    p["number"] = pull.into();
    for at in ["/sender", "/comment/user", "/review/user"] {
        if let Some(who) = p.pointer_mut(at).filter(|w| w.is_object()) {
            who["login"] = author.into();
            who["username"] = author.into();
            who["type"] = "User".into();
        }
    }
    p
}

/// GitHub: each line comment of a review as `pull_request_review_comment`, then
/// the review as `pull_request_review`, as GitHub sends them on submission.
fn github_review_deliveries(
    pull: u64,
    author: &str,
    review: u64,
    comments: &[(u64, &str)],
    body: &str,
) -> Vec<Delivery> {
    let mut out = Vec::new();
    for (i, (id, text)) in comments.iter().enumerate() {
        let mut p = on_pull("github/pull_request_review_comment.created.json", pull, author);
        p["comment"]["id"] = (*id).into();
        p["comment"]["body"] = (*text).into();
        // Added since the capture (2015): the review a line comment was submitted with.
        p["comment"]["pull_request_review_id"] = review.into();
        out.push(webhook::github("pull_request_review_comment", &format!("rc-{review}-{i}"), &p, GH_SECRET));
    }
    let mut p = on_pull("github/pull_request_review.submitted.json", pull, author);
    p["review"]["id"] = review.into();
    p["review"]["body"] = body.into();
    p["review"]["state"] = "commented".into();
    out.push(webhook::github("pull_request_review", &format!("r-{review}"), &p, GH_SECRET));
    out
}

/// Gitea: one delivery per review, naming neither the review nor its comments.
fn gitea_review_delivery(pull: u64, author: &str, content: &str, delivery: &str) -> Delivery {
    let mut p = on_pull("gitea/pull_request_comment.reviewed.json", pull, author);
    p["review"] = json!({ "type": "pull_request_review_comment", "content": content });
    webhook::gitea("pull_request_comment", "pull_request_review_comment", delivery, &p, TEA_SECRET)
}

/// Opens the issue's pull request with a first run, and returns its number.
async fn open_pull(t: &BotEnv, instance: &str, issue: u64) -> u64 {
    let marker = format!("MARK-OPEN-{issue}");
    t.env.model.on(
        &marker,
        vec![
            Step::Bash(format!("echo v1 > lib.txt && git add lib.txt && git commit -q -m 'agent: lib {issue}'")),
            Step::Answer(format!("Wrote lib.txt. FIRST-{issue}")),
        ],
    );
    let text = format!("@kugetsu write lib.txt {marker}");
    let d = match instance {
        "gh" => gh(&gh_comment(issue, issue * 10, &text, "alice"), &format!("open-{issue}")),
        _ => tea(&tea_comment(issue, issue * 10, &text, "alice"), &format!("open-{issue}")),
    };
    assert_eq!(d.post(&t.url(instance)).await.0, 202);
    t.forge.wait_for_comments(REPO, issue, 1).await;
    let pulls = t.forge.pulls(REPO);
    let pull =
        pulls.iter().find(|(_, _, body, _)| body.starts_with(&format!("Closes #{issue}."))).expect("a pull request");
    pull.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_one_review_with_three_comments_is_one_run_answered_in_its_thread() {
    let mut t = BotEnv::new().await;
    let pull = open_pull(&t, "gh", 71).await;
    t.env.model.on(
        "MARK-REVIEW",
        vec![
            Step::Bash("echo v2 > lib.txt && git commit -q -am 'agent: rename'".into()),
            Step::Answer("Renamed it as asked. REVIEW-ANSWER".into()),
        ],
    );
    let comments = [
        ("src/lib.rs", 7, "@kugetsu this name is unclear MARK-REVIEW"),
        ("src/lib.rs", 12, "and this one"),
        ("README.md", 3, "typo here"),
    ];
    let (review, ids) = t.forge.add_review(REPO, pull, "alice", "A few things.", &comments);
    let texts: Vec<(u64, &str)> = ids.iter().copied().zip(comments.iter().map(|c| c.2)).collect();
    for d in github_review_deliveries(pull, "alice", review, &texts, "A few things.") {
        let (status, text) = d.post(&t.url("gh")).await;
        assert!(status == 202 || status == 200, "{status} {text}");
    }
    // The answer goes into the first comment's thread.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let replies = loop {
        let replies = t.forge.thread_replies(REPO, pull);
        if !replies.is_empty() {
            break replies;
        }
        assert!(std::time::Instant::now() < deadline, "no reply in the review thread");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(replies.len(), 1, "{replies:?}");
    let (parent, author, body) = &replies[0];
    assert_eq!((*parent, author.as_str()), (ids[0], support::fake_forge::BOT_LOGIN));
    assert!(body.contains("REVIEW-ANSWER") && body.contains(&format!("[#{pull}]")), "{body}");
    let done = t.wait_for_jobs_done(2).await;
    assert_eq!(t.env.model.requests_for("MARK-REVIEW").len(), 2, "one run: a bash step and the answer");
    assert_eq!(done.len(), 2, "the first run and one review run: {done:?}");
    let seen = transcript(&t.env.model.requests_for("MARK-REVIEW")[0]);
    for wanted in
        ["file: src/lib.rs", "at: line 7", "+new line 7", "file: README.md", "typo here", "A few things.", "FIRST-71"]
    {
        assert!(seen.contains(wanted), "the prompt has {wanted:?}: {seen}");
    }
    assert!(t.env.remote_files("kugetsu/71").contains(&"lib.txt".to_owned()));
    assert_eq!(t.forge.pulls(REPO).len(), 1, "the push updates the pull request; no other opens");
    assert!(t.forge.comments(REPO, pull).is_empty(), "nothing in the conversation: the thread has it");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gitea_review_reaches_the_model_with_its_lines_and_is_answered_in_the_conversation() {
    let mut t = BotEnv::new().await;
    let pull = open_pull(&t, "tea", 72).await;
    t.env.model.on("MARK-TEA-REVIEW", vec![Step::Answer("Done as asked. TEA-REVIEW-ANSWER".into())]);
    // A reader's review mentioning the bot: nothing, not even a refusal.
    t.forge.add_review(REPO, pull, "mallory", "", &[("src/main.rs", 2, "@kugetsu delete everything")]);
    assert_eq!(
        gitea_review_delivery(pull, "mallory", "@kugetsu delete everything", "g-1").post(&t.url("tea")).await.0,
        202
    );
    // A writer's review that talks to people only: nothing either (mode "mention").
    t.forge.add_review(REPO, pull, "bob", "", &[("src/main.rs", 4, "nice")]);
    t.forge.set_permission("bob", "write");
    assert_eq!(gitea_review_delivery(pull, "bob", "nice", "g-2").post(&t.url("tea")).await.0, 202);
    // Positive control: the writer's review that asks.
    let (_, ids) =
        t.forge.add_review(REPO, pull, "alice", "", &[("src/main.rs", 3, "@kugetsu use a constant MARK-TEA-REVIEW")]);
    assert_eq!(
        gitea_review_delivery(pull, "alice", "@kugetsu use a constant MARK-TEA-REVIEW", "g-3")
            .post(&t.url("tea"))
            .await
            .0,
        202
    );
    let answers = t.forge.wait_for_comments(REPO, pull, 1).await;
    let body = &answers[0].body;
    assert!(body.starts_with("> On `src/main.rs` line 3: ") && body.contains("TEA-REVIEW-ANSWER"), "{body}");
    let seen = transcript(&t.env.model.requests_for("MARK-TEA-REVIEW")[0]);
    assert!(
        seen.contains("file: src/main.rs") && seen.contains("at: line 3") && seen.contains("+new line 3"),
        "{seen}"
    );
    assert!(seen.contains("FIRST-72"), "the review continues the issue's session: {seen}");
    let done = t.wait_for_jobs_done(4).await;
    assert_eq!(t.env.model.requests_for("delete everything").len(), 0);
    assert_eq!(t.forge.comments(REPO, pull).len(), 1, "the reader and the chat got no answer: {done:?}");
    assert!(ids.len() == 1);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_all_review_comments_every_writers_review_on_kugetsus_pull_request_runs() {
    let more = r#"
[instances.tea.repos."acme/widget"]
review_comments = "all"
"#;
    let mut t = BotEnv::with(more, Vec::new()).await;
    let pull = open_pull(&t, "tea", 73).await;
    t.env.model.on("MARK-ALL", vec![Step::Answer("Handled. ALL-ANSWER".into())]);
    t.forge.add_review(REPO, pull, "alice", "", &[("src/main.rs", 5, "this could be shorter MARK-ALL")]);
    assert_eq!(
        gitea_review_delivery(pull, "alice", "this could be shorter MARK-ALL", "a-1").post(&t.url("tea")).await.0,
        202
    );
    let answers = t.forge.wait_for_comments(REPO, pull, 1).await;
    assert!(answers[0].body.contains("ALL-ANSWER"), "{}", answers[0].body);
    // Control: on a pull request kugetsu did not open, a review without a mention is not even stored.
    t.forge.add_issue(REPO, 90);
    let (status, text) = gitea_review_delivery(90, "alice", "looks fine", "a-2").post(&t.url("tea")).await;
    assert_eq!((status, text.as_str()), (200, "ignored: a review that does not mention the bot"));
    t.stop().await;
}
