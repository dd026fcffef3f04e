//! The status listener: `/metrics` read by a real HTTP client, and the status
//! page loaded by a real headless Chromium, while the bot runs real jobs.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::Step;
use support::bot_env::{BotEnv, tea, tea_comment};

/// A bot whose status listener is on, on a port of its own.
async fn bot_with_status_page() -> BotEnv {
    let mut t = BotEnv::new().await;
    t.stop().await;
    t.edit_config(|c| {
        c.replacen("listen = \"127.0.0.1:0\"\n", "listen = \"127.0.0.1:0\"\nstatus_listen = \"127.0.0.1:0\"\n", 1)
    });
    t.start().await;
    t
}

async fn get(url: &str) -> (u16, String, String) {
    let resp = reqwest::get(url).await.expect("the status listener answers");
    let status = resp.status().as_u16();
    let kind = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    (status, kind, resp.text().await.unwrap_or_default())
}

/// Debian's `chromium`; the test command installs it.
fn chromium() -> PathBuf {
    ["chromium", "chromium-browser"]
        .iter()
        .find_map(|name| std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(name)).find(|p| p.is_file()))
        .expect("chromium is not installed: `scripts/test` installs it (apt-get install chromium)")
}

/// Runs headless Chromium on `url` with `args`, in a profile of its own; returns stdout.
async fn headless(url: &str, args: &[&str], profile: &Path) -> String {
    let mut cmd = tokio::process::Command::new(chromium());
    // As root Chromium runs only without its own sandbox.
    cmd.args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--window-size=1280,900"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("chromium finished within 90 s")
        .expect("chromium runs");
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_and_metrics_show_runs_queue_and_failures() {
    let t = bot_with_status_page().await;
    t.env.model.on("MARK-OK", vec![Step::Bash("echo done > done.txt".into()), Step::Answer("all done".into())]);
    t.env.model.on("MARK-BAD", vec![Step::Error(500)]);
    // Still running while the page is read.
    t.env.model.on("MARK-SLOW", vec![Step::After(Duration::from_secs(60), Box::new(Step::Answer("late".into())))]);
    for (number, mark) in [(41, "MARK-OK"), (42, "MARK-BAD")] {
        let delivery =
            tea(&tea_comment(number, 600 + number, &format!("@kugetsu {mark}"), "alice"), &format!("s-{number}"));
        assert_eq!(delivery.post(&t.url("tea")).await.0, 202);
    }
    t.forge.wait_for_comments("acme/widget", 41, 1).await;
    t.forge.wait_for_comments("acme/widget", 42, 1).await;
    let slow = tea(&tea_comment(43, 643, "@kugetsu MARK-SLOW", "alice"), "s-43");
    assert_eq!(slow.post(&t.url("tea")).await.0, 202);
    // Unsigned: counted as such, and stores nothing.
    let mut forged = tea(&tea_comment(44, 644, "@kugetsu hi", "alice"), "s-44");
    forged.headers.retain(|(name, _)| !name.to_ascii_lowercase().ends_with("signature"));
    assert_eq!(forged.post(&t.url("tea")).await.0, 401);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while t.env.model.requests_for("MARK-SLOW").is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the slow run never reached the model");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let status = format!("http://{}", t.bot().status_addr.expect("bot.status_listen is set"));
    let (code, kind, metrics) = get(&format!("{status}/metrics")).await;
    assert_eq!(code, 200, "{metrics}");
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    for line in [
        r#"kugetsu_webhook_deliveries_total{instance="tea",outcome="stored"} 3"#,
        r#"kugetsu_webhook_deliveries_total{instance="tea",outcome="unauthorized"} 1"#,
        r#"kugetsu_runs_total{outcome="succeeded"} 1"#,
        r#"kugetsu_runs_total{outcome="failed"} 1"#,
        r#"kugetsu_queue_depth{state="running"} 1"#,
        "kugetsu_webhook_ack_seconds_count 4",
        "kugetsu_queue_wait_seconds_count 3",
        "kugetsu_run_seconds_count 2",
    ] {
        assert!(metrics.lines().any(|l| l == line), "`{line}` missing from:\n{metrics}");
    }
    let servers = metrics.lines().find_map(|l| l.strip_prefix("kugetsu_opencode_servers ")).unwrap_or("0");
    assert!(servers.parse::<u64>().is_ok_and(|n| n >= 1), "an opencode server runs the slow job:\n{metrics}");
    let input = metrics.lines().find_map(|l| l.strip_prefix(r#"kugetsu_tokens_total{kind="input"} "#)).unwrap_or("0");
    assert!(input.parse::<u64>().is_ok_and(|n| n > 0), "the fake model reports usage:\n{metrics}");

    let profile = tempfile::tempdir().unwrap();
    let dom = headless(&format!("{status}/"), &["--dump-dom"], profile.path()).await;
    let web = t.forge.gitea_api().trim_end_matches("/api/v1").to_owned();
    let pulls = t.forge.pulls("acme/widget");
    let pull = pulls.iter().find(|p| p.3.head == "kugetsu/41").expect("the good run's pull request").0;
    for shown in [
        format!(r#"<a href="https://forge.example.com/acme/widget/pulls/{pull}">#{pull}</a>"#),
        format!(r#"<a href="{web}/acme/widget/issues/41">tea/acme/widget#41</a>"#),
        format!(r#"<a href="{web}/acme/widget/src/branch/kugetsu/41"><code>kugetsu/41</code></a>"#),
        "Running and queued jobs (1)".to_owned(),
        r#"<td class="running">running</td>"#.to_owned(),
        "Tracked issues (3)".to_owned(),
        "Recent failures (1)".to_owned(),
        "the run failed:".to_owned(),
    ] {
        assert!(dom.contains(&shown), "`{shown}` missing from the page:\n{dom}");
    }
    let failures = &dom[dom.find(r#"id="failures""#).expect("a failures section")..];
    assert!(failures.contains("tea/acme/widget#42") && !failures.contains("tea/acme/widget#41"), "{failures}");

    // Kept for people to look at: target/tmp/status-page.png.
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    headless(&format!("{status}/"), &[&format!("--screenshot={}", shot.display())], profile.path()).await;
    let png = std::fs::read(&shot).expect("chromium wrote the screenshot");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a real screenshot: {} bytes", png.len());

    // The webhook listener, which the forges reach, shows neither.
    let hook = format!("http://{}", t.bot().addr);
    assert_eq!(get(&format!("{hook}/metrics")).await.0, 404);
    assert_eq!(get(&format!("{hook}/")).await.0, 404);
    let mut t = t;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_status_listen_nothing_serves_the_page() {
    let mut t = BotEnv::new().await;
    assert_eq!(t.bot().status_addr, None);
    let hook = format!("http://{}", t.bot().addr);
    assert_eq!(get(&format!("{hook}/metrics")).await.0, 404);
    assert_eq!(get(&format!("{hook}/")).await.0, 404);
    assert_eq!(get(&format!("{hook}/healthz")).await.0, 200, "positive control: the listener answers");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_password_the_page_and_metrics_ask_for_it() {
    let mut t = BotEnv::with("", vec![("KUGETSU_STATUS_PASSWORD", "status-canary".into())]).await;
    t.stop().await;
    t.edit_config(|c| {
        c.replacen(
            "listen = \"127.0.0.1:0\"\n",
            "listen = \"127.0.0.1:0\"\nstatus_listen = \"127.0.0.1:0\"\nstatus_password_env = \"KUGETSU_STATUS_PASSWORD\"\n",
            1,
        )
    });
    t.start().await;
    let status = format!("http://{}", t.bot().status_addr.expect("bot.status_listen is set"));
    let client = reqwest::Client::new();
    for path in ["/", "/metrics"] {
        let url = format!("{status}{path}");
        let none = client.get(&url).send().await.unwrap();
        assert_eq!(none.status(), 401, "{path}");
        let asks = none.headers().get("www-authenticate").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        assert!(asks.starts_with("Basic "), "browsers are asked: {asks}");
        let wrong = client.get(&url).basic_auth("anyone", Some("not-it")).send().await.unwrap();
        assert_eq!(wrong.status(), 401, "{path}");
        let right = client.get(&url).basic_auth("anyone", Some("status-canary")).send().await.unwrap();
        assert_eq!(right.status(), 200, "{path}");
        assert!(!right.text().await.unwrap().contains("status-canary"));
    }
    t.stop().await;
    // Asked for and not there: serve says so, rather than serve the page to anyone.
    let owned: Vec<(String, String)> =
        t.secret_vars().into_iter().filter(|(k, _)| k != "KUGETSU_STATUS_PASSWORD").collect();
    let vars: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let refused = kugetsu::bot::Bot::start(t.env.config_with_env(&vars), listener).await;
    let error = refused.err().map(|e| format!("{e:#}")).unwrap_or_default();
    assert!(error.contains("KUGETSU_STATUS_PASSWORD") && error.contains("not set"), "{error}");
}
