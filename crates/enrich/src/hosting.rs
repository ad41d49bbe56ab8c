//! Hosting, cloud and VPN networks: an address in one says where a server
//! or a VPN exit is, not where a person is, so impossible travel between
//! such addresses is only informational (TH-016).

/// Autonomous systems of large cloud, hosting and VPN providers.
const HOSTING_ASNS: &[u32] = &[
    16509, 14618, 8987, // Amazon
    15169, 396982, 19527, // Google
    8075, 8068,  // Microsoft
    31898, // Oracle
    45102, 37963, // Alibaba
    132203, 45090, // Tencent
    14061, // DigitalOcean
    16276, // OVH
    24940, 213230, // Hetzner
    63949,  // Linode / Akamai
    20473,  // Vultr (Choopa)
    60781, 28753, 16265,  // Leaseweb
    9009,   // M247 (many VPN exits)
    51167,  // Contabo
    198610, // Beget
    12876,  // Scaleway
    212238, // Datacamp (many VPN exits)
    13335,  // Cloudflare (WARP)
    136787, 207137, 39351, // VPN providers (TEFINCOM/NordVPN, PacketHub, 31173/Mullvad)
];

/// Words in an AS organisation name that mark a hosting or VPN network.
const HOSTING_WORDS: &[&str] = &[
    "hosting",
    "host ",
    "cloud",
    "data center",
    "datacenter",
    "datacamp",
    "server",
    "vpn",
    "colocation",
    "colo ",
    "vps",
    "dedicated",
    "digitalocean",
    "ovh",
    "hetzner",
    "linode",
    "vultr",
    "choopa",
    "leaseweb",
    "m247",
    "contabo",
    "scaleway",
    "amazon",
    "google",
    "microsoft",
    "oracle",
    "alibaba",
    "tencent",
    "nordvpn",
    "proton",
    "mullvad",
    "packethub",
    "zenlayer",
    "psychz",
    "quadranet",
    "colocrossing",
    "hostinger",
    "ionos",
];

/// Whether an address in this AS is a server, cloud or VPN address.
pub fn is_hosting(asn: u32, as_org: &str) -> bool {
    if HOSTING_ASNS.contains(&asn) {
        return true;
    }
    let org = format!("{} ", as_org.to_ascii_lowercase());
    HOSTING_WORDS.iter().any(|w| org.contains(w))
}

#[cfg(test)]
mod tests {
    use super::is_hosting;

    #[test]
    fn clouds_and_vpns_are_hosting_access_networks_are_not() {
        assert!(is_hosting(16509, "AMAZON-02"));
        assert!(is_hosting(1, "Some Cloud Services Ltd"));
        assert!(is_hosting(2, "Example VPN Inc"));
        assert!(!is_hosting(3320, "Deutsche Telekom AG"));
        assert!(!is_hosting(7018, "AT&T Services, Inc."));
        assert!(!is_hosting(0, ""));
    }
}
