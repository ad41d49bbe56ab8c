//! The profile hop: per-(account, principal) behaviour — services per
//! region, commands, countries, cities, AS organisations, user agents,
//! roles assumed, S3 buckets, compute sessions' regions, activity per time
//! bucket and recent places — and what is new or unusual in each event.
//! An event delivered twice stops here (see `duplicates`).

use std::cell::{OnceCell, RefCell};
use std::sync::Arc;

use foldhash::HashMap;

use serde::{Deserialize, Serialize};
use trailhound_proto::{
    ComputeHome, ComputeKind, EnrichedEvent, NoveltyKind, Observation, PrincipalFacts, Rate,
    RateKind,
};

use super::duplicates::{Arrival, RecentEvents};
use super::known::KnownValues;
use super::values::write_value;
use super::{located_call, principal_key, region_of};
use trailhound_state::{Batch, Layout, StateError, Store, Table};

use crate::config::{DetectionConfig, SurgeSettings};
use crate::finding::encode_origin;
use crate::rates::{Rates, Sample};
use crate::seen::{RepeatingValues, Seen, SeenMap, Values, day};
use crate::travel::Places;

/// The tables the profile hop keeps.
pub const TABLES: &[&str] = &["profiles"];

/// The encoding of [`Profile`]: 2 added its recent events.
pub const LAYOUT: Layout = Layout {
    name: "profiles",
    version: 2,
    tables: TABLES,
};

/// Known countries a principal's facts name (they count them all).
const KNOWN_COUNTRIES_LISTED: usize = 10;

/// Sessions remembered per compute role, most recent kept.
const MAX_SESSIONS: usize = 512;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Profile {
    pub activity: Option<Seen>,
    pub service_regions: SeenMap,
    pub countries: RepeatingValues,
    pub cities: RepeatingValues,
    pub asos: RepeatingValues,
    pub user_agents: RepeatingValues,
    /// `eventSource:eventName` of every call.
    pub commands: SeenMap,
    /// Roles the principal assumed (AssumeRole*), by role ARN.
    pub assumed_roles: SeenMap,
    /// "GetObject|bucket" and "PutObject|bucket".
    pub s3_buckets: SeenMap,
    pub rates: Rates,
    pub places: Places,
    /// Compute sessions (instance id or function name): last call, and
    /// successful regional calls per region.
    pub sessions: HashMap<String, (i64, HashMap<String, u32>)>,
    /// All sessions of the role together, when a session has too few calls.
    pub role_regions: HashMap<String, u32>,
    pub pruned_day: i64,
    /// The events of the last reorder window, to drop a second delivery.
    pub recent: RecentEvents,
    /// Counted again when needed, not stored.
    #[serde(skip)]
    known: KnownValues,
}

#[derive(Debug)]
pub struct ProfileBaseline {
    config: Arc<DetectionConfig>,
    profiles: Table<Profile>,
    /// Reused for each value looked up, so a value already seen costs no
    /// allocation.
    value: String,
    /// Reused for encoding an activity bucket's origin before it is shared.
    origin: Vec<u8>,
    /// Reused for each principal's key.
    key: String,
}

impl ProfileBaseline {
    pub fn new(config: Arc<DetectionConfig>, store: Option<Arc<Store>>) -> Self {
        Self {
            config,
            profiles: Table::new("profiles", store),
            value: String::new(),
            origin: Vec::new(),
            key: String::new(),
        }
    }

    /// Move every state change since the last commit into `batch`.
    pub fn drain_into(&mut self, batch: &mut Batch) {
        self.profiles.drain_into(batch);
    }

    /// The profile key (account and principal) of the last event observed.
    pub fn last_principal_key(&self) -> &str {
        &self.key
    }

