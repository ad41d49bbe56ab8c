use std::process::ExitCode;

use clap::Parser;

/// mimalloc, as `trailhound`: every message decoded allocates dozens of small strings,
/// and glibc's malloc made the stages ~1.5x slower (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Trailhound baseline service: per-principal, per-account and per-command baselines; enriched events to observations.
#[derive(Debug, Parser)]
#[command(name = "trailhound-baseline", version)]
struct Cli {
    #[command(flatten)]
    service: trailhound_service::ServiceArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    trailhound_service::main(
        "trailhound-baseline",
        &cli.service,
        trailhound_baseline_service::run,
    )
}
