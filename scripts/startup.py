#!/usr/bin/env python3
"""Starts a command and reports the milliseconds until HOST:PORT answers
GET /healthz with 200, then stops the command. Bounded to 10 s."""
import socket, subprocess, sys, time

host, port = sys.argv[1], int(sys.argv[2])
cmd = sys.argv[3:]
t0 = time.perf_counter()
p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
ready = None
while time.perf_counter() - t0 < 10:
    try:
        s = socket.create_connection((host, port), timeout=0.2)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        if s.recv(64).startswith(b"HTTP/1.1 200"):
            ready = (time.perf_counter() - t0) * 1000
            break
    except OSError:
        time.sleep(0.001)
p.terminate()
p.wait(timeout=10)
print(f"READY_MS {ready:.1f}" if ready is not None else "READY_MS never")
