//! Investigations (DETECTIONS.md "Investigation", after Amazon Detective's):
//! what one principal did over a scope of time, judged against its own
//! behaviour in the 45 days before the scope. Pure: events and findings go
//! in, in any order, and a report comes out.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;
use trailhound_cloudtrail::time::format_ms;
use trailhound_detect::baseline::place;
use trailhound_detect::travel::{Trip, label};
use trailhound_proto::{EnrichedEvent, Finding, Place, Severity};

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

/// When two calls are too far apart to be one person (TH-016's settings).
#[derive(Debug, Clone, Copy)]
pub struct TravelLimits {
    pub kmh: f64,
    pub min_km: f64,
}

/// The report.
#[derive(Debug, Serialize)]
pub struct Investigation {
    pub account_id: String,
    pub principal: String,
    pub scope_start_ms: i64,
    pub scope_end_ms: i64,
    pub severity: &'static str,
    pub summary: String,
    pub events_in_scope: u64,
    /// Events of the 45 days before the scope: what "new" is judged against.
    pub baseline_events: u64,
    pub sessions: Vec<Session>,
    pub indicators: Vec<Indicator>,
    /// The scope's events, earliest first, with where each was read.
    pub events: Vec<EventRef>,
}

/// A role session (by its name), or for a user an access key, active in
/// the scope.
#[derive(Debug, Serialize, PartialEq)]
pub struct Session {
    pub session_name: String,
    /// A role session's temporary keys rotate: every one it used.
    pub access_key_ids: Vec<String>,
    pub first_ms: i64,
    pub last_ms: i64,
    pub events: u64,
    pub source_ips: Vec<String>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct EventRef {
    pub event_id: String,
    pub event_time_ms: i64,
    /// `service:EventName`.
    pub api: String,
    pub source_ip: String,
    pub error_code: String,
    /// File and line or index it was read from (`scan`).
    pub origin: String,
}

/// An indicator of compromise, of Detective's types.
#[derive(Debug, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Indicator {
    /// Calls mapped to ATT&CK, per tactic, technique, API and address.
    TtpObserved {
        tactic: String,
        technique: String,
        api: String,
        ip: String,
        successes: u64,
        failures: u64,
    },
    /// Two consecutive calls too far apart for the time between them.
    ImpossibleTravel {
        from: String,
        from_ip: String,
        from_event_id: String,
        from_ms: i64,
        to: String,
        to_ip: String,
        to_event_id: String,
        to_ms: i64,
        km: u64,
        speed: String,
        /// Both ends are hosting, cloud or VPN networks: servers, not people.
        between_hosting_networks: bool,
    },
    FlaggedIpAddress {
        ip: String,
        flagged_by: Vec<String>,
        events: u64,
    },
    /// A country, or a city of a known country, not seen in the baseline.
    NewGeolocation {
        country: String,
        city: String,
        new_country: bool,
        first_ms: i64,
        events: u64,
    },
    NewAso {
        asn: u32,
        as_org: String,
        first_ms: i64,
        events: u64,
    },
    NewUserAgent {
        user_agent: String,
        /// "kali", "parrot" or "pentoo" when the agent names one.
        pentest_distribution: String,
        first_ms: i64,
        events: u64,
    },
    /// A finding on the principal active in the scope.
    RelatedFinding {
        id: String,
        detector: String,
        title: String,
        severity: &'static str,
        first_ms: i64,
        last_ms: i64,
    },
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

    fn is_subject(&self, account_id: &str, principal: &str) -> bool {
        principal == self.subject.principal
            && (self.subject.account_id.is_empty() || account_id == self.subject.account_id)
    }

