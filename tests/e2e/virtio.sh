#!/usr/bin/env bash
# End-to-end: virtio devices with a stock Debian kernel in the nested test
# bed, all in one test-bed boot and one kestrel run over virtio-pci:
#   --console virtio  the guest's console is hvc0: kernel messages and /init's
#                     output reach kestrel's stdout, and a line fed to
#                     kestrel's stdin arrives on hvc0
#   --rng             /dev/hwrng delivers bytes, through ioeventfd kicks and
#                     MSI-X interrupts (no kick exits)
# Output: PASS:/FAIL:/SKIP: lines; exit 1 on any FAIL.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
testbed=$repo/testbed
kestrel=${KESTREL:-$repo/build/kestrel}
case $kestrel in /*) ;; *) kestrel=$PWD/$kestrel ;; esac
timeout=${E2E_TIMEOUT:-480}
name=virtio
failed=0
pass() { echo "PASS: $name/$1"; }
fail() { echo "FAIL: $name/$1: $2"; failed=1; }
skip() { echo "SKIP: $name/$1: $2"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/kestrel-e2e.XXXXXX")
trap 'rm -rf "$work"' EXIT
out=$work/testbed.out

. "$testbed/lib.sh"
if ! tb_ensure_tools 2>"$work/tools.err"; then
	skip testbed "host tools unavailable: $(tail -n 1 "$work/tools.err")"
	exit 0
fi
if ! "$testbed/fetch.sh" >"$work/fetch.out" 2>"$work/fetch.err"; then
	skip testbed "cannot fetch the test-bed packages: $(tail -n 1 "$work/fetch.err")"
	exit 0
fi
[ -x "$kestrel" ] || { fail kestrel-binary "not found: $kestrel"; exit 1; }

cat >"$work/l2-init" <<'EOF2'
#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
testbed-load-modules
exec </dev/hvc0 >/dev/hvc0 2>&1
echo "KESTREL-E2E console=$(cat /sys/class/tty/console/active)"
echo "KESTREL-E2E virtio-ids=$(cat /sys/bus/virtio/devices/*/device | tr '\n' ,)"
echo "KESTREL-E2E rng=$(head -c 64 /dev/hwrng 2>/dev/null | wc -c)"
for d in /sys/bus/virtio/devices/*; do [ "$(cat $d/device)" = 0x0004 ] && rngdev=${d##*/}; done
echo "KESTREL-E2E rng-irqs=$(awk -v d="$rngdev-input" '$NF == d {n=0; for (i=2; i<=NF; i++) if ($i ~ /^[0-9]+$/) n+=$i; else break; print n}' /proc/interrupts)"
echo "<6>KESTREL-E2E-KMSG via printk" >/dev/kmsg
echo "KESTREL-E2E ready-for-input"
if read -t 120 line; then echo "KESTREL-E2E hvc-input=$line"; else echo "KESTREL-E2E hvc-input=none"; fi
reboot -f
EOF2

# The line kestrel's stdin carries to the guest's hvc0.
"$testbed/testbed.sh" --vmm "$kestrel" --l2-init "$work/l2-init" \
	--l2-modules virtio_pci,virtio-rng,virtio_console \
	--add "$here/l1-run-kestrel:/usr/bin/l1-run-kestrel" \
	--add "$here/l1-console-feed:/usr/bin/l1-console-feed" \
	--timeout "$timeout" ${E2E_TESTBED_ARGS:-} -- \
	sh -c 'l1-console-feed "KESTREL-E2E ready-for-input" hello-from-host "$1" run --kernel /l2/vmlinuz --initrd /l2/initrd \
		--cpus 2 --memory 512M --console virtio --rng --stats --cmdline "console=hvc0 panic=-1 reboot=k"
	       rc=$?
	       echo "KESTREL-E2E-L1 kestrel-rc=$rc"
	       exit $rc' sh "$((timeout - 90))" \
	</dev/null >"$out" 2>&1
tbrc=$?
echo "# $name: test bed finished with status $tbrc"

value() { sed -n "s/.*KESTREL-E2E $1=\\(.*\\)/\\1/p" "$out" | head -n 1 | tr -d '\r'; }
krc=$(sed -n 's/.*KESTREL-E2E-L1 kestrel-rc=\([0-9]*\).*/\1/p' "$out" | head -n 1)
if [ "$krc" = 0 ]; then pass kestrel-exit-status; else fail kestrel-exit-status "kestrel status '$krc' (test bed $tbrc)"; fi

c=$(value console)
case $c in *hvc0*) pass console-on-hvc0 ;; *) fail console-on-hvc0 "active console '$c'" ;; esac
# A kernel message printed after the driver loaded reaches kestrel's stdout through hvc0.
if grep -q "\] KESTREL-E2E-KMSG via printk" "$out"; then pass kernel-log-on-hvc0; else fail kernel-log-on-hvc0 "printk output not on stdout"; fi
ids=$(value virtio-ids)
case $ids in *0x0003*) pass virtio-console-probed ;; *) fail virtio-console-probed "virtio ids '$ids'" ;; esac
case $ids in *0x0004*) pass virtio-rng-probed ;; *) fail virtio-rng-probed "virtio ids '$ids'" ;; esac
r=$(value rng)
if [ "$r" = 64 ]; then pass hwrng-read; else fail hwrng-read "read '$r' bytes of 64"; fi
ri=$(value rng-irqs)
if [ -n "$ri" ] && [ "$ri" -gt 0 ]; then pass rng-msix-interrupts; else fail rng-msix-interrupts "MSI-X count '$ri'"; fi
hi=$(value hvc-input)
if [ "$hi" = hello-from-host ]; then pass hvc-input; else fail hvc-input "guest read '$hi'"; fi
# --stats: kicks arrived without MMIO exits on the notify area (ioeventfd).
kicks=$(awk '$1=="virtio-rng" {print $2}' "$out" | tail -n 1)
if [ -n "$kicks" ] && [ "$kicks" -gt 0 ]; then pass rng-kicks-counted; else fail rng-kicks-counted "kicks '$kicks'"; fi

if [ "$failed" != 0 ]; then
	echo "--- last lines of the test-bed console ---"
	tail -n 60 "$out" | sed 's/^/  | /'
fi
exit "$failed"
