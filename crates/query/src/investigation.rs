//! Investigations (DETECTIONS.md "Investigation", after Amazon Detective's):
//! what one principal did over a scope of time, judged against its own
//! behaviour in the 45 days before the scope. Pure: events and findings go
//! in, in any order, and a report (`trailhound.v1.Investigation`) comes out.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use trailhound_cloudtrail::time::format_ms;
use trailhound_detect::baseline::place;
use trailhound_detect::travel::Trip;
use trailhound_proto::indicator::Detail;
use trailhound_proto::{
    CloudTrailEvent, EnrichedEvent, Finding, FlaggedIpAddress, ImpossibleTravel, Indicator,
    IndicatorType, Investigation, InvestigationEvent, InvestigationSession, NewAso, NewGeolocation,
    NewUserAgent, Place, RelatedFinding, Severity, TtpObserved,
};

/// Days before the scope that form the baseline.
pub const BASELINE_DAYS: i64 = 45;
const DAY_MS: i64 = 86_400_000;

/// A principal and a time window `[start_ms, end_ms)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// Empty: the principal in any account.
    pub account_id: String,
    /// As findings name it: `arn:aws:iam::111122223333:role/web-server`
    /// covers every session of the role.
    pub principal: String,
    pub start_ms: i64,
    pub end_ms: i64,
}

impl Subject {
    /// Whether calls of `principal` in `account_id` are the subject's.
    pub fn covers(&self, account_id: &str, principal: &str) -> bool {
        principal == self.principal && (self.account_id.is_empty() || account_id == self.account_id)
    }
}

/// When two calls are too far apart to be one person (TH-016's settings).
#[derive(Debug, Clone, Copy)]
pub struct TravelLimits {
    pub kmh: f64,
    pub min_km: f64,
}

/// Access keys and source addresses a session lists, the first used first
/// (the session counts them all).
pub const SESSION_VALUES: usize = 20;

/// Builds an investigation from whatever events and findings it is given,
/// in any order. The scope's events are tallied as they come; each keeps
/// only its reference and where it was placed (impossible travel needs the
/// calls in time order), so a busy principal's scope stays small.
#[derive(Debug)]
pub struct Investigator {
    subject: Subject,
    travel: TravelLimits,
    baseline: Seen,
    baseline_events: u64,
    scope: Scope,
    findings: Vec<Finding>,
}

/// What the principal did in the baseline window.
#[derive(Debug, Default)]
struct Seen {
    countries: HashSet<String>,
    places: HashSet<(String, String)>,
    networks: HashSet<(u32, String)>,
    user_agents: HashSet<String>,
}

/// The scope's calls and what they add up to.
#[derive(Debug, Default)]
struct Scope {
    calls: Vec<ScopeCall>,
    /// The latest spot of each address, shared by its calls.
    spots: HashMap<String, Arc<Place>>,
    places: HashMap<(String, String), FirstCall>,
    networks: HashMap<(u32, String), FirstCall>,
    /// Keyed by user agent and penetration-testing distribution.
    agents: HashMap<(String, String), FirstCall>,
    flagged: BTreeMap<String, (Vec<String>, u64)>,
    /// (tactic, technique, api, source address) → (successes, failures).
    ttps: BTreeMap<(String, String, String, String), (u64, u64)>,
    /// A role session by its name (its keys rotate), a user's by its key.
    sessions: HashMap<(String, String), SessionTally>,
    /// The earliest call's time, id and account.
    earliest: Option<(i64, String, String)>,
}

#[derive(Debug)]
struct ScopeCall {
    event: InvestigationEvent,
    /// Where the call came from, without its time and id.
    spot: Option<Arc<Place>>,
}

/// The first call with a value, and how many made it.
#[derive(Debug, Clone, Copy)]
struct FirstCall {
    first_ms: i64,
    events: u64,
}

#[derive(Debug, Default)]
struct SessionTally {
    session: InvestigationSession,
    /// Each value's first use.
    access_key_ids: HashMap<String, i64>,
    source_ips: HashMap<String, i64>,
}

impl Investigator {
    pub fn new(subject: Subject, travel: TravelLimits) -> Self {
        Self {
            subject,
            travel,
            baseline: Seen::default(),
            baseline_events: 0,
            scope: Scope::default(),
            findings: Vec::new(),
        }
    }

    /// The first event time an investigation reads: the baseline's start.
    pub fn reads_from_ms(&self) -> i64 {
        self.subject.start_ms - BASELINE_DAYS * DAY_MS
    }

