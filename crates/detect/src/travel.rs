//! Where a principal called from recently, for impossible travel (TH-016).
//! Located calls of the last day are kept as runs: of consecutive calls
//! (in event time) from one place only the first and last are kept, since
//! only a change of place can be a journey — except within the reorder
//! window of the latest call, where a late call from elsewhere may still
//! split a run. An event is compared with the calls just before and after
//! it in event time, so a late event is judged against what surrounds it.

use serde::{Deserialize, Serialize};
use trailhound_proto::Place;

use crate::DAY_MS;

/// Sightings kept per principal; past it the oldest goes.
const MAX_PLACES: usize = 256;

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Places {
    /// Sorted by event time.
    sightings: Vec<Sighting>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Sighting {
    t: i64,
    event_id: String,
    ip: String,
    country: String,
    city: String,
    lat: f64,
    lon: f64,
    radius_km: u32,
    asn: u32,
    as_org: String,
    hosting: bool,
}

impl Sighting {
    fn from_place(p: Place) -> Self {
        Self {
            t: p.event_time_ms,
            event_id: p.event_id,
            ip: p.ip,
            country: p.country,
            city: p.city,
            lat: p.latitude,
            lon: p.longitude,
            radius_km: p.accuracy_radius_km,
            asn: p.asn,
            as_org: p.as_org,
            hosting: p.hosting,
        }
    }

    fn to_place(&self) -> Place {
        Place {
            event_time_ms: self.t,
            event_id: self.event_id.clone(),
            ip: self.ip.clone(),
            country: self.country.clone(),
            city: self.city.clone(),
            latitude: self.lat,
            longitude: self.lon,
            accuracy_radius_km: self.radius_km,
            asn: self.asn,
            as_org: self.as_org.clone(),
            hosting: self.hosting,
        }
    }

    fn same_place(&self, p: &Place) -> bool {
        (self.lat, self.lon) == (p.latitude, p.longitude)
    }

    fn same_place_as(&self, other: &Sighting) -> bool {
        (self.lat, self.lon) == (other.lat, other.lon)
    }

    fn key(&self) -> (i64, &str) {
        (self.t, self.event_id.as_str())
    }
}

impl Places {
    /// The calls just before and after `place` in event time when they were
    /// made from another place, then remember `place`.
    pub fn record(&mut self, place: Place, reorder_ms: i64) -> Vec<Place> {
        let key = (place.event_time_ms, place.event_id.as_str());
        let at = self.sightings.partition_point(|s| s.key() < key);
        let repeated = self.sightings.get(at).is_some_and(|s| s.key() == key);
        if repeated {
            // A repeated event: judge it as before, store nothing.
            let before = at.checked_sub(1).and_then(|i| self.sightings.get(i));
            let after = self.sightings.get(at + 1);
            return neighbours(&place, before, after);
        }
        let before = at.checked_sub(1).and_then(|i| self.sightings.get(i));
        let found = neighbours(&place, before, self.sightings.get(at));
        let t = place.event_time_ms;
        self.sightings.insert(at, Sighting::from_place(place));
        let latest = self.sightings.last().map_or(t, |s| s.t);
        self.sightings.retain(|s| latest - s.t <= DAY_MS);
        // Settled runs (older than the reorder window) keep only their ends.
        let mut i = 1;
        while i + 1 < self.sightings.len() && latest - self.sightings[i].t > reorder_ms {
            if self.interior(i) {
                self.sightings.remove(i);
            } else {
                i += 1;
            }
        }
        if self.sightings.len() > MAX_PLACES {
            self.sightings.remove(0);
        }
        found
    }

    /// Whether the sighting at `i` has the same place on both sides.
    fn interior(&self, i: usize) -> bool {
        let (Some(prev), Some(this), Some(next)) = (
            i.checked_sub(1).and_then(|p| self.sightings.get(p)),
            self.sightings.get(i),
            self.sightings.get(i + 1),
        ) else {
            return false;
        };
        prev.same_place_as(this) && next.same_place_as(this)
    }
}

fn neighbours(place: &Place, before: Option<&Sighting>, after: Option<&Sighting>) -> Vec<Place> {
    [before, after]
        .into_iter()
        .flatten()
        .filter(|s| !s.same_place(place))
        .map(Sighting::to_place)
        .collect()
}

/// Great-circle distance in km.
pub fn distance_km(a: &Place, b: &Place) -> f64 {
    const EARTH_RADIUS_KM: f64 = 6371.0;
    let (la1, la2) = (a.latitude.to_radians(), b.latitude.to_radians());
    let dla = la2 - la1;
    let dlo = (b.longitude - a.longitude).to_radians();
    let h = (dla / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlo / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * h.sqrt().asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Places {
        /// Record with no reorder window: runs settle at once.
        fn record_now(&mut self, place: Place) -> Vec<Place> {
            self.record(place, 0)
        }
    }

    fn place(t: i64, city: &str, lat: f64, lon: f64) -> Place {
        Place {
            event_time_ms: t,
            event_id: format!("{city}-{t}"),
            city: city.into(),
            latitude: lat,
            longitude: lon,
            ..Default::default()
        }
    }

    #[test]
    fn neighbours_are_the_adjacent_calls_from_another_place() {
        let berlin = |t| place(t, "Berlin", 52.52, 13.40);
        let moscow = |t| place(t, "Moscow", 55.75, 37.62);
        let mut p = Places::default();
        assert!(p.record_now(berlin(0)).is_empty());
        assert!(p.record_now(berlin(60_000)).is_empty());
        let n = p.record_now(moscow(3_600_000));
        assert_eq!(
            (n.len(), n[0].event_time_ms),
            (1, 60_000),
            "the last Berlin call"
        );
        assert!(
            p.record_now(moscow(3_700_000)).is_empty(),
            "same place as before"
        );
        let back = p.record_now(berlin(7_200_000));
        assert_eq!(back[0].event_time_ms, 3_700_000);
        // A late Berlin call between the Moscow ones sees Moscow on both sides.
        assert_eq!(p.record_now(berlin(3_650_000)).len(), 2);
    }

    #[test]
    fn runs_keep_their_ends_whatever_the_arrival_order() {
        let berlin = |t| place(t, "Berlin", 52.52, 13.40);
        let times = [0, 10_000, 20_000, 30_000, 40_000];
        let mut forward = Places::default();
        let mut backward = Places::default();
        for t in times {
            forward.record_now(berlin(t));
        }
        for t in times.iter().rev() {
            backward.record_now(berlin(*t));
        }
        let ends = |p: &Places| p.sightings.iter().map(|s| s.t).collect::<Vec<_>>();
        assert_eq!(ends(&forward), [0, 40_000]);
        assert_eq!(ends(&forward), ends(&backward));
        let mut recent = Places::default();
        for t in times {
            recent.record(berlin(t), 60_000);
        }
        assert_eq!(
            ends(&recent).len(),
            5,
            "inside the reorder window every call stays"
        );
    }

    #[test]
    fn distances() {
        let berlin = place(0, "Berlin", 52.52, 13.40);
        let moscow = place(0, "Moscow", 55.75, 37.62);
        let d = distance_km(&berlin, &moscow);
        assert!((1600.0..1620.0).contains(&d), "{d}");
        assert_eq!(distance_km(&berlin, &berlin), 0.0);
    }
}
