//! The enrich service: raw CloudTrail events in, enriched events out,
//! partitioned by (account, principal). Stateless: all replicas share one
//! consumer.

use std::path::PathBuf;

use tokio_util::sync::CancellationToken;
use trailhound_pipeline::nats::topology;
use trailhound_service::ServiceConfig;

/// Enrichment data, overriding `[enrich]` of the config file.
#[derive(Debug, Clone, clap::Args)]
pub struct EnrichArgs {
    /// MaxMind-format City database (GeoLite2/GeoIP2 City, DB-IP City Lite).
    #[arg(long, env = "TRAILHOUND_GEOIP_CITY")]
    pub geoip_city: Option<PathBuf>,
    /// MaxMind-format ASN database.
    #[arg(long, env = "TRAILHOUND_GEOIP_ASN")]
    pub geoip_asn: Option<PathBuf>,
    /// AWS ip-ranges.json, or `builtin` for the shipped snapshot; unset,
    /// Amazon's ASNs decide which addresses are AWS.
    #[arg(long, env = "TRAILHOUND_AWS_IP_RANGES")]
    pub aws_ip_ranges: Option<PathBuf>,
    /// A file of flagged addresses and CIDRs (TH-017), one per line; repeat
    /// for several lists. Adds to `enrich.threat_lists` of the config.
    #[arg(long = "threat-list")]
    pub threat_lists: Vec<PathBuf>,
}

pub async fn run(
    mut config: ServiceConfig,
    args: EnrichArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let enrich = &mut config.enrich;
    enrich.geoip_city = args.geoip_city.or(enrich.geoip_city.take());
    enrich.geoip_asn = args.geoip_asn.or(enrich.geoip_asn.take());
    enrich.aws_ip_ranges = args.aws_ip_ranges.or(enrich.aws_ip_ranges.take());
    enrich.threat_lists.extend(args.threat_lists);
    let (metrics, ready) = config.start_endpoints(1, &shutdown);
    let js = config.connect().await?;
    let hop = topology::enrich(&config.enrich, config.partitions);
    for warning in &hop.stage.0.warnings {
        tracing::warn!("{warning}");
    }
    let stats = config
        .run_hop(&js, hop, &metrics, &ready, &shutdown)
        .await?;
    tracing::info!(?stats, "enrich stopped");
    Ok(())
}
