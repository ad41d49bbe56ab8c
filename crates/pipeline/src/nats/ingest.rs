//! Ingest: every record of a CloudTrail document (a file, an HTTP body, an
//! S3 object) onto `th.raw`, once, many events a message.

use std::path::PathBuf;

use async_nats::jetstream::{self, message::PublishMessage};
use trailhound_cloudtrail::Parsed;
use trailhound_proto::CloudTrailEvent;

use super::frames::{self, Packer};
use super::{EVENTS_HEADER, Topic, dead_letter};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IngestReport {
    /// Documents read: files, HTTP bodies, S3 objects.
    pub files: usize,
    /// Documents that could not be read or whose structure is broken.
    pub file_errors: Vec<String>,
    pub events: u64,
    /// Events JetStream already had (same account and event id).
    pub duplicates: u64,
    /// Records that are not CloudTrail events, sent to `th.dead.ingest`.
    pub rejected: u64,
}

/// The message id that makes re-ingesting an event a no-op.
pub fn event_message_id(event: &CloudTrailEvent) -> String {
    let account = match &event.user_identity {
        Some(user) if !user.account_id.is_empty() => user.account_id.as_str(),
        _ => event.recipient_account_id.as_str(),
    };
    format!("{account}:{}", event.event_id)
}

/// Records of a file read and published at a time: a large file of JSON
/// lines is never held whole.
const CHUNK: usize = 4096;

/// Publish every event of the files under `paths` (sorted, recursive, gzip
/// or plain; the shapes `scan` reads). A file is parsed on a blocking
/// thread, a chunk of records at a time, while the chunk before is
/// published.
pub async fn ingest_paths(
    js: &jetstream::Context,
    paths: &[PathBuf],
) -> Result<IngestReport, async_nats::Error> {
    let mut report = IngestReport::default();
    for path in trailhound_cloudtrail::discover(paths)?.files {
        let source = match trailhound_cloudtrail::Source::open(&path) {
            Ok(source) => source,
            Err(e) => {
                report.file_errors.push(e.to_string());
                continue;
            }
        };
        report.files += 1;
        let (tx, mut chunks) = tokio::sync::mpsc::channel::<Vec<Parsed>>(2);
        // Once publishing has failed, the rest of the file is parsed and
        // dropped. Files are not merged in event time here (as `scan` merges
        // Event history files): the stages' reorder window absorbs what a
        // deployment's delivery reorders.
        let reading = tokio::task::spawn_blocking(move || {
            source.parse_in_batches(true, CHUNK, &mut |chunk, _| tx.blocking_send(chunk).is_ok())
        });
        while let Some(records) = chunks.recv().await {
            publish_records(js, records, &mut report).await?;
        }
        if let Err(e) = reading.await? {
            report.file_errors.push(e.to_string());
        }
    }
    Ok(report)
}

/// Publish every event of one document named `name` (gzip or plain, any
/// shape `scan` reads), gunzipped whole first. A broken structure or gzip
/// stream is recorded in `report.file_errors`; with a broken structure the
/// records before it are still published, with a broken gzip stream none is.
pub async fn ingest_document(
    js: &jetstream::Context,
    name: &str,
    bytes: Vec<u8>,
    report: &mut IngestReport,
) -> Result<(), async_nats::Error> {
    report.files += 1;
    let bytes = match trailhound_cloudtrail::decompress(name, bytes) {
        Ok(bytes) => bytes,
        Err(e) => {
            report.file_errors.push(e.to_string());
            return Ok(());
        }
    };
    let mut records: Vec<Parsed> = Vec::new();
    let structure =
        trailhound_cloudtrail::parse_document(name, &bytes, true, &mut |p| records.push(p));
    if let Err(e) = structure {
        report.file_errors.push(e.to_string());
    }
    publish_records(js, records, report).await
}

