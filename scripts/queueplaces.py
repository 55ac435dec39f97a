#!/usr/bin/env python3
"""Joins N buyers to event EVENT's waiting room at URL and writes their
queue ids, one per line, for scripts/wrk/queue.lua.
usage: queueplaces.py URL EVENT N OUT"""
import http.client, json, sys, urllib.parse

url, event, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
u = urllib.parse.urlparse(url)
conn = http.client.HTTPConnection(u.hostname, u.port)
with open(out, "w") as f:
    for i in range(n):
        conn.request("POST", f"/v1/events/{event}/queue", json.dumps({"userId": f"q{i}"}),
                     {"content-type": "application/json"})
        r = conn.getresponse()
        body = json.loads(r.read())
        if r.status not in (200, 201):
            sys.exit(f"join answered {r.status}: {body}")
        f.write(body["queueId"] + "\n")
