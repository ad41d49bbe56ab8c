//! TH-016 Impossible travel (seed 004, Amazon Detective): two calls of one
//! principal from places so far apart for the time between them that the
//! journey needs more than `impossible_travel_kmh` — after subtracting both
//! places' accuracy radii, and only beyond `impossible_travel_min_km`.
//! When either end is a hosting, cloud or VPN network the finding is only
//! informational, and says so: such addresses place a server, not a person.

use trailhound_proto::{EvidenceEvent, Finding, Observation, Place, Severity};

use super::{Context, Detector};
use crate::baseline::place;
use crate::finding::{
    GuidanceText, ObservationExt, ROTATE_CREDENTIALS, attack, candidate, context_facts, time,
};
use crate::travel::{Trip, label};

pub struct ImpossibleTravel;

const ID: &str = "TH-016";

const GUIDANCE: GuidanceText = GuidanceText {
    why_it_matters: "The same identity acted from two places no one could travel between in the time: two parties hold its credentials, one of them probably an attacker.",
    why_it_may_be_fine: "VPNs, proxies, cloud shells and mobile networks put one person's traffic in far-apart places; geolocation of some networks is wrong.",
    what_to_check: &[
        "Both networks: a home or office provider, a mobile provider, a VPN or a hosting provider.",
        "The user agents at both places: one person usually keeps the same client.",
        "What the identity did from the unexpected place.",
    ],
    how_to_resolve: ROTATE_CREDENTIALS,
};

impl Detector for ImpossibleTravel {
    fn id(&self) -> &'static str {
        ID
    }
    fn name(&self) -> &'static str {
        "Impossible travel"
    }
    fn detect(&self, obs: &Observation, ctx: &Context<'_>, out: &mut Vec<Finding>) {
        if obs.neighbours.is_empty() {
            return;
        }
        let Some(here) = place(obs.enriched()) else {
            return;
        };
        for there in &obs.neighbours {
            let (kmh, min_km) = (
                ctx.config.impossible_travel_kmh,
                ctx.config.impossible_travel_min_km,
            );
            let Some(trip) = Trip::between(&here, there, kmh, min_km) else {
                continue;
            };
            let hosting: Vec<&Place> = [&here, there].into_iter().filter(|p| p.hosting).collect();
            let (severity, title) = if hosting.is_empty() {
                (Severity::High, "Impossible travel")
            } else {
                (
                    Severity::Informational,
                    "Impossible travel between hosting or VPN networks",
                )
            };
            let mut ends = [label(&here), label(there)];
            ends.sort();
            let mut f = candidate(obs, ID, title, severity, ends.join(" <> "), &GUIDANCE);
            // One finding per pair of places, described by the journey that
            // ends earliest; its evidence is both calls.
            let (from, to) = if there.event_time_ms <= here.event_time_ms {
                (there, &here)
            } else {
                (&here, there)
            };
            let evidence = |p: &Place| EvidenceEvent {
                event_id: p.event_id.clone(),
                event_time_ms: p.event_time_ms,
            };
            f.first_event_only = true;
            f.evidence = vec![evidence(from), evidence(to)];
            f.described = Some(evidence(to));
            (f.first_event_ms, f.last_event_ms) = (from.event_time_ms, to.event_time_ms);
            f.attack.push(attack("initial-access", "T1078.004"));
            f.baseline_facts.push(fact(&trip, &here, there));
            for p in hosting {
                f.baseline_facts.push(format!(
                    "{} ({}, AS{} {}) is a hosting, cloud or VPN network: it places a server, not a person",
                    p.ip, label(p), p.asn, p.as_org
                ));
            }
            f.baseline_facts
                .extend(context_facts(obs, ctx.window_days()));
            out.push(f);
        }
    }
}

fn fact(trip: &Trip, here: &Place, there: &Place) -> String {
    format!(
        "{} at {} from {} ({}) and {} at {} from {} ({}): {:.0} km apart after accuracy radii, {:.1} h apart: {}",
        there.event_id,
        time(there.event_time_ms),
        label(there),
        there.ip,
        here.event_id,
        time(here.event_time_ms),
        label(here),
        here.ip,
        trip.km,
        trip.hours,
        trip.speed(),
    )
}

