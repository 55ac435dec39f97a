#!/usr/bin/env python3
"""Writes N HS256 tokens, one per line, for users b1..bN, valid for a day:
for wrk scripts that hold as signed buyers (env BENCH_TOKENS).
usage: jwtokens.py SECRET N OUT"""
import base64, hashlib, hmac, json, sys, time


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def token(secret, sub, now):
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = b64(json.dumps({"sub": sub, "iat": now, "exp": now + 86400}, separators=(",", ":")).encode())
    signing = header + b"." + claims
    sig = b64(hmac.new(secret, signing, hashlib.sha256).digest())
    return (signing + b"." + sig).decode()


secret, n, out = sys.argv[1].encode(), int(sys.argv[2]), sys.argv[3]
now = int(time.time())
with open(out, "w") as f:
    for i in range(1, n + 1):
        f.write(token(secret, f"b{i}", now) + "\n")
