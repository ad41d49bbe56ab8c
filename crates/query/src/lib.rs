//! The query side of Trailhound (DESIGN.md, "Query" and "Investigations"):
//! the findings the alert stage publishes on `th.alerts`, materialised into
//! the query service's own RocksDB ([`FindingsView`], kept up to date by
//! [`follow_alerts`]), each principal's enriched events of `th.enriched.*`
//! ([`PrincipalEvents`], [`follow_enriched`]), and the gRPC services over
//! them ([`QueryApi`]): findings listed with filters and paging, got and
//! watched; [`investigation`]s of a principal over a scope of time, started,
//! stored and read back ([`Investigations`]); principals' [`profile`]s.

mod api;
mod config;
mod events;
mod filter;
mod follow;
pub mod investigation;
mod investigations;
pub mod profile;
mod view;

pub use api::{QueryApi, WATCH_BUFFER};
pub use config::QueryConfig;
pub use events::{EventsError, PrincipalEvents};
pub use filter::{FilterError, FindingFilter};
pub use follow::{ReadyOnce, follow_alerts, follow_enriched};
pub use investigations::{InvestigationError, Investigations};
pub use view::{FindingsView, MAX_PAGE_SIZE, Page, ViewError};

/// The tables of the query service's store: findings, events, investigations.
pub fn tables() -> Vec<&'static str> {
    [view::TABLES, events::TABLES, investigations::TABLES].concat()
}
