use std::net::SocketAddr;

use serde::Deserialize;

/// `[query]` of the services' configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueryConfig {
    /// Where the query service serves gRPC.
    pub grpc_addr: SocketAddr,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            grpc_addr: SocketAddr::from(([0, 0, 0, 0], 50051)),
        }
    }
}
