//! `trailhound query`: the findings a deployment stored, investigations and
//! principals' profiles, from its query service over gRPC.

use std::time::Duration;

use anyhow::Context as _;
use clap::Subcommand;
use trailhound_proto::investigation_service_client::InvestigationServiceClient;
use trailhound_proto::profile_service_client::ProfileServiceClient;
use trailhound_proto::query_service_client::QueryServiceClient;
use trailhound_proto::{
    Finding, GetFindingRequest, GetInvestigationRequest, IndicatorType, Investigation,
    ListFindingsRequest, ListIndicatorsRequest, ListInvestigationEventsRequest,
    ListInvestigationSessionsRequest, StartInvestigationRequest,
};
use trailhound_query::MAX_PAGE_SIZE;
use trailhound_query::investigation::ReportJson;
use trailhound_sinks::MinSeverity;

use crate::investigate::ScopeArgs;
use crate::profile::{ProfileArgs, print_profile};
use crate::{Format, default_format, output};

/// The largest investigation the command line takes.
const MAX_REPORT_BYTES: usize = 256 << 20;

#[derive(clap::Args)]
pub struct QueryArgs {
    /// The query service's gRPC endpoint.
    #[arg(
        long,
        env = "TRAILHOUND_QUERY_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    endpoint: String,
    /// Output format; json lines by default when stdout is not a terminal.
    #[arg(long, value_enum, global = true)]
    format: Option<Format>,
    #[command(subcommand)]
    command: QueryCommand,
}

#[derive(Subcommand)]
enum QueryCommand {
    /// Stored findings, most recently active first.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// Print at most this many (0: all).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// One finding, by id.
    Get { id: String },
    /// Findings as they are created or updated, until interrupted.
    Watch {
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// Start an investigation of a principal over a scope, from the events
    /// and findings the query service keeps, and print it.
    Investigate(ScopeArgs),
    /// Print an investigation started earlier, by id.
    Investigation {
        id: String,
        /// Events of the scope the table lists.
        #[arg(long, default_value_t = 20)]
        events: usize,
    },
    /// What a principal normally does, from the events the query service
    /// keeps: by default the 45 days before now.
    Profile(ProfileArgs),
}

#[derive(clap::Args)]
struct FilterArgs {
    #[arg(long)]
    account: Option<String>,
    /// Principal ARN as findings name it (a role, not its sessions).
    #[arg(long)]
    principal: Option<String>,
    /// Detector id, e.g. TH-002.
    #[arg(long)]
    detector: Option<String>,
    #[arg(long, value_enum)]
    min_severity: Option<MinSeverity>,
    /// Active at or after this time: RFC 3339, or a duration ago (`24h`, `7d`).
    #[arg(long, value_parser = parse_time)]
    since: Option<i64>,
    /// Active before this time: RFC 3339, or a duration ago.
    #[arg(long, value_parser = parse_time)]
    until: Option<i64>,
}

impl FilterArgs {
    fn request(self) -> ListFindingsRequest {
        ListFindingsRequest {
            account_id: self.account.unwrap_or_default(),
            principal: self.principal.unwrap_or_default(),
            detector: self.detector.unwrap_or_default(),
            min_severity: self.min_severity.map_or(0, |s| s.severity() as i32),
            since_ms: self.since.unwrap_or_default(),
            until_ms: self.until.unwrap_or_default(),
            ..Default::default()
        }
    }
}

/// Milliseconds since the epoch of an RFC 3339 time or of `now - duration`.
pub(crate) fn parse_time(text: &str) -> Result<i64, String> {
    if let Some(ms) = trailhound_cloudtrail::time::parse_event_time(text) {
        return Ok(ms);
    }
    let ago = humantime::parse_duration(text)
        .map_err(|_| format!("{text:?} is neither an RFC 3339 time nor a duration"))?;
    Ok(chrono::Utc::now().timestamp_millis() - ago.as_millis() as i64)
}

/// How to print an investigation or a profile: a table or JSON (OCSF is a
/// form of findings).
pub(crate) fn report_format(format: Option<Format>) -> anyhow::Result<Format> {
    match format.unwrap_or_else(default_format) {
        Format::Ocsf => {
            anyhow::bail!(
                "OCSF is a form of findings; investigations and profiles are table or json"
            )
        }
        format => Ok(format),
    }
}

/// An investigation in a format from [`report_format`].
pub(crate) fn print_investigation(
    report: &Investigation,
    format: Format,
    events: usize,
) -> anyhow::Result<()> {
    match format {
        Format::Json => output::json(&ReportJson(report))?,
        _ => output::investigation(report, events)?,
    }
    Ok(())
}

pub fn run(args: QueryArgs) -> anyhow::Result<()> {
    let format = args.format.unwrap_or_else(default_format);
    let print = |findings: Vec<Finding>| format.print(findings.into_iter().map(Ok));
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let endpoint = args.endpoint.clone();
        let channel = tonic::transport::Endpoint::from_shared(endpoint.clone())
            .with_context(|| format!("{endpoint} is not a gRPC endpoint"))?
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await
            .with_context(|| format!("no query service at {endpoint}"))?;
        // An investigation lists every event of its scope: a busy role's
        // day can be far over gRPC's default 4 MiB.
        let mut investigations = InvestigationServiceClient::new(channel.clone())
            .max_decoding_message_size(MAX_REPORT_BYTES);
        let mut profiles = ProfileServiceClient::new(channel.clone());
        let mut client = QueryServiceClient::new(channel);
        let failed = |e: tonic::Status| anyhow::anyhow!("{endpoint}: {}", e.message());
        match args.command {
            QueryCommand::List { filter, limit } => {
                let mut request = filter.request();
                let mut shown = Vec::new();
                loop {
                    let wanted = match limit {
                        0 => MAX_PAGE_SIZE,
                        limit => (limit - shown.len()).min(MAX_PAGE_SIZE),
                    };
                    request.page_size = wanted as u32;
                    let page = client
                        .list_findings(request.clone())
                        .await
                        .map_err(failed)?
                        .into_inner();
                    shown.extend(page.findings);
                    if page.next_page_token.is_empty() || (limit != 0 && shown.len() >= limit) {
                        break;
                    }
                    request.page_token = page.next_page_token;
                }
                print(shown)?;
            }
            QueryCommand::Get { id } => {
                let finding = client
                    .get_finding(GetFindingRequest { id })
                    .await
                    .map_err(failed)?;
                print(vec![finding.into_inner()])?;
            }
            QueryCommand::Investigate(scope) => {
                let subject = scope.subject()?;
                let request = StartInvestigationRequest {
                    account_id: subject.account_id,
                    principal: subject.principal,
                    scope_start_ms: subject.start_ms,
                    scope_end_ms: subject.end_ms,
                };
                let report = investigations
                    .start_investigation(request)
                    .await
                    .map_err(failed)?;
                let format = report_format(args.format)?;
                let report = completed(
                    &mut investigations,
                    report.into_inner(),
                    format,
                    scope.events,
                )
                .await
                .map_err(failed)?;
                print_investigation(&report, format, scope.events)?;
            }
            QueryCommand::Investigation { id, events } => {
                let report = investigations
                    .get_investigation(GetInvestigationRequest { id })
                    .await
                    .map_err(failed)?;
                let format = report_format(args.format)?;
                let report = completed(&mut investigations, report.into_inner(), format, events)
                    .await
                    .map_err(failed)?;
                print_investigation(&report, format, events)?;
            }
            QueryCommand::Profile(profile) => {
                let found = profiles
                    .get_profile(profile.request(None))
                    .await
                    .map_err(failed)?;
                print_profile(&found.into_inner(), report_format(args.format)?)?;
            }
            QueryCommand::Watch { filter } => {
                let mut stream = client
                    .watch_findings(filter.request())
                    .await
                    .map_err(failed)?
                    .into_inner();
                while let Some(finding) = stream.message().await.map_err(failed)? {
                    print(vec![finding])?;
                }
            }
        }
        anyhow::Ok(())
    })
}

