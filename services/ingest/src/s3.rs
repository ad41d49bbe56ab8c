//! S3 objects announced on an SQS queue: the usual CloudTrail → S3 → SQS
//! setup. A message is deleted once every object it announces has been
//! ingested or dead-lettered; one that fails for a passing reason (S3 or
//! NATS unreachable, throttling) stays, and SQS delivers it again after its
//! visibility timeout (give the queue a redrive policy for the rest).

use std::time::Duration;

use async_nats::jetstream;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_sqs::types::Message;
use chrono::NaiveDate;
use futures_util::StreamExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use trailhound_pipeline::nats::{IngestReport, ingest_document, publish_dead_letter};
use trailhound_s3::S3Url;
use trailhound_telemetry::HopMetrics;

/// How long to wait before trying again after S3, SQS or NATS failed.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// An object an SQS message announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Object {
    pub bucket: String,
    pub key: String,
}

impl std::fmt::Display for S3Object {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// The objects a queue message announces, from any of: an S3 event
/// notification (its keys URL-encoded), the same wrapped in an SNS
/// notification, CloudTrail's own SNS notification (`s3Bucket`,
/// `s3ObjectKey`), an EventBridge "Object Created" event. S3's test event
/// and events other than object creation announce nothing; objects that
/// are not CloudTrail logs by their place (digest and Insights files, other
/// services' logs in a shared bucket) are left out.
pub fn announced_objects(body: &str) -> Result<Vec<S3Object>, String> {
    let value: Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    let objects = objects_of(&value)?;
    Ok(objects
        .into_iter()
        .filter(|o| !trailhound_cloudtrail::not_cloudtrail_logs(&o.key) && !o.key.ends_with('/'))
        .collect())
}

fn objects_of(value: &Value) -> Result<Vec<S3Object>, String> {
    let text = |v: &Value, path: &str| v.pointer(path).and_then(Value::as_str).map(str::to_string);
    if let (Some("Notification"), Some(message)) = (
        value.get("Type").and_then(Value::as_str),
        value.get("Message").and_then(Value::as_str),
    ) {
        let inner: Value = serde_json::from_str(message)
            .map_err(|e| format!("SNS notification whose Message is not JSON: {e}"))?;
        return objects_of(&inner);
    }
    if value.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Vec::new());
    }
    if let Some(records) = value.get("Records").and_then(Value::as_array) {
        let mut objects = Vec::new();
        for record in records {
            let created = record
                .get("eventName")
                .and_then(Value::as_str)
                .is_some_and(|name| name.starts_with("ObjectCreated:"));
            if !created {
                continue;
            }
            match (
                text(record, "/s3/bucket/name"),
                text(record, "/s3/object/key"),
            ) {
                (Some(bucket), Some(key)) => objects.push(S3Object {
                    bucket,
                    key: url_decoded_key(&key)?,
                }),
                _ => return Err("S3 event record without s3.bucket.name and s3.object.key".into()),
            }
        }
        return Ok(objects);
    }
    if let (Some(bucket), Some(keys)) = (
        text(value, "/s3Bucket"),
        value.get("s3ObjectKey").and_then(Value::as_array),
    ) {
        return Ok(keys
            .iter()
            .filter_map(Value::as_str)
            .map(|key| S3Object {
                bucket: bucket.clone(),
                key: key.to_string(),
            })
            .collect());
    }
    if value.get("detail-type").and_then(Value::as_str) == Some("Object Created") {
        return match (
            text(value, "/detail/bucket/name"),
            text(value, "/detail/object/key"),
        ) {
            (Some(bucket), Some(key)) => Ok(vec![S3Object { bucket, key }]),
            _ => {
                Err("Object Created event without detail.bucket.name and detail.object.key".into())
            }
        };
    }
    Err("not an S3 event notification, an SNS notification, a CloudTrail notification or an EventBridge Object Created event".into())
}

