#!/usr/bin/env bash
# Pause, snapshot and restore on this machine's /dev/kvm, through kestrel's
# Firecracker-style API (curl over the Unix socket), with the freestanding
# guest-counter ("kestrel-guest: count N" on COM1, N from 0, forever).
#
# The main check is continuity: the console of the VM that was snapshotted,
# followed byte for byte by the console of the process that restored it,
# must read count 0, 1, 2, ... with no restart, repeat or gap (the guest's
# counter lives in its RAM; the UART, vCPU and timer state come from the
# state file). Restore times are printed as "# ..." lines, never asserted.
#
# Covered: pause/resume; Full snapshot, kill -9, restore (resume_vm true and
# false); a failed create keeps the previous files; snapshots of restored VMs
# (also onto the memory file they run from); refused loads (truncated,
# corrupted, wrong version, inconsistent sections, wrong-sized or missing
# memory file, missing disk), each leaving the process usable; lazy restore of
# a 2 GiB guest (VmRSS); Diff snapshots layered in place (also from a restored
# VM, and after a failed Diff); the LAPIC-timer counter; virtio-blk and
# virtio-net (TAP, root only) snapshotted in the middle of their I/O; the
# binding of the two files (another snapshot's memory file, changed content,
# `kestrel snapshot verify`), a kill between the commit's renames and an
# interrupted Diff (KESTREL_FAULT), a restored VM's memory file truncated under
# it, and two names for one file.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$root/tests/lib/checks.sh"

