#!/usr/bin/env python3
"""Stuck API clients must not wedge kestrel's API (called by tests/api/api.sh).

Opens many connections to the API socket that never finish a request: some
trickle a byte every TRICKLE_S seconds (in the headers, or in a body announced
by Content-Length), some send nothing at all. Meanwhile a new client's GET /
must be answered promptly, again and again, a keep-alive client must get
several answers on one connection, and a request sent slowly but within the
deadline must be answered. Every stuck connection must be closed by kestrel
DEADLINE seconds after it opened (a trickler however many bytes it sent), not
much earlier and not much later.

Usage: stuck_clients.py SOCK DEADLINE_S [N_HEADER_TRICKLERS N_BODY_TRICKLERS N_IDLE]
Prints PASS:/FAIL: lines; exits 1 if any check failed.
"""
import socket
import sys
import time

TRICKLE_S = 2.0
PROMPT_S = 3.0        # a new client's answer must come within this (a busy host)
LATE_SLACK_S = 5.0    # a busy 2-core host may wake the watchdog late
EARLY_SLACK_S = 1.0

fails = 0


def report(name, ok, why=""):
    global fails
    if ok:
        print(f"PASS: api {name}", flush=True)
    else:
        fails += 1
        print(f"FAIL: api {name}: {why}", flush=True)


def connect(path, timeout=PROMPT_S):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s


def read_reply(s):
    """One HTTP response from s (Content-Length framed): (status, body)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed before the headers")
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        k, _, v = line.partition(":")
        if k.strip().lower() == "content-length":
            length = int(v.strip())
    while len(body) < length:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed in the body")
        body += chunk
    return status, body[:length]


def get_info(path):
    """A fresh client's GET /: (seconds taken, status, body) or (seconds, None, why)."""
    t0 = time.monotonic()
    try:
        s = connect(path)
        s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        status, body = read_reply(s)
        s.close()
        return time.monotonic() - t0, status, body
    except (OSError, ConnectionError, ValueError, IndexError) as e:
        return time.monotonic() - t0, None, repr(e)


class Stuck:
    def __init__(self, path, kind):
        self.kind = kind
        self.sock = connect(path)
        self.sock.setblocking(False)
        self.opened = time.monotonic()
        self.closed = None
        if kind == "header":
            self.data = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 4000
        elif kind == "body":
            self.data = (b"PUT /logger HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 4000\r\n\r\n" + b" " * 4000)
        else:
            self.data = b""
        self.sent = 0
        self.next_send = self.opened

    def poll(self, now):
        """Send the next byte when due; notice when kestrel closed the connection."""
        if self.closed is not None:
            return
        try:
            got = self.sock.recv(4096)
            if got == b"":
                self.closed = now
                return
        except BlockingIOError:
            pass
        except OSError:
            self.closed = now
            return
        if self.data and now >= self.next_send and self.sent < len(self.data):
            # The headers go in at once for a body trickler, then one byte at a time.
            n = self.data.index(b"\r\n\r\n") + 4 if self.kind == "body" and self.sent == 0 else 1
            try:
                self.sock.send(self.data[self.sent:self.sent + n])
                self.sent += n
            except BlockingIOError:
                pass
            except OSError:
                self.closed = now
                return
            self.next_send = now + TRICKLE_S


def main():
    path = sys.argv[1]
    deadline = float(sys.argv[2])
    n_header, n_body, n_idle = (int(x) for x in (sys.argv[3:6] if len(sys.argv) >= 6 else (10, 4, 10)))

    stuck, refused = [], []
    for kind, count in (("header", n_header), ("body", n_body), ("idle", n_idle)):
        for _ in range(count):
            try:
                stuck.append(Stuck(path, kind))
            except OSError as e:
                refused.append(repr(e))
    n = len(stuck)
    report("stuck-clients-connect", not refused,
           f"{len(refused)} of {n + len(refused)} connections refused: {refused[:1]}")

    # A keep-alive client: three answers on one connection while the others dawdle.
    try:
        s = connect(path)
        codes = []
        for _ in range(3):
            s.sendall(b"GET /version HTTP/1.1\r\nHost: localhost\r\n\r\n")
            codes.append(read_reply(s)[0])
        s.close()
        report("stuck-keepalive-client", codes == [200, 200, 200], f"statuses {codes}")
    except (OSError, ConnectionError, ValueError, IndexError) as e:
        report("stuck-keepalive-client", False, repr(e))

    # A slow but honest client: its request arrives in pieces over ~3 s, within the deadline.
    slow_parts = [b"GET /machine-config HTTP/1.1\r\n", b"Host: localhost\r\n", b"Connection: close\r\n", b"\r\n"]
    slow_next = time.monotonic()
    slow_result = None
    try:
        slow = connect(path, timeout=deadline + LATE_SLACK_S)
    except OSError as e:
        slow_result, slow_parts = repr(e), []

    probes = [1.0, 4.0, deadline * 0.7]
    probe_results = []
    start = time.monotonic()
    end = start + deadline + LATE_SLACK_S + 2
    while time.monotonic() < end:
        now = time.monotonic()
        for c in stuck:
            c.poll(now)
        if slow_parts and now >= slow_next:
            try:
                slow.sendall(slow_parts.pop(0))
                if not slow_parts:
                    slow_result = read_reply(slow)[0]
            except (OSError, ConnectionError, ValueError, IndexError) as e:
                slow_result, slow_parts = repr(e), []
            slow_next = now + 1.0
            if not slow_parts:
                slow.close()
        if probes and now - start >= probes[0]:
            probes.pop(0)
            probe_results.append(get_info(path))
        if not probes and not slow_parts and all(c.closed is not None for c in stuck):
            break
        time.sleep(0.1)

    for i, (took, status, body) in enumerate(probe_results):
        ok = status == 200 and b'"state"' in body and took <= PROMPT_S
        report(f"stuck-new-client-answered-{i + 1}", ok,
               f"with {n} stuck connections open: status {status} after {took:.2f} s ({body!r:.120})")
    report("stuck-slow-honest-request", slow_result == 200, f"got {slow_result}")

    for kind in ("header", "body", "idle"):
        group = [c for c in stuck if c.kind == kind]
        if not group:
            continue
        open_ = [c for c in group if c.closed is None]
        lives = [c.closed - c.opened for c in group if c.closed is not None]
        early = [x for x in lives if x < deadline - EARLY_SLACK_S]
        late = [x for x in lives if x > deadline + LATE_SLACK_S]
        sent = max(c.sent for c in group)
        report(f"stuck-{kind}-clients-cut", not open_ and not early and not late,
               f"{len(open_)} of {len(group)} still open after {deadline + LATE_SLACK_S:.0f} s "
               f"(up to {sent} bytes trickled); closed after {sorted(round(x, 1) for x in lives)} s, "
               f"deadline {deadline:.0f} s")
    for c in stuck:
        c.sock.close()

    # Once they are gone, the API answers as before.
    took, status, body = get_info(path)
    report("stuck-after-cut-answers", status == 200 and took <= PROMPT_S, f"status {status} after {took:.2f} s")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
