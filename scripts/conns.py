#!/usr/bin/env python3
"""Opens N keep-alive connections to HOST:PORT, sends one GET /healthz on each,
reads the answers, keeps them open for SECS seconds, then closes them.
Prints how many connections got an answer. Loopback only; bounded."""
import socket, sys, time

host, port, n, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
if host not in ("127.0.0.1", "localhost"):
    sys.exit("loopback only")
socks = []
for _ in range(n):
    s = socket.create_connection((host, port), timeout=5)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    socks.append(s)
ok = 0
for s in socks:
    if s.recv(4096).startswith(b"HTTP/1.1 200"):
        ok += 1
print(f"OPEN {ok}", flush=True)
time.sleep(secs)
for s in socks:
    s.close()
