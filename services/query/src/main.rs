use std::process::ExitCode;

use clap::Parser;

/// mimalloc, as `trailhound`: every message decoded allocates dozens of small strings,
/// and glibc's malloc made the stages ~1.5x slower (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Trailhound query service: the stored findings of th.alerts kept in its own RocksDB and served over gRPC.
#[derive(Debug, Parser)]
#[command(name = "trailhound-query", version)]
struct Cli {
    #[command(flatten)]
    service: trailhound_service::ServiceArgs,
    #[command(flatten)]
    query: trailhound_query_service::QueryArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let query = cli.query;
    trailhound_service::main("trailhound-query", &cli.service, move |config, shutdown| {
        trailhound_query_service::run(config, query, shutdown)
    })
}
