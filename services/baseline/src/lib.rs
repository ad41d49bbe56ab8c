//! The baseline service: its three hops (profile by principal, account,
//! command), each on its own partitioned subject, in one process with one
//! store. Replica i of R owns the partitions p with p mod R = i of each.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use trailhound_pipeline::nats::topology;
use trailhound_service::ServiceConfig;

pub async fn run(config: ServiceConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (metrics, ready) = config.start_endpoints(3, &shutdown);
    let js = config.connect().await?;
    let store = config.open_store(
        &trailhound_detect::baseline::tables(),
        trailhound_detect::baseline::LAYOUTS,
    )?;
    let (profile, account, command) = topology::baseline(
        Arc::new(config.detection.clone()),
        config.partitions,
        config.ownership(),
        store,
    );
    let (profile, account, command) = tokio::try_join!(
        config.run_hop(&js, profile, &metrics, &ready, &shutdown),
        config.run_hop(&js, account, &metrics, &ready, &shutdown),
        config.run_hop(&js, command, &metrics, &ready, &shutdown),
    )?;
    tracing::info!(?profile, ?account, ?command, "baseline stopped");
    Ok(())
}
