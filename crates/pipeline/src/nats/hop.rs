//! One stage as a JetStream consumer: the delivery loop every service runs.
//!
//! A stateful hop processes a batch of input messages, then, when the
//! batch has outputs, writes a record of how the batch was formed (its
//! inputs' stream sequences); publishes the outputs with a `Nats-Msg-Id`
//! derived from the input; writes its state changes, each partition's
//! stream sequence (the checkpoint) and the record's removal in one RocksDB
//! write batch; and only then acks. A redelivered message at or below its
//! partition's checkpoint is acked without processing. A record left by a
//! crash is taken up at start: the same inputs, fetched from the stream
//! again and processed against the state as it was before the batch, make
//! the same outputs under the same ids (the stages are deterministic), and
//! JetStream drops those that had arrived. So effects happen exactly once,
//! without the hop storing a copy of what it publishes.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use async_nats::jetstream::stream::RawMessageErrorKind;
use async_nats::jetstream::{self, AckKind, message::PublishMessage};
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use prost::Message as _;
use serde::Deserialize;
use trailhound_state::{Batch, StateError, Store};
use trailhound_telemetry::{HopMetrics, Metrics, Readiness, propagation};

use super::frames::{self, Packer};
use super::{EVENTS_HEADER, PUBLISHED_BUCKET, REASON_HEADER, Topic, header_value};
use crate::stage::{Stage, StageError};

/// Which partitions a replica of a stateful stage owns: p mod R = i.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ownership {
    pub replica: u32,
    pub replicas: u32,
}

impl Ownership {
    pub fn owns(&self, partition: u32) -> bool {
        partition % self.replicas.max(1) == self.replica
    }

    /// The partitions of `0..partitions` this replica owns.
    pub fn owned(&self, partitions: u32) -> impl Iterator<Item = u32> + '_ {
        (0..partitions).filter(|p| self.owns(*p))
    }
}

/// How a hop consumes (`[hop]` in the service config).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HopSettings {
    /// Messages processed and committed together, at most.
    pub batch: usize,
    /// Bytes of messages processed and committed together, at most (and
    /// asked of the server at once; at least 1 MiB, as a message may be
    /// close to that).
    pub batch_bytes: usize,
    /// Deliveries after which a message that keeps failing (or crashing
    /// the stage) is dead-lettered instead of processed again.
    pub max_deliver: i64,
    /// How long JetStream waits for an ack before redelivering.
    #[serde(with = "humantime_serde")]
    pub ack_wait: Duration,
}

impl Default for HopSettings {
    fn default() -> Self {
        Self {
            batch: 512,
            batch_bytes: 8 << 20,
            max_deliver: 5,
            ack_wait: Duration::from_secs(60),
        }
    }
}

/// A stage wired between two topics.
pub struct Hop<S: Stage> {
    /// Names the consumer, the checkpoints and the dead-letter subject.
    pub name: &'static str,
    pub stage: S,
    pub input: Topic,
    pub output: Topic,
    /// The output partition of a message (ignored for unpartitioned topics).
    pub route: fn(&S::Out, u32) -> u32,
    pub partitions: u32,
    /// Stateful hops own partitions and a store; stateless ones share one
    /// consumer among all replicas.
    pub owned: Option<(Ownership, Arc<Store>)>,
    /// Counts what an output means beyond the hop's own metrics (new
    /// findings by detector).
    pub count_output: fn(&S::Out, &Metrics),
}

#[derive(Debug, thiserror::Error)]
pub enum HopError {
    #[error("hop {hop}: {error}")]
    Nats {
        hop: &'static str,
        error: async_nats::Error,
    },
    #[error("hop {hop}: state: {source}")]
    State {
        hop: &'static str,
        source: StateError,
    },
}

/// What a hop did until it stopped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HopStats {
    pub processed: u64,
    /// Redeliveries its checkpoint already covered.
    pub skipped: u64,
    /// Inputs processed only to rebuild state: a previous owner of the
    /// partition had published their outputs.
    pub replayed: u64,
    pub dead_lettered: u64,
    pub published: u64,
}

/// A message to publish.
struct Outgoing {
    subject: String,
    id: String,
    payload: Bytes,
    /// The dead-letter reason, or the trace context and event count.
    headers: HeaderMap,
}

/// How a stateful hop formed a batch whose outputs it is publishing:
/// written before publishing, removed by the commit of the batch's state.
/// The stages are deterministic for a given state and input order, so this
/// is all a restart needs to make the same outputs again.
#[derive(Clone, PartialEq, prost::Message)]
struct PendingBatch {
    /// The inputs processed, by stream sequence, in processing order.
    #[prost(uint64, repeated, tag = "1")]
    sequences: Vec<u64>,
    /// Inputs dead-lettered unprocessed, with how often each had been
    /// delivered.
    #[prost(map = "uint64, uint64", tag = "2")]
    given_up: HashMap<u64, u64>,
    /// Inputs processed only to rebuild state (see [`Published`]).
    #[prost(uint64, repeated, tag = "3")]
    replayed: Vec<u64>,
}

/// One input message of a batch: delivered by the consumer, or fetched
/// from the stream again to finish a batch a crash interrupted.
struct Input<'a> {
    sequence: u64,
    partition: u32,
    headers: Option<&'a HeaderMap>,
    payload: &'a [u8],
    /// Dead-letter it unprocessed: it was delivered this many times.
    given_up_after: Option<u64>,
    /// Process it only to rebuild state: a previous owner of the partition
    /// published its outputs.
    replay: bool,
}

