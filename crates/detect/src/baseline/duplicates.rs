//! Events delivered twice. CloudTrail writes an event into every trail that
//! records it: an organisation trail and an account's own trail, or several
//! single-region trails that all log global services (IAM, STS). Fed both,
//! Trailhound would count each such call twice, doubling the call counts
//! that TH-008 and TH-013 judge and every finding's count. The copies
//! carry the same event id and time and are delivered minutes apart, so a
//! principal's profile remembers the events of its last reorder window and
//! drops the duplicates.

use foldhash::HashMap;
use serde::{Deserialize, Serialize};

/// A principal's recent events: a hash of each one's id and time, kept
/// while its time is within the window of the latest event's.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RecentEvents {
    latest_ms: i64,
    /// When events older than the window were last dropped.
    pruned_ms: i64,
    /// Hash of (event id, event time) → event time.
    events: HashMap<u64, i64>,
}

/// How an event stands among its principal's recent events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Not among them, and within the window of the latest.
    New,
    /// Remembered: delivered again.
    Repeat,
    /// Older than the latest by more than the window (by `behind_ms`):
    /// taken as new (its first delivery may have been forgotten), but later
    /// than the reorder window allows (a backfill, or logs read out of
    /// time order).
    Late { behind_ms: i64 },
}

impl RecentEvents {
    /// Remember the event, and say how it stands.
    pub fn remember(&mut self, event_id: &str, t: i64, window_ms: i64) -> Arrival {
        if t < self.latest_ms - window_ms {
            let behind_ms = self.latest_ms - t;
            return Arrival::Late { behind_ms };
        }
        let hash = xxhash_rust::xxh3::xxh3_64_with_seed(event_id.as_bytes(), t as u64);
        if self.events.insert(hash, t).is_some() {
            return Arrival::Repeat;
        }
        self.latest_ms = self.latest_ms.max(t);
        // At most once per window of event time: a principal keeps at most
        // two windows of events.
        if self.latest_ms - self.pruned_ms > window_ms {
            let oldest = self.latest_ms - window_ms;
            self.events.retain(|_, &mut at| at >= oldest);
            self.pruned_ms = self.latest_ms;
        }
        Arrival::New
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: i64 = 15 * 60_000;
    const T0: i64 = 1_700_000_000_000;

    #[test]
    fn a_duplicate_within_the_window_is_not_new() {
        let mut recent = RecentEvents::default();
        assert_eq!(recent.remember("a", T0, WINDOW), Arrival::New);
        assert_eq!(recent.remember("b", T0 + 60_000, WINDOW), Arrival::New);
        // Delivered again by a second trail, after later calls.
        assert_eq!(recent.remember("a", T0, WINDOW), Arrival::Repeat);
        assert_eq!(recent.remember("b", T0 + 60_000, WINDOW), Arrival::Repeat);
        // The same id at another time is another event.
        assert_eq!(recent.remember("a", T0 + 1, WINDOW), Arrival::New);
    }

    #[test]
    fn events_older_than_the_window_are_late_and_forgotten() {
        let mut recent = RecentEvents::default();
        assert_eq!(recent.remember("early", T0, WINDOW), Arrival::New);
        for minute in 1..=40 {
            assert_eq!(
                recent.remember(&format!("m{minute}"), T0 + minute * 60_000, WINDOW),
                Arrival::New
            );
        }
        // Beyond the window of the latest: late, whether remembered or not.
        let behind_ms = 40 * 60_000;
        assert_eq!(
            recent.remember("early", T0, WINDOW),
            Arrival::Late { behind_ms }
        );
        assert!(recent.events.len() <= 31, "{} kept", recent.events.len());
        // Within it: still a duplicate.
        assert_eq!(
            recent.remember("m30", T0 + 30 * 60_000, WINDOW),
            Arrival::Repeat
        );
    }
}
