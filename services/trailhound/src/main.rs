//! The `trailhound` command line. Argument parsing and wiring only: the
//! work is done by the library crates.

mod output;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use trailhound_pipeline::scan::Progress;
use trailhound_pipeline::{ScanConfig, ScanReport};
use trailhound_proto::Alert;

#[derive(Parser)]
#[command(
    name = "trailhound",
    version,
    about = "Find compromised AWS identities in CloudTrail"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every stage in this process over CloudTrail logs and print findings.
    Scan(Box<ScanArgs>),
    /// List the detectors of the catalogue.
    Detectors,
    /// Manage the NATS JetStream streams the services use.
    #[command(subcommand)]
    Nats(NatsCommand),
}

#[derive(Subcommand)]
enum NatsCommand {
    /// Create or update every stream with the configured retention and
    /// limits (the services also do this when they start).
    Init(trailhound_service::ServiceArgs),
    /// Wait until every consumer has acked everything it was given.
    WaitIdle {
        #[command(flatten)]
        service: trailhound_service::ServiceArgs,
        /// Give up after this long (e.g. 10m).
        #[arg(long, value_parser = humantime::parse_duration, default_value = "10m")]
        timeout: Duration,
    },
    /// Print the findings the alert service has stored (from th.alerts).
    Findings {
        #[command(flatten)]
        service: trailhound_service::ServiceArgs,
        /// Output format; json lines by default when stdout is not a terminal.
        #[arg(long, value_enum)]
        format: Option<Format>,
    },
    /// Print the dead-lettered messages with the stage and the reason.
    DeadLetters(trailhound_service::ServiceArgs),
}

#[derive(clap::Args)]
struct ScanArgs {
    /// Files or directories (searched recursively); `-` reads stdin. S3
    /// delivery files (plain or .gz), JSON arrays, JSON lines, EventBridge.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// TOML configuration file (see docs/configuration.md); flags override it.
    #[arg(long, env = "TRAILHOUND_CONFIG")]
    config: Option<PathBuf>,
    /// Output format; json lines by default when stdout is not a terminal.
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Keep baselines and findings in this RocksDB directory across scans.
    #[arg(long, env = "TRAILHOUND_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Write every rejected record, with its origin and reason, to this file.
    #[arg(long)]
    dead_letter: Option<PathBuf>,
    /// MaxMind-format City database (default: data/geoip/city.mmdb if present).
    #[arg(long, env = "TRAILHOUND_GEOIP_CITY")]
    geoip_city: Option<PathBuf>,
    /// MaxMind-format ASN database (default: data/geoip/asn.mmdb if present).
    #[arg(long, env = "TRAILHOUND_GEOIP_ASN")]
    geoip_asn: Option<PathBuf>,
    /// AWS ip-ranges.json, or `builtin` for the shipped snapshot; unset,
    /// Amazon's ASNs decide which addresses are AWS.
    #[arg(long, env = "TRAILHOUND_AWS_IP_RANGES")]
    aws_ip_ranges: Option<PathBuf>,
    /// A file of flagged addresses and CIDRs (TH-017), one per line; repeat
    /// for several lists. Adds to `enrich.threat_lists` of the config.
    #[arg(long = "threat-list")]
    threat_lists: Vec<PathBuf>,
    /// Profile age before novelty detectors fire for a principal (e.g. 30d).
    #[arg(long, value_parser = humantime::parse_duration)]
    training_period: Option<Duration>,
    /// Data needed before any novelty detector fires (e.g. 14d).
    #[arg(long, value_parser = humantime::parse_duration)]
    activation_period: Option<Duration>,
    /// Only print findings created or updated at or above this severity.
    #[arg(long, value_enum, default_value = "informational")]
    min_severity: trailhound_sinks::MinSeverity,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Json,
    Table,
    /// OCSF Detection Finding (class 2004), one per line.
    Ocsf,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TRAILHOUND_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Scan(args) => scan(*args),
        Command::Nats(command) => nats(command),
        Command::Detectors => {
            for (id, name) in trailhound_detect::Detectors::catalogue() {
                output::line(&format!("{id}  {name}"))?;
            }
            Ok(())
        }
    }
}

