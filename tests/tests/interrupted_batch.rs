//! A stateful hop stopped dead after publishing part of a batch's outputs
//! and before committing the batch: its restart finishes that same batch,
//! so every output is published exactly once, even when the restart forms
//! its batches differently (here: one message each instead of up to 64).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, stream::DiscardPolicy};
use trailhound_detect::DetectionConfig;
use trailhound_e2e::cluster::{
    NatsServer, Pipeline, connect, ingest, stream_events, wait_for_events,
};
use trailhound_e2e::write_delivery;
use trailhound_pipeline::nats::{HopSettings, Ownership, inspect, run_hop, topology};
use trailhound_state::Store;
use trailhound_synth::{HISTORY_START_MS, benign_history};
use trailhound_telemetry::{Metrics, Readiness};

const WAIT: Duration = Duration::from_secs(120);

/// Run the baseline's profile hop over `state` with batches of at most
/// `batch` messages until `stop` resolves.
fn spawn_profile_hop(
    js: &jetstream::Context,
    state: &Path,
    batch: usize,
    stop: impl Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<trailhound_pipeline::nats::HopStats> {
    let store = Store::open(state, &trailhound_detect::baseline::tables()).unwrap();
    let ownership = Ownership {
        replica: 0,
        replicas: 1,
    };
    let config = Arc::new(DetectionConfig::default());
    let (profile, _, _) = topology::baseline(config, 16, ownership, store);
    let settings = HopSettings {
        batch,
        ..HopSettings::default()
    };
    let js = js.clone();
    tokio::spawn(async move {
        let (metrics, ready) = (Metrics::new(), Readiness::new(1));
        run_hop(&js, profile, &settings, &metrics, &ready, stop)
            .await
            .unwrap()
    })
}

/// Let TH_PROFILED take at most `max_messages` (-1: no limit); beyond it,
/// publishing fails.
async fn limit_profiled(js: &jetstream::Context, max_messages: i64) {
    let mut stream = js.get_stream("TH_PROFILED").await.unwrap();
    let mut config = stream.info().await.unwrap().config.clone();
    config.max_messages = max_messages;
    config.discard = if max_messages < 0 {
        DiscardPolicy::Old
    } else {
        DiscardPolicy::New
    };
    js.update_stream(&config).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_interrupted_mid_publish_is_finished_by_the_restart_exactly_once() {
    let logs = tempfile::tempdir().unwrap();
    let records = benign_history(7, HISTORY_START_MS, 10);
    write_delivery(logs.path(), &records);
    let events = records.len() as u64;
    let nats = NatsServer::start();
    let js = connect(&nats.url()).await;
    ingest(&nats.url(), &[logs.path()]);
    let mut enrich = Pipeline::empty(tempfile::tempdir().unwrap());
    enrich.start_stage("enrich", 0, 1, &nats.url(), &[]);
    wait_for_events(&js, "TH_ENRICHED", events, WAIT).await;
    enrich.stop();

    // The output stream takes one message and refuses the rest: the first
    // batch is left published in part, its publisher retrying, and is
    // stopped dead there (as by `kill -9`: nothing after the await runs).
    limit_profiled(&js, 1).await;
    let state = tempfile::tempdir().unwrap();
    let first = spawn_profile_hop(&js, state.path(), 64, std::future::pending());
    let profiled = || inspect::stream_messages(&js, "TH_PROFILED");
    while profiled().await.unwrap() < 1 {
        assert!(!first.is_finished(), "the hop stopped by itself");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    assert_eq!(profiled().await.unwrap(), 1, "published in part");
    assert!(stream_events(&js, "TH_PROFILED").await < events);

    limit_profiled(&js, -1).await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let second = spawn_profile_hop(&js, state.path(), 1, async {
        let _ = stopped.await;
    });
    wait_for_events(&js, "TH_PROFILED", events, WAIT).await;
    inspect::wait_idle(&js, Duration::from_millis(300), WAIT)
        .await
        .unwrap();
    stop.send(()).unwrap();
    second.await.unwrap();
    assert_eq!(stream_events(&js, "TH_PROFILED").await, events);
}
