//! A principal's activity per time bucket (calls per 5 minutes, distinct
//! error messages per 15 minutes …) and its normal: the busiest bucket of
//! each day. The volume detectors (TH-007, TH-008, TH-009, TH-013) compare
//! a bucket with the normal of earlier days.
//!
//! State stays small: the open buckets (within their width plus the
//! reorder window of the latest event) and one peak per kind per day of the
//! window. A bucket keeps its earliest events (by event time) and what the
//! earliest says (its origin), so the finding it raises names and
//! describes the same events whatever the arrival order.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use trailhound_proto::{EvidenceEvent, RateKind};

use crate::finding::MAX_EVIDENCE;
use crate::seen::day;

/// Distinct values counted per bucket, at most (enough for any threshold).
const MAX_DISTINCT: usize = 512;

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Rates {
    /// (kind, day, busiest bucket's value that day).
    peaks: Vec<(i32, i64, u32)>,
    buckets: Vec<Bucket>,
    latest_ms: i64,
    /// The earliest end of the buckets, once known (`None`: look again).
    #[serde(skip)]
    earliest_end_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Bucket {
    kind: i32,
    start_ms: i64,
    end_ms: i64,
    count: u32,
    /// Hashes of the distinct values, for kinds that count distinct values.
    distinct: Vec<u64>,
    /// Earliest events, sorted by (time, id). Ids and origins are shared
    /// between the buckets of one event (most events open two or three).
    earliest: Vec<(i64, Arc<str>)>,
    /// The encoded [`RateOrigin`](trailhound_proto::RateOrigin) of the
    /// earliest event.
    origin: Arc<[u8]>,
}

/// One event's part in a bucket.
pub struct Sample<'a> {
    pub kind: RateKind,
    pub bucket_ms: i64,
    pub t: i64,
    /// Kept, shared, while the event is among the earliest of its bucket.
    pub event_id: &'a Arc<str>,
    /// Counted distinct when given, else every event counts.
    pub distinct: Option<&'a str>,
    /// The event's encoded [`RateOrigin`](trailhound_proto::RateOrigin),
    /// asked for when it is the earliest of its bucket.
    pub origin: &'a dyn Fn() -> Arc<[u8]>,
}

/// A bucket after an event: where it starts and its value.
#[derive(Debug, Clone, Copy)]
pub struct BucketState {
    pub start_ms: i64,
    pub value: u32,
}

/// The normal of a kind: the busiest bucket of each earlier active day.
pub struct Normal {
    pub days: u32,
    pub median: f64,
    pub mad: f64,
}

impl Rates {
    /// Add an event to its bucket, dropping buckets that ended more than
    /// the reorder window before the latest event, and peaks older than the
    /// window. `None` for an event whose bucket is such a bucket: closed,
    /// its peak taken, so the event is not counted (it came later than the
    /// reorder window allows: a backfill, or a second trail's copy read
    /// days later).
    pub fn record(
        &mut self,
        s: &Sample<'_>,
        reorder_ms: i64,
        window_days: u32,
    ) -> Option<BucketState> {
        let kind = s.kind as i32;
        let start_ms = s.t - s.t.rem_euclid(s.bucket_ms);
        if self.latest_ms.saturating_sub(start_ms + s.bucket_ms) > reorder_ms {
            return None;
        }
        if s.t > self.latest_ms {
            let new_day = day(s.t) > day(self.latest_ms);
            self.latest_ms = s.t;
            let latest = self.latest_ms;
            // Most events expire nothing: look only when the earliest end has.
            let buckets = &self.buckets;
            let earliest_end = *self
                .earliest_end_ms
                .get_or_insert_with(|| buckets.iter().map(|b| b.end_ms).min().unwrap_or(i64::MAX));
            if latest.saturating_sub(earliest_end) > reorder_ms {
                self.buckets.retain(|b| latest - b.end_ms <= reorder_ms);
                self.earliest_end_ms = None;
            }
            if new_day {
                let today = day(latest);
                self.peaks
                    .retain(|(_, d, _)| today - d <= i64::from(window_days));
            }
        }
        let i = match self
            .buckets
            .iter()
            .position(|b| b.kind == kind && b.start_ms == start_ms)
        {
            Some(i) => i,
            None => {
                let end_ms = start_ms + s.bucket_ms;
                self.earliest_end_ms = self.earliest_end_ms.map(|e| e.min(end_ms));
                self.buckets.push(Bucket {
                    kind,
                    start_ms,
                    end_ms,
                    count: 0,
                    distinct: Vec::new(),
                    earliest: Vec::with_capacity(1),
                    origin: (s.origin)(),
                });
                self.buckets.len() - 1
            }
        };
        let bucket = &mut self.buckets[i];
        let known = bucket
            .earliest
            .binary_search_by(|(t, id)| (*t, &**id).cmp(&(s.t, &**s.event_id)));
        if let Err(at) = known {
            // A repeated event is not counted twice while it is among those kept.
            bucket.count += 1;
            if at == 0 && !bucket.earliest.is_empty() {
                bucket.origin = (s.origin)(); // earlier than the bucket's first
            }
            if at < MAX_EVIDENCE {
                bucket.earliest.insert(at, (s.t, s.event_id.clone()));
                bucket.earliest.truncate(MAX_EVIDENCE);
            }
        }
        if let Some(value) = s.distinct {
            let h = xxhash_rust::xxh3::xxh3_64(value.as_bytes());
            if bucket.distinct.len() < MAX_DISTINCT && !bucket.distinct.contains(&h) {
                bucket.distinct.push(h);
            }
        }
        let value = if s.distinct.is_some() {
            bucket.distinct.len() as u32
        } else {
            bucket.count
        };
        let state = BucketState { start_ms, value };
        let d = day(s.t);
        // Today's peaks are the last pushed: look from the end.
        match self
            .peaks
            .iter_mut()
            .rev()
            .find(|(k, pd, _)| *k == kind && *pd == d)
        {
            Some((_, _, peak)) => *peak = (*peak).max(value),
            None => self.peaks.push((kind, d, value)),
        }
        Some(state)
    }

