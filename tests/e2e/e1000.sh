#!/usr/bin/env bash
# End-to-end: the emulated Intel e1000 with the stock Linux e1000 driver
# (e1000.ko from Debian's generic kernel, booted as L2) in the nested test
# bed, in one boot: the driver probes 8086:100e and reads the MAC from the
# EEPROM, the link comes up, ping and a TCP transfer in both directions over
# TAP with checksums, and kestrel's --stats counts the NIC's register exits.
set -uo pipefail
. "$(dirname "$0")/e2e-lib"
e2e_setup e1000 --e1000

cat >"$work/l2-init" <<'EOF2'
#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
testbed-load-modules
dev=$(ls /sys/class/net | grep -v lo | head -1)
echo "KESTREL-E2E driver=$(basename "$(readlink /sys/class/net/$dev/device/driver)")"
echo "KESTREL-E2E pci=$(cat /sys/class/net/$dev/device/vendor):$(cat /sys/class/net/$dev/device/device)"
echo "KESTREL-E2E mac=$(cat /sys/class/net/$dev/address)"
ip link set lo up
ip link set "$dev" up
ip addr add 192.0.2.2/24 dev "$dev"
n=0; while [ "$(cat /sys/class/net/$dev/carrier 2>/dev/null)" != 1 ] && [ $n -lt 20 ]; do sleep 1; n=$((n + 1)); done
echo "KESTREL-E2E carrier=$(cat /sys/class/net/$dev/carrier)"
echo "KESTREL-E2E ping=$(ping -c 3 -W 5 192.0.2.1 >/dev/null 2>&1 && echo ok || echo failed)"
head -c 1048576 /dev/urandom >/tmp/up
echo "KESTREL-E2E to-host-md5=$(md5sum </tmp/up | cut -d' ' -f1)"
nc 192.0.2.1 5001 </tmp/up
n=0; until nc 192.0.2.1 5002 >/tmp/down </dev/null 2>/dev/null || [ $n -ge 10 ]; do sleep 1; n=$((n + 1)); done
echo "KESTREL-E2E from-host-md5=$(md5sum </tmp/down | cut -d' ' -f1) size=$(wc -c </tmp/down)"
grep -e e1000 -e eth /proc/interrupts | sed 's/^/KESTREL-E2E irq /'
testbed-drain
reboot -f
EOF2

e2e_testbed --vmm "$kestrel" --l2-init "$work/l2-init" \
	--l2-kernel generic --l2-modules e1000 --l1-modules tun \
	--add "$here/l1-run-kestrel:/usr/bin/l1-run-kestrel" \
	--add "$here/l1-e1000:/usr/bin/l1-e1000" \
	--timeout "$timeout" ${E2E_TESTBED_ARGS:-} -- \
	l1-e1000 "$((timeout - 90))"
echo "# $name: test bed finished with status $tbrc"


[ "$(l1value kestrel-rc)" = 0 ] && pass kestrel-exit-status || fail kestrel-exit-status "status '$(l1value kestrel-rc)' (test bed $tbrc)"
[ "$(value driver)" = e1000 ] && pass driver-probed || fail driver-probed "driver '$(value driver)'"
[ "$(value pci)" = "0x8086:0x100e" ] && pass pci-id-82540em || fail pci-id-82540em "pci '$(value pci)'"
case $(value mac) in 52:54:00:*) pass mac-from-eeprom ;; *) fail mac-from-eeprom "mac '$(value mac)'" ;; esac
[ "$(value carrier)" = 1 ] && pass link-up || fail link-up "carrier '$(value carrier)'"
[ "$(value ping)" = ok ] && pass ping || fail ping "ping '$(value ping)'"
g=$(value to-host-md5); h=$(l1value from-guest-md5)
if [ -n "$g" ] && [ "$g" = "$h" ]; then pass tcp-guest-to-host; else fail tcp-guest-to-host "guest sent '$g', host got '$h'"; fi
h=$(l1value to-guest-md5); g=$(value from-host-md5)
if [ -n "$h" ] && [ "$h" = "$g" ]; then pass tcp-host-to-guest; else fail tcp-host-to-guest "host sent '$h', guest got '$g'"; fi
# Every register access is an exit: the stats must show them, and doorbells (TDT writes).
tdt=$(awk '$1 ~ /^e1000-/ {print $4}' "$out" | tail -n 1)
if [ -n "$tdt" ] && [ "$tdt" -gt 0 ]; then pass stats-tdt-doorbells; else fail stats-tdt-doorbells "tdt '$tdt'"; fi

e2e_finish