    /// Take an event into account if it is the principal's, in the scope
    /// or the baseline before it; says whether it was.
    pub fn add_event(&mut self, event: &EnrichedEvent) -> bool {
        let (Some(principal), Some(call)) = (&event.principal, &event.event) else {
            return false;
        };
        if !self.subject.covers(&principal.account_id, &principal.arn) {
            return false;
        }
        let t = call.event_time_ms;
        if (self.subject.start_ms..self.subject.end_ms).contains(&t) {
            self.scope.add(event, call, &principal.account_id);
        } else if (self.reads_from_ms()..self.subject.start_ms).contains(&t) {
            self.baseline_events += 1;
            let seen = &mut self.baseline;
            if let Some((country, city)) = geolocation(event) {
                seen.countries.insert(country.clone());
                seen.places.insert((country, city));
            }
            if let Some(network) = network(event) {
                seen.networks.insert(network);
            }
            if let Some(user_agent) = user_agent(event) {
                seen.user_agents.insert(user_agent);
            }
        } else {
            return false;
        }
        true
    }

    /// The calls of the scope taken so far (each held until the report).
    pub fn scope_calls(&self) -> usize {
        self.scope.calls.len()
    }

    /// Take a finding into account if it is on the principal and active in the scope.
    pub fn add_finding(&mut self, finding: &Finding) -> bool {
        let active = finding.first_event_ms < self.subject.end_ms
            && finding.last_event_ms >= self.subject.start_ms;
        let related = active && self.subject.covers(&finding.account_id, &finding.principal);
        if related {
            self.findings.push(finding.clone());
        }
        related
    }

    /// The report, without an id (given when it is stored).
    pub fn report(mut self) -> Investigation {
        let scope = &mut self.scope;
        scope.calls.sort_unstable_by(|a, b| {
            (a.event.event_time_ms.cmp(&b.event.event_time_ms))
                .then_with(|| a.event.event_id.cmp(&b.event.event_id))
        });
        let mut indicators = Vec::new();
        indicators.extend(self.new_behaviour());
        indicators.extend(self.impossible_travel());
        let scope = std::mem::take(&mut self.scope);
        indicators.extend(scope.flagged.into_iter().map(|(ip, (flagged_by, events))| {
            indicator(Detail::FlaggedIpAddress(FlaggedIpAddress {
                ip,
                flagged_by,
                events,
            }))
        }));
        indicators.extend(scope.ttps.into_iter().map(
            |((tactic, technique, api, ip), (successes, failures))| {
                indicator(Detail::TtpObserved(TtpObserved {
                    tactic,
                    technique,
                    api,
                    ip,
                    successes,
                    failures,
                }))
            },
        ));
        // Most severe first, then the earliest.
        self.findings.sort_by(|a, b| {
            (b.severity.cmp(&a.severity))
                .then(a.first_event_ms.cmp(&b.first_event_ms))
                .then(a.id.cmp(&b.id))
        });
        indicators.extend(self.findings.iter().map(|f| {
            indicator(Detail::RelatedFinding(RelatedFinding {
                id: f.id.clone(),
                detector: f.detector.clone(),
                title: f.title.clone(),
                severity: f.severity,
                first_ms: f.first_event_ms,
                last_ms: f.last_event_ms,
            }))
        }));
        let severity = severity(&indicators, self.baseline_events > 0);
        let account_id = match scope.earliest {
            Some((_, _, account_id)) if self.subject.account_id.is_empty() => account_id,
            _ => self.subject.account_id.clone(),
        };
        let mut report = Investigation {
            account_id,
            principal: self.subject.principal.clone(),
            scope_start_ms: self.subject.start_ms,
            scope_end_ms: self.subject.end_ms,
            severity: severity as i32,
            events_in_scope: scope.calls.len() as u64,
            baseline_events: self.baseline_events,
            session_count: scope.sessions.len() as u64,
            sessions: sessions(scope.sessions),
            indicator_count: indicators.len() as u64,
            indicators,
            events: scope.calls.into_iter().map(|c| c.event).collect(),
            ..Default::default()
        };
        report.summary = summary(&report);
        report
    }

    /// New geolocations, AS organisations and user agents, each with its
    /// first call in the scope and how many calls it made.
    fn new_behaviour(&self) -> Vec<Indicator> {
        let (seen, scope) = (&self.baseline, &self.scope);
        let places = unseen(&scope.places, |place| seen.places.contains(place))
            .into_iter()
            .map(|((country, city), first)| {
                Detail::NewGeolocation(NewGeolocation {
                    new_country: !seen.countries.contains(&country),
                    country,
                    city,
                    first_ms: first.first_ms,
                    events: first.events,
                })
            });
        let networks = unseen(&scope.networks, |network| seen.networks.contains(network))
            .into_iter()
            .map(|((asn, as_org), first)| {
                Detail::NewAso(NewAso {
                    asn,
                    as_org,
                    first_ms: first.first_ms,
                    events: first.events,
                })
            });
        let agents = unseen(&scope.agents, |(agent, _)| seen.user_agents.contains(agent))
            .into_iter()
            .map(|((user_agent, pentest_distribution), first)| {
                Detail::NewUserAgent(NewUserAgent {
                    user_agent,
                    pentest_distribution,
                    first_ms: first.first_ms,
                    events: first.events,
                })
            });
        places
            .chain(networks)
            .chain(agents)
            .map(indicator)
            .collect()
    }

