//! `trailhound profile`: what one principal normally does, from CloudTrail
//! logs, in the dimensions the baseline learns (services by region,
//! countries, cities, networks, user agents, commands, error codes, assumed
//! roles, S3 buckets) and its addresses and sessions.

use std::path::PathBuf;

use trailhound_cloudtrail::normalise_into;
use trailhound_proto::{GetProfileRequest, Principal, Profile};
use trailhound_query::investigation::{BASELINE_DAYS, Subject};
use trailhound_query::profile::{Profiler, requested_values, requested_window, to_json};

use crate::investigate::{visit_enriched, visit_records};
use crate::query::{parse_time, report_format};
use crate::s3::{S3Args, local_inputs};
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
    /// Files, directories or `s3://bucket/prefix` with the principal's calls.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    #[command(flatten)]
    profile: ProfileArgs,
    #[command(flatten)]
    pipeline: PipelineArgs,
    #[command(flatten)]
    s3: S3Args,
    /// `table` (default on a terminal) or `json`.
    #[arg(long, value_enum)]
    format: Option<Format>,
}

pub fn run(args: ProfileLogsArgs) -> anyhow::Result<()> {
    let format = report_format(args.format)?;
    let config = args.pipeline.config()?;
    let principal = Subject {
        account_id: args.profile.account.clone().unwrap_or_default(),
        principal: args.profile.principal.clone(),
        start_ms: i64::MIN,
        end_ms: i64::MAX,
    };
    let inputs = local_inputs(&args.paths, &args.s3)?;
    // The window ends after the last call unless --until says: a first
    // pass finds it, so that no call need be kept.
    let until_ms = match args.profile.until {
        Some(until_ms) => until_ms,
        None => match last_call(&inputs.paths, &principal, config.partitions)? {
            Some(last_ms) => last_ms + 1,
            None => anyhow::bail!("no calls of {} in the logs", principal.principal),
        },
    };
    let request = args.profile.request(Some(until_ms));
    let window = requested_window(&request, 0).map_err(anyhow::Error::msg)?;
    let mut profiler = Profiler::new(window);
    visit_enriched(&inputs.paths, &config, "profile", true, |enriched| {
        profiler.add_event(&enriched);
    })?;
    print_profile(&profiler.profile(requested_values(&request)), format)?;
    inputs.check_complete()
}

/// The time of the principal's last call in the logs under `paths`.
fn last_call(
    paths: &[PathBuf],
    principal: &Subject,
    partitions: u32,
) -> anyhow::Result<Option<i64>> {
    let mut last_ms = None;
    let mut caller = Principal::default();
    // Unusable records are noted by the pass that profiles.
    visit_records(paths, "profile", false, |event| {
        let covered = normalise_into(&event, partitions, &mut caller)
            && principal.covers(&caller.account_id, &caller.arn);
        if covered {
            last_ms = last_ms.max(Some(event.event_time_ms));
        }
        Ok(())
    })?;
    Ok(last_ms)
}

/// A profile as a table or JSON (from [`report_format`]).
pub fn print_profile(profile: &Profile, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => output::json(&to_json(profile))?,
        _ => output::profile(profile)?,
    }
    Ok(())
}
