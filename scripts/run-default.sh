#!/usr/bin/env bash
# `make run`: boot the default guest - the stock Debian cloud kernel with a
# busybox shell - with kestrel. Where this host's /dev/kvm cannot run a stock
# kernel (no VT-x/AMD-V, e.g. kvm_pvm), run the same inside the nested test bed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
K=${KESTREL:-$root/build/kestrel}
CPUS=${CPUS:-2}
MEM=${MEM:-512M}
CMDLINE="console=ttyS0 panic=-1 quiet"
# virtio drivers the default guest loads (the Debian cloud kernel builds them as modules)
MODULES=virtio_pci,virtio_net,virtio_blk,virtio-rng
# user-mode networking needs no root network setup on the host
DEVICES=(--net user --rng)
. "$root/testbed/lib.sh"

hw_kvm() {
	[ -c /dev/kvm ] && grep -qw -e vmx -e svm /proc/cpuinfo && [ ! -d /sys/module/kvm_pvm ]
}

if hw_kvm; then
	tb_fetch_kernel cloud
	initrd=$(mktemp --suffix=.cpio.gz)
	trap 'rm -f "$initrd"' EXIT
	"$root/testbed/mkinitrd-l2.sh" --modules "$MODULES" "$initrd" "$root/testbed/l2-init-shell.sh" >/dev/null
	echo "make run: booting $TB_VMLINUZ with kestrel ($CPUS vCPUs, $MEM); Ctrl-A x quits"
	exec "$K" run --kernel "$TB_VMLINUZ" --initrd "$initrd" --cpus "$CPUS" --memory "$MEM" \
		"${DEVICES[@]}" --cmdline "$CMDLINE"
fi

echo "make run: this host's /dev/kvm has no hardware virtualization (see README, 'Host requirements'),"
echo "make run: so kestrel boots the guest inside the nested test bed (QEMU TCG with a nested KVM)."
if [ ! -t 0 ]; then
	echo "make run: no terminal on stdin; the guest will run a shell that gets no input. Ending after 600 s."
fi
exec "$root/testbed/testbed.sh" --interactive --vmm "$K" --l2-init "$root/testbed/l2-init-shell.sh" \
	--l2-modules "$MODULES" --timeout "${TIMEOUT:-3600}" -- \
	kestrel run --kernel /l2/vmlinuz --initrd /l2/initrd --cpus "$CPUS" --memory "$MEM" \
	"${DEVICES[@]}" --cmdline "$CMDLINE"
