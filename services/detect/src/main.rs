use std::process::ExitCode;

use clap::Parser;

/// jemalloc: every event allocates dozens of small strings on its way through the
/// stages, and glibc's malloc made `scan` ~1.5x slower (README, Performance).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Trailhound detect service: observations to candidate findings.
#[derive(Debug, Parser)]
#[command(name = "trailhound-detect", version)]
struct Cli {
    #[command(flatten)]
    service: trailhound_service::ServiceArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    trailhound_service::main(
        "trailhound-detect",
        &cli.service,
        trailhound_detect_service::run,
    )
}
