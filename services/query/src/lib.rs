//! The query service: every alert of `th.alerts` applied to its own
//! RocksDB view of the findings, served over gRPC (`trailhound.v1.QueryService`,
//! with reflection). Every replica reads the whole stream, so each answers
//! completely; it is ready (`/readyz`) once it has caught up with the
//! stream as it was when it started.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use trailhound_query::{FindingsView, QueryApi, WATCH_BUFFER, follow_alerts};
use trailhound_service::ServiceConfig;

/// How long to wait before reading `th.alerts` again after a failure.
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
    let (metrics, ready) = config.start_endpoints(1, &shutdown);
    let js = config.connect().await?;
    let view = FindingsView::new(config.open_store(trailhound_query::TABLES)?);
    let (updates, _) = broadcast::channel(WATCH_BUFFER);

    let address = config.query.grpc_addr;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("serving gRPC on {address}"))?;
    tracing::info!(address = %listener.local_addr()?, "serving gRPC");
    let server = QueryApi::new(view.clone(), updates.clone())
        .into_router()
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener),
            shutdown.clone().cancelled_owned(),
        );
    let server = tokio::spawn(server);

    let hop = metrics.hop("query");
    while !shutdown.is_cancelled() {
        if let Err(e) = follow_alerts(&js, &view, &updates, &hop, &ready, &shutdown).await {
            tracing::warn!(error = %e, retry_in = ?RETRY, "reading th.alerts failed");
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(RETRY) => {}
            }
        }
    }
    server.await??;
    tracing::info!(position = view.position()?, "query stopped");
    Ok(())
}
