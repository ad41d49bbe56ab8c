//! The ingest service: CloudTrail files (gzip or plain; arrays, `Records`,
//! JSON lines, EventBridge) onto `th.raw`, each event once: its
//! `Nats-Msg-Id` is account and event id, so JetStream drops an event it
//! already holds. One-shot over the given paths, or watching them.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use trailhound_pipeline::nats::{IngestReport, ingest_paths};
use trailhound_service::ServiceConfig;

#[derive(Debug, Clone, clap::Args)]
pub struct IngestArgs {
    /// Files or directories of CloudTrail logs.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Keep watching the paths, ingesting new or changed files at this
    /// interval (e.g. "30s"), until stopped.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub watch: Option<Duration>,
}

pub async fn run(
    config: ServiceConfig,
    args: IngestArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let js = config.connect().await?;
    let Some(interval) = args.watch else {
        let report = ingest_paths(&js, &args.paths)
            .await
            .map_err(|e| anyhow::anyhow!("ingest: {e}"))?;
        log(&report);
        anyhow::ensure!(
            report.file_errors.is_empty(),
            "{} file(s) could not be read",
            report.file_errors.len()
        );
        return Ok(());
    };
    let mut done: HashSet<(PathBuf, u64, Option<SystemTime>)> = HashSet::new();
    loop {
        let files = trailhound_cloudtrail::discover(&args.paths)?;
        let fresh: Vec<PathBuf> = files
            .into_iter()
            .filter(|path| {
                let meta = std::fs::metadata(path).ok();
                let id = (
                    path.clone(),
                    meta.as_ref().map_or(0, |m| m.len()),
                    meta.and_then(|m| m.modified().ok()),
                );
                done.insert(id)
            })
            .collect();
        if !fresh.is_empty() {
            log(&ingest_paths(&js, &fresh)
                .await
                .map_err(|e| anyhow::anyhow!("ingest: {e}"))?);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

fn log(report: &IngestReport) {
    for error in &report.file_errors {
        tracing::error!("{error}");
    }
    tracing::info!(
        files = report.files,
        events = report.events,
        duplicates = report.duplicates,
        rejected = report.rejected,
        "ingested"
    );
}
