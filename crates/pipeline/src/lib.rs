//! How Trailhound's stages are put together.
//!
//! - [`stage`]: the [`Stage`] trait, a pure function of (input message, its
//!   own state) to outputs, with state changes drained at commit points;
//!   and the four stages (enrich, baseline, detect, alert).
//! - [`bus`]: the in-process bus that chains stages inside one process and
//!   commits their state in one batch; the NATS JetStream bus runs the same
//!   stages as separate services.
//! - [`scan`]: `trailhound scan`: read logs, run every stage, report.

pub mod bus;
pub mod scan;
pub mod stage;

pub use bus::InProcessBus;
pub use scan::{ScanConfig, ScanReport, scan};
pub use stage::{Stage, StageError};
