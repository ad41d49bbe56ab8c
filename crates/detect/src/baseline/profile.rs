//! The profile hop: per-(account, principal) behaviour — services per
//! region, countries, cities, AS organisations, user agents and compute
//! sessions' regions — and the novelties of each event against it.

use std::sync::Arc;

use foldhash::HashMap;

use serde::{Deserialize, Serialize};
use trailhound_proto::{
    ComputeHome, ComputeKind, EnrichedEvent, Novelty, NoveltyKind, Observation, PrincipalFacts,
};

use super::{located_geo, principal_key, region_of};
use trailhound_state::{Batch, StateError, Store, Table};

use crate::config::DetectionConfig;
use crate::seen::{Seen, day, record_in};

/// The tables the profile hop keeps.
pub const TABLES: &[&str] = &["profiles"];

/// Sessions remembered per compute role, most recent kept.
const MAX_SESSIONS: usize = 512;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Profile {
    pub activity: Option<Seen>,
    pub service_regions: HashMap<String, Seen>,
    pub countries: HashMap<String, Seen>,
    pub cities: HashMap<String, Seen>,
    pub asos: HashMap<String, Seen>,
    pub user_agents: HashMap<String, Seen>,
    /// Compute sessions (instance id or function name): last call, and
    /// successful regional calls per region.
    pub sessions: HashMap<String, (i64, HashMap<String, u32>)>,
    /// All sessions of the role together, when a session has too few calls.
    pub role_regions: HashMap<String, u32>,
    pub pruned_day: i64,
}

#[derive(Debug)]
pub struct ProfileBaseline {
    config: Arc<DetectionConfig>,
    profiles: Table<Profile>,
}

impl ProfileBaseline {
    pub fn new(config: Arc<DetectionConfig>, store: Option<Arc<Store>>) -> Self {
        Self {
            config,
            profiles: Table::new("profiles", store),
        }
    }

    /// Move every state change since the last commit into `batch`.
    pub fn drain_into(&mut self, batch: &mut Batch) {
        self.profiles.drain_into(batch);
    }

    /// The principal's facts and novelties; the account and command hops
    /// complete the observation.
    pub fn observe(&mut self, enriched: EnrichedEvent) -> Result<Observation, StateError> {
        let (window, window_days) = (self.config.window_ms(), self.config.window_days());
        let event = enriched
            .event
            .as_ref()
            .expect("enriched events carry their event");
        let principal = enriched
            .principal
            .as_ref()
            .expect("enriched events carry their principal");
        let t = event.event_time_ms;
        let region = region_of(&enriched);

        let compute = ComputeKind::try_from(principal.compute).unwrap_or(ComputeKind::None);

        let mut novelties = Vec::with_capacity(6);
        let mut push = |kind: NoveltyKind, value: String, s: crate::seen::Sighting| {
            novelties.push(Novelty {
                kind: kind as i32,
                value,
                is_new: s.is_new,
                first_seen_ms: s.first_ms,
                days_seen: s.days_seen,
            })
        };

        let profile = self
            .profiles
            .entry(&principal_key(principal), Profile::default)?;
        prune(profile, t, window);
        let (new_principal, first_seen_ms) = match &mut profile.activity {
            None => {
                profile.activity = Some(Seen::new(t));
                (true, t)
            }
            Some(seen) => {
                let s = seen.record(t, window, window_days);
                (s.is_new, s.first_ms)
            }
        };
        let active_days = profile
            .activity
            .map_or(0, |a| a.days_through(day(t), window_days));

        let service_region = format!("{}|{region}", enriched.service);
        let s = record_in(
            &mut profile.service_regions,
            &service_region,
            t,
            window,
            window_days,
        );
        push(NoveltyKind::ServiceRegion, service_region, s);

        let geo = located_geo(&enriched);
        let mut known_countries: Vec<String> = known_before(&profile.countries, t, window)
            .cloned()
            .collect();
        known_countries.sort();
        known_countries.truncate(10);
        let known_asos = known_before(&profile.asos, t, window).count() as u32;
        let known_user_agents = known_before(&profile.user_agents, t, window).count() as u32;
        if let Some(geo) = geo {
            let s = record_in(&mut profile.countries, &geo.country, t, window, window_days);
            push(NoveltyKind::Country, geo.country.clone(), s);
            if !geo.city.is_empty() {
                let city = format!("{}|{}", geo.country, geo.city);
                let s = record_in(&mut profile.cities, &city, t, window, window_days);
                push(NoveltyKind::City, city, s);
            }
        }
        if let Some(network) = enriched
            .network
            .as_ref()
            .filter(|n| n.is_network_location && n.asn != 0)
        {
            let aso = if network.as_org.is_empty() {
                format!("AS{}", network.asn)
            } else {
                network.as_org.clone()
            };
            let s = record_in(&mut profile.asos, &aso, t, window, window_days);
            push(NoveltyKind::Aso, aso, s);
        }
        if let Some(ua) = &enriched.user_agent {
            let s = record_in(&mut profile.user_agents, &ua.major, t, window, window_days);
            push(NoveltyKind::UserAgent, ua.major.clone(), s);
        }

        let compute_home = if compute == ComputeKind::None {
            None
        } else {
            let home = home_region(
                profile,
                &principal.session_name,
                self.config.min_session_calls,
            );
            if !enriched.global_service && !enriched.failed {
                learn_session_region(profile, &principal.session_name, region, t);
            }
            home.map(|(home_region, source)| ComputeHome {
                compute: compute as i32,
                home_region,
                source: source.to_string(),
            })
        };

        let facts = PrincipalFacts {
            first_seen_ms,
            active_days,
            data_start_ms: 0,
            known_countries,
            known_asos,
            known_user_agents,
            new_principal,
        };

        Ok(Observation {
            enriched: Some(enriched),
            facts: Some(facts),
            novelties,
            compute_home,
            region_unused_in_account: false,
            command_events_in_window: 0,
        })
    }
}

