//! Sinks in the services: each configured sink reads `th.alerts` through
//! its own durable consumer (shared by the alert replicas), so a sink that
//! is down holds back only its own messages. A delivery that fails after
//! the sink's retries is nak'ed with a delay and JetStream offers it again
//! later; nothing is acked before the sink took it, so no finding is lost
//! while the stream retains it.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::AckPolicy, consumer::pull};
use futures_util::StreamExt;
use prost::Message;
use tokio_util::sync::CancellationToken;
use trailhound_proto::Alert;
use trailhound_sinks::Sink;

use super::Topic;

/// The durable consumer of a sink: its name with only the characters
/// JetStream allows in consumer names.
pub fn sink_consumer(name: &str) -> String {
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("sink-{name}")
}

/// Deliver every alert to `sink` until shutdown.
pub async fn run_sink(
    js: &jetstream::Context,
    sink: &Sink,
    retry_after: Duration,
    shutdown: &CancellationToken,
) -> Result<(), async_nats::Error> {
    let durable = sink_consumer(&sink.config.name);
    let stream = js.get_stream(Topic::ALERTS.stream).await?;
    let consumer = stream
        .get_or_create_consumer(
            &durable,
            pull::Config {
                durable_name: Some(durable.clone()),
                ack_policy: AckPolicy::Explicit,
                // Deliveries with retries may take a while; unlimited redelivery.
                ack_wait: Duration::from_secs(300),
                ..Default::default()
            },
        )
        .await?;
    let mut messages = consumer.messages().await?;
    loop {
        let next = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            next = messages.next() => next,
        };
        let Some(message) = next else {
            return Ok(());
        };
        let message = message?;
        match Alert::decode(&message.payload[..]) {
            Err(e) => {
                tracing::warn!(sink = %sink.config.name, error = %e, "not an alert message, skipped");
                message.ack_with(AckKind::Term).await?;
            }
            Ok(alert) => match sink.deliver(&alert).await {
                Ok(_) => message.ack().await?,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?retry_after, "delivery failed, kept for a later attempt");
                    message.ack_with(AckKind::Nak(Some(retry_after))).await?;
                }
            },
        }
    }
}
