//! The findings as the query service keeps them: the latest version of each
//! finding published on `th.alerts`, in RocksDB, with two ordered indexes
//! (most recently active first, overall and per principal) so that a page
//! of a listing reads only what it shows.
//!
//! The view is a function of the stream: each finding remembers the
//! stream sequence of the alert that wrote it, and the view the sequence
//! it has applied up to, committed in the same write batch. Applying an
//! alert again, or an older version of a finding, changes nothing.

use std::collections::HashMap;
use std::sync::Arc;

use prost::Message;
use trailhound_proto::Finding;
use trailhound_state::{Batch, StateError, Store};

use crate::filter::FindingFilter;

/// Finding id → the sequence of the alert that wrote it, then the finding.
const FINDINGS: &str = "query_findings";
/// Recency, finding id → nothing: every finding, most recently active first.
const BY_RECENCY: &str = "query_by_recency";
/// Principal, 0, recency, finding id → nothing.
const BY_PRINCIPAL: &str = "query_by_principal";
/// The tables a store must be opened with to hold a view.
pub const TABLES: &[&str] = &[FINDINGS, BY_RECENCY, BY_PRINCIPAL];

/// The last `th.alerts` sequence applied.
const POSITION: &str = "query:alerts-position";

/// Items a page holds unless asked otherwise, and at most.
pub const DEFAULT_PAGE_SIZE: usize = 100;
pub const MAX_PAGE_SIZE: usize = 1_000;

/// The items a page holds for a request's `page_size` (0: the default).
pub(crate) fn page_size(requested: usize) -> usize {
    match requested {
        0 => DEFAULT_PAGE_SIZE,
        n => n.min(MAX_PAGE_SIZE),
    }
}
/// Index entries one call reads at most: a filter few findings match
/// returns a short page (with a token to go on) instead of reading the
/// whole store in one call.
pub const MAX_EXAMINED: usize = 50_000;

#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("stored finding {id} does not decode: {reason}")]
    Corrupt { id: String, reason: String },
    #[error("page token {0:?} was not made by this service")]
    BadToken(String),
}

/// One page of a listing.
#[derive(Debug, Default, PartialEq)]
pub struct Page {
    pub findings: Vec<Finding>,
    /// Empty when the listing is complete.
    pub next_page_token: String,
}

#[derive(Debug, Clone)]
pub struct FindingsView {
    store: Arc<Store>,
}

impl FindingsView {
    /// A view in `store`, which must have been opened with [`tables`](crate::tables).
    pub fn new(store: Arc<Store>) -> Self {
        Self { store }
    }

    /// The last `th.alerts` sequence applied, 0 before the first.
    pub fn position(&self) -> Result<u64, ViewError> {
        Ok(self
            .store
            .meta(POSITION)?
            .and_then(|bytes| Some(u64::from_be_bytes(bytes.try_into().ok()?)))
            .unwrap_or(0))
    }

    /// Apply the alerts of stream sequences up to `position` (each with its
    /// sequence) in one write batch; returns the findings that changed, in
    /// stream order, for watchers.
    pub fn apply(
        &self,
        alerts: Vec<(u64, Finding)>,
        position: u64,
    ) -> Result<Vec<Finding>, ViewError> {
        // The latest version of each finding in the batch: one update each,
        // so no key is both put and deleted in the batch.
        let mut latest: HashMap<String, (u64, Finding)> = HashMap::new();
        for (sequence, finding) in alerts {
            match latest.get(&finding.id) {
                Some((known, _)) if *known >= sequence => {}
                _ => {
                    latest.insert(finding.id.clone(), (sequence, finding));
                }
            }
        }
        let mut batch = Batch::default();
        let mut changed = Vec::new();
        for (sequence, finding) in latest.into_values() {
            let stored = self.stored(&finding.id)?;
            if let Some((stored_sequence, old)) = &stored {
                if *stored_sequence >= sequence {
                    continue;
                }
                for (table, old_key) in index_keys(old) {
                    if !index_keys(&finding).contains(&(table, old_key.clone())) {
                        batch.delete(table, old_key);
                    }
                }
            }
            for (table, key) in index_keys(&finding) {
                batch.put(table, key, Vec::new());
            }
            let mut value = sequence.to_be_bytes().to_vec();
            finding.encode(&mut value).expect("a Vec grows as needed");
            batch.put(FINDINGS, finding.id.as_bytes().to_vec(), value);
            changed.push((sequence, finding));
        }
        if position > self.position()? {
            batch.set_meta(POSITION, position.to_be_bytes());
        }
        self.store.commit(batch)?;
        changed.sort_by_key(|(sequence, _)| *sequence);
        Ok(changed.into_iter().map(|(_, finding)| finding).collect())
    }

    pub fn get(&self, id: &str) -> Result<Option<Finding>, ViewError> {
        Ok(self.stored(id)?.map(|(_, finding)| finding))
    }