    /// The principal's facts and novelties for the observation's enriched
    /// event, replacing whatever else it holds (from an earlier event: its
    /// vectors and strings are reused); the account and command hops
    /// complete it. An event the principal's profile already holds (the
    /// same id and time, within the reorder window) is a duplicate
    /// delivered again: nothing is recorded.
    pub fn observe(&mut self, observation: &mut Observation) -> Result<Observed, StateError> {
        // Every field named: one added to Observation must be set here too.
        let Observation {
            enriched,
            facts,
            novelties,
            compute_home,
            region_unused_in_account,
            command_events_in_window,
            rates,
            neighbours,
        } = observation;
        let enriched = super::enriched(enriched);
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
        let region = region_of(enriched);

        let compute = ComputeKind::try_from(principal.compute).unwrap_or(ComputeKind::None);

        principal_key(principal, &mut self.key);
        let profile = self.profiles.entry(&self.key, Profile::default)?;
        let reorder = self.config.reorder_ms();
        let late_by_ms = match profile.recent.remember(&event.event_id, t, reorder) {
            Arrival::Repeat => return Ok(Observed::Duplicate),
            Arrival::New => 0,
            Arrival::Late { behind_ms } => behind_ms,
        };
        prune(profile, t, window);
        let new_principal = match &mut profile.activity {
            None => {
                profile.activity = Some(Seen::new(t));
                true
            }
            Some(seen) => seen.record(t, window, window_days).is_new,
        };
        let facts = facts.get_or_insert_default();
        write_facts(profile, t, &self.config, facts);
        (facts.new_principal, facts.late_by_ms) = (new_principal, late_by_ms);

        novelties.clear();
        let kinds: [(NoveltyKind, &mut dyn Values); 8] = [
            (NoveltyKind::ServiceRegion, &mut profile.service_regions),
            (NoveltyKind::Country, &mut profile.countries),
            (NoveltyKind::City, &mut profile.cities),
            (NoveltyKind::Aso, &mut profile.asos),
            (NoveltyKind::UserAgent, &mut profile.user_agents),
            (NoveltyKind::Command, &mut profile.commands),
            (NoveltyKind::AssumedRole, &mut profile.assumed_roles),
            (NoveltyKind::S3Bucket, &mut profile.s3_buckets),
        ];
        for (kind, seen) in kinds {
            if write_value(kind, enriched, &mut self.value) {
                let (s, before, after) = seen.record_change(&self.value, t, window, window_days);
                if matches!(
                    kind,
                    NoveltyKind::Country | NoveltyKind::Aso | NoveltyKind::UserAgent
                ) {
                    profile
                        .known
                        .changed(before.as_ref(), &after, reorder, window);
                }
                novelties.push(s.novelty(kind));
            }
        }
        // Kept by the activity buckets and the places this event joins.
        let event_id: Arc<str> = event.event_id.as_str().into();
        record_rates(
            &mut profile.rates,
            enriched,
            &event_id,
            &mut self.origin,
            &self.config,
            rates,
        );
        for rate in rates.iter_mut() {
            // Described by the bucket's earliest event, in the context the
            // profile gives that event's time.
            match rate.earliest.first() {
                Some(first) if !rate.origin.is_empty() => {
                    let at = rate.origin_facts.get_or_insert_default();
                    write_facts(profile, first.event_time_ms, &self.config, at);
                }
                _ => rate.origin_facts = None,
            }
        }
        *neighbours = located_call(enriched).map_or_else(Vec::new, |call| {
            profile
                .places
                .record(call, &event_id, self.config.reorder_ms())
        });

        // A session that called as a compute identity before is one still:
        // a Lambda function's credentials copied to another client lose the
        // Lambda user agent (EC2 sessions keep their instance-id name).
        let compute = if compute == ComputeKind::None
            && profile.sessions.contains_key(&principal.session_name)
        {
            ComputeKind::Lambda
        } else {
            compute
        };
        *compute_home = if compute == ComputeKind::None {
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
        // The account and command hops' fields, until they set them.
        *region_unused_in_account = false;
        *command_events_in_window = 0;
        Ok(Observed::New)
    }
}

/// Whether the profile hop observed an event or dropped it as a duplicate.
/// An event observed late says so in its facts (`late_by_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Observed {
    New,
    /// The event was observed before: a second trail, or a second
    /// delivery, brought it again. Its observation is not filled in.
    Duplicate,
}

/// Drop what has left the window, at most once per day of event time.
fn prune(profile: &mut Profile, t: i64, window: i64) {
    if day(t) <= profile.pruned_day {
        return;
    }
    profile.pruned_day = day(t);
    for map in [
        &mut profile.service_regions,
        &mut profile.commands,
        &mut profile.assumed_roles,
        &mut profile.s3_buckets,
    ] {
        map.retain(|_, s| s.live(t, window));
    }
    for values in [
        &mut profile.countries,
        &mut profile.cities,
        &mut profile.asos,
        &mut profile.user_agents,
    ] {
        values.retain_live(t, window);
    }
    profile.known = KnownValues::default();
    profile.sessions.retain(|_, (last, _)| t - *last <= window);
}

