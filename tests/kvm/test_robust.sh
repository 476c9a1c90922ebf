#!/usr/bin/env bash
# `kestrel run` against host files that block or grow, and memory the host
# cannot give: FIFOs as inputs (--kernel, --initrd, --config-file) are a
# one-line error and status 1; FIFOs as outputs (--console file:, --metrics)
# are written without ever waiting for a reader; the console file is capped
# (--console-limit); a short huge-page pool and RAM beyond the host are
# one-line errors, not a SIGBUS or a later OOM kill. Every run is bounded by
# timeout(1), so a regression fails instead of hanging the suite.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$root/tests/lib/checks.sh"

BUILD=${BUILD:-$root/build}
KESTREL=${KESTREL:-$BUILD/kestrel}
G=$BUILD/guests
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

if [ ! -c /dev/kvm ] || ! [ -r /dev/kvm -a -w /dev/kvm ]; then
	skip kvm-robust "/dev/kvm is not available on this machine"
	exit 0
fi

# run NAME SECS ARGS...: kestrel with a time limit; sets rc, out, err.
run() {
	local name=$1 secs=$2; shift 2
	out=$T/$name.out
	err=$T/$name.err
	timeout -k 5 "$secs" "$KESTREL" "$@" >"$out" 2>"$err" </dev/null
	rc=$?
}

expect_error() { # NAME PATTERN ARGS...: status 1 and one line on stderr matching PATTERN, within 20 s
	local name=$1 pat=$2; shift 2
	run "$name" 20 "$@"
	if [ "$rc" = 1 ] && [ "$(wc -l <"$err")" = 1 ] && grep -qi -- "$pat" "$err"; then pass "robust $name"
	else fail "robust $name" "want status 1 and one line matching '$pat', got $rc: $(head -c 300 "$err")"; fi
}

# sigterm_ends NAME ARGS...: kestrel runs ARGS in the background; SIGTERM after 1 s ends it with 143 within 5 s.
sigterm_ends() {
	local name=$1 pid i krc; shift
	"$KESTREL" "$@" >"$T/$name.out" 2>"$T/$name.err" </dev/null &
	pid=$!
	sleep 1
	kill -TERM "$pid" 2>/dev/null
	for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
	if kill -0 "$pid" 2>/dev/null; then
		kill -KILL "$pid"; wait "$pid" 2>/dev/null
		fail "robust $name" "still running 5 s after SIGTERM"
		return
	fi
	wait "$pid"
	krc=$?
	[ "$krc" = 143 ] && pass "robust $name" || fail "robust $name" "status $krc, want 143: $(head -c 300 "$T/$name.err")"
}

mkfifo "$T/fifo"
HELLO=$G/guest-hello.elf
COUNTER=$G/guest-counter.elf

# ---- FIFOs as inputs -----------------------------------------------------
expect_error fifo-kernel "kernel $T/fifo: is a FIFO" run --kernel "$T/fifo"
expect_error fifo-initrd "initrd $T/fifo: is a FIFO" run --kernel "$HELLO" --initrd "$T/fifo"
expect_error fifo-config-file "config-file $T/fifo: is a FIFO" --config-file "$T/fifo"
expect_error dir-console "console file $T: is a directory" run --kernel "$HELLO" --console "file:$T"

# ---- FIFOs as outputs: nobody reads them, the guest runs to its end --------
run fifo-console-no-reader 60 run --kernel "$COUNTER" --cmdline "limit=20 delay_ms=0" --console "file:$T/fifo"
[ "$rc" = 0 ] && pass "robust fifo-console-no-reader" || fail "robust fifo-console-no-reader" "status $rc: $(head -c 300 "$err")"
# A reader that holds the FIFO open and never reads, its pipe shrunk to one page: the guest's
# 200 lines do not fit, and the rest is dropped and counted instead of stopping the guest.
mkfifo "$T/slow"
python3 -c '
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_NONBLOCK)
fcntl.fcntl(fd, 1031, 4096)  # F_SETPIPE_SZ
time.sleep(60)' "$T/slow" &
holder=$!
sleep 0.3
run fifo-console-slow-reader 60 run --kernel "$COUNTER" --cmdline "limit=200 delay_ms=0" \
	--console "file:$T/slow" --stats
kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null
[ "$rc" = 0 ] && pass "robust fifo-console-slow-reader" || fail "robust fifo-console-slow-reader" "status $rc: $(head -c 300 "$err")"
dropped=$(sed -n 's/^console: [0-9]* bytes written, \([0-9]*\) dropped$/\1/p' "$err")
[ -n "$dropped" ] && [ "$dropped" -gt 0 ] && pass "robust fifo-console-drops-counted" ||
	fail "robust fifo-console-drops-counted" "dropped '$dropped'"
run fifo-metrics-no-reader 60 run --kernel "$HELLO" --cmdline "exit=0" --console none --metrics "$T/fifo"
[ "$rc" = 0 ] && pass "robust fifo-metrics-no-reader" || fail "robust fifo-metrics-no-reader" "status $rc: $(head -c 300 "$err")"
# A metrics reader that takes one line and leaves: the next lines must not raise SIGPIPE
# on the main thread (status 141); the guest runs to its end.
mkfifo "$T/short"
timeout 30 head -n 1 "$T/short" >"$T/short.got" &
reader=$!
sleep 0.2
run fifo-metrics-reader-leaves 60 run --kernel "$COUNTER" --cmdline "limit=30 delay_ms=100" --console none \
	--metrics "$T/short" --metrics-interval 1
wait "$reader"
[ "$rc" = 0 ] && grep -q "utc_timestamp_ms" "$T/short.got" && pass "robust fifo-metrics-reader-leaves" ||
	fail "robust fifo-metrics-reader-leaves" "status $rc (141: SIGPIPE): $(head -c 300 "$err")"
# With a reader, the metrics arrive as whole JSON lines.
mkfifo "$T/mfifo"
timeout 30 cat "$T/mfifo" >"$T/metrics.got" &
reader=$!
run fifo-metrics-reader 30 run --kernel "$HELLO" --cmdline "exit=0" --console none --metrics "$T/mfifo"
wait "$reader"
[ "$rc" = 0 ] && grep -q '^{"utc_timestamp_ms":.*"lines_dropped":0}}$' "$T/metrics.got" &&
	pass "robust fifo-metrics-reader" || fail "robust fifo-metrics-reader" "status $rc: $(head -c 300 "$T/metrics.got")"
# SIGTERM ends a VMM whose console and metrics FIFOs nobody reads.
mkfifo "$T/fifo2"
sigterm_ends fifo-outputs-sigterm run --kernel "$COUNTER" --cmdline "delay_ms=1" --console "file:$T/fifo" \
	--metrics "$T/fifo2"

# ---- the console file is capped -------------------------------------------
run console-limit 60 run --kernel "$COUNTER" --cmdline "limit=200 delay_ms=0" --console "file:$T/con" \
	--console-limit 4K --stats
size=$(stat -c %s "$T/con" 2>/dev/null || echo 0)
markers=$(grep -c "console output limit of 4096 bytes reached" "$T/con")
dropped=$(sed -n 's/^console: [0-9]* bytes written, \([0-9]*\) dropped$/\1/p' "$err")
if [ "$rc" = 0 ] && [ "$size" -gt 4096 ] && [ "$size" -lt 4300 ] && [ "$markers" = 1 ] &&
	[ -n "$dropped" ] && [ "$dropped" -gt 0 ]; then pass "robust console-limit"
else fail "robust console-limit" "status $rc, $size bytes, $markers markers, dropped '$dropped'"; fi
run console-default 60 run --kernel "$COUNTER" --cmdline "limit=200 delay_ms=0" --console "file:$T/con2"
size=$(stat -c %s "$T/con2" 2>/dev/null || echo 0)
[ "$rc" = 0 ] && [ "$size" -gt 4300 ] && ! grep -q "limit of" "$T/con2" && grep -q "count 199" "$T/con2" &&
	pass "robust console-default-limit-not-hit" || fail "robust console-default-limit-not-hit" "status $rc, $size bytes"
run console-no-limit 60 run --kernel "$COUNTER" --cmdline "limit=200 delay_ms=0" --console "file:$T/con3" \
	--console-limit 0
