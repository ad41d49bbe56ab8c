//! The query side of Trailhound (DESIGN.md, "Query"): the findings the
//! alert stage publishes on `th.alerts`, materialised into the query
//! service's own RocksDB ([`FindingsView`], kept up to date by
//! [`follow_alerts`]) and served over gRPC ([`QueryApi`]): list with
//! filters and paging, get, watch; and [`investigation`]s of a principal
//! over a scope of time.

mod api;
mod config;
mod filter;
mod follow;
pub mod investigation;
mod view;

pub use api::{QueryApi, WATCH_BUFFER};
pub use config::QueryConfig;
pub use filter::{FilterError, FindingFilter};
pub use follow::follow_alerts;
pub use view::{
    DEFAULT_PAGE_SIZE, FindingsView, MAX_EXAMINED, MAX_PAGE_SIZE, Page, TABLES, ViewError,
};
