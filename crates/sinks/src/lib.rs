//! Where findings go once the alert stage has stored them: a JSON-lines
//! file, a webhook (generic JSON, Slack or OCSF) or a NATS subject. Each
//! sink filters (minimum severity, updates, suppressed findings), renders
//! and delivers with retries and exponential backoff. A delivery that still
//! fails is an error for the caller, which keeps the finding to try again
//! later (the alert service leaves the message unacknowledged in its
//! stream), so a failing sink never loses a finding.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use trailhound_alert::render;
use trailhound_proto::{Alert, Severity};

/// One `[[alert.sink]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Names the sink in logs and metrics, and its stream consumer.
    pub name: String,
    /// Append findings to this file, one JSON object per line.
    pub file: Option<PathBuf>,
    /// POST each finding to this URL (http or https).
    pub webhook: Option<String>,
    /// Publish each finding on this NATS subject (services only).
    pub nats_subject: Option<String>,
    #[serde(default)]
    pub format: Format,
    /// Findings below this severity are not sent.
    #[serde(default)]
    pub min_severity: MinSeverity,
    /// Also send updates of stored findings (count, last seen), not only new ones.
    #[serde(default)]
    pub send_updates: bool,
    /// Also send findings a suppression rule matched (marked suppressed).
    #[serde(default)]
    pub send_suppressed: bool,
    /// Attempts per delivery before giving up for now.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Wait before the second attempt; doubled for each further one.
    #[serde(default = "default_backoff", with = "humantime_serde")]
    pub backoff: Duration,
    /// Per request, for webhooks.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_attempts() -> u32 {
    5
}
fn default_backoff() -> Duration {
    Duration::from_millis(500)
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Trailhound's own JSON (as `trailhound scan --format json`).
    #[default]
    Json,
    /// A Slack incoming-webhook message.
    Slack,
    /// OCSF Detection Finding (class 2004).
    Ocsf,
}

/// The least severe finding shown or sent (a sink's `min_severity`, and
/// `trailhound scan --min-severity`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum MinSeverity {
    #[default]
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl MinSeverity {
    pub fn admits(self, severity: Severity) -> bool {
        severity >= self.severity()
    }

    pub fn severity(self) -> Severity {
        match self {
            MinSeverity::Informational => Severity::Informational,
            MinSeverity::Low => Severity::Low,
            MinSeverity::Medium => Severity::Medium,
            MinSeverity::High => Severity::High,
            MinSeverity::Critical => Severity::Critical,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("sink {0}: configure exactly one of file, webhook, nats_subject")]
    Target(String),
    #[error("sink {sink}: {message}")]
    Delivery { sink: String, message: String },
}

enum Target {
    File(PathBuf),
    Webhook {
        client: reqwest::Client,
        url: String,
    },
    Nats {
        client: Option<async_nats::Client>,
        subject: String,
    },
}

/// A configured sink, ready to deliver.
pub struct Sink {
    pub config: SinkConfig,
    target: Target,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink")
            .field("name", &self.config.name)
            .finish()
    }
}

/// What a delivery did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// Filtered out by the sink's settings.
    Skipped,
}

impl Sink {
    /// A sink from its configuration; `nats` is the connection NATS sinks
    /// publish on (None outside the services: such a sink then fails).
    pub fn new(config: SinkConfig, nats: Option<async_nats::Client>) -> Result<Self, SinkError> {
        let target = match (&config.file, &config.webhook, &config.nats_subject) {
            (Some(path), None, None) => Target::File(path.clone()),
            (None, Some(url), None) => {
                // reqwest without a built-in provider: use ring, like the rest.
                let _ = rustls::crypto::ring::default_provider().install_default();
                let client = reqwest::Client::builder()
                    .timeout(config.timeout)
                    .build()
                    .map_err(|e| SinkError::Delivery {
                        sink: config.name.clone(),
                        message: format!("HTTP client: {e}"),
                    })?;
                Target::Webhook {
                    client,
                    url: url.clone(),
                }
            }
            (None, None, Some(subject)) => Target::Nats {
                client: nats,
                subject: subject.clone(),
            },
            _ => return Err(SinkError::Target(config.name.clone())),
        };
        Ok(Self { config, target })
    }