    /// Consecutive located calls from different places too far apart
    /// (the calls sorted by time).
    fn impossible_travel(&self) -> Vec<Indicator> {
        let located = (self.scope.calls.iter()).filter_map(|c| Some((&c.event, c.spot.as_ref()?)));
        let mut out = Vec::new();
        let mut previous: Option<(&InvestigationEvent, &Arc<Place>)> = None;
        for (call, spot) in located {
            let Some((from_call, from_spot)) = previous.replace((call, spot)) else {
                continue;
            };
            if (from_spot.latitude, from_spot.longitude) == (spot.latitude, spot.longitude) {
                continue;
            }
            let (from, to) = (placed(from_call, from_spot), placed(call, spot));
            if let Some(trip) = Trip::between(&from, &to, self.travel.kmh, self.travel.min_km) {
                out.push(indicator(Detail::ImpossibleTravel(ImpossibleTravel {
                    km: trip.km.round() as u64,
                    speed: trip.speed(),
                    between_hosting_networks: from.hosting && to.hosting,
                    from: Some(from),
                    to: Some(to),
                })));
            }
        }
        out
    }
}

impl Scope {
    fn add(&mut self, event: &EnrichedEvent, call: &CloudTrailEvent, account_id: &str) {
        let t = call.event_time_ms;
        if (self.earliest.as_ref()).is_none_or(|(time, id, _)| (t, &call.event_id) < (*time, id)) {
            self.earliest = Some((t, call.event_id.clone(), account_id.to_string()));
        }
        if let Some(place) = geolocation(event) {
            count(&mut self.places, place, t);
        }
        if let Some(network) = network(event) {
            count(&mut self.networks, network, t);
        }
        if let Some(agent) = user_agent(event) {
            let distribution = (event.user_agent.as_ref())
                .map(|u| u.pentest_distribution.clone())
                .unwrap_or_default();
            count(&mut self.agents, (agent, distribution), t);
        }
        if let Some(network) = event.network.as_ref().filter(|n| !n.flagged_by.is_empty()) {
            let entry = (self.flagged.entry(network.ip.clone()))
                .or_insert_with(|| (network.flagged_by.clone(), 0));
            entry.1 += 1;
        }
        if let Some(attack) = &event.attack {
            let key = (
                attack.tactic.clone(),
                attack.technique.clone(),
                api(event),
                call.source_ip.clone(),
            );
            let counts = self.ttps.entry(key).or_default();
            if event.failed {
                counts.1 += 1;
            } else {
                counts.0 += 1;
            }
        }
        self.add_to_session(event, call);
        let spot = place(event).map(|place| self.spot(place));
        self.calls.push(ScopeCall {
            event: InvestigationEvent {
                event_id: call.event_id.clone(),
                event_time_ms: t,
                api: api(event),
                source_ip: call.source_ip.clone(),
                error_code: call.error_code.clone(),
                origin: call.origin.clone(),
            },
            spot,
        });
    }

    /// The shared spot of `place`: its address's, unless that was placed
    /// elsewhere (the databases may change under a service).
    fn spot(&mut self, mut place: Place) -> Arc<Place> {
        place.event_time_ms = 0;
        place.event_id.clear();
        match self.spots.get(&place.ip) {
            Some(spot) if **spot == place => spot.clone(),
            _ => {
                let spot = Arc::new(place);
                self.spots.insert(spot.ip.clone(), spot.clone());
                spot
            }
        }
    }

    fn add_to_session(&mut self, event: &EnrichedEvent, call: &CloudTrailEvent) {
        let session_name = event.principal.as_ref().map_or("", |p| &p.session_name);
        let access_key_id = call.user_identity.as_ref().map_or("", |u| &u.access_key_id);
        let t = call.event_time_ms;
        // A role session by its name (its keys rotate); a user's by its key.
        let key = if session_name.is_empty() {
            (String::new(), access_key_id.to_string())
        } else {
            (session_name.to_string(), String::new())
        };
        let tally = self.sessions.entry(key).or_insert_with(|| SessionTally {
            session: InvestigationSession {
                session_name: session_name.to_string(),
                first_ms: t,
                last_ms: t,
                ..Default::default()
            },
            ..Default::default()
        });
        let session = &mut tally.session;
        session.first_ms = session.first_ms.min(t);
        session.last_ms = session.last_ms.max(t);
        session.events += 1;
        first_use(&mut tally.access_key_ids, access_key_id, t);
        first_use(&mut tally.source_ips, &call.source_ip, t);
    }
}

