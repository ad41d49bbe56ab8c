//! Building candidate findings from observations: the fields every finding
//! carries, so a detector states only what is its own.

use trailhound_proto::{
    Attack, CloudTrailEvent, EnrichedEvent, EvidenceEvent, Finding, Guidance, Network, Novelty,
    NoveltyKind, Observation, Principal, PrincipalFacts, RateOrigin, Severity,
};

/// Evidence events kept per finding (the earliest ones).
pub const MAX_EVIDENCE: usize = 20;

/// Read access to the parts of an observation detectors use.
pub trait ObservationExt {
    fn enriched(&self) -> &EnrichedEvent;
    fn event(&self) -> &CloudTrailEvent;
    fn principal(&self) -> &Principal;
    fn facts(&self) -> &PrincipalFacts;
    fn novelty(&self, kind: NoveltyKind) -> Option<&Novelty>;
    /// The event's value of the novelty's kind ("DE", "ec2|eu-west-1" …).
    fn value(&self, n: &Novelty) -> String;
    fn located(&self) -> bool;
}

impl ObservationExt for Observation {
    fn enriched(&self) -> &EnrichedEvent {
        self.enriched
            .as_ref()
            .expect("observations carry their event")
    }
    fn event(&self) -> &CloudTrailEvent {
        self.enriched()
            .event
            .as_ref()
            .expect("enriched events carry their event")
    }
    fn principal(&self) -> &Principal {
        self.enriched()
            .principal
            .as_ref()
            .expect("enriched events carry their principal")
    }
    fn facts(&self) -> &PrincipalFacts {
        self.facts
            .as_ref()
            .expect("observations carry principal facts")
    }
    fn novelty(&self, kind: NoveltyKind) -> Option<&Novelty> {
        self.novelties.iter().find(|n| n.kind == kind as i32)
    }
    fn value(&self, n: &Novelty) -> String {
        crate::baseline::values::value(n.kind(), self.enriched())
    }
    fn located(&self) -> bool {
        self.enriched()
            .network
            .as_ref()
            .is_some_and(|n| n.is_network_location)
    }
}

/// Static text of a detector's guidance (from the seed documents).
pub struct GuidanceText {
    pub why_it_matters: &'static str,
    pub why_it_may_be_fine: &'static str,
    pub what_to_check: &'static [&'static str],
    pub how_to_resolve: &'static [&'static str],
}

