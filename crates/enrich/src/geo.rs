//! City and ASN lookups in MaxMind-format databases (GeoLite2/GeoIP2,
//! DB-IP Lite, RouteViews ASN), plain `.mmdb` or gzip-compressed.

use std::io::Read;
use std::net::IpAddr;
use std::path::Path;

use maxminddb::{Reader, geoip2};
use trailhound_proto::Geo;

use crate::EnrichError;

/// What a database is used for. As MaxMind's own readers do, a database
/// is refused for a use its type does not name: a City database given as
/// the ASN one would otherwise leave every ASN field empty without a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeoKind {
    City,
    Asn,
}

impl GeoKind {
    /// As messages name it.
    pub fn name(self) -> &'static str {
        match self {
            Self::City => "city",
            Self::Asn => "ASN",
        }
    }

    /// Words in a database's type (GeoLite2-City, DBIP-City-Lite,
    /// GeoIP2-Enterprise, RouteViews-DBIP-ASN-Lite, GeoIP2-ISP, …) that
    /// mark one of this kind.
    fn marks(self) -> &'static [&'static str] {
        match self {
            Self::City => &["City", "Country", "Enterprise"],
            Self::Asn => &["ASN", "ISP"],
        }
    }
}

/// One open database. Lookups that fail inside a corrupt database return
/// `None`; the first such failure is logged once.
#[derive(Debug)]
pub struct GeoDb {
    reader: Reader<Vec<u8>>,
    name: String,
    warned: std::sync::atomic::AtomicBool,
}