/// Drop what has left the window, at most once per day of event time.
fn prune(profile: &mut Profile, t: i64, window: i64) {
    if day(t) <= profile.pruned_day {
        return;
    }
    profile.pruned_day = day(t);
    for map in [
        &mut profile.service_regions,
        &mut profile.countries,
        &mut profile.cities,
        &mut profile.asos,
        &mut profile.user_agents,
    ] {
        map.retain(|_, s| s.live(t, window));
    }
    profile.sessions.retain(|_, (last, _)| t - *last <= window);
}

/// Values seen before `t` and still in the window: what an event at `t`
/// is compared with, whatever order events arrive in.
fn known_before(map: &HashMap<String, Seen>, t: i64, window: i64) -> impl Iterator<Item = &String> {
    map.iter()
        .filter(move |(_, s)| s.first_ms < t && s.live(t, window))
        .map(|(k, _)| k)
}

/// The home region of a compute session from its own calls, or its role's
/// when the session has too few; the account hop prefers the inventory.
fn home_region(
    profile: &Profile,
    session: &str,
    min_session_calls: u32,
) -> Option<(String, &'static str)> {
    if let Some((_, regions)) = profile.sessions.get(session)
        && regions.values().sum::<u32>() >= min_session_calls
    {
        return dominant(regions).map(|r| (r, "session"));
    }
    dominant(&profile.role_regions).map(|r| (r, "role"))
}

fn dominant(counts: &HashMap<String, u32>) -> Option<String> {
    // Ties go to the smaller name, so the answer does not depend on map order.
    counts
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .map(|(r, _)| r.clone())
}

fn learn_session_region(profile: &mut Profile, session: &str, region: &str, t: i64) {
    if !profile.sessions.contains_key(session) && profile.sessions.len() >= MAX_SESSIONS {
        let oldest = profile
            .sessions
            .iter()
            .min_by_key(|(_, (last, _))| *last)
            .map(|(k, _)| k.clone());
        if let Some(oldest) = oldest {
            profile.sessions.remove(&oldest);
        }
    }
    let (last, regions) = profile.sessions.entry(session.to_string()).or_default();
    *last = (*last).max(t);
    *regions.entry(region.to_string()).or_default() += 1;
    *profile.role_regions.entry(region.to_string()).or_default() += 1;
}
