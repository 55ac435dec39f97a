#!/usr/bin/env python3
"""Drives the hold script straight over one Redis connection, as `serve`
groups holds: CALLS calls of PER one-ticket holds each (random tickets of a
1,000,000-ticket event that must already exist, each hold from a new user,
no per-user limit), four calls in flight at a time. With `buy`, then buys
every hold made, by its id, PER per call of the purchase script.

usage: holdcalls.py PORT EVENT CALLS [PER [buy]]

The scripts are called as ticketctl calls them: FCALL of the functions of
the library `ticketctl event create` loaded (the newest ticketctl_* library
on the server), or, on a Redis without functions, EVALSHA of lib.lua (and
the preludes it takes), `begin(KEYS)` and the script's own file. Prints the
number of holds made (and of purchases, with `buy`)."""
import os
import random
import socket
import sys

port, event, calls = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
per = int(sys.argv[4]) if len(sys.argv) > 4 else 8
buy = len(sys.argv) > 5 and sys.argv[5] == "buy"
lua = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src", "store", "lua")


def script(name, *preludes):
    """lib.lua, then `preludes`, then the script, as ticketctl builds it."""
    text = lambda p: open(os.path.join(lua, p)).read()
    return "".join(text(p) for p in ["lib.lua", *preludes]) + "begin(KEYS)\n" + text(name)


def encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


conn = socket.create_connection(("127.0.0.1", port))
replies = conn.makefile("rb")


def read():
    line = replies.readline()
    kind, rest = line[:1], line[1:-2]
    if kind in (b"+", b":"):
        return rest
    if kind == b"-":
        raise SystemExit("redis: " + rest.decode())
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else replies.read(n + 2)[:-2]
    if kind == b"*":
        return [read() for _ in range(int(rest))]
    raise SystemExit("unexpected reply %r" % line)


def libraries():
    """The ticketctl_* libraries the server has."""
    conn.sendall(encode("FUNCTION", "LIST", "LIBRARYNAME", "ticketctl_*"))
    line = replies.readline()
    if line[:1] == b"-":
        return []
    return [read() for _ in range(int(line[1:-2]))]


found = libraries()
library = dict(zip(found[-1][0::2], found[-1][1::2]))[b"library_name"].decode() if found else None


def caller(name, *preludes):
    """The command and first argument that call script `name`."""
    if library:
        return ["FCALL", f"{library}_{name[:-4]}"]
    conn.sendall(encode("SCRIPT", "LOAD", script(name, *preludes)))
    return ["EVALSHA", read().decode()]


call = caller("hold.lua")
tag = "tc:{ev:%s}" % event
keys = [f"{tag}:{k}" for k in ("meta", "taken", "sold", "owner", "holds", "sched", "orders", "jobs", "uholds")]
rnd = random.Random(1)
user = 0


holds = []  # (seq, secret, deadline, user) of each hold made
sent = []  # per call in flight: its (secret, user) pairs


def answer():
    for (secret, name), r in zip(sent.pop(0), read()):
        if isinstance(r, bytes) and r[:1].isdigit():
            _, seq, deadline, _ = r.decode().split("|", 3)
            holds.append((seq, secret, deadline, name))


for _ in range(calls):
    args = [*call, len(keys), *keys, "tc:release:wake", event, 0, ""]
    pairs = []
    for _ in range(per):
        user += 1
        pairs.append(("s%021d" % user, "user-%d" % user))
        args += [*pairs[-1], "t", rnd.randint(1, 1_000_000)]
    conn.sendall(encode(*args))
    sent.append(pairs)
    if len(sent) == 4:
        answer()
while sent:
    answer()
if not buy:
    print(len(holds))
    sys.exit(0)

call = caller("purchase.lua", "orders.lua")
bought, in_flight = 0, 0


def bought_in_answer():
    global bought
    bought += sum(1 for r in read() if (isinstance(r, list) and r and r[0] == b"ok") or (isinstance(r, bytes) and r.startswith(b"ok|")))


for i in range(0, len(holds), per):
    args = [*call, len(keys), *keys, "", 0, "tc:release:wake", event]
    for seq, secret, deadline, name in holds[i:i + per]:
        args += ["h", seq, secret, deadline, name, "o" + secret[1:]]
    conn.sendall(encode(*args))
    in_flight += 1
    if in_flight == 4:
        bought_in_answer()
        in_flight -= 1
while in_flight:
    bought_in_answer()
    in_flight -= 1
print(len(holds), bought)
