#!/usr/bin/env bash
# KVM test: a vhost-user-blk disk served by qemu-storage-daemon (QEMU's, not
# ours) on a raw image. The freestanding virtio-blk guest (guests/vblk.c)
# writes through it, polling the used ring; the data is checked in the image
# on the host; then it reads it back. Plus the user-visible error paths.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$root/tests/lib/checks.sh"

BUILD=${BUILD:-$root/build}
KESTREL=${KESTREL:-$BUILD/kestrel}
G=$BUILD/guests
QSD=${QSD:-$(command -v qemu-storage-daemon || true)}
T=$(mktemp -d)
qsd_pid=
cleanup() {
	if [ -n "$qsd_pid" ]; then
		kill "$qsd_pid" 2>/dev/null
		wait "$qsd_pid" 2>/dev/null
	fi
	rm -rf "$T"
}
trap cleanup EXIT

if [ ! -c /dev/kvm ] || [ ! -w /dev/kvm ]; then
	skip "vhost-user" "/dev/kvm is not usable here"
	exit 0
fi
if [ -z "$QSD" ]; then
	skip "vhost-user" "qemu-storage-daemon is not installed (Debian package qemu-system-common; scripts/deps.sh)"
	exit 0
fi
if [ ! -x "$KESTREL" ] || [ ! -f "$G/guest-vblk.elf" ]; then
	fail "vhost-user" "build $KESTREL and $G/guest-vblk.elf first"
	exit 1
fi

# start_qsd IMG SOCK: export IMG as vhost-user-blk on SOCK; waits for the socket.
start_qsd() {
	timeout -k 5 300 "$QSD" \
		--blockdev "driver=file,node-name=file0,filename=$1" \
		--blockdev driver=raw,node-name=disk0,file=file0 \
		--export "type=vhost-user-blk,id=exp0,node-name=disk0,addr.type=unix,addr.path=$2,writable=on" \
		>"$T/qsd.log" 2>&1 &
	qsd_pid=$!
	for _ in $(seq 100); do
		[ -S "$2" ] && return 0
		kill -0 "$qsd_pid" 2>/dev/null || break
		sleep 0.05
	done
	return 1
}

# run NAME ARGS...: kestrel with a time limit; sets rc, out, err.
run() {
	local name=$1; shift
	out=$T/$name.out
	err=$T/$name.err
	timeout -k 5 "${RUN_TIMEOUT:-60}" "$KESTREL" run "$@" >"$out" 2>"$err" </dev/null
	rc=$?
}

IMG=$T/disk.img
SOCK=$T/vhu.sock
truncate -s 16M "$IMG"
if ! start_qsd "$IMG" "$SOCK"; then
	fail "vhost-user qsd-start" "qemu-storage-daemon did not listen on $SOCK"
	show_tail "$T/qsd.log"
	exit 1
fi
pass "vhost-user qsd-start"

# 512 sequential 4 KiB writes, 8 in flight: the first 2 MiB of the image.
run write --kernel "$G/guest-vblk.elf" --memory 64M --disk "vhost-user=$SOCK" \
	--cmdline "mode=seqwrite n=512 bs=4096 qd=8 timeout_ms=20000"
if [ "$rc" = 0 ] && grep -q "vblk done mode=seqwrite n=512 .*requests=512" "$out"; then
	pass "vhost-user guest-writes"
else
	fail "vhost-user guest-writes" "exit status $rc"
	show_tail "$out"; show_tail "$err"; show_tail "$T/qsd.log"
fi
# The capacity the guest saw came from the back-end (GET_CONFIG): 16 MiB.
if grep -q "capacity=32768 sectors" "$out"; then
	pass "vhost-user capacity-from-backend"
else
	fail "vhost-user capacity-from-backend" "$(grep -o 'capacity=[0-9]* sectors' "$out" || echo 'no capacity line')"
fi

