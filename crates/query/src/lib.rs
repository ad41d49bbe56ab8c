//! The query side of Trailhound (DESIGN.md, "Query"): the findings the
//! alert stage publishes on `th.alerts`, materialised into the query
//! service's own RocksDB ([`FindingsView`], kept up to date by
//! [`follow_alerts`]) and served over gRPC ([`QueryApi`]): list with
//! filters and paging, get, watch; and [`investigation`]s of a principal
//! over a scope of time.

mod api;
mod config;
mod events;
mod filter;
mod follow;
pub mod investigation;
mod investigations;
mod view;

pub use api::{QueryApi, WATCH_BUFFER};
pub use config::QueryConfig;
pub use events::{EventsError, PrincipalEvents};
pub use filter::{FilterError, FindingFilter};
pub use follow::{ReadyOnce, follow_alerts, follow_enriched};
pub use investigations::{InvestigationError, Investigations};
pub use view::{DEFAULT_PAGE_SIZE, FindingsView, MAX_EXAMINED, MAX_PAGE_SIZE, Page, ViewError};

/// The tables of the query service's store: findings, events, investigations.
pub fn tables() -> Vec<&'static str> {
    [view::TABLES, events::TABLES, investigations::TABLES].concat()
}
