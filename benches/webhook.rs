//! Prints how fast the bot answers webhooks while agent runs are in progress,
//! and how long a delivery takes to reach the agent's first model request.
//!
//! Run with `cargo bench --bench webhook` (after `scripts/install-opencode`).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use kugetsu::bot::Bot;
use support::webhook::{self, fixture, retarget, with_comment};
use support::{EnvOptions, FakeForge, Step, TestEnv};

const SECRET: &str = "bench-secret";
const TOKEN: &str = "bench-token";
const DELIVERIES: usize = 400;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{label:<48} n={:<4} p50={:>7.2} ms  p99={:>7.2} ms  max={:>7.2} ms",
        samples.len(),
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
    );
}

fn mention(number: u64, comment_id: u64, text: &str, author: &str) -> webhook::Delivery {
    let payload = retarget(fixture("gitea/issue_comment.created.json"), "acme", "widget", number, author);
    let payload = with_comment(payload, comment_id, text);
    webhook::gitea("issue_comment", "issue_comment", &format!("bench-{comment_id}"), &payload, SECRET)
}

async fn time_to_first_request(
    env: &TestEnv,
    url: &webhook::Endpoint,
    delivery: webhook::Delivery,
    marker: &str,
) -> Duration {
    let started = Instant::now();
    let (status, text) = delivery.post(url).await;
    assert_eq!(status, 202, "{text}");
    env.model.wait_for_request(marker, Duration::from_secs(120)).await;
    started.elapsed()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let forge = FakeForge::start().await;
    forge.set_permission("alice", "write");
    forge.set_permission(support::fake_forge::BOT_LOGIN, "admin");
    forge.accept_token(TOKEN, support::fake_forge::BOT_LOGIN);
    let extra = format!(
        "\n[instances.tea]\nkind = \"gitea\"\napi_url = \"{}\"\ngit_url = \"{{remotes}}\"\ntoken_env = \"TOKEN\"\nwebhook_secret_env = \"SECRET\"\n",
        forge.gitea_api()
    );
    let env = TestEnv::with(EnvOptions { extra, run_timeout: "10m", ..EnvOptions::default() }).await;
    let text = std::fs::read_to_string(&env.config_path).unwrap().replace("{remotes}", env.remotes.to_str().unwrap());
    std::fs::write(&env.config_path, text).unwrap();
    let config = env.config_with_env(&[("SECRET", SECRET), ("LOCAL_WEBHOOK_SECRET", SECRET), ("TOKEN", TOKEN)]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bot = Bot::start(config, listener).await.expect("bot starts");
    let url = webhook::Endpoint { url: format!("http://{}/webhooks/tea", bot.addr), forge: forge.clone() };

    println!("delivery → the agent's first model request");
    for (label, number, id, marker) in [
        ("new issue, cold (clone + opencode start)", 1, 1, "FIRST-A"),
        ("new issue, warm mirror and server", 2, 2, "FIRST-B"),
        ("issue with a worktree and session", 2, 3, "FIRST-C"),
    ] {
        env.model.on(marker, vec![Step::Answer("ok".into())]);
        let d = mention(number, id, &format!("@kugetsu {marker}"), "alice");
        let took = time_to_first_request(&env, &url, d, marker).await;
        println!("  {label:<46} {:>8.0} ms", took.as_secs_f64() * 1e3);
        forge.wait_for_comments("acme/widget", number, if id == 3 { 2 } else { 1 }).await;
    }

    // Two runs that never finish keep both worker slots busy while we measure.
    env.model.on("BUSY", vec![Step::Hang]);
    for (number, id) in [(10, 10), (11, 11)] {
        let d = mention(number, id, "@kugetsu BUSY", "alice");
        assert_eq!(d.post(&url).await.0, 202);
    }
    env.model.wait_for_request("BUSY", Duration::from_secs(120)).await;

    println!("webhook answer time with 2 agent runs in progress");
    let client = reqwest::Client::new();
    let mut ignored = Vec::with_capacity(DELIVERIES);
    let mut queued = Vec::with_capacity(DELIVERIES);
    for i in 0..DELIVERIES as u64 {
        let plain = mention(100 + i, 10_000 + i, "a comment without a mention", "alice");
        let started = Instant::now();
        assert_eq!(plain.post_with(&client, url.url.as_str()).await.0, 200);
        ignored.push(started.elapsed());
        let triggering = mention(100 + i, 20_000 + i, "@kugetsu queued behind the busy runs", "alice");
        let started = Instant::now();
        assert_eq!(triggering.post_with(&client, url.url.as_str()).await.0, 202);
        queued.push(started.elapsed());
    }
    report("  verified, not triggering (200)", ignored);
    report("  verified, stored as a job (202)", queued);
    bot.shutdown().await;
}