    /// A bucket's earliest events (a finding's evidence) and what the
    /// earliest says (an encoded [`RateOrigin`](trailhound_proto::RateOrigin)),
    /// written into an earlier event's: their strings are reused (nothing
    /// for a bucket no longer kept).
    pub fn describe(
        &self,
        kind: RateKind,
        start_ms: i64,
        earliest: &mut Vec<EvidenceEvent>,
        origin: &mut Vec<u8>,
    ) {
        let bucket = self
            .buckets
            .iter()
            .find(|b| b.kind == kind as i32 && b.start_ms == start_ms);
        let kept = bucket.map_or(&[][..], |b| &b.earliest[..]);
        earliest.resize_with(kept.len(), EvidenceEvent::default);
        for (evidence, (t, id)) in earliest.iter_mut().zip(kept) {
            evidence.event_id.clear();
            evidence.event_id.push_str(id);
            evidence.event_time_ms = *t;
        }
        origin.clear();
        origin.extend_from_slice(bucket.map_or(&[][..], |b| &b.origin));
    }

    /// The normal of `kind` for an event on day `d`: days before `d` in the
    /// window on which the principal was active (any call), with 0 for days
    /// without this kind of activity.
    pub fn normal(&self, kind: RateKind, d: i64, window_days: u32) -> Normal {
        let in_window = |pd: i64| pd < d && d - pd <= i64::from(window_days);
        let mut values: Vec<f64> = self
            .peaks
            .iter()
            .filter(|(k, pd, _)| *k == RateKind::ApiCalls as i32 && in_window(*pd))
            .map(|(_, pd, _)| {
                self.peaks
                    .iter()
                    .find(|(k, kd, _)| *k == kind as i32 && kd == pd)
                    .map_or(0.0, |(_, _, v)| f64::from(*v))
            })
            .collect();
        let median = median(&mut values);
        let mut deviations: Vec<f64> = values.iter().map(|v| (v - median).abs()).collect();
        Normal {
            days: values.len() as u32,
            median,
            mad: self::median(&mut deviations),
        }
    }
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DAY_MS;
    use trailhound_proto::{Message, RateOrigin};

    const W: u32 = 45;

    fn calls(rates: &mut Rates, t: i64, id: &str) -> Option<BucketState> {
        rates.record(
            &Sample {
                kind: RateKind::ApiCalls,
                bucket_ms: 300_000,
                t,
                event_id: &id.into(),
                distinct: None,
                origin: &|| {
                    RateOrigin {
                        source_ip: id.to_string(),
                        ..Default::default()
                    }
                    .encode_to_vec()
                    .into()
                },
            },
            900_000,
            W,
        )
    }

    #[test]
    fn buckets_count_and_keep_their_earliest_events_in_any_order() {
        let times: Vec<i64> = (0..30).map(|i| i * 1_000).collect();
        let mut forward = Rates::default();
        let mut last = None;
        for t in &times {
            last = calls(&mut forward, *t, &format!("e{t}"));
        }
        let mut backward = Rates::default();
        let mut last_back = None;
        for t in times.iter().rev() {
            last_back = calls(&mut backward, *t, &format!("e{t}"));
        }
        let (a, b) = (last.unwrap(), last_back.unwrap());
        assert_eq!((a.value, b.value), (30, 30));
        let ((ea, oa), (eb, ob)) = (
            described(&forward, a.start_ms),
            described(&backward, b.start_ms),
        );
        assert_eq!((&ea, &oa), (&eb, &ob));
        assert_eq!(ea.len(), MAX_EVIDENCE);
        assert_eq!(ea[0].event_id, "e0");
        assert_eq!(
            RateOrigin::decode(&oa[..]).unwrap().source_ip,
            "e0",
            "the earliest event describes"
        );
        assert_eq!(
            calls(&mut forward, 0, "e0").map(|b| b.value),
            Some(30),
            "a redelivery is not counted again"
        );
    }

