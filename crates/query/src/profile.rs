//! Profiles (DESIGN.md, "Query"): what one principal normally does, over a
//! window of its events (by default the 45 days the baseline learns over),
//! in the dimensions the baseline learns, each value with its calls,
//! failures, days, first and last call. Values are written with the
//! baseline's own function (`trailhound_detect::baseline::values`), so a
//! profile names them exactly as findings do. Pure: events go in, in any
//! order, and a `trailhound.v1.Profile` comes out.

use std::collections::{BTreeMap, HashMap, HashSet};

use trailhound_detect::baseline::values::write_value;
use trailhound_proto::{
    DayActivity, EnrichedEvent, GetProfileRequest, NoveltyKind, Profile, ProfileDimension,
    ProfileValue,
};

use crate::investigation::{BASELINE_DAYS, Subject};

/// Values per dimension when the request does not say, and at most.
pub const DEFAULT_VALUES: usize = 100;
pub const MAX_VALUES: usize = 1_000;
/// The longest window a profile covers.
pub const MAX_DAYS: u32 = 366;
const DAY_MS: i64 = 86_400_000;

/// The baseline's dimensions, by the name a profile gives them.
const LEARNED: [(NoveltyKind, &str); 9] = [
    (NoveltyKind::ServiceRegion, "service_region"),
    (NoveltyKind::Country, "country"),
    (NoveltyKind::City, "city"),
    (NoveltyKind::Aso, "aso"),
    (NoveltyKind::UserAgent, "user_agent"),
    (NoveltyKind::Command, "command"),
    (NoveltyKind::ErrorCode, "error_code"),
    (NoveltyKind::AssumedRole, "assumed_role"),
    (NoveltyKind::S3Bucket, "s3_bucket"),
];
/// Dimensions the baseline does not learn but an analyst asks for.
const SOURCE_IP: usize = LEARNED.len();
const SESSION: usize = LEARNED.len() + 1;
const DIMENSIONS: usize = LEARNED.len() + 2;

/// The window a request asks for: `days` before `until_ms` (now when 0).
pub fn requested_window(request: &GetProfileRequest, now_ms: i64) -> Result<Subject, String> {
    if request.principal.is_empty() {
        return Err("principal is required".into());
    }
    if request.days > MAX_DAYS {
        return Err(format!("days is at most {MAX_DAYS}"));
    }
    let days = match request.days {
        0 => BASELINE_DAYS,
        days => i64::from(days),
    };
    let end_ms = match request.until_ms {
        0 => now_ms,
        t => t,
    };
    Ok(Subject {
        account_id: request.account_id.clone(),
        principal: request.principal.clone(),
        start_ms: end_ms.saturating_sub(days * DAY_MS),
        end_ms,
    })
}

/// The number of values per dimension a request asks for.
pub fn requested_values(request: &GetProfileRequest) -> usize {
    match request.max_values as usize {
        0 => DEFAULT_VALUES,
        n => n.min(MAX_VALUES),
    }
}

/// Builds a profile from whatever events it is given.
#[derive(Debug)]
pub struct Profiler {
    window: Subject,
    account_id: String,
    events: Tally,
    days: BTreeMap<i64, (u64, u64)>,
    hours: [u64; 24],
    dimensions: Vec<HashMap<String, Tally>>,
    /// Reused for each value, so a value seen before costs no allocation.
    value: String,
}

/// Calls with one value.
#[derive(Debug, Default)]
struct Tally {
    events: u64,
    failed: u64,
    days: HashSet<i64>,
    first_ms: i64,
    last_ms: i64,
}

impl Tally {
    fn count(&mut self, t: i64, failed: bool) {
        if self.events == 0 || t < self.first_ms {
            self.first_ms = t;
        }
        if self.events == 0 || t > self.last_ms {
            self.last_ms = t;
        }
        self.events += 1;
        self.failed += u64::from(failed);
        self.days.insert(t.div_euclid(DAY_MS));
    }
}

impl Profiler {
    pub fn new(window: Subject) -> Self {
        Self {
            window,
            account_id: String::new(),
            events: Tally::default(),
            days: BTreeMap::new(),
            hours: [0; 24],
            dimensions: (0..DIMENSIONS).map(|_| HashMap::new()).collect(),
            value: String::new(),
        }
    }

