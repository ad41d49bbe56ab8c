//! `trailhound investigate`: one principal over a scope of time, from
//! CloudTrail logs (DETECTIONS.md "Investigation"): its sessions, its new
//! behaviour against the 45 days before the scope, impossible travel,
//! flagged addresses, ATT&CK-mapped calls and related findings.

use std::collections::HashMap;
use std::path::PathBuf;

use trailhound_detect::baseline::duplicates::{Arrival, RecentEvents};
use trailhound_detect::baseline::principal_key;
use trailhound_enrich::Enricher;
use trailhound_pipeline::ScanConfig;
use trailhound_pipeline::copies::{self, ReadBefore};
use trailhound_proto::{CloudTrailEvent, EnrichedEvent};
use trailhound_query::investigation::{Investigator, Subject, TravelLimits};

use crate::query::{parse_time, print_investigation, report_format};
use crate::s3::{S3Args, local_inputs};
use crate::{Format, PipelineArgs, output, run_pipeline};

/// Who and when to investigate, and how much of it the table shows.
#[derive(clap::Args)]
pub struct ScopeArgs {
    /// The principal as findings name it (a role covers all its sessions).
    #[arg(long)]
    principal: String,
    /// Its account, when the ARN does not settle it (e.g. a federated user).
    #[arg(long)]
    account: Option<String>,
    /// Scope start: RFC 3339, or a duration ago (`24h`).
    #[arg(long, value_parser = parse_time)]
    from: i64,
    /// Scope end (exclusive): RFC 3339, or a duration ago; default now.
    #[arg(long, value_parser = parse_time)]
    to: Option<i64>,
    /// Events of the scope the table lists (the JSON report has all).
    #[arg(long, default_value_t = 20)]
    pub events: usize,
}

impl ScopeArgs {
    pub fn subject(&self) -> anyhow::Result<Subject> {
        let end_ms = self
            .to
            .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
        anyhow::ensure!(self.from < end_ms, "--from must be before --to");
        Ok(Subject {
            account_id: self.account.clone().unwrap_or_default(),
            principal: self.principal.clone(),
            start_ms: self.from,
            end_ms,
        })
    }
}

#[derive(clap::Args)]
pub struct InvestigateArgs {
    /// Files, directories or `s3://bucket/prefix` with the scope and the 45
    /// days before it.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    #[command(flatten)]
    scope: ScopeArgs,
    #[command(flatten)]
    pipeline: PipelineArgs,
    #[command(flatten)]
    s3: S3Args,
    /// `table` (default on a terminal) or `json` (the whole report).
    #[arg(long, value_enum)]
    format: Option<Format>,
}

pub fn run(args: InvestigateArgs) -> anyhow::Result<()> {
    let format = report_format(args.format)?;
    let mut config = args.pipeline.config()?;
    // Related findings come from a scan of the same logs in memory: an
    // investigation changes no state and delivers nothing.
    if let Some(dir) = config.state_dir.take() {
        output::note(&format!(
            "investigate: related findings come from a scan in memory; {} is not used",
            dir.display()
        ))?;
    }
    config.sink.clear();
    config.dead_letter = None;
    let subject = args.scope.subject()?;
    let travel = TravelLimits {
        kmh: config.detection.impossible_travel_kmh,
        min_km: config.detection.impossible_travel_min_km,
    };
    let mut investigator = Investigator::new(subject, travel);
    let inputs = local_inputs(&args.paths, &args.s3)?;

    // Unusable records are the scan's to report, below.
    visit_enriched(&inputs.paths, &config, "investigate", false, |enriched| {
        investigator.add_event(&enriched);
    })?;
    let report = run_pipeline(&inputs.paths, &config)?;
    for finding in report.findings.iter() {
        investigator.add_finding(&finding?);
    }
    let investigation = investigator.report();
    print_investigation(&investigation, format, args.scope.events)?;
    inputs.check_complete()
}

/// Every usable record of the logs under `paths`, enriched, to `visit`,
/// but an event delivered twice once, as `scan` drops it (judged against
/// its principal's latest event). A file that cannot be read is noted on
/// stderr under `command`; so are the unusable records of each file (how
/// many, and the first) when `note_unusable`.
pub(crate) fn visit_enriched(
    paths: &[PathBuf],
    config: &ScanConfig,
    command: &str,
    note_unusable: bool,
    mut visit: impl FnMut(EnrichedEvent),
) -> anyhow::Result<()> {
    let mut enricher = Enricher::new(&config.enrich, config.partitions);
    let window_ms = config.detection.reorder_ms();
    let (mut recent, mut key) = (HashMap::<String, RecentEvents>::new(), String::new());
    visit_records(paths, command, note_unusable, |event| {
        let enriched = match enricher.enrich(event) {
            Ok(enriched) => enriched,
            Err(e) => return Err(format!("{} ({}): {e}", e.event.origin, e.event.event_id)),
        };
        let repeat = match (&enriched.principal, &enriched.event) {
            (Some(principal), Some(call)) => {
                // The key is copied only for a principal not met before.
                principal_key(principal, &mut key);
                if !recent.contains_key(&key) {
                    recent.insert(key.clone(), RecentEvents::default());
                }
                let principal_recent = recent.get_mut(&key).expect("inserted above");
                let arrival =
                    principal_recent.remember(&call.event_id, call.event_time_ms, window_ms);
                arrival == Arrival::Repeat
            }
            _ => false,
        };
        if !repeat {
            visit(enriched);
        }
        Ok(())
    })
}

/// Every record of the logs under `paths` that parses, to `visit`, which
/// says why one is unusable; notes as [`visit_enriched`].
pub(crate) fn visit_records(
    paths: &[PathBuf],
    command: &str,
    note_unusable: bool,
    mut visit: impl FnMut(Box<CloudTrailEvent>) -> Result<(), String>,
) -> anyhow::Result<()> {
    let files = trailhound_cloudtrail::discover(paths)?.files;
    let mut read_before = ReadBefore::default();
    for (index, file) in files.iter().enumerate() {
        let (source, fingerprint) = match copies::open(file) {
            Ok(opened) => opened,
            Err(e) => {
                output::note(&format!("{command}: {e}"))?;
                continue;
            }
        };
        // A copy's events would be counted twice (see `copies`).
        if let Some(original) = fingerprint.and_then(|f| read_before.original_of(&files, index, f))
        {
            let (copy, original) = (file.display(), original.display());
            output::note(&format!(
                "{command}: {copy} not read: the same as {original}"
            ))?;
            continue;
        }
        let (mut unusable, mut first) = (0u64, None);
        let parsed = source.parse(false, &mut |record| {
            let why = match record.map(&mut visit) {
                Ok(Ok(())) => return,
                Ok(Err(why)) => why,
                Err(rejected) => rejected.to_string(),
            };
            unusable += 1;
            first.get_or_insert(why);
        });
        if let Err(e) = parsed {
            output::note(&format!("{command}: {e}"))?;
        }
        if let Some(first) = first.filter(|_| note_unusable) {
            output::note(&format!(
                "{command}: {unusable} unusable record(s) in {} skipped; the first: {first}",
                file.display()
            ))?;
        }
    }
    Ok(())
}
