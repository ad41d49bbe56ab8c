//! CloudTrail in S3: the AWS SDK's clients, configured as the AWS CLI is;
//! the listing of the logs under a bucket's prefix, passing over the date
//! folders before a day (the ingest service's backfill publishes them in
//! delivery order); and a local copy of them, brought up to date before
//! `trailhound scan s3://…` reads it.
//!
//! S3 delivery writes each log file once and never changes it, so an
//! object whose copy is already there (the same key and size) is not
//! downloaded again: a daily scan of a trail's bucket downloads the day's
//! new files only, and with a state directory parses only those.

use std::path::{Path, PathBuf};

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use chrono::{Datelike, NaiveDate};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

/// The SDK's shared configuration from the usual chain: environment,
/// profile, SSO, web identity, container and instance credentials; the
/// region and `AWS_ENDPOINT_URL` (an S3-compatible store) as the AWS CLI
/// reads them. TLS by rustls with ring, as the rest of the workspace.
pub async fn sdk_config() -> aws_config::SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .load()
        .await
}

/// An S3 client; `force_path_style` for stores that do not serve buckets
/// as host names (MinIO, moto, most on-premises stores).
pub fn s3_client(shared: &aws_config::SdkConfig, force_path_style: bool) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::from(shared)
        .force_path_style(force_path_style)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// The day a `--s3-since` names: a date (`2024-04-01`), an RFC 3339 time,
/// or a time ago (`60d`).
pub fn parse_since(text: &str) -> Result<NaiveDate, String> {
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(day);
    }
    let ms = match trailhound_cloudtrail::time::parse_event_time(text) {
        Some(ms) => ms,
        None => {
            let ago = humantime::parse_duration(text).map_err(|_| {
                format!("{text:?} is neither a date, an RFC 3339 time nor a time ago (60d)")
            })?;
            chrono::Utc::now().timestamp_millis() - ago.as_millis() as i64
        }
    };
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.date_naive())
        .ok_or_else(|| format!("{text:?} is out of range"))
}

/// `s3://bucket/prefix`: every object whose key starts with the prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    pub prefix: String,
}

impl S3Url {
    /// `None` for a text that is not an `s3://` address (a local path).
    pub fn parse(text: &str) -> Option<Result<Self, String>> {
        let rest = text.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Some(Err(format!("{text}: no bucket named (s3://bucket/prefix)")));
        }
        Some(Ok(Self {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        }))
    }

    /// `s3://bucket/key` of one of its objects.
    pub fn object(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }
}

impl std::fmt::Display for S3Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{url}: listing the objects failed: {message}")]
pub struct ListError {
    url: String,
    message: String,
}

/// The logs under an `s3://` address.
#[derive(Debug, Default)]
pub struct Listed {
    /// Key and size of each log, in key order.
    pub logs: Vec<(String, u64)>,
    /// Objects listed that are not CloudTrail logs by their place (digest
    /// and Insights files, other services' logs). (With a day to start
    /// from, their folders are not even listed.)
    pub not_logs: usize,
}

impl Listed {
    /// The logs in the order CloudTrail delivered them (by the time in
    /// their names), as a scan reads files: the calls of every account and
    /// region interleave in time, instead of one's months after another's.
    pub fn in_delivery_order(mut self) -> Vec<(String, u64)> {
        self.logs
            .sort_by_cached_key(|(key, _)| trailhound_cloudtrail::delivery_time(Path::new(key)));
        self.logs
    }
}

/// What bringing a copy up to date did.
#[derive(Debug, Default)]
pub struct Copied {
    /// The local copy of every log under the prefix, in key order.
    pub files: Vec<PathBuf>,
    pub downloaded: usize,
    pub downloaded_bytes: u64,
    /// Logs whose copy was there already.
    pub present: usize,
    /// As [`Listed::not_logs`]: not copied.
    pub not_logs: usize,
    /// Logs that could not be copied, as `s3://bucket/key: reason`.
    pub failed: Vec<String>,
}

