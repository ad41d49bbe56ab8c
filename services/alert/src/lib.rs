//! The alert service: candidate findings in, merged and deduplicated into
//! stored findings (in its RocksDB), each creation or update published on
//! `th.alerts` for the query service and the sinks; and the sinks
//! (`[[sink]]`), each delivering from `th.alerts` through its own consumer.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use trailhound_pipeline::nats::{run_sink, topology};
use trailhound_service::ServiceConfig;

/// How long a failed delivery waits before JetStream offers it again.
const SINK_RETRY: Duration = Duration::from_secs(30);

pub async fn run(config: ServiceConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (metrics, ready) = config.start_endpoints(1, &shutdown);
    let js = config.connect().await?;
    let store = config.open_store(trailhound_alert::TABLES, &[])?;
    let mut sinks = tokio::task::JoinSet::new();
    for sink_config in config.sink.clone() {
        let sink = trailhound_sinks::Sink::new(sink_config, Some(js.client()))?;
        let (js, shutdown) = (js.clone(), shutdown.clone());
        sinks.spawn(async move {
            // A sink stops only with the service; an error (NATS down) is
            // retried after a pause.
            while !shutdown.is_cancelled() {
                if let Err(e) = run_sink(&js, &sink, SINK_RETRY, &shutdown).await {
                    tracing::warn!(sink = %sink.config.name, error = %e, "sink consumer failed, restarting");
                    tokio::time::sleep(SINK_RETRY).await;
                }
            }
        });
    }
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
    shutdown.cancel();
    while sinks.join_next().await.is_some() {}
    tracing::info!(?stats, "alert stopped");
    Ok(())
}
