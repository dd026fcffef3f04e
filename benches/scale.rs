//! kugetsu across replicas, side by side, from one run on this machine:
//!
//! - webhook answers under open-loop load (200 deliveries/s for 10 s, a new
//!   connection each, every payload distinct, half of them stored as jobs)
//!   while every replica's agent slots hold runs: `kugetsu serve` on SQLite, on
//!   PostgreSQL alone, and three replicas on PostgreSQL with the deliveries
//!   spread over them;
//! - the takeover: from a `kill -9` of the replica running an issue to that
//!   issue's answer posted by another replica.
//!
//! Run with `cargo bench --bench scale` (after `scripts/test` has installed
//! opencode and PostgreSQL). Each replica is a process of its own, on a
//! throwaway PostgreSQL cluster on this machine (fsync off, as in the tests).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::Step;
use support::bot_env::{gh, gh_comment};
use support::replicas::Replicas;

/// Runs that hold every agent slot (2 per replica) while the load comes.
async fn hold_every_slot(r: &Replicas) {
    r.t.env.model.on("BUSY", vec![Step::Hang]);
    let runs = 2 * r.serves.len() as u64;
    for n in 0..runs {
        let to = r.serve(usize::try_from(n).unwrap_or(0) % r.serves.len()).url("gh");
        let delivery = gh(&gh_comment(900 + n, 90_000 + n, "@kugetsu BUSY", "alice"), &format!("busy-{n}"));
        assert_eq!(delivery.post(&r.t.at(to)).await.0, 202);
    }
    let deadline = Instant::now() + Duration::from_secs(180);
    while (r.t.env.model.requests_for("BUSY").len() as u64) < runs {
        assert!(Instant::now() < deadline, "the busy runs never started: {}", r.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Answer times at 200 deliveries/s for 10 s, round-robin over the replicas:
/// (stored, ignored).
async fn acks(r: &Replicas) -> (Vec<Duration>, Vec<Duration>) {
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("a client");
    let urls: Vec<String> = (0..r.serves.len()).map(|n| r.serve(n).url("gh")).collect();
    let (rate, seconds) = (200u32, 10u32);
    let start = tokio::time::Instant::now();
    let period = Duration::from_secs(1) / rate;
    let mut tasks = Vec::new();
    for i in 0..u64::from(rate * seconds) {
        let trigger = i % 2 == 0;
        let text = if trigger { "@kugetsu queued behind the busy runs" } else { "a comment without a mention" };
        let delivery = gh(&gh_comment(1000 + i / 2, 100_000 + i, text, "alice"), &format!("load-{i}"));
        let endpoint = r.t.at(urls[usize::try_from(i).unwrap_or(0) % urls.len()].clone());
        let client = client.clone();
        let due = start + period * u32::try_from(i).unwrap_or(0);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(due).await;
            let sent = Instant::now();
            let (status, text) = delivery.post_with(&client, &endpoint).await;
            assert_eq!(status, if trigger { 202 } else { 200 }, "{text}");
            (trigger, sent.elapsed())
        }));
    }
    let (mut stored, mut ignored) = (Vec::new(), Vec::new());
    for task in tasks {
        let (trigger, took) = task.await.expect("a delivery");
        if trigger { stored.push(took) } else { ignored.push(took) }
    }
    (stored, ignored)
}

fn figures(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let at = |p: f64| {
        let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
        samples[i.min(samples.len() - 1)].as_secs_f64() * 1e3
    };
    format!("p50 {:>6.2} ms  p99 {:>6.2} ms", at(0.5), at(0.99))
}

/// From `kill -9` of the replica running an issue to its answer by another.
async fn takeover(lease: &str) -> Duration {
    let mut r = Replicas::start(3, lease).await;
    let model = r.t.env.model.clone();
    model.on("SLOW", vec![Step::Hang]);
    let ask = gh(&gh_comment(50, 5000, "@kugetsu SLOW", "alice"), "slow-1");
    assert_eq!(ask.post(&r.t.at(r.serve(0).url("gh"))).await.0, 202);
    model.wait_for_request("SLOW", Duration::from_secs(120)).await;
    let runner = r.runner("gh/acme/widget#50").await;
    model.on("SLOW", vec![Step::Answer("TAKEN-OVER".into())]);
    let killed = Instant::now();
    r.kill(runner, Signal::SIGKILL);
    r.serves[runner].take();
    let deadline = Instant::now() + Duration::from_secs(180);
    while !r.t.forge.comments("acme/widget", 50).iter().any(|c| c.body.contains("TAKEN-OVER")) {
        assert!(Instant::now() < deadline, "never taken over: {}", r.logs());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    killed.elapsed()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // Stored jobs wait behind the busy runs; the limits would refuse them first.
    let limits = "per_user_per_hour = 100000\nper_repo_per_hour = 100000\nqueued_per_issue = 100";
    println!("webhook answers, 200 deliveries/s for 10 s, a new connection each, every agent slot busy");
    for (label, count, postgres) in [
        ("SQLite, one process", 1, false),
        ("PostgreSQL, one replica", 1, true),
        ("PostgreSQL, three replicas", 3, true),
    ] {
        let url = match postgres {
            true => Some(support::postgres::cluster().new_database().await),
            false => None,
        };
        let r = Replicas::start_on(count, url, "30s", limits).await;
        hold_every_slot(&r).await;
        let (stored, ignored) = acks(&r).await;
        println!("  {label:<28} stored (202): {}   ignored (200): {}", figures(stored), figures(ignored));
        drop(r);
        // The runs' opencode servers go with their replicas; let the machine settle.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    for lease in ["5s", "30s"] {
        let took = takeover(lease).await;
        println!(
            "\ntakeover with bot.lease = {lease}: kill -9 of the replica running an issue → its answer from another: {:.1} s",
            took.as_secs_f64()
        );
    }
}
