#!/usr/bin/env bash
# Rate limiters on virtio-blk, measured with the freestanding guest-vblk:
# - --disk ...,iops=N and ...,bw=BYTES: the guest's own timing (TSC, first
#   submission to last completion) matches what the token bucket allows
#   within ±10%: (requests - the full bucket it starts with) / rate;
# - through the API: rate_limiter on PUT /drives, then PATCH /drives on the
#   running VM; the rate is measured from the host, kestrel's virtio
#   "requests" counter (FlushMetrics) over wall time, before and after.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$root/tests/lib/checks.sh"

BUILD=${BUILD:-$root/build}
KESTREL=${KESTREL:-$BUILD/kestrel}
VBLK=$BUILD/guests/guest-vblk.elf
T=$(mktemp -d)
KPID=
cleanup() {
	[ -n "$KPID" ] && kill -KILL "$KPID" 2>/dev/null && wait "$KPID" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT

if [ ! -c /dev/kvm ] || ! [ -r /dev/kvm -a -w /dev/kvm ]; then
	skip ratelimit "/dev/kvm is not available on this machine"
	exit 0
fi
if [ ! -x "$KESTREL" ] || [ ! -f "$VBLK" ]; then
	fail ratelimit "no kestrel or guest-vblk in $BUILD (build first, or set BUILD)"
	exit 1
fi
truncate -s 64M "$T/disk.img"

# within NAME GOT WANT: |GOT - WANT| <= 10% of WANT.
within() {
	if awk -v g="$2" -v w="$3" 'BEGIN { d = g - w; if (d < 0) d = -d; exit !(d <= w / 10) }'; then
		pass "ratelimit $1 ($2, want $3 ±10%)"
	else
		fail "ratelimit $1" "got $2, want $3 ±10%"
	fi
}

# guest_us NAME DISK_OPTS BOOT_ARGS: runs guest-vblk; prints its us= (empty on failure).
guest_us() {
	timeout -k 5 60 "$KESTREL" run --kernel "$VBLK" --disk "$T/disk.img$2" --cmdline "$3" \
		>"$T/$1.out" 2>"$T/$1.err" </dev/null
	sed -n 's/.*vblk done .* requests=\([0-9]*\) .* us=\([0-9]*\) .*/\1 \2/p' "$T/$1.out"
}

# 200 ops/s with a full bucket of 200 to start: 600 reads take (600 - 200) / 200 = 2 s.
set -- $(guest_us iops ",iops=200" "mode=randread n=600 qd=4")
if [ "${1:-}" = 600 ]; then within cli-iops "$2" 2000000
else fail "ratelimit cli-iops" "guest did not finish: $(tail -c 300 "$T/iops.out" "$T/iops.err")"; fi
# 1 MiB/s with a 1 MiB bucket: 96 writes of 64 KiB (6 MiB) take 5 s.
set -- $(guest_us bw ",bw=1048576" "mode=seqwrite n=96 bs=65536 qd=4")
if [ "${1:-}" = 96 ]; then within cli-bw "$2" 5000000
else fail "ratelimit cli-bw" "guest did not finish: $(tail -c 300 "$T/bw.out" "$T/bw.err")"; fi
# Unlimited, the same run is far faster (the limiter is what made it take 2 s).
set -- $(guest_us free "" "mode=randread n=600 qd=4")
if [ "${1:-}" = 600 ] && [ "$2" -lt 1000000 ]; then pass "ratelimit unlimited-is-faster ($2 us)"
else fail "ratelimit unlimited-is-faster" "requests=${1:-none} us=${2:-none}"; fi

# ---- API: PUT with a limiter, PATCH while running ----
if ! command -v curl >/dev/null; then
	skip "ratelimit api" "curl is needed"
	[ "$CHECK_FAILS" = 0 ]
	exit
fi
SOCK=$T/k.sock
api() { # METHOD PATH [BODY]: $code, the body in $T/resp
	local data=()
	[ $# -gt 2 ] && data=(-H 'Content-Type: application/json' --data-binary "$3")
	code=$(curl -s -m 30 -o "$T/resp" -w '%{http_code}' --unix-socket "$SOCK" -X "$1" "${data[@]}" \
		"http://localhost$2")
}
expect() { # NAME CODE
	if [ "$code" = "$2" ]; then pass "ratelimit $1"
	else fail "ratelimit $1" "HTTP $code, want $2: $(head -c 300 "$T/resp")"; fi
}
# sample: flush the metrics, print "requests seconds" (the device's completed requests, now).
sample() {
	api PUT /actions '{"action_type": "FlushMetrics"}'
	local now; now=$(date +%s.%N)
	[ "$code" = 204 ] || { echo "0 0"; return; }
	python3 -c 'import json,sys; l=open(sys.argv[1]).read().splitlines()[-1]; d=json.loads(l)["virtio"]
print(sum(v["requests"] for v in d.values() if v["type"] == "virtio-blk"), sys.argv[2])' "$T/metrics" "$now"
}
rate() { # r0 t0 r1 t1 -> requests per second
	awk -v a="$1" -v b="$2" -v c="$3" -v d="$4" 'BEGIN { printf "%.1f", (c - a) / (d - b) }'
}

"$KESTREL" --api-sock "$SOCK" >"$T/k.out" 2>"$T/k.err" </dev/null &
KPID=$!
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.05; done
: >"$T/metrics"
api PUT /boot-source "{\"kernel_image_path\": \"$VBLK\", \"boot_args\": \"mode=randread n=1000000 qd=4\"}"
api PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 64}'
api PUT /drives/data "{\"drive_id\": \"data\", \"path_on_host\": \"$T/disk.img\", \"is_root_device\": false, \"rate_limiter\": {\"ops\": {\"size\": 50, \"refill_time\": 1000}}}"
expect api-put-drive-with-limiter 204
api PUT /serial "{\"serial_out_path\": \"$T/k.con\"}"
api PUT /metrics "{\"metrics_path\": \"$T/metrics\"}"
api PUT /actions '{"action_type": "InstanceStart"}'
expect api-instance-start 204
for _ in $(seq 100); do grep -q "vblk device" "$T/k.con" 2>/dev/null && break; sleep 0.05; done
sleep 1.5        # the first bucket (50) is spent; from here 50/s
set -- $(sample); sleep 2; set -- "$@" $(sample)
within api-put-ops-rate "$(rate "$@")" 50
# 200/s in a bucket of 20 refilled every 100 ms (Firecracker's fields as given).
api PATCH /drives/data '{"drive_id": "data", "rate_limiter": {"ops": {"size": 20, "refill_time": 100}}}'
expect api-patch-drive 204
api PATCH /drives/data '{"drive_id": "data", "rate_limiter": {"ops": {"size": 20}}}'
expect api-patch-bad-limiter-400 400
api PATCH /drives/nope '{"drive_id": "nope", "rate_limiter": {"ops": {"size": 20, "refill_time": 100}}}'
expect api-patch-unknown-drive-400 400
sleep 0.5
set -- $(sample); sleep 2; set -- "$@" $(sample)
within api-patched-ops-rate "$(rate "$@")" 200
if grep -q '"throttled":[1-9]' "$T/metrics"; then pass "ratelimit metrics-count-throttling"
else fail "ratelimit metrics-count-throttling" "$(tail -c 400 "$T/metrics")"; fi
if kill -0 "$KPID" 2>/dev/null && ! grep -q "vblk error" "$T/k.con"; then pass "ratelimit api-vm-still-running"
else fail "ratelimit api-vm-still-running" "$(tail -c 300 "$T/k.con" "$T/k.err")"; fi

[ "$CHECK_FAILS" = 0 ]
