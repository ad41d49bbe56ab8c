#!/usr/bin/env python3
"""One IAM user's key called from everywhere: CloudTrail JSON lines for the
worst case of a principal's profile (a leaked key, or one built into a
mobile app). Each call comes from a random IPv4 address (so, resolved, from
some 200 countries and thousands of networks), with one of 3,000 client
versions and a random S3 bucket, over 20 days from 2024-03-01.

    python3 scripts/scattered-principal.py EVENTS OUT.jsonl

Deterministic. docs/performance.md ("A principal called from everywhere")
measures `trailhound scan` on 300,000 of these.
"""

import json
import random
import sys
import time
import uuid

random.seed(7)
events, out = int(sys.argv[1]), open(sys.argv[2], "w")
start = 1709251200  # 2024-03-01T00:00:00Z
for i in range(events):
    t = start + i * 86400 * 20 // events
    record = {
        "eventVersion": "1.09",
        "eventID": str(uuid.UUID(int=random.getrandbits(128))),
        "eventTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)),
        "eventSource": "s3.amazonaws.com",
        "eventName": random.choice(
            ["GetObject", "PutObject", "ListBuckets", "DescribeInstances", "GetCallerIdentity"]
        ),
        "awsRegion": random.choice(["us-east-1", "eu-west-1", "ap-south-1", "sa-east-1"]),
        "sourceIPAddress": ".".join(str(random.randint(1, 223)) for _ in range(4)),
        "userAgent": f"aws-cli/{random.randint(1, 3000)}.0 Python/3.11",
        "requestParameters": {"bucketName": f"bucket-{random.getrandbits(32)}", "key": "x"},
        "userIdentity": {
            "type": "IAMUser",
            "accountId": "100000000000",
            "arn": "arn:aws:iam::100000000000:user/alice",
            "principalId": "AIDAALICE",
            "accessKeyId": "AKIAALICE",
            "userName": "alice",
        },
        "recipientAccountId": "100000000000",
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "readOnly": True,
    }
    out.write(json.dumps(record) + "\n")
