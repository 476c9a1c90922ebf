#!/usr/bin/env bash
# KVM tests of the core layer's pause, KVM-state snapshot/restore and dirty
# log (tests/kvm/vmstate_test.c), with guest-counter in both of its modes,
# plus guest-counter under `kestrel run` on its own.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$root/tests/lib/checks.sh"

BUILD=${BUILD:-$root/build}
KESTREL=${KESTREL:-$BUILD/kestrel}
TEST=$BUILD/tests/kvm/vmstate_test
GUEST=$BUILD/guests/guest-counter.elf
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

if [ ! -c /dev/kvm ] || ! [ -r /dev/kvm -a -w /dev/kvm ]; then
	skip vmstate "/dev/kvm is not available on this machine"
	exit 0
fi
for f in "$TEST" "$GUEST"; do
	if [ ! -x "$f" ] && [ ! -f "$f" ]; then
		fail vmstate "$f is not built"
		exit 1
	fi
done

# The guest alone: counts 0..4 and exits with status 0.
timeout -k 5 60 "$KESTREL" run --kernel "$GUEST" --cmdline "limit=5 delay_ms=5" \
	>"$T/counter.out" 2>"$T/counter.err" </dev/null
rc=$?
if [ "$rc" = 0 ] && grep -q "kestrel-guest: count 4" "$T/counter.out"; then pass counter-limit
else fail counter-limit "status $rc, want 0 and 'count 4'"; show_tail "$T/counter.err"; show_tail "$T/counter.out"; fi
timeout -k 5 60 "$KESTREL" run --kernel "$GUEST" --cmdline "mode=irq limit=5 delay_ms=5" \
	>"$T/counter-irq.out" 2>"$T/counter-irq.err" </dev/null
rc=$?
if [ "$rc" = 0 ] && grep -q "kestrel-guest: count 4" "$T/counter-irq.out"; then pass counter-irq-limit
else fail counter-irq-limit "status $rc, want 0 and 'count 4'"; show_tail "$T/counter-irq.err"; show_tail "$T/counter-irq.out"; fi

# The core layer: pause/resume, save, refusals, restore, dirty log.
for mode in poll irq; do
	timeout -k 5 240 "$TEST" "$GUEST" "$mode" >"$T/$mode.out" 2>&1
	rc=$?
	cat "$T/$mode.out"
	if [ "$rc" != 0 ] && ! grep -q '^FAIL: ' "$T/$mode.out"; then
		fail "vmstate-$mode" "vmstate_test exited with status $rc"
	fi
done