/// Count the event in its activity buckets; into `out` (an earlier
/// event's, whose messages are reused: every event of a surging bucket is
/// described again), the buckets that are surges (at or above their
/// detector's threshold), with the principal's normal.
fn record_rates(
    rates: &mut Rates,
    enriched: &EnrichedEvent,
    event_id: &Arc<str>,
    scratch: &mut Vec<u8>,
    config: &DetectionConfig,
    out: &mut Vec<Rate>,
) {
    let Some(event) = enriched.event.as_ref() else {
        out.clear();
        return;
    };
    // Made at most once, shared by the buckets the event opens.
    let (origin, scratch) = (OnceCell::<Arc<[u8]>>::new(), RefCell::new(scratch));
    let origin = || {
        origin
            .get_or_init(|| {
                let mut buf = scratch.borrow_mut();
                buf.clear();
                encode_origin(enriched, &mut buf);
                Arc::from(buf.as_slice())
            })
            .clone()
    };
    let error = if enriched.failed {
        [&event.error_code, "|", &event.error_message].concat()
    } else {
        String::new()
    };
    let samples: [(RateKind, &SurgeSettings, bool, Option<&str>); 4] = [
        (RateKind::ApiCalls, &config.api_call_surge, true, None),
        (
            RateKind::ErrorMessages,
            &config.error_message_spike,
            enriched.failed,
            Some(&error),
        ),
        (
            RateKind::Services,
            &config.service_enumeration,
            true,
            Some(&enriched.service),
        ),
        (
            RateKind::S3GetObject,
            &config.s3_get_object_surge,
            enriched.service == "s3" && event.event_name == "GetObject",
            None,
        ),
    ];
    let mut surges = 0;
    for (kind, settings, applies, distinct) in samples {
        if !applies {
            continue;
        }
        let bucket_ms = settings.bucket_ms();
        let sample = Sample {
            kind,
            bucket_ms,
            t: event.event_time_ms,
            event_id,
            distinct,
            origin: &origin,
        };
        let Some(bucket) = rates.record(&sample, config.reorder_ms(), config.window_days()) else {
            continue;
        };
        if bucket.value < settings.min_value {
            continue;
        }
        let normal = rates.normal(kind, day(event.event_time_ms), config.window_days());
        // Only surges go on: their evidence and origin cost a copy each.
        if f64::from(bucket.value) < settings.threshold(normal.median, normal.mad) {
            continue;
        }
        if surges == out.len() {
            out.push(Rate::default());
        }
        // Every field named: one added to Rate must be set here too.
        let Rate {
            kind: kind_field,
            bucket_start_ms,
            bucket_ms: bucket_ms_field,
            value,
            baseline_days,
            median_peak,
            mad_peak,
            earliest,
            origin,
            origin_facts: _, // the profile's, written after
        } = &mut out[surges];
        (*kind_field, *bucket_start_ms, *bucket_ms_field) =
            (kind as i32, bucket.start_ms, bucket_ms);
        (*value, *baseline_days) = (bucket.value, normal.days);
        (*median_peak, *mad_peak) = (normal.median, normal.mad);
        rates.describe(kind, bucket.start_ms, earliest, origin);
        surges += 1;
    }
    out.truncate(surges);
}

/// What the principal's profile says at time `t`, into `facts` (reusing
/// its strings): how long it has been active, and the countries, networks
/// and clients it was known from (see `known`: seen before the reorder
/// window, since what arrived inside it depends on delivery order).
fn write_facts(
    profile: &mut Profile,
    t: i64,
    config: &DetectionConfig,
    facts: &mut PrincipalFacts,
) {
    let (window, window_days) = (config.window_ms(), config.window_days());
    if !profile.known.hold_at(t) {
        let reuse = std::mem::take(&mut profile.known.countries);
        let maps = [&profile.countries, &profile.asos, &profile.user_agents];
        profile.known = KnownValues::count(maps, t, config.reorder_ms(), window, reuse);
    }
    let known = &profile.known;
    let listed = &known.countries[..known.countries.len().min(KNOWN_COUNTRIES_LISTED)];
    let mut countries = std::mem::take(&mut facts.known_countries);
    countries.truncate(listed.len());
    for (i, country) in listed.iter().enumerate() {
        match countries.get_mut(i) {
            Some(reused) => country.clone_into(reused),
            None => countries.push(country.clone()),
        }
    }
    *facts = PrincipalFacts {
        first_seen_ms: profile.activity.map_or(t, |a| a.first_ms),
        active_days: profile
            .activity
            .map_or(0, |a| a.days_through(day(t), window_days)),
        data_start_ms: 0,
        known_countries: countries,
        known_country_count: known.countries.len() as u32,
        known_asos: known.asos,
        known_user_agents: known.user_agents,
        new_principal: false,
        late_by_ms: 0,
    };
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
        // Ties go to the smaller name: which session is forgotten must not
        // depend on map order, or a restarted service could differ.
        let oldest = profile
            .sessions
            .iter()
            .min_by_key(|(session, (last, _))| (*last, *session))
            .map(|(k, _)| k.clone());
        if let Some(oldest) = oldest {
            profile.sessions.remove(&oldest);
        }
    }
    // Keys are copied only when new: most calls repeat a known session and region.
    if !profile.sessions.contains_key(session) {
        profile
            .sessions
            .insert(session.to_string(), Default::default());
    }
    let (last, regions) = profile.sessions.get_mut(session).expect("inserted above");
    *last = (*last).max(t);
    count(regions, region);
    count(&mut profile.role_regions, region);
}

fn count(counts: &mut HashMap<String, u32>, key: &str) {
    match counts.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            counts.insert(key.to_string(), 1);
        }
    }
}