/// A processed batch: what to publish, the partitions' new checkpoints (the
/// inputs processed, in order) and the inputs given up or only replayed.
#[derive(Default)]
struct Formed {
    outgoing: Vec<Outgoing>,
    advanced: Vec<(u32, u64)>,
    given_up: HashMap<u64, u64>,
    replayed: Vec<u64>,
}

impl Formed {
    /// How the batch was formed, for finishing it after a crash.
    fn record(&self) -> PendingBatch {
        PendingBatch {
            sequences: self
                .advanced
                .iter()
                .map(|&(_, sequence)| sequence)
                .collect(),
            given_up: self.given_up.clone(),
            replayed: self.replayed.clone(),
        }
    }
}

/// How long a hop told to stop may take to finish the batch in hand.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Consume `hop.input` until `shutdown` resolves, finishing the batch in
/// hand (within [`SHUTDOWN_GRACE`]); `ready` is told once the consumer is
/// in place. Returns on a state error (the batch is left unacked, so it is
/// redelivered to the restarted service) or when the bus is gone.
pub async fn run_hop<S>(
    js: &jetstream::Context,
    mut hop: Hop<S>,
    settings: &HopSettings,
    metrics: &Metrics,
    ready: &Readiness,
    shutdown: impl Future<Output = ()>,
) -> Result<HopStats, HopError>
where
    S: Stage,
    S::In: prost::Message + Default,
    S::Out: prost::Message,
{
    let name = hop.name;
    let nats = |error: async_nats::Error| HopError::Nats { hop: name, error };
    let state = |source: StateError| HopError::State { hop: name, source };

    let mut run = Run {
        checkpoints: HashMap::new(),
        pending_key: format!("pending/{name}"),
        stats: HopStats::default(),
        metrics: metrics.hop(name),
        all_metrics: metrics.clone(),
        published: None,
    };
    let run_error = |e| match e {
        RunError::Nats(e) => nats(e),
        RunError::State(e) => state(e),
    };
    if let Some((ownership, store)) = hop.owned.clone() {
        for partition in ownership.owned(hop.partitions) {
            run_checkpoint(&mut run.checkpoints, &store, name, partition).map_err(state)?;
        }
        let bucket = js
            .get_key_value(PUBLISHED_BUCKET)
            .await
            .map_err(|e| nats(e.into()))?;
        // `checkpoints` holds exactly the owned partitions, loaded above.
        run.published = Some(
            Published::load(bucket, name, &run.checkpoints)
                .await
                .map_err(run_error)?,
        );
        run.finish_interrupted_batch(js, &mut hop)
            .await
            .map_err(run_error)?;
    }
    let mut delivery = Delivery::open(js, &hop, settings, run.start(&hop, Start::Shared))
        .await
        .map_err(nats)?;
    // Ready once consuming and no longer rebuilding taken-over partitions
    // (so `kubectl rollout status` waits for a rescale's replay).
    let mut marked_ready = false;
    let mut mark_ready_once_rebuilt = |run: &Run| {
        let rebuilding = run.published.as_ref().map_or(0, Published::rebuilding);
        run.metrics.partitions_rebuilding.set(rebuilding as i64);
        if rebuilding == 0 && !marked_ready {
            marked_ready = true;
            ready.mark_ready();
        }
    };
    mark_ready_once_rebuilt(&run);

    tokio::pin!(shutdown);
    loop {
        let first = tokio::select! {
            _ = &mut shutdown => break,
            next = delivery.messages.next() => next,
        };
        let message = match first {
            // A stateful hop's consumer deleted by someone else: another
            // instance of the same replica took over, and this one stops.
            None if hop.owned.is_some() => break,
            Some(Ok(message)) => message,
            Some(Err(e)) if !consumer_gone(&e, hop.owned.is_some()) => {
                // Missed heartbeats and the like while NATS restarts: the
                // consumer stream reconnects by itself.
                tracing::warn!(hop = name, error = %e, "consumer");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            gone => {
                // Another replica recreated the shared consumer (below), or
                // NATS, recovering from a crash, lost the one just created.
                tracing::info!(hop = name, error = ?gone.and_then(Result::err), "opening the consumer again");
                let start = run.start(&hop, Start::SharedAsReplaced);
                delivery = tokio::select! {
                    _ = &mut shutdown => break,
                    reopened = Delivery::reopen(js, &hop, settings, start) => reopened,
                };
                continue;
            }
        };
        let batch = take_batch(message, &mut delivery.messages, settings);
        if delivery.reconnected(js) {
            // What the server sent just before the connection dropped may
            // never have arrived. JetStream would offer it again only after
            // `ack_wait`, behind newer messages: out of the order the stages
            // depend on, and below a stateful hop's checkpoint by then (so
            // skipped as done). Start again from what is known processed.
            tracing::warn!(
                hop = name,
                "reconnected to NATS: recreating the consumer so that delivery resumes in stream order"
            );
            drop(batch);
            let start = if hop.owned.is_some() {
                run.start(&hop, Start::Shared)
            } else {
                tokio::select! {
                    _ = &mut shutdown => break,
                    floor = shared_ack_floor(js, &hop) => Start::SharedFrom(floor + 1),
                }
            };
            delivery = tokio::select! {
                _ = &mut shutdown => break,
                reopened = Delivery::reopen(js, &hop, settings, start) => reopened,
            };
            continue;
        }
        // On shutdown the batch in hand gets a grace period to finish. When
        // NATS stays away longer, stop as a crash would: the inputs stay
        // unacked for the restart, which takes up a stateful hop's record of
        // the batch.
        let (handled, stopping) = {
            let handling = run.handle(js, &mut hop, settings, batch);
            tokio::pin!(handling);
            tokio::select! {
                handled = &mut handling => (Some(handled), false),
                () = &mut shutdown => {
                    (tokio::time::timeout(SHUTDOWN_GRACE, &mut handling).await.ok(), true)
                }
            }
        };
        let Some(handled) = handled else {
            tracing::warn!(
                hop = name,
                grace = ?SHUTDOWN_GRACE,
                "stopping with a batch unfinished: NATS did not answer; the restart takes it up"
            );
            return Ok(run.stats);
        };
        handled.map_err(run_error)?;
        if stopping {
            break;
        }
        mark_ready_once_rebuilt(&run);
    }
    if let Some(published) = &mut run.published {
        published.flush(true).await;
    }
    Ok(run.stats)
}

/// Run the stage on one input; a panic (a bug meeting an input nobody
/// foresaw) rejects that input instead of taking the service down, which
/// would otherwise meet the same input again on every restart.
fn process_guarded<S: Stage>(
    stage: &mut S,
    input: S::In,
    outputs: &mut Vec<S::Out>,
) -> Result<(), StageError> {
    let len = outputs.len();
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        stage.process(input, outputs)
    }))
    .unwrap_or_else(|panic| {
        outputs.truncate(len);
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Err(StageError::Rejected(format!(
            "the stage panicked on this input: {message}"
        )))
    })
}