/// S3 event notifications encode keys as in a form: `+` for a space.
fn url_decoded_key(key: &str) -> Result<String, String> {
    percent_encoding::percent_decode_str(&key.replace('+', " "))
        .decode_utf8()
        .map(|k| k.into_owned())
        .map_err(|e| format!("object key {key:?} is not URL-encoded UTF-8: {e}"))
}

/// S3 objects onto the bus: those a queue announces, and a backfill's.
struct Objects {
    js: jetstream::Context,
    s3: aws_sdk_s3::Client,
    metrics: HopMetrics,
}

/// The queue, and what reads the objects it announces.
pub struct Queue {
    objects: Objects,
    sqs: aws_sdk_sqs::Client,
    url: String,
}

/// What became of one message, or one object.
enum Outcome {
    /// Every object ingested or dead-lettered: delete the message.
    Done,
    /// Try again later: leave the message for SQS to redeliver.
    Retry,
}

impl Queue {
    /// AWS clients from the usual configuration chain (environment,
    /// profile, web identity, container and instance credentials).
    pub async fn connect(
        js: jetstream::Context,
        url: String,
        force_path_style: bool,
        metrics: HopMetrics,
    ) -> Self {
        let shared = trailhound_s3::sdk_config().await;
        Self {
            objects: Objects {
                js,
                s3: trailhound_s3::s3_client(&shared, force_path_style),
                metrics,
            },
            sqs: aws_sdk_sqs::Client::new(&shared),
            url,
        }
    }

    /// Long-poll the queue until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(queue = %self.url, "ingesting the S3 objects announced on SQS");
        loop {
            let receive = self
                .sqs
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(10)
                .wait_time_seconds(20)
                .send();
            let received = tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                received = receive => received,
            };
            let messages = match received {
                Ok(output) => output.messages.unwrap_or_default(),
                Err(e) => {
                    tracing::warn!(queue = %self.url, error = %DisplayErrorContext(&e), "receiving from SQS");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(RETRY_AFTER) => continue,
                    }
                }
            };
            for message in messages {
                if let Outcome::Done = self.handle(&message).await {
                    self.delete(&message).await;
                }
            }
        }
    }

    async fn handle(&self, message: &Message) -> Outcome {
        let id = message.message_id().unwrap_or("?");
        let body = message.body().unwrap_or_default();
        let objects = match announced_objects(body) {
            Ok(objects) => objects,
            Err(reason) => {
                let reason = format!("SQS message {id}: {reason}");
                return self
                    .objects
                    .dead_letter(&format!("sqs:{id}"), &reason, body.as_bytes().to_vec())
                    .await;
            }
        };
        for object in objects {
            if let Outcome::Retry = self.objects.ingest(&object).await {
                return Outcome::Retry;
            }
        }
        Outcome::Done
    }

    async fn delete(&self, message: &Message) {
        let Some(receipt) = message.receipt_handle() else {
            return;
        };
        let deleted = self
            .sqs
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .send()
            .await;
        if let Err(e) = deleted {
            // SQS delivers it again; its events are then duplicates.
            tracing::warn!(queue = %self.url, error = %DisplayErrorContext(&e), "deleting a message");
        }
    }
}

impl Objects {
    async fn ingest(&self, object: &S3Object) -> Outcome {
        self.publish_fetched(object, self.fetch(object).await).await
    }

    /// Publish what [`Objects::fetch`] gave for `object`, or say what
    /// became of it.
    async fn publish_fetched(
        &self,
        object: &S3Object,
        fetched: Result<Vec<u8>, Outcome>,
    ) -> Outcome {
        match fetched {
            Ok(bytes) => self.publish(&object.to_string(), bytes).await,
            Err(outcome) => outcome,
        }
    }

