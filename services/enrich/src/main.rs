use std::process::ExitCode;

use clap::Parser;

/// mimalloc, as `trailhound`: every message decoded allocates dozens of small strings,
/// and glibc's malloc made the stages ~1.5x slower (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Trailhound enrich service: raw CloudTrail events to enriched events (geo, ASN, AWS ranges, user agent, ATT&CK).
#[derive(Debug, Parser)]
#[command(name = "trailhound-enrich", version)]
struct Cli {
    #[command(flatten)]
    service: trailhound_service::ServiceArgs,
    #[command(flatten)]
    enrich: trailhound_enrich_service::EnrichArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let enrich = cli.enrich;
    trailhound_service::main(
        "trailhound-enrich",
        &cli.service,
        move |config, shutdown| trailhound_enrich_service::run(config, enrich, shutdown),
    )
}
