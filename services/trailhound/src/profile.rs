//! `trailhound profile`: what one principal normally does, from CloudTrail
//! logs, in the dimensions the baseline learns (services by region,
//! countries, cities, networks, user agents, commands, error codes, assumed
//! roles, S3 buckets) and its addresses and sessions.

use std::path::PathBuf;

use trailhound_proto::{GetProfileRequest, Profile};
use trailhound_query::investigation::{BASELINE_DAYS, Subject};
use trailhound_query::profile::{Profiler, requested_values, requested_window, to_json};

use crate::investigate::visit_enriched;
use crate::query::{parse_time, report_format};
use crate::{Format, PipelineArgs, output};

/// Whose profile, over which window, and how much of it.
#[derive(clap::Args)]
pub struct ProfileArgs {
    /// The principal as findings name it (a role covers all its sessions).
    #[arg(long)]
    principal: String,
    /// Its account, when the ARN does not settle it (e.g. a federated user).
    #[arg(long)]
    account: Option<String>,
    /// The window's end (exclusive): RFC 3339, or a duration ago. From logs
    /// the default is just after the principal's last call; from the query
    /// service, now.
    #[arg(long, value_parser = parse_time)]
    until: Option<i64>,
    /// The window's length in days.
    #[arg(long, default_value_t = BASELINE_DAYS as u32)]
    days: u32,
    /// Values per dimension, those with the most calls first.
    #[arg(long, default_value_t = 20)]
    values: u32,
}

impl ProfileArgs {
    pub fn request(&self, until_ms: Option<i64>) -> GetProfileRequest {
        GetProfileRequest {
            account_id: self.account.clone().unwrap_or_default(),
            principal: self.principal.clone(),
            until_ms: self.until.or(until_ms).unwrap_or_default(),
            days: self.days,
            max_values: self.values,
        }
    }
}

#[derive(clap::Args)]
pub struct ProfileLogsArgs {
    /// Files or directories with the principal's calls.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    #[command(flatten)]
    profile: ProfileArgs,
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// `table` (default on a terminal) or `json`.
    #[arg(long, value_enum)]
    format: Option<Format>,
}

pub fn run(args: ProfileLogsArgs) -> anyhow::Result<()> {
    let format = report_format(args.format)?;
    let config = args.pipeline.config()?;
    // The window ends after the last call unless --until says, so the
    // principal's calls are kept (without their raw JSON) until it is known.
    let principal = Subject {
        account_id: args.profile.account.clone().unwrap_or_default(),
        principal: args.profile.principal.clone(),
        start_ms: i64::MIN,
        end_ms: i64::MAX,
    };
    let mut calls = Vec::new();
    visit_enriched(&args.paths, &config, "profile", true, |mut enriched| {
        let Some(p) = &enriched.principal else { return };
        if principal.covers(&p.account_id, &p.arn) {
            if let Some(call) = enriched.event.as_mut() {
                call.raw_json = Vec::new();
            }
            calls.push(enriched);
        }
    })?;
    let last_ms = calls
        .iter()
        .filter_map(|e| e.event.as_ref().map(|c| c.event_time_ms))
        .max();
    let Some(last_ms) = last_ms else {
        anyhow::bail!("no calls of {} in the logs", principal.principal);
    };
    let request = args.profile.request(Some(last_ms + 1));
    let window = requested_window(&request, 0).map_err(anyhow::Error::msg)?;
    let mut profiler = Profiler::new(window);
    for call in &calls {
        profiler.add_event(call);
    }
    print_profile(&profiler.profile(requested_values(&request)), format)
}

/// A profile as a table or JSON (from [`report_format`]).
pub fn print_profile(profile: &Profile, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => output::line(&serde_json::to_string_pretty(&to_json(profile))?)?,
        _ => output::profile(profile)?,
    }
    Ok(())
}
