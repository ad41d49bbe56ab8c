#!/usr/bin/env python3
"""The first-seen detections as SQL in DuckDB, over a JSON-lines CloudTrail file.

The comparison point of scripts/bench: what a team would write instead of
Trailhound. Per principal (role sessions folded into their role), after a
30-day training period from its first event, report the first occurrence of
  TH-001  a (service, region) pair, global services excepted,
  TH-005  a command (eventSource:eventName),
  TH-019  a user agent family and major version,
  TH-015/18 stand-in: a source IP address (DuckDB has no GeoIP or ASN lookup).
That is less than Trailhound does for those detectors (no enrichment, no
45-day window, no rarity, no dedup or evidence), so the comparison favours
DuckDB.

Usage: duckdb-first-seen.py EVENTS.jsonl [THREADS]
Prints the elapsed time (read + query) and the findings per detector.
"""
import sys
import time

import duckdb

GLOBAL = ["iam", "sts", "organizations", "route53", "cloudfront", "support", "signin",
          "health", "account", "billing", "ce", "budgets", "sso", "identitystore"]

QUERY = f"""
WITH ev AS (
  SELECT recipientAccountId AS account,
         CASE WHEN userIdentity.type = 'AssumedRole'
              THEN userIdentity.sessionContext.sessionIssuer.arn
              ELSE userIdentity.arn END AS principal,
         split_part(eventSource, '.', 1) AS service,
         eventSource || ':' || eventName AS command,
         awsRegion AS region,
         sourceIPAddress AS ip,
         regexp_extract(userAgent, '^[^/ ]+/[0-9]+') AS agent,
         CAST(eventTime AS TIMESTAMP) AS t
  FROM read_json(?, format = 'newline_delimited', columns = {{
    'eventTime': 'VARCHAR', 'eventSource': 'VARCHAR', 'eventName': 'VARCHAR',
    'awsRegion': 'VARCHAR', 'sourceIPAddress': 'VARCHAR', 'userAgent': 'VARCHAR',
    'recipientAccountId': 'VARCHAR',
    'userIdentity': 'STRUCT(type VARCHAR, arn VARCHAR, sessionContext STRUCT(sessionIssuer STRUCT(arn VARCHAR)))'
  }})
),
keyed AS (
  SELECT account, principal, t, 'TH-001' AS detector, service || '|' || region AS k
    FROM ev WHERE service NOT IN ({", ".join(f"'{g}'" for g in GLOBAL)})
  UNION ALL SELECT account, principal, t, 'TH-005', command FROM ev
  UNION ALL SELECT account, principal, t, 'TH-019', agent FROM ev
  UNION ALL SELECT account, principal, t, 'new-ip', ip FROM ev
),
firsts AS (SELECT account, principal, detector, k, min(t) AS first_t FROM keyed GROUP BY ALL),
starts AS (SELECT account, principal, min(t) AS start FROM ev GROUP BY ALL)
SELECT detector, count(*) AS findings
FROM firsts JOIN starts USING (account, principal)
WHERE first_t >= start + INTERVAL 30 DAY
GROUP BY detector ORDER BY detector
"""


def main():
    path = sys.argv[1]
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {threads}")
    started = time.perf_counter()
    rows = con.execute(QUERY, [path]).fetchall()
    elapsed = time.perf_counter() - started
    used = con.execute("SELECT current_setting('threads')").fetchone()[0]
    print(f"duckdb {duckdb.__version__}, {used} threads: {elapsed:.2f} s "
          + ", ".join(f"{d} {n}" for d, n in rows))


if __name__ == "__main__":
    main()
