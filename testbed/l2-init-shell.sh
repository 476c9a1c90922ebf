#!/bin/sh
# /init of the default guest for `make run`: a busybox shell on the console.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo
echo "kestrel default guest: Linux $(uname -r), $(grep -c ^processor /proc/cpuinfo) CPUs," \
    "$(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) MiB. Type 'reboot -f' (or Ctrl-A x) to leave."
while :; do
    setsid cttyhack sh -l
done
