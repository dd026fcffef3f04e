//! Several `kugetsu serve` replicas as processes on one database, each with its
//! own state directory, fed by one fake forge and one fake model; or one on
//! SQLite, for comparison.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sqlx::Connection;

use super::bot_env::BotEnv;
use super::serve::ServeProcess;

pub struct Replicas {
    pub t: BotEnv,
    /// The database's URL; `None` for SQLite (one replica, in its state dir).
    pub url: Option<String>,
    pub serves: Vec<Option<ServeProcess>>,
    /// The config every replica's is made from.
    config: String,
}

impl Replicas {
    /// `count` replicas on a new PostgreSQL database, with leases of `lease`;
    /// the in-process bot of `BotEnv` stopped.
    pub async fn start(count: usize, lease: &str) -> Replicas {
        let url = super::postgres::cluster().new_database().await;
        Self::start_on(count, Some(url), lease, "").await
    }

    /// `count` replicas on `url`, or one on SQLite without it; `limits` are
    /// lines added to `[limits]`.
    pub async fn start_on(count: usize, url: Option<String>, lease: &str, limits: &str) -> Replicas {
        let settings = format!("lease = \"{lease}\"\nreconcile_interval = \"0s\"");
        let mut t = BotEnv::with_bot_settings(&settings, "", Vec::new()).await;
        t.stop().await;
        let base = std::fs::read_to_string(&t.env.config_path).expect("the config");
        let config = base.replacen("concurrency = 2", &format!("concurrency = 2\n{limits}"), 1);
        let mut replicas = Replicas { t, url, serves: Vec::new(), config };
        for _ in 0..count {
            replicas.add(&[]);
        }
        replicas
    }

    /// One more replica, with `vars` added to its environment; its index.
    pub fn add(&mut self, vars: &[(&str, &str)]) -> usize {
        let n = self.serves.len();
        let database = self.url.as_ref().map(|url| format!("\ndatabase_url = \"{url}\"")).unwrap_or_default();
        let text = self.config.replacen("state_dir = \"state\"", &format!("state_dir = \"replica-{n}\"{database}"), 1);
        assert_ne!(text, self.config, "the config names its state dir");
        let path = self.t.env.dir.path().join(format!("replica-{n}.toml"));
        std::fs::write(&path, text).expect("a replica's config");
        let log = self.t.env.dir.path().join(format!("replica-{n}.log"));
        let mut env = self.t.secret_vars();
        env.extend(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        self.serves.push(Some(ServeProcess::spawn(&path, &env, None, log)));
        n
    }

    pub fn serve(&self, n: usize) -> &ServeProcess {
        self.serves[n].as_ref().expect("replica running")
    }

    pub fn replica_id(&self, n: usize) -> String {
        let file = self.t.env.dir.path().join(format!("replica-{n}/replica-id"));
        std::fs::read_to_string(file).expect("the replica's id").trim().to_owned()
    }

    pub async fn db(&self) -> sqlx::PgConnection {
        let url = self.url.as_deref().expect("replicas on PostgreSQL");
        sqlx::PgConnection::connect(url).await.expect("the database")
    }

    /// The replica that runs the issue's work job now.
    pub async fn runner(&self, issue: &str) -> usize {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let claimed: Option<String> = sqlx::query_scalar(
                "SELECT claimed_by FROM jobs WHERE issue = $1 AND lane = 'work' AND status = 'running' LIMIT 1",
            )
            .bind(issue)
            .fetch_optional(&mut self.db().await)
            .await
            .expect("a read");
            if let Some(claimed) = claimed
                && let Some(n) = (0..self.serves.len()).find(|n| self.replica_id(*n) == claimed)
            {
                return n;
            }
            assert!(Instant::now() < deadline, "no replica runs {issue}: {}", self.logs());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every job, once all are done or failed: (id, issue, status, claimed_by).
    pub async fn jobs_settled(&self, count: usize) -> Vec<(i64, String, String, Option<String>)> {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let jobs: Vec<(i64, String, String, Option<String>)> =
                sqlx::query_as("SELECT id, issue, status, claimed_by FROM jobs ORDER BY id")
                    .fetch_all(&mut self.db().await)
                    .await
                    .expect("a read");
            if jobs.len() >= count && jobs.iter().all(|(_, _, s, _)| s == "done" || s == "failed") {
                return jobs;
            }
            assert!(Instant::now() < deadline, "jobs never settled: {jobs:?}\n{}", self.logs());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn kill(&mut self, n: usize, signal: Signal) {
        kill(Pid::from_raw(self.serve(n).pid()), signal).expect("the signal is sent");
    }

    pub fn logs(&self) -> String {
        self.serves.iter().flatten().map(|s| s.log_text()).collect::<Vec<_>>().join("\n----\n")
    }
}
