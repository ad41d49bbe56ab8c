//! When a value was seen: the building block of every profile.
//!
//! [`Seen`] keeps the earliest and latest event time of a value and a bitmap
//! of the days it was seen, relative to its latest day. "New" is decided by
//! event time, not arrival: an event is new when no occurrence precedes it
//! in the window, so a late, earlier event takes the novelty over and the
//! merged finding is the same whatever the arrival order.

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use trailhound_proto::{Novelty, NoveltyKind};

use crate::DAY_MS;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub first_ms: i64,
    pub last_ms: i64,
    /// Bit i: seen on day `day(last_ms) - i`.
    days: u64,
}

/// What one occurrence means for a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sighting {
    /// No occurrence precedes this one in the window.
    pub is_new: bool,
    /// Earliest occurrence after recording this one.
    pub first_ms: i64,
    /// Days in the window, before this event's day, with the value.
    pub days_seen: u32,
}

impl Sighting {
    /// What an observation says about the event's value of this kind.
    pub fn novelty(self, kind: NoveltyKind) -> Novelty {
        Novelty {
            kind: kind as i32,
            is_new: self.is_new,
            first_seen_ms: self.first_ms,
            days_seen: self.days_seen,
        }
    }
}

/// The values of one kind a profile has seen. Keys of up to 24 bytes
/// (regions, countries, most user agents and AS names) are stored inline,
/// so a lookup compares them without following a pointer.
pub type SeenMap = foldhash::HashMap<CompactString, Seen>;

pub fn day(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

impl Seen {
    pub fn new(t: i64) -> Self {
        Self {
            first_ms: t,
            last_ms: t,
            days: 1,
        }
    }

    /// Days in the window before day `d` on which the value was seen.
    fn days_before(&self, d: i64, window_days: u32) -> u32 {
        // Bit i is day `last - i`: before `d` when i > last - d, in the
        // window when i <= last - d + window_days.
        let offset = day(self.last_ms) - d;
        let low = (offset + 1).max(0);
        let high = (offset + i64::from(window_days)).min(63);
        if low > high {
            return 0;
        }
        let width = high - low + 1;
        let mask = if width == 64 {
            u64::MAX
        } else {
            ((1u64 << width) - 1) << low
        };
        (self.days & mask).count_ones()
    }

    /// Days in the window up to and including day `d` with the value.
    pub fn days_through(&self, d: i64, window_days: u32) -> u32 {
        self.days_before(d + 1, window_days)
    }

    /// Record an occurrence at `t` and say what it means.
    pub fn record(&mut self, t: i64, window_ms: i64, window_days: u32) -> Sighting {
        let days_seen = self.days_before(day(t), window_days);
        Sighting {
            is_new: self.add(t, window_ms),
            first_ms: self.first_ms,
            days_seen,
        }
    }

    /// [`Seen::record`], also giving the entry before and after.
    fn record_change(
        &mut self,
        t: i64,
        window_ms: i64,
        window_days: u32,
    ) -> (Sighting, Option<Seen>, Seen) {
        let before = *self;
        (self.record(t, window_ms, window_days), Some(before), *self)
    }

    /// Add an occurrence at `t`; whether none precedes it in the window.
    fn add(&mut self, t: i64, window_ms: i64) -> bool {
        let gap = t - self.last_ms > window_ms;
        let is_new = t <= self.first_ms || gap;
        if gap {
            // Everything before is outside the window: a new episode.
            *self = Seen::new(t);
        } else {
            self.first_ms = self.first_ms.min(t);
            self.mark_day(day(t));
            self.last_ms = self.last_ms.max(t);
        }
        is_new
    }

    fn mark_day(&mut self, d: i64) {
        let last = day(self.last_ms);
        if d > last {
            let shift = d - last;
            self.days = if shift >= 64 { 0 } else { self.days << shift };
            self.days |= 1;
        } else if last - d < 64 {
            self.days |= 1 << (last - d);
        }
    }

    /// Still inside the window at time `now`.
    pub fn live(&self, now: i64, window_ms: i64) -> bool {
        now - self.last_ms <= window_ms
    }
}

/// A principal's values of one kind, an occurrence recorded at a time.
pub trait Values {
    /// Record `t` for `key`, creating the entry when new; what it means,
    /// with the value's entry before (`None` when new) and after.
    fn record_change(
        &mut self,
        key: &str,
        t: i64,
        window_ms: i64,
        window_days: u32,
    ) -> (Sighting, Option<Seen>, Seen);
}

impl Values for SeenMap {
    fn record_change(
        &mut self,
        key: &str,
        t: i64,
        window_ms: i64,
        window_days: u32,
    ) -> (Sighting, Option<Seen>, Seen) {
        match self.get_mut(key) {
            Some(seen) => seen.record_change(t, window_ms, window_days),
            None => {
                self.insert(key.into(), Seen::new(t));
                let sighting = Sighting {
                    is_new: true,
                    first_ms: t,
                    days_seen: 0,
                };
                (sighting, None, Seen::new(t))
            }
        }
    }
}

/// The values of a kind that mostly repeats from one call of a principal
/// to the next (its country, city, network and client): the entry of the
/// value recorded last is kept beside the map, ahead of the map's copy, so
/// a repeat is recorded without a lookup in a map gone cold since the
/// principal's last call. A change writes that entry back (a second
/// lookup), so kinds that change often (commands) stay plain maps.
/// Serialised as the map it stands for.
#[derive(Debug, Default)]
pub struct RepeatingValues {
    map: SeenMap,
    /// The value recorded last and its entry, newer than the map's.
    latest: Option<(CompactString, Seen)>,
}

impl RepeatingValues {
    /// Every value and its entry.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Seen)> {
        self.map.iter().map(|(value, seen)| match &self.latest {
            Some((latest, newer)) if latest == value => (value.as_str(), newer),
            _ => (value.as_str(), seen),
        })
    }

    /// Drop the values no longer live at `now`.
    pub fn retain_live(&mut self, now: i64, window_ms: i64) {
        self.write_back();
        self.map.retain(|_, seen| seen.live(now, window_ms));
    }

    fn write_back(&mut self) {
        if let Some((value, newer)) = self.latest.take()
            && let Some(seen) = self.map.get_mut(&value)
        {
            *seen = newer;
        }
    }
}