/// List the logs under `url`, up to `listings` requests at a time. With
/// `since`, only logs delivered on or after that day (UTC): the key's
/// folders are listed one by one, and the trail's date folders wholly
/// before it (and digest and other services' folders) are passed over, so
/// the last weeks of a trail that has logged for years do not list its
/// years. `progress` is told how many logs are listed so far.
pub async fn list_logs(
    client: &aws_sdk_s3::Client,
    url: &S3Url,
    since: Option<NaiveDate>,
    listings: usize,
    progress: &(dyn Fn(usize) + Sync),
) -> Result<Listed, ListError> {
    let list_error = |message| ListError {
        url: url.to_string(),
        message,
    };
    let mut objects = Vec::new();
    match since {
        None => {
            list(client, &url.bucket, &url.prefix, None, &mut |found, _| {
                objects.extend(found);
                progress(objects.len());
            })
            .await
            .map_err(list_error)?;
        }
        Some(since) => {
            let mut folders = vec![url.prefix.clone()];
            let mut listing = futures_util::stream::FuturesUnordered::new();
            loop {
                while listing.len() < listings.max(1)
                    && let Some(folder) = folders.pop()
                {
                    listing.push(async move {
                        let mut level = (Vec::new(), Vec::new());
                        list(
                            client,
                            &url.bucket,
                            &folder,
                            Some("/"),
                            &mut |found, below| {
                                level.0.extend(found);
                                level.1.extend(below);
                            },
                        )
                        .await
                        .map(|()| level)
                    });
                }
                let Some(level) = listing.next().await else {
                    break;
                };
                let (found, below) = level.map_err(list_error)?;
                objects.extend(found);
                folders.extend(below.into_iter().filter(|f| {
                    !trailhound_cloudtrail::not_cloudtrail_logs(f) && may_hold_since(f, since)
                }));
                progress(objects.len());
            }
            objects.sort_unstable();
        }
    }
    let mut listed = Listed::default();
    for (key, size) in objects {
        if key.ends_with('/') {
            continue; // a folder, as consoles make them
        }
        if trailhound_cloudtrail::not_cloudtrail_logs(&key) {
            listed.not_logs += 1;
        } else {
            listed.logs.push((key, size));
        }
    }
    Ok(listed)
}

