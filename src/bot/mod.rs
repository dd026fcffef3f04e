//! `kugetsu serve`: the webhook server and the workers that run its jobs.

mod observe;
mod progress;
pub mod prompt;
mod pull_request;
mod reconcile;
mod replica;
mod verify;
mod worker;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::engine::Engine;
use crate::forge::{Backoff, Forge, PermissionCache, RetryingForge, forge_for};
use crate::queue::Queue;
use crate::store::Store;
use crate::webhook::{Bounds, Hook, Intake, router};

pub use worker::Worker;

/// A running bot; dropping it does not stop it, [`Bot::shutdown`] does.
pub struct Bot {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    worker: JoinHandle<()>,
    reconciler: Option<JoinHandle<()>>,
    /// This replica's heartbeats (see [`replica::keep_alive`]).
    alive: JoinHandle<()>,
    engine: Arc<Engine>,
    /// Where the status page and `/metrics` are served, if anywhere (`bot.status_listen`).
    pub status_addr: Option<SocketAddr>,
    status: Option<JoinHandle<()>>,
}

/// Refuses configurations that would accept unsigned deliveries.
fn hooks(config: &Config) -> anyhow::Result<HashMap<crate::issue_ref::InstanceName, Hook>> {
    if config.instances.is_empty() {
        bail!("no instances are configured");
    }
    config
        .instances
        .values()
        .map(|i| {
            let secrets = i.webhook_secrets();
            if secrets.is_empty() {
                let var = i.webhook_secret_env.as_deref().unwrap_or("(webhook_secret_env is not set)");
                bail!("instance `{}` has no webhook secret: set the environment variable {var}", i.name);
            }
            Ok((i.name.clone(), Hook { kind: i.kind, secrets, bot_login: i.bot_login.clone() }))
        })
        .collect()
}

