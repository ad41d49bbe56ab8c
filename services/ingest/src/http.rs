//! CloudTrail POSTed over HTTP, for EventBridge API destinations and
//! scripts: `POST /v1/events` with a body in any shape the files may have
//! (a CloudTrail file, an array, JSON lines, one event, an EventBridge
//! event), gzip or plain. The answer says what was published:
//! `{"events":…,"duplicates":…,"rejected":…,"errors":[…]}`; 400 when the
//! body's structure is broken (the records before the break are still
//! published), 401 without the token, 503 while NATS cannot take it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use async_nats::jetstream;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio_util::sync::CancellationToken;
use trailhound_pipeline::nats::{IngestReport, ingest_document};
use trailhound_telemetry::HopMetrics;

#[derive(Clone)]
pub struct Endpoint {
    js: jetstream::Context,
    token: Option<Arc<str>>,
    metrics: HopMetrics,
    requests: Arc<AtomicU64>,
    /// Names this process's requests apart from an earlier run's, so a
    /// rejected record's dead-letter id never collides with another's.
    started_ms: u128,
}

impl Endpoint {
    pub fn new(js: jetstream::Context, token: Option<String>, metrics: HopMetrics) -> Self {
        let started_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        Self {
            js,
            token: token.filter(|t| !t.is_empty()).map(Arc::from),
            metrics,
            requests: Arc::default(),
            started_ms,
        }
    }
}

/// Serve `POST /v1/events` on `addr` until `shutdown`.
pub async fn serve(
    endpoint: Endpoint,
    addr: SocketAddr,
    max_body: usize,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/v1/events", post(events))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(endpoint);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening for events on {addr}"))?;
    tracing::info!(%addr, "accepting CloudTrail on POST /v1/events");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.cancelled_owned())
    .await
    .with_context(|| format!("serving events on {addr}"))
}

async fn events(
    State(endpoint): State<Endpoint>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(token) = &endpoint.token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if presented != Some(&**token) {
            return (
                StatusCode::UNAUTHORIZED,
                "a valid bearer token is required\n",
            )
                .into_response();
        }
    }
    let request = endpoint.requests.fetch_add(1, Ordering::Relaxed);
    let name = format!("POST {peer} {}-{request}", endpoint.started_ms);
    let mut report = IngestReport::default();
    if let Err(e) = ingest_document(&endpoint.js, &name, body.into(), &mut report).await {
        tracing::warn!(%peer, error = %e, "publishing POSTed events");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot publish now: {e}\n"),
        )
            .into_response();
    }
    super::record("http", &report, &endpoint.metrics);
    let status = if report.file_errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let summary = serde_json::json!({
        "events": report.events,
        "duplicates": report.duplicates,
        "rejected": report.rejected,
        "errors": report.file_errors,
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{summary}\n"),
    )
        .into_response()
}
