#!/bin/sh
# Default /init of the L2 (innermost) guest: bring up the basics, say hello,
# and end the VM with `reboot -f` (a reset, which a VMM turns into a clean
# exit without implementing ACPI power-off), once the console has drained.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
echo "TESTBED-L2: Linux $(uname -r) up after $(cut -d' ' -f1 /proc/uptime) s," \
    "$(grep -c ^processor /proc/cpuinfo) cpus"
testbed-drain
reboot -f
