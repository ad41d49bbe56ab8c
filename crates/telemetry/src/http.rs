//! The health and metrics endpoints of a service.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::Metrics;

/// Ready once each of a service's parts (its hops) has connected, is
/// consuming, and has rebuilt any partitions it took over in a rescale.
#[derive(Debug, Clone)]
pub struct Readiness(Arc<AtomicUsize>);

impl Readiness {
    /// Waiting for `parts` parts.
    pub fn new(parts: usize) -> Self {
        Self(Arc::new(AtomicUsize::new(parts)))
    }
    /// One more part is ready.
    pub fn mark_ready(&self) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed) == 0
    }
}

#[derive(Clone)]
struct Endpoints {
    metrics: Metrics,
    ready: Readiness,
}

/// Serve `/healthz` (the process is alive), `/readyz` (see [`Readiness`])
/// and `/metrics` (Prometheus text) on `addr` until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    ready: Readiness,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(Endpoints { metrics, ready });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "health and metrics endpoints");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

async fn readyz(State(endpoints): State<Endpoints>) -> impl IntoResponse {
    if endpoints.ready.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}

async fn metrics_text(State(endpoints): State<Endpoints>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        endpoints.metrics.encode(),
    )
}
