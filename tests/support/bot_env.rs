//! A bot started in-process against a fake forge, with GitHub (`gh`) and Gitea
//! (`tea`) instances whose git remotes are bare repositories on disk.

use std::time::Duration;

use kugetsu::bot::Bot;
use serde_json::Value;

use super::fake_forge::BOT_LOGIN;
use super::webhook::{self, Delivery, Endpoint, fixture, retarget, with_comment};
use super::{EnvOptions, FakeForge, TestEnv};

pub const GH_SECRET: &str = "gh-secret-canary";
pub const TEA_SECRET: &str = "tea-secret-canary";

pub struct BotEnv {
    pub env: TestEnv,
    pub forge: FakeForge,
    bot: Option<Bot>,
    vars: Vec<(&'static str, String)>,
}

impl BotEnv {
    pub async fn new() -> Self {
        Self::with("", Vec::new()).await
    }

    /// `more` is TOML appended to the config (`{forge}` is the fake forge's base
    /// URL, `{remotes}` the remotes dir); `vars` are extra environment variables.
    pub async fn with(more: &str, vars: Vec<(&'static str, String)>) -> Self {
        Self::with_bot_settings("", more, vars).await
    }

    /// As [`BotEnv::with`], with `bot` (TOML lines) added to the `[bot]` table.
    pub async fn with_bot_settings(bot: &str, more: &str, vars: Vec<(&'static str, String)>) -> Self {
        let forge = FakeForge::start().await;
        let more = more.replace("{forge}", &forge.github_api()).replace("{gitea_api}", &forge.gitea_api());
        let extra = format!(
            r#"
[bot]
handle = "kugetsu"
listen = "127.0.0.1:0"
trigger_labels = ["kugetsu"]
api_timeout = "3s"
api_backoff = "20ms"
requeue_delay = "200ms"
progress_interval = "1s"
{bot}

[instances.gh]
kind = "github"
api_url = "{gh}"
git_url = "{{remotes}}"
token_env = "GH_TOKEN"
webhook_secret_env = "GH_SECRET"

[instances.tea]
kind = "gitea"
api_url = "{tea}"
git_url = "{{remotes}}"
token_env = "TEA_TOKEN"
webhook_secret_env = "TEA_SECRET"
"#,
            gh = forge.github_api(),
            tea = forge.gitea_api(),
        ) + &more;
        let env = TestEnv::with(EnvOptions { extra, ..EnvOptions::default() }).await;
        let text =
            std::fs::read_to_string(&env.config_path).unwrap().replace("{remotes}", env.remotes.to_str().unwrap());
        std::fs::write(&env.config_path, text).unwrap();
        forge.set_git_remotes(&env.remotes);
        forge.set_permission("alice", "write");
        forge.set_permission("mallory", "read");
        // Gitea and Forgejo show other users' permissions to repository admins only.
        forge.set_permission(BOT_LOGIN, "admin");
        let mut this = Self { env, forge, bot: None, vars };
        for (name, value) in this.secret_vars() {
            if name.ends_with("_TOKEN") {
                this.forge.accept_token(&value, BOT_LOGIN);
            }
        }
        this.start().await;
        this
    }

    /// The environment `kugetsu serve` needs: tokens and webhook secrets.
    pub fn secret_vars(&self) -> Vec<(String, String)> {
        let mut vars: Vec<(String, String)> = [
            ("GH_TOKEN", "gh-token-canary"),
            ("GH_SECRET", GH_SECRET),
            ("TEA_TOKEN", "tea-token-canary"),
            ("TEA_SECRET", TEA_SECRET),
            ("LOCAL_WEBHOOK_SECRET", "local-secret"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        vars.extend(self.vars.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        vars
    }

    /// Rewrites the config file; takes effect at the next start.
    pub fn edit_config(&self, edit: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(&self.env.config_path).unwrap();
        std::fs::write(&self.env.config_path, edit(text)).unwrap();
    }

    pub async fn start(&mut self) {
        let owned = self.secret_vars();
        let vars: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let config = self.env.config_with_env(&vars);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.bot = Some(Bot::start(config, listener).await.expect("bot starts"));
    }

    pub async fn stop(&mut self) {
        if let Some(bot) = self.bot.take() {
            bot.shutdown().await;
        }
    }

    pub fn bot(&self) -> &Bot {
        self.bot.as_ref().expect("bot running")
    }

    /// The in-process bot's webhook endpoint for `instance`.
    pub fn url(&self, instance: &str) -> Endpoint {
        self.at(format!("http://{}/webhooks/{instance}", self.bot.as_ref().expect("bot running").addr))
    }

    /// Any webhook URL (a `kugetsu serve` child's, say) fed by this fake forge.
    pub fn at(&self, url: String) -> Endpoint {
        Endpoint { url, forge: self.forge.clone() }
    }

    pub async fn jobs(&self) -> Vec<(i64, String, String)> {
        self.job_rows("SELECT id, issue, status FROM jobs ORDER BY id").await
    }

    /// `(id, status, error)` of every job.
    pub async fn job_details(&self) -> Vec<(i64, String, Option<String>)> {
        self.job_rows("SELECT id, status, error FROM jobs ORDER BY id").await
    }

    /// Ids of jobs put back to wait (pending with a not-before time).
    pub async fn deferred_jobs(&self) -> Vec<(i64,)> {
        self.job_rows("SELECT id FROM jobs WHERE status = 'pending' AND not_before > 0 ORDER BY id").await
    }

    /// Any query over the jobs table, for assertions the helpers above do not cover.
    pub async fn job_rows_of<T>(&self, sql: &'static str) -> Vec<T>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + Send + Unpin,
    {
        self.job_rows(sql).await
    }

    async fn job_rows<T>(&self, sql: &'static str) -> Vec<T>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + Send + Unpin,
    {
        let db = self.env.state_dir().join("kugetsu.db");
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display())).await.unwrap();
        let rows = sqlx::query_as(sql).fetch_all(&pool).await.unwrap();
        pool.close().await;
        rows
    }

    /// Waits until job `id` was put back at least `attempts` times; returns
    /// `(id, status, attempts, error)`.
    pub async fn wait_for_job_attempts(&self, id: i64, attempts: i64) -> (i64, String, i64, Option<String>) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let rows: Vec<(i64, String, i64, Option<String>)> =
                self.job_rows("SELECT id, status, attempts, error FROM jobs ORDER BY id").await;
            if let Some(row) = rows.iter().find(|r| r.0 == id && r.2 >= attempts) {
                return row.clone();
            }
            assert!(tokio::time::Instant::now() < deadline, "job {id} was never put back {attempts} times: {rows:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the jobs, as `(id, issue, status)`, satisfy `done`.
    pub async fn wait_for_jobs_until(
        &self,
        done: impl Fn(&[(i64, String, String)]) -> bool,
    ) -> Vec<(i64, String, String)> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let jobs = self.jobs().await;
            if done(&jobs) {
                return jobs;
            }
            assert!(tokio::time::Instant::now() < deadline, "the jobs never got there: {jobs:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn wait_for_jobs_done(&self, count: usize) -> Vec<(i64, String, String)> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let jobs = self.jobs().await;
            if jobs.len() >= count && jobs.iter().all(|(_, _, s)| s == "done" || s == "failed") {
                return jobs;
            }
            assert!(tokio::time::Instant::now() < deadline, "jobs never finished: {jobs:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A comment made now, as the forge would stamp it.
pub fn made_now(mut payload: Value) -> Value {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    payload["comment"]["created_at"] = now.clone().into();
    payload["comment"]["updated_at"] = now.into();
    payload
}

/// A bot that reads its repositories' recent comments every second, for what
/// no delivery brought.
pub async fn bot_that_reconciles_every_second() -> BotEnv {
    let mut t = BotEnv::new().await;
    t.stop().await;
    t.edit_config(|c| c.replace("requeue_delay = \"200ms\"", "requeue_delay = \"200ms\"\nreconcile_interval = \"1s\""));
    t.start().await;
    t
}

pub fn gh_comment(number: u64, comment_id: u64, body: &str, author: &str) -> Value {
    let p = retarget(fixture("github/issue_comment.created.json"), "acme", "widget", number, author);
    with_comment(p, comment_id, body)
}

pub fn tea_comment(number: u64, comment_id: u64, body: &str, author: &str) -> Value {
    let p = retarget(fixture("gitea/issue_comment.created.json"), "acme", "widget", number, author);
    with_comment(p, comment_id, body)
}

pub fn gh(payload: &Value, delivery: &str) -> Delivery {
    webhook::github("issue_comment", delivery, payload, GH_SECRET)
}

pub fn tea(payload: &Value, delivery: &str) -> Delivery {
    webhook::gitea("issue_comment", "issue_comment", delivery, payload, TEA_SECRET)
}
