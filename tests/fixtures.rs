//! Every captured payload in tests/fixtures normalises as expected, and the
//! published HMAC vectors verify against the files' exact bytes.

mod support;

use kugetsu::config::ForgeKind;
use kugetsu::event::{EventKind, Normalized, normalize};
use kugetsu::webhook::signature::verify;
use secrecy::SecretString;
use support::webhook::fixture_bytes;

fn run(kind: ForgeKind, event: &str, file: &str) -> Normalized {
    let instance = "forge".parse().unwrap();
    normalize(kind, &instance, event, "delivery-1", &fixture_bytes(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn event(kind: ForgeKind, event: &str, file: &str) -> kugetsu::event::ForgeEvent {
    match run(kind, event, file) {
        Normalized::Event(e) => *e,
        Normalized::Ignored(why) => panic!("{file} was ignored: {why}"),
        Normalized::ChecksFailed(c) => panic!("{file} is a CI failure: {c:?}"),
    }
}

#[test]
fn github_fixtures_normalise() {
    use ForgeKind::Github;
    let e = event(Github, "issues", "github/issues.opened.json");
    assert_eq!((e.issue.to_string().as_str(), &e.kind), ("forge/gagbo/circadian.nvim#1", &EventKind::IssueOpened));
    assert_eq!(e.author, "gagbo");
    assert!(!e.author_is_bot && !e.is_pull_request && e.comment.is_none());
    assert_eq!(e.delivery_id, "delivery-1");

    let e = event(Github, "issues", "github/issues.labeled.json");
    assert_eq!(e.kind, EventKind::IssueLabeled { added: Some("enhancement".into()) });
    assert_eq!(e.labels, vec!["enhancement".to_owned()]);

    assert_eq!(event(Github, "issues", "github/issues.edited.json").kind, EventKind::IssueEdited);
    let closed = event(Github, "issues", "github/issues.closed.json");
    assert_eq!(closed.kind, EventKind::IssueClosed);
    assert_eq!(closed.issue.to_string(), "forge/c-saunders/flynn_env_test#1");

    let e = event(Github, "issue_comment", "github/issue_comment.created.json");
    assert_eq!(e.kind, EventKind::CommentCreated);
    assert!(e.author_is_bot, "the comment is by a GitHub App");
    assert_eq!(e.comment.as_ref().map(|c| c.id), Some(1633968123));
    assert!(!e.is_pull_request);

    let e = event(Github, "issue_comment", "github/issue_comment.edited.pull_request.json");
    assert_eq!(e.kind, EventKind::CommentEdited);
    assert!(e.is_pull_request);
    assert_eq!(e.issue.number(), 5);

    assert!(matches!(run(Github, "ping", "github/ping.json"), Normalized::Ignored(_)));
    assert!(matches!(run(Github, "pull_request", "github/pull_request.opened.json"), Normalized::Ignored(_)));

    // CI: the captures report success and a re-requested neutral check; failed copies are failures.
    assert!(matches!(run(Github, "status", "github/status.json"), Normalized::Ignored(_)));
    assert!(matches!(run(Github, "check_run", "github/check_run.rerequested.json"), Normalized::Ignored(_)));
    let failed = |file: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        let mut payload: serde_json::Value = serde_json::from_slice(&fixture_bytes(file)).unwrap();
        edit(&mut payload);
        let body = serde_json::to_vec(&payload).unwrap();
        normalize(
            Github,
            &"forge".parse().unwrap(),
            if file.contains("status") { "status" } else { "check_run" },
            "d",
            &body,
        )
    };
    let Ok(Normalized::ChecksFailed(c)) = failed("github/status.json", &|p| p["state"] = "failure".into()) else {
        panic!("a failed status")
    };
    assert_eq!(
        (c.sha.as_str(), c.check.as_str(), c.repo.to_string()),
        ("9049f1265b7d61be4a8904a9a27120d2064dab3b", "default", "forge/baxterthehacker/public-repo".to_owned())
    );
    let run_failed = |p: &mut serde_json::Value| {
        p["action"] = "completed".into();
        p["check_run"]["conclusion"] = "failure".into();
    };
    let Ok(Normalized::ChecksFailed(c)) = failed("github/check_run.rerequested.json", &run_failed) else {
        panic!("a failed check run")
    };
    assert_eq!((c.sha.as_str(), c.check.as_str()), ("d6fde92930d4715a2b49857d24b940956b26d2d3", "randscape"));

    // Reviews: a line comment, and a whole review; both carry the pull request, not an issue.
    let e = event(Github, "pull_request_review_comment", "github/pull_request_review_comment.created.json");
    assert_eq!(
        (e.kind.clone(), e.issue.to_string(), e.is_pull_request),
        (EventKind::ReviewSubmitted, "forge/baxterthehacker/public-repo#1".into(), true)
    );
    let review = e.review.expect("a review");
    assert_eq!((review.id, review.comment_id), (None, Some(29724692)), "the 2015 capture predates review ids");
    assert_eq!(review.text, "Maybe you should use more emojji on this line.");
    let e = event(Github, "pull_request_review", "github/pull_request_review.submitted.json");
    let review = e.review.expect("a review");
    assert_eq!((e.issue.number(), review.id, review.text.as_str()), (8, Some(2626884), "Looks great!"));
    assert_eq!(e.author, "baxterthehacker");
}

#[test]
fn gitea_fixtures_normalise() {
    use ForgeKind::Gitea;
    let e = event(Gitea, "issues", "gitea/issues.opened.json");
    assert_eq!((e.issue.to_string().as_str(), &e.kind), ("forge/example/example#1", &EventKind::IssueOpened));
    assert_eq!(e.repo_html_url.as_deref(), Some("http://localhost:3000/example/example"));

    let e = event(Gitea, "issues", "gitea/issues.label_updated.json");
    assert_eq!(e.kind, EventKind::IssueLabeled { added: None }, "Gitea does not say which label was added");
    assert_eq!(e.labels, vec!["bug".to_owned()]);
    let e = event(Gitea, "issues", "gitea/issues.label_cleared.json");
    assert_eq!(e.kind, EventKind::IssueLabeled { added: None }, "a clear is a label change with no labels left");
    assert!(e.labels.is_empty());

    assert_eq!(event(Gitea, "issues", "gitea/issues.edited.json").kind, EventKind::IssueEdited);
    assert_eq!(event(Gitea, "issues", "gitea/issues.closed.json").kind, EventKind::IssueClosed);

    let e = event(Gitea, "issue_comment", "gitea/issue_comment.created.json");
    assert_eq!(e.kind, EventKind::CommentCreated);
    assert!(!e.is_pull_request && !e.author_is_bot);
    assert_eq!(e.comment.as_ref().map(|c| c.id), Some(2));

    let e = event(Gitea, "issue_comment", "gitea/issue_comment.created.pull_request.json");
    assert!(e.is_pull_request, "a non-null pull_request marks a PR comment");
    assert_eq!(e.issue.number(), 2);

    let e = event(Gitea, "issue_comment", "gitea/issue_comment.edited.json");
    assert_eq!(e.kind, EventKind::CommentEdited);
    assert_eq!(e.issue.to_string(), "forge/kostekiv/test#3");

    assert!(matches!(run(Gitea, "pull_request", "gitea/pull_request.opened.json"), Normalized::Ignored(_)));
    assert!(matches!(run(Gitea, "push", "gitea/push.json"), Normalized::Ignored(_)));

    // A failed commit status (built from Gitea's schema; see the fixtures' README).
    let Normalized::ChecksFailed(c) = run(Gitea, "status", "gitea/status.failure.json") else { panic!("a CI failure") };
    assert_eq!((c.check.as_str(), c.sender.as_str()), ("ci/build", "example"));
    assert_eq!(c.sha.len(), 40);

    // A review: X-Gitea-Event `pull_request_comment` (HookEventPullRequestReviewComment.Event()).
    let e = event(Gitea, "pull_request_comment", "gitea/pull_request_comment.reviewed.json");
    let review = e.review.clone().expect("a review");
    assert_eq!(
        (e.kind, e.issue.number(), review.id, review.text.as_str()),
        (EventKind::ReviewSubmitted, 2, None, "123")
    );
    // Control: on GitHub that header names nothing kugetsu acts on.
    assert!(matches!(
        run(ForgeKind::Github, "pull_request_comment", "gitea/pull_request_comment.reviewed.json"),
        Normalized::Ignored(_)
    ));
}

#[test]
fn gitea_hmac_vectors_verify_against_the_fixture_bytes() {
    let secret = SecretString::from("IsWishesWereHorsesWedAllBeEatingSteak!");
    for (file, sig) in [
        ("gitea/issues.opened.json", "98c44fd0ae42ca4208eac6f81e59b436837740abc8693bf828366b32d33b1cbc"),
        ("gitea/issues.label_updated.json", "3611415860ed5904c87dd589a7c5fa7e87d2a72b0b2a92ea149ba9691ba8c785"),
        ("gitea/issue_comment.created.json", "690180a8c853460cba88f9b09911a531d449e9f63ed6b1ff0a0def3b972ca744"),
        (
            "gitea/issue_comment.created.pull_request.json",
            "8b38bf221adbaef2ce01cfa810c6d9cb977414fec306895973aea61e10e8d5a8",
        ),
        ("gitea/pull_request.opened.json", "65c18a212efc7bde0f336acaec87f596fe20e80b2a0e7e51a790dd38393ff771"),
        ("gitea/push.json", "60fe446c74fa0cb9474f98cc557db79e10c7aaf22cf324ad65239600b9e4d915"),
        (
            "gitea/pull_request_comment.reviewed.json",
            "5d5c315cc199807a23da81b788dcf7874299a223ba81fc77d76ab248fdab4d1c",
        ),
    ] {
        let body = fixture_bytes(file);
        assert!(verify(&secret, &body, sig), "{file}");
        let mut tampered = body.clone();
        tampered.push(b' ');
        assert!(!verify(&secret, &tampered, sig), "{file} tampered");
    }
}

#[test]
fn malformed_payloads_are_errors_not_panics() {
    let instance = "forge".parse().unwrap();
    for body in [&b""[..], b"{", b"[]", b"{\"issue\":{\"number\":-1}}", b"{\"issue\":{}, \"repository\":{}}"] {
        let _ = normalize(ForgeKind::Github, &instance, "issues", "d", body);
    }
    let hostile = br#"{"action":"opened","issue":{"number":1,"title":"t","user":{"login":"a"}},"repository":{"name":"..","owner":{"login":"x"}}}"#;
    assert!(normalize(ForgeKind::Gitea, &instance, "issues", "d", hostile).is_err());
}
