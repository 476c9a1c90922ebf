#!/usr/bin/env bash
# Build an initramfs for the L2 guest of the nested test bed:
# busybox-static with its applet links, /init, optional kernel modules (with
# their dependencies) of the test-bed kernel, and extra files.
set -euo pipefail
# shellcheck source=testbed/lib.sh
. "$(dirname "$0")/lib.sh"

usage() {
    cat <<USAGE
usage: $0 [options] OUT.cpio.gz INIT_SCRIPT [HOSTPATH:GUESTPATH]...

  INIT_SCRIPT          becomes /init ('-' for testbed/l2-init-default.sh)
  HOSTPATH:GUESTPATH   extra files or directories to copy in
  --modules A,B,...    kernel modules (plus dependencies per their modinfo) to
                       put in /lib/modules/\$KVER/, with a modules.dep for
                       busybox modprobe and modules.testbed, the load order;
                       /bin/testbed-load-modules insmods them all in order
  --kernel cloud|generic  whose modules (default cloud, the test-bed kernel;
                       generic is linux-image-amd64, which has e1000)
  --compress gzip|none output compression (default gzip)
USAGE
}

modules='' flavour=cloud comp=gzip pos=()
while [ $# -gt 0 ]; do
    case $1 in
        --modules) [ $# -ge 2 ] || tb_die "--modules needs a value"; modules=$2; shift 2 ;;
        --modules=*) modules=${1#*=}; shift ;;
        --kernel) [ $# -ge 2 ] || tb_die "--kernel needs a value"; flavour=$2; shift 2 ;;
        --kernel=*) flavour=${1#*=}; shift ;;
        --compress) [ $# -ge 2 ] || tb_die "--compress needs a value"; comp=$2; shift 2 ;;
        --compress=*) comp=${1#*=}; shift ;;
        -h|--help) usage; exit 0 ;;
        --) shift; pos+=("$@"); break ;;
        -?*) usage >&2; tb_die "unknown option $1" ;;
        *) pos+=("$1"); shift ;;
    esac
done
[ ${#pos[@]} -ge 2 ] || { usage >&2; exit 2; }
out=${pos[0]} init=${pos[1]}
[ "$init" = - ] && init=$TB_LIB_DIR/l2-init-default.sh
[ -f "$init" ] || tb_die "no such init script: $init"

work=$(mktemp -d "${TMPDIR:-/tmp}/kestrel-l2initrd.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
mkdir -p "$root"/{proc,sys,dev,tmp,root,etc,mnt,run,var/log}

tb_install_busybox "$root"
install -m 0755 "$init" "$root/init"

if [ -n "$modules" ]; then
    tb_fetch_kernel "$flavour"
    # shellcheck disable=SC2086
    tb_install_modules "$TB_MODDIR" "$TB_KVER" "$root" ${modules//,/ }
    cat >"$root/bin/testbed-load-modules" <<'LOADER'
#!/bin/sh
# insmod the modules mkinitrd-l2.sh --modules put here, dependencies first.
d=/lib/modules/$(uname -r)
rc=0
while read -r m; do
    insmod "$d/$m" || { echo "testbed-load-modules: insmod $m failed" >&2; rc=1; }
done <"$d/modules.testbed"
exit $rc
LOADER
    chmod 0755 "$root/bin/testbed-load-modules"
fi

# `reboot -f` and `poweroff -f` end the VM at once: whatever the console's
# tty still holds (the 8250 and hvc drivers send from a buffer, paced by
# interrupts) is lost, and with it the last lines a test printed. Re-applying
# a tty's own settings makes stty use TCSETSW, which returns once the output
# has left the device. Every L2 /init calls this before it ends the VM.
cat >"$root/bin/testbed-drain" <<'DRAIN'
#!/bin/sh
# Wait until what was written to the console (and to the ttys named) is sent.
for t in /dev/console "$@"; do
    m=$(stty -F "$t" -g 2>/dev/null) && stty -F "$t" "$m" 2>/dev/null
done
exit 0
DRAIN
chmod 0755 "$root/bin/testbed-drain"

for spec in "${pos[@]:2}"; do
    tb_add_path "$root" "$spec"
done

tb_cpio "$root" "$out" "$comp"
