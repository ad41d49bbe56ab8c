use std::process::ExitCode;

use clap::Parser;

/// jemalloc: every event allocates dozens of small strings on its way through the
/// stages, and glibc's malloc made `scan` ~1.5x slower (README, Performance).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Trailhound ingest service: CloudTrail from files, HTTP POSTs and S3 (via
/// SQS notifications) onto th.raw, each event once.
#[derive(Debug, Parser)]
#[command(name = "trailhound-ingest", version)]
struct Cli {
    #[command(flatten)]
    service: trailhound_service::ServiceArgs,
    #[command(flatten)]
    ingest: trailhound_ingest_service::IngestArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let ingest = cli.ingest;
    trailhound_service::main(
        "trailhound-ingest",
        &cli.service,
        move |config, shutdown| trailhound_ingest_service::run(config, ingest, shutdown),
    )
}
