#!/usr/bin/env bash
# KVM test: a vhost-user-net NIC served by DPDK's testpmd (not ours) with the
# vhost PMD as the vhost-user server and kestrel connecting (client mode).
# testpmd swaps the MAC addresses of every frame it receives and sends it
# back (forward mode macswap); the freestanding poll-mode virtio-net guest
# (guests/vnet.c) sends frames and waits until they come back. Counted on
# both sides: the guest's frames and echoed frames, testpmd's port stats.
# Plus the back-end's death (one line, the VM runs on) and the user-visible
# error paths.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$root/tests/lib/checks.sh"

BUILD=${BUILD:-$root/build}
KESTREL=${KESTREL:-$BUILD/kestrel}
G=$BUILD/guests
TESTPMD=${TESTPMD:-$(command -v dpdk-testpmd || true)}
T=$(mktemp -d)
PREFIX=kestrel-vhnet-$$   # testpmd's runtime directory, /var/run/dpdk/PREFIX
pmd_pid=
stop_pmd() {
	if [ -n "$pmd_pid" ]; then
		kill "$pmd_pid" 2>/dev/null
		wait "$pmd_pid" 2>/dev/null
		pmd_pid=
	fi
}
cleanup() {
	stop_pmd
	rm -rf "$T" "/var/run/dpdk/$PREFIX" "${XDG_RUNTIME_DIR:-/nonexistent}/dpdk/$PREFIX"
}
trap cleanup EXIT

if [ ! -c /dev/kvm ] || [ ! -w /dev/kvm ]; then
	skip "vhost-user-net" "/dev/kvm is not usable here"
	exit 0
fi
if [ -z "$TESTPMD" ]; then
	skip "vhost-user-net" "dpdk-testpmd is not installed (Debian package dpdk-dev; scripts/deps.sh)"
	exit 0
fi
if [ ! -x "$KESTREL" ] || [ ! -f "$G/guest-vnet.elf" ]; then
	fail "vhost-user-net" "build $KESTREL and $G/guest-vnet.elf first"
	exit 1
fi

# start_pmd SOCK: testpmd as the vhost-user server on SOCK, echoing with
# swapped MACs; no huge pages, no PCI, two lcores (main + one forwarding),
# a small mbuf pool. Waits for the socket.
start_pmd() {
	timeout -k 5 300 "$TESTPMD" -l 0-1 --no-huge -m 256 --no-pci --file-prefix "$PREFIX" \
		--vdev "net_vhost0,iface=$1,client=0" -- \
		--forward-mode=macswap --auto-start --stats-period 1 --total-num-mbufs=4096 --nb-cores=1 \
		>"$T/pmd.log" 2>&1 </dev/null &
	pmd_pid=$!
	for _ in $(seq 200); do
		[ -S "$1" ] && return 0
		kill -0 "$pmd_pid" 2>/dev/null || break
		sleep 0.05
	done
	return 1
}

# pmd_count rx|tx: testpmd's latest port-0 packet count (its periodic stats).
pmd_count() {
	local key=RX
	[ "$1" = tx ] && key=TX
	grep -o "$key-packets: *[0-9]*" "$T/pmd.log" | tail -n 1 | grep -o '[0-9]*$'
}

# run NAME ARGS...: kestrel with a time limit; sets rc, out, err.
run() {
	local name=$1; shift
	out=$T/$name.out
	err=$T/$name.err
	timeout -k 5 "${RUN_TIMEOUT:-60}" "$KESTREL" run "$@" >"$out" 2>"$err" </dev/null
	rc=$?
}

SOCK=$T/vhu-net.sock
if ! start_pmd "$SOCK"; then
	# testpmd runs on plain memory here (--no-huge); a host where it still cannot start is skipped.
	why=$(grep -m1 -iE 'cause|error' "$T/pmd.log" || tail -n 1 "$T/pmd.log")
	skip "vhost-user-net" "dpdk-testpmd did not start: ${why:-it exited without a word}"
	exit 0
fi
pass "vhost-user-net testpmd-start"

