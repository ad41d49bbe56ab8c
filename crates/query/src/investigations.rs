//! Investigations started over gRPC: built from the principal's events and
//! findings the query service keeps, stored by id, read back whole or an
//! indicator type at a time (Detective's StartInvestigation,
//! GetInvestigation and ListIndicators).

use std::sync::Arc;

use prost::Message;
use trailhound_proto::{
    Indicator, IndicatorType, Investigation, ListFindingsRequest, StartInvestigationRequest,
};
use trailhound_state::{Batch, StateError, Store};

use crate::events::{EventsError, PrincipalEvents};
use crate::filter::FindingFilter;
use crate::investigation::{Investigator, Subject, TravelLimits, indicator_type};
use crate::view::{FindingsView, MAX_PAGE_SIZE, ViewError};

/// Investigation id → the investigation.
const INVESTIGATIONS: &str = "query_investigations";
pub const TABLES: &[&str] = &[INVESTIGATIONS];

#[derive(Debug, thiserror::Error)]
pub enum InvestigationError {
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Events(#[from] EventsError),
    #[error(transparent)]
    Findings(#[from] ViewError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("stored investigation {id} does not decode: {reason}")]
    Corrupt { id: String, reason: String },
}

#[derive(Debug, Clone)]
pub struct Investigations {
    store: Arc<Store>,
    events: PrincipalEvents,
    findings: FindingsView,
    travel: TravelLimits,
}

impl Investigations {
    pub fn new(
        store: Arc<Store>,
        events: PrincipalEvents,
        findings: FindingsView,
        travel: TravelLimits,
    ) -> Self {
        Self {
            store,
            events,
            findings,
            travel,
        }
    }

    /// Investigate, store the report under a new id and return it.
    pub fn start(
        &self,
        request: &StartInvestigationRequest,
        now_ms: i64,
    ) -> Result<Investigation, InvestigationError> {
        let bad = |why: &str| Err(InvestigationError::BadRequest(why.to_string()));
        if request.principal.is_empty() {
            return bad("principal is required");
        }
        if request.scope_start_ms >= request.scope_end_ms {
            return bad("scope_start_ms must be before scope_end_ms");
        }
        let subject = Subject {
            account_id: request.account_id.clone(),
            principal: request.principal.clone(),
            start_ms: request.scope_start_ms,
            end_ms: request.scope_end_ms,
        };
        let mut investigator = Investigator::new(subject, self.travel);
        self.events.visit_between(
            &request.account_id,
            &request.principal,
            investigator.reads_from_ms(),
            request.scope_end_ms,
            |event| {
                investigator.add_event(&event);
            },
        )?;
        let related = FindingFilter::from_request(&ListFindingsRequest {
            account_id: request.account_id.clone(),
            principal: request.principal.clone(),
            since_ms: request.scope_start_ms,
            until_ms: request.scope_end_ms,
            ..Default::default()
        })
        .map_err(|e| InvestigationError::BadRequest(e.to_string()))?;
        let mut token = String::new();
        loop {
            let page = self.findings.list(&related, MAX_PAGE_SIZE, &token)?;
            for finding in &page.findings {
                investigator.add_finding(finding);
            }
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
        }
        let mut report = investigator.report();
        report.created_ms = now_ms;
        report.id = format!(
            "{:032x}",
            xxhash_rust::xxh3::xxh3_128(
                format!(
                    "{}\0{}\0{}\0{}\0{now_ms}",
                    request.account_id,
                    request.principal,
                    request.scope_start_ms,
                    request.scope_end_ms
                )
                .as_bytes()
            )
        );
        let mut batch = Batch::default();
        batch.put(
            INVESTIGATIONS,
            report.id.as_bytes().to_vec(),
            report.encode_to_vec(),
        );
        self.store.commit(batch)?;
        Ok(report)
    }

    pub fn get(&self, id: &str) -> Result<Option<Investigation>, InvestigationError> {
        let Some(bytes) = self.store.get(INVESTIGATIONS, id.as_bytes())? else {
            return Ok(None);
        };
        let report =
            Investigation::decode(bytes.as_slice()).map_err(|e| InvestigationError::Corrupt {
                id: id.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Some(report))
    }

    /// The indicators of `kind` (all when unspecified) of an investigation,
    /// `page_size` at most (0: 100) from `page_token` (an offset); `None`
    /// when there is no such investigation.
    pub fn indicators(
        &self,
        id: &str,
        kind: IndicatorType,
        page_size: usize,
        page_token: &str,
    ) -> Result<Option<(Vec<Indicator>, String)>, InvestigationError> {
        let Some(report) = self.get(id)? else {
            return Ok(None);
        };
        let skip: usize = match page_token {
            "" => 0,
            token => token
                .parse()
                .map_err(|_| InvestigationError::BadRequest(format!("bad page token {token:?}")))?,
        };
        let size = crate::view::page_size(page_size);
        let mut matching = report
            .indicators
            .into_iter()
            .filter(|i| kind == IndicatorType::Unspecified || indicator_type(i) == kind)
            .skip(skip);
        let page: Vec<Indicator> = matching.by_ref().take(size).collect();
        let next = if matching.next().is_some() {
            (skip + size).to_string()
        } else {
            String::new()
        };
        Ok(Some((page, next)))
    }
}