fn count<K: std::hash::Hash + Eq>(values: &mut HashMap<K, FirstCall>, value: K, t: i64) {
    let first = values.entry(value).or_insert(FirstCall {
        first_ms: t,
        events: 0,
    });
    first.first_ms = first.first_ms.min(t);
    first.events += 1;
}

/// The values not `known`, in value order (stable across runs).
fn unseen<K: Ord + Clone>(
    values: &HashMap<K, FirstCall>,
    known: impl Fn(&K) -> bool,
) -> Vec<(K, FirstCall)> {
    let mut new: Vec<(K, FirstCall)> = (values.iter())
        .filter(|(value, _)| !known(value))
        .map(|(value, first)| (value.clone(), *first))
        .collect();
    new.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    new
}

fn first_use(values: &mut HashMap<String, i64>, value: &str, t: i64) {
    if value.is_empty() {
        return;
    }
    match values.get_mut(value) {
        Some(first) => *first = (*first).min(t),
        None => {
            values.insert(value.to_string(), t);
        }
    }
}

/// A call's place: its spot with its time and id.
fn placed(call: &InvestigationEvent, spot: &Place) -> Place {
    Place {
        event_time_ms: call.event_time_ms,
        event_id: call.event_id.clone(),
        ..spot.clone()
    }
}

/// The type of an indicator, as `ListIndicators` filters them.
pub fn indicator_type(indicator: &Indicator) -> IndicatorType {
    match indicator.detail {
        Some(Detail::TtpObserved(_)) => IndicatorType::TtpObserved,
        Some(Detail::ImpossibleTravel(_)) => IndicatorType::ImpossibleTravel,
        Some(Detail::FlaggedIpAddress(_)) => IndicatorType::FlaggedIpAddress,
        Some(Detail::NewGeolocation(_)) => IndicatorType::NewGeolocation,
        Some(Detail::NewAso(_)) => IndicatorType::NewAso,
        Some(Detail::NewUserAgent(_)) => IndicatorType::NewUserAgent,
        Some(Detail::RelatedFinding(_)) => IndicatorType::RelatedFinding,
        None => IndicatorType::Unspecified,
    }
}

fn indicator(detail: Detail) -> Indicator {
    Indicator {
        detail: Some(detail),
    }
}

/// Country and city of a call from a network address the database placed.
fn geolocation(event: &EnrichedEvent) -> Option<(String, String)> {
    let geo = event.geo.as_ref().filter(|g| !g.country.is_empty())?;
    Some((geo.country.clone(), geo.city.clone()))
}

fn network(event: &EnrichedEvent) -> Option<(u32, String)> {
    let network = event.network.as_ref().filter(|n| n.asn != 0)?;
    Some((network.asn, network.as_org.clone()))
}

/// The client as TH-019 keys it: family and major version.
fn user_agent(event: &EnrichedEvent) -> Option<String> {
    let agent = event.user_agent.as_ref().filter(|u| !u.major.is_empty())?;
    Some(agent.major.clone())
}

fn api(event: &EnrichedEvent) -> String {
    let name = event.event.as_deref().map_or("", |c| c.event_name.as_str());
    format!("{}:{name}", event.service)
}

/// Sessions by their first call; each lists its first [`SESSION_VALUES`]
/// access keys and addresses and counts them all.
fn sessions(tallies: HashMap<(String, String), SessionTally>) -> Vec<InvestigationSession> {
    let first_used = |values: HashMap<String, i64>| {
        let mut values: Vec<(String, i64)> = values.into_iter().collect();
        values.sort_unstable_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        let count = values.len() as u64;
        let listed = values.into_iter().take(SESSION_VALUES).map(|(v, _)| v);
        (listed.collect(), count)
    };
    let mut sessions: Vec<InvestigationSession> = (tallies.into_values())
        .map(|tally| {
            let mut session = tally.session;
            (session.access_key_ids, session.access_key_count) = first_used(tally.access_key_ids);
            (session.source_ips, session.source_ip_count) = first_used(tally.source_ips);
            session
        })
        .collect();
    sessions.sort_by(|a, b| {
        (a.first_ms.cmp(&b.first_ms)).then_with(|| a.session_name.cmp(&b.session_name))
    });
    sessions
}