#[cfg(test)]
mod tests {
    use crate::detectors::testing::*;
    use trailhound_proto::Severity;

    fn at(e: Ev, city: &str, lat: f64, lon: f64, hosting: bool) -> Ev {
        let mut e = e;
        let g = e.enriched.geo.as_mut().unwrap();
        (g.city, g.latitude, g.longitude) = (city.into(), lat, lon);
        e.enriched.network.as_mut().unwrap().hosting = hosting;
        e
    }

    #[test]
    fn berlin_then_sao_paulo_an_hour_later_is_impossible() {
        let mut h = Harness::new(config());
        h.observe(at(
            ev(0, "DescribeInstances"),
            "Berlin",
            52.52,
            13.40,
            false,
        ));
        let f = h.run(
            at(
                ev(0, "GetCallerIdentity").at_ms(3_600_000),
                "Sao Paulo",
                -23.55,
                -46.63,
                false,
            ),
            "TH-016",
        );
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].severity(), Severity::High);
        assert!(
            f[0].baseline_facts[0].contains("km/h"),
            "{:?}",
            f[0].baseline_facts
        );
        assert_eq!(f[0].key, "Berlin, DE <> Sao Paulo, DE");
    }

    #[test]
    fn plane_speed_short_hops_and_vpns_do_not_raise_it() {
        let mut h = Harness::new(config());
        h.observe(at(
            ev(0, "DescribeInstances"),
            "Berlin",
            52.52,
            13.40,
            false,
        ));
        let flight = at(
            ev(0, "ListBuckets").at_ms(12 * 3_600_000),
            "Sao Paulo",
            -23.55,
            -46.63,
            false,
        );
        assert!(
            h.run(flight, "TH-016").is_empty(),
            "12 h for 10,000 km is a flight"
        );
        let hop = at(
            ev(0, "ListUsers").at_ms(12 * 3_600_000 + 60_000),
            "Campinas",
            -22.90,
            -47.06,
            false,
        );
        assert!(h.run(hop, "TH-016").is_empty(), "below the distance floor");
        let vpn = at(
            ev(0, "ListRoles").at_ms(12 * 3_600_000 + 120_000),
            "Berlin",
            52.52,
            13.40,
            true,
        );
        let f = h.run(vpn, "TH-016");
        assert_eq!(f[0].severity(), Severity::Informational);
        assert!(
            f[0].baseline_facts
                .iter()
                .any(|s| s.contains("hosting, cloud or VPN"))
        );
    }

    /// A call's neighbours are those it has in time order, even when it
    /// arrives late, after a call the reorder window allowed to come first.
    #[test]
    fn a_late_call_is_placed_between_the_calls_it_came_between() {
        let minute = 60_000;
        let ashburn = |ms: i64, name: &str| at(ev(0, name).at_ms(ms), "Ashburn", 39.0, -77.5, true);
        let (last_before, attack, next_after) = (105 * minute, 120 * minute, 123 * minute);
        let mut journeys = Vec::new();
        for late in [false, true] {
            let mut h = Harness::new(config());
            for k in 0..8 {
                h.observe(ashburn(k * 15 * minute, "DescribeTags"));
            }
            h.observe(ashburn(last_before, "Decrypt"));
            let stolen = at(
                ev(0, "GetCallerIdentity").at_ms(attack),
                "St Petersburg",
                59.9,
                30.3,
                true,
            );
            let after = ashburn(next_after, "DescribeTags");
            let mut found = Vec::new();
            if late {
                found.extend(h.run(after, "TH-016"));
                found.extend(h.run(stolen, "TH-016"));
            } else {
                found.extend(h.run(stolen, "TH-016"));
                found.extend(h.run(after, "TH-016"));
            }
            let mut ends: Vec<(i64, i64)> = found
                .iter()
                .map(|f| (f.first_event_ms - T0, f.last_event_ms - T0))
                .collect();
            ends.sort();
            journeys.push(ends);
        }
        let expected = vec![(last_before, attack), (attack, next_after)];
        assert_eq!(journeys, [expected.clone(), expected]);
    }
}
