//! Investigations (DETECTIONS.md "Investigation", after Amazon Detective's):
//! what one principal did over a scope of time, judged against its own
//! behaviour in the 45 days before the scope. Pure: events and findings go
//! in, in any order, and a report (`trailhound.v1.Investigation`) comes out.

use std::collections::{BTreeMap, HashSet};

use trailhound_cloudtrail::time::format_ms;
use trailhound_detect::baseline::place;
use trailhound_detect::travel::Trip;
use trailhound_proto::indicator::Detail;
use trailhound_proto::{
    EnrichedEvent, Finding, FlaggedIpAddress, ImpossibleTravel, Indicator, IndicatorType,
    Investigation, InvestigationEvent, InvestigationSession, NewAso, NewGeolocation, NewUserAgent,
    Place, RelatedFinding, Severity, TtpObserved,
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

/// Builds an investigation from whatever events and findings it is given.
#[derive(Debug)]
pub struct Investigator {
    subject: Subject,
    travel: TravelLimits,
    baseline: Seen,
    baseline_events: u64,
    in_scope: Vec<EnrichedEvent>,
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

impl Investigator {
    pub fn new(subject: Subject, travel: TravelLimits) -> Self {
        Self {
            subject,
            travel,
            baseline: Seen::default(),
            baseline_events: 0,
            in_scope: Vec::new(),
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
            self.in_scope.push(event.clone());
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
        let key = |e: &EnrichedEvent| {
            let call = e.event.as_deref().expect("checked when added");
            (call.event_time_ms, call.event_id.clone())
        };
        self.in_scope.sort_by_key(key);
        let mut indicators = Vec::new();
        indicators.extend(self.new_behaviour());
        indicators.extend(self.impossible_travel());
        indicators.extend(flagged_addresses(&self.in_scope));
        indicators.extend(ttps(&self.in_scope));
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
        let account_id = match self.in_scope.first().and_then(|e| e.principal.as_ref()) {
            Some(p) if self.subject.account_id.is_empty() => p.account_id.clone(),
            _ => self.subject.account_id.clone(),
        };
        let mut report = Investigation {
            account_id,
            principal: self.subject.principal.clone(),
            scope_start_ms: self.subject.start_ms,
            scope_end_ms: self.subject.end_ms,
            severity: severity as i32,
            events_in_scope: self.in_scope.len() as u64,
            baseline_events: self.baseline_events,
            sessions: sessions(&self.in_scope),
            indicators,
            events: self.in_scope.iter().map(event_ref).collect(),
            ..Default::default()
        };
        report.summary = summary(&report);
        report
    }

    /// New geolocations, AS organisations and user agents, each with its
    /// first call in the scope and how many calls it made.
    fn new_behaviour(&self) -> Vec<Indicator> {
        let seen = &self.baseline;
        // key → (first call, calls); BTreeMap for a stable order.
        let mut places: BTreeMap<(String, String), (i64, u64)> = BTreeMap::new();
        let mut networks: BTreeMap<(u32, String), (i64, u64)> = BTreeMap::new();
        let mut agents: BTreeMap<(String, String), (i64, u64)> = BTreeMap::new();
        let count = |entry: &mut (i64, u64), t: i64| {
            entry.0 = entry.0.min(t);
            entry.1 += 1;
        };
        for event in &self.in_scope {
            let t = event.event.as_deref().map_or(0, |c| c.event_time_ms);
            if let Some(place) = geolocation(event).filter(|p| !seen.places.contains(p)) {
                count(places.entry(place).or_insert((t, 0)), t);
            }
            if let Some(net) = network(event).filter(|n| !seen.networks.contains(n)) {
                count(networks.entry(net).or_insert((t, 0)), t);
            }
            if let Some(agent) = user_agent(event).filter(|a| !seen.user_agents.contains(a)) {
                let distribution = (event.user_agent.as_ref())
                    .map(|u| u.pentest_distribution.clone())
                    .unwrap_or_default();
                count(agents.entry((agent, distribution)).or_insert((t, 0)), t);
            }
        }
        let places = places
            .into_iter()
            .map(|((country, city), (first_ms, events))| {
                Detail::NewGeolocation(NewGeolocation {
                    new_country: !seen.countries.contains(&country),
                    country,
                    city,
                    first_ms,
                    events,
                })
            });
        let networks = networks
            .into_iter()
            .map(|((asn, as_org), (first_ms, events))| {
                Detail::NewAso(NewAso {
                    asn,
                    as_org,
                    first_ms,
                    events,
                })
            });
        let agents =
            agents
                .into_iter()
                .map(|((user_agent, pentest_distribution), (first_ms, events))| {
                    Detail::NewUserAgent(NewUserAgent {
                        user_agent,
                        pentest_distribution,
                        first_ms,
                        events,
                    })
                });
        places
            .chain(networks)
            .chain(agents)
            .map(indicator)
            .collect()
    }

    /// Consecutive located calls from different places too far apart.
    fn impossible_travel(&self) -> Vec<Indicator> {
        let located: Vec<Place> = self.in_scope.iter().filter_map(place).collect();
        let mut out = Vec::new();
        for pair in located.windows(2) {
            let (from, to) = (&pair[0], &pair[1]);
            if (from.latitude, from.longitude) == (to.latitude, to.longitude) {
                continue;
            }
            if let Some(trip) = Trip::between(from, to, self.travel.kmh, self.travel.min_km) {
                out.push(indicator(Detail::ImpossibleTravel(ImpossibleTravel {
                    km: trip.km.round() as u64,
                    speed: trip.speed(),
                    between_hosting_networks: from.hosting && to.hosting,
                    from: Some(from.clone()),
                    to: Some(to.clone()),
                })));
            }
        }
        out
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

fn flagged_addresses(events: &[EnrichedEvent]) -> Vec<Indicator> {
    let mut flagged: BTreeMap<String, (Vec<String>, u64)> = BTreeMap::new();
    for network in events.iter().filter_map(|e| e.network.as_ref()) {
        if network.flagged_by.is_empty() {
            continue;
        }
        let entry = flagged
            .entry(network.ip.clone())
            .or_insert_with(|| (network.flagged_by.clone(), 0));
        entry.1 += 1;
    }
    flagged
        .into_iter()
        .map(|(ip, (flagged_by, events))| {
            indicator(Detail::FlaggedIpAddress(FlaggedIpAddress {
                ip,
                flagged_by,
                events,
            }))
        })
        .collect()
}

fn ttps(events: &[EnrichedEvent]) -> Vec<Indicator> {
    let mut seen: BTreeMap<(String, String, String, String), (u64, u64)> = BTreeMap::new();
    for event in events {
        let (Some(attack), Some(call)) = (&event.attack, event.event.as_deref()) else {
            continue;
        };
        let key = (
            attack.tactic.clone(),
            attack.technique.clone(),
            api(event),
            call.source_ip.clone(),
        );
        let counts = seen.entry(key).or_default();
        if event.failed {
            counts.1 += 1;
        } else {
            counts.0 += 1;
        }
    }
    seen.into_iter()
        .map(|((tactic, technique, api, ip), (successes, failures))| {
            indicator(Detail::TtpObserved(TtpObserved {
                tactic,
                technique,
                api,
                ip,
                successes,
                failures,
            }))
        })
        .collect()
}

fn api(event: &EnrichedEvent) -> String {
    let name = event.event.as_deref().map_or("", |c| c.event_name.as_str());
    format!("{}:{name}", event.service)
}

fn sessions(events: &[EnrichedEvent]) -> Vec<InvestigationSession> {
    let mut sessions: BTreeMap<(String, String), InvestigationSession> = BTreeMap::new();
    for event in events {
        let call = event.event.as_deref().expect("checked when added");
        let session_name = (event.principal.as_ref())
            .map(|p| p.session_name.clone())
            .unwrap_or_default();
        let access_key_id = (call.user_identity.as_ref())
            .map(|u| u.access_key_id.clone())
            .unwrap_or_default();
        let t = call.event_time_ms;
        // A role session by its name (its keys rotate); a user's by its key.
        let key = if session_name.is_empty() {
            (String::new(), access_key_id.clone())
        } else {
            (session_name.clone(), String::new())
        };
        let session = sessions.entry(key).or_insert_with(|| InvestigationSession {
            session_name,
            first_ms: t,
            last_ms: t,
            ..Default::default()
        });
        session.first_ms = session.first_ms.min(t);
        session.last_ms = session.last_ms.max(t);
        session.events += 1;
        add_once(&mut session.access_key_ids, &access_key_id);
        add_once(&mut session.source_ips, &call.source_ip);
    }
    let mut sessions: Vec<InvestigationSession> = sessions.into_values().collect();
    sessions.sort_by_key(|s| s.first_ms);
    sessions
}

fn add_once(values: &mut Vec<String>, value: &str) {
    if !value.is_empty() && !values.iter().any(|v| v == value) {
        values.push(value.to_string());
    }
}

fn event_ref(event: &EnrichedEvent) -> InvestigationEvent {
    let call = event.event.as_deref().expect("checked when added");
    InvestigationEvent {
        event_id: call.event_id.clone(),
        event_time_ms: call.event_time_ms,
        api: api(event),
        source_ip: call.source_ip.clone(),
        error_code: call.error_code.clone(),
        origin: call.origin.clone(),
    }
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

/// The report as JSON (`trailhound investigate --format json`): the
/// protobuf fields, severities and indicator types by name.
pub fn to_json(report: &Investigation) -> serde_json::Value {
    use serde_json::json;
    let place = |p: &Option<Place>| {
        let p = p.clone().unwrap_or_default();
        json!({
            "event_id": p.event_id, "event_time_ms": p.event_time_ms, "ip": p.ip,
            "country": p.country, "city": p.city, "asn": p.asn, "as_org": p.as_org,
            "hosting": p.hosting,
        })
    };
    let indicators: Vec<serde_json::Value> = (report.indicators.iter())
        .filter_map(|i| {
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
        })
        .collect();
    let sessions: Vec<serde_json::Value> = (report.sessions.iter())
        .map(|s| {
            json!({
                "session_name": s.session_name, "access_key_ids": s.access_key_ids,
                "first_ms": s.first_ms, "last_ms": s.last_ms, "events": s.events,
                "source_ips": s.source_ips,
            })
        })
        .collect();
    let events: Vec<serde_json::Value> = (report.events.iter())
        .map(|e| {
            json!({
                "event_id": e.event_id, "event_time_ms": e.event_time_ms, "api": e.api,
                "source_ip": e.source_ip, "error_code": e.error_code, "origin": e.origin,
            })
        })
        .collect();
    json!({
        "id": report.id,
        "account_id": report.account_id,
        "principal": report.principal,
        "scope_start_ms": report.scope_start_ms,
        "scope_end_ms": report.scope_end_ms,
        "severity": report.severity().label(),
        "summary": report.summary,
        "events_in_scope": report.events_in_scope,
        "baseline_events": report.baseline_events,
        "sessions": sessions,
        "indicators": indicators,
        "events": events,
    })
}

#[cfg(test)]
mod tests {
    use trailhound_proto::{
        Attack, CloudTrailEvent, Geo, Network, Principal, UserAgentInfo, UserIdentity,
    };

    use super::*;

    const ROLE: &str = "arn:aws:iam::111122223333:role/web-server";
    const START: i64 = 100 * DAY_MS;

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
        let moscow = Call {
            ip: "45.146.164.10",
            country: "RU",
            city: "Moscow",
            lat: 55.75,
            lon: 37.6,
            asn: 198610,
            agent: "aws-cli/2 kali",
            ..HOME
        };
        assert!(!investigation.add_event(&event(
            &Call {
                t: START - 50 * DAY_MS,
                ..moscow
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
                    ..moscow
                },
                "ListUsers",
            )
        };
        assert!(!investigation.add_event(&someone_else));
        for minute in 0..3 {
            let call = Call {
                t: START + DAY_MS / 2 + minute * 60_000,
                ..moscow
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
        assert!(!trip.between_hosting_networks);
        assert_eq!(report.severity(), Severity::High);
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
