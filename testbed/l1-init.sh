#!/bin/sh
# /init of L1, the QEMU (TCG, emulated AMD SVM) guest of the test bed:
# load KVM, run the command testbed.sh put in /testbed/cmd.sh, report its
# status as "TESTBED-STATUS: <rc>" and power off. Output goes to ttyS0,
# which testbed.sh streams to its stdout.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TESTBED=1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
hostname testbed-l1
echo "TESTBED: L1 Linux $(uname -r) up after $(cut -d' ' -f1 /proc/uptime) s"

d=/lib/modules/$(uname -r)
while read -r m; do
    insmod "$d/$m" || echo "TESTBED-ERROR: insmod $m failed"
done <"$d/modules.testbed"

if [ -c /dev/kvm ]; then
    echo "TESTBED: /dev/kvm ready ($(dmesg | grep -o -m1 'Nested Paging enabled' || echo 'no NPT message'))"
else
    echo "TESTBED-ERROR: no /dev/kvm in L1 - does this QEMU emulate SVM (-cpu ...,+svm,+npt)? Kernel messages:"
    dmesg | grep -i -e kvm -e svm | tail -n 20
fi

cd /root || cd /
if [ -e /testbed/interactive ]; then
    # make run: the console is the user's terminal; give the command a
    # controlling tty so the shell in the guest behaves.
    setsid cttyhack sh /testbed/cmd.sh
else
    sh /testbed/cmd.sh </dev/null
fi
rc=$?
echo "TESTBED-STATUS: $rc"
sync
# poweroff -f does not wait for the serial port: what the tty still holds
# (the end of the test's output, the status line) would be lost. stty
# re-applying the console's own settings uses TCSETSW, which waits until the
# output has left the UART.
m=$(stty -F /dev/console -g 2>/dev/null) && stty -F /dev/console "$m" 2>/dev/null
poweroff -f
# Not reached; if it were, init exiting panics the kernel and, with panic=-1
# and QEMU's -no-reboot, QEMU exits.