    #[test]
    fn events_later_than_their_closed_bucket_are_not_counted() {
        let mut r = Rates::default();
        for i in 0..10 {
            calls(&mut r, i * 1_000, &format!("first-{i}"));
        }
        let day_peak = |r: &Rates| r.peaks.clone();
        let peaks = day_peak(&r);
        // An hour later the first bucket (0–5 min) closed 40 minutes ago,
        // past the 15-minute reorder window.
        let hour = 3_600_000;
        calls(&mut r, hour, "latest");
        // Within the window: still counted in its open bucket.
        assert_eq!(
            calls(&mut r, hour - 600_000, "late").map(|b| b.value),
            Some(1)
        );
        let buckets = r.buckets.len();
        // A copy of the first events, read again: not counted, no bucket
        // reopened, however many (each would have been scanned for).
        for round in 0..100 {
            for i in 0..10 {
                assert!(calls(&mut r, i * 1_000, &format!("copy-{round}-{i}")).is_none());
            }
        }
        assert_eq!(r.buckets.len(), buckets);
        assert_eq!(r.peaks[..peaks.len()], peaks[..], "the day's peak stands");
    }

    /// A bucket of API calls described into new messages.
    fn described(rates: &Rates, start_ms: i64) -> (Vec<EvidenceEvent>, Vec<u8>) {
        let (mut earliest, mut origin) = (Vec::new(), Vec::new());
        rates.describe(RateKind::ApiCalls, start_ms, &mut earliest, &mut origin);
        (earliest, origin)
    }

    #[test]
    fn a_bucket_described_into_used_messages_reads_as_one_described_afresh() {
        let mut r = Rates::default();
        // The first bucket's origin says more than the second's.
        let richer = || {
            let origin = RateOrigin {
                region: "eu-west-1".into(),
                user_agent: "aws-cli/2.15.0".into(),
                ..Default::default()
            };
            origin.encode_to_vec().into()
        };
        for i in 0..MAX_EVIDENCE as i64 {
            let id = format!("an-earlier-event-with-a-longer-id-{i}");
            let sample = Sample {
                kind: RateKind::ApiCalls,
                bucket_ms: 300_000,
                t: i,
                event_id: &id.into(),
                distinct: None,
                origin: &richer,
            };
            r.record(&sample, 900_000, W);
        }
        let (mut earliest, mut origin) = described(&r, 0);
        assert_eq!(RateOrigin::decode(&origin[..]).unwrap().region, "eu-west-1");
        assert_eq!(earliest.len(), MAX_EVIDENCE);
        calls(&mut r, 300_000, "e1");
        calls(&mut r, 300_001, "e2");
        r.describe(RateKind::ApiCalls, 300_000, &mut earliest, &mut origin);
        let (fresh_earliest, fresh_origin) = described(&r, 300_000);
        assert_eq!((&earliest, &origin), (&fresh_earliest, &fresh_origin));
        let origin = RateOrigin::decode(&origin[..]).unwrap();
        assert_eq!(
            (origin.source_ip.as_str(), origin.region.as_str()),
            ("e1", "")
        );
        let mut origin = origin.encode_to_vec();
        r.describe(RateKind::ApiCalls, 600_000, &mut Vec::new(), &mut origin);
        assert!(origin.is_empty(), "no bucket: no origin");
    }

    #[test]
    fn the_normal_is_the_median_daily_peak_of_earlier_active_days() {
        let mut r = Rates::default();
        for (d, n) in [(0, 3), (1, 5), (2, 4), (3, 40)] {
            for i in 0..n {
                calls(&mut r, d * DAY_MS + i, &format!("{d}-{i}"));
            }
        }
        let normal = r.normal(RateKind::ApiCalls, 4, W);
        assert_eq!((normal.days, normal.median), (4, 4.5));
        assert_eq!(
            r.normal(RateKind::ApiCalls, 2, W).days,
            2,
            "only earlier days"
        );
        let errors = r.normal(RateKind::ErrorMessages, 4, W);
        assert_eq!(
            (errors.days, errors.median),
            (4, 0.0),
            "no errors: 0 on active days"
        );
    }

    #[test]
    fn distinct_values_and_old_buckets_are_dropped() {
        let mut r = Rates::default();
        for (i, service) in ["ec2", "s3", "ec2", "iam"].iter().enumerate() {
            let s = r.record(
                &Sample {
                    kind: RateKind::Services,
                    bucket_ms: 3_600_000,
                    t: i as i64,
                    event_id: &format!("e{i}").into(),
                    distinct: Some(service),
                    origin: &Arc::default,
                },
                900_000,
                W,
            );
            assert_eq!(s.unwrap().value, [1, 2, 2, 3][i]);
        }
        calls(&mut r, 2 * DAY_MS, "later");
        assert_eq!(
            r.buckets.len(),
            1,
            "buckets past their width and the reorder window go"
        );
    }
}