/// Critical for a flagged address; high for impossible travel between
/// places a person could be, a penetration-testing distribution's client,
/// a new country from a new network (when there is a baseline to be new
/// against); medium for any other new behaviour; low for ATT&CK-mapped
/// calls alone; never below the most severe related finding.
fn severity(indicators: &[Indicator], has_baseline: bool) -> Severity {
    let details = || indicators.iter().filter_map(|i| i.detail.as_ref());
    let new_country = details().any(|d| matches!(d, Detail::NewGeolocation(g) if g.new_country));
    let new_network = details().any(|d| matches!(d, Detail::NewAso(_)));
    details()
        .map(|detail| match detail {
            Detail::FlaggedIpAddress(_) => Severity::Critical,
            Detail::ImpossibleTravel(t) if !t.between_hosting_networks => Severity::High,
            Detail::ImpossibleTravel(_) | Detail::TtpObserved(_) => Severity::Low,
            Detail::NewUserAgent(u) if !u.pentest_distribution.is_empty() => Severity::High,
            Detail::NewGeolocation(_) if has_baseline && new_country && new_network => {
                Severity::High
            }
            Detail::NewGeolocation(_) | Detail::NewAso(_) | Detail::NewUserAgent(_) => {
                Severity::Medium
            }
            Detail::RelatedFinding(f) => f.severity(),
        })
        .max()
        .unwrap_or(Severity::Informational)
}

fn summary(report: &Investigation) -> String {
    let count = |kind: IndicatorType| {
        (report.indicators.iter())
            .filter(|i| indicator_type(i) == kind)
            .count()
    };
    let techniques: HashSet<&str> = (report.indicators.iter())
        .filter_map(|i| match &i.detail {
            Some(Detail::TtpObserved(t)) => Some(t.technique.as_str()),
            _ => None,
        })
        .collect();
    let mut text = format!(
        "{} from {} to {}: {} event(s) in {} session(s); {} new geolocation(s), {} new AS organisation(s), {} new user agent(s), {} impossible travel, {} flagged address(es), {} ATT&CK technique(s), {} related finding(s)",
        report.principal,
        format_ms(report.scope_start_ms),
        format_ms(report.scope_end_ms),
        report.events_in_scope,
        report.sessions.len(),
        count(IndicatorType::NewGeolocation),
        count(IndicatorType::NewAso),
        count(IndicatorType::NewUserAgent),
        count(IndicatorType::ImpossibleTravel),
        count(IndicatorType::FlaggedIpAddress),
        techniques.len(),
        count(IndicatorType::RelatedFinding),
    );
    if report.baseline_events == 0 && report.events_in_scope > 0 {
        text.push_str(&format!(
            "; no activity in the {BASELINE_DAYS} days before the scope, so every behaviour is new"
        ));
    }
    text
}

/// The report as JSON (`--format json`): the protobuf fields, severities
/// and indicator types by name. Serialised as it is written, an event at a
/// time: a busy principal's scope holds millions.
pub struct ReportJson<'a>(pub &'a Investigation);

impl serde::Serialize for ReportJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let report = self.0;
        let sessions: Vec<serde_json::Value> = report.sessions.iter().map(session_json).collect();
        let indicators: Vec<serde_json::Value> = report
            .indicators
            .iter()
            .filter_map(indicator_json)
            .collect();
        let events = EventsJson(&report.events);
        // In name order, as the rest of the JSON output.
        let mut map = serializer.serialize_map(Some(12))?;
        map.serialize_entry("account_id", &report.account_id)?;
        map.serialize_entry("baseline_events", &report.baseline_events)?;
        map.serialize_entry("events", &events)?;
        map.serialize_entry("events_in_scope", &report.events_in_scope)?;
        map.serialize_entry("id", &report.id)?;
        map.serialize_entry("indicators", &indicators)?;
        map.serialize_entry("principal", &report.principal)?;
        map.serialize_entry("scope_end_ms", &report.scope_end_ms)?;
        map.serialize_entry("scope_start_ms", &report.scope_start_ms)?;
        map.serialize_entry("sessions", &sessions)?;
        map.serialize_entry("severity", report.severity().label())?;
        map.serialize_entry("summary", &report.summary)?;
        map.end()
    }
}

struct EventsJson<'a>(&'a [InvestigationEvent]);

impl serde::Serialize for EventsJson<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|e| {
            serde_json::json!({
                "event_id": e.event_id, "event_time_ms": e.event_time_ms, "api": e.api,
                "source_ip": e.source_ip, "error_code": e.error_code, "origin": e.origin,
            })
        }))
    }
}

fn session_json(s: &InvestigationSession) -> serde_json::Value {
    serde_json::json!({
        "session_name": s.session_name, "access_key_ids": s.access_key_ids,
        "access_key_count": s.access_key_count, "first_ms": s.first_ms,
        "last_ms": s.last_ms, "events": s.events, "source_ips": s.source_ips,
        "source_ip_count": s.source_ip_count,
    })
}

