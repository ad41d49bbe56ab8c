//! The streams, their subjects and their limits, created idempotently.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use serde::Deserialize;

/// A subject family and the stream that holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topic {
    pub stream: &'static str,
    pub subject: &'static str,
    /// Partitioned topics append `.<partition>` to the subject.
    pub partitioned: bool,
    /// Batched topics carry many items a message (`frames`); the others
    /// one bare protobuf message.
    pub batched: bool,
}

impl Topic {
    pub const RAW: Topic = Topic::new("TH_RAW", "th.raw", false, true);
    pub const ENRICHED: Topic = Topic::new("TH_ENRICHED", "th.enriched", true, true);
    pub const PROFILED: Topic = Topic::new("TH_PROFILED", "th.profiled", true, true);
    pub const ACCOUNTED: Topic = Topic::new("TH_ACCOUNTED", "th.accounted", true, true);
    pub const OBSERVED: Topic = Topic::new("TH_OBSERVED", "th.observed", true, true);
    pub const FINDINGS: Topic = Topic::new("TH_FINDINGS", "th.findings", true, true);
    /// One alert a message: each sink acks each alert it delivered.
    pub const ALERTS: Topic = Topic::new("TH_ALERTS", "th.alerts", false, false);
    /// One item (or one whole message that failed as such) a message.
    pub const DEAD: Topic = Topic::new("TH_DEAD", "th.dead", true, false);

    pub const ALL: [Topic; 8] = [
        Topic::RAW,
        Topic::ENRICHED,
        Topic::PROFILED,
        Topic::ACCOUNTED,
        Topic::OBSERVED,
        Topic::FINDINGS,
        Topic::ALERTS,
        Topic::DEAD,
    ];

    const fn new(
        stream: &'static str,
        subject: &'static str,
        partitioned: bool,
        batched: bool,
    ) -> Self {
        Self {
            stream,
            subject,
            partitioned,
            batched,
        }
    }

    /// The subject of one partition (or of the dead letters of one stage).
    pub fn subject_of(&self, part: impl std::fmt::Display) -> String {
        format!("{}.{part}", self.subject)
    }

    /// The partition a message arrived on, from its subject.
    pub fn partition_of_subject(&self, subject: &str) -> Option<u32> {
        subject
            .strip_prefix(self.subject)?
            .strip_prefix('.')?
            .parse()
            .ok()
    }
}

/// Retention and limits of the streams (`[nats]` in the service config).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamSettings {
    /// How long republished messages with the same `Nats-Msg-Id` are
    /// dropped: covers re-ingesting a file and a stage restarting.
    #[serde(with = "humantime_serde")]
    pub duplicate_window: Duration,
    /// Age limit of the streams. A stateful stage rebuilds its state after
    /// rescaling by replaying its input stream, so keep at least the
    /// baseline window (45 days) plus a day.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Size limit of each stream in bytes (-1: none); the oldest go first.
    pub max_bytes: i64,
    /// JetStream replicas of each stream (1, or 3 in a NATS cluster).
    pub replicas: usize,
}

impl Default for StreamSettings {
    fn default() -> Self {
        Self {
            duplicate_window: Duration::from_secs(2 * 3600),
            max_age: Duration::from_secs(46 * 86_400),
            max_bytes: -1,
            replicas: 1,
        }
    }
}

/// The key-value bucket where each stateful hop records, per partition, the
/// input sequence whose outputs it has published: a replica rebuilding a
/// partition's state after rescaling replays up to there without
/// publishing again.
pub const PUBLISHED_BUCKET: &str = "TH_PUBLISHED";

/// Create or update every stream; safe to run from every service at start.
pub async fn init_streams(
    js: &jetstream::Context,
    settings: &StreamSettings,
) -> Result<(), async_nats::Error> {
    for topic in Topic::ALL {
        let subject = if topic.partitioned {
            format!("{}.*", topic.subject)
        } else {
            topic.subject.to_string()
        };
        js.create_or_update_stream(stream::Config {
            name: topic.stream.to_string(),
            subjects: vec![subject],
            max_age: settings.max_age,
            max_bytes: settings.max_bytes,
            duplicate_window: settings.duplicate_window,
            num_replicas: settings.replicas,
            storage: stream::StorageType::File,
            ..Default::default()
        })
        .await?;
    }
    js.create_or_update_key_value(jetstream::kv::Config {
        bucket: PUBLISHED_BUCKET.to_string(),
        history: 1,
        num_replicas: settings.replicas,
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_round_trip_through_subjects() {
        let subject = Topic::ENRICHED.subject_of(7);
        assert_eq!(subject, "th.enriched.7");
        assert_eq!(Topic::ENRICHED.partition_of_subject(&subject), Some(7));
        assert_eq!(Topic::ENRICHED.partition_of_subject("th.enrichedx.7"), None);
        assert_eq!(Topic::OBSERVED.partition_of_subject(&subject), None);
    }
}
