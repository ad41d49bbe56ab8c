//! The alert service: candidate findings in, merged and deduplicated into
//! stored findings (in its RocksDB), each creation or update published on
//! `th.alerts` for the query service and the sinks.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use trailhound_pipeline::nats::topology;
use trailhound_service::ServiceConfig;

pub async fn run(config: ServiceConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (metrics, ready) = config.start_endpoints(1, &shutdown);
    let js = config.connect().await?;
    let store = config.open_store(trailhound_alert::TABLES)?;
    let hop = topology::alert(
        Arc::new(config.detection.clone()),
        Arc::new(config.alert.clone()),
        config.partitions,
        config.ownership(),
        store,
    );
    let stats = config
        .run_hop(&js, hop, &metrics, &ready, &shutdown)
        .await?;
    tracing::info!(?stats, "alert stopped");
    Ok(())
}
