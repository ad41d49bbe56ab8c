//! Investigations started over gRPC: built from the principal's events and
//! findings the query service keeps, stored by id for a retention period,
//! read back whole, their indicators (of a type), events or sessions a page
//! at a time (Detective's StartInvestigation, GetInvestigation and
//! ListIndicators, and ListInvestigationEvents and ListInvestigationSessions).
//! A report carries the first [`REPORT_ITEMS`] events, indicators and
//! sessions: a busy principal's scope can hold more than one message should.

use std::sync::Arc;

use prost::Message;
use trailhound_proto::{
    Indicator, IndicatorType, Investigation, InvestigationEvent, InvestigationSession,
    ListFindingsRequest, StartInvestigationRequest,
};
use trailhound_state::{Batch, StateError, Store};

use crate::events::{EventsError, PrincipalEvents};
use crate::filter::FindingFilter;
use crate::investigation::{Investigator, Subject, TravelLimits, indicator_type};
use crate::view::{FindingsView, MAX_PAGE_SIZE, ViewError};

/// Investigation id → the investigation, with its first [`REPORT_ITEMS`]
/// events, indicators and sessions.
const INVESTIGATIONS: &str = "query_investigations";
/// Investigation id, 0, the event's index (big-endian u32) → an event of its scope.
const EVENTS: &str = "query_investigation_events";
/// Investigation id, 0, the indicator's index (big-endian u32) → an
/// indicator, for reports with more than [`REPORT_ITEMS`].
const INDICATORS: &str = "query_investigation_indicators";
/// Investigation id, 0, the session's index (big-endian u32) → a session,
/// for reports with more than [`REPORT_ITEMS`].
const SESSIONS: &str = "query_investigation_sessions";
/// Creation time (big-endian), investigation id → nothing: what to expire.
const BY_CREATION: &str = "query_investigations_by_creation";
pub const TABLES: &[&str] = &[INVESTIGATIONS, EVENTS, INDICATORS, SESSIONS, BY_CREATION];

/// Events of the scope, indicators and sessions a report carries, the first
/// of each; `ListInvestigationEvents`, `ListIndicators` and
/// `ListInvestigationSessions` page through all of them.
pub const REPORT_ITEMS: usize = 1_000;

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
    retention_ms: i64,
    max_calls: usize,
}

impl Investigations {
    /// Investigations of `events` and `findings`, each kept for
    /// `retention_ms` after it was started. A scope of more than
    /// `max_calls` calls is refused: each is held until the report is made.
    pub fn new(
        store: Arc<Store>,
        events: PrincipalEvents,
        findings: FindingsView,
        travel: TravelLimits,
        retention_ms: i64,
        max_calls: usize,
    ) -> Self {
        Self {
            store,
            events,
            findings,
            travel,
            retention_ms,
            max_calls,
        }
    }

