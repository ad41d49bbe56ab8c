//! The enrich stage's logic: one [`CloudTrailEvent`] in, one
//! [`EnrichedEvent`] out. Lookups are cached per address and user agent,
//! since a few thousand of each cover millions of events.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use foldhash::HashMap;
use hashbrown::hash_map::EntryRef;

use trailhound_proto::{Attack, CloudTrailEvent, EnrichedEvent, Geo, Network, UserAgentInfo};

use crate::attack::AttackTable;
use crate::aws_ranges::AwsRanges;
use crate::geo::{GeoDb, GeoKind};
use crate::threat_lists::ThreatLists;
use crate::watched::WatchedDb;
use crate::{hosting, service, source, user_agent};

/// Amazon's autonomous systems, used to tell AWS addresses when no
/// `ip-ranges.json` is configured.
const AMAZON_ASNS: &[u32] = &[16509, 14618, 8987, 7224, 10124, 38895, 39111, 62785];

/// How often database and threat-list files are checked for changes.
const RELOAD_CHECK: Duration = Duration::from_secs(10);

/// Address lookups between readings of the clock for [`RELOAD_CHECK`].
const LOOKUPS_PER_CLOCK: u32 = 1024;

/// Each cache starts over past this many entries, keeping memory flat.
const CACHE_LIMIT: usize = 200_000;

#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnricherConfig {
    /// MaxMind-format City database (`.mmdb` or `.mmdb.gz`).
    pub geoip_city: Option<PathBuf>,
    /// MaxMind-format ASN database.
    pub geoip_asn: Option<PathBuf>,
    /// AWS `ip-ranges.json` (plain or gzip), or `builtin` for the shipped
    /// snapshot. Unset: Amazon's ASNs decide what is inside AWS.
    pub aws_ip_ranges: Option<PathBuf>,
    /// Files of flagged addresses and CIDRs (TH-017), each list named by
    /// its file stem; read again when they change.
    pub threat_lists: Vec<PathBuf>,
}

#[derive(Debug)]
pub struct Enricher {
    city: Option<WatchedDb>,
    asn: Option<WatchedDb>,
    last_reload_check: Instant,
    lookups_until_clock: u32,
    ranges: Option<AwsRanges>,
    threat_lists: ThreatLists,
    attack: AttackTable,
    partitions: u32,
    by_ip: HashMap<IpAddr, (Option<Geo>, Network)>,
    /// hashbrown's, to look a user agent up by `&str` and insert it on a
    /// miss with one hash of the (often long) string.
    by_user_agent: hashbrown::HashMap<String, UserAgentInfo, foldhash::fast::RandomState>,
    /// What could not be loaded, one line each; enrichment goes on without it.
    pub warnings: Vec<String>,
}

/// An event that names no principal cannot be baselined. The event comes
/// back with the reason, for its caller to report.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no usable principal in userIdentity (type {identity_type:?})")]
pub struct NoPrincipal {
    pub identity_type: String,
    pub event: Box<CloudTrailEvent>,
}

impl Enricher {
    pub fn new(config: &EnricherConfig, partitions: u32) -> Self {
        let mut warnings = Vec::new();
        let mut open = |path: &Option<PathBuf>, kind: GeoKind| match path {
            None => {
                let what = kind.name();
                warnings.push(format!(
                    "no {what} database configured: {what} fields are unknown"
                ));
                None
            }
            Some(p) => Some(WatchedDb::open(p.clone(), kind, &mut warnings)),
        };
        let city = open(&config.geoip_city, GeoKind::City);
        let asn = open(&config.geoip_asn, GeoKind::Asn);
        let ranges = match &config.aws_ip_ranges {
            None => None,
            Some(p) if p.as_os_str() == "builtin" => Some(AwsRanges::builtin()),
            Some(p) => AwsRanges::open(p)
                .map_err(|e| {
                    warnings.push(format!(
                        "AWS ip-ranges unusable, falling back to Amazon ASNs: {e}"
                    ))
                })
                .ok(),
        };
        let (threat_lists, list_warnings) = ThreatLists::open(&config.threat_lists);
        warnings.extend(list_warnings);
        Self {
            city,
            asn,
            last_reload_check: Instant::now(),
            lookups_until_clock: LOOKUPS_PER_CLOCK,
            ranges,
            threat_lists,
            attack: AttackTable::builtin(),
            partitions,
            by_ip: HashMap::default(),
            by_user_agent: hashbrown::HashMap::default(),
            warnings,
        }
    }

    pub fn enrich(&mut self, event: Box<CloudTrailEvent>) -> Result<EnrichedEvent, NoPrincipal> {
        let mut enriched = EnrichedEvent::default();
        self.enrich_into(event, &mut enriched)?;
        Ok(enriched)
    }

