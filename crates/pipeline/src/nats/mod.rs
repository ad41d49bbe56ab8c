//! The NATS JetStream bus: the same stages as the in-process bus, each
//! running as a service that consumes one subject and publishes to the
//! next (DESIGN.md, "Partitioning" and "Delivery").
//!
//! ```text
//! th.raw              CloudTrailEvent  ingest   → enrich (one shared consumer)
//! th.enriched.<p>     EnrichedEvent    enrich   → baseline profile hop
//! th.profiled.<a>     Observation      profile  → account hop   (a: hash of account)
//! th.accounted.<c>    Observation      account  → command hop   (c: hash of API call)
//! th.observed.<p>     Observation      command  → detect
//! th.findings.<p>     Finding          detect   → alert         (candidates)
//! th.alerts           Alert            alert    → query, sinks  (stored findings;
//!                                               one consumer per sink)
//! th.dead.<stage>     the input        any stage, with the reason in a header
//! ```
//! `<p>` is the partition of (account, principal). Up to `th.findings` a
//! message carries many items ([`frames`]), so JetStream's per-message cost
//! is shared by a batch of events. Every message carries a `Nats-Msg-Id`
//! derived from its events (ingest) or from the input that produced it, so
//! JetStream drops republished duplicates within the duplicate window.

mod deliver;
pub mod frames;
mod hop;
mod ingest;
pub mod inspect;
mod streams;
pub mod topology;

pub use deliver::{run_sink, sink_consumer};
pub use hop::{Hop, HopError, HopSettings, HopStats, Ownership, SHUTDOWN_GRACE, run_hop};
pub use ingest::{
    IngestReport, RawMessage, event_message_id, ingest_document, ingest_paths, pack_events,
    publish_dead_letter,
};
pub use streams::{PUBLISHED_BUCKET, StreamSettings, Topic, init_streams};

/// Header naming why a message was dead-lettered.
pub const REASON_HEADER: &str = "Trailhound-Reason";

/// Header of a batched message: how many items it holds, so that a stream's
/// events can be counted from headers alone.
pub const EVENTS_HEADER: &str = "Trailhound-Events";

/// A dead letter: `payload` with its reason in a header, under message id
/// `id` so that publishing it again adds nothing.
pub fn dead_letter(
    id: String,
    reason: &str,
    payload: impl Into<bytes::Bytes>,
) -> async_nats::jetstream::message::PublishMessage {
    async_nats::jetstream::message::PublishMessage::build()
        .message_id(id)
        .header(REASON_HEADER, header_value(reason).as_str())
        .payload(payload.into())
}

/// A header value on one line (header values cannot hold line breaks).
pub fn header_value(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

/// Partition of any key (an account, an API call) among `partitions`.
pub fn key_partition(key: &str, partitions: u32) -> u32 {
    (xxhash_rust::xxh3::xxh3_64(key.as_bytes()) % u64::from(partitions.max(1))) as u32
}

/// Connect to NATS, retrying the first connection and reconnecting for
/// ever afterwards, so that a restarting server loses nothing.
pub async fn connect(
    url: &str,
) -> Result<async_nats::jetstream::Context, async_nats::ConnectError> {
    let client = async_nats::ConnectOptions::new()
        .name("trailhound")
        .retry_on_initial_connect()
        .connect(url)
        .await?;
    Ok(async_nats::jetstream::new(client))
}
