//! Looking at a running pipeline from outside: is it idle, what findings
//! has it stored, what did it dead-letter. For `trailhound nats …`, the
//! local run script and the tests.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull::OrderedConfig};
use futures_util::StreamExt;
use prost::Message;
use trailhound_proto::{Alert, Finding};

use super::{EVENTS_HEADER, REASON_HEADER, Topic};

/// Messages a stream holds (duplicates JetStream dropped are not in it).
pub async fn stream_messages(
    js: &jetstream::Context,
    stream: &str,
) -> Result<u64, async_nats::Error> {
    Ok(js
        .get_stream(stream)
        .await?
        .get_info()
        .await?
        .state
        .messages)
}

/// Events a stream holds: for a batched topic the items its messages say
/// they hold (read from their headers; a message published by hand
/// without the header counts none), else its messages.
pub async fn stream_events(
    js: &jetstream::Context,
    topic: Topic,
) -> Result<u64, async_nats::Error> {
    if !topic.batched {
        return stream_messages(js, topic.stream).await;
    }
    let headers_only = OrderedConfig {
        headers_only: true,
        ..Default::default()
    };
    let events = read_all(js, topic, headers_only)
        .await?
        .iter()
        .filter_map(|message| {
            message
                .headers
                .as_ref()?
                .get(EVENTS_HEADER)?
                .as_str()
                .parse::<u64>()
                .ok()
        })
        .sum();
    Ok(events)
}

/// Whether every consumer of every stream has acked all it was given.
pub async fn is_idle(js: &jetstream::Context) -> Result<bool, async_nats::Error> {
    for topic in Topic::ALL {
        let stream = js.get_stream(topic.stream).await?;
        let mut consumers = stream.consumers();
        while let Some(info) = consumers.next().await {
            let info = info?;
            if info.num_pending > 0 || info.num_ack_pending > 0 {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Wait until the pipeline is idle twice in a row, `poll` apart; returns
/// when it was first seen idle.
pub async fn wait_idle(
    js: &jetstream::Context,
    poll: Duration,
    timeout: Duration,
) -> Result<Instant, async_nats::Error> {
    let deadline = Instant::now() + timeout;
    let mut idle_since = None;
    loop {
        let checked = Instant::now();
        match (is_idle(js).await?, idle_since) {
            (true, Some(since)) => return Ok(since),
            (true, None) => idle_since = Some(checked),
            (false, _) => idle_since = None,
        }
        if Instant::now() >= deadline {
            return Err(format!("the pipeline was still busy after {timeout:?}").into());
        }
        tokio::time::sleep(poll).await;
    }
}

/// Every message of a stream, oldest first, through an ephemeral consumer.
async fn read_all(
    js: &jetstream::Context,
    topic: Topic,
    config: OrderedConfig,
) -> Result<Vec<jetstream::Message>, async_nats::Error> {
    let stream = js.get_stream(topic.stream).await?;
    let total = stream.get_info().await?.state.messages;
    let consumer = stream.create_consumer(config).await?;
    let mut messages = consumer.messages().await?;
    let mut out = Vec::with_capacity(total as usize);
    while (out.len() as u64) < total {
        match messages.next().await {
            Some(message) => out.push(message?),
            None => break,
        }
    }
    Ok(out)
}

/// The stored findings: the latest alert of each finding id on `th.alerts`.
pub async fn stored_findings(js: &jetstream::Context) -> Result<Vec<Finding>, async_nats::Error> {
    let mut latest = BTreeMap::new();
    for message in read_all(js, Topic::ALERTS, OrderedConfig::default()).await? {
        let alert = Alert::decode(message.payload.as_ref())?;
        if let Some(finding) = alert.finding {
            latest.insert(finding.id.clone(), finding);
        }
    }
    Ok(latest.into_values().collect())
}

/// A dead-lettered message: the stage that gave up, why, and the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub subject: String,
    pub reason: String,
    pub payload: Vec<u8>,
}

pub async fn dead_letters(js: &jetstream::Context) -> Result<Vec<DeadLetter>, async_nats::Error> {
    Ok(read_all(js, Topic::DEAD, OrderedConfig::default())
        .await?
        .into_iter()
        .map(|message| DeadLetter {
            subject: message.subject.to_string(),
            reason: message
                .headers
                .as_ref()
                .and_then(|h| h.get(REASON_HEADER))
                .map(|v| v.as_str().to_string())
                .unwrap_or_default(),
            payload: message.payload.to_vec(),
        })
        .collect())
}