impl Values for RepeatingValues {
    fn record_change(
        &mut self,
        key: &str,
        t: i64,
        window_ms: i64,
        window_days: u32,
    ) -> (Sighting, Option<Seen>, Seen) {
        if let Some((latest, seen)) = &mut self.latest
            && latest == key
        {
            return seen.record_change(t, window_ms, window_days);
        }
        self.write_back();
        let change = self.map.record_change(key, t, window_ms, window_days);
        self.latest = Some((key.into(), change.2));
        change
    }
}

impl Serialize for RepeatingValues {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for RepeatingValues {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Self {
            map: SeenMap::deserialize(deserializer)?,
            latest: None,
        })
    }
}

/// Record `t` for `key`, a value many principals share (a command's
/// country, an account's region or error code). Each principal's finding
/// is its own, so "new" cannot be left to the earliest event taking the
/// novelty over, as for a principal's values: it is judged from sightings
/// settled before the reorder window, which have all arrived whatever the
/// delivery order. Every event inside the window of a value's first
/// sighting is new; days seen count only days settled before the event.
pub fn record_shared_in(
    map: &mut SeenMap,
    key: &str,
    t: i64,
    reorder_ms: i64,
    (window_ms, window_days): (i64, u32),
) -> Sighting {
    let Some(seen) = map.get_mut(key) else {
        return map.record_change(key, t, window_ms, window_days).0;
    };
    let settled = t - reorder_ms;
    let (known, days_seen) = if seen.live(t, window_ms) {
        (
            seen.first_ms < settled,
            seen.days_before(day(settled), window_days),
        )
    } else {
        (false, 0)
    };
    seen.add(t, window_ms);
    Sighting {
        is_new: !known,
        first_ms: seen.first_ms,
        days_seen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: i64 = 45 * DAY_MS;

    #[test]
    fn repeating_values_record_and_store_what_a_plain_map_does() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_pcg::Pcg64::seed_from_u64(7);
        let (mut plain, mut repeating) = (SeenMap::default(), RepeatingValues::default());
        let mut t = 0;
        for call in 0..5_000 {
            // Mostly the value before, sometimes late, sometimes after a long gap.
            t += match rng.random_range(0..100) {
                0 => W + DAY_MS,
                1..=10 => -rng.random_range(0..DAY_MS),
                _ => rng.random_range(0..DAY_MS / 4),
            };
            let value = if rng.random_range(0..4) == 0 {
                format!(
                    "a value of more than 24 bytes, number {}",
                    rng.random_range(0..6)
                )
            } else {
                "US".to_string()
            };
            assert_eq!(
                repeating.record_change(&value, t, W, 45),
                plain.record_change(&value, t, W, 45),
                "call {call}"
            );
            if call % 500 == 0 {
                repeating.retain_live(t, W);
                plain.retain(|_, seen| seen.live(t, W));
            }
            let stored: SeenMap =
                postcard::from_bytes(&postcard::to_stdvec(&repeating).unwrap()).unwrap();
            assert_eq!(stored, plain, "call {call}");
        }
    }

    #[test]
    fn seen_maps_read_state_written_with_string_keys() {
        let mut before: foldhash::HashMap<String, Seen> = Default::default();
        before.insert("ec2|eu-west-1 and more than 24 bytes".into(), Seen::new(5));
        before.insert("US".into(), Seen::new(7));
        let bytes = postcard::to_stdvec(&before).unwrap();
        let after: SeenMap = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(after.len(), 2);
        assert_eq!(after["US"], Seen::new(7));
        assert_eq!(after["ec2|eu-west-1 and more than 24 bytes"], Seen::new(5));
        assert_eq!(postcard::to_stdvec(&after).unwrap().len(), bytes.len());
    }

    #[test]
    fn days_before_counts_the_window_s_days_before_the_given_one() {
        // Day by day, as the bitmap reads: bit i is day `last - i`.
        let naive = |seen: &Seen, d: i64, window_days: u32| {
            let last = day(seen.last_ms);
            (0..64i64)
                .filter(|i| seen.days & (1 << i) != 0)
                .map(|i| last - i)
                .filter(|&seen_day| seen_day < d && d - seen_day <= i64::from(window_days))
                .count() as u32
        };
        let mut bits = 0x9E37_79B9_7F4A_7C15u64;
        for round in 0..200 {
            bits ^= bits << 13;
            bits ^= bits >> 7;
            bits ^= bits << 17;
            let seen = Seen {
                first_ms: 0,
                last_ms: (100 + round) * DAY_MS,
                days: bits | 1,
            };
            let last = day(seen.last_ms);
            for d in last - 70..last + 70 {
                for window_days in [0, 1, 7, 45, 63, 64, 90] {
                    assert_eq!(
                        seen.days_before(d, window_days),
                        naive(&seen, d, window_days),
                        "days {bits:#x}, day {d}, window {window_days}"
                    );
                }
            }
        }
    }

    #[test]
    fn new_is_decided_by_event_time_not_arrival() {
        let (a, b) = (10 * DAY_MS, 10 * DAY_MS + 600_000);
        let mut in_order = Seen::new(a);
        assert!(!in_order.record(b, W, 45).is_new);
        let mut reversed = Seen::new(b);
        assert!(
            reversed.record(a, W, 45).is_new,
            "the earlier event takes the novelty"
        );
        assert_eq!(in_order, reversed);
        assert!(
            in_order.record(a, W, 45).is_new,
            "replaying the first event is idempotent"
        );
    }

    #[test]
    fn shared_values_are_new_for_every_event_inside_the_reorder_window() {
        const R: i64 = 15 * 60_000;
        let (a, b, c) = (10 * DAY_MS, 10 * DAY_MS + 120_000, 10 * DAY_MS + R + 1);
        // Every order CloudTrail may deliver them in: c is more than the
        // reorder window after a.
        for order in [[a, b, c], [b, a, c], [a, c, b]] {
            let mut map = foldhash::HashMap::default();
            let verdicts: Vec<(i64, bool)> = order
                .iter()
                .map(|&t| (t, record_shared_in(&mut map, "k", t, R, (W, 45)).is_new))
                .collect();
            for (t, is_new) in verdicts {
                assert_eq!(is_new, t != c, "{t} in order {order:?}");
            }
        }
        let mut map = foldhash::HashMap::default();
        record_shared_in(&mut map, "k", 9 * DAY_MS - 60_000, R, (W, 45));
        let just_after_midnight = record_shared_in(&mut map, "k", 9 * DAY_MS + 60_000, R, (W, 45));
        assert_eq!(
            just_after_midnight.days_seen, 0,
            "yesterday's last minutes are not settled yet"
        );
        assert_eq!(
            record_shared_in(&mut map, "k", 9 * DAY_MS + R + 1, R, (W, 45)).days_seen,
            1
        );
    }

    #[test]
    fn a_gap_longer_than_the_window_starts_a_new_episode() {
        let mut s = Seen::new(0);
        assert!(!s.record(44 * DAY_MS, W, 45).is_new);
        let later = s.record(44 * DAY_MS + W + 1, W, 45);
        assert!(later.is_new);
        assert_eq!(later.first_ms, 44 * DAY_MS + W + 1);
    }

    #[test]
    fn counts_distinct_days_before_the_event_day() {
        let mut s = Seen::new(0);
        s.record(DAY_MS + 5, W, 45);
        s.record(DAY_MS + 9, W, 45);
        s.record(3 * DAY_MS, W, 45);
        assert_eq!(s.record(5 * DAY_MS, W, 45).days_seen, 3);
        assert_eq!(
            s.record(5 * DAY_MS + 1, W, 45).days_seen,
            3,
            "same day does not count itself"
        );
        assert_eq!(
            s.record(2 * DAY_MS, W, 45).days_seen,
            2,
            "late event counts only earlier days"
        );
        assert_eq!(
            s.record(49 * DAY_MS, W, 45).days_seen,
            1,
            "only day 5 is within 45 days of day 49"
        );
    }
}
