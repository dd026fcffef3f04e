//! `GET /metrics`, in the Prometheus text format. What happens (deliveries, jobs
//! claimed, runs) is counted where it happens; what is (the queue's depth, the
//! opencode servers, the forges' rate limits) is read when Prometheus asks, so
//! nothing has to keep those in step.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::opencode::ServerStats;
use crate::queue::QueueDepth;
use crate::result::Tokens;

/// What became of one webhook delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// A job was stored (202).
    Stored,
    /// Seen before, by delivery id or event (200).
    Duplicate,
    /// Verified, but asks for nothing (200).
    Ignored,
    /// No signature, or a wrong one (401).
    Unauthorized,
    /// Not a delivery kugetsu can read (400, 404).
    Malformed,
    /// kugetsu could not store it (503).
    Failed,
}

impl DeliveryOutcome {
    fn label(self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::Duplicate => "duplicate",
            Self::Ignored => "ignored",
            Self::Unauthorized => "unauthorized",
            Self::Malformed => "malformed",
            Self::Failed => "failed",
        }
    }
}

/// How an agent run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    Succeeded,
    Failed,
    /// Put back: the issue was busy or the disk nearly full.
    Deferred,
}

impl RunOutcome {
    fn label(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Deferred => "deferred",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    instance: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ForgeErrorLabels {
    instance: String,
    kind: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceLabel {
    instance: String,
}

/// What is read when Prometheus asks.
#[derive(Debug, Clone, Default)]
pub struct Readings {
    pub queue: QueueDepth,
    /// The oldest due job's wait so far.
    pub oldest_queued: Option<Duration>,
    pub opencode: ServerStats,
    pub forges: Vec<ForgeReading>,
}

#[derive(Debug, Clone, Default)]
pub struct ForgeReading {
    pub instance: String,
    pub errors: Vec<(&'static str, u64)>,
    pub rate_limit_remaining: Option<u64>,
}

/// The counters and histograms of one `kugetsu serve`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    deliveries: Family<DeliveryLabels, Counter>,
    ack_seconds: Histogram,
    queue_wait_seconds: Histogram,
    runs: Family<OutcomeLabel, Counter>,
    run_seconds: Histogram,
    tokens: Family<KindLabel, Counter>,
    cost: Counter<f64, AtomicU64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("kugetsu");
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register("webhook_deliveries", "Webhook deliveries, by instance and outcome", deliveries.clone());
        // 0.5 ms to 1 s: the target is a p99 under 5 ms.
        let ack_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 12));
        registry.register("webhook_ack_seconds", "Time to answer a webhook delivery", ack_seconds.clone());
        // 10 ms to about 3 h: a job put back after forge faults waits long.
        let queue_wait_seconds = Histogram::new(exponential_buckets(0.01, 3.0, 14));
        registry.register(
            "queue_wait_seconds",
            "Time from a trigger's arrival until a worker took its job",
            queue_wait_seconds.clone(),
        );
        let runs = Family::<OutcomeLabel, Counter>::default();
        registry.register("runs", "Agent runs, by outcome", runs.clone());
        // 0.1 s to about 7 h.
        let run_seconds = Histogram::new(exponential_buckets(0.1, 3.0, 12));
        registry.register("run_seconds", "Duration of an agent run, commit and push included", run_seconds.clone());
        let tokens = Family::<KindLabel, Counter>::default();
        registry.register("tokens", "Model tokens used by agent runs, by kind", tokens.clone());
        let cost = Counter::<f64, AtomicU64>::default();
        registry.register("cost", "Model cost of agent runs, in the provider's currency (usually USD)", cost.clone());
        Self { registry, deliveries, ack_seconds, queue_wait_seconds, runs, run_seconds, tokens, cost }
    }

    pub fn delivery(&self, instance: &str, outcome: DeliveryOutcome, took: Duration) {
        let labels = DeliveryLabels { instance: instance.to_owned(), outcome: outcome.label() };
        self.deliveries.get_or_create(&labels).inc();
        self.ack_seconds.observe(took.as_secs_f64());
    }

    pub fn job_claimed(&self, waited: Duration) {
        self.queue_wait_seconds.observe(waited.as_secs_f64());
    }

    /// A run's end; `used` is what a finished run reports of the model.
    pub fn run_finished(&self, outcome: RunOutcome, took: Duration, used: Option<(&Tokens, f64)>) {
        self.runs.get_or_create(&OutcomeLabel { outcome: outcome.label() }).inc();
        if outcome == RunOutcome::Deferred {
            return;
        }
        self.run_seconds.observe(took.as_secs_f64());
        if let Some((tokens, cost)) = used {
            let kinds = [
                ("input", tokens.input),
                ("output", tokens.output),
                ("reasoning", tokens.reasoning),
                ("cache_read", tokens.cache_read),
                ("cache_write", tokens.cache_write),
            ];
            for (kind, n) in kinds {
                self.tokens.get_or_create(&KindLabel { kind }).inc_by(n);
            }
            if cost.is_finite() && cost > 0.0 {
                self.cost.inc_by(cost);
            }
        }
    }

    /// The whole exposition: the counters above, then `now`.
    pub fn render(&self, now: &Readings) -> String {
        let mut out = String::new();
        let read = readings_registry(now);
        // Writing into a String cannot fail.
        let _ = encode_registry(&mut out, &self.registry)
            .and_then(|()| encode_registry(&mut out, &read))
            .and_then(|()| encode_eof(&mut out));
        out
    }
}

