//! The metrics each hop reports, in Prometheus text format on `/metrics`.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HopLabel {
    hop: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FindingLabels {
    detector: String,
    severity: String,
}

fn batch_histogram() -> Histogram {
    // 100 µs to ~3 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// A service's metrics registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    messages_in: Family<HopLabel, Counter>,
    messages_out: Family<HopLabel, Counter>,
    events_in: Family<HopLabel, Counter>,
    events_out: Family<HopLabel, Counter>,
    dead_lettered: Family<HopLabel, Counter>,
    redeliveries_skipped: Family<HopLabel, Counter>,
    consumer_lag: Family<HopLabel, Gauge>,
    partitions_rebuilding: Family<HopLabel, Gauge>,
    batch_seconds: Family<HopLabel, Histogram, fn() -> Histogram>,
    findings: Family<FindingLabels, Counter>,
    events_late: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("trailhound");
        let metrics = Self {
            registry: Arc::default(),
            messages_in: Family::default(),
            messages_out: Family::default(),
            events_in: Family::default(),
            events_out: Family::default(),
            dead_lettered: Family::default(),
            redeliveries_skipped: Family::default(),
            consumer_lag: Family::default(),
            partitions_rebuilding: Family::default(),
            batch_seconds: Family::new_with_constructor(batch_histogram),
            findings: Family::default(),
            events_late: Counter::default(),
        };
        registry.register(
            "messages_in",
            "Messages a hop consumed",
            metrics.messages_in.clone(),
        );
        registry.register(
            "messages_out",
            "Messages a hop published",
            metrics.messages_out.clone(),
        );
        registry.register(
            "events_in",
            "Events (items) in the messages a hop consumed",
            metrics.events_in.clone(),
        );
        registry.register(
            "events_out",
            "Events (items) in the messages a hop published",
            metrics.events_out.clone(),
        );
        registry.register(
            "dead_lettered",
            "Events or messages a hop sent to th.dead with a reason",
            metrics.dead_lettered.clone(),
        );
        registry.register(
            "redeliveries_skipped",
            "Redelivered messages the hop's checkpoint already covered",
            metrics.redeliveries_skipped.clone(),
        );
        registry.register(
            "consumer_lag",
            "Messages waiting for the hop's consumer when it last received one",
            metrics.consumer_lag.clone(),
        );
        registry.register(
            "partitions_rebuilding",
            "Partitions the hop took over and is still replaying to rebuild their state",
            metrics.partitions_rebuilding.clone(),
        );
        registry.register(
            "batch_seconds",
            "Time to process, commit, publish and ack one batch",
            metrics.batch_seconds.clone(),
        );
        registry.register(
            "findings_new",
            "Findings created, by detector and severity",
            metrics.findings.clone(),
        );
        registry.register(
            "events_late",
            "Events the profile hop observed more than the reorder window behind their \
             principal's latest (a backfill, or logs out of time order): judged against \
             profiles that already held later events",
            metrics.events_late.clone(),
        );
        Self {
            registry: Arc::new(registry),
            ..metrics
        }
    }

    /// The metrics of one hop, resolved once.
    pub fn hop(&self, hop: &str) -> HopMetrics {
        let label = HopLabel {
            hop: hop.to_string(),
        };
        HopMetrics {
            messages_in: self.messages_in.get_or_create(&label).clone(),
            messages_out: self.messages_out.get_or_create(&label).clone(),
            events_in: self.events_in.get_or_create(&label).clone(),
            events_out: self.events_out.get_or_create(&label).clone(),
            dead_lettered: self.dead_lettered.get_or_create(&label).clone(),
            redeliveries_skipped: self.redeliveries_skipped.get_or_create(&label).clone(),
            consumer_lag: self.consumer_lag.get_or_create(&label).clone(),
            partitions_rebuilding: self.partitions_rebuilding.get_or_create(&label).clone(),
            batch_seconds: self.batch_seconds.get_or_create(&label).clone(),
        }
    }

    /// Count a new finding.
    pub fn finding(&self, detector: &str, severity: &str) {
        self.findings
            .get_or_create(&FindingLabels {
                detector: detector.to_string(),
                severity: severity.to_string(),
            })
            .inc();
    }

    /// Count an event observed later than the reorder window allows.
    pub fn late_event(&self) {
        self.events_late.inc();
    }

    /// Everything in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// One hop's metrics (cheap handles onto the registry's values).
#[derive(Debug, Clone)]
pub struct HopMetrics {
    pub messages_in: Counter,
    pub messages_out: Counter,
    pub events_in: Counter,
    pub events_out: Counter,
    pub dead_lettered: Counter,
    pub redeliveries_skipped: Counter,
    pub consumer_lag: Gauge,
    pub partitions_rebuilding: Gauge,
    pub batch_seconds: Histogram,
}
