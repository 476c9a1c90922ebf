#!/usr/bin/env bash
# End-to-end: virtio devices with a stock Debian kernel in the nested test
# bed, all in one test-bed boot and one kestrel run over virtio-pci:
#   --console virtio  the guest's console is hvc0: kernel messages and /init's
#                     output reach kestrel's stdout, and a line fed to
#                     kestrel's stdin arrives on hvc0
#   --rng             /dev/hwrng delivers bytes, through ioeventfd kicks and
#                     MSI-X interrupts (no kick exits)
#   --disk            an ext4 image made here: 64 MiB of files written by the
#                     guest match on the host after kestrel exits; a ro disk
#                     refuses writes
#   --net tap=        ping and TCP both ways with checksums to the L1 host
#   --net user        DHCP from libslirp, then HTTP from a server on the L1
#                     host's loopback through 10.0.2.2
# Output: PASS:/FAIL:/SKIP: lines; exit 1 on any FAIL.
set -uo pipefail
. "$(dirname "$0")/e2e-lib"
e2e_setup virtio

# Disks made on this host: an ext4 data disk and a small read-only one.
mkfs.ext4 -q -F -L kdata "$work/disk.img" 100M || { fail mkfs "mkfs.ext4 failed"; exit 1; }
mkfs.ext4 -q -F -L kro "$work/ro.img" 8M || { fail mkfs "mkfs.ext4 failed"; exit 1; }

cat >"$work/udhcpc.script" <<'EOF2'
#!/bin/sh
# udhcpc hook: configure the interface it was given.
case $1 in
bound|renew)
	ip addr flush dev "$interface"
	ip addr add "$ip/${mask:-24}" dev "$interface"
	[ -n "$router" ] && ip route add default via "${router%% *}" dev "$interface"
	echo "KESTREL-E2E dhcp=$ip router=$router" >/dev/hvc0
	;;
esac
EOF2
# udhcpc execs it, and --l2-add copies files with their mode.
chmod 0755 "$work/udhcpc.script"

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
echo "<6>KESTREL-E2E-KMSG via printk" >/dev/kmsg

# rng
echo "KESTREL-E2E rng=$(head -c 64 /dev/hwrng 2>/dev/null | wc -c)"
for d in /sys/bus/virtio/devices/*; do [ "$(cat $d/device)" = 0x0004 ] && rngdev=${d##*/}; done
echo "KESTREL-E2E rng-irqs=$(awk -v d="$rngdev-input" '$NF == d {n=0; for (i=2; i<=NF; i++) if ($i ~ /^[0-9]+$/) n+=$i; else break; print n}' /proc/interrupts)"

# blk: 64 MiB of files on the ext4 disk, checksummed here, checked by the host afterwards
mkdir -p /mnt/data /mnt/ro
if mount -t ext4 /dev/vda /mnt/data; then
	mkdir -p /mnt/data/data
	for i in 1 2 3 4; do
		dd if=/dev/urandom of=/mnt/data/data/f$i bs=1M count=16 2>/dev/null
		echo "KESTREL-E2E file f$i $(md5sum </mnt/data/data/f$i | cut -d' ' -f1)"
	done
	sync
	umount /mnt/data
else
	echo "KESTREL-E2E blk-mount-failed"
fi
echo "KESTREL-E2E ro-flag=$(cat /sys/block/vdb/ro)"
if dd if=/dev/zero of=/dev/vdb bs=4096 count=1 oflag=direct 2>/dev/null; then echo "KESTREL-E2E ro-write=accepted"; else echo "KESTREL-E2E ro-write=refused"; fi
mount -t ext4 -o ro /dev/vdb /mnt/ro && echo "KESTREL-E2E ro-mount=ok" && umount /mnt/ro

# net over TAP (eth0): ping, and TCP both ways with checksums
ip link set lo up
ip link set eth0 up
ip addr add 192.0.2.2/24 dev eth0
echo "KESTREL-E2E ping=$(ping -c 3 -W 5 192.0.2.1 >/dev/null 2>&1 && echo ok || echo failed)"
head -c 1048576 /dev/urandom >/tmp/up
echo "KESTREL-E2E to-host-md5=$(md5sum </tmp/up | cut -d' ' -f1)"
nc 192.0.2.1 5001 </tmp/up
n=0; until nc 192.0.2.1 5002 >/tmp/down </dev/null 2>/dev/null || [ $n -ge 10 ]; do sleep 1; n=$((n + 1)); done
echo "KESTREL-E2E from-host-md5=$(md5sum </tmp/down | cut -d' ' -f1)"; echo "KESTREL-E2E from-host-size=$(wc -c </tmp/down)"; echo "KESTREL-E2E eth1=$(ip addr show eth1 | grep -c inet)"; dmesg | grep -i -e virtio_net -e eth | tail -5

