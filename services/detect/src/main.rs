use std::process::ExitCode;

use clap::Parser;

/// mimalloc, as `trailhound`: every message decoded allocates dozens of small strings,
/// and glibc's malloc made the stages ~1.5x slower (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
