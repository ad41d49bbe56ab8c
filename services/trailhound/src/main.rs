//! The `trailhound` command line. Argument parsing and wiring only: the
//! work is done by the library crates.

mod investigate;
mod output;
mod profile;
mod query;
mod s3;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use trailhound_pipeline::scan::Progress;
use trailhound_pipeline::{ScanConfig, ScanReport};
use trailhound_proto::Alert;
use trailhound_state::StateError;

/// mimalloc: every event allocates dozens of small strings on its way through the
/// stages; glibc's malloc made `scan` ~1.5x slower, and jemalloc needs ~14 % more CPU
/// than mimalloc (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Generate an organisation's CloudTrail with labelled attacks and
    /// benign look-alikes (a dataset for `eval` and benchmarks).
    Simulate(SimulateArgs),
    /// Scan a simulated dataset and report recall, precision, false
    /// positives and time to detection per scenario and detector.
    Eval(Box<EvalArgs>),
    /// List the detectors of the catalogue.
    Detectors,
    /// One principal over a scope of time, from logs: sessions, new behaviour against
    /// the 45 days before, impossible travel, flagged addresses, ATT&CK, related findings.
    Investigate(Box<investigate::InvestigateArgs>),
    /// What one principal normally does, from logs: services by region, places,
    /// networks, clients, commands, roles, buckets, addresses and sessions.
    Profile(Box<profile::ProfileLogsArgs>),
    /// Findings, investigations and profiles from a deployment's query service.
    Query(query::QueryArgs),
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
    /// delivery files (plain or .gz), JSON arrays, JSON lines, EventBridge,
    /// Event history (`aws cloudtrail lookup-events`), CloudWatch Logs
    /// (`aws logs filter-log-events`, subscription payloads); or
    /// `s3://bucket/prefix`: the logs under it, copied locally first.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    #[command(flatten)]
    pipeline: PipelineArgs,
    #[command(flatten)]
    s3: s3::S3Args,
    /// Output format; json lines by default when stdout is not a terminal.
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Only print findings created or updated at or above this severity.
    #[arg(long, value_enum, default_value = "informational")]
    min_severity: trailhound_sinks::MinSeverity,
}