/// Bring the copy of the logs under `url` in `root` (`root/bucket/key`) up
/// to date, downloading up to `downloads` objects at a time; `since` as for
/// [`list_logs`]. `progress` is told how many logs are done of how many
/// listed, as the listing goes (none done yet) and after each log. Listing
/// failures end it; an object that cannot be downloaded is named in
/// [`Copied::failed`] and the others are still copied.
pub async fn copy_logs(
    client: &aws_sdk_s3::Client,
    url: &S3Url,
    root: &Path,
    downloads: usize,
    since: Option<NaiveDate>,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Copied, ListError> {
    let downloads = downloads.max(1);
    let listed = list_logs(client, url, since, downloads, &|n| progress(0, n)).await?;
    let mut copied = Copied {
        not_logs: listed.not_logs,
        ..Copied::default()
    };
    let mut wanted = Vec::new();
    for (key, size) in listed.logs {
        match local_path(root, &url.bucket, &key) {
            Ok(local) => wanted.push((key, size, local)),
            Err(reason) => copied
                .failed
                .push(format!("{}: {reason}", url.object(&key))),
        }
    }
    let total = wanted.len();
    let results: Vec<_> = futures_util::stream::iter(wanted)
        .map(|(key, size, local)| async move {
            let present = tokio::fs::metadata(&local)
                .await
                .is_ok_and(|m| m.is_file() && m.len() == size);
            let outcome = if present {
                Ok(None)
            } else {
                download(client, &url.bucket, &key, size, &local)
                    .await
                    .map(Some)
            };
            (key, local, outcome)
        })
        .buffered(downloads)
        .enumerate()
        .map(|(done, result)| {
            progress(done + 1, total);
            result
        })
        .collect()
        .await;
    for (key, local, outcome) in results {
        match outcome {
            Ok(None) => copied.present += 1,
            Ok(Some(bytes)) => {
                copied.downloaded += 1;
                copied.downloaded_bytes += bytes;
            }
            Err(reason) => {
                copied
                    .failed
                    .push(format!("{}: {reason}", url.object(&key)));
                continue;
            }
        }
        copied.files.push(local);
    }
    Ok(copied)
}

/// List the objects under `prefix`, page by page, to `page`: (key, size)
/// of each object, and with a `delimiter` the folders below (S3's common
/// prefixes) rather than their objects.
async fn list(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    page: &mut (dyn FnMut(Vec<(String, u64)>, Vec<String>) + Send),
) -> Result<(), String> {
    let mut pages = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .set_delimiter(delimiter.map(str::to_string))
        .into_paginator()
        .send();
    while let Some(listed) = pages.next().await {
        let listed = listed.map_err(|e| describe(&e))?;
        let objects = listed.contents().iter().filter_map(|o| {
            let size = u64::try_from(o.size().unwrap_or(0)).unwrap_or(0);
            Some((o.key()?.to_string(), size))
        });
        let folders = listed.common_prefixes().iter();
        page(
            objects.collect(),
            folders
                .filter_map(|f| f.prefix().map(str::to_string))
                .collect(),
        );
    }
    Ok(())
}

/// Whether a folder may hold logs delivered on or after `since`: false
/// only for a trail's date folder wholly before it (`…/CloudTrail/{region}/`
/// then `YYYY/`, `YYYY/MM/` or `YYYY/MM/DD/`, as S3 delivery names them).
pub fn may_hold_since(folder: &str, since: NaiveDate) -> bool {
    let parts: Vec<&str> = folder.trim_end_matches('/').split('/').collect();
    let Some(trail) = parts.iter().rposition(|part| *part == "CloudTrail") else {
        return true;
    };
    let date = parts.get(trail + 2..).unwrap_or_default();
    let Ok(date) = date
        .iter()
        .map(|part| part.parse::<u32>())
        .collect::<Result<Vec<_>, _>>()
    else {
        return true;
    };
    let (year, month, day) = (since.year() as u32, since.month(), since.day());
    match date[..] {
        [y] => y >= year,
        [y, m] => (y, m) >= (year, month),
        [y, m, d] => (y, m, d) >= (year, month, day),
        _ => true,
    }
}

/// Where an object's copy goes: `root/bucket/key`, each part of the key a
/// folder or the file's name. A key with an empty, `.` or `..` part would
/// land elsewhere, or nowhere, and is refused.
pub fn local_path(root: &Path, bucket: &str, key: &str) -> Result<PathBuf, String> {
    let mut path = root.join(bucket);
    for part in key.split('/') {
        if matches!(part, "" | "." | "..") || part.contains('\0') {
            return Err(format!(
                "the key has a part {part:?}, which cannot name a local file"
            ));
        }
        path.push(part);
    }
    Ok(path)
}

/// Download an object into `local` through a hidden `.part` file beside
/// it (a scan passes over hidden files), renamed once the whole object has
/// arrived: an interrupted copy leaves no partial log. The bytes written.
async fn download(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    size: u64,
    local: &Path,
) -> Result<u64, String> {
    let (Some(dir), Some(name)) = (local.parent(), local.file_name()) else {
        return Err(format!("{} is not a file's path", local.display()));
    };
    let part = dir.join(format!(".{}.part", name.to_string_lossy()));
    let io = |path: &Path, e: std::io::Error| format!("{}: {e}", path.display());
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|e| io(dir, e))?;
    let object = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| describe(&e))?;
    let written = async {
        let mut file = tokio::fs::File::create(&part).await?;
        let written = tokio::io::copy_buf(&mut object.body.into_async_read(), &mut file).await?;
        file.flush().await?;
        Ok::<_, std::io::Error>(written)
    }
    .await;
    let outcome = match written {
        Ok(written) if written == size => tokio::fs::rename(&part, local)
            .await
            .map(|()| written)
            .map_err(|e| io(local, e)),
        Ok(written) => Err(format!("{written} bytes arrived of the {size} listed")),
        Err(e) => Err(io(&part, e)),
    };
    if outcome.is_err() {
        let _ = tokio::fs::remove_file(&part).await;
    }
    outcome
}

