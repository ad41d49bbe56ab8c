//! The baseline stage: learns each principal's normal behaviour and says,
//! for every event, which of its attributes are new (an [`Observation`]).
//!
//! State, all windowed by event time:
//! - `profiles`, per (account, principal): services per region, countries,
//!   cities, AS organisations, user agents, compute sessions' regions;
//! - `accounts`: each account's first event (activation) and active
//!   regions (TH-001's unused region);
//! - `commands`: organisation-wide countries per API call (TH-003);
//! - `inventory`: instance and function regions from RunInstances and
//!   CreateFunction (TH-002's home region);
//!
//! In the distributed deployment the account-, command- and
//! inventory-keyed tables are reached by a second hop partitioned by their
//! own key (DESIGN.md); in `scan` they live beside the profiles.

use std::sync::Arc;

use foldhash::HashMap;

use serde::{Deserialize, Serialize};
use trailhound_proto::{
    ComputeHome, ComputeKind, EnrichedEvent, Novelty, NoveltyKind, Observation, PrincipalFacts,
};
use trailhound_state::{Batch, StateError, Store, Table};

use crate::config::DetectionConfig;
use crate::seen::{Seen, day, record_in};

/// The tables the baseline stage keeps, for opening its store.
pub const TABLES: &[&str] = &["profiles", "accounts", "commands", "inventory"];

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

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct AccountProfile {
    /// The account's earliest event: novelty detectors wait for the
    /// activation period of data after it.
    pub data_start_ms: i64,
    pub regions: HashMap<String, Seen>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CommandProfile {
    /// (day, events) for the window.
    pub daily: Vec<(i64, u32)>,
    pub countries: HashMap<String, Seen>,
    pub pruned_day: i64,
}

#[derive(Debug)]
pub struct Baseline {
    config: Arc<DetectionConfig>,
    profiles: Table<Profile>,
    accounts: Table<AccountProfile>,
    commands: Table<CommandProfile>,
    inventory: Table<String>,
}

impl Baseline {
    pub fn new(config: Arc<DetectionConfig>, store: Option<Arc<Store>>) -> Self {
        Self {
            config,
            profiles: Table::new("profiles", store.clone()),
            accounts: Table::new("accounts", store.clone()),
            commands: Table::new("commands", store.clone()),
            inventory: Table::new("inventory", store),
        }
    }

    /// Move every state change since the last commit into `batch`.
    pub fn drain_into(&mut self, batch: &mut Batch) {
        self.profiles.drain_into(batch);
        self.accounts.drain_into(batch);
        self.commands.drain_into(batch);
        self.inventory.drain_into(batch);
    }

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
        let region = if enriched.global_service {
            "global"
        } else {
            event.aws_region.as_str()
        };

        self.learn_inventory(&enriched)?;
        let compute = ComputeKind::try_from(principal.compute).unwrap_or(ComputeKind::None);
        let inventory_home = match compute {
            ComputeKind::Ec2 => self
                .inventory
                .get(&format!(
                    "{}|{}",
                    principal.account_id, principal.session_name
                ))?
                .cloned(),
            ComputeKind::Lambda => self
                .inventory
                .get(&format!(
                    "{}|lambda:{}",
                    principal.account_id, principal.session_name
                ))?
                .cloned(),
            ComputeKind::None => None,
        };

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

        let key = format!("{}\u{1f}{}", principal.account_id, principal.arn);
        let profile = self.profiles.entry(&key, Profile::default)?;
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

        let located = enriched
            .network
            .as_ref()
            .is_some_and(|n| n.is_network_location);
        let geo = enriched
            .geo
            .as_ref()
            .filter(|g| located && !g.country.is_empty());
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
                inventory_home,
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

        let mut facts = PrincipalFacts {
            first_seen_ms,
            active_days,
            data_start_ms: 0,
            known_countries,
            known_asos,
            known_user_agents,
            new_principal,
        };

        let account = self
            .accounts
            .entry(&principal.account_id, || AccountProfile {
                data_start_ms: t,
                ..Default::default()
            })?;
        account.data_start_ms = account.data_start_ms.min(t);
        let region_unused_in_account = !enriched.global_service
            && record_in(&mut account.regions, region, t, window, window_days).is_new;

        facts.data_start_ms = account.data_start_ms;

        let command = format!("{}:{}", event.event_source, event.event_name);
        let commands = self.commands.entry(&command, CommandProfile::default)?;
        let command_events_in_window = record_daily(&mut commands.daily, day(t), window_days);
        if let Some(geo) = geo {
            if day(t) > commands.pruned_day {
                commands.pruned_day = day(t);
                commands.countries.retain(|_, s| s.live(t, window));
            }
            let s = record_in(
                &mut commands.countries,
                &geo.country,
                t,
                window,
                window_days,
            );
            push(
                NoveltyKind::CommandCountry,
                format!("{command}|{}", geo.country),
                s,
            );
        }

        Ok(Observation {
            enriched: Some(enriched),
            facts: Some(facts),
            novelties,
            compute_home,
            region_unused_in_account,
            command_events_in_window,
        })
    }

    /// RunInstances and CreateFunction say where an instance or function lives.
    fn learn_inventory(&mut self, enriched: &EnrichedEvent) -> Result<(), StateError> {
        let event = enriched
            .event
            .as_ref()
            .expect("enriched events carry their event");
        if enriched.failed {
            return Ok(());
        }
        let account = &enriched.principal.as_ref().expect("principal").account_id;
        let names: Vec<String> = match event.event_name.as_str() {
            "RunInstances" => instance_ids(&event.response_elements_json),
            name if name.starts_with("CreateFunction") => {
                function_name(&event.request_parameters_json)
                    .map(|f| format!("lambda:{f}"))
                    .into_iter()
                    .collect()
            }
            _ => return Ok(()),
        };
        for name in names {
            *self
                .inventory
                .entry(&format!("{account}|{name}"), String::new)? = event.aws_region.clone();
        }
        Ok(())
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

/// Count an event on day `d`; return the window's events on earlier days
/// (earlier days only, so arrival order within a day does not matter).
fn record_daily(daily: &mut Vec<(i64, u32)>, d: i64, window_days: u32) -> u32 {
    daily.retain(|(day, _)| (d - day).abs() <= i64::from(window_days));
    let before = daily
        .iter()
        .filter(|(day, _)| *day < d)
        .map(|(_, n)| *n)
        .sum();
    match daily.iter_mut().find(|(day, _)| *day == d) {
        Some((_, n)) => *n += 1,
        None => daily.push((d, 1)),
    }
    before
}

/// The home region of a compute session, and what decided it.
fn home_region(
    profile: &Profile,
    session: &str,
    inventory: Option<String>,
    min_session_calls: u32,
) -> Option<(String, &'static str)> {
    if let Some(region) = inventory {
        return Some((region, "inventory"));
    }
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

fn instance_ids(response_elements: &str) -> Vec<String> {
    #[derive(Deserialize)]
    struct Response {
        #[serde(rename = "instancesSet")]
        instances_set: Option<Items>,
    }
    #[derive(Deserialize)]
    struct Items {
        #[serde(default)]
        items: Vec<Instance>,
    }
    #[derive(Deserialize)]
    struct Instance {
        #[serde(rename = "instanceId")]
        instance_id: Option<String>,
    }
    serde_json::from_str::<Response>(response_elements)
        .ok()
        .and_then(|r| r.instances_set)
        .map(|s| s.items.into_iter().filter_map(|i| i.instance_id).collect())
        .unwrap_or_default()
}

fn function_name(request_parameters: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Request {
        #[serde(rename = "functionName")]
        function_name: Option<String>,
    }
    let name = serde_json::from_str::<Request>(request_parameters)
        .ok()?
        .function_name?;
    // An ARN or partial ARN names the function last.
    Some(name.rsplit(':').next().unwrap_or(&name).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_parsers() {
        let resp =
            r#"{"instancesSet":{"items":[{"instanceId":"i-0abc"},{"instanceId":"i-0def"}]}}"#;
        assert_eq!(instance_ids(resp), vec!["i-0abc", "i-0def"]);
        assert!(instance_ids("").is_empty());
        assert_eq!(
            function_name(r#"{"functionName":"arn:aws:lambda:eu-west-1:1:function:fn"}"#)
                .as_deref(),
            Some("fn")
        );
    }

    #[test]
    fn daily_counts_stay_within_the_window() {
        let mut daily = Vec::new();
        assert_eq!(record_daily(&mut daily, 0, 45), 0);
        assert_eq!(
            record_daily(&mut daily, 0, 45),
            0,
            "the same day is not counted"
        );
        assert_eq!(record_daily(&mut daily, 10, 45), 2);
        assert_eq!(record_daily(&mut daily, 50, 45), 1, "day 0 left the window");
    }
}