/// The report with all its indicators and sessions, and as many of its
/// scope's events as `format` prints (all for JSON, `shown` for the table):
/// the service sends the first 1,000 of each with the report, and pages the
/// rest.
async fn completed(
    client: &mut InvestigationServiceClient<tonic::transport::Channel>,
    mut report: Investigation,
    format: Format,
    shown: usize,
) -> Result<Investigation, tonic::Status> {
    let id = report.id.clone();
    let page_size = MAX_PAGE_SIZE as u32;
    if (report.indicators.len() as u64) < report.indicator_count {
        let request = |page_token| ListIndicatorsRequest {
            investigation_id: id.clone(),
            r#type: IndicatorType::Unspecified as i32,
            page_size,
            page_token,
        };
        report.indicators = all_pages(usize::MAX, async |token| {
            let page = client.list_indicators(request(token)).await?.into_inner();
            Ok((page.indicators, page.next_page_token))
        })
        .await?;
    }
    if (report.sessions.len() as u64) < report.session_count {
        let request = |page_token| ListInvestigationSessionsRequest {
            investigation_id: id.clone(),
            page_size,
            page_token,
        };
        report.sessions = all_pages(usize::MAX, async |token| {
            let page = client.list_investigation_sessions(request(token)).await?;
            let page = page.into_inner();
            Ok((page.sessions, page.next_page_token))
        })
        .await?;
    }
    let in_scope = usize::try_from(report.events_in_scope).unwrap_or(usize::MAX);
    let wanted = match format {
        Format::Json => in_scope,
        _ => shown.min(in_scope),
    };
    if report.events.len() < wanted {
        let request = |page_token| ListInvestigationEventsRequest {
            investigation_id: id.clone(),
            page_size,
            page_token,
        };
        report.events = all_pages(wanted, async |token| {
            let page = client.list_investigation_events(request(token)).await?;
            let page = page.into_inner();
            Ok((page.events, page.next_page_token))
        })
        .await?;
    }
    Ok(report)
}

/// Items from `page` (a page token → the page's items and the next token),
/// from the first page until the last or until there are `wanted`.
async fn all_pages<T>(
    wanted: usize,
    mut page: impl AsyncFnMut(String) -> Result<(Vec<T>, String), tonic::Status>,
) -> Result<Vec<T>, tonic::Status> {
    let (mut items, mut token) = (Vec::new(), String::new());
    loop {
        let (more, next) = page(token).await?;
        items.extend(more);
        if next.is_empty() || items.len() >= wanted {
            return Ok(items);
        }
        token = next;
    }
}