/// What became of one input message: how many items it held and which
/// were rejected (with the reason), or that it failed as a whole.
#[derive(Debug, PartialEq)]
struct Processed {
    items: usize,
    rejected: Vec<Rejected>,
}

#[derive(Debug, PartialEq)]
struct Rejected {
    /// The item's index, or `None` for the whole message.
    item: Option<usize>,
    /// What goes to the dead-letter subject: the item, or the message.
    payload: Vec<u8>,
    reason: String,
}

impl Processed {
    fn failed(payload: &[u8], reason: String) -> Self {
        Self {
            items: 0,
            rejected: vec![Rejected {
                item: None,
                payload: payload.to_vec(),
                reason,
            }],
        }
    }
}

/// Run the stage on every item of a message from `topic`. A broken framing
/// rejects the whole message before any item is processed; an item that is
/// no valid input or that the stage rejects is rejected alone.
fn process_items<S>(
    stage: &mut S,
    topic: Topic,
    payload: &[u8],
    outputs: &mut Vec<S::Out>,
) -> Result<Processed, StateError>
where
    S: Stage,
    S::In: prost::Message + Default,
{
    let invalid = |e: &dyn std::fmt::Display| format!("not a valid {} message: {e}", topic.subject);
    let items: Vec<&[u8]> = match frames::items(payload).collect() {
        Ok(items) => items,
        Err(e) => return Ok(Processed::failed(payload, invalid(&e))),
    };
    let mut processed = Processed {
        items: items.len(),
        rejected: Vec::new(),
    };
    for (index, item) in items.into_iter().enumerate() {
        let reason = match S::In::decode(item) {
            Err(e) => invalid(&e),
            Ok(input) => match process_guarded(stage, input, outputs) {
                Ok(()) => continue,
                Err(StageError::Rejected(reason)) => reason,
                Err(StageError::State(e)) => return Err(e),
            },
        };
        processed.rejected.push(Rejected {
            item: Some(index),
            payload: item.to_vec(),
            reason,
        });
    }
    Ok(processed)
}

/// Where a hop's consumer delivers from when it is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// A stateful hop's own consumer, created afresh from this stream
    /// sequence (after its lowest checkpoint), so that each partition
    /// arrives in stream order: messages handed to a crashed predecessor, or
    /// lost on a dropped connection, are not redelivered after newer ones
    /// (which the checkpoint would then wrongly skip).
    Fresh(u64),
    /// The consumer the replicas of a stateless hop share, as it stands
    /// (created at the very first start).
    Shared,
    /// The shared consumer as another replica recreated it: never created
    /// here, which would start it at the beginning of the stream.
    SharedAsReplaced,
    /// The shared consumer recreated from this stream sequence (after the
    /// ack floor it had), so that what was delivered but not acked comes
    /// again, in stream order, before newer messages (outputs already
    /// published are deduplicated by id). Once the old one is deleted,
    /// retries must create it from the same sequence: the floor is gone.
    SharedFrom(u64),
}

/// The ack floor of a stateless hop's shared consumer, asked until NATS
/// answers (it may be recovering; another replica may be recreating it).
async fn shared_ack_floor<S: Stage>(js: &jetstream::Context, hop: &Hop<S>) -> u64 {
    let floor = async || -> Result<u64, async_nats::Error> {
        let stream = js.get_stream(hop.input.stream).await?;
        let mut shared: jetstream::consumer::PullConsumer = stream.get_consumer(hop.name).await?;
        Ok(shared.info().await?.ack_floor.stream_sequence)
    };
    until_ok(hop.name, "reading the shared consumer's ack floor", floor).await
}

