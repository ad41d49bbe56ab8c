//! Keeping the query service's views up to date: a stream read in order
//! from the view's position through an ordered (ephemeral, unacknowledged)
//! consumer. Every replica reads whole streams into its own views, so each
//! answers completely; a restart goes on from its committed position, and a
//! new replica rebuilds from what the streams retain.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::pull::OrderedConfig};
use futures_util::{FutureExt as _, StreamExt as _};
use prost::Message as _;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use trailhound_pipeline::nats::{self, Topic, frames};
use trailhound_proto::{Alert, EnrichedEvent, Finding};
use trailhound_telemetry::{HopMetrics, Readiness};

use crate::events::PrincipalEvents;
use crate::view::FindingsView;

/// Messages applied in one write batch at most, and their bytes (a
/// `th.enriched` message carries hundreds of events).
const BATCH: usize = 512;
const BATCH_BYTES: usize = 8 << 20;

/// One part of a service's readiness, counted once however often its
/// follower starts again.
#[derive(Debug, Clone)]
pub struct ReadyOnce {
    ready: Readiness,
    done: Arc<AtomicBool>,
}

impl ReadyOnce {
    pub fn new(ready: &Readiness) -> Self {
        Self {
            ready: ready.clone(),
            done: Arc::default(),
        }
    }

    fn mark(&self) {
        if !self.done.swap(true, Ordering::Relaxed) {
            self.ready.mark_ready();
        }
    }
}

/// Apply `th.alerts` to `view` until shutdown, sending each changed
/// finding to `updates`. Ready once the view has caught up with the stream
/// as it was at the start. Returns on shutdown; an error (NATS gone for
/// good, the store failing) is for the caller to retry.
pub async fn follow_alerts(
    js: &jetstream::Context,
    view: &FindingsView,
    updates: &broadcast::Sender<Arc<Finding>>,
    metrics: &HopMetrics,
    ready: &ReadyOnce,
    shutdown: &CancellationToken,
) -> Result<(), async_nats::Error> {
    let mut stream = Follower::open(js, Topic::ALERTS, view.position()?, metrics, ready).await?;
    while let Some((batch, position)) = stream.next_batch(shutdown).await? {
        let mut alerts = Vec::with_capacity(batch.len());
        for message in &batch {
            let sequence = message.info()?.stream_sequence;
            let reason = match Alert::decode(message.payload.as_ref()) {
                Ok(Alert {
                    finding: Some(finding),
                    ..
                }) => {
                    alerts.push((sequence, finding));
                    continue;
                }
                Ok(_) => "an alert without a finding".to_string(),
                Err(e) => format!("not an alert: {e}"),
            };
            dead_letter(js, "alerts", sequence, &reason, message, metrics).await?;
        }
        metrics.events_in.inc_by(alerts.len() as u64);
        let view = view.clone();
        let applied = tokio::task::spawn_blocking(move || view.apply(alerts, position)).await??;
        for finding in applied {
            // No watcher is not an error.
            let _ = updates.send(Arc::new(finding));
        }
        stream.applied(position);
    }
    Ok(())
}

/// Apply `th.enriched.*` to `events` until shutdown, as [`follow_alerts`].
pub async fn follow_enriched(
    js: &jetstream::Context,
    events: &PrincipalEvents,
    metrics: &HopMetrics,
    ready: &ReadyOnce,
    shutdown: &CancellationToken,
) -> Result<(), async_nats::Error> {
    let mut stream =
        Follower::open(js, Topic::ENRICHED, events.position()?, metrics, ready).await?;
    while let Some((batch, position)) = stream.next_batch(shutdown).await? {
        let mut enriched = Vec::new();
        for message in &batch {
            match frames::decode_all::<EnrichedEvent>(&message.payload) {
                Ok(items) => enriched.extend(items),
                Err(e) => {
                    let sequence = message.info()?.stream_sequence;
                    let reason = format!("not a valid th.enriched message: {e}");
                    dead_letter(js, "enriched", sequence, &reason, message, metrics).await?;
                }
            }
        }
        metrics.events_in.inc_by(enriched.len() as u64);
        let events = events.clone();
        tokio::task::spawn_blocking(move || events.apply(&enriched, position)).await??;
        stream.applied(position);
    }
    Ok(())
}

/// A stream read in order after a position, in batches of what has arrived.
struct Follower<'a> {
    messages: jetstream::consumer::pull::Ordered,
    /// The stream's last sequence when reading started: caught up there.
    caught_up_at: u64,
    metrics: &'a HopMetrics,
    ready: &'a ReadyOnce,
    started: std::time::Instant,
}

impl<'a> Follower<'a> {
    async fn open(
        js: &jetstream::Context,
        topic: Topic,
        from: u64,
        metrics: &'a HopMetrics,
        ready: &'a ReadyOnce,
    ) -> Result<Self, async_nats::Error> {
        let stream = js.get_stream(topic.stream).await?;
        let caught_up_at = stream.get_info().await?.state.last_sequence;
        if from >= caught_up_at {
            ready.mark();
        }
        let consumer = stream
            .create_consumer(OrderedConfig {
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: from + 1,
                },
                ..Default::default()
            })
            .await?;
        Ok(Self {
            messages: consumer.messages().await?,
            caught_up_at,
            metrics,
            ready,
            started: std::time::Instant::now(),
        })
    }

    /// The next messages and the last one's sequence, waiting for the
    /// first; `None` on shutdown.
    async fn next_batch(
        &mut self,
        shutdown: &CancellationToken,
    ) -> Result<Option<(Vec<jetstream::Message>, u64)>, async_nats::Error> {
        let first = tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            next = self.messages.next() => next,
        };
        let first = first.ok_or("the stream's consumer ended")??;
        let mut bytes = first.payload.len();
        let mut batch = vec![first];
        // Whatever else has arrived, without waiting for more.
        while batch.len() < BATCH && bytes < BATCH_BYTES {
            match self.messages.next().now_or_never() {
                Some(Some(message)) => {
                    let message = message?;
                    bytes += message.payload.len();
                    batch.push(message);
                }
                _ => break,
            }
        }
        self.started = std::time::Instant::now();
        let last = batch.last().expect("one at least").info()?;
        let position = last.stream_sequence;
        (self.metrics.consumer_lag).set(i64::try_from(last.pending).unwrap_or(i64::MAX));
        self.metrics.messages_in.inc_by(batch.len() as u64);
        Ok(Some((batch, position)))
    }

    /// The batch up to `position` is committed.
    fn applied(&self, position: u64) {
        (self.metrics.batch_seconds).observe(self.started.elapsed().as_secs_f64());
        if position >= self.caught_up_at {
            self.ready.mark();
        }
    }
}

/// A message the views cannot hold, to `th.dead.query` with the reason;
/// every replica meets it, and JetStream keeps one copy (the message id).
async fn dead_letter(
    js: &jetstream::Context,
    stream: &str,
    sequence: u64,
    reason: &str,
    message: &jetstream::Message,
    metrics: &HopMetrics,
) -> Result<(), async_nats::Error> {
    tracing::error!(stream, sequence, reason, "dead-lettered");
    let id = format!("query:{stream}:{sequence}");
    let publish = nats::dead_letter(id, reason, message.payload.clone());
    js.send_publish(Topic::DEAD.subject_of("query"), publish)
        .await?
        .await?;
    metrics.dead_lettered.inc();
    Ok(())
}
