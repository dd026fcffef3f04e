//! The webhook listener: HTTP/1.1 over TCP, bounded for clients that have proven
//! nothing yet. Headers must arrive within `header_timeout`, a connection lives
//! at most `connection_timeout` (a body trickled in byte by byte ends there),
//! and past `max_connections` new connections are closed at once, so idle or
//! slow clients cannot hold what forges need to deliver.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// How long connections in progress get to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub header_timeout: Duration,
    pub connection_timeout: Duration,
    pub max_connections: usize,
}

/// Serves `app` until `stopped` turns true, then lets connections in progress finish.
pub async fn serve(listener: TcpListener, app: Router, bounds: Bounds, stopped: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(bounds.max_connections));
    let mut until_stopped = stopped.clone();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = turned_true(&mut until_stopped) => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, say: wait a moment rather than spin.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!("closed a connection: {} are open already", bounds.max_connections);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let mut builder = http1::Builder::new();
            builder.timer(TokioTimer::new()).header_read_timeout(bounds.header_timeout);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = tokio::time::sleep(bounds.connection_timeout) => {}
                _ = turned_true(&mut stopped) => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
                }
            }
            drop(slot);
        });
    }
    let all = u32::try_from(bounds.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, slots.acquire_many(all)).await;
}

/// Resolves once the flag is true (or its sender is gone). Unlike `wait_for`, it
/// holds no guard across an await, so the connection task stays `Send`.
async fn turned_true(flag: &mut watch::Receiver<bool>) {
    loop {
        if *flag.borrow_and_update() {
            return;
        }
        if flag.changed().await.is_err() {
            return;
        }
    }
}
