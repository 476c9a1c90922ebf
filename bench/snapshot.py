#!/usr/bin/env python3
"""Snapshot benchmark: pause, resume, snapshot create and restore latency,
kestrel (Firecracker-style API on a Unix socket) side by side with QEMU
(QMP: stop / cont / migrate to a file / -incoming from it), same guest, same
RAM sizes, same run. Prints medians and kestrel/QEMU ratios.

What is timed (wall clock, from the request to its response):
  pause    kestrel PATCH /vm Paused             QEMU stop
  resume   kestrel PATCH /vm Resumed            QEMU cont
  create   kestrel PUT /snapshot/create (Full)  QEMU migrate exec:cat>FILE until completed
  restore  kestrel PUT /snapshot/load resume_vm QEMU migrate-incoming exec:cat FILE until
           (in a fresh process already up)        completed, then cont
Also reported: kestrel's own restore time as it logs it (file open to vCPUs
running) and the size of the files written.

Usage: bench/snapshot.py KESTREL GUEST_ELF [--reps N] [--sizes 256,2048] [--touch-mib N]
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=60)
        self.path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(60)
        s.connect(self.path)
        self.sock = s


def api(sock, method, path, body=None):
    c = UnixHTTP(sock)
    data = json.dumps(body) if body is not None else None
    t0 = time.perf_counter()
    c.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
    r = c.getresponse()
    payload = r.read()
    dt = time.perf_counter() - t0
    c.close()
    if r.status >= 300:
        raise RuntimeError(f"{method} {path}: {r.status} {payload.decode(errors='replace')}")
    return dt, payload


def wait_socket(path, proc, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before its socket appeared")
        if os.path.exists(path):
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(path)
                s.close()
                return
            except OSError:
                pass
        time.sleep(0.005)
    raise RuntimeError(f"{path} did not appear")


class QMP:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(path)
        self.f = self.s.makefile("rw")
        json.loads(self.f.readline())  # greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        t0 = time.perf_counter()
        self.f.write(json.dumps({"execute": name, "arguments": args} if args else {"execute": name}) + "\n")
        self.f.flush()
        while True:
            msg = json.loads(self.f.readline())
            if "return" in msg:
                return time.perf_counter() - t0, msg["return"]
            if "error" in msg:
                raise RuntimeError(f"QMP {name}: {msg['error']}")

    def wait_migration(self):
        while True:
            _, r = self.cmd("query-migrate")
            st = r.get("status")
            if st == "completed":
                return
            if st in ("failed", "cancelled"):
                raise RuntimeError(f"QEMU migration {st}: {r}")
            time.sleep(0.001)

    def close(self):
        self.s.close()


def kestrel_boot(kestrel, guest, mib, d, touch):
    sock = os.path.join(d, "k.sock")
    p = subprocess.Popen([kestrel, "--api-sock", sock], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "k.err"), "w"))
    wait_socket(sock, p)
    api(sock, "PUT", "/boot-source", {"kernel_image_path": guest, "boot_args": f"touch={touch}"})
    api(sock, "PUT", "/machine-config", {"vcpu_count": 1, "mem_size_mib": mib})
    api(sock, "PUT", "/actions", {"action_type": "InstanceStart"})
    return p, sock


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def kestrel_round(kestrel, guest, mib, d, touch, settle):
    res = {}
    p, sock = kestrel_boot(kestrel, guest, mib, d, touch)
    try:
        time.sleep(settle)
        res["pause"], _ = api(sock, "PATCH", "/vm", {"state": "Paused"})
        res["resume"], _ = api(sock, "PATCH", "/vm", {"state": "Resumed"})
        api(sock, "PATCH", "/vm", {"state": "Paused"})
        st, mem = os.path.join(d, "k.state"), os.path.join(d, "k.mem")
        res["create"], _ = api(sock, "PUT", "/snapshot/create",
                               {"snapshot_type": "Full", "snapshot_path": st, "mem_file_path": mem})
        res["file_mib"] = (os.stat(mem).st_blocks * 512 + os.stat(st).st_size) / 2**20
    finally:
        stop(p)
    sock2 = os.path.join(d, "k2.sock")
    errf = os.path.join(d, "k2.err")
    p = subprocess.Popen([kestrel, "--api-sock", sock2, "-v"], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=open(errf, "w"))
    try:
        wait_socket(sock2, p)
        res["restore"], _ = api(sock2, "PUT", "/snapshot/load",
                                {"snapshot_path": st, "mem_backend": {"backend_path": mem, "backend_type": "File"},
                                 "resume_vm": True})
        time.sleep(0.05)
        if p.poll() is not None:
            raise RuntimeError("restored kestrel exited")
    finally:
        stop(p)
    with open(errf) as f:
        for line in f:
            if "restored in" in line:
                res["restore_internal"] = float(line.split("restored in")[1].split("ms")[0]) / 1e3
    for f in (st, mem):
        os.unlink(f)
    return res


def qemu_base(qemu, guest, mib, qmp, touch):
    return [qemu, "-M", "microvm", "-accel", "kvm", "-m", str(mib), "-smp", "1", "-nodefaults",
            "-no-user-config", "-display", "none", "-serial", "null", "-kernel", guest,
            "-append", f"touch={touch}", "-qmp", f"unix:{qmp},server=on,wait=off"]


def qemu_round(qemu, guest, mib, d, touch, settle):
    res = {}
    qs = os.path.join(d, "q.qmp")
    mem = os.path.join(d, "q.mig")
    p = subprocess.Popen(qemu_base(qemu, guest, mib, qs, touch), stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "q.err"), "w"))
    try:
        wait_socket(qs, p)
        q = QMP(qs)
        time.sleep(settle)
        res["pause"], _ = q.cmd("stop")
        res["resume"], _ = q.cmd("cont")
        q.cmd("stop")
        t0 = time.perf_counter()
        q.cmd("migrate", uri=f"exec:cat > {mem}")
        q.wait_migration()
        res["create"] = time.perf_counter() - t0
        res["file_mib"] = os.stat(mem).st_blocks * 512 / 2**20
        q.close()
    finally:
        stop(p)
    qs2 = os.path.join(d, "q2.qmp")
    p = subprocess.Popen(qemu_base(qemu, guest, mib, qs2, touch) + ["-incoming", "defer"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=open(os.path.join(d, "q2.err"), "w"))
    try:
        wait_socket(qs2, p)
        q = QMP(qs2)
        t0 = time.perf_counter()
        q.cmd("migrate-incoming", uri=f"exec:cat {mem}")
        q.wait_migration()
        q.cmd("cont")
        res["restore"] = time.perf_counter() - t0
        q.close()
    finally:
        stop(p)
    os.unlink(mem)
    return res


def med(rounds, key):
    vals = [r[key] for r in rounds if key in r]
    return statistics.median(vals) if vals else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("kestrel")
    ap.add_argument("guest")
    ap.add_argument("--qemu", default=os.environ.get("QEMU", "qemu-system-x86_64"))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--sizes", default="256,2048")
    ap.add_argument("--touch-mib", type=int, default=64,
                    help="MiB of RAM the guest writes before counting (snapshot payload)")
    ap.add_argument("--settle", type=float, default=0.5, help="seconds the guest runs before pausing")
    a = ap.parse_args()
    have_qemu = shutil.which(a.qemu) is not None
    rows = []
    with tempfile.TemporaryDirectory(prefix="kestrel-snapbench-") as d:
        for mib in [int(x) for x in a.sizes.split(",")]:
            kr = [kestrel_round(a.kestrel, a.guest, mib, d, a.touch_mib, a.settle) for _ in range(a.reps)]
            qr = []
            if have_qemu:
                try:
                    qr = [qemu_round(a.qemu, a.guest, mib, d, a.touch_mib, a.settle) for _ in range(a.reps)]
                except Exception as e:  # QEMU missing a feature on this host: say so, keep kestrel's numbers
                    print(f"# QEMU run failed at {mib} MiB: {e}", file=sys.stderr)
            rows.append((mib, kr, qr))
    print(f"Snapshot latency, medians of {a.reps} runs, guest wrote {a.touch_mib} MiB of its RAM "
          f"(wall ms, request to response)")
    print(f"{'RAM':>6} {'operation':<18} {'kestrel':>10} {'QEMU':>10} {'QEMU/kestrel':>13}")
    for mib, kr, qr in rows:
        for key, label in (("pause", "pause"), ("resume", "resume"), ("create", "snapshot create"),
                           ("restore", "restore"), ("restore_internal", "restore (kestrel log)")):
            k = med(kr, key) * 1e3
            q = med(qr, key) * 1e3 if qr and key != "restore_internal" else float("nan")
            ratio = f"{q / k:12.1f}x" if q == q and k > 0 else f"{'-':>13}"
            qs = f"{q:10.2f}" if q == q else f"{'-':>10}"
            print(f"{mib:>5}M {label:<18} {k:10.2f} {qs} {ratio}")
        k = med(kr, "file_mib")
        q = med(qr, "file_mib") if qr else float("nan")
        print(f"{mib:>5}M {'files on disk MiB':<18} {k:10.1f} {q:10.1f}" if q == q else
              f"{mib:>5}M {'files on disk MiB':<18} {k:10.1f} {'-':>10}")


if __name__ == "__main__":
    main()
