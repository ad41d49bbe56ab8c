use std::process::ExitCode;

use clap::Parser;

/// mimalloc, as `trailhound`: every message decoded allocates dozens of small strings,
/// and glibc's malloc made the stages ~1.5x slower (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