impl GuidanceText {
    fn to_proto(&self) -> Guidance {
        Guidance {
            why_it_matters: self.why_it_matters.into(),
            why_it_may_be_fine: self.why_it_may_be_fine.into(),
            what_to_check: self.what_to_check.iter().map(|s| s.to_string()).collect(),
            how_to_resolve: self.how_to_resolve.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// Common resolution steps for suspected credential compromise (seed 000).
pub const ROTATE_CREDENTIALS: &[&str] = &[
    "Delete or rotate the AWS access keys associated with the identity.",
    "Delete any console login profile that should not exist; enforce MFA.",
    "Delete unrecognised resources the identity created.",
    "Analyse which resources and data were accessed.",
];

/// A finding for one observation: one event of evidence, count 1.
pub fn candidate(
    obs: &Observation,
    detector: &str,
    title: impl Into<String>,
    severity: Severity,
    key: impl Into<String>,
    guidance: &GuidanceText,
) -> Finding {
    let event = obs.event();
    let principal = obs.principal();
    let this_event = EvidenceEvent {
        event_id: event.event_id.clone(),
        event_time_ms: event.event_time_ms,
    };
    let mut f = Finding {
        id: String::new(),
        detector: detector.to_string(),
        title: title.into(),
        severity: severity as i32,
        account_id: principal.account_id.clone(),
        principal: principal.arn.clone(),
        key: key.into(),
        first_event_ms: event.event_time_ms,
        last_event_ms: event.event_time_ms,
        count: 1,
        evidence: vec![this_event.clone()],
        guidance: Some(guidance.to_proto()),
        rank: severity as u32 * 2 + 1,
        described: Some(this_event),
        ..Default::default()
    };
    describe_origin(&mut f, origin_of(obs.enriched()));
    f
}

/// Where an event came from and what it was, as a finding reports it.
pub fn origin_of(e: &EnrichedEvent) -> RateOrigin {
    let event = e.event.as_ref().expect("enriched events carry their event");
    RateOrigin {
        region: event.aws_region.clone(),
        source_ip: event.source_ip.clone(),
        country: e
            .geo
            .as_ref()
            .map(|g| g.country.clone())
            .unwrap_or_default(),
        network: e.network.clone(),
        user_agent: event.user_agent.clone(),
        attack: e.attack.clone(),
    }
}

/// `origin_of(e)` encoded into `buf`, written from the event's fields
/// without copying them first: it is made for every activity bucket an
/// event opens.
pub fn encode_origin(e: &EnrichedEvent, buf: &mut Vec<u8>) {
    use prost::encoding::{message, string};
    const NONE: &String = &String::new();
    let event = e.event.as_ref().expect("enriched events carry their event");
    let country = e.geo.as_ref().map_or(NONE, |g| &g.country);
    // Field by field in tag order, empty strings left out, as prost does.
    for (tag, value) in [(1, &event.aws_region), (2, &event.source_ip), (3, country)] {
        if !value.is_empty() {
            string::encode(tag, value, buf);
        }
    }
    if let Some(network) = &e.network {
        message::encode(4, network, buf);
    }
    if !event.user_agent.is_empty() {
        string::encode(5, &event.user_agent, buf);
    }
    if let Some(attack) = &e.attack {
        message::encode(6, attack, buf);
    }
}

/// Describe a finding by `origin`: its region, source, client and ATT&CK
/// mapping.
pub fn describe_origin(f: &mut Finding, origin: RateOrigin) {
    f.region = origin.region;
    f.source_ip = origin.source_ip;
    f.country = origin.country;
    let network = origin.network.unwrap_or_default();
    f.as_org = network.as_org;
    f.asn = network.asn;
    f.user_agent = origin.user_agent;
    f.attack = origin.attack.into_iter().collect();
}

/// ATT&CK technique for a finding whose detector implies one.
pub fn attack(tactic: &str, technique: &str) -> Attack {
    Attack {
        tactic: tactic.into(),
        technique: technique.into(),
    }
}

/// The context every behavioural finding ends with: how long the principal
/// has been active, the countries it is known from, and whether the source
/// address is inside AWS (and which source decided).
pub fn context_facts(obs: &Observation, window_days: u32) -> Vec<String> {
    principal_context(obs.facts(), obs.enriched().network.as_ref(), window_days)
}

/// [`context_facts`] from the principal's facts and the event's network.
pub fn principal_context(
    f: &PrincipalFacts,
    network: Option<&Network>,
    window_days: u32,
) -> Vec<String> {
    let mut facts = vec![format!(
        "principal active on {} of the last {window_days} days; first seen {}",
        f.active_days,
        date(f.first_seen_ms)
    )];
    if !f.known_countries.is_empty() {
        // Facts stored before the count was kept have only the list.
        let count = (f.known_country_count as usize).max(f.known_countries.len());
        let more = match count - f.known_countries.len() {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        facts.push(format!(
            "{count} known countries: {}{more}",
            f.known_countries.join(", ")
        ));
    }
    let network = network.filter(|n| n.is_network_location && !n.aws_source.is_empty());
    if let Some(n) = network {
        let verdict = if n.in_aws {
            format!("inside AWS ({} {})", n.aws_region, n.aws_service)
        } else {
            "outside AWS".into()
        };
        facts.push(format!(
            "source {} is {verdict}, decided by {}",
            n.ip, n.aws_source
        ));
    }
    facts
}

/// "first seen now; seen on 0 of the last 45 days".
pub fn novelty_fact(what: &str, value: &str, n: &Novelty, window_days: u32) -> String {
    format!(
        "{what} {value}: seen on {} of the previous {window_days} days (first occurrence in the window)",
        n.days_seen
    )
}

/// "2024-07-31 12:05 UTC".
pub fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || ms.to_string(),
        |t| t.format("%Y-%m-%d %H:%M UTC").to_string(),
    )
}

pub fn date(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map_or_else(|| ms.to_string(), |t| t.format("%Y-%m-%d").to_string())
}

#[cfg(test)]
mod tests {
    use trailhound_proto::{EnrichedEvent, Message, RateOrigin};

    use super::{attack, encode_origin, origin_of};
    use crate::detectors::testing::ev;

    #[test]
    fn an_origin_encoded_in_place_is_the_message_encoded() {
        let full = EnrichedEvent {
            attack: Some(attack("Discovery", "T1580")),
            ..ev(0, "DescribeInstances").enriched
        };
        let mut bare = full.clone();
        bare.geo = None;
        bare.network = None;
        bare.attack = None;
        bare.event.as_mut().unwrap().user_agent.clear();
        // Every field named: a field added to RateOrigin fails to compile
        // here until this event fills it, and then the comparison below
        // fails until `encode_origin` writes it.
        let RateOrigin {
            region,
            source_ip,
            country,
            network,
            user_agent,
            attack,
        } = origin_of(&full);
        let filled = [&region, &source_ip, &country, &user_agent]
            .iter()
            .all(|s| !s.is_empty());
        assert!(filled && network.is_some() && attack.is_some());
        // The buffer is appended to, as a reused one is after `clear`.
        let mut buf = Vec::new();
        for e in [full, bare] {
            buf.clear();
            encode_origin(&e, &mut buf);
            assert_eq!(buf, origin_of(&e).encode_to_vec());
        }
    }

    #[test]
    fn dates() {
        assert_eq!(super::date(0), "1970-01-01");
        assert_eq!(super::date(1_722_431_184_000), "2024-07-31");
        assert_eq!(super::date(951_782_400_000), "2000-02-29");
    }
}
