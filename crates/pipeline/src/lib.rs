//! How Trailhound's stages are put together.
//!
//! - [`stage`]: the [`Stage`] trait, a pure function of (input message, its
//!   own state) to outputs, with state changes drained at commit points;
//!   and the four stages (enrich, baseline, detect, alert).
//! - [`bus`]: the in-process bus that chains stages inside one process and
//!   commits their state in one batch.
//! - [`nats`]: the NATS JetStream bus: the same stages as hops between
//!   streams, run by the services, with checkpoints, dead letters and exactly-once publishing.
//! - [`scan`](mod@scan): `trailhound scan`: read logs, run every stage, report;
//!   [`findings`]: the findings it reports, read back from the state;
//!   [`file_marks`]: the checkpoints of the files it read into a state
//!   directory; [`copies`]: files with the content of one read before.

pub mod bus;
pub mod copies;
pub mod file_marks;
pub mod findings;
pub mod nats;
pub mod scan;
pub mod stage;

pub use bus::InProcessBus;
pub use findings::{FindingSummary, ScanFindings};
pub use scan::{ScanConfig, ScanReport, scan};
pub use stage::{Stage, StageError};
