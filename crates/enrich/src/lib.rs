//! Enrichment: everything Trailhound learns about an event before any
//! baseline. Pure lookups over databases loaded at start; no I/O per event
//! (database and threat-list files are checked for changes every few seconds).
//!
//! - [`geo`]: city and ASN from MaxMind-format databases;
//! - [`aws_ranges`]: AWS's published `ip-ranges.json`;
//! - [`source`]: which `sourceIPAddress` values are network locations;
//! - [`user_agent`]: AWS CLI/SDK/console/browser user agents, pentest distributions;
//! - [`attack`]: eventName → ATT&CK tactic and technique;
//! - [`service`]: service short names and the global services;
//! - [`hosting`]: cloud, hosting and VPN networks;
//! - [`threat_lists`]: CIDR files of flagged addresses (TH-017), reloaded on change;
//! - [`watched`]: GeoIP databases reloaded when their file changes.

pub mod attack;
pub mod aws_ranges;
pub mod enricher;
pub mod geo;
pub mod hosting;
pub mod service;
pub mod source;
pub mod threat_lists;
pub mod user_agent;
pub mod watched;

pub use enricher::{Enricher, EnricherConfig};

/// A database or data file that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum EnrichError {
    #[error("{path}: {message}")]
    Database { path: String, message: String },
}

/// The shared test data (../shared/data) that the tests read.
#[cfg(test)]
mod test_data {
    pub fn shared(rel: &str) -> std::path::PathBuf {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/data")
            .join(rel)
    }
}