impl Bot {
    /// Starts serving on `listener` and working through the queue, including jobs
    /// left over from before a restart.
    pub async fn start(config: Config, listener: TcpListener) -> anyhow::Result<Self> {
        let hooks = hooks(&config)?;
        if let (Some(var), None) = (&config.bot.status_password_env, &config.bot.status_password) {
            bail!("the status password variable {var} (bot.status_password_env) is not set");
        }
        let backoff = Backoff { attempts: config.bot.api_attempts, base: config.bot.api_backoff };
        let forges = config
            .instances
            .values()
            .map(|i| {
                let client = forge_for(i, config.bot.api_timeout).with_context(|| format!("instance `{}`", i.name))?;
                let forge: Arc<dyn Forge> = Arc::new(RetryingForge::new(client, backoff));
                Ok((i.name.clone(), forge))
            })
            .collect::<anyhow::Result<HashMap<_, _>>>()?;
        let store: Arc<dyn Store> = crate::store::open(&config, true).await?;
        let queue = match config.database_url {
            Some(_) => Queue::shared(store.clone()),
            None => Queue::new(store.clone()),
        };
        replica::announce(store.as_ref(), config.bot.lease).await?;
        let requeued = queue.requeue_interrupted().await?;
        queue.load_waits().await?;
        if requeued > 0 {
            tracing::info!(jobs = requeued, "re-queued jobs interrupted by the last shutdown");
        }
        crate::sandbox::check(&crate::sandbox::Sandbox::for_config(&config)).await.map_err(anyhow::Error::msg)?;
        let config = Arc::new(config);
        let driver = crate::opencode::driver_for(&config);
        let forges = Arc::new(forges);
        let tokens = Arc::new(crate::forge::ForgeTokens(forges.clone()));
        let engine = Arc::new(Engine::new(config.clone(), store.clone(), driver).with_git_tokens(tokens).with_pool());
        engine.remove_leftover_ready_checkouts().await;
        let warming = engine.clone();
        tokio::spawn(async move { warming.start_pool().await });
        let permissions = Arc::new(PermissionCache::new(config.bot.permission_cache));
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let intake = Arc::new(Intake {
            hooks,
            queue: queue.clone(),
            bot: config.bot.clone(),
            limits: config.limits.clone(),
            permissions: permissions.clone(),
            metrics: metrics.clone(),
        });
        let (stop, stopped) = watch::channel(false);
        let reconciler = (!config.bot.reconcile_interval.is_zero()).then(|| {
            let reconciler = reconcile::Reconciler {
                store: store.clone(),
                lease: config.bot.lease,
                intake: intake.clone(),
                forges: forges.clone(),
                queue: queue.clone(),
                interval: config.bot.reconcile_interval,
                etags: std::sync::Mutex::default(),
            };
            tokio::spawn(reconciler.run(stopped.clone()))
        });
        tokio::spawn(housekeeping(engine.clone(), config.bot.retention, config.bot.lease, stopped.clone()));
        let alive = tokio::spawn(replica::keep_alive(store.clone(), queue.clone(), config.bot.lease, stopped.clone()));
        let bounds = Bounds {
            header_timeout: config.bot.header_timeout,
            connection_timeout: config.bot.connection_timeout,
            max_connections: config.bot.max_connections.max(1),
        };
        let (status_addr, status) = match &config.bot.status_listen {
            Some(at) => {
                let listener = TcpListener::bind(at)
                    .await
                    .with_context(|| format!("cannot listen on {at} (bot.status_listen)"))?;
                let observer = observe::Observer {
                    metrics: metrics.clone(),
                    queue: queue.clone(),
                    engine: engine.clone(),
                    forges: forges.clone(),
                    config: config.clone(),
                };
                let addr = listener.local_addr()?;
                let app = observe::router(Arc::new(observer));
                tracing::info!(%addr, "the status page and /metrics are served");
                (Some(addr), Some(tokio::spawn(crate::webhook::serve(listener, app, bounds, stopped.clone()))))
            }
            None => (None, None),
        };
        let worker = Worker::new(engine.clone(), queue, forges, config.clone(), permissions, metrics);
        let worker = tokio::spawn(worker.run(stopped.clone()));
        let addr = listener.local_addr()?;
        let app = router(intake);
        let server = tokio::spawn(crate::webhook::serve(listener, app, bounds, stopped));
        tracing::info!(%addr, "kugetsu is listening");
        Ok(Self { addr, stop, server, worker, reconciler, alive, engine, status_addr, status })
    }

    /// The engine runs go through, for looking at its state (ready checkouts).
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Stops taking deliveries and jobs. Runs still in progress are interrupted;
    /// their jobs stay in the queue and run again after a restart.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.server.await;
        let _ = self.worker.await;
        let _ = self.alive.await;
        if let Some(reconciler) = self.reconciler {
            let _ = reconciler.await;
        }
        if let Some(status) = self.status {
            let _ = status.await;
        }
        self.engine.shutdown().await;
    }
}

/// At start-up and hourly: removes job history older than `retention`, and the
/// working copies of issues closed longer than `bot.closed_issue_grace` ago.
async fn housekeeping(
    engine: Arc<Engine>,
    retention: std::time::Duration,
    lease: std::time::Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let retention = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
    loop {
        // History is shared: one replica at a time prunes it.
        if replica::runs_task(engine.store().as_ref(), "housekeeping", lease).await {
            let before = crate::store::now_millis().saturating_sub(retention);
            match engine.remove_old_history(before).await {
                Ok(removed) if !removed.is_empty() => tracing::info!(?removed, "removed old job history"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "could not remove old job history"),
            }
        }
        // Working copies are each replica's own.
        match engine.closed_worktrees(true).await {
            Ok(closed) if !closed.is_empty() => tracing::info!(?closed, "removed closed issues' working copies"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not remove closed issues' working copies"),
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
            _ = stopped.changed() => return,
        }
    }
}

/// Runs the bot until SIGINT or SIGTERM.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = TcpListener::bind(&config.bot.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.bot.listen))?;
    let bot = Bot::start(config, listener).await?;
    shutdown_signal().await;
    tracing::info!("shutting down");
    bot.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
