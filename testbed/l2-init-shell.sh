#!/bin/sh
# /init of the default guest for `make run`: a busybox shell on the console,
# with virtio drivers loaded and user-mode networking up (DHCP from kestrel's
# libslirp backend: the guest is 10.0.2.15, the host's loopback is 10.0.2.2).
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
command -v testbed-load-modules >/dev/null && testbed-load-modules
ip link set lo up
cat >/tmp/udhcpc.sh <<'HOOK'
#!/bin/sh
case $1 in
bound|renew)
	ip addr flush dev "$interface"
	ip addr add "$ip/${mask:-24}" dev "$interface"
	[ -n "$router" ] && ip route add default via "${router%% *}" dev "$interface"
	;;
esac
HOOK
chmod +x /tmp/udhcpc.sh
for dev in /sys/class/net/eth*; do
	[ -e "$dev" ] || continue
	ip link set "${dev##*/}" up
	udhcpc -i "${dev##*/}" -n -q -t 5 -s /tmp/udhcpc.sh >/dev/null 2>&1
done
echo
echo "kestrel default guest: Linux $(uname -r), $(grep -c ^processor /proc/cpuinfo) CPUs," \
    "$(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) MiB," \
    "network: $(ip -4 addr show eth0 2>/dev/null | awk '/inet / {print $2}' || echo none)."
echo "Type 'reboot -f' (or Ctrl-A x) to leave."
while :; do
	setsid cttyhack sh -l
done
