//! Keeping a view up to date: `th.alerts` read in order from the view's
//! position through an ordered (ephemeral, unacknowledged) consumer. Every
//! replica of the query service reads the whole stream into its own view,
//! so each answers completely; a restart goes on from its committed
//! position, and a new replica rebuilds from what the stream retains.

use std::sync::Arc;

use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::pull::OrderedConfig};
use futures_util::{FutureExt as _, StreamExt as _};
use prost::Message as _;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use trailhound_pipeline::nats::{REASON_HEADER, Topic, header_value};
use trailhound_proto::{Alert, Finding};
use trailhound_telemetry::{HopMetrics, Readiness};

use crate::view::FindingsView;

/// Alerts applied in one write batch at most.
const BATCH: usize = 512;

/// Apply `th.alerts` to `view` until shutdown, sending each changed
/// finding to `updates`. Marks `ready` once the view has caught up with
/// the stream as it was at the start. Returns on shutdown; an error (NATS
/// gone for good, the store failing) is for the caller to retry.
pub async fn follow_alerts(
    js: &jetstream::Context,
    view: &FindingsView,
    updates: &broadcast::Sender<Arc<Finding>>,
    metrics: &HopMetrics,
    ready: &Readiness,
    shutdown: &CancellationToken,
) -> Result<(), async_nats::Error> {
    let mut position = view.position()?;
    let stream = js.get_stream(Topic::ALERTS.stream).await?;
    let caught_up_at = stream.get_info().await?.state.last_sequence;
    if position >= caught_up_at {
        ready.mark_ready();
    }
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: position + 1,
            },
            ..Default::default()
        })
        .await?;
    let mut messages = consumer.messages().await?;
    loop {
        let first = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            next = messages.next() => next,
        };
        let Some(first) = first else {
            return Err("the alerts consumer ended".into());
        };
        let mut batch = vec![first?];
        // Whatever else has arrived, without waiting for more.
        while batch.len() < BATCH {
            match messages.next().now_or_never() {
                Some(Some(message)) => batch.push(message?),
                _ => break,
            }
        }
        let started = std::time::Instant::now();
        let mut alerts = Vec::with_capacity(batch.len());
        for message in &batch {
            let info = message.info()?;
            position = position.max(info.stream_sequence);
            metrics
                .consumer_lag
                .set(i64::try_from(info.pending).unwrap_or(i64::MAX));
            match Alert::decode(message.payload.as_ref()) {
                Ok(Alert {
                    finding: Some(finding),
                    ..
                }) => alerts.push((info.stream_sequence, finding)),
                Ok(_) => {
                    let reason = "an alert without a finding";
                    dead_letter(js, info.stream_sequence, reason, message, metrics).await?;
                }
                Err(e) => {
                    let reason = format!("not an alert: {e}");
                    dead_letter(js, info.stream_sequence, &reason, message, metrics).await?;
                }
            }
        }
        metrics.messages_in.inc_by(batch.len() as u64);
        metrics.events_in.inc_by(alerts.len() as u64);
        let applied = {
            let view = view.clone();
            tokio::task::spawn_blocking(move || view.apply(alerts, position)).await??
        };
        metrics
            .batch_seconds
            .observe(started.elapsed().as_secs_f64());
        for finding in applied {
            // No watcher is not an error.
            let _ = updates.send(Arc::new(finding));
        }
        if position >= caught_up_at {
            ready.mark_ready();
        }
    }
}

/// An alert the view cannot hold, to `th.dead.query` with the reason; every
/// replica meets it, and JetStream keeps one copy (the message id).
async fn dead_letter(
    js: &jetstream::Context,
    sequence: u64,
    reason: &str,
    message: &jetstream::Message,
    metrics: &HopMetrics,
) -> Result<(), async_nats::Error> {
    tracing::error!(sequence, reason, "th.alerts message dead-lettered");
    let publish = jetstream::message::PublishMessage::build()
        .message_id(format!("query:alerts:{sequence}"))
        .header(REASON_HEADER, header_value(reason).as_str())
        .payload(message.payload.clone());
    js.send_publish(Topic::DEAD.subject_of("query"), publish)
        .await?
        .await?;
    metrics.dead_lettered.inc();
    Ok(())
}
