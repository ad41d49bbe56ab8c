use std::process::ExitCode;

use clap::Parser;

/// mimalloc, as `trailhound`: every message decoded allocates dozens of small strings,
/// and glibc's malloc made the stages ~1.5x slower (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Trailhound alert service: candidate findings merged, deduplicated and stored; published on th.alerts.
#[derive(Debug, Parser)]
#[command(name = "trailhound-alert", version)]
struct Cli {
    #[command(flatten)]
    service: trailhound_service::ServiceArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    trailhound_service::main(
        "trailhound-alert",
        &cli.service,
        trailhound_alert_service::run,
    )
}
