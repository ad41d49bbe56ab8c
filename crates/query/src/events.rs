//! Each principal's enriched events, kept by the query service for
//! investigations (DESIGN.md, "Investigations"): indexed by principal,
//! account and event time, for a retention period of event time behind the
//! latest event seen (by default the 45-day baseline and a day). Like the
//! findings view, a function of its stream (`th.enriched.*`) up to the
//! position committed with it.

use std::sync::Arc;

use prost::Message;
use trailhound_proto::{CloudTrailEvent, EnrichedEvent, Principal};
use trailhound_state::{Batch, StateError, Store};

/// Principal, 0, account, 0, event time, event id → the enriched event.
const BY_PRINCIPAL: &str = "query_events";
/// Event time, then the key in `query_events` → nothing: what to expire.
const BY_TIME: &str = "query_events_by_time";
pub const TABLES: &[&str] = &[BY_PRINCIPAL, BY_TIME];

const POSITION: &str = "query:enriched-position";
const DAY_MS: i64 = 86_400_000;
const LATEST: &str = "query:latest-event-ms";

#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("stored event {key} does not decode: {reason}")]
    Corrupt { key: String, reason: String },
}

#[derive(Debug, Clone)]
pub struct PrincipalEvents {
    store: Arc<Store>,
    retention_ms: i64,
}

impl PrincipalEvents {
    /// Events in `store` (opened with [`tables`](crate::tables)), kept `retention_ms` of
    /// event time behind the latest.
    pub fn new(store: Arc<Store>, retention_ms: i64) -> Self {
        Self {
            store,
            retention_ms,
        }
    }

    /// The last `th.enriched` sequence applied, 0 before the first.
    pub fn position(&self) -> Result<u64, EventsError> {
        Ok(self.meta_i64(POSITION)?.unwrap_or(0) as u64)
    }

    fn meta_i64(&self, key: &str) -> Result<Option<i64>, EventsError> {
        Ok(self
            .store
            .meta(key)?
            .and_then(|bytes| Some(i64::from_be_bytes(bytes.try_into().ok()?))))
    }

    /// Store `events` (their raw JSON dropped) and the stream `position`
    /// they reach, and expire what fell out of the retention period, in one
    /// write batch. An event stored again overwrites itself.
    pub fn apply(&self, events: &[EnrichedEvent], position: u64) -> Result<(), EventsError> {
        // Event time moves on with the events, but not past a day after
        // now: one event stamped years ahead must not expire the others.
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(i64::MAX, |d| d.as_millis() as i64);
        let mut latest = self.meta_i64(LATEST)?.unwrap_or(i64::MIN);
        for (_, call) in events.iter().filter_map(located) {
            if call.event_time_ms <= now_ms.saturating_add(DAY_MS) {
                latest = latest.max(call.event_time_ms);
            }
        }
        let cutoff = latest.saturating_sub(self.retention_ms);
        let mut batch = Batch::default();
        // Only events within the retention: a commit puts before it
        // deletes, so nothing this batch writes is expired below.
        for event in events {
            let Some((principal, call)) = located(event).filter(|(_, c)| c.event_time_ms >= cutoff)
            else {
                continue;
            };
            let key = event_key(
                &principal.arn,
                &principal.account_id,
                call.event_time_ms,
                &call.event_id,
            );
            let mut stored = event.clone();
            if let Some(call) = stored.event.as_mut() {
                call.raw_json.clear();
            }
            batch.put(BY_TIME, time_key(call.event_time_ms, &key), Vec::new());
            batch.put(BY_PRINCIPAL, key, stored.encode_to_vec());
        }
        self.store.visit_from(BY_TIME, &[], |time_key, _| {
            let Some((t, key)) = time_key.split_first_chunk::<8>() else {
                return true;
            };
            if ordered_time(*t) >= cutoff {
                return false;
            }
            batch.delete(BY_PRINCIPAL, key.to_vec());
            batch.delete(BY_TIME, time_key.to_vec());
            true
        })?;
        batch.set_meta(LATEST, latest.to_be_bytes());
        if position > self.position()? {
            batch.set_meta(POSITION, (position as i64).to_be_bytes());
        }
        self.store.commit(batch)?;
        Ok(())
    }

    /// Each stored event of `principal` (in `account_id`, or any account
    /// when empty) with an event time in `[from_ms, until_ms)`, in time
    /// order within each account.
    pub fn visit_between(
        &self,
        account_id: &str,
        principal: &str,
        from_ms: i64,
        until_ms: i64,
        mut visit: impl FnMut(EnrichedEvent),
    ) -> Result<(), EventsError> {
        let mut prefix = principal.as_bytes().to_vec();
        prefix.push(0);
        let mut from = prefix.clone();
        if !account_id.is_empty() {
            prefix.extend_from_slice(account_id.as_bytes());
            prefix.push(0);
            from.clone_from(&prefix);
            from.extend_from_slice(&time_bytes(from_ms));
        }
        let mut failure = None;
        self.store.visit_from(BY_PRINCIPAL, &from, |key, value| {
            if !key.starts_with(&prefix) {
                return false;
            }
            match EnrichedEvent::decode(value) {
                Ok(event) => {
                    let t = event.event.as_ref().map_or(0, |c| c.event_time_ms);
                    if (from_ms..until_ms).contains(&t) {
                        visit(event);
                    }
                    // In one account the rest come later still.
                    account_id.is_empty() || t < until_ms
                }
                Err(e) => {
                    failure = Some(EventsError::Corrupt {
                        key: String::from_utf8_lossy(key).into_owned(),
                        reason: e.to_string(),
                    });
                    false
                }
            }
        })?;
        failure.map_or(Ok(()), Err)
    }
}