    /// Investigate, store the report under a new id (and delete those
    /// started longer than the retention ago) and return it, with its
    /// first `REPORT_ITEMS` (1,000) events, indicators and sessions.
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
        let mut too_many = false;
        self.events.visit_between(
            &request.account_id,
            &request.principal,
            investigator.reads_from_ms(),
            request.scope_end_ms,
            |event| {
                if !too_many {
                    investigator.add_event(&event);
                    too_many = investigator.scope_calls() > self.max_calls;
                }
            },
        )?;
        if too_many {
            return bad(&format!(
                "the scope holds more than {} calls of the principal, more than this service \
                 investigates at once: narrow the scope, or raise [query] max_investigation_calls",
                self.max_calls
            ));
        }
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
        let mut batch = self.expired(now_ms)?;
        for (i, event) in report.events.iter().enumerate() {
            batch.put(EVENTS, item_key(&report.id, i), event.encode_to_vec());
        }
        report.events.truncate(REPORT_ITEMS);
        let id = report.id.clone();
        keep_beyond_report(&mut batch, INDICATORS, &id, &mut report.indicators);
        keep_beyond_report(&mut batch, SESSIONS, &id, &mut report.sessions);
        let mut created = (now_ms as u64).to_be_bytes().to_vec();
        created.extend_from_slice(report.id.as_bytes());
        batch.put(BY_CREATION, created, Vec::new());
        batch.put(
            INVESTIGATIONS,
            report.id.as_bytes().to_vec(),
            report.encode_to_vec(),
        );
        self.store.commit(batch)?;
        Ok(report)
    }

    /// A batch deleting every investigation started before the retention.
    fn expired(&self, now_ms: i64) -> Result<Batch, InvestigationError> {
        let cutoff = now_ms.saturating_sub(self.retention_ms).max(0) as u64;
        let mut batch = Batch::default();
        let mut ids = Vec::new();
        self.store.visit_from(BY_CREATION, &[], |key, _| {
            let Some((created, id)) = key.split_first_chunk::<8>() else {
                return true;
            };
            if u64::from_be_bytes(*created) >= cutoff {
                return false;
            }
            batch.delete(BY_CREATION, key.to_vec());
            ids.push(id.to_vec());
            true
        })?;
        for id in ids {
            let mut prefix = id.clone();
            prefix.push(0);
            for table in [EVENTS, INDICATORS, SESSIONS] {
                self.store.visit_from(table, &prefix, |key, _| {
                    if !key.starts_with(&prefix) {
                        return false;
                    }
                    batch.delete(table, key.to_vec());
                    true
                })?;
            }
            batch.delete(INVESTIGATIONS, id);
        }
        Ok(batch)
    }

    /// The events of an investigation's scope, earliest first,
    /// `page_size` at most (0: 100) from `page_token`; `None` when there is
    /// no such investigation.
    pub fn events(
        &self,
        id: &str,
        page_size: usize,
        page_token: &str,
    ) -> Result<Option<(Vec<InvestigationEvent>, String)>, InvestigationError> {
        if self.store.get(INVESTIGATIONS, id.as_bytes())?.is_none() {
            return Ok(None);
        }
        let from = offset(page_token)?;
        let size = crate::view::page_size(page_size);
        let page = self.stored_page(EVENTS, id, from, size)?;
        Ok(Some(paged(page, from, size)))
    }

    /// The sessions of an investigation by their first call, `page_size` at
    /// most (0: 100) from `page_token`; `None` when there is no such
    /// investigation.
    pub fn sessions(
        &self,
        id: &str,
        page_size: usize,
        page_token: &str,
    ) -> Result<Option<(Vec<InvestigationSession>, String)>, InvestigationError> {
        let Some(report) = self.get(id)? else {
            return Ok(None);
        };
        let from = offset(page_token)?;
        let size = crate::view::page_size(page_size);
        let page = if report.sessions.len() as u64 >= report.session_count {
            report
                .sessions
                .into_iter()
                .skip(from)
                .take(size + 1)
                .collect()
        } else {
            self.stored_page(SESSIONS, id, from, size)?
        };
        Ok(Some(paged(page, from, size)))
    }

    /// Up to `size` + 1 of the items an investigation keeps in `table`,
    /// from the `from`th: one more than a page, to know whether there is a
    /// next.
    fn stored_page<M: Message + Default>(
        &self,
        table: &str,
        id: &str,
        from: usize,
        size: usize,
    ) -> Result<Vec<M>, InvestigationError> {
        let mut page = Vec::new();
        self.visit_stored(table, id, from, |item| {
            page.push(item);
            page.len() <= size
        })?;
        Ok(page)
    }

    /// Each item an investigation keeps in `table`, from the `from`th on,
    /// to `visit` while it returns true.
    fn visit_stored<M: Message + Default>(
        &self,
        table: &str,
        id: &str,
        from: usize,
        mut visit: impl FnMut(M) -> bool,
    ) -> Result<(), InvestigationError> {
        let mut prefix = id.as_bytes().to_vec();
        prefix.push(0);
        let mut failure = None;
        self.store
            .visit_from(table, &item_key(id, from), |key, value| {
                if !key.starts_with(&prefix) {
                    return false;
                }
                match M::decode(value) {
                    Ok(item) => visit(item),
                    Err(e) => {
                        failure = Some(InvestigationError::Corrupt {
                            id: id.to_string(),
                            reason: e.to_string(),
                        });
                        false
                    }
                }
            })?;
        failure.map_or(Ok(()), Err)
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
        let skip = offset(page_token)?;
        let size = crate::view::page_size(page_size);
        let wanted =
            |i: &Indicator| kind == IndicatorType::Unspecified || indicator_type(i) == kind;
        // One more than the page, to know whether there is a next.
        let mut page: Vec<Indicator> = Vec::new();
        let mut matched = 0;
        let mut take = |indicator: Indicator| {
            if wanted(&indicator) {
                matched += 1;
                if matched > skip {
                    page.push(indicator);
                }
            }
            page.len() <= size
        };
        if report.indicators.len() as u64 >= report.indicator_count {
            for indicator in report.indicators {
                if !take(indicator) {
                    break;
                }
            }
        } else {
            self.visit_stored(INDICATORS, id, 0, take)?;
        }
        Ok(Some(paged(page, skip, size)))
    }
}