    /// The object's bytes; else `Done` once an object that cannot be read
    /// for good is dead-lettered, or `Retry` after a passing failure.
    async fn fetch(&self, object: &S3Object) -> Result<Vec<u8>, Outcome> {
        let name = object.to_string();
        let fetched = self
            .s3
            .get_object()
            .bucket(&object.bucket)
            .key(&object.key)
            .send()
            .await;
        let output = match fetched {
            Ok(output) => output,
            Err(e) => {
                let detail = DisplayErrorContext(&e).to_string();
                return Err(match e.as_service_error() {
                    Some(service) if is_permanent(service) => {
                        let code = service.code().unwrap_or("error");
                        let reason = format!("{name}: cannot be read ({code}): {detail}");
                        self.dead_letter(&name, &reason, name.clone().into_bytes())
                            .await
                    }
                    _ => {
                        tracing::warn!(object = %name, error = %detail, "reading from S3, will retry");
                        Outcome::Retry
                    }
                });
            }
        };
        match output.body.collect().await {
            Ok(data) => Ok(data.into_bytes().to_vec()),
            Err(e) => {
                tracing::warn!(object = %name, error = %e, "reading from S3, will retry");
                Err(Outcome::Retry)
            }
        }
    }

    /// Publish an object's events (`name` is its `s3://` address); one
    /// that is not CloudTrail, or broken, goes to the dead letters.
    async fn publish(&self, name: &str, bytes: Vec<u8>) -> Outcome {
        let mut report = IngestReport::default();
        if let Err(e) = ingest_document(&self.js, name, bytes, &mut report).await {
            tracing::warn!(object = %name, error = %e, "publishing, will retry");
            return Outcome::Retry;
        }
        super::record("s3", &report, &self.metrics);
        if report.file_errors.is_empty() {
            return Outcome::Done;
        }
        // The records before the break are in; the object goes to the dead
        // letters with the reason, by name (the bytes are still in S3).
        let reason = report.file_errors.join("; ");
        self.dead_letter(name, &reason, name.as_bytes().to_vec())
            .await
    }

    async fn dead_letter(&self, origin: &str, reason: &str, payload: Vec<u8>) -> Outcome {
        tracing::warn!(%origin, %reason, "dead-lettered");
        match publish_dead_letter(&self.js, origin, reason, payload).await {
            Ok(()) => {
                self.metrics.dead_lettered.inc();
                Outcome::Done
            }
            Err(e) => {
                tracing::warn!(%origin, error = %e, "publishing a dead letter, will retry");
                Outcome::Retry
            }
        }
    }
}

/// Objects fetched ahead of the one being published during a backfill
/// (and folders listed at a time): S3 answers each request in tens of
/// milliseconds, and a trail writes a file per account, region and 5
/// minutes.
const BACKFILL_AHEAD: usize = 32;

/// Ingest every log under `url` once (with `since`, those delivered since
/// that day), in the order CloudTrail delivered them, as a scan reads
/// files: a new deployment's baselines learn from the trail's history.
/// An object that cannot be read for good is dead-lettered; after a
/// passing failure (S3 or NATS unreachable) the object is tried again
/// until it passes or the service stops.
pub async fn backfill(
    js: jetstream::Context,
    url: S3Url,
    since: Option<NaiveDate>,
    force_path_style: bool,
    metrics: HopMetrics,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let shared = trailhound_s3::sdk_config().await;
    let objects = Objects {
        js,
        s3: trailhound_s3::s3_client(&shared, force_path_style),
        metrics,
    };
    let listed = trailhound_s3::list_logs(&objects.s3, &url, since, BACKFILL_AHEAD, &|_| {});
    let logs = tokio::select! {
        _ = shutdown.cancelled() => return Ok(()),
        listed = listed => listed?.in_delivery_order(),
    };
    tracing::info!(%url, logs = logs.len(), "backfilling");
    let total = logs.len();
    let mut fetched = futures_util::stream::iter(logs)
        .map(|(key, _)| {
            let object = S3Object {
                bucket: url.bucket.clone(),
                key,
            };
            let objects = &objects;
            async move {
                let fetched = objects.fetch(&object).await;
                (object, fetched)
            }
        })
        .buffered(BACKFILL_AHEAD);
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            next = fetched.next() => next,
        };
        let Some((object, fetched)) = next else {
            break;
        };
        let mut outcome = objects.publish_fetched(&object, fetched).await;
        while let Outcome::Retry = outcome {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep(RETRY_AFTER) => {}
            }
            outcome = objects.ingest(&object).await;
        }
    }
    tracing::info!(%url, logs = total, "backfilled");
    Ok(())
}