impl GeoDb {
    pub fn open(path: &Path) -> Result<Self, EnrichError> {
        let name = path.display().to_string();
        let err = |message: String| EnrichError::Database {
            path: name.clone(),
            message,
        };
        let raw = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&raw[..])
                .read_to_end(&mut out)
                .map_err(|e| err(format!("gzip: {e}")))?;
            out
        } else {
            raw
        };
        let reader =
            Reader::from_source(bytes).map_err(|e| err(format!("not a MaxMind DB: {e}")))?;
        Ok(Self {
            reader,
            name,
            warned: Default::default(),
        })
    }

    /// Open `path` for `kind` of lookups; a database whose type names
    /// another kind is an error naming both.
    pub fn open_as(path: &Path, kind: GeoKind) -> Result<Self, EnrichError> {
        let db = Self::open(path)?;
        let found = &db.reader.metadata().database_type;
        if kind.marks().iter().any(|mark| found.contains(mark)) {
            return Ok(db);
        }
        Err(EnrichError::Database {
            path: db.name,
            message: format!(
                "type {found:?} is not for {} lookups (it names none of {})",
                kind.name(),
                kind.marks().join(", ")
            ),
        })
    }

    pub fn city(&self, ip: IpAddr) -> Option<Geo> {
        let record = self.decode::<geoip2::City<'_>>(ip)?;
        let country = record.country.iso_code.unwrap_or_default();
        if country.is_empty() && record.location.latitude.is_none() {
            return None;
        }
        Some(Geo {
            country: country.to_string(),
            city: record.city.names.english.unwrap_or_default().to_string(),
            subdivision: record
                .subdivisions
                .first()
                .and_then(|s| s.names.english)
                .unwrap_or_default()
                .to_string(),
            latitude: record.location.latitude.unwrap_or_default(),
            longitude: record.location.longitude.unwrap_or_default(),
            accuracy_radius_km: record
                .location
                .accuracy_radius
                .map(u32::from)
                .unwrap_or_default(),
        })
    }

    pub fn asn(&self, ip: IpAddr) -> Option<(u32, String)> {
        let record = self.decode::<geoip2::Asn<'_>>(ip)?;
        Some((
            record.autonomous_system_number?,
            record
                .autonomous_system_organization
                .unwrap_or_default()
                .to_string(),
        ))
    }

    fn decode<'a, T: serde::Deserialize<'a>>(&'a self, ip: IpAddr) -> Option<T> {
        let result = self.reader.lookup(ip).and_then(|r| r.decode::<T>());
        match result {
            Ok(found) => found,
            Err(e) => {
                if !self.warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    tracing::warn!(database = %self.name, error = %e, "GeoIP lookup failed; fields stay unknown");
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_data::shared;

    #[test]
    fn maxmind_known_answers() {
        let city = GeoDb::open(&shared("maxmind-test/test-data/GeoIP2-City-Test.mmdb")).unwrap();
        let get = |ip: &str| city.city(ip.parse().unwrap()).map(|g| (g.country, g.city));
        assert_eq!(get("81.2.69.142"), Some(("GB".into(), "London".into())));
        assert_eq!(get("2.125.160.216"), Some(("GB".into(), "Boxford".into())));
        assert_eq!(
            get("89.160.20.112"),
            Some(("SE".into(), "Linköping".into()))
        );
        assert_eq!(get("216.160.83.56"), Some(("US".into(), "Milton".into())));
        assert_eq!(get("175.16.199.0"), Some(("CN".into(), "Changchun".into())));
        assert_eq!(get("2001:218::1"), Some(("JP".into(), String::new())));
        assert!(
            city.city("81.2.69.142".parse().unwrap())
                .unwrap()
                .accuracy_radius_km
                > 0
        );

        let asn = GeoDb::open(&shared("maxmind-test/test-data/GeoLite2-ASN-Test.mmdb")).unwrap();
        let get = |ip: &str| asn.asn(ip.parse().unwrap());
        assert_eq!(get("1.128.0.0"), Some((1221, "Telstra Pty Ltd".into())));
        assert_eq!(get("12.81.92.1"), Some((7018, "AT&T Services".into())));
        assert_eq!(
            get("2600:6000::1"),
            Some((237, "Merit Network Inc.".into()))
        );
        assert_eq!(get("8.8.8.8"), None);
    }

    #[test]
    fn bad_data_never_panics() {
        let mut files = Vec::new();
        for dir in ["libmaxminddb", "maxminddb-golang", "maxminddb-python"] {
            for entry in std::fs::read_dir(shared("maxmind-test/bad-data").join(dir)).unwrap() {
                files.push(entry.unwrap().path());
            }
        }
        for name in [
            "GeoIP2-City-Test-Broken-Double-Format.mmdb",
            "GeoIP2-City-Test-Invalid-Node-Count.mmdb",
        ] {
            files.push(shared("maxmind-test/test-data").join(name));
        }
        assert!(files.len() >= 20);
        for path in files {
            // Opening may fail (an error naming the file) or succeed with
            // lookups that fail; neither may panic or loop.
            match GeoDb::open(&path) {
                Err(e) => assert!(
                    e.to_string()
                        .contains(path.file_name().unwrap().to_str().unwrap())
                ),
                Ok(db) => {
                    for ip in ["1.1.1.1", "81.2.69.142", "::1:ffff:ffff", "2001:218::1"] {
                        let _ = db.city(ip.parse().unwrap());
                        let _ = db.asn(ip.parse().unwrap());
                    }
                }
            }
        }
    }

    #[test]
    fn a_database_of_another_kind_is_refused_naming_both() {
        let test_db = |name: &str| shared(&format!("maxmind-test/test-data/{name}-Test.mmdb"));
        for (name, kind) in [
            ("GeoIP2-City", GeoKind::City),
            ("GeoIP2-Country", GeoKind::City),
            ("GeoIP2-Enterprise", GeoKind::City),
            ("GeoLite2-ASN", GeoKind::Asn),
            ("GeoIP2-ISP", GeoKind::Asn),
        ] {
            assert!(GeoDb::open_as(&test_db(name), kind).is_ok(), "{name}");
        }
        for (name, kind) in [
            ("GeoIP2-City", GeoKind::Asn),
            ("GeoLite2-ASN", GeoKind::City),
            ("GeoIP2-Domain", GeoKind::City),
            ("GeoIP2-Anonymous-IP", GeoKind::Asn),
        ] {
            let refused = GeoDb::open_as(&test_db(name), kind)
                .unwrap_err()
                .to_string();
            assert!(
                refused.contains(&format!(
                    "{name}-Test.mmdb: type \"{name}\" is not for {} lookups",
                    kind.name()
                )),
                "{refused}"
            );
        }
    }

    #[test]
    fn real_databases_resolve_real_networks() {
        let city = GeoDb::open(&shared("geoip/dbip-city-lite-2023-04.mmdb.gz")).unwrap();
        let asn = GeoDb::open(&shared("geoip/routeviews-dbip-asn-lite-2026-06.mmdb.gz")).unwrap();
        assert_eq!(
            city.city("92.55.146.245".parse().unwrap()).unwrap().country,
            "RO"
        );
        assert_eq!(asn.asn("3.225.16.109".parse().unwrap()).unwrap().0, 14618);
        assert_eq!(asn.asn("8.8.8.8".parse().unwrap()).unwrap().0, 15169);
        assert_eq!(city.city("10.0.0.1".parse().unwrap()), None);
    }
}