/// A page of up to `size` items from the `from`th, given one more item when
/// there is a next page, and the token of the next page.
fn paged<M>(mut items: Vec<M>, from: usize, size: usize) -> (Vec<M>, String) {
    if items.len() > size {
        items.truncate(size);
        (items, (from + size).to_string())
    } else {
        (items, String::new())
    }
}

/// Keep every one of `items` in `table` when there are more than a report
/// carries, and only the first [`REPORT_ITEMS`] in the report.
fn keep_beyond_report<M: Message>(
    batch: &mut Batch,
    table: &'static str,
    id: &str,
    items: &mut Vec<M>,
) {
    if items.len() > REPORT_ITEMS {
        for (i, item) in items.iter().enumerate() {
            batch.put(table, item_key(id, i), item.encode_to_vec());
        }
        items.truncate(REPORT_ITEMS);
    }
}

/// The position a page token (an offset) stands for; the empty token is 0.
fn offset(page_token: &str) -> Result<usize, InvestigationError> {
    match page_token {
        "" => Ok(0),
        token => token
            .parse()
            .map_err(|_| InvestigationError::BadRequest(format!("bad page token {token:?}"))),
    }
}

/// The key of an investigation's `index`th event, indicator or session.
fn item_key(id: &str, index: usize) -> Vec<u8> {
    let mut key = id.as_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(&u32::try_from(index).unwrap_or(u32::MAX).to_be_bytes());
    key
}

#[cfg(test)]
mod tests {
    use trailhound_proto::{Attack, CloudTrailEvent, EnrichedEvent, Geo, Principal, UserIdentity};

    use super::*;

    const DAY_MS: i64 = 86_400_000;
    const ALICE: &str = "arn:aws:iam::111122223333:user/alice";

    /// Alice's `calls`, each an ATT&CK-mapped call with an access key (so a
    /// session) and from an address of its own (so an indicator each), and
    /// every 100th from a city of its own.
    fn investigations(dir: &std::path::Path, calls: i64) -> Investigations {
        let store = Store::open(dir, &crate::tables()).unwrap();
        let events: Vec<EnrichedEvent> = (0..calls)
            .map(|i| EnrichedEvent {
                event: Some(Box::new(CloudTrailEvent {
                    event_id: format!("e{i:05}"),
                    event_time_ms: 100 * DAY_MS + i * 1_000,
                    event_name: "ListUsers".into(),
                    source_ip: format!("198.51.{}.{}", i / 256, i % 256),
                    user_identity: Some(UserIdentity {
                        access_key_id: format!("AKIA{i:016}"),
                        ..Default::default()
                    }),
                    ..Default::default()
                })),
                attack: Some(Attack {
                    tactic: "discovery".into(),
                    technique: "T1087.004".into(),
                }),
                geo: (i % 100 == 0).then(|| Geo {
                    country: "US".into(),
                    city: format!("City {i}"),
                    ..Default::default()
                }),
                principal: Some(Principal {
                    account_id: "111122223333".into(),
                    arn: ALICE.into(),
                    ..Default::default()
                }),
                service: "iam".into(),
                ..Default::default()
            })
            .collect();
        let principal_events = PrincipalEvents::new(store.clone(), 46 * DAY_MS);
        principal_events.apply(&events, 1).unwrap();
        let travel = TravelLimits {
            kmh: 900.0,
            min_km: 500.0,
        };
        let findings = FindingsView::new(store.clone());
        Investigations::new(
            store,
            principal_events,
            findings,
            travel,
            90 * DAY_MS,
            2_000,
        )
    }

    fn request() -> StartInvestigationRequest {
        StartInvestigationRequest {
            principal: ALICE.into(),
            scope_start_ms: 100 * DAY_MS,
            scope_end_ms: 101 * DAY_MS,
            ..Default::default()
        }
    }

