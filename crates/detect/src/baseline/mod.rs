//! The baseline stage: learns normal behaviour and says, for every event,
//! which of its attributes are new (an [`Observation`]). All state is
//! windowed by event time and lives in three hops, each keyed by what its
//! state is about, so that every replica count gives the same answer
//! (DESIGN.md, "State keyed by something else"):
//!
//! 1. [`profile`], by (account, principal): the principal's own behaviour;
//! 2. [`account`], by account: activation clock, active regions, inventory;
//! 3. [`command`], by API call: organisation-wide volume and countries.
//!
//! The NATS services run each hop on its own partitioned subject; `scan`
//! and the tests chain them in one [`Baseline`].

pub mod account;
pub mod command;
pub mod duplicates;
mod known;
pub mod profile;
pub mod values;

use std::sync::Arc;

use trailhound_proto::{EnrichedEvent, Geo, NoveltyKind, Observation, Place, Principal};
use trailhound_state::{Batch, Layout, StateError, Store};

pub use account::AccountBaseline;
pub use command::CommandBaseline;
pub use profile::{Observed, ProfileBaseline};

use crate::config::DetectionConfig;
use crate::travel::Call;

/// Every table of the three hops, for opening a store that holds them all.
pub fn tables() -> Vec<&'static str> {
    [profile::TABLES, account::TABLES, command::TABLES].concat()
}

/// The versioned layouts of the hops' tables (a table not named has the
/// layout it was first written in).
pub const LAYOUTS: &[Layout] = &[profile::LAYOUT];

/// A hop after the profile: adds the facts its state holds to an
/// observation (the account and command hops).
pub trait ObservationHop {
    fn observe(&mut self, observation: &mut Observation) -> Result<(), StateError>;
    /// Move every state change since the last commit into `batch`.
    fn drain_into(&mut self, batch: &mut Batch);
}

/// The three hops chained in one process.
#[derive(Debug)]
pub struct Baseline {
    pub profile: ProfileBaseline,
    pub account: AccountBaseline,
    pub command: CommandBaseline,
}

impl Baseline {
    pub fn new(config: Arc<DetectionConfig>, store: Option<Arc<Store>>) -> Self {
        Self {
            profile: ProfileBaseline::new(config.clone(), store.clone()),
            account: AccountBaseline::new(config.clone(), store.clone()),
            command: CommandBaseline::new(config, store),
        }
    }

    /// The event's observation; `None` for a duplicate of one observed before.
    pub fn observe(
        &mut self,
        enriched: Box<EnrichedEvent>,
    ) -> Result<Option<Observation>, StateError> {
        let mut observation = observation_of(enriched);
        let observed = self.observe_into(&mut observation)?;
        Ok((observed == Observed::New).then_some(observation))
    }

    /// The three hops on `observation`'s enriched event; what else it holds
    /// (from an earlier event) is replaced, its vectors and strings reused.
    /// A duplicate of an event observed before goes no further than the
    /// profile.
    pub fn observe_into(&mut self, observation: &mut Observation) -> Result<Observed, StateError> {
        if self.profile.observe(observation)? == Observed::Duplicate {
            return Ok(Observed::Duplicate);
        }
        self.account.observe(observation)?;
        self.command.observe(observation)?;
        Ok(Observed::New)
    }

    pub fn drain_into(&mut self, batch: &mut Batch) {
        self.profile.drain_into(batch);
        self.account.drain_into(batch);
        self.command.drain_into(batch);
    }
}

/// The profile key of a principal, account and ARN, into `key`.
pub fn principal_key(principal: &Principal, key: &mut String) {
    key.clear();
    for part in [&principal.account_id, "\u{1f}", &principal.arn] {
        key.push_str(part);
    }
}

/// The command key of an event: `eventSource:eventName`.
pub fn command_key(enriched: &EnrichedEvent) -> String {
    values::value(NoveltyKind::Command, enriched)
}

/// A top-level string field of requestParameters. Finds the field without
/// building the whole document (requestParameters can be long).
pub fn request_field(json: &str, field: &str) -> Option<String> {
    let value = sonic_rs::get_from_str(json, [field]).ok()?;
    sonic_rs::from_str(value.as_raw_str()).ok()
}

/// The event's region, or "global" for a global service.
fn region_of(enriched: &EnrichedEvent) -> &str {
    if enriched.global_service {
        "global"
    } else {
        enriched
            .event
            .as_ref()
            .map_or("", |e| e.aws_region.as_str())
    }
}

