//! The command hop, keyed by API call (`eventSource:eventName`),
//! organisation-wide: how many events of the command the window holds and
//! in which countries (TH-003) and cities (TH-004) it has been called.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use trailhound_proto::{NoveltyKind, Observation};
use trailhound_state::{Batch, StateError, Store, Table};

use super::values::write_value;
use super::{enriched, located_geo};
use crate::config::DetectionConfig;
use crate::seen::{SeenMap, day, record_shared_in};

/// The tables the command hop keeps.
pub const TABLES: &[&str] = &["commands"];

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CommandProfile {
    /// (day, events) for the window.
    pub daily: Vec<(i64, u32)>,
    pub countries: SeenMap,
    /// "country|city".
    pub cities: SeenMap,
    pub pruned_day: i64,
}

#[derive(Debug)]
pub struct CommandBaseline {
    config: Arc<DetectionConfig>,
    commands: Table<CommandProfile>,
    /// Reused for each value looked up.
    value: String,
}

impl CommandBaseline {
    pub fn new(config: Arc<DetectionConfig>, store: Option<Arc<Store>>) -> Self {
        Self {
            config,
            commands: Table::new("commands", store),
            value: String::new(),
        }
    }
}

impl super::ObservationHop for CommandBaseline {
    fn drain_into(&mut self, batch: &mut Batch) {
        self.commands.drain_into(batch);
    }

    /// Add the command's volume and its country novelty to an observation.
    fn observe(&mut self, observation: &mut Observation) -> Result<(), StateError> {
        let (window, window_days) = (self.config.window_ms(), self.config.window_days());
        let reorder = self.config.reorder_ms();
        let enriched = enriched(&observation.enriched);
        let t = enriched.event.as_ref().map_or(0, |e| e.event_time_ms);
        let located = located_geo(enriched).is_some();

        write_value(NoveltyKind::Command, enriched, &mut self.value);
        // The part of a "command|country" value after "command|" is its key
        // in the command's profile.
        let key_start = self.value.len() + 1;
        let profile = self.commands.entry(&self.value, CommandProfile::default)?;
        observation.command_events_in_window =
            record_daily(&mut profile.daily, day(t), day(t - reorder), window_days);
        if !located {
            return Ok(());
        }
        if day(t) > profile.pruned_day {
            profile.pruned_day = day(t);
            profile.countries.retain(|_, s| s.live(t, window));
            profile.cities.retain(|_, s| s.live(t, window));
        }
        for (kind, seen) in [
            (NoveltyKind::CommandCountry, &mut profile.countries),
            (NoveltyKind::CommandCity, &mut profile.cities),
        ] {
            if write_value(kind, enriched, &mut self.value) {
                let key = &self.value[key_start..];
                let s = record_shared_in(seen, key, t, reorder, (window, window_days));
                observation.novelties.push(s.novelty(kind));
            }
        }
        Ok(())
    }
}

/// Count an event on day `d`; return the events of the window before it
/// on days before `settled_day`, the day the reorder window before the
/// event starts in (whole days that have all arrived, so arrival order
/// does not matter). Days leave the window of the latest day; an event
/// older than that window is not counted.
fn record_daily(daily: &mut Vec<(i64, u32)>, d: i64, settled_day: i64, window_days: u32) -> u32 {
    let window = i64::from(window_days);
    let latest = daily.iter().map(|(day, _)| *day).fold(d, i64::max);
    daily.retain(|(day, _)| latest - day <= window);
    let before = daily
        .iter()
        .filter(|(day, _)| *day < settled_day && d - day <= window)
        .map(|(_, n)| *n)
        .sum();
    match daily.iter_mut().find(|(day, _)| *day == d) {
        Some((_, n)) => *n += 1,
        None if latest - d <= window => daily.push((d, 1)),
        None => {}
    }
    before
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daily_counts_stay_within_the_window() {
        let mut daily = Vec::new();
        assert_eq!(record_daily(&mut daily, 0, 0, 45), 0);
        assert_eq!(
            record_daily(&mut daily, 0, 0, 45),
            0,
            "the same day is not counted"
        );
        assert_eq!(
            record_daily(&mut daily, 1, 0, 45),
            0,
            "minutes after midnight: yesterday is not settled yet"
        );
        assert_eq!(record_daily(&mut daily, 10, 10, 45), 3);
        assert_eq!(
            record_daily(&mut daily, 50, 50, 45),
            1,
            "days 0 and 1 left the window"
        );
        // An event late by more than the window: neither counted nor
        // pushing the later days out.
        assert_eq!(record_daily(&mut daily, 3, 3, 45), 0);
        assert_eq!(daily, [(10, 1), (50, 1)]);
        // Late within the window: the days of the window before it.
        assert_eq!(record_daily(&mut daily, 12, 12, 45), 1);
        assert_eq!(record_daily(&mut daily, 51, 51, 45), 3);
    }
}