    /// [`enrich`](Self::enrich) into `out`, an enriched event already
    /// used: the principal and the cached enrichment are written into its
    /// strings, which allocates nothing when they are long enough. On an
    /// error `out` holds nothing meaningful but keeps its strings.
    pub fn enrich_into(
        &mut self,
        event: Box<CloudTrailEvent>,
        out: &mut EnrichedEvent,
    ) -> Result<(), NoPrincipal> {
        // Every field named: one added to EnrichedEvent fails to compile
        // here until it is set too (a reused message would keep it).
        let EnrichedEvent {
            event: event_field,
            principal,
            geo,
            network,
            user_agent,
            attack,
            service: service_name,
            global_service,
            failed,
        } = out;
        let principal = principal.get_or_insert_default();
        if !trailhound_cloudtrail::normalise_into(&event, self.partitions, principal) {
            return Err(NoPrincipal {
                identity_type: event
                    .user_identity
                    .as_ref()
                    .map(|i| i.r#type.clone())
                    .unwrap_or_default(),
                event,
            });
        }
        match self.locate(&event.source_ip, &event.vpc_endpoint_id) {
            Some((located, its_network)) => {
                copy_option(located.as_ref(), geo);
                copy_option(Some(its_network), network);
            }
            None => {
                *geo = None;
                *network = Some(Network {
                    is_network_location: false,
                    ..Default::default()
                });
            }
        }
        copy_option(Some(self.user_agent(&event.user_agent)), user_agent);
        copy_option(self.attack.lookup(&event.event_name), attack);
        service_name.clear();
        service_name.push_str(service::short_name(&event.event_source));
        *global_service = service::is_global(service_name);
        *failed = !event.error_code.is_empty();
        *event_field = Some(event);
        Ok(())
    }

    /// Where a network address is, from the cache or the databases; `None`
    /// for a source that is not one ("AWS Internal", a service host name,
    /// a private address).
    fn locate(
        &mut self,
        source_ip: &str,
        vpc_endpoint_id: &str,
    ) -> Option<&(Option<Geo>, Network)> {
        let ip = source::network_address(source_ip, vpc_endpoint_id)?;
        if self.reload_changed_files()
            || (self.by_ip.len() >= CACHE_LIMIT && !self.by_ip.contains_key(&ip))
        {
            self.by_ip.clear();
        }
        let (city, asn) = (db(&self.city), db(&self.asn));
        let (ranges, threat_lists) = (self.ranges.as_ref(), &self.threat_lists);
        Some(
            self.by_ip
                .entry(ip)
                .or_insert_with(|| look_up(ip, city, asn, ranges, threat_lists)),
        )
    }

    fn user_agent(&mut self, ua: &str) -> &UserAgentInfo {
        if self.by_user_agent.len() >= CACHE_LIMIT && !self.by_user_agent.contains_key(ua) {
            self.by_user_agent.clear();
        }
        match self.by_user_agent.entry_ref(ua) {
            EntryRef::Occupied(hit) => hit.into_mut(),
            EntryRef::Vacant(miss) => miss.insert(user_agent::parse(ua)),
        }
    }
}

/// An address's location and network from the databases.
fn look_up(
    ip: IpAddr,
    city: Option<&GeoDb>,
    asn: Option<&GeoDb>,
    ranges: Option<&AwsRanges>,
    threat_lists: &ThreatLists,
) -> (Option<Geo>, Network) {
    let geo = city.and_then(|db| db.city(ip));
    let (asn, as_org) = asn.and_then(|db| db.asn(ip)).unwrap_or_default();
    let mut network = Network {
        is_network_location: true,
        ip: ip.to_string(),
        hosting: hosting::is_hosting(asn, &as_org),
        flagged_by: threat_lists.lookup(ip),
        asn,
        as_org,
        ..Default::default()
    };
    if let Some(ranges) = ranges {
        network.aws_source = "ip-ranges".into();
        if let Some(range) = ranges.lookup(ip) {
            network.in_aws = true;
            network.aws_region = range.region.clone();
            network.aws_service = range.service.clone();
        }
    } else if asn != 0 {
        network.aws_source = "asn".into();
        network.in_aws = AMAZON_ASNS.contains(&asn);
    }
    network.hosting |= network.in_aws;
    (geo, network)
}

/// A message copied into one already used, reusing its strings.
trait CopyInto {
    fn copy_into(&self, to: &mut Self);
}

macro_rules! copy_into_field_by_field {
    ($($message:ident { $($field:ident),* $(,)? })*) => {$(
        impl CopyInto for $message {
            fn copy_into(&self, to: &mut Self) {
                // Every field named: one added to the message fails to
                // compile here until it is copied too.
                let $message { $($field),* } = self;
                $(to.$field.clone_from($field);)*
            }
        }
    )*};
}

copy_into_field_by_field! {
    Geo { country, city, subdivision, latitude, longitude, accuracy_radius_km }
    Network {
        is_network_location, ip, asn, as_org, in_aws, aws_region, aws_service, aws_source,
        hosting, flagged_by,
    }
    UserAgentInfo { family, version, major, os, client, pentest_distribution }
    Attack { tactic, technique }
}

fn copy_option<T: CopyInto + Clone>(from: Option<&T>, to: &mut Option<T>) {
    match (from, to.as_mut()) {
        (Some(from), Some(to)) => from.copy_into(to),
        (from, _) => *to = from.cloned(),
    }
}

impl Enricher {
    /// Read changed databases and threat lists again, checking their files
    /// at most every RELOAD_CHECK; true when a new copy is in use (cached
    /// lookups are then stale).
    fn reload_changed_files(&mut self) -> bool {
        // Reading the clock for every lookup was ~1 % of a scan's stages.
        if self.lookups_until_clock > 0 {
            self.lookups_until_clock -= 1;
            return false;
        }
        self.lookups_until_clock = LOOKUPS_PER_CLOCK;
        if self.last_reload_check.elapsed() < RELOAD_CHECK {
            return false;
        }
        self.last_reload_check = Instant::now();
        let mut changed = self.threat_lists.refresh();
        for db in [&mut self.city, &mut self.asn].into_iter().flatten() {
            changed |= db.reload_if_changed();
        }
        changed
    }
}

fn db(watched: &Option<WatchedDb>) -> Option<&GeoDb> {
    watched.as_ref().and_then(|w| w.db.as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_data::shared;
    use trailhound_proto::UserIdentity;

    fn event(ip: &str) -> Box<CloudTrailEvent> {
        Box::new(CloudTrailEvent {
            event_id: "e".into(),
            event_source: "ec2.amazonaws.com".into(),
            event_name: "DescribeInstances".into(),
            source_ip: ip.into(),
            recipient_account_id: "111".into(),
            user_identity: Some(UserIdentity {
                r#type: "IAMUser".into(),
                arn: "arn:aws:iam::111:user/a".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    /// An enricher on MaxMind's test City and ASN databases.
    fn with_test_databases() -> Enricher {
        let config = EnricherConfig {
            geoip_city: Some(shared("maxmind-test/test-data/GeoIP2-City-Test.mmdb")),
            geoip_asn: Some(shared("maxmind-test/test-data/GeoLite2-ASN-Test.mmdb")),
            aws_ip_ranges: None,
            threat_lists: Vec::new(),
        };
        Enricher::new(&config, 16)
    }

    #[test]
    fn test_databases_enrich_and_non_network_sources_stay_unlocated() {
        let mut e = with_test_databases();
        assert!(e.warnings.is_empty(), "{:?}", e.warnings);
        let out = e.enrich(event("::ffff:81.2.69.142")).unwrap();
        assert_eq!(out.geo.unwrap().city, "London");
        assert_eq!(out.service, "ec2");
        assert!(!out.global_service);
        assert_eq!(out.attack.unwrap().tactic, "discovery");
        let internal = e.enrich(event("AWS Internal")).unwrap();
        assert!(internal.geo.is_none() && !internal.network.unwrap().is_network_location);
        let asn = e.enrich(event("12.81.92.1")).unwrap().network.unwrap();
        assert_eq!(
            (asn.asn, asn.in_aws, asn.aws_source.as_str()),
            (7018, false, "asn")
        );
    }

    #[test]
    fn enriching_into_a_used_event_gives_what_a_fresh_one_gets() {
        let mut e = with_test_databases();
        // Located, unlocated, ASN only, located again; attack mapped or not,
        // user agents of different lengths; users, role sessions (one of an
        // instance) and root, with a refused event between them.
        let role = |session: &str| UserIdentity {
            r#type: "AssumedRole".into(),
            arn: format!("arn:aws:sts::111:assumed-role/app/{session}"),
            account_id: "111".into(),
            ..Default::default()
        };
        let root = UserIdentity {
            r#type: "Root".into(),
            account_id: "111".into(),
            ..Default::default()
        };
        let events = [
            (
                "81.2.69.142",
                "DescribeInstances",
                "aws-cli/2.15.0 Python/3.11.6",
                None,
            ),
            (
                "AWS Internal",
                "Decrypt",
                "AWS Internal",
                Some(role("i-0123456789abcdef0")),
            ),
            (
                "12.81.92.1",
                "NoSuchCall",
                "Boto3/1.34.1",
                Some(UserIdentity::default()),
            ),
            (
                "::ffff:81.2.69.142",
                "StopLogging",
                "console.amazonaws.com",
                Some(root),
            ),
            (
                "12.81.92.1",
                "GetObject",
                "Boto3/1.34.1",
                Some(role("alice")),
            ),
        ];
        let mut reused = EnrichedEvent::default();
        for (ip, name, agent, identity) in events.iter().chain(events.iter().rev()) {
            let make = || {
                let mut ev = event(ip);
                ev.event_name = name.to_string();
                ev.user_agent = agent.to_string();
                if let Some(identity) = identity {
                    ev.user_identity = Some(identity.clone());
                }
                ev
            };
            let fresh = e.enrich(make()).ok();
            let into = e.enrich_into(make(), &mut reused).ok().map(|()| &reused);
            assert_eq!(into, fresh.as_ref(), "{ip} {name} {agent} {identity:?}");
        }
    }

    #[test]
    fn missing_or_corrupt_database_is_one_warning_and_unknown_fields() {
        let config = EnricherConfig {
            // A City database that opens, with records that do not decode.
            geoip_city: Some(shared(
                "maxmind-test/test-data/GeoIP2-City-Test-Broken-Double-Format.mmdb",
            )),
            geoip_asn: Some(PathBuf::from("/nonexistent/asn.mmdb")),
            aws_ip_ranges: Some(PathBuf::from("builtin")),
            threat_lists: vec![PathBuf::from("/nonexistent/tor.txt")],
        };
        let mut e = Enricher::new(&config, 16);
        assert!(
            e.warnings
                .iter()
                .any(|w| w.contains("/nonexistent/asn.mmdb")),
            "{:?}",
            e.warnings
        );
        let out = e.enrich(event("3.225.16.109")).unwrap();
        let network = out.network.unwrap();
        assert_eq!(network.asn, 0);
        assert!(network.in_aws);
        assert_eq!(
            (network.aws_region.as_str(), network.aws_source.as_str()),
            ("us-east-1", "ip-ranges")
        );
    }

    #[test]
    fn a_database_of_the_wrong_kind_is_a_warning_naming_it() {
        let config = EnricherConfig {
            geoip_city: Some(shared("maxmind-test/test-data/GeoIP2-City-Test.mmdb")),
            geoip_asn: Some(shared("maxmind-test/test-data/GeoIP2-City-Test.mmdb")),
            ..EnricherConfig::default()
        };
        let mut e = Enricher::new(&config, 16);
        assert!(
            e.warnings
                .iter()
                .any(|w| w.starts_with("ASN database unusable")
                    && w.contains(
                        "GeoIP2-City-Test.mmdb: type \"GeoIP2-City\" is not for ASN lookups"
                    )),
            "{:?}",
            e.warnings
        );
        let out = e.enrich(event("81.2.69.142")).unwrap();
        assert_eq!(out.geo.unwrap().city, "London");
    }

    #[test]
    fn a_database_that_appears_or_changes_is_read_again_and_a_bad_one_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("city.mmdb");
        let config = EnricherConfig {
            geoip_city: Some(path.clone()),
            ..EnricherConfig::default()
        };
        let mut e = Enricher::new(&config, 16);
        assert!(
            e.warnings.iter().any(|w| w.contains("city.mmdb")),
            "{:?}",
            e.warnings
        );
        assert!(e.enrich(event("81.2.69.142")).unwrap().geo.is_none());
        let later = |e: &mut Enricher, contents: &[u8]| {
            std::fs::write(&path, contents).unwrap();
            let bump = std::time::SystemTime::now() + Duration::from_secs(60);
            let f = std::fs::File::options().write(true).open(&path).unwrap();
            f.set_modified(bump).unwrap();
            (e.last_reload_check, e.lookups_until_clock) = (e.last_reload_check - RELOAD_CHECK, 0);
        };
        let test_db =
            std::fs::read(shared("maxmind-test/test-data/GeoIP2-City-Test.mmdb")).unwrap();
        later(&mut e, &test_db);
        let london = e.enrich(event("81.2.69.142")).unwrap().geo.unwrap();
        assert_eq!(london.city, "London", "the database that appeared is used");
        later(&mut e, b"half-written download");
        let still = e.enrich(event("81.2.69.142")).unwrap().geo.unwrap();
        assert_eq!(
            still.city, "London",
            "a corrupt replacement keeps the previous copy"
        );
    }

    #[test]
    fn event_without_principal_is_refused() {
        let mut e = Enricher::new(&EnricherConfig::default(), 16);
        let mut ev = event("1.1.1.1");
        ev.user_identity = Some(UserIdentity::default());
        assert!(e.enrich(ev).is_err());
    }
}