/// Missing objects and denied access do not mend by retrying.
fn is_permanent(error: &GetObjectError) -> bool {
    error.is_no_such_key()
        || matches!(
            error.code(),
            Some("AccessDenied" | "NoSuchBucket" | "InvalidObjectState")
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(bucket: &str, key: &str) -> S3Object {
        S3Object {
            bucket: bucket.into(),
            key: key.into(),
        }
    }

    const S3_EVENT: &str = r#"{"Records":[{"eventVersion":"2.1","eventSource":"aws:s3","eventName":"ObjectCreated:Put",
        "s3":{"bucket":{"name":"trail-bucket"},"object":{"key":"AWSLogs/111122223333/CloudTrail/us-east-1/2024/04/15/a+b%3Dc.json.gz","size":1}}},
        {"eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"trail-bucket"},"object":{"key":"gone.json.gz"}}},
        {"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"trail-bucket"},"object":{"key":"AWSLogs/111122223333/CloudTrail-Digest/us-east-1/d.json.gz"}}},
        {"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"trail-bucket"},"object":{"key":"AWSLogs/111122223333/CloudTrail-Insight/us-east-1/i.json.gz"}}}]}"#;

    #[test]
    fn s3_event_notifications_announce_created_objects_with_decoded_keys() {
        assert_eq!(
            announced_objects(S3_EVENT).unwrap(),
            vec![object(
                "trail-bucket",
                "AWSLogs/111122223333/CloudTrail/us-east-1/2024/04/15/a b=c.json.gz"
            )]
        );
    }

    #[test]
    fn sns_wrapped_and_cloudtrail_notifications_are_understood() {
        let sns =
            serde_json::json!({"Type": "Notification", "MessageId": "m", "Message": S3_EVENT})
                .to_string();
        assert_eq!(announced_objects(&sns).unwrap().len(), 1);
        let cloudtrail = r#"{"s3Bucket":"trail-bucket","s3ObjectKey":["AWSLogs/1/CloudTrail/us-east-1/x.json.gz","AWSLogs/1/CloudTrail/us-east-1/y.json.gz"]}"#;
        assert_eq!(
            announced_objects(cloudtrail).unwrap(),
            vec![
                object("trail-bucket", "AWSLogs/1/CloudTrail/us-east-1/x.json.gz"),
                object("trail-bucket", "AWSLogs/1/CloudTrail/us-east-1/y.json.gz"),
            ]
        );
        let eventbridge = r#"{"detail-type":"Object Created","source":"aws.s3","detail":{"bucket":{"name":"b"},"object":{"key":"k.json.gz"}}}"#;
        assert_eq!(
            announced_objects(eventbridge).unwrap(),
            vec![object("b", "k.json.gz")]
        );
    }

    #[test]
    fn test_events_announce_nothing_and_other_messages_are_errors() {
        let test_event = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}"#;
        assert_eq!(announced_objects(test_event).unwrap(), vec![]);
        assert!(
            announced_objects("not json")
                .unwrap_err()
                .starts_with("not JSON")
        );
        let other = announced_objects(r#"{"hello":"world"}"#).unwrap_err();
        assert!(other.contains("not an S3 event notification"), "{other}");
        let incomplete =
            announced_objects(r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{}}]}"#);
        assert!(incomplete.unwrap_err().contains("s3.bucket.name"));
    }
}
