//! Hand-made event sequences for detector tests: a principal's history
//! through the real baseline, then the observation under test.

use std::sync::Arc;
use std::time::Duration;

use trailhound_proto::{
    CloudTrailEvent, ComputeKind, EnrichedEvent, Finding, Geo, Network, Observation, Principal,
    PrincipalKind, UserAgentInfo, UserIdentity,
};

use super::Detectors;
use crate::{Baseline, DAY_MS, DetectionConfig};

pub const T0: i64 = 1_700_000_000_000;
pub const ACCOUNT: &str = "111122223333";
pub const USER: &str = "arn:aws:iam::111122223333:user/alice";

/// Training 10 days, activation 5 days: short enough for hand-made histories.
pub fn config() -> DetectionConfig {
    DetectionConfig {
        training_period: Duration::from_secs(10 * 86_400),
        activation_period: Duration::from_secs(5 * 86_400),
        ..DetectionConfig::default()
    }
}

/// An event builder with sensible defaults: alice, ec2 in eu-west-1, from
/// Germany on Deutsche Telekom with aws-cli/2.
#[derive(Clone)]
pub struct Ev {
    pub enriched: EnrichedEvent,
}

pub fn ev(day: i64, name: &str) -> Ev {
    let id = format!("ev-{day}-{name}-{}", next_number());
    Ev {
        enriched: EnrichedEvent {
            event: Some(Box::new(CloudTrailEvent {
                event_id: id,
                event_time_ms: T0 + day * DAY_MS,
                event_source: "ec2.amazonaws.com".into(),
                event_name: name.into(),
                aws_region: "eu-west-1".into(),
                source_ip: "80.1.1.1".into(),
                user_agent: "aws-cli/2.15.0".into(),
                recipient_account_id: ACCOUNT.into(),
                user_identity: Some(UserIdentity {
                    r#type: "IAMUser".into(),
                    arn: USER.into(),
                    ..Default::default()
                }),
                ..Default::default()
            })),
            principal: Some(Principal {
                account_id: ACCOUNT.into(),
                arn: USER.into(),
                kind: PrincipalKind::IamUser as i32,
                ..Default::default()
            }),
            geo: Some(Geo {
                country: "DE".into(),
                city: "Berlin".into(),
                ..Default::default()
            }),
            network: Some(Network {
                is_network_location: true,
                ip: "80.1.1.1".into(),
                asn: 3320,
                as_org: "Deutsche Telekom AG".into(),
                ..Default::default()
            }),
            user_agent: Some(UserAgentInfo {
                family: "aws-cli".into(),
                major: "aws-cli/2".into(),
                ..Default::default()
            }),
            attack: None,
            service: "ec2".into(),
            global_service: false,
            failed: false,
        },
    }
}

/// Each event its own id (a repeated one is a duplicate the profile drops),
/// numbered per test thread so that a test sees the same ids every run.
fn next_number() -> u64 {
    thread_local!(static NEXT: std::cell::Cell<u64> = const { std::cell::Cell::new(0) });
    NEXT.with(|next| next.replace(next.get() + 1))
}

impl Ev {
    fn event(&mut self) -> &mut CloudTrailEvent {
        self.enriched.event.as_mut().unwrap()
    }
    pub fn id(mut self, id: &str) -> Self {
        self.event().event_id = id.into();
        self
    }
    pub fn at_ms(mut self, offset: i64) -> Self {
        self.event().event_time_ms += offset;
        self
    }
    pub fn region(mut self, r: &str) -> Self {
        self.event().aws_region = r.into();
        self
    }
    pub fn service(mut self, source: &str) -> Self {
        let short = source.trim_end_matches(".amazonaws.com").to_string();
        self.enriched.global_service = matches!(short.as_str(), "iam" | "sts" | "organizations");
        self.event().event_source = source.into();
        self.enriched.service = short;
        self
    }
    pub fn from(mut self, country: &str, city: &str, asn: u32, aso: &str) -> Self {
        self.enriched.geo = Some(Geo {
            country: country.into(),
            city: city.into(),
            ..Default::default()
        });
        let n = self.enriched.network.as_mut().unwrap();
        n.asn = asn;
        n.as_org = aso.into();
        self
    }
    pub fn not_located(mut self, source: &str) -> Self {
        self.event().source_ip = source.into();
        self.enriched.geo = None;
        self.enriched.network = Some(Network::default());
        self
    }
    pub fn agent(mut self, major: &str, pentest: &str) -> Self {
        self.event().user_agent = major.into();
        self.enriched.user_agent = Some(UserAgentInfo {
            family: major.split('/').next().unwrap().into(),
            major: major.into(),
            pentest_distribution: pentest.into(),
            ..Default::default()
        });
        self
    }
    pub fn failed(mut self, code: &str) -> Self {
        self.event().error_code = code.into();
        self.enriched.failed = true;
        self
    }
    pub fn tactic(mut self, tactic: &str) -> Self {
        self.enriched.attack = Some(trailhound_proto::Attack {
            tactic: tactic.into(),
            technique: "T0000".into(),
        });
        self
    }
    pub fn principal(
        mut self,
        arn: &str,
        kind: PrincipalKind,
        session: &str,
        compute: ComputeKind,
    ) -> Self {
        let p = self.enriched.principal.as_mut().unwrap();
        p.arn = arn.into();
        p.kind = kind as i32;
        p.session_name = session.into();
        p.compute = compute as i32;
        self
    }
    pub fn identity(mut self, f: impl FnOnce(&mut UserIdentity)) -> Self {
        f(self.event().user_identity.as_mut().unwrap());
        self
    }
    pub fn response(mut self, json: &str) -> Self {
        self.event().response_elements_json = json.into();
        self
    }
    pub fn read_only(mut self, ro: bool) -> Self {
        self.event().read_only = Some(ro);
        self
    }
}

/// A baseline and detectors over in-memory state.
pub struct Harness {
    pub baseline: Baseline,
    pub detectors: Detectors,
}

impl Harness {
    pub fn new(config: DetectionConfig) -> Self {
        let config = Arc::new(config);
        Self {
            baseline: Baseline::new(config.clone(), None),
            detectors: Detectors::new(config),
        }
    }

    pub fn observe(&mut self, e: Ev) -> Observation {
        self.baseline
            .observe(Box::new(e.enriched))
            .unwrap()
            .expect("test events have ids of their own: a duplicate is dropped")
    }

    /// Feed an event; return the findings of one detector.
    pub fn run(&mut self, e: Ev, detector: &str) -> Vec<Finding> {
        let obs = self.observe(e);
        let mut out = Vec::new();
        self.detectors.detect(&obs, &mut out);
        out.retain(|f| f.detector == detector);
        out
    }

    /// A daily routine for `days` days: the learned normal.
    pub fn history(&mut self, days: i64, routine: impl Fn(i64) -> Vec<Ev>) {
        for d in 0..days {
            for e in routine(d) {
                self.observe(e);
            }
        }
    }
}
