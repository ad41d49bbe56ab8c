//! Trailhound's protobuf contract (`proto/trailhound/v1`), generated with prost.
//!
//! Stages exchange these messages: in one process they are passed as values,
//! over NATS they are encoded with [`prost::Message`].

pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("trailhound.v1");

    /// Encoded file descriptor set, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("trailhound_descriptor");
}

pub use prost::Message;
pub use v1::*;

impl Severity {
    /// Lower-case name as written in findings and configuration.
    pub fn label(self) -> &'static str {
        match self {
            Severity::Unspecified => "unspecified",
            Severity::Informational => "informational",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}
