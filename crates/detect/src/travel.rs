//! Where a principal called from recently, for impossible travel (TH-016).
//! Located calls of the last day are kept as runs: of consecutive calls
//! (in event time) from one place only the first and last are kept, since
//! only a change of place can be a journey — except within the reorder
//! window of the latest call, where a late call from elsewhere may still
//! split a run. An event is compared with the calls just before and after
//! it in event time, so a late event is judged against what surrounds it.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use trailhound_proto::{Geo, Network, Place};

use crate::DAY_MS;

/// Sightings kept per principal; past it the oldest goes.
const MAX_PLACES: usize = 256;

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Places {
    /// Sorted by event time. A deque: the oldest leave from the front, and
    /// settled calls removed near the front move only those before them,
    /// not the calls of the reorder window after them (hundreds for a busy
    /// principal). Serialised as a sequence, like the `Vec` it was.
    sightings: VecDeque<Sighting>,
}

/// A located call: when, which event, and where from.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    pub t: i64,
    pub event_id: &'a str,
    pub geo: &'a Geo,
    pub network: &'a Network,
}

impl Call<'_> {
    pub fn to_place(&self) -> Place {
        Spot::of(self).into_place(self.t, self.event_id)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Sighting {
    t: i64,
    /// Shared with the event's activity buckets.
    event_id: Arc<str>,
    /// Shared with the sightings around it from the same spot: most calls
    /// come from where the call before came from.
    spot: Arc<Spot>,
}

/// Where a call came from. (Stored inline after `Sighting`'s first fields,
/// as the flat layout of earlier versions was.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Spot {
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

impl Spot {
    fn of(call: &Call<'_>) -> Self {
        let (geo, network) = (call.geo, call.network);
        Self {
            ip: network.ip.clone(),
            country: geo.country.clone(),
            city: geo.city.clone(),
            lat: geo.latitude,
            lon: geo.longitude,
            radius_km: geo.accuracy_radius_km,
            asn: network.asn,
            as_org: network.as_org.clone(),
            hosting: network.hosting,
        }
    }

    fn matches(&self, call: &Call<'_>) -> bool {
        let (geo, network) = (call.geo, call.network);
        self.ip == network.ip
            && self.country == geo.country
            && self.city == geo.city
            && (self.lat, self.lon, self.radius_km)
                == (geo.latitude, geo.longitude, geo.accuracy_radius_km)
            && (self.asn, self.hosting) == (network.asn, network.hosting)
            && self.as_org == network.as_org
    }

    fn into_place(self, t: i64, event_id: &str) -> Place {
        Place {
            event_time_ms: t,
            event_id: event_id.to_string(),
            ip: self.ip,
            country: self.country,
            city: self.city,
            latitude: self.lat,
            longitude: self.lon,
            accuracy_radius_km: self.radius_km,
            asn: self.asn,
            as_org: self.as_org,
            hosting: self.hosting,
        }
    }
}

impl Sighting {
    fn to_place(&self) -> Place {
        Spot::clone(&self.spot).into_place(self.t, &self.event_id)
    }

    fn same_place(&self, call: &Call<'_>) -> bool {
        (self.spot.lat, self.spot.lon) == (call.geo.latitude, call.geo.longitude)
    }

    fn same_place_as(&self, other: &Sighting) -> bool {
        (self.spot.lat, self.spot.lon) == (other.spot.lat, other.spot.lon)
    }

    fn key(&self) -> (i64, &str) {
        (self.t, &self.event_id)
    }
}

impl Places {
    /// The calls just before and after `call` in event time when they were
    /// made from another place, then remember `call` (`event_id` is its id,
    /// shared).
    pub fn record(&mut self, call: Call<'_>, event_id: &Arc<str>, reorder_ms: i64) -> Vec<Place> {
        let key = (call.t, call.event_id);
        // Most calls arrive in order: after the last sighting.
        let at = match self.sightings.back() {
            Some(last) if last.key() < key => self.sightings.len(),
            _ => self.sightings.partition_point(|s| s.key() < key),
        };
        let before = at.checked_sub(1).and_then(|i| self.sightings.get(i));
        let repeated = self.sightings.get(at).is_some_and(|s| s.key() == key);
        if repeated {
            // A repeated event: judge it as before, store nothing.
            return neighbours(&call, before, self.sightings.get(at + 1));
        }
        let after = self.sightings.get(at);
        let found = neighbours(&call, before, after);
        let spot = [before, after]
            .into_iter()
            .flatten()
            .find(|s| s.spot.matches(&call))
            .map_or_else(|| Arc::new(Spot::of(&call)), |s| s.spot.clone());
        let sighting = Sighting {
            t: call.t,
            event_id: event_id.clone(),
            spot,
        };
        let previous_latest = self.sightings.back().map(|s| s.t);
        self.sightings.insert(at, sighting);
        let latest = self.sightings.back().map_or(call.t, |s| s.t);
        let expired = self.sightings.partition_point(|s| latest - s.t > DAY_MS);
        self.sightings.drain(..expired);
        // Settled runs (older than the reorder window) keep only their ends.
        // A call is dropped only once the call after it is settled too: a
        // late call may still land after it, and must find it there, as it
        // would have in time order. Those settled before this call kept only
        // their ends already: look again from the last of them, or from the
        // call before this one, whichever comes first.
        let settled_before = previous_latest.map_or(0, |previous| {
            self.sightings
                .partition_point(|s| previous - s.t > reorder_ms)
        });
        let before_this = at.saturating_sub(expired).saturating_sub(1);
        let mut i = settled_before.saturating_sub(1).min(before_this).max(1);
        while i + 1 < self.sightings.len() && latest - self.sightings[i + 1].t > reorder_ms {
            if self.interior(i) {
                self.sightings.remove(i);
            } else {
                i += 1;
            }
        }
        if self.sightings.len() > MAX_PLACES {
            self.sightings.pop_front();
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

fn neighbours(call: &Call<'_>, before: Option<&Sighting>, after: Option<&Sighting>) -> Vec<Place> {
    [before, after]
        .into_iter()
        .flatten()
        .filter(|s| !s.same_place(call))
        .map(Sighting::to_place)
        .collect()
}

/// A journey between two located calls too fast to be made in person.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trip {
    /// Apart after subtracting both places' accuracy radii.
    pub km: f64,
    pub hours: f64,
}

impl Trip {
    /// The journey from `a` to `b` if it is impossible: over `min_km`
    /// apart after both accuracy radii, and faster than `kmh`.
    pub fn between(a: &Place, b: &Place, kmh: f64, min_km: f64) -> Option<Self> {
        let radii = f64::from(a.accuracy_radius_km + b.accuracy_radius_km);
        let km = distance_km(a, b) - radii;
        let hours = (a.event_time_ms - b.event_time_ms).abs() as f64 / 3_600_000.0;
        let too_fast = hours == 0.0 || km / hours > kmh;
        (km >= min_km && too_fast).then_some(Self { km, hours })
    }

    /// "1234 km/h", or "at the same moment".
    pub fn speed(&self) -> String {
        if self.hours == 0.0 {
            "at the same moment".to_string()
        } else {
            format!("{:.0} km/h", self.km / self.hours)
        }
    }
}

/// "City, CC", or the country alone.
pub fn label(p: &Place) -> String {
    if p.city.is_empty() {
        p.country.clone()
    } else {
        format!("{}, {}", p.city, p.country)
    }
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

    /// A located call for the tests, owning what a `Call` borrows.
    struct At {
        t: i64,
        event_id: String,
        geo: Geo,
        network: Network,
    }

    impl At {
        fn call(&self) -> Call<'_> {
            Call {
                t: self.t,
                event_id: &self.event_id,
                geo: &self.geo,
                network: &self.network,
            }
        }
    }

    impl Places {
        fn record_at(&mut self, at: &At, reorder_ms: i64) -> Vec<Place> {
            self.record(at.call(), &at.event_id.as_str().into(), reorder_ms)
        }

        /// Record with no reorder window: runs settle at once.
        fn record_now(&mut self, at: At) -> Vec<Place> {
            self.record_at(&at, 0)
        }
    }

    fn at(t: i64, city: &str, lat: f64, lon: f64) -> At {
        At {
            t,
            event_id: format!("{city}-{t}"),
            geo: Geo {
                city: city.into(),
                latitude: lat,
                longitude: lon,
                ..Default::default()
            },
            network: Network::default(),
        }
    }

    #[test]
    fn neighbours_are_the_adjacent_calls_from_another_place() {
        let berlin = |t| at(t, "Berlin", 52.52, 13.40);
        let moscow = |t| at(t, "Moscow", 55.75, 37.62);
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
        let berlin = |t| at(t, "Berlin", 52.52, 13.40);
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
        // The run's ends, and the last settled call: the latest is not
        // settled, and a late call may still land just before it.
        assert_eq!(ends(&forward), [0, 30_000, 40_000]);
        assert_eq!(ends(&forward), ends(&backward));
        let mut recent = Places::default();
        for t in times {
            recent.record_at(&berlin(t), 60_000);
        }
        assert_eq!(
            ends(&recent).len(),
            5,
            "inside the reorder window every call stays"
        );
    }

    #[test]
    fn settled_runs_keep_only_their_ends_after_every_call_in_any_order() {
        // Calls from three places, up to five minutes late, against a
        // one-minute reorder window: after each, no settled sighting
        // followed by a settled one may have its own place on both sides.
        let places = [
            ("Berlin", 52.52, 13.40),
            ("Paris", 48.86, 2.35),
            ("Rome", 41.9, 12.5),
        ];
        let mut p = Places::default();
        let mut seed = 7u64;
        for i in 0..2_000i64 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let late = (seed >> 33) as i64 % 300_000;
            let (city, lat, lon) = places[(seed >> 20) as usize % if i % 50 < 40 { 1 } else { 3 }];
            p.record_at(&at(i * 10_000 - late, city, lat, lon), 60_000);
            let latest = p.sightings.back().unwrap().t;
            for i in 1..p.sightings.len().saturating_sub(1) {
                if latest - p.sightings[i + 1].t > 60_000 {
                    assert!(!p.interior(i), "settled sighting {i} is inside a run");
                }
            }
        }
    }

    #[test]
    fn distances() {
        let berlin = at(0, "Berlin", 52.52, 13.40).call().to_place();
        let moscow = at(0, "Moscow", 55.75, 37.62).call().to_place();
        let d = distance_km(&berlin, &moscow);
        assert!((1600.0..1620.0).contains(&d), "{d}");
        assert_eq!(distance_km(&berlin, &berlin), 0.0);
    }

    #[test]
    fn calls_from_the_spot_of_the_call_before_share_its_record() {
        let mut p = Places::default();
        for t in [0, 10_000, 20_000] {
            p.record_at(&at(t, "Berlin", 52.52, 13.40), 60_000);
        }
        p.record_at(&at(30_000, "Moscow", 55.75, 37.62), 60_000);
        let spots: Vec<_> = p.sightings.iter().map(|s| &s.spot).collect();
        assert!(Arc::ptr_eq(spots[0], spots[1]) && Arc::ptr_eq(spots[1], spots[2]));
        assert!(!Arc::ptr_eq(spots[2], spots[3]));
        assert_eq!(spots[3].city, "Moscow");
        let neighbours = p.record_at(&at(40_000, "Berlin", 52.52, 13.40), 60_000);
        assert_eq!(
            (neighbours[0].city.as_str(), neighbours[0].event_time_ms),
            ("Moscow", 30_000)
        );
    }

    #[test]
    fn places_read_state_written_with_the_flat_layout_of_earlier_versions() {
        // `Sighting` before its spot was shared, field for field.
        #[derive(Serialize)]
        struct FlatSighting {
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
        let flat = vec![FlatSighting {
            t: 7,
            event_id: "e".into(),
            ip: "81.2.69.142".into(),
            country: "GB".into(),
            city: "London".into(),
            lat: 51.5,
            lon: -0.1,
            radius_km: 10,
            asn: 123,
            as_org: "Example".into(),
            hosting: true,
        }];
        let bytes = postcard::to_stdvec(&(flat,)).unwrap();
        let places: Places = postcard::from_bytes(&bytes).unwrap();
        let place = places.sightings[0].to_place();
        assert_eq!(
            (
                place.event_time_ms,
                place.city.as_str(),
                place.as_org.as_str()
            ),
            (7, "London", "Example")
        );
        assert!(place.hosting && place.asn == 123 && place.accuracy_radius_km == 10);
        assert_eq!(postcard::to_stdvec(&places).unwrap(), bytes);
    }
}
