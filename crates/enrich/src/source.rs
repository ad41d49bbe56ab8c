//! Which `sourceIPAddress` values are network locations. `AWS Internal`,
//! service host names (`lambda.amazonaws.com`) and private or VPC-endpoint
//! addresses get no geo/ASN and fire no geo detection.

use std::net::{IpAddr, Ipv4Addr};

/// The address to look up, or `None` when the source is not a network
/// location. IPv4-mapped IPv6 (`::ffff:1.2.3.4`) becomes IPv4, since some
/// ASN databases do not alias that range.
pub fn network_address(source_ip: &str, vpc_endpoint_id: &str) -> Option<IpAddr> {
    if !vpc_endpoint_id.is_empty() {
        return None;
    }
    let ip: IpAddr = source_ip.trim().parse().ok()?;
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    is_public(ip).then_some(ip)
}

fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || is_shared_or_reserved(v4))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback() || v6.is_unspecified() || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80) // link local
        }
    }
}

/// 100.64.0.0/10 (carrier-grade NAT) and 240.0.0.0/4 (reserved).
fn is_shared_or_reserved(v4: Ipv4Addr) -> bool {
    let [a, b, ..] = v4.octets();
    (a == 100 && (b & 0xc0) == 64) || a >= 240
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_network_locations() {
        assert_eq!(
            network_address("8.8.8.8", ""),
            Some("8.8.8.8".parse().unwrap())
        );
        assert_eq!(
            network_address("::ffff:8.8.8.8", ""),
            Some("8.8.8.8".parse().unwrap())
        );
        for not_located in [
            "AWS Internal",
            "lambda.amazonaws.com",
            "10.1.2.3",
            "192.168.10.20",
            "172.16.0.1",
            "",
            "253.252.51.7",
            "075.050.255.67",
            "fd00::1",
            "100.64.1.1",
        ] {
            assert_eq!(network_address(not_located, ""), None, "{not_located}");
        }
        assert_eq!(network_address("8.8.8.8", "vpce-123"), None);
    }
}