    /// Count an event if it is the principal's and in the window; says
    /// whether it was.
    pub fn add_event(&mut self, event: &EnrichedEvent) -> bool {
        let (Some(principal), Some(call)) = (&event.principal, &event.event) else {
            return false;
        };
        let t = call.event_time_ms;
        if !self.window.covers(&principal.account_id, &principal.arn)
            || !(self.window.start_ms..self.window.end_ms).contains(&t)
        {
            return false;
        }
        if self.account_id.is_empty() {
            self.account_id.clone_from(&principal.account_id);
        }
        let failed = event.failed;
        self.events.count(t, failed);
        let day = self.days.entry(t.div_euclid(DAY_MS)).or_default();
        day.0 += 1;
        day.1 += u64::from(failed);
        self.hours[(t.rem_euclid(DAY_MS) / 3_600_000) as usize] += 1;

        for (i, (kind, _)) in LEARNED.iter().enumerate() {
            if write_value(*kind, event, &mut self.value) {
                tally(&mut self.dimensions[i], &self.value).count(t, failed);
            }
        }
        if !call.source_ip.is_empty() {
            tally(&mut self.dimensions[SOURCE_IP], &call.source_ip).count(t, failed);
        }
        // A role session by its name (its keys rotate); a user's by its key.
        let key = call
            .user_identity
            .as_ref()
            .map(|u| u.access_key_id.as_str());
        let session = Some(principal.session_name.as_str())
            .filter(|name| !name.is_empty())
            .or(key)
            .filter(|session| !session.is_empty());
        if let Some(session) = session {
            tally(&mut self.dimensions[SESSION], session).count(t, failed);
        }
        true
    }

    /// The profile, with at most `max_values` values per dimension (those
    /// with the most calls, then by value).
    pub fn profile(self, max_values: usize) -> Profile {
        let names = LEARNED
            .iter()
            .map(|(_, name)| *name)
            .chain(["source_ip", "session"]);
        let dimensions = names
            .zip(self.dimensions)
            .map(|(name, values)| {
                let distinct = values.len() as u64;
                let mut values: Vec<ProfileValue> = values
                    .into_iter()
                    .map(|(value, t)| ProfileValue {
                        value,
                        events: t.events,
                        failed_events: t.failed,
                        days: t.days.len() as u32,
                        first_ms: t.first_ms,
                        last_ms: t.last_ms,
                    })
                    .collect();
                values.sort_by(|a, b| b.events.cmp(&a.events).then(a.value.cmp(&b.value)));
                values.truncate(max_values);
                ProfileDimension {
                    name: name.to_string(),
                    distinct,
                    values,
                }
            })
            .collect();
        let account_id = match self.window.account_id.as_str() {
            "" => self.account_id,
            account => account.to_string(),
        };
        Profile {
            account_id,
            principal: self.window.principal,
            window_start_ms: self.window.start_ms,
            window_end_ms: self.window.end_ms,
            events: self.events.events,
            failed_events: self.events.failed,
            first_ms: self.events.first_ms,
            last_ms: self.events.last_ms,
            days: (self.days.into_iter())
                .map(|(day, (events, failed_events))| DayActivity {
                    day_start_ms: day * DAY_MS,
                    events,
                    failed_events,
                })
                .collect(),
            events_by_hour: self.hours.to_vec(),
            dimensions,
        }
    }
}

fn tally<'a>(values: &'a mut HashMap<String, Tally>, value: &str) -> &'a mut Tally {
    if !values.contains_key(value) {
        values.insert(value.to_string(), Tally::default());
    }
    values.get_mut(value).expect("inserted above")
}

/// The profile as JSON (`trailhound profile --format json`): the protobuf
/// fields by name.
pub fn to_json(profile: &Profile) -> serde_json::Value {
    use serde_json::json;
    let days: Vec<serde_json::Value> = (profile.days.iter())
        .map(|d| {
            json!({
                "day_start_ms": d.day_start_ms, "events": d.events,
                "failed_events": d.failed_events,
            })
        })
        .collect();
    let dimensions: Vec<serde_json::Value> = (profile.dimensions.iter())
        .map(|d| {
            let values: Vec<serde_json::Value> = (d.values.iter())
                .map(|v| {
                    json!({
                        "value": v.value, "events": v.events, "failed_events": v.failed_events,
                        "days": v.days, "first_ms": v.first_ms, "last_ms": v.last_ms,
                    })
                })
                .collect();
            json!({ "name": d.name, "distinct": d.distinct, "values": values })
        })
        .collect();
    json!({
        "account_id": profile.account_id,
        "principal": profile.principal,
        "window_start_ms": profile.window_start_ms,
        "window_end_ms": profile.window_end_ms,
        "events": profile.events,
        "failed_events": profile.failed_events,
        "first_ms": profile.first_ms,
        "last_ms": profile.last_ms,
        "days": days,
        "events_by_hour": profile.events_by_hour,
        "dimensions": dimensions,
    })
}