    /// Take an event into account if it is the principal's, in the scope
    /// or the baseline before it; says whether it was.
    pub fn add_event(&mut self, event: &EnrichedEvent) -> bool {
        let (Some(principal), Some(call)) = (&event.principal, &event.event) else {
            return false;
        };
        if !self.is_subject(&principal.account_id, &principal.arn) {
            return false;
        }
        let t = call.event_time_ms;
        let baseline_start = self.subject.start_ms - BASELINE_DAYS * DAY_MS;
        if (self.subject.start_ms..self.subject.end_ms).contains(&t) {
            self.in_scope.push(event.clone());
        } else if (baseline_start..self.subject.start_ms).contains(&t) {
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
        let related = active && self.is_subject(&finding.account_id, &finding.principal);
        if related {
            self.findings.push(finding.clone());
        }
        related
    }

    pub fn report(mut self) -> Investigation {
        self.in_scope.sort_by(|a, b| {
            let key = |e: &EnrichedEvent| {
                let call = e.event.as_deref().expect("checked when added");
                (call.event_time_ms, call.event_id.clone())
            };
            key(a).cmp(&key(b))
        });
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
        indicators.extend(self.findings.iter().map(|f| Indicator::RelatedFinding {
            id: f.id.clone(),
            detector: f.detector.clone(),
            title: f.title.clone(),
            severity: f.severity().label(),
            first_ms: f.first_event_ms,
            last_ms: f.last_event_ms,
        }));
        let severity = severity(&indicators, self.baseline_events > 0);
        let account_id = match self.in_scope.first().and_then(|e| e.principal.as_ref()) {
            Some(p) if self.subject.account_id.is_empty() => p.account_id.clone(),
            _ => self.subject.account_id.clone(),
        };
        let sessions = sessions(&self.in_scope);
        let mut report = Investigation {
            account_id,
            principal: self.subject.principal.clone(),
            scope_start_ms: self.subject.start_ms,
            scope_end_ms: self.subject.end_ms,
            severity: severity.label(),
            summary: String::new(),
            events_in_scope: self.in_scope.len() as u64,
            baseline_events: self.baseline_events,
            sessions,
            indicators,
            events: self.in_scope.iter().map(event_ref).collect(),
        };
        report.summary = summary(&report);
        report
    }

    /// New geolocations, AS organisations and user agents, each with its
    /// first call in the scope and how many calls it made.
    fn new_behaviour(&self) -> Vec<Indicator> {
        let seen = &self.baseline;
        // (kind, key) → (first call, calls); BTreeMap for a stable order.
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
                let distribution = event
                    .user_agent
                    .as_ref()
                    .map(|u| u.pentest_distribution.clone())
                    .unwrap_or_default();
                count(agents.entry((agent, distribution)).or_insert((t, 0)), t);
            }
        }
        let places = places
            .into_iter()
            .map(
                |((country, city), (first_ms, events))| Indicator::NewGeolocation {
                    new_country: !seen.countries.contains(&country),
                    country,
                    city,
                    first_ms,
                    events,
                },
            );
        let networks = networks
            .into_iter()
            .map(|((asn, as_org), (first_ms, events))| Indicator::NewAso {
                asn,
                as_org,
                first_ms,
                events,
            });
        let agents =
            agents
                .into_iter()
                .map(|((user_agent, pentest_distribution), (first_ms, events))| {
                    Indicator::NewUserAgent {
                        user_agent,
                        pentest_distribution,
                        first_ms,
                        events,
                    }
                });
        places.chain(networks).chain(agents).collect()
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
                out.push(Indicator::ImpossibleTravel {
                    from: label(from),
                    from_ip: from.ip.clone(),
                    from_event_id: from.event_id.clone(),
                    from_ms: from.event_time_ms,
                    to: label(to),
                    to_ip: to.ip.clone(),
                    to_event_id: to.event_id.clone(),
                    to_ms: to.event_time_ms,
                    km: trip.km.round() as u64,
                    speed: trip.speed(),
                    between_hosting_networks: from.hosting && to.hosting,
                });
            }
        }
        out
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
        .map(|(ip, (flagged_by, events))| Indicator::FlaggedIpAddress {
            ip,
            flagged_by,
            events,
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
        .map(
            |((tactic, technique, api, ip), (successes, failures))| Indicator::TtpObserved {
                tactic,
                technique,
                api,
                ip,
                successes,
                failures,
            },
        )
        .collect()
}

fn api(event: &EnrichedEvent) -> String {
    let name = event.event.as_deref().map_or("", |c| c.event_name.as_str());
    format!("{}:{name}", event.service)
}

fn sessions(events: &[EnrichedEvent]) -> Vec<Session> {
    let mut sessions: BTreeMap<(String, String), Session> = BTreeMap::new();
    for event in events {
        let call = event.event.as_deref().expect("checked when added");
        let session_name = event
            .principal
            .as_ref()
            .map(|p| p.session_name.clone())
            .unwrap_or_default();
        let access_key_id = call
            .user_identity
            .as_ref()
            .map(|u| u.access_key_id.clone())
            .unwrap_or_default();
        let t = call.event_time_ms;
        let key = if session_name.is_empty() {
            (String::new(), access_key_id.clone())
        } else {
            (session_name.clone(), String::new())
        };
        let session = sessions.entry(key).or_insert_with(|| Session {
            session_name,
            access_key_ids: Vec::new(),
            first_ms: t,
            last_ms: t,
            events: 0,
            source_ips: Vec::new(),
        });
        session.first_ms = session.first_ms.min(t);
        session.last_ms = session.last_ms.max(t);
        session.events += 1;
        add_once(&mut session.access_key_ids, &access_key_id);
        add_once(&mut session.source_ips, &call.source_ip);
    }
    let mut sessions: Vec<Session> = sessions.into_values().collect();
    sessions.sort_by_key(|s| s.first_ms);
    sessions
}

fn add_once(values: &mut Vec<String>, value: &str) {
    if !value.is_empty() && !values.iter().any(|v| v == value) {
        values.push(value.to_string());
    }
}

fn event_ref(event: &EnrichedEvent) -> EventRef {
    let call = event.event.as_deref().expect("checked when added");
    EventRef {
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
    let new_country = indicators.iter().any(|i| {
        matches!(
            i,
            Indicator::NewGeolocation {
                new_country: true,
                ..
            }
        )
    });
    let new_network = indicators
        .iter()
        .any(|i| matches!(i, Indicator::NewAso { .. }));
    indicators
        .iter()
        .map(|indicator| match indicator {
            Indicator::FlaggedIpAddress { .. } => Severity::Critical,
            Indicator::ImpossibleTravel {
                between_hosting_networks: false,
                ..
            } => Severity::High,
            Indicator::ImpossibleTravel { .. } => Severity::Low,
            Indicator::NewUserAgent {
                pentest_distribution,
                ..
            } if !pentest_distribution.is_empty() => Severity::High,
            Indicator::NewGeolocation { .. } if has_baseline && new_country && new_network => {
                Severity::High
            }
            Indicator::NewGeolocation { .. }
            | Indicator::NewAso { .. }
            | Indicator::NewUserAgent { .. } => Severity::Medium,
            Indicator::TtpObserved { .. } => Severity::Low,
            Indicator::RelatedFinding { severity, .. } => match *severity {
                "critical" => Severity::Critical,
                "high" => Severity::High,
                "medium" => Severity::Medium,
                "low" => Severity::Low,
                _ => Severity::Informational,
            },
        })
        .max()
        .unwrap_or(Severity::Informational)
}

fn summary(report: &Investigation) -> String {
    let count = |pred: fn(&Indicator) -> bool| report.indicators.iter().filter(|i| pred(i)).count();
    let techniques: HashSet<&str> = report
        .indicators
        .iter()
        .filter_map(|i| match i {
            Indicator::TtpObserved { technique, .. } => Some(technique.as_str()),
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
        count(|i| matches!(i, Indicator::NewGeolocation { .. })),
        count(|i| matches!(i, Indicator::NewAso { .. })),
        count(|i| matches!(i, Indicator::NewUserAgent { .. })),
        count(|i| matches!(i, Indicator::ImpossibleTravel { .. })),
        count(|i| matches!(i, Indicator::FlaggedIpAddress { .. })),
        techniques.len(),
        count(|i| matches!(i, Indicator::RelatedFinding { .. })),
    );
    if report.baseline_events == 0 && report.events_in_scope > 0 {
        text.push_str(&format!(
            "; no activity in the {BASELINE_DAYS} days before the scope, so every behaviour is new"
        ));
    }
    text
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

    fn of_type<'a>(report: &'a Investigation, kind: &str) -> Vec<&'a Indicator> {
        report
            .indicators
            .iter()
            .filter(|i| serde_json::to_value(i).unwrap()["type"] == kind)
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
        assert_eq!(report.severity, "informational", "{report:#?}");
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
            of_type(&report, "NEW_GEOLOCATION"),
            [&Indicator::NewGeolocation {
                country: "RU".into(),
                city: "Moscow".into(),
                new_country: true,
                first_ms: START + DAY_MS / 2,
                events: 3,
            }]
        );
        assert_eq!(of_type(&report, "NEW_ASO").len(), 1);
        assert_eq!(of_type(&report, "NEW_USER_AGENT").len(), 1);
        assert_eq!(
            report.severity, "high",
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
        let travel = of_type(&report, "IMPOSSIBLE_TRAVEL");
        assert_eq!(travel.len(), 1, "{travel:#?}");
        let Indicator::ImpossibleTravel {
            from,
            to,
            between_hosting_networks,
            ..
        } = travel[0]
        else {
            unreachable!()
        };
        assert_eq!(
            (from.as_str(), to.as_str()),
            ("Ashburn, US", "Sao Paulo, BR")
        );
        assert!(!between_hosting_networks);
        assert_eq!(report.severity, "high");
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
            of_type(&report, "FLAGGED_IP_ADDRESS"),
            [&Indicator::FlaggedIpAddress {
                ip: HOME.ip.into(),
                flagged_by: vec!["tor-exits.txt".into()],
                events: 2,
            }]
        );
        assert_eq!(
            of_type(&report, "TTP_OBSERVED"),
            [&Indicator::TtpObserved {
                tactic: "persistence".into(),
                technique: "T1098.001".into(),
                api: "iam:CreateAccessKey".into(),
                ip: HOME.ip.into(),
                successes: 1,
                failures: 1,
            }]
        );
        let related = of_type(&report, "RELATED_FINDING");
        assert_eq!(related.len(), 1);
        assert_eq!(report.severity, "critical");
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
        assert_eq!(report.severity, "medium");
    }
}