    /// The findings `filter` matches, most recently active first (then by
    /// id), `page_size` at most (0: the default), after `page_token`.
    pub fn list(
        &self,
        filter: &FindingFilter,
        page_size: usize,
        page_token: &str,
    ) -> Result<Page, ViewError> {
        let page_size = self::page_size(page_size);
        let (table, prefix) = if filter.principal.is_empty() {
            (BY_RECENCY, Vec::new())
        } else {
            (BY_PRINCIPAL, principal_prefix(&filter.principal))
        };
        let mut from = prefix.clone();
        if !page_token.is_empty() {
            from.extend(decode_token(page_token)?);
            from.push(0); // the first key after the token's
        }
        let mut page = Page::default();
        let mut examined = 0;
        let mut last_key = Vec::new();
        let mut failure = None;
        self.store.visit_from(table, &from, |key, _| {
            let Some(position) = key.strip_prefix(prefix.as_slice()) else {
                return false;
            };
            let Some((last_event_ms, id)) = split_position(position) else {
                return true; // not written by this code: skip it
            };
            if filter.since_ms.is_some_and(|since| last_event_ms < since) {
                return false; // the rest were active even earlier
            }
            if examined == MAX_EXAMINED {
                page.next_page_token = encode_token(&last_key);
                return false;
            }
            examined += 1;
            let finding = match self.get(id) {
                Ok(Some(finding)) => finding,
                Ok(None) => return true,
                Err(e) => {
                    failure = Some(e);
                    return false;
                }
            };
            if filter.matches(&finding) {
                if page.findings.len() == page_size {
                    page.next_page_token = encode_token(&last_key);
                    return false;
                }
                page.findings.push(finding);
            }
            last_key = position.to_vec();
            true
        })?;
        match failure {
            Some(e) => Err(e),
            None => Ok(page),
        }
    }

    fn stored(&self, id: &str) -> Result<Option<(u64, Finding)>, ViewError> {
        let Some(bytes) = self.store.get(FINDINGS, id.as_bytes())? else {
            return Ok(None);
        };
        let corrupt = |reason: String| ViewError::Corrupt {
            id: id.to_string(),
            reason,
        };
        let (sequence, encoded) = bytes
            .split_first_chunk::<8>()
            .ok_or_else(|| corrupt("shorter than its sequence".into()))?;
        let finding = Finding::decode(encoded).map_err(|e| corrupt(e.to_string()))?;
        Ok(Some((u64::from_be_bytes(*sequence), finding)))
    }
}

/// Orders the most recently active first: the complement of the last
/// event time, big-endian.
fn recency(last_event_ms: i64) -> [u8; 8] {
    (u64::MAX - last_event_ms.max(0) as u64).to_be_bytes()
}

/// A finding's place in an index after its prefix: recency, then id.
fn position_key(finding: &Finding) -> Vec<u8> {
    let mut key = recency(finding.last_event_ms).to_vec();
    key.extend_from_slice(finding.id.as_bytes());
    key
}

fn split_position(position: &[u8]) -> Option<(i64, &str)> {
    let (recency, id) = position.split_first_chunk::<8>()?;
    let last_event_ms = (u64::MAX - u64::from_be_bytes(*recency)) as i64;
    Some((last_event_ms, std::str::from_utf8(id).ok()?))
}

fn principal_prefix(principal: &str) -> Vec<u8> {
    let mut prefix = principal.as_bytes().to_vec();
    prefix.push(0);
    prefix
}