fn indicator_json(i: &Indicator) -> Option<serde_json::Value> {
    use serde_json::json;
    let place = |p: &Option<Place>| {
        let p = p.clone().unwrap_or_default();
        json!({
            "event_id": p.event_id, "event_time_ms": p.event_time_ms, "ip": p.ip,
            "country": p.country, "city": p.city, "asn": p.asn, "as_org": p.as_org,
            "hosting": p.hosting,
        })
    };
    let kind = indicator_type(i)
        .as_str_name()
        .trim_start_matches("INDICATOR_TYPE_");
    let mut value = match i.detail.as_ref()? {
        Detail::TtpObserved(t) => json!({
            "tactic": t.tactic, "technique": t.technique, "api": t.api, "ip": t.ip,
            "successes": t.successes, "failures": t.failures,
        }),
        Detail::ImpossibleTravel(t) => json!({
            "from": place(&t.from), "to": place(&t.to), "km": t.km, "speed": t.speed,
            "between_hosting_networks": t.between_hosting_networks,
        }),
        Detail::FlaggedIpAddress(f) => json!({
            "ip": f.ip, "flagged_by": f.flagged_by, "events": f.events,
        }),
        Detail::NewGeolocation(g) => json!({
            "country": g.country, "city": g.city, "new_country": g.new_country,
            "first_ms": g.first_ms, "events": g.events,
        }),
        Detail::NewAso(a) => json!({
            "asn": a.asn, "as_org": a.as_org, "first_ms": a.first_ms, "events": a.events,
        }),
        Detail::NewUserAgent(u) => json!({
            "user_agent": u.user_agent, "pentest_distribution": u.pentest_distribution,
            "first_ms": u.first_ms, "events": u.events,
        }),
        Detail::RelatedFinding(f) => json!({
            "id": f.id, "detector": f.detector, "title": f.title,
            "severity": f.severity().label(), "first_ms": f.first_ms, "last_ms": f.last_ms,
        }),
    };
    value["type"] = kind.into();
    Some(value)
}

#[cfg(test)]
mod tests {
    use trailhound_proto::{
        Attack, CloudTrailEvent, Geo, Network, Principal, UserAgentInfo, UserIdentity,
    };

    use super::*;

    const ROLE: &str = "arn:aws:iam::111122223333:role/web-server";
    const START: i64 = 100 * DAY_MS;

    #[derive(Clone, Copy)]
    struct Call {
        t: i64,
        ip: &'static str,
        country: &'static str,
        city: &'static str,
        lat: f64,
        lon: f64,
        asn: u32,
        agent: &'static str,
    }

    const HOME: Call = Call {
        t: 0,
        ip: "198.51.100.7",
        country: "US",
        city: "Ashburn",
        lat: 39.0,
        lon: -77.5,
        asn: 14618,
        agent: "aws-cli/2",
    };

    /// An attacker's spot.
    const MOSCOW: Call = Call {
        ip: "45.146.164.10",
        country: "RU",
        city: "Moscow",
        lat: 55.75,
        lon: 37.6,
        asn: 198610,
        agent: "aws-cli/2 kali",
        ..HOME
    };

    fn event(call: &Call, name: &str) -> EnrichedEvent {
        EnrichedEvent {
            event: Some(Box::new(CloudTrailEvent {
                event_id: format!("{name}-{}", call.t),
                event_time_ms: call.t,
                event_name: name.into(),
                source_ip: call.ip.into(),
                user_identity: Some(UserIdentity {
                    access_key_id: "ASIAEXAMPLE".into(),
                    ..Default::default()
                }),
                origin: format!("logs/x.json.gz:{}", call.t),
                ..Default::default()
            })),
            principal: Some(Principal {
                account_id: "111122223333".into(),
                arn: ROLE.into(),
                session_name: "i-0abc".into(),
                ..Default::default()
            }),
            geo: Some(Geo {
                country: call.country.into(),
                city: call.city.into(),
                latitude: call.lat,
                longitude: call.lon,
                ..Default::default()
            }),
            network: Some(Network {
                is_network_location: true,
                ip: call.ip.into(),
                asn: call.asn,
                as_org: format!("AS{}", call.asn),
                ..Default::default()
            }),
            user_agent: Some(UserAgentInfo {
                major: call.agent.into(),
                pentest_distribution: if call.agent.contains("kali") {
                    "kali".into()
                } else {
                    String::new()
                },
                ..Default::default()
            }),
            service: "iam".into(),
            ..Default::default()
        }
    }

    fn investigator() -> Investigator {
        let subject = Subject {
            account_id: "111122223333".into(),
            principal: ROLE.into(),
            start_ms: START,
            end_ms: START + DAY_MS,
        };
        let mut investigator = Investigator::new(
            subject,
            TravelLimits {
                kmh: 900.0,
                min_km: 500.0,
            },
        );
        // Thirty days of the usual: from home, with the CLI.
        for day in 70..100 {
            let call = Call {
                t: day * DAY_MS,
                ..HOME
            };
            assert!(investigator.add_event(&event(&call, "DescribeInstances")));
        }
        investigator
    }