fn nats(command: NatsCommand) -> anyhow::Result<()> {
    use trailhound_pipeline::nats::{Topic, inspect};
    let args = match &command {
        NatsCommand::Init(args) | NatsCommand::DeadLetters(args) => args,
        NatsCommand::WaitIdle { service, .. } | NatsCommand::Findings { service, .. } => service,
    };
    let config = trailhound_service::ServiceConfig::load(args)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        // Without a server, fail rather than wait for one.
        let js = tokio::time::timeout(Duration::from_secs(30), config.connect())
            .await
            .with_context(|| format!("no answer from NATS at {}", config.nats_url))??;
        let nats_error = |e: async_nats::Error| anyhow::anyhow!("{}: {e}", config.nats_url);
        match command {
            NatsCommand::Init(_) => output::line(&format!(
                "streams ready on {}: {}",
                config.nats_url,
                Topic::ALL.map(|t| t.stream).join(", ")
            ))?,
            NatsCommand::WaitIdle { timeout, .. } => {
                inspect::wait_idle(&js, Duration::from_millis(500), timeout)
                    .await
                    .map_err(nats_error)?;
            }
            NatsCommand::Findings { format, .. } => {
                let mut findings = inspect::stored_findings(&js).await.map_err(nats_error)?;
                findings.sort_by(|a, b| {
                    b.severity
                        .cmp(&a.severity)
                        .then(a.first_event_ms.cmp(&b.first_event_ms))
                });
                let shown: Vec<_> = findings.iter().collect();
                match format.unwrap_or_else(default_format) {
                    Format::Json => output::json_lines(&shown)?,
                    Format::Table => output::table(&shown)?,
                    Format::Ocsf => output::ocsf_lines(&shown)?,
                }
            }
            NatsCommand::DeadLetters(_) => {
                for dead in inspect::dead_letters(&js).await.map_err(nats_error)? {
                    output::line(&format!("{}\t{}", dead.subject, dead.reason))?;
                }
            }
        }
        anyhow::Ok(())
    })
}

fn default_format() -> Format {
    if std::io::stdout().is_terminal() {
        Format::Table
    } else {
        Format::Json
    }
}

fn scan(args: ScanArgs) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            toml::from_str::<ScanConfig>(&text).with_context(|| format!("{}", path.display()))?
        }
        None => ScanConfig::default(),
    };
    let default_db =
        |name: &str| Some(PathBuf::from("data/geoip").join(name)).filter(|p| p.exists());
    let enrich = &mut config.enrich;
    enrich.geoip_city = args
        .geoip_city
        .or(enrich.geoip_city.take())
        .or_else(|| default_db("city.mmdb"));
    enrich.geoip_asn = args
        .geoip_asn
        .or(enrich.geoip_asn.take())
        .or_else(|| default_db("asn.mmdb"));
    enrich.aws_ip_ranges = args.aws_ip_ranges.or(enrich.aws_ip_ranges.take());
    enrich.threat_lists.extend(args.threat_lists);
    config.state_dir = args.state_dir.or(config.state_dir);
    config.dead_letter = args.dead_letter.or(config.dead_letter);
    if let Some(t) = args.training_period {
        config.detection.training_period = t;
    }
    if let Some(a) = args.activation_period {
        config.detection.activation_period = a;
    }

    let bar = std::io::stderr().is_terminal().then(output::progress_bar);
    let mut progress = |p: Progress| {
        if let Some(bar) = &bar {
            bar.set_length(p.files_total as u64);
            bar.set_position(p.files_done as u64);
            bar.set_message(format!("{} events", p.events));
        }
    };
    let report = trailhound_pipeline::scan(&args.paths, &config, &mut progress)?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let format = args.format.unwrap_or_else(default_format);
    let shown: Vec<_> = report
        .findings
        .iter()
        .filter(|f| args.min_severity.admits(f))
        .collect();
    match format {
        Format::Json => output::json_lines(&shown)?,
        Format::Table => output::table(&shown)?,
        Format::Ocsf => output::ocsf_lines(&shown)?,
    }
    output::summary(&report)?;
    deliver(&config.sink, &report)?;
    if !report.file_errors.is_empty() && report.files_read == 0 {
        anyhow::bail!("no input could be read");
    }
    Ok(())
}

/// Send the scan's findings to the configured sinks; a sink that still
/// fails after its retries is an error (the findings were printed, and are
/// stored when a state directory is used).
fn deliver(sinks: &[trailhound_sinks::SinkConfig], report: &ScanReport) -> anyhow::Result<()> {
    if sinks.is_empty() {
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut failed = Vec::new();
    for config in sinks {
        let sink = trailhound_sinks::Sink::new(config.clone(), None)?;
        let (mut sent, mut errors) = (0, Vec::new());
        for finding in &report.findings {
            let alert = Alert {
                is_new: report.created.contains(&finding.id),
                finding: Some(finding.clone()),
            };
            match runtime.block_on(sink.deliver(&alert)) {
                Ok(trailhound_sinks::Outcome::Sent) => sent += 1,
                Ok(trailhound_sinks::Outcome::Skipped) => {}
                Err(e) => errors.push(e.to_string()),
            }
        }
        eprintln!("sink {}: {sent} sent, {} failed", config.name, errors.len());
        if let Some(first) = errors.first() {
            failed.push(first.clone());
        }
    }
    anyhow::ensure!(failed.is_empty(), "delivery failed: {}", failed.join("; "));
    Ok(())
}