# net over user-mode networking (eth1): DHCP, then HTTP from the host's loopback via 10.0.2.2
ip link set eth1 up
udhcpc -i eth1 -n -q -t 10 -s /udhcpc.script >/dev/null 2>&1 || echo "KESTREL-E2E dhcp=failed"
wget -q -O /tmp/blob http://10.0.2.2:8080/blob && echo "KESTREL-E2E blob-md5=$(md5sum </tmp/blob | cut -d' ' -f1)"

grep -i virtio /proc/interrupts | sed 's/^/KESTREL-E2E irq /'
echo "KESTREL-E2E ready-for-input"
if read -t 120 line; then echo "KESTREL-E2E hvc-input=$line"; else echo "KESTREL-E2E hvc-input=none"; fi
testbed-drain
reboot -f
EOF2

e2e_testbed --vmm "$kestrel" --l2-init "$work/l2-init" \
	--l2-modules virtio_pci,virtio-rng,virtio_console,virtio_blk,virtio_net \
	--l2-add "$work/udhcpc.script:/udhcpc.script" \
	--l1-modules loop,tun \
	--add "$here/l1-run-kestrel:/usr/bin/l1-run-kestrel" \
	--add "$here/l1-console-feed:/usr/bin/l1-console-feed" \
	--add "$here/l1-virtio:/usr/bin/l1-virtio" \
	--add "$work/disk.img:/disk.img" --add "$work/ro.img:/ro.img" \
	--timeout "$timeout" ${E2E_TESTBED_ARGS:-} -- \
	l1-virtio "$((timeout - 90))"
echo "# $name: test bed finished with status $tbrc"

krc=$(sed -n 's/.*KESTREL-E2E-L1 kestrel-rc=\([0-9]*\).*/\1/p' "$out" | tail -n 1)
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
# virtio-blk: the host sees exactly what the guest wrote.
for i in 1 2 3 4; do
	g=$(sed -n "s/.*KESTREL-E2E file f$i \([0-9a-f]*\).*/\1/p" "$out" | head -n 1)
	h=$(sed -n "s/.*KESTREL-E2E-L1 file f$i \([0-9a-f]*\).*/\1/p" "$out" | head -n 1)
	if [ -n "$g" ] && [ "$g" = "$h" ]; then pass "blk-file-f$i-checksum"
	else fail "blk-file-f$i-checksum" "guest wrote '$g', host read '$h'"; fi
done
[ "$(value ro-flag)" = 1 ] && pass blk-ro-flag || fail blk-ro-flag "vdb ro='$(value ro-flag)'"
[ "$(value ro-write)" = refused ] && pass blk-ro-write-refused || fail blk-ro-write-refused "write to vdb '$(value ro-write)'"
[ "$(value ro-mount)" = ok ] && pass blk-ro-mount || fail blk-ro-mount "read-only mount failed"

# virtio-net over TAP
[ "$(value ping)" = ok ] && pass net-tap-ping || fail net-tap-ping "ping '$(value ping)'"
up_g=$(value to-host-md5); up_h=$(sed -n 's/.*KESTREL-E2E-L1 from-guest-md5=\([0-9a-f]*\).*/\1/p' "$out" | head -n 1)
if [ -n "$up_g" ] && [ "$up_g" = "$up_h" ]; then pass net-tap-tcp-guest-to-host
else fail net-tap-tcp-guest-to-host "guest sent '$up_g', host got '$up_h'"; fi
dn_h=$(sed -n 's/.*KESTREL-E2E-L1 to-guest-md5=\([0-9a-f]*\).*/\1/p' "$out" | head -n 1); dn_g=$(value from-host-md5)
if [ -n "$dn_h" ] && [ "$dn_h" = "$dn_g" ]; then pass net-tap-tcp-host-to-guest
else fail net-tap-tcp-host-to-guest "host sent '$dn_h', guest got '$dn_g'"; fi

# virtio-net over user-mode networking
case $(value dhcp) in 10.0.2.15*) pass net-user-dhcp ;; *) fail net-user-dhcp "dhcp '$(value dhcp)'" ;; esac
b_h=$(sed -n 's/.*KESTREL-E2E-L1 blob-md5=\([0-9a-f]*\).*/\1/p' "$out" | head -n 1); b_g=$(value blob-md5)
if [ -n "$b_h" ] && [ "$b_h" = "$b_g" ]; then pass net-user-http-from-host-loopback
else fail net-user-http-from-host-loopback "host has '$b_h', guest fetched '$b_g'"; fi

# --stats: kicks arrived without MMIO exits on the notify area (ioeventfd).
kicks=$(awk '$1=="virtio-rng" {print $2}' "$out" | tail -n 1)
if [ -n "$kicks" ] && [ "$kicks" -gt 0 ]; then pass rng-kicks-counted; else fail rng-kicks-counted "kicks '$kicks'"; fi

e2e_finish