#[cfg(test)]
mod tests {
    use trailhound_detect::baseline::values::value;
    use trailhound_proto::{CloudTrailEvent, Geo, Network, Principal, UserAgentInfo, UserIdentity};

    use super::*;

    const ROLE: &str = "arn:aws:iam::111122223333:role/web-server";
    const END: i64 = 100 * DAY_MS;

    fn call(t: i64, session: &str, country: &str, city: &str, error: &str) -> EnrichedEvent {
        EnrichedEvent {
            event: Some(Box::new(CloudTrailEvent {
                event_id: format!("e{t}"),
                event_time_ms: t,
                event_source: "iam.amazonaws.com".into(),
                event_name: "ListUsers".into(),
                source_ip: "198.51.100.7".into(),
                aws_region: "us-east-1".into(),
                error_code: error.into(),
                user_identity: Some(UserIdentity {
                    access_key_id: format!("ASIA{session}"),
                    ..Default::default()
                }),
                ..Default::default()
            })),
            principal: Some(Principal {
                account_id: "111122223333".into(),
                arn: ROLE.into(),
                session_name: session.into(),
                ..Default::default()
            }),
            geo: Some(Geo {
                country: country.into(),
                city: city.into(),
                ..Default::default()
            }),
            network: Some(Network {
                is_network_location: true,
                asn: 14618,
                as_org: "AMAZON-AES".into(),
                ..Default::default()
            }),
            user_agent: Some(UserAgentInfo {
                major: "aws-cli/2".into(),
                ..Default::default()
            }),
            service: "iam".into(),
            failed: !error.is_empty(),
            ..Default::default()
        }
    }

    fn window(account_id: &str) -> Subject {
        requested_window(
            &GetProfileRequest {
                account_id: account_id.into(),
                principal: ROLE.into(),
                until_ms: END,
                ..Default::default()
            },
            0,
        )
        .unwrap()
    }

