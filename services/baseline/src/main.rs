use std::process::ExitCode;

use clap::Parser;

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
