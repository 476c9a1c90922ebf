#!/usr/bin/env bash
# Robustness of the control API against host files that block or run out:
# FIFOs named as inputs (kernel swapped for a FIFO after PUT /boot-source,
# snapshot_path, the memory file, a Diff snapshot's memory file) are refused
# with 400 while the VMM keeps answering; FIFOs named as outputs (PUT /serial,
# PUT /metrics before and after the start) are written without blocking, with
# or without a reader; huge pages the host's pool cannot give are a 400, not
# a SIGBUS. After each case SIGTERM must end the VMM promptly with 143.
# Every request and wait is bounded, so a regression fails instead of hanging.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$root/tests/lib/checks.sh"

BUILD=${BUILD:-$root/build}
case $BUILD in /*) ;; *) BUILD=$root/$BUILD ;; esac
KESTREL=${KESTREL:-$BUILD/kestrel}
COUNTER=$BUILD/guests/guest-counter.elf
T=$(mktemp -d /tmp/kestrel-robust.XXXXXX)
PIDS=()

cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
	rm -rf "$T"
}
trap cleanup EXIT

if ! command -v curl >/dev/null; then
	skip api-robust "curl is not installed"
	exit 0
fi
if [ ! -x "$KESTREL" ]; then
	fail api-robust "no kestrel binary at $KESTREL (build first, or set BUILD)"
	exit 1
fi
if [ ! -c /dev/kvm ] || ! [ -r /dev/kvm -a -w /dev/kvm ]; then
	skip api-robust "/dev/kvm is not available on this machine"
	exit 0
fi

# api METHOD PATH [BODY]: sets $code and the reply in $T/resp (10 s at most).
api() {
	local m=$1 p=$2 data=()
	[ $# -gt 2 ] && data=(-H 'Content-Type: application/json' --data-binary "$3")
	code=$(curl -s -m 10 -o "$T/resp" -w '%{http_code}' --unix-socket "$SOCK" -X "$m" "${data[@]}" \
		"http://localhost$p")
}

expect() { # NAME CODE [PATTERN]
	if [ "$code" = "$2" ] && { [ -z "${3:-}" ] || grep -q -- "$3" "$T/resp"; }; then pass "robust $1"
	else fail "robust $1" "HTTP $code, want $2${3:+ with '$3'}: $(head -c 300 "$T/resp")"; fi
}

start() { # NAME: kestrel --api-sock in the background, answering
	local i
	SOCK=$T/$1.sock
	NAME=$1
	"$KESTREL" --api-sock "$SOCK" >"$T/$1.out" 2>"$T/$1.err" </dev/null &
	KPID=$!
	PIDS+=("$KPID")
	for i in $(seq 100); do
		[ -S "$SOCK" ] && curl -s -m 2 -o /dev/null --unix-socket "$SOCK" http://localhost/ && return 0
		sleep 0.05
	done
	fail "robust $1-starts" "kestrel --api-sock did not come up: $(head -c 300 "$T/$1.err")"
	return 1
}

# answers NAME: the VMM still serves GET / after the refusal.
answers() {
	api GET /
	expect "$1: VMM still answers" 200 '"state":'
}

# sigterm NAME: SIGTERM ends it within 5 s, with status 143.
sigterm() {
	local i krc=
	kill -TERM "$KPID" 2>/dev/null
	for i in $(seq 100); do
		kill -0 "$KPID" 2>/dev/null || break
		sleep 0.05
	done
	if kill -0 "$KPID" 2>/dev/null; then
		kill -KILL "$KPID" 2>/dev/null
		wait "$KPID" 2>/dev/null
		fail "robust $1: SIGTERM ends it" "still running 5 s after SIGTERM"
		return
	fi
	wait "$KPID" 2>/dev/null
	krc=$?
	[ "$krc" = 143 ] && pass "robust $1: SIGTERM ends it" ||
		fail "robust $1: SIGTERM ends it" "status $krc, want 143: $(head -c 300 "$T/$NAME.err")"
}

boot_counter() { # ARGS for the counter guest's command line
	api PUT /boot-source "{\"kernel_image_path\": \"$COUNTER\", \"boot_args\": \"$1\"}"
}

# ---- inputs: a FIFO is refused, the VMM keeps answering -------------------

# The kernel passed PUT /boot-source's checks, then became a FIFO (check-then-use).
start kernel-swap || exit 1
cp "$COUNTER" "$T/kernel"
boot_counter "delay_ms=10"
expect kernel-swap-boot-source 204
rm "$T/kernel"
mkfifo "$T/kernel"
api PUT /boot-source "{\"kernel_image_path\": \"$T/kernel\"}"
expect kernel-swap-put-fifo-refused 400 "not a regular file"
cp "$COUNTER" "$T/kernel2"
api PUT /boot-source "{\"kernel_image_path\": \"$T/kernel2\"}"
expect kernel-swap-boot-source-2 204
rm "$T/kernel2"
mkfifo "$T/kernel2"
api PUT /actions '{"action_type": "InstanceStart"}'
expect kernel-swap-start-refused 400 "is a FIFO"
answers kernel-swap
sigterm kernel-swap

# A FIFO as snapshot_path, and as the memory file.
mkfifo "$T/state.fifo" "$T/mem.fifo"
start load-fifo || exit 1
api PUT /snapshot/load "{\"snapshot_path\": \"$T/state.fifo\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"$T/mem.fifo\"}}"
expect load-fifo-state-refused 400 "snapshot $T/state.fifo: is a FIFO"
answers load-fifo
sigterm load-fifo

# ---- a running VM: snapshots into FIFOs, metrics and serial into FIFOs ------

mkfifo "$T/serial.fifo" "$T/metrics-pre.fifo" "$T/metrics-run.fifo"
start run || exit 1
boot_counter "delay_ms=5"
expect run-boot-source 204
api PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 64, "track_dirty_pages": true}'
expect run-machine-config 204
# Nobody reads these FIFOs yet: neither the open nor the writes may wait for a reader.
api PUT /serial "{\"serial_out_path\": \"$T/serial.fifo\"}"
expect run-serial-fifo 204
api PUT /metrics "{\"metrics_path\": \"$T/metrics-pre.fifo\"}"
expect run-metrics-fifo-before-start 204
api PUT /actions '{"action_type": "InstanceStart"}'
expect run-start-with-fifos 204
sleep 1
api GET /
expect run-running-no-reader 200 '"state":"Running"'
# The guest's output waited in the pipe for its reader.
timeout 5 head -c 4096 "$T/serial.fifo" >"$T/serial.got"
check "robust run-serial-fifo-carries-output" grep -q "kestrel-guest: count" "$T/serial.got"
api PUT /actions '{"action_type": "FlushMetrics"}'
expect run-flush-metrics-fifo 204
timeout 5 head -n 1 "$T/metrics-pre.fifo" >"$T/metrics.got"
check "robust run-metrics-fifo-whole-line" grep -q '^{"utc_timestamp_ms":.*"console":{"bytes_out":[0-9]*,"bytes_dropped":[0-9]*},"metrics":{"lines_dropped":[0-9]*}}$' "$T/metrics.got"
# Nobody reads the metrics FIFO: flushes fill the pipe, then lines are dropped, never blocking.
for i in $(seq 60); do api PUT /actions '{"action_type": "FlushMetrics"}'; [ "$code" = 204 ] || break; done
expect run-flush-metrics-no-reader 204
answers run-metrics-full-pipe
# Diff snapshot into a FIFO: refused; the VM resumes and runs on.
api PATCH /vm '{"state": "Paused"}'
expect run-pause 204
mkfifo "$T/diff.fifo"
api PUT /snapshot/create "{\"snapshot_type\": \"Diff\", \"snapshot_path\": \"$T/d.state\", \"mem_file_path\": \"$T/diff.fifo\"}"
expect run-diff-into-fifo-refused 400 "diff.fifo: is a FIFO"
# A Full snapshot writes PATH.tmp and renames it over PATH: a FIFO there is replaced, never opened.
api PUT /snapshot/create "{\"snapshot_type\": \"Full\", \"snapshot_path\": \"$T/f.state\", \"mem_file_path\": \"$T/diff.fifo\"}"
expect run-full-over-fifo 204
check "robust run-full-over-fifo-is-a-file" test -f "$T/diff.fifo" -a ! -p "$T/diff.fifo"
# A FIFO planted at the temporary name is a stale temporary: removed, never
# opened (a create cleans up what an interrupted one left), and the pair written.
mkfifo "$T/g.mem.tmp"
api PUT /snapshot/create "{\"snapshot_type\": \"Full\", \"snapshot_path\": \"$T/g.state\", \"mem_file_path\": \"$T/g.mem\"}"
expect run-full-tmp-fifo-replaced 204
check "robust run-full-tmp-fifo-gone" test ! -e "$T/g.mem.tmp"
check "robust run-full-tmp-fifo-mem-is-a-file" test -f "$T/g.mem" -a ! -p "$T/g.mem"
api PATCH /vm '{"state": "Resumed"}'
expect run-resume-after-refusals 204
api GET /
expect run-running-after-refusals 200 '"state":"Running"'
sigterm run

# PUT /metrics into a FIFO after the start.
start late-metrics || exit 1
boot_counter "delay_ms=5"
api PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 64}'
api PUT /actions '{"action_type": "InstanceStart"}'
expect late-metrics-start 204
api PUT /metrics "{\"metrics_path\": \"$T/metrics-run.fifo\"}"
expect late-metrics-fifo-after-start 204
answers late-metrics
timeout 5 head -n 1 "$T/metrics-run.fifo" >"$T/metrics2.got" &
rdr=$!
sleep 0.2
api PUT /actions '{"action_type": "FlushMetrics"}'
expect late-metrics-flush 204
wait "$rdr"
check "robust late-metrics-line-arrives" grep -q '"lines_dropped"' "$T/metrics2.got"
sigterm late-metrics

# ---- huge pages the host's pool cannot give: 400, not SIGBUS --------------

free_hp=$(awk '/^HugePages_Free:/ { print $2 }' /proc/meminfo)
hp_kib=$(awk '/^Hugepagesize:/ { print $2 }' /proc/meminfo)
if [ -z "$free_hp" ] || [ -z "$hp_kib" ]; then
	skip robust-hugepages "this host has no hugetlb support"
elif [ $((free_hp * hp_kib / 1024)) -ge 64 ]; then
	skip robust-hugepages "the host's huge-page pool has $free_hp free pages, enough for this test's 64 MiB"
else
	start hugepages || exit 1
	boot_counter "delay_ms=5"
	api PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 64, "huge_pages": "2M"}'
	expect hugepages-machine-config 204
	api PUT /actions '{"action_type": "InstanceStart"}'
	expect hugepages-start-refused 400 "huge-page pool has $free_hp free"
	answers hugepages
	sigterm hugepages
fi

# ---- guest RAM beyond host memory plus swap: 400 -------------------------

host_mib=$(awk '/^MemTotal:/ { m = $2 } /^SwapTotal:/ { s = $2 } END { print int((m + s) / 1024) }' /proc/meminfo)
if [ "$host_mib" -ge 1048576 ]; then
	skip robust-bigmem "this host has 1 TiB or more"
else
	start bigmem || exit 1
	boot_counter "delay_ms=5"
	api PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 1048576}'
	expect bigmem-machine-config 204
	api PUT /actions '{"action_type": "InstanceStart"}'
	expect bigmem-start-refused 400 "exceeds this host's memory plus swap"
	answers bigmem
	sigterm bigmem
fi

[ "$CHECK_FAILS" = 0 ]
