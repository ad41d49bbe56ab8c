//! The query service: `th.alerts` followed into its own RocksDB view of the
//! findings and `th.enriched.*` into each principal's events, served over
//! gRPC (`trailhound.v1.QueryService`, `InvestigationService` and
//! `ProfileService`, with reflection). Every replica reads the whole
//! streams, so each answers completely; it is ready (`/readyz`) once both
//! have caught up with the streams as they were when it started.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use trailhound_query::investigation::TravelLimits;
use trailhound_query::{
    FindingsView, Investigations, PrincipalEvents, QueryApi, ReadyOnce, WATCH_BUFFER,
    follow_alerts, follow_enriched,
};
use trailhound_service::ServiceConfig;

/// How long to wait before reading a stream again after a failure.
const RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, clap::Args)]
pub struct QueryArgs {
    /// Serve gRPC on this address; overrides `[query] grpc_addr`.
    #[arg(long, env = "TRAILHOUND_GRPC_ADDR")]
    pub grpc_addr: Option<SocketAddr>,
}

pub async fn run(
    mut config: ServiceConfig,
    args: QueryArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if let Some(address) = args.grpc_addr {
        config.query.grpc_addr = address;
    }
    let (metrics, ready) = config.start_endpoints(2, &shutdown);
    let js = config.connect().await?;
    let store = config.open_store(&trailhound_query::tables(), &[])?;
    let view = FindingsView::new(store.clone());
    let millis = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let events = PrincipalEvents::new(store.clone(), millis(config.query.event_retention));
    let travel = TravelLimits {
        kmh: config.detection.impossible_travel_kmh,
        min_km: config.detection.impossible_travel_min_km,
    };
    let investigations = Investigations::new(
        store,
        events.clone(),
        view.clone(),
        travel,
        millis(config.query.investigation_retention),
        config.query.max_investigation_calls,
    );
    let (updates, _) = broadcast::channel(WATCH_BUFFER);

    let address = config.query.grpc_addr;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("serving gRPC on {address}"))?;
    tracing::info!(address = %listener.local_addr()?, "serving gRPC");
    let server = QueryApi::new(
        view.clone(),
        updates.clone(),
        investigations,
        events.clone(),
    )
    .into_router()
    .serve_with_incoming_shutdown(
        TcpIncoming::from(listener),
        shutdown.clone().cancelled_owned(),
    );
    let server = tokio::spawn(server);

    let alerts = {
        let (js, hop, ready, shutdown) = (
            js.clone(),
            metrics.hop("query-alerts"),
            ReadyOnce::new(&ready),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            while !shutdown.is_cancelled() {
                let outcome = follow_alerts(&js, &view, &updates, &hop, &ready, &shutdown).await;
                retry_after(outcome, "th.alerts", &shutdown).await;
            }
        })
    };
    let (hop, ready_events) = (metrics.hop("query-enriched"), ReadyOnce::new(&ready));
    while !shutdown.is_cancelled() {
        let outcome = follow_enriched(&js, &events, &hop, &ready_events, &shutdown).await;
        retry_after(outcome, "th.enriched", &shutdown).await;
    }
    alerts.await?;
    server.await??;
    tracing::info!("query stopped");
    Ok(())
}

/// After a follower failed, log it and wait before it starts again.
async fn retry_after(
    outcome: Result<(), async_nats::Error>,
    stream: &str,
    shutdown: &CancellationToken,
) {
    if let Err(e) = outcome {
        tracing::warn!(error = %e, retry_in = ?RETRY, "reading {stream} failed");
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = tokio::time::sleep(RETRY) => {}
        }
    }
}