    fn of_type(report: &Investigation, kind: IndicatorType) -> Vec<&Detail> {
        (report.indicators.iter())
            .filter(|i| indicator_type(i) == kind)
            .filter_map(|i| i.detail.as_ref())
            .collect()
    }

    #[test]
    fn a_quiet_scope_is_informational() {
        let mut investigation = investigator();
        investigation.add_event(&event(
            &Call {
                t: START + 5,
                ..HOME
            },
            "DescribeInstances",
        ));
        let report = investigation.report();
        assert_eq!(report.severity(), Severity::Informational, "{report:#?}");
        assert!(report.indicators.is_empty());
        assert_eq!((report.events_in_scope, report.baseline_events), (1, 30));
        assert_eq!(
            report.events[0].origin,
            format!("logs/x.json.gz:{}", START + 5)
        );
    }

    #[test]
    fn new_places_networks_and_clients_are_judged_against_the_45_days_before() {
        let mut investigation = investigator();
        // Seen from Moscow long ago: older than the baseline, so still new.
        assert!(!investigation.add_event(&event(
            &Call {
                t: START - 50 * DAY_MS,
                ..MOSCOW
            },
            "ListUsers"
        )));
        let someone_else = EnrichedEvent {
            principal: Some(Principal {
                arn: "arn:aws:iam::111122223333:user/alice".into(),
                ..Default::default()
            }),
            ..event(
                &Call {
                    t: START + 1,
                    ..MOSCOW
                },
                "ListUsers",
            )
        };
        assert!(!investigation.add_event(&someone_else));
        for minute in 0..3 {
            let call = Call {
                t: START + DAY_MS / 2 + minute * 60_000,
                ..MOSCOW
            };
            assert!(investigation.add_event(&event(&call, "ListUsers")));
        }
        let report = investigation.report();
        assert_eq!(
            of_type(&report, IndicatorType::NewGeolocation),
            [&Detail::NewGeolocation(NewGeolocation {
                country: "RU".into(),
                city: "Moscow".into(),
                new_country: true,
                first_ms: START + DAY_MS / 2,
                events: 3,
            })]
        );
        assert_eq!(of_type(&report, IndicatorType::NewAso).len(), 1);
        assert_eq!(of_type(&report, IndicatorType::NewUserAgent).len(), 1);
        assert_eq!(
            report.severity(),
            Severity::High,
            "a new country from a new network, Kali"
        );
        assert!(
            report
                .summary
                .contains("1 new geolocation(s), 1 new AS organisation(s), 1 new user agent(s)"),
            "{}",
            report.summary
        );
        assert_eq!(report.sessions.len(), 1);
        assert_eq!(report.sessions[0].source_ips, ["45.146.164.10"]);
    }

    #[test]
    fn impossible_travel_between_consecutive_calls() {
        let mut investigation = investigator();
        let sao_paulo = Call {
            ip: "200.160.2.3",
            country: "BR",
            city: "Sao Paulo",
            lat: -23.5,
            lon: -46.6,
            ..HOME
        };
        investigation.add_event(&event(
            &Call {
                t: START + 1_000,
                ..HOME
            },
            "GetCallerIdentity",
        ));
        investigation.add_event(&event(
            &Call {
                t: START + 3_600_000,
                ..sao_paulo
            },
            "GetCallerIdentity",
        ));
        // Home again twelve hours later: a plane could do that.
        investigation.add_event(&event(
            &Call {
                t: START + 13 * 3_600_000,
                ..HOME
            },
            "GetCallerIdentity",
        ));
        let report = investigation.report();
        let travel = of_type(&report, IndicatorType::ImpossibleTravel);
        assert_eq!(travel.len(), 1, "{travel:#?}");
        let Detail::ImpossibleTravel(trip) = travel[0] else {
            unreachable!()
        };
        let city = |p: &Option<Place>| p.as_ref().unwrap().city.clone();
        assert_eq!(
            (city(&trip.from), city(&trip.to)),
            ("Ashburn".into(), "Sao Paulo".into())
        );
        let to = trip.to.as_ref().unwrap();
        assert_eq!(
            (to.event_time_ms, to.event_id.as_str()),
            (START + 3_600_000, "GetCallerIdentity-8643600000")
        );
        assert!(!trip.between_hosting_networks);
        assert_eq!(report.severity(), Severity::High);
    }