[ "$rc" = 0 ] && grep -q "count 199" "$T/con3" && ! grep -q "limit of" "$T/con3" &&
	pass "robust console-limit-0-is-none" || fail "robust console-limit-0-is-none" "status $rc"
run console-limit-garbage 10 run --kernel "$HELLO" --console-limit lots
[ "$rc" = 2 ] && grep -q -- "--console-limit: 'lots'" "$err" && pass "robust console-limit-garbage" ||
	fail "robust console-limit-garbage" "status $rc: $(head -c 300 "$err")"

# ---- memory the host cannot give -------------------------------------------
free_hp=$(awk '/^HugePages_Free:/ { print $2 }' /proc/meminfo)
hp_kib=$(awk '/^Hugepagesize:/ { print $2 }' /proc/meminfo)
if [ -z "$free_hp" ] || [ -z "$hp_kib" ]; then
	skip robust-hugepages-pool-short "this host has no hugetlb support"
elif [ $((free_hp * hp_kib / 1024)) -ge 256 ]; then
	skip robust-hugepages-pool-short "the huge-page pool has $free_hp free pages, enough for 256 MiB"
else
	# Not SIGBUS (status 135) at the first touch: a one-line error at start.
	expect_error hugepages-pool-short "huge-page pool has $free_hp free" run --kernel "$HELLO" --hugepages --memory 256M
fi
host_mib=$(awk '/^MemTotal:/ { m = $2 } /^SwapTotal:/ { s = $2 } END { print int((m + s) / 1024) }' /proc/meminfo)
if [ "$host_mib" -lt 1000000 ]; then
	expect_error ram-over-host "exceeds this host's memory plus swap" run --kernel "$HELLO" --memory 1024G
	run ram-over-host-overcommit 30 run --kernel "$HELLO" --cmdline "exit=0" --memory 1024G --mem-overcommit
	[ "$rc" = 0 ] && pass "robust ram-over-host-overcommit" || fail "robust ram-over-host-overcommit" "status $rc: $(head -c 300 "$err")"
else
	skip ram-over-host "this host has 1 TiB or more"
fi

# RAM beyond the memory limit of kestrel's cgroup: a warning at start (an OOM kill later says nothing).
# A temporary cgroup v1 memory group, removed again; skipped where none can be made.
CG=/sys/fs/cgroup/memory/kestrel-robust-$$
if mkdir "$CG" 2>/dev/null; then
	if echo $((128 << 20)) >"$CG/memory.limit_in_bytes" 2>/dev/null; then
		timeout -k 5 30 sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' sh "$CG" \
			"$KESTREL" run --kernel "$HELLO" --cmdline "exit=0" --memory 256M >"$T/cg.out" 2>"$T/cg.err" </dev/null
		rc=$?
		[ "$rc" = 0 ] && grep -q "exceeds the memory limit of kestrel's cgroup (128 MiB)" "$T/cg.err" &&
			pass "robust ram-over-cgroup-warns" || fail "robust ram-over-cgroup-warns" "status $rc: $(head -c 300 "$T/cg.err")"
		timeout -k 5 30 sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' sh "$CG" \
			"$KESTREL" run --kernel "$HELLO" --cmdline "exit=0" --memory 64M >"$T/cg.out" 2>"$T/cg.err" </dev/null
		rc=$?
		[ "$rc" = 0 ] && ! grep -q "cgroup" "$T/cg.err" && pass "robust ram-under-cgroup-quiet" ||
			fail "robust ram-under-cgroup-quiet" "status $rc: $(head -c 300 "$T/cg.err")"
	else
		skip robust-ram-over-cgroup "cannot set a memory limit on $CG"
	fi
	rmdir "$CG" 2>/dev/null || sleep 1; rmdir "$CG" 2>/dev/null
else
	skip robust-ram-over-cgroup "cannot create a cgroup v1 memory group here"
fi

"$KESTREL" --help >"$T/help" 2>&1
check "robust help-lists-new-options" grep -q -e "--console-limit SIZE" "$T/help"
check "robust help-lists-overcommit" grep -q -e "--mem-overcommit" "$T/help"

[ "$CHECK_FAILS" = 0 ]
