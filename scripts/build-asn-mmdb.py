#!/usr/bin/env python3
"""Build a GeoLite2-ASN-schema MMDB from @ip-location-db/asn CSVs.

usage: build-asn-mmdb.py PACKAGE_DIR OUT.mmdb
The package holds asn-ipv4.csv and asn-ipv6.csv: ip_range_start,ip_range_end,asn,org.
"""
import csv, sys

import netaddr
from mmdb_writer import MMDBWriter

package, out = sys.argv[1], sys.argv[2]
writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="RouteViews-DBIP-ASN-Lite",
                    languages=["en"], description={"en": "ASN database built from @ip-location-db/asn"})
for name in ("asn-ipv4.csv", "asn-ipv6.csv"):
    with open(f"{package}/{name}", newline="") as f:
        for start, end, asn, org in csv.reader(f):
            cidrs = netaddr.iprange_to_cidrs(start, end)
            writer.insert_network(netaddr.IPSet(cidrs), {
                "autonomous_system_number": int(asn),
                "autonomous_system_organization": org,
            })
writer.to_db_file(out)
