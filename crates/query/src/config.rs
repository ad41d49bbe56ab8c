use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

/// `[query]` of the services' configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryConfig {
    /// Where the query service serves gRPC.
    pub grpc_addr: SocketAddr,
    /// Event time each principal's events are kept for investigations,
    /// behind the latest event seen: the 45-day baseline and a day.
    #[serde(with = "humantime_serde")]
    pub event_retention: Duration,
    /// How long a started investigation is kept.
    #[serde(with = "humantime_serde")]
    pub investigation_retention: Duration,
    /// Calls in one investigation's scope the service takes (it holds each,
    /// about 400 B, until the report is made): a larger scope is refused
    /// with a request to narrow it, rather than the service running out of
    /// memory.
    pub max_investigation_calls: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            grpc_addr: SocketAddr::from(([0, 0, 0, 0], 50051)),
            event_retention: Duration::from_secs(46 * 86_400),
            investigation_retention: Duration::from_secs(90 * 86_400),
            max_investigation_calls: 2_000_000,
        }
    }
}