/// S3's own code and message when it answered ("NoSuchBucket: The
/// specified bucket does not exist"), else the error and its causes
/// ("dispatch failure: io error: … Connection refused").
fn describe(e: &(impl ProvideErrorMetadata + std::error::Error)) -> String {
    if let Some(code) = e.code() {
        return format!("{code}: {}", e.message().unwrap_or("(no message)"));
    }
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_addresses_name_a_bucket_and_a_prefix() {
        let url = |text: &str| S3Url::parse(text).map(|r| r.map(|u| (u.bucket, u.prefix)));
        assert_eq!(
            url("s3://trail/AWSLogs/o-1/"),
            Some(Ok(("trail".into(), "AWSLogs/o-1/".into())))
        );
        assert_eq!(url("s3://trail"), Some(Ok(("trail".into(), "".into()))));
        assert_eq!(url("s3://trail/"), Some(Ok(("trail".into(), "".into()))));
        assert!(matches!(url("s3:///AWSLogs"), Some(Err(e)) if e.contains("no bucket")));
        assert_eq!(url("logs/s3:/trail"), None);
        assert_eq!(url("./s3://trail"), None);
    }

    #[test]
    fn a_day_to_start_from_is_a_date_a_time_or_a_time_ago() {
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        assert_eq!(parse_since("2024-04-10"), Ok(day(2024, 4, 10)));
        assert_eq!(parse_since("2024-04-10T23:59:00Z"), Ok(day(2024, 4, 10)));
        let today = chrono::Utc::now().date_naive();
        assert_eq!(parse_since("0d"), Ok(today));
        assert_eq!(parse_since("2d"), Ok(today - chrono::Days::new(2)));
        assert!(
            parse_since("last week")
                .unwrap_err()
                .contains("neither a date")
        );
    }

    #[test]
    fn date_folders_wholly_before_the_day_are_passed_over() {
        let since = NaiveDate::from_ymd_opt(2024, 4, 14).unwrap();
        let region = "AWSLogs/o-1/111122223333/CloudTrail/us-east-1/";
        for (below, kept) in [
            ("", true),
            ("2023/", false),
            ("2024/", true),
            ("2025/", true),
            ("2024/03/", false),
            ("2024/04/", true),
            ("2024/04/13/", false),
            ("2024/04/14/", true),
            ("2024/05/01/", true),
        ] {
            let folder = format!("{region}{below}");
            assert_eq!(may_hold_since(&folder, since), kept, "{folder}");
        }
        for other in [
            "AWSLogs/",
            "AWSLogs/111122223333/",
            "AWSLogs/111122223333/CloudTrail/",
            "AWSLogs/111122223333/vpcflowlogs/us-east-1/2023/",
            "AWSLogs/111122223333/CloudTrail/us-east-1/latest/",
        ] {
            assert!(may_hold_since(other, since), "{other}");
        }
    }

    #[test]
    fn keys_become_paths_under_the_bucket_and_never_leave_it() {
        let root = Path::new("/cache");
        assert_eq!(
            local_path(
                root,
                "trail",
                "AWSLogs/1/CloudTrail/us-east-1/2024/04/15/f.json.gz"
            ),
            Ok(PathBuf::from(
                "/cache/trail/AWSLogs/1/CloudTrail/us-east-1/2024/04/15/f.json.gz"
            ))
        );
        for key in [
            "../../etc/passwd",
            "AWSLogs/../x",
            "a//b",
            "/abs",
            "a/./b",
            "a/",
        ] {
            assert!(local_path(root, "trail", key).is_err(), "{key}");
        }
    }
}
