use std::process::ExitCode;

use clap::Parser;

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
