//! Ingest: every record of a CloudTrail document (a file, an HTTP body, an
//! S3 object) onto `th.raw`, once.

use std::path::PathBuf;

use async_nats::jetstream::{self, message::PublishMessage};
use prost::Message;
use trailhound_cloudtrail::Parsed;
use trailhound_proto::CloudTrailEvent;

use super::{REASON_HEADER, Topic, header_value};

/// Publishes in flight before waiting for JetStream's acks.
const WINDOW: usize = 2048;

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

/// Publish every event of the files under `paths` (sorted, recursive, gzip
/// or plain; the shapes `scan` reads).
pub async fn ingest_paths(
    js: &jetstream::Context,
    paths: &[PathBuf],
) -> Result<IngestReport, async_nats::Error> {
    let mut report = IngestReport::default();
    for path in trailhound_cloudtrail::discover(paths)? {
        match trailhound_cloudtrail::read_file(&path) {
            Ok(bytes) => {
                ingest_document(js, &path.display().to_string(), bytes, &mut report).await?
            }
            Err(e) => report.file_errors.push(e.to_string()),
        }
    }
    Ok(report)
}

/// Publish every event of one document named `name` (gzip or plain, any
/// shape `scan` reads). A broken structure or gzip stream is recorded in
/// `report.file_errors`; the records read before it are still published.
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

/// Publish parsed records: events to `th.raw`, rejections with their
/// reason to `th.dead.ingest`.
async fn publish_records(
    js: &jetstream::Context,
    records: Vec<Parsed>,
    report: &mut IngestReport,
) -> Result<(), async_nats::Error> {
    let mut acks = Vec::with_capacity(WINDOW);
    for record in records {
        let (subject, publish) = match record {
            Ok(mut event) => {
                report.events += 1;
                // The raw JSON is only for dead letters; keep the bus lean.
                event.raw_json.clear();
                let id = event_message_id(&event);
                let publish = PublishMessage::build()
                    .message_id(id)
                    .payload(event.encode_to_vec().into());
                (Topic::RAW.subject.to_string(), publish)
            }
            Err(rejected) => {
                report.rejected += 1;
                let reason = rejected.to_string();
                let raw = rejected.raw.unwrap_or_default().into_bytes();
                (
                    Topic::DEAD.subject_of("ingest"),
                    dead_letter(&rejected.origin, &reason, raw),
                )
            }
        };
        acks.push(js.send_publish(subject, publish).await?);
        if acks.len() >= WINDOW {
            await_acks(&mut acks, report).await?;
        }
    }
    await_acks(&mut acks, report).await
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
        dead_letter(origin, reason, payload),
    )
    .await?
    .await?;
    Ok(())
}

fn dead_letter(origin: &str, reason: &str, payload: Vec<u8>) -> PublishMessage {
    PublishMessage::build()
        .message_id(format!("rejected:{origin}"))
        .header(REASON_HEADER, header_value(reason).as_str())
        .payload(payload.into())
}

async fn await_acks(
    acks: &mut Vec<jetstream::context::PublishAckFuture>,
    report: &mut IngestReport,
) -> Result<(), async_nats::Error> {
    for ack in acks.drain(..) {
        if ack.await?.duplicate {
            report.duplicates += 1;
        }
    }
    Ok(())
}