BUILD=${BUILD:-$root/build}
case $BUILD in /*) ;; *) BUILD=$root/$BUILD ;; esac
KESTREL=${KESTREL:-$BUILD/kestrel}
COUNTER=$BUILD/guests/guest-counter.elf
T=$(mktemp -d /tmp/kestrel-snap.XXXXXX)
PIDS=()

cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT

if [ ! -c /dev/kvm ] || ! [ -r /dev/kvm -a -w /dev/kvm ]; then
	skip snapshot "/dev/kvm is not available on this machine"
	exit 0
fi
if ! command -v curl >/dev/null || ! command -v python3 >/dev/null; then
	skip snapshot "curl and python3 are needed"
	exit 0
fi
if [ ! -x "$KESTREL" ] || [ ! -f "$COUNTER" ]; then
	fail snapshot "no kestrel or guest-counter in $BUILD (build first, or set BUILD)"
	exit 1
fi

# ---- helpers ------------------------------------------------------------

# api METHOD PATH [BODY]: one request to $SOCK; $code, the body in $T/resp, the time in $ms.
api() {
	local m=$1 p=$2 data=() out
	[ $# -gt 2 ] && data=(-H 'Content-Type: application/json' --data-binary "$3")
	out=$(curl -s -m 30 -o "$T/resp" -w '%{http_code} %{time_total}' --unix-socket "$SOCK" -X "$m" \
		"${data[@]}" "http://localhost$p")
	code=${out% *}
	ms=$(awk -v t="${out#* }" 'BEGIN { printf "%.1f", t * 1000 }')
}

# expect NAME CODE [PATTERN]: the last request got CODE (and PATTERN in its body).
expect() {
	if [ "$code" = "$2" ] && { [ -z "${3:-}" ] || grep -q -- "$3" "$T/resp"; }; then pass "snapshot $1"
	else fail "snapshot $1" "HTTP $code, want $2${3:+ and '$3'}: $(head -c 300 "$T/resp")"; show_tail "$T/$NAME.err" 8; fi
}

# start NAME: kestrel --api-sock in the background ($SOCK, $KPID, $NAME); waits until it answers.
start() {
	local i
	NAME=$1
	SOCK=$T/$NAME.sock
	"$KESTREL" --api-sock "$SOCK" -v >"$T/$NAME.out" 2>"$T/$NAME.err" </dev/null &
	KPID=$!
	PIDS+=("$KPID")
	for i in $(seq 100); do
		[ -S "$SOCK" ] && curl -s -m 2 -o /dev/null --unix-socket "$SOCK" http://localhost/ && return 0
		kill -0 "$KPID" 2>/dev/null || break
		sleep 0.05
	done
	fail "snapshot $NAME-starts" "kestrel --api-sock did not come up: $(head -c 300 "$T/$NAME.err")"
	return 1
}

kill9() { kill -KILL "$KPID" 2>/dev/null; wait "$KPID" 2>/dev/null; }

# stop: SIGTERM; a restored VM ends like any other (status 143, and a clean
# exit, where a sanitizer build checks for leaks).
stop() {
	kill -TERM "$KPID" 2>/dev/null
	wait "$KPID" 2>/dev/null
	local rc=$?
	[ "$rc" = 143 ] || fail "snapshot $NAME-sigterm" "exit status $rc, want 143"
}

# boot NAME MEM_MIB MACHINE_EXTRA BOOT_ARGS: a counter VM started through the API,
# its console in $T/NAME.con.
boot() {
	start "$1" || return 1
	api PUT /boot-source "{\"kernel_image_path\": \"$COUNTER\", \"boot_args\": \"$4\"}"
	[ "$code" = 204 ] || { expect "$1-boot-source" 204; return 1; }
	api PUT /machine-config "{\"vcpu_count\": 1, \"mem_size_mib\": $2$3}"
	[ "$code" = 204 ] || { expect "$1-machine-config" 204; return 1; }
	api PUT /serial "{\"serial_out_path\": \"$T/$1.con\"}"
	[ "$code" = 204 ] || { expect "$1-serial" 204; return 1; }
	api PUT /actions '{"action_type": "InstanceStart"}'
	expect "$1-instance-start" 204
}

# restore NAME STATE MEM RESUME [EXTRA-JSON]: a fresh process loads the snapshot;
# its console goes to $T/NAME.con. The load's HTTP status stays in $code.
restore() {
	start "$1" || return 1
	api PUT /serial "{\"serial_out_path\": \"$T/$1.con\"}"
	api PUT /snapshot/load "{\"snapshot_path\": \"$2\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"$3\"}, \"resume_vm\": $4${5:-}}"
	load_ms=$ms
}

# snap TYPE STATE MEM: pause (if not yet) and PUT /snapshot/create.
snap() {
	api PATCH /vm '{"state": "Paused"}'
	[ "$code" = 204 ] || return 0
	api PUT /snapshot/create "{\"snapshot_type\": \"$1\", \"snapshot_path\": \"$2\", \"mem_file_path\": \"$3\"}"
}

last_count() { grep -ao $'count [0-9]*\r' "$1" 2>/dev/null | tail -n 1 | tr -dc '0-9'; }

# wait_count FILE N [SECS]: the console file shows count N or more.
wait_count() {
	local i c
	for i in $(seq $((${3:-5} * 20))); do
		c=$(last_count "$1")
		[ -n "$c" ] && [ "$c" -ge "$2" ] && return 0
		sleep 0.05
	done
	return 1
}

# continuous NAME MIN_NEW FILE...: the files, concatenated, are the counter's
# output with nothing lost, repeated or restarted: a header, then exactly
# "kestrel-guest: count N" for N = 0, 1, 2, ...; the last file adds MIN_NEW
# counts or more.
continuous() {
	local name=$1 min=$2 why rc i
	shift 2
	# Up to 5 s for the MIN_NEW counts to appear (the host may be busy).
	for i in $(seq 25); do
		why=$(python3 - "$min" "$@" <<'PY'
import re, sys
need, files = int(sys.argv[1]), sys.argv[2:]
parts = [open(f, 'rb').read() for f in files]
data, edge = b''.join(parts), sum(len(p) for p in parts[:-1])
lines, pos = [], 0
for raw in data.split(b'\n')[:-1]:        # the last piece is an unfinished line
    pos += len(raw) + 1
    lines.append((raw.rstrip(b'\r'), pos))
before, after, want = [], [], 0
for text, end in lines:
    m = re.fullmatch(rb'kestrel-guest: count (\d+)', text)
    if not m:
        if want == 0 and text.startswith(b'kestrel-guest: counter '):
            continue
        print(f"unexpected line {text[:60]!r} after count {want - 1}")
        sys.exit(1)
    n = int(m.group(1))
    if n != want:
        print(f"count {n} where {want} was due (before the restore: ..{before[-2:]}, after: {after[:3]}..)")
        sys.exit(1)
    (before if end <= edge else after).append(n)
    want += 1
if len(after) < need:
    print(f"only {len(after)} new counts after {before[-1:] or 'none'}, want {need}")
    sys.exit(2)
print(f"{before[-1] if before else '-'} -> {after[0]}..{after[-1]}")
PY
		)
		rc=$?
		[ "$rc" = 2 ] || break
		sleep 0.2
	done
	if [ "$rc" = 0 ]; then
		pass "snapshot $name"
		echo "# $name: $why"
	else
		fail "snapshot $name" "$why"
		for f in "$@"; do show_tail "$f" 3; done
		show_tail "$T/$NAME.err" 8
	fi
}

# moves FILE: the count advances within 2 s; stays FILE: unchanged across 300 ms.
moves() {
	local a b i
	a=$(last_count "$1")
	for i in $(seq 40); do
		sleep 0.05
		b=$(last_count "$1")
		[ -n "$b" ] && [ "$b" != "${a:-}" ] && return 0
	done
	return 1
}
stays() {
	local a b
	a=$(stat -c %s "$1")
	sleep 0.3
	b=$(stat -c %s "$1")
	[ "$a" = "$b" ]
}

state_is() { api GET /; [ "$code" = 200 ] && grep -q "\"state\":\"$1\"" "$T/resp"; }

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }

# snapfile MODE IN OUT [ARG]: a doctored copy of a state file (see snap.h for the layout).
snapfile() {
	python3 - "$@" <<'PY'
import struct, sys, zlib
mode, src, dst = sys.argv[1:4]
arg = sys.argv[4] if len(sys.argv) > 4 else None
b = bytearray(open(src, 'rb').read())
magic, ver, nsec, flen, hcrc = struct.unpack_from('<8sIIQI', b, 0)
secs, off = [], 28
for _ in range(nsec):
    name, sver, flags, plen, crc = struct.unpack_from('<24sIIQI', b, off)
    secs.append([name, sver, flags, bytes(b[off + 44:off + 44 + plen])])
    off += 44 + plen
def build(ver, secs):
    body = b''
    for name, sver, flags, payload in secs:
        h = struct.pack('<24sIIQ', name, sver, flags, len(payload))
        body += h + struct.pack('<I', zlib.crc32(h + payload)) + payload
    h = struct.pack('<8sIIQ', magic, ver, len(secs), 28 + len(body))
    return h + struct.pack('<I', zlib.crc32(h)) + body
if mode == 'truncate':
    out = b[:len(b) - int(arg)]
elif mode == 'flip':
    out = bytearray(b)
    out[int(arg) if int(arg) >= 0 else len(b) // 2] ^= 0x40
elif mode == 'version':
    out = build(int(arg), secs)
elif mode == 'append':     # one stray byte at the end of a section, CRCs made right
    for s in secs:
        if s[0].rstrip(b'\0').decode() == arg:
            s[3] += b'\x00'
    out = build(ver, secs)
elif mode == 'set32':     # set32 SECTION:OFFSET:VALUE, a u32 in a payload, CRCs made right
    name, o, v = arg.split(':')
    for s in secs:
        if s[0].rstrip(b'\0').decode() == name:
            p = bytearray(s[3])
            struct.pack_into('<I', p, int(o), int(v, 0))
            s[3] = bytes(p)
    out = build(ver, secs)
elif mode == 'chop':      # the last byte of a section's payload gone, CRCs made right
    for s in secs:
        if s[0].rstrip(b'\0').decode() == arg:
            s[3] = s[3][:-1]
    out = build(ver, secs)
elif mode == 'drop':
    out = build(ver, [s for s in secs if s[0].rstrip(b'\0').decode() != arg])
elif mode == 'sections':
    print(' '.join(s[0].rstrip(b'\0').decode() for s in secs))
    sys.exit(0)
open(dst, 'wb').write(out)
PY
}

# ---- 1. boot through the API, pause and resume ---------------------------

ARGS="delay_ms=10"
if boot a 64 "" "$ARGS"; then
	wait_count "$T/a.con" 5 5 && pass "snapshot boot-counter-runs" || fail "snapshot boot-counter-runs" "count '$(last_count "$T/a.con")'"
	api PATCH /vm '{"state": "Paused"}'
	expect pause 204
	state_is Paused && pass "snapshot pause-state" || fail "snapshot pause-state" "$(cat "$T/resp")"
	stays "$T/a.con" && stays "$T/a.con" && pass "snapshot paused-count-stops" \
		|| fail "snapshot paused-count-stops" "count $(last_count "$T/a.con") still moving"
	api PATCH /vm '{"state": "Resumed"}'
	expect resume 204
	moves "$T/a.con" && pass "snapshot resumed-count-advances" || fail "snapshot resumed-count-advances" "count stuck at $(last_count "$T/a.con")"
	# A Diff snapshot needs dirty page tracking.
	snap Diff "$T/a-diff.state" "$T/a-diff.mem"
	expect diff-without-tracking-refused 400 "track_dirty_pages"
	check "snapshot diff-refused-leaves-no-files" test ! -e "$T/a-diff.state" -a ! -e "$T/a-diff.mem"

	# ---- 2. full snapshot, kill -9, restore in new processes ------------------
	snap Full "$T/a.state" "$T/a.mem"
	expect full-snapshot 204
	stays "$T/a.con" || fail "snapshot snapshot-keeps-paused" "count moved after the snapshot"
	cp "$T/a.con" "$T/a-at-snap.con"
	cp --sparse=always "$T/a.mem" "$T/a-ref.mem"
	echo "# state file $(stat -c %s "$T/a.state") bytes, memory file $(du -k "$T/a.mem" | cut -f1) KiB allocated of $(stat -c %s "$T/a.mem") bytes"
	# A snapshot that fails (its state file cannot be written) leaves the
	# previous pair alone, and the VM usable.
	api PATCH /vm '{"state": "Resumed"}'
	wait_count "$T/a.con" "$(( $(last_count "$T/a.con") + 10 ))" 5
	snap Full "$T/no/such/dir.state" "$T/a.mem"
	expect create-bad-state-path-refused 400 "no/such/dir.state"
	if cmp -s "$T/a.mem" "$T/a-ref.mem" && [ ! -e "$T/a.mem.tmp" ]; then pass "snapshot failed-create-keeps-old-memory-file"
	else fail "snapshot failed-create-keeps-old-memory-file" "the memory file changed, or its .tmp was left"; fi
	api PATCH /vm '{"state": "Resumed"}'
	moves "$T/a.con" && pass "snapshot failed-create-vm-resumes" || fail "snapshot failed-create-vm-resumes" "count stuck at $(last_count "$T/a.con")"
	kill9

	restore b "$T/a.state" "$T/a.mem" true
	expect load-resume 204
	echo "# restore (64 MiB, resume_vm=true) took $load_ms ms"
	state_is Running && pass "snapshot load-state-running" || fail "snapshot load-state-running" "$(cat "$T/resp")"
	continuous restored-count-continues 20 "$T/a-at-snap.con" "$T/b.con"
	snap Diff "$T/b-diff.state" "$T/b-diff.mem"
	expect restored-diff-without-tracking-refused 400 "track_dirty_pages"
	stop

	restore c "$T/a.state" "$T/a.mem" false
	expect load-paused 204
	state_is Paused && pass "snapshot load-paused-state" || fail "snapshot load-paused-state" "$(cat "$T/resp")"
	sleep 0.3
	[ ! -s "$T/c.con" ] && pass "snapshot load-paused-guest-waits" || fail "snapshot load-paused-guest-waits" "console: $(head -c 100 "$T/c.con")"
	api PATCH /vm '{"state": "Resumed"}'
	expect load-paused-then-resumed 204
	continuous resumed-count-continues 20 "$T/a-at-snap.con" "$T/c.con"

	# ---- 6. a full snapshot of a restored VM restores again -------------------
	wait_count "$T/c.con" "$(( $(last_count "$T/c.con") + 10 ))" 5
	snap Full "$T/c.state" "$T/c.mem"
	expect restored-full-snapshot 204
	kill9
	restore d "$T/c.state" "$T/c.mem" true
	expect second-generation-load 204
	continuous second-generation-continues 20 "$T/a-at-snap.con" "$T/c.con" "$T/d.con"
	# A Full snapshot onto the memory file this VM runs from (replaced, not
	# overwritten: the running VM keeps its view of the old one).
	snap Full "$T/d.state" "$T/c.mem"
	expect full-onto-own-memory-file 204
	cp "$T/d.con" "$T/d-at-snap.con"
	api PATCH /vm '{"state": "Resumed"}'
	if wait_count "$T/d.con" "$(( $(last_count "$T/d-at-snap.con") + 20 ))" 5; then pass "snapshot own-memory-file-vm-runs-on"
	else fail "snapshot own-memory-file-vm-runs-on" "count stuck at $(last_count "$T/d.con")"; fi
	continuous own-memory-file-vm-output-exact 20 "$T/a-at-snap.con" "$T/c.con" "$T/d.con"
	kill9
	restore e3 "$T/d.state" "$T/c.mem" true
	expect third-generation-load 204
	continuous third-generation-continues 20 "$T/a-at-snap.con" "$T/c.con" "$T/d-at-snap.con" "$T/e3.con"
	stop
	# ... and so does one taken before the restored VM ever ran.
	restore n "$T/a.state" "$T/a.mem" false
	snap Full "$T/n.state" "$T/n.mem"
	expect never-run-restored-full-snapshot 204
	kill9
	restore o "$T/n.state" "$T/n.mem" true
	expect never-run-load 204
	continuous never-run-continues 20 "$T/a-at-snap.con" "$T/o.con"
	stop
fi

# ---- 4. refusals, each leaving the process usable ----------------------------

if [ -f "$T/a.state" ]; then
	A=$T/a.state
	snapfile truncate "$A" "$T/bad-trunc.state" 100
	snapfile flip "$A" "$T/bad-flip.state" -1
	snapfile flip "$A" "$T/bad-magic.state" 1
	snapfile version "$A" "$T/bad-version.state" 99
	snapfile append "$A" "$T/bad-uart.state" uart.com1
	snapfile drop "$A" "$T/bad-nortc.state" rtc
	snapfile chop "$A" "$T/bad-vcpu.state" kvm.vcpu.0
	snapfile set32 "$A" "$T/bad-cpus.state" machine:0:2
	snapfile set32 "$A" "$T/bad-memkind.state" memory:8:7
	echo "# sections: $(snapfile sections "$A" -)"
	truncate -s 32M "$T/short.mem"
	cp --sparse=always "$T/a.mem" "$T/long.mem"; truncate -s 65M "$T/long.mem"

	start r
	refuse() { # NAME STATE MEM PATTERN
		api PUT /snapshot/load "{\"snapshot_path\": \"$2\", \"mem_file_path\": \"$3\", \"resume_vm\": true}"
		local msg
		msg=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["fault_message"])' "$T/resp" 2>/dev/null)
		if [ "$code" = 400 ] && grep -qi -- "$4" <<<"$msg" && [ "$(printf '%s' "$msg" | wc -l)" = 0 ]; then
			pass "snapshot refuse-$1"
			echo "# refuse-$1: $msg"
		else
			fail "snapshot refuse-$1" "HTTP $code, want 400 with one line matching '$4': $(head -c 300 "$T/resp")"
		fi
		state_is "Not started" && pass "snapshot refuse-$1-not-started" || fail "snapshot refuse-$1-not-started" "$(cat "$T/resp")"
	}
	refuse truncated "$T/bad-trunc.state" "$T/a.mem" "truncated"
	refuse flipped-byte "$T/bad-flip.state" "$T/a.mem" "corrupted"
	refuse bad-magic "$T/bad-magic.state" "$T/a.mem" "not a kestrel snapshot"
	refuse wrong-version "$T/bad-version.state" "$T/a.mem" "version 99"
	refuse section-leftover "$T/bad-uart.state" "$T/a.mem" "uart.com1"
	refuse section-missing "$T/bad-nortc.state" "$T/a.mem" "'rtc'"
	refuse vcpu-section-short "$T/bad-vcpu.state" "$T/a.mem" "kvm.vcpu.0"
	refuse vcpu-count-mismatch "$T/bad-cpus.state" "$T/a.mem" "kvm.vcpu.1"
	refuse memory-kind-unknown "$T/bad-memkind.state" "$T/a.mem" "memory section"
	refuse mem-too-small "$A" "$T/short.mem" "short.mem is 33554432 bytes"
	refuse mem-too-large "$A" "$T/long.mem" "long.mem is"
	refuse state-missing "$T/nope.state" "$T/a.mem" "nope.state: No such file"
	refuse mem-missing "$A" "$T/nope.mem" "nope.mem: No such file"
	refuse state-is-directory "$T" "$T/a.mem" "not a regular file"
	api PUT /serial "{\"serial_out_path\": \"$T/r.con\"}"
	api PUT /snapshot/load "{\"snapshot_path\": \"$A\", \"mem_file_path\": \"$T/a.mem\", \"resume_vm\": true}"
	expect refusals-then-valid-load 204
	continuous after-refusals-count-continues 10 "$T/a-at-snap.con" "$T/r.con"
	stop
fi

# ---- 3. restore maps RAM lazily: a 2 GiB guest --------------------------------

# The guest first writes 256 MiB of its RAM, so the memory file has that much
# data; a lazy restore faults in only what the guest touches afterwards.
BIG_MAX_KIB=$((128 * 1024))
if boot big 2048 "" "touch=256 $ARGS"; then
	wait_count "$T/big.con" 5 5
	snap Full "$T/big.state" "$T/big.mem"
	expect big-full-snapshot 204
	echo "# 2 GiB guest: memory file $(du -k "$T/big.mem" | cut -f1) KiB allocated, source VmRSS $(rss_kib "$KPID") KiB"
	kill9
	restore big2 "$T/big.state" "$T/big.mem" true
	expect big-load 204
	echo "# restore (2 GiB, resume_vm=true) took $load_ms ms; kestrel says: $(grep -o 'restored in [0-9.]* ms' "$T/big2.err")"
	sleep 0.5
	rss=$(rss_kib "$KPID")
	echo "# restored 2 GiB guest: VmRSS ${rss:-?} KiB after 0.5 s"
	if [ -n "$rss" ] && [ "$rss" -lt "$BIG_MAX_KIB" ]; then pass "snapshot big-restore-rss-small"
	else fail "snapshot big-restore-rss-small" "VmRSS ${rss:-?} KiB, want < $BIG_MAX_KIB KiB"; fi
	continuous big-count-continues 10 "$T/big.con" "$T/big2.con"
	# A full snapshot of the restored VM does not fault its RAM in either.
	snap Full "$T/big3.state" "$T/big3.mem"
	expect big-restored-full-snapshot 204
	rss=$(rss_kib "$KPID")
	echo "# full snapshot of the restored 2 GiB guest took $ms ms; VmRSS after it ${rss:-?} KiB, memory file $(du -k "$T/big3.mem" | cut -f1) KiB allocated"
	if [ -n "$rss" ] && [ "$rss" -lt "$BIG_MAX_KIB" ]; then pass "snapshot big-resnapshot-rss-small"
	else fail "snapshot big-resnapshot-rss-small" "VmRSS ${rss:-?} KiB, want < $BIG_MAX_KIB KiB"; fi
	# The pages the guest wrote before the first snapshot, carried from file to file.
	if python3 - "$T/big3.mem" <<'PY'
import mmap, struct, sys
with open(sys.argv[1], 'rb') as f:
    m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    bad = [a for a in range(64 << 20, 320 << 20, 4096) if struct.unpack_from('<Q', m, a)[0] != a ^ 0x6b657374]
    sys.exit(f"{len(bad)} touched pages lost, first at {bad[0]:#x}" if bad else 0)
PY
	then pass "snapshot big-resnapshot-keeps-guest-data"; else fail "snapshot big-resnapshot-keeps-guest-data" "see above"; fi
	kill9
	restore big4 "$T/big3.state" "$T/big3.mem" true
	expect big-second-generation-load 204
	continuous big-second-generation-continues 10 "$T/big.con" "$T/big2.con" "$T/big4.con"
	stop
fi

# ---- 5. diff snapshots layered onto the full one -------------------------------

if boot e 64 ', "track_dirty_pages": true' "$ARGS"; then
	wait_count "$T/e.con" 5 5
	snap Full "$T/e-full.state" "$T/e.mem"
	expect tracked-full-snapshot 204
	api PATCH /vm '{"state": "Resumed"}'
	wait_count "$T/e.con" "$(( $(last_count "$T/e.con") + 30 ))" 5
	# A Diff that fails keeps its dirty pages for the next one.
	snap Diff "$T/e-bad.state" "$T/no/such/dir.mem"
	expect diff-bad-memory-path-refused 400 "no/such/dir.mem"
	check "snapshot diff-refused-leaves-no-state-file" test ! -e "$T/e-bad.state"
	snap Diff "$T/e-diff.state" "$T/e.mem"
	expect diff-snapshot 204
	grep -o 'diff: [0-9]* dirty pages written' "$T/e.err" | sed 's/^/# /'
	kill9
	restore f "$T/e-diff.state" "$T/e.mem" true ', "enable_diff_snapshots": true'
	expect diff-load 204
	continuous diff-restore-continues 20 "$T/e.con" "$T/f.con"
	# A second diff, taken by the restored VM onto the same memory file.
	wait_count "$T/f.con" "$(( $(last_count "$T/f.con") + 20 ))" 5
	snap Diff "$T/f-diff.state" "$T/e.mem"
	expect restored-diff-snapshot 204
	kill9
	restore g "$T/f-diff.state" "$T/e.mem" true
	expect second-diff-load 204
	continuous second-diff-continues 20 "$T/e.con" "$T/f.con" "$T/g.con"
	stop
fi

# ---- 7. interrupt-driven counter: LAPIC timer and irqchip state --------------

if boot i 64 "" "mode=irq delay_ms=10"; then
	if wait_count "$T/i.con" 10 5; then
		api PATCH /vm '{"state": "Paused"}'
		stays "$T/i.con" && pass "snapshot irq-paused-count-stops" || fail "snapshot irq-paused-count-stops" "count $(last_count "$T/i.con") still moving"
		api PATCH /vm '{"state": "Resumed"}'
		moves "$T/i.con" && pass "snapshot irq-resumed-count-advances" || fail "snapshot irq-resumed-count-advances" "count stuck at $(last_count "$T/i.con")"
		snap Full "$T/i.state" "$T/i.mem"
		expect irq-full-snapshot 204
		kill9
		restore j "$T/i.state" "$T/i.mem" true
		expect irq-load 204
		continuous irq-restore-continues 20 "$T/i.con" "$T/j.con"
		stop
	else
		skip "snapshot irq-restore" "the counter's LAPIC timer mode does not run here: $(tail -n 2 "$T/i.con" | tr '\r\n' '  ')"
		kill9
	fi
fi

# ---- 8. virtio devices in the middle of their work ------------------------------

# wait_exit SECS: the process ends by itself; its status in $krc (124: it did not).
wait_exit() {
	local i
	for i in $(seq $(($1 * 20))); do
		kill -0 "$KPID" 2>/dev/null || { wait "$KPID"; krc=$?; return 0; }
		sleep 0.05
	done
	krc=124
}

# virtio-blk: guest-vblk keeps 16 writes in flight, polling the used ring; it is
# snapshotted mid-run and must finish every request after the restore.
truncate -s 64M "$T/disk.img"
start v || true
api PUT /boot-source "{\"kernel_image_path\": \"$BUILD/guests/guest-vblk.elf\", \"boot_args\": \"mode=randwrite n=2000 qd=16\"}"
api PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 64}'
api PUT /drives/data "{\"drive_id\": \"data\", \"path_on_host\": \"$T/disk.img\", \"is_root_device\": false, \"is_read_only\": false}"
api PUT /serial "{\"serial_out_path\": \"$T/v.con\"}"
api PUT /actions '{"action_type": "InstanceStart"}'
expect vblk-instance-start 204
for _ in $(seq 100); do grep -q "vblk device" "$T/v.con" 2>/dev/null && break; sleep 0.05; done
sleep 0.3
snap Full "$T/v.state" "$T/v.mem"
expect vblk-snapshot 204
kill9
if grep -q "vblk done" "$T/v.con"; then
	skip "snapshot vblk-mid-io" "the guest finished before the snapshot"
else
	mv "$T/disk.img" "$T/disk-moved.img"
	start w
	api PUT /snapshot/load "{\"snapshot_path\": \"$T/v.state\", \"mem_file_path\": \"$T/v.mem\", \"resume_vm\": true}"
	expect refuse-missing-disk 400 "disk.img: No such file"
	state_is "Not started" && pass "snapshot refuse-missing-disk-not-started" || fail "snapshot refuse-missing-disk-not-started" "$(cat "$T/resp")"
	mv "$T/disk-moved.img" "$T/disk.img"
	api PUT /serial "{\"serial_out_path\": \"$T/w.con\"}"
	api PUT /snapshot/load "{\"snapshot_path\": \"$T/v.state\", \"mem_file_path\": \"$T/v.mem\", \"resume_vm\": true}"
	expect vblk-load 204
	wait_exit 20
	if [ "$krc" = 0 ] && grep -q "vblk done mode=randwrite n=2000 .*requests=2000" "$T/w.con"; then pass "snapshot vblk-mid-io-completes"
	else fail "snapshot vblk-mid-io-completes" "status $krc: $(tail -n 2 "$T/v.con" "$T/w.con" | tr '\r\n' '  ')"; show_tail "$T/w.err" 5; fi
fi

# virtio-net on a TAP device (root only): guest-vnet keeps its transmit ring full.
TAP=ksnap$$
if [ -c /dev/net/tun ] && ip tuntap add dev "$TAP" mode tap 2>/dev/null; then
	start x || true
	api PUT /boot-source "{\"kernel_image_path\": \"$BUILD/guests/guest-vnet.elf\", \"boot_args\": \"n=400000\"}"
	api PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 64}'
	api PUT /network-interfaces/eth0 "{\"iface_id\": \"eth0\", \"host_dev_name\": \"$TAP\"}"
	api PUT /serial "{\"serial_out_path\": \"$T/x.con\"}"
	api PUT /actions '{"action_type": "InstanceStart"}'
	expect vnet-instance-start 204
	for _ in $(seq 100); do grep -q "vnet device" "$T/x.con" 2>/dev/null && break; sleep 0.05; done
	sleep 0.2
	snap Full "$T/x.state" "$T/x.mem"
	expect vnet-snapshot 204
	kill9
	if grep -q "vnet done" "$T/x.con"; then
		skip "snapshot vnet-mid-io" "the guest finished before the snapshot"
	else
		# network_overrides: an unknown interface is refused (nothing loaded), then the
		# NIC comes back on a second TAP device and the frames go there.
		TAP2=ksnapo$$
		ip tuntap add dev "$TAP2" mode tap 2>/dev/null && ip link set "$TAP" up && ip link set "$TAP2" up
		restore y "$T/x.state" "$T/x.mem" true ", \"network_overrides\": [{\"iface_id\": \"eth9\", \"host_dev_name\": \"$TAP2\"}]"
		expect vnet-override-unknown-refused 400 "eth9"
		state_is "Not started" && pass "snapshot vnet-override-refused-not-started" ||
			fail "snapshot vnet-override-refused-not-started" "$(head -c 200 "$T/resp")"
		before1=$(cat "/sys/class/net/$TAP/statistics/rx_packets" 2>/dev/null || echo 0)
		before2=$(cat "/sys/class/net/$TAP2/statistics/rx_packets" 2>/dev/null || echo 0)
		api PUT /snapshot/load "{\"snapshot_path\": \"$T/x.state\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"$T/x.mem\"}, \"resume_vm\": true, \"network_overrides\": [{\"iface_id\": \"eth0\", \"host_dev_name\": \"$TAP2\"}]}"
		expect vnet-load 204
		wait_exit 20
		if [ "$krc" = 0 ] && grep -q "vnet done n=400000 .*frames=400000" "$T/y.con"; then pass "snapshot vnet-mid-io-completes"
		else fail "snapshot vnet-mid-io-completes" "status $krc: $(tail -n 2 "$T/x.con" "$T/y.con" | tr '\r\n' '  ')"; show_tail "$T/y.err" 5; fi
		after1=$(cat "/sys/class/net/$TAP/statistics/rx_packets" 2>/dev/null || echo 0)
		after2=$(cat "/sys/class/net/$TAP2/statistics/rx_packets" 2>/dev/null || echo 0)
		if [ "$((after2 - before2))" -gt 0 ] && [ "$after1" = "$before1" ]; then
			pass "snapshot vnet-network-override"
		else
			fail "snapshot vnet-network-override" "frames after restore: $TAP +$((after1 - before1)), $TAP2 +$((after2 - before2))"
		fi
		ip link del "$TAP2" 2>/dev/null
	fi
	ip link del "$TAP" 2>/dev/null
else
	skip "snapshot vnet-mid-io" "cannot create a TAP device here"
fi

# ---- 9. snapshots that cannot lie -----------------------------------------------

# KESTREL_FAULT=POINT (docs/snapshots.md) ends kestrel at POINT of a create, as
# a crash or kill there would; status 86 says it got there.
faulted() { # NAME: the create got no answer and the process ended at the fault point
	local rc
	wait_exit 10
	rc=$krc
	if [ "$code" = 000 ] && [ "$rc" = 86 ]; then pass "snapshot $1"
	else fail "snapshot $1" "HTTP $code, exit status $rc, want no answer and status 86"; show_tail "$T/$NAME.err" 5; fi
}
verify() { # STATE MEM: kestrel snapshot verify; $vrc its status, its output in $T/verify
	"$KESTREL" snapshot verify --snapshot-path "$1" --mem-path "$2" >"$T/verify" 2>&1
	vrc=$?
}

if [ -f "$T/a.state" ] && [ -f "$T/c.mem" ]; then
	A=$T/a.state
	# The memory file of another snapshot of a same-sized guest.
	start r2
	api PUT /snapshot/load "{\"snapshot_path\": \"$A\", \"mem_file_path\": \"$T/c.mem\", \"resume_vm\": true}"
	expect refuse-other-snapshots-memory-file 400 "belongs to another snapshot"
	state_is "Not started" && pass "snapshot refuse-other-memory-not-started" || fail "snapshot refuse-other-memory-not-started" "$(cat "$T/resp")"
	# Same file, one byte changed: only the digest sees it, on request.
	cp --sparse=always "$T/a.mem" "$T/flip.mem"
	python3 - "$T/flip.mem" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
off = os.lseek(fd, 0, os.SEEK_DATA) + 100
os.pwrite(fd, bytes([os.pread(fd, 1, off)[0] ^ 0x40]), off)
PY
	api PUT /snapshot/load "{\"snapshot_path\": \"$A\", \"mem_file_path\": \"$T/flip.mem\", \"verify_memory\": \"yes\"}"
	expect refuse-verify-memory-not-bool 400 "verify_memory"
	api PUT /snapshot/load "{\"snapshot_path\": \"$A\", \"mem_file_path\": \"$T/flip.mem\", \"resume_vm\": true, \"verify_memory\": true}"
	expect refuse-changed-memory-file-digest 400 "content digest differs"
	api PUT /serial "{\"serial_out_path\": \"$T/r2.con\"}"
	api PUT /snapshot/load "{\"snapshot_path\": \"$A\", \"mem_file_path\": \"$T/a.mem\", \"resume_vm\": true, \"verify_memory\": true}"
	expect verified-load 204
	continuous verified-load-continues 10 "$T/a-at-snap.con" "$T/r2.con"
	stop
	# kestrel snapshot verify: the pair, the other snapshot's file, the changed one, usage.
	verify "$A" "$T/a.mem"
	[ "$vrc" = 0 ] && grep -q "match: Full snapshot" "$T/verify" && pass "snapshot verify-matching-pair" ||
		fail "snapshot verify-matching-pair" "status $vrc: $(cat "$T/verify")"
	verify "$A" "$T/c.mem"
	[ "$vrc" = 1 ] && grep -q "belongs to another snapshot" "$T/verify" && [ "$(wc -l <"$T/verify")" = 1 ] &&
		pass "snapshot verify-other-snapshot" || fail "snapshot verify-other-snapshot" "status $vrc: $(cat "$T/verify")"
	verify "$A" "$T/flip.mem"
	[ "$vrc" = 1 ] && grep -q "content digest differs" "$T/verify" && pass "snapshot verify-changed-content" ||
		fail "snapshot verify-changed-content" "status $vrc: $(cat "$T/verify")"
	"$KESTREL" snapshot verify --snapshot-path "$A" >"$T/verify" 2>&1
	[ $? = 2 ] && grep -q "mem-path" "$T/verify" && pass "snapshot verify-usage" || fail "snapshot verify-usage" "$(cat "$T/verify")"

	# A Full snapshot of a restored VM whose memory file was truncated under it.
	cp --sparse=always "$T/a.mem" "$T/t.mem"
	restore t "$A" "$T/t.mem" false
	expect truncated-source-load 204
	truncate -s 32M "$T/t.mem"
	snap Full "$T/t2.state" "$T/t2.mem"
	expect truncated-source-create-refused 400 "truncated or rewritten"
	check "snapshot truncated-source-leaves-no-files" test ! -e "$T/t2.state" -a ! -e "$T/t2.mem" -a ! -e "$T/t2.mem.tmp"
	# Two names of one file, and a file that is the other's temporary.
	snap Full "$T/x" "$T/./x"
	expect same-file-refused 400 "same file"
	snap Full "$T/y.state" "$T/y.state.tmp"
	expect temporary-name-refused 400 "temporary"
	check "snapshot same-file-refusals-write-nothing" test ! -e "$T/x" -a ! -e "$T/y.state" -a ! -e "$T/y.state.tmp"
	kill9

	# A kill between the two renames: the new state file beside the old memory
	# file. The load must not run it from the old memory (the counter jumped back
	# once); it finishes the rename and continues from the second snapshot.
	cp --sparse=always "$T/a.mem" "$T/k.mem"
	cp "$A" "$T/k.state"
	KESTREL_FAULT=snapshot-after-state-rename restore k "$T/k.state" "$T/k.mem" true
	expect fault-load 204
	wait_count "$T/k.con" "$(( $(last_count "$T/k.con") + 20 ))" 5
	snap Full "$T/k.state" "$T/k.mem"
	faulted kill-between-renames
	cmp -s "$T/k.mem" "$T/a.mem" && [ -e "$T/k.mem.tmp" ] && pass "snapshot kill-between-renames-window" ||
		fail "snapshot kill-between-renames-window" "want the old memory file and the new one as k.mem.tmp"
	verify "$T/k.state" "$T/k.mem"
	[ "$vrc" = 1 ] && grep -q "interrupted" "$T/verify" && pass "snapshot verify-reports-interrupted" ||
		fail "snapshot verify-reports-interrupted" "status $vrc: $(cat "$T/verify")"
	restore k2 "$T/k.state" "$T/k.mem" true
	expect kill-between-renames-load 204
	continuous kill-between-renames-continues 10 "$T/a-at-snap.con" "$T/k.con" "$T/k2.con"
	check "snapshot kill-between-renames-finished" test ! -e "$T/k.mem.tmp"
	verify "$T/k.state" "$T/k.mem"
	[ "$vrc" = 0 ] && pass "snapshot kill-between-renames-verifies" || fail "snapshot kill-between-renames-verifies" "$(cat "$T/verify")"
	stop

	# An interrupted Diff onto the base's memory file: the previous snapshot
	# stays loadable; the next create removes the leftover.
	cp --sparse=always "$T/a.mem" "$T/l.mem"
	cp --sparse=always "$T/a.mem" "$T/l-ref.mem"
	KESTREL_FAULT=snapshot-memory-written restore l "$A" "$T/l.mem" true ', "enable_diff_snapshots": true'
	expect diff-fault-load 204
	wait_count "$T/l.con" "$(( $(last_count "$T/l.con") + 20 ))" 5
	snap Diff "$T/l-diff.state" "$T/l.mem"
	faulted interrupted-diff
	cmp -s "$T/l.mem" "$T/l-ref.mem" && [ ! -e "$T/l-diff.state" ] && pass "snapshot interrupted-diff-keeps-base" ||
		fail "snapshot interrupted-diff-keeps-base" "the base memory file changed, or a state file appeared"
	check "snapshot interrupted-diff-leaves-temporary" test -e "$T/l.mem.tmp"
	restore l2 "$A" "$T/l.mem" true ', "enable_diff_snapshots": true'
	expect interrupted-diff-previous-loads 204
	continuous interrupted-diff-previous-continues 10 "$T/a-at-snap.con" "$T/l2.con"
	wait_count "$T/l2.con" "$(( $(last_count "$T/l2.con") + 10 ))" 5
	snap Diff "$T/l2.state" "$T/l.mem"
	expect diff-after-interrupted 204
	cp "$T/l2.con" "$T/l2-at-snap.con"
	check "snapshot stale-temporary-removed" test ! -e "$T/l.mem.tmp" -a ! -e "$T/l2.state.tmp"
	# A Diff onto a new file holds only the diff: written, but never loaded; and
	# the next Diff has no base but that file.
	api PATCH /vm '{"state": "Resumed"}'
	wait_count "$T/l2.con" "$(( $(last_count "$T/l2.con") + 10 ))" 5
	snap Diff "$T/l-new.state" "$T/l-new.mem"
	expect diff-onto-new-file 204
	api PATCH /vm '{"state": "Resumed"}'
	snap Diff "$T/l3.state" "$T/l.mem"
	expect diff-onto-older-base-refused 400 "not the memory file of this VM's last snapshot"
	kill9
	restore l3 "$T/l-new.state" "$T/l-new.mem" true
	expect refuse-diff-only-file 400 "cannot be loaded"
	kill9
	restore l4 "$T/l2.state" "$T/l.mem" true
	expect diff-after-interrupted-load 204
	continuous diff-after-interrupted-continues 10 "$T/a-at-snap.con" "$T/l2-at-snap.con" "$T/l4.con"
	verify "$T/l2.state" "$T/l.mem"
	[ "$vrc" = 0 ] && grep -q "Diff snapshot" "$T/verify" && pass "snapshot diff-verifies" || fail "snapshot diff-verifies" "$(cat "$T/verify")"
	stop
fi

# A sanitizer build (BUILD=build-asan) reports into the processes' stderr.
if grep -l -e "Sanitizer" -e "runtime error:" "$T"/*.err >"$T/sanitizer" 2>/dev/null; then
	fail "snapshot sanitizers-clean" "reports in $(tr '\n' ' ' <"$T/sanitizer")"
	while read -r f; do show_tail "$f" 30; done <"$T/sanitizer"
else
	pass "snapshot sanitizers-clean"
fi

[ "$CHECK_FAILS" = 0 ]
