#!/usr/bin/env bash
# Control API conformance tests: kestrel --api-sock driven with curl over the
# Unix socket, with the request bodies of Firecracker's getting-started flow,
# then every kind of bad input (malformed JSON, unknown / missing / mistyped
# fields, oversized bodies, unknown paths and methods, actions in the wrong
# state) against a running guest, which must keep running, unchanged. Also
# --config-file and the CLI helpers (kestrel status|pause|resume|snapshot).
#
# The guest is the freestanding guest-counter ("kestrel-guest: count N" on
# COM1, forever or up to limit=N), its console in a file the test reads.
# Pre-boot checks need no /dev/kvm; the rest are skipped without it.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$root/tests/lib/checks.sh"

BUILD=${BUILD:-$root/build}
case $BUILD in /*) ;; *) BUILD=$root/$BUILD ;; esac
KESTREL=${KESTREL:-$BUILD/kestrel}
G=$BUILD/guests
COUNTER=$G/guest-counter.elf
T=$(mktemp -d /tmp/kestrel-api.XXXXXX)
PIDS=()
TAP=

cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
	[ -n "$TAP" ] && ip link del "$TAP" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT

if ! command -v curl >/dev/null; then
	skip api "curl is not installed"
	exit 0
fi
if [ ! -x "$KESTREL" ]; then
	fail api "no kestrel binary at $KESTREL (build first, or set BUILD)"
	exit 1
fi

# ---- helpers ------------------------------------------------------------

# api METHOD PATH [BODY|@FILE] [curl args...]: one request to $SOCK; sets
# $code, the body in $T/resp and the headers in $T/hdr.
api() {
	local m=$1 p=$2 data=()
	shift 2
	if [ $# -gt 0 ]; then
		data=(-H 'Content-Type: application/json' --data-binary "$1")
		shift
	fi
	code=$(curl -s -m 30 -o "$T/resp" -D "$T/hdr" -w '%{http_code}' --unix-socket "$SOCK" -X "$m" \
		-H 'Accept: application/json' "${data[@]}" "$@" "http://localhost$p")
}

resp_has() { grep -q -- "$1" "$T/resp"; }

# expect NAME CODE [PATTERN]: the last request got CODE (and PATTERN in its
# body); an error reply must be JSON with a fault_message.
expect() {
	local why=
	if [ "$code" != "$2" ]; then
		why="HTTP $code, want $2"
	elif [ -n "${3:-}" ] && ! resp_has "$3"; then
		why="reply lacks '$3'"
	elif [ "$2" -ge 400 ] && ! { resp_has '"fault_message"' && grep -qi '^content-type: application/json' "$T/hdr"; }; then
		why="error reply is not JSON with a fault_message"
	fi
	if [ -z "$why" ]; then pass "api $1"; else fail "api $1" "$why: $(head -c 300 "$T/resp")"; fi
}

# start_kestrel NAME ARGS...: kestrel --api-sock $SOCK ARGS in the background,
# waits for the socket to answer.
start_kestrel() {
	local name=$1 i
	shift
	SOCK=$T/$name.sock
	"$KESTREL" --api-sock "$SOCK" "$@" >"$T/$name.out" 2>"$T/$name.err" </dev/null &
	KPID=$!
	PIDS+=("$KPID")
	for i in $(seq 100); do
		[ -S "$SOCK" ] && curl -s -m 2 -o /dev/null --unix-socket "$SOCK" http://localhost/ && return 0
		kill -0 "$KPID" 2>/dev/null || break
		sleep 0.05
	done
	fail "api $name-starts" "kestrel --api-sock did not come up: $(head -c 300 "$T/$name.err")"
	return 1
}

# stop_kestrel: SIGTERM, and the exit status in $krc.
stop_kestrel() {
	kill -TERM "$KPID" 2>/dev/null
	wait "$KPID" 2>/dev/null
	krc=$?
}

# wait_exit SECS: wait for kestrel to end by itself; the status in $krc (124: it did not).
wait_exit() {
	local i
	for i in $(seq $(($1 * 20))); do
		kill -0 "$KPID" 2>/dev/null || { wait "$KPID"; krc=$?; return 0; }
		sleep 0.05
	done
	krc=124
}

last_count() { grep -o 'count [0-9]*' "$1" 2>/dev/null | tail -n 1 | cut -d' ' -f2; }

# The counter in console file $CON moves within $1 seconds (polled: the host may be busy).
counter_moves() {
	local a b i
	a=$(last_count "$CON")
	for i in $(seq "$(awk "BEGIN { print int(${1:-2} * 10) }")"); do
		sleep 0.1
		b=$(last_count "$CON")
		[ -n "$a" ] && [ -n "$b" ] && [ "$b" -gt "$a" ] && return 0
	done
	return 1
}

state_is() { # STATE: GET / reports it
	api GET /
	[ "$code" = 200 ] && resp_has "\"state\":\"$1\""
}

# still_running NAME: after a rejected request the VM runs on, unchanged.
still_running() {
	# A bound, not a retry: it returns as soon as the count moves; 20 s covers a
	# loaded 2-core machine, where the emulated CPL0 parts of the guest crawl.
	if state_is Running && counter_moves 20; then pass "api $1: VM still running"
	else fail "api $1: VM still running" "state or counter changed: $(head -c 200 "$T/resp")"; fi
}

# bad NAME METHOD PATH BODY CODE PATTERN [curl args]: a request that must be refused.
bad() {
	local name=$1 m=$2 p=$3 body=$4 want=$5 pat=$6
	shift 6
	if [ -n "$body" ]; then api "$m" "$p" "$body" "$@"; else api "$m" "$p" "" "$@"; fi
	expect "$name" "$want" "$pat"
}

# Oversized bodies: 70000 bytes of valid JSON.
{ printf '{"kernel_image_path": "'; head -c 70000 /dev/zero | tr '\0' a; printf '"}'; } >"$T/big.json"

# ---- the command line, no VM needed -------------------------------------

expect_cli() { # NAME WANT-STATUS PATTERN ARGS...: one line on stderr matching PATTERN
	local name=$1 want=$2 pat=$3
	shift 3
	timeout -k 5 20 "$KESTREL" "$@" >"$T/cli.out" 2>"$T/cli.err" </dev/null
	local rc=$?
	if [ "$rc" = "$want" ] && [ "$(wc -l <"$T/cli.err")" = 1 ] && grep -qi -- "$pat" "$T/cli.err"; then
		pass "api $name"
	else
		fail "api $name" "want status $want and one line matching '$pat', got $rc: $(head -c 300 "$T/cli.err")"
	fi
}
expect_cli cli-api-sock-needs-arg 2 "api-sock" --api-sock
expect_cli cli-unknown-option 2 "unknown" --api-sock "$T/x.sock" --frobnicate
expect_cli cli-bad-id 2 "--id" --api-sock "$T/x.sock" --id "a b"
expect_cli cli-pause-needs-sock 2 "--api-sock is required" pause
expect_cli cli-snapshot-needs-paths 2 "--snapshot-path and --mem-path" snapshot --api-sock "$T/x.sock"
expect_cli cli-status-no-server 1 "cannot connect" status --api-sock "$T/nobody.sock"
: >"$T/plain-file"
expect_cli cli-sock-is-a-file 1 "not a socket" --api-sock "$T/plain-file"
expect_cli cli-config-missing 1 "config-file" --config-file "$T/none.json"
printf '{"boot-source": {"kernel_image_path": ' >"$T/broken.json"
expect_cli cli-config-malformed 1 "malformed JSON" --config-file "$T/broken.json"
printf '{"boot-source": {"kernel_image_path": "%s"}, "vsock": {}}' "$COUNTER" >"$T/vsock.json"
expect_cli cli-config-unsupported 1 "'vsock' is not supported" --config-file "$T/vsock.json"
"$KESTREL" --help >"$T/help" 2>&1
check "api help-lists-api-options" grep -q -- "--api-sock PATH" "$T/help"
check "api help-lists-helpers" grep -q -- "pause|resume|status --api-sock" "$T/help"
# libcjson, like libmicrohttpd and libcurl, is opened only when JSON is needed
# (src/api/cjson_shim.c): `kestrel run` does not map it. The JSON paths above
# and below (--config-file, the API, the CLI helpers) use it loaded on demand.
if command -v readelf >/dev/null; then
	readelf -d "$KESTREL" >"$T/needed" 2>&1
	if grep -q NEEDED "$T/needed" && ! grep -Eq 'NEEDED.*(libcjson|libmicrohttpd|libcurl)' "$T/needed"; then
		pass "api optional-libraries-not-linked"
	else
		fail "api optional-libraries-not-linked" "$(grep NEEDED "$T/needed" | tr -s ' ' | tr '\n' ' ')"
	fi
else
	skip "api optional-libraries-not-linked" "readelf is not installed"
fi

# Without a loadable libcjson, what needs JSON says so in one line (a mount
# namespace hides the library behind an empty file); `kestrel run` needs none.
cjson_lib=$(readlink -f /usr/lib/x86_64-linux-gnu/libcjson.so.1 2>/dev/null)
if [ -f "$cjson_lib" ] && unshare -m true 2>/dev/null; then
	printf '{"boot-source": {"kernel_image_path": "%s"}}' "$COUNTER" >"$T/nocjson.json"
	for args in "--api-sock $T/nocjson.sock" "--config-file $T/nocjson.json" "status --api-sock $T/nocjson.sock"; do
		# shellcheck disable=SC2086 # args are split on purpose
		unshare -m sh -c 'mount --bind /dev/null "$1" && shift && exec "$@"' sh "$cjson_lib" \
			"$KESTREL" $args >"$T/cli.out" 2>"$T/cli.err" </dev/null
		rc=$?
		name=${args%% *}; name="api no-libcjson-${name#--}"
		if [ "$rc" = 1 ] && [ "$(wc -l <"$T/cli.err")" = 1 ] && grep -q "cannot load libcjson.so.1" "$T/cli.err"; then
			pass "$name"
		else
			fail "$name" "want status 1 and one line naming libcjson, got $rc: $(head -c 300 "$T/cli.err")"
		fi
	done
	if [ -c /dev/kvm ] && [ -f "$G/guest-hello.elf" ]; then
		unshare -m sh -c 'mount --bind /dev/null "$1" && shift && exec "$@"' sh "$cjson_lib" \
			"$KESTREL" run --kernel "$G/guest-hello.elf" --memory 32M --console none --cmdline exit=0 \
			>"$T/cli.out" 2>"$T/cli.err" </dev/null
		rc=$?
		[ "$rc" = 0 ] && pass "api no-libcjson-run" || fail "api no-libcjson-run" "status $rc: $(head -c 300 "$T/cli.err")"
	fi
else
	skip "api no-libcjson" "needs libcjson.so.1 and unshare -m (root)"
fi

# The snapshot-delay test hook refuses a bad value with a warning and serves on.
KESTREL_TEST_SNAPSHOT_DELAY_MS=12x start_kestrel hook || exit 1
stop_kestrel
grep -q "KESTREL_TEST_SNAPSHOT_DELAY_MS='12x' is not" "$T/hook.err" && [ "$krc" = 143 ] \
	&& pass "api test-hook-bad-value" || fail "api test-hook-bad-value" "status $krc: $(head -c 300 "$T/hook.err")"

# ---- pre-boot: info, defaults and bad input (no /dev/kvm needed) ---------

start_kestrel pre --id test-vm || exit 1
api GET /
expect info-not-started 200 '"state":"Not started"'
check "api info-fields" grep -q '"id":"test-vm".*"vmm_version":"[0-9].*"app_name":"kestrel"' "$T/resp"
api GET /version
expect version 200 '"firecracker_version":"'
api GET /machine-config
expect machine-config-defaults 200 '"vcpu_count":1,"mem_size_mib":128'

bad pre-malformed-json PUT /boot-source '{"kernel_image_path": ' 400 'malformed JSON'
bad pre-unknown-field PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 128, "cpus": 2}' 400 "unknown field 'cpus'"
bad pre-missing-field PUT /machine-config '{"vcpu_count": 1}' 400 "missing field 'mem_size_mib'"
bad pre-wrong-type PUT /machine-config '{"vcpu_count": "1", "mem_size_mib": 128}' 400 "must be a non-negative integer"
bad pre-vcpus-range PUT /machine-config '{"vcpu_count": 33, "mem_size_mib": 128}' 400 "from 1 to 32"
bad pre-empty-body PUT /boot-source '' 400 "empty body"
bad pre-not-object PUT /actions '["InstanceStart"]' 400 "must be a JSON object"
bad pre-unknown-action PUT /actions '{"action_type": "Reboot"}' 400 "is not one of"
bad pre-start-no-kernel PUT /actions '{"action_type": "InstanceStart"}' 400 "boot source"
bad pre-kernel-missing PUT /boot-source '{"kernel_image_path": "/nonexistent/vmlinux"}' 400 "No such file"
bad pre-drive-id-mismatch PUT /drives/rootfs "{\"drive_id\": \"other\", \"path_on_host\": \"$COUNTER\", \"is_root_device\": true, \"is_read_only\": true}" 400 "does not match"
bad pre-drive-bad-id PUT '/drives/a%20b' '{}' 400 "invalid id"
bad pre-rate-limiter PUT /drives/d "{\"drive_id\": \"d\", \"path_on_host\": \"$COUNTER\", \"is_root_device\": false, \"is_read_only\": true, \"rate_limiter\": {\"bandwidth\": {\"size\": 1}}}" 400 "missing field 'refill_time'"
bad pre-oversized PUT /boot-source "@$T/big.json" 413 "larger than 65536"
bad pre-oversized-chunked PUT /boot-source "@$T/big.json" 413 "larger than 65536" -H 'Transfer-Encoding: chunked'
bad pre-unknown-path GET /no/such/thing '' 404 "unknown path"
bad pre-unknown-path-put PUT /boot '{}' 404 "unknown path"
bad pre-wrong-method DELETE /boot-source '' 405 "not allowed"
check "api pre-405-allow-header" grep -qi '^allow: PUT' "$T/hdr"
bad pre-wrong-method-get GET /actions '' 405 "not allowed"
bad pre-pause-not-started PATCH /vm '{"state": "Paused"}' 400 "not started"
bad pre-ctrl-alt-del-not-started PUT /actions '{"action_type": "SendCtrlAltDel"}' 400 "not running"
bad pre-snapshot-not-started PUT /snapshot/create '{"snapshot_path": "s", "mem_file_path": "m"}' 400 "paused VM"
# A \u0000 escape would cut boot_args short; bytes that are not UTF-8 would be echoed back by GET /vm/config as invalid JSON.
bad pre-boot-args-nul PUT /boot-source "{\"kernel_image_path\": \"$COUNTER\", \"boot_args\": \"console=ttyS0\\u0000 init=/bin/sh\"}" 400 'u0000 at byte'
printf '{"kernel_image_path": "%s", "boot_args": "console=ttyS0 \377"}' "$COUNTER" >"$T/bad-utf8.json"
bad pre-boot-args-bad-utf8 PUT /boot-source "@$T/bad-utf8.json" 400 "invalid UTF-8"
bad pre-snapshot-uffd PUT /snapshot/load '{"snapshot_path": "s", "mem_backend": {"backend_type": "Uffd", "backend_path": "u"}}' 400 "Uffd"
# After all that nothing is configured and nothing started.
api GET /vm/config
expect pre-config-unchanged 200 '"machine-config":{"vcpu_count":1,"mem_size_mib":128'
if resp_has boot-source; then fail "api pre-config-no-boot-source" "a refused request changed the config"; else pass "api pre-config-no-boot-source"; fi
state_is "Not started" && pass "api pre-still-not-started" || fail "api pre-still-not-started" "$(cat "$T/resp")"
# Boot resources first, then a snapshot load: refused, as in Firecracker.
api PUT /boot-source "{\"kernel_image_path\": \"$COUNTER\"}"
expect pre-boot-source 204
bad pre-load-after-config PUT /snapshot/load '{"snapshot_path": "s", "mem_file_path": "m"}' 400 "after boot resources"
# Stuck clients (24 connections that trickle a byte every 2 s or say nothing)
# must not keep others out, and are cut API_REQUEST_DEADLINE (10) s after they
# connected (tests/api/stuck_clients.py).
if command -v python3 >/dev/null; then
	python3 "$here/stuck_clients.py" "$SOCK" 10 || CHECK_FAILS=$((CHECK_FAILS + 1))
	state_is "Not started" && pass "api stuck-vmm-unchanged" || fail "api stuck-vmm-unchanged" "$(cat "$T/resp")"
else
	skip "api stuck-clients" "python3 is not installed"
fi
stop_kestrel
[ "$krc" = 143 ] && pass "api pre-sigterm-status" || fail "api pre-sigterm-status" "status $krc, want 143: $(head -c 300 "$T/pre.err")"
check "api pre-socket-removed" test ! -e "$SOCK"

# ---- from here on the VM runs ----------------------------------------------

if [ ! -c /dev/kvm ] || ! [ -r /dev/kvm -a -w /dev/kvm ]; then
	skip api-running-vm "/dev/kvm is not available on this machine"
	exit 0
fi
if [ ! -f "$COUNTER" ]; then
	fail api-running-vm "no test guest at $COUNTER"
	exit 1
fi

# ---- 1. Firecracker's getting-started flow, to a guest that ends --------

truncate -s 1M "$T/rootfs.img"
start_kestrel gs || exit 1
CON=$T/gs-console.txt
api PUT /boot-source "{
        \"kernel_image_path\": \"$COUNTER\",
        \"boot_args\": \"console=ttyS0 reboot=k panic=1 pci=off limit=30 delay_ms=10\"
    }"
expect gs-boot-source 204
api PUT /drives/rootfs "{
        \"drive_id\": \"rootfs\",
        \"path_on_host\": \"$T/rootfs.img\",
        \"is_root_device\": true,
        \"is_read_only\": false
    }"
expect gs-drive 204
api PUT /machine-config '{
        "vcpu_count": 2,
        "mem_size_mib": 128
    }'
expect gs-machine-config 204
if [ -c /dev/net/tun ] && ip tuntap add dev "ktap$$" mode tap 2>/dev/null; then
	TAP=ktap$$
	api PUT /network-interfaces/eth0 "{
        \"iface_id\": \"eth0\",
        \"guest_mac\": \"06:00:AC:10:00:02\",
        \"host_dev_name\": \"$TAP\"
    }"
	expect gs-network-interface 204
else
	skip "api gs-network-interface" "cannot create a TAP device here"
fi
api PUT /serial "{\"serial_out_path\": \"$CON\"}"
expect gs-serial 204
api PUT /actions '{
        "action_type": "InstanceStart"
     }'
expect gs-instance-start 204
wait_exit 30
if [ "$krc" = 0 ] && grep -q "count 29" "$CON"; then pass "api gs-guest-ran-to-its-end"
else fail "api gs-guest-ran-to-its-end" "status $krc, last count $(last_count "$CON")"; show_tail "$T/gs.err"; fi

# ---- 2. --config-file with --api-sock: the running-VM rules -------------

CON=$T/run-console.txt
cat >"$T/vm.json" <<EOF
{
  "boot-source": {"kernel_image_path": "$COUNTER", "boot_args": "delay_ms=10"},
  "machine-config": {"vcpu_count": 1, "mem_size_mib": 64, "track_dirty_pages": true},
  "drives": [{"drive_id": "data", "path_on_host": "$T/rootfs.img", "is_root_device": false, "is_read_only": true}],
  "kestrel": {"console": "file:$CON"}
}
EOF
start_kestrel run --config-file "$T/vm.json" --id runner || exit 1
sleep 0.3
api GET /
expect run-info-running 200 '"state":"Running"'
counter_moves 6 && pass "api run-counter-advances" || fail "api run-counter-advances" "count $(last_count "$CON")"
api GET /vm/config
expect run-vm-config 200 "\"kernel_image_path\":\"$COUNTER\""
api GET /machine-config
expect run-machine-config 200 '"vcpu_count":1,"mem_size_mib":64,"smt":false,"track_dirty_pages":true'

bad run-malformed-json PUT /actions '{"action_type": "InstanceStart"' 400 "malformed JSON"; still_running run-malformed-json
bad run-unknown-field PATCH /vm '{"state": "Paused", "now": true}' 400 "unknown field 'now' in /vm"; still_running run-unknown-field
bad run-missing-field PATCH /vm '{}' 400 "missing field 'state'"; still_running run-missing-field
bad run-wrong-type PATCH /vm '{"state": 1}' 400 "must be a string"; still_running run-wrong-type
bad run-bad-state PATCH /vm '{"state": "Stopped"}' 400 "is not one of Paused or Resumed"; still_running run-bad-state
bad run-oversized PATCH /vm "@$T/big.json" 413 "larger than 65536"; still_running run-oversized
bad run-unknown-path PUT /vm/state '{"state": "Paused"}' 404 "unknown path"; still_running run-unknown-path
bad run-wrong-method PUT /vm '{"state": "Paused"}' 405 "not allowed"; still_running run-wrong-method
bad run-start-twice PUT /actions '{"action_type": "InstanceStart"}' 400 "already started"; still_running run-start-twice
bad run-boot-source-after-start PUT /boot-source "{\"kernel_image_path\": \"$COUNTER\"}" 400 "cannot be changed after the VM started"; still_running run-boot-source-after-start
bad run-drive-after-start PUT /drives/d2 "{\"drive_id\": \"d2\", \"path_on_host\": \"$T/rootfs.img\", \"is_root_device\": false}" 400 "cannot be changed after the VM started"; still_running run-drive-after-start
# A drive's rate limiter changes on the running VM (the disk's I/O thread takes it); bad ones are refused.
api PATCH /drives/data '{"drive_id": "data", "rate_limiter": {"ops": {"size": 100, "refill_time": 1000}, "bandwidth": {"size": 1048576, "one_time_burst": 4096, "refill_time": 100}}}'
expect run-patch-drive-limiter 204; still_running run-patch-drive-limiter
api GET /vm/config
expect run-patch-drive-config 200 '"rate_limiter":{"bandwidth":{"size":1048576,"one_time_burst":4096,"refill_time":100},"ops":{"size":100,"one_time_burst":0,"refill_time":1000}}'
bad run-patch-drive-bad-bucket PATCH /drives/data '{"drive_id": "data", "rate_limiter": {"ops": {"size": 100, "refill_time": -5}}}' 400 "non-negative integer"; still_running run-patch-drive-bad-bucket
bad run-patch-drive-half-bucket PATCH /drives/data '{"drive_id": "data", "rate_limiter": {"ops": {"size": 100, "refill_time": 0}}}' 400 "both be set"; still_running run-patch-drive-half-bucket
bad run-patch-drive-unknown PATCH /drives/nope '{"drive_id": "nope", "rate_limiter": {}}' 400 "no drive 'nope'"; still_running run-patch-drive-unknown
bad run-patch-drive-path PATCH /drives/data "{\"drive_id\": \"data\", \"path_on_host\": \"$T/rootfs.img\"}" 400 "cannot swap"; still_running run-patch-drive-path
bad run-machine-config-after-start PUT /machine-config '{"vcpu_count": 2, "mem_size_mib": 128}' 400 "cannot be changed"; still_running run-machine-config-after-start
bad run-net-after-start PUT /network-interfaces/eth1 '{"iface_id": "eth1", "host_dev_name": "tap9"}' 400 "cannot be changed"; still_running run-net-after-start
bad run-snapshot-while-running PUT /snapshot/create "{\"snapshot_path\": \"$T/s\", \"mem_file_path\": \"$T/m\"}" 400 "paused VM"; still_running run-snapshot-while-running
bad run-load-after-start PUT /snapshot/load "{\"snapshot_path\": \"$T/s\", \"mem_file_path\": \"$T/m\"}" 400 "only be loaded before"; still_running run-load-after-start
bad run-flush-no-metrics PUT /actions '{"action_type": "FlushMetrics"}' 400 "metrics"; still_running run-flush-no-metrics
api PATCH /vm '{"state": "Resumed"}'
expect run-resume-when-running 204; still_running run-resume-when-running

api PUT /actions '{"action_type": "SendCtrlAltDel"}'
expect run-ctrl-alt-del 204; still_running run-ctrl-alt-del
api PUT /metrics "{\"metrics_path\": \"$T/metrics.json\"}"
expect run-metrics 204
api PUT /actions '{"action_type": "FlushMetrics"}'
expect run-flush-metrics 204
check "api run-metrics-written" test -s "$T/metrics.json"
bad run-metrics-twice PUT /metrics "{\"metrics_path\": \"$T/metrics2.json\"}" 400 "already configured"; still_running run-metrics-twice
api PUT /logger '{"level": "Warning"}'
expect run-logger-level 204

# Pause: the counter stops, and stays stopped through bad requests.
api PATCH /vm '{"state": "Paused"}'
expect run-pause 204
state_is Paused && pass "api run-state-paused" || fail "api run-state-paused" "$(cat "$T/resp")"
sleep 0.1
! counter_moves 0.5 && pass "api run-paused-counter-stops" || fail "api run-paused-counter-stops" "count $(last_count "$CON")"
paused_count=$(last_count "$CON")
bad paused-ctrl-alt-del PUT /actions '{"action_type": "SendCtrlAltDel"}' 400 "not running"
bad paused-malformed PATCH /vm '{"state": ' 400 "malformed JSON"
api PATCH /vm '{"state": "Paused"}'
expect paused-pause-again 204
if state_is Paused && [ "$(last_count "$CON")" = "$paused_count" ]; then pass "api paused-state-unchanged"
else fail "api paused-state-unchanged" "count $(last_count "$CON") vs $paused_count"; fi
api PUT /snapshot/create "{\"snapshot_type\": \"Full\", \"snapshot_path\": \"$T/snap.state\", \"mem_file_path\": \"$T/snap.mem\"}"
expect paused-snapshot-create 204
check "api paused-snapshot-files" test -s "$T/snap.state" -a -s "$T/snap.mem"
snap_count=$(last_count "$CON")

# The CLI helpers against the same VM.
"$KESTREL" status --api-sock "$SOCK" >"$T/status.out" 2>"$T/status.err"
rc=$?
[ "$rc" = 0 ] && grep -q '"state":"Paused"' "$T/status.out" && grep -q '"id":"runner"' "$T/status.out" \
	&& pass "api cli-status" || fail "api cli-status" "status $rc: $(cat "$T/status.out" "$T/status.err")"
"$KESTREL" resume --api-sock "$SOCK" >"$T/cli.out" 2>&1
rc=$?
[ "$rc" = 0 ] && state_is Running && counter_moves 6 && pass "api cli-resume" || fail "api cli-resume" "status $rc: $(cat "$T/cli.out")"
"$KESTREL" snapshot --api-sock "$SOCK" --snapshot-path "$T/s2" --mem-path "$T/m2" >"$T/cli.out" 2>"$T/cli.err"
rc=$?
[ "$rc" = 1 ] && [ "$(wc -l <"$T/cli.err")" = 1 ] && grep -q "paused" "$T/cli.err" \
	&& pass "api cli-snapshot-running-refused" || fail "api cli-snapshot-running-refused" "status $rc: $(cat "$T/cli.err")"
"$KESTREL" pause --api-sock "$SOCK" >"$T/cli.out" 2>&1
rc=$?
[ "$rc" = 0 ] && state_is Paused && pass "api cli-pause" || fail "api cli-pause" "status $rc: $(cat "$T/cli.out")"
"$KESTREL" snapshot --api-sock "$SOCK" --snapshot-path "$T/s2" --mem-path "$T/m2" --diff >"$T/cli.out" 2>&1
rc=$?
[ "$rc" = 0 ] && [ -s "$T/s2" ] && pass "api cli-snapshot-diff" || fail "api cli-snapshot-diff" "status $rc: $(cat "$T/cli.out")"
"$KESTREL" resume --api-sock "$SOCK" >/dev/null 2>&1
still_running run-after-cli
stop_kestrel
[ "$krc" = 143 ] && pass "api run-sigterm-status" || fail "api run-sigterm-status" "status $krc, want 143"
check "api run-socket-removed" test ! -e "$SOCK"

# ---- 3. snapshot/load into a fresh kestrel -----------------------------

CON=$T/load-console.txt
start_kestrel load || exit 1
api PUT /serial "{\"serial_out_path\": \"$CON\"}"
expect load-serial 204
bad load-missing-mem PUT /snapshot/load "{\"snapshot_path\": \"$T/snap.state\"}" 400 "mem_backend"
api PUT /snapshot/load "{\"snapshot_path\": \"$T/snap.state\", \"mem_backend\": {\"backend_type\": \"File\", \"backend_path\": \"$T/snap.mem\"}, \"enable_diff_snapshots\": false, \"resume_vm\": true}"
expect load-snapshot 204
sleep 0.3
first=$(grep -o 'count [0-9]*' "$CON" 2>/dev/null | head -n 1 | cut -d' ' -f2)
if [ -n "$first" ] && [ "$first" -ge "${snap_count:-0}" ] && counter_moves 6; then pass "api load-counter-continues"
else fail "api load-counter-continues" "first count '${first}' after the snapshot's ${snap_count:-?}"; show_tail "$T/load.err"; fi
state_is Running && pass "api load-state-running" || fail "api load-state-running" "$(cat "$T/resp")"
bad load-twice PUT /snapshot/load "{\"snapshot_path\": \"$T/snap.state\", \"mem_file_path\": \"$T/snap.mem\"}" 400 "only be loaded before"; still_running load-twice
bad load-then-start PUT /actions '{"action_type": "InstanceStart"}' 400 "already started"; still_running load-then-start
bad load-then-drive PUT /drives/rootfs "{\"drive_id\": \"rootfs\", \"path_on_host\": \"$T/rootfs.img\", \"is_root_device\": true}" 400 "cannot be changed"
bad load-then-patch-drive PATCH /drives/rootfs '{"drive_id": "rootfs", "rate_limiter": {}}' 400 "no drive"
stop_kestrel
[ "$krc" = 143 ] && pass "api load-sigterm-status" || fail "api load-sigterm-status" "status $krc, want 143: $(head -c 300 "$T/load.err")"

# ---- 4. GETs while the VMM thread writes a (slow) snapshot ---------------

# KESTREL_TEST_SNAPSHOT_DELAY_MS (a test hook, docs/api.md) keeps the VMM
# thread busy that long in PUT /snapshot/create before it writes: longer than
# the 10 s request deadline, which a handler's time must not count against.
CON=$T/slow-console.txt
sed "s|$T/run-console.txt|$CON|" "$T/vm.json" >"$T/slow.json"
KESTREL_TEST_SNAPSHOT_DELAY_MS=12000 start_kestrel slow --config-file "$T/slow.json" || exit 1
api PATCH /vm '{"state": "Paused"}'
expect slow-pause 204
curl -s -m 60 -o "$T/slow-snap.resp" -w '%{http_code}' --unix-socket "$SOCK" -X PUT \
	--data-binary "{\"snapshot_path\": \"$T/slow.state\", \"mem_file_path\": \"$T/slow.mem\"}" \
	http://localhost/snapshot/create >"$T/slow-snap.code" &
snap_pid=$!
sleep 1
for p in / /machine-config /vm/config /version; do
	# Timed by curl (connect to reply), not counting its own start on a busy host.
	read -r code secs < <(curl -s -m 5 -o "$T/resp" -w '%{http_code} %{time_total}\n' --unix-socket "$SOCK" \
		"http://localhost$p")
	name=${p#/}; name=${name//\//-}
	if [ "$code" = 200 ] && awk "BEGIN { exit !($secs < 3) }"; then pass "api slow-snapshot-get-${name:-info}"
	else fail "api slow-snapshot-get-${name:-info}" "HTTP $code after $secs s while the snapshot is written"; fi
done
state_is Paused && pass "api slow-snapshot-state-paused" || fail "api slow-snapshot-state-paused" "$(cat "$T/resp")"
kill -0 "$snap_pid" 2>/dev/null && pass "api slow-snapshot-still-writing" \
	|| fail "api slow-snapshot-still-writing" "the snapshot ended before the GETs: they proved nothing"
wait "$snap_pid"
[ "$(cat "$T/slow-snap.code")" = 204 ] && [ -s "$T/slow.state" ] && pass "api slow-snapshot-reply-after-deadline" \
	|| fail "api slow-snapshot-reply-after-deadline" "HTTP $(cat "$T/slow-snap.code"): $(head -c 200 "$T/slow-snap.resp")"
stop_kestrel
[ "$krc" = 143 ] && pass "api slow-sigterm-status" || fail "api slow-sigterm-status" "status $krc, want 143"

# ---- 5. --config-file alone (guest-hello prints its command line) -------

CON=$T/cf-console.txt
cat >"$T/cf.json" <<EOF
{
  "boot-source": {"kernel_image_path": "$G/guest-hello.elf", "boot_args": "exit=0"},
  "drives": [{"drive_id": "rootfs", "path_on_host": "$T/rootfs.img", "is_root_device": true, "is_read_only": true}],
  "machine-config": {"vcpu_count": 1, "mem_size_mib": 32},
  "kestrel": {"console": "file:$CON"}
}
EOF
timeout -k 5 60 "$KESTREL" --config-file "$T/cf.json" >"$T/cf.out" 2>"$T/cf.err" </dev/null
rc=$?
[ "$rc" = 0 ] && grep -q "kestrel-guest: exit 0" "$CON" && pass "api config-file-boots" \
	|| fail "api config-file-boots" "status $rc: $(head -c 300 "$T/cf.err")"
check "api config-file-root-on-cmdline" grep -q 'cmdline "exit=0 root=/dev/vda ro"' "$CON"

[ "$CHECK_FAILS" = 0 ]