fn index_keys(finding: &Finding) -> [(&'static str, Vec<u8>); 2] {
    let position = position_key(finding);
    let mut by_principal = principal_prefix(&finding.principal);
    by_principal.extend_from_slice(&position);
    [(BY_RECENCY, position), (BY_PRINCIPAL, by_principal)]
}

/// A page token: the last index position returned, in hex.
fn encode_token(position: &[u8]) -> String {
    position.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_token(token: &str) -> Result<Vec<u8>, ViewError> {
    let bad = || ViewError::BadToken(token.to_string());
    if !token.len().is_multiple_of(2) || token.len() < 16 {
        return Err(bad());
    }
    (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(token.get(i..i + 2).ok_or_else(bad)?, 16).map_err(|_| bad()))
        .collect()
}

#[cfg(test)]
mod tests {
    use trailhound_proto::{ListFindingsRequest, Severity};

    use super::*;

    fn view(dir: &std::path::Path) -> FindingsView {
        FindingsView::new(Store::open(dir, &crate::tables()).unwrap())
    }

    fn finding(id: &str, principal: &str, last_event_ms: i64, count: u64) -> Finding {
        let mut f = Finding {
            id: id.into(),
            detector: "TH-002".into(),
            account_id: "111122223333".into(),
            principal: principal.into(),
            first_event_ms: 1_000,
            last_event_ms,
            count,
            ..Default::default()
        };
        f.set_severity(Severity::High);
        f
    }

    fn ids(page: &Page) -> Vec<&str> {
        page.findings.iter().map(|f| f.id.as_str()).collect()
    }

    fn everything(view: &FindingsView, filter: &FindingFilter, page_size: usize) -> Vec<String> {
        let mut all = Vec::new();
        let mut token = String::new();
        loop {
            let page = view.list(filter, page_size, &token).unwrap();
            assert!(page.findings.len() <= page_size);
            all.extend(page.findings.iter().map(|f| f.id.clone()));
            if page.next_page_token.is_empty() {
                return all;
            }
            token = page.next_page_token;
        }
    }

    #[test]
    fn the_latest_version_of_each_finding_is_kept_once() {
        let dir = tempfile::tempdir().unwrap();
        let view = view(dir.path());
        let changed = view
            .apply(
                vec![
                    (1, finding("a", "alice", 5_000, 1)),
                    (2, finding("b", "bob", 6_000, 1)),
                ],
                2,
            )
            .unwrap();
        assert_eq!(changed.len(), 2);
        // "a" updated: active later, so it moves to the front.
        let changed = view
            .apply(vec![(3, finding("a", "alice", 9_000, 4))], 3)
            .unwrap();
        assert_eq!(changed[0].count, 4);
        assert_eq!(view.get("a").unwrap().unwrap().count, 4);
        let page = view.list(&FindingFilter::default(), 0, "").unwrap();
        assert_eq!(ids(&page), ["a", "b"], "one entry each, most recent first");
        assert_eq!(view.position().unwrap(), 3);

        // A redelivered older alert changes nothing, nor moves the position back.
        let changed = view
            .apply(vec![(1, finding("a", "alice", 5_000, 1))], 1)
            .unwrap();
        assert!(changed.is_empty());
        assert_eq!(view.get("a").unwrap().unwrap().count, 4);
        assert_eq!(view.position().unwrap(), 3);
        assert_eq!(
            ids(&view.list(&FindingFilter::default(), 0, "").unwrap()),
            ["a", "b"]
        );
    }

    #[test]
    fn within_one_batch_the_last_alert_of_a_finding_wins() {
        let dir = tempfile::tempdir().unwrap();
        let view = view(dir.path());
        let alerts = vec![
            (1, finding("a", "alice", 5_000, 1)),
            (3, finding("a", "alice", 7_000, 3)),
            (2, finding("a", "alice", 6_000, 2)),
        ];
        let changed = view.apply(alerts, 3).unwrap();
        assert_eq!(changed.len(), 1);
        assert_eq!(view.get("a").unwrap().unwrap().count, 3);
        let by_principal = FindingFilter {
            principal: "alice".into(),
            ..Default::default()
        };
        assert_eq!(everything(&view, &by_principal, 10), ["a"]);
        assert_eq!(everything(&view, &FindingFilter::default(), 10), ["a"]);
    }

    #[test]
    fn pages_cover_every_match_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let view = view(dir.path());
        let alerts = (0..25)
            .map(|i| {
                let principal = if i % 3 == 0 { "alice" } else { "bob" };
                (
                    i + 1,
                    finding(
                        &format!("f{i:02}"),
                        principal,
                        10_000 + (i as i64 % 7) * 1_000,
                        1,
                    ),
                )
            })
            .collect();
        view.apply(alerts, 25).unwrap();
        let all = everything(&view, &FindingFilter::default(), 4);
        assert_eq!(all.len(), 25);
        let times: Vec<i64> = all
            .iter()
            .map(|id| view.get(id).unwrap().unwrap().last_event_ms)
            .collect();
        assert!(
            times.is_sorted_by(|a, b| a >= b),
            "most recent first: {times:?}"
        );

        let alice = FindingFilter {
            principal: "alice".into(),
            ..Default::default()
        };
        let mut expected: Vec<String> = all
            .iter()
            .filter(|id| view.get(id).unwrap().unwrap().principal == "alice")
            .cloned()
            .collect();
        assert_eq!(everything(&view, &alice, 2), expected);
        expected.retain(|id| view.get(id).unwrap().unwrap().last_event_ms >= 14_000);
        let recent_alice = FindingFilter {
            since_ms: Some(14_000),
            ..alice
        };
        assert_eq!(everything(&view, &recent_alice, 3), expected);
        assert!(!expected.is_empty());
    }

    #[test]
    fn tokens_not_made_here_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let view = view(dir.path());
        for token in ["xyz", "00", "zz00000000000000"] {
            let e = view.list(&FindingFilter::default(), 0, token).unwrap_err();
            assert!(matches!(e, ViewError::BadToken(_)), "{token}: {e}");
        }
    }

    #[test]
    fn the_view_outlives_the_process() {
        let dir = tempfile::tempdir().unwrap();
        view(dir.path())
            .apply(vec![(7, finding("a", "alice", 5_000, 2))], 9)
            .unwrap();
        let reopened = view(dir.path());
        assert_eq!(reopened.position().unwrap(), 9);
        assert_eq!(reopened.get("a").unwrap().unwrap().count, 2);
        let request = ListFindingsRequest {
            detector: "TH-002".into(),
            ..Default::default()
        };
        let filter = FindingFilter::from_request(&request).unwrap();
        assert_eq!(ids(&reopened.list(&filter, 0, "").unwrap()), ["a"]);
    }
}