/// The content type of [`Metrics::render`]'s text (OpenMetrics, which Prometheus reads).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn readings_registry(now: &Readings) -> Registry {
    let mut registry = Registry::with_prefix("kugetsu");
    let depth = Family::<StateLabel, Gauge>::default();
    for (state, n) in [("queued", now.queue.queued), ("running", now.queue.running), ("waiting", now.queue.waiting)] {
        depth.get_or_create(&StateLabel { state }).set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    registry.register("queue_depth", "Unfinished jobs: queued (due), running, waiting (put back until later)", depth);
    let oldest = Gauge::<f64, AtomicU64>::default();
    oldest.set(now.oldest_queued.map_or(0.0, |d| d.as_secs_f64()));
    registry.register("queue_oldest_wait_seconds", "How long the oldest due job has waited so far", oldest);
    let gauge = |n: u64| {
        let g = Gauge::<i64>::default();
        g.set(i64::try_from(n).unwrap_or(i64::MAX));
        g
    };
    let opencode = &now.opencode;
    registry.register("opencode_servers", "opencode servers running", gauge(opencode.running as u64));
    registry.register(
        "opencode_resident_bytes",
        "Resident memory of the opencode servers and what they started",
        gauge(opencode.resident_mib.saturating_mul(1024 * 1024)),
    );
    registry.register(
        "opencode_restarts",
        "opencode servers replaced since start-up: died, killed, or past the memory limit",
        ConstCounter::new(opencode.restarts),
    );
    let errors = Family::<ForgeErrorLabels, Counter>::default();
    let remaining = Family::<InstanceLabel, Gauge>::default();
    for forge in &now.forges {
        for (kind, n) in &forge.errors {
            errors.get_or_create(&ForgeErrorLabels { instance: forge.instance.clone(), kind }).inc_by(*n);
        }
        if let Some(left) = forge.rate_limit_remaining {
            remaining
                .get_or_create(&InstanceLabel { instance: forge.instance.clone() })
                .set(i64::try_from(left).unwrap_or(i64::MAX));
        }
    }
    registry.register("forge_api_errors", "Failed forge API calls, by instance and kind", errors);
    registry.register(
        "forge_rate_limit_remaining",
        "API calls left in the forge's rate-limit window, where the forge says (GitHub)",
        remaining,
    );
    registry
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, starts: &str) -> &'a str {
        text.lines().find(|l| l.starts_with(starts)).unwrap_or_else(|| panic!("no `{starts}` in:\n{text}"))
    }

    #[test]
    fn what_happened_and_what_is_are_both_in_the_exposition() {
        let metrics = Metrics::new();
        metrics.delivery("tea", DeliveryOutcome::Stored, Duration::from_millis(2));
        metrics.delivery("tea", DeliveryOutcome::Stored, Duration::from_millis(3));
        metrics.delivery("hub", DeliveryOutcome::Unauthorized, Duration::from_micros(300));
        metrics.job_claimed(Duration::from_millis(40));
        let tokens = Tokens { input: 1200, output: 300, ..Tokens::default() };
        metrics.run_finished(RunOutcome::Succeeded, Duration::from_secs(3), Some((&tokens, 0.25)));
        metrics.run_finished(RunOutcome::Deferred, Duration::from_secs(1), None);
        let now = Readings {
            queue: QueueDepth { queued: 2, running: 1, waiting: 4, oldest_due_at: None },
            oldest_queued: Some(Duration::from_secs(7)),
            opencode: ServerStats { running: 3, resident_mib: 10, restarts: 1 },
            forges: vec![ForgeReading {
                instance: "hub".into(),
                errors: vec![("transient", 5), ("not_found", 0)],
                rate_limit_remaining: Some(4999),
            }],
        };
        let text = metrics.render(&now);
        assert_eq!(
            line(&text, r#"kugetsu_webhook_deliveries_total{instance="tea",outcome="stored"}"#).split(' ').nth(1),
            Some("2")
        );
        assert!(
            text.contains(r#"kugetsu_webhook_deliveries_total{instance="hub",outcome="unauthorized"} 1"#),
            "{text}"
        );
        assert!(text.contains("kugetsu_webhook_ack_seconds_count 3"), "{text}");
        assert!(text.contains(r#"kugetsu_webhook_ack_seconds_bucket{le="0.002"} 2"#), "{text}");
        assert!(text.contains("kugetsu_queue_wait_seconds_count 1"), "{text}");
        assert!(text.contains(r#"kugetsu_runs_total{outcome="succeeded"} 1"#), "{text}");
        assert!(text.contains(r#"kugetsu_runs_total{outcome="deferred"} 1"#), "{text}");
        // A deferred run did not run: its time is not a run's duration.
        assert!(text.contains("kugetsu_run_seconds_count 1"), "{text}");
        assert!(text.contains(r#"kugetsu_tokens_total{kind="input"} 1200"#), "{text}");
        assert!(text.contains("kugetsu_cost_total 0.25"), "{text}");
        assert!(text.contains(r#"kugetsu_queue_depth{state="waiting"} 4"#), "{text}");
        assert!(text.contains("kugetsu_queue_oldest_wait_seconds 7.0"), "{text}");
        assert!(text.contains("kugetsu_opencode_servers 3"), "{text}");
        assert!(text.contains("kugetsu_opencode_resident_bytes 10485760"), "{text}");
        assert!(text.contains("kugetsu_opencode_restarts_total 1"), "{text}");
        assert!(text.contains(r#"kugetsu_forge_api_errors_total{instance="hub",kind="transient"} 5"#), "{text}");
        assert!(text.contains(r#"kugetsu_forge_rate_limit_remaining{instance="hub"} 4999"#), "{text}");
        assert!(text.ends_with("# EOF\n"), "one end, after both parts: {text}");
        assert_eq!(text.matches("# EOF").count(), 1);
    }
}