    /// Deliver one stored finding, retrying with backoff.
    pub async fn deliver(&self, alert: &Alert) -> Result<Outcome, SinkError> {
        let Some(finding) = alert.finding.as_ref() else {
            return Ok(Outcome::Skipped);
        };
        let c = &self.config;
        if !c.min_severity.admits(finding.severity())
            || (!alert.is_new && !c.send_updates)
            || (finding.suppressed && !c.send_suppressed)
        {
            return Ok(Outcome::Skipped);
        }
        let body = match c.format {
            Format::Json => render::native(finding),
            Format::Slack => render::slack(finding),
            Format::Ocsf => render::ocsf(finding, alert.is_new),
        };
        let mut wait = c.backoff;
        let mut attempt = 1;
        loop {
            match self.send(&body).await {
                Ok(()) => return Ok(Outcome::Sent),
                Err(Failure::Permanent(message)) => return Err(self.error(message)),
                Err(Failure::Transient(message)) if attempt >= c.attempts.max(1) => {
                    return Err(self.error(format!("{message} (after {attempt} attempts)")));
                }
                Err(Failure::Transient(message)) => {
                    tracing::warn!(sink = %c.name, attempt, %message, "delivery failed, retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(60));
                    attempt += 1;
                }
            }
        }
    }

    fn error(&self, message: String) -> SinkError {
        SinkError::Delivery {
            sink: self.config.name.clone(),
            message,
        }
    }

    async fn send(&self, body: &Value) -> Result<(), Failure> {
        let bytes = serde_json::to_vec(body).expect("JSON values serialise");
        match &self.target {
            Target::File(path) => append_line(path, &bytes)
                .map_err(|e| Failure::Transient(format!("{}: {e}", path.display()))),
            Target::Webhook { client, url } => {
                let response = client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(bytes)
                    .send()
                    .await
                    .map_err(|e| Failure::Transient(format!("POST {url}: {e}")))?;
                let status = response.status();
                if status.is_success() {
                    Ok(())
                } else if status.is_client_error()
                    && status.as_u16() != 408
                    && status.as_u16() != 429
                {
                    // The receiver refuses this message: retrying will not help.
                    Err(Failure::Permanent(format!("POST {url}: {status}")))
                } else {
                    Err(Failure::Transient(format!("POST {url}: {status}")))
                }
            }
            Target::Nats {
                client: Some(client),
                subject,
            } => {
                client
                    .publish(subject.clone(), bytes.into())
                    .await
                    .map_err(|e| Failure::Transient(format!("publish {subject}: {e}")))?;
                client
                    .flush()
                    .await
                    .map_err(|e| Failure::Transient(format!("flush {subject}: {e}")))
            }
            Target::Nats {
                client: None,
                subject,
            } => Err(Failure::Permanent(format!(
                "no NATS connection to publish {subject} on (NATS sinks run in the alert service)"
            ))),
        }
    }
}

enum Failure {
    Transient(String),
    Permanent(String),
}

fn append_line(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let mut line = Vec::with_capacity(bytes.len() + 1);
    line.extend_from_slice(bytes);
    line.push(b'\n');
    // One write per line, so concurrent appenders do not interleave lines.
    file.write_all(&line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use trailhound_proto::Finding;

    fn alert(severity: Severity, is_new: bool) -> Alert {
        Alert {
            finding: Some(Finding {
                id: "f1".into(),
                detector: "TH-021".into(),
                title: "EC2 instance credentials used outside AWS".into(),
                severity: severity as i32,
                ..Default::default()
            }),
            is_new,
        }
    }

    fn config(toml_text: &str) -> SinkConfig {
        toml::from_str(toml_text).unwrap()
    }

    /// A webhook receiver on 127.0.0.1 that answers `statuses` in turn, then 200.
    async fn receiver(
        statuses: Vec<u16>,
    ) -> (String, Arc<AtomicUsize>, Arc<std::sync::Mutex<Vec<String>>>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (c, b) = (calls.clone(), bodies.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: String| {
                let n = c.fetch_add(1, Ordering::SeqCst);
                b.lock().unwrap().push(body);
                let status = statuses.get(n).copied().unwrap_or(200);
                async move { axum::http::StatusCode::from_u16(status).unwrap() }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}/hook"), calls, bodies)
    }

    #[tokio::test]
    async fn webhook_retries_with_backoff_until_it_is_accepted() {
        let (url, calls, bodies) = receiver(vec![503, 500]).await;
        let sink = Sink::new(
            config(&format!(
                "name = \"slack\"\nwebhook = \"{url}\"\nformat = \"slack\"\nbackoff = \"10ms\""
            )),
            None,
        )
        .unwrap();
        assert_eq!(
            sink.deliver(&alert(Severity::High, true)).await.unwrap(),
            Outcome::Sent
        );
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let body: Value = serde_json::from_str(&bodies.lock().unwrap()[2]).unwrap();
        assert!(
            body["text"].as_str().unwrap().starts_with("HIGH TH-021"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn a_receiver_that_stays_down_is_an_error_for_the_caller() {
        let (url, calls, _) = receiver(vec![503; 10]).await;
        let sink = Sink::new(
            config(&format!(
                "name = \"hook\"\nwebhook = \"{url}\"\nattempts = 3\nbackoff = \"1ms\""
            )),
            None,
        )
        .unwrap();
        let err = sink
            .deliver(&alert(Severity::High, true))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("503") && err.to_string().contains("after 3 attempts"),
            "{err}"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        let (url, calls, _) = receiver(vec![400]).await;
        let refused = Sink::new(
            config(&format!("name = \"hook\"\nwebhook = \"{url}\"")),
            None,
        )
        .unwrap();
        assert!(refused.deliver(&alert(Severity::High, true)).await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1, "a 400 is not retried");
    }

    #[tokio::test]
    async fn files_get_one_line_per_finding_and_filters_apply() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("findings.jsonl");
        let sink = Sink::new(
            config(&format!(
                "name = \"file\"\nfile = {:?}\nformat = \"ocsf\"\nmin_severity = \"medium\"",
                path
            )),
            None,
        )
        .unwrap();
        assert_eq!(
            sink.deliver(&alert(Severity::High, true)).await.unwrap(),
            Outcome::Sent
        );
        assert_eq!(
            sink.deliver(&alert(Severity::Low, true)).await.unwrap(),
            Outcome::Skipped
        );
        assert_eq!(
            sink.deliver(&alert(Severity::High, false)).await.unwrap(),
            Outcome::Skipped,
            "updates off"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0]["class_uid"], 2004);
    }

    #[test]
    fn exactly_one_target() {
        assert!(Sink::new(config("name = \"x\""), None).is_err());
        assert!(
            Sink::new(
                config("name = \"x\"\nfile = \"a\"\nnats_subject = \"s\""),
                None
            )
            .is_err()
        );
    }
}
