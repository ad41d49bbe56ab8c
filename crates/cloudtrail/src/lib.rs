//! The CloudTrail event model, every input shape Trailhound accepts, and
//! principal normalisation.
//!
//! - [`input`]: files, directories and stdin; S3 delivery files
//!   (`{"Records":[…]}`, plain or gzip), JSON arrays, JSON lines and
//!   EventBridge envelopes. Bad events are [`Rejected`] with their origin;
//!   the rest of the document is still read.
//! - [`record`]: the lenient serde model of one event and its conversion to
//!   the `trailhound.v1.CloudTrailEvent` message.
//! - [`principal`]: the stable (account, principal) key of DETECTIONS.md.

pub mod input;
pub mod principal;
pub mod record;
pub mod time;

pub use input::{
    Discovered, Fingerprint, Hashed, Identified, InputError, Parsed, Probed, ReadSoFar,
    RecordOrder, Rejected, Source, decompress, delivery_time, discover, not_cloudtrail_logs,
    parse_document, sort_by_event_time,
};
pub use principal::{normalise, normalise_into, partition_of};