    fn dimension<'a>(profile: &'a Profile, name: &str) -> &'a ProfileDimension {
        (profile.dimensions.iter())
            .find(|d| d.name == name)
            .unwrap_or_else(|| panic!("no dimension {name}"))
    }

    #[test]
    fn a_principal_s_calls_in_the_window_by_dimension() {
        let mut profiler = Profiler::new(window(""));
        let hour = 3_600_000;
        let calls = [
            call(60 * DAY_MS + 9 * hour, "i-1", "US", "Ashburn", ""),
            call(
                61 * DAY_MS + 9 * hour,
                "i-1",
                "US",
                "Ashburn",
                "AccessDenied",
            ),
            call(61 * DAY_MS + 14 * hour, "i-2", "DE", "Berlin", ""),
            // Outside the 45 days before END, on either side.
            call(END - 46 * DAY_MS, "i-1", "BR", "Recife", ""),
            call(END, "i-1", "BR", "Recife", ""),
        ];
        let counted: Vec<bool> = calls.iter().map(|c| profiler.add_event(c)).collect();
        assert_eq!(counted, [true, true, true, false, false]);
        let mut other = call(60 * DAY_MS, "i-1", "US", "Ashburn", "");
        other.principal.as_mut().unwrap().arn = "arn:aws:iam::111122223333:role/other".into();
        assert!(!profiler.add_event(&other));

        let profile = profiler.profile(DEFAULT_VALUES);
        assert_eq!(profile.account_id, "111122223333", "from the calls");
        assert_eq!(
            (profile.window_start_ms, profile.window_end_ms),
            (55 * DAY_MS, END)
        );
        assert_eq!((profile.events, profile.failed_events), (3, 1));
        assert_eq!(profile.first_ms, 60 * DAY_MS + 9 * hour);
        assert_eq!(profile.last_ms, 61 * DAY_MS + 14 * hour);
        let days: Vec<(i64, u64, u64)> = (profile.days.iter())
            .map(|d| (d.day_start_ms, d.events, d.failed_events))
            .collect();
        assert_eq!(days, [(60 * DAY_MS, 1, 0), (61 * DAY_MS, 2, 1)]);
        assert_eq!(profile.events_by_hour.len(), 24);
        assert_eq!(
            (profile.events_by_hour[9], profile.events_by_hour[14]),
            (2, 1)
        );

        let cities = dimension(&profile, "city");
        assert_eq!(cities.distinct, 2);
        let ashburn = &cities.values[0];
        assert_eq!(
            ashburn.value,
            value(NoveltyKind::City, &calls[0]),
            "as findings name it"
        );
        assert_eq!(
            (ashburn.events, ashburn.failed_events, ashburn.days),
            (2, 1, 2)
        );
        assert_eq!(
            (ashburn.first_ms, ashburn.last_ms),
            (
                calls[0].event.as_ref().unwrap().event_time_ms,
                calls[1].event.as_ref().unwrap().event_time_ms
            )
        );
        let command = &dimension(&profile, "command").values[0];
        assert_eq!(
            (command.value.as_str(), command.events),
            ("iam.amazonaws.com:ListUsers", 3)
        );
        let errors = &dimension(&profile, "error_code").values;
        assert_eq!(
            (errors[0].value.as_str(), errors[0].events),
            ("AccessDenied", 1)
        );
        let sessions: Vec<&str> = (dimension(&profile, "session").values.iter())
            .map(|v| v.value.as_str())
            .collect();
        assert_eq!(sessions, ["i-1", "i-2"], "a role's sessions by name");
        assert_eq!(dimension(&profile, "source_ip").values[0].events, 3);
        assert_eq!(dimension(&profile, "assumed_role").distinct, 0);
    }

    #[test]
    fn a_user_s_sessions_are_its_access_keys_and_values_are_capped() {
        let mut profiler = Profiler::new(window("111122223333"));
        for (i, t) in (60..70).enumerate() {
            let mut e = call(t * DAY_MS, "", "US", "Ashburn", "");
            e.event.as_mut().unwrap().source_ip = format!("198.51.100.{}", i % 4);
            profiler.add_event(&e);
        }
        let mut elsewhere = call(61 * DAY_MS, "", "US", "Ashburn", "");
        elsewhere.principal.as_mut().unwrap().account_id = "444455556666".into();
        assert!(!profiler.add_event(&elsewhere), "another account's");

        let profile = profiler.profile(2);
        let ips = dimension(&profile, "source_ip");
        assert_eq!(ips.distinct, 4, "every value counted");
        let shown: Vec<(&str, u64)> = (ips.values.iter())
            .map(|v| (v.value.as_str(), v.events))
            .collect();
        assert_eq!(
            shown,
            [("198.51.100.0", 3), ("198.51.100.1", 3)],
            "the two with the most calls, then by value"
        );
        let session = &dimension(&profile, "session").values[0];
        assert_eq!((session.value.as_str(), session.events), ("ASIA", 10));
    }

    #[test]
    fn requests_are_checked_and_defaulted() {
        let request = |principal: &str, days: u32, until_ms: i64| GetProfileRequest {
            principal: principal.into(),
            days,
            until_ms,
            ..Default::default()
        };
        let w = requested_window(&request(ROLE, 0, 0), END).unwrap();
        assert_eq!(
            (w.start_ms, w.end_ms),
            (END - 45 * DAY_MS, END),
            "45 days to now"
        );
        let w = requested_window(&request(ROLE, 7, 50 * DAY_MS), END).unwrap();
        assert_eq!((w.start_ms, w.end_ms), (43 * DAY_MS, 50 * DAY_MS));
        assert!(requested_window(&request("", 0, 0), END).is_err());
        assert!(requested_window(&request(ROLE, MAX_DAYS + 1, 0), END).is_err());
        let values = |max_values| {
            requested_values(&GetProfileRequest {
                max_values,
                ..Default::default()
            })
        };
        assert_eq!(
            (values(0), values(5), values(1_000_000)),
            (DEFAULT_VALUES, 5, MAX_VALUES)
        );
    }

    #[test]
    fn the_json_names_every_field() {
        let mut profiler = Profiler::new(window(""));
        profiler.add_event(&call(60 * DAY_MS, "i-1", "US", "Ashburn", ""));
        let json = to_json(&profiler.profile(DEFAULT_VALUES));
        assert_eq!(json["events"], 1);
        assert_eq!(json["days"][0]["day_start_ms"], 60 * DAY_MS);
        assert_eq!(json["events_by_hour"].as_array().unwrap().len(), 24);
        let country = (json["dimensions"].as_array().unwrap().iter())
            .find(|d| d["name"] == "country")
            .unwrap();
        assert_eq!(country["values"][0]["value"], "US");
        assert_eq!(country["distinct"], 1);
    }
}
