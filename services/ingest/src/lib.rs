//! The ingest service: CloudTrail onto `th.raw`, each event once (its
//! `Nats-Msg-Id` is account and event id, so JetStream drops an event it
//! already holds). Sources, any of them together: files and directories
//! (once, or watched), HTTP POSTs, S3 objects announced on an SQS queue, and
//! the logs under an `s3://` prefix (once: a backfill).

mod files;
mod http;
mod s3;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono::NaiveDate;
use tokio_util::sync::CancellationToken;
use trailhound_pipeline::nats::IngestReport;
use trailhound_s3::S3Url;
use trailhound_service::ServiceConfig;
use trailhound_telemetry::HopMetrics;

#[derive(Debug, Clone, clap::Args)]
pub struct IngestArgs {
    /// Files or directories of CloudTrail logs (gzip or plain; arrays,
    /// `Records`, JSON lines, EventBridge), or `s3://bucket/prefix`: the
    /// logs under it read once from S3, in delivery order (a backfill).
    #[arg(required_unless_present_any = ["listen", "sqs_queue_url"])]
    pub paths: Vec<PathBuf>,
    /// Keep watching the paths, ingesting new or changed files at this
    /// interval (e.g. "30s"), until stopped.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub watch: Option<Duration>,
    /// Accept CloudTrail POSTed to /v1/events on this address (e.g.
    /// 0.0.0.0:8080), in any shape the files may have.
    #[arg(long, env = "TRAILHOUND_INGEST_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Require `Authorization: Bearer <token>` on POSTs. Set it in the
    /// environment rather than on the command line.
    #[arg(long, env = "TRAILHOUND_INGEST_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The largest POST body accepted, in bytes.
    #[arg(long, env = "TRAILHOUND_INGEST_MAX_BODY", default_value_t = 64 << 20)]
    pub max_body: usize,
    /// Ingest the S3 objects announced on this SQS queue (S3 event
    /// notifications, directly or through SNS; CloudTrail's SNS
    /// notifications; EventBridge "Object Created"). Credentials and region
    /// come from the usual AWS chain; AWS_ENDPOINT_URL points the clients
    /// at an S3-compatible server.
    #[arg(long, env = "TRAILHOUND_SQS_QUEUE_URL")]
    pub sqs_queue_url: Option<String>,
    /// Path-style S3 URLs (MinIO and most S3-compatible servers need them).
    #[arg(long, env = "TRAILHOUND_S3_FORCE_PATH_STYLE")]
    pub s3_force_path_style: bool,
    /// Backfill from `s3://` paths only the logs delivered since this day
    /// (UTC): a date (2024-04-01), an RFC 3339 time or a time ago (45d).
    /// The trail's date folders before it are not listed.
    #[arg(long, env = "TRAILHOUND_S3_SINCE", value_parser = trailhound_s3::parse_since)]
    pub s3_since: Option<NaiveDate>,
}

pub async fn run(
    config: ServiceConfig,
    args: IngestArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (metrics, ready) = config.start_endpoints(1, &shutdown);
    let js = config.connect().await?;
    let metrics = metrics.hop("ingest");
    ready.mark_ready();

    let mut sources = tokio::task::JoinSet::new();
    let mut paths = Vec::new();
    for path in args.paths {
        match path.to_str().and_then(S3Url::parse) {
            Some(url) => {
                let backfill = s3::backfill(
                    js.clone(),
                    url.map_err(anyhow::Error::msg)?,
                    args.s3_since,
                    args.s3_force_path_style,
                    metrics.clone(),
                    shutdown.clone(),
                );
                sources.spawn(backfill);
            }
            None => paths.push(path),
        }
    }
    if !paths.is_empty() {
        let files = files::run(
            js.clone(),
            paths,
            args.watch,
            metrics.clone(),
            shutdown.clone(),
        );
        sources.spawn(files);
    }
    if let Some(addr) = args.listen {
        let endpoint = http::Endpoint::new(js.clone(), args.token, metrics.clone());
        sources.spawn(http::serve(endpoint, addr, args.max_body, shutdown.clone()));
    }
    if let Some(queue_url) = args.sqs_queue_url {
        let queue =
            s3::Queue::connect(js.clone(), queue_url, args.s3_force_path_style, metrics).await;
        sources.spawn(queue.run(shutdown.clone()));
    }
    // One-shot files end by themselves, the other sources at shutdown; the
    // first source to fail stops the rest.
    while let Some(finished) = sources.join_next().await {
        if let Err(e) = finished? {
            shutdown.cancel();
            return Err(e);
        }
    }
    Ok(())
}

/// Log what one document (or run over files) gave, and count it.
fn record(source: &str, report: &IngestReport, metrics: &HopMetrics) {
    for error in &report.file_errors {
        tracing::error!(source, "{error}");
    }
    metrics.events_out.inc_by(report.events);
    metrics.dead_lettered.inc_by(report.rejected);
    tracing::info!(
        source,
        files = report.files,
        events = report.events,
        duplicates = report.duplicates,
        rejected = report.rejected,
        "ingested"
    );
}
