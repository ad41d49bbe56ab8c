//! The detect service: observations in, candidate findings out, for the
//! partitions this replica owns.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use trailhound_pipeline::nats::topology;
use trailhound_service::ServiceConfig;

pub async fn run(config: ServiceConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (metrics, ready) = config.start_endpoints(1, &shutdown);
    let js = config.connect().await?;
    let store = config.open_store(&[], &[])?;
    let hop = topology::detect(
        Arc::new(config.detection.clone()),
        config.partitions,
        config.ownership(),
        store,
    );
    let stats = config
        .run_hop(&js, hop, &metrics, &ready, &shutdown)
        .await?;
    tracing::info!(?stats, "detect stopped");
    Ok(())
}