# On the host: every 4 KiB block of the first 2 MiB is one byte of 0xa0..0xaf
# (the guest's per-slot pattern), and nothing beyond was touched.
why=$(python3 - "$IMG" <<'EOF'
import sys
d = open(sys.argv[1], 'rb').read()
for b in range(512):
    blk = d[b * 4096:(b + 1) * 4096]
    if not (0xa0 <= blk[0] <= 0xaf) or blk.count(blk[0]) != 4096:
        print("block %d is not a guest pattern (first byte %#x)" % (b, blk[0])); sys.exit(1)
if d[2 << 20:].count(0) != len(d) - (2 << 20):
    print("bytes beyond 2 MiB were written"); sys.exit(1)
EOF
)
if [ $? = 0 ]; then pass "vhost-user data-on-host"; else fail "vhost-user data-on-host" "$why"; fi

# The same daemon serves a second VM after the first went away (the rings were stopped cleanly).
run read --kernel "$G/guest-vblk.elf" --memory 64M --disk "vhost-user=$SOCK" \
	--cmdline "mode=seqread n=512 bs=4096 qd=8 timeout_ms=20000"
if [ "$rc" = 0 ] && grep -q "vblk done mode=seqread n=512 .*requests=512" "$out"; then
	pass "vhost-user guest-reads"
else
	fail "vhost-user guest-reads" "exit status $rc"
	show_tail "$out"; show_tail "$err"; show_tail "$T/qsd.log"
fi

# The back-end dies mid-I/O: kestrel says so once, at once, and the VM runs on
# (the guest's own timeout ends it, status 1); no crash, no hang.
timeout -k 5 60 "$KESTREL" run --kernel "$G/guest-vblk.elf" --memory 64M --disk "vhost-user=$SOCK" \
	--cmdline "mode=randwrite n=100000000 qd=16 timeout_ms=3000" \
	>"$T/death-write.out" 2>"$T/death-write.err" </dev/null &
kpid=$!
for _ in $(seq 200); do grep -q "vblk device" "$T/death-write.out" 2>/dev/null && break; sleep 0.05; done
sleep 0.5
kill "$qsd_pid" 2>/dev/null
wait "$qsd_pid" 2>/dev/null
qsd_pid=
wait "$kpid"
rc=$?
out=$T/death-write.out
err=$T/death-write.err
hups=$(grep -c "closed the connection" "$err")
if [ "$rc" = 1 ] && grep -q "vblk error: timeout" "$out" && [ "$hups" = 1 ] && [ "$(grep -c . "$err")" = 1 ]; then
	pass "vhost-user backend-death-one-line"
else
	fail "vhost-user backend-death-one-line" "exit status $rc, $hups hang-up lines"
	show_tail "$out"; show_tail "$err"
fi

# Errors the user sees: one line, exit status 2 for a malformed option, 1 for no back-end.
run bad-option --kernel "$G/guest-vblk.elf" --disk "vhost-user=$SOCK,ro"
if [ "$rc" = 2 ] && grep -q "option 'ro' is not supported" "$err"; then
	pass "vhost-user refuse-option"
else
	fail "vhost-user refuse-option" "exit status $rc: $(head -c 300 "$err")"
fi
run no-backend --kernel "$G/guest-vblk.elf" --disk "vhost-user=$T/nobody.sock"
if [ "$rc" != 0 ] && [ "$rc" != 124 ] && grep -q "cannot connect" "$err"; then
	pass "vhost-user no-backend"
else
	fail "vhost-user no-backend" "exit status $rc: $(head -c 300 "$err")"
fi
rm -f "$SOCK"
start_qsd "$IMG" "$SOCK" || fail "vhost-user qsd-restart" "no socket"
run mmio --kernel "$G/guest-vblk.elf" --transport mmio --disk "vhost-user=$SOCK"
if [ "$rc" != 0 ] && [ "$rc" != 124 ] && grep -q "needs the virtio-pci transport" "$err"; then
	pass "vhost-user refuse-mmio"
else
	fail "vhost-user refuse-mmio" "exit status $rc: $(head -c 300 "$err")"
fi

kill "$qsd_pid" 2>/dev/null
wait "$qsd_pid" 2>/dev/null
qsd_pid=
[ "$CHECK_FAILS" = 0 ]
