//! The status listener on `bot.status_listen`: the status page at `/` and the
//! Prometheus metrics at `/metrics`. Both only read. They have an address of
//! their own, apart from the webhooks the forges must reach, so neither is
//! public unless an operator makes it so; and since agents share the host's
//! network, `bot.status_password_env` puts both behind a password.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::engine::Engine;
use crate::forge::{Forge, branch_url, issue_url};
use crate::issue_ref::{InstanceName, IssueRef};
use crate::metrics::{ForgeReading, Metrics, Readings};
use crate::queue::{JobLine, Queue};
use crate::status::{IssueRow, JobRow, StatusPage};
use crate::store::now_millis;

/// The most jobs, issues and failures one page lists; issues most recently
/// changed first.
const PAGE_ROWS: u32 = 200;

pub struct Observer {
    pub metrics: Arc<Metrics>,
    pub queue: Queue,
    pub engine: Arc<Engine>,
    pub forges: Arc<HashMap<InstanceName, Arc<dyn Forge>>>,
    pub config: Arc<Config>,
}

pub fn router(observer: Arc<Observer>) -> Router {
    let password = observer.config.bot.status_password.clone();
    Router::new()
        .route("/", get(page))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn(move |req, next| asks_password(password.clone(), req, next)))
        .with_state(observer)
}

/// With `bot.status_password_env` set, every request needs HTTP Basic with that
/// password (browsers ask for it; Prometheus sends it with `basic_auth`).
async fn asks_password(
    password: Option<SecretString>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Some(password) = password else { return next.run(req).await };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok())
        .and_then(|pair| String::from_utf8(pair).ok())
        .and_then(|pair| pair.split_once(':').map(|(_, p)| p.to_owned()));
    // Digests are compared, so the time taken says nothing about the password.
    let digest = |p: &str| Sha256::digest(p.as_bytes());
    if given.is_some_and(|g| digest(&g) == digest(password.expose_secret())) {
        return next.run(req).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"kugetsu\", charset=\"UTF-8\"")],
        "a password is needed",
    )
        .into_response()
}

async fn metrics(State(observer): State<Arc<Observer>>) -> Response {
    match observer.readings().await {
        Ok(now) => {
            ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], observer.metrics.render(&now)).into_response()
        }
        Err(e) => unavailable(e),
    }
}

async fn page(State(observer): State<Arc<Observer>>) -> Response {
    match observer.page().await {
        Ok(page) => Html(crate::status::render(&page)).into_response(),
        Err(e) => unavailable(e),
    }
}

fn unavailable(e: anyhow::Error) -> Response {
    tracing::error!(error = %format!("{e:#}"), "cannot read the bot's state for the status listener");
    (StatusCode::SERVICE_UNAVAILABLE, "cannot read the bot's state; see the log").into_response()
}

impl Observer {
    async fn readings(&self) -> anyhow::Result<Readings> {
        let queue = self.queue.depth().await?;
        let oldest_queued = queue
            .oldest_due_at
            .map(|at| Duration::from_millis(u64::try_from(now_millis().saturating_sub(at)).unwrap_or(0)));
        let mut forges: Vec<ForgeReading> = self
            .forges
            .iter()
            .filter_map(|(name, forge)| {
                let stats = forge.api_stats()?;
                Some(ForgeReading {
                    instance: name.to_string(),
                    errors: stats.errors().collect(),
                    rate_limit_remaining: stats.rate_limit_remaining(),
                })
            })
            .collect();
        forges.sort_by(|a, b| a.instance.cmp(&b.instance));
        // Reading every server's memory walks /proc: off the runtime's threads.
        let engine = self.engine.clone();
        let opencode = tokio::task::spawn_blocking(move || engine.opencode_servers()).await.unwrap_or_default();
        Ok(Readings { queue, oldest_queued, opencode, forges })
    }

    async fn page(&self) -> anyhow::Result<StatusPage> {
        let jobs = self.queue.unfinished_jobs(PAGE_ROWS).await?;
        let failures = self.queue.recent_failures(PAGE_ROWS.min(50)).await?;
        // A page every 30 s must not hold the store's one connection for long.
        let pulls: std::collections::HashMap<IssueRef, (u64, String)> =
            self.queue.pull_requests().await?.into_iter().map(|p| (p.issue, (p.number, p.html_url))).collect();
        let issues = self
            .engine
            .recent_issues(PAGE_ROWS)
            .await?
            .into_iter()
            .map(|s| {
                let web = self.web_url(&s.issue);
                let kind = self.config.instance(s.issue.repo().instance()).map(|i| i.kind);
                IssueRow {
                    pull_request: pulls.get(&s.issue).cloned(),
                    issue_url: web.as_deref().map(|w| issue_url(w, &s.issue)),
                    branch_url: web.as_deref().zip(kind).map(|(w, k)| branch_url(k, w, s.issue.repo(), &s.branch)),
                    issue: s.issue.to_string(),
                    branch: s.branch,
                    state: s.status.as_str().to_owned(),
                    last_run_at: s.last_run_at,
                    cost: s.last_result.as_ref().map(|r| r.cost),
                    last_error: s.last_error,
                }
            })
            .collect();
        Ok(StatusPage {
            generated_at: now_millis(),
            jobs: jobs.into_iter().map(|j| self.job_row(j)).collect(),
            issues,
            failures: failures.into_iter().map(|j| self.job_row(j)).collect(),
        })
    }

    fn job_row(&self, line: JobLine) -> JobRow {
        let url = line.issue.parse::<IssueRef>().ok().and_then(|i| Some(issue_url(&self.web_url(&i)?, &i)));
        JobRow { line, issue_url: url }
    }

    fn web_url(&self, issue: &IssueRef) -> Option<String> {
        self.config.instance(issue.repo().instance()).map(|i| i.web_url.clone())
    }
}