    #[test]
    fn a_report_carries_the_first_events_and_pages_through_all() {
        let dir = tempfile::tempdir().unwrap();
        let investigations = investigations(dir.path(), 1_205);
        let report = investigations.start(&request(), 200 * DAY_MS).unwrap();
        assert_eq!(report.events_in_scope, 1_205);
        assert_eq!(report.events.len(), REPORT_ITEMS);
        assert_eq!(investigations.get(&report.id).unwrap().unwrap(), report);

        let (mut all, mut token) = (Vec::new(), String::new());
        loop {
            let (page, next) = investigations
                .events(&report.id, 0, &token)
                .unwrap()
                .unwrap();
            assert!(page.len() <= 100);
            all.extend(page);
            if next.is_empty() {
                break;
            }
            token = next;
        }
        let ids: Vec<String> = all.iter().map(|e| e.event_id.clone()).collect();
        let expected: Vec<String> = (0..1_205).map(|i| format!("e{i:05}")).collect();
        assert_eq!(ids, expected, "every event once, earliest first");
        assert_eq!(all[..REPORT_ITEMS], report.events[..]);

        // An indicator for each call's address, and one for each city.
        assert_eq!(report.indicator_count, 1_205 + 13);
        assert_eq!(report.indicators.len(), REPORT_ITEMS);
        let list = |kind, size| {
            let (mut all, mut token) = (Vec::new(), String::new());
            loop {
                let (page, next) = (investigations.indicators(&report.id, kind, size, &token))
                    .unwrap()
                    .unwrap();
                assert!(page.len() <= size);
                all.extend(page);
                if next.is_empty() {
                    return all;
                }
                token = next;
            }
        };
        let all = list(IndicatorType::Unspecified, 1_000);
        assert_eq!(all.len(), 1_218);
        assert_eq!(all[..REPORT_ITEMS], report.indicators[..]);
        let ttps = list(IndicatorType::TtpObserved, 100);
        assert_eq!(ttps.len(), 1_205);
        assert_eq!(ttps[..], all[13..], "the cities' come first");

        // A session for each call's access key, by first call.
        assert_eq!(report.session_count, 1_205);
        assert_eq!(report.sessions.len(), REPORT_ITEMS);
        let sessions = |id: &str, size| {
            let (mut all, mut token) = (Vec::new(), String::new());
            loop {
                let (page, next) = investigations.sessions(id, size, &token).unwrap().unwrap();
                assert!(page.len() <= size);
                all.extend(page);
                if next.is_empty() {
                    return all;
                }
                token = next;
            }
        };
        let all = sessions(&report.id, 1_000);
        let keys: Vec<&str> = all.iter().map(|s| s.access_key_ids[0].as_str()).collect();
        let expected: Vec<String> = (0..1_205).map(|i| format!("AKIA{i:016}")).collect();
        assert_eq!(keys, expected);
        assert_eq!(all[..REPORT_ITEMS], report.sessions[..]);
        // A report that carries all its sessions pages through them itself.
        let first_five = StartInvestigationRequest {
            scope_end_ms: 100 * DAY_MS + 5_000,
            ..request()
        };
        let small = investigations.start(&first_five, 200 * DAY_MS).unwrap();
        assert_eq!(small.session_count, 5);
        assert_eq!(sessions(&small.id, 2), small.sessions);
        assert!(investigations.sessions("nope", 0, "").unwrap().is_none());

        assert!(investigations.events("nope", 0, "").unwrap().is_none());
        assert!(matches!(
            investigations.events(&report.id, 0, "x"),
            Err(InvestigationError::BadRequest(_))
        ));
    }

    #[test]
    fn a_scope_of_more_calls_than_the_service_takes_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = investigations(dir.path(), 2_001)
            .start(&request(), 200 * DAY_MS)
            .unwrap_err()
            .to_string();
        assert!(err.contains("more than 2000 calls"), "{err}");
        assert!(err.contains("narrow the scope"), "{err}");
        // Exactly as many: investigated.
        let dir = tempfile::tempdir().unwrap();
        let report = investigations(dir.path(), 2_000)
            .start(&request(), 200 * DAY_MS)
            .unwrap();
        assert_eq!(report.events_in_scope, 2_000);
    }

    #[test]
    fn investigations_are_deleted_after_the_retention() {
        let dir = tempfile::tempdir().unwrap();
        let investigations = investigations(dir.path(), 1_001);
        let old = investigations.start(&request(), 200 * DAY_MS).unwrap();
        let kept = investigations.start(&request(), 250 * DAY_MS).unwrap();
        assert!(
            investigations.get(&old.id).unwrap().is_some(),
            "50 days old"
        );

        let new = investigations.start(&request(), 291 * DAY_MS).unwrap();
        assert!(
            investigations.get(&old.id).unwrap().is_none(),
            "91 days old"
        );
        assert!(investigations.events(&old.id, 0, "").unwrap().is_none());
        // 1,001 events, 1,012 indicators (an address each, 11 cities),
        // 1,001 sessions (an access key each).
        for (table, each) in [(EVENTS, 1_001), (INDICATORS, 1_012), (SESSIONS, 1_001)] {
            let mut left = 0;
            investigations
                .store
                .visit_from(table, &[], |_, _| {
                    left += 1;
                    true
                })
                .unwrap();
            assert_eq!(left, 2 * each, "the old one's went with it from {table}");
        }
        for report in [kept, new] {
            assert_eq!(investigations.get(&report.id).unwrap().unwrap(), report);
        }
    }
}
