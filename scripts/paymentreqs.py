#!/usr/bin/env python3
"""Buys N one-ticket orders of an event through the API and writes, for
each, a signed `paid` payment result request for scripts/wrk/payments.lua:
"path<TAB>signature<TAB>body" lines.

usage: paymentreqs.py URL EVENT N SECRET OUT"""
import hashlib
import hmac
import http.client
import json
import sys
from urllib.parse import urlparse

url, event, n, secret, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
u = urlparse(url)
conn = http.client.HTTPConnection(u.hostname, u.port)


def post(path, body):
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    return r.status, json.loads(data) if data else None


with open(out, "w") as f:
    for i in range(n):
        user = f"pay-{i}"
        st, hold = post(f"/v1/events/{event}/holds", {"userId": user, "quantity": 1})
        assert st == 201, (st, hold)
        st, order = post(f"/v1/holds/{hold['holdId']}/purchase", {"userId": user})
        assert st == 202, (st, order)
        body = json.dumps({"outcome": "paid", "reference": f"bench-{i}", "amount": order["amount"]})
        sig = "sha256=" + hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()
        f.write(f"/v1/orders/{order['orderId']}/payment\t{sig}\t{body}\n")
print(n)