/// The principal and call of an event that has both.
fn located(event: &EnrichedEvent) -> Option<(&Principal, &CloudTrailEvent)> {
    Some((event.principal.as_ref()?, event.event.as_deref()?))
}

/// Event times as big-endian bytes that sort as the times do (negative
/// times included).
fn time_bytes(t: i64) -> [u8; 8] {
    ((t as u64) ^ (1 << 63)).to_be_bytes()
}

fn ordered_time(bytes: [u8; 8]) -> i64 {
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
}

fn event_key(principal: &str, account_id: &str, t: i64, event_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(principal.len() + account_id.len() + event_id.len() + 10);
    key.extend_from_slice(principal.as_bytes());
    key.push(0);
    key.extend_from_slice(account_id.as_bytes());
    key.push(0);
    key.extend_from_slice(&time_bytes(t));
    key.extend_from_slice(event_id.as_bytes());
    key
}

fn time_key(t: i64, event_key: &[u8]) -> Vec<u8> {
    let mut key = time_bytes(t).to_vec();
    key.extend_from_slice(event_key);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;

    fn event(arn: &str, account: &str, t: i64, id: &str) -> EnrichedEvent {
        EnrichedEvent {
            event: Some(Box::new(CloudTrailEvent {
                event_id: id.into(),
                event_time_ms: t,
                raw_json: b"{}".to_vec(),
                ..Default::default()
            })),
            principal: Some(Principal {
                arn: arn.into(),
                account_id: account.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn ids(events: &PrincipalEvents, account: &str, principal: &str, from_ms: i64) -> Vec<String> {
        between(events, account, principal, from_ms, i64::MAX)
    }

    fn between(
        events: &PrincipalEvents,
        account: &str,
        principal: &str,
        from_ms: i64,
        until_ms: i64,
    ) -> Vec<String> {
        let mut ids = Vec::new();
        events
            .visit_between(account, principal, from_ms, until_ms, |e| {
                assert!(
                    e.event.as_ref().unwrap().raw_json.is_empty(),
                    "raw JSON is not kept"
                );
                ids.push(e.event.unwrap().event_id);
            })
            .unwrap();
        ids
    }

    #[test]
    fn a_principal_s_events_in_time_order_within_the_retention() {
        let dir = tempfile::tempdir().unwrap();
        let events =
            PrincipalEvents::new(Store::open(dir.path(), &crate::tables()).unwrap(), 46 * DAY);
        let role = "arn:aws:iam::111122223333:role/app";
        events
            .apply(
                &[
                    event(role, "111122223333", 10 * DAY, "b"),
                    event(role, "111122223333", 5 * DAY, "a"),
                    event(
                        "arn:aws:iam::111122223333:role/other",
                        "111122223333",
                        6 * DAY,
                        "x",
                    ),
                    // The same event again (a redelivery) is stored once.
                    event(role, "111122223333", 5 * DAY, "a"),
                ],
                4,
            )
            .unwrap();
        assert_eq!(ids(&events, "111122223333", role, 0), ["a", "b"]);
        assert_eq!(ids(&events, "111122223333", role, 6 * DAY), ["b"]);
        assert_eq!(ids(&events, "", role, 0), ["a", "b"], "any account");
        assert_eq!(between(&events, "111122223333", role, 0, 10 * DAY), ["a"]);
        assert_eq!(between(&events, "", role, 6 * DAY, 11 * DAY), ["b"]);
        assert_eq!(events.position().unwrap(), 4);

        // 50 days later, what is older than 46 days before the latest goes.
        events
            .apply(&[event(role, "111122223333", 55 * DAY, "c")], 5)
            .unwrap();
        assert_eq!(ids(&events, "111122223333", role, 0), ["b", "c"]);
        assert!(ids(&events, "", "arn:aws:iam::111122223333:role/other", 0).is_empty());
        // A late event older than the retention is not kept either.
        events
            .apply(&[event(role, "111122223333", DAY, "late")], 6)
            .unwrap();
        assert_eq!(ids(&events, "111122223333", role, 0), ["b", "c"]);
        // An event stamped far in the future is kept, and expires nothing.
        let year_3000 = 32_503_680_000_000;
        events
            .apply(&[event(role, "111122223333", year_3000, "odd")], 7)
            .unwrap();
        assert_eq!(ids(&events, "111122223333", role, 0), ["b", "c", "odd"]);
    }
}