# 16 frames out, one at a time; all 16 must come back into the 16 receive buffers.
MAC=02:00:00:00:00:01
run echo1 --kernel "$G/guest-vnet.elf" --memory 64M --net "vhost-user=$SOCK,mac=$MAC" \
	--cmdline "n=16 batch=1 rxbufs=16 rxwait=16 timeout_ms=10000"
if [ "$rc" = 0 ] && grep -q "vnet done n=16 .*frames=16 " "$out" && grep -q "vnet echoed rx_own=16 of rx=16" "$out"; then
	pass "vhost-user-net guest-frames-echoed"
else
	fail "vhost-user-net guest-frames-echoed" "exit status $rc"
	show_tail "$out"; show_tail "$err"; show_tail "$T/pmd.log"
fi
# The back-end got VERSION_1 and MRG_RXBUF is only there if testpmd offers it; the guest asked for VERSION_1 only.
if grep -q "features=0x100000000" "$out"; then
	pass "vhost-user-net features"
else
	fail "vhost-user-net features" "$(grep -o 'features=0x[0-9a-f]*' "$out" || echo 'no device line')"
fi

# A second VM on the same testpmd (the rings of the first were stopped cleanly): 16 more.
run echo2 --kernel "$G/guest-vnet.elf" --memory 64M --net "vhost-user=$SOCK" \
	--cmdline "n=16 batch=4 rxbufs=16 rxwait=16 timeout_ms=10000"
if [ "$rc" = 0 ] && grep -q "vnet echoed rx_own=16 of rx=16" "$out"; then
	pass "vhost-user-net second-vm"
else
	fail "vhost-user-net second-vm" "exit status $rc"
	show_tail "$out"; show_tail "$err"; show_tail "$T/pmd.log"
fi

# testpmd's side: exactly the 32 frames received and 32 sent back. Its stats
# print every --stats-period, later on a busy host: wait up to 15 s for them.
for _ in $(seq 150); do
	rx=$(pmd_count rx); tx=$(pmd_count tx)
	[ "${rx:-0}" -ge 32 ] && [ "${tx:-0}" -ge 32 ] && break
	sleep 0.1
done
if [ "${rx:-}" = 32 ] && [ "${tx:-}" = 32 ]; then
	pass "vhost-user-net testpmd-counts"
else
	fail "vhost-user-net testpmd-counts" "testpmd port 0 RX ${rx:-?} TX ${tx:-?}, expected 32 and 32"
	show_tail "$T/pmd.log"
fi

# The back-end dies while the guest transmits: kestrel says so once (link
# down) and the VM runs on; the guest's own timeout ends it (status 1).
timeout -k 5 60 "$KESTREL" run --kernel "$G/guest-vnet.elf" --memory 64M --net "vhost-user=$SOCK" \
	--cmdline "n=1000000000 batch=32 timeout_ms=2000" >"$T/death.out" 2>"$T/death.err" </dev/null &
kpid=$!
for _ in $(seq 200); do grep -q "vnet device" "$T/death.out" 2>/dev/null && break; sleep 0.05; done
sleep 0.5
stop_pmd
wait "$kpid"
rc=$?
downs=$(grep -c "closed the connection; link down" "$T/death.err")
if [ "$rc" = 1 ] && grep -q "vnet error: timeout" "$T/death.out" && [ "$downs" = 1 ] &&
	[ "$(grep -c . "$T/death.err")" = 1 ]; then
	pass "vhost-user-net backend-death-link-down"
else
	fail "vhost-user-net backend-death-link-down" "exit status $rc, $downs link-down lines"
	show_tail "$T/death.out"; show_tail "$T/death.err"
fi