/// Publish parsed records: events packed onto `th.raw`, rejections with
/// their reason to `th.dead.ingest`.
async fn publish_records(
    js: &jetstream::Context,
    records: Vec<Parsed>,
    report: &mut IngestReport,
) -> Result<(), async_nats::Error> {
    let mut events = Vec::with_capacity(records.len());
    let mut acks = Vec::new();
    for record in records {
        match record {
            Ok(mut event) => {
                // The raw JSON is only for dead letters; keep the bus lean.
                event.raw_json.clear();
                events.push(*event);
            }
            Err(rejected) => {
                report.rejected += 1;
                let reason = rejected.to_string();
                let raw = rejected.raw.unwrap_or_default().into_bytes();
                let publish = dead_letter(format!("rejected:{}", rejected.origin), &reason, raw);
                acks.push((
                    0,
                    js.send_publish(Topic::DEAD.subject_of("ingest"), publish)
                        .await?,
                ));
            }
        }
    }
    report.events += events.len() as u64;
    for packed in pack_events(&events) {
        let events = packed.events;
        acks.push((
            events,
            js.send_publish(Topic::RAW.subject, packed.into_publish())
                .await?,
        ));
    }
    for (events, ack) in acks {
        if ack.await?.duplicate {
            report.duplicates += events;
        }
    }
    Ok(())
}

/// Events packed into one `th.raw` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    /// A hash of its events' [`event_message_id`]s: the same events packed
    /// the same way (a document ingested again) are dropped as duplicates.
    pub id: String,
    pub payload: Vec<u8>,
    pub events: u64,
}

impl RawMessage {
    /// The message to publish on `th.raw`.
    pub fn into_publish(self) -> PublishMessage {
        PublishMessage::build()
            .message_id(self.id)
            .header(EVENTS_HEADER, self.events.to_string().as_str())
            .payload(self.payload.into())
    }
}

/// Pack events, in order, into messages of at most [`frames::MAX_PAYLOAD`]
/// bytes.
pub fn pack_events(events: &[CloudTrailEvent]) -> Vec<RawMessage> {
    let mut packer = Packer::new(frames::MAX_PAYLOAD, true);
    for event in events {
        packer.push(Topic::RAW.subject, event);
    }
    // One subject: the payloads come back in order, each holding the next
    // `items` events.
    let mut rest = events;
    packer
        .finish()
        .into_iter()
        .map(|packed| {
            let (these, tail) = rest.split_at(packed.items);
            rest = tail;
            let ids: String = these
                .iter()
                .map(|event| event_message_id(event) + "\n")
                .collect();
            RawMessage {
                id: format!("raw:{:032x}", xxhash_rust::xxh3::xxh3_128(ids.as_bytes())),
                payload: packed.payload,
                events: packed.items as u64,
            }
        })
        .collect()
}

/// Send something ingest cannot use (a whole object, a notification) to
/// `th.dead.ingest` with its reason; `origin` names it and makes it
/// idempotent.
pub async fn publish_dead_letter(
    js: &jetstream::Context,
    origin: &str,
    reason: &str,
    payload: Vec<u8>,
) -> Result<(), async_nats::Error> {
    js.send_publish(
        Topic::DEAD.subject_of("ingest"),
        dead_letter(format!("rejected:{origin}"), reason, payload),
    )
    .await?
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(account: &str, id: &str) -> CloudTrailEvent {
        CloudTrailEvent {
            event_id: id.to_string(),
            recipient_account_id: account.to_string(),
            // Large enough that a few thousand events fill several messages.
            request_parameters_json: "x".repeat(400),
            ..Default::default()
        }
    }

    #[test]
    fn events_pack_into_bounded_messages_named_by_their_events() {
        let events: Vec<CloudTrailEvent> = (0..3000)
            .map(|i| event("111122223333", &i.to_string()))
            .collect();
        let packed = pack_events(&events);
        assert!(packed.len() > 1, "{}", packed.len());
        assert!(
            packed
                .iter()
                .all(|m| m.payload.len() <= frames::MAX_PAYLOAD)
        );
        let unpacked: Vec<CloudTrailEvent> = packed
            .iter()
            .flat_map(|m| frames::decode_all::<CloudTrailEvent>(&m.payload).unwrap())
            .collect();
        assert_eq!(unpacked, events, "every event, in order");
        assert_eq!(packed.iter().map(|m| m.events).sum::<u64>(), 3000);

        assert_eq!(
            pack_events(&events),
            packed,
            "the same events, the same ids"
        );
        let mut other = events.clone();
        other[0].recipient_account_id = "444455556666".into();
        assert_ne!(pack_events(&other)[0].id, packed[0].id);
        assert_eq!(pack_events(&other)[1].id, packed[1].id);
        assert!(pack_events(&[]).is_empty());
    }
}