/// The location of a call from a real network address (not an AWS
/// service calling on the principal's behalf), when it has a country.
fn located_geo(enriched: &EnrichedEvent) -> Option<&Geo> {
    let located = enriched
        .network
        .as_ref()
        .is_some_and(|n| n.is_network_location);
    enriched
        .geo
        .as_ref()
        .filter(|g| located && !g.country.is_empty())
}

/// A located call, when the database has coordinates for it.
fn located_call(enriched: &EnrichedEvent) -> Option<Call<'_>> {
    let geo = located_geo(enriched).filter(|g| g.latitude != 0.0 || g.longitude != 0.0)?;
    let event = enriched.event.as_ref()?;
    Some(Call {
        t: event.event_time_ms,
        event_id: &event.event_id,
        geo,
        // A located call has its network: `located_geo` checked it.
        network: enriched.network.as_ref()?,
    })
}

/// A new observation of `enriched`, for the hops to fill.
pub fn observation_of(enriched: Box<EnrichedEvent>) -> Observation {
    Observation {
        enriched: Some(enriched),
        ..Default::default()
    }
}

/// An observation's enriched event, borrowed through its field alone so
/// that a hop can set the observation's other fields meanwhile.
fn enriched(field: &Option<Box<EnrichedEvent>>) -> &EnrichedEvent {
    field
        .as_deref()
        .expect("observations carry their enriched event")
}

/// Where a located call came from, when the database has coordinates.
pub fn place(enriched: &EnrichedEvent) -> Option<Place> {
    located_call(enriched).map(|call| call.to_place())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detectors::testing::{config, ev};
    use trailhound_proto::{ComputeKind, PrincipalKind};

    #[test]
    fn observing_into_a_used_observation_gives_what_a_fresh_one_gets() {
        let config = Arc::new(config());
        let mut fresh = Baseline::new(config.clone(), None);
        let mut reusing = Baseline::new(config, None);
        let located = |day, name: &str, (country, city, lat, lon): (&str, &str, f64, f64)| {
            let mut e = ev(day, name).from(country, city, 3320, "Telekom");
            let geo = e.enriched.geo.as_mut().unwrap();
            (geo.latitude, geo.longitude) = (lat, lon);
            e.enriched.network.as_mut().unwrap().is_network_location = true;
            e
        };
        let (berlin, paris) = (("DE", "Berlin", 52.5, 13.4), ("FR", "Paris", 48.9, 2.3));
        let mut events = Vec::new();
        for day in 0..20 {
            events.push(located(day, "DescribeInstances", berlin));
            events.push(located(day, "GetObject", paris).service("s3.amazonaws.com"));
            events.push(
                ev(day, "ListBuckets")
                    .not_located("AWS Internal")
                    .principal(
                        "arn:aws:iam::111122223333:role/app",
                        PrincipalKind::Role,
                        "i-0123456789abcdef0",
                        ComputeKind::Ec2,
                    ),
            );
            events.push(ev(day, "RunInstances").failed("AccessDenied"));
        }
        // A burst: a surge whose bucket is described by its earliest event.
        events.extend((0..40).map(|i| ev(20, &format!("Describe{i}")).at_ms(i * 1_000)));
        let mut reused = Observation::default();
        let (mut rates, mut neighbours, mut homes) = (0, 0, 0);
        for e in events {
            let expected = fresh.observe(Box::new(e.enriched.clone())).unwrap();
            let expected = expected.expect("no event is a duplicate");
            reused.enriched = Some(Box::new(e.enriched));
            assert_eq!(reusing.observe_into(&mut reused).unwrap(), Observed::New);
            assert_eq!(reused, expected);
            rates += usize::from(!expected.rates.is_empty());
            neighbours += usize::from(!expected.neighbours.is_empty());
            homes += usize::from(expected.compute_home.is_some());
        }
        assert!(
            rates > 0 && neighbours > 0 && homes > 0,
            "every part is compared: {rates} {neighbours} {homes}"
        );
    }

    #[test]
    fn request_field_reads_top_level_strings_only() {
        let json = r#"{"policy":{"roleArn":"inner"},"roleArn":"arn:aws:iam::1:role/a\"b","n":3,"bucketName":"b\u00e9"}"#;
        assert_eq!(
            request_field(json, "roleArn").as_deref(),
            Some("arn:aws:iam::1:role/a\"b")
        );
        assert_eq!(request_field(json, "bucketName").as_deref(), Some("bé"));
        assert_eq!(request_field(json, "n"), None, "not a string");
        assert_eq!(request_field(json, "userName"), None, "absent");
        assert_eq!(request_field("", "roleArn"), None, "no parameters");
        assert_eq!(request_field("null", "roleArn"), None);
    }
}