# Errors the user sees: one line each, nothing started; exit status 2 for a
# malformed --net (RC=2), anything but success or a time-out otherwise.
bad() {
	local name=$1 want=$2; shift 2
	run "$name" --kernel "$G/guest-vnet.elf" --memory 64M "$@"
	if [ "$rc" != 0 ] && [ "$rc" != 124 ] && { [ -z "${RC:-}" ] || [ "$rc" = "$RC" ]; } &&
		grep -q -- "$want" "$err" && [ "$(grep -c . "$err")" = 1 ]; then
		pass "vhost-user-net $name"
	else
		fail "vhost-user-net $name" "exit status $rc: $(head -c 300 "$err")"
	fi
}
RC=2 bad refuse-empty-path "socket path must be" --net "vhost-user="
RC=2 bad refuse-option "unknown option 'mtu=1500'" --net "vhost-user=$SOCK,mtu=1500"
RC=2 bad refuse-bad-mac "bad mac=" --net "vhost-user=$SOCK,mac=01:00:00:00:00:01"
RC=2 bad refuse-e1000 "only model=virtio" --net "vhost-user=$SOCK,model=e1000"
bad no-backend "cannot connect" --net "vhost-user=$T/nobody.sock"
# The guest's own parameter: rxwait= beyond the buffers it posts is refused by the guest.
run rxwait-bad --kernel "$G/guest-vnet.elf" --memory 64M --cmdline "rxwait=17 rxbufs=16"
if [ "$rc" = 1 ] && grep -q "vnet error: rxwait=17 is more than rxbufs=16" "$out"; then
	pass "vhost-user-net guest-rxwait-refused"
else
	fail "vhost-user-net guest-rxwait-refused" "exit status $rc: $(head -c 300 "$out")"
fi
rm -f "$SOCK"
if start_pmd "$SOCK"; then
	bad refuse-mmio "needs the virtio-pci transport" --transport mmio --net "vhost-user=$SOCK"
else
	fail "vhost-user-net refuse-mmio" "testpmd did not start again"
fi

# Through the API (kestrel's vhost_user_socket field): a guest that keeps
# sending reaches testpmd (its counter moves), and a snapshot of the paused VM
# is refused with one line, the VM kept.
API=$T/api.sock
api() {
	local data=()
	[ $# -gt 2 ] && data=(-H 'Content-Type: application/json' --data-binary "$3")
	code=$(curl -s -m 30 -o "$T/resp" -w '%{http_code}' --unix-socket "$API" -X "$1" "${data[@]}" "http://localhost$2")
}
timeout -k 5 120 "$KESTREL" --api-sock "$API" >"$T/api.out" 2>"$T/api.err" </dev/null &
apid=$!
for _ in $(seq 100); do [ -S "$API" ] && break; sleep 0.05; done
api PUT /boot-source "{\"kernel_image_path\": \"$G/guest-vnet.elf\", \"boot_args\": \"n=1000000000 batch=32 timeout_ms=20000\"}"
c1=$code
api PUT /machine-config '{"vcpu_count": 1, "mem_size_mib": 64}'
c2=$code
api PUT /network-interfaces/eth0 "{\"iface_id\": \"eth0\", \"vhost_user_socket\": \"$SOCK\"}"
c3=$code
api PUT /serial "{\"serial_out_path\": \"$T/api.con\"}"
api PUT /actions '{"action_type": "InstanceStart"}'
c4=$code
for _ in $(seq 150); do [ "$(pmd_count rx)" -gt 0 ] 2>/dev/null && break; sleep 0.1; done
if [ "$c1 $c2 $c3 $c4" = "204 204 204 204" ] && [ "$(pmd_count rx)" -gt 0 ] 2>/dev/null; then
	pass "vhost-user-net api-frames-reach-testpmd"
else
	fail "vhost-user-net api-frames-reach-testpmd" "HTTP $c1 $c2 $c3 $c4, testpmd RX $(pmd_count rx)"
	show_tail "$T/api.con"; show_tail "$T/api.err"
fi
api PATCH /vm '{"state": "Paused"}'
api PUT /snapshot/create "{\"snapshot_type\": \"Full\", \"snapshot_path\": \"$T/s.state\", \"mem_file_path\": \"$T/s.mem\"}"
if [ "$code" = 400 ] && grep -q "vhost-user device" "$T/resp" && [ ! -e "$T/s.state" ] && kill -0 "$apid" 2>/dev/null; then
	pass "vhost-user-net snapshot-refused"
else
	fail "vhost-user-net snapshot-refused" "HTTP $code: $(head -c 300 "$T/resp")"
fi
kill "$apid" 2>/dev/null
wait "$apid" 2>/dev/null
stop_pmd
[ "$CHECK_FAILS" = 0 ]
