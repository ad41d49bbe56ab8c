//! Telemetry of the services (DESIGN.md, "Telemetry"):
//!
//! - [`logging`]: logs on stderr and, when `OTEL_EXPORTER_OTLP_ENDPOINT` is
//!   set, OpenTelemetry traces exported over OTLP;
//! - [`propagation`]: trace context carried in NATS message headers;
//! - [`metrics`]: the Prometheus metrics every hop reports;
//! - [`http`]: `/healthz`, `/readyz` and `/metrics`.

pub mod http;
pub mod logging;
pub mod metrics;
pub mod propagation;

pub use http::{Readiness, serve};
pub use logging::{TelemetryGuard, init};
pub use metrics::{HopMetrics, Metrics};
