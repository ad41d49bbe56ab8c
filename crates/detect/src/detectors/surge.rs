//! What the volume detectors (TH-007, TH-008, TH-009, TH-013) share: a
//! bucket of the principal's activity far above its normal becomes one
//! finding per dedup window, whose count is the busiest bucket's value and
//! whose evidence is that bucket's earliest events.

use trailhound_proto::{Finding, Message, Observation, Rate, RateKind, RateOrigin, Severity};

use super::Context;
use crate::config::SurgeSettings;
use crate::finding::{
    GuidanceText, candidate, context_facts, describe_origin, principal_context, time,
};

pub struct Surge<'a> {
    pub id: &'static str,
    pub kind: RateKind,
    pub settings: &'a SurgeSettings,
    pub title: &'static str,
    pub severity: Severity,
    /// What the value counts, e.g. "API calls", "distinct services".
    pub unit: &'static str,
    pub guidance: &'static GuidanceText,
}

impl Surge<'_> {
    /// The finding for the observation's bucket, when it is a surge.
    pub fn detect(&self, obs: &Observation, ctx: &Context<'_>) -> Option<Finding> {
        let rate = obs.rates.iter().find(|r| r.kind == self.kind as i32)?;
        let threshold = self.settings.threshold(rate.median_peak, rate.mad_peak);
        if f64::from(rate.value) < threshold || !ctx.learned(self.id, obs) {
            return None;
        }
        let mut f = candidate(obs, self.id, self.title, self.severity, "", self.guidance);
        f.count = u64::from(rate.value);
        f.count_is_peak = true;
        f.evidence.clone_from(&rate.earliest);
        // Times and description from the kept earliest events only, so the
        // merged finding does not depend on which events arrived last.
        if let (Some(first), Some(last)) = (rate.earliest.first(), rate.earliest.last()) {
            f.first_event_ms = first.event_time_ms;
            f.last_event_ms = last.event_time_ms;
            f.described = Some(first.clone());
        }
        f.baseline_facts.push(self.fact(rate, threshold));
        let origin = (!rate.origin.is_empty())
            .then(|| RateOrigin::decode(&rate.origin[..]).ok())
            .flatten();
        match origin {
            // Described by the bucket's earliest event, not by the one that
            // happened to cross the threshold, in the context of its time.
            Some(origin) => {
                let context = rate
                    .origin_facts
                    .as_ref()
                    .map(|at| principal_context(at, origin.network.as_ref(), ctx.window_days()));
                describe_origin(&mut f, origin);
                f.baseline_facts.extend(context.into_iter().flatten());
            }
            None => f
                .baseline_facts
                .extend(context_facts(obs, ctx.window_days())),
        }
        Some(f)
    }

    fn fact(&self, rate: &Rate, threshold: f64) -> String {
        let width = humantime::format_duration(std::time::Duration::from_millis(
            u64::try_from(rate.bucket_ms).unwrap_or(0),
        ));
        format!(
            "{} {} in the {width} from {}; the principal's busiest {width} per day over {} earlier active days: median {}, MAD {} (a surge from {})",
            rate.value,
            self.unit,
            time(rate.bucket_start_ms),
            rate.baseline_days,
            rate.median_peak,
            rate.mad_peak,
            threshold,
        )
    }
}