#[derive(clap::Args)]
struct EvalArgs {
    /// A dataset written by `trailhound simulate`: `logs/` and `labels.jsonl`.
    dataset: PathBuf,
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// Findings below this severity are context, not alerts: they are
    /// neither true nor false positives.
    #[arg(long, value_enum, default_value = "low")]
    min_severity: trailhound_sinks::MinSeverity,
    /// Print the evaluation as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct SimulateArgs {
    /// Directory to write: `logs/` and `labels.jsonl`.
    #[arg(long)]
    out: PathBuf,
    /// `s3`: gzipped delivery files per account, region and 5 minutes;
    /// `jsonl`: one `logs/events.jsonl`.
    #[arg(long, value_enum, default_value = "s3")]
    format: SimulateFormat,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// First day, UTC (YYYY-MM-DD).
    #[arg(long, default_value = "2024-03-01")]
    start: String,
    #[arg(long, default_value_t = 45)]
    days: i64,
    #[arg(long, default_value_t = 3)]
    accounts: usize,
    /// IAM users (people) per account.
    #[arg(long, default_value_t = 6)]
    users: usize,
    /// Roles per account that people assume and work through.
    #[arg(long, default_value_t = 2)]
    roles: usize,
    /// EC2 instances (each with its role) per account.
    #[arg(long, default_value_t = 3)]
    instances: usize,
    /// Lambda functions per account.
    #[arg(long, default_value_t = 2)]
    lambdas: usize,
    /// Countries people work from (ISO codes; see `crates/synth/src/networks.rs`).
    #[arg(long, value_delimiter = ',', default_value = "US,DE,GB,FR,IN")]
    countries: Vec<String>,
    /// Scenarios to inject: `all`, `none`, or names separated by commas
    /// (`trailhound simulate --list-scenarios`).
    #[arg(long, default_value = "all")]
    scenarios: String,
    /// Day (from 0) of the first scenario; the others follow 4 hours apart.
    #[arg(long, default_value_t = 40)]
    attack_day: i64,
    /// Multiplies every member's daily number of calls.
    #[arg(long, default_value_t = 1.0)]
    volume: f64,
    /// Chance per person and working day of one call they never made
    /// before (benign drift; 0 for none).
    #[arg(long, default_value_t = 0.02)]
    drift: f64,
    /// Print the scenarios and exit.
    #[arg(long)]
    list_scenarios: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum SimulateFormat {
    S3,
    Jsonl,
}

/// How the pipeline is configured, shared by `scan` and `eval`.
#[derive(clap::Args)]
pub(crate) struct PipelineArgs {
    /// TOML configuration file (see docs/configuration.md); flags override it.
    #[arg(long, env = "TRAILHOUND_CONFIG")]
    config: Option<PathBuf>,
    /// Keep baselines and findings in this RocksDB directory across scans;
    /// files scanned into it before (the same path, size and modification
    /// time, or the same content) are skipped.
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
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    Json,
    Table,
    /// OCSF Detection Finding (class 2004), one per line.
    Ocsf,
}

impl Format {
    /// Print `findings` in this format on stdout.
    pub(crate) fn print(
        self,
        findings: impl Iterator<Item = Result<trailhound_proto::Finding, StateError>>,
    ) -> anyhow::Result<()> {
        match self {
            Format::Json => output::json_lines(findings),
            Format::Table => output::table(findings),
            Format::Ocsf => output::ocsf_lines(findings),
        }
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TRAILHOUND_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let outcome = match Cli::parse().command {
        Command::Scan(args) => scan(*args),
        Command::Simulate(args) => simulate(args),
        Command::Eval(args) => eval(*args),
        Command::Nats(command) => nats(command),
        Command::Query(args) => query::run(args),
        Command::Investigate(args) => investigate::run(*args),
        Command::Profile(args) => profile::run(*args),
        Command::Detectors => {
            for (id, name) in trailhound_detect::Detectors::catalogue() {
                output::line(&format!("{id}  {name}"))?;
            }
            Ok(())
        }
    };
    // A reader that stopped reading (`trailhound scan … | head`) ends the
    // output; it is not an error to report.
    match outcome {
        Err(e) if output_closed(&e) => Ok(()),
        outcome => outcome,
    }
}

fn output_closed(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
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
                let shown = findings.into_iter().map(Ok);
                format.unwrap_or_else(default_format).print(shown)?;
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

pub(crate) fn default_format() -> Format {
    if std::io::stdout().is_terminal() {
        Format::Table
    } else {
        Format::Json
    }
}

impl PipelineArgs {
    /// The configuration file with the flags applied.
    fn config(self) -> anyhow::Result<ScanConfig> {
        let args = self;
        let mut config = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                toml::from_str::<ScanConfig>(&text)
                    .with_context(|| format!("{}", path.display()))?
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
        Ok(config)
    }
}

/// Run the pipeline over `paths` with a progress bar on a terminal.
pub(crate) fn run_pipeline(paths: &[PathBuf], config: &ScanConfig) -> anyhow::Result<ScanReport> {
    let bar = std::io::stderr()
        .is_terminal()
        .then(|| output::progress_bar("files"));
    let mut progress = |p: Progress| {
        if let Some(bar) = &bar {
            bar.set_length(p.files_total as u64);
            bar.set_position(p.files_done as u64);
            bar.set_message(format!("{} events", p.events));
        }
    };
    let report = trailhound_pipeline::scan(paths, config, &mut progress)?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(report)
}

fn scan(args: ScanArgs) -> anyhow::Result<()> {
    let config = args.pipeline.config()?;
    let inputs = s3::local_inputs(&args.paths, &args.s3)?;
    let report = run_pipeline(&inputs.paths, &config)?;
    let format = args.format.unwrap_or_else(default_format);
    let shown = (report.findings.summaries().iter())
        .filter(|f| args.min_severity.admits(f.severity))
        .map(|f| report.findings.read(&f.id));
    format.print(shown)?;
    output::summary(&report)?;
    deliver(&config.sink, &report)?;
    if !report.file_errors.is_empty() && report.files_read == 0 {
        anyhow::bail!("no input could be read");
    }
    inputs.check_complete()
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
        for summary in report.findings.summaries() {
            let alert = Alert {
                is_new: summary.created,
                finding: Some(report.findings.read(&summary.id)?),
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

fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    use trailhound_synth::scenarios::Scenario;
    use trailhound_synth::simulate::{LogFormat, SimulationConfig, write_dataset};
    if args.list_scenarios {
        for s in Scenario::ALL {
            let expected = if s.malicious() {
                s.expected().join(" ")
            } else {
                "must not fire".into()
            };
            output::line(&format!(
                "{:<38} {:<22} {}",
                s.name(),
                expected,
                s.description()
            ))?;
        }
        return Ok(());
    }
    let scenarios = match args.scenarios.as_str() {
        "all" => Scenario::ALL.to_vec(),
        "none" => Vec::new(),
        list => list
            .split(',')
            .map(|name| {
                Scenario::from_name(name.trim())
                    .with_context(|| format!("unknown scenario {name:?} (see --list-scenarios)"))
            })
            .collect::<anyhow::Result<_>>()?,
    };
    let start = chrono::NaiveDate::parse_from_str(&args.start, "%Y-%m-%d")
        .with_context(|| format!("--start {:?} is not YYYY-MM-DD", args.start))?;
    let config = SimulationConfig {
        seed: args.seed,
        start_ms: start
            .and_time(chrono::NaiveTime::MIN)
            .and_utc()
            .timestamp_millis(),
        days: args.days,
        accounts: args.accounts,
        users_per_account: args.users,
        roles_per_account: args.roles,
        instances_per_account: args.instances,
        lambdas_per_account: args.lambdas,
        countries: args.countries,
        scenarios,
        attack_day: args.attack_day,
        volume: args.volume,
        drift: args.drift,
    };
    config.validate().map_err(anyhow::Error::msg)?;
    let format = match args.format {
        SimulateFormat::S3 => LogFormat::S3,
        SimulateFormat::Jsonl => LogFormat::JsonLines,
    };
    let summary = write_dataset(&config, &args.out, format)
        .with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!(
        "{} events in {} files, {} labelled scenarios, written to {}",
        summary.events,
        summary.files,
        summary.labels.len(),
        args.out.display()
    );
    Ok(())
}

fn eval(args: EvalArgs) -> anyhow::Result<()> {
    use trailhound_synth::simulate::{labels_path, logs_dir, read_labels};
    let labels = read_labels(&labels_path(&args.dataset)).map_err(anyhow::Error::msg)?;
    let config = args.pipeline.config()?;
    let report = run_pipeline(&[logs_dir(&args.dataset)], &config)?;
    // Rates are per distinct event: one delivered twice is one call.
    let evaluation = trailhound_eval::evaluate(
        &report.findings.to_vec()?,
        &labels,
        report.events_read - report.events_duplicate,
        args.min_severity.severity(),
    );
    if args.json {
        output::line(&serde_json::to_string_pretty(&evaluation)?)?;
    } else {
        output::line(&evaluation.table())?;
    }
    eprintln!(
        "scanned {} events in {:.1} s ({:.0} events/s)",
        report.events_read,
        report.elapsed.as_secs_f64(),
        report.events_per_second()
    );
    Ok(())
}