/// `attempt` until it succeeds, each failure logged as `what` and followed
/// by a wait: 100 ms, then twice as long each time, at most 5 s.
async fn until_ok<T, F>(hop: &str, what: &str, mut attempt: impl FnMut() -> F) -> T
where
    F: Future<Output = Result<T, async_nats::Error>>,
{
    let mut delay = Duration::from_millis(100);
    loop {
        match attempt().await {
            Ok(done) => return done,
            Err(e) => {
                tracing::warn!(hop, error = %e, retry_in = ?delay, "{what}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// A hop's flow of messages, and how often the client had connected to
/// NATS before it was opened.
struct Delivery {
    messages: pull::Stream,
    connects: u64,
}

impl Delivery {
    async fn open<S: Stage>(
        js: &jetstream::Context,
        hop: &Hop<S>,
        settings: &HopSettings,
        start: Start,
    ) -> Result<Self, async_nats::Error> {
        // Counted first: a reconnect while opening then recreates it again.
        let connects = connects(js);
        let messages = consumer(js, hop, settings, start)
            .await?
            .stream()
            .max_messages_per_batch(settings.batch)
            .max_bytes_per_batch(settings.batch_bytes.max(1 << 20))
            .heartbeat(Duration::from_secs(5))
            .messages()
            .await?;
        Ok(Self { messages, connects })
    }

    /// [`Delivery::open`] until NATS lets it.
    async fn reopen<S: Stage>(
        js: &jetstream::Context,
        hop: &Hop<S>,
        settings: &HopSettings,
        start: Start,
    ) -> Self {
        until_ok(hop.name, "opening the consumer", || {
            Self::open(js, hop, settings, start)
        })
        .await
    }

    /// Whether the client reconnected to NATS since this was opened. It
    /// counts a connection before reading anything from it, so a message
    /// received on a new connection is always seen as such.
    fn reconnected(&self, js: &jetstream::Context) -> bool {
        connects(js) > self.connects
    }
}

/// Whether the consumer a hop pulls from is gone (a stateful hop's own
/// deleted by someone else ends its stream instead: see the loop).
fn consumer_gone(error: &pull::MessagesError, owned: bool) -> bool {
    match error.kind() {
        pull::MessagesErrorKind::NoResponders => true,
        pull::MessagesErrorKind::ConsumerDeleted => !owned,
        _ => false,
    }
}

fn connects(js: &jetstream::Context) -> u64 {
    js.client()
        .statistics()
        .connects
        .load(std::sync::atomic::Ordering::Relaxed)
}

/// `first` and what else has arrived, up to the batch limits.
fn take_batch(
    first: jetstream::Message,
    messages: &mut pull::Stream,
    settings: &HopSettings,
) -> Vec<jetstream::Message> {
    let mut bytes = first.payload.len();
    let mut batch = vec![first];
    while batch.len() < settings.batch && bytes < settings.batch_bytes {
        match messages.next().now_or_never() {
            Some(Some(Ok(message))) => {
                bytes += message.payload.len();
                batch.push(message);
            }
            _ => break,
        }
    }
    batch
}

async fn consumer<S: Stage>(
    js: &jetstream::Context,
    hop: &Hop<S>,
    settings: &HopSettings,
    start: Start,
) -> Result<jetstream::consumer::PullConsumer, async_nats::Error> {
    let stream = js.get_stream(hop.input.stream).await?;
    let mut config = pull::Config {
        ack_wait: settings.ack_wait,
        // The hop dead-letters after `max_deliver` itself, with the reason;
        // the server keeps redelivering until then.
        max_deliver: -1,
        max_ack_pending: (settings.batch * 4) as i64,
        ..Default::default()
    };
    let Some((ownership, _)) = &hop.owned else {
        // Enrich's replicas share a consumer, so each acks its own messages.
        let durable = hop.name.to_string();
        config.durable_name = Some(durable.clone());
        config.ack_policy = jetstream::consumer::AckPolicy::Explicit;
        return Ok(match start {
            Start::Shared | Start::Fresh(_) => {
                stream.get_or_create_consumer(&durable, config).await?
            }
            Start::SharedAsReplaced => stream.get_consumer(&durable).await?,
            Start::SharedFrom(start_sequence) => {
                delete_if_present(&stream, &durable).await?;
                config.deliver_policy = DeliverPolicy::ByStartSequence { start_sequence };
                stream.create_consumer_strict(config).await?
            }
        });
    };
    let Start::Fresh(start_sequence) = start else {
        unreachable!("a stateful hop's consumer always starts afresh")
    };
    let durable = format!(
        "{}-{}-of-{}",
        hop.name, ownership.replica, ownership.replicas
    );
    // Its earlier incarnation (before a restart or a reconnect) goes first:
    // binding to it would resume from where it had delivered to.
    delete_if_present(&stream, &durable).await?;
    // Consumers of this hop for another replica count are left over from
    // before a rescale.
    let current = format!("-of-{}", ownership.replicas);
    let mut names = stream.consumer_names();
    let mut stale = Vec::new();
    while let Some(name) = names.next().await {
        let name = name?;
        if name.starts_with(&format!("{}-", hop.name))
            && name.contains("-of-")
            && !name.ends_with(&current)
        {
            stale.push(name);
        }
    }
    for name in stale {
        tracing::info!(consumer = %name, "removing the consumer of an earlier replica count");
        let _ = stream.delete_consumer(&name).await;
    }
    config.durable_name = Some(durable.clone());
    config.deliver_policy = DeliverPolicy::ByStartSequence { start_sequence };
    config.filter_subjects = ownership
        .owned(hop.partitions)
        .map(|p| hop.input.subject_of(p))
        .collect();
    // A replica's own consumer takes one ack per batch, for the batch's
    // last message: the server then has a fraction of the acks to store.
    config.ack_policy = jetstream::consumer::AckPolicy::All;
    Ok(stream.create_consumer_strict(config).await?)
}

/// Delete a consumer unless there is none (the first start).
async fn delete_if_present(
    stream: &jetstream::stream::Stream,
    name: &str,
) -> Result<(), async_nats::Error> {
    match stream.delete_consumer(name).await {
        Err(e)
            if matches!(e.kind(),
            jetstream::stream::ConsumerErrorKind::JetStream(ref api)
                if api.error_code() == jetstream::ErrorCode::CONSUMER_NOT_FOUND) =>
        {
            Ok(())
        }
        deleted => deleted.map(drop).map_err(Into::into),
    }
}

enum RunError {
    Nats(async_nats::Error),
    State(StateError),
}

impl From<StateError> for RunError {
    fn from(e: StateError) -> Self {
        Self::State(e)
    }
}

struct Run {
    /// Last committed stream sequence per partition, loaded on first use.
    checkpoints: HashMap<u32, u64>,
    /// Where the [`PendingBatch`] record is kept.
    pending_key: String,
    stats: HopStats,
    metrics: HopMetrics,
    all_metrics: Metrics,
    published: Option<Published>,
}

impl Run {
    /// Where `hop`'s consumer starts: a stateful hop's after its lowest
    /// checkpoint, a stateless hop's at `shared`.
    fn start<S: Stage>(&self, hop: &Hop<S>, shared: Start) -> Start {
        if hop.owned.is_none() {
            return shared;
        }
        let lowest = self.checkpoints.values().min().copied();
        Start::Fresh(lowest.unwrap_or(u64::MAX).saturating_add(1))
    }

    /// Process, publish, commit and ack one batch from the consumer.
    async fn handle<S>(
        &mut self,
        js: &jetstream::Context,
        hop: &mut Hop<S>,
        settings: &HopSettings,
        batch: Vec<jetstream::Message>,
    ) -> Result<(), RunError>
    where
        S: Stage,
        S::In: prost::Message + Default,
        S::Out: prost::Message,
    {
        let started = Instant::now();
        let mut inputs = Vec::with_capacity(batch.len());
        let mut caught_up = false;
        // The batch's message with the highest stream sequence: acking it
        // acks the batch on a replica's own consumer (AckPolicy::All).
        let mut highest: Option<(u64, &jetstream::Message)> = None;
        for message in &batch {
            let info = message.info().map_err(RunError::Nats)?;
            let sequence = info.stream_sequence;
            self.metrics.consumer_lag.set(info.pending as i64);
            caught_up = info.pending == 0;
            if highest.is_none_or(|(h, _)| sequence > h) {
                highest = Some((sequence, message));
            }
            let partition = hop
                .input
                .partition_of_subject(&message.subject)
                .unwrap_or(0);
            inputs.push(Input {
                sequence,
                partition,
                headers: message.headers.as_ref(),
                payload: &message.payload,
                given_up_after: (info.delivered > settings.max_deliver)
                    .then_some(info.delivered as u64),
                replay: self
                    .published
                    .as_ref()
                    .is_some_and(|p| p.replaying(partition, sequence)),
            });
        }
        let formed = self.form(hop, &inputs)?;
        self.publish_and_commit(js, hop, formed, caught_up).await?;
        // A lost ack means a redelivery, which the checkpoint skips.
        let to_ack: Vec<&jetstream::Message> = if hop.owned.is_some() {
            // Everything this consumer delivered before (and the batch) is
            // processed, so acking the highest sequence acks it all.
            highest.map(|(_, message)| message).into_iter().collect()
        } else {
            batch.iter().collect()
        };
        for message in to_ack {
            if let Err(e) = message.ack_with(AckKind::Ack).await {
                tracing::warn!(error = %e, "ack");
            }
        }
        self.metrics
            .batch_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Run the stage on a batch's inputs, in order, and pack its outputs.
    fn form<S>(&mut self, hop: &mut Hop<S>, inputs: &[Input]) -> Result<Formed, RunError>
    where
        S: Stage,
        S::In: prost::Message + Default,
        S::Out: prost::Message,
    {
        let mut formed = Formed::default();
        let mut packer = Packer::new(frames::MAX_PAYLOAD, hop.output.batched);
        let mut outputs = Vec::new();
        // A stateful hop packs the outputs of its whole batch together and
        // names them after the batch's first published input: a stream
        // sequence whose outputs no other batch publishes (checkpoints and
        // the published watermark see to that).
        let mut origin: Option<(String, HeaderMap)> = None;
        for input in inputs {
            self.metrics.messages_in.inc();
            let input_id = input
                .headers
                .and_then(|h| h.get(async_nats::header::NATS_MESSAGE_ID))
                .map(|v| v.as_str().to_string())
                .unwrap_or_else(|| format!("{}:{}", hop.input.stream, input.sequence));
            if let Some((_, store)) = &hop.owned {
                let checkpoint =
                    run_checkpoint(&mut self.checkpoints, store, hop.name, input.partition)?;
                if input.sequence <= checkpoint {
                    self.stats.skipped += 1;
                    self.metrics.redeliveries_skipped.inc();
                    continue;
                }
                formed.advanced.push((input.partition, input.sequence));
                self.checkpoints.insert(input.partition, input.sequence);
            }
            let span = tracing::info_span!("process", hop = hop.name, message = %input_id);
            propagation::continue_trace(&span, input.headers);
            let processed = match input.given_up_after {
                Some(deliveries) => {
                    formed.given_up.insert(input.sequence, deliveries);
                    Processed::failed(
                        input.payload,
                        format!("gave up after {deliveries} deliveries"),
                    )
                }
                None => span.in_scope(|| {
                    process_items(&mut hop.stage, hop.input, input.payload, &mut outputs)
                })?,
            };
            if input.replay {
                formed.replayed.push(input.sequence);
                self.stats.replayed += 1;
                outputs.clear();
                continue;
            }
            self.stats.processed += 1;
            self.metrics.events_in.inc_by(processed.items as u64);
            for output in outputs.drain(..) {
                (hop.count_output)(&output, &self.all_metrics);
                let subject = if hop.output.partitioned {
                    hop.output.subject_of((hop.route)(&output, hop.partitions))
                } else {
                    hop.output.subject.to_string()
                };
                packer.push(&subject, &output);
            }
            for rejected in processed.rejected {
                let (id, reason) = match rejected.item {
                    Some(i) => (
                        format!("{input_id}/dead/{i}"),
                        format!("item {i}: {}", rejected.reason),
                    ),
                    None => (format!("{input_id}/dead"), rejected.reason),
                };
                tracing::warn!(hop = hop.name, message = %input_id, %reason, "dead-lettered");
                self.stats.dead_lettered += 1;
                self.metrics.dead_lettered.inc();
                let mut headers = HeaderMap::new();
                headers.insert(REASON_HEADER, header_value(&reason));
                formed.outgoing.push(Outgoing {
                    subject: Topic::DEAD.subject_of(hop.name),
                    id,
                    payload: rejected.payload.into(),
                    headers,
                });
            }
            if hop.owned.is_some() {
                origin.get_or_insert_with(|| {
                    (
                        format!("{}/{}", hop.name, input.sequence),
                        trace_headers(&span),
                    )
                });
            } else {
                // Stateless: replicas share the consumer and may see this
                // message again in another batch, so its outputs are packed
                // on their own and named after it.
                self.pack(
                    &mut packer,
                    &input_id,
                    &trace_headers(&span),
                    &mut formed.outgoing,
                );
            }
        }
        if let Some((origin, trace)) = &origin {
            self.pack(&mut packer, origin, trace, &mut formed.outgoing);
        }
        Ok(formed)
    }

    /// Publish a processed batch's outputs and commit its state changes and
    /// checkpoints, in the order that lets a crash anywhere be recovered
    /// from (module docs).
    async fn publish_and_commit<S: Stage>(
        &mut self,
        js: &jetstream::Context,
        hop: &mut Hop<S>,
        formed: Formed,
        caught_up: bool,
    ) -> Result<(), RunError> {
        let store = hop.owned.as_ref().map(|(_, store)| store);
        if let Some(store) = store
            && !formed.outgoing.is_empty()
        {
            let mut pending = Batch::default();
            pending.set_meta(&self.pending_key, formed.record().encode_to_vec());
            store.commit(pending)?;
        }
        if let Some(published) = &mut self.published {
            published.advance(&formed.advanced, caught_up);
            if formed.outgoing.is_empty() {
                published.flush(false).await;
            } else {
                // Before publishing: a replica that takes a partition over in
                // a rescale then replays, without publishing, everything this
                // batch publishes.
                published.flush_all().await;
            }
        }
        self.publish(js, hop.name, &formed.outgoing).await?;
        if let Some(store) = store {
            let mut changes = Batch::default();
            hop.stage.drain_into(&mut changes);
            for &(partition, sequence) in &formed.advanced {
                changes.set_meta(&checkpoint_key(hop.name, partition), sequence.to_le_bytes());
            }
            if !formed.outgoing.is_empty() {
                changes.delete_meta(&self.pending_key);
            }
            store.commit(changes)?;
        }
        Ok(())
    }

    /// Finish the batch a crash interrupted between writing its record and
    /// committing it: fetch its inputs from the stream again, process them
    /// against the state as it was before the batch, publish what they
    /// make (JetStream drops the messages that had arrived: same ids) and
    /// commit.
    async fn finish_interrupted_batch<S>(
        &mut self,
        js: &jetstream::Context,
        hop: &mut Hop<S>,
    ) -> Result<(), RunError>
    where
        S: Stage,
        S::In: prost::Message + Default,
        S::Out: prost::Message,
    {
        let Some(store) = hop.owned.as_ref().map(|(_, store)| store.clone()) else {
            return Ok(());
        };
        let Some(bytes) = store.meta(&self.pending_key)? else {
            return Ok(());
        };
        let record = match PendingBatch::decode(bytes.as_slice()) {
            Ok(record) => record,
            Err(e) => {
                tracing::error!(
                    key = %self.pending_key,
                    error = %e,
                    "unreadable record of an interrupted batch dropped: its outputs may be incomplete"
                );
                let mut clear = Batch::default();
                clear.delete_meta(&self.pending_key);
                store.commit(clear)?;
                return Ok(());
            }
        };
        let stream = js
            .get_stream(hop.input.stream)
            .await
            .map_err(|e| RunError::Nats(e.into()))?;
        let mut messages = Vec::with_capacity(record.sequences.len());
        for &sequence in &record.sequences {
            match stream.get_raw_message(sequence).await {
                Ok(message) => messages.push(message),
                Err(e) if matches!(e.kind(), RawMessageErrorKind::NoMessageFound) => {
                    tracing::error!(
                        hop = hop.name,
                        sequence,
                        "an input of the interrupted batch has left the stream (its limits): its outputs are not made again"
                    );
                }
                Err(e) => return Err(RunError::Nats(e.into())),
            }
        }
        tracing::info!(
            hop = hop.name,
            inputs = messages.len(),
            "finishing the batch a crash interrupted"
        );
        let inputs: Vec<Input> = messages
            .iter()
            .map(|message| Input {
                sequence: message.sequence,
                partition: hop
                    .input
                    .partition_of_subject(&message.subject)
                    .unwrap_or(0),
                headers: Some(&message.headers),
                payload: &message.payload,
                given_up_after: record.given_up.get(&message.sequence).copied(),
                replay: record.replayed.contains(&message.sequence),
            })
            .collect();
        let formed = self.form(hop, &inputs)?;
        self.publish_and_commit(js, hop, formed, false).await
    }

    /// Move the packer's payloads to `outgoing`, named `<origin>/<subject>/<chunk>`.
    fn pack(
        &self,
        packer: &mut Packer,
        origin: &str,
        trace: &HeaderMap,
        outgoing: &mut Vec<Outgoing>,
    ) {
        for packed in packer.finish() {
            self.metrics.events_out.inc_by(packed.items as u64);
            let mut headers = trace.clone();
            if packer.batched() {
                headers.insert(EVENTS_HEADER, packed.items.to_string());
            }
            outgoing.push(Outgoing {
                id: format!("{origin}/{}/{}", packed.subject, packed.chunk),
                subject: packed.subject,
                payload: packed.payload.into(),
                headers,
            });
        }
    }

    /// Publish everything and wait for JetStream to have stored it all,
    /// retrying (with the same message ids, so nothing doubles) while NATS
    /// is unreachable or restarting.
    async fn publish(
        &mut self,
        js: &jetstream::Context,
        hop: &str,
        outgoing: &[Outgoing],
    ) -> Result<(), RunError> {
        until_ok(hop, "publishing", || publish_all(js, outgoing)).await;
        self.stats.published += outgoing.len() as u64;
        self.metrics.messages_out.inc_by(outgoing.len() as u64);
        Ok(())
    }
}

async fn publish_all(
    js: &jetstream::Context,
    outgoing: &[Outgoing],
) -> Result<(), async_nats::Error> {
    let mut acks = Vec::with_capacity(outgoing.len());
    for out in outgoing {
        let publish = PublishMessage::build()
            .headers(out.headers.clone())
            .message_id(&out.id)
            .payload(out.payload.clone());
        acks.push(js.send_publish(out.subject.clone(), publish).await?);
    }
    for ack in acks {
        ack.await?;
    }
    Ok(())
}

/// The trace context of `span` as headers (none without a tracer).
fn trace_headers(span: &tracing::Span) -> HeaderMap {
    let mut headers = HeaderMap::new();
    propagation::inject(span, &mut headers);
    headers
}

/// A partition's checkpoint: from memory, else from the store.
fn run_checkpoint(
    checkpoints: &mut HashMap<u32, u64>,
    store: &Store,
    hop: &str,
    partition: u32,
) -> Result<u64, StateError> {
    if let Some(sequence) = checkpoints.get(&partition) {
        return Ok(*sequence);
    }
    let sequence = store
        .meta(&checkpoint_key(hop, partition))?
        .and_then(|v| v.try_into().ok())
        .map_or(0, u64::from_le_bytes);
    checkpoints.insert(partition, sequence);
    Ok(sequence)
}

/// The published-through watermarks of a hop's partitions in the shared
/// bucket, written at most once a second (a lagging watermark only means a
/// rebuilding replica republishes a little, which JetStream deduplicates).
struct Published {
    bucket: jetstream::kv::Store,
    hop: &'static str,
    /// Partitions being rebuilt: replay without publishing up to here.
    replay_until: HashMap<u32, u64>,
    unflushed: HashMap<u32, u64>,
    flushed_at: Instant,
}

impl Published {
    async fn load(
        bucket: jetstream::kv::Store,
        hop: &'static str,
        checkpoints: &HashMap<u32, u64>,
    ) -> Result<Self, RunError> {
        let mut replay_until = HashMap::new();
        for (&partition, &checkpoint) in checkpoints {
            let key = format!("{hop}.{partition}");
            let published = bucket
                .get(key)
                .await
                .map_err(|e| RunError::Nats(e.into()))?
                .and_then(|v| v.as_ref().try_into().ok())
                .map_or(0, u64::from_le_bytes);
            if published > checkpoint {
                tracing::info!(
                    hop,
                    partition,
                    published,
                    "rebuilding the partition's state by replay"
                );
                replay_until.insert(partition, published);
            }
        }
        Ok(Self {
            bucket,
            hop,
            replay_until,
            unflushed: HashMap::new(),
            flushed_at: Instant::now(),
        })
    }

    fn replaying(&self, partition: u32, sequence: u64) -> bool {
        self.replay_until
            .get(&partition)
            .is_some_and(|until| sequence <= *until)
    }

    /// Note the sequences just committed; a partition that reached (or
    /// passed) its watermark is rebuilt, and so is every partition once the
    /// consumer has caught up (the watermark's message may have aged out).
    fn advance(&mut self, advanced: &[(u32, u64)], caught_up: bool) {
        for &(partition, sequence) in advanced {
            if !self.replaying(partition, sequence) {
                self.unflushed.insert(partition, sequence);
            }
            let rebuilt = self
                .replay_until
                .get(&partition)
                .is_some_and(|until| sequence >= *until);
            if rebuilt {
                self.finish_rebuild(partition);
            }
        }
        if caught_up {
            let partitions: Vec<u32> = self.replay_until.keys().copied().collect();
            partitions.into_iter().for_each(|p| self.finish_rebuild(p));
        }
    }

    fn finish_rebuild(&mut self, partition: u32) {
        self.replay_until.remove(&partition);
        tracing::info!(hop = self.hop, partition, "partition rebuilt");
    }

    /// How many partitions are still being rebuilt.
    fn rebuilding(&self) -> usize {
        self.replay_until.len()
    }

    /// Write the watermarks, retrying until NATS has them all: done before
    /// publishing.
    async fn flush_all(&mut self) {
        let mut delay = Duration::from_millis(100);
        loop {
            self.flush(true).await;
            if self.unflushed.is_empty() {
                return;
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// Write the watermarks once, at most once a second unless `now`; one
    /// that fails stays for the next flush.
    async fn flush(&mut self, now: bool) {
        if !now && self.flushed_at.elapsed() < Duration::from_secs(1) {
            return;
        }
        let puts = self.unflushed.iter().map(|(&partition, &sequence)| {
            let key = format!("{}.{partition}", self.hop);
            let put = self.bucket.put(key, sequence.to_le_bytes().to_vec().into());
            put.map(move |result| (partition, result))
        });
        for (partition, result) in futures_util::future::join_all(puts).await {
            match result {
                Ok(_) => {
                    self.unflushed.remove(&partition);
                }
                Err(e) => {
                    tracing::warn!(hop = self.hop, partition, error = %e, "published watermark")
                }
            }
        }
        self.flushed_at = Instant::now();
    }
}

fn checkpoint_key(hop: &str, partition: u32) -> String {
    format!("checkpoint/{hop}/{partition}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Doubles its input, and panics on 13 after producing half its output.
    struct Fragile;

    impl Stage for Fragile {
        type In = u32;
        type Out = u32;
        fn process(&mut self, input: u32, out: &mut Vec<u32>) -> Result<(), StageError> {
            out.push(input);
            assert_ne!(input, 13, "unlucky input");
            out.push(input);
            Ok(())
        }
    }

    /// Passes events on by id; rejects those named "Poison".
    struct Picky;

    impl Stage for Picky {
        type In = trailhound_proto::CloudTrailEvent;
        type Out = String;
        fn process(&mut self, input: Self::In, out: &mut Vec<String>) -> Result<(), StageError> {
            if input.event_name == "Poison" {
                return Err(StageError::Rejected("poisonous".into()));
            }
            out.push(input.event_id);
            Ok(())
        }
    }

    fn event(id: &str, name: &str) -> trailhound_proto::CloudTrailEvent {
        trailhound_proto::CloudTrailEvent {
            event_id: id.into(),
            event_name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_rejected_item_is_dead_lettered_alone_and_the_rest_processed() {
        let mut packer = Packer::new(frames::MAX_PAYLOAD, true);
        let poison = event("b", "Poison");
        for e in [
            event("a", "GetObject"),
            poison.clone(),
            event("c", "ListBuckets"),
        ] {
            packer.push("th.raw", &e);
        }
        let mut payload = packer.finish().remove(0).payload;
        // And an item that is no event at all.
        payload.extend_from_slice(&frames::single(&[0xff, 0xff]));
        let mut outputs = Vec::new();
        let processed = process_items(&mut Picky, Topic::RAW, &payload, &mut outputs).unwrap();
        assert_eq!(outputs, ["a", "c"]);
        assert_eq!(processed.items, 4);
        let rejected: Vec<(Option<usize>, &str)> = processed
            .rejected
            .iter()
            .map(|r| (r.item, r.reason.as_str()))
            .collect();
        assert_eq!(rejected[0], (Some(1), "poisonous"));
        assert_eq!(rejected[1].0, Some(3));
        assert!(
            rejected[1].1.starts_with("not a valid th.raw message"),
            "{rejected:?}"
        );
        assert_eq!(
            processed.rejected[0].payload,
            poison.encode_to_vec(),
            "the item alone"
        );
    }

    #[test]
    fn a_broken_message_is_dead_lettered_whole_before_any_item_runs() {
        let mut payload = frames::single(&event("a", "GetObject").encode_to_vec());
        payload.extend_from_slice(b"not protobuf");
        let mut outputs = Vec::new();
        let processed = process_items(&mut Picky, Topic::RAW, &payload, &mut outputs).unwrap();
        assert!(outputs.is_empty(), "{outputs:?}");
        assert_eq!(processed.rejected.len(), 1);
        let rejected = &processed.rejected[0];
        assert_eq!((rejected.item, &rejected.payload), (None, &payload));
        assert!(
            rejected
                .reason
                .starts_with("not a valid th.raw message: item 1"),
            "{}",
            rejected.reason
        );
    }

    #[test]
    fn a_panicking_stage_rejects_the_input_and_keeps_earlier_outputs() {
        let mut outputs = Vec::new();
        process_guarded(&mut Fragile, 1, &mut outputs).unwrap();
        let error = process_guarded(&mut Fragile, 13, &mut outputs).unwrap_err();
        assert!(
            matches!(&error, StageError::Rejected(r) if r.contains("panicked") && r.contains("unlucky input")),
            "{error}"
        );
        assert_eq!(outputs, [1, 1], "the half-made output of 13 is dropped");
        process_guarded(&mut Fragile, 2, &mut outputs).unwrap();
        assert_eq!(outputs, [1, 1, 2, 2]);
    }
}