    #[test]
    fn the_order_events_arrive_in_does_not_change_the_report() {
        let mut events = Vec::new();
        for (i, call) in [HOME, MOSCOW, HOME, MOSCOW].iter().enumerate() {
            let t = START + i as i64 * 3_600_000;
            let mut e = event(&Call { t, ..*call }, "CreateAccessKey");
            e.attack = Some(Attack {
                tactic: "persistence".into(),
                technique: "T1098.001".into(),
            });
            e.event.as_mut().unwrap().user_identity = Some(UserIdentity {
                access_key_id: format!("ASIA{i}"),
                ..Default::default()
            });
            events.push(e);
            events.push(event(
                &Call {
                    t: t - 10 * DAY_MS,
                    ..*call
                },
                "ListUsers",
            ));
        }
        let report = |events: &mut dyn Iterator<Item = &EnrichedEvent>| {
            let mut investigation = investigator();
            for e in events {
                assert!(investigation.add_event(e));
            }
            investigation.report()
        };
        let in_order = report(&mut events.iter());
        assert_eq!(in_order, report(&mut events.iter().rev()));
        assert_eq!(of_type(&in_order, IndicatorType::ImpossibleTravel).len(), 3);
        assert_eq!(
            in_order.sessions[0].access_key_ids,
            ["ASIA0", "ASIA1", "ASIA2", "ASIA3"]
        );
    }

    #[test]
    fn a_session_lists_its_first_keys_and_addresses_and_counts_them_all() {
        let mut investigation = investigator();
        for i in (0..30).rev() {
            let mut e = event(
                &Call {
                    t: START + i,
                    ..HOME
                },
                "GetObject",
            );
            let call = e.event.as_mut().unwrap();
            call.source_ip = format!("198.51.100.{i}");
            call.user_identity.as_mut().unwrap().access_key_id = format!("ASIA{i:02}");
            investigation.add_event(&e);
        }
        let report = investigation.report();
        let session = &report.sessions[0];
        assert_eq!(
            (
                session.events,
                session.access_key_count,
                session.source_ip_count
            ),
            (30, 30, 30)
        );
        assert_eq!(session.access_key_ids.len(), SESSION_VALUES);
        assert_eq!(session.access_key_ids[..2], ["ASIA00", "ASIA01"]);
        assert_eq!(session.source_ips[19], "198.51.100.19");
    }

    #[test]
    fn flagged_addresses_ttps_and_related_findings() {
        let mut investigation = investigator();
        let mut flagged = event(
            &Call {
                t: START + 10,
                ..HOME
            },
            "CreateAccessKey",
        );
        flagged.network.as_mut().unwrap().flagged_by = vec!["tor-exits.txt".into()];
        flagged.attack = Some(Attack {
            tactic: "persistence".into(),
            technique: "T1098.001".into(),
        });
        investigation.add_event(&flagged);
        let mut failed = flagged.clone();
        failed.failed = true;
        failed.event.as_mut().unwrap().event_time_ms += 1;
        investigation.add_event(&failed);
        let finding = |id: &str, principal: &str, first_event_ms: i64| {
            let mut f = Finding {
                id: id.into(),
                detector: "TH-011".into(),
                account_id: "111122223333".into(),
                principal: principal.into(),
                first_event_ms,
                last_event_ms: first_event_ms,
                ..Default::default()
            };
            f.set_severity(Severity::Medium);
            f
        };
        assert!(investigation.add_finding(&finding("in", ROLE, START + 10)));
        assert!(!investigation.add_finding(&finding("before", ROLE, START - 1)));
        assert!(!investigation.add_finding(&finding(
            "other",
            "arn:aws:iam::111122223333:user/bob",
            START
        )));
        let report = investigation.report();
        assert_eq!(
            of_type(&report, IndicatorType::FlaggedIpAddress),
            [&Detail::FlaggedIpAddress(FlaggedIpAddress {
                ip: HOME.ip.into(),
                flagged_by: vec!["tor-exits.txt".into()],
                events: 2,
            })]
        );
        assert_eq!(
            of_type(&report, IndicatorType::TtpObserved),
            [&Detail::TtpObserved(TtpObserved {
                tactic: "persistence".into(),
                technique: "T1098.001".into(),
                api: "iam:CreateAccessKey".into(),
                ip: HOME.ip.into(),
                successes: 1,
                failures: 1,
            })]
        );
        let related = of_type(&report, IndicatorType::RelatedFinding);
        assert_eq!(related.len(), 1);
        assert_eq!(report.severity(), Severity::Critical);
    }

    #[test]
    fn without_a_baseline_everything_is_new_and_says_so() {
        let subject = Subject {
            account_id: String::new(),
            principal: ROLE.into(),
            start_ms: START,
            end_ms: START + DAY_MS,
        };
        let mut investigation = Investigator::new(
            subject,
            TravelLimits {
                kmh: 900.0,
                min_km: 500.0,
            },
        );
        investigation.add_event(&event(&Call { t: START, ..HOME }, "DescribeInstances"));
        let report = investigation.report();
        assert_eq!(report.account_id, "111122223333", "taken from the events");
        assert!(
            report.summary.ends_with("so every behaviour is new"),
            "{}",
            report.summary
        );
        assert_eq!(report.severity(), Severity::Medium);
    }
}
