//! `s3://bucket/prefix` among a command's inputs: the logs under it are
//! copied locally first (`trailhound_s3`), then read as files.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use chrono::NaiveDate;
use trailhound_s3::S3Url;

use crate::output;

#[derive(clap::Args)]
pub(crate) struct S3Args {
    /// Where `s3://bucket/prefix` inputs are copied before they are read
    /// (`DIR/bucket/key`); a log copied before is not downloaded again.
    /// Default: $XDG_CACHE_HOME/trailhound/s3, else ~/.cache/trailhound/s3.
    #[arg(long, env = "TRAILHOUND_S3_CACHE")]
    s3_cache: Option<PathBuf>,
    /// Address buckets as paths of the endpoint (set by `AWS_ENDPOINT_URL`),
    /// for MinIO and other S3-compatible stores.
    #[arg(long)]
    s3_force_path_style: bool,
    /// S3 objects downloaded (and folders listed) at a time.
    #[arg(long, default_value_t = 32)]
    s3_downloads: usize,
    /// Only logs delivered since this day (UTC) from `s3://` inputs: a date
    /// (2024-04-01), an RFC 3339 time or a time ago (60d). The trail's date
    /// folders before it are not listed.
    #[arg(long, value_parser = trailhound_s3::parse_since)]
    s3_since: Option<NaiveDate>,
}

/// A command's inputs as local paths.
pub(crate) struct LocalInputs {
    pub paths: Vec<PathBuf>,
    /// Logs in S3 that could not be copied (`s3://bucket/key: reason`).
    failed: Vec<String>,
}

impl LocalInputs {
    /// An error when some log in S3 could not be copied, so that a command
    /// that went on with the others still fails once it has shown its output.
    pub fn check_complete(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.failed.is_empty(),
            "{} log(s) in S3 could not be copied, so were not read; first: {}",
            self.failed.len(),
            self.failed[0]
        );
        Ok(())
    }
}

/// `paths` with every `s3://` address replaced by the local copies of the
/// logs under it, brought up to date first; what was copied is told on
/// stderr.
pub(crate) fn local_inputs(paths: &[PathBuf], args: &S3Args) -> anyhow::Result<LocalInputs> {
    let addresses: Vec<Option<S3Url>> = paths
        .iter()
        .map(|p| p.to_str().and_then(S3Url::parse).transpose())
        .collect::<Result<_, String>>()
        .map_err(anyhow::Error::msg)?;
    if addresses.iter().all(Option::is_none) {
        return Ok(LocalInputs {
            paths: paths.to_vec(),
            failed: Vec::new(),
        });
    }
    let cache = match &args.s3_cache {
        Some(dir) => dir.clone(),
        None => default_cache().context("no home directory: set --s3-cache")?,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let client = runtime.block_on(async {
        trailhound_s3::s3_client(&trailhound_s3::sdk_config().await, args.s3_force_path_style)
    });
    let mut inputs = LocalInputs {
        paths: Vec::new(),
        failed: Vec::new(),
    };
    for (path, address) in paths.iter().zip(addresses) {
        let Some(url) = address else {
            inputs.paths.push(path.clone());
            continue;
        };
        let bar = std::io::stderr()
            .is_terminal()
            .then(|| output::progress_bar("logs copied"));
        if let Some(bar) = &bar {
            bar.set_message(url.to_string());
        }
        let progress = |done: usize, total: usize| {
            if let Some(bar) = &bar {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            }
        };
        let copied = runtime.block_on(trailhound_s3::copy_logs(
            &client,
            &url,
            &cache,
            args.s3_downloads,
            args.s3_since,
            &progress,
        ))?;
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        eprintln!(
            "{url}: {} log(s) in {}: {} downloaded ({:.1} MiB), {} already there; {} not logs (digests, Insights, other services); {} could not be copied",
            copied.files.len(),
            cache.join(&url.bucket).display(),
            copied.downloaded,
            copied.downloaded_bytes as f64 / 1048576.0,
            copied.present,
            copied.not_logs,
            copied.failed.len()
        );
        for failure in &copied.failed {
            eprintln!("  could not copy {failure}");
        }
        inputs.paths.extend(copied.files);
        inputs.failed.extend(copied.failed);
    }
    Ok(inputs)
}

fn default_cache() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty());
    let base = xdg
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("trailhound").join("s3"))
}
