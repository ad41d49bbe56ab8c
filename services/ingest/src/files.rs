//! Files and directories: once, or watched for new and changed files.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use async_nats::jetstream;
use tokio_util::sync::CancellationToken;
use trailhound_pipeline::nats::ingest_paths;
use trailhound_telemetry::HopMetrics;

/// Ingest `paths` once (an unreadable or broken file is an error, after
/// every other file has been ingested), or every `watch` interval until
/// shutdown (errors are logged and the watch goes on).
pub async fn run(
    js: jetstream::Context,
    paths: Vec<PathBuf>,
    watch: Option<Duration>,
    metrics: HopMetrics,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let Some(interval) = watch else {
        let report = ingest_paths(&js, &paths)
            .await
            .map_err(|e| anyhow::anyhow!("ingest: {e}"))?;
        super::record("files", &report, &metrics);
        anyhow::ensure!(
            report.file_errors.is_empty(),
            "{} file(s) could not be read",
            report.file_errors.len()
        );
        return Ok(());
    };
    // A file is new again when its size or modification time changes.
    let mut done: HashSet<(PathBuf, u64, Option<SystemTime>)> = HashSet::new();
    loop {
        let files = trailhound_cloudtrail::discover(&paths)?.files;
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
            let report = ingest_paths(&js, &fresh)
                .await
                .map_err(|e| anyhow::anyhow!("ingest: {e}"))?;
            super::record("files", &report, &metrics);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
